"""The recursion tree: agents as a live tree with state, depth, step, tokens, cost and answer."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from rlm_tui.tui.state import AgentView, RunView

AGENT_ICONS = {
    "running": ("●", "cyan"),
    "answered": ("✔", "green"),
    "failed": ("✖", "red"),
    "stopped": ("■", "yellow"),
    "budget": ("$", "red"),
}


def agent_label(agent: AgentView, now: float | None = None) -> Text:
    icon, style = AGENT_ICONS.get(agent.status, ("?", ""))
    end = agent.finished or now or time.time()
    label = Text()
    label.append(f"{icon} ", style=style)
    label.append(f"agent {agent.agent_id}", style="bold")
    if agent.by_hand:
        label.append(" (by hand)", style="magenta")
    tokens = agent.usage.total_tokens
    label.append(
        f"  d{agent.depth} step {agent.step}  {tokens:,} tok  ${agent.usage.cost:.4f}  "
        f"{max(0.0, end - agent.started):.1f}s",
        style="dim",
    )
    if agent.answer_preview:
        preview = agent.answer_preview.replace("\n", " ")
        label.append(f"  → {preview[:60]}{'…' if len(preview) > 60 else ''}", style=style)
    return label


class AgentTree(Tree[str]):
    DEFAULT_CSS = """
    AgentTree { height: 1fr; background: $surface; }
    """
    BINDINGS = [
        Binding("l", "screen.launch", "Launch sub-agent", id="tree.launch"),
        Binding("a", "show_all", "All agents", id="tree.all_agents"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("run", **kwargs)
        self.show_root = False
        self.guide_depth = 3
        self._agent_nodes: dict[str, TreeNode[str]] = {}

    def show(self, view: RunView, now: float | None = None) -> None:
        for agent_id, agent in view.agents.items():
            node = self._agent_nodes.get(agent_id)
            if node is None:
                parent = self._agent_nodes.get(agent.parent_id or "", self.root)
                node = parent.add(agent_label(agent, now), data=agent_id, expand=True)
                self._agent_nodes[agent_id] = node
                parent.expand()
            else:
                node.set_label(agent_label(agent, now))

    @property
    def selected_agent(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def action_show_all(self) -> None:
        self.post_message(self.NodeSelected(self.root))
