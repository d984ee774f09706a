"""Limits with hard stops: each check names the limit that ran out and the agent at fault."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

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


class Budget:
    """The run's spending so far, checked before and after every model call."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.usage = Usage()
        self.started = time.monotonic()
        self.max_depth_seen = 0

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

    def check_before_call(self, agent_id: str) -> None:
        """Refuse a call that would pass the call limit, or come after another limit ran out."""
        lim = self.limits
        if lim.max_calls is not None and self.usage.calls >= lim.max_calls:
            raise BudgetExceeded(
                "calls", f"model call limit {lim.max_calls} reached at agent {agent_id}", agent_id
            )
        self.check_spent(agent_id)

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
            raise BudgetExceeded(
                "completion_tokens",
                f"completion token limit {lim.max_completion_tokens:,} passed "
                f"({used.completion_tokens:,}) at agent {agent_id}",
                agent_id,
            )
        if lim.max_cost is not None and used.cost > lim.max_cost:
            raise BudgetExceeded(
                "cost",
                f"cost limit ${lim.max_cost:.4f} passed (${used.cost:.4f}) at agent {agent_id}",
                agent_id,
            )
        self.check_time(agent_id)

    def check_time(self, agent_id: str | None = None) -> None:
        lim = self.limits
        if lim.max_time is not None and self.elapsed > lim.max_time:
            where = f" at agent {agent_id}" if agent_id else ""
            raise BudgetExceeded("time", f"time limit {lim.max_time:g} s reached{where}", agent_id)
