"""The recursion tree: agents as a live tree with state, depth, step, tokens, cost and answer."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from rlm_tui.session.projection import AgentView, RunView, Waiting
from rlm_tui.tui.repaint import RepaintStyles
from rlm_tui.tui.scrolling import follow_content, needs_layout

AGENT_ICONS = {
    "running": ("●", "cyan"),
    "waiting": ("⏸", "bold yellow"),
    "answered": ("✔", "green"),
    "failed": ("✖", "red"),
    "stopped": ("■", "yellow"),
    "budget": ("$", "red"),
}


def format_tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:,}"


def agent_label(agent: AgentView, now: float | None = None, paused: bool = False) -> Text:
    """``● agent 0.1  d1 · step 2 · 1,415 tok · $0.0012 · 1.0s → {'Apple': 0, …}``."""
    status = "waiting" if paused and agent.status == "running" else agent.status
    icon, style = AGENT_ICONS.get(status, ("?", ""))
    seconds = agent.elapsed(now or time.time())
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append(f"{icon} ", style=style)
    label.append(f"agent {agent.agent_id}", style="bold")
    if agent.by_hand:
        label.append(f" (by hand → {agent.bind_var})", style="magenta")
    usage = agent.usage
    label.append(
        f"  d{agent.depth} · step {agent.step} · {format_tokens(usage.total_tokens)} tok"
        f" · ${usage.cost:.4f} · {seconds:.1f}s",
        style="dim",
    )
    if agent.answer_preview:
        preview = " ".join(agent.answer_preview.split())
        label.append(f"  → {preview[:80]}{'…' if len(preview) > 80 else ''}", style=style)
    return label


def waiting_label(item: Waiting) -> Text:
    """A sub-agent held before it starts: its prompt, and what releases it."""
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append("⏸ ", style="bold yellow")
    label.append(f"agent {item.gate_id}", style="bold")
    label.append("  held at its start: ", style="yellow")
    label.append(" ".join(item.what.split()), style="italic")
    return label


class AgentTree(Tree[str], RepaintStyles, inherit_bindings=False):
    """Each agent under its parent; Enter filters the cell log to it, ``a`` shows all.

    Tree's own bindings minus space, which stays the run's pause key here too.
    """

    DEFAULT_CSS = """
    AgentTree { height: 1fr; background: $surface; overflow-x: hidden; }
    AgentTree > .tree--cursor { background: $primary 25%; }
    """
    BINDINGS = [
        Binding("enter", "select_cursor", "Fold/unfold", id="tree.select"),
        Binding("up,k", "cursor_up", "Up", show=False, id="tree.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="tree.down"),
        Binding("shift+left", "cursor_parent", "To parent", show=False, id="tree.parent"),
        Binding(
            "shift+up",
            "cursor_previous_sibling",
            "Prev sibling",
            show=False,
            id="tree.previous_sibling",
        ),
        Binding(
            "shift+down", "cursor_next_sibling", "Next sibling", show=False, id="tree.next_sibling"
        ),
        Binding("t", "toggle_node", "Fold/unfold", show=False, id="tree.toggle"),
        Binding("left", "scroll_left", "Scroll left", show=False, id="tree.scroll_left"),
        Binding("right", "scroll_right", "Scroll right", show=False, id="tree.scroll_right"),
        Binding("pageup", "page_up", "Page up", show=False, id="tree.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="tree.page_down"),
        Binding("l", "screen.launch", "Launch sub-agent", show=False, id="tree.launch"),
        Binding("a", "show_all", "All agents", id="tree.all_agents"),
    ]

    virtual_size: Reactive[Size] = Reactive(Size(0, 0))
    """Without Tree's layout of the whole screen at each change (``watch_virtual_size``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("run", **kwargs)
        self.auto_expand = False
        self.show_root = False
        self.guide_depth = 3
        self._agent_nodes: dict[str, TreeNode[str]] = {}
        self._labels: dict[str, Text] = {}

    def show(
        self, view: RunView, now: float | None = None, agent_ids: Collection[str] | None = None
    ) -> None:
        """Add the new agents and relabel ``agent_ids`` (None: every agent) if they changed.

        Cheap to call for every batch of events: agents not named are only looked up."""
        paused = view.paused
        agents = view.agents
        for agent_id, agent in agents.items():  # in the order they started: parents first
            if agent_id not in self._agent_nodes or agent_ids is None:
                self._put(agent_id, agent.parent_id, agent_label(agent, now, paused))
        for agent_id in agent_ids or ():
            changed = agents.get(agent_id)
            if changed is not None:
                self._put(agent_id, changed.parent_id, agent_label(changed, now, paused))
        for agent_id, item in view.waiting.items():
            if item.kind == "agent_start" and agent_id not in agents:
                parent = agent_id.rpartition(".")[0] or None
                self._put(agent_id, parent, waiting_label(item))
        if len(self._agent_nodes) > len(agents):
            for agent_id in list(self._agent_nodes):  # a start that was skipped
                if agent_id not in agents and agent_id not in view.waiting_starts:
                    self._agent_nodes.pop(agent_id).remove()
                    self._labels.pop(agent_id, None)

    def _invalidate(self) -> None:
        """Nodes came, went or unfolded: rebuild the lines and repaint.

        Tree's own also lays out the whole screen, which then draws every pane again: 7 of the
        demo's ~20 layouts. This tree's size is its pane's; only its scrollbar can change
        (``watch_virtual_size``)."""
        self._clear_line_cache()
        self._updates += 1
        self.root._reset()
        self.refresh()

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        if needs_layout(self, old, new):
            self.refresh(layout=True)
        else:
            follow_content(self, new)

    def _put(self, agent_id: str, parent_id: str | None, label: Text) -> None:
        node = self._agent_nodes.get(agent_id)
        if node is None:
            parent = self._agent_nodes.get(parent_id or "", self.root)
            node = parent.add(label, data=agent_id, expand=True)
            self._agent_nodes[agent_id] = node
            parent.expand()
            if self.cursor_node is None:
                self.move_cursor(node)
        elif self._labels.get(agent_id) != label:
            node.set_label(label)
        self._labels[agent_id] = label

    @property
    def selected_agent(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def select_agent(self, agent_id: str) -> None:
        node = self._agent_nodes.get(agent_id)
        if node is not None:
            self.move_cursor(node)

    def action_show_all(self) -> None:
        self.post_message(self.NodeSelected(self.root))
