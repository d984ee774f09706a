"""The budget meter: each limit as a bar, a warning as one nears, per-agent use, a sparkline."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from rlm_tui.events import Usage

WARN_AT = 0.8
BAR = 24


def _bar(label: str, used: float, limit: float | None, shown: str) -> tuple[Text, float]:
    text = Text(f"{label:<14}")
    if not limit:
        text.append("░" * BAR, style="dim")
        text.append(f" {shown} (no limit)")
        return text, 0.0
    share = used / limit
    filled = min(BAR, round(share * BAR))
    style = "red" if share >= 1 else "yellow" if share >= WARN_AT else "green"
    text.append("█" * filled, style=style)
    text.append("░" * (BAR - filled), style="dim")
    text.append(f" {shown} / {limit:g}  {share:.0%}", style=style if share >= WARN_AT else "")
    return text, share


def meter_rows(
    limits: dict[str, Any], usage: Usage, depth: int, elapsed: float
) -> list[tuple[str, Text, float]]:
    rows = [
        (
            "prompt tokens",
            usage.prompt_tokens,
            limits.get("max_prompt_tokens"),
            f"{usage.prompt_tokens:,}",
        ),
        (
            "completion",
            usage.completion_tokens,
            limits.get("max_completion_tokens"),
            f"{usage.completion_tokens:,}",
        ),
        ("cost $", usage.cost, limits.get("max_cost"), f"{usage.cost:.4f}"),
        ("model calls", usage.calls, limits.get("max_calls"), str(usage.calls)),
        ("depth", depth, limits.get("max_depth"), str(depth)),
        ("time s", elapsed, limits.get("max_time"), f"{elapsed:.1f}"),
    ]
    return [(name, *_bar(name, used, limit, shown)) for name, used, limit, shown in rows]


class BudgetMeter(Vertical):
    DEFAULT_CSS = """
    BudgetMeter { height: 1fr; background: $surface; padding: 0 1; }
    BudgetMeter > #budget-warning { color: $warning; height: auto; }
    BudgetMeter > #budget-bars { height: auto; }
    BudgetMeter > Sparkline { height: 3; margin: 1 0; }
    BudgetMeter > #budget-agents { height: 1fr; }
    """

    def compose(self) -> Any:
        yield Static("", id="budget-warning")
        yield Static("", id="budget-bars")
        yield Sparkline([], id="budget-sparkline")
        yield Static("", id="budget-agents")

    def show(
        self,
        limits: dict[str, Any],
        usage: Usage,
        depth: int,
        elapsed: float,
        per_agent: list[tuple[str, Usage]],
        tokens_per_step: list[int],
    ) -> None:
        rows = meter_rows(limits, usage, depth, elapsed)
        warnings = [
            f"{name} at {share:.0%} of its limit" for name, _, share in rows if share >= WARN_AT
        ]
        self.query_one("#budget-warning", Static).update(
            Text("⚠ " + "; ".join(warnings), style="bold") if warnings else ""
        )
        self.query_one("#budget-bars", Static).update(Text("\n").join(text for _, text, _ in rows))
        self.query_one(Sparkline).data = tokens_per_step[-200:] or [0]
        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        for column in ("agent", "calls", "in", "out", "cost"):
            table.add_column(column, justify="left" if column == "agent" else "right")
        for agent_id, used in per_agent:
            table.add_row(
                agent_id,
                str(used.calls),
                f"{used.prompt_tokens:,}",
                f"{used.completion_tokens:,}",
                f"${used.cost:.4f}",
            )
        self.query_one("#budget-agents", Static).update(table)
