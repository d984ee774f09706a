"""The one fold of a run's events into its state (agents, cells, gates, usage, answer).

Live runs, resumed runs, replays and saved sessions all go through it, so the TUI's panes and
the session catalog agree. Pure Python (no Textual): ``apply`` is the only writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rlm_tui import defaults
from rlm_tui.events import (
    AgentFinished,
    AgentLaunched,
    AgentStarted,
    BudgetStop,
    BudgetUpdate,
    CellEdited,
    CellFinished,
    CellOutput,
    CellPaused,
    CellProposed,
    CellRerunFinished,
    CellRerunStarted,
    CellSkipped,
    CellStarted,
    ErrorEvent,
    Event,
    FollowUp,
    HistoryCompacted,
    KernelEvent,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    Notice,
    RunFinished,
    RunStarted,
    RunStateChanged,
    SubcallFinished,
    SubcallStarted,
    Usage,
    Value,
)


@dataclass
class CellView:
    cell_id: str
    agent_id: str
    index: int
    step: int
    code: str
    preamble: str = ""
    status: str = "pending"
    output_parts: list[str] = field(default_factory=list)
    model_view: str = ""
    duration: float | None = None
    error: str | None = None
    edited: bool = False
    paused_reason: str = ""
    tool_calls: list[str] = field(default_factory=list)
    """One line per tool the cell called: the call, then its result or error."""
    original_code: str = ""
    """The code as the model wrote it (``code`` is what ran, or will run, after an edit)."""
    output_chars: int = 0
    """The output's true size; more than ``len(output)`` when only its head was kept."""
    started: float | None = None
    rerunning: bool = False
    """A resumed run runs this recorded cell again now, to rebuild its kernel."""
    rev: int = 0
    """Bumped by every change to the cell (the cell log re-renders a cell when it changes)."""

    @property
    def output(self) -> str:
        if len(self.output_parts) > 1:  # join once, keep the joined text
            self.output_parts[:] = ["".join(self.output_parts)]
        return self.output_parts[0] if self.output_parts else ""


@dataclass
class Waiting:
    """One gate a person must release: a cell, or a sub-agent about to start."""

    gate_id: str
    kind: str
    """"cell" or "agent_start"."""
    agent_id: str
    reason: str
    what: str
    """The cell's code, or the sub-agent's prompt."""

    @property
    def label(self) -> str:
        return f"cell {self.gate_id}" if self.kind == "cell" else f"start of agent {self.gate_id}"


@dataclass
class AgentView:
    agent_id: str
    parent_id: str | None
    depth: int
    query: str
    model: str
    context_preview: str = ""
    context_chars: int = 0
    status: str = "running"
    step: int = 0
    usage: Usage = field(default_factory=Usage)
    started: float = 0.0
    finished: float | None = None
    answer_preview: str = ""
    answer: Value | None = None
    reason: str = ""
    """Why the agent ended without an answer."""
    by_hand: bool = False
    bind_var: str | None = None
    streaming: str = ""
    children: list[str] = field(default_factory=list)
    tokens_per_step: list[int] = field(default_factory=list)

    earlier: float = 0.0
    """Seconds it ran in the runs before a resume (the time between is not its own)."""

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished or now or self.started
        return self.earlier + max(0.0, end - self.started)


@dataclass
class SubcallView:
    """One ``llm_query``, ``rlm_query`` or tool call of a cell; ``ok`` is None while it runs."""

    call_id: str
    agent_id: str
    kind: str
    prompt: str
    child_agent_id: str | None = None
    ok: bool | None = None
    result: Value | None = None
    error: str | None = None


@dataclass
class HandLaunch:
    """A sub-agent a person launched, and where in its parent's cells it happened."""

    parent_id: str
    child_id: str
    prompt: str
    context: Value | None
    bind_var: str
    launched_at: int
    """How many of the parent's cells had passed the gate when it was launched."""
    answer: Value | None = None
    answered_at: int = 0
    """How many of them had passed the gate when its answer came (and was bound)."""


@dataclass
class RunView:
    run_id: str = ""
    query: str = ""
    model: str = ""
    sub_model: str = ""
    model_is_demo: bool = False
    sandbox: str | None = None
    """How the kernels are isolated ('bwrap'), None when they are not."""
    sandbox_warning: str | None = None
    """Why the kernels run unsandboxed (auto fell back, or --sandbox off)."""
    session_dir: str | None = None
    context_file: str | None = None
    context_kind: str = "none"
    limits: dict[str, Any] = field(default_factory=dict)
    truncate: int = defaults.TRUNCATE
    state: str = "starting"
    status: str | None = None
    reason: str = ""
    answer_repr: str = ""
    answer: Any = None
    answer_value: Value | None = None
    """The answer as recorded (its JSON form, repr and type)."""
    extracted: bool = False
    """The answer was extracted from the trajectory at a budget stop (``--on-budget``)."""
    usage: Usage = field(default_factory=Usage)
    depth: int = 0
    elapsed: float = 0.0
    started: float = 0.0
    agents: dict[str, AgentView] = field(default_factory=dict)
    cells: dict[str, CellView] = field(default_factory=dict)
    cell_order: list[str] = field(default_factory=list)
    tokens_per_step: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seen_texts: dict[str, list[str]] = field(default_factory=dict)
    """Per agent: texts the model was shown that may come from the context (coverage)."""
    tool_lines: dict[str, tuple[CellView, int, str]] = field(default_factory=dict)
    """A running tool call's line: its cell, the line's index, the call."""
    seen_log: list[tuple[str, str]] = field(default_factory=list)
    """(agent id, text) in the order they were seen: coverage folds it incrementally."""
    subcalls: list[SubcallView] = field(default_factory=list)
    """Every sub-call, in the order the calls were made."""
    open_subcalls: dict[str, SubcallView] = field(default_factory=dict)
    """Sub-calls started and not finished, by call id."""
    replies: dict[tuple[str, int], str] = field(default_factory=dict)
    """Each agent's model reply by (agent, step): what a replay answers."""
    query_replies: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """``llm_query`` replies by (agent, prompt), in the order they came."""
    query_prompts: dict[str, str] = field(default_factory=dict)
    """The prompt of each ``llm_query`` model request, by call id (to file its reply)."""
    compactions: dict[tuple[str, int], str] = field(default_factory=dict)
    """Summaries that replaced an agent's earlier turns, by (agent, step)."""
    follow_ups: dict[tuple[str, int], str] = field(default_factory=dict)
    """Questions put to an agent after its answer at a step (``rlm-tui ask``)."""
    launches: dict[str, HandLaunch] = field(default_factory=dict)
    """Sub-agents launched by hand, by child id, in the order they were launched."""
    waiting: dict[str, Waiting] = field(default_factory=dict)
    """Every gate held now, oldest first: what ``s``, ``e`` and ``x`` can act on."""
    start_prompts: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Sub-agents asked for and not started yet: agent id -> (parent id, prompt)."""
    rerun_cells: list[str] = field(default_factory=list)
    """The recorded cells being run again now (``cell_rerun_started``, not yet finished)."""
    notices: list[str] = field(default_factory=list)
    resumed_from: str | None = None
    forked_from: str | None = None
    version: int = 0
    last_t: float = 0.0
    """The time of the newest event: "now" for a session that is not live."""

    def add_seen(self, agent_id: str, text: str) -> None:
        if text:
            self.seen_texts.setdefault(agent_id, []).append(text)
            self.seen_log.append((agent_id, text))

    def seen_by(self, agent_id: str) -> list[str]:
        """What one agent's model was shown that may come from the context."""
        return self.seen_texts.get(agent_id, [])

    @property
    def waiting_starts(self) -> dict[str, str]:
        """Sub-agents whose start is held at the gate: agent id -> reason."""
        return {g: w.reason for g, w in self.waiting.items() if w.kind == "agent_start"}

    @property
    def paused(self) -> bool:
        return self.state == "paused"

    def cells_decided(self, agent_id: str) -> int:
        """How many of the agent's cells passed the gate (started or skipped)."""
        return sum(
            1
            for c in self.cells.values()
            if c.agent_id == agent_id and (c.started is not None or c.status == "skipped")
        )

    def cells_of(self, agent_id: str | None) -> list[CellView]:
        ids = self.cell_order
        if agent_id is None:
            return [self.cells[c] for c in ids]
        return [self.cells[c] for c in ids if self.cells[c].agent_id == agent_id]

    @property
    def pending(self) -> list[CellView]:
        return [c for c in self.cells.values() if c.status == "paused"]

    @property
    def running_cells(self) -> list[CellView]:
        return [c for c in self.cells.values() if c.status == "running"]

    @property
    def finished(self) -> bool:
        return self.status is not None

    def apply(self, event: Event) -> None:
        """Fold one event into the view."""
        self.version += 1
        handler = _HANDLERS.get(type(event))
        if handler is not None:  # it sees ``last_t`` of the events before this one
            handler(self, event)
            cell = self.cells.get(getattr(event, "cell_id", ""))
            if cell is not None:
                cell.rev += 1
        self.last_t = max(self.last_t, event.t)

    def mark_edited(self, cell_id: str, code: str) -> None:
        """Show a replaced code at once (the engine's CellEdited comes when the cell runs)."""
        cell = self.cells.get(cell_id)
        if cell is not None:
            cell.code, cell.edited = code, True
            cell.rev += 1
        if cell_id in self.waiting:
            self.waiting[cell_id].what = code


def _run_started(view: RunView, e: RunStarted) -> None:
    if view.run_id:  # a resumed or forked run goes on from a past that may have been cut
        _close_past(view, view.last_t)  # when the past ended, not when it was resumed
    view.status, view.reason = None, ""
    view.run_id, view.query, view.model = e.run_id, e.query, e.model
    view.sub_model, view.model_is_demo = e.sub_model, e.model_is_demo
    view.sandbox = "bwrap" if e.sandbox and e.sandbox.active else None
    view.sandbox_warning = e.sandbox.warning if e.sandbox else None
    view.resumed_from, view.forked_from = e.resumed_from, e.forked_from
    view.session_dir, view.context_file = e.session_dir, e.context_file
    view.context_kind, view.limits, view.truncate = e.context_kind, e.limits, e.truncate
    view.state, view.started = "running", e.t


def _agent_started(view: RunView, e: AgentStarted) -> None:
    view.waiting.pop(e.agent_id, None)
    view.start_prompts.pop(e.agent_id, None)
    known = view.agents.get(e.agent_id)
    if known is not None:  # the agent goes on in a resumed or forked run
        known.earlier, known.started = known.elapsed(), e.t
        known.status, known.finished, known.answer_preview = "running", None, ""
        known.answer, known.reason = None, ""
        return
    view.agents[e.agent_id] = AgentView(
        e.agent_id,
        e.parent_id,
        e.depth,
        e.query,
        e.model,
        e.context_preview,
        e.context_chars,
        started=e.t,
        by_hand=e.by_hand,
        bind_var=e.bind_var,
    )
    if e.parent_id in view.agents:
        view.agents[e.parent_id].children.append(e.agent_id)
    view.depth = max(view.depth, e.depth)
    if e.depth > 0 and e.context_preview:
        view.add_seen(e.agent_id, e.context_preview)


def _agent_finished(view: RunView, e: AgentFinished) -> None:
    agent = view.agents.get(e.agent_id)
    if agent is None:
        return
    agent.status, agent.finished = e.status, e.t  # usage adds up from its model responses
    agent.answer, agent.reason = e.answer, e.reason
    agent.streaming = ""  # a reply cut off by the agent's end is no longer being written
    if e.answer is not None:
        agent.answer_preview = e.answer.repr[:200]
    elif e.reason:
        agent.answer_preview = e.reason[:200]


def _model_request(view: RunView, e: ModelRequest) -> None:
    if e.purpose == "llm_query" and e.messages:
        view.query_prompts[e.call_id] = str(e.messages[-1].get("content", ""))
    agent = view.agents.get(e.agent_id)
    if agent is not None and e.purpose == "agent":
        agent.step = e.step
        agent.streaming = ""


def _model_delta(view: RunView, e: ModelDelta) -> None:
    agent = view.agents.get(e.agent_id)
    if agent is not None:
        agent.streaming = ("" if e.reset else agent.streaming) + e.text


def _model_response(view: RunView, e: ModelResponse) -> None:
    agent = view.agents.get(e.agent_id)
    tokens = e.usage.total_tokens
    view.tokens_per_step.append(tokens)
    if e.purpose == "agent":
        view.replies[(e.agent_id, e.step)] = e.text
    elif e.purpose == "llm_query":
        prompt = view.query_prompts.pop(e.call_id, "")
        view.query_replies.setdefault((e.agent_id, prompt), []).append(e.text)
    if agent is not None:
        if e.purpose == "agent":
            agent.step = max(agent.step, e.step)
        agent.usage.add(e.usage)
        agent.tokens_per_step.append(tokens)
        agent.streaming = ""


def _cell_proposed(view: RunView, e: CellProposed) -> None:
    if e.cell_id not in view.cells:  # a resumed run proposes its unfinished cell again
        view.cell_order.append(e.cell_id)
    view.cells[e.cell_id] = CellView(
        e.cell_id, e.agent_id, e.index, e.step, e.code, e.preamble, original_code=e.code
    )


def _cell_paused(view: RunView, e: CellPaused) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.status, cell.paused_reason = "paused", e.reason
    if cell is not None:
        view.waiting[e.cell_id] = Waiting(e.cell_id, "cell", e.agent_id, e.reason, cell.code)
    elif e.cell_id == e.agent_id:  # a sub-agent's start held at the gate
        prompt = view.start_prompts.get(e.agent_id, ("", ""))[1]
        view.waiting[e.cell_id] = Waiting(e.cell_id, "agent_start", e.agent_id, e.reason, prompt)


def _cell_edited(view: RunView, e: CellEdited) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.code, cell.edited = e.code, True
    if e.cell_id in view.waiting:
        view.waiting[e.cell_id].what = e.code


def _cell_skipped(view: RunView, e: CellSkipped) -> None:
    view.waiting.pop(e.cell_id, None)
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.status = "skipped"


def _cell_started(view: RunView, e: CellStarted) -> None:
    view.waiting.pop(e.cell_id, None)
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.status, cell.code, cell.started, cell.paused_reason = "running", e.code, e.t, ""


def _cell_output(view: RunView, e: CellOutput) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.output_parts.append(e.text)


def _cell_finished(view: RunView, e: CellFinished) -> None:
    view.waiting.pop(e.cell_id, None)
    cell = view.cells.get(e.cell_id)
    if cell is None:
        return
    cell.status = "edited" if cell.edited and e.status == "ok" else e.status
    cell.duration, cell.error, cell.model_view = e.duration, e.error, e.model_view
    if e.output and len(e.output) >= len(cell.output):  # the full output, as recorded
        cell.output_parts = [e.output]
    cell.output_chars = max(e.output_chars, len(cell.output))
    cell.paused_reason = ""
    view.add_seen(e.agent_id, e.model_view)


def _cell_rerun_started(view: RunView, e: CellRerunStarted) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.rerunning = True
        view.rerun_cells.append(e.cell_id)


def _cell_rerun_finished(view: RunView, e: CellRerunFinished) -> None:
    if e.cell_id in view.rerun_cells:
        view.rerun_cells.remove(e.cell_id)
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.rerunning = False


def _subcall_started(view: RunView, e: SubcallStarted) -> None:
    call = SubcallView(e.call_id, e.agent_id, e.kind, e.prompt, e.child_agent_id)
    view.subcalls.append(call)
    view.open_subcalls[e.call_id] = call
    if e.child_agent_id is not None and e.child_agent_id not in view.agents:
        view.start_prompts[e.child_agent_id] = (e.agent_id, e.prompt)
    if e.kind == "llm_query":
        view.add_seen(e.agent_id, e.prompt)
    running = [c for c in view.cells_of(e.agent_id) if c.status == "running"]
    if e.kind == "tool" and running:
        running[-1].tool_calls.append(f"⚙ {e.prompt} …")
        running[-1].rev += 1
        view.tool_lines[e.call_id] = (running[-1], len(running[-1].tool_calls) - 1, e.prompt)


def _subcall_finished(view: RunView, e: SubcallFinished) -> None:
    done = view.open_subcalls.pop(e.call_id, None)
    if done is not None:
        done.ok, done.result, done.error = e.ok, e.result, e.error
    if e.call_id in view.tool_lines:
        cell, index, call = view.tool_lines.pop(e.call_id)
        outcome = f"-> {e.result.repr[:80]}" if e.ok and e.result else f"raised {e.error}"
        cell.tool_calls[index] = f"⚙ {call} {outcome} ({e.duration * 1000:.0f} ms)"
        cell.rev += 1
    launch = view.launches.get(e.call_id[1:])
    if launch is not None and e.call_id == f"r{launch.child_id}" and e.ok and e.result is not None:
        launch.answer, launch.answered_at = e.result, view.cells_decided(launch.parent_id)
    if e.call_id.startswith("r"):  # a sub-agent that was skipped at its start never started
        view.waiting.pop(e.call_id[1:], None)
        view.start_prompts.pop(e.call_id[1:], None)


def _notice(view: RunView, e: Notice) -> None:
    view.notices.append(e.message)


def _budget(view: RunView, e: BudgetUpdate) -> None:
    view.usage, view.elapsed = e.usage, e.elapsed
    view.depth = max(view.depth, e.depth)


def _state(view: RunView, e: RunStateChanged) -> None:
    if view.status is None:
        view.state = e.state


def _budget_stop(view: RunView, e: BudgetStop) -> None:
    view.errors.append(e.message)


def _error(view: RunView, e: ErrorEvent) -> None:
    view.errors.append(e.message)


def _kernel(view: RunView, e: KernelEvent) -> None:
    if e.what == "died":
        view.errors.append(f"agent {e.agent_id}: {e.reason}")


def _run_finished(view: RunView, e: RunFinished) -> None:
    view.status, view.reason, view.usage, view.elapsed = e.status, e.reason, e.usage, e.elapsed
    view.state = "finished"
    _close_past(view, e.t)
    view.extracted = e.extracted
    view.answer_value = e.answer
    if e.answer is not None:
        view.answer_repr = e.answer.repr
        view.answer = e.answer.python()


def _agent_launched(view: RunView, e: AgentLaunched) -> None:
    view.launches[e.child_agent_id] = HandLaunch(
        e.agent_id,
        e.child_agent_id,
        e.prompt,
        e.context,
        e.bind_var,
        view.cells_decided(e.agent_id),
    )


def _follow_up(view: RunView, e: FollowUp) -> None:
    view.follow_ups[(e.agent_id, e.step)] = e.question


def _history_compacted(view: RunView, e: HistoryCompacted) -> None:
    """Shown in the cell log under the agent's last cell, where the history was cut."""
    view.compactions[(e.agent_id, e.step)] = e.summary
    cells = view.cells_of(e.agent_id)
    if cells:
        cells[-1].tool_calls.append(
            f"⟲ history compacted before step {e.step}: {e.messages_before} messages "
            f"(~{e.tokens_before:,} tokens) -> {e.messages_after} (~{e.tokens_after:,})"
        )
        cells[-1].rev += 1


def _close_past(view: RunView, t: float) -> None:
    """The run ended (or a resumed run starts over): nothing waits or runs any more."""
    view.waiting.clear()
    view.start_prompts.clear()
    for cell_id in view.rerun_cells:
        view.cells[cell_id].rerunning, view.cells[cell_id].rev = False, view.cells[cell_id].rev + 1
    view.rerun_cells.clear()
    for cell in view.cells.values():
        if cell.status in ("pending", "paused"):
            cell.status, cell.rev = "cancelled", cell.rev + 1
        elif cell.status == "running":
            cell.status, cell.rev = "stopped", cell.rev + 1  # cut by the stop
    for agent in view.agents.values():
        if agent.status == "running":
            agent.status, agent.finished = "stopped", t


_HANDLERS: dict[type, Any] = {
    RunStarted: _run_started,
    AgentStarted: _agent_started,
    AgentFinished: _agent_finished,
    ModelRequest: _model_request,
    ModelDelta: _model_delta,
    ModelResponse: _model_response,
    CellProposed: _cell_proposed,
    CellPaused: _cell_paused,
    CellEdited: _cell_edited,
    CellSkipped: _cell_skipped,
    CellStarted: _cell_started,
    CellOutput: _cell_output,
    CellFinished: _cell_finished,
    CellRerunStarted: _cell_rerun_started,
    CellRerunFinished: _cell_rerun_finished,
    SubcallStarted: _subcall_started,
    SubcallFinished: _subcall_finished,
    Notice: _notice,
    BudgetUpdate: _budget,
    RunStateChanged: _state,
    BudgetStop: _budget_stop,
    ErrorEvent: _error,
    KernelEvent: _kernel,
    RunFinished: _run_finished,
    HistoryCompacted: _history_compacted,
    AgentLaunched: _agent_launched,
    FollowUp: _follow_up,
}


def fold(events: Iterable[Event]) -> RunView:
    """The state after ``events`` (a saved session, a recording)."""
    view = RunView()
    for event in events:
        view.apply(event)
    return view
