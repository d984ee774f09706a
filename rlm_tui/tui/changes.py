"""What a batch of events changed, slice by slice, so each pane re-renders only its own part.

The run screen folds every event into the projection at once and notes here what it touched:
a cell, an agent's reply streaming in, an agent's label, a budget row. The panes then update
those slices only (a streamed token re-renders one item of the cell log, not the log).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlm_tui import events as ev

_SLICES: dict[type, frozenset[str]] = {
    ev.ModelDelta: frozenset({"stream"}),
    ev.ModelRequest: frozenset({"stream", "agent"}),
    ev.ModelResponse: frozenset({"stream", "agent", "budget"}),
    ev.CellProposed: frozenset({"cell"}),
    ev.CellEdited: frozenset({"cell"}),
    ev.CellOutput: frozenset({"cell"}),
    ev.CellStarted: frozenset({"cell"}),
    ev.CellPaused: frozenset({"cell"}),
    ev.CellSkipped: frozenset({"cell"}),
    ev.CellFinished: frozenset({"cell", "context"}),
    ev.CellRerunStarted: frozenset({"cell"}),
    ev.CellRerunFinished: frozenset({"cell"}),
    ev.AgentStarted: frozenset({"agent", "budget", "context"}),
    ev.AgentFinished: frozenset({"agent", "stream"}),
    ev.SubcallStarted: frozenset({"agent_cells", "context"}),
    ev.SubcallFinished: frozenset({"agent_cells"}),
    ev.HistoryCompacted: frozenset({"agent_cells"}),
    ev.BudgetUpdate: frozenset({"budget"}),
    ev.RunStateChanged: frozenset({"all_agents"}),
    ev.Notice: frozenset(),
    ev.ErrorEvent: frozenset(),
    ev.BudgetStop: frozenset(),
    ev.KernelEvent: frozenset(),
}
"""The slices each kind of event changes (the status line and the waiting list always follow
the projection); a kind not listed (a run starting or ending, a new kind) repaints it all."""


@dataclass
class Changes:
    everything: bool = False
    cells: set[str] = field(default_factory=set)
    """Cells to re-render (a new one is added to the log)."""
    agent_cells: set[str] = field(default_factory=set)
    """Agents whose running cell may have changed without naming it (a tool call's line)."""
    streams: set[str] = field(default_factory=set)
    """Agents whose model reply in progress changed."""
    agents: set[str] = field(default_factory=set)
    """Agents to relabel in the tree (a new one is added to it)."""
    all_agents: bool = False
    budget: bool = False
    budget_agents: set[str] = field(default_factory=set)
    """Agents whose row of the budget table changed."""
    context: bool = False
    """The texts the models have seen grew: the coverage of the context follows."""

    def note(self, event: ev.Event) -> None:
        slices = _SLICES.get(type(event))
        if slices is None:
            self.everything = True
            return
        agent_id: str = getattr(event, "agent_id", "")
        if "cell" in slices:
            self.cells.add(getattr(event, "cell_id", ""))
        if "agent_cells" in slices:
            self.agent_cells.add(agent_id)
        if "stream" in slices:
            self.streams.add(agent_id)
        if "agent" in slices:
            self.agents.add(agent_id)
        if "all_agents" in slices:
            self.all_agents = True
        if "budget" in slices:
            self.budget = True
            self.budget_agents.add(agent_id)
        if "context" in slices:
            self.context = True
