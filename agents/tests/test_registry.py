"""The agent registry: declared types, the operator's and the user's switches."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import UserAgentSwitch
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _by_name(client: Any) -> dict[str, Any]:
    r = client.get("/v1/agents")
    assert r.status_code == 200, r.content
    return {a["name"]: a for a in r.json()["items"]}


def _cli(*args: str) -> str:
    out = StringIO()
    call_command("agent", *args, stdout=out)
    return out.getvalue()


def test_the_four_agent_types_are_listed_with_risk_permissions_and_state(
    alice_api: Any,
) -> None:
    agents = _by_name(alice_api)
    assert list(agents) == ["reminder", "scheduler", "researcher", "coder"]
    coder = agents["coder"]
    assert (coder["risk"], coder["permissions"], coder["idempotent"]) == (
        "high",
        ["code.exec"],
        False,
    )
    assert agents["researcher"]["permissions"] == ["memory.read", "memory.write"]
    assert agents["scheduler"]["permissions"] == ["memory.read"]
    assert all(a["enabled"] for a in agents.values())
    assert (coder["default_timeout"], coder["max_timeout"]) == (60, 300)


def test_a_user_turns_an_agent_off_for_themselves_only(
    alice: Any, alice_api: Any, bob_api: Any
) -> None:
    r = alice_api.put("/v1/agents/coder", {"enabled": False}, format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["enabled"], r.json()["user_enabled"]) == (False, False)
    assert _by_name(alice_api)["coder"]["enabled"] is False
    assert _by_name(bob_api)["coder"]["enabled"] is True
    event = AuditEvent.objects.get(user_id=alice.pk, action="agent.user_disable")
    assert event.target_id == "coder"
    alice_api.put("/v1/agents/coder", {"enabled": True}, format="json")
    assert _by_name(alice_api)["coder"]["enabled"] is True


def test_an_operator_disables_an_agent_for_everyone_and_it_is_audited(
    alice_api: Any, bob_api: Any
) -> None:
    out = _cli("disable", "researcher", "--reason", "runaway queries")
    assert "researcher: disabled" in out
    assert "researcher  disabled" in out and "(runaway queries)" in out
    for client in (alice_api, bob_api):
        researcher = _by_name(client)["researcher"]
        assert (researcher["enabled"], researcher["operator_enabled"]) == (False, False)
        assert researcher["user_enabled"] is True
    event = AuditEvent.objects.get(action="agent.disable")
    assert (event.user_id, event.target_id) == (None, "researcher")
    _cli("enable", "researcher")
    assert _by_name(alice_api)["researcher"]["enabled"] is True
    assert AuditEvent.objects.filter(action="agent.enable").count() == 1


def test_status_counts_the_users_who_turned_an_agent_off(alice_api: Any) -> None:
    alice_api.put("/v1/agents/reminder", {"enabled": False}, format="json")
    line = next(x for x in _cli("status").splitlines() if x.startswith("reminder"))
    # agent, state, running, queued, failed/h, timeout/h, p95, risk, users off
    assert line.split()[:9] == ["reminder", "enabled", *"0000", "-", "low", "1"]


def test_unknown_agents_and_bad_input_are_refused_and_change_nothing(
    alice_api: Any, api: Any
) -> None:
    r = alice_api.get("/v1/agents/astrologer")
    assert (r.status_code, r.json()["error"]) == (404, "unknown_agent")
    r = alice_api.put("/v1/agents/astrologer", {"enabled": False}, format="json")
    assert r.status_code == 404
    for body in ({}, {"enabled": "no"}, {"enabled": False, "extra": 1}):
        r = alice_api.put("/v1/agents/coder", body, format="json")
        assert r.status_code == 400, (body, r.content)
    assert not UserAgentSwitch.objects.exists()
    assert api.get("/v1/agents").status_code == 401
    with pytest.raises((CommandError, SystemExit)):
        _cli("disable", "astrologer")
