"""Properties of the shipped deployments (Dockerfile, fly.toml, deploy/k8s)."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


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
    for name in (
        "worker-deployment.yaml",
        "agents-worker-deployment.yaml",
        "beat-deployment.yaml",
    ):
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
    assert {"worker", "agents", "beat"} <= scraped
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
    worker = _k8s("worker-deployment.yaml")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > limit
    fly = _fly()
    assert fly["kill_timeout"] > int(fly["env"]["CELERY_TASK_TIME_LIMIT"])
    assert int(fly["env"]["CELERY_TASK_SOFT_TIME_LIMIT"]) < int(
        fly["env"]["CELERY_TASK_TIME_LIMIT"]
    )


def test_agent_tasks_have_their_own_workers_and_the_default_ones_do_not_take_them():
    def queues(args: list[str]) -> str:
        return args[args.index("-Q") + 1]

    def container(name: str) -> list[str]:
        (c,) = _k8s(name)["spec"]["template"]["spec"]["containers"]
        return list(c["args"])

    assert queues(container("worker-deployment.yaml")) == "celery"
    assert queues(container("agents-worker-deployment.yaml")) == "agents"
    fly = _fly()["processes"]
    assert queues(fly["worker"].split()) == "celery"
    assert queues(fly["agents"].split()) == "agents"
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
    )
    assert queues(procfile["worker"].split()) == "celery"
    assert queues(procfile["agents"].split()) == "agents"
    assert "agents-worker-deployment.yaml" in (K8S / "kustomization.yaml").read_text()
