"""The event bus of a run: sequence numbers, the session writer and the subscribers.

Every event of a run passes through ``emit`` once: it gets the next sequence number, is
appended to the session file (when there is one) and is handed to each subscriber.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rlm_tui.events import Event
from rlm_tui.session.store import SessionWriter

log = logging.getLogger(__name__)
Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self, last_seq: int = 0) -> None:
        self.seq = last_seq
        self.writer: SessionWriter | None = None
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        self.seq += 1
        event.seq = self.seq
        if self.writer is not None:
            self.writer.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed")

    def close(self) -> None:
        """Close the session file (and let go of its lock); later events reach subscribers only."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
