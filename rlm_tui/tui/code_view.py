"""A cell's code, highlighted as Rich's ``Syntax`` (word-wrapped) draws it, in a third of the time.

``Syntax`` renders every line through Rich's text pipeline: 18 ms for an 18-line cell on
this machine, on the app's loop, each time a new cell arrives. Here each line that fits is
one strip made straight from its tokens, in the styles ``Syntax`` gives them; only a line too
long for the width is wrapped by Rich, as ``Syntax`` wraps it.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from pygments.lexer import Lexer
from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.control import strip_control_codes
from rich.segment import Segment
from rich.style import Style
from rich.syntax import Syntax
from rich.text import Text
from textual.strip import Strip

THEMES = {True: "monokai", False: "friendly"}
"""The highlighting theme for a dark (True) and a light app theme."""


@cache
def python_lexer() -> Lexer:
    """One lexer for every cell (by name, Rich looks it up again for each highlight)."""
    from pygments.lexers.python import PythonLexer

    return PythonLexer(stripnl=False, ensurenl=True, tabsize=4)  # as Rich makes it


def code_syntax(code: str, dark: bool, background: str = "default") -> Syntax:
    """The ``Syntax`` whose look ``code_strips`` draws."""
    return Syntax(
        code.rstrip("\n") or " ",
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


def code_strips(
    code: str, width: int, dark: bool, background: str, under: Style, console: Console
) -> list[Strip]:
    """``code`` as ``width``-cell strips on the style ``under`` (the pane's)."""
    syntax, line_style, on_background = _look(dark, background, under)
    lines: list[list[tuple[str, Any]]] = [[]]
    highlighted = (code.rstrip("\n") or " ") + "\n"  # what Syntax highlights for ``code``
    for token, value in python_lexer().get_tokens(highlighted):
        first, *rest = strip_control_codes(value).split("\n")
        if first:
            lines[-1].append((first, token))
        for part in rest:
            lines.append([(part, token)] if part else [])
    if not lines[-1]:
        lines.pop()  # the lexer's closing newline
    strips = []
    for tokens in lines:
        used = sum(cell_len(text) for text, _ in tokens)
        if used <= width:
            segments = [Segment(t, _token_style(dark, background, under, k)) for t, k in tokens]
            segments.append(Segment(" " * (width - used), line_style))
            strips.append(Strip(segments, width))
            continue
        base = syntax._get_base_style()
        justify: JustifyMethod = "default" if base.transparent_background else "left"
        text = Text(style=base, justify=justify, tab_size=4, no_wrap=False)
        text.append_tokens((t, syntax._theme.get_style_for_token(k)) for t, k in tokens)
        text.stylize(on_background)
        options = console.options.update(width=width, height=None, justify=justify)
        wrapped = console.render_lines(text, options, style=line_style, pad=False)
        strips.extend(Strip(line).extend_cell_length(width, line_style) for line in wrapped)
    return strips
