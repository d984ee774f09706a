"""Model calls of a run: which model serves whom, and one call with its events and budget.

Every model call of every agent goes through ``ModelCalls.call``: it waits for a free slot,
takes its place in the budget (with its estimated prompt tokens and its model's price), its request, deltas and response leave as events, and its
usage is counted after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlm_tui.engine.budget import Budget, Need
from rlm_tui.events import (
    BudgetUpdate,
    Event,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    Notice,
    Usage,
)
from rlm_tui.models.base import CallInfo, Model, estimate_tokens, price_of
from rlm_tui.models.registry import make_model


class Models:
    """The root model, the sub-agents' model, and any model a cell names in ``llm_query``.

    Closed with the run are the models it made; one given to it is its maker's to close (the
    workbench keeps its models, and their connections, from one run to the next)."""

    def __init__(
        self,
        make: Callable[[str], Model],
        model: Model,
        sub_model: Model,
        sub_model_spec: str | None,
        made: list[Model],
    ) -> None:
        self._make = make
        self.model = model
        self.sub_model = sub_model
        self._sub_spec = sub_model_spec
        self._made = made

    @classmethod
    def build(
        cls,
        spec: str,
        sub_spec: str | None,
        make: Callable[[str], Model],
        model: Model | None = None,
        sub_model: Model | None = None,
    ) -> Models:
        made: list[Model] = []

        def made_here(name: str) -> Model:
            made.append(make(name))
            return made[-1]

        model = model or made_here(spec)
        if sub_model is None:
            sub_model = made_here(sub_spec) if sub_spec and sub_spec != spec else model
        return cls(make, model, sub_model, sub_spec, made)

    def for_depth(self, depth: int) -> Model:
        return self.model if depth == 0 else self.sub_model

    def named(self, name: str | None) -> Model:
        if not name or name in (self.sub_model.name, self._sub_spec):
            return self.sub_model
        model = self._make(name)
        self._made.append(model)
        return model

    async def aclose(self) -> None:
        for model in self._made:
            with contextlib.suppress(Exception):
                await model.aclose()


def model_maker(
    api_base: str | None, delay: float, stream: bool, timeout: float, sessions_dir: Path
) -> Callable[[str], Model]:
    """Make models by name with the run's provider settings (``replay:ID``: a session of the
    run's sessions directory)."""

    def make(name: str) -> Model:
        return make_model(
            name, api_base, delay=delay, stream=stream, timeout=timeout, sessions_dir=sessions_dir
        )

    return make


DELTA_INTERVAL = 0.25
"""Seconds between two delta events of one call: a few lines a second, however fast it streams."""


class _Deltas:
    """Streamed pieces of one call, gathered into a few events a second."""

    def __init__(self, emit: Callable[[str, bool], None]) -> None:
        self._emit = emit
        self._parts: list[str] = []
        self._last = time.monotonic()
        self._reset = False

    def add(self, piece: str) -> None:
        self._parts.append(piece)
        if time.monotonic() - self._last >= DELTA_INTERVAL:
            self.flush()

    def void(self) -> None:
        """A failed attempt: what it streamed is dropped, here and (next event) in the view."""
        self._parts.clear()
        self._reset = True

    def flush(self) -> None:
        if self._parts or self._reset:
            self._emit("".join(self._parts), self._reset)
        self._parts.clear()
        self._reset = False
        self._last = time.monotonic()


class ModelCalls:
    """Every model call of a run: at most ``concurrency`` at once, the rest queue."""

    def __init__(self, budget: Budget, emit: Callable[[Event], None], concurrency: int) -> None:
        self.budget = budget
        self._emit = emit
        self._slots = asyncio.Semaphore(concurrency)
        self._count = 0

    async def call(
        self,
        model: Model,
        info: CallInfo,
        messages: list[dict[str, Any]],
        new_messages: list[dict[str, Any]],
        reserved: bool = False,
    ) -> tuple[str, Usage]:
        """One model call; returns its text and its usage (already counted in the budget).

        A ``reserved`` call is the one the budget kept back for extraction: not checked."""
        need = Need(estimate_tokens(messages), price_of(model))
        async with self.budget.reserve(info.agent_id, self._slots, need, reserved) as max_tokens:
            return await self._call(model, info, messages, new_messages, max_tokens, reserved)

    async def _call(
        self,
        model: Model,
        info: CallInfo,
        messages: list[dict[str, Any]],
        new_messages: list[dict[str, Any]],
        max_tokens: int | None,
        reserved: bool,
    ) -> tuple[str, Usage]:
        agent_id = info.agent_id
        self._count += 1
        call_id = f"c{self._count}"
        self._emit(
            ModelRequest(
                agent_id=agent_id,
                call_id=call_id,
                step=info.step,
                model=model.name,
                purpose=info.purpose,
                messages=new_messages,
                max_tokens=max_tokens,
            )
        )
        started = time.monotonic()
        deltas = _Deltas(
            lambda text, reset: self._emit(
                ModelDelta(agent_id=agent_id, call_id=call_id, text=text, reset=reset)
            )
        )

        def on_retry(message: str) -> None:
            deltas.void()
            deltas.flush()
            self._emit(Notice(agent_id=agent_id, message=message))

        info = replace(info, max_tokens=max_tokens, on_retry=on_retry)
        completion = await model.complete(messages, info, deltas.add)
        deltas.flush()
        usage = Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            calls=1,
            cost=completion.cost,
            cached_tokens=completion.cached_tokens,
            reasoning_tokens=completion.reasoning_tokens,
        )
        self.budget.record(usage)
        self._emit(
            ModelResponse(
                agent_id=agent_id,
                call_id=call_id,
                step=info.step,
                model=completion.model or model.name,
                purpose=info.purpose,
                text=completion.text,
                usage=usage,
                duration=time.monotonic() - started,
            )
        )
        self._emit(
            BudgetUpdate(
                usage=self.budget.usage.model_copy(),
                depth=self.budget.max_depth_seen,
                elapsed=self.budget.elapsed,
            )
        )
        if not reserved:
            self.budget.check_spent(agent_id)
        return completion.text, usage
