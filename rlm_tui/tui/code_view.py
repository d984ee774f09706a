"""A cell's code, highlighted as Rich's ``Syntax`` (word-wrapped) draws it, in a third of the time.

``Syntax`` renders every line through Rich's text pipeline: 18 ms for an 18-line cell on
this machine, on the app's loop, each time a new cell arrives. Here each line that fits is
one strip made straight from its tokens, in the styles ``Syntax`` gives them, and a line too
long for the width is broken where Rich's word wrap breaks it.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from pygments.lexer import Lexer
from rich._wrap import divide_line
from rich.cells import cell_len
from rich.control import strip_control_codes
from rich.segment import Segment
from rich.style import Style
from rich.syntax import Syntax
from textual.strip import Strip

THEMES = {True: "monokai", False: "friendly"}
"""The highlighting theme for a dark (True) and a light app theme."""


@cache
def python_lexer() -> Lexer:
    """One lexer for every cell (by name, Rich looks it up again for each highlight)."""
    from pygments.lexers.python import PythonLexer

    return PythonLexer(stripnl=False, ensurenl=True, tabsize=4)  # as Rich makes it


def _syntax_text(code: str) -> str:
    """What ``Syntax`` is given for ``code``: its last newlines dropped, never empty."""
    return code.rstrip("\n") or " "


def code_syntax(code: str, dark: bool, background: str = "default") -> Syntax:
    """The ``Syntax`` whose look ``code_strips`` draws."""
    return Syntax(
        _syntax_text(code),
        python_lexer(),
        theme=THEMES[dark],
        word_wrap=True,
        background_color=background,
    )


@lru_cache(maxsize=8)
def _look(dark: bool, background: str, under: Style) -> tuple[Syntax, Style, Style]:
    """The theme's syntax, the style a line is padded with (on the pane's ``under``; a
    transparent background leaves the pane's), and the background ``Syntax`` paints over
    every token."""
    syntax = code_syntax(" ", dark, background)
    base = syntax._get_base_style()
    line = under if base.transparent_background else under + base
    return syntax, line, Style.parse(f"on {background}")


@lru_cache(maxsize=1024)
def _token_style(dark: bool, background: str, under: Style, token: Any) -> Style:
    syntax, _, on_background = _look(dark, background, under)
    theme = syntax._theme.get_style_for_token(token)
    return under + syntax._get_base_style() + theme + on_background


def _wrapped(styled: list[tuple[str, Style]], width: int) -> list[list[Segment]]:
    """One code line's segments in lines of at most ``width`` cells, broken where Rich's word
    wrap breaks them (``Text.wrap``: its breaks, then whitespace past the width dropped)."""
    plain = "".join(text for text, _ in styled)
    if cell_len(plain) <= width:
        return [[Segment(text, style) for text, style in styled]]
    bounds = [0, *divide_line(plain, width, fold=True), len(plain)]
    placed, at = [], 0  # each token with where it starts in the line
    for text, style in styled:
        placed.append((at, text, style))
        at += len(text)
    out = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        if end - start > width:  # Text.rstrip_end: whitespace beyond the width goes
            trailing = end - start - len(plain[start:end].rstrip())
            end -= min(trailing, end - start - width)
        line = [
            Segment(text[max(0, start - at) : end - at], style)
            for at, text, style in placed
            if at < end and at + len(text) > start
        ]
        while sum(cell_len(s.text) for s in line) > width:  # past the width: whitespace only
            last = line[-1]
            line[-1:] = [Segment(last.text[:-1], last.style)] if len(last.text) > 1 else []
        out.append(line)
    return out


def code_strips(code: str, width: int, dark: bool, background: str, under: Style) -> list[Strip]:
    """``code`` as ``width``-cell strips on the style ``under`` (the pane's)."""
    line_style = _look(dark, background, under)[1]
    lines: list[list[tuple[str, Any]]] = [[]]
    # Syntax highlights its text with one closing newline
    for token, value in python_lexer().get_tokens(_syntax_text(code) + "\n"):
        first, *rest = strip_control_codes(value).split("\n")
        if first:
            lines[-1].append((first, token))
        for part in rest:
            lines.append([(part, token)] if part else [])
    if not lines[-1]:
        lines.pop()  # the lexer's closing newline
    strips = []
    for tokens in lines:
        styled = [(t, _token_style(dark, background, under, k)) for t, k in tokens]
        for segments in _wrapped(styled, width):
            strips.append(Strip(segments).extend_cell_length(width, line_style))
    return strips
