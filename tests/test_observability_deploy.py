"""deploy/observability: the example Loki, Tempo, Alloy and Grafana files parse,
and what the log pipeline extracts is what Kimberly's log lines carry. Nothing
here runs Loki, Tempo or Alloy (none installs here)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from opentelemetry.sdk.trace import TracerProvider
from pythonjsonlogger.json import JsonFormatter

from kimberly.logging import ContextFilter, bind_task, unbind_task

DIR = Path(settings.BASE_DIR) / "deploy" / "observability"


def _block(text: str, name: str) -> set[str]:
    """The keys of an Alloy block `name { ... = { key = "", ... } }`."""
    body = re.search(name + r"\s*\{\s*\w+\s*=\s*\{(.*?)\}", text, re.S)
    assert body, name
    return set(re.findall(r"(\w+)\s*=", body.group(1)))


def _a_task_line_in_a_span() -> dict[str, object]:
    logging_config: dict[str, Any] = settings.LOGGING
    config = logging_config["formatters"]["json"]
    assert config["()"] == "pythonjsonlogger.json.JsonFormatter"
    formatter = JsonFormatter(config["fmt"], rename_fields=config["rename_fields"])
    record = logging.LogRecord(
        "memory.tasks", logging.INFO, __file__, 1, "ran", (), None
    )
    tracer = TracerProvider().get_tracer(__name__)
    bind_task("4f1c", "memory.tasks.meditate_user")
    try:
        with tracer.start_as_current_span("task"):
            ContextFilter().filter(record)
    finally:
        unbind_task()
    return json.loads(formatter.format(record))


def test_the_yaml_files_parse_and_tempo_takes_otlp_over_http_on_4318():
    for name in ("loki.yaml", "tempo.yaml", "grafana-datasources.yaml"):
        assert yaml.safe_load((DIR / name).read_text()), name
    tempo = yaml.safe_load((DIR / "tempo.yaml").read_text())
    http = tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]
    assert http["endpoint"].endswith(":4318")
    loki = yaml.safe_load((DIR / "loki.yaml").read_text())
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert int(loki["schema_config"]["configs"][0]["schema"].lstrip("v")) >= 13


def test_alloy_extracts_the_fields_a_log_line_has_and_labels_only_few_valued_ones():
    alloy = (DIR / "kimberly.alloy").read_text()
    extracted = _block(alloy, "stage.json")
    labels = _block(alloy, "stage.labels")
    metadata = _block(alloy, "stage.structured_metadata")
    line = _a_task_line_in_a_span()
    assert extracted <= set(line), sorted(extracted - set(line))
    assert labels == {"level", "logger"}
    assert {"request_id", "task_id", "trace_id"} <= metadata
    assert not labels & metadata
    assert (line["task_id"], line["task_name"]) == (
        "4f1c",
        "memory.tasks.meditate_user",
    )
    assert len(str(line["trace_id"])) == 32 and len(str(line["span_id"])) == 16
