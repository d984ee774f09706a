"""Summaries of saved sessions, for ``rlm-tui sessions`` and the TUI's home screen."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from rlm_tui.errors import SessionError
from rlm_tui.events import RunStarted
from rlm_tui.session.projection import fold
from rlm_tui.session.store import EVENTS_FILE, default_sessions_dir, read_session


class SessionSummary(BaseModel):
    id: str
    path: str
    query: str
    model: str
    status: str
    started: str
    agents: int
    cells: int
    tokens: int
    cost: float


def summarize(directory: Path) -> SessionSummary:
    log = read_session(directory)
    start = log.started
    assert start is not None
    # a fork holds its original's past: it started when it was forked
    made = next((e for e in log.events if isinstance(e, RunStarted) and e.forked_from), start)
    view = fold(log.events)
    usage = view.usage
    finished = [c for c in view.cells.values() if c.duration is not None]
    return SessionSummary(
        id=directory.name,
        path=str(directory),
        query=start.query,
        model=start.model,
        status=view.status or "unfinished",
        started=datetime.fromtimestamp(made.t).isoformat(timespec="seconds"),
        agents=len(view.agents),
        cells=len(finished),
        tokens=usage.total_tokens,
        cost=usage.cost,
    )


def list_sessions(sessions_dir: Path | None = None) -> list[SessionSummary]:
    """Newest first; a session that cannot be read is listed as corrupt, not skipped."""
    base = sessions_dir or default_sessions_dir()
    if not base.is_dir():
        return []
    summaries = []
    for directory in sorted(base.iterdir(), reverse=True):
        if not (directory / EVENTS_FILE).is_file():
            continue
        try:
            summaries.append(summarize(directory))
        except SessionError as exc:
            summaries.append(
                SessionSummary(
                    id=directory.name,
                    path=str(directory),
                    query=str(exc),
                    model="?",
                    status="corrupt",
                    started="",
                    agents=0,
                    cells=0,
                    tokens=0,
                    cost=0.0,
                )
            )
    return summaries
