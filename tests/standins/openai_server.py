"""A stand-in OpenAI-compatible model server on a loopback port, scriptable per test.

A real HTTP server in a thread: `POST /v1/chat/completions` (plain JSON, or SSE
chunks when the request says `stream: true`) and `GET /v1/models`. Each request
takes the next scripted `Behaviour` (a reply, an error status, a delay, a slow
drip, a stream that goes silent, a malformed body); when the script runs out, `then` (default: a plain
reply) answers. Every request is recorded, headers and JSON body.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.log_canary import CANARY

# Every chat test stores it as the assistant's message: it carries the canary no
# log line may show (tests/log_canary.py).
DEFAULT_REPLY = f"Hello from the stand-in model. ({CANARY})"


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request."""

    reply: str = DEFAULT_REPLY
    status: int = 200  # >= 400: an OpenAI-style error body with this status
    delay: float = 0.0  # seconds before the first byte (headers included)
    drip: float = 0.0  # seconds before each streamed chunk
    body: str | None = None  # sent as is (with `status`) instead of a reply
    cut_after: int | None = None  # streaming: hang up after this many chunks
    stall_after: int | None = None  # streaming: go silent, connection open, after
    # this many chunks (until the server stops)
    usage: bool = True  # report usage (streaming: only if include_usage was asked)
    model: str = "standin-model"
    prompt_tokens: int = 42


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any

    @property
    def messages(self) -> list[dict[str, str]]:
        return (
            list(self.json.get("messages", [])) if isinstance(self.json, dict) else []
        )

    @property
    def system(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "system"), "")


@dataclass
class StandinServer:
    then: Behaviour = field(default_factory=Behaviour)
    requests: list[Recorded] = field(default_factory=list)
    _queue: deque[Behaviour] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *behaviours: Behaviour, then: Behaviour | None = None) -> None:
        """Answer the next requests with `behaviours`, in order, then with `then`."""
        with self._lock:
            self._queue.extend(behaviours)
            if then is not None:
                self.then = then

    def next_behaviour(self, recorded: Recorded) -> Behaviour:
        with self._lock:
            self.requests.append(recorded)
            return self._queue.popleft() if self._queue else self.then

    def start(self) -> StandinServer:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        # A short poll interval makes shutdown() quick (the default waits 0.5 s).
        threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes handlers that are sleeping out a delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def closed_port_url() -> str:
    """A base URL on a loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) is expected, not news


class _Handler(BaseHTTPRequestHandler):
    standin: StandinServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/") != "/v1/models":
            return self._json(404, {"error": {"message": "not found"}})
        model = {
            "id": self.standin.then.model,
            "object": "model",
            "owned_by": "standin",
        }
        self._json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        try:
            request = json.loads(raw)
        except ValueError:
            request = raw
        behaviour = self._record(request)
        if self.standin.stopping.wait(behaviour.delay):
            return
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "not found"}})
        if behaviour.body is not None:
            return self._send(
                behaviour.status, "application/json", behaviour.body.encode()
            )
        if behaviour.status >= 400:
            error = {"message": f"scripted {behaviour.status}", "type": "server_error"}
            return self._json(behaviour.status, {"error": error})
        if isinstance(request, dict) and request.get("stream"):
            return self._stream(behaviour, request)
        self._json(200, _completion(behaviour))

    def _record(self, body: Any) -> Behaviour:
        headers = {k.lower(): v for k, v in self.headers.items()}
        return self.standin.next_behaviour(
            Recorded(self.command, self.path, headers, body)
        )

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, behaviour: Behaviour, request: dict[str, Any]) -> None:
        # HTTP/1.0: the body ends when the connection closes, as SSE allows.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        chunks += [{"content": piece} for piece in _pieces(behaviour.reply)]
        for i, delta in enumerate(chunks):
            if self.standin.stopping.wait(behaviour.drip) or i == behaviour.cut_after:
                return
            if i == behaviour.stall_after:
                self.standin.stopping.wait()
                return
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            self._event({**_envelope(behaviour, "chunk"), "choices": [choice]})
        last = {"index": 0, "delta": {}, "finish_reason": "stop"}
        self._event({**_envelope(behaviour, "chunk"), "choices": [last]})
        wants_usage = (request.get("stream_options") or {}).get("include_usage")
        if behaviour.usage and wants_usage:
            usage = {**_envelope(behaviour, "chunk"), "choices": []}
            self._event({**usage, "usage": _usage(behaviour)})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


def _pieces(text: str) -> list[str]:
    """`text` in word-sized pieces that join back to it exactly."""
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _envelope(behaviour: Behaviour, kind: str) -> dict[str, Any]:
    obj = "chat.completion.chunk" if kind == "chunk" else "chat.completion"
    return {
        "id": "chatcmpl-standin",
        "object": obj,
        "created": 0,
        "model": behaviour.model,
    }


def _usage(behaviour: Behaviour) -> dict[str, int]:
    completion = len(_pieces(behaviour.reply))
    return {
        "prompt_tokens": behaviour.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": behaviour.prompt_tokens + completion,
    }


def _completion(behaviour: Behaviour) -> dict[str, Any]:
    message = {"role": "assistant", "content": behaviour.reply}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    payload = {**_envelope(behaviour, "completion"), "choices": [choice]}
    if behaviour.usage:
        payload["usage"] = _usage(behaviour)
    return payload
