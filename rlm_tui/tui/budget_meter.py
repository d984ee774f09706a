"""The budget pane: each limit as a bar, a warning as one nears, per-agent use, a sparkline.

``BudgetMeter.show(...)`` may be called on every event: it stores plain values in reactive
attributes (a repaint happens only when something visible changed, and at most once a frame)
and updates the per-agent table cell by cell. Colours come from component classes in
``DEFAULT_CSS`` that use theme variables only, so every theme, light or dark, applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from rlm_tui.engine.budget import Limits
from rlm_tui.events import Usage
from rlm_tui.tui.usage_table import UsageTable

WARN_AT = 0.8
"""A bar turns warning-coloured at this share of its limit, error-coloured at 1.0."""
SPARK_POINTS = 400
"""Steps kept for the sparkline (it buckets them into its width)."""
_LABEL_WIDTH = 18
_PERCENT_WIDTH = 6
_MAX_BAR = 64
_AGENT_COLUMNS = ("agent", "calls", "in", "out", "cost")


class MeterRow(NamedTuple):
    """One limit: what is used of it, how to print both, and the used share (None: no limit)."""

    name: str
    used: float
    limit: float | None
    used_text: str
    limit_text: str
    share: float | None
    ceiling: bool = False
    """A limit that can be reached but not passed (depth): at 100% it warns, not errs."""

    @property
    def level(self) -> str:
        """``ok``, ``warning`` (at ``WARN_AT`` of the limit or more), ``error`` (all used)."""
        if self.share is None or self.share < WARN_AT:
            return "ok"
        return "error" if self.share >= 1 and not self.ceiling else "warning"

    def warning(self) -> str | None:
        if self.share is None or self.level == "ok":
            return None
        if self.share >= 1:
            what = "at its limit" if self.ceiling else "limit reached"
            return f"{self.name} {what} ({self.used_text} of {self.limit_text})"
        return f"{self.name} at {self.share:.0%} of limit"


def format_tokens(n: float) -> str:
    return f"{int(n):,}"


def format_cost(dollars: float) -> str:
    return f"${dollars:.4f}" if dollars < 1 else f"${dollars:,.2f}"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def meter_rows(
    limits: Limits | Mapping[str, Any], usage: Usage, depth: int, elapsed: float
) -> tuple[MeterRow, ...]:
    """The six rows of the meter, in display order."""
    lim: Mapping[str, Any] = limits.model_dump() if isinstance(limits, Limits) else limits

    def row(name: str, used: float, key: str, fmt: Any, ceiling: bool = False) -> MeterRow:
        limit = lim.get(key)
        if limit is None:
            return MeterRow(name, used, None, fmt(used), "", None, ceiling)
        limit = float(limit)
        share = used / limit if limit > 0 else (1.0 if used > 0 else 0.0)
        return MeterRow(name, used, limit, fmt(used), fmt(limit), share, ceiling)

    return (
        row("prompt tokens", usage.prompt_tokens, "max_prompt_tokens", format_tokens),
        row("completion tokens", usage.completion_tokens, "max_completion_tokens", format_tokens),
        row("cost", usage.cost, "max_cost", format_cost),
        row("model calls", usage.calls, "max_calls", format_tokens),
        row("depth", depth, "max_depth", format_tokens, ceiling=True),
        row("time", elapsed, "max_time", format_seconds),
    )


def warning_line(rows: Sequence[MeterRow]) -> str:
    """'⚠ prompt tokens at 85% of limit; ...' for every limit at WARN_AT or more, else ''."""
    warnings = [w for w in (r.warning() for r in rows) if w]
    return ("⚠ " + "; ".join(warnings)) if warnings else ""


class BudgetBars(Widget):
    """The limit rows, drawn in one render; repainted only when ``rows`` changes."""

    COMPONENT_CLASSES = {
        "budget-bars--label",
        "budget-bars--ok",
        "budget-bars--warning",
        "budget-bars--error",
        "budget-bars--track",
        "budget-bars--muted",
    }
    DEFAULT_CSS = """
    BudgetBars {
        height: 6;
        & > .budget-bars--label { color: $foreground; }
        & > .budget-bars--ok { color: $success; }
        & > .budget-bars--warning { color: $warning; text-style: bold; }
        & > .budget-bars--error { color: $error; text-style: bold; }
        & > .budget-bars--track { color: $foreground 20%; }
        & > .budget-bars--muted { color: $foreground 55%; }
    }
    """

    rows: reactive[tuple[MeterRow, ...]] = reactive(())

    def render(self) -> Text:
        rows = self.rows
        if not rows:
            return Text("no run yet", style=self.get_component_rich_style("budget-bars--muted"))
        style = self.get_component_rich_style
        label_style, track, muted = (
            style("budget-bars--label"),
            style("budget-bars--track"),
            style("budget-bars--muted"),
        )
        figures = [
            f"{r.used_text} / {r.limit_text}" if r.limit is not None else r.used_text for r in rows
        ]
        figure_width = max(len(f) for f in figures)
        width = self.content_size.width or 80
        label_width = min(_LABEL_WIDTH, max(len(r.name) for r in rows) + 1)
        bar_width = min(_MAX_BAR, width - label_width - figure_width - _PERCENT_WIDTH - 2)
        bar_width = max(bar_width, 4)
        lines = []
        for r, figure in zip(rows, figures, strict=True):
            line = Text(no_wrap=True, overflow="ellipsis", end="")
            line.append(f"{r.name:<{label_width}}", label_style)
            if r.share is None:
                line.append(f"{'no limit':<{bar_width}}", muted)
                line.append(f"  {figure:>{figure_width}}")
            else:
                level_style = style(f"budget-bars--{r.level}")
                filled, half = divmod(round(min(r.share, 1.0) * bar_width * 2), 2)
                line.append("━" * filled, level_style)
                if half:
                    line.append("╸", level_style)
                rest = bar_width - filled - half
                if rest:
                    line.append("━" * rest, track)
                line.append(f"  {figure:>{figure_width}}")
                line.append(
                    f"{r.share:>{_PERCENT_WIDTH}.0%}", level_style if r.level != "ok" else ""
                )
            lines.append(line)
        return Text("\n", end="").join(lines)


class BudgetWarning(Static):
    """The one warning line at the top; hidden while no limit nears."""

    DEFAULT_CSS = """
    BudgetWarning {
        height: 1;
        color: $text-warning;
        text-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        display: none;
        &.-warning { display: block; }
        &.-error { display: block; color: $text-error; }
    }
    """

    text: reactive[str] = reactive("")
    level: reactive[str] = reactive("ok")

    def watch_text(self, text: str) -> None:
        self.update(text)

    def watch_level(self, level: str) -> None:
        self.set_class(level == "warning", "-warning")
        self.set_class(level == "error", "-error")


class BudgetMeter(Widget):
    """The budget pane. Feed it with :meth:`show` as often as every event."""

    DEFAULT_CSS = """
    BudgetMeter {
        layout: vertical;
        height: 1fr;
        background: $surface;
        padding: 0 1;
        & > BudgetBars { margin-bottom: 1; }
        & > .budget-caption { height: 1; color: $text-muted; text-wrap: nowrap; }
        & > Sparkline { height: 2; margin-bottom: 1; }
        & > Sparkline > .sparkline--max-color { color: $accent; }
        & > Sparkline > .sparkline--min-color { color: $primary 50%; }
    }
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._caption = ""
        self._pending: tuple[Any, ...] | None = None
        self._ready = False
        self.rows: tuple[MeterRow, ...] = ()
        """The rows last shown (for tests and for the app's status line)."""

    def compose(self) -> ComposeResult:
        yield BudgetWarning(id="budget-warning")
        yield BudgetBars(id="budget-bars")
        yield Static("tokens per step", id="budget-caption", classes="budget-caption")
        yield Sparkline([], id="budget-sparkline")
        yield UsageTable(_AGENT_COLUMNS, id="budget-agents")

    def on_mount(self) -> None:
        if not self.is_attached:  # the app ended while this pane mounted: its parts are gone
            return
        self._bars = self.query_one(BudgetBars)
        self._warning = self.query_one(BudgetWarning)
        self._spark = self.query_one(Sparkline)
        self._caption_label = self.query_one("#budget-caption", Static)
        self._table = self.query_one(UsageTable)
        self._ready = True
        if self._pending is not None:
            self.show(*self._pending)

    @property
    def ready(self) -> bool:
        """Mounted: until then only a call with every agent is kept (and shown at mount)."""
        return self._ready

    @property
    def warning(self) -> str:
        """The warning line as shown ('' when no limit nears)."""
        return self._warning.text if self._ready else ""

    def focus(self, scroll_visible: bool = True) -> BudgetMeter:
        """Focus the per-agent table (the only part that scrolls)."""
        self.query_one(UsageTable).focus(scroll_visible)
        return self

    def show(
        self,
        limits: Limits | Mapping[str, Any],
        usage: Usage,
        depth: int,
        elapsed: float,
        per_agent: Sequence[tuple[str, Usage]],
        tokens_per_step: Sequence[int],
        every_agent: bool = True,
    ) -> None:
        """Show the run's spending against ``limits``; cheap enough to call on every event.

        ``depth`` is the deepest agent seen so far, ``elapsed`` the run's seconds, ``per_agent``
        each agent's own usage in display order, ``tokens_per_step`` one total per model call.
        With ``every_agent`` False, ``per_agent`` holds only the agents whose row changed (a new
        one is added at the end).
        """
        if not self._ready:  # shown once mounted (the caller passes every agent until then)
            self._pending = (limits, usage, depth, elapsed, per_agent, tokens_per_step)
            return
        self._pending = None
        rows = meter_rows(limits, usage, depth, elapsed)
        self.rows = rows
        self._bars.rows = rows
        warning = self._warning
        warning.text = warning_line(rows)
        levels = {r.level for r in rows}
        warning.level = "error" if "error" in levels else "warning" if levels - {"ok"} else "ok"
        self._show_steps(tokens_per_step)
        self._show_agents(per_agent, every_agent)

    def _show_steps(self, tokens_per_step: Sequence[int]) -> None:
        data = tuple(tokens_per_step[-SPARK_POINTS:])
        spark = self._spark
        if spark.data != data:
            spark.data = data
        if data:
            caption = (
                f"tokens per step · {len(tokens_per_step)} steps · "
                f"last {data[-1]:,} · max {max(data):,}"
            )
        else:
            caption = "tokens per step"
        if caption != self._caption:
            self._caption = caption
            self._caption_label.update(caption, layout=False)  # always one row

    def _show_agents(self, per_agent: Sequence[tuple[str, Usage]], every_agent: bool) -> None:
        table = self._table
        ids = tuple(agent_id for agent_id, _ in per_agent)
        if every_agent and ids[: table.row_count] != table.keys:
            table.clear()
        for agent_id, used in per_agent:
            cells = (
                agent_id,
                f"{used.calls:,}",
                f"{used.prompt_tokens:,}",
                f"{used.completion_tokens:,}",
                format_cost(used.cost),
            )
            table.set_row(agent_id, cells)
