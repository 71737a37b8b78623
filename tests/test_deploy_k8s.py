"""deploy/k8s: every overlay renders with `kubectl kustomize`, every object is
valid against the Kubernetes schemas (offline, strict), and the manifests say
what the code does: entry points that exist, probe paths that resolve, metrics
ports the processes serve, no secret values outside the local overlay."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
OVERLAYS = ("k3d", "staging", "production")
# A k3s release still in support, and the newest schemas the package has.
K8S_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
# Custom resources the Kubernetes schemas cannot know; each is checked below.
CRD_KINDS = {
    ("traefik.io/v1alpha1", "Middleware"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
WORKERS = (
    "kimberly-worker",
    "embedding-workers",
    "meditation-workers",
    "kimberly-agents",
)


@functools.cache
def _render(directory: Path) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _overlay(name: str) -> tuple[dict[str, Any], ...]:
    return _render(K8S / "overlays" / name)


def _with_monitors(tmp_path: Path) -> tuple[dict[str, Any], ...]:
    """The production overlay with the optional prometheus-operator component,
    as deploy/README.md tells an operator to add it."""
    rel = functools.partial(os.path.relpath, start=tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "kimberly",
                "resources": [rel(K8S / "overlays" / "production")],
                "components": [rel(K8S / "components" / "prometheus-operator")],
            }
        )
    )
    return _render(tmp_path)


def _named(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _pod_templates(objs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict]]:
    """(name, pod template) of every workload, CronJobs included."""
    pods = []
    for o in objs:
        if o["kind"] in WORKLOADS:
            pods.append((o["metadata"]["name"], o["spec"]["template"]))
        elif o["kind"] == "CronJob":
            pods.append(
                (o["metadata"]["name"], o["spec"]["jobTemplate"]["spec"]["template"])
            )
    return pods


def _ours(objs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict, dict]]:
    """(workload, pod template, container) of every container of our image."""
    return [
        (name, pod, c)
        for name, pod in _pod_templates(objs)
        for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
        if c["image"].split(":")[0].endswith("kimberly")
    ]


def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


# ----------------------------------------------------------- schemas, CRDs


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_of_the_overlay_is_valid_against_the_schemas(overlay, version):
    objs = _overlay(overlay)
    assert len(objs) > 15
    failures = []
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue  # no schema offline: the structural tests below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except Exception as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert not failures, "\n".join(failures)


def test_the_monitoring_component_adds_monitors_that_select_real_targets(tmp_path):
    objs = _with_monitors(tmp_path)
    for obj in objs:  # the component adds nothing the schemas cannot check but these
        if (obj["apiVersion"], obj["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
    web = _named(objs, "ServiceMonitor", "kimberly-web")["spec"]
    service = _named(objs, "Service", "kimberly-web")
    assert _labels_match(web["selector"], service["metadata"]["labels"])
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in web["endpoints"]} <= ports
    assert {e["path"] for e in web["endpoints"]} == {"/metrics"}
    pods = _named(objs, "PodMonitor", "kimberly-workers")["spec"]
    scraped = [
        (name, pod)
        for name, pod in _pod_templates(objs)
        if _labels_match(pods["selector"], pod["metadata"]["labels"])
    ]
    # every worker Deployment and beat, no web, no Job
    assert sorted(n for n, _ in scraped) == sorted([*WORKERS, "kimberly-beat"])
    for name, pod in scraped:
        (c,) = pod["spec"]["containers"]
        assert "metrics" in {p["name"] for p in c["ports"]}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_is_tls_and_rate_limited_by_a_middleware_that_exists(overlay):
    objs = _overlay(overlay)
    (ingress,) = [o for o in objs if o["kind"] == "Ingress"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"] and tls["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    namespace = ingress["metadata"]["namespace"]
    refs = ingress["metadata"]["annotations"][
        "traefik.ingress.kubernetes.io/router.middlewares"
    ]
    for ref in refs.split(","):
        name, provider = ref.split("@")
        assert provider == "kubernetescrd"
        middleware = _named(objs, "Middleware", name.removeprefix(f"{namespace}-"))
        assert middleware["metadata"]["namespace"] == namespace
        limit = middleware["spec"]["rateLimit"]
        assert limit["average"] > 0 and limit["burst"] >= limit["average"]
    host = ingress["spec"]["rules"][0]["host"]
    config = _named(objs, "ConfigMap", "kimberly-config")["data"]
    assert host in config["ALLOWED_HOSTS"].split(",")
    assert f"https://{host}" in config["CSRF_TRUSTED_ORIGINS"]


# ------------------------------------------------------- what the code does


def test_the_meditation_cronjob_runs_nightly_never_twice_at_once():
    for overlay in OVERLAYS:
        objs = _overlay(overlay)
        spec = _named(objs, "CronJob", "meditation")["spec"]
        assert spec["schedule"] == "0 2 * * *"
        assert spec["concurrencyPolicy"] == "Forbid"
        (c,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert c["args"] == ["python", "manage.py", "meditate"]
        # ... and beat does not send the same runs as well ("off": no beat entry)
        config = _named(objs, "ConfigMap", "kimberly-config")["data"]
        for entry in ("CRON_MEDITATION", "CRON_BACKUP_CREATE", "CRON_BACKUP_VERIFY"):
            assert config[entry] == "off", (overlay, entry)
    backups = {
        name: _named(objs, "CronJob", name)["spec"]
        for name in ("backup", "backup-verify")
    }
    for spec in backups.values():
        assert spec["concurrencyPolicy"] == "Forbid"
    args = {
        n: s["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        for n, s in backups.items()
    }
    assert args == {
        "backup": ["python", "manage.py", "backup", "create"],
        "backup-verify": ["python", "manage.py", "backup", "verify"],
    }
    assert backups["backup-verify"]["schedule"].split()[4] != "*", "weekly"


def _manage_py_calls(argv: list[str]) -> list[list[str]]:
    """Each `python manage.py ...` an argv runs, also inside `sh -c '...'`."""
    if argv[:2] == ["python", "manage.py"]:
        return [argv[2:]]
    if argv[:2] == ["sh", "-c"]:
        found = re.findall(r"python manage\.py ([^;&|>]+)", argv[2])
        return [shlex.split(f) for f in found]
    return []


def _assert_manage_py(args: list[str], where: str) -> None:
    name, rest = args[0], [a for a in args[1:] if not a.startswith("-")]
    commands = get_commands()
    assert name in commands, f"{where}: no manage.py command {name!r}"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    # what `manage.py <cmd> <sub> --help` does: exit 0, or 2 for an unknown <sub>
    with pytest.raises(SystemExit) as exit_, contextlib.redirect_stdout(io.StringIO()):
        parser.parse_args([*rest, "--help"])
    assert exit_.value.code == 0, f"{where}: manage.py {' '.join(args)} does not parse"


def _assert_celery(args: list[str], where: str) -> None:
    assert args[1:3] == ["-A", "kimberly.celery"], where
    assert args[3] in {"worker", "beat"}, where
    if args[3] == "worker":
        queues = args[args.index("-Q") + 1].split(",")
        assert set(queues) <= set(settings.CELERY_QUEUE_NAMES), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_an_entry_point_that_exists(overlay):
    import importlib.util

    seen = set()
    for name, _, c in _ours(_overlay(overlay)):
        argv = [*c.get("command", []), *c["args"]]
        where = f"{name}/{c['name']}"
        if argv[0] == "celery":
            _assert_celery(argv, where)
        elif argv[0] == "gunicorn":
            assert importlib.util.find_spec(argv[1]), where
            assert argv[2:4] == ["--config", "python:kimberly.gunicorn_conf"], where
            assert importlib.util.find_spec("kimberly.gunicorn_conf"), where
        else:
            calls = _manage_py_calls(argv)
            assert calls, f"{where}: unknown entry point {argv}"
            for call in calls:
                _assert_manage_py(call, where)
        seen.add(argv[0])
    assert {"celery", "gunicorn", "python", "sh"} <= seen


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_probes_and_scrape_paths_resolve_to_our_views(overlay):
    (web,) = [
        c
        for name, _, c in _ours(_overlay(overlay))
        if name == "kimberly-web" and c["name"] == "web"
    ]
    paths = {
        probe: web[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths["livenessProbe"] == "/v1/health"
    assert paths["readinessProbe"] == "/v1/health/ready"
    for path in paths.values():
        assert resolve(path).url_name in {"health", "health-ready"}, path
    assert resolve("/metrics").url_name == "prometheus-django-metrics"
    # Probes send Host: localhost; a scrape by pod address needs the address in
    # ALLOWED_HOSTS: the kubelet expands $(VAR) from envFrom and earlier env only.
    for probe in paths:
        assert {"name": "Host", "value": "localhost"} in web[probe]["httpGet"][
            "httpHeaders"
        ]
    env = [e["name"] for e in web["env"]]
    assert env.index("POD_IP") < env.index("ALLOWED_HOSTS")
    (hosts,) = [e["value"] for e in web["env"] if e["name"] == "ALLOWED_HOSTS"]
    assert hosts == "$(ALLOWED_HOSTS),$(POD_IP)"
    config = _named(_overlay(overlay), "ConfigMap", "kimberly-config")["data"]
    assert "localhost" in config["ALLOWED_HOSTS"].split(",")


def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            pairs = (kv.partition("=") for kv in shlex.split(line[4:]) if "=" in kv)
            env.update((k, v) for k, _, v in pairs)
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_declared_metrics_port_is_the_one_its_process_serves(overlay):
    objs = _overlay(overlay)
    config = _named(objs, "ConfigMap", "kimberly-config")["data"]
    image = _dockerfile_env()
    assert image["WORKER_METRICS_ADDR"] == "0.0.0.0"
    checked = 0
    for name, pod, c in _ours(objs):
        port = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
        if port is None or c not in pod["spec"]["containers"]:
            continue
        env = {
            **image,
            **config,
            **{e["name"]: e.get("value") for e in c.get("env", [])},
        }
        if c["args"][0] == "celery":
            served = int(env["WORKER_METRICS_PORT"])
        else:  # gunicorn: its /metrics on the bind address
            assert c["args"][0] == "gunicorn", name
            served = int(env["GUNICORN_BIND"].rsplit(":", 1)[1])
        assert int(port) == served, name
        assert served in [p["containerPort"] for p in c["ports"]], name
        checked += 1
    assert checked == 6  # web, four workers, beat


@pytest.mark.parametrize("overlay", ("staging", "production"))
def test_no_secret_values_outside_the_local_overlay(overlay):
    objs = _overlay(overlay)
    assert not [o for o in objs if o["kind"] == "Secret"]
    refs = {
        ref["secretRef"]["name"]
        for _, _, c in _ours(objs)
        for ref in c.get("envFrom", [])
        if "secretRef" in ref
    }
    assert refs == {"kimberly-secrets"}  # referenced by name, created by hand
    base = _render(K8S / "base")
    assert not [o for o in base if o["kind"] == "Secret"]


def test_the_local_overlay_generates_obviously_local_secrets():
    secrets = [o for o in _overlay("k3d") if o["kind"] == "Secret"]
    assert sorted(s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets) == [
        "kimberly-local-stores",
        "kimberly-secrets",
    ]
    import base64

    for secret in secrets:
        for key, value in secret["data"].items():
            assert "local-only" in base64.b64decode(value).decode(), key


# ------------------------------------------------ workers, beat, network


def _queues(c: dict[str, Any]) -> list[str]:
    return c["args"][c["args"].index("-Q") + 1].split(",")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_queue_has_its_own_workers_and_beat_stays_alone(overlay):
    objs = _overlay(overlay)
    workers = {
        name: _queues(c)
        for name, _, c in _ours(objs)
        if c["args"][:1] == ["celery"] and "worker" in c["args"]
    }
    assert sorted(q for qs in workers.values() for q in qs) == sorted(
        settings.CELERY_QUEUE_NAMES
    ), "every queue, each on one Deployment of its own"
    assert workers["meditation-workers"] == [settings.MEDITATION_QUEUE]
    assert workers["embedding-workers"] == [settings.EMBEDDING_QUEUE]
    beat = _named(objs, "Deployment", "kimberly-beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    (hpa,) = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "kimberly-web"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in _named(objs, "Deployment", "kimberly-web")["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_is_denied_by_default(overlay):
    policies = [o for o in _overlay(overlay) if o["kind"] == "NetworkPolicy"]
    deny = _named(tuple(policies), "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny


def test_the_local_datastores_admit_kimberly_pods_only():
    objs = _overlay("k3d")
    ours = {name: pod["metadata"]["labels"] for name, pod in _pod_templates(objs)}
    for store, port in (("postgresql", 5432), ("redis", 6379), ("minio", 9000)):
        (policy,) = [
            o
            for o in objs
            if o["kind"] == "NetworkPolicy"
            and o["spec"]["podSelector"].get("matchLabels")
            == {"app.kubernetes.io/name": store}
        ]
        (rule,) = policy["spec"]["ingress"]
        admitted = {
            name
            for name, labels in ours.items()
            if any(_labels_match(f["podSelector"], labels) for f in rule["from"])
        }
        assert "kimberly-web" in admitted and "kimberly-beat" in admitted, store
        assert "postgresql" not in admitted and "redis" not in admitted, store
        assert all(set(f) == {"podSelector"} for f in rule["from"]), (
            "no other namespace"
        )
        service = _named(objs, "Service", store)
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "never exposed"


def test_hsts_is_on_in_production_and_staging_only():
    def hsts(overlay: str) -> int:
        config = _named(_overlay(overlay), "ConfigMap", "kimberly-config")["data"]
        return int(config["SECURE_HSTS_SECONDS"])

    assert hsts("production") >= 31536000 and hsts("staging") >= 31536000
    assert hsts("k3d") == 0, "a laptop's self-signed host must not be pinned"
