"""Resume without re-spending, fork from a cell, survive a killed CLI, list sessions."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import start_cli_run, wait_for_session_text
from openai_server import OpenAIServer, Reply
from scripted import cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.resume import fork_run, resume_run
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import SessionError, UsageError
from rlm_tui.events import BudgetUpdate, CellFinished, RunFinished, RunStarted
from rlm_tui.session.catalog import list_sessions
from rlm_tui.session.store import EVENTS_FILE, read_session

pytestmark = pytest.mark.timeout(120)

STEPS = [
    cell("a = len(context)\nprint(a)"),
    cell("b = a + llm_query('one more?').count('y')\nprint(b)"),
    cell("c = b * 10\nprint(c)"),
    cell("FINAL_VAR('c')"),
]


def step_of(request: dict) -> int:
    return sum(1 for m in request["messages"] if m["role"] == "assistant")


def responder(request: dict) -> Reply:
    if len(request["messages"]) == 1:
        return Reply(text="yes")
    return Reply(text=STEPS[min(step_of(request), len(STEPS) - 1)])


def config(server: OpenAIServer, sessions_dir: Path, **kwargs) -> RunConfig:
    return RunConfig(
        query="q",
        context_value="abcd",
        model="openai/test",
        api_base=server.base_url,
        sessions_dir=sessions_dir,
        **kwargs,
    )


def digest(path: Path) -> str:
    return hashlib.sha256((path / "events.jsonl").read_bytes()).hexdigest()


@pytest.fixture
def server():
    with OpenAIServer() as s:
        s.script(responder)
        yield s


async def test_resume_after_a_budget_stop_spends_nothing_twice(server, sessions_dir):
    limits = Limits(max_calls=3)
    stopped = await Run(config(server, sessions_dir, limits=limits, on_budget="stop")).execute()
    assert stopped.status == "budget"
    paid = len(server.requests)
    assert paid == 3  # steps 1 and 2, and step 2's llm_query
    resumed = await resume_run(stopped.session_dir, limits=Limits(max_calls=10)).execute()
    assert resumed.status == "answered"
    assert resumed.answer == (4 + 1) * 10  # a and b came from re-run cells in a new kernel
    new = server.requests[paid:]
    assert len(new) == 2, "only steps 3 and 4 reached the server"
    assert all("c = b * 10" not in str(r["messages"][-2:]) or len(r["messages"]) > 4 for r in new)
    assert resumed.usage.calls == 5
    events = read_session(stopped.session_dir).events
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["budget", "answered"]
    cell_ids = [e.cell_id for e in events if isinstance(e, CellFinished)]
    assert cell_ids == ["0:1", "0:2", "0:3", "0:4"], "recorded cells are not recorded twice"


async def test_a_resumed_run_counts_its_past_seconds_against_the_time_limit(server, sessions_dir):
    """As it counts the past's calls: the budget's time goes on from where it stopped."""
    stopped = await Run(
        config(server, sessions_dir, limits=Limits(max_calls=3), on_budget="stop")
    ).execute()
    past = stopped.elapsed
    tight = resume_run(stopped.session_dir, limits=Limits(max_calls=10, max_time=past / 2))
    assert (await tight.execute()).status == "budget"  # half the time: spent already
    wide = Limits(max_calls=10, max_time=600)
    resumed = await resume_run(stopped.session_dir, limits=wide).execute()
    assert resumed.status == "answered" and resumed.elapsed > past, resumed.reason
    events = read_session(stopped.session_dir).events
    resumed_at = [e.seq for e in events if isinstance(e, RunStarted)][-1]
    updates = [e for e in events if isinstance(e, BudgetUpdate) and e.seq > resumed_at]
    assert updates and all(u.elapsed >= past for u in updates)


async def test_a_resumed_run_does_not_count_its_re_run_cells_twice(sessions_dir):
    """A recorded cell's seconds counted when it first ran: its re-run stops the clock."""
    slow = [cell("import time\ntime.sleep(2)\na = 7"), cell("FINAL(a)")]
    with OpenAIServer() as server:
        server.script(lambda r: Reply(text=slow[min(step_of(r), 1)]))
        limits = Limits(max_calls=1)
        stopped = await Run(config(server, sessions_dir, limits=limits, on_budget="stop")).execute()
        assert stopped.status == "budget" and stopped.elapsed >= 2
        resumed = await resume_run(stopped.session_dir, limits=Limits(max_calls=5)).execute()
    assert resumed.answer == 7  # ``a`` came from the slow cell, run again
    assert resumed.elapsed - stopped.elapsed < 2, "the re-run's 2 s counted again"


async def test_fork_from_cell_2_with_an_edited_cell_diverges(server, sessions_dir):
    original = await Run(config(server, sessions_dir)).execute()
    assert original.answer == 50
    before = digest(original.session_dir)
    paid = len(server.requests)
    fork = fork_run(original.session_dir, "0:2", code="b = 100")
    forked = await fork.execute()
    assert forked.answer == 1000
    assert forked.session_dir != original.session_dir
    assert digest(original.session_dir) == before
    assert len(server.requests) - paid == 2  # steps 3 and 4 only
    with pytest.raises(SessionError, match="no cell 9:9"):
        fork_run(original.session_dir, "9:9")
    with pytest.raises(SessionError, match="already answered"):
        resume_run(original.session_dir)


async def test_a_fork_is_listed_as_started_when_it_was_forked(server, sessions_dir):
    original = await Run(config(server, sessions_dir)).execute()
    events_file = original.session_dir / EVENTS_FILE
    lines = events_file.read_text().splitlines()
    first = json.loads(lines[0])
    first["t"] -= 3600  # the original ran an hour ago
    events_file.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    forked = await fork_run(original.session_dir, "0:2").execute()
    fork_start = next(
        e
        for e in read_session(forked.session_dir).events
        if isinstance(e, RunStarted) and e.forked_from
    )
    listed = {s.path: s.started for s in list_sessions(sessions_dir)}
    assert listed[str(original.session_dir)] == isoformat(first["t"])
    assert listed[str(forked.session_dir)] == isoformat(fork_start.t) != isoformat(first["t"])


def isoformat(t: float) -> str:
    return datetime.fromtimestamp(t).isoformat(timespec="seconds")


async def test_a_fork_that_cannot_start_leaves_no_session(server, sessions_dir):
    original = await Run(config(server, sessions_dir)).execute()
    with pytest.raises(UsageError, match="--truncate 50"):
        fork_run(original.session_dir, "0:2", truncate=50)
    assert list(sessions_dir.iterdir()) == [original.session_dir]


async def test_a_relative_sessions_dir_is_recorded_whole(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = await Run(config(server, Path("rel"))).execute()
    started = read_session(tmp_path / "rel" / result.session_dir.name).events[0]
    assert started.session_dir == str(tmp_path / "rel" / result.session_dir.name)


def test_a_killed_cli_run_resumes(server, sessions_dir, tmp_path):
    flag = tmp_path / "go"
    step_2 = (
        f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
        "b = a + llm_query('one more?').count('y')\nprint(b)"
    )

    def slow_step_2(request: dict) -> Reply:
        if sum(1 for m in request["messages"] if m["role"] == "assistant") == 1:
            return Reply(text=cell(step_2))
        return responder(request)

    server.script(slow_step_2)
    # the cell waits for a file of the test's: readable in the sandbox, also once resumed
    process = start_cli_run(
        server.base_url, sessions_dir, "--allow-read", str(tmp_path), "-c", "-", "q"
    )
    process.stdin.write("abcd")
    process.stdin.close()
    session = wait_for_session_text(sessions_dir, '"cell_id":"0:2","code"')
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    flag.touch()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "resume",
            session.name,
            "--sessions-dir",
            str(sessions_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == 50
    events = read_session(session).events
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["answered"]
    time.sleep(1.5)  # orphaned kernels notice their parent is gone within a second


def test_sessions_json_lists_every_field(server, sessions_dir):
    subprocess.run(
        [sys.executable, "-m", "rlm_tui", "run", "--sessions-dir", str(sessions_dir), "hello"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "sessions",
            "--json",
            "--sessions-dir",
            str(sessions_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    entry = json.loads(done.stdout.splitlines()[0])
    assert set(entry) == {
        "id",
        "path",
        "query",
        "model",
        "status",
        "started",
        "agents",
        "cells",
        "tokens",
        "cost",
    }
    assert entry["query"] == "hello" and entry["status"] == "answered" and entry["agents"] == 1


async def test_forks_at_cells_around_a_hand_launched_agent_keep_its_bound_variable(sessions_dir):
    """The root waits at 0:1 while a person launches 0.1 (bound as ``zoo``). A fork at 0.1's
    cell launches 0.1 again there and holds at that cell; a fork after the answer binds the
    recorded answer; in both a later root cell prints ``zoo``."""
    from scripted import ZOO_SCRIPTS, ScriptedModel, run_with_a_hand_launch, until_true

    from rlm_tui.engine.control import Breakpoints
    from rlm_tui.events import AgentLaunched

    hold = Breakpoints(every_cell=True)
    original = await run_with_a_hand_launch(sessions_dir)
    assert original.answer == {"lion": 0}
    events = read_session(original.session_dir).events
    [launch] = [e for e in events if isinstance(e, AgentLaunched)]
    assert (launch.child_agent_id, launch.bind_var, launch.prompt) == ("0.1", "zoo", "make a zoo")

    fork = fork_run(original.session_dir, "0.1:1", breakpoints=hold)
    fork.models.model = fork.models.sub_model = ScriptedModel(ZOO_SCRIPTS)
    await fork.start()
    await until_true(lambda: "0.1:1" in fork.control.pending)
    assert fork.agents["0.1"].by_hand and fork.agents["0.1"].bind_var == "zoo"
    fork.replace_cell("0.1:1", "zoo = {'tiger': 1}\nFINAL(zoo)")
    fork.step("0.1:1")
    await until_true(lambda: fork.agents["0.1"].status == "answered")
    fork.set_breakpoints(Breakpoints())
    fork.resume()
    forked = await fork.wait()
    assert forked.answer == {"tiger": 1}
    printed = [
        e.output
        for e in read_session(forked.session_dir).events
        if isinstance(e, CellFinished) and e.cell_id == "0:2"
    ]
    assert printed == ["['tiger']\n"]

    later = fork_run(original.session_dir, "0:2", breakpoints=hold)
    later.models.model = later.models.sub_model = ScriptedModel(ZOO_SCRIPTS)
    await later.start()
    await until_true(lambda: bool(later.control.pending))
    assert list(later.control.pending) == ["0:2"]
    later.set_breakpoints(Breakpoints())
    later.resume()
    again = await later.wait()
    assert again.answer == {"lion": 0}
    assert "0.1" not in later.agents, "the recorded answer is bound, not asked again"


async def test_a_resume_says_which_recorded_cells_it_runs_again(sessions_dir):
    from scripted import ScriptedModel

    from rlm_tui.events import CellRerunFinished, CellRerunStarted
    from rlm_tui.session.projection import fold

    steps = [cell("a = 1"), cell("b = a + 1\nprint(b)"), cell("FINAL_VAR('b')")]
    stopped = await Run(
        RunConfig(
            query="q", sessions_dir=sessions_dir, limits=Limits(max_calls=2), on_budget="stop"
        ),
        model=ScriptedModel({"q": steps}),
    ).execute()
    assert stopped.status == "budget"
    run = resume_run(
        stopped.session_dir, live_model=ScriptedModel({"q": steps}), limits=Limits(max_calls=9)
    )
    resumed = await run.execute()
    assert resumed.answer == 2
    events = read_session(stopped.session_dir).events
    reruns = [e for e in events if isinstance(e, CellRerunStarted | CellRerunFinished)]
    assert [(type(e).__name__, e.cell_id) for e in reruns] == [
        ("CellRerunStarted", "0:1"),
        ("CellRerunFinished", "0:1"),
        ("CellRerunStarted", "0:2"),
        ("CellRerunFinished", "0:2"),
    ]
    assert reruns[2].code == "b = a + 1\nprint(b)" and reruns[3].status == "ok"
    view = fold(events)
    assert not view.rerun_cells and not any(c.rerunning for c in view.cells.values())
    cut = fold(events[: events.index(reruns[2]) + 1])  # while 0:2 ran again
    assert cut.rerun_cells == ["0:2"] and cut.cells["0:2"].rerunning
    assert cut.cells["0:2"].status == "ok", "the recorded outcome stands"


async def test_a_resume_serves_a_recorded_compaction_instead_of_asking_again(sessions_dir):
    from scripted import ScriptedModel

    from rlm_tui.events import HistoryCompacted

    steps = [cell(f"p{i} = 'x' * 900\nprint(p{i})") for i in range(1, 5)]
    steps.append(cell("FINAL(len(p1) + len(p4))"))
    stopped = await Run(
        RunConfig(
            query="q",
            sessions_dir=sessions_dir,
            compact_at=700,
            limits=Limits(max_calls=5),
            on_budget="stop",
        ),
        model=ScriptedModel({"q": steps}),
    ).execute()
    assert stopped.status == "budget"
    live = ScriptedModel({"q": steps})
    resumed = await resume_run(
        stopped.session_dir, live_model=live, limits=Limits(max_calls=20)
    ).execute()
    assert resumed.answer == 1800, "the variables made before the compaction are rebuilt"
    assert [(info.purpose, info.step) for info, _ in live.seen] == [("agent", 5)]
    events = read_session(stopped.session_dir).events
    assert len([e for e in events if isinstance(e, HistoryCompacted)]) == 1


async def test_a_resume_interrupts_an_interrupted_cell_again_and_asks_no_model(sessions_dir):
    """A cell interrupted in its run (before the sub-agent it would have started) runs again
    for as long, is interrupted there, and nothing of it reaches a model: the rebuild spends
    nothing, as the recording says it did."""
    import asyncio

    from scripted import ScriptedModel

    from rlm_tui.events import CellRerunFinished, CellStarted, ModelRequest

    steps = [
        cell("x = 1\nimport time\ntime.sleep(30)\nanswer = rlm_query('child task')"),
        cell("y = x + 1"),
        cell("FINAL_VAR('y')"),
    ]
    scripts = {"q": steps, "child": [cell("FINAL('from the child')")]}
    limits = Limits(max_calls=2)
    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir, limits=limits, on_budget="stop"),
        model=ScriptedModel(scripts),
    )
    started = asyncio.get_running_loop().create_future()
    run.subscribe(
        lambda e: isinstance(e, CellStarted) and not started.done() and started.set_result(e)
    )
    await run.start()
    await asyncio.wait_for(started, 30)
    await asyncio.sleep(1.0)
    await run.interrupt("0")
    stopped = await run.wait()
    assert stopped.status == "budget"
    live = ScriptedModel(scripts)
    resumed_run = resume_run(stopped.session_dir, live_model=live, limits=Limits(max_calls=9))
    began = time.monotonic()
    resumed = await resumed_run.execute()
    assert resumed.answer == 2
    assert time.monotonic() - began < 20, "the re-run was not cut where the first run was"
    events = read_session(stopped.session_dir).events
    [rerun] = [e for e in events if isinstance(e, CellRerunFinished) and e.cell_id == "0:1"]
    assert rerun.status in ("interrupted", "timeout")
    assert [info.query for info, _ in live.seen] == ["q"]  # step 3 only: no child, no rerun call
    assert not [e for e in events if isinstance(e, ModelRequest) and e.agent_id != "0"]


async def test_a_recorded_cell_that_takes_another_path_when_run_again_asks_no_model(sessions_dir):
    """The cell's second run reaches an llm_query, a sub-agent and a tool its first run never
    called: each is refused in the cell (``BeyondRecord``), none reaches a model or a tool."""
    import asyncio

    from scripted import ScriptedModel

    from rlm_tui.events import CellRerunFinished

    then = time.time() + 2
    later = (
        f"import time\nif time.time() > {then}:\n"
        "    try:\n        llm_query('a new question')\n    except Exception as e: print(e)\n"
        "    try:\n        rlm_query('a new child')\n    except Exception as e: print(e)\n"
        "    raise RuntimeError('took another path')"
    )
    steps = [cell(later), cell("y = 2"), cell("FINAL_VAR('y')")]
    scripts = {"q": steps, "a new child": [cell("FINAL(1)")]}
    limits = Limits(max_calls=2)
    stopped = await Run(
        RunConfig(query="q", sessions_dir=sessions_dir, limits=limits, on_budget="stop"),
        model=ScriptedModel(scripts),
    ).execute()
    assert stopped.status == "budget"
    await asyncio.sleep(max(0.0, then - time.time() + 0.1))
    live = ScriptedModel(scripts)
    resumed = await resume_run(
        stopped.session_dir, live_model=live, limits=Limits(max_calls=9)
    ).execute()
    assert resumed.answer == 2
    [rerun] = [
        e
        for e in read_session(stopped.session_dir).events
        if isinstance(e, CellRerunFinished) and e.cell_id == "0:1"
    ]
    assert rerun.status == "error" and "took another path" in (rerun.error or "")
    assert [(info.purpose, info.query) for info, _ in live.seen] == [("agent", "q")]


def _budget_stopped_config(sessions_dir: Path, **kwargs) -> RunConfig:
    return RunConfig(
        query="q", sessions_dir=sessions_dir, limits=Limits(max_calls=1), on_budget="stop", **kwargs
    )


TYPE_STEPS = [cell("print(type(context).__name__)")] * 2 + [cell("FINAL(type(context).__name__)")]


async def test_a_resume_refuses_a_context_file_that_changed_and_leaves_the_session(
    sessions_dir, tmp_path
):
    from scripted import ScriptedModel

    context, extra = tmp_path / "notes.txt", tmp_path / "extra.txt"
    context.write_text("ten chars!")
    extra.write_text("four")
    config = _budget_stopped_config(
        sessions_dir, context_file=str(context), inputs={"extra": str(extra)}
    )
    stopped = await Run(config, model=ScriptedModel({"q": TYPE_STEPS})).execute()
    assert stopped.status == "budget"
    before = digest(stopped.session_dir)
    context.write_text("8 chars!")
    with pytest.raises(UsageError, match="the context .* changed since the session was made"):
        resume_run(stopped.session_dir, limits=Limits(max_calls=9))
    context.write_text("ten chars!")
    extra.write_text("seventeen chars!!")
    with pytest.raises(UsageError, match="the input extra .* changed since the session"):
        resume_run(stopped.session_dir, limits=Limits(max_calls=9))
    assert digest(stopped.session_dir) == before
    extra.write_text("four")  # both put back as they were: the resume goes on
    run = resume_run(
        stopped.session_dir, live_model=ScriptedModel({"q": TYPE_STEPS}), limits=Limits(max_calls=9)
    )
    assert (await run.execute()).answer == "str"


async def test_a_python_value_context_is_the_same_value_after_a_resume(sessions_dir):
    from scripted import ScriptedModel

    config = _budget_stopped_config(sessions_dir, context_value={1, 2, 3})
    stopped = await Run(config, model=ScriptedModel({"q": TYPE_STEPS})).execute()
    run = resume_run(
        stopped.session_dir, live_model=ScriptedModel({"q": TYPE_STEPS}), limits=Limits(max_calls=9)
    )
    assert (await run.execute()).answer == "set"  # was read back as its pickle's text: str
