"""A run's start and its kernels' restarts leave a true record and nothing behind."""

from __future__ import annotations

import asyncio
import gc
import tempfile
from pathlib import Path

import pytest
from scripted import ScriptedModel, cell

from rlm_tui import heap
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import UsageError
from rlm_tui.events import CellFinished, KernelEvent, RunStarted
from rlm_tui.session.projection import RunView
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(60)


def scratch_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("rlm-run-*"))


async def test_a_failed_start_leaves_no_session_lock_or_scratch(sessions_dir: Path):
    before = scratch_dirs()
    config = RunConfig(
        query="q", context_file=str(sessions_dir / "missing.txt"), sessions_dir=sessions_dir
    )
    run = Run(config, model=ScriptedModel({"q": [cell("FINAL(1)")]}))
    with pytest.raises(UsageError, match="context file not found"):
        await run.start()
    assert list(sessions_dir.iterdir()) == []  # no empty session listed as corrupt
    assert scratch_dirs() - before == set()  # (a start sweeps dead runs' dirs: not ==)
    assert run.bus.writer is None  # the lock's handle is closed


async def test_a_kernel_restarted_for_a_timeout_is_recorded(sessions_dir: Path):
    stubborn = cell(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(30)"
    )
    model = ScriptedModel({"q": [stubborn, cell("FINAL('after')")]})
    config = RunConfig(query="q", sessions_dir=sessions_dir, cell_timeout=1)
    result = await Run(config, model=model).execute()
    assert result.answer == "after"
    events = read_session(result.session_dir).events
    (first,) = [e for e in events if isinstance(e, CellFinished) and e.cell_id == "0:1"]
    assert first.status == "timeout"
    restarts = [e for e in events if isinstance(e, KernelEvent) and e.what == "restarted"]
    assert len(restarts) == 1 and restarts[0].seq < first.seq


async def test_only_a_process_first_run_freezes_what_was_alive_before_it(
    sessions_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """A full collection would walk every object imported (litellm: 380,000, 270 ms) at any
    allocation of the run; a process's first run's start freezes them instead. A later start
    freezes nothing: what is alive then is mostly the runs before, and frozen they were never
    collected (memory grew with each run of the workbench, or of the Python API)."""
    gc.unfreeze()
    monkeypatch.setattr(heap, "_settled", False)  # as in a process where no run started yet
    kept = [object()]  # a list, which the collector tracks
    config = RunConfig(query="q", sessions_dir=sessions_dir)
    first = Run(config, model=ScriptedModel({"q": [cell("FINAL(1)")]}))
    await first.start()
    frozen = gc.get_freeze_count()
    assert (await first.wait()).answer == 1
    assert frozen > 0 and not any(o is kept for o in gc.get_objects())
    second = Run(config, model=ScriptedModel({"q": [cell("FINAL(2)")]}))
    await second.start()
    assert any(o is second for o in gc.get_objects())  # not frozen: it can be collected
    assert (await second.wait()).answer == 2


async def test_a_pause_while_the_run_starts_is_told_after_run_started(sessions_dir: Path):
    """A pause pressed while the run starts (the TUI's keys work meanwhile) holds its first
    cell; its view, folded from the events, says paused, and the session still opens with
    ``RunStarted`` (it said "running" over a paused run)."""
    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=ScriptedModel({"q": [cell("FINAL(1)")]}),
    )
    events: list = []
    run.subscribe(events.append)
    run.pause()
    await run.start()
    while "0:1" not in run.control.pending:
        await asyncio.sleep(0.01)
    view = RunView()
    for event in events:
        view.apply(event)
    assert isinstance(events[0], RunStarted) and view.paused
    run.resume()
    assert (await run.wait()).status == "answered"
    assert isinstance(read_session(run.session_dir).events[0], RunStarted)
