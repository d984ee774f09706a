"""Every gate held now, as a debugger lists its threads: the highlighted one is what the
run's ``s`` (step), ``e`` (edit) and ``x`` (skip) act on.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from rlm_tui.session.projection import Waiting


def waiting_line(item: Waiting) -> Text:
    """``⏸ cell 0.2:1  agent 0.2 · breakpoint: every cell · print(len(context))``."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("⏸ ", style="bold yellow")
    line.append(item.label, style="bold")
    line.append(f"  agent {item.agent_id} · {item.reason}", style="yellow")
    first = next((part.strip() for part in item.what.splitlines() if part.strip()), "")
    if first:
        line.append(f" · {first}", style="dim")
    return line


class WaitList(OptionList):
    """The waiting gates, oldest first; hidden while nothing waits."""

    DEFAULT_CSS = """
    WaitList {
        height: auto; max-height: 6; border: none; padding: 0 1;
        background: $warning 12%; display: none; text-wrap: nowrap; text-overflow: ellipsis;
    }
    WaitList.shown { display: block; }
    WaitList:focus { background: $warning 20%; }
    Screen.narrow WaitList { max-height: 3; }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Previous waiting", show=False, id="waiting.previous"),
        Binding("down,j", "cursor_down", "Next waiting", show=False, id="waiting.next"),
        Binding("enter", "select", "Show it", id="waiting.show"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: list[tuple[str, str, str]] = []

    def show(self, waiting: dict[str, Waiting], prefer: str | None = None) -> None:
        """Rebuild only when the set of waiting gates (or their text) changed; highlight
        ``prefer`` if it waits, else keep the highlighted gate."""
        shown = [(g, w.reason, w.what) for g, w in waiting.items()]
        if shown == self._shown:
            return
        selected = prefer if prefer in waiting else self.selected_gate
        self._shown = shown
        self.clear_options()
        self.add_options(Option(waiting_line(w), id=g) for g, w in waiting.items())
        self.set_class(bool(waiting), "shown")
        if waiting:
            self.highlighted = list(waiting).index(selected) if selected in waiting else 0

    @property
    def selected_gate(self) -> str | None:
        option = self.highlighted_option
        return option.id if option is not None else None

    def select_gate(self, gate_id: str) -> None:
        gates = [g for g, _, _ in self._shown]
        if gate_id in gates:
            self.highlighted = gates.index(gate_id)

    def move(self, delta: int) -> None:
        if self._shown:
            self.highlighted = ((self.highlighted or 0) + delta) % len(self._shown)
