from __future__ import annotations

import os
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from memory.models import MeditationRun, Quota
from memory.tests.factories import memory_for

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(settings.BASE_DIR)


def _quota(*args: str) -> str:
    out = StringIO()
    call_command("quota", *args, stdout=out)
    return out.getvalue()


def _rows(output: str) -> dict[str, list[str]]:
    """`quota show` table → {tier: [quota, hard limit, used, ...rest]}."""
    rows = {}
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0] in ("short-term", "long-term", "permanent"):
            rows[fields[0]] = fields[1:]
    return rows


def test_quota_show_prints_quota_hard_limit_and_usage_per_tier(alice):
    item = memory_for(alice, "counted", tier="short-term")
    memory_for(alice, "archived", archived=True)

    output = _quota("show", "--user", "alice@example.com")

    assert "alice@example.com" in output
    rows = _rows(output)
    assert set(rows) == {"short-term", "long-term", "permanent"}
    assert rows["short-term"][:3] == ["524288", "655360", str(item.size_bytes)]
    assert rows["long-term"][:3] == ["2097152", "2621440", "0"]
    assert "1 active, 0 archived" in " ".join(rows["short-term"])
    assert "0 active, 1 archived" in " ".join(rows["long-term"])
    assert not any("(override)" in " ".join(r) for r in rows.values())


def test_quota_set_overrides_one_tier_and_shows_it(alice):
    output = _quota(
        "set", "--user", "alice@example.com", "--tier", "long-term", "--limit", "1000"
    )

    rows = _rows(output)
    assert rows["long-term"][:3] == ["1000", "1250", "0"]
    assert rows["long-term"][-1] == "(override)"
    assert rows["permanent"][0] == "10485760"
    assert _rows(_quota("show", "--user", "alice@example.com")) == rows
    assert Quota.objects.get(user=alice, tier="long-term").limit_bytes == 1000


def test_quota_set_accepts_the_user_id(alice):
    _quota("set", "--user", str(alice.pk), "--tier", "permanent", "--limit", "5")
    assert Quota.objects.get(user=alice, tier="permanent").limit_bytes == 5


def test_quota_set_default_removes_the_override(alice):
    _quota("set", "--user", "alice@example.com", "--tier", "long-term", "--limit", "10")

    output = _quota(
        "set", "--user", "alice@example.com", "--tier", "long-term", "--default"
    )

    assert _rows(output)["long-term"][:2] == ["2097152", "2621440"]
    assert "(override)" not in output
    assert Quota.objects.get(user=alice, tier="long-term").limit_bytes is None


def test_quota_override_is_honoured_by_the_api(alice, alice_api):
    _quota(
        "set", "--user", "alice@example.com", "--tier", "long-term", "--limit", "1000"
    )

    small = alice_api.post(
        "/v1/memory", {"type": "long-term", "content": "a" * 1000}, format="json"
    )
    assert small.status_code == 201
    assert small.json()["size_bytes"] <= 1250
    room = 1250 - small.json()["size_bytes"]
    over = alice_api.post(
        "/v1/memory", {"type": "long-term", "content": "b" * room}, format="json"
    )

    assert over.status_code == 429
    assert over.json()["details"]["limit_bytes"] == 1000
    assert over.json()["details"]["hard_limit_bytes"] == 1250
    # Other tiers keep their defaults.
    other = alice_api.post(
        "/v1/memory", {"type": "permanent", "content": "b" * room}, format="json"
    )
    assert other.status_code == 201


def test_quota_set_writes_a_quota_change_audit_event(alice):
    _quota(
        "set", "--user", "alice@example.com", "--tier", "long-term", "--limit", "1000"
    )
    _quota("set", "--user", "alice@example.com", "--tier", "long-term", "--default")

    events = list(
        AuditEvent.objects.filter(user_id=alice.pk, action="quota.change").order_by(
            "seq"
        )
    )

    assert [e.details for e in events] == [
        {"tier": "long-term", "before": None, "after": 1000},
        {"tier": "long-term", "before": 1000, "after": None},
    ]
    assert {(e.actor_type, e.actor_id) for e in events} == {("system", "cli")}
    assert {(e.target_type, e.target_id) for e in events} == {("quota", "long-term")}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("show", "--user", "nobody@example.com"), id="show unknown email"),
        pytest.param(
            (
                "set",
                "--user",
                "nobody@example.com",
                "--tier",
                "long-term",
                "--limit",
                "1",
            ),
            id="set unknown email",
        ),
        pytest.param(
            (
                "set",
                "--user",
                "6f1c1f8e-0000-4000-8000-000000000000",
                "--tier",
                "permanent",
                "--limit",
                "1",
            ),
            id="set unknown id",
        ),
    ],
)
def test_quota_for_an_unknown_user_is_a_command_error(alice, args):
    with pytest.raises(CommandError, match="no user"):
        _quota(*args)
    assert not Quota.objects.filter(limit_bytes__isnull=False).exists()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--tier", "long-term", "--limit", "-1"), id="negative limit"),
        pytest.param(("--tier", "forever", "--limit", "10"), id="unknown tier"),
        pytest.param(
            ("--tier", "long-term", "--limit", "lots"), id="limit not a number"
        ),
        pytest.param(("--tier", "long-term"), id="neither limit nor default"),
        pytest.param(
            ("--tier", "long-term", "--limit", "10", "--default"),
            id="both limit and default",
        ),
    ],
)
def test_bad_quota_set_arguments_are_a_command_error_and_change_nothing(alice, args):
    with pytest.raises(CommandError):
        _quota("set", "--user", "alice@example.com", *args)
    assert not Quota.objects.filter(user=alice, limit_bytes__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="quota.change").exists()


def test_cli_script_at_the_repo_root_forwards_to_manage_py():
    cli = REPO_ROOT / "cli"
    assert cli.is_file()
    assert os.access(cli, os.X_OK)

    result = subprocess.run(
        [str(cli), "quota", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Show or override a user's memory quotas." in result.stdout
    assert "{show,set}" in result.stdout


def test_reembed_queues_items_missing_a_current_vector(alice):
    from django_redis import get_redis_connection

    from kimberly.context import Actor, Context
    from memory import indexing, services
    from memory.models import MemoryEmbedding

    ctx = Context(Actor("user", str(alice.pk)))
    fresh = services.memory_create(
        ctx=ctx, user=alice, tier="long-term", content="a"
    ).item
    stale = services.memory_create(
        ctx=ctx, user=alice, tier="long-term", content="b"
    ).item
    indexing.memory_embed_items([fresh.id, stale.id])
    MemoryEmbedding.objects.filter(item=stale).update(model="old-model@1")
    out = StringIO()
    call_command("memory", "reembed", stdout=out)
    assert "queued 1 memories" in out.getvalue()
    conn = get_redis_connection("default")
    assert conn.smembers(indexing.PENDING_KEY) == {str(stale.id).encode()}


def test_meditate_history_lists_the_nightly_runs_and_changes_nothing(alice, bob):
    memory_for(alice, "tea with lemon")
    out = StringIO()
    call_command("meditate", stdout=out)  # one nightly (every-user) run
    run_line = out.getvalue()
    assert run_line.startswith("all users: run ")
    run_id = run_line.split()[3]

    history = StringIO()
    call_command("meditate", "--history", stdout=history)
    lines = history.getvalue().splitlines()
    assert lines[0].split()[:3] == ["run", "started", "(UTC)"]
    row = lines[1].split()
    assert row[0] == run_id and row[3] == "done"
    assert row[5:7] == ["2", "0"]  # two users' runs, none failed
    before = MeditationRun.objects.count()
    call_command("meditate", "--history", "--limit", "1", stdout=StringIO())
    assert MeditationRun.objects.count() == before
