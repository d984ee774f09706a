"""The gate every cell passes before it runs: pause, step, breakpoints, edits and skips.

The gate is where a person meets the run. A cell that must wait is registered as pending;
``replace`` changes its code while it waits, ``skip`` drops it, ``step`` lets exactly one
pending cell through, ``resume`` lets everything through and stops pausing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from rlm_tui.errors import UsageError

GateKind = Literal["cell", "agent_start"]


class Breakpoints(BaseModel):
    every_cell: bool = False
    subagent_start: bool = False
    min_depth: int | None = None
    on_error: bool = False


@dataclass
class Pending:
    """A cell (or a sub-agent about to start) held at the gate."""

    kind: GateKind
    agent_id: str
    gate_id: str
    code: str
    reason: str
    released: asyncio.Event = field(default_factory=asyncio.Event)
    skipped: bool = False
    edited: bool = False


@dataclass(frozen=True)
class Decision:
    code: str
    skipped: bool
    edited: bool


class Control:
    """Run-wide control state; the engine awaits ``gate``, people call the rest."""

    def __init__(
        self,
        breakpoints: Breakpoints | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.breakpoints = breakpoints or Breakpoints()
        self.paused = False
        self.pending: dict[str, Pending] = {}
        self._free_passes = 0
        self._errored_agents: set[str] = set()
        self._on_change = on_change or (lambda: None)

    # -- the engine side -------------------------------------------------------------------

    def wait_reason(self, kind: GateKind, agent_id: str, depth: int) -> str | None:
        """Why this gate must hold, or None to pass."""
        bp = self.breakpoints
        if kind == "agent_start":  # pausing holds cells; only this breakpoint holds a start
            return "breakpoint: sub-agent start" if bp.subagent_start and depth > 0 else None
        if self._free_passes > 0:
            self._free_passes -= 1
            return None
        if self.paused:
            return "paused"
        if bp.every_cell:
            return "breakpoint: every cell"
        if bp.min_depth is not None and depth >= bp.min_depth:
            return f"breakpoint: depth >= {bp.min_depth}"
        if bp.on_error and agent_id in self._errored_agents:
            self._errored_agents.discard(agent_id)
            return "breakpoint: previous cell failed"
        return None

    async def hold(self, pending: Pending) -> Decision:
        """Wait until a person releases this gate; the code may have been replaced meanwhile."""
        self.pending[pending.gate_id] = pending
        self.paused = True
        self._on_change()
        try:
            await pending.released.wait()
        finally:
            self.pending.pop(pending.gate_id, None)
        return Decision(pending.code, pending.skipped, pending.edited)

    def note_cell_error(self, agent_id: str) -> None:
        self._errored_agents.add(agent_id)

    # -- the person's side -----------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True
        self._free_passes = 0
        self._on_change()

    def resume(self) -> None:
        self.paused = False
        self._free_passes = 0
        for pending in list(self.pending.values()):
            pending.released.set()
        self._on_change()

    def step(self, gate_id: str | None = None) -> None:
        """Let one cell through (the oldest waiting, or ``gate_id``), then hold at the next."""
        self.paused = True
        waiting = self._get(gate_id) if gate_id is not None else self._oldest()
        if waiting is None:
            self._free_passes = 1
        else:
            waiting.released.set()
        self._on_change()

    def replace(self, gate_id: str, code: str) -> Pending:
        pending = self._get(gate_id)
        if pending.kind != "cell":
            raise UsageError(f"{gate_id} is a sub-agent start, not a cell")
        pending.code = code
        pending.edited = True
        return pending

    def skip(self, gate_id: str) -> Pending:
        pending = self._get(gate_id)
        pending.skipped = True
        pending.released.set()
        return pending

    def release_all(self) -> None:
        """Free every waiting gate (used when the run stops)."""
        for pending in list(self.pending.values()):
            pending.released.set()

    def _oldest(self) -> Pending | None:
        return next(iter(self.pending.values()), None)

    def _get(self, gate_id: str) -> Pending:
        try:
            return self.pending[gate_id]
        except KeyError:
            waiting = ", ".join(self.pending) or "none"
            raise UsageError(f"{gate_id} is not waiting at the gate (waiting: {waiting})") from None
