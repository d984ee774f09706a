"""Model calls of a run: which model serves whom, and one call with its events and budget.

Every model call of every agent goes through ``ModelCalls.call``: the budget is checked
before it, its request, deltas and response leave as events, its usage is counted after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from rlm_tui.engine.budget import Budget
from rlm_tui.events import BudgetUpdate, Event, ModelDelta, ModelRequest, ModelResponse, Usage
from rlm_tui.models.base import CallInfo, Model
from rlm_tui.models.registry import make_model


class Models:
    """The root model, the sub-agents' model, and any model a cell names in ``llm_query``."""

    def __init__(
        self,
        make: Callable[[str], Model],
        model: Model,
        sub_model: Model,
        sub_model_spec: str | None,
    ) -> None:
        self._make = make
        self.model = model
        self.sub_model = sub_model
        self._sub_spec = sub_model_spec
        self._made: list[Model] = []

    @classmethod
    def build(
        cls,
        spec: str,
        sub_spec: str | None,
        make: Callable[[str], Model],
        model: Model | None = None,
        sub_model: Model | None = None,
    ) -> Models:
        model = model or make(spec)
        if sub_model is None:
            sub_model = make(sub_spec) if sub_spec and sub_spec != spec else model
        return cls(make, model, sub_model, sub_spec)

    def for_depth(self, depth: int) -> Model:
        return self.model if depth == 0 else self.sub_model

    def named(self, name: str | None) -> Model:
        if not name or name in (self.sub_model.name, self._sub_spec):
            return self.sub_model
        model = self._make(name)
        self._made.append(model)
        return model

    async def aclose(self) -> None:
        models = {id(m): m for m in (self.model, self.sub_model, *self._made)}
        for model in models.values():
            with contextlib.suppress(Exception):
                await model.aclose()


def model_maker(
    api_base: str | None, delay: float, stream: bool, on_retry: Callable[[str], None]
) -> Callable[[str], Model]:
    """Make models by name with the run's provider settings."""

    def make(name: str) -> Model:
        return make_model(name, api_base, delay=delay, stream=stream, on_retry=on_retry)

    return make


class ModelCalls:
    def __init__(self, budget: Budget, emit: Callable[[Event], None]) -> None:
        self.budget = budget
        self._emit = emit
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
        agent_id = info.agent_id
        if not reserved:
            self.budget.check_before_call(agent_id)
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
            )
        )
        started = time.monotonic()

        def on_delta(text: str) -> None:
            self._emit(ModelDelta(agent_id=agent_id, call_id=call_id, text=text))

        completion = await model.complete(messages, info, on_delta)
        usage = Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            calls=1,
            cost=completion.cost,
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
