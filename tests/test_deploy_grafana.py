"""deploy/grafana: the provisioned dashboards load, use the provisioned
datasource, cover what the design asks for, and every panel's query reads
metrics the project exports (the same real scrapes the alert rules are held to)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metric_names import (
    exported_metric_names,
    promql_metric_names,
    unknown_names,
)

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# What the design's dashboards show (issue 14, part 3), by the metric it reads.
COVERED = {
    "memory per tier": "kimberly_memory_bytes",
    "quota pressure": "kimberly_quota_pressure_users",
    "retrieval latency": "kimberly_retrieval_seconds_bucket",
    "retrieval QPS": "kimberly_retrieval_seconds_count",
    "embedding backlog": "kimberly_embedding_backlog",
    "meditation durations": "kimberly_meditation_all_seconds_bucket",
    "meditation runs": "kimberly_meditation_seconds_count",
    "items pruned per run": "kimberly_meditation_items_total",
    "agents": "kimberly_agent_tasks_total",
    "HTTP latency": "django_http_requests_latency_seconds_by_view_method_bucket",
    "HTTP errors": "django_http_responses_total_by_status_view_method_total",
    "Postgres": "kimberly_postgres_connections",
    "Redis": "kimberly_redis_memory_used_bytes",
    "queue depth": "kimberly_celery_queue_depth",
    "backups": "kimberly_backup_last_success_timestamp_seconds",
}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return out


def _boards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in DASHBOARDS]


def _exprs() -> list[str]:
    return [
        target["expr"]
        for board in _boards()
        for panel in _panels(board)
        for target in panel.get("targets", [])
    ]


def test_the_dashboards_load_with_unique_uids_and_titles():
    assert len(DASHBOARDS) >= 3
    boards = _boards()
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)
    for board in boards:
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]


def test_panels_use_the_provisioned_datasource_and_have_queries():
    doc = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text()
    )
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    for board in _boards():
        for panel in _panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip(), panel["title"]


def test_panels_do_not_overlap():
    for board in _boards():
        cells: dict[tuple[int, int], str] = {}
        for panel in _panels(board):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                    cells[(x, y)] = panel["title"]


def test_the_dashboard_provider_loads_a_folder():
    doc = yaml.safe_load((GRAFANA / "provisioning/dashboards/kimberly.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def test_the_dashboards_show_what_the_design_asks_for():
    used = set().union(*(promql_metric_names(e) for e in _exprs()))
    missing = {what: name for what, name in COVERED.items() if name not in used}
    assert missing == {}


def test_every_panel_query_is_valid_promql(tmp_path):
    """promtool parses each query (as a recording rule), with Grafana's interval
    variables replaced by durations."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make promtool` installs it (Debian)"
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "2m"),
        }
        for i, expr in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "$" not in "".join(r["expr"] for r in rules)


@pytest.mark.django_db
def test_every_panel_query_reads_metrics_the_project_exports(api):
    exported = exported_metric_names(api)
    exprs = _exprs()
    assert all(promql_metric_names(e) for e in exprs)
    assert unknown_names(exprs, exported, allowed=set()) == {}
