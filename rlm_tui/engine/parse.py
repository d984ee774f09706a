"""Find the code cells and a plain-text FINAL in a model's reply."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*$", re.MULTILINE)
_CODE_LANGUAGES = {"repl", "python", "py", "python3"}
_CLOSING_FENCE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
_ANY_FENCE = re.compile(r"^[ \t]*```.*$", re.MULTILINE)
_FINAL = re.compile(r"^[ \t]*(FINAL_VAR|FINAL|SUBMIT)\(", re.MULTILINE)


@dataclass(frozen=True)
class CodeCell:
    code: str
    preamble: str
    """The model's text between the previous cell (or the start) and this one."""


def code_cells(text: str) -> list[CodeCell]:
    """Cells in ```repl / ```python fences; an unterminated last fence runs to the end.

    Fences with another language (```json, ```text) are prose, not cells.
    """
    cells: list[CodeCell] = []
    pos = 0
    prose_start = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            break
        closing = _CLOSING_FENCE.search(text, opening.end())
        body_end = closing.start() if closing else len(text)
        body = text[opening.end() : body_end].strip("\n")
        pos = closing.end() if closing else len(text)
        if opening.group(1).lower() not in _CODE_LANGUAGES:
            continue
        if body.strip():
            cells.append(CodeCell(body, text[prose_start : opening.start()].strip()))
        prose_start = pos
    return cells


@dataclass(frozen=True)
class FinalMarker:
    kind: str
    """"FINAL", "FINAL_VAR" or "SUBMIT" (FINAL's synonym)."""
    argument: str


def plain_final(text: str) -> FinalMarker | None:
    """A ``FINAL(...)`` or ``FINAL_VAR(...)`` written as text, outside every code fence."""
    prose = _strip_fenced(text)
    for match in _FINAL.finditer(prose):
        argument = _balanced(prose, match.end())
        if argument is not None:
            return FinalMarker(match.group(1), argument.strip())
    return None


def _strip_fenced(text: str) -> str:
    parts: list[str] = []
    inside = False
    pos = 0
    for fence in _ANY_FENCE.finditer(text):
        if not inside:
            parts.append(text[pos : fence.start()])
        inside = not inside
        pos = fence.end()
    if not inside:
        parts.append(text[pos:])
    return "".join(parts)


def _balanced(text: str, start: int) -> str | None:
    """The text up to the parenthesis that closes the one just before ``start``."""
    depth = 1
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    # an unbalanced FINAL at the end of a reply still counts: take the rest of the line
    rest = text[start:].split("\n", 1)[0].rstrip()
    return rest.rstrip(")") or None


def truncate(output: str, limit: int, total: int | None = None) -> str:
    """Cut output to ``limit`` characters for the model, with a marker saying how much was cut.

    ``total`` is the length of the whole output when ``output`` is only its kept head.
    """
    total = len(output) if total is None else total
    if total <= limit:
        return output
    cut = total - limit
    return f"{output[:limit]}\n... [output truncated: {cut:,} of {total:,} characters cut]"
