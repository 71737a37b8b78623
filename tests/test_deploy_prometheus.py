"""deploy/prometheus: promtool checks and unit-tests the alert rules, the rules
carry the design's names, severities and runbooks, and read only metrics the
project exports. promtool is Debian's prometheus package (`make promtool`, a
prerequisite of `make test`); without it these tests fail, they never skip."""

from __future__ import annotations

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

PROM = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"

# The alerts the infrastructure design names (issue 14, part 1).
DESIGN_ALERTS = {
    "meditation_job_failed",
    "meditation_job_slow",
    "postgres_down",
    "postgres_connection_errors",
    "postgres_storage_high",
    "postgres_storage_critical",
    "celery_queue_backlog",
    "vector_search_latency_high",
    "api_5xx_rate_high",
    "api_latency_p95_high",
    "quota_pressure_high",
    "backup_failed",
    "backup_stale",
    "agent_error_rate_high",
    "agent_timeout",
    "embedding_backlog_growing",
}
SEVERITIES = {"critical", "high", "medium", "low"}
RUNBOOKS = {
    "memory-tier-burst-overflow.md",
    "meditation-job-failed.md",
    "postgres-outage.md",
    "agent-failure.md",
    "vector-store-degradation.md",
    "backup-failure-and-restore.md",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make promtool` installs it (Debian)"
    return subprocess.run(
        [promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=120
    )


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    result = _promtool("test", "rules", "tests.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_example_config():
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_config_is_the_example_with_pod_discovery():
    static = yaml.safe_load((PROM / "prometheus.yml").read_text())
    k8s = yaml.safe_load((PROM / "prometheus-kubernetes.yml").read_text())
    for key in ("global", "rule_files", "alerting"):
        assert k8s[key] == static[key], key
    (job,) = k8s["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep"
    assert keep["source_labels"] == [
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape"
    ]


def test_every_alert_of_the_design_has_a_rule_and_nothing_else_does():
    assert {r["alert"] for r in _rules()} == DESIGN_ALERTS


def test_every_rule_has_a_severity_summary_description_and_runbook():
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        url = notes["runbook_url"]
        assert "$externalLabels.runbook_base_url" in url, name
        assert any(book in url for book in RUNBOOKS), name


def test_vector_search_latency_has_a_p50_and_a_p99_rule():
    quantiles = {
        r["labels"]["quantile"]
        for r in _rules()
        if r["alert"] == "vector_search_latency_high"
    }
    assert quantiles == {"0.5", "0.99"}


def test_the_rule_tests_show_every_alert_firing_and_not_firing():
    doc = yaml.safe_load((PROM / "tests.yml").read_text())
    cases = [case for group in doc["tests"] for case in group["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fires == DESIGN_ALERTS
    assert silent == DESIGN_ALERTS


@pytest.mark.django_db
def test_the_rules_read_only_metrics_the_project_exports(api):
    exported = exported_metric_names(api)
    exprs = [rule["expr"] for rule in _rules()]
    assert all(promql_metric_names(e) for e in exprs)
    assert unknown_names(exprs, exported, allowed=set()) == {}


@pytest.mark.django_db
def test_the_backup_alerts_read_what_the_backups_export(api):
    exported = exported_metric_names(api)
    backup = {n for n in exported if n.startswith("kimberly_backup_")}
    used = set().union(*(promql_metric_names(r["expr"]) for r in _rules()))
    assert {
        "kimberly_backup_last_success_timestamp_seconds",
        "kimberly_backup_last_failure_timestamp_seconds",
        "kimberly_backup_last_verify_success_timestamp_seconds",
    } <= used & backup


def test_the_name_reader_finds_metrics_and_skips_functions_labels_and_keywords():
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{stage="a b"}[5m])))'
        " > 0.5 and on() sum without (agent) (increase(y_total[1h] offset 5m))"
        " or absent(z) unless time() - w > 25 * 3600"
    )
    assert promql_metric_names(expr) == {"x_bucket", "y_total", "z", "w"}
    assert promql_metric_names("rate(a_total[$__rate_interval])") == {"a_total"}
