"""The whole CLI through real litellm against a loopback server: a scripted multi-step trajectory,
sub-agents two levels deep, streaming, retries, and the exit codes of provider failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli
from openai_server import OpenAIServer, Reply
from scripted import cell

from rlm_tui.events import AgentStarted, CellFinished, ModelDelta, ModelResponse
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)

SCRIPTS = {
    "main": [
        cell("print(len(context))\nprint('y' * 100_000)"),
        cell(
            "parts = rlm_query_batched(['sub A', 'sub B'], contexts=[context[:5], context[5:10]])\n"
            "print(parts)"
        ),
        cell("result = {'a': parts[0], 'b': parts[1], 'n': len(context)}\nFINAL_VAR('result')"),
    ],
    "sub A": [cell("deeper = rlm_query('leaf', context=context.upper())\nFINAL({'leaf': deeper})")],
    "sub B": [cell("FINAL(context[::-1])")],
    "leaf": [cell("FINAL_VAR('context')")],
}


def trajectory(request: dict) -> Reply:
    messages = request["messages"]
    query = messages[1]["content"].split("\n", 1)[0].removeprefix("Query: ")
    step = sum(1 for m in messages if m["role"] == "assistant")
    return Reply(text=SCRIPTS[query][min(step, len(SCRIPTS[query]) - 1)])


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


def run_cli(
    server: OpenAIServer, sessions: Path, query: str, *extra: str, model="openai/test-model"
):
    return cli(
        "run",
        "--json",
        "--model",
        model,
        "--api-base",
        server.base_url,
        "--sessions-dir",
        str(sessions),
        *extra,
        query,
    )


def test_multi_step_trajectory_with_sub_agents_two_levels_deep(server, sessions_dir, tmp_path):
    server.script(trajectory)
    context = tmp_path / "context.txt"
    context.write_text("abcdefghijklmnop")
    done = run_cli(server, sessions_dir, "main", "--context-file", str(context))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["answer"] == {"a": {"leaf": "ABCDE"}, "b": "jihgf", "n": 16}
    # the request after the big print carries only its truncated form
    root_requests = [
        r for r in server.requests if r["messages"][1]["content"].startswith("Query: main")
    ]
    second = root_requests[1]["messages"][-1]["content"]
    shown, marker = second.removeprefix("[cell 1: ok]\n").split("\n... [output truncated", 1)
    assert len(shown) == 2000 and shown.endswith("y" * 1997)
    assert "98,004 of 100,004 characters cut" in marker
    events = read_session(Path(out["session"])).events
    depths = {e.agent_id: e.depth for e in events if isinstance(e, AgentStarted)}
    assert depths == {"0": 0, "0.1": 1, "0.2": 1, "0.1.1": 2}
    assert any(isinstance(e, ModelDelta) for e in events), "streamed"
    big = next(e for e in events if isinstance(e, CellFinished) and e.cell_id == "0:1")
    assert big.output_chars == 100_004 and len(big.output) == 100_004
    responses = [e for e in events if isinstance(e, ModelResponse)]
    assert len(responses) == len(server.requests) == 6
    assert out["usage"]["calls"] == 6
    assert out["usage"]["prompt_tokens"] == sum(
        sum(len(m["content"]) for m in r["messages"]) // 4 for r in server.requests
    )
    assert "OPENAI_API_KEY" not in (Path(out["session"]) / "events.jsonl").read_text()


def test_429_then_success(server, sessions_dir):
    server.script([Reply(status=429, retry_after=0.05), Reply(text=cell("FINAL(7)"))])
    done = run_cli(server, sessions_dir, "q")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == 7
    assert len(server.requests) == 2
    assert "rate limited (429); retry 1/4" in done.stderr


def test_500_until_retries_run_out_exits_4(server, sessions_dir):
    server.script([Reply(status=500)])
    done = run_cli(server, sessions_dir, "q")
    assert done.returncode == 4
    assert "server error 500 after 5 attempts" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(server.requests) == 5


def test_cost_budget_stops_with_exit_3(server, sessions_dir):
    server.script([Reply(text=cell("x = 1"), prompt_tokens=100_000, completion_tokens=10)])
    done = run_cli(
        server,
        sessions_dir,
        "q",
        "--max-cost",
        "0.001",
        "--on-budget",
        "stop",
        model="openai/gpt-4o-mini",
    )
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "budget" and "cost limit $0.0010" in out["reason"]
    assert len(server.requests) == 1


def test_unknown_model_exits_2(sessions_dir):
    done = cli("run", "--model", "nonsense-provider/xyz", "--sessions-dir", str(sessions_dir), "q")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rlm-tui: error: unknown model 'nonsense-provider/xyz': litellm cannot tell its provider "
        "(use provider/model, e.g. openai/gpt-4o-mini, or pass --api-base)"
    ]
