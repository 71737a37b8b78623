"""The researcher with a model runner (the local stand-in, over a real socket) on
a worker of its own: a grounded answer citing the findings; a model that stalls
is stopped by the Celery soft time limit and the task ends timed_out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.tests.conftest import purge, settle, start_worker, stop, wait_status
from memory.constants import Tier
from memory.tests.factories import memory_for
from tests.standins.openai_server import Behaviour

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model_worker(llm_server, tmp_path, transactional_db) -> Iterator[None]:
    purge()
    worker = start_worker(
        tmp_path,
        LLM_BASE_URL=llm_server.base_url,
        LLM_MODEL="standin-model",
        LLM_TIMEOUT_SECONDS="30",
        LLM_RETRIES="0",
        EMBEDDING_PROVIDER="disabled",  # no model load eating the short timeouts
    )
    yield
    settle(worker.name)
    stop(worker.proc)
    purge()


def _research(api, **extra):
    body = {"agent": "researcher", "task": "what tea do I like", **extra}
    r = api.post("/v1/agents/tasks", body, format="json")
    assert r.status_code == 202, r.content
    return r.json()["task_id"]


def test_with_a_model_the_answer_is_grounded_in_the_citations(
    alice, alice_api, llm_server, model_worker
):
    tea = memory_for(alice, "My favourite tea is lapsang souchong", tier=Tier.PERMANENT)
    llm_server.script(Behaviour(reply="You like lapsang souchong [1]."))
    task_id = _research(alice_api)
    wait_status(task_id, "succeeded", "failed")
    done = alice_api.get(f"/v1/agents/tasks/{task_id}").json()
    assert done["status"] == "succeeded", done
    assert done["result"]["answer"] == "You like lapsang souchong [1]."
    assert done["result"]["answered_by"] == "model"
    sent = " ".join(m["content"] for m in llm_server.requests[-1].messages)
    assert "lapsang souchong" in sent and "what tea do I like" in sent
    assert done["result"]["findings"][0]["memory_id"] == tea.public_id


def test_a_stalled_model_is_stopped_at_the_soft_time_limit(
    alice, alice_api, llm_server, model_worker
):
    memory_for(alice, "My favourite tea is lapsang souchong", tier=Tier.PERMANENT)
    llm_server.script(Behaviour(delay=60))
    task_id = _research(alice_api, params={"timeout": 3})
    task = wait_status(task_id, "timed_out", "succeeded", "failed", timeout=30)
    assert task.status == "timed_out", task.error
    assert task.error["code"] == "timed_out"
    assert task.finished_at and task.started_at
    assert (task.finished_at - task.started_at).total_seconds() < 10
    assert [s["step"] for s in task.trace][-1] == "answer"
