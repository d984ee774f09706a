"""The TUI's state: a fold over events, so live runs, resumed runs and saved sessions look alike.

Pure Python (no Textual): the panes read it, ``apply`` is the only writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    BudgetStop,
    BudgetUpdate,
    CellEdited,
    CellFinished,
    CellOutput,
    CellPaused,
    CellProposed,
    CellSkipped,
    CellStarted,
    ErrorEvent,
    Event,
    KernelEvent,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    RunFinished,
    RunStarted,
    RunStateChanged,
    SubcallStarted,
    Usage,
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

    @property
    def output(self) -> str:
        return "".join(self.output_parts)


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
    by_hand: bool = False
    bind_var: str | None = None
    streaming: str = ""
    children: list[str] = field(default_factory=list)
    tokens_per_step: list[int] = field(default_factory=list)


@dataclass
class RunView:
    run_id: str = ""
    query: str = ""
    model: str = ""
    model_is_demo: bool = False
    sandbox_warning: str | None = None
    """Why the kernels run unsandboxed (auto fell back, or --sandbox off); None when sandboxed."""
    session_dir: str | None = None
    context_file: str | None = None
    context_kind: str = "none"
    limits: dict[str, Any] = field(default_factory=dict)
    truncate: int = 2000
    state: str = "starting"
    status: str | None = None
    reason: str = ""
    answer_repr: str = ""
    answer: Any = None
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
    version: int = 0

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
        if handler is not None:
            handler(self, event)


def _run_started(view: RunView, e: RunStarted) -> None:
    view.status, view.reason = None, ""
    view.run_id, view.query, view.model = e.run_id, e.query, e.model
    view.model_is_demo = e.model_is_demo
    view.sandbox_warning = e.sandbox.warning if e.sandbox else None
    view.session_dir, view.context_file = e.session_dir, e.context_file
    view.context_kind, view.limits, view.truncate = e.context_kind, e.limits, e.truncate
    view.state, view.started = "running", e.t


def _agent_started(view: RunView, e: AgentStarted) -> None:
    known = view.agents.get(e.agent_id)
    if known is not None:  # the agent goes on in a resumed or forked run
        known.status, known.finished, known.answer_preview = "running", None, ""
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
        view.seen_texts.setdefault(e.agent_id, []).append(e.context_preview)


def _agent_finished(view: RunView, e: AgentFinished) -> None:
    agent = view.agents.get(e.agent_id)
    if agent is None:
        return
    agent.status, agent.finished = e.status, e.t  # usage adds up from its model responses
    if e.answer is not None:
        agent.answer_preview = e.answer.repr[:200]
    elif e.reason:
        agent.answer_preview = e.reason[:200]


def _model_request(view: RunView, e: ModelRequest) -> None:
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
    if agent is not None:
        agent.usage.add(e.usage)
        agent.tokens_per_step.append(tokens)
        agent.streaming = ""


def _cell_proposed(view: RunView, e: CellProposed) -> None:
    view.cells[e.cell_id] = CellView(e.cell_id, e.agent_id, e.index, e.step, e.code, e.preamble)
    view.cell_order.append(e.cell_id)


def _cell_paused(view: RunView, e: CellPaused) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.status, cell.paused_reason = "paused", e.reason


def _cell_edited(view: RunView, e: CellEdited) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.code, cell.edited = e.code, True


def _cell_skipped(view: RunView, e: CellSkipped) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.status = "skipped"


def _cell_started(view: RunView, e: CellStarted) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.status, cell.code = "running", e.code


def _cell_output(view: RunView, e: CellOutput) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is not None:
        cell.output_parts.append(e.text)


def _cell_finished(view: RunView, e: CellFinished) -> None:
    cell = view.cells.get(e.cell_id)
    if cell is None:
        return
    cell.status = "edited" if cell.edited and e.status == "ok" else e.status
    cell.duration, cell.error, cell.model_view = e.duration, e.error, e.model_view
    if e.output and not cell.output_parts:
        cell.output_parts = [e.output]
    if e.model_view:
        view.seen_texts.setdefault(e.agent_id, []).append(e.model_view)


def _subcall_started(view: RunView, e: SubcallStarted) -> None:
    if e.kind == "llm_query":
        view.seen_texts.setdefault(e.agent_id, []).append(e.prompt)


def _budget(view: RunView, e: BudgetUpdate) -> None:
    view.usage, view.elapsed = e.usage, e.elapsed
    view.depth = max(view.depth, e.depth)


def _state(view: RunView, e: RunStateChanged) -> None:
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
    if e.answer is not None:
        view.answer_repr = e.answer.repr
        view.answer = e.answer.python()


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
    SubcallStarted: _subcall_started,
    BudgetUpdate: _budget,
    RunStateChanged: _state,
    BudgetStop: _budget_stop,
    ErrorEvent: _error,
    KernelEvent: _kernel,
    RunFinished: _run_finished,
}
