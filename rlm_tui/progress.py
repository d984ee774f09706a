"""Headless progress on stderr through rich: on a terminal a live table of the active agents
(depth, step, tokens, cost) under the milestones; elsewhere the milestones as plain lines."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
class _Agent:
    agent_id: str
    depth: int
    step: int = 0
    tokens: int = 0
    cost: float = 0.0

    def summary(self) -> str:
        return (
            f"  agent {self.agent_id:<8} depth {self.depth}  step {self.step:>3}  "
            f"{_tokens(self.tokens):>7} tokens  ${self.cost:.4f}"
        )


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


class Progress:
    """Subscribe it to a run; ``close`` it when the run ends (the live table goes away)."""

    def __init__(self, stream: TextIO | None = None, refresh_per_second: float = 10) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.active: dict[str, _Agent] = {}
        self._live: Live | None = None
        if self.console.is_terminal:
            self._live = Live(
                self._table(),
                console=self.console,
                refresh_per_second=refresh_per_second,
                transient=True,
                redirect_stdout=False,  # stdout carries the answer alone
                redirect_stderr=False,
            )
            self._live.start()

    def __call__(self, event: Event) -> None:
        changed = isinstance(event, AgentStarted | ModelResponse | AgentFinished)
        if isinstance(event, RunStarted):
            demo = (
                "  [offline demo model: canned text, real kernels]" if event.model_is_demo else ""
            )
            self._say(f"rlm-tui: session {event.run_id}, model {event.model}{demo}")
        elif isinstance(event, AgentStarted):
            self.active[event.agent_id] = _Agent(event.agent_id, event.depth)
            if self._live is None:
                self._say(f"  agent {event.agent_id} started (depth {event.depth})")
        elif isinstance(event, ModelResponse) and event.agent_id in self.active:
            agent = self.active[event.agent_id]
            agent.step = max(agent.step, event.step)
            agent.tokens += event.usage.total_tokens
            agent.cost += event.usage.cost
        elif isinstance(event, AgentFinished):
            finished = self.active.pop(event.agent_id, None)
            if finished is not None and self._live is None:
                self._say(f"{finished.summary()}  {event.status}")
        elif isinstance(event, KernelEvent) and event.what == "died":
            self._say(f"  agent {event.agent_id}: kernel died: {event.reason}")
        elif isinstance(event, BudgetStop | ErrorEvent | Notice):
            self._say(f"  {event.message}")
        if changed and self._live is not None:
            self._live.update(self._table())  # drawn by rich's refresh thread

    def _say(self, text: str) -> None:
        """A milestone: printed above the live table, or as a plain line."""
        self.console.print(Text(text))

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for column in ("agent", "depth", "step", "tokens", "cost"):
            table.add_column(column, justify="left" if column == "agent" else "right")
        for agent in self.active.values():
            table.add_row(
                f"agent {agent.agent_id}",
                f"depth {agent.depth}",
                f"step {agent.step}",
                f"{_tokens(agent.tokens)} tokens",
                f"${agent.cost:.4f}",
            )
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
