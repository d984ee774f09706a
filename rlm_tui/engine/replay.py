"""Replay from a recording: what a resumed or forked run serves instead of doing it again.

This is the one place the engine consults a ``Recording``. Without one (a fresh run) every
question gets ``None`` and the run does everything live.
"""

from __future__ import annotations

from rlm_tui.engine.recording import RecordedCell, RecordedTool, Recording
from rlm_tui.events import Usage, Value


class Replay:
    def __init__(self, recording: Recording | None) -> None:
        self._recording = recording

    @property
    def last_seq(self) -> int:
        return self._recording.last_seq if self._recording else 0

    @property
    def usage(self) -> Usage:
        return self._recording.usage.model_copy() if self._recording else Usage()

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
