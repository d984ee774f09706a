"""Long-lived objects out of the garbage collector's way.

What a process imports lives as long as it does, yet each full collection walks all of it:
270 ms with litellm loaded (380,000 objects), 44 ms for the TUI, stalls that land at whatever
allocation of a run triggers one (a fan-out's event loop stalled 0.4-0.5 s, and 13 % of its
host CPU went to the collector). ``settle``, at a process's first run's start, moves every
object alive then into the permanent generation, after collecting the young generations,
whose garbage it would otherwise keep.

A large import is made with no collection at all (``import_settled``): litellm's import grows
the heap by 400,000 objects, and each growth by a quarter set off a full collection of it,
six of them, 0.1-0.36 s each, with the GIL held: the app's loop stopped while a worker
imported litellm after the first frame. What it imported is then frozen uncollected: a
collection of it took 0.43 s, for 2,600 objects of garbage (kept, a few hundred KB).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_COLLECTION_EVERY = 20_000
"""Allocations between two collections of the youngest generation in the processes rlm-tui
owns (CPython's default, 700, collects ~50 times a second of a run, each older generation a
tenth as often; the app's loop then waits 2-6 ms a collection). The demo's loop-lag p99, 20
runs each way: ~22 -> ~19 ms."""


def collect_less_often() -> None:
    """For the CLI's process and an app's (runs through the Python API, ``rlm_tui.run``, leave
    the process's setting alone)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


_settled = False
"""A run has started in this process: what was alive then is frozen."""


def settle() -> None:
    """Call when a run starts; only a process's first run freezes. What a later start finds
    alive is mostly the runs before it (a workbench's, their screens; the Python API's), soon
    garbage: frozen, it was never collected, and memory grew with every run."""
    global _settled
    if not _settled:
        _settled = True
        gc.collect(1)
        gc.freeze()


@contextlib.contextmanager
def import_settled() -> Iterator[None]:
    """Around a large import: no collection during it, then all of it frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
