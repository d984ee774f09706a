"""Checks of user input, each defined once: RunConfig runs them (so the Python API, the TUI's
form and resumed settings get them) and the CLI's argparse types call the same ones.

Each refuses with a one-line ``UsageError``; raised inside a pydantic validator, it reaches
the caller as it is. This module imports nothing heavy: the CLI's parser is built from it.
"""

from __future__ import annotations

import os

from rlm_tui.errors import UsageError


def not_blank(text: str, problem: str) -> str:
    """``text`` if it holds more than white space, else ``problem`` as the one line."""
    if not text.strip():
        raise UsageError(problem)
    return text


def check_query(query: str) -> str:
    """A run needs a question: an empty one would spend its budget on nothing."""
    return not_blank(query, "the query is empty")


def non_empty_path(text: str, what: str = "") -> str:
    """A path's text: ``Path("")`` is the current directory, never what an empty value meant."""
    return not_blank(text, f"{what}: an empty path" if what else "an empty path")


def set_variable(name: str) -> str:
    """A variable of this environment: passing one that is not set is a typo, not a choice."""
    if not name or "=" in name or "\0" in name:
        raise UsageError(f"not a variable name: {name!r}")
    if name not in os.environ:
        raise UsageError(f"{name} is not set in this environment")
    return name


def utf8_text(text: str, what: str) -> str:
    """Text a session can save. A byte that is not UTF-8 (in an argument, a file name)
    reaches Python as a lone surrogate, which no session line can hold: refused before a
    session is made or appended to, not a traceback halfway through the run."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        bad = (
            f"the byte \\x{code - 0xDC00:02x}"
            if 0xDC80 <= code <= 0xDCFF
            else f"the lone surrogate \\u{code:04x}"
        )
        raise UsageError(f"{what} is not UTF-8 text: {bad} at character {exc.start}") from None
    return text
