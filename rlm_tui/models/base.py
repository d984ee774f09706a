"""The model protocol: what the engine needs of any model (litellm, demo, replay)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Message = dict[str, Any]
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class CallInfo:
    """Who is asking: lets offline models (demo, replay) answer per agent and step."""

    agent_id: str
    depth: int
    step: int
    purpose: Literal["agent", "llm_query"]
    query: str


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
