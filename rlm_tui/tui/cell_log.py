"""The cell log: every cell, its code highlighted and its output streaming in.

A ScrollView that renders only what is visible. Each cell has a height: estimated from its
text (cheap) until the cell is first painted, then exact. Painting renders the visible cells
(Rich ``Syntax`` for the code) and caches their lines in a bounded LRU, so a session with
thousands of cells opens and scrolls as fast as one with ten.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from rich.console import Group, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip

from rlm_tui.session.projection import CellView, RunView
from rlm_tui.tui.code_view import code_strips, python_lexer
from rlm_tui.tui.repaint import RepaintStyles
from rlm_tui.tui.scrolling import resize_content

MAX_OUTPUT_LINES = 400
"""Output lines shown per cell (the full output is one key away: ``o`` copies it)."""
RENDERED_CACHE = 300
"""Cells whose rendered lines are kept; the others keep only their height."""
STREAM_TAIL = 8
"""Lines of a model's reply shown while it streams in."""

STATUS_ICONS = {
    "pending": ("…", "dim"),
    "paused": ("⏸", "bold yellow"),
    "running": ("▶", "bold cyan"),
    "ok": ("✔", "green"),
    "edited": ("✎", "magenta"),
    "error": ("✖", "red"),
    "skipped": ("↷", "dim"),
    "interrupted": ("⏹", "yellow"),
    "stopped": ("■", "yellow"),
    "timeout": ("⏱", "red"),
    "killed": ("☠", "red"),
    "cancelled": ("⊘", "dim"),
}


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def cell_header(cell: CellView) -> Text:
    icon, style = STATUS_ICONS.get(cell.status, ("?", ""))
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(f"{icon} ", style=style)
    head.append(f"cell {cell.cell_id}", style="bold")
    head.append(f"  step {cell.step}  {cell.status}", style=style)
    if cell.edited and cell.status != "edited":
        head.append("  (edited)", style="magenta")
    if cell.rerunning:
        head.append("  ⟳ re-running to rebuild the kernel", style="bold cyan")
    if cell.duration is not None:
        head.append(f"  {format_duration(cell.duration)}")
    if cell.paused_reason and cell.status == "paused":
        head.append(f"  waiting: {cell.paused_reason}", style="yellow")
    return head


def folded_preamble(preamble: str) -> Text:
    lines = preamble.strip().splitlines()
    first = lines[0][:100] if lines else ""
    more = f" (+{len(lines) - 1} lines, Enter unfolds)" if len(lines) > 1 else ""
    return Text(f"▸ {first}{more}", style="italic dim", no_wrap=True, overflow="ellipsis")


def cell_head(cell: CellView, unfolded: bool) -> list[RenderableType]:
    """What comes before the code: the header and the model's text (folded or not)."""
    parts: list[RenderableType] = [cell_header(cell)]
    if cell.preamble.strip():
        if unfolded:
            parts.append(Text("▾ " + cell.preamble.strip(), style="italic"))
        else:
            parts.append(folded_preamble(cell.preamble))
    return parts


def cell_tail(cell: CellView) -> list[RenderableType]:
    """What comes after the code: the output (streaming in) and the error."""
    parts: list[RenderableType] = [Text(line, style="cyan") for line in cell.tool_calls]
    output = cell.output
    if output:
        parts.append(output_text(output, cell.model_view, cell.output_chars))
    if cell.error and cell.status not in ("ok", "edited"):
        parts.append(Text(cell.error, style="red"))
    return parts


def output_text(output: str, model_view: str, total_chars: int = 0) -> Text:
    """The full output; where the model's truncated view ends is marked, what it missed dim."""
    text = Text()
    seen = len(output) if not model_view else seen_chars(output, model_view)
    lines = output.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    shown = output
    if len(lines) > MAX_OUTPUT_LINES:
        shown = "\n".join(lines[:MAX_OUTPUT_LINES])
    shown = shown.rstrip("\n")
    text.append("│ ", style="dim")
    text.append(_gutter(shown[:seen]))
    if seen < len(output):
        cut = (total_chars or len(output)) - seen
        text.append(
            f"\n┄┄ the model's view ends here: {seen:,} chars shown, {cut:,} cut ┄┄",
            style="bold yellow",
        )
        if seen < len(shown):
            rest = shown[seen:].lstrip("\n")
            text.append("\n│ ", style="dim")
            missed = _gutter(rest)
            missed.stylize("dim")
            text.append(missed)
    if len(lines) > MAX_OUTPUT_LINES:
        text.append(f"\n… {len(lines) - MAX_OUTPUT_LINES:,} more lines (o copies all)", style="dim")
    if total_chars > len(output):
        text.append(
            f"\n… {total_chars - len(output):,} more chars were printed; only the head was kept",
            style="dim",
        )
    return text


def _gutter(text: str) -> Text:
    result = Text()
    for i, line in enumerate(text.split("\n")):
        if i:
            result.append("\n")
            result.append("│ ", style="dim")
        result.append(line)
    return result


def seen_chars(output: str, model_view: str) -> int:
    """How many characters of ``output`` the model was shown (its view may be cut)."""
    body = model_view.removeprefix("(the user replaced this cell's code before it ran)\n")
    marker = body.find("\n... [output truncated")
    return len(output) if marker < 0 else min(marker, len(output))


def tail_lines(text: str, count: int) -> str:
    """The last ``count`` lines of ``text`` (a reply of megabytes is not split whole)."""
    end = len(text.rstrip("\n"))
    start = end
    for _ in range(count):
        start = text.rfind("\n", 0, start)
        if start < 0:
            return text[:end]
    return text[start + 1 : end]


def _wrapped(text: str, width: int) -> int:
    return sum(max(1, -(-len(line.expandtabs()) // width)) for line in text.split("\n"))


def estimate_height(cell: CellView, width: int, unfolded: bool) -> int:
    """Lines the cell will take at ``width``: close, cheap, made exact when it is painted."""
    width = max(1, width)
    height = 1  # header
    if cell.preamble.strip():
        height += _wrapped("▾ " + cell.preamble.strip(), width) if unfolded else 1
    height += _wrapped(cell.code.rstrip("\n") or " ", width)
    if cell.output:
        lines = cell.output.rstrip("\n").split("\n")
        shown = "\n".join(lines[:MAX_OUTPUT_LINES])
        height += _wrapped(shown, width - 2) + (len(lines) > MAX_OUTPUT_LINES)
        height += (
            1
            if cell.model_view and seen_chars(cell.output, cell.model_view) < len(cell.output)
            else 0
        )
    if cell.error and cell.status not in ("ok", "edited"):
        height += _wrapped(cell.error, width)
    return height + 1  # a blank line between cells


@dataclass
class _Item:
    """One entry of the log: a cell, or an agent's reply streaming in."""

    key: Any
    height: int
    exact: bool


class CellLog(RepaintStyles, can_focus=True):
    """The cells of one agent (or of all), in order; a cursor selects one."""

    DEFAULT_CSS = """
    CellLog { background: $surface; height: 1fr; overflow-x: hidden; }
    CellLog > .cell-log--cursor { color: $accent; }
    CellLog:focus > .cell-log--cursor { color: $primary; }
    CellLog > .cell-log--stream { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"cell-log--cursor", "cell-log--stream"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Prev cell", show=False, id="cells.previous"),
        Binding("down,j", "move(1)", "Next cell", show=False, id="cells.next"),
        Binding("home,g", "first", "First cell", show=False, id="cells.first"),
        Binding("end,G", "last", "Last cell", show=False, id="cells.last"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="cells.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="cells.page_down"),
        Binding("enter", "toggle_fold", "Fold", id="cells.fold"),
        Binding("c", "copy_code", "Copy code", show=False, id="cells.copy_code"),
        Binding("o", "copy_output", "Copy output", show=False, id="cells.copy_output"),
        Binding("f", "follow", "Follow", id="cells.follow"),
        Binding("a", "show_all", "All agents", show=False, id="cells.all_agents"),
    ]

    class Selected(Message):
        """A cell was selected by a person (keys or mouse)."""

        def __init__(self, cell: CellView) -> None:
            super().__init__()
            self.cell = cell

    class ShowAll(Message):
        """The person asked for the cells of every agent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None
        self.agent_filter: str | None = None
        self.cells: list[CellView] = []
        self.streams: list[str] = []
        """The agents whose model is writing now (their reply so far is shown)."""
        self.selected = 0
        self.follow = True
        self.unfolded: set[str] = set()
        self._items: dict[str, _Item] = {}
        self._rendered: OrderedDict[str, tuple[Any, list[Strip]]] = OrderedDict()
        self._code: OrderedDict[str, list[Strip]] = OrderedDict()
        """Highlighted code by its text: output streaming in does not highlight it again."""
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        """Item id -> its position in ``_order``."""
        self._heights: list[int] = []
        self._offsets: list[int] = [0]
        self._width = 0
        self._dark = True
        self._background = "default"
        self.renders = 0
        """How many items were rendered (tests check that only visible ones are)."""

    # -- feeding ----------------------------------------------------------------------------

    def show(self, view: RunView, agent_filter: str | None = None) -> None:
        self.view = view
        if agent_filter != self.agent_filter:
            self.agent_filter = agent_filter
            self.selected = 0
            self.follow = True
        self.refresh_cells()

    def refresh_cells(self) -> None:
        """Lay out every item again (a filter changed, cells came or went)."""
        if self.view is None:
            return
        self.cells = self.view.cells_of(self.agent_filter)
        self.streams = [
            a.agent_id
            for a in self.view.agents.values()
            if a.streaming and self._shows_agent(a.agent_id)
        ]
        selected = self.selected
        if self.follow and self.cells:
            self.selected = len(self.cells) - 1
        self.selected = min(self.selected, max(0, len(self.cells) - 1))
        changed = self._layout()
        if self.follow:
            self._scroll_to_end()
        if changed or selected != self.selected:
            self.refresh()

    def update(self, cell_ids: Collection[str], stream_agents: Collection[str]) -> None:
        """Re-render only these cells and these agents' replies in progress.

        A new cell, or a reply that starts or ends, lays the log out again; anything else
        re-estimates the changed items' heights and repaints them alone."""
        view = self.view
        if view is None:
            return
        indexes: list[int] = []
        for cell_id in cell_ids:
            cell = view.cells.get(cell_id)
            if cell_id in self._index:
                indexes.append(self._index[cell_id])
            elif cell is not None and self._shows_agent(cell.agent_id):
                self.refresh_cells()
                return
        for agent_id in stream_agents:
            agent = view.agents.get(agent_id)
            streaming = agent is not None and bool(agent.streaming)
            shown = "~" + agent_id in self._index
            if streaming != shown and self._shows_agent(agent_id):
                self.refresh_cells()
                return
            if shown:
                indexes.append(self._index["~" + agent_id])
        width = self._content_width
        heights = self._heights
        moved = False
        dirty = []
        for i in sorted(set(indexes)):
            key = self._item_key(i)
            item_id = self._order[i]
            if self._items[item_id].key == key:
                continue
            item = self._items[item_id] = _Item(key, self._estimate(i, width), False)
            dirty.append(i)
            if item.height != heights[i]:
                heights = heights if moved else list(heights)
                heights[i] = item.height
                moved = True
        if not dirty:
            return
        if moved:
            self._set_heights(heights)
        if self.follow:
            self._scroll_to_end()
        if moved:
            self.refresh()
            return
        for i in dirty:
            self.refresh_lines(self._offsets[i], self._heights[i])

    def _shows_agent(self, agent_id: str) -> bool:
        return self.agent_filter is None or agent_id == self.agent_filter

    @property
    def current(self) -> CellView | None:
        return self.cells[self.selected] if self.cells else None

    # -- layout -----------------------------------------------------------------------------

    @property
    def _content_width(self) -> int:
        return max(10, (self.scrollable_content_region.width or self.size.width or 80) - 1)

    def _look(self) -> tuple[bool, str]:
        """Dark or light theme, and the background colour the code is drawn on."""
        theme = self.app.current_theme
        dark = theme.dark if theme is not None else True
        color = self.rich_style.bgcolor
        background = color.get_truecolor().hex if color is not None else "default"
        return dark, background

    def _item_key(self, index: int) -> Any:
        if index < len(self.cells):
            cell = self.cells[index]
            return (cell.rev, cell.cell_id in self.unfolded)
        agent_id = self.streams[index - len(self.cells)]
        return (len(self._stream_text(agent_id)), agent_id)

    def _stream_text(self, agent_id: str) -> str:
        agent = self.view.agents.get(agent_id) if self.view is not None else None
        return agent.streaming if agent is not None else ""

    def _item_id(self, index: int) -> str:
        if index < len(self.cells):
            return self.cells[index].cell_id
        return "~" + self.streams[index - len(self.cells)]

    def _estimate(self, index: int, width: int) -> int:
        if index < len(self.cells):
            cell = self.cells[index]
            return estimate_height(cell, width, cell.cell_id in self.unfolded)
        text = tail_lines(self._stream_text(self.streams[index - len(self.cells)]), STREAM_TAIL)
        return min(STREAM_TAIL, _wrapped(text, width)) + 2

    def _layout(self) -> bool:
        """Heights of every item (kept, estimated for a changed item), offsets, virtual size.

        Returns whether anything shown may have changed.
        """
        width = self._content_width
        dark, background = self._look()
        if (width, dark, background) != (self._width, self._dark, self._background):
            self._width, self._dark, self._background = width, dark, background
            self._items.clear()
            self._rendered.clear()
            self._code.clear()
            changed = True
        else:
            changed = False
        count = len(self.cells) + len(self.streams)
        order = [self._item_id(i) for i in range(count)]
        heights = []
        for i, item_id in enumerate(order):
            key = self._item_key(i)
            item = self._items.get(item_id)
            if item is None or item.key != key:
                item = _Item(key, self._estimate(i, width), False)
                self._items[item_id] = item
                changed = True
            heights.append(item.height)
        changed = changed or order != self._order
        self._order = order
        self._index = {item_id: i for i, item_id in enumerate(order)}
        self._set_heights(heights)
        return changed

    def _set_heights(self, heights: list[int]) -> None:
        if heights != self._heights:
            self._heights = heights
            self._offsets = [0, *accumulate(heights)]
        size = Size(self._width + 1, self._offsets[-1])
        if size != self.virtual_size:
            resize_content(self, size)

    def _strips(self, index: int) -> list[Strip]:
        """The rendered lines of an item (cached); makes its height exact."""
        item_id = self._order[index]
        item = self._items[item_id]
        cached = self._rendered.get(item_id)
        if cached is not None and cached[0] == item.key:
            self._rendered.move_to_end(item_id)
            return cached[1]
        self.renders += 1
        if index < len(self.cells):
            cell = self.cells[index]
            strips = self._render_strips(Group(*cell_head(cell, cell.cell_id in self.unfolded)))
            strips += self._code_strips(cell.code)
            tail = cell_tail(cell)
            if tail:
                strips += self._render_strips(Group(*tail))
            strips.append(Strip.blank(self._width, self.rich_style))
        else:
            agent_id = self.streams[index - len(self.cells)]
            renderable = Group(
                Text(f"✎ agent {agent_id}'s model is writing…", style="bold"),
                Text(tail_lines(self._stream_text(agent_id), STREAM_TAIL)),
            )
            style = self.rich_style + self.get_component_rich_style("cell-log--stream")
            strips = self._render_strips(renderable, style)
        self._rendered[item_id] = (item.key, strips)
        while len(self._rendered) > RENDERED_CACHE:
            self._rendered.popitem(last=False)
        item.height, item.exact = len(strips), True
        return strips

    def _render_strips(self, renderable: RenderableType, style: Style | None = None) -> list[Strip]:
        console = self.app.console
        options = console.options.update_width(self._width)
        lines = console.render_lines(renderable, options, style=style or self.rich_style, pad=True)
        return [Strip(line, self._width) for line in lines]

    def _code_strips(self, code: str) -> list[Strip]:
        strips = self._code.get(code)
        if strips is None:
            strips = code_strips(code, self._width, self._dark, self._background, self.rich_style)
            self._code[code] = strips
            while len(self._code) > RENDERED_CACHE:
                self._code.popitem(last=False)
        else:
            self._code.move_to_end(code)
        return strips

    def _settle(self, top: int, height: int) -> None:
        """Make the heights of the items in rows [top, top + height) exact."""
        for _ in range(8):
            heights = list(self._heights)
            i = max(0, bisect_right(self._offsets, top) - 1)
            while i < len(heights) and self._offsets[i] < top + height:
                heights[i] = len(self._strips(i))
                i += 1
            if heights == self._heights:
                return
            self._set_heights(heights)

    def _scroll_to_end(self) -> None:
        height = self.scrollable_content_region.height or self.size.height
        for _ in range(8):  # exact heights for the last screenful, from the end
            heights = list(self._heights)
            used, i = 0, len(heights) - 1
            while i >= 0 and used < height:
                heights[i] = len(self._strips(i))
                used += heights[i]
                i -= 1
            if heights == self._heights:
                break
            self._set_heights(heights)
        self.scroll_to(
            y=max(0, self._offsets[-1] - height), animate=False, immediate=True, force=True
        )

    def render_lines(self, crop: Region) -> list[Strip]:
        if self._order:
            self._settle(self.scroll_offset.y + crop.y, crop.height)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        line = self.scroll_offset.y + y
        style = self.rich_style
        if not self._order or line >= self._offsets[-1]:
            return Strip.blank(width, style)
        index = bisect_right(self._offsets, line) - 1
        strips = self._strips(index)
        row = line - self._offsets[index]
        strip = strips[row] if row < len(strips) else Strip.blank(self._width, style)
        if index == self.selected and index < len(self.cells) and self.cells:
            gutter = Segment("▌", style + self.get_component_rich_style("cell-log--cursor"))
        else:
            gutter = Segment(" ", style)
        return Strip.join([Strip([gutter], 1), strip]).crop(0, width)

    def on_mount(self) -> None:
        # building the lexer compiles its patterns (a large part of a second): in a thread
        # from the start, not on the loop when the first cell arrives
        self.run_worker(python_lexer, thread=True, group="lexer", exit_on_error=False)

    def on_resize(self) -> None:
        self._layout()
        if self.follow:
            self._scroll_to_end()

    # -- moving and acting ------------------------------------------------------------------

    def _select(self, index: int, notify: bool = True) -> None:
        if not self.cells:
            return
        self.follow = False
        self.selected = max(0, min(index, len(self.cells) - 1))
        self._settle(self._offsets[self.selected], 1)
        top = self._offsets[self.selected]
        height = self._offsets[self.selected + 1] - top
        visible = self.scrollable_content_region.height
        if not self.scroll_offset.y <= top <= self.scroll_offset.y + visible - min(height, visible):
            self.scroll_to(y=top, animate=False, immediate=True, force=True)
        self.refresh()
        if notify:
            self.post_message(self.Selected(self.cells[self.selected]))

    def action_move(self, delta: int) -> None:
        self._select(self.selected + delta)

    def action_first(self) -> None:
        self._select(0)

    def action_last(self) -> None:
        self._select(len(self.cells) - 1)

    def action_page(self, direction: int) -> None:
        if not self.cells:
            return
        height = self.scrollable_content_region.height
        target = self._offsets[self.selected] + direction * height
        index = bisect_right(self._offsets, max(0, target)) - 1
        self._select(index if index != self.selected else self.selected + direction)

    def select_cell(self, cell_id: str) -> bool:
        for i, cell in enumerate(self.cells):
            if cell.cell_id == cell_id:
                self._select(i)
                return True
        return False

    def on_click(self, event: events.Click) -> None:
        line = self.scroll_offset.y + event.y
        if self._order and 0 <= line < self._offsets[-1]:
            index = bisect_right(self._offsets, line) - 1
            if index < len(self.cells):
                if index == self.selected and event.chain > 1:
                    self.action_toggle_fold()
                self._select(index)

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
            self.app.notify(
                f"copied the output of cell {self.current.cell_id} "
                f"({len(self.current.output):,} chars)"
            )

    def action_follow(self) -> None:
        self.follow = True
        self.refresh_cells()
        self.notify("following the newest cell")

    def action_show_all(self) -> None:
        if self.view is not None:
            self.show(self.view, None)
            self.post_message(self.ShowAll())
