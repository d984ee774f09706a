"""An answer when the budget ends: one call kept back extracts it from the trajectory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply
from scripted import cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import ModelRequest, RunFinished
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)

ASKED = "budget has run out"


def never_answers(request: dict) -> Reply:
    """Each turn runs a cell and never answers; the extraction request gets a JSON answer."""
    if ASKED in request["messages"][-1]["content"]:
        return Reply(text='```json\n{"total": 42}\n```')
    step = sum(1 for m in request["messages"] if m["role"] == "assistant")
    return Reply(text=cell(f"partial = {step}\nprint(partial)"))


def test_a_run_out_of_iterations_ends_with_an_extracted_answer(sessions_dir):
    with OpenAIServer() as server:
        server.script(never_answers)
        done = subprocess.run(
            [
                sys.executable, "-m", "rlm_tui", "run", "--json", "--no-stream",
                "--model", "openai/test-model", "--api-base", server.base_url,
                "--sessions-dir", str(sessions_dir), "--max-iterations", "3", "sum it",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        requests = list(server.requests)
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "budget" and "iteration limit 3" in out["reason"]
    assert out["extracted"] is True and out["answer"] == {"total": 42}
    assert len(requests) == 3 + 1
    last = requests[-1]["messages"]
    assert ASKED in last[-1]["content"] and "[cell 3: ok]\n2" in last[-1]["content"]
    events = read_session(Path(out["session"])).events
    assert [e.purpose for e in events if isinstance(e, ModelRequest)][-1] == "extract"
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.extracted and finished.status == "budget"


@pytest.mark.parametrize("on_budget", ["extract", "stop"])
async def test_the_reserve_keeps_a_call_limit_exact(sessions_dir, on_budget):
    with OpenAIServer() as server:
        server.script(never_answers)
        config = RunConfig(
            query="sum it",
            model="openai/test-model",
            api_base=server.base_url,
            stream=False,
            limits=Limits(max_calls=3),
            on_budget=on_budget,
            sessions_dir=sessions_dir,
        )
        result = await Run(config).execute()
        requests = list(server.requests)
    assert result.status == "budget" and result.exit_code == 3
    assert len(requests) == 3 and result.usage.calls == 3
    if on_budget == "extract":
        assert result.extracted and result.answer == {"total": 42}
    else:
        assert not result.extracted and result.answer is None
        assert all(ASKED not in r["messages"][-1]["content"] for r in requests)


async def test_the_reserve_keeps_a_completion_token_limit_exact(sessions_dir):
    def spends_40(request: dict) -> Reply:
        reply = never_answers(request)
        return Reply(text=reply.text, completion_tokens=40)

    with OpenAIServer() as server:
        server.script(spends_40)
        config = RunConfig(
            query="sum it",
            model="openai/test-model",
            api_base=server.base_url,
            stream=False,
            limits=Limits(max_completion_tokens=100),
            sessions_dir=sessions_dir,
        )
        result = await Run(config).execute()
        requests = list(server.requests)
    assert result.status == "budget" and result.extracted
    # a quarter of the limit is kept back: the working calls get 75 tokens, then what is left
    assert [r["max_tokens"] for r in requests[:-1]] == [75, 35]
    assert ASKED in requests[-1]["messages"][-1]["content"]
    assert requests[-1]["max_tokens"] == 100 - 80
