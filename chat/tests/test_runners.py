"""The model runners against a stand-in OpenAI-compatible server over real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable

import pytest
from prometheus_client import REGISTRY

from chat.runners import (
    Completion,
    ContextNote,
    Prompt,
    RunnerError,
    RunnerTimeout,
    Turn,
    estimate_tokens,
    fit_prompt,
    get_runner,
)
from chat.runners.offline import OfflineRunner
from chat.runners.openai_compat import OpenAICompatRunner
from chat.runners.prompting import prompt_tokens
from tests.standins.openai_server import DEFAULT_REPLY, Behaviour, closed_port_url

SISTER = ContextNote(
    memory_id="mem_1",
    tier="long_term",
    content="Alice's sister is called Mia.",
    why="matches 'sister'",
    created_at="2024-05-01T09:30:00+00:00",
)
BIKE = ContextNote(
    memory_id="mem_2",
    tier="short_term",
    content="Alice is training for a bike race in June.",
    why="recent",
    created_at="2024-05-20T18:00:00+00:00",
)
PROMPT = Prompt(
    message="What is my sister's name?",
    history=[Turn("user", "Hi Kimberly"), Turn("assistant", "Hello Alice!")],
    context=[SISTER, BIKE],
)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _split(items: Iterable[str | Completion]) -> tuple[list[str], Completion]:
    """A stream's deltas and its final Completion, checking that shape."""
    *deltas, final = items
    assert all(isinstance(d, str) for d in deltas)
    assert isinstance(final, Completion)
    return [str(d) for d in deltas], final


def _discarded(reason: str) -> float:
    return _metric("kimberly_memory_proposals_discarded_total", reason=reason)


def test_a_plain_reply_carries_the_servers_text_usage_and_model(with_llm, settings):
    with_llm.script(Behaviour(reply="Your sister is Mia.", model="llama-3-8b"))

    completion = get_runner().reply(PROMPT)

    assert completion == Completion(
        content="Your sister is Mia.",
        prompt_tokens=42,
        completion_tokens=4,
        model="llama-3-8b",
    )
    (request,) = with_llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["model"] == "standin-model"
    assert request.json["max_tokens"] == settings.LLM_REPLY_TOKENS
    assert request.json["stream"] is True  # streamed even so: the idle limits apply


def test_the_system_prompt_carries_the_memories_with_dates_then_turns_and_message(
    with_llm,
):
    get_runner().reply(PROMPT)

    messages = with_llm.requests[0].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert "Kimberly" in system
    assert "Never invent memories" in system
    assert "1. (2024-05-01) Alice's sister is called Mia." in system
    assert "2. (2024-05-20) Alice is training for a bike race in June." in system
    assert [m["content"] for m in messages[1:]] == [
        "Hi Kimberly",
        "Hello Alice!",
        "What is my sister's name?",
    ]


def test_a_prompt_without_memories_tells_the_model_it_has_none(with_llm):
    get_runner().reply(Prompt(message="Do you know my dog?"))

    assert "You have no memories that match" in with_llm.requests[0].system


def test_the_api_key_is_sent_as_a_bearer_token_only_when_set(with_llm, settings):
    get_runner().reply(PROMPT)
    settings.LLM_API_KEY = "sk-test-123"
    get_runner().reply(PROMPT)

    without, with_key = with_llm.requests
    assert "authorization" not in without.headers
    assert with_key.headers["authorization"] == "Bearer sk-test-123"


def test_a_streamed_reply_yields_deltas_then_one_completion_with_server_usage(
    with_llm,
):
    with_llm.script(Behaviour(reply="Your sister is called Mia."))

    deltas, final = _split(get_runner().reply_stream(PROMPT))

    assert len(deltas) == 5
    assert "".join(deltas) == "Your sister is called Mia."
    assert final == Completion(
        content="Your sister is called Mia.",
        prompt_tokens=42,
        completion_tokens=5,
        model="standin-model",
    )
    request = with_llm.requests[0].json
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_usage_is_estimated_when_the_server_sends_none(with_llm, stream):
    with_llm.script(Behaviour(reply="Your sister is called Mia.", usage=False))
    runner = get_runner()

    final = list(runner.reply_stream(PROMPT))[-1] if stream else runner.reply(PROMPT)

    assert isinstance(final, Completion)
    assert final.completion_tokens == estimate_tokens("Your sister is called Mia.")
    assert final.prompt_tokens == prompt_tokens(PROMPT)


def test_token_metrics_count_the_servers_usage(with_llm):
    before = _metric("kimberly_model_tokens_total", runner="openai", kind="prompt")

    get_runner().reply(PROMPT)

    after = _metric("kimberly_model_tokens_total", runner="openai", kind="prompt")
    assert after - before == 42


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_transient_failure_is_retried_and_the_reply_arrives(with_llm, status):
    with_llm.script(Behaviour(status=status), Behaviour(reply="Mia."))

    assert get_runner().reply(PROMPT).content == "Mia."
    assert len(with_llm.requests) == 2


def test_a_server_that_keeps_failing_is_a_502_after_every_retry(with_llm, settings):
    settings.LLM_API_KEY = "sk-secret-key"
    with_llm.script(then=Behaviour(status=500))
    before = _metric("kimberly_model_runner_errors_total", runner="openai", kind="http")

    with pytest.raises(RunnerError) as caught:
        get_runner().reply(PROMPT)

    assert caught.value.status == 502
    assert caught.value.code == "model_runner_error"
    assert caught.value.details == {
        "status": 500,
        "reason": "http_status",
        "attempts": 3,
    }
    assert len(with_llm.requests) == settings.LLM_RETRIES + 1
    assert "sk-secret" not in f"{caught.value.message} {caught.value.details}"
    after = _metric("kimberly_model_runner_errors_total", runner="openai", kind="http")
    assert after - before == 1


def test_backoff_doubles_between_retries(with_llm, settings):
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.1
    with_llm.script(then=Behaviour(status=503))

    started = time.monotonic()
    with pytest.raises(RunnerError):
        get_runner().reply(PROMPT)

    assert time.monotonic() - started >= 0.1 + 0.2


def test_a_refused_request_is_not_retried(with_llm):
    with_llm.script(then=Behaviour(status=401))

    with pytest.raises(RunnerError) as caught:
        get_runner().reply(PROMPT)

    assert caught.value.status == 502
    assert caught.value.details["status"] == 401
    assert len(with_llm.requests) == 1


def test_a_closed_port_is_a_502_after_the_retries(with_llm, settings):
    settings.LLM_BASE_URL = closed_port_url()

    with pytest.raises(RunnerError) as caught:
        get_runner().reply(PROMPT)

    assert caught.value.status == 502
    assert caught.value.details == {"reason": "connection", "attempts": 3}


@pytest.mark.parametrize("body", ["not json {", "[1, 2]", '{"choices": []}'])
def test_a_malformed_reply_is_a_502_and_not_retried(with_llm, body):
    with_llm.script(then=Behaviour(body=body))
    before = _metric(
        "kimberly_model_runner_errors_total", runner="openai", kind="malformed"
    )

    with pytest.raises(RunnerError):
        get_runner().reply(PROMPT)

    assert len(with_llm.requests) == 1
    after = _metric(
        "kimberly_model_runner_errors_total", runner="openai", kind="malformed"
    )
    assert after - before == 1


def test_a_server_slow_to_answer_is_a_504_at_the_deadline_not_a_hang(
    with_llm, settings
):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    with_llm.script(Behaviour(delay=10))

    started = time.monotonic()
    with pytest.raises(RunnerTimeout) as caught:
        get_runner().reply(PROMPT)

    assert 0.4 < time.monotonic() - started < 1.0
    assert caught.value.status == 504
    assert caught.value.code == "model_runner_timeout"
    assert len(with_llm.requests) == 1


def _collect(stream: Iterable[str | Completion]) -> tuple[list[str], Exception]:
    """The deltas a stream gave before it raised, and what it raised."""
    received: list[str] = []
    with pytest.raises((RunnerError, RunnerTimeout)) as caught:
        for item in stream:
            assert isinstance(item, str), "the stream should not have finished"
            received.append(item)
    return received, caught.value


def test_a_slow_steady_stream_finishes_though_it_takes_longer_than_the_timeout(
    with_llm, settings
):
    settings.LLM_TIMEOUT_SECONDS = 0.35
    reply = "one two three four five six seven"
    with_llm.script(Behaviour(reply=reply, drip=0.1))  # 8 chunks, 0.1 s apart

    started = time.monotonic()
    deltas, final = _split(get_runner().reply_stream(PROMPT))

    assert time.monotonic() - started > 2 * settings.LLM_TIMEOUT_SECONDS
    assert "".join(deltas) == final.content == reply


def test_a_stream_that_goes_silent_mid_reply_is_a_504_after_the_timeout(
    with_llm, settings
):
    settings.LLM_TIMEOUT_SECONDS = 0.4
    with_llm.script(Behaviour(reply="one two three four", stall_after=3))

    started = time.monotonic()
    received, error = _collect(get_runner().reply_stream(PROMPT))

    assert 0.35 < time.monotonic() - started < 0.9
    assert received == ["one ", "two "]
    assert isinstance(error, RunnerTimeout)
    assert error.status == 504
    assert error.details == {"reason": "timeout", "phase": "idle", "attempts": 1}
    assert len(with_llm.requests) == 1  # never retried once the reply had begun


def test_a_stream_that_drips_past_the_total_cap_is_cut_off(with_llm, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.4
    settings.LLM_MAX_SECONDS = 0.7
    with_llm.script(Behaviour(reply="one two three four five six seven", drip=0.15))

    started = time.monotonic()
    received, error = _collect(get_runner().reply_stream(PROMPT))

    assert 0.65 < time.monotonic() - started < 1.1
    assert received  # the first deltas came, and the cap still held
    assert isinstance(error, RunnerTimeout)
    assert error.details == {"reason": "timeout", "phase": "total", "attempts": 1}
    assert "0.7 seconds" in error.message
    assert len(with_llm.requests) == 1


def test_a_stream_whose_first_chunk_comes_too_late_is_a_504(with_llm, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.4
    with_llm.script(Behaviour(drip=10))  # headers at once, then nothing

    started = time.monotonic()
    received, error = _collect(get_runner().reply_stream(PROMPT))

    assert 0.35 < time.monotonic() - started < 0.9
    assert received == []
    assert isinstance(error, RunnerTimeout)
    assert error.details == {"reason": "timeout", "phase": "first_byte", "attempts": 1}


def test_a_slow_reader_of_a_stream_that_arrived_in_time_gets_all_of_it(
    with_llm, settings
):
    settings.LLM_TIMEOUT_SECONDS = 0.2
    settings.LLM_MAX_SECONDS = 0.5
    with_llm.script(Behaviour(reply="one two three four"))
    received: list[str | Completion] = []

    for item in get_runner().reply_stream(PROMPT):
        received.append(item)
        time.sleep(0.15)  # 6 items: 0.9 s of reading, past both deadlines

    deltas, final = _split(received)
    assert "".join(deltas) == final.content == "one two three four"


def test_what_came_past_the_cap_is_cut_off_though_the_reader_was_away(
    with_llm, settings
):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    settings.LLM_MAX_SECONDS = 0.7
    # Chunks at 0.2 (the role), 0.4 ("one "), 0.6 ("two "), 0.8 ("three ") s ...
    with_llm.script(Behaviour(reply="one two three four five six", drip=0.2))
    stream = get_runner().reply_stream(PROMPT)

    assert next(stream) == "one "
    time.sleep(0.6)  # ... and three more waiting when the reader comes back
    received, error = _collect(stream)

    assert received == ["two "]
    assert isinstance(error, RunnerTimeout)
    assert error.details["phase"] == "total"


def test_retries_and_their_pauses_count_against_the_time_to_start(with_llm, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.6
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.2
    with_llm.script(Behaviour(status=503), Behaviour(delay=10))

    started = time.monotonic()
    with pytest.raises(RunnerTimeout) as caught:
        list(get_runner().reply_stream(PROMPT))

    # 0.6 s from the call's start, not 0.6 s from the retry's.
    assert 0.55 < time.monotonic() - started < 0.75
    assert caught.value.details["attempts"] == 2


def test_no_retry_is_made_whose_pause_would_pass_the_time_to_start(with_llm, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    settings.LLM_RETRIES = 5
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.2  # pauses 0.2, 0.4, ...: 0.6 > 0.5
    with_llm.script(then=Behaviour(status=503))

    started = time.monotonic()
    with pytest.raises(RunnerError) as caught:
        get_runner().reply(PROMPT)

    assert time.monotonic() - started < 0.5
    assert caught.value.details["attempts"] == 2
    assert len(with_llm.requests) == 2


def test_the_timeout_may_not_exceed_the_total_cap():
    env = {**os.environ, "LLM_TIMEOUT_SECONDS": "90", "LLM_MAX_SECONDS": "60"}

    result = subprocess.run(
        [sys.executable, "-c", "import kimberly.settings.chat"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "LLM_TIMEOUT_SECONDS must be above 0 and at most LLM_MAX_SECONDS" in (
        result.stderr
    )


def test_a_stream_cut_off_mid_reply_is_a_502_and_not_retried(with_llm):
    with_llm.script(Behaviour(reply="one two three four", cut_after=3))
    received: list[str | Completion] = []

    with pytest.raises(RunnerError) as caught:
        for item in get_runner().reply_stream(PROMPT):
            received.append(item)

    assert received == ["one ", "two "]
    assert caught.value.details == {"reason": "stream_cut", "attempts": 1}
    assert len(with_llm.requests) == 1


def test_a_stream_cut_off_before_any_delta_is_retried(with_llm):
    with_llm.script(Behaviour(cut_after=0))

    deltas, final = _split(get_runner().reply_stream(PROMPT))

    assert "".join(deltas) == final.content == DEFAULT_REPLY
    assert len(with_llm.requests) == 2


def test_an_endless_stall_before_the_first_delta_is_a_504(with_llm, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    with_llm.script(Behaviour(delay=10))

    started = time.monotonic()
    with pytest.raises(RunnerTimeout) as caught:
        list(get_runner().reply_stream(PROMPT))

    assert 0.4 < time.monotonic() - started < 1.0
    assert caught.value.details["phase"] == "first_byte"
    assert len(with_llm.requests) == 1


# --- proposals -----------------------------------------------------------------------

EXCHANGE = [
    Turn("user", "My sister Mia is moving to Lisbon in March."),
    Turn("assistant", "That's exciting news!"),
]


def _propose(server, reply: str) -> list[str]:
    server.script(Behaviour(reply=reply))
    return get_runner().propose_facts(EXCHANGE)


def test_proposals_are_the_facts_of_a_json_reply(with_llm):
    facts = _propose(with_llm, '{"facts": ["The user has a sister, Mia."]}')

    assert facts == ["The user has a sister, Mia."]
    request = with_llm.requests[0].json
    assert request["temperature"] == 0
    assert request["max_tokens"] <= 300
    assert "moving to Lisbon" in request["messages"][-1]["content"]


def test_proposals_tolerate_a_fenced_json_reply(with_llm):
    reply = '```json\n{"facts": ["Mia is moving to Lisbon in March."]}\n```'

    assert _propose(with_llm, reply) == ["Mia is moving to Lisbon in March."]


def test_a_reply_that_is_not_json_proposes_nothing_and_is_counted(with_llm):
    before = _discarded("not_json")

    assert _propose(with_llm, "Sure! The user has a sister named Mia.") == []
    assert _discarded("not_json") - before == 1


@pytest.mark.parametrize(
    "reply", ['["The user has a sister."]', '{"facts": "Mia"}', '{"memories": []}']
)
def test_a_reply_of_the_wrong_shape_proposes_nothing_and_is_counted(with_llm, reply):
    before = _discarded("wrong_shape")

    assert _propose(with_llm, reply) == []
    assert _discarded("wrong_shape") - before == 1


def test_bad_items_are_dropped_and_counted_and_the_good_ones_kept(with_llm):
    before = _discarded("bad_item")
    reply = json.dumps({"facts": ["Mia lives in Porto.", 7, "", "  ", "x" * 501, None]})

    assert _propose(with_llm, reply) == ["Mia lives in Porto."]
    assert _discarded("bad_item") - before == 5


def test_facts_postgresql_cannot_store_are_dropped_and_counted(with_llm):
    before = _discarded("bad_item")
    # What the model sends: JSON escapes for NUL and for a lone surrogate.
    reply = (
        '{"facts": ["Mia lives in Porto.", "Mia\\u0000 is 30.",'
        ' "Mia likes \\ud83d tea.", "Mia likes \\ud83d\\ude00 tea."]}'
    )

    facts = _propose(with_llm, reply)

    assert facts == ["Mia lives in Porto.", "Mia likes \U0001f600 tea."]
    assert _discarded("bad_item") - before == 2


def test_more_than_five_facts_keeps_the_first_five_and_counts_the_rest(with_llm):
    before = _discarded("too_many")
    facts = [f"Fact number {i}." for i in range(7)]

    assert _propose(with_llm, json.dumps({"facts": facts})) == facts[:5]
    assert _discarded("too_many") - before == 2


def test_a_failing_server_proposes_nothing_instead_of_failing(with_llm):
    with_llm.script(then=Behaviour(status=500))
    before = _metric("kimberly_model_runner_errors_total", runner="openai", kind="http")

    assert get_runner().propose_facts(EXCHANGE) == []
    after = _metric("kimberly_model_runner_errors_total", runner="openai", kind="http")
    assert after - before == 1


def test_a_base_url_without_a_scheme_is_a_502_not_a_crash(with_llm, settings):
    settings.LLM_BASE_URL = "localhost:11434/v1"

    with pytest.raises(RunnerError):
        get_runner().reply(PROMPT)


# --- fitting the prompt to the budget ---------------------------------------------


def _note(i: int) -> ContextNote:
    return ContextNote(f"mem_{i}", "long_term", f"memory {i} " * 10, "", "2024-01-01")


def test_fit_prompt_drops_the_oldest_turns_first_then_the_lowest_memories():
    turns = [
        Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " * 10) for i in range(6)
    ]
    prompt = Prompt(
        message="hello", history=turns, context=[_note(i) for i in range(4)]
    )
    full = prompt_tokens(prompt)

    assert fit_prompt(prompt, full) == prompt
    fewer_turns = fit_prompt(prompt, full - 1)
    assert fewer_turns.history == turns[2:]  # a user turn and its orphaned reply
    assert fewer_turns.context == prompt.context
    no_turns = prompt_tokens(Prompt(message="hello", context=prompt.context))
    fewer_notes = fit_prompt(prompt, no_turns - 1)
    assert fewer_notes.history == []
    assert fewer_notes.context == prompt.context[:3]
    assert fit_prompt(prompt, 0) == Prompt(message="hello")


def test_the_runner_fits_an_oversized_prompt_to_the_context_budget(with_llm, settings):
    settings.LLM_CONTEXT_TOKENS = prompt_tokens(PROMPT) + settings.LLM_REPLY_TOKENS - 1

    get_runner().reply(PROMPT)

    contents = [m["content"] for m in with_llm.requests[0].messages]
    assert "Hi Kimberly" not in contents
    assert "Alice's sister is called Mia." in contents[0]


# --- choosing a runner; the offline runner ---------------------------------------------


def test_get_runner_follows_the_settings(with_llm, settings):
    assert isinstance(get_runner(), OpenAICompatRunner)
    assert get_runner() is get_runner()
    settings.LLM_BASE_URL = None
    assert isinstance(get_runner(), OfflineRunner)
    assert get_runner().configured is False


def test_offline_says_no_model_is_configured_and_lists_matching_memories(settings):
    settings.LLM_BASE_URL = None

    completion = get_runner().reply(PROMPT)

    assert completion.model == "offline"
    assert "No language model is configured" in completion.content
    assert "- 2024-05-01: Alice's sister is called Mia." in completion.content
    assert (
        "- 2024-05-20: Alice is training for a bike race in June." in completion.content
    )
    assert completion.content.index("Mia") < completion.content.index("bike race")
    assert completion.completion_tokens == estimate_tokens(completion.content)


def test_offline_says_it_found_nothing_when_no_memory_matches(settings):
    settings.LLM_BASE_URL = None

    content = get_runner().reply(Prompt(message="Where do I live?")).content

    assert "No language model is configured" in content
    assert "I found nothing in my memory that matches your message." in content


def test_offline_streams_the_same_reply_in_chunks_then_the_completion():
    runner = OfflineRunner()

    chunks, final = _split(runner.reply_stream(PROMPT))

    assert len(chunks) > 1
    assert final == runner.reply(PROMPT)
    assert "".join(chunks) == final.content
    assert runner.propose_facts(EXCHANGE) == []


def test_the_stand_in_lists_its_model_like_a_real_server(llm_server):
    import httpx2

    models = httpx2.get(f"{llm_server.base_url}/models").json()

    assert models["data"][0]["id"] == "standin-model"
