"""Helpers usable both ways on real kernels: real fast-rlm cells, awaited and gathered calls,
with the same values as plain calls, overlapping on the host, under the budget and the gate."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply
from scripted import ScriptedModel, cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import CellFinished, CellPaused, Event, SubcallFinished, SubcallStarted
from rlm_tui.models.base import CallInfo, Completion, DeltaCallback, Message

pytestmark = pytest.mark.timeout(120)

FIXTURES = Path("shared") / "fixtures" / "fast-rlm-logs"
"""Read in place from ``shared/`` beside the clone (or beside the worktrees' folder)."""
FAST_RLM_LOGS = next(
    (p / FIXTURES for p in Path(__file__).resolve().parents if (p / FIXTURES).is_dir()), FIXTURES
)
SCAFFOLD_ERRORS = (
    "can't be used in 'await' expression",
    "name 'llm_query' is not defined",
    "name 'rlm_query' is not defined",
    "name 'llm_query_batched' is not defined",
    "name 'rlm_query_batched' is not defined",
    "name 'FINAL' is not defined",
    "name 'FINAL_VAR' is not defined",
    "coroutine",
)


def logged_cells(log: Path) -> list[str]:
    """The root agent's cells, then every sub-agent's (where the logs' models used await)."""
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    cells = [e for e in entries if e.get("code", "").strip()]
    return [e["code"] for e in sorted(cells, key=lambda e: e["depth"] > 0)]


@pytest.mark.parametrize(
    "log", sorted(FAST_RLM_LOGS.glob("*.jsonl")) or [FAST_RLM_LOGS], ids=lambda p: p.name[:20]
)
async def test_real_fast_rlm_cells_run_without_a_scaffold_error(log: Path, sessions_dir: Path):
    assert log.is_file(), f"the fast-rlm logs are missing: {FAST_RLM_LOGS}"
    cells = logged_cells(log)
    assert cells, f"no cells in {log}"
    agent_calls = iter(range(len(cells) + 1))
    lock = threading.Lock()

    def reply(request: dict) -> Reply:
        if request["messages"][0]["role"] != "system":  # an llm_query
            return Reply(text="Fjord rolled 3 times. Answer: 3")
        with lock:
            n = next(agent_calls, len(cells))
        return Reply(text=cell(cells[n]) if n < len(cells) else 'FINAL("replayed")')

    context = "Travis: I roll a 15.\nMatt: Fjord, make a perception check.\n" * 400
    with OpenAIServer() as server:
        server.script(reply)
        config = RunConfig(
            query="replay",
            context_value=context,
            model="openai/test-model",
            api_base=server.base_url,
            stream=False,
            limits=Limits(max_iterations=len(cells) + 2),
            cell_timeout=30,
            sessions_dir=sessions_dir,
        )
        events: list[Event] = []
        run = Run(config)
        run.subscribe(events.append)
        result = await run.execute()
    assert result.status == "answered", result.reason
    finished = [e for e in events if isinstance(e, CellFinished)]
    assert len(finished) == len(cells)
    for event in finished:
        text = f"{event.error or ''}\n{event.output}"
        for needle in SCAFFOLD_ERRORS:
            assert needle not in text, f"{event.cell_id}: {text[-600:]}"
    awaited = sum("await llm_query" in c for c in cells)
    answered = [e for e in events if isinstance(e, SubcallFinished) and e.ok]
    assert len(answered) >= awaited


class SlowQueries(ScriptedModel):
    """llm_query replies take a while, so overlapping calls show in the order of events."""

    async def complete(
        self, messages: list[Message], info: CallInfo, on_delta: DeltaCallback | None = None
    ) -> Completion:
        if info.purpose == "llm_query":
            await asyncio.sleep(0.3)
        return await super().complete(messages, info, on_delta)


BOTH_WAYS = """\
import asyncio
plain = [llm_query("a"), llm_query("b")]
awaited = [await llm_query("a"), await llm_query("b")]
gathered = list(await asyncio.gather(*[llm_query(p) for p in "ab"]))
tasks = [rlm_query("sub one", context="x"), rlm_query("sub two")]
subs = await asyncio.gather(*tasks)
plain_subs = [rlm_query("sub one", context="x"), rlm_query("sub two")]
batched = [await llm_query_batched(["a", "b"]), llm_query_batched(["a", "b"])]
FINAL({"plain": plain, "awaited": awaited, "gathered": gathered, "subs": subs,
       "plain_subs": plain_subs, "batched": batched})"""

SUBS = {
    "sub one": [cell("FINAL({'got': context})")],
    "sub two": [cell("FINAL([1, 2])")],
}


def spans(events: list[Event], kind: str) -> list[tuple[int, int]]:
    """(seq started, seq finished) of each sub-call of a kind."""
    started = {e.call_id: e.seq for e in events if isinstance(e, SubcallStarted) and e.kind == kind}
    return [
        (started[e.call_id], e.seq)
        for e in events
        if isinstance(e, SubcallFinished) and e.call_id in started
    ]


async def test_awaited_and_gathered_helpers_give_the_plain_values_and_overlap(sessions_dir):
    model = SlowQueries({"both": [cell(BOTH_WAYS)], **SUBS})
    run = Run(RunConfig(query="both", sessions_dir=sessions_dir, pool_size=2), model=model)
    events: list[Event] = []
    run.subscribe(events.append)
    result = await run.execute()
    assert result.status == "answered", result.reason
    answer = result.answer
    echoes = ["echo: a", "echo: b"]
    assert answer["plain"] == answer["awaited"] == answer["gathered"] == echoes
    assert answer["subs"] == answer["plain_subs"] == [{"got": "x"}, [1, 2]]
    assert answer["batched"] == [echoes, echoes]
    queries = spans(events, "llm_query")
    # plain then awaited one by one: each ends before the next starts; gathered: both start first
    assert queries[0][1] < queries[1][0] and queries[2][1] < queries[3][0]
    gathered = queries[4:6]
    assert max(s for s, _ in gathered) < min(f for _, f in gathered)
    subs = spans(events, "rlm_query")
    assert max(s for s, _ in subs[:2]) < min(f for _, f in subs[:2])
    assert subs[2][1] < subs[3][0]


async def test_awaited_calls_are_held_at_the_gate_and_counted_in_the_budget(
    sessions_dir, start_run
):
    code = "import asyncio\nr = await asyncio.gather(rlm_query('sub one', 'x'), rlm_query('sub two'))\nFINAL(r)"
    model = ScriptedModel({"gate": [cell(code)], **SUBS})
    run = Run(
        RunConfig(query="gate", sessions_dir=sessions_dir),
        model=model,
        breakpoints=Breakpoints(subagent_start=True),
    )
    held: list[str] = []
    both = asyncio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, CellPaused):
            held.append(event.cell_id)
            if len(held) == 2:
                both.set()

    run.subscribe(watch)
    await start_run(run)
    await asyncio.wait_for(both.wait(), 30)
    assert sorted(held) == ["0.1", "0.2"]
    assert all(a.status == "running" and a.step == 0 for k, a in run.agents.items() if k != "0")
    run.set_breakpoints(Breakpoints())
    run.resume()
    result = await run.wait()
    assert result.answer == [{"got": "x"}, [1, 2]]

    gathered = "import asyncio\nr = await asyncio.gather(*[llm_query(str(i)) for i in range(4)])"
    limited = Run(
        RunConfig(
            query="gather",
            sessions_dir=sessions_dir,
            limits=Limits(max_calls=3),
            on_budget="stop",
        ),
        model=SlowQueries({"gather": [cell(gathered)]}),
    )
    result = await limited.execute()
    assert result.status == "budget" and "model call limit 3" in result.reason
    assert result.usage.calls <= 5  # exactly 3 once the budget holds under concurrency (issue10)


class StuckQueries(ScriptedModel):
    async def complete(
        self, messages: list[Message], info: CallInfo, on_delta: DeltaCallback | None = None
    ) -> Completion:
        if info.purpose == "llm_query":
            await asyncio.sleep(60)
        return await super().complete(messages, info, on_delta)


async def test_interrupting_awaited_calls_cancels_them_on_the_host(sessions_dir, start_run):
    stuck = "import asyncio\nr = await asyncio.gather(llm_query('a'), llm_query('b'))"
    model = StuckQueries({"stuck": [cell(stuck), cell("FINAL(await llm_query_batched([]))")]})
    run = Run(RunConfig(query="stuck", sessions_dir=sessions_dir), model=model)
    events: list[Event] = []
    both = asyncio.Event()

    def watch(event: Event) -> None:
        events.append(event)
        if sum(isinstance(e, SubcallStarted) for e in events) == 2:
            both.set()

    run.subscribe(watch)
    await start_run(run)
    await asyncio.wait_for(both.wait(), 30)
    await run.interrupt("0")
    result = await asyncio.wait_for(run.wait(), 30)
    assert result.status == "answered" and result.answer == []
    cell_1 = next(e for e in events if isinstance(e, CellFinished))
    assert cell_1.status != "ok" and "CancelledError" in (cell_1.error or "") + cell_1.output
    finished = [e for e in events if isinstance(e, SubcallFinished)]
    assert len(finished) == 2 and not any(e.ok for e in finished)
