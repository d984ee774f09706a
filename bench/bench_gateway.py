"""Gateway figures: the same runs with kernels on a loopback Jupyter Kernel Gateway and on local
kernels, side by side; kernel start and memory through the gateway; cell and sub-call round
trips; delivering a 40 MB context to a gateway kernel. Prints JSON (seconds unless named)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway_fixture import start_gateway  # noqa: E402
from openai_server import OpenAIServer, Reply  # noqa: E402
from scripted import cell  # noqa: E402

from rlm_tui.engine.run import Run, RunConfig  # noqa: E402
from rlm_tui.kernel.bridge import BridgeServer  # noqa: E402
from rlm_tui.kernel.gateway import Gateway, GatewayKernelProvider  # noqa: E402
from rlm_tui.kernel.pool import LocalKernelPool  # noqa: E402

SEVEN = {
    "root": [
        cell("parts = rlm_query_batched(['mid A', 'mid B'])\nnote = llm_query('sum up')"),
        cell("FINAL({'parts': parts, 'note': note})"),
    ],
    "mid": [cell("FINAL(rlm_query_batched(['leaf 1', 'leaf 2']))")],
    "leaf": [cell("FINAL(sum(range(10)))")],
}
"""A trajectory of 7 agents: the root, 2 sub-agents, 4 below them; and one plain sub-call."""


def query_of(request: dict) -> str:
    messages = request["messages"]
    return "" if len(messages) == 1 else messages[1]["content"].split("\n", 1)[0][7:]


def seven_agents(request: dict) -> Reply:
    query = query_of(request)
    if not query:
        return Reply(text="summed up")
    script = SEVEN[query.split()[0]]
    step = sum(1 for m in request["messages"] if m["role"] == "assistant")
    return Reply(text=script[min(step, len(script) - 1)])


def fan_out(children: int):
    def responder(request: dict) -> Reply:
        if query_of(request) == "root":
            step = sum(1 for m in request["messages"] if m["role"] == "assistant")
            code = f"r = rlm_query_batched(['leaf'] * {children})\nFINAL(len(r))"
            return Reply(text=cell(code) if step == 0 else cell("FINAL(0)"))
        return Reply(text=cell("FINAL(1)"))

    return responder


async def timed_run(responder, tmp: Path, **config) -> float:
    with OpenAIServer() as server:
        server.script(responder)
        run = Run(
            RunConfig(
                query="root",
                model="openai/bench",
                api_base=server.base_url,
                sessions_dir=tmp,
                stream=False,
                **config,
            )
        )
        started = time.perf_counter()
        result = await run.execute()
        assert result.status == "answered", result.reason
        return time.perf_counter() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def kernels(gateway: Gateway, tmp: Path, starts: int = 5) -> dict[str, float]:
    """Start time and memory of gateway kernels next to local ones; cell and sub-call trips."""

    async def handler(agent: str, op: str, args: dict) -> dict:
        return {"text": "ok"}

    bridge = BridgeServer(handler, tcp_host="127.0.0.1")
    await bridge.start()
    figures: dict[str, float] = {}
    providers = {
        "gateway": GatewayKernelProvider(gateway, bridge, size=0),
        "local": LocalKernelPool(size=0),
    }
    context = tmp / "context.txt"
    line = "the quick brown fox jumps over the lazy dog 0123456789\n"
    context.write_text(line * (40 * 1024 * 1024 // len(line)))

    def grant(name: str) -> dict[str, str]:
        """Local kernels (sandboxed: no network) reach the bridge by its Unix socket."""
        given = bridge.grant("0")
        return given if name == "gateway" else {k: given[k] for k in ("path", "token")}

    for name, provider in providers.items():
        await provider.start()
        times, memory = [], []
        for _ in range(starts):
            started = time.perf_counter()
            kernel = await provider.acquire()
            await kernel.setup("0", None, "none", grant(name))
            times.append(time.perf_counter() - started)
            memory.append(rss_mb(kernel.pid))
            await provider.release(kernel)
        figures[f"{name}_kernel_start_s"] = statistics.median(times)
        figures[f"{name}_kernel_rss_mb"] = statistics.median(memory)
        kernel = await provider.acquire()
        await kernel.setup("0", None, "none", grant(name))
        started = time.perf_counter()
        for _ in range(20):
            await kernel.execute("1", lambda _s, _t: None)
        figures[f"{name}_cell_round_trip_ms"] = (time.perf_counter() - started) / 20 * 1000
        out: list[str] = []
        code = (
            "import time\nllm_query('warm')\nt = time.perf_counter()\n"
            "for _ in range(1000): llm_query('x')\nprint((time.perf_counter() - t) / 1000)"
        )
        await kernel.execute(code, lambda _s, text, out=out: out.append(text))
        transport = "tcp" if name == "gateway" else "unix"
        figures[f"subcall_round_trip_{transport}_ms"] = float("".join(out)) * 1000
        if name == "gateway":
            started = time.perf_counter()
            await kernel.setup("0", context, "text", grant(name))
            figures["gateway_context_40mb_delivery_s"] = time.perf_counter() - started
        await provider.close()
    await bridge.close()
    return figures


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        process, loopback = start_gateway(tmp / "gateway.log")
        try:
            gateway = Gateway(loopback.url, loopback.token)
            figures = await kernels(gateway, tmp)
            on_gateway = {"kernel_gateway": loopback.url, "pool_size": 2}
            os.environ["JUPYTER_GATEWAY_AUTH_TOKEN"] = loopback.token
            for name, config in (("gateway", on_gateway), ("local", {"pool_size": 2})):
                await timed_run(seven_agents, tmp, **config)  # warm: imports, first kernels
                figures[f"seven_agent_trajectory_{name}_s"] = await timed_run(
                    seven_agents, tmp, **config
                )
                figures[f"fanout_32_subagents_{name}_s"] = await timed_run(
                    fan_out(32), tmp, **config
                )
            left = loopback.kernels()
            assert not left, f"kernels left on the gateway: {left}"
        finally:
            process.terminate()
            process.wait(30)
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
