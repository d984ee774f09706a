"""Each control through the UI (keys and modals) on real runs with real kernels."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import FRUITS_QUERY, NESTED_QUERY, screen_lines
from scripted import ScriptedModel, cell, until
from textual.widgets import DataTable

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import UsageError
from rlm_tui.tui.agent_tree import AgentTree
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.budget_meter import BudgetMeter
from rlm_tui.tui.config import UiConfig
from rlm_tui.tui.home_screen import QUERY, HomeScreen
from rlm_tui.tui.modals import ConfirmScreen, EditCellScreen, LaunchScreen
from rlm_tui.tui.run_screen import RunScreen
from rlm_tui.tui.wait_list import WaitList

pytestmark = pytest.mark.timeout(120)


def App(run: Run) -> RlmApp:
    """The real app following a Run the test builds (to plug in a scripted model)."""
    return RlmApp(run=run, ui_config=UiConfig(), watch=False)


def screen(pilot) -> RunScreen:
    assert isinstance(pilot.app.screen, RunScreen)
    return pilot.app.screen


def held_at_each_cell(model: ScriptedModel, sessions_dir: Path) -> Run:
    """A run of ``model`` for the query "q" that waits before each of its cells."""
    return Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=model,
        breakpoints=Breakpoints(every_cell=True),
    )


async def test_the_budget_panes_clock_moves_while_a_cell_runs(sessions_dir):
    model = ScriptedModel({"q": [cell("import time\ntime.sleep(4)"), cell("FINAL(1)")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    async with App(run).run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: "0:1" in screen(pilot).view.cells)

        def clock() -> str:
            meter = screen(pilot).query_one(BudgetMeter).region
            lines = screen_lines(pilot.app)[meter.y : meter.bottom]
            return next(line[meter.x : meter.right] for line in lines if " time " in line)

        await pilot.pause(1.0)
        first = clock()
        await pilot.pause(1.5)
        assert clock() != first, "no event came, and the run's time moved on"
        await until(pilot, lambda: screen(pilot).view.finished)


async def test_demo_run_completes_with_three_sub_agents(sessions_dir):
    app = RlmApp(
        config=RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir),
        ui_config=UiConfig(),
        watch=False,
    )
    async with app.run_test(size=(160, 48)) as pilot:
        # the first frame says the run starts; its screen comes once the engine is imported
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        await until(pilot, lambda: screen(pilot).view.finished)
        view = screen(pilot).view
        assert view.status == "answered"
        assert sorted(view.answer) == ["animals", "countries", "fruits"]
        assert sorted(a for a in view.agents if view.agents[a].depth == 1) == ["0.1", "0.2", "0.3"]
        tree = pilot.app.screen.query_one(AgentTree)
        await until(pilot, lambda: str(tree.root.children[0].label).startswith("✔ agent 0"))
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
        waiting = screen(pilot).query_one(WaitList)
        await until(pilot, lambda: "Rare Berry" in str(waiting.get_option_at_index(0).prompt))
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
    run = held_at_each_cell(model, sessions_dir)
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


@pytest.mark.parametrize("var", ["FINAL_VAR", "llm_query", "class", "_private", "a b"])
async def test_a_hand_launched_answer_cannot_take_a_name_of_the_repl(sessions_dir, var):
    model = ScriptedModel({"q": [cell("x = 1"), cell("FINAL('unchanged')")]})
    run = held_at_each_cell(model, sessions_dir)
    async with App(run).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen))
        pilot.app.screen.query_one("#prompt").value = "make a zoo"
        pilot.app.screen.query_one("#var").value = var
        await pilot.click("#launch")
        await pilot.pause(0.2)
        assert isinstance(pilot.app.screen, LaunchScreen), "the form stays, to fix the name"
        assert set(run.agents) == {"0"}
        with pytest.raises(UsageError, match="cannot be called"):
            run.launch_subagent("0", "make a zoo", var=var)
        assert set(run.agents) == {"0"}
        run.stop("done")


async def test_launch_sub_agent_by_hand(sessions_dir):
    model = ScriptedModel(
        {
            "q": [cell("x = 1"), cell("FINAL('unchanged')")],
            "make a zoo": [cell("FINAL({'lion': 0, 'tiger': 1})")],
        }
    )
    run = held_at_each_cell(model, sessions_dir)
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


async def test_a_fork_while_another_run_is_live_asks_to_stop_that_run(sessions_dir):
    """F on a saved session opened over a live run: the app follows one run, so the live one
    is stopped first, and that is asked (it went on unfollowed, and quitting left it)."""
    model = ScriptedModel({"q": [cell("a = 1"), cell("FINAL('saved')")]})
    await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    live = Run(
        RunConfig(query="live", sessions_dir=sessions_dir),
        model=ScriptedModel({"live": [cell("x = 1")]}),
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(live).run_test(size=(120, 40)) as pilot:
        app = pilot.app
        await until(pilot, lambda: "0:1" in live.control.pending)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        table = app.screen.query_one(DataTable)
        saved = next(i for i in range(table.row_count) if str(table.get_row_at(i)[QUERY]) == "q")
        table.move_cursor(row=saved)
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is None)
        screen(pilot).query_one("CellLog").select_cell("0:1")
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause(0.2)
        assert screen(pilot).run is None and not live.ended
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: screen(pilot).run not in (None, live))
        fork = screen(pilot).run
        assert app.current_run is fork and fork.config.append_to is not None
        await until(pilot, lambda: live.ended)
        assert live.result is not None and live.result.status == "stopped"


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def kernel_print(run: Run, agent_id: str, expression: str) -> str:
    """Evaluate in an agent's kernel while the run holds it at the gate (kernel idle)."""
    out: list[str] = []
    kernel = run.agents[agent_id].kernel
    assert kernel is not None
    await kernel.execute(f"print({expression})", lambda stream, text: out.append(text))
    return "".join(out).strip()


async def test_pause_key_then_edit_step_and_the_kernel_has_the_edit(sessions_dir):
    """The demo run, paused with space before its first cell; the edited cell runs in the
    kernel (its output and the kernel's variables show it); then the run answers."""
    run = Run(RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir, demo_delay=0.01))
    async with App(run).run_test(size=(160, 48)) as pilot:
        await pilot.press("space")
        await until(pilot, lambda: "0:1" in run.control.pending)
        assert screen(pilot).view.paused
        await until(
            pilot, lambda: "⏸ paused" in str(pilot.app.screen.query_one("#status").render())
        )
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditCellScreen))
        area = pilot.app.screen.query_one("TextArea")
        original = area.text
        area.text = "marker = 41 + 1\nprint('marker is', marker)\n" + original
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        assert screen(pilot).view.cells["0:1"].edited
        await pilot.press("s")  # step: 0:1 runs, the next cell waits
        await until(pilot, lambda: "0:2" in run.control.pending)
        cell = screen(pilot).view.cells["0:1"]
        assert cell.status == "edited" and "marker is 42" in cell.output
        assert await kernel_print(run, "0", "marker * 2") == "84"
        await pilot.press("space")  # resume
        await until(pilot, lambda: screen(pilot).view.finished)
        view = screen(pilot).view
        assert view.status == "answered" and sorted(view.answer) == [
            "animals",
            "countries",
            "fruits",
        ]


async def test_sub_agent_start_breakpoint_holds_them_in_the_tree(sessions_dir):
    run = Run(
        RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(subagent_start=True),
    )
    async with App(run).run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: len(screen(pilot).view.waiting_starts) == 3)
        tree = pilot.app.screen.query_one(AgentTree)

        def labels() -> list[str]:
            return [str(node.label) for node in tree.root.children[0].children]

        await until(
            pilot, lambda: len(labels()) == 3 and all("held at its start" in t for t in labels())
        )
        await pilot.press("s")  # one sub-agent starts
        await until(pilot, lambda: len(screen(pilot).view.waiting_starts) == 2)
        await pilot.press("space")  # and the rest
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.status == "answered"
        assert len(screen(pilot).view.agents) == 4


async def test_controls_on_a_saved_session_only_notify(sessions_dir):
    model = ScriptedModel({"q": [cell("print('hi')"), cell("FINAL('done')")]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    app = RlmApp(session=result.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: screen(pilot).view.finished)
        for key in ["space", "s", "e", "x", "i", "X", "b", "l"]:
            await pilot.press(key)
        await pilot.pause()
        assert isinstance(pilot.app.screen, RunScreen)  # no crash, no modal
        assert any("read-only" in n for n in notes(pilot.app))
        await pilot.press("A")
        await until(pilot, lambda: not isinstance(pilot.app.screen, RunScreen))
        assert pilot.app.screen.body == "done"


async def test_a_long_answer_opens_whole_and_scrolls_to_its_end_at_80x24(sessions_dir):
    from textual.containers import VerticalScroll

    answer = "\\n".join(f"line {n}" for n in range(200))
    model = ScriptedModel({"q": [cell(f"FINAL('{answer}')")]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    app = RlmApp(session=result.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: screen(pilot).view.finished)
        bar = [line for line in screen_lines(pilot.app) if "line 0" in line]
        assert len(bar) == 1 and "line 199" not in bar[0]  # one row of the screen
        await pilot.press("A")
        await until(pilot, lambda: not isinstance(pilot.app.screen, RunScreen))
        assert "line 199" not in "\n".join(screen_lines(pilot.app))
        await pilot.press("end")
        await pilot.pause(0.2)
        scroll = pilot.app.screen.query_one(VerticalScroll)
        assert scroll.max_scroll_y > 0 and scroll.scroll_y == scroll.max_scroll_y
        assert "line 199" in "\n".join(screen_lines(pilot.app))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))


async def test_help_lists_the_focused_panes_keys_and_the_palette_every_action(sessions_dir):
    from rlm_tui.tui.app import ActionCommands
    from rlm_tui.tui.modals import TextScreen

    model = ScriptedModel({"q": [cell("FINAL('done')")]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    app = RlmApp(session=result.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")  # the agents pane
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(pilot.app.screen, TextScreen))
        table = pilot.app.screen.body
        ids = [str(cell) for cell in table.columns[2]._cells]
        assert "tree.launch" in ids and "run.pause" in ids and "app.quit" in ids
        assert "cells.copy_code" not in ids  # another pane's keys
        await pilot.press("escape")
        run_screen = screen(pilot)
        provider = ActionCommands(run_screen)
        names = [hit.text for hit in [h async for h in provider.discover()]]
        for name in ["Pause/go", "Step", "Edit", "Skip", "Interrupt", "Stop run"]:
            assert name in names
        for name in ["Breakpoints", "Launch sub-agent", "Copy code", "Search", "Quit"]:
            assert name in names


async def test_launch_with_the_context_browsers_marked_lines_as_context(sessions_dir):
    model = ScriptedModel(
        {"q": [cell("x = 1"), cell("FINAL('x')")], "repeat": [cell("FINAL(context.upper())")]}
    )
    run = Run(
        RunConfig(
            query="q",
            context_file=str(Path(__file__).parent / "data" / "context.txt"),
            sessions_dir=sessions_dir,
        ),
        model=model,
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("3")  # the context pane: mark lines 2-3
        await pilot.press("down", "v", "down")
        selection = screen(pilot).launch_context()
        assert selection is not None and selection[1].startswith("HOST: Welcome back")
        await pilot.press("2", "l")
        await until(pilot, lambda: pilot.app.screen.query("#prompt"))
        assert pilot.app.screen.query_one("#use-selection").value
        pilot.app.screen.query_one("#prompt").value = "repeat it loudly"
        pilot.app.screen.query_one("#var").value = "loud"
        await pilot.click("#launch")
        await until(pilot, lambda: "0.1:1" in run.control.pending)
        run.step("0.1:1")
        await until(pilot, lambda: run.agents["0.1"].status == "answered")
        await until(pilot, lambda: any("loud" in n for n in run.agents["0"].notes))
        assert await kernel_print(run, "0", "loud == " + repr(selection[1].upper())) == "True"
        assert screen(pilot).view.agents["0.1"].by_hand
        run.stop()


async def test_a_remapped_key_drives_the_run(sessions_dir):
    model = ScriptedModel({"q": [cell("a = 1") + cell("b = a + 1"), cell("FINAL_VAR('b')")]})
    run = held_at_each_cell(model, sessions_dir)
    app = RlmApp(run=run, ui_config=UiConfig(keymap={"run.step": "n"}), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        # the footer shows the new key (once it has drawn the held run's keys: a loaded
        # machine draws it later than a fixed pause)
        await until(pilot, lambda: " n Step " in screen_lines(pilot.app)[-1])
        assert " s Step " not in screen_lines(pilot.app)[-1]
        await pilot.press("s")  # no longer the step key
        await pilot.pause(0.2)
        assert "0:1" in run.control.pending
        await pilot.press("n")
        await until(pilot, lambda: "0:2" in run.control.pending)
        assert screen(pilot).view.cells["0:1"].status == "ok"
        run.set_breakpoints(Breakpoints())
        await pilot.press("space")
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.answer == 2


async def test_concurrent_waits_are_listed_and_s_releases_the_selected_one(sessions_dir):
    """Three sub-agents each hold a cell at once: all are listed, the header counts them, and
    ``s`` releases the one selected in the list (not the oldest)."""
    run = Run(
        RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(160, 48)) as pilot:
        view = screen(pilot).view

        def subs() -> list[str]:
            return [g for g in view.waiting if g.startswith("0.")]

        def root() -> str | None:
            return next((g for g in view.waiting if g.startswith("0:")), None)

        for _ in range(20):  # step agent 0 until its three sub-agents hold their first cells
            await until(pilot, lambda: len(subs()) == 3 or root() is not None)
            gate = root()
            if gate is None:
                break
            screen(pilot).query_one(WaitList).select_gate(gate)
            await pilot.press("s")
            await until(pilot, lambda g=gate: g not in view.waiting)
        waiting = list(view.waiting)
        assert sorted(waiting) == ["0.1:1", "0.2:1", "0.3:1"]
        await pilot.press("]")  # the second one
        chosen = waiting[1]
        await until(pilot, lambda: screen(pilot).selected_gate == chosen)
        await until(
            pilot, lambda: f"cell {chosen}" in str(screen(pilot).query_one("#status").render())
        )
        status = str(screen(pilot).query_one("#status").render())
        assert "3 waiting" in status and f"cell {chosen}" in status
        assert screen(pilot).query_one("CellLog").current.cell_id == chosen
        await pilot.press("s")
        await until(pilot, lambda: chosen not in run.control.pending)
        assert all(g in run.control.pending for g in waiting if g != chosen)
        first, last = waiting[0], waiting[2]
        screen(pilot).query_one(WaitList).select_gate(last)  # the later one: x skips it
        await pilot.press("x")
        await until(pilot, lambda: view.cells[last].status == "skipped")
        assert first in run.control.pending
        screen(pilot).query_one(WaitList).select_gate(first)  # and e edits the selected one
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditCellScreen))
        assert pilot.app.screen.cell_id == first
        assert pilot.app.screen.query_one("TextArea").text == view.cells[first].code
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        assert first in run.control.pending and view.cells[first].status != "edited"
        run.set_breakpoints(Breakpoints())
        await pilot.press("space")
        await until(pilot, lambda: view.finished)
        assert view.status == "answered" and not view.waiting


async def test_a_held_sub_agent_start_shows_in_the_tree_with_its_prompt(sessions_dir):
    run = Run(
        RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(subagent_start=True),
    )
    async with App(run).run_test(size=(160, 48)) as pilot:
        view = screen(pilot).view
        await until(pilot, lambda: len(view.waiting) == 3)
        tree = pilot.app.screen.query_one(AgentTree)
        prompt = view.waiting["0.1"].what
        assert prompt
        await until(
            pilot, lambda: any(prompt[:20] in str(n.label) for n in tree.root.children[0].children)
        )

        def status() -> str:
            return str(screen(pilot).query_one("#status").render())

        await until(pilot, lambda: "3 waiting ▸ start of agent 0.1" in status())
        await pilot.press("x")  # skip the selected start
        await until(pilot, lambda: "0.1" not in view.waiting)
        await until(pilot, lambda: len(tree.root.children[0].children) == 2)
        assert "0.1" not in view.agents
        await until(pilot, lambda: "2 waiting" in str(screen(pilot).query_one("#status").render()))
        run.stop()
        await until(pilot, lambda: view.finished)
        assert not view.waiting


async def test_stop_asks_first_and_the_cut_cell_shows_stopped(sessions_dir):
    model = ScriptedModel({"q": [cell("import time\ntime.sleep(30)"), cell("FINAL('x')")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    async with App(run).run_test(size=(80, 24)) as pilot:
        view = screen(pilot).view
        await until(pilot, lambda: "0:1" in view.cells and view.cells["0:1"].status == "running")
        await pilot.press("X")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause(0.2)
        assert isinstance(pilot.app.screen, RunScreen) and run.result is None
        await pilot.press("X")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: view.finished)
        assert view.status == "stopped" and view.cells["0:1"].status == "stopped"
        await until(pilot, lambda: "stopped" in str(screen(pilot).query_one("#status").render()))
        answer = str(screen(pilot).query_one("#answer").render())
        assert answer.startswith("■ stopped")


async def test_quit_asks_while_the_run_is_live(sessions_dir):
    run = Run(
        RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        # framed in the middle, the whole question on its lines (it was cut on one line)
        dialog = pilot.app.screen.query_one("ConfirmScreen > Vertical")
        assert dialog.region.x > 0 and dialog.region.right < 80 and dialog.region.y > 0
        question = pilot.app.screen.query_one(".title")
        assert question.size.height == 2 and question.size.width <= dialog.region.width
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert isinstance(pilot.app.screen, RunScreen) and pilot.app.is_running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not pilot.app.is_running)
    assert run.result is not None and run.result.status == "stopped"


async def test_a_resumed_run_replaces_the_stopped_bar_and_shows_each_cell_once(sessions_dir):
    from rlm_tui.engine.resume import resume_run

    run = Run(
        RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "0:1" in run.control.pending)
        await pilot.press("s")
        await until(pilot, lambda: "0:2" in run.control.pending)
        run.stop()
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.cells["0:2"].status == "cancelled"
    assert run.session_dir is not None
    resumed = resume_run(run.session_dir)
    async with App(resumed).run_test(size=(80, 24)) as pilot:
        view = screen(pilot).view
        await until(pilot, lambda: view.run_id and not view.finished or view.status == "answered")
        assert "■ stopped" not in str(screen(pilot).query_one("#answer").render())
        await until(pilot, lambda: view.finished)
        await pilot.pause(0.2)
        assert view.status == "answered" and view.cell_order.count("0:2") == 1
        assert view.cells["0:2"].status == "ok"
        assert str(screen(pilot).query_one("#answer").render()).startswith("✔ answer")


async def test_fork_diff_shows_both_branches_from_the_fork_point(sessions_dir):
    from rlm_tui.engine.resume import fork_run
    from rlm_tui.tui.modals import TextScreen

    original = await Run(RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir)).execute()
    fork = fork_run(original.session_dir, "0:1", code="names = ['Rare Berry', 'Fig']")
    forked = await fork.execute()
    assert fork.session_dir is not None
    app = RlmApp(session=fork.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: screen(pilot).view.finished)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(pilot.app.screen, TextScreen))
        table = pilot.app.screen.body.renderables[1]
        rows = [str(c) for c in table.columns[0]._cells]
        assert rows[0] == "0:1" and rows[-2:] == ["answer", "cost"]
        originals = [str(c) for c in table.columns[1]._cells]
        forks = [str(c) for c in table.columns[2]._cells]
        assert "Rare Berry" in forks[0] and "Rare Berry" not in originals[0]
        assert forks[-2] == '{"Rare Berry": 4, "Fig": 0}' and originals[-2] != forks[-2]
        # each cell's output under its code; each branch's cost as its run counted it
        assert originals[0].endswith("50 names, 50 distinct") and forks[0].startswith("edited")
        assert originals[1].endswith("46 R's in total") and forks[1].endswith("4 R's in total")
        for shown, usage in [(originals[-1], original.usage), (forks[-1], forked.usage)]:
            assert shown == f"${usage.cost:.4f} · {usage.total_tokens:,} tok"


async def test_a_resumed_run_shows_the_recorded_cell_it_runs_again(sessions_dir):
    """The status line and the cell's header say which recorded cell runs again, from the
    run's cell_rerun events; then the run goes on live and answers."""
    from rlm_tui.engine.budget import Limits
    from rlm_tui.engine.resume import resume_run

    steps = [cell("import time\ntime.sleep(1.5)\na = 7"), cell("FINAL(a)")]
    config = RunConfig(
        query="q", sessions_dir=sessions_dir, limits=Limits(max_calls=1), on_budget="stop"
    )
    stopped = await Run(config, model=ScriptedModel({"q": steps})).execute()
    assert stopped.status == "budget"
    run = resume_run(
        stopped.session_dir, live_model=ScriptedModel({"q": steps}), limits=Limits(max_calls=5)
    )
    async with App(run).run_test(size=(120, 40)) as pilot:
        status = pilot.app.screen.query_one("#status")
        await until(pilot, lambda: "re-running recorded cells (0:1)" in str(status.render()))
        log = screen(pilot).query_one("CellLog")
        shown = lambda: "".join(log.render_line(y).text for y in range(log.size.height))  # noqa: E731
        await until(pilot, lambda: "re-running to rebuild the kernel" in shown())
        await until(pilot, lambda: screen(pilot).view.finished)
        assert screen(pilot).view.answer == 7
        await pilot.pause(0.2)
        assert "re-running" not in shown() and "re-running" not in str(status.render())


async def test_fork_at_a_hand_launched_agents_cell_holds_there_and_keeps_its_variable(
    sessions_dir,
):
    """F on a cell of a sub-agent launched by hand: the fork launches it again and holds at
    that cell (the one s and e act on); its answer is bound in the parent, which prints it."""
    from scripted import ZOO_SCRIPTS, run_with_a_hand_launch

    original = await run_with_a_hand_launch(sessions_dir)
    app = RlmApp(session=original.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        log = screen(pilot).query_one("CellLog")
        await until(pilot, lambda: any(c.cell_id == "0.1:1" for c in log.cells))
        log.select_cell("0.1:1")
        await pilot.press("F")
        await until(pilot, lambda: screen(pilot).run is not None)
        assert "forked at cell 0.1:1" in " ".join(notes(pilot.app))
        fork = screen(pilot).run
        fork.models.model = fork.models.sub_model = ScriptedModel(ZOO_SCRIPTS)
        await until(pilot, lambda: "0.1:1" in fork.control.pending)
        await until(pilot, lambda: screen(pilot).selected_gate == "0.1:1")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditCellScreen))
        assert pilot.app.screen.cell_id == "0.1:1"
        pilot.app.screen.query_one("TextArea").text = "zoo = {'tiger': 1}\nFINAL(zoo)"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        await pilot.press("s")
        await until(pilot, lambda: screen(pilot).view.agents["0.1"].status == "answered")
        fork.set_breakpoints(Breakpoints())
        await pilot.press("space")
        await until(pilot, lambda: screen(pilot).view.finished)
        view = screen(pilot).view
        assert view.answer == {"tiger": 1}
        assert view.cells["0:2"].output == "['tiger']\n"


async def test_the_agents_clocks_and_the_runs_move_in_different_frames(sessions_dir):
    """Each tick moves one of them: the tree's running agents, or the budget pane."""
    run = Run(
        RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir, demo_delay=0.5),
        breakpoints=Breakpoints(every_cell=True),
    )
    async with App(run).run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: bool(screen(pilot).view.waiting))  # held at its first cell
        shown = screen(pilot)
        assert shown._clock is not None
        shown._clock.pause()  # the ticks below are the only ones
        kinds = []
        for _ in range(4):
            await pilot.pause()
            shown._tick()
            changes = shown._changes
            kinds.append((bool(changes.agents), changes.budget))
        assert sorted(set(kinds)) == [(False, True), (True, False)]
        assert kinds[0] != kinds[1] and kinds[1] != kinds[2]
        run.stop()


async def test_the_app_ending_while_the_run_screen_mounts_ends_cleanly(sessions_dir):
    app = RlmApp(
        config=RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        ui_config=UiConfig(),
        watch=False,
    )
    async with app.run_test(size=(80, 24)):
        while not isinstance(app.screen, RunScreen):
            await asyncio.sleep(0)
        app.exit()  # before the screen's Mount is handled: its panes go first
    assert app.return_code == 0


@pytest.mark.parametrize(
    ("size", "keys"),
    [
        ((80, 24), "n Next match / Search g Go to line space Pause/go s Step e Edit"),
        (
            (160, 48),
            "n Next match / Search g Go to line space Pause/go s Step e Edit x Skip f2 Home f1 Help",
        ),
    ],
)
async def test_the_context_panes_footer_shows_whole_keys_and_the_palette(sessions_dir, size, keys):
    """The keys that do not fit are left out whole: none is cut under the palette key, and no
    letter of one shows past it at the right edge."""
    app = RlmApp(
        config=RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        ui_config=UiConfig(),
        watch=False,
    )
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        await until(pilot, lambda: screen(pilot).view.finished)
        await pilot.press("3")
        await until(pilot, lambda: "Search" in screen_lines(app)[-1])
        shown, palette = screen_lines(app)[-1].split("▏")
        assert shown.split() == keys.split()
        assert palette.rstrip() == "^p palette"


async def test_a_cells_escape_codes_are_drawn_not_sent_to_the_terminal(sessions_dir):
    code = r"print('\x1b]0;TITLE\x07\x1b]52;c;Y3VybCBldmlsIHwgc2gK\x07 \x1b[2K\x1b[31mRED')"
    model = ScriptedModel({"q": [cell(code), cell("FINAL('\\x1b]0;ANSWER\\x07')")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    async with App(run).run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: screen(pilot).view.finished)
        await pilot.pause(0.2)
        lines = screen_lines(pilot.app)
        assert not any("\x1b" in line or "\x07" in line for line in lines)
        assert any("␛]0;TITLE" in line and "␛[31mRED" in line for line in lines)


async def test_coverage_counts_every_cells_output_and_a_big_context_loads_off_the_ui_thread(
    sessions_dir, tmp_path, monkeypatch
):
    """Two cells of one agent print two lines of a 2 MB context: both are marked seen, and the
    context's loading and matching ran in worker threads, not on the app's."""
    import threading

    from rlm_tui.tui import run_screen
    from rlm_tui.tui.context_view import ContextBrowser

    lines = [f"line {n:06d} of the big context, long enough to be matched" for n in range(32_000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines))
    threads: dict[str, set[str]] = {"read_context": set(), "_match": set()}
    for name in threads:
        real = getattr(run_screen, name)

        def seen_in(*args, real=real, name=name):  # type: ignore[no-untyped-def]
            threads[name].add(threading.current_thread().name)
            return real(*args)

        monkeypatch.setattr(run_screen, name, seen_in)
    model = ScriptedModel(
        {
            "q": [cell("print(context.splitlines()[10])"), cell("print(context.splitlines()[-10])")]
            + [cell("FINAL(1)")]
        }
    )
    config = RunConfig(query="q", context_file=str(path), sessions_dir=sessions_dir)
    async with App(Run(config, model=model)).run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: screen(pilot).view.finished)
        browser = screen(pilot).query_one(ContextBrowser)
        text = browser.text_view.text
        await until(pilot, lambda: browser.text_view.coverage.total >= 2 * len(lines[0]))
        covered = [text[a:b] for a, b in browser.text_view.coverage.ranges]
        assert any(lines[10] in part for part in covered)
        assert any(lines[-10] in part for part in covered)
        assert browser.coverage_share < 0.01
    main = threading.main_thread().name
    assert threads["read_context"] and main not in threads["read_context"]
    assert threads["_match"] and main not in threads["_match"]


async def test_help_at_80_columns_shows_every_id_whole_and_no_undescribed_key(sessions_dir):
    from rich.console import Console

    from rlm_tui.tui.modals import TextScreen

    model = ScriptedModel({"q": [cell("FINAL('done')")]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    app = RlmApp(session=result.session_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "f1")  # the agents pane: its ids are the longest
        await until(pilot, lambda: isinstance(pilot.app.screen, TextScreen))
        table = pilot.app.screen.body
        width = pilot.app.screen.query_one("VerticalScroll").scrollable_content_region.width
    actions = [str(c) for c in table.columns[1]._cells]
    ids = [str(c) for c in table.columns[2]._cells if str(c)]
    assert "help_quit" not in actions and "tree.previous_sibling" in ids
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    drawn = console.export_text()
    assert "…" not in drawn
    joined = "".join(line.split()[-1] for line in drawn.splitlines() if line.split())
    for binding_id in ids:
        assert binding_id in joined
