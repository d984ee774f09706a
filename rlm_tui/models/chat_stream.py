"""Our own client of an OpenAI-compatible server's chat endpoint (``--api-base``, ``openai/``).

litellm's stream wrapper spends about a millisecond of CPU and keeps a few KB per chunk (the
openai client builds a model of each chunk, then litellm its own), so a 2 MB reply in
16-character chunks took two minutes and 780 MB. Here a chunk is one ``json.loads``; a whole
reply is one too, where litellm and the openai client spend ~20 ms of CPU a call (a 64-agent
fan-out spent 1.7 s of the host's loop there). The HTTP is aiohttp's (litellm imports it
anyway): a loopback call costs 0.4 ms of the host's CPU, httpx's 1.6 ms, and in a 7-agent run
every one of them is on the critical path. Failures are raised as aiohttp's errors,
``StatusError``, ``CutStream`` or ``json.JSONDecodeError``, which ``LiteLLMModel`` names in the
same words as litellm's; cost stays litellm's accounting.
"""

from __future__ import annotations

import functools
import json
import ssl
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rlm_tui import __version__
from rlm_tui.models.base import DeltaCallback

if TYPE_CHECKING:  # imported with the first call's session (litellm has imported it by then)
    import aiohttp

USER_AGENT = f"rlm-tui/{__version__}"


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's trust store (certifi, or SSL_CERT_FILE), built once a process (30-70 ms)."""
    import httpx

    return httpx.create_ssl_context()


class StatusError(Exception):
    """The server answered with an error status (its own message is the text)."""

    def __init__(self, status_code: int, message: str, response: aiohttp.ClientResponse) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response = response


class CutStream(Exception):
    """The stream ended before a chunk said the reply was finished."""


def stream_url(api_base: str) -> str | None:
    """The chat endpoint under ``api_base``, or None when litellm should take the call:
    credentials or a query in the URL, or not an http(s) URL (litellm names each of them)."""
    try:
        url = urlsplit(api_base)
        url.port  # noqa: B018 - a port that is no number raises here
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.hostname or "@" in url.netloc or url.query:
        return None
    return f"{api_base.rstrip('/')}/chat/completions"


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), looked up
    once: aiohttp's ``trust_env`` looks it up, and ``~/.netrc``, on a thread at every call."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


class ChatStream:
    """Chat completions from one server, over one pooled aiohttp session."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._proxy = _env_proxy(url)
        self._session: aiohttp.ClientSession | None = None

    async def complete(
        self, body: dict[str, Any], api_key: str, on_delta: DeltaCallback | None
    ) -> tuple[str, dict[str, Any] | None]:
        """The reply's text and its usage (None if the server sent none), streamed."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with self._post(body, api_key, "text/event-stream") as response:
            if response.status != 200:
                raise StatusError(response.status, await _error_message(response), response)
            return await _read(response, on_delta)

    async def whole(self, body: dict[str, Any], api_key: str) -> tuple[str, dict[str, Any] | None]:
        """The reply's text and its usage, asked for unstreamed."""
        async with self._post({**body, "stream": False}, api_key, "application/json") as response:
            if response.status != 200:
                raise StatusError(response.status, await _error_message(response), response)
            content = await response.read()
        reply = json.loads(content)
        if reply.get("error"):
            raise StatusError(500, _message_of(reply, content), response)
        message = reply["choices"][0]["message"]
        return message.get("content") or "", reply.get("usage")

    def _post(self, body: dict[str, Any], api_key: str, accept: str) -> Any:
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": accept,
            "Content-Type": "application/json",
        }
        data = json.dumps(body).encode()
        return self._http().post(self.url, data=data, headers=headers, proxy=self._proxy)

    def _http(self) -> aiohttp.ClientSession:
        """The pooled session; its timeouts are httpx's: to connect, and between two reads (a
        long stream is never cut while it flows)."""
        if self._session is None:
            import aiohttp

            tls = _tls() if self.url.startswith("https:") else False
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.timeout, sock_read=self.timeout
                ),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read(
    response: aiohttp.ClientResponse, on_delta: DeltaCallback | None
) -> tuple[str, dict[str, Any] | None]:
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    finished = False
    rest = b""
    async for data in response.content.iter_any():
        *lines, rest = (rest + data).split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event names
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return _finished(parts, usage, finished)
            chunk = json.loads(payload)
            if chunk.get("error"):
                raise StatusError(500, _message_of(chunk, payload), response)
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


async def _error_message(response: aiohttp.ClientResponse) -> str:
    content = await response.read()
    try:
        reply = json.loads(content)
    except ValueError:
        reply = None
    return _message_of(reply, content) or f"status {response.status}"


def _message_of(reply: Any, content: bytes) -> str:
    """The server's own message in an error reply, else its text."""
    error = reply.get("error") if isinstance(reply, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or content.decode(errors="replace"))
