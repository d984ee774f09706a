"""Named inputs besides `context`: kernel variables, described to the model, kept on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted import ScriptedModel, cell

from rlm_tui.cli import main
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import RunStarted
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


async def test_inputs_are_kernel_variables_the_model_is_told_about(tmp_path: Path, sessions_dir):
    notes = tmp_path / "notes.txt"
    notes.write_text("alpha beta")
    code = "FINAL({'c': context, 'notes': notes, 'table': table, 'n': len(SHOW_VARS.__doc__) > 0})"
    model = ScriptedModel({"use": [cell(code)]})
    config = RunConfig(
        query="use",
        context_value="the context",
        inputs={"notes": str(notes)},
        input_values={"table": {"a": [1, 2]}},
        sessions_dir=sessions_dir,
    )
    result = await Run(config, model=model).execute()
    assert result.status == "answered", result.reason
    assert result.answer == {
        "c": "the context",
        "notes": "alpha beta",
        "table": {"a": [1, 2]},
        "n": True,
    }
    system = model.seen[0][1][0]["content"]
    assert "- `notes`: an input (a str of 10 characters)" in system
    assert "- `table`: an input (the parsed JSON (dict or list) of" in system
    started = read_session(result.session_dir).events[0]
    assert isinstance(started, RunStarted) and set(started.inputs) == {"notes", "table"}
    assert json.loads(Path(started.inputs["table"]).read_text()) == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("notes", "--input takes NAME=FILE"),
        ("1x=a.txt", "cannot be called '1x'"),
        ("notes=missing.txt", "not found"),
    ],
)
def test_a_bad_input_flag_is_one_line_and_exit_2(capsys, flag, message):
    assert main(["run", "--input", flag, "q"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
