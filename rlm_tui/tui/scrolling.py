"""Growing a scroll view without laying out the whole screen."""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView


def needs_layout(view: ScrollView, old: Size, new: Size) -> bool:
    """Whether content going from ``old`` to ``new`` makes a scrollbar of ``view`` come or go:
    the one change of a view's content that needs a layout of the screen (10-40 ms here, as
    every pane is drawn again after it)."""
    visible = view.container_size
    wider = (old.width > visible.width) != (new.width > visible.width)
    return wider or (old.height > visible.height) != (new.height > visible.height)


def follow_content(view: ScrollView, size: Size) -> None:
    """What a layout does for a scroll view whose content is now ``size``: its scroll range,
    and a repaint."""
    view._scroll_update(size)
    view.refresh()


def resize_content(view: ScrollView, size: Size) -> None:
    """Set ``view``'s virtual size: a log grows line by line, a table row by row and column by
    column, and neither needs the screen laid out again unless a scrollbar comes or goes."""
    if needs_layout(view, view.virtual_size, size):
        view.virtual_size = size
        return
    view.set_reactive(ScrollView.virtual_size, size)
    follow_content(view, size)
