"""A fork beside its original: the cells of both from the fork point, their answers and costs.

A fork's session starts with a copy of its original's events up to the cell it was forked at;
its own run starts with a second ``RunStarted`` (``forked_from`` names the original). The
fork point is the first cell the fork proposed itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlm_tui.errors import SessionError
from rlm_tui.events import CellProposed, Event, RunStarted
from rlm_tui.session.projection import CellView, RunView, fold
from rlm_tui.session.store import read_session


@dataclass
class ForkDiff:
    original_id: str
    fork_id: str
    fork_point: str | None
    """The first cell the fork ran itself (None: it has not proposed one yet)."""
    original: RunView
    fork: RunView
    cell_ids: list[str]
    """The cells of either branch from the fork point: the fork's order, then the rest."""

    def cells(self, cell_id: str) -> tuple[CellView | None, CellView | None]:
        return self.original.cells.get(cell_id), self.fork.cells.get(cell_id)


def fork_point(events: list[Event]) -> str | None:
    starts = [i for i, e in enumerate(events) if isinstance(e, RunStarted)]
    for event in events[starts[-1] if starts else 0 :]:
        if isinstance(event, CellProposed):
            return event.cell_id
    return None


def _branch(view: RunView, point: str | None) -> list[str]:
    order = view.cell_order
    return order[order.index(point) :] if point in order else []


def fork_diff(fork_dir: Path) -> ForkDiff:
    """Compare the fork in ``fork_dir`` with the session it was forked from (its sibling)."""
    events = list(read_session(fork_dir).events)
    started = [e for e in events if isinstance(e, RunStarted)]
    origin = started[-1].forked_from if started else None
    if origin is None:
        raise SessionError(f"session {fork_dir.name} is not a fork")
    original_dir = fork_dir.parent / origin
    if not original_dir.is_dir():
        raise SessionError(f"the original of this fork, {origin}, is not in {fork_dir.parent}")
    original, fork = fold(read_session(original_dir).events), fold(events)
    point = fork_point(events)
    mine = _branch(fork, point)
    theirs = [c for c in _branch(original, point) if c not in mine]
    return ForkDiff(origin, fork_dir.name, point, original, fork, mine + theirs)
