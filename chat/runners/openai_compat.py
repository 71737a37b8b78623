"""A model runner for any OpenAI-compatible chat-completions server.

llama.cpp's server, Ollama, vLLM and hosted APIs all speak
`POST {base}/chat/completions`, plain JSON or server-sent events. httpx2 does
the HTTP and the SSE decoding; this module owns the policy: deadlines (the reply
must start within the timeout, a streamed reply may then pause at most that long
between chunks and take at most its own total cap), retries with exponential
backoff only before any of the reply arrived and within the time it has to start,
and errors that say what happened without leaking the key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2

from chat.metrics import runner_errors, runner_tokens
from chat.runners.base import (
    Completion,
    Prompt,
    RunnerError,
    RunnerTimeout,
    Turn,
    estimate_tokens,
)
from chat.runners.deadline import DeadlinePassed, Deadlines, iterate_until
from chat.runners.prompting import Message, fit_prompt, messages_tokens, render_messages
from chat.runners.proposals import PROPOSAL_REPLY_TOKENS, parse_facts, proposal_messages

logger = logging.getLogger(__name__)

# Connecting is quick or the server is not there: fail fast, and retry.
CONNECT_TIMEOUT_SECONDS = 5.0
# The worker's socket reads outlast the caller's deadlines a little, so the
# deadlines (not a read timeout) are what cut a call off.
READ_GRACE_SECONDS = 1.0

Event = dict[str, Any]


@dataclass(frozen=True)
class RunnerConfig:
    """The LLM_* settings a runner was built from (hashable: runners are cached)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0  # to the reply's start; a stream's longest pause
    max_seconds: float = 300.0  # a streamed call in all
    retries: int = 2
    backoff: float = 0.5
    context_tokens: int = 4096
    reply_tokens: int = 512


class _Failure(Exception):
    """One attempt failed; `kind` is the metrics label."""

    def __init__(
        self, kind: str, reason: str, *, status: int | None = None, retry: bool = False
    ) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status, self.retry = kind, reason, status, retry


_TIMEOUTS = {
    "first_byte": "The model server did not answer within {timeout:g} seconds.",
    "idle": "The model server stopped sending its reply for {timeout:g} seconds.",
    "total": "The model server's reply took longer than {max_seconds:g} seconds.",
}

_MESSAGES = {
    "http": "The model server answered with an error.",
    "connection": "Could not reach the model server.",
    "malformed": "The model server sent a reply that could not be read.",
}


class OpenAICompatRunner:
    """Replies and proposals from an OpenAI-compatible server (see module doc)."""

    name = "openai"
    configured = True

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.model = config.model
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        auth = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx2.Client(headers=auth)

    def probe(self, timeout: float = 5.0) -> str:
        """The server answers GET /models (no tokens spent): what it says of
        the configured model. RunnerError when it does not answer or errs."""
        url = self.config.base_url.rstrip("/") + "/models"
        try:
            r = self._http.get(url, timeout=timeout)
        except httpx2.HTTPError as exc:
            raise RunnerError(
                f"Could not reach the model server: {type(exc).__name__}."
            ) from exc
        if r.status_code >= 400:
            raise RunnerError(f"The model server answered HTTP {r.status_code}.")
        try:
            listed = {m.get("id") for m in r.json().get("data", [])}
        except (ValueError, AttributeError):
            listed = set()
        where = "listed" if self.model in listed else "not listed"
        return f"{self.model} {where} by {self.config.base_url}"

    def reply(self, prompt: Prompt) -> Completion:
        """The whole reply. Streamed from the server all the same, so a slow model
        that keeps producing is bound by the stream's limits (first chunk, pauses,
        LLM_MAX_SECONDS in all), not cut at LLM_TIMEOUT_SECONDS."""
        for piece in self.reply_stream(prompt):
            if isinstance(piece, Completion):
                return piece
        raise self._error(_Failure("malformed", "no_completion"), attempts=1)

    def reply_stream(self, prompt: Prompt) -> Iterator[str | Completion]:
        """Text deltas as the server sends them, then one Completion. Lazy: nothing
        is sent before the first `next()`; a failure before any delta raises there."""
        messages = self._messages(prompt)
        body = self._body(messages, self.config.reply_tokens)
        body.update(stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        last: Event = {}
        for chunk in self._events(body, stream=True):
            for key in ("model", "usage"):  # usage comes in a last, choice-less chunk
                if chunk.get(key):
                    last[key] = chunk[key]
            delta = _delta_content(chunk)
            if delta:
                parts.append(delta)
                yield delta
        yield self._completion("".join(parts), last, messages)

    def propose_facts(self, exchange: list[Turn]) -> list[str]:
        """Facts the model finds in `exchange`; [] on any failure (proposals must
        never fail a chat reply; the failure is logged and counted)."""
        messages = proposal_messages(exchange)
        body = self._body(messages, PROPOSAL_REPLY_TOKENS)
        body["temperature"] = 0
        try:
            data = self._complete(body)
            content = _message_content(data)
        except (RunnerError, RunnerTimeout) as exc:
            logger.warning("memory proposals skipped: %s %s", exc.code, exc.details)
            return []
        self._completion(content, data, messages)  # counts the tokens
        return parse_facts(content)

    # --- one call ------------------------------------------------------------------

    def _messages(self, prompt: Prompt) -> list[Message]:
        budget = self.config.context_tokens - self.config.reply_tokens
        fitted = fit_prompt(prompt, budget)
        if fitted != prompt:
            logger.info(
                "prompt cut to the budget: %d of %d turns, %d of %d memories",
                *(len(fitted.history), len(prompt.history)),
                *(len(fitted.context), len(prompt.context)),
            )
        return render_messages(fitted)

    def _body(self, messages: list[Message], max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
        }

    def _complete(self, body: dict[str, Any]) -> Event:
        """The one JSON object of a non-streaming call."""
        for data in self._events(body, stream=False):
            return data
        raise self._error(_Failure("malformed", "empty_reply"), attempts=1)

    def _events(self, body: dict[str, Any], *, stream: bool) -> Iterator[Event]:
        """The server's JSON objects for one call (one, or a chunk each when
        streaming), under the call's deadlines, retried while nothing has arrived.

        Every attempt, and every pause between attempts, falls in the one window
        the reply has to start (`timeout` from the call's start): the caller
        never waits longer than that for a first byte, however many retries."""
        deadlines = self._deadlines(stream)
        attempt = 0
        while True:
            attempt += 1
            received = False
            events = iterate_until(
                lambda: self._send(body, stream, deadlines), deadlines
            )
            try:
                with contextlib.closing(events):
                    for event in events:
                        received = True
                        yield event
                return
            except DeadlinePassed as passed:
                runner_errors.labels(runner=self.name, kind="timeout").inc()
                message = _TIMEOUTS[passed.phase].format(
                    timeout=self.config.timeout, max_seconds=self.config.max_seconds
                )
                raise RunnerTimeout(
                    message,
                    details={
                        "reason": "timeout",
                        "phase": passed.phase,
                        "attempts": attempt,
                    },
                ) from None
            except _Failure as failure:
                pause = self.config.backoff * 2 ** (attempt - 1)
                if (
                    received
                    or not failure.retry
                    or attempt > self.config.retries
                    or time.monotonic() + pause >= deadlines.first
                ):
                    raise self._error(failure, attempts=attempt) from None
                logger.info("model server call failed (%s), retrying", failure.reason)
                time.sleep(pause)

    def _deadlines(self, stream: bool) -> Deadlines:
        """A plain reply must come whole within `timeout`; a streamed one must
        start within it, never pause longer, and end within `max_seconds`."""
        start = time.monotonic()
        first = start + self.config.timeout
        if not stream:
            return Deadlines(first=first, total=first)
        return Deadlines(
            first=first,
            total=start + self.config.max_seconds,
            idle=self.config.timeout,
        )

    def _send(
        self, body: dict[str, Any], stream: bool, deadlines: Deadlines
    ) -> Generator[Event, None, None]:
        """One HTTP attempt (runs in the deadlines' worker thread)."""
        remaining = max(deadlines.first - time.monotonic(), 0.001)
        # A socket read waits for the headers (up to the first-byte deadline),
        # then for each chunk (up to the idle deadline).
        timeout = httpx2.Timeout(
            max(remaining, deadlines.idle or 0) + READ_GRACE_SECONDS,
            connect=min(CONNECT_TIMEOUT_SECONDS, remaining),
        )
        try:
            with self._http.stream("POST", self._url, json=body, timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    # The status only: an error body can quote the prompt back.
                    logger.warning("model server answered %d", r.status_code)
                    retry = r.status_code == 429 or r.status_code >= 500
                    raise _Failure(
                        "http", "http_status", status=r.status_code, retry=retry
                    )
                if stream:
                    yield from _sse_objects(r)
                else:
                    r.read()
                    yield _json_object(r.text)
        except httpx2.SSEError as exc:  # the server did not answer with a stream
            raise _Failure("malformed", "not_a_stream") from exc
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            raise _Failure("connection", "connection", retry=True) from exc
        except httpx2.TimeoutException as exc:
            raise _Failure("timeout", "timeout") from exc
        except httpx2.TransportError as exc:  # dropped mid-reply, protocol errors
            raise _Failure("connection", "connection", retry=True) from exc
        except httpx2.DecodingError as exc:
            raise _Failure("malformed", "undecodable") from exc
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:  # LLM_BASE_URL is wrong
            raise _Failure("connection", "bad_request_url") from exc

    def _error(
        self, failure: _Failure, *, attempts: int
    ) -> RunnerError | RunnerTimeout:
        runner_errors.labels(runner=self.name, kind=failure.kind).inc()
        details: dict[str, Any] = {"reason": failure.reason, "attempts": attempts}
        if failure.status is not None:
            details["status"] = failure.status
        if failure.kind == "timeout":
            return RunnerTimeout("The model server timed out.", details=details)
        if failure.status is not None:
            return RunnerError(
                f"The model server answered HTTP {failure.status}.", details=details
            )
        return RunnerError(_MESSAGES[failure.kind], details=details)

    def _completion(
        self, content: str, data: Event, messages: list[Message]
    ) -> Completion:
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _count(usage, "prompt_tokens") or messages_tokens(messages)
        completion_tokens = _count(usage, "completion_tokens") or estimate_tokens(
            content
        )
        runner_tokens.labels(runner=self.name, kind="prompt").inc(prompt_tokens)
        runner_tokens.labels(runner=self.name, kind="completion").inc(completion_tokens)
        model = data.get("model")
        return Completion(
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=model if isinstance(model, str) and model else self.config.model,
        )


def _count(usage: Any, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


def _json_object(text: str) -> Event:
    try:
        data = json.loads(text)
    except ValueError:
        raise _Failure("malformed", "not_json") from None
    if not isinstance(data, dict):
        raise _Failure("malformed", "wrong_shape")
    if isinstance(data.get("error"), dict):  # vLLM and llama.cpp report errors so
        raise _Failure("http", "server_error")
    return data


def _sse_objects(response: httpx2.Response) -> Iterator[Event]:
    finished = False
    for event in httpx2.EventSource(response):
        if event.data.strip() == "[DONE]":
            return
        if event.data:
            data = _json_object(event.data)
            finished = finished or bool(_choice(data).get("finish_reason"))
            yield data
    # Ended with neither [DONE] nor a finish_reason: the connection was cut and
    # the reply is truncated, not complete.
    if not finished:
        raise _Failure("connection", "stream_cut", retry=True)


def _choice(data: Event) -> dict[str, Any]:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _message_content(data: Event) -> str:
    message = _choice(data).get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        runner_errors.labels(runner=OpenAICompatRunner.name, kind="malformed").inc()
        raise RunnerError(
            _MESSAGES["malformed"], details={"reason": "no_content", "attempts": 1}
        )
    return content


def _delta_content(chunk: Event) -> str:
    delta = _choice(chunk).get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""
