"""Properties of the shipped deployments (Dockerfile, fly.toml, Procfile, the
deploy/k8s base; its rendered overlays: tests/test_deploy_k8s.py)."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path

import yaml
from django.conf import settings
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s" / "base"
WORKER_FILES = (
    "worker-deployment.yaml",
    "embedding-worker-deployment.yaml",
    "meditation-worker-deployment.yaml",
    "agents-worker-deployment.yaml",
)


def _k8s(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def _fly() -> dict:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def _config() -> dict[str, str]:
    return _k8s("configmap.yaml")["data"]


def _in(address: str, cidrs: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c.strip()) for c in cidrs.split(","))


def test_worker_and_beat_pods_are_scraped_on_their_metrics_port():
    port = int(_config()["WORKER_METRICS_PORT"])
    for name in (*WORKER_FILES, "beat-deployment.yaml"):
        pod = _k8s(name)["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert int(annotations["prometheus.io/port"]) == port, name
        (container,) = pod["spec"]["containers"]
        assert port in [p["containerPort"] for p in container["ports"]], name


def test_fly_scrapes_worker_and_beat_and_the_image_exposes_the_port():
    fly = _fly()
    port = int(fly["env"]["WORKER_METRICS_PORT"])
    scraped = {g for m in fly["metrics"] if m["port"] == port for g in m["processes"]}
    assert scraped == set(fly["processes"]) - {"web"}, "every worker group and beat"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE .*\b{port}\b", dockerfile, re.M)
    assert "WORKER_METRICS_ADDR=0.0.0.0" in dockerfile


def test_the_k8s_ingress_is_a_trusted_proxy_and_client_addresses_are_not():
    trusted = _config()["TRUSTED_PROXIES"]
    assert _in("10.42.0.9", trusted)  # a Traefik pod on k3s's default cluster CIDR
    assert not _in("203.0.113.5", trusted)
    assert "CLIENT_IP_HEADER" not in _config()  # Traefik appends to X-Forwarded-For


def test_fly_believes_fly_client_ip_only_from_its_private_network():
    env = _fly()["env"]
    assert env["CLIENT_IP_HEADER"] == "HTTP_FLY_CLIENT_IP"
    assert env["TRUSTED_PROXIES"]
    assert not _in("203.0.113.5", env["TRUSTED_PROXIES"])


def test_the_image_trusts_no_proxy_by_default():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "TRUSTED_PROXIES" not in dockerfile
    assert "CLIENT_IP_HEADER" not in dockerfile


def test_a_shutdown_waits_longer_than_any_task_may_run():
    limit = int(_config()["CELERY_TASK_TIME_LIMIT"])
    for name in WORKER_FILES:
        worker = _k8s(name)["spec"]["template"]["spec"]
        assert worker["terminationGracePeriodSeconds"] > limit, name
    fly = _fly()
    assert fly["kill_timeout"] > int(fly["env"]["CELERY_TASK_TIME_LIMIT"])
    assert int(fly["env"]["CELERY_TASK_SOFT_TIME_LIMIT"]) < int(
        fly["env"]["CELERY_TASK_TIME_LIMIT"]
    )


def _queues(command: str | list[str]) -> list[str]:
    args = command.split() if isinstance(command, str) else command
    return args[args.index("-Q") + 1].split(",")


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_every_queue_has_a_worker_of_its_own_in_every_layout():
    queues = sorted(settings.CELERY_QUEUE_NAMES)
    # deploy/k8s: a Deployment per queue
    k8s = []
    for name in WORKER_FILES:
        (c,) = _k8s(name)["spec"]["template"]["spec"]["containers"]
        k8s.append(_queues(c["args"]))
    assert sorted(q for qs in k8s for q in qs) == queues and all(
        len(q) == 1 for q in k8s
    )
    # fly.toml: a process group per queue
    fly = [_queues(cmd) for g, cmd in _fly()["processes"].items() if "-Q" in cmd]
    assert sorted(q for qs in fly for q in qs) == queues and all(
        len(q) == 1 for q in fly
    )
    # the Procfile: an entry per queue (WORKER_QUEUES unset: the default queue)
    procfile = {
        g: _queues(cmd.replace("${WORKER_QUEUES:-celery}", "celery"))
        for g, cmd in _procfile().items()
        if " worker " in cmd
    }
    assert sorted(q for qs in procfile.values() for q in qs) == queues
    assert procfile["agents"] == [settings.AGENT_QUEUE]


def test_make_run_consumes_every_queue_with_the_processes_it_starts():
    serve = (ROOT / "scripts" / "serve.sh").read_text()
    (started,) = re.findall(r"^exec honcho start (.+)$", serve, re.M)
    (local,) = re.findall(r'WORKER_QUEUES="\$\{WORKER_QUEUES:-([^}]+)\}"', serve)
    procfile = _procfile()
    consumed = []
    for name in started.split():
        cmd = procfile[name].replace("${WORKER_QUEUES:-celery}", local)
        if " worker " in cmd:
            consumed += _queues(cmd)
    assert sorted(consumed) == sorted(settings.CELERY_QUEUE_NAMES)
    assert {"web", "beat"} <= set(started.split())


def test_fly_migrates_on_release_and_checks_both_health_urls():
    fly = _fly()
    assert fly["deploy"]["release_command"] == "python manage.py migrate --noinput"
    checks = {c["path"] for c in fly["http_service"]["checks"]}
    assert checks == {"/v1/health", "/v1/health/ready"}
    for path in checks:
        assert resolve(path).url_name in {"health", "health-ready"}
    assert fly["http_service"]["processes"] == ["web"]
    assert fly["processes"]["web"].startswith("gunicorn kimberly.wsgi ")
    assert _queues(fly["processes"]["meditation"]) == [settings.MEDITATION_QUEUE]
    assert fly["processes"]["beat"].split()[3] == "beat"
    assert int(fly["env"]["SECURE_HSTS_SECONDS"]) >= 31536000
    assert fly["http_service"]["force_https"] is True


def test_hsts_is_off_unless_a_deployment_turns_it_on():
    assert settings.SECURE_HSTS_SECONDS == 0
    assert _config()["SECURE_HSTS_SECONDS"] == "0"


def test_a_cron_entry_set_off_is_left_out_of_beat_schedule(monkeypatch):
    import importlib

    from kimberly.settings import beat

    monkeypatch.setenv("CRON_MEDITATION", "off")
    try:
        schedule = importlib.reload(beat).CELERY_BEAT_SCHEDULE
        assert "meditate-all-users" not in schedule
        assert "requeue-stale-meditations" in schedule, "only that one"
    finally:
        monkeypatch.undo()
        importlib.reload(beat)
    assert "meditate-all-users" in beat.CELERY_BEAT_SCHEDULE
    assert "meditate-all-users" in settings.CELERY_BEAT_SCHEDULE
