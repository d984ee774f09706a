"""Replay from a recording: what a resumed or forked run serves instead of doing it again.

This is the one place the engine consults a ``Recording``. Without one (a fresh run) every
question gets ``None`` and the run does everything live.
"""

from __future__ import annotations

from rlm_tui.engine.recording import RecordedCell, RecordedTool, Recording
from rlm_tui.events import Usage, Value
from rlm_tui.session.projection import HandLaunch


class BeyondRecord(Exception):
    """A recorded cell being run again asked for what its first run never got (it was cut
    short there, or took another path): refused in the cell, never asked of a model or a tool,
    so a rebuild spends nothing."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not in the recording (a re-run cell gets only what it got)")


class Replay:
    def __init__(self, recording: Recording | None) -> None:
        self._recording = recording
        self._launches = dict(recording.launches) if recording else {}
        """Hand launches not redone yet."""

    @property
    def last_seq(self) -> int:
        return self._recording.last_seq if self._recording else 0

    @property
    def usage(self) -> Usage:
        return self._recording.usage.model_copy() if self._recording else Usage()

    @property
    def elapsed(self) -> float:
        """The seconds the recorded runs counted against the time limit."""
        return self._recording.elapsed if self._recording else 0.0

    @property
    def origin(self) -> str | None:
        """The run id the recording started as (None for a fresh run)."""
        return self._recording.started.run_id if self._recording else None

    def reply(self, agent_id: str, step: int) -> str | None:
        return self._recording.reply(agent_id, step) if self._recording else None

    def query_reply(self, agent_id: str, prompt: str) -> str | None:
        return self._recording.query_reply(agent_id, prompt) if self._recording else None

    def cell(self, cell_id: str) -> RecordedCell | None:
        return self._recording.cells.get(cell_id) if self._recording else None

    def tool_result(self, agent_id: str, call: str) -> RecordedTool | None:
        return self._recording.tool_result(agent_id, call) if self._recording else None

    def compaction(self, agent_id: str, step: int) -> str | None:
        return self._recording.compactions.get((agent_id, step)) if self._recording else None

    def follow_up(self, agent_id: str, step: int) -> str | None:
        return self._recording.follow_ups.get((agent_id, step)) if self._recording else None

    def answer(self, agent_id: str) -> Value | None:
        return self._recording.answers.get(agent_id) if self._recording else None

    def launched_by_hand(self, agent_id: str) -> bool:
        """The id was a hand-launched sub-agent's: its parent's cells must not take it."""
        return self._recording is not None and agent_id in self._recording.launches

    def hand_launches_due(self, parent_id: str, decided: int | None) -> list[HandLaunch]:
        """The parent's hand launches to redo now that ``decided`` of its cells passed the
        gate (None: it goes on live, so all that are left): answered ones when their answer
        came (to bind it), the others when they were launched (to run them again)."""
        due = [
            launch
            for launch in self._launches.values()
            if launch.parent_id == parent_id
            and (
                decided is None
                or decided
                >= (launch.answered_at if launch.answer is not None else launch.launched_at)
            )
        ]
        for launch in due:
            del self._launches[launch.child_id]
        return due
