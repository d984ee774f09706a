"""What real runs do to a scaffold: huge prints, odd model output, values with no JSON form,
recursion bombs, Ctrl-C. Each case is bounded in time and leaves no process behind."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import start_cli_run, wait_for_session_text
from openai_server import OpenAIServer, Reply
from scripted import ScriptedModel, cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import AgentStarted, CellFinished, CellOutput, RunFinished
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


async def run_script(sessions_dir: Path, scripts: dict[str, list[str]], **config):
    model = ScriptedModel(scripts)
    result = await Run(
        RunConfig(query="q", sessions_dir=sessions_dir, **config), model=model
    ).execute()
    return result, model, read_session(result.session_dir).events


async def test_a_50_mb_print_is_kept_to_a_bound_and_the_run_goes_on(sessions_dir):
    result, model, events = await run_script(
        sessions_dir, {"q": [cell("print('z' * 50_000_000)"), cell("FINAL('survived')")]}
    )
    assert result.answer == "survived"
    finished = next(e for e in events if isinstance(e, CellFinished))
    assert finished.output_chars == 50_000_001
    assert len(finished.output) == 1_000_000
    assert sum(len(e.text) for e in events if isinstance(e, CellOutput)) == 1_000_000
    assert "49,998,001 of 50,000,001 characters cut" in model.seen[1][1][-1]["content"]
    assert (result.session_dir / "events.jsonl").stat().st_size < 5_000_000


async def test_reply_without_code_is_answered_with_guidance(sessions_dir):
    result, model, _ = await run_script(
        sessions_dir, {"q": ["I believe it is 4.", cell("FINAL(4)")]}
    )
    assert result.answer == 4
    assert "no ```repl code block" in model.seen[1][1][-1]["content"]


async def test_unterminated_fence_still_runs(sessions_dir):
    result, _, _ = await run_script(sessions_dir, {"q": ["```repl\nx = 2 + 3\nFINAL(x)"]})
    assert result.answer == 5


async def test_plain_text_final(sessions_dir):
    result, _, _ = await run_script(
        sessions_dir, {"q": [cell("v = {'k': [1, 2]}"), "Done.\nFINAL_VAR(v)"]}
    )
    assert result.answer == {"k": [1, 2]}
    result, _, _ = await run_script(sessions_dir, {"q": ["FINAL(the answer is blue)"]})
    assert result.answer == "the answer is blue"


async def test_final_of_values_without_json_form(sessions_dir):
    result, _, events = await run_script(sessions_dir, {"q": [cell("FINAL({3, 1, 2})")]})
    assert result.status == "answered"
    assert (
        not result.value.is_json
        and result.value.repr == "{1, 2, 3}"
        and result.value.type_name == "set"
    )
    result, _, _ = await run_script(sessions_dir, {"q": [cell("FINAL(lambda x: x)")]})
    assert result.value.type_name == "function" and result.value.pickle is None
    assert "<function <lambda>" in result.answer
    finished = [e for e in events if isinstance(e, RunFinished)][0]
    assert finished.answer.repr == "{1, 2, 3}"


async def test_recursion_bomb_stops_at_the_depth_limit_exactly(sessions_dir):
    bomb = cell("x = rlm_query('again')\nFINAL(x)")
    result, model, events = await run_script(
        sessions_dir, {"q": [bomb], "again": [bomb]}, limits=Limits(max_depth=2)
    )
    assert result.status == "budget" and result.exit_code == 3
    assert "depth limit 2 reached" in result.reason
    depths = [e.depth for e in events if isinstance(e, AgentStarted)]
    assert depths == [0, 1, 2]
    assert max(info.depth for info, _ in model.seen) == 2


async def test_call_budget_holds_exactly_under_batched_fan_out(sessions_dir):
    fan = cell("r = rlm_query_batched(['leaf'] * 8)\nFINAL(r)")
    result, model, _ = await run_script(
        sessions_dir, {"q": [fan], "leaf": [cell("FINAL(1)")]}, limits=Limits(max_calls=5)
    )
    assert result.status == "budget"
    assert len(model.seen) == 5


def test_ctrl_c_of_the_headless_cli_saves_the_session_and_kills_kernels(sessions_dir):
    with OpenAIServer() as server:
        server.script([Reply(text=cell("import time\ntime.sleep(60)"))])
        process = start_cli_run(server.base_url, sessions_dir, "--json", "q")
        wait_for_session_text(sessions_dir, '"cell_started"')
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    out = json.loads(stdout)
    assert out["status"] == "stopped" and "Ctrl-C" in out["reason"]
    events = read_session(Path(out["session"])).events
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"
