"""Follow-up questions: `rlm-tui ask` goes on in a finished session's rebuilt root kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FRUITS_QUERY
from scripted import ScriptedModel, cell

from rlm_tui.cli import main
from rlm_tui.engine.resume import ask_run
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import FollowUp, ModelRequest, RunFinished
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


async def test_a_follow_up_sees_the_first_runs_variables_and_answer(sessions_dir: Path):
    first = await Run(RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir)).execute()
    assert first.status == "answered"
    before = [e for e in read_session(first.session_dir).events if isinstance(e, ModelRequest)]

    follow = cell("FINAL({'names': len(names), 'prev': len(answer_1), 'same': answer_1 == counts})")
    model = ScriptedModel({FRUITS_QUERY[:20]: [follow]})
    result = await ask_run(first.session_dir, "How many fruits?", live_model=model).execute()
    assert result.status == "answered", result.reason
    assert result.answer == {"names": 50, "prev": 50, "same": True}
    assert len(model.seen) == 1, "the first run was rebuilt from its record, not asked again"
    last = model.seen[0][1][-1]["content"]
    assert "Follow-up question: How many fruits?" in last and "`answer_1`" in last

    events = read_session(first.session_dir).events
    asked = [e for e in events if isinstance(e, FollowUp)]
    assert [(a.question, a.answer_var) for a in asked] == [("How many fruits?", "answer_1")]
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["answered", "answered"]
    after = [e for e in events if isinstance(e, ModelRequest)]
    assert len(after) == len(before) + 1


def test_asking_an_unknown_session_is_one_line_and_exit_2(tmp_path: Path, capsys):
    assert main(["ask", "--sessions-dir", str(tmp_path), "nope", "why?"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_ask_with_another_model_asks_that_model(sessions_dir: Path, capsys):
    """``--model`` is a RunConfig setting for ask as for resume and fork (it crashed: the
    name reached a parameter that wanted a Model)."""
    first = main(["run", "--sessions-dir", str(sessions_dir), "--model", "demo", "--json", "q"])
    assert first == 0
    session = next(sessions_dir.iterdir())
    capsys.readouterr()
    code = main(["ask", "--sessions-dir", str(sessions_dir), "--model", "demo", session.name, "x"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    assert [e.status for e in read_session(session).events if isinstance(e, RunFinished)] == [
        "answered",
        "answered",
    ]
