"""Line-API widgets whose style is looked up once per repaint, not once per line."""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip


class RepaintStyles(ScrollView):
    """``rich_style`` walks the styles of every ancestor (a quarter of a millisecond here),
    and ``render_line`` asks for it: once or twice a line in the cell log and the usage table,
    once a line in Textual's Tree, ~10 ms of every repaint of a pane of 40 lines. For the
    length of one ``render_lines`` it is looked up once."""

    _repaint_style: Style | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        self._repaint_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._repaint_style = None

    @property
    def rich_style(self) -> Style:
        style = self._repaint_style
        return style if style is not None else super().rich_style
