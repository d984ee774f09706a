"""Answers from a recorded session: the same replies, no network, nothing spent."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from rlm_tui.errors import ModelError
from rlm_tui.models.base import CallInfo, Completion, DeltaCallback, Message
from rlm_tui.session.projection import fold
from rlm_tui.session.store import find_session, read_session


class ReplayModel:
    is_demo = False

    def __init__(
        self,
        name: str,
        agent_replies: dict[tuple[str, int], str],
        query_replies: dict[tuple[str, str], deque[str]],
    ) -> None:
        self.name = name
        self._agent_replies = agent_replies
        self._query_replies = query_replies

    @classmethod
    def from_session(cls, ref: str, sessions_dir: Path | None = None) -> ReplayModel:
        directory = find_session(ref, sessions_dir)
        return cls.from_directory(directory)

    @classmethod
    def from_directory(cls, directory: Path) -> ReplayModel:
        view = fold(read_session(directory).events)
        queries = {key: deque(texts) for key, texts in view.query_replies.items()}
        return cls(f"replay:{directory.name}", view.replies, queries)

    async def complete(
        self, messages: list[Message], info: CallInfo, on_delta: DeltaCallback | None = None
    ) -> Completion:
        if info.purpose == "agent":
            text = self._agent_replies.get((info.agent_id, info.step))
        else:
            prompt = str(messages[-1].get("content", ""))
            queue = self._query_replies.get((info.agent_id, prompt))
            text = queue.popleft() if queue else None
        if text is None:
            raise ModelError(
                f"{self.name}: no recorded reply for agent {info.agent_id} step {info.step}"
            )
        if on_delta is not None:
            on_delta(text)
        return Completion(text=text, model=self.name)

    async def aclose(self) -> None:
        return None
