"""Typed answers: the kernel checks FINAL against a schema, a mismatch goes back to the model,
the API returns the type asked for; SUBMIT is FINAL; sub-agents can be given a schema."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli
from openai_server import OpenAIServer, Reply
from pydantic import BaseModel
from scripted import ScriptedModel, cell

import rlm_tui
from rlm_tui.engine.budget import Limits
from rlm_tui.engine.parse import plain_final
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import RunStarted
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)

COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}


async def test_a_mismatch_goes_back_to_the_model_and_the_next_answer_is_checked(sessions_dir):
    model = ScriptedModel(
        {
            "count": [
                cell("FINAL({'apple': 'one', 'pear': 2})"),
                cell(
                    "parts = rlm_query('sub', schema=list[int])\n"
                    "more = rlm_query_batched(['sub'], schema={'type': 'array'})\n"
                    "FINAL({'apple': 1, 'n': len(parts) + len(more[0])})"
                ),
            ],
            "sub": [cell("FINAL('three')"), cell("SUBMIT([1, 2, 3])")],
        }
    )
    config = RunConfig(query="count", output_schema=COUNTS, sessions_dir=sessions_dir)
    result = await Run(config, model=model).execute()
    assert result.status == "answered", result.reason
    assert result.answer == {"apple": 1, "n": 6}
    root = [m for info, m in model.seen if info.agent_id == "0"]
    assert json.dumps(COUNTS) in root[0][1]["content"]
    feedback = root[1][-1]["content"]
    assert "does not match the expected schema" in feedback
    assert "answer['apple']: 'one' is not of type 'integer'" in feedback
    sub = [m for info, m in model.seen if info.agent_id == "0.1"]
    assert '"items": {"type": "integer"}' in sub[0][1]["content"]
    assert "'three' is not of type 'array'" in sub[1][-1]["content"]
    batched = [m for info, m in model.seen if info.agent_id == "0.2"]
    assert '{"type": "array"}' in batched[0][1]["content"] and len(batched) == 2
    started = read_session(result.session_dir).events[0]
    assert isinstance(started, RunStarted) and started.output_schema == COUNTS


class Fruit(BaseModel):
    name: str
    r_count: int


def scripted(replies: dict[str, str]):
    def reply(request: dict) -> Reply:
        query = request["messages"][1]["content"].split("\n", 1)[0].removeprefix("Query: ")
        return Reply(text=replies[query])

    return reply


async def test_the_api_returns_the_type_asked_for(sessions_dir):
    replies = {
        "dict": cell("FINAL({'cherry': 2, 'fig': 0})"),
        "model": cell("SUBMIT(name='cherry', r_count=2)"),
    }
    with OpenAIServer() as server:
        server.script(scripted(replies))
        common = {
            "model": "openai/test-model",
            "api_base": server.base_url,
            "stream": False,
            "sessions_dir": sessions_dir,
        }
        counts = await rlm_tui.arun("dict", output_type=dict[str, int], **common)
        fruit = await rlm_tui.arun("model", output_type=Fruit, **common)
    assert counts.answer == {"cherry": 2, "fig": 0} and isinstance(counts.answer, dict)
    assert fruit.answer == Fruit(name="cherry", r_count=2)


def test_submit_in_plain_text_is_final():
    marker = plain_final("Done.\nSUBMIT(answer=42)")
    assert marker is not None and (marker.kind, marker.argument) == ("SUBMIT", "answer=42")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the output schema"),
        ("{not json", "is not JSON"),
        ('{"type": 5}', "not a valid JSON Schema"),
        ('{"$ref": "#/definitions/nope"}', "$ref '#/definitions/nope' does not resolve"),
        ('{"$defs": {"a": {"$ref": "#/$defs/b"}}, "$ref": "#/$defs/a"}', "'#/$defs/b'"),
        ('{"$ref": "#"}', "cannot be applied"),
        (
            '{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}',
            "loops back on itself",
        ),
    ],
)
def test_a_bad_schema_file_is_one_line_and_exit_2(tmp_path: Path, content, message):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "rlm_tui", "run", "--output-schema", str(path), "q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_remote_ref_is_refused_up_front_and_never_fetched(tmp_path: Path):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x.json"
        path = tmp_path / "schema.json"
        path.write_text(json.dumps({"$ref": url}))
        done = cli("run", "--output-schema", str(path), "q", "--sessions-dir", str(tmp_path))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"$ref '{url}' does not resolve inside the schema" in done.stderr


async def test_a_schema_that_cannot_be_applied_is_no_crash_at_the_budget_stop(sessions_dir):
    """A ``$ref`` loop resolves (so it passes the loading check) but recurses without end."""
    model = ScriptedModel({"q": [cell("FINAL(1)")]})
    config = RunConfig(
        query="q",
        output_schema={"$ref": "#"},
        limits=Limits(max_iterations=1),
        sessions_dir=sessions_dir,
    )
    result = await Run(config, model=model).execute()
    assert result.status == "budget" and result.value is None
    assert "cannot be applied" in model.seen[-1][1][-1]["content"]
    events = read_session(result.session_dir).events
    assert events[-1].type == "run_finished"
    assert any("no answer could be extracted" in getattr(e, "message", "") for e in events)


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        (
            "x = []\nfor _ in range(100_000):\n    x = [x]\nFINAL(x)",
            "<list object; its repr failed: RecursionError>",
        ),
        (
            "class Odd:\n    def __repr__(self):\n        raise ValueError('no')\nFINAL(Odd())",
            "<Odd object; its repr failed: ValueError>",
        ),
    ],
    ids=["nested too deeply", "repr raises"],
)
async def test_an_answer_whose_repr_fails_still_answers(sessions_dir, code, shown):
    model = ScriptedModel({"q": [cell(code)]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    assert result.status == "answered", result.reason
    assert len(model.seen) == 1, "FINAL worked the first time"
    events = read_session(result.session_dir).events
    assert events[-1].answer.repr == shown
