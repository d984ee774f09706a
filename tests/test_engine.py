"""The engine on real kernels: the demo problems, control, sub-agents, budgets, kernel faults."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from conftest import FRUITS_QUERY, NESTED_QUERY, cli
from scripted import ScriptedModel, cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import (
    AgentStarted,
    CellFinished,
    CellPaused,
    CellStarted,
    KernelEvent,
    ModelRequest,
)
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


def _check_r_counts(mapping: dict[str, int]) -> None:
    assert len(mapping) == 50
    for name, count in mapping.items():
        assert count == name.lower().count("r"), name


def test_nested_demo_problem_from_the_cli(sessions_dir: Path) -> None:
    done = cli(
        "run", "--model", "demo", "--json", "--sessions-dir", str(sessions_dir), NESTED_QUERY
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    answer = out["answer"]
    assert sorted(answer) == ["animals", "countries", "fruits"]
    for mapping in answer.values():
        _check_r_counts(mapping)
    events = read_session(Path(out["session"])).events
    children = [e for e in events if isinstance(e, AgentStarted) and e.depth == 1]
    assert [(c.agent_id, c.parent_id) for c in children] == [
        ("0.1", "0"),
        ("0.2", "0"),
        ("0.3", "0"),
    ]
    kernels = {
        e.agent_id: e.kernel_id
        for e in events
        if isinstance(e, KernelEvent) and e.what == "started"
    }
    assert len(set(kernels.values())) == 4, "each agent runs on a kernel of its own"
    assert "offline demo model" in done.stderr


def test_fruits_demo_problem(sessions_dir: Path) -> None:
    result = asyncio.run(Run(RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir)).execute())
    assert result.status == "answered"
    _check_r_counts(result.answer)


async def test_other_queries_explore_the_context_and_say_a_real_model_is_needed(
    sessions_dir: Path,
) -> None:
    context = "alpha beta gamma\n" * 100
    config = RunConfig(query="Who wins?", context_value=context, sessions_dir=sessions_dir)
    result = await Run(config).execute()
    assert result.status == "answered"
    assert "1,700 characters" in result.answer
    assert "needs a real model" in result.answer


async def _first(run: Run, kind: type, timeout: float = 30.0):
    """Wait for the first event of a kind."""
    found: asyncio.Future = asyncio.get_running_loop().create_future()

    def watch(event):
        if isinstance(event, kind) and not found.done():
            found.set_result(event)

    unsubscribe = run.subscribe(watch)
    try:
        return await asyncio.wait_for(found, timeout)
    finally:
        unsubscribe()


async def test_pause_replace_resume_runs_the_replaced_code(sessions_dir: Path, start_run) -> None:
    run = Run(
        RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(every_cell=True),
    )
    await start_run(run)
    paused = await _first(run, CellPaused)
    assert paused.cell_id == "0:1"
    run.replace_cell("0:1", "names = ['Rare Berry', 'Fig']")
    run.set_breakpoints(Breakpoints())
    run.resume()
    result = await run.wait()
    assert result.answer == {"Rare Berry": 4, "Fig": 0}


async def test_skip_and_step(sessions_dir: Path, start_run) -> None:
    model = ScriptedModel(
        {
            "q": [
                cell("a = 1") + "\n" + cell("a = 2") + "\n" + cell("b = a * 10"),
                cell("FINAL_VAR('b')"),
            ]
        }
    )
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    run.pause()
    await start_run(run)
    await _first(run, CellPaused)
    second = asyncio.ensure_future(_first(run, CellPaused))  # the next one to stop
    run.step()  # a = 1 runs (once the kernel, prepared meanwhile, is ready)
    assert (await second).cell_id == "0:2"
    assert "0:2" in run.control.pending
    run.skip_cell("0:2")  # a = 2 never runs
    run.resume()
    result = await run.wait()
    assert result.answer == 10


async def test_launch_subagent_by_hand_binds_its_answer(sessions_dir: Path, start_run) -> None:
    run = Run(
        RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir),
        breakpoints=Breakpoints(every_cell=True),
    )
    await start_run(run)
    await _first(run, CellPaused)
    task = run.launch_subagent(
        "0",
        "Generate 50 names of animals and count the number of R in each, return a dictionary",
        var="zoo",
    )
    # step through the child's cells while the root stays held at its first cell
    for _ in range(200):
        if task.done():
            break
        for gate_id in list(run.control.pending):
            if gate_id != "0:1":
                run.step(gate_id)
        await asyncio.sleep(0.05)
    await asyncio.wait_for(task, 30)
    run.set_breakpoints(Breakpoints())
    run.replace_cell("0:1", "names = list(zoo)")
    run.resume()
    result = await run.wait()
    _check_r_counts(result.answer)
    assert "Zebra" in result.answer
    starts = [e for e in read_session(result.session_dir).events if isinstance(e, AgentStarted)]
    assert any(e.by_hand and e.bind_var == "zoo" and e.parent_id == "0" for e in starts)


async def test_interrupt_a_long_cell(sessions_dir: Path, start_run) -> None:
    model = ScriptedModel({"q": [cell("import time\ntime.sleep(60)"), cell("FINAL('went on')")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    await start_run(run)
    await _first(run, CellStarted)
    await asyncio.sleep(0.3)
    await run.interrupt("0")
    finished = await _first(run, CellFinished)
    assert finished.status == "interrupted"
    assert (await run.wait()).answer == "went on"


async def test_sub_agents_two_levels_deep_return_python_values(sessions_dir: Path) -> None:
    model = ScriptedModel(
        {
            "top": [
                cell("r = rlm_query('middle', context=[1, 2, 3])\nprint(type(r), r)"),
                cell("FINAL_VAR('r')"),
            ],
            "middle": [
                cell(
                    "inner = rlm_query('leaf', context={'n': sum(context)})\nFINAL({'inner': inner, 't': (1, 2)})"
                )
            ],
            "leaf": [cell("FINAL_VAR(context)")],
        }
    )
    config = RunConfig(query="top", sessions_dir=sessions_dir)
    result = await Run(config, model=model).execute()
    assert result.status == "answered"
    assert result.answer == {"inner": {"n": 6}, "t": [1, 2]} or "inner" in result.value.repr
    events = read_session(result.session_dir).events
    depths = {e.agent_id: e.depth for e in events if isinstance(e, AgentStarted)}
    assert depths == {"0": 0, "0.1": 1, "0.1.1": 2}
    # the first cell printed a tuple inside a dict: the value crossed kernels as a Python object
    first = next(e for e in events if isinstance(e, CellFinished) and e.cell_id == "0:1")
    assert "<class 'dict'>" in first.output and "(1, 2)" in first.output


async def test_output_is_truncated_for_the_model_but_kept_whole(sessions_dir: Path) -> None:
    model = ScriptedModel({"q": [cell("print('x' * 100_000)"), cell("FINAL(1)")]})
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir, truncate=2000), model=model)
    result = await run.execute()
    assert result.answer == 1
    second_request = model.seen[1][1]
    feedback = second_request[-1]["content"]
    assert "x" * 2000 in feedback and "x" * 2001 not in feedback
    assert "98,001 of 100,001 characters cut" in feedback
    finished = next(
        e for e in read_session(result.session_dir).events if isinstance(e, CellFinished)
    )
    assert len(finished.output) == 100_001


async def test_kernel_killed_mid_cell_is_reported_and_the_run_goes_on(
    sessions_dir: Path, start_run
) -> None:
    model = ScriptedModel(
        {
            "q": [
                cell("x = 5\nimport time\ntime.sleep(60)"),
                cell("print('x' in globals())\nFINAL('alive')"),
            ]
        }
    )
    run = Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model)
    await start_run(run)
    await _first(run, CellStarted)
    await asyncio.sleep(0.3)
    os.kill(run.agents["0"].kernel.pid, signal.SIGKILL)
    finished = await _first(run, CellFinished)
    assert finished.status == "killed"
    assert "signal 9" in (finished.error or "")
    result = await run.wait()
    assert result.answer == "alive"
    died = [
        e
        for e in read_session(result.session_dir).events
        if isinstance(e, KernelEvent) and e.what == "died"
    ]
    assert len(died) == 1


async def test_a_cell_that_never_ends_times_out(sessions_dir: Path) -> None:
    model = ScriptedModel({"q": [cell("while True: pass"), cell("FINAL('after')")]})
    config = RunConfig(query="q", sessions_dir=sessions_dir, cell_timeout=1.0)
    result = await Run(config, model=model).execute()
    assert result.answer == "after"
    finished = next(
        e for e in read_session(result.session_dir).events if isinstance(e, CellFinished)
    )
    assert finished.status == "timeout"


@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        (Limits(max_calls=2), "calls"),
        (Limits(max_iterations=1), "iterations"),
        (Limits(max_depth=0), "depth"),
        (Limits(max_prompt_tokens=500), "prompt_tokens"),
        (Limits(max_completion_tokens=100), "completion_tokens"),
    ],
)
async def test_budget_stops(sessions_dir: Path, limits: Limits, limit: str) -> None:
    config = RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir, limits=limits)
    result = await Run(config).execute()
    assert result.status == "budget"
    assert result.exit_code == 3
    events = read_session(result.session_dir).events
    stop = next(e for e in events if e.type == "budget_stop")
    assert stop.limit == limit
    requests = [e for e in events if isinstance(e, ModelRequest)]
    if limits.max_calls is not None:
        assert len(requests) == limits.max_calls


async def test_time_budget(sessions_dir: Path) -> None:
    model = ScriptedModel({"q": [cell("import time\ntime.sleep(30)")]})
    config = RunConfig(query="q", sessions_dir=sessions_dir, limits=Limits(max_time=1.0))
    result = await Run(config, model=model).execute()
    assert result.status == "budget"
    assert "time limit 1 s reached (0.25 s of it kept to extract an answer)" in result.reason
    assert result.elapsed < 10


async def test_time_waiting_on_a_person_is_not_spent(sessions_dir: Path, start_run) -> None:
    model = ScriptedModel({"q": [cell("x = 1"), cell("FINAL(x)")]})
    config = RunConfig(query="q", sessions_dir=sessions_dir, limits=Limits(max_time=2.0))
    run = Run(config, model=model, breakpoints=Breakpoints(every_cell=True))
    await start_run(run)
    await _first(run, CellPaused)
    await asyncio.sleep(3.0)  # a person reads the cell, longer than the whole limit
    assert run.budget.elapsed < 1.5
    run.set_breakpoints(Breakpoints())
    run.resume()
    result = await run.wait()
    assert result.status == "answered", result.reason
    assert result.answer == 1


def test_bad_input_gets_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = [
        ("run", "--context-file", str(tmp_path / "missing.txt"), "q"),
        ("run", "--context-file", "/proc/self/mem", "q"),
        ("run", "--max-calls", "many", "q"),
        ("run", "--no-such-flag", "q"),
    ]
    for args in cases:
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, (args, done.stderr)
        assert lines[0].startswith("rlm-tui")


def test_context_from_stdin(sessions_dir: Path) -> None:
    done = cli(
        "run",
        "--json",
        "--sessions-dir",
        str(sessions_dir),
        "-c",
        "-",
        "Summarise",
        stdin="one two three\n",
    )
    assert done.returncode == 0, done.stderr
    assert "14 characters" in json.loads(done.stdout)["answer"]


def test_python_api_returns_answer_usage_cost_and_session(sessions_dir: Path) -> None:
    import rlm_tui

    result = rlm_tui.run(FRUITS_QUERY, sessions_dir=sessions_dir)
    _check_r_counts(result.answer)
    assert result.usage.calls == 2 and result.cost == 0.0
    assert (result.session_dir / "events.jsonl").is_file()
    other = rlm_tui.run("Summarise", context={"notes": ["a", "b"]}, sessions_dir=sessions_dir)
    assert "needs a real model" in other.answer
