"""The footer of the screens: the keys that fit whole, none cut."""

from __future__ import annotations

from textual import events
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import Footer

PALETTE_KEY = "-command-palette"
"""Textual's class of the command palette's key, docked at the footer's right end."""


class WholeKeysFooter(Footer):
    """Textual's footer, where a key that does not fit whole is left out (F1 lists them all).

    Textual's keys run on under the palette key: the last one shown was cut mid-label, and
    the column of the palette key's margin, at the right edge, showed a letter of the next."""

    async def recompose(self) -> None:
        with self.app.batch_update():  # no frame shows the new keys before they are fitted
            await super().recompose()
            self._fit(self.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        keys = list(self.children)
        room = width - sum(_width(key) for key in keys if key.has_class(PALETTE_KEY))
        used = 0
        for key in keys:
            if not key.has_class(PALETTE_KEY):
                used += _width(key)
                key.display = used - key.styles.margin.right <= room


def _width(key: Widget) -> int:
    """The columns a key takes in the footer: its label, padding, border and margins."""
    label = key.get_content_width(Size(0, 0), Size(0, 0))
    return label + key.styles.gutter.width + key.styles.margin.width
