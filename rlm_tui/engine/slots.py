"""A cap on the kernels a run holds at once, and the queue past it.

An agent takes a slot when it asks for its kernel and gives it back with the kernel. An agent
waiting on its sub-agents (``rlm_query``) lends its slot while it waits, so a tree deeper than
the cap never deadlocks: whoever holds a slot is running code, and code ends or spawns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

KERNEL_MB = 120
"""Memory to reckon per kernel: a forked kernel's RSS is ~36 MB, its unique part ~15 MB (it
shares the template's pages), and a cell's data comes on top."""
FLOOR, CEILING = 4, 64


def default_max_kernels(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Half the memory available now, in kernels, between FLOOR and CEILING."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines())
        available_mb = int(fields["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return FLOOR
    return max(FLOOR, min(CEILING, available_mb // 2 // KERNEL_MB))


class KernelSlots:
    """At most ``limit`` agents hold a kernel; the others wait in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = asyncio.Semaphore(limit)
        self._holders: set[str] = set()

    @property
    def held(self) -> int:
        return len(self._holders)

    async def take(self, agent_id: str, on_queued: Callable[[int], None]) -> None:
        """Take a slot for the agent; ``on_queued(held)`` first if none is free."""
        if self._free.locked():
            on_queued(self.held)
        await self._free.acquire()
        self._holders.add(agent_id)

    def give(self, agent_id: str) -> None:
        if agent_id in self._holders:
            self._holders.discard(agent_id)
            self._free.release()

    @contextlib.asynccontextmanager
    async def lent(self, agent_id: str, on_queued: Callable[[int], None]) -> AsyncIterator[None]:
        """Give the agent's slot back while the body waits (on sub-agents); take one after."""
        if agent_id not in self._holders:
            yield
            return
        self.give(agent_id)
        try:
            yield
        finally:
            await self.take(agent_id, on_queued)
