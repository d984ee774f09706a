"""Kernels off the critical path and under a cap, on real kernels with a scripted model."""

from __future__ import annotations

from pathlib import Path

from scripted import ScriptedModel, cell

from rlm_tui import defaults
from rlm_tui.engine.run import Run, RunConfig, kernel_pool
from rlm_tui.engine.slots import CEILING, FLOOR, default_max_kernels
from rlm_tui.events import KernelEvent, ModelRequest


async def test_the_roots_first_model_request_leaves_before_its_kernel_is_ready(
    sessions_dir: Path,
) -> None:
    model = ScriptedModel({"q": [cell("FINAL(6 * 7)")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir, pool_size=0), model=model)
    events: list = []
    run.subscribe(events.append)
    result = await run.execute()
    assert result.answer == 42
    order = [
        type(e).__name__
        for e in events
        if isinstance(e, ModelRequest) or (isinstance(e, KernelEvent) and e.what == "started")
    ]
    assert order == ["ModelRequest", "KernelEvent"]


async def test_past_the_cap_sub_agents_queue_visibly_and_all_answer(sessions_dir: Path) -> None:
    model = ScriptedModel(
        {
            "child": [cell("import time\ntime.sleep(0.2)\nFINAL(len(context))")],
            "q": [cell("FINAL(rlm_query_batched(['child'] * 4, ['a', 'bb', 'ccc', 'dddd']))")],
        }
    )
    config = RunConfig(query="q", sessions_dir=sessions_dir, pool_size=0, max_kernels=2)
    run = Run(config, model=model)
    held_at_start: list[int] = []
    events: list = []

    def watch(event: object) -> None:
        events.append(event)
        if isinstance(event, KernelEvent) and event.what == "started":
            held_at_start.append(run.kernel_slots.held)

    run.subscribe(watch)
    result = await run.execute()
    assert result.answer == [1, 2, 3, 4]
    kernel_events = [(e.agent_id, e.what) for e in events if isinstance(e, KernelEvent)]
    queued = [agent for agent, what in kernel_events if what == "queued"]
    assert len(queued) >= 2, kernel_events  # 4 children, 2 slots (the root lends its own)
    for agent in queued:
        assert kernel_events.index((agent, "queued")) < kernel_events.index((agent, "started"))
    assert max(held_at_start) <= 2
    reasons = {e.reason for e in events if isinstance(e, KernelEvent) and e.what == "queued"}
    assert reasons == {"2 of 2 kernels in use (--max-kernels)"}


def test_the_default_cap_follows_the_memory_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 9 kB\nMemAvailable:    2457600 kB\n")  # 2400 MB
    assert default_max_kernels(meminfo) == 10
    meminfo.write_text("MemAvailable: 100 kB\n")
    assert default_max_kernels(meminfo) == FLOOR
    meminfo.write_text("MemAvailable: 999999999 kB\n")
    assert default_max_kernels(meminfo) == CEILING
    assert default_max_kernels(tmp_path / "missing") == FLOOR


def test_the_warm_reserve_is_never_more_than_the_kernel_cap(tmp_path: Path) -> None:
    """A reserve past the cap only piles up processes, and the run waits for them at its end."""
    config = RunConfig(query="q", sessions_dir=tmp_path, pool_size=defaults.MAX_POOL_SIZE)
    assert config.model_copy(update={"max_kernels": 3}).reserve_size() == 3
    assert kernel_pool(config.model_copy(update={"max_kernels": 1})).size == 1
    assert kernel_pool(config).size == min(defaults.MAX_POOL_SIZE, default_max_kernels())
