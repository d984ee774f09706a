"""Playing a recorded session back: a position in its events, a speed, pause and steps.

Pure Python: the run screen owns the clock (it sleeps ``delay()`` between events) and folds
what ``advance`` returns; every time it shows comes from the recording, not the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlm_tui.events import CellFinished, Event

MAX_GAP = 1.0
"""Seconds: a longer silence in the recording is played as this long (at speed 1)."""
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


@dataclass
class Player:
    events: list[Event]
    speed: float = 1.0
    paused: bool = False
    position: int = 0
    """How many events have been played."""

    @property
    def done(self) -> bool:
        return self.position >= len(self.events)

    def delay(self) -> float:
        """Seconds to wait before the next event at the current speed."""
        if self.done or self.position == 0:
            return 0.0
        gap = self.events[self.position].t - self.events[self.position - 1].t
        return min(max(0.0, gap), MAX_GAP) / self.speed

    def advance(self, count: int = 1) -> list[Event]:
        """The next ``count`` events (fewer at the end)."""
        played = self.events[self.position : self.position + count]
        self.position += len(played)
        return played

    def to_next_cell(self) -> list[Event]:
        """The events up to and including the next cell's end."""
        for i in range(self.position, len(self.events)):
            if isinstance(self.events[i], CellFinished):
                return self.advance(i + 1 - self.position)
        return self.to_end()

    def previous_cell_end(self) -> int:
        """The position just after the cell that ended before the last one played (0: none):
        where a step back a cell starts from."""
        ends = [i + 1 for i in range(self.position - 1) if isinstance(self.events[i], CellFinished)]
        return ends[-1] if ends else 0

    def to_end(self) -> list[Event]:
        return self.advance(len(self.events) - self.position)

    def faster(self, direction: int) -> None:
        """One step up (1) or down (-1) the speed ladder."""
        lower = [s for s in SPEEDS if s < self.speed]
        higher = [s for s in SPEEDS if s > self.speed]
        if direction > 0 and higher:
            self.speed = higher[0]
        elif direction < 0 and lower:
            self.speed = lower[-1]

    def describe(self) -> str:
        """``⏸ 2x · event 120/560``."""
        state = "done" if self.done else ("⏸" if self.paused else "▶")
        return f"{state} {self.speed:g}x · event {self.position}/{len(self.events)}"
