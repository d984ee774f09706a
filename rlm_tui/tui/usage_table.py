"""The budget pane's per-agent table: one line per agent under a fixed header, drawn line by
line, so a row that changed is the only one drawn again (a DataTable drew every visible row
again on any change: ~5 ms of a repaint here, on the app's loop)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from textual.geometry import Size
from textual.strip import Strip

from rlm_tui.tui.repaint import RepaintStyles
from rlm_tui.tui.scrolling import resize_content

_GAP = "  "


class UsageTable(RepaintStyles, can_focus=True):
    """Rows of text cells keyed by agent id; the first column is left-aligned, the rest right."""

    COMPONENT_CLASSES = {"usage-table--header", "usage-table--stripe"}
    DEFAULT_CSS = """
    UsageTable {
        height: 1fr;
        background: $surface;
        & > .usage-table--header { color: $text; text-style: bold; background: $panel; }
        & > .usage-table--stripe { background: $foreground 5%; }
    }
    """

    def __init__(self, columns: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._rows: dict[str, tuple[str, ...]] = {}
        self._order: list[str] = []
        self._widths = [len(c) for c in self.columns]

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def keys(self) -> tuple[str, ...]:
        """The rows' keys, top to bottom."""
        return tuple(self._order)

    def row(self, key: str) -> tuple[str, ...]:
        return self._rows[key]

    def cell(self, key: str, column: str) -> str:
        return self._rows[key][self.columns.index(column)]

    def clear(self) -> None:
        self._rows.clear()
        self._order.clear()
        self._widths = [len(c) for c in self.columns]
        self._resize()

    def set_row(self, key: str, cells: Sequence[str]) -> None:
        """Add the row ``key`` at the end, or change its cells; repaint only what moved."""
        cells = tuple(cells)
        if self._rows.get(key) == cells:
            return
        new = key not in self._rows
        self._rows[key] = cells
        if new:
            self._order.append(key)
        widths = [max(w, len(c)) for w, c in zip(self._widths, cells, strict=True)]
        if widths != self._widths or new:
            self._widths = widths
            self._resize()
        else:
            self.refresh_lines(self._order.index(key) + 1)

    def _resize(self) -> None:
        """Its new size, and a repaint."""
        width = sum(self._widths) + len(_GAP) * (len(self._widths) - 1)
        resize_content(self, Size(width, len(self._order) + 1))

    def _line(self, cells: Sequence[str]) -> str:
        return _GAP.join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, self._widths, strict=True))
        )

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        style = self.rich_style
        if y == 0:  # the header stays put
            text = self._line(self.columns)
            style += self.get_component_rich_style("usage-table--header")
        else:
            index = self.scroll_offset.y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, style)
            text = self._line(self._rows[self._order[index]])
            if index % 2:
                style += self.get_component_rich_style("usage-table--stripe")
        x = self.scroll_offset.x
        return Strip([Segment(text[x : x + width].ljust(width), style)], width)
