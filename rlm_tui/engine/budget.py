"""Limits with hard stops: each check names the limit that ran out and the agent at fault.

Calls in flight count: a call takes its place in the call budget, and its share of the
completion-token budget (sent to the provider as ``max_tokens``), before it starts, so any
number of concurrent calls cannot pass a limit between them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import BaseModel, Field, field_validator

from rlm_tui import defaults
from rlm_tui.errors import BudgetExceeded
from rlm_tui.events import Usage


class Limits(BaseModel):
    """Run-wide limits; ``None`` means unlimited."""

    max_depth: int = Field(defaults.MAX_DEPTH, ge=0)
    max_iterations: int = Field(defaults.MAX_ITERATIONS, ge=1)
    max_calls: int | None = Field(None, ge=1)
    max_prompt_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)
    max_time: float | None = Field(None, gt=0)

    @field_validator("max_cost", "max_time")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


EXTRACT_TOKENS = 256
"""Completion tokens kept back for the extraction at a budget stop (at most a quarter)."""


class Budget:
    """The run's spending so far and the calls in flight, checked around every model call."""

    def __init__(self, limits: Limits, reserve_calls: int = 0) -> None:
        self.limits = limits
        self.reserve_calls = reserve_calls
        """Calls kept back from ``max_calls`` (the extraction at a budget stop)."""
        cap = limits.max_completion_tokens
        self.reserve_tokens = min(EXTRACT_TOKENS, cap // 4) if reserve_calls and cap else 0
        """Completion tokens kept back with them, so the extraction fits the limit too."""
        self.usage = Usage()
        self.started = time.monotonic()
        self.max_depth_seen = 0
        self.in_flight = 0
        self._reserved_completion = 0
        self._settled = asyncio.Condition()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_depth(self, depth: int, agent_id: str) -> None:
        if depth > self.limits.max_depth:
            raise BudgetExceeded(
                "depth",
                f"depth limit {self.limits.max_depth} reached: agent {agent_id} would be at "
                f"depth {depth}",
                agent_id,
            )
        self.max_depth_seen = max(self.max_depth_seen, depth)

    def check_iterations(self, step: int, agent_id: str) -> None:
        if step > self.limits.max_iterations:
            raise BudgetExceeded(
                "iterations",
                f"iteration limit {self.limits.max_iterations} reached by agent {agent_id}",
                agent_id,
            )

    @asynccontextmanager
    async def reserve(self, agent_id: str, reserved: bool = False) -> AsyncIterator[int | None]:
        """Hold a place for one call; yields its ``max_tokens`` (None: no completion limit).

        A call that finds the completion budget all reserved by calls in flight waits for
        them to settle; when nothing is left it is refused.
        """
        max_tokens = await self._take(agent_id, reserved)
        try:
            yield max_tokens
        finally:
            self.in_flight -= 1
            self._reserved_completion -= max_tokens or 0
            async with self._settled:
                self._settled.notify_all()

    async def _take(self, agent_id: str, reserved: bool) -> int | None:
        lim = self.limits
        if reserved:  # the call kept back for the extraction at a budget stop
            if lim.max_completion_tokens is None:
                self.in_flight += 1
                return None
            kept = lim.max_completion_tokens - self.usage.completion_tokens
            if kept <= 0:
                raise self._completion_exceeded(agent_id)
            self.in_flight += 1
            self._reserved_completion += kept
            return kept
        while True:
            calls = self.usage.calls + self.in_flight
            if lim.max_calls is not None and calls >= lim.max_calls - self.reserve_calls:
                raise BudgetExceeded(
                    "calls",
                    f"model call limit {lim.max_calls} reached at agent {agent_id}",
                    agent_id,
                )
            self.check_spent(agent_id)
            if lim.max_completion_tokens is None:
                self.in_flight += 1
                return None
            left = lim.max_completion_tokens - self.reserve_tokens - self.usage.completion_tokens
            free = left - self._reserved_completion
            if left <= 0 or (free <= 0 and self.in_flight == 0):
                raise self._completion_exceeded(agent_id)
            if free > 0:
                self.in_flight += 1
                self._reserved_completion += free
                return free
            async with self._settled:
                await self._settled.wait()

    def record(self, usage: Usage) -> None:
        self.usage.add(usage)

    def check_spent(self, agent_id: str) -> None:
        lim, used = self.limits, self.usage
        if lim.max_prompt_tokens is not None and used.prompt_tokens > lim.max_prompt_tokens:
            raise BudgetExceeded(
                "prompt_tokens",
                f"prompt token limit {lim.max_prompt_tokens:,} passed ({used.prompt_tokens:,}) "
                f"at agent {agent_id}",
                agent_id,
            )
        if (
            lim.max_completion_tokens is not None
            and used.completion_tokens > lim.max_completion_tokens
        ):
            raise self._completion_exceeded(agent_id)
        if lim.max_cost is not None and used.cost > lim.max_cost:
            raise BudgetExceeded(
                "cost",
                f"cost limit ${lim.max_cost:.4f} passed (${used.cost:.4f}) at agent {agent_id}",
                agent_id,
            )
        self.check_time(agent_id)

    def _completion_exceeded(self, agent_id: str) -> BudgetExceeded:
        lim, used = self.limits, self.usage
        return BudgetExceeded(
            "completion_tokens",
            f"completion token limit {lim.max_completion_tokens:,} reached "
            f"({used.completion_tokens:,}) at agent {agent_id}",
            agent_id,
        )

    def check_time(self, agent_id: str | None = None) -> None:
        lim = self.limits
        if lim.max_time is not None and self.elapsed > lim.max_time:
            where = f" at agent {agent_id}" if agent_id else ""
            raise BudgetExceeded("time", f"time limit {lim.max_time:g} s reached{where}", agent_id)
