"""Our own client of an OpenAI-compatible server's chat endpoint (``--api-base``, ``openai/``).

litellm's stream wrapper spends about a millisecond of CPU and keeps a few KB per chunk (the
openai client builds a model of each chunk, then litellm its own), so a 2 MB reply in
16-character chunks took two minutes and 780 MB. Here a chunk is one ``json.loads``; a whole
reply is one too, where litellm and the openai client spend ~20 ms of CPU a call (a 64-agent
fan-out spent 1.7 s of the host's loop there). Failures
are raised as httpx's errors, ``StatusError`` or ``json.JSONDecodeError``, which
``LiteLLMModel`` names in the same words as litellm's; cost stays litellm's accounting.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

import httpx

from rlm_tui.models.base import DeltaCallback


@functools.cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class StatusError(Exception):
    """The server answered with an error status (its own message is the text)."""

    def __init__(self, status_code: int, message: str, response: httpx.Response) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response = response


class CutStream(Exception):
    """The stream ended before a chunk said the reply was finished."""


def stream_url(api_base: str) -> str | None:
    """The chat endpoint under ``api_base``, or None when litellm should take the call:
    credentials or a query in the URL, or not an http(s) URL (litellm names each of them)."""
    try:
        url = httpx.URL(api_base)
    except httpx.InvalidURL:
        return None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo or url.query:
        return None
    return f"{api_base.rstrip('/')}/chat/completions"


class ChatStream:
    """Streamed chat completions from one server, over one pooled httpx client."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def complete(
        self, body: dict[str, Any], api_key: str, on_delta: DeltaCallback | None
    ) -> tuple[str, dict[str, Any] | None]:
        """The reply's text and its usage (None if the server sent none)."""
        client = self._http()
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream"}
        async with client.stream("POST", self.url, json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                raise StatusError(response.status_code, _error_message(response), response)
            return await _read(response, on_delta)

    async def whole(self, body: dict[str, Any], api_key: str) -> tuple[str, dict[str, Any] | None]:
        """The reply's text and its usage, asked for unstreamed."""
        headers = {"Authorization": f"Bearer {api_key}"}
        response = await self._http().post(
            self.url, json={**body, "stream": False}, headers=headers
        )
        if response.status_code != 200:
            raise StatusError(response.status_code, _error_message(response), response)
        reply = json.loads(response.content)
        if reply.get("error"):
            raise StatusError(500, _error_message(response), response)
        message = reply["choices"][0]["message"]
        return message.get("content") or "", reply.get("usage")

    def _http(self) -> httpx.AsyncClient:
        """The pooled client; TLS settings are built once a process (30-70 ms each time)."""
        if self._client is None:
            tls = _tls() if self.url.startswith("https:") else False
            self._client = httpx.AsyncClient(timeout=self.timeout, verify=tls)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _read(
    response: httpx.Response, on_delta: DeltaCallback | None
) -> tuple[str, dict[str, Any] | None]:
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    finished = False
    rest = b""
    async for data in response.aiter_bytes():
        *lines, rest = (rest + data).split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event names
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return _finished(parts, usage, finished)
            chunk = json.loads(payload)
            if chunk.get("error"):
                error = chunk["error"]
                message = error.get("message", str(error)) if isinstance(error, dict) else error
                raise StatusError(500, str(message), response)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    parts.append(piece)
                    if on_delta is not None:
                        on_delta(piece)
                finished = finished or bool(choice.get("finish_reason"))
    return _finished(parts, usage, finished)


def _finished(
    parts: list[str], usage: dict[str, Any] | None, finished: bool
) -> tuple[str, dict[str, Any] | None]:
    if not finished:
        raise CutStream("the stream ended before the reply was complete")
    return "".join(parts), usage


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text or f"status {response.status_code}")
