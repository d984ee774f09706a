"""The Python API as a script or a notebook uses it: what it refuses, and how it ends on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for_session_text

import rlm_tui
from rlm_tui.errors import UsageError
from rlm_tui.events import RunFinished
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


def test_an_unknown_keyword_is_a_type_error_and_nothing_runs(sessions_dir: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: cell_timout"):
        rlm_tui.run("q", sessions_dir=sessions_dir, cell_timout=5)
    assert not any(sessions_dir.iterdir())


def test_budget_keywords_hold_like_limits(sessions_dir: Path) -> None:
    result = rlm_tui.run("q", sessions_dir=sessions_dir, max_calls=1)
    assert result.status == "budget" and result.usage.calls == 1
    both = rlm_tui.run(
        "q", sessions_dir=sessions_dir, limits=rlm_tui.Limits(max_depth=0), max_calls=1
    )
    assert both.status == "budget" and both.usage.calls == 1
    recorded = read_session(both.session_dir).events[0].settings["limits"]
    assert recorded["max_depth"] == 0 and recorded["max_calls"] == 1


def test_a_context_given_twice_is_refused(sessions_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "context.txt").write_text("from the file")
    with pytest.raises(UsageError, match="arguments: the context is given twice"):
        rlm_tui.run(
            "q", "a value", context_file=tmp_path / "context.txt", sessions_dir=sessions_dir
        )


@pytest.mark.parametrize("context", [lambda: 1, (n for n in range(3))], ids=["lambda", "generator"])
def test_a_context_that_cannot_be_sent_is_one_clear_error(sessions_dir: Path, context) -> None:
    with pytest.raises(UsageError, match="cannot be sent to the kernel as a context"):
        rlm_tui.run("q", context, sessions_dir=sessions_dir)
    assert not any(sessions_dir.iterdir())


REFUSED = {
    "an empty query": ({"query": " "}, "the query is empty"),
    "a query not utf-8": ({"query": "q \udcff"}, "the query is not UTF-8 text"),
    "a context not utf-8": ({"context": "a\udc80b"}, "the context is not UTF-8 text"),
    "an input not utf-8": ({"inputs": {"notes": "a\udc80b"}}, "an input is not UTF-8 text"),
    "an empty allow_read": ({"allow_read": [""]}, "--allow-read: an empty path"),
    "an empty api_base": ({"api_base": ""}, "--api-base '' is not a URL"),
    "a kernel_env not set": ({"kernel_env": ["RLM_TUI_TEST_NEVER_SET"]}, "is not set"),
    "a negative depth": ({"max_depth": -1}, "max_depth: Input should be greater than or equal"),
    "a cut below its minimum": ({"truncate": 5}, "truncate: Input should be greater than"),
}


@pytest.mark.parametrize(("given", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_the_api_refuses_what_the_cli_refuses(sessions_dir: Path, given: dict, words: str):
    arguments = {"query": "q", **given}
    with pytest.raises(UsageError, match=re.escape(words)):
        rlm_tui.run(arguments.pop("query"), sessions_dir=sessions_dir, **arguments)
    assert not any(sessions_dir.iterdir())


def test_an_empty_sessions_dir_is_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--sessions-dir: an empty path"):
        rlm_tui.run("q", sessions_dir="")
    assert not any(tmp_path.iterdir())


def test_a_context_value_holding_a_lone_surrogate_is_sent_pickled(sessions_dir: Path) -> None:
    result = rlm_tui.run("q", {"name": "x\udc80"}, sessions_dir=sessions_dir)
    assert result.status == "answered"


def test_a_run_cannot_be_appended_to_a_saved_session(sessions_dir: Path) -> None:
    answered = rlm_tui.run("q", sessions_dir=sessions_dir)
    before = (answered.session_dir / "events.jsonl").read_bytes()
    with pytest.raises(TypeError, match="unexpected keyword arguments: append_to"):
        rlm_tui.run("another", sessions_dir=sessions_dir, append_to=answered.session_dir)
    assert (answered.session_dir / "events.jsonl").read_bytes() == before


def test_a_session_id_cannot_leave_the_sessions_dir(sessions_dir: Path) -> None:
    with pytest.raises(UsageError, match="session_id: a session id is a plain name"):
        rlm_tui.run("q", sessions_dir=sessions_dir, session_id="../escaped")
    assert not (sessions_dir.parent / "escaped").exists()


async def test_run_inside_a_running_loop_says_to_await_arun(sessions_dir: Path) -> None:
    with pytest.raises(RuntimeError, match=r"await rlm_tui\.arun"):
        rlm_tui.run("q", sessions_dir=sessions_dir)
    result = await rlm_tui.arun("q", sessions_dir=sessions_dir)
    assert result.status == "answered"


def test_ctrl_c_of_a_script_saves_the_session_then_raises_keyboard_interrupt(
    sessions_dir: Path,
) -> None:
    script = (
        "import sys, rlm_tui\n"
        "for _ in range(3):\n"  # a batch: Ctrl-C must end it, not only the current run
        "    rlm_tui.run('q', sessions_dir=sys.argv[1], demo_delay=2.0)\n"
        "    print('next run')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(sessions_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    session = wait_for_session_text(sessions_dir, '"model_request"')
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGINT, stderr
    assert "KeyboardInterrupt" in stderr and "next run" not in stdout
    events = read_session(session).events
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
    assert len(list(sessions_dir.iterdir())) == 1


def test_a_cancelled_waiter_gets_the_cancel_and_the_run_is_saved(sessions_dir: Path) -> None:
    async def main() -> Path:
        run = rlm_tui.Run(rlm_tui.RunConfig(query="q", sessions_dir=sessions_dir, demo_delay=2.0))
        task = asyncio.ensure_future(run.execute())
        while run.session_dir is None or not run.agents:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert run.session_dir is not None
        return run.session_dir

    session = asyncio.run(main())
    events = read_session(session).events
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
