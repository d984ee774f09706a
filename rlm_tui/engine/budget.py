"""Limits with hard stops: each check names the limit that ran out and the agent at fault.

Calls in flight count: before it starts, a call takes its place in the call budget, its
estimated prompt tokens, its fair share of the completion-token budget (sent to the provider
as ``max_tokens``) and, at its model's price, what that may cost; so any number of concurrent
calls cannot pass a limit between them (prompt tokens within their estimate).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from rlm_tui import defaults
from rlm_tui.errors import BudgetExceeded
from rlm_tui.events import Usage
from rlm_tui.models.base import Price


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
EXTRACT_PROMPT_TOKENS = 4096
"""Prompt tokens kept back for it (its trajectory is cut to what is left)."""
EXTRACT_SECONDS = 30.0
"""Seconds of ``max_time`` kept back for it (the run stops that much earlier)."""
MIN_SHARE = 32
"""The fewest completion tokens a call gets of a shared budget: below that it waits its turn."""


@dataclass(frozen=True)
class Need:
    """What a call is about to send: its prompt tokens (estimated) and its model's price."""

    prompt_tokens: int = 0
    price: Price | None = None


@dataclass(frozen=True)
class _Held:
    """What calls in flight may spend: prompt tokens, completion tokens (None: no limit),
    cost (at the model's price, when it has one)."""

    prompt_tokens: int
    completion_tokens: int | None
    cost: float

    def __add__(self, other: _Held) -> _Held:
        return _Held(
            self.prompt_tokens + other.prompt_tokens,
            (self.completion_tokens or 0) + (other.completion_tokens or 0),
            self.cost + other.cost,
        )

    def __sub__(self, other: _Held) -> _Held:
        return _Held(
            self.prompt_tokens - other.prompt_tokens,
            (self.completion_tokens or 0) - (other.completion_tokens or 0),
            self.cost - other.cost,
        )


class Budget:
    """The run's spending so far and the calls in flight, checked around every model call."""

    def __init__(
        self, limits: Limits, reserve_calls: int = 0, extract_price: Price | None = None
    ) -> None:
        """``reserve_calls``: calls kept back for the extraction at a budget stop, and with
        them a quarter (at most ``EXTRACT_*``) of each limit, so the extraction fits it too;
        ``extract_price``: the price of the model that extracts."""
        self.limits = limits
        self.reserve_calls = reserve_calls
        keep = bool(reserve_calls)
        self.reserve_tokens = int(_quarter(limits.max_completion_tokens, EXTRACT_TOKENS, keep))
        self.reserve_prompt = int(_quarter(limits.max_prompt_tokens, EXTRACT_PROMPT_TOKENS, keep))
        self.reserve_time = _quarter(limits.max_time, EXTRACT_SECONDS, keep)
        most = 0.0
        if extract_price is not None:
            tokens = self.reserve_prompt or EXTRACT_PROMPT_TOKENS
            most = tokens * extract_price.prompt
            most += (self.reserve_tokens or EXTRACT_TOKENS) * extract_price.completion
        self.reserve_cost = _quarter(limits.max_cost, most, keep)
        self._extract_price = extract_price
        self.usage = Usage()
        self.started = time.monotonic()
        self.earlier = 0.0
        """Seconds a resumed run's past already counted (as its usage is counted)."""
        self._stops = 0
        """Stops of the clock now (``clock_stopped``)."""
        self._stopped_since = 0.0
        self._stopped = 0.0
        """Seconds the clock stopped (a person's waits, re-run cells), not in ``elapsed``."""
        self.max_depth_seen = 0
        self.in_flight = 0
        self._held = _Held(0, 0, 0.0)
        """What the calls in flight may still spend."""
        self._wanting = 0
        """Calls waiting for a slot or their place, and those taking it."""
        self._settles = 0
        self._settled = asyncio.Condition()

    @property
    def elapsed(self) -> float:
        """The run's seconds, but those the clock stopped (``clock_stopped``): the time limit
        is the machine's and the provider's time, not the reader's, and a re-run cell's time
        was counted when the cell first ran."""
        now = time.monotonic()
        stopped = self._stopped + (now - self._stopped_since if self._stops else 0.0)
        return self.earlier + now - self.started - stopped

    @contextlib.contextmanager
    def clock_stopped(self) -> Iterator[None]:
        """Around time the limit does not count: a gate held for a person, a recorded cell
        run again on resume (its first run counted it); several at once are one stop."""
        if not self._stops:
            self._stopped_since = time.monotonic()
        self._stops += 1
        try:
            yield
        finally:
            self._stops -= 1
            if not self._stops:
                self._stopped += time.monotonic() - self._stopped_since

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
    async def reserve(
        self,
        agent_id: str,
        slots: asyncio.Semaphore,
        need: Need,
        reserved: bool = False,
    ) -> AsyncIterator[int | None]:
        """Wait for a free slot, then hold a place for one call; yields its ``max_tokens``
        (None: no completion limit). What the call may spend is held until it settles.

        A call that does not fit beside the calls in flight waits for them to settle; when
        nothing is in flight and it still does not fit, it is refused.
        """
        self._wanting += 1
        try:
            await asyncio.sleep(0)  # the other calls of a batch, started with this one, count
            await slots.acquire()
            try:
                held = self._take_reserved(agent_id, need) if reserved else None
                if held is None:
                    held = await self._take(agent_id, need)
            except BaseException:
                slots.release()
                raise
        finally:
            self._wanting -= 1
        self.in_flight += 1
        self._held = self._held + held
        try:
            yield held.completion_tokens
        finally:
            slots.release()
            self.in_flight -= 1
            self._held = self._held - held
            self._settles += 1
            async with self._settled:
                self._settled.notify_all()

    def _take_reserved(self, agent_id: str, need: Need) -> _Held:
        """The call kept back for the extraction at a budget stop: what is left is its own
        (its messages are cut to the prompt tokens left, see ``prompt_left``)."""
        lim, used = self.limits, self.usage
        kept: int | None = None
        if lim.max_completion_tokens is not None:
            kept = lim.max_completion_tokens - used.completion_tokens
            if kept <= 0:
                raise self._completion_exceeded(agent_id)
        price = need.price
        if lim.max_cost is not None and price is not None and price.completion > 0:
            prompt_cost = need.prompt_tokens * price.prompt
            affordable = math.floor((lim.max_cost - used.cost - prompt_cost) / price.completion)
            if affordable < 1:
                raise BudgetExceeded(
                    "cost", f"cost limit ${lim.max_cost:.4f} left no room to extract", agent_id
                )
            kept = affordable if kept is None else min(kept, affordable)
        return _Held(need.prompt_tokens, kept, 0.0)

    def prompt_left(self) -> int | None:
        """Prompt tokens the extraction may send (None: no limit): what is left of the prompt
        budget, and what the money left buys beside its completion."""
        lim, used, price = self.limits, self.usage, self._extract_price
        cap = lim.max_prompt_tokens
        left = None if cap is None else max(0, cap - used.prompt_tokens)
        if lim.max_cost is not None and price is not None and price.prompt > 0:
            money = lim.max_cost - used.cost
            money -= (self.reserve_tokens or EXTRACT_TOKENS) * price.completion
            affordable = max(0, math.floor(money / price.prompt))
            left = affordable if left is None else min(left, affordable)
        return left

    def time_left(self) -> float | None:
        """Seconds left of ``max_time`` (None: no limit); the extraction must end within it."""
        cap = self.limits.max_time
        return None if cap is None else max(0.0, cap - self.elapsed)

    @property
    def time_to_stop(self) -> float | None:
        """When the run stops for its time limit: its reserve before the limit."""
        cap = self.limits.max_time
        return None if cap is None else cap - self.reserve_time

    async def _take(self, agent_id: str, need: Need) -> _Held:
        lim = self.limits
        while True:
            seen = self._settles
            calls = self.usage.calls + self.in_flight
            if lim.max_calls is not None and calls >= lim.max_calls - self.reserve_calls:
                raise BudgetExceeded(
                    "calls",
                    f"model call limit {lim.max_calls} reached at agent {agent_id}",
                    agent_id,
                )
            self.check_spent(agent_id)
            held = self._fit(agent_id, need)
            if held is not None:
                return held
            async with self._settled:
                await self._settled.wait_for(functools.partial(self._settled_since, seen))

    def _settled_since(self, seen: int) -> bool:
        return self._settles != seen

    def _fit(self, agent_id: str, need: Need) -> _Held | None:
        """What this call may spend beside the calls in flight, or None to wait for them.

        The completion and cost budgets left are shared fairly among the calls waiting for
        their place (at least ``MIN_SHARE`` tokens a call), so a batch runs concurrently.
        """
        lim, used, held = self.limits, self.usage, self._held
        waiting = max(1, self._wanting)
        if lim.max_prompt_tokens is not None:
            room = lim.max_prompt_tokens - self.reserve_prompt - used.prompt_tokens
            room -= held.prompt_tokens
            if need.prompt_tokens > room:
                if self.in_flight:
                    return None
                raise BudgetExceeded(
                    "prompt_tokens",
                    f"prompt token limit {lim.max_prompt_tokens:,} would be passed: a call of "
                    f"about {need.prompt_tokens:,} with {max(room, 0):,} left at agent {agent_id}",
                    agent_id,
                )
        max_tokens: int | None = None
        if lim.max_completion_tokens is not None:
            left = lim.max_completion_tokens - self.reserve_tokens - used.completion_tokens
            free = left - (held.completion_tokens or 0)
            if left <= 0 or (free <= 0 and not self.in_flight):
                raise self._completion_exceeded(agent_id)
            if free <= 0:
                return None
            max_tokens = min(free, max(MIN_SHARE, free // waiting))
        price = need.price
        if lim.max_cost is None or price is None:
            return _Held(need.prompt_tokens, max_tokens, 0.0)
        room_cost = lim.max_cost - self.reserve_cost - used.cost - held.cost
        prompt_cost = price.prompt * need.prompt_tokens
        share = min(room_cost, max(room_cost / waiting, prompt_cost + MIN_SHARE * price.completion))
        if price.completion > 0:
            affordable = math.floor((share - prompt_cost) / price.completion)
            max_tokens = affordable if max_tokens is None else min(max_tokens, affordable)
        if share < prompt_cost or (max_tokens is not None and max_tokens < 1):
            if self.in_flight:
                return None
            raise BudgetExceeded(
                "cost",
                f"cost limit ${lim.max_cost:.4f} would be passed: a call of about "
                f"${prompt_cost + price.completion:.4f} with ${max(room_cost, 0):.4f} left "
                f"at agent {agent_id}",
                agent_id,
            )
        cost = prompt_cost + (max_tokens or 0) * price.completion
        return _Held(need.prompt_tokens, max_tokens, cost)

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
        if (left := self.time_to_stop) is not None and self.elapsed > left:
            raise self.time_exceeded(agent_id)

    def time_exceeded(self, agent_id: str | None = None) -> BudgetExceeded:
        where = f" at agent {agent_id}" if agent_id else ""
        kept = (
            f" ({self.reserve_time:g} s of it kept to extract an answer)"
            if self.reserve_time
            else ""
        )
        message = f"time limit {self.limits.max_time:g} s reached{where}{kept}"
        return BudgetExceeded("time", message, agent_id)


def _quarter(limit: float | None, most: float, keep: bool) -> float:
    """What the extraction keeps back of a limit: a quarter of it, at most ``most``."""
    return 0.0 if not keep or limit is None else min(most, limit / 4)
