"""Budgets exact under concurrency, through the real CLI, real litellm and a loopback server:
calls reserved before they start, max_tokens from what is left, a bound on calls at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply
from scripted import cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import ModelDelta, ModelResponse
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


def query_of(request: dict) -> str:
    """The agent's query (first user message), or the prompt of an llm_query."""
    users = [m["content"] for m in request["messages"] if m["role"] == "user"]
    return users[0].split("\n", 1)[0].removeprefix("Query: ")


def scripted(scripts: dict[str, str]):
    def reply(request: dict) -> Reply:
        return Reply(text=scripts.get(query_of(request), "FINAL('leaf')"))

    return reply


def cli_run(server: OpenAIServer, sessions: Path, query: str, *extra: str):
    return subprocess.run(
        [
            sys.executable, "-m", "rlm_tui", "run", "--model", "openai/test-model",
            "--api-base", server.base_url, "--sessions-dir", str(sessions), *extra, query,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "fan_out",
    [
        "r = llm_query_batched([f'p{i}' for i in range(8)])\nFINAL(r)",
        "r = rlm_query_batched(['leaf a', 'leaf b', 'leaf c'])\nFINAL(r)",
    ],
    ids=["llm_query_batched", "rlm_query_batched"],
)
def test_max_calls_is_exact_under_fan_out(server, sessions_dir, fan_out):
    server.script(scripted({"root": cell(fan_out)}))
    done = cli_run(server, sessions_dir, "root", "--max-calls", "2")
    assert done.returncode == 3, done.stderr
    assert len(server.requests) == 2
    assert "model call limit 2" in done.stderr


async def test_completion_budget_is_sent_as_max_tokens_and_holds(server, sessions_dir):
    replies = iter(
        [
            Reply(text=cell("x = 1"), completion_tokens=30),
            Reply(text=cell("y = 2"), completion_tokens=20),
        ]
    )
    server.script(lambda _request: next(replies))
    config = RunConfig(
        query="q",
        model="openai/test-model",
        api_base=server.base_url,
        sessions_dir=sessions_dir,
        limits=Limits(max_completion_tokens=50),
        on_budget="stop",
    )
    result = await Run(config).execute()
    assert result.status == "budget" and result.exit_code == 3
    assert [r["max_tokens"] for r in server.requests] == [50, 20]
    assert result.usage.completion_tokens == 50


async def test_concurrent_calls_are_bounded_and_queued(server, sessions_dir):
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def reply(request: dict) -> Reply:
        if query_of(request) == "q":
            return Reply(text=cell("FINAL(llm_query_batched([str(i) for i in range(6)]))"))
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return Reply(text="ok")

    server.script(reply)
    config = RunConfig(
        query="q",
        model="openai/test-model",
        api_base=server.base_url,
        sessions_dir=sessions_dir,
        max_concurrency=2,
    )
    result = await Run(config).execute()
    assert result.status == "answered" and result.answer == ["ok"] * 6
    assert state["most"] == 2


async def test_streamed_deltas_are_coalesced_and_the_response_holds_the_whole_text(
    server, sessions_dir
):
    prose = "".join(f"{i:07d} " for i in range(400))  # 200 pieces of 16 characters
    text = cell("FINAL('done')", prose=prose)
    server.script([Reply(text=text)])
    config = RunConfig(
        query="q", model="openai/test-model", api_base=server.base_url, sessions_dir=sessions_dir
    )
    started = time.monotonic()
    result = await Run(config).execute()
    elapsed = time.monotonic() - started
    assert result.status == "answered"
    events = read_session(result.session_dir).events
    deltas = [e for e in events if isinstance(e, ModelDelta)]
    assert 1 <= len(deltas) <= 2 + elapsed / 0.25
    assert "".join(d.text for d in deltas) == text
    assert [e.text for e in events if isinstance(e, ModelResponse)] == [text]


async def test_a_failed_attempt_s_partial_text_is_cleared(server, sessions_dir):
    whole = cell("FINAL('whole')")
    server.script([Reply(text="partial text " * 40, cut_stream=True), Reply(text=whole)])
    config = RunConfig(
        query="q", model="openai/test-model", api_base=server.base_url, sessions_dir=sessions_dir
    )
    result = await Run(config).execute()
    assert result.answer == "whole"
    deltas = [e for e in read_session(result.session_dir).events if isinstance(e, ModelDelta)]
    resets = [i for i, d in enumerate(deltas) if d.reset]
    assert resets, "the retry said the partial text is void"
    assert "".join(d.text for d in deltas[resets[-1] :]) == whole
    notices = [
        json.loads(line)["message"]
        for line in (result.session_dir / "events.jsonl").read_text().splitlines()
        if '"notice"' in line
    ]
    assert any("stream was cut" in n for n in notices)
