"""The control gate on its own: pause, step, replace, skip, breakpoints."""

import asyncio

import pytest

from rlm_tui.engine.control import Breakpoints, Control, Pending
from rlm_tui.errors import UsageError


async def _held(control: Control, gate_id: str, code: str = "x = 1"):
    reason = control.wait_reason("cell", "0", 0)
    assert reason is not None
    task = asyncio.ensure_future(control.hold(Pending("cell", "0", gate_id, code, reason)))
    await asyncio.sleep(0)
    return task


async def test_running_control_lets_cells_through():
    assert Control().wait_reason("cell", "0", 0) is None


async def test_pause_replace_resume_runs_the_new_code():
    control = Control()
    control.pause()
    task = await _held(control, "0:1")
    assert not task.done()
    control.replace("0:1", "x = 2")
    control.resume()
    decision = await asyncio.wait_for(task, 1)
    assert (decision.code, decision.edited, decision.skipped) == ("x = 2", True, False)
    assert control.wait_reason("cell", "0", 0) is None


async def test_skip_releases_with_skipped():
    control = Control()
    control.pause()
    task = await _held(control, "0:1")
    control.skip("0:1")
    assert (await asyncio.wait_for(task, 1)).skipped


async def test_step_lets_exactly_one_cell_through():
    control = Control()
    control.pause()
    first = await _held(control, "0:1")
    second = await _held(control, "0:2")
    control.step()
    await asyncio.sleep(0)
    assert first.done() and not second.done()
    control.step()
    await asyncio.wait_for(second, 1)
    assert control.paused


async def test_step_with_nothing_waiting_passes_the_next_gate_only():
    control = Control()
    control.step()
    assert control.wait_reason("cell", "0", 0) is None
    assert control.wait_reason("cell", "0", 0) == "paused"


def test_breakpoints():
    control = Control(Breakpoints(min_depth=2, subagent_start=True, on_error=True))
    assert control.wait_reason("cell", "0.1", 1) is None
    assert control.wait_reason("cell", "0.1.1", 2) == "breakpoint: depth >= 2"
    assert control.wait_reason("agent_start", "0.1", 1) == "breakpoint: sub-agent start"
    control.note_cell_error("0")
    assert control.wait_reason("cell", "0", 0) == "breakpoint: previous cell failed"
    assert control.wait_reason("cell", "0", 0) is None


def test_replacing_a_cell_that_does_not_wait_is_a_clear_error():
    with pytest.raises(UsageError, match="not waiting"):
        Control().replace("0:9", "x")
