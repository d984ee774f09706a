"""What a saved session already did, so a resumed run can redo it without paying again.

A resumed run walks the same path: each agent's recorded replies are served instead of model
calls, its recorded cells are run again (edited code as edited, skipped cells skipped) to
rebuild its kernel, answered sub-agents return their recorded value, ``llm_query`` gets
its recorded text, and sub-agents launched by hand are launched (or bound) again. Where the
record ends, the run goes on live. All of it is read from the session's projection.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from rlm_tui.errors import SessionError
from rlm_tui.events import CellProposed, Event, RunStarted, Value
from rlm_tui.session.projection import HandLaunch, fold
from rlm_tui.session.store import read_session

RAN = frozenset({"ok", "edited", "error", "interrupted", "timeout", "killed"})
"""Cell states of the projection whose code ran to an end: recorded, so run again."""


CUT_SHORT = frozenset({"interrupted", "timeout"})
"""Cell states of a cell stopped while it ran: run again, it is stopped at the same time."""


@dataclass
class RecordedCell:
    code: str | None
    """The code that ran, or None if the cell was skipped."""
    status: str = "ok"
    duration: float | None = None

    @property
    def cut_after(self) -> float | None:
        """Seconds after which its re-run is interrupted, as it was (None: let it end)."""
        return self.duration if self.status in CUT_SHORT and self.duration else None


@dataclass
class RecordedTool:
    """A tool call's outcome: its value, or the error it raised."""

    value: Value | None
    error: str | None


class Recording:
    def __init__(self, events: list[Event]) -> None:
        starts = [e for e in events if isinstance(e, RunStarted)]
        if not events or not isinstance(events[0], RunStarted):
            raise SessionError("not a session: it does not start with run_started")
        view = fold(events)
        self.started = starts[0]
        self.latest = starts[-1]
        """The last start (each resume records one, with its settings): what goes on now."""
        self.last_seq = max(e.seq for e in events)
        self.status = view.status
        """How the last run ended (None: it did not)."""
        self.usage = view.usage.model_copy()
        self.elapsed = view.elapsed
        """Seconds counted against the time limit, as of the last budget update."""
        self.replies = view.replies
        self.compactions = view.compactions
        self.follow_ups = view.follow_ups
        self.launches: dict[str, HandLaunch] = view.launches
        self.cells = {
            c.cell_id: RecordedCell(None if c.status == "skipped" else c.code, c.status, c.duration)
            for c in view.cells.values()
            if c.status in RAN or c.status == "skipped"
        }
        """Cells that ran to an end or were skipped; one a crash cut off runs again, live."""
        self.answers = {
            a.agent_id: a.answer
            for a in view.agents.values()
            if a.status == "answered" and a.answer is not None
        }
        self._queries = {key: deque(texts) for key, texts in view.query_replies.items()}
        self._tools: dict[tuple[str, str], deque[RecordedTool]] = defaultdict(deque)
        """Tool outcomes by (agent, the call as Python), in the order they were called."""
        for call in view.subcalls:
            if call.kind == "tool" and call.ok is not None:
                outcome = RecordedTool(call.result if call.ok else None, call.error)
                self._tools[(call.agent_id, call.prompt)].append(outcome)

    @classmethod
    def from_session(cls, directory: Path) -> Recording:
        return cls(list(read_session(directory).events))

    def reply(self, agent_id: str, step: int) -> str | None:
        return self.replies.get((agent_id, step))

    def query_reply(self, agent_id: str, prompt: str) -> str | None:
        queue = self._queries.get((agent_id, prompt))
        return queue.popleft() if queue else None

    def tool_result(self, agent_id: str, call: str) -> RecordedTool | None:
        queue = self._tools.get((agent_id, call))
        return queue.popleft() if queue else None


def cut_before_cell(events: list[Event], cell_id: str) -> list[Event]:
    """The events of a session up to (not including) the proposal of ``cell_id``."""
    for i, event in enumerate(events):
        if isinstance(event, CellProposed) and event.cell_id == cell_id:
            return events[:i]
    cells = list(dict.fromkeys(e.cell_id for e in events if isinstance(e, CellProposed)))
    shown = ", ".join(cells[:12]) + (" …" if len(cells) > 12 else "")
    raise SessionError(f"no cell {cell_id} in this session (cells: {shown or 'none'})")
