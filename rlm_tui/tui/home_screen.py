"""The home screen: start a new run, or open a saved session.

Below ``WIDE`` columns one of the two panes shows at a time (ctrl+o: sessions, ctrl+n: the
form); the sessions list puts the query where it can be read, and ``/`` filters it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Input, Label, Static

from rlm_tui import defaults
from rlm_tui.engine.budget import Limits
from rlm_tui.errors import RlmError
from rlm_tui.models.demo import NAME as DEMO_NAME
from rlm_tui.session.catalog import SessionSummary, list_sessions
from rlm_tui.tui.footer import WholeKeysFooter

WIDE = 120
"""From this many columns the form and the sessions list show side by side."""
SESSION_COLUMNS = ("status", "cost", "query", "started", "model", "cells")
QUERY = SESSION_COLUMNS.index("query")

NESTED_QUERY = (
    "Generate a dictionary of different categories: fruits, countries, animals. For each "
    "category, generate 50 names of that and count the number of R in each, return as a "
    "nested dictionary"
)


class SessionTable(DataTable[str]):
    """The saved sessions; ``/`` opens the filter."""

    BINDINGS = [Binding("slash", "screen.filter", "Filter", id="home.filter")]


class RunForm(VerticalScroll, can_focus=False):
    """The new-run form; it scrolls (the focused field comes into view) in a small terminal."""


class HomeScreen(Screen[None]):
    DEFAULT_CSS = """
    HomeScreen { layout: horizontal; }
    HomeScreen > #new-run { width: 1fr; padding: 0 1; border: round $pane-border; }
    HomeScreen > #sessions-pane { width: 1fr; padding: 0 1; border: round $pane-border; }
    HomeScreen > .pane:focus-within { border: round $primary; }
    HomeScreen.narrow > .pane { display: none; }
    HomeScreen.narrow.show-new-run > #new-run { display: block; }
    HomeScreen.narrow.show-sessions-pane > #sessions-pane { display: block; }
    HomeScreen Label { margin-top: 1; }
    HomeScreen #filter { display: none; }
    HomeScreen #filter.shown { display: block; }
    HomeScreen .row { height: auto; }
    HomeScreen .row Input { width: 1fr; }
    HomeScreen #start { margin-top: 1; }
    HomeScreen DataTable { height: 1fr; scrollbar-gutter: stable; }
    """
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="home.start"),
        Binding("ctrl+o", "show_sessions", "Sessions", id="home.sessions"),
        Binding("ctrl+n", "show_form", "New run", id="home.new_run"),
        Binding("ctrl+l", "reload", "Reload sessions", id="home.reload"),
        Binding("escape", "back", "Back to the run", id="home.back"),
    ]

    def __init__(
        self,
        sessions_dir: Path | None = None,
        run_defaults: dict[str, Any] | None = None,
        back: bool = False,
        form_values: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.sessions_dir = sessions_dir
        self.run_defaults = dict(run_defaults or {})
        """The config file's ``run:`` section: the form starts from it."""
        self.limits: Limits = self.run_defaults.pop("limits", None) or Limits()
        self.back = back
        """Escape goes back to the live run this screen was opened over."""
        self.form_values = {} if form_values is None else form_values
        """The form's fields as typed, by id: the app keeps them, so that the next home screen
        (F2 after a run that failed to start, or any run) shows what was typed."""
        self._sessions: list[SessionSummary] = []

    def compose(self) -> ComposeResult:
        with RunForm(id="new-run", classes="pane"):
            yield Static("[b]New run[/b]  (model 'demo' is offline: canned text, real kernels)")
            yield Label("Query")
            yield Input(NESTED_QUERY, id="query")
            yield Label("Context file or directory (optional)")
            yield Input(placeholder="path/to/context.txt", id="context")
            yield Label("Model and sub-model ('demo' is offline; else a litellm name)")
            with Horizontal(classes="row"):
                yield Input(
                    self.run_defaults.get("model", defaults.MODEL), placeholder="model", id="model"
                )
                yield Input(
                    _text(self.run_defaults.get("sub_model")),
                    placeholder="sub-model (default: model)",
                    id="sub-model",
                )
            yield Label("Budgets (empty: no limit)")
            with Horizontal(classes="row"):
                yield Input(_text(self.limits.max_cost), placeholder="max $", id="max-cost")
                yield Input(_text(self.limits.max_calls), placeholder="max calls", id="max-calls")
                yield Input(_text(self.limits.max_depth), placeholder="max depth", id="max-depth")
                yield Input(_text(self.limits.max_time), placeholder="max seconds", id="max-time")
            yield Label("Sandbox (auto, require, off) · Jupyter gateway URL (optional)")
            with Horizontal(classes="row"):
                yield Input(
                    self.run_defaults.get("sandbox", "auto"), placeholder="sandbox", id="sandbox"
                )
                yield Input(
                    _text(self.run_defaults.get("kernel_gateway")),
                    placeholder="gateway URL (default: kernels on this machine)",
                    id="kernel-gateway",
                )
            yield Button("Start run (ctrl+r)", id="start", variant="primary")
        with Vertical(id="sessions-pane", classes="pane"):
            yield Static("[b]Saved sessions[/b]  (Enter opens · / filters)")
            yield Input(placeholder="filter: words of the query, model, status", id="filter")
            yield SessionTable(id="sessions", cursor_type="row")
        yield WholeKeysFooter()

    def on_mount(self) -> None:
        self.query_one("#new-run").border_title = "New run (ctrl+n)"
        self.query_one("#sessions-pane").border_title = "Sessions (ctrl+o)"
        self._apply_width(self.size.width)
        self.action_reload()
        for field in self.query_one(RunForm).query(Input):
            field.value = self.form_values.get(str(field.id), field.value)
        self.query_one("#query", Input).focus()
        form = self.query_one(RunForm)
        self.call_after_refresh(form.scroll_home, animate=False)  # the form from its top

    def on_resize(self, event: Any) -> None:
        self._apply_width(event.size.width)
        self._fill()

    def _apply_width(self, width: int) -> None:
        self.set_class(width < WIDE, "narrow")
        if not (self.has_class("show-new-run") or self.has_class("show-sessions-pane")):
            self.add_class("show-new-run")

    def action_reload(self) -> None:
        self._sessions = list_sessions(self.sessions_dir)
        self._fill()

    def _fill(self) -> None:
        """The sessions the filter keeps, each column sized here (the table's own sizing only
        grows a column: after a resize or a filter, the query was cut in a wide column and the
        table scrolled sideways); a query too long for its column ends in "…"."""
        table = self.query_one(DataTable)
        words = self.query_one("#filter", Input).value.lower().split()
        rows = []
        for s in self._sessions:
            model = "demo" if s.model == DEMO_NAME else s.model
            haystack = f"{s.query} {model} {s.status} {s.id}".lower()
            if all(word in haystack for word in words):
                started = s.started.replace("T", " ")[5:16]
                query = " ".join(s.query.split())
                rows.append((s, [s.status, f"${s.cost:.4f}", query, started, model, str(s.cells)]))
        widths = [
            max([len(name), *(cell_len(values[i]) for _, values in rows)])
            for i, name in enumerate(SESSION_COLUMNS)
        ]
        pane = self.size.width if self.has_class("narrow") else self.size.width // 2
        # the query takes what the other columns leave: the pane's border and padding (4),
        # each column's padding (2), the scrollbar's gutter (2)
        room = pane - 4 - 2 * len(SESSION_COLUMNS) - 2 - (sum(widths) - widths[QUERY])
        widths[QUERY] = max(12, room)
        table.clear(columns=True)
        for name, width in zip(SESSION_COLUMNS, widths, strict=True):
            table.add_column(name, width=width)
        for s, values in rows:  # as text, not markup: a query may hold "[/b]"
            table.add_row(*(Text(value, overflow="ellipsis") for value in values), key=s.path)

    def _show(self, pane: str) -> None:
        self.remove_class("show-new-run", "show-sessions-pane")
        self.add_class(f"show-{pane}")

    def action_show_sessions(self) -> None:
        self._show("sessions-pane")
        self.query_one(DataTable).focus()

    def action_show_form(self) -> None:
        self._show("new-run")
        self.query_one("#query", Input).focus()

    def action_filter(self) -> None:
        self._show("sessions-pane")
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._fill()
        else:
            self.form_values[str(event.input.id)] = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one(DataTable).focus()

    def action_back(self) -> None:
        """Back to the live run (only when this screen was opened over one)."""
        box = self.query_one("#filter", Input)
        if box.has_focus:
            box.value = ""
            box.remove_class("shown")
            self.query_one(DataTable).focus()
        elif self.back:
            self.dismiss()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.open_session(Path(event.row_key.value))  # type: ignore[attr-defined]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_start()

    def action_start(self) -> None:
        from rlm_tui.checks import check_query
        from rlm_tui.engine.context import context_from_file
        from rlm_tui.engine.run import config_from_settings

        def value(name: str) -> str:
            return self.query_one(f"#{name}", Input).value.strip()

        try:
            check_query(value("query"))  # first, as the CLI does
            if value("context"):  # refused here, as the CLI does, not on the run's screen
                context_from_file(Path(value("context")))
            # as text: validated with the rest of the config, as the same flags are
            limits = {
                **self.limits.model_dump(),
                "max_cost": value("max-cost") or None,
                "max_calls": value("max-calls") or None,
                "max_depth": value("max-depth") or defaults.MAX_DEPTH,
                "max_time": value("max-time") or None,
            }
            options: dict[str, Any] = dict(self.run_defaults)
            if self.sessions_dir:
                options["sessions_dir"] = self.sessions_dir
            options.update(
                query=value("query"),
                context_file=value("context") or None,
                model=value("model") or defaults.MODEL,
                sub_model=value("sub-model") or None,
                limits=limits,
                demo_delay=defaults.DEMO_DELAY,
                sandbox=value("sandbox") or "auto",
                kernel_gateway=value("kernel-gateway") or None,
            )
            config = config_from_settings(options)  # a bad value: one line naming its flag
            self.app.start_run(config)  # type: ignore[attr-defined]
        except (ValueError, RlmError) as exc:
            self.notify(str(exc).splitlines()[0], title="cannot start", severity="error")


def _text(value: Any) -> str:
    """A default as the text of a form field; an unset one as an empty field."""
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
