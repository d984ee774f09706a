"""The run screen: four linked panes following one run (live, or a saved session)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, Tab, Tabs, Tree

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run
from rlm_tui.errors import RlmError
from rlm_tui.events import (
    BudgetStop,
    ErrorEvent,
    Event,
    KernelEvent,
    Notice,
    RunFinished,
)
from rlm_tui.tui.agent_tree import AgentTree
from rlm_tui.tui.budget_meter import BudgetMeter
from rlm_tui.tui.cell_log import CellLog
from rlm_tui.tui.context_view import ContextBrowser, coverage_ranges
from rlm_tui.tui.modals import (
    BreakpointsScreen,
    EditCellScreen,
    LaunchRequest,
    LaunchScreen,
    TextScreen,
    bindings_table,
)
from rlm_tui.tui.state import RunView

WIDE = 140
REFRESH = 0.05
PANES = [("cells", "Cells"), ("tree", "Agents"), ("context", "Context"), ("budget", "Budget")]


class RunScreen(Screen[None]):
    DEFAULT_CSS = """
    RunScreen { layout: vertical; }
    #status { height: 1; background: $panel; color: $text; padding: 0 1; }
    #status.demo { background: $warning 30%; }
    #pane-tabs { display: none; }
    #panes { height: 1fr; layout: grid; grid-size: 2 2; grid-columns: 2fr 3fr; grid-rows: 1fr 1fr; }
    #panes > .pane { border: round $panel; border-title-color: $text-muted; }
    #panes > .pane:focus-within { border: round $primary; border-title-color: $primary; }
    #pane-cells { row-span: 1; }
    #panes.narrow { layout: vertical; }
    #panes.narrow > .pane { display: none; height: 1fr; }
    #panes.narrow.show-cells > #pane-cells { display: block; }
    #panes.narrow.show-tree > #pane-tree { display: block; }
    #panes.narrow.show-context > #pane-context { display: block; }
    #panes.narrow.show-budget > #pane-budget { display: block; }
    #answer { height: auto; max-height: 4; background: $success 15%; padding: 0 1; display: none; }
    #answer.shown { display: block; }
    """
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/resume", id="run.pause"),
        Binding("s", "step", "Step", id="run.step"),
        Binding("e", "edit", "Edit cell", id="run.edit"),
        Binding("x", "skip", "Skip cell", id="run.skip"),
        Binding("i", "interrupt", "Interrupt", id="run.interrupt"),
        Binding("X", "stop", "Stop run", id="run.stop"),
        Binding("b", "breakpoints", "Breakpoints", id="run.breakpoints"),
        Binding("l", "launch", "Launch sub-agent", id="run.launch"),
        Binding("A", "answer", "Answer", show=False, id="run.answer"),
        Binding("F", "fork", "Fork at cell", id="run.fork"),
        Binding("1", "pane('cells')", "Cells", show=False, id="pane.cells"),
        Binding("2", "pane('tree')", "Agents", show=False, id="pane.tree"),
        Binding("3", "pane('context')", "Context", show=False, id="pane.context"),
        Binding("4", "pane('budget')", "Budget", show=False, id="pane.budget"),
        Binding("f1", "help", "Help", id="app.help"),
    ]

    def __init__(
        self,
        run: Run | None = None,
        events: list[Event] | None = None,
        editor: str | None = None,
        replay_speed: float = 0.0,
    ) -> None:
        super().__init__()
        self.run = run
        self.replay_speed = replay_speed
        self.view = RunView()
        self.editor = editor
        if events is None and run is not None and run.config.append_to is not None:
            events = session_events(run.config.append_to)  # a resumed or forked run's past
        self._recorded = events or []
        self._dirty = True
        self._agent_filter: str | None = None
        self._context_loaded = False
        self._coverage_version = -1
        self._narrow_pane = "cells"
        self._context_text = ""

    def compose(self) -> ComposeResult:
        yield Static("rlm-tui", id="status")
        yield Tabs(*[Tab(label, id=f"tab-{key}") for key, label in PANES], id="pane-tabs")
        with Container(id="panes"):
            with Vertical(id="pane-tree", classes="pane"):
                yield AgentTree(id="agents")
            with Vertical(id="pane-cells", classes="pane"):
                yield CellLog(id="cells")
            with Vertical(id="pane-budget", classes="pane"):
                yield BudgetMeter(id="budget")
            with Vertical(id="pane-context", classes="pane"):
                yield ContextBrowser(id="context")
        yield Static("", id="answer")
        yield Footer()

    def on_mount(self) -> None:
        for key, label in PANES:
            self.query_one(f"#pane-{key}").border_title = label
        if self.replay_speed > 0:
            self._replay()
        else:
            for event in self._recorded:
                self.view.apply(event)
        self.set_interval(REFRESH, self._refresh_if_dirty)
        self._apply_width(self.size.width)
        if self.run is not None:
            self.run.subscribe(self._on_event)
            self._drive()
        self.query_one(CellLog).focus()
        self._refresh()

    # -- following the run ------------------------------------------------------------------

    @work(exclusive=True, group="run")
    async def _drive(self) -> None:
        assert self.run is not None
        try:
            await self.run.start()
            await self.run.wait()
        except RlmError as exc:
            self.notify(str(exc), title="the run could not start", severity="error", timeout=10)
            self.view.status, self.view.reason = "error", str(exc)
            self._dirty = True

    @work(exclusive=True, group="replay")
    async def _replay(self) -> None:
        """Play recorded events back at ``replay_speed`` times their pace (gaps capped at 1 s)."""
        previous = self._recorded[0].t if self._recorded else 0.0
        for event in self._recorded:
            await asyncio.sleep(min(max(0.0, event.t - previous) / self.replay_speed, 1.0))
            previous = event.t
            self.view.apply(event)
            self._dirty = True

    def _on_event(self, event: Event) -> None:
        self.view.apply(event)
        self._dirty = True
        if isinstance(event, BudgetStop | ErrorEvent):
            self.notify(event.message, title="run stopped", severity="error", timeout=8)
        elif isinstance(event, KernelEvent) and event.what == "died":
            self.notify(
                event.reason, title=f"agent {event.agent_id}: kernel died", severity="warning"
            )
        elif isinstance(event, Notice):
            self.notify(event.message)
        elif isinstance(event, RunFinished) and event.status == "answered":
            self.notify("the run answered", title="done", timeout=5)

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._refresh()

    def _refresh(self) -> None:
        self._dirty = False
        view = self.view
        if not self._context_loaded and view.run_id:
            self._context_loaded = True
            browser = self.query_one(ContextBrowser)
            browser.load_file(view.context_file, view.context_kind)
            self._context_text = browser.text_view.text
        self.query_one("#status", Static).update(self._status_line())
        self.query_one("#status").set_class(view.model_is_demo, "demo")
        self.query_one(AgentTree).show(view, time.time() if not view.finished else None)
        self.query_one(CellLog).show(view, self._agent_filter)
        per_agent = [(a.agent_id, a.usage) for a in view.agents.values()]
        self.query_one(BudgetMeter).show(
            view.limits,
            view.usage,
            view.depth,
            view.elapsed or self._elapsed(),
            per_agent,
            view.tokens_per_step,
        )
        self._update_coverage()
        answer = self.query_one("#answer", Static)
        if view.finished:
            answer.add_class("shown")
            answer.update(self._answer_text())

    def _elapsed(self) -> float:
        return (
            time.time() - self.view.started if self.view.started and not self.view.finished else 0.0
        )

    def _status_line(self) -> Text:
        view = self.view
        text = Text()
        text.append("rlm-tui", style="bold")
        model = view.model or (self.run.model.name if self.run else "")
        text.append(f"  model {model}")
        if view.model_is_demo:
            text.append("  [OFFLINE DEMO MODEL: canned text, real kernels]", style="bold")
        if view.sandbox_warning:
            text.append(f"  [{view.sandbox_warning}]", style="bold red")
        state = view.status or view.state
        text.append(f"  ·  {state}", style="bold yellow" if state == "paused" else "bold")
        pending = view.pending
        if pending:
            text.append(f"  ·  waiting: cell {pending[0].cell_id} ({pending[0].paused_reason})")
        if view.session_dir:
            text.append(f"  ·  {view.session_dir}", style="dim")
        return text

    def _answer_text(self) -> Text:
        view = self.view
        if view.status != "answered":
            return Text(f"{view.status}: {view.reason}", style="bold red")
        shown = (
            json.dumps(view.answer, ensure_ascii=False)
            if not isinstance(view.answer, str)
            else view.answer
        )
        return Text(f"answer: {shown[:600]}{'…' if len(shown) > 600 else ''}  (A: full answer)")

    def _update_coverage(self) -> None:
        if not self._context_text or self._coverage_version == len(self.view.seen_texts):
            return
        self._coverage_version = len(self.view.seen_texts)
        ranges: list[tuple[int, int]] = []
        for texts in self.view.seen_texts.values():
            for seen in texts[-50:]:
                ranges += coverage_ranges(self._context_text, seen)
        self.query_one(ContextBrowser).set_coverage(ranges)

    # -- selection between panes ------------------------------------------------------------

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        agent_id = event.node.data
        self._agent_filter = agent_id if isinstance(agent_id, str) else None
        self.query_one(CellLog).show(self.view, self._agent_filter)
        agent = self.view.agents.get(self._agent_filter or "")
        if agent is not None:
            self.notify(f"agent {agent.agent_id}: {agent.query[:200]}", title="prompt")
            self._mark_seen(self.view.seen_texts.get(agent.agent_id, []))

    def on_cell_log_selected(self, event: CellLog.Selected) -> None:
        self._mark_seen([event.cell.model_view] if event.cell.model_view else [])

    def _mark_seen(self, texts: list[str]) -> None:
        if not self._context_text:
            return
        ranges = [r for seen in texts for r in coverage_ranges(self._context_text, seen)]
        self.query_one(ContextBrowser).text_view.set_highlight(ranges)

    # -- layout -----------------------------------------------------------------------------

    def on_resize(self, event: Any) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        narrow = width < WIDE
        panes = self.query_one("#panes")
        panes.set_class(narrow, "narrow")
        self.query_one("#pane-tabs").display = narrow
        for key, _ in PANES:
            panes.set_class(narrow and key == self._narrow_pane, f"show-{key}")

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is not None and event.tab.id:
            self.action_pane(event.tab.id.removeprefix("tab-"))

    def action_pane(self, key: str) -> None:
        self._narrow_pane = key
        self._apply_width(self.size.width)
        tabs = self.query_one(Tabs)
        if tabs.active != f"tab-{key}":
            tabs.active = f"tab-{key}"
        target = {
            "cells": CellLog,
            "tree": AgentTree,
            "context": ContextBrowser,
            "budget": BudgetMeter,
        }[key]
        widget = self.query_one(target)
        if isinstance(widget, ContextBrowser):
            widget.text_view.focus()
        else:
            widget.focus()

    # -- control ----------------------------------------------------------------------------

    def _live(self) -> Run | None:
        if self.run is None or self.view.finished:
            self.notify("this run is not live", severity="warning")
            return None
        return self.run

    def _pending_cell(self) -> str | None:
        run = self._live()
        if run is None:
            return None
        pending = [g for g, p in run.control.pending.items() if p.kind == "cell"]
        selected = self.query_one(CellLog).current
        if selected is not None and selected.cell_id in pending:
            return selected.cell_id
        if not pending:
            self.notify(
                "no cell is waiting: pause (space) or set a breakpoint (b)", severity="warning"
            )
            return None
        return pending[0]

    def action_toggle_pause(self) -> None:
        run = self._live()
        if run is None:
            return
        if run.control.paused:
            run.resume()
        else:
            run.pause()
            self.notify("pausing before the next cell")
        self._dirty = True

    def action_step(self) -> None:
        """Let one cell through: the selected one if it waits, else the oldest waiting."""
        run = self._live()
        if run is None:
            return
        selected = self.query_one(CellLog).current
        gate = selected.cell_id if selected and selected.cell_id in run.control.pending else None
        run.step(gate)
        self._dirty = True

    def action_skip(self) -> None:
        cell_id = self._pending_cell()
        if cell_id is not None and self.run is not None:
            self.run.skip_cell(cell_id)

    def action_edit(self) -> None:
        cell_id = self._pending_cell()
        if cell_id is None or self.run is None:
            return
        run = self.run
        code = run.control.pending[cell_id].code

        def replace(new_code: str | None) -> None:
            if new_code is None or cell_id not in run.control.pending:
                return
            run.replace_cell(cell_id, new_code)
            self.view.cells[cell_id].code = new_code
            self.view.cells[cell_id].edited = True
            self.notify(f"cell {cell_id} replaced; resume (space) or step (s) to run it")
            self._dirty = True

        self.app.push_screen(EditCellScreen(cell_id, code, self.editor), replace)

    async def action_interrupt(self) -> None:
        run = self._live()
        if run is None:
            return
        running = self.view.running_cells
        if not running:
            self.notify("no cell is running", severity="warning")
            return
        for cell in running:
            await run.interrupt(cell.agent_id)
        self.notify(f"interrupted {', '.join(c.cell_id for c in running)}")

    def action_stop(self) -> None:
        run = self._live()
        if run is not None:
            run.stop()

    def action_breakpoints(self) -> None:
        run = self._live()
        if run is None:
            return

        def apply(breakpoints: Breakpoints | None) -> None:
            if breakpoints is not None:
                run.set_breakpoints(breakpoints)
                self.notify("breakpoints set")

        self.app.push_screen(BreakpointsScreen(run.control.breakpoints), apply)

    def action_launch(self) -> None:
        run = self._live()
        if run is None:
            return
        parent = self.query_one(AgentTree).selected_agent or "0"
        selection = self.query_one(ContextBrowser).text_view.selection()

        def launch(request: LaunchRequest | None) -> None:
            if request is None:
                return
            try:
                task = run.launch_subagent(
                    request.parent_id, request.prompt, request.context, request.var
                )
            except RlmError as exc:
                self.notify(str(exc), severity="error")
                return
            task.add_done_callback(lambda t, r=request: self._launched(t, r))

        self.app.push_screen(LaunchScreen(parent, selection), launch)

    def _launched(self, task: asyncio.Task[Any], request: LaunchRequest) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.notify(f"sub-agent failed: {error}", severity="error")
        else:
            self.notify(f"sub-agent answered; bound as {request.var} in agent {request.parent_id}")

    def action_fork(self) -> None:
        """A new session sharing this one up to the selected cell, held there to be edited."""
        cell = self.query_one(CellLog).current
        directory = self.view.session_dir
        if cell is None or not directory:
            self.notify("select a cell of a saved session to fork at", severity="warning")
            return
        if self.run is not None and not self.view.finished:
            self.notify("stop the run (X) before forking it", severity="warning")
            return
        from rlm_tui.engine.resume import fork_run

        try:
            run = fork_run(Path(directory), cell.cell_id, breakpoints=Breakpoints(every_cell=True))
        except RlmError as exc:
            self.notify(str(exc), title="cannot fork", severity="error")
            return
        self.notify(f"forked at cell {cell.cell_id}: edit it (e), then resume (space)")
        self.app.push_screen(RunScreen(run, editor=self.editor))

    def action_answer(self) -> None:
        if self.view.finished:
            body = self.view.answer if self.view.status == "answered" else self.view.reason
            shown = (
                body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
            )
            self.app.push_screen(TextScreen(f"Answer ({self.view.status})", shown))

    def action_help(self) -> None:
        focused = self.focused
        groups: list[tuple[str, list[Any]]] = []
        node = focused
        while node is not None and node is not self:
            bindings = [b for b in getattr(node, "BINDINGS", []) if isinstance(b, Binding)]
            if bindings:
                groups.append((type(node).__name__, bindings))
            node = node.parent  # type: ignore[assignment]
        groups.append(("Run", [b for b in self.BINDINGS if isinstance(b, Binding)]))
        keymap = getattr(self.app, "keymap", {})
        self.app.push_screen(TextScreen("Keys of the focused pane", bindings_table(groups, keymap)))


def session_events(directory: Path) -> list[Event]:
    from rlm_tui.session.store import read_session

    return list(read_session(directory).events)
