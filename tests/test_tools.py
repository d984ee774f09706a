"""Tools: host functions the model calls from its kernel, plainly or awaited; their calls are
events; a tool's exception reaches the cell; resume serves recorded results without calling."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted import ScriptedModel, cell

from rlm_tui.cli import main
from rlm_tui.engine.budget import Limits
from rlm_tui.engine.resume import resume_run
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import SubcallFinished, SubcallStarted
from rlm_tui.session.projection import RunView
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)

TOOLS = '''
import json
from math import sqrt  # imported, not a tool

CALLS = {calls!r}


def _note(name):
    with open(CALLS, "a") as f:
        f.write(name + "\\n")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    _note("add")
    return a + b


def lookup(city: str) -> dict:
    """The weather of a city."""
    _note("lookup")
    return {{"city": city, "temp": len(city)}}


def explode(message: str) -> None:
    """Always fails."""
    _note("explode")
    raise ValueError(message)
'''

STEP_1 = """\
import asyncio
s = add(2, 3)
city = await lookup("Oslo")
both = list(await asyncio.gather(lookup("Rome"), add(1, b=1)))
try:
    explode("boom")
except Exception as e:
    err = f"{type(e).__name__}: {e}"
twice = double(21)
print(s, city, both, err, twice)"""
STEP_2 = 'FINAL({"s": s, "city": city, "both": both, "err": err, "twice": twice})'


def double(x: int) -> int:
    """Twice x (a tool given as a function, as the Python API does)."""
    return 2 * x


async def test_tools_are_called_recorded_and_served_on_resume(tmp_path: Path, sessions_dir):
    calls = tmp_path / "calls.txt"
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS.format(calls=str(calls)))
    model = ScriptedModel({"use": [cell(STEP_1), cell(STEP_2)]})
    config = RunConfig(
        query="use",
        tools_file=str(tools),
        tools=[double],
        limits=Limits(max_iterations=1),
        on_budget="stop",
        sessions_dir=sessions_dir,
    )
    stopped = await Run(config, model=model).execute()
    assert stopped.status == "budget"
    system = model.seen[0][1][0]["content"]
    assert "`add(a: int, b: int) -> int`: Add two numbers." in system
    assert "`double(x: int) -> int`" in system and "sqrt" not in system
    # the gathered calls run at once, so their order is the host's
    assert sorted(calls.read_text().split()) == ["add", "add", "explode", "lookup", "lookup"]

    events = read_session(stopped.session_dir).events
    started = {e.call_id: e.prompt for e in events if isinstance(e, SubcallStarted)}
    outcomes = {
        started[e.call_id]: (e.ok, e.result.json_value if e.result else e.error)
        for e in events
        if isinstance(e, SubcallFinished)
    }
    arguments = {e.prompt: e.arguments for e in events if isinstance(e, SubcallStarted)}
    assert arguments["add(1, b=1)"] == {"args": [1], "kwargs": {"b": 1}}
    assert outcomes == {
        "add(2, 3)": (True, 5),
        "lookup('Oslo')": (True, {"city": "Oslo", "temp": 4}),
        "lookup('Rome')": (True, {"city": "Rome", "temp": 4}),
        "add(1, b=1)": (True, 2),
        "explode('boom')": (False, "ValueError: boom"),
        "double(21)": (True, 42),
    }

    view = RunView()
    for event in events:
        view.apply(event)
    shown = view.cells["0:1"].tool_calls
    assert len(shown) == 6 and shown[0].startswith("⚙ add(2, 3) -> 5 (")
    assert shown[4].startswith("⚙ explode('boom') raised ValueError: boom")

    resumed = resume_run(
        stopped.session_dir, live_model=model, tools=[double], limits=Limits(max_iterations=5)
    )
    result = await resumed.execute()
    assert result.status == "answered", result.reason
    assert result.answer == {
        "s": 5,
        "city": {"city": "Oslo", "temp": 4},
        "both": [{"city": "Rome", "temp": 4}, 2],
        "err": "RLMError: ValueError: boom",
        "twice": 42,
    }
    assert len(calls.read_text().split()) == 5, "resume served the recorded results"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "tools file not found"),
        ("def f(:\n", "syntax error"),
        ("import os\n_x = 1\n", "defines no public function"),
        ("raise RuntimeError('no db')\n", "failed to load: RuntimeError: no db"),
    ],
)
def test_a_bad_tools_file_is_one_line_and_exit_2(tmp_path: Path, capsys, content, message):
    path = tmp_path / "tools.py"
    if content is not None:
        path.write_text(content)
    assert main(["run", "--tools", str(path), "q"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def quits() -> None:
    """What an argparse- or click-based helper does on bad arguments."""
    raise SystemExit(3)


def interrupted() -> None:
    raise KeyboardInterrupt


async def stops_the_loop() -> None:
    """An async tool: asyncio lets SystemExit out of a task to end its loop."""
    raise SystemExit("bye")


async def test_a_tool_that_exits_is_an_error_of_that_call_only(sessions_dir):
    code = """\
errors = []
for tool in (quits, interrupted):
    try:
        tool()
    except BaseException as e:
        errors.append(f"{type(e).__name__}: {e}")
try:
    await stops_the_loop()
except BaseException as e:
    errors.append(f"{type(e).__name__}: {e}")
FINAL(errors)"""
    model = ScriptedModel({"q": [cell(code)]})
    config = RunConfig(
        query="q", tools=[quits, interrupted, stops_the_loop], sessions_dir=sessions_dir
    )
    result = await Run(config, model=model).execute()
    assert result.status == "answered", result.reason
    assert result.answer == [
        "RLMError: SystemExit: 3",
        "RLMError: KeyboardInterrupt: ",
        "RLMError: SystemExit: bye",
    ]
