"""Any provider through litellm: streaming, usage, cost, and our own retries with backoff.

``import litellm`` costs ~2 s here, so it happens on first use (or in ``preload`` on a
thread). Its price list is read from the package, never fetched: LITELLM_LOCAL_MODEL_COST_MAP
is set before the import. Retries are ours (429, 5xx, timeouts, broken connections, cut
streams, malformed replies), so every failure ends as one line in a ModelError. A stream
from an OpenAI-compatible server given by URL is read by ``chat_stream`` (litellm's stream
wrapper costs a millisecond a chunk); cost is litellm's accounting either way.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
from collections.abc import Iterator
from typing import Any

from rlm_tui import heap
from rlm_tui.errors import ModelError, UsageError
from rlm_tui.models.base import CallInfo, Completion, DeltaCallback, Message, Price
from rlm_tui.models.chat_stream import ChatStream, CutStream, stream_url
from rlm_tui.redact import mask_url_credentials, redact, remember

_RETRY_AFTER_CAP = 30.0
_KEY_VARS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
}


@functools.cache
def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    with heap.import_settled():
        import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.set_verbose = False
    litellm.num_retries = 0
    return litellm


def preload() -> None:
    """Import litellm now (call it in a thread while kernels start)."""
    _litellm()


def _provider(model: str, api_base: str | None) -> str:
    litellm = _litellm()
    try:
        return str(litellm.get_llm_provider(model=model, api_base=api_base)[1])
    except Exception:
        if api_base:
            return "openai"
        raise


def check_model_name(model: str, api_base: str | None = None) -> None:
    """Refuse a model litellm cannot route, before any kernel starts (no network)."""
    try:
        _provider(model, api_base)
    except Exception:
        raise UsageError(
            f"unknown model '{model}': litellm cannot tell its provider "
            "(use provider/model, e.g. openai/gpt-4o-mini, or pass --api-base)"
        ) from None


def check_api_key(model: str, api_base: str | None = None) -> None:
    """Refuse a model whose provider key is not in the environment, before any kernel starts.

    litellm's ``validate_environment`` knows each provider's variables. A server given with
    ``--api-base`` (a local or self-hosted one) may need no key, so it is not checked.
    """
    if api_base:
        return
    try:
        found = _litellm().validate_environment(model=model)
    except Exception:  # a provider litellm cannot check offline: the first call will tell
        return
    # only API keys: a base URL has a default (ollama), cloud credentials other sources (AWS)
    missing = [name for name in found.get("missing_keys") or [] if name.endswith("_API_KEY")]
    if missing and not found.get("keys_in_environment"):
        raise UsageError(f"model '{model}' needs {' and '.join(missing)} set in the environment")


class LiteLLMModel:
    is_demo = False

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        stream: bool = True,
    ) -> None:
        self.name = model
        self.api_base = api_base
        self._api_key = api_key
        remember(api_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.stream = stream
        self._route = model
        self._chat_stream: ChatStream | None = None
        self._price: Price | None = None
        self._priced = False
        if api_base and "/" not in model:
            try:
                _litellm().get_llm_provider(model=model)
            except Exception:
                self._route = f"openai/{model}"

    def price(self) -> Price | None:
        """The model's price in litellm's list (None for one it does not price: free)."""
        if not self._priced:
            self._priced = True
            try:
                info = _litellm().get_model_info(self._route)
                prompt = float(info.get("input_cost_per_token") or 0.0)
                completion = float(info.get("output_cost_per_token") or 0.0)
                self._price = Price(prompt, completion) if prompt or completion else None
            except Exception:
                self._price = None
        return self._price

    @property
    def _where(self) -> str:
        where = f" at {mask_url_credentials(self.api_base)}" if self.api_base else ""
        return f"model '{self.name}'{where}"

    async def complete(
        self, messages: list[Message], info: CallInfo, on_delta: DeltaCallback | None = None
    ) -> Completion:
        litellm = _litellm()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(litellm, messages, info.max_tokens, on_delta)
            except Exception as exc:
                retry, why, wait_hint = self._classify(litellm, exc)
            why = redact(why, self._api_key)
            if not retry:
                raise ModelError(why)
            if attempt > self.max_retries:
                raise ModelError(f"{why} after {attempt} attempts")
            delay = wait_hint if wait_hint is not None else self._backoff(attempt)
            if info.on_retry is not None:
                info.on_retry(f"{why}; retry {attempt}/{self.max_retries} in {delay:.1f} s")
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return float(self.backoff * (2 ** (attempt - 1)) * (0.75 + random.random() / 2))

    async def _once(
        self,
        litellm: Any,
        messages: list[Message],
        max_tokens: int | None,
        on_delta: DeltaCallback | None,
    ) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self._route,
            "messages": messages,
            "timeout": self.timeout,
            "num_retries": 0,
        }
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        elif self.api_base and _provider(self._route, self.api_base) == "openai":
            kwargs["api_key"] = os.environ.get("OPENAI_API_KEY") or "no-key"
        reader = self._reader(litellm)
        if reader is None and not self.stream:
            response = await litellm.acompletion(**kwargs)
            text = response.choices[0].message.content or ""
            return self._completion(litellm, messages, text, response.usage, response)
        if reader is not None:
            body: dict[str, Any] = {k: kwargs[k] for k in ("messages", "max_tokens") if k in kwargs}
            body["model"] = self._route.removeprefix("openai/")
            if self.stream:
                text, usage = await reader.complete(body, kwargs["api_key"], on_delta)
            else:
                text, usage = await reader.whole(body, kwargs["api_key"])
        else:
            text, usage = await self._litellm_stream(litellm, kwargs, on_delta)
        if not usage:  # a server that sends no usage: counted by litellm's tokenizer
            usage = {
                "prompt_tokens": litellm.token_counter(model=self._route, messages=messages),
                "completion_tokens": litellm.token_counter(model=self._route, text=text),
            }
        whole = litellm.ModelResponse(  # for litellm's cost accounting
            model=self._route,
            choices=[{"index": 0, "message": {"role": "assistant", "content": text}}],
            usage=usage,
        )
        return self._completion(litellm, messages, text, whole.usage, whole)

    def _reader(self, litellm: Any) -> ChatStream | None:
        """Our own client for an OpenAI-compatible server given by URL, else None."""
        if self._chat_stream is None and self.api_base:
            url = stream_url(self.api_base)
            if url and _provider(self._route, self.api_base) == "openai":
                self._chat_stream = ChatStream(url, self.timeout)
        return self._chat_stream

    async def _litellm_stream(
        self, litellm: Any, kwargs: dict[str, Any], on_delta: DeltaCallback | None
    ) -> tuple[str, Any]:
        """Any other provider's stream through litellm: the text and the usage of its end.

        Only the pieces' text is kept (not litellm's chunk objects, a few KB each)."""
        stream = await litellm.acompletion(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        usage = None
        finished = False
        async for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            for choice in chunk.choices or []:
                piece = getattr(choice.delta, "content", None)
                if piece:
                    parts.append(piece)
                    if on_delta is not None:
                        on_delta(piece)
                if choice.finish_reason:
                    finished = True
        if not finished:
            raise CutStream("the stream ended before the reply was complete")
        return "".join(parts), usage

    def _completion(
        self, litellm: Any, messages: list[Message], text: str, usage: Any, response: Any
    ) -> Completion:
        """Tokens and cost by litellm's own accounting: cached prompt tokens at the cache-read
        price, reasoning tokens counted; a reply without usage is counted by its tokenizer."""
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        if prompt is None:
            prompt = litellm.token_counter(model=self._route, messages=messages)
        if completion is None:
            completion = litellm.token_counter(model=self._route, text=text)
        return Completion(
            text=text,
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cost=self._cost(litellm, response, messages, text),
            model=self.name,
            cached_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
            reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
        )

    def _cost(self, litellm: Any, response: Any, messages: list[Message], text: str) -> float:
        if self.price() is None:  # litellm prices it at nothing, after 2 ms of failed lookups
            return 0.0
        try:
            cost = litellm.completion_cost(
                completion_response=response, model=self._route, messages=messages, completion=text
            )
            return float(cost or 0.0)
        except Exception:  # a model litellm has no price for (a local server): free
            return 0.0

    def _classify(self, litellm: Any, exc: Exception) -> tuple[bool, str, float | None]:
        """(retry?, one-line reason naming what happened, server's Retry-After).

        litellm wraps the telling error (a JSON error, a cut stream, a bad URL) in a "server
        error 500", so the causes are looked at before the status.
        """
        import aiohttp
        import httpx

        e = litellm.exceptions
        causes = list(_causes(exc))

        def caused_by(*kinds: type[BaseException]) -> bool:
            return any(isinstance(cause, kinds) for cause in causes)

        status = getattr(exc, "status_code", None)
        where = self._where
        if caused_by(httpx.InvalidURL, httpx.UnsupportedProtocol):
            return False, f"{where}: the API base is not a URL (like http://host:port/v1)", None
        if caused_by(e.Timeout, httpx.TimeoutException, TimeoutError):
            return True, f"{where}: timed out after {self.timeout:g} s", None
        if "credentials encoded in URL" in str(exc):
            return (
                False,
                f"{where}: the API base holds credentials, which cannot be sent "
                "with a key: put the key in the provider's API key variable",
                None,
            )
        if "repeating the same chunk" in str(exc):
            return False, f"{where}: the reply repeated one piece over and over (stopped)", None
        if caused_by(json.JSONDecodeError):
            return True, f"{where}: malformed reply (not valid JSON)", None
        cut = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)
        if caused_by(CutStream, e.MidStreamFallbackError, httpx.RemoteProtocolError, *cut):
            return True, f"{where}: the stream was cut before the reply was complete", None
        unreachable = (httpx.ConnectError, aiohttp.ClientConnectionError, ConnectionError)
        if caused_by(*unreachable, e.APIConnectionError):
            target = mask_url_credentials(self.api_base) if self.api_base else where
            return True, f"cannot reach {target}: connection failed", None
        if isinstance(exc, e.AuthenticationError) or status == 401:
            var = _KEY_VARS.get(self._provider_name(), "the provider's API key variable")
            return False, f"authentication failed for {where}: check {var}", None
        if isinstance(exc, e.NotFoundError) or status == 404:
            return False, f"unknown model or endpoint: {where} was not found", None
        if isinstance(exc, e.PermissionDeniedError) or status == 403:
            return False, f"permission denied for {where}", None
        if isinstance(exc, e.RateLimitError) or status == 429:
            return True, f"{where}: rate limited (429)", _retry_after(exc)
        if isinstance(exc, e.BadRequestError) or status == 400:
            return False, f"{where} refused the request: {_first_line(exc)}", None
        if isinstance(status, int) and status >= 500:
            return True, f"{where}: server error {status}", _retry_after(exc)
        if isinstance(exc, e.APIError | ValueError | KeyError | AttributeError):
            return True, f"{where}: malformed reply ({_first_line(exc)})", None
        return False, f"{where}: {type(exc).__name__}: {_first_line(exc)}", None

    def _provider_name(self) -> str:
        try:
            return _provider(self._route, self.api_base)
        except Exception:
            return ""

    async def aclose(self) -> None:
        if self._chat_stream is not None:
            await self._chat_stream.aclose()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it: litellm wraps the telling error several times."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return min(float(value), _RETRY_AFTER_CAP) if value is not None else None
    except ValueError:
        return None


def _detail(usage: Any, details: str, name: str) -> int:
    """A token count from the usage's ``*_tokens_details``, 0 when the provider gives none."""
    return int(getattr(getattr(usage, details, None), name, None) or 0)


def _first_line(exc: Exception) -> str:
    """The server's own words, without litellm's "litellm.XError: XException - " wrapping."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^(?:(?:litellm\.)?\w+(?:Error|Exception)(?::| -) )+", "", line)[:300]
