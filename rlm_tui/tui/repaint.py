"""Line-API widgets whose styles are looked up once per repaint, or once per restyle."""

from __future__ import annotations

from rich.style import Style
from textual.css.styles import RenderStyles
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip

Sources = tuple[object, ...]
"""The stylesheet's styles of the components a style was made from, as they were then."""


class RepaintStyles(ScrollView):
    """``rich_style`` walks the styles of every ancestor (a quarter of a millisecond here),
    and ``render_line`` asks for it: once or twice a line in the cell log and the usage table,
    once a line in Textual's Tree, ~10 ms of every repaint of a pane of 40 lines. For the
    length of one ``render_lines`` it is looked up once.

    Tree also asks for eight component styles a line, which Textual builds anew after every
    ``refresh`` (a relabelled node is one): a fifth of a line's time, ~5 ms of a 64-agent
    tree's clock tick. They change only when the widget is styled again (CSS, focus, hover,
    theme: ``notify_style_update``, and new component styles), so they are kept until then."""

    _repaint_style: Style | None = None
    _components: dict[tuple[object, ...], tuple[Sources, Style]] | None = None
    _component_styles_kept: dict[tuple[str, ...], tuple[Sources, RenderStyles]] | None = None

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

    def notify_style_update(self) -> None:
        self._components = self._component_styles_kept = None
        super().notify_style_update()

    def get_component_rich_style(
        self, *names: str, partial: bool = False, default: Style | None = None
    ) -> Style:
        kept = self._components
        if kept is None:
            kept = self._components = {}
        key, sources = (names, partial, default), self._sources(names)
        found = kept.get(key)
        if found is None or not _same(found[0], sources):
            style = super().get_component_rich_style(*names, partial=partial, default=default)
            found = kept[key] = (sources, style)
        return found[1]

    def get_component_styles(self, *names: str) -> RenderStyles:
        kept = self._component_styles_kept
        if kept is None:
            kept = self._component_styles_kept = {}
        sources = self._sources(names)
        found = kept.get(names)
        if found is None or not _same(found[0], sources):
            found = kept[names] = (sources, super().get_component_styles(*names))
        return found[1]

    def _sources(self, names: tuple[str, ...]) -> Sources:
        """The styles the stylesheet gave each component (new objects at every restyle)."""
        return tuple(self._component_styles.get(name) for name in names)


def _same(kept: Sources, now: Sources) -> bool:
    return all(a is b for a, b in zip(kept, now, strict=True))
