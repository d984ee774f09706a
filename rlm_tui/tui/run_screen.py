"""The run screen: four linked panes following one run (live, or a saved session).

The screen folds every event into a :class:`RunView` as it arrives (cheap), notes what it
changed (:class:`Changes`) and posts itself one ``Changed`` message for the whole burst: when
that is handled, each pane re-renders only its slice (a cell's output, one tree label, one
budget row). Everything a person does to the run goes through the Run's control API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static, Tab, Tabs, Tree

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run
from rlm_tui.errors import RlmError
from rlm_tui.events import BudgetStop, ErrorEvent, Event, KernelEvent, Notice, RunFinished
from rlm_tui.session.projection import AgentView, RunView
from rlm_tui.tui.agent_tree import AgentTree
from rlm_tui.tui.budget_meter import BudgetMeter
from rlm_tui.tui.cell_log import CellLog
from rlm_tui.tui.changes import Changes
from rlm_tui.tui.context_view import ContextBrowser, coverage_ranges, read_context
from rlm_tui.tui.footer import WholeKeysFooter
from rlm_tui.tui.modals import (
    BreakpointsScreen,
    ConfirmScreen,
    EditCellScreen,
    LaunchRequest,
    LaunchScreen,
    TextScreen,
)
from rlm_tui.tui.player import Player
from rlm_tui.tui.status_line import status_line
from rlm_tui.tui.wait_list import WaitList

WIDE = 140
"""From this many columns the panes are a grid; below, tabs."""
CLOCK = 0.5
"""Seconds between repaints of a live run's clocks (agents' and the run's elapsed times)."""
BUDGET_EVERY = 0.25
"""Seconds at least between repaints of the budget pane (its table costs milliseconds to draw,
and the spending need not follow every model reply at once)."""
SMALL_CONTEXT = 1_000_000
"""Contexts up to this many characters are loaded and matched on the UI loop (instant);
bigger ones in a thread, so the loop never waits on them."""
STOP_QUESTION = "Stop this live run? Its session is kept: `rlm-tui resume` goes on from it."
PANES = [("cells", "Cells"), ("tree", "Agents"), ("context", "Context"), ("budget", "Budget")]


class RunScreen(Screen[None]):
    class Changed(Message):
        """Events changed the projection; one is queued at a time, for the whole burst."""

    DEFAULT_CSS = """
    RunScreen { layout: vertical; }
    #status {
        height: 1; background: $panel; color: $text; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    #status.demo { background: $warning 25%; }
    #status.paused { background: $warning 45%; }
    #pane-tabs { display: none; }
    #panes {
        height: 1fr; layout: grid; grid-size: 2 2; grid-columns: 2fr 3fr; grid-rows: 1fr 1fr;
    }
    #panes > .pane { border: round $pane-border; border-title-color: $text-muted; }
    #panes > .pane:focus-within { border: round $primary; border-title-color: $primary; }
    #panes.narrow { layout: vertical; }
    #panes.narrow > .pane { display: none; height: 1fr; }
    #panes.narrow.show-cells > #pane-cells { display: block; }
    #panes.narrow.show-tree > #pane-tree { display: block; }
    #panes.narrow.show-context > #pane-context { display: block; }
    #panes.narrow.show-budget > #pane-budget { display: block; }
    #agent-info {
        height: auto; max-height: 8; border-top: solid $panel; padding: 0 1;
        color: $text-muted;
    }
    #answer { height: 1; background: $success 15%; padding: 0 1; display: none; }
    #answer.failed { background: $error 15%; }
    #answer.shown { display: block; }
    """
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/go", id="run.pause"),
        Binding("s", "step", "Step", id="run.step"),
        Binding("e", "edit", "Edit", id="run.edit"),
        Binding("x", "skip", "Skip", id="run.skip"),
        Binding("i", "interrupt", "Interrupt", show=False, id="run.interrupt"),
        Binding("X", "stop", "Stop run", show=False, id="run.stop"),
        Binding("b", "breakpoints", "Breakpoints", show=False, id="run.breakpoints"),
        Binding("l", "launch", "Launch sub-agent", show=False, id="run.launch"),
        Binding("A", "answer", "Answer", show=False, id="run.answer"),
        Binding("w", "focus_waiting", "Waiting list", show=False, id="run.waiting"),
        Binding("]", "next_waiting(1)", "Next waiting", show=False, id="run.next_waiting"),
        Binding("[", "next_waiting(-1)", "Prev waiting", show=False, id="run.previous_waiting"),
        Binding("F", "fork", "Fork at cell", show=False, id="run.fork"),
        Binding("D", "fork_diff", "Diff fork with original", show=False, id="run.fork_diff"),
        Binding(">", "replay_next_cell", "Replay: to next cell", show=False, id="replay.next"),
        Binding(
            "<", "replay_previous_cell", "Replay: back a cell", show=False, id="replay.previous"
        ),
        Binding("E", "replay_end", "Replay: to the end", show=False, id="replay.end"),
        Binding("r", "replay_restart", "Replay: from the start", show=False, id="replay.restart"),
        Binding("+", "replay_speed(1)", "Replay: faster", show=False, id="replay.faster"),
        Binding("-", "replay_speed(-1)", "Replay: slower", show=False, id="replay.slower"),
        Binding("1", "pane('cells')", "Cells pane", show=False, id="pane.cells"),
        Binding("2", "pane('tree')", "Agents pane", show=False, id="pane.tree"),
        Binding("3", "pane('context')", "Context pane", show=False, id="pane.context"),
        Binding("4", "pane('budget')", "Budget pane", show=False, id="pane.budget"),
        Binding("tab", "next_pane", "Next pane", show=False, id="pane.next"),
        Binding("shift+tab", "next_pane(-1)", "Previous pane", show=False, id="pane.previous"),
    ]

    def __init__(
        self,
        run: Run | None = None,
        events: list[Event] | None = None,
        editor: str | None = None,
        replay_speed: float = 0.0,
        directory: Path | None = None,
    ) -> None:
        """``directory``: where a saved session was opened from (its events name where it was
        made, and it may have moved since)."""
        super().__init__()
        self.run = run
        self._directory = directory
        self.replay_speed = replay_speed
        self.player = Player(list(events or []), speed=replay_speed) if replay_speed > 0 else None
        """The replay's position and speed (None for a live run or a saved session)."""
        self.start_paused = False
        self.start_at = 0
        """A replay's first position: the events before it are shown at once."""
        self.hold_at: str | None = None
        """A fork's cell: selected in the waiting list once it waits."""
        self._replay_wake = asyncio.Event()
        self.view = RunView()
        self.editor = editor
        if events is None and run is not None and run.config.append_to is not None:
            events = session_events(run.config.append_to)  # a resumed or forked run's past
        self._recorded = events or []
        self._changes = Changes()
        """What the events since the last repaint changed (a key or a resize: everything)."""
        self._posted = False
        """A ``Changed`` message is queued: the next changes go with it."""
        self._agent_filter: str | None = None
        self._context_requested = False
        self._context_text = ""
        self._coverage: list[tuple[int, int]] = []
        self._coverage_done = 0
        self._coverage_busy = False
        self._narrow_pane = "cells"
        self._unsubscribe: Callable[[], None] | None = None
        self._answer_shown: str | None = None
        """The run status whose answer bar is shown (None: no bar)."""
        self._status_shown: Text | None = None
        self._budget_due: set[str] = set()
        """Agents whose budget row changed since the pane was last repainted."""
        self._budget_stale = False
        self._ticks = 0
        """Half-CLOCK ticks so far: the odd ones move the agents' clocks, the even the run's."""
        self._clock: Timer | None = None
        """The half-CLOCK timer that calls ``_tick``."""
        self._budget_shown = 0.0
        self._info_shown: Text | None = None
        self._refresh_failed = False

    @property
    def live(self) -> bool:
        return self.run is not None and not self.view.finished

    def compose(self) -> ComposeResult:
        yield Static("rlm-tui", id="status")
        yield WaitList(id="waiting")
        yield Tabs(*[Tab(label, id=f"tab-{key}") for key, label in PANES], id="pane-tabs")
        with Container(id="panes"):
            with Vertical(id="pane-tree", classes="pane"):
                yield AgentTree(id="agents")
                yield Static("", id="agent-info")
            with Vertical(id="pane-cells", classes="pane"):
                yield CellLog(id="cells")
            with Vertical(id="pane-budget", classes="pane"):
                yield BudgetMeter(id="budget")
            with Vertical(id="pane-context", classes="pane"):
                yield ContextBrowser(id="context")
        yield Static("", id="answer")
        yield WholeKeysFooter(compact=True)

    def on_mount(self) -> None:
        if not self.is_attached:  # the app ended while this screen mounted: its panes are gone
            return
        for number, (key, label) in enumerate(PANES, 1):
            # the key that focuses it, as lazygit shows them: "(2)" read as a count of agents
            self.query_one(f"#pane-{key}").border_title = f"[{number}] {label}"
        if self.player is not None:
            self.player.paused = self.start_paused
            if self.start_at:
                self._played(self.player.advance(self.start_at))
            self._replay()
        else:
            for event in self._recorded:
                self.view.apply(event)
        self._clock = self.set_interval(CLOCK / 2, self._tick)
        self._apply_width(self.size.width)
        if self.run is not None:
            self._unsubscribe = self.run.subscribe(self._on_event)
            if self.run.result is None:
                self._drive()
        self.query_one(CellLog).focus()
        self._show(Changes(everything=True))

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    # -- following the run ------------------------------------------------------------------

    @work(exclusive=True, group="run", exit_on_error=False)
    async def _drive(self) -> None:
        assert self.run is not None
        try:
            await self.run.start()
            await self.run.wait()
        except RlmError as exc:
            self.notify(str(exc), title="the run could not start", severity="error", timeout=10)
            self.view.status, self.view.reason = "error", str(exc)
            self._repaint()
        except Exception as exc:  # never a crash: say what happened, keep the screen
            self.notify(f"{type(exc).__name__}: {exc}", title="run failed", severity="error")
            self.view.status, self.view.reason = "error", str(exc)
            self._repaint()

    @work(exclusive=True, group="replay")
    async def _replay(self) -> None:
        """Play the recording at its own pace times the speed; the keys pause, step, seek."""
        player = self.player
        assert player is not None
        while not player.done:
            if player.paused:
                await self._replay_wake.wait()
                self._replay_wake.clear()
                continue
            delay = player.delay()
            if delay > 0:
                try:  # a key (pause, speed, step) wakes the player early
                    await asyncio.wait_for(self._replay_wake.wait(), delay)
                    self._replay_wake.clear()
                    continue
                except TimeoutError:
                    pass
            self._played(player.advance())

    def _played(self, events: list[Event]) -> None:
        for event in events:
            self.view.apply(event)
            self._changes.note(event)
        self._post()

    def _replay_key(self, move: Callable[[Player], list[Event] | None]) -> None:
        """Apply a replay control, then let the player re-plan its wait."""
        assert self.player is not None
        played = move(self.player)
        if played:
            self._played(played)
        self._repaint()
        self._replay_wake.set()

    def action_replay_next_cell(self) -> None:
        if self.player is not None:
            self._replay_key(Player.to_next_cell)

    def action_replay_end(self) -> None:
        if self.player is not None:
            self._replay_key(Player.to_end)

    def action_replay_speed(self, direction: int) -> None:
        if self.player is not None:
            self._replay_key(lambda p: p.faster(direction))

    def action_replay_restart(self) -> None:
        if self.player is not None:
            self._replay_from(0)

    def action_replay_previous_cell(self) -> None:
        if self.player is not None:
            self._replay_from(self.player.previous_cell_end())

    def _replay_from(self, position: int) -> None:
        """Seek back: the recording played again up to ``position`` at once, paused there (the
        projection only folds forward)."""
        assert self.player is not None
        again = RunScreen(
            None,
            self._recorded,
            editor=self.editor,
            replay_speed=self.player.speed,
            directory=self._directory,
        )
        again.start_paused, again.start_at = True, position
        self.app.switch_screen(again)

    def _on_event(self, event: Event) -> None:
        """Called by the engine for every event: fold it, note its slices, post one message."""
        self.view.apply(event)
        self._changes.note(event)
        self._post()
        if isinstance(event, BudgetStop | ErrorEvent):
            self.notify(event.message, title="run stopped", severity="error", timeout=8)
        elif isinstance(event, KernelEvent) and event.what == "died":
            self.notify(
                event.reason, title=f"agent {event.agent_id}: kernel died", severity="warning"
            )
        elif isinstance(event, Notice):
            self.notify(event.message)
        elif isinstance(event, RunFinished) and event.status == "answered":
            self.notify("the run answered (A shows the whole answer)", title="done", timeout=5)

    def _post(self) -> None:
        if not self._posted:
            self._posted = True
            self.post_message(self.Changed())

    def _repaint(self) -> None:
        """Repaint every pane soon (a key, a resize, a worker's result)."""
        self._changes.everything = True
        self._post()

    def on_run_screen_changed(self, message: Changed) -> None:
        message.stop()
        self._posted = False
        changes, self._changes = self._changes, Changes()
        self._show(changes)

    def _tick(self) -> None:
        """A live run's clocks move without events: its running agents' times, then half a
        ``CLOCK`` later the run's (the budget pane); never both in one frame, which drew the
        tree and the budget pane at once (20-28 ms here)."""
        self._ticks += 1
        if self._ticks % 2:
            if self.live:
                running = {a.agent_id for a in self.view.agents.values() if a.finished is None}
                self._changes.agents |= running
                self._post()
        elif self.live or self._budget_stale:  # the run's time; a budget change held back
            self._changes.budget = True
            self._post()

    def _show(self, changes: Changes) -> None:
        try:
            self._show_changes(changes)
        except Exception as exc:  # a bug in a pane: say so once, keep the run and the app
            if not self._refresh_failed:
                self._refresh_failed = True
                self.notify(
                    f"{type(exc).__name__}: {exc}",
                    title="a pane failed to update",
                    severity="error",
                )

    def _show_changes(self, changes: Changes) -> None:
        """Repaint the status and the waiting list, and of each pane what ``changes`` names."""
        view = self.view
        every = changes.everything
        if not self._context_requested and view.run_id:
            self._context_requested = True
            self._load_context(view.context_file, view.context_kind)
        self.query_one(WaitList).show(view.waiting, prefer=self.hold_at)
        if self.hold_at in view.waiting:  # s, e and x act on the cell forked at, not the oldest
            self.hold_at = None
        status = self.query_one("#status", Static)
        line = self._status_line()
        if line != self._status_shown:
            self._status_shown = line
            status.update(line, layout=False)  # one row, always: no layout for a new text
        status.set_class(view.model_is_demo, "demo")
        status.set_class(view.paused and not view.finished, "paused")
        now = self._now()
        tree = self.query_one(AgentTree)
        tree.show(view, now, None if every or changes.all_agents else changes.agents)
        if every or changes.agents or changes.all_agents:
            self._show_agent_info(tree.selected_agent)
        log = self.query_one(CellLog)
        if every:
            log.show(view, self._agent_filter)
        elif changes.cells or changes.streams or changes.agent_cells:
            cells = changes.cells
            if changes.agent_cells:
                cells = cells | {c.cell_id for c in log.cells if c.agent_id in changes.agent_cells}
            log.update(cells, changes.streams)
        meter = self.query_one(BudgetMeter)
        self._budget_due |= changes.budget_agents
        self._budget_stale = self._budget_stale or changes.budget
        due = time.monotonic() - self._budget_shown >= BUDGET_EVERY
        if every or not meter.ready or (self._budget_stale and due):
            every_agent = every or not meter.ready
            agents = (
                list(view.agents.values())
                if every_agent
                else [view.agents[a] for a in self._budget_due if a in view.agents]
            )
            self._budget_due, self._budget_stale = set(), False
            self._budget_shown = time.monotonic()
            meter.show(
                view.limits,
                view.usage,
                view.depth,
                self._run_elapsed(),
                [(a.agent_id, a.usage) for a in agents],
                view.tokens_per_step,
                every_agent,
            )
        if every or changes.context:
            self._update_coverage()
        shown = view.status if view.finished else None  # a resumed run hides the old one
        if shown != self._answer_shown:
            self._answer_shown = shown
            answer = self.query_one("#answer", Static)
            answer.set_class(shown is not None, "shown")
            answer.set_class(shown not in (None, "answered"), "failed")
            answer.update(self._answer_text() if shown else "")

    def _run_elapsed(self) -> float:
        """The run's time as its budget counts it: live, its clock (which stops while the run
        waits on a person); else the last one recorded, or the time its events span."""
        view = self.view
        if self.run is not None and not view.finished:
            return self.run.budget.elapsed
        return view.elapsed or max(0.0, view.last_t - view.started if view.started else 0.0)

    @property
    def session_dir(self) -> Path | None:
        """Where this run's session is: the directory it was opened from, else the one its
        events name (a live run's)."""
        if self._directory is not None:
            return self._directory
        return Path(self.view.session_dir) if self.view.session_dir else None

    def _now(self) -> float:
        """The wall clock for a live run; the newest event's time for a recorded one."""
        return time.time() if self.live else self.view.last_t

    @property
    def mode(self) -> str:
        """ "live" (a Run is attached), "replay" (played back) or "saved" (read-only)."""
        if self.run is not None:
            return "live"
        return "replay" if self.replay_speed > 0 else "saved"

    def _status_line(self) -> Text:
        playing = self.player.describe() if self.player is not None else ""
        path = str(self.session_dir or "")
        return status_line(self.view, self.size.width, self.mode, self.selected_gate, playing, path)

    @property
    def selected_gate(self) -> str | None:
        """The waiting gate that ``s``, ``e`` and ``x`` act on (highlighted in the list)."""
        gate = self.query_one(WaitList).selected_gate
        if gate in self.view.waiting:
            return gate
        return next(iter(self.view.waiting), None)

    def _answer_text(self) -> Text:
        view = self.view
        text = Text(no_wrap=True, overflow="ellipsis")
        if view.status != "answered" and not (view.extracted and view.answer is not None):
            text.append(f"■ {view.status}: ", style="bold")
            text.append(" ".join(view.reason.split()))
            return text
        shown = (
            json.dumps(view.answer, ensure_ascii=False)
            if not isinstance(view.answer, str)
            else view.answer
        )
        if view.extracted:
            text.append("◆ extracted answer ", style="bold yellow")
            text.append(f"({view.status}: {' '.join(view.reason.split())[:80]}; A opens it) ")
        else:
            text.append("✔ answer ", style="bold")
            text.append("(A opens it) ", style="dim")
        text.append(" ".join(shown[:2000].split()))
        return text

    # -- the context: loading and coverage --------------------------------------------------

    def _load_context(self, path: str | None, kind: str) -> None:
        if not path:
            return
        try:
            size = Path(path).stat().st_size
        except OSError:
            size = 0
        if size <= SMALL_CONTEXT:
            self._context_loaded(read_context(path, kind), kind)
        else:
            self._load_context_in_thread(path, kind)

    @work(thread=True, group="context", exit_on_error=False)
    def _load_context_in_thread(self, path: str, kind: str) -> None:
        value = read_context(path, kind)
        self.app.call_from_thread(self._context_loaded, value, kind)

    def _context_loaded(self, value: Any, kind: str) -> None:
        browser = self.query_one(ContextBrowser)
        browser.load(value, kind)
        self._context_text = browser.text_view.text
        self._coverage, self._coverage_done = [], 0
        self._update_coverage()

    def _update_coverage(self) -> None:
        """Mark what the models have seen: new seen texts only, in a thread when big."""
        log = self.view.seen_log
        if not self._context_text or self._coverage_busy or self._coverage_done >= len(log):
            return
        texts = [text for _, text in log[self._coverage_done :]]
        done = len(log)
        if len(self._context_text) <= SMALL_CONTEXT:
            self._coverage_ready(_match(self._context_text, texts), done)
        else:
            self._coverage_busy = True
            self._coverage_in_thread(self._context_text, texts, done)

    @work(thread=True, group="coverage", exit_on_error=False)
    def _coverage_in_thread(self, context: str, texts: list[str], done: int) -> None:
        ranges = _match(context, texts)
        self.app.call_from_thread(self._coverage_ready, ranges, done)

    def _coverage_ready(self, ranges: list[tuple[int, int]], done: int) -> None:
        self._coverage_busy = False
        self._coverage_done = done
        if ranges:
            self._coverage = _merged(self._coverage + ranges)
            self.query_one(ContextBrowser).set_coverage(self._coverage)
        self._repaint()

    def _mark_seen(self, texts: list[str], what: str) -> None:
        """Highlight in the context what one cell or agent saw."""
        if not self._context_text:
            return
        if len(self._context_text) <= SMALL_CONTEXT:
            self._highlight(_match(self._context_text, texts), what)
        else:
            self._highlight_in_thread(self._context_text, texts, what)

    @work(thread=True, exclusive=True, group="highlight", exit_on_error=False)
    def _highlight_in_thread(self, context: str, texts: list[str], what: str) -> None:
        ranges = _match(context, texts)
        self.app.call_from_thread(self._highlight, ranges, what)

    def _highlight(self, ranges: list[tuple[int, int]], what: str) -> None:
        browser = self.query_one(ContextBrowser)
        browser.text_view.set_highlight(ranges)
        if ranges:
            chars = sum(b - a for a, b in ranges)
            browser.status = f"{what} saw {chars:,} chars here (marked)"
        else:
            browser.status = f"{what} saw nothing of the context"
        browser.update_header()

    # -- selection between panes ------------------------------------------------------------

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        """Enter: fold or unfold the agent's sub-agents (the cells follow the cursor)."""
        node = event.node
        if node.data is not None and node.children:
            node.toggle()
        self._filter_to(node.data)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        """Moving the tree's cursor shows that agent's cells (not when the app moves it)."""
        self._show_agent_info(event.node.data)
        if self.query_one(AgentTree).has_focus:
            self._filter_to(event.node.data)

    def _filter_to(self, agent_id: str | None) -> None:
        self._agent_filter = agent_id if isinstance(agent_id, str) else None
        self.query_one(CellLog).show(self.view, self._agent_filter)
        agent = self.view.agents.get(self._agent_filter or "")
        if agent is not None:
            self._show_agent_info(agent.agent_id)
            self._mark_seen(self.view.seen_by(agent.agent_id), f"agent {agent.agent_id}")
            self.query_one("#pane-cells").border_subtitle = f"agent {agent.agent_id}"
        else:
            self.query_one("#pane-cells").border_subtitle = "all agents"

    def on_cell_log_show_all(self, event: CellLog.ShowAll) -> None:
        self._agent_filter = None
        self.query_one("#pane-cells").border_subtitle = "all agents"

    def _show_agent_info(self, agent_id: str | None) -> None:
        info = self.query_one("#agent-info", Static)
        agent = self.view.agents.get(agent_id or "")
        info.display = agent is not None
        text = agent_info(agent) if agent is not None else None
        if text is not None and text != self._info_shown:
            self._info_shown = text  # a layout only when it changed: its height may have
            info.update(text)

    def on_cell_log_selected(self, event: CellLog.Selected) -> None:
        cell = event.cell
        if cell.cell_id in self.view.waiting:  # one selection: the list follows the cells
            self.query_one(WaitList).select_gate(cell.cell_id)
        texts = [cell.model_view] if cell.model_view else []
        self._mark_seen(texts, f"cell {cell.cell_id}")

    # -- layout -----------------------------------------------------------------------------

    def on_resize(self, event: Any) -> None:
        self._apply_width(event.size.width)
        self._repaint()

    def _apply_width(self, width: int) -> None:
        narrow = width < WIDE
        self.set_class(narrow, "narrow")
        panes = self.query_one("#panes")
        panes.set_class(narrow, "narrow")
        self.query_one("#pane-tabs").display = narrow
        for key, _ in PANES:
            panes.set_class(narrow and key == self._narrow_pane, f"show-{key}")

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is not None and event.tab.id:
            key = event.tab.id.removeprefix("tab-")
            if key != self._narrow_pane:
                self.action_pane(key)

    def action_pane(self, key: str) -> None:
        self._narrow_pane = key
        self._apply_width(self.size.width)
        tabs = self.query_one(Tabs)
        if tabs.active != f"tab-{key}":
            tabs.active = f"tab-{key}"
        widget = self._pane_widget(key)
        if isinstance(widget, ContextBrowser):
            widget.text_view.focus()
        else:
            widget.focus()

    def _pane_widget(self, key: str) -> Any:
        targets: dict[str, type[Widget]] = {
            "cells": CellLog,
            "tree": AgentTree,
            "context": ContextBrowser,
            "budget": BudgetMeter,
        }
        return self.query_one(targets[key])

    def action_next_pane(self, direction: int = 1) -> None:
        keys = [key for key, _ in PANES]
        current = self._focused_pane() or self._narrow_pane
        self.action_pane(keys[(keys.index(current) + direction) % len(keys)])

    def _focused_pane(self) -> str | None:
        node = self.focused
        while node is not None and node is not self:
            if node.id and node.id.startswith("pane-"):
                return node.id.removeprefix("pane-")
            node = node.parent  # type: ignore[assignment]
        return None

    # -- control ----------------------------------------------------------------------------

    def _live(self) -> Run | None:
        if self.run is None:
            self.notify(
                "a saved session is read-only (fork it with F to go on)", severity="warning"
            )
            return None
        if self.view.finished:
            self.notify(f"the run has finished ({self.view.status})", severity="warning")
            return None
        return self.run

    def _safely(self, what: str, action: Callable[[], Any]) -> bool:
        """Run a control call; an error becomes a notification."""
        try:
            action()
        except RlmError as exc:
            self.notify(str(exc), title=f"cannot {what}", severity="error")
            return False
        self._repaint()
        return True

    def _waiting(self, cells_only: bool) -> str | None:
        """The gate to act on: the one selected in the waiting list."""
        run = self._live()
        if run is None:
            return None
        gate = self.selected_gate
        if gate is None or gate not in run.control.pending:
            self.notify(
                "nothing is waiting: pause (space) or set a breakpoint (b)", severity="warning"
            )
            return None
        if cells_only and run.control.pending[gate].kind != "cell":
            self.notify(f"{self.view.waiting[gate].label} is not a cell", severity="warning")
            return None
        return gate

    def action_focus_waiting(self) -> None:
        waiting = self.query_one(WaitList)
        if self.view.waiting:
            waiting.focus()
        else:
            self.notify("nothing is waiting", severity="warning")

    def action_next_waiting(self, delta: int) -> None:
        self.query_one(WaitList).move(delta)
        self._repaint()

    def on_option_list_option_highlighted(self, event: WaitList.OptionHighlighted) -> None:
        """The selected waiting item is shown in the cells (and the header)."""
        gate = event.option.id
        if gate != self.query_one(WaitList).selected_gate:
            return  # a highlight the list has moved on from (it was rebuilt since)
        if gate is not None and gate in self.view.cells:
            self.query_one(CellLog).select_cell(gate)
        elif gate is not None:
            self.query_one(AgentTree).select_agent(gate)
        self._repaint()

    def on_option_list_option_selected(self, event: WaitList.OptionSelected) -> None:
        gate = event.option.id
        if gate in self.view.cells:
            self.query_one(CellLog).focus()

    def action_toggle_pause(self) -> None:
        if self.player is not None:
            self._replay_key(lambda p: setattr(p, "paused", not p.paused))
            return
        run = self._live()
        if run is None:
            return
        if run.control.paused:
            self._safely("resume", run.resume)
        else:
            self._safely("pause", run.pause)
            self.notify("pausing before the next cell")

    def action_step(self) -> None:
        """Let one cell through: the selected one if it waits, else the oldest waiting.

        In a replay: play one event, and pause."""
        if self.player is not None:
            self.player.paused = True
            self._replay_key(Player.advance)
            return
        run = self._live()
        if run is None:
            return
        gate = self.selected_gate
        gate = gate if gate in run.control.pending else None
        if self._safely("step", lambda: run.step(gate)) and gate is not None:
            self.notify(f"released {self.view.waiting[gate].label}")

    def action_skip(self) -> None:
        gate = self._waiting(cells_only=False)
        if gate is not None and self.run is not None:
            run = self.run
            if self._safely("skip", lambda: run.skip_cell(gate)):
                self.notify(f"skipped {'cell' if ':' in gate else 'sub-agent'} {gate}")

    def action_edit(self) -> None:
        cell_id = self._waiting(cells_only=True)
        if cell_id is None or self.run is None:
            return
        run = self.run
        code = run.control.pending[cell_id].code

        def replace(new_code: str | None) -> None:
            if new_code is None or new_code == code:
                return
            if cell_id not in run.control.pending:
                self.notify(f"cell {cell_id} no longer waits; the edit was not applied")
                return
            if self._safely("edit", lambda: run.replace_cell(cell_id, new_code)):
                self.view.mark_edited(cell_id, new_code)
                self.notify(f"cell {cell_id} replaced: resume (space) or step (s) to run it")

        self.app.push_screen(EditCellScreen(cell_id, code, self.editor), replace)

    async def action_interrupt(self) -> None:
        run = self._live()
        if run is None:
            return
        running = self.view.running_cells
        selected = self.query_one(CellLog).current
        if selected is not None and selected.status == "running":
            running = [selected]
        if not running:
            self.notify("no cell is running", severity="warning")
            return
        for cell in running:
            try:
                await run.interrupt(cell.agent_id)
            except RlmError as exc:
                self.notify(str(exc), title="cannot interrupt", severity="error")
                return
        self.notify(f"interrupted {', '.join(c.cell_id for c in running)}")

    def action_stop(self) -> None:
        run = self._live()
        if run is None:
            return

        def answered(yes: bool | None) -> None:
            if yes and not self.view.finished and self._safely("stop", run.stop):
                self.notify("stopping the run")

        self.app.push_screen(ConfirmScreen(STOP_QUESTION), answered)

    def action_breakpoints(self) -> None:
        run = self._live()
        if run is None:
            return

        def apply(breakpoints: Breakpoints | None) -> None:
            if breakpoints is not None:
                run.set_breakpoints(breakpoints)
                self.notify(f"breakpoints: {describe_breakpoints(breakpoints)}")

        self.app.push_screen(BreakpointsScreen(run.control.breakpoints), apply)

    def launch_context(self) -> tuple[str, str] | None:
        """What the context browser offers as a sub-agent's context: (what, text)."""
        view = self.query_one(ContextBrowser).text_view
        selection = view.selection()
        if selection:
            return "the marked lines", selection
        if view.matches and 0 <= view.match_at < len(view.matches):
            start, _ = view.matches[view.match_at]
            line = view.index.line_of_offset(start)
            first, end = view.index.line_span(line)
            return f"the line of search match {view.match_at + 1}", view.text[first:end]
        return None

    def action_launch(self) -> None:
        run = self._live()
        if run is None:
            return
        parent = self.query_one(AgentTree).selected_agent or "0"
        if parent not in self.view.agents:
            parent = "0"
        offered = self.launch_context()

        def launch(request: LaunchRequest | None) -> None:
            if request is None:
                return
            try:
                task = run.launch_subagent(
                    request.parent_id, request.prompt, request.context, request.var
                )
            except RlmError as exc:
                self.notify(str(exc), title="cannot launch", severity="error")
                return
            task.add_done_callback(partial(self._launched, request=request))
            self.notify(f"sub-agent launched under agent {request.parent_id} -> {request.var}")

        screen = (
            LaunchScreen(parent, offered[1], offered[0]) if offered else LaunchScreen(parent, None)
        )
        self.app.push_screen(screen, launch)

    def _launched(self, task: asyncio.Task[Any], request: LaunchRequest) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.notify(f"sub-agent failed: {error}", severity="error")
        else:
            self.notify(
                f"sub-agent answered; bound as {request.var} in agent {request.parent_id}'s kernel"
            )

    def action_fork(self) -> None:
        """A new session sharing this one up to the selected cell, held there to be edited."""
        cell = self.query_one(CellLog).current
        directory = self.session_dir
        if cell is None or directory is None:
            self.notify("select a cell of a saved session to fork at", severity="warning")
            return
        if self.live:
            self.notify("stop the run (X) before forking it", severity="warning")
            return
        fork = partial(self._fork_at, directory, cell.cell_id)
        self.app.replace_live_run(fork)  # type: ignore[attr-defined]

    def _fork_at(self, directory: Path, cell_id: str) -> None:
        from rlm_tui.engine.resume import fork_run

        try:
            run = fork_run(directory, cell_id, breakpoints=Breakpoints(every_cell=True))
        except RlmError as exc:
            self.notify(str(exc), title="cannot fork", severity="error")
            return
        self.notify(f"forked at cell {cell_id}: edit it (e), then resume (space)")
        screen = RunScreen(run, editor=self.editor)
        screen.hold_at = cell_id
        self.app.follow(run, screen)  # type: ignore[attr-defined]

    def action_fork_diff(self) -> None:
        """This fork beside its original, from the fork point."""
        from rlm_tui.session.fork_diff import fork_diff
        from rlm_tui.tui.fork_diff_view import fork_diff_renderable

        directory = self.session_dir
        if not self.view.forked_from or directory is None:
            self.notify("this session is not a fork (F forks at the selected cell)")
            return
        try:
            diff = fork_diff(directory)
        except RlmError as exc:
            self.notify(str(exc), title="cannot compare", severity="error")
            return
        self.app.push_screen(TextScreen("Fork and original", fork_diff_renderable(diff)))

    def action_answer(self) -> None:
        if not self.view.finished:
            self.notify("no answer yet", severity="warning")
            return
        has_answer = self.view.status == "answered" or self.view.extracted
        body = self.view.answer if has_answer else self.view.reason
        shown = body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)
        self.app.push_screen(TextScreen(f"Answer ({self.view.status})", shown))


def agent_info(agent: AgentView) -> Text:
    """The selected agent's prompt, context and answer, under the tree."""
    text = Text()
    parent = f", parent {agent.parent_id}" if agent.parent_id else ""
    text.append(f"agent {agent.agent_id}", style="bold")
    text.append(f" (depth {agent.depth}{parent}, {agent.model}) · {agent.status}\n")
    text.append("prompt: ", style="bold")
    text.append(" ".join(agent.query.split())[:300] + "\n")
    if agent.context_chars or agent.context_preview:
        preview = " ".join(agent.context_preview.split())[:200]
        text.append("context: ", style="bold")
        text.append(f"{agent.context_chars:,} chars  {preview}\n")
    if agent.answer_preview:
        text.append("answer: ", style="bold")
        text.append(" ".join(agent.answer_preview.split())[:200])
    return text


def describe_breakpoints(bp: Breakpoints) -> str:
    parts = [
        "every cell" if bp.every_cell else "",
        "sub-agent start" if bp.subagent_start else "",
        f"depth >= {bp.min_depth}" if bp.min_depth is not None else "",
        "after an error" if bp.on_error else "",
    ]
    return ", ".join(p for p in parts if p) or "none"


def _match(context: str, texts: list[str]) -> list[tuple[int, int]]:
    """Where in the context the seen texts came from (also when printed as a repr)."""
    variants = [v for seen in texts for v in (seen, _unescaped(seen)) if v]
    return _merged([r for seen in variants for r in coverage_ranges(context, seen)])


def _unescaped(text: str) -> str:
    """A printed ``repr`` of a string has its line breaks as ``\\n``: undo that, or ''."""
    if "\\n" not in text:
        return ""
    return text.replace("\\n", "\n").replace("\\t", "\t").replace("\\'", "'")


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def session_events(directory: Path) -> list[Event]:
    from rlm_tui.session.store import read_session

    return list(read_session(directory).events)
