"""The home screen: start a new run, or open a saved session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from rlm_tui.errors import RlmError
from rlm_tui.models.demo import NAME as DEMO_NAME
from rlm_tui.session.catalog import list_sessions

NESTED_QUERY = (
    "Generate a dictionary of different categories: fruits, countries, animals. For each "
    "category, generate 50 names of that and count the number of R in each, return as a "
    "nested dictionary"
)


class HomeScreen(Screen[None]):
    DEFAULT_CSS = """
    HomeScreen { layout: horizontal; }
    HomeScreen > #new-run { width: 1fr; padding: 1 2; border: round $primary; }
    HomeScreen > #sessions-pane { width: 1fr; padding: 1 2; border: round $panel; }
    HomeScreen Label { margin-top: 1; }
    HomeScreen .row { height: auto; }
    HomeScreen .row Input { width: 1fr; }
    HomeScreen #start { margin-top: 1; }
    HomeScreen DataTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", id="home.start"),
        Binding("ctrl+l", "reload", "Reload sessions", id="home.reload"),
    ]

    def __init__(self, sessions_dir: Path | None = None) -> None:
        super().__init__()
        self.sessions_dir = sessions_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="new-run"):
            yield Static("[b]New run[/b]  (model 'demo' is offline: canned text, real kernels)")
            yield Label("Query")
            yield Input(NESTED_QUERY, id="query")
            yield Label("Context file or directory (optional)")
            yield Input(placeholder="path/to/context.txt", id="context")
            yield Label("Model and sub-model ('demo' is offline; else a litellm name)")
            with Horizontal(classes="row"):
                yield Input("demo", placeholder="model", id="model")
                yield Input(placeholder="sub-model (default: model)", id="sub-model")
            yield Label("Budgets (empty: no limit)")
            with Horizontal(classes="row"):
                yield Input(placeholder="max $", id="max-cost")
                yield Input(placeholder="max calls", id="max-calls")
                yield Input("3", placeholder="max depth", id="max-depth")
                yield Input(placeholder="max seconds", id="max-time")
            yield Button("Start run (ctrl+r)", id="start", variant="primary")
        with Vertical(id="sessions-pane"):
            yield Static("[b]Saved sessions[/b]  (Enter opens)")
            yield DataTable(id="sessions", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("session", "status", "model", "agents", "cells", "cost", "query")
        self.action_reload()
        self.query_one("#query", Input).focus()

    def action_reload(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for s in list_sessions(self.sessions_dir):
            model = "demo" if s.model == DEMO_NAME else s.model
            table.add_row(
                s.id,
                s.status,
                model,
                str(s.agents),
                str(s.cells),
                f"${s.cost:.4f}",
                s.query[:60],
                key=s.path,
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.open_session(Path(event.row_key.value))  # type: ignore[attr-defined]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_start()

    def action_start(self) -> None:
        from rlm_tui.engine.budget import Limits
        from rlm_tui.engine.run import RunConfig

        def value(name: str) -> str:
            return self.query_one(f"#{name}", Input).value.strip()

        try:
            limits = Limits(
                max_cost=float(value("max-cost")) if value("max-cost") else None,
                max_calls=int(value("max-calls")) if value("max-calls") else None,
                max_depth=int(value("max-depth") or 3),
                max_time=float(value("max-time")) if value("max-time") else None,
            )
            options: dict[str, Any] = (
                {"sessions_dir": self.sessions_dir} if self.sessions_dir else {}
            )
            config = RunConfig(
                query=value("query") or NESTED_QUERY,
                context_file=value("context") or None,
                model=value("model") or "demo",
                sub_model=value("sub-model") or None,
                limits=limits,
                demo_delay=0.01,
                **options,
            )
            self.app.start_run(config)  # type: ignore[attr-defined]
        except (ValueError, RlmError) as exc:
            self.notify(str(exc).splitlines()[0], title="cannot start", severity="error")
