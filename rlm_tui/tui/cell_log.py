"""The cell log: every cell, its code highlighted and its output streaming in.

A ScrollView over cells rendered to strips and cached per cell version, so thousands of cells
cost only what is visible plus the cells that changed since the last paint.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from rlm_tui.tui.state import CellView, RunView

MAX_OUTPUT_LINES = 400
STATUS_ICONS = {
    "pending": ("…", "dim"),
    "paused": ("⏸", "bold yellow"),
    "running": ("▶", "bold cyan"),
    "ok": ("✔", "green"),
    "edited": ("✎", "magenta"),
    "error": ("✖", "red"),
    "skipped": ("↷", "dim"),
    "interrupted": ("⏹", "yellow"),
    "timeout": ("⏱", "red"),
    "killed": ("☠", "red"),
}


def cell_renderable(cell: CellView, unfolded: bool, selected: bool, dark: bool) -> RenderableType:
    icon, style = STATUS_ICONS.get(cell.status, ("?", ""))
    head = Text()
    head.append(f"{'›' if selected else ' '} {icon} ", style=style)
    head.append(f"cell {cell.cell_id}", style="bold")
    head.append(f"  step {cell.step}  {cell.status}", style=style)
    if cell.duration is not None:
        head.append(
            f"  {cell.duration * 1000:.0f} ms" if cell.duration < 10 else f"  {cell.duration:.1f} s"
        )
    if cell.paused_reason and cell.status == "paused":
        head.append(f"  ({cell.paused_reason})", style="yellow")
    parts: list[RenderableType] = [head]
    if cell.preamble:
        lines = cell.preamble.splitlines()
        if unfolded:
            parts.append(Text(cell.preamble, style="italic"))
        else:
            first = lines[0][:100] if lines else ""
            more = f" (+{len(lines) - 1} lines, Enter)" if len(lines) > 1 else ""
            parts.append(Text(f"▸ {first}{more}", style="italic dim"))
    parts.append(
        Syntax(
            cell.code,
            "python",
            theme="monokai" if dark else "friendly",
            word_wrap=True,
            background_color="default",
        )
    )
    parts.extend(Text(line, style="cyan") for line in cell.tool_calls)
    output = cell.output
    if output:
        parts.append(_output_text(output, cell.model_view))
    if cell.error and cell.status != "ok":
        parts.append(Text(cell.error, style="red"))
    return Group(*parts)


def _output_text(output: str, model_view: str) -> Text:
    text = Text()
    seen = len(output) if not model_view else _seen_chars(output, model_view)
    shown = output
    lines = shown.splitlines()
    if len(lines) > MAX_OUTPUT_LINES:
        shown = "\n".join(lines[:MAX_OUTPUT_LINES])
    text.append(shown[:seen], style="")
    if seen < len(output):
        text.append(
            f"\n┄┄ the model's view ends here ({seen:,} of {len(output):,} chars) ┄┄\n",
            style="bold yellow",
        )
        text.append(shown[seen:], style="dim")
    if len(lines) > MAX_OUTPUT_LINES:
        text.append(f"\n… {len(lines) - MAX_OUTPUT_LINES:,} more lines (o copies all)", style="dim")
    return text


def _seen_chars(output: str, model_view: str) -> int:
    marker = model_view.find("\n... [output truncated")
    return len(model_view) if marker < 0 else marker


class CellLog(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    CellLog { background: $surface; height: 1fr; }
    """
    BINDINGS = [
        Binding("up,k", "move(-1)", "Prev cell", show=False, id="cells.previous"),
        Binding("down,j", "move(1)", "Next cell", show=False, id="cells.next"),
        Binding("enter", "toggle_fold", "Fold/unfold", id="cells.fold"),
        Binding("c", "copy_code", "Copy code", id="cells.copy_code"),
        Binding("o", "copy_output", "Copy output", id="cells.copy_output"),
        Binding("f", "follow", "Follow", id="cells.follow"),
        Binding("a", "show_all", "All agents", id="cells.all_agents"),
    ]

    class Selected(Message):
        def __init__(self, cell: CellView) -> None:
            super().__init__()
            self.cell = cell

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None
        self.agent_filter: str | None = None
        self.cells: list[CellView] = []
        self.selected = 0
        self.follow = True
        self.unfolded: set[str] = set()
        self._cache: dict[str, tuple[tuple[Any, ...], list[Strip]]] = {}
        self._offsets: list[int] = [0]
        self._width = 0

    def show(self, view: RunView, agent_filter: str | None = None) -> None:
        self.view = view
        if agent_filter != self.agent_filter:
            self.agent_filter = agent_filter
            self.selected = 0
        self.refresh_cells()

    def refresh_cells(self) -> None:
        if self.view is None:
            return
        self.cells = self.view.cells_of(self.agent_filter)
        if self.follow and self.cells:
            self.selected = len(self.cells) - 1
        self.selected = min(self.selected, max(0, len(self.cells) - 1))
        self._layout()
        if self.follow:
            self.scroll_end(animate=False)
        self.refresh()

    @property
    def current(self) -> CellView | None:
        return self.cells[self.selected] if self.cells else None

    def _strips(self, index: int, width: int) -> list[Strip]:
        cell = self.cells[index]
        dark = self.app.current_theme.dark if self.app.current_theme else True
        key = (
            cell.status,
            len(cell.output_parts),
            cell.code,
            cell.duration,
            width,
            cell.cell_id in self.unfolded,
            index == self.selected,
            dark,
            cell.paused_reason,
        )
        cached = self._cache.get(cell.cell_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        renderable = cell_renderable(
            cell, cell.cell_id in self.unfolded, index == self.selected, dark
        )
        console = self.app.console
        options = console.options.update_width(max(10, width))
        lines = console.render_lines(renderable, options, pad=True)
        strips = [Strip(line, width) for line in lines] + [Strip.blank(width)]
        self._cache[cell.cell_id] = (key, strips)
        return strips

    def _layout(self) -> None:
        width = max(20, self.scrollable_content_region.width or self.size.width or 80)
        self._width = width
        offsets = [0]
        for i in range(len(self.cells)):
            offsets.append(offsets[-1] + len(self._strips(i, width)))
        self._offsets = offsets
        self.virtual_size = Size(width, offsets[-1])

    def on_resize(self) -> None:
        self._layout()

    def render_line(self, y: int) -> Strip:
        line = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if not self.cells or line >= self._offsets[-1]:
            return Strip.blank(width, self.rich_style)
        index = bisect_right(self._offsets, line) - 1
        strips = self._strips(index, self._width)
        return strips[line - self._offsets[index]].crop(0, width)

    def action_move(self, delta: int) -> None:
        if not self.cells:
            return
        self.follow = False
        self.selected = max(0, min(self.selected + delta, len(self.cells) - 1))
        self._layout()
        top = self._offsets[self.selected]
        height = self._offsets[self.selected + 1] - top
        visible = self.scrollable_content_region.height
        if not self.scroll_offset.y <= top < self.scroll_offset.y + visible - min(height, visible):
            self.scroll_to(y=top, animate=False)
        self.refresh()
        self.post_message(self.Selected(self.cells[self.selected]))

    def select_cell(self, cell_id: str) -> None:
        for i, cell in enumerate(self.cells):
            if cell.cell_id == cell_id:
                self.action_move(i - self.selected)
                return

    def action_toggle_fold(self) -> None:
        cell = self.current
        if cell is not None:
            self.unfolded ^= {cell.cell_id}
            self._layout()
            self.refresh()

    def action_copy_code(self) -> None:
        if self.current is not None:
            self.app.copy_to_clipboard(self.current.code)
            self.app.notify(f"copied the code of cell {self.current.cell_id}")

    def action_copy_output(self) -> None:
        if self.current is not None:
            self.app.copy_to_clipboard(self.current.output)
            self.app.notify(f"copied the output of cell {self.current.cell_id}")

    def action_follow(self) -> None:
        self.follow = True
        self.refresh_cells()

    def action_show_all(self) -> None:
        if self.view is not None:
            self.show(self.view, None)
