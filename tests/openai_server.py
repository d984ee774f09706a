"""A loopback OpenAI-compatible server for tests and benches: scripted replies, real HTTP.

Replies come from a script (a list consumed in order, or a function of the request), and can
be errors (429 with Retry-After, 500, 401), slow, malformed, or a stream cut in the middle.
Every request is recorded. TCP_NODELAY and a deep listen queue keep it from adding the
delayed-ACK stalls and SYN retransmits that a plain ``http.server`` shows under load.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str = ""
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    """Reported as usage.prompt_tokens_details.cached_tokens (a provider's prompt cache)."""
    reasoning_tokens: int | None = None
    """Reported as usage.completion_tokens_details.reasoning_tokens."""
    malformed: bool = False
    cut_stream: bool = False
    stream_usage: bool = True
    """False: a stream that ends without a usage chunk, as some servers send."""
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[dict[str, Any]], Reply]


def prompt_chars(request: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", ""))) for m in request.get("messages", []))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: OpenAIServer

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def handle_one_request(self) -> None:
        """A client that hung up (a timeout test) is not an error worth printing."""
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        owner.record(request, dict(self.headers), self.path, self.client_address)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": "not found"}})
            return
        reply = owner.next_reply(request)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            headers = dict(reply.headers)
            if reply.retry_after is not None:
                headers["Retry-After"] = f"{reply.retry_after:g}"
            message = reply.text or f"scripted error {reply.status}"
            self._json(reply.status, {"error": {"message": message, "type": "test"}}, headers)
            return
        usage: dict[str, Any] = {
            "prompt_tokens": reply.prompt_tokens
            if reply.prompt_tokens is not None
            else prompt_chars(request) // 4,
            "completion_tokens": reply.completion_tokens
            if reply.completion_tokens is not None
            else max(1, len(reply.text) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if reply.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
        if reply.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
        model = request.get("model", "test-model")
        if request.get("stream"):
            with_usage = bool(request.get("stream_options")) and reply.stream_usage
            self._stream(reply, model, usage, with_usage)
        elif reply.malformed:
            self._raw(200, b'{"id": "x", "choices": [{"message": ', "application/json")
        else:
            self._json(200, _completion(reply.text, model, usage))

    def _stream(self, reply: Reply, model: str, usage: dict[str, Any], with_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        if reply.malformed:
            self.wfile.write(b'data: {"id": "x", "choices": [{"delta": \n\n')
        pieces = _pieces(reply.text)
        for i, piece in enumerate(pieces):
            if reply.cut_stream and i >= max(1, len(pieces) // 2):
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._event(
                _chunk(model, {"content": piece} if i else {"role": "assistant", "content": piece})
            )
        self._event(_chunk(model, {}, finish="stop"))
        if with_usage:
            self._event({**_chunk(model, None), "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _event(self, obj: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(obj).encode(), "application/json", headers)

    def _raw(
        self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def _completion(text: str, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


class OpenAIServer:
    """``with OpenAIServer() as server: server.script([...]); server.base_url``."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()
        self._replies: list[Reply] = []
        self._responder: Responder | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        """What each request asked for: an absolute URL when this server is used as a proxy."""
        self.clients: list[tuple[str, int]] = []
        """Each request's client address: one per connection the client opened."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, script: list[Reply] | Responder) -> None:
        with self._lock:
            if callable(script):
                self._responder, self._replies = script, []
            else:
                self._responder, self._replies = None, list(script)

    def record(
        self, request: dict[str, Any], headers: dict[str, str], path: str, client: tuple[str, int]
    ) -> None:
        with self._lock:
            self.requests.append(request)
            self.headers.append(headers)
            self.paths.append(path)
            self.clients.append(client)

    def next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            if self._responder is not None:
                responder = self._responder
            elif self._replies:
                return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]
            else:
                return Reply(status=500, text="the test server has no scripted reply")
        return responder(request)

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
