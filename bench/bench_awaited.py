"""Awaited helpers overlap: 4 llm_query calls of 0.5 s latency from one cell, gathered with
await, against the same 4 as plain calls, through the engine and real litellm on a loopback
server. Prints JSON (seconds of the cell)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openai_server import OpenAIServer, Reply  # noqa: E402

from rlm_tui.engine.run import Run, RunConfig  # noqa: E402
from rlm_tui.events import CellFinished, Event  # noqa: E402

LATENCY = 0.5
CELLS = {
    "gathered": "import asyncio\nr = await asyncio.gather(*[llm_query(str(i)) for i in range(4)])",
    "plain": "r = [llm_query(str(i)) for i in range(4)]",
}


async def cell_time(code: str, server: OpenAIServer, sessions: Path) -> float:
    def reply(request: dict) -> Reply:
        if request["messages"][0]["role"] != "system":
            return Reply(text="ok", delay=LATENCY)
        step = sum(1 for m in request["messages"] if m["role"] == "assistant")
        return Reply(text=f"```repl\n{code}\n```" if step == 0 else "FINAL('done')")

    server.script(reply)
    config = RunConfig(
        query="bench",
        model="openai/test-model",
        api_base=server.base_url,
        stream=False,
        sessions_dir=sessions,
    )
    events: list[Event] = []
    run = Run(config)
    run.subscribe(events.append)
    await run.execute()
    return next(e.duration for e in events if isinstance(e, CellFinished))


async def main() -> None:
    with OpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        figures = {name: await cell_time(code, server, Path(tmp)) for name, code in CELLS.items()}
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    asyncio.run(main())
