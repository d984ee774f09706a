"""The model protocol: what the engine needs of any model (litellm, demo, replay)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rlm_tui.events import CallPurpose

Message = dict[str, Any]
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class CallInfo:
    """Who is asking (offline models answer per agent and step) and what the call may do."""

    agent_id: str
    depth: int
    step: int
    purpose: CallPurpose
    query: str
    max_tokens: int | None = None
    """The most completion tokens the reply may take (what is left of the budget)."""
    on_retry: Callable[[str], None] | None = None
    """Told why an attempt failed before the next one: what that attempt streamed is void."""


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str = ""
    cached_tokens: int = 0
    """Prompt tokens served from the provider's cache (part of prompt_tokens, priced lower)."""
    reasoning_tokens: int = 0
    """Completion tokens spent on hidden reasoning (part of completion_tokens)."""


@dataclass(frozen=True)
class Price:
    """US dollars per token, as litellm's price list has them."""

    prompt: float
    completion: float


def estimate_tokens(messages: list[Message]) -> int:
    """Prompt tokens of messages before they are sent: characters / 4."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 4


def price_of(model: Model) -> Price | None:
    """A model's price per token; None when it has none (offline models need not say)."""
    price = getattr(model, "price", None)
    return price() if callable(price) else None


class Model(Protocol):
    name: str
    is_demo: bool

    async def complete(
        self,
        messages: list[Message],
        info: CallInfo,
        on_delta: DeltaCallback | None = None,
    ) -> Completion:
        """Answer the conversation; stream text pieces to ``on_delta`` if given.

        Raises ``rlm_tui.errors.ModelError`` with a one-line message on failure.
        """
        ...

    async def aclose(self) -> None: ...
