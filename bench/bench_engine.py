"""Engine figures: a 4-step scripted run against a loopback server, the sub-call round trip,
and loading a 40 MB context into a kernel. Prints JSON (medians, seconds unless named _ms)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openai_server import OpenAIServer, Reply  # noqa: E402

from rlm_tui.engine.run import Run, RunConfig  # noqa: E402
from rlm_tui.kernel.bridge import BridgeServer  # noqa: E402
from rlm_tui.kernel.pool import LocalKernelPool  # noqa: E402
from rlm_tui.models.litellm_model import LiteLLMModel  # noqa: E402

STEPS = [
    "```repl\nprint(len(context), context[:200])\n```",
    "```repl\nanswers = llm_query_batched(['summarise part 1', 'summarise part 2', 'summarise part 3'])\nprint(answers)\n```",
    "```repl\nresult = {f'part {i + 1}': a for i, a in enumerate(answers)}\nprint(len(result))\n```",
    "```repl\nFINAL_VAR('result')\n```",
]


def scripted(request: dict) -> Reply:
    messages = request["messages"]
    if len(messages) == 1:  # an llm_query
        return Reply(text="a short summary")
    step = sum(1 for m in messages if m["role"] == "assistant")
    return Reply(text=STEPS[min(step, len(STEPS) - 1)])


async def scripted_run(stream: bool, runs: int = 9) -> dict[str, float]:
    times = []
    with OpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.script(scripted)
        pool = LocalKernelPool(size=1)
        await pool.start()
        model = LiteLLMModel(
            "openai/bench", api_base=server.base_url, api_key="sk-bench", stream=stream
        )
        for i in range(runs + 1):
            await pool.start()
            await asyncio.sleep(0.6)  # the next kernel is warm, as in a pool that keeps ahead
            config = RunConfig(query="bench", context_value="x" * 10_000, sessions_dir=Path(tmp))
            started = time.perf_counter()
            result = await Run(config, model=model, provider=pool).execute()
            elapsed = time.perf_counter() - started
            assert result.status == "answered", result.reason
            if i:  # the first run pays for importing litellm
                times.append(elapsed)
        await pool.close()
    name = "streaming" if stream else "whole_replies"
    return {f"scripted_4_step_run_{name}_s": statistics.median(times)}


async def subcall_round_trip(calls: int = 2000) -> dict[str, float]:
    async def handler(agent: str, op: str, args: dict) -> dict:
        return {"text": "ok"}

    bridge = BridgeServer(handler)
    await bridge.start()
    async with LocalKernelPool(size=0) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none", bridge.grant("0"))
        out: list[str] = []
        code = (
            "import time\nllm_query('warm')\nt = time.perf_counter()\n"
            f"for _ in range({calls}): llm_query('x')\n"
            f"print((time.perf_counter() - t) / {calls})"
        )
        await kernel.execute(code, lambda _s, text: out.append(text))
    await bridge.close()
    return {"subcall_round_trip_ms": float("".join(out)) * 1000}


async def context_load(megabytes: int = 40, repeats: int = 3) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "context.txt"
        line = "the quick brown fox jumps over the lazy dog 0123456789\n"
        path.write_text(line * (megabytes * 1024 * 1024 // len(line)))
        times = []
        async with LocalKernelPool(size=0) as pool:
            for _ in range(repeats):
                kernel = await pool.acquire()
                started = time.perf_counter()
                await kernel.setup("0", path, "text")
                times.append(time.perf_counter() - started)
                await pool.release(kernel)
    return {f"context_load_{megabytes}mb_s": statistics.median(times)}


async def main() -> None:
    figures: dict[str, float] = {}
    figures |= await scripted_run(stream=False)
    figures |= await scripted_run(stream=True)
    figures |= await subcall_round_trip()
    figures |= await context_load()
    print(json.dumps({k: round(v, 5) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
