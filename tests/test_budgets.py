"""Budgets exact under concurrency, through the real CLI, real litellm and a loopback server:
calls reserved before they start, max_tokens from what is left, a bound on calls at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply, prompt_chars
from scripted import cell

from rlm_tui.engine.budget import Budget, Limits, Need
from rlm_tui.engine.extract import extraction_messages
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import BudgetExceeded
from rlm_tui.events import ModelDelta, ModelResponse, Usage
from rlm_tui.models.base import estimate_tokens
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


class Overlap:
    """How many requests the server holds at once, at most."""

    def __init__(self) -> None:
        self._lock, self.now, self.most = threading.Lock(), 0, 0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)
        with self._lock:
            self.now -= 1


def loopback_run(
    server: OpenAIServer, sessions: Path, model: str, limits: Limits, **settings: Any
) -> Run:
    """A run of the query "root" that just stops at its budget (unless ``settings`` say)."""
    settings = {"query": "root", "on_budget": "stop"} | settings
    config = RunConfig(
        model=model, api_base=server.base_url, sessions_dir=sessions, limits=limits, **settings
    )
    return Run(config)


async def test_a_batch_under_a_completion_budget_runs_concurrently(server, sessions_dir):
    overlap = Overlap()
    fan_out = cell("r = llm_query_batched([f'p{i}' for i in range(8)])\nFINAL(r)")

    def reply(request: dict) -> Reply:
        if query_of(request) == "root":
            return Reply(text=fan_out, completion_tokens=min(100, request["max_tokens"]))
        overlap.hold(0.3)  # each call spends all it was given
        return Reply(text="ok", completion_tokens=request["max_tokens"])

    server.script(reply)
    result = await loopback_run(
        server, sessions_dir, "openai/test-model", Limits(max_completion_tokens=1000)
    ).execute()
    assert result.status == "answered", result.reason
    batch = [r["max_tokens"] for r in server.requests[1:]]
    assert len(batch) == 8 and overlap.most == 8
    assert server.requests[0]["max_tokens"] == 1000  # one call alone: all of it
    assert sum(batch) <= 900 and min(batch) >= 100  # a fair share each of what was left
    assert result.usage.completion_tokens <= 1000


async def test_max_prompt_tokens_is_exact_under_fan_out(server, sessions_dir):
    """Each call of the batch holds its estimated prompt (the server counts characters / 4
    too): three fit beside the root's, the fourth is refused, none passes the limit."""
    overlap = Overlap()
    fan_out = cell("r = llm_query_batched([f'{i}' * 40_000 for i in range(8)])\nFINAL(r)")

    def reply(request: dict) -> Reply:
        if query_of(request) == "root":
            return Reply(text=fan_out)
        overlap.hold(0.2)
        return Reply(text="ok")

    server.script(reply)
    result = await loopback_run(
        server, sessions_dir, "openai/test-model", Limits(max_prompt_tokens=35_000)
    ).execute()
    assert prompt_chars(server.requests[0]) < 20_000  # the root's first prompt: < 5,000 tokens
    assert result.status == "budget" and result.exit_code == 3
    assert "prompt token limit 35,000 would be passed" in result.reason
    assert len(server.requests) == 4 and overlap.most == 3
    assert result.usage.prompt_tokens <= 35_000


async def test_max_cost_is_exact_under_fan_out(server, sessions_dir):
    """A priced model: each call holds its prompt's cost and ``max_tokens`` at the completion
    price (its fair share of the money left); replies that spend all of it stay in budget."""
    overlap = Overlap()
    fan_out = cell("r = llm_query_batched([f'p{i}' for i in range(8)])\nprint(r)")

    def reply(request: dict) -> Reply:
        if query_of(request) == "root":  # the batch, then (no money left) an answer
            return Reply(text=fan_out, completion_tokens=50)
        overlap.hold(0.2)
        return Reply(text="ok", completion_tokens=request["max_tokens"])

    server.script(reply)
    limits = Limits(max_cost=0.001)
    result = await loopback_run(server, sessions_dir, "openai/gpt-4o-mini", limits).execute()
    assert result.status == "budget" and result.exit_code == 3, result.reason
    assert "cost limit $0.0010 would be passed" in result.reason
    assert len(server.requests) == 9 and overlap.most == 8
    assert all(r.get("max_tokens") for r in server.requests)
    assert 0.0009 < result.usage.cost <= 0.001


ASKED = "budget has run out"


def never_answers(request: dict) -> Reply:
    """Each turn prints 2,000 characters and never answers; the extraction gets a JSON answer
    that spends every completion token it may."""
    spend = request.get("max_tokens") or 10
    if ASKED in request["messages"][-1]["content"]:
        return Reply(text='{"total": 42}', completion_tokens=spend)
    step = sum(1 for m in request["messages"] if m["role"] == "assistant")
    return Reply(text=cell(f"print('{step}' * 2000)"), completion_tokens=min(spend, 40))


@pytest.mark.parametrize(
    "model, limits, words",
    [
        ("openai/test-model", Limits(max_prompt_tokens=7_000), "prompt token limit"),
        ("openai/test-model", Limits(max_prompt_tokens=12_000), "prompt token limit"),
        ("openai/gpt-4o-mini", Limits(max_cost=0.0012), "cost limit"),
        ("openai/gpt-4o-mini", Limits(max_cost=0.002), "cost limit"),
    ],
    ids=["prompt-tokens-cut", "prompt-tokens", "cost-cut", "cost"],
)
async def test_the_extraction_stays_within_the_limit(server, sessions_dir, model, limits, words):
    """The extraction's trajectory is cut to what is left (prompt tokens, or what the money
    left buys), so its one call cannot pass the limit that stopped the run. (With the first
    limit of each, the root's third turn is refused and the trajectory must be cut.)"""
    server.script(never_answers)
    extract = {"query": "sum it", "on_budget": "extract", "stream": False}
    result = await loopback_run(server, sessions_dir, model, limits, **extract).execute()
    assert result.status == "budget" and words in result.reason, result.reason
    assert result.extracted and result.answer == {"total": 42}
    extraction = server.requests[-1]["messages"]
    assert ASKED in extraction[-1]["content"]
    if limits.max_prompt_tokens is not None:
        assert result.usage.prompt_tokens <= limits.max_prompt_tokens
    if limits.max_cost is not None:
        assert result.usage.cost <= limits.max_cost


async def test_the_extraction_ends_within_the_time_limit(server, sessions_dir):
    """The run stops a quarter early (at most 30 s); an extraction slower than that is given up."""

    def reply(request: dict) -> Reply:
        if ASKED in request["messages"][-1]["content"]:
            return Reply(text='{"total": 42}', delay=6)
        return Reply(text=cell("import time\ntime.sleep(0.5)"))

    server.script(reply)
    extract = {"query": "sum it", "on_budget": "extract", "stream": False}
    limits = Limits(max_time=8)
    result = await loopback_run(
        server, sessions_dir, "openai/test-model", limits, **extract
    ).execute()
    assert result.status == "budget" and "time limit 8 s" in result.reason
    assert not result.extracted and result.elapsed <= 8.5
    notices = (result.session_dir / "events.jsonl").read_text()
    assert "no answer could be extracted in time" in notices
    assert ASKED in server.requests[-1]["messages"][-1]["content"]


def test_an_extraction_s_trajectory_is_cut_to_what_is_left():
    system = {"role": "system", "content": "s" * 4000}
    turns = [system, {"role": "user", "content": "Query: q"}]
    for i in range(6):
        turns += [
            {"role": "assistant", "content": f"a{i}" * 400},
            {"role": "user", "content": f"u{i}" * 400},
        ]
    whole = extraction_messages(turns, "limit", None)
    assert len(whole) == len(turns) and ASKED in whole[-1]["content"]
    for most in (3000, 1500, 900, 30):
        cut = extraction_messages(turns, "limit", None, max_tokens=most)
        assert estimate_tokens(cut) <= most or len(cut[-1]["content"]) < 400
        assert ASKED in cut[-1]["content"] and cut[-1]["role"] == "user"
    first = extraction_messages(turns[:2], "limit", None, max_tokens=10)  # nothing to drop
    assert len(first) == 1 and ASKED in first[0]["content"]
    kept = extraction_messages(turns, "limit", None, max_tokens=1500)
    assert kept[0] == system and kept[1]["content"] == "Query: q"  # the oldest turns went first
    assert kept[2]["role"] == "assistant" and "u5" in kept[-1]["content"]


async def test_the_completion_budget_is_shared_fairly_with_a_floor():
    """Calls started together split what is left (at least 32 tokens each: the others wait
    for the calls in flight to settle); once nothing is left a call is refused."""
    budget = Budget(Limits(max_completion_tokens=200))
    slots = asyncio.Semaphore(16)
    given: list[int | None] = []
    release = asyncio.Event()

    async def call(spend: int) -> None:
        async with budget.reserve("a", slots, Need()) as max_tokens:
            given.append(max_tokens)
            await release.wait()
            budget.record(Usage(completion_tokens=spend, calls=1))

    four = [asyncio.ensure_future(call(10)) for _ in range(4)]
    await asyncio.sleep(0.05)
    assert given == [50, 50, 50, 50]  # 200 among four
    eight = [asyncio.ensure_future(call(10)) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert given[4:] == []  # nothing free: they wait for the four
    release.set()
    await asyncio.gather(*four, *eight)
    assert given[4:9] == [32] * 5  # 160 left among eight is 20: the floor, for five of them
    assert len(given) == 12 and all(g and g >= 1 for g in given[9:])  # the rest, once settled
    assert budget.usage.completion_tokens == 120
    budget.record(Usage(completion_tokens=80, calls=1))
    with pytest.raises(BudgetExceeded, match="completion token limit"):
        async with budget.reserve("a", slots, Need()):
            pass
