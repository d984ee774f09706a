"""History compaction: past --compact-at, earlier turns become a model-written summary."""

from __future__ import annotations

import pytest
from openai_server import OpenAIServer, Reply
from scripted import cell

from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import HistoryCompacted, ModelRequest
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


def long_trajectory(request: dict) -> Reply:
    messages = request["messages"]
    if "Summarise your work so far" in messages[-1]["content"]:
        return Reply(text="SUMMARY: made part_1 .. part_3, each 900 x's")
    step = sum(1 for m in messages if m["role"] == "assistant" and "SUMMARY" not in m["content"])
    if "SUMMARY" in str(messages) or step >= 5:
        return Reply(text=cell("FINAL(len(part_1) + len(part_3))"))
    return Reply(text=cell(f"part_{step + 1} = 'x' * 900\nprint(part_{step + 1})"))


async def test_a_long_history_is_compacted_and_the_next_request_is_shorter(sessions_dir):
    with OpenAIServer() as server:
        server.script(long_trajectory)
        config = RunConfig(
            query="make parts",
            model="openai/test-model",
            api_base=server.base_url,
            stream=False,
            compact_at=700,
            sessions_dir=sessions_dir,
        )
        result = await Run(config).execute()
        requests = list(server.requests)
    assert result.status == "answered", result.reason
    assert result.answer == 1800, "the kernel kept the variables made before the compaction"
    events = read_session(result.session_dir).events
    compacted = [e for e in events if isinstance(e, HistoryCompacted)]
    assert len(compacted) == 1
    event = compacted[0]
    assert event.summary.startswith("SUMMARY") and event.tokens_after < event.tokens_before
    purposes = [e.purpose for e in events if isinstance(e, ModelRequest)]
    at = purposes.index("compact")
    before, after = requests[at - 1]["messages"], requests[at + 1]["messages"]
    assert len(after) == 4 < len(before)
    assert sum(len(m["content"]) for m in after) < sum(len(m["content"]) for m in before)
    assert "SUMMARY" in after[2]["content"]
