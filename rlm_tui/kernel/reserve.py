"""Kernels started ahead of need, for every kind of provider (forked locally, on a gateway).

``acquire`` takes a ready kernel (or the one furthest along) and the reserve is topped up once
no acquire waits and no cell runs: neither a kernel an agent waits for nor a running cell (and
the sub-agents it waits on) shares the machine with the reserve's refills. On 2 cores, a
fan-out's kernels started 1.5x slower beside them, and a 7-agent run with no model latency
took 0.45-0.50 s with refills beside its cells, 0.30 s with refills after them. A launch
cancelled midway is let finish and then shut down, so no kernel is left that the provider does
not know (a gateway's kernel stops waiting once the gateway has named it: a kernel that never
answered held a Ctrl-C up for its whole start timeout); a released kernel ends in the
background, and ``close`` waits for every one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from rlm_tui.errors import RlmError


class _Startable(Protocol):
    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


K = TypeVar("K", bound=_Startable)


class WarmReserve(Generic[K]):
    """The reserve; a provider says how a kernel is made (``new_kernel``) and what else its
    ``close`` ends (``close_rest``)."""

    failure = "kernel failed to start"
    """The start of the one line an error of a kernel's start is reported with."""
    start_stops_safely = False
    """A kernel's ``start`` may be cancelled: it leaves a kernel its ``shutdown`` ends."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._warm: asyncio.Queue[asyncio.Task[K]] = asyncio.Queue()
        self._all: set[K] = set()
        self._ending: set[asyncio.Future[None]] = set()
        self._waiting = 0
        """Acquires whose kernel is still starting."""
        self._running = 0
        """Cells running on this provider's kernels (``running``)."""
        self._closed = False

    @property
    def stocked(self) -> int:
        """Kernels in the reserve, ready or starting."""
        return self._warm.qsize()

    async def new_kernel(self, ahead: bool) -> K:
        """A kernel not yet started; ``ahead``: for the reserve (no agent waits for it yet)."""
        raise NotImplementedError

    async def close_rest(self) -> None:
        """What the provider ends after its kernels."""

    def _launch(self, ahead: bool) -> asyncio.Task[K]:
        async def boot() -> K:
            kernel = await self.new_kernel(ahead)
            self._all.add(kernel)
            starting = asyncio.ensure_future(kernel.start())
            try:
                await asyncio.shield(starting)
            except BaseException:
                # cancelled mid-launch: let the launch finish (or stop where the kernel can say
                # it stops safely), so the kernel is known and ends
                if self.start_stops_safely:
                    starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
                await kernel.shutdown()
                self._all.discard(kernel)
                raise
            return kernel

        return asyncio.ensure_future(boot())

    async def start(self) -> None:
        self._top_up()

    def _top_up(self) -> None:
        while (
            self._warm.qsize() < self.size
            and not self._closed
            and not self._waiting
            and not self._running
        ):
            self._warm.put_nowait(self._launch(ahead=True))

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around a cell on one of this provider's kernels: no refill starts until it ends."""
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._top_up()

    async def acquire(self) -> K:
        if self._closed:
            raise RuntimeError("the kernel provider is closed")
        task = self._warm.get_nowait() if not self._warm.empty() else self._launch(ahead=False)
        self._waiting += 1
        try:
            return await task
        except RlmError:
            raise
        except Exception as exc:
            raise RuntimeError(f"{self.failure}: {exc}") from exc
        finally:
            self._waiting -= 1
            self._top_up()

    async def release(self, kernel: Any) -> None:
        """Shut the kernel down and go on: its end is awaited in the background (and by close)."""
        self._all.discard(kernel)
        ending = asyncio.ensure_future(kernel.shutdown())
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)

    async def close(self) -> None:
        """Shut down every kernel, ready, busy or still starting, then the rest; safe twice."""
        self._closed = True
        while not self._warm.empty():
            task = self._warm.get_nowait()
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
        ending = [*(k.shutdown() for k in list(self._all)), *self._ending]
        await asyncio.gather(*ending, return_exceptions=True)
        self._all.clear()
        await self.close_rest()
