"""The fork diff as a table: each cell from the fork point, original beside fork."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from rlm_tui.session.fork_diff import ForkDiff
from rlm_tui.session.projection import CellView, RunView


def _first_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    shown = "\n".join(line[:70] for line in lines[:count])
    return shown + ("\n…" if len(lines) > count else "")


def _cell(cell: CellView | None) -> Text:
    if cell is None:
        return Text("—", style="dim")
    text = Text()
    text.append(f"{cell.status}\n", style="bold")
    text.append(_first_lines(cell.code) + "\n")
    if cell.output:
        text.append(_first_lines(cell.output), style="dim")
    return text


def _answer(view: RunView) -> str:
    if view.status != "answered":
        return f"{view.status or 'unfinished'}: {view.reason}" if view.reason else "unfinished"
    value: Any = view.answer
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return shown[:300]


def fork_diff_renderable(diff: ForkDiff) -> Group:
    head = Text()
    head.append(f"fork {diff.fork_id}", style="bold")
    head.append(f" of {diff.original_id}, from cell {diff.fork_point or '(none yet)'}\n")
    table = Table(expand=True, show_lines=True)
    table.add_column("cell", style="bold", no_wrap=True)
    table.add_column(f"original {diff.original_id}", ratio=1)
    table.add_column(f"fork {diff.fork_id}", ratio=1)
    for cell_id in diff.cell_ids:
        original, fork = diff.cells(cell_id)
        table.add_row(cell_id, _cell(original), _cell(fork))
    table.add_row("answer", _answer(diff.original), _answer(diff.fork))
    table.add_row(
        "cost",
        f"${diff.original.usage.cost:.4f} · {diff.original.usage.total_tokens:,} tok",
        f"${diff.fork.usage.cost:.4f} · {diff.fork.usage.total_tokens:,} tok",
    )
    return Group(head, table)
