"""The GitHub Actions pipeline (.github/workflows): schema-valid offline, and it
runs what the repository has (the .ci/run entry point, overlays, scripts, URLs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
CHECK = (str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows")


def _load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True)
    return data


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def _uses(job: dict[str, Any], action: str) -> dict[str, Any]:
    (step,) = [s for s in _steps(job) if s.get("uses", "").startswith(action + "@")]
    return step


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_each_workflow_is_valid_against_the_github_workflow_schema(path):
    out = subprocess.run(
        [*CHECK, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_workflows_are_the_pipeline():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml", "deploy.yml"}


def test_ci_runs_lint_and_the_one_test_entry_point():
    ci = _load("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    runs = [s.get("run", "") for s in _steps(ci["jobs"]["test"])]
    assert ".ci/run" in runs
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    lint = " ".join(s.get("run", "") for s in _steps(ci["jobs"]["lint"]))
    assert "ruff check ." in lint and "ruff format --check ." in lint


def test_release_tests_then_pushes_tagged_images_to_ghcr():
    release = _load("release.yml")
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    image = jobs["image"]
    assert image["needs"] == "test"
    assert image["permissions"]["packages"] == "write"
    assert _uses(image, "docker/login-action")["with"]["registry"] == "ghcr.io"
    tags = _uses(image, "docker/metadata-action")["with"]["tags"]
    assert "type=sha" in tags
    assert "type=semver,pattern={{version}}" in tags
    assert "type=raw,value=latest,enable={{is_default_branch}}" in tags
    build = _uses(image, "docker/build-push-action")["with"]
    assert build["push"] is True and build["tags"] == "${{ steps.meta.outputs.tags }}"
    assert "linux/arm64" in build["platforms"]  # the free OCI VM (deploy/terraform)
    assert "v*.*.*" in release["on"]["push"]["tags"]


def test_staging_is_deployed_and_smoke_tested_before_production_is_approved():
    jobs = _load("release.yml")["jobs"]
    staging, production = jobs["staging"], jobs["production"]
    for job, env in ((staging, "staging"), (production, "production")):
        assert job["uses"] == "./.github/workflows/deploy.yml"
        assert job["with"]["environment"] == env
        assert job["with"]["image"] == "${{ needs.image.outputs.image }}"
        assert (ROOT / "deploy" / "k8s" / "overlays" / job["with"]["overlay"]).is_dir()
    assert "staging" in production["needs"]
    deploy = _load("deploy.yml")["jobs"]["deploy"]
    # the environment's required reviewers are the approval step
    assert deploy["environment"]["name"] == "${{ inputs.environment }}"
    runs = [s.get("run", "") for s in _steps(deploy)]
    assert any(r.startswith("deploy/k8s/deploy.sh ") for r in runs)
    assert any(r.startswith("scripts/smoke.sh ") for r in runs)
    assert runs.index(next(r for r in runs if "deploy.sh" in r)) < runs.index(
        next(r for r in runs if "smoke.sh" in r)
    )


def test_the_smoke_test_calls_urls_that_exist():
    smoke = (ROOT / "scripts" / "smoke.sh").read_text()
    paths = set(re.findall(r"\$base(/v1/[a-z/]+)", smoke))
    assert paths == {"/v1/health/ready", "/v1/login", "/v1/user"}
    for path in paths:
        resolve(path)
    assert "Authorization: Bearer" in smoke  # the API's token prefix
    from django.conf import settings

    assert settings.REST_KNOX["AUTH_HEADER_PREFIX"] == "Bearer"


def test_the_deploy_script_pins_the_built_image_in_every_kimberly_container():
    digest = "ghcr.io/acme/kimberly@sha256:" + "0" * 64
    for overlay in ("staging", "production"):
        out = subprocess.run(
            [str(ROOT / "deploy" / "k8s" / "deploy.sh"), overlay, digest, "--render"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
        assert out.returncode == 0, out.stderr
        images = set(re.findall(r"^ +image: (\S+)$", out.stdout, re.M))
        assert images == {digest}, images
        namespace = out.stdout.splitlines()[0]
        assert (
            namespace
            == f"# namespace: {'kimberly-staging' if overlay == 'staging' else 'kimberly'}"
        )
