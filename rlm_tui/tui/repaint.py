"""Line-API widgets that look their styles up once per repaint, not once per line."""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip


class RepaintStyles(ScrollView):
    """``Widget.rich_style`` walks the styles of every ancestor (a quarter of a millisecond
    here) and a component's style resolves its rules: asked for each of a pane's 40 lines,
    that was ~10 ms of every repaint of the cell log. ``style_of`` gives this repaint's."""

    _repaint_styles: dict[str, Style] | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        self._repaint_styles = {}
        try:
            return super().render_lines(crop)
        finally:
            self._repaint_styles = None

    def style_of(self, component: str = "") -> Style:
        """The widget's style (``""``) or one of its components', as of this repaint (looked
        up afresh outside one)."""
        styles = self._repaint_styles
        style = styles.get(component) if styles is not None else None
        if style is None:
            style = self.get_component_rich_style(component) if component else self.rich_style
            if styles is not None:
                styles[component] = style
        return style
