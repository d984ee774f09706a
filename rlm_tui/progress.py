"""Headless progress on stderr through rich: on a terminal a live table of the active agents
(depth, step, tokens, cost) under the milestones; elsewhere (and on a dumb terminal) the
milestones as plain lines."""

from __future__ import annotations

import sys
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
from rlm_tui.session.projection import AgentView, RunView


def _summary(agent: AgentView) -> str:
    return (
        f"  agent {agent.agent_id:<8} depth {agent.depth}  step {agent.step:>3}  "
        f"{_tokens(agent.usage.total_tokens):>7} tokens  ${agent.usage.cost:.4f}"
    )


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


class Progress:
    """Subscribe it to a run; ``close`` it when the run ends (the live table goes away)."""

    def __init__(self, stream: TextIO | None = None, refresh_per_second: float = 10) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.view = RunView()
        self._live: Live | None = None
        # a dumb terminal (TERM=dumb: an editor's shell, a CI log) cannot redraw a table in
        # place: rich draws it only at the end, which a transient table erases
        if self.console.is_terminal and not self.console.is_dumb_terminal:
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
        self.view.apply(event)
        if isinstance(event, RunStarted):
            demo = (
                "  [offline demo model: canned text, real kernels]" if event.model_is_demo else ""
            )
            self._say(f"rlm-tui: session {event.run_id}, model {event.model}{demo}")
        elif isinstance(event, AgentStarted) and self._live is None:
            self._say(f"  agent {event.agent_id} started (depth {event.depth})")
        elif isinstance(event, AgentFinished) and self._live is None:
            if (finished := self.view.agents.get(event.agent_id)) is not None:
                self._say(f"{_summary(finished)}  {event.status}")
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
        for agent in self.view.agents.values():
            if agent.status == "running":
                table.add_row(
                    f"agent {agent.agent_id}",
                    f"depth {agent.depth}",
                    f"step {agent.step}",
                    f"{_tokens(agent.usage.total_tokens)} tokens",
                    f"${agent.usage.cost:.4f}",
                )
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
