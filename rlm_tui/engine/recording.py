"""What a saved session already did, so a resumed run can redo it without paying again.

A resumed run walks the same path: each agent's recorded replies are served instead of model
calls, its recorded cells are run again (edited code as edited, skipped cells skipped) to
rebuild its kernel, answered sub-agents return their recorded value, and ``llm_query`` gets
its recorded text. Where the record ends, the run goes on live.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from rlm_tui.errors import SessionError
from rlm_tui.events import (
    AgentFinished,
    AgentLaunched,
    BudgetUpdate,
    CellFinished,
    CellProposed,
    CellSkipped,
    CellStarted,
    Event,
    FollowUp,
    HistoryCompacted,
    ModelRequest,
    ModelResponse,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
    Usage,
    Value,
)
from rlm_tui.session.store import read_session


@dataclass
class RecordedCell:
    code: str | None
    """The code that ran, or None if the cell was skipped."""


@dataclass
class RecordedTool:
    """A tool call's outcome: its value, or the error it raised."""

    value: Value | None
    error: str | None


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
class Recording:
    started: RunStarted
    replies: dict[tuple[str, int], str] = field(default_factory=dict)
    queries: dict[tuple[str, str], deque[str]] = field(default_factory=lambda: defaultdict(deque))
    cells: dict[str, RecordedCell] = field(default_factory=dict)
    answers: dict[str, Value] = field(default_factory=dict)
    tools: dict[tuple[str, str], deque[RecordedTool]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    """Tool outcomes by (agent, the call as Python), in the order they came."""
    follow_ups: dict[tuple[str, int], str] = field(default_factory=dict)
    compactions: dict[tuple[str, int], str] = field(default_factory=dict)
    """Summaries that replaced an agent's earlier turns, by (agent, step)."""
    """Questions asked after an agent's answer at a step (``rlm-tui ask``)."""
    launches: dict[str, HandLaunch] = field(default_factory=dict)
    """Sub-agents launched by hand, by child id, in the order they were launched."""
    usage: Usage = field(default_factory=Usage)
    finished: RunFinished | None = None
    last_seq: int = 0
    _latest: RunStarted | None = None
    _running: dict[str, str] = field(default_factory=dict)
    _tool_calls: dict[str, tuple[str, str]] = field(default_factory=dict)
    _decided: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Per agent, its cells that passed the gate (started or skipped)."""

    @classmethod
    def from_events(cls, events: list[Event]) -> Recording:
        first = events[0] if events else None
        if not isinstance(first, RunStarted):
            raise SessionError("not a session: it does not start with run_started")
        recording = cls(started=first)
        prompts: dict[str, str] = {}
        for event in events:
            recording._add(event, prompts)
        return recording

    @classmethod
    def from_session(cls, directory: Path) -> Recording:
        return cls.from_events(list(read_session(directory).events))

    def _add(self, event: Event, prompts: dict[str, str]) -> None:
        self.last_seq = max(self.last_seq, event.seq)
        if isinstance(event, RunStarted):
            self._latest = event
        elif isinstance(event, ModelRequest) and event.purpose == "llm_query" and event.messages:
            prompts[event.call_id] = str(event.messages[-1].get("content", ""))
        elif isinstance(event, ModelResponse):
            if event.purpose == "agent":
                self.replies[(event.agent_id, event.step)] = event.text
            elif event.purpose == "llm_query":
                self.queries[(event.agent_id, prompts.get(event.call_id, ""))].append(event.text)
        elif isinstance(event, SubcallStarted) and event.kind == "tool":
            self._tool_calls[event.call_id] = (event.agent_id, event.prompt)
        elif isinstance(event, SubcallFinished) and event.call_id in self._tool_calls:
            outcome = RecordedTool(event.result if event.ok else None, event.error)
            self.tools[self._tool_calls.pop(event.call_id)].append(outcome)
        elif isinstance(event, HistoryCompacted):
            self.compactions[(event.agent_id, event.step)] = event.summary
        elif isinstance(event, FollowUp):
            self.follow_ups[(event.agent_id, event.step)] = event.question
        elif isinstance(event, CellStarted):
            self._running[event.cell_id] = event.code
            self._decided[event.agent_id].add(event.cell_id)
        elif isinstance(event, CellFinished) and event.cell_id in self._running:
            # a cell cut off by a crash has no CellFinished: it runs again, live
            self.cells[event.cell_id] = RecordedCell(self._running.pop(event.cell_id))
        elif isinstance(event, CellSkipped):
            self.cells[event.cell_id] = RecordedCell(None)
            self._decided[event.agent_id].add(event.cell_id)
        elif isinstance(event, AgentLaunched):
            decided = len(self._decided[event.agent_id])
            self.launches[event.child_agent_id] = HandLaunch(
                event.agent_id,
                event.child_agent_id,
                event.prompt,
                event.context,
                event.bind_var,
                decided,
            )
        elif (
            isinstance(event, SubcallFinished)
            and event.ok
            and event.result is not None
            and (launch := self.launches.get(event.call_id[1:])) is not None
            and event.call_id == f"r{launch.child_id}"
        ):
            launch.answer = event.result
            launch.answered_at = len(self._decided[launch.parent_id])
        elif isinstance(event, AgentFinished) and event.status == "answered" and event.answer:
            self.answers[event.agent_id] = event.answer
        elif isinstance(event, BudgetUpdate | RunFinished):
            self.usage = event.usage.model_copy()
            if isinstance(event, RunFinished):
                self.finished = event

    @property
    def latest(self) -> RunStarted:
        """The last start (each resume records one, with its settings): what goes on now."""
        return self._latest or self.started

    def reply(self, agent_id: str, step: int) -> str | None:
        return self.replies.get((agent_id, step))

    def query_reply(self, agent_id: str, prompt: str) -> str | None:
        queue = self.queries.get((agent_id, prompt))
        return queue.popleft() if queue else None

    def tool_result(self, agent_id: str, call: str) -> RecordedTool | None:
        queue = self.tools.get((agent_id, call))
        return queue.popleft() if queue else None


def cut_before_cell(events: list[Event], cell_id: str) -> list[Event]:
    """The events of a session up to (not including) the proposal of ``cell_id``."""
    for i, event in enumerate(events):
        if isinstance(event, CellProposed) and event.cell_id == cell_id:
            return events[:i]
    cells = list(dict.fromkeys(e.cell_id for e in events if isinstance(e, CellProposed)))
    shown = ", ".join(cells[:12]) + (" …" if len(cells) > 12 else "")
    raise SessionError(f"no cell {cell_id} in this session (cells: {shown or 'none'})")
