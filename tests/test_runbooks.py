"""The runbooks (deploy/runbooks/) tell the truth about this repository: every
`./cli` command in them parses (its `--help` works and the line as written is
accepted), every Kubernetes object and label they name is in the rendered
manifests, every table and index they name exists, every setting they name is
one Kimberly reads, and every alert points at a runbook that talks about it."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import connection

from tests.test_deploy_prometheus import RUNBOOKS as DESIGN_RUNBOOKS

ROOT = Path(settings.BASE_DIR)
RUNBOOKS = ROOT / "deploy" / "runbooks"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "k3d"
KUBECTL = ROOT / ".venv" / "bin" / "kubectl"

# A placeholder the reader fills in (<email-or-id>, <key>) parses as a plain word.
PLACEHOLDER = re.compile(r"<[^<>]+>")
CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.S)


def _code(text: str) -> list[str]:
    """The code in a Markdown text: indented blocks, fenced blocks, inline spans."""
    out = [m.group(1) or m.group(2) for m in CODE.finditer(text)]
    out += [line[4:] for line in text.splitlines() if line.startswith("    ")]
    return out


def _runbooks() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(RUNBOOKS.glob("*.md"))}


def _cli_lines() -> list[tuple[str, list[str]]]:
    """Each `./cli …` command in the runbooks, as argv (up to a shell operator)."""
    found = []
    for name, text in _runbooks().items():
        for code in _code(text):
            for m in re.finditer(r"\./cli ([^|;&\n`]+)", code):
                line = PLACEHOLDER.sub("placeholder", m.group(1))
                if line.count('"') % 2:  # quoted whole: fly ssh console -C "./cli …"
                    line = line.rsplit('"', 1)[0]
                words = shlex.split(line)
                found.append((f"{name}: ./cli {m.group(1).strip()}", words))
    return found


def _parse(argv: list[str]) -> None:
    """Parse argv as manage.py would, without running the command."""
    name, rest = argv[0], argv[1:]
    app = get_commands()[name]
    command = load_command_class(app, name)
    command.create_parser("manage.py", name).parse_args(rest)


def _help_of(argv: list[str]) -> str:
    """`--help` of the command's subcommand path (the words before the options)."""
    path = []
    for word in argv:
        if word.startswith("-") or word == "placeholder":
            break
        path.append(word)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        _parse([*path, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def test_there_are_the_designs_runbooks_and_each_has_the_parts_it_needs():
    books = _runbooks()
    for required in (
        *DESIGN_RUNBOOKS,
        "post-mortem-template.md",
        "tabletop-exercises.md",
    ):
        assert required in books, required
    for name, text in books.items():
        if name in ("README.md", "post-mortem-template.md", "tabletop-exercises.md"):
            continue
        for part in ("**Alert", "## What you see", "## Steps", "## Escalate"):
            assert part in text, f"{name} has no {part!r}"
        assert "Post-mortem" in text, name


def test_every_cli_command_in_the_runbooks_parses():
    lines = _cli_lines()
    assert len(lines) >= 20, "the runbooks lost their commands?"
    for where, argv in lines:
        assert argv and argv[0] in get_commands(), f"{where}: no such command"
        assert "usage: manage.py" in _help_of(argv), where
        try:
            _parse(argv)
        except (CommandError, SystemExit) as exc:
            pytest.fail(f"{where}: does not parse: {exc}")


def test_the_check_sees_a_command_that_does_not_exist():
    with pytest.raises(KeyError):
        _parse(["no-such-command"])
    with pytest.raises(CommandError):
        _parse(["quota", "set", "--user", "x", "--tier", "no-such-tier", "--default"])


@cache
def _objects() -> list[dict]:
    rendered = subprocess.run(  # nosec B603 - our own kubectl on our own files
        [str(KUBECTL), "kustomize", str(OVERLAY)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [o for o in yaml.safe_load_all(rendered) if o]


KINDS = {
    "deploy": "Deployment",
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "cronjob": "CronJob",
}


def _labels() -> set[tuple[str, str]]:
    """Every label of every object and of every pod template in the manifests."""
    found: set[tuple[str, str]] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            labels = (
                node.get("metadata", {}).get("labels") if "metadata" in node else None
            )
            found.update((labels or {}).items())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for obj in _objects():
        walk(obj)
    return found


def test_every_kubernetes_object_and_label_in_the_runbooks_exists():
    named = {(o["kind"], o["metadata"]["name"]) for o in _objects()}
    labels = _labels()
    seen = 0
    for name, text in _runbooks().items():
        for code in _code(text):
            if "kubectl" not in code:
                continue
            for kind, obj in re.findall(
                r"\b(deploy|deployment|statefulset|cronjob)/([a-z0-9-]+)", code
            ):
                assert (KINDS[kind], obj) in named, f"{name}: {kind}/{obj}"
                seen += 1
            for key, value in re.findall(r"-l ([\w./-]+)=([\w.-]+)", code):
                assert (key, value) in labels, (
                    f"{name}: no object labelled {key}={value}"
                )
            if re.search(r"kubectl \w", code):  # a command, not the word
                assert "-n kimberly" in code, (
                    f"{name}: kubectl without the namespace: {code}"
                )
    assert seen >= 10


@pytest.mark.django_db
def test_every_table_and_index_in_the_runbooks_exists():
    with connection.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class")
        relations = {r[0] for r in cur.fetchall()}
    pattern = re.compile(
        r"\b(?:memory|agents|chat|audit|users|privacy|backups)_[a-z_]+\b"
    )
    names = {
        n
        for text in _runbooks().values()
        for c in _code(text)
        for n in pattern.findall(c)
    }
    assert {"memory_memoryembedding", "memory_embedding_hnsw"} <= names
    for name in names:
        assert name in relations, f"no table or index {name}"


def _settings_read() -> set[str]:
    """Settings Kimberly has, and the environment variables its settings read."""
    read = {n for n in dir(settings) if n.isupper()}
    for path in (ROOT / "kimberly" / "settings").glob("*.py"):
        read.update(
            re.findall(
                r"""(?:env_\w+|_cron)\(\s*["']([A-Z0-9_]+)["']""", path.read_text()
            )
        )
    return read


def test_every_setting_named_in_the_runbooks_is_one_kimberly_reads():
    known = _settings_read()
    named = set()
    for text in _runbooks().values():
        named.update(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", text))
    assert named, "no setting named?"
    unknown = sorted(named - known)
    assert not unknown, f"named in the runbooks, read nowhere: {unknown}"


def test_every_alert_points_at_a_runbook_that_names_it():
    rules = [
        r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    ]
    books = _runbooks()
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        # one runbook, or a template choosing one by label (celery_queue_backlog)
        named = re.findall(r"([\w-]+\.md)", url)
        assert named, f"{rule['alert']}: no runbook in {url}"
        mention = f"`{rule['alert']}`"
        for book in named:
            assert book in books, f"{rule['alert']}: runbook {book} missing"
            assert mention in books[book] or mention in books["README.md"], (
                f"{book} does not name {rule['alert']}"
            )


@pytest.mark.django_db
def test_every_metric_named_in_the_runbooks_is_exported(api):
    from tests.metric_names import exported_metric_names

    exported = exported_metric_names(api)
    named = {
        n
        for text in _runbooks().values()
        for n in re.findall(r"\bkimberly_[a-z_]+", text)
    }
    assert len(named) >= 5
    # a family is named without its sample suffix (kimberly_retrieval_seconds)
    families = {re.sub(r"_(bucket|sum|count|created)$", "", n) for n in exported}
    missing = sorted(n for n in named if n not in exported and n not in families)
    assert not missing, f"named in the runbooks, exported by nothing: {missing}"
