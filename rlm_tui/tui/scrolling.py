"""Growing a scroll view without laying out the whole screen."""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView


def resize_content(view: ScrollView, size: Size) -> None:
    """Set ``view``'s virtual size. A view that grows needs its scrollbar updated, not a layout
    of the whole screen (a layout costs 10-20 ms here, and a log grows line by line); only one
    that gains or loses its scrollbar, or changes width, is laid out again."""
    old, visible = view.virtual_size, view.container_size.height
    if old.width != size.width or (old.height > visible) != (size.height > visible):
        view.virtual_size = size
        return
    view.set_reactive(ScrollView.virtual_size, size)
    view._scroll_update(size)  # what a layout does for a ScrollView whose size changed
    view.refresh()
