"""Headless progress on stderr: one live line per active agent (depth, step, tokens, cost)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    BudgetStop,
    ErrorEvent,
    Event,
    KernelEvent,
    ModelResponse,
    Notice,
    RunStarted,
)


@dataclass
class _Line:
    agent_id: str
    depth: int
    step: int = 0
    tokens: int = 0
    cost: float = 0.0

    def render(self) -> str:
        return (
            f"  agent {self.agent_id:<8} depth {self.depth}  step {self.step:>3}  "
            f"{_tokens(self.tokens):>7} tokens  ${self.cost:.4f}"
        )


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


class Progress:
    """On a terminal, redraws its block of lines in place; elsewhere prints milestones only."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.interval = interval
        self.active: dict[str, _Line] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            demo = (
                "  [offline demo model: canned text, real kernels]" if event.model_is_demo else ""
            )
            self._say(f"rlm-tui: session {event.run_id}, model {event.model}{demo}")
        elif isinstance(event, AgentStarted):
            self.active[event.agent_id] = _Line(event.agent_id, event.depth)
            if not self.live:
                self._say(f"  agent {event.agent_id} started (depth {event.depth})")
        elif isinstance(event, ModelResponse) and event.agent_id in self.active:
            line = self.active[event.agent_id]
            line.step = max(line.step, event.step)
            line.tokens += event.usage.total_tokens
            line.cost += event.usage.cost
        elif isinstance(event, AgentFinished):
            line = self.active.pop(event.agent_id, None)
            if line is not None and not self.live:
                self._say(f"{line.render()}  {event.status}")
        elif isinstance(event, KernelEvent) and event.what == "died":
            self._say(f"  agent {event.agent_id}: kernel died: {event.reason}")
        elif isinstance(event, BudgetStop | ErrorEvent | Notice):
            self._say(f"  {event.message}")
        self._redraw()

    def _say(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _redraw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self._clear()
        lines = [line.render() for line in self.active.values()]
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        self._drawn = len(lines)

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def close(self) -> None:
        self._clear()
