"""Each control through the UI (keys and modals) on real runs with real kernels."""

from __future__ import annotations

import asyncio

import pytest
from conftest import FRUITS_QUERY, NESTED_QUERY
from scripted import ScriptedModel, cell

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.tui.agent_tree import AgentTree
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig
from rlm_tui.tui.modals import EditCellScreen
from rlm_tui.tui.run_screen import RunScreen

pytestmark = pytest.mark.timeout(120)


def App(run: Run) -> RlmApp:
    """The real app following a Run the test builds (to plug in a scripted model)."""
    return RlmApp(run=run, ui_config=UiConfig(), watch=False)


async def until(pilot, predicate, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached in time")


def screen(pilot) -> RunScreen:
    assert isinstance(pilot.app.screen, RunScreen)
    return pilot.app.screen


async def test_demo_run_completes_with_three_sub_agents(sessions_dir):
    app = RlmApp(
        config=RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir),
        ui_config=UiConfig(),
        watch=False,
    )
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: screen(pilot).view.finished)
        view = screen(pilot).view
        assert view.status == "answered"
        assert sorted(view.answer) == ["animals", "countries", "fruits"]
        assert sorted(a for a in view.agents if view.agents[a].depth == 1) == ["0.1", "0.2", "0.3"]
        await pilot.pause(0.1)
        tree = pilot.app.screen.query_one(AgentTree)
        labels = [str(node.label) for node in tree.root.children]
        assert labels[0].startswith("✔ agent 0")
        assert "demo (offline)" in str(pilot.app.screen.query_one("#status").render())


async def test_pause_edit_resume_runs_the_edited_code(sessions_dir):
    run = Run(
        RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditCellScreen))
        editor = pilot.app.screen.query_one("TextArea")
        editor.text = "names = ['Rare Berry', 'Fig']"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        await pilot.press("b")
        await pilot.click("#every")
        await pilot.click("#apply")
        await pilot.press("space")
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.answer == {"Rare Berry": 4, "Fig": 0}
        assert screen(pilot).view.cells["0:1"].status == "edited"


async def test_step_and_skip(sessions_dir):
    model = ScriptedModel(
        {"q": [cell("a = 1") + cell("a = 2") + cell("b = a * 10"), cell("FINAL_VAR('b')")]}
    )
    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=model,
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("s")
        await until(pilot, lambda: "0:2" in run.control.pending)
        assert screen(pilot).view.cells["0:1"].status == "ok"
        await pilot.press("x")
        await until(pilot, lambda: "0:3" in run.control.pending)
        run.set_breakpoints(Breakpoints())
        await pilot.press("space")
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.cells["0:2"].status == "skipped"
        assert screen(pilot).view.answer == 10


async def test_launch_sub_agent_by_hand(sessions_dir):
    model = ScriptedModel(
        {
            "q": [cell("x = 1"), cell("FINAL('unchanged')")],
            "make a zoo": [cell("FINAL({'lion': 0, 'tiger': 1})")],
        }
    )
    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=model,
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("l")
        await pilot.pause(0.2)
        pilot.app.screen.query_one("#prompt").value = "make a zoo"
        pilot.app.screen.query_one("#var").value = "zoo"
        await pilot.click("#launch")
        await until(pilot, lambda: "0.1:1" in run.control.pending)
        cell_log = screen(pilot).query_one("CellLog")
        await until(pilot, lambda: any(c.cell_id == "0.1:1" for c in cell_log.cells))
        cell_log.select_cell("0.1:1")
        assert cell_log.current.cell_id == "0.1:1"
        await pilot.press("s")
        await until(pilot, lambda: run.agents["0.1"].status == "answered")
        await until(pilot, lambda: any("zoo" in n for n in run.agents["0"].notes))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditCellScreen))
        assert pilot.app.screen.cell_id == "0:1"
        pilot.app.screen.query_one("TextArea").text = "FINAL_VAR('zoo')"
        await pilot.press("ctrl+s")
        run.set_breakpoints(Breakpoints())
        await pilot.press("space")
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.answer == {"lion": 0, "tiger": 1}


async def test_interrupt_a_long_cell(sessions_dir):
    model = ScriptedModel({"q": [cell("import time\ntime.sleep(60)"), cell("FINAL('after')")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    async with App(run).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: bool(screen(pilot).view.running_cells))
        await asyncio.sleep(0.3)
        await pilot.press("i")
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.cells["0:1"].status == "interrupted"
        assert screen(pilot).view.answer == "after"


async def test_fork_from_the_tui_and_edit_the_fork_cell(sessions_dir):
    model = ScriptedModel({"q": [cell("a = 1"), cell("b = a + 1"), cell("FINAL_VAR('b')")]})
    original = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    assert original.answer == 2
    before = (original.session_dir / "events.jsonl").read_bytes()
    app = RlmApp(session=original.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        log = screen(pilot).query_one("CellLog")
        await until(pilot, lambda: len(log.cells) == 3)
        log.select_cell("0:2")
        await pilot.press("F")
        await until(pilot, lambda: screen(pilot).run is not None)
        fork = screen(pilot).run
        fork.model = ScriptedModel(
            {"q": [cell("a = 1"), cell("b = a + 1"), cell("FINAL_VAR('b')")]}
        )
        await until(pilot, lambda: "0:2" in fork.control.pending)
        assert screen(pilot).view.cells["0:1"].status == "ok"  # the shared history is shown
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditCellScreen))
        pilot.app.screen.query_one("TextArea").text = "b = a + 41"
        await pilot.press("ctrl+s")
        fork.set_breakpoints(Breakpoints())
        await pilot.press("space")
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.answer == 42
    assert (original.session_dir / "events.jsonl").read_bytes() == before
