"""Sub-agent workloads, where every agent is a kernel: rlm-tui against the official `rlms` on one
7-agent, depth-2 trajectory from one loopback server, in the same run (in-process through each
library's Python API, at 0 and 0.2 s of model latency); the same trajectory as a whole
`rlm-tui run` process against a bare `import litellm`; kernel-ready time and memory per kernel.

The trajectory: the root asks one plain `llm_query`, prints 100,000 characters, starts 3
children in one `rlm_query_batched`; each child starts one grandchild with `rlm_query`; the
root answers with `FINAL_VAR` of a nested dict. Its critical path is 5 sequential model calls.
For both libraries the loopback server runs in a process of its own, as a provider does: the
library measured shares no interpreter (and no GIL) with it. `rlms` comes from
bench/bench_vs_rlms.py's virtualenv. Prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from bench_vs_rlms import ensure_rlms, run_driver  # noqa: E402
from loopback import served  # noqa: E402
from openai_server import Reply  # noqa: E402

from rlm_tui.engine.run import Run, RunConfig  # noqa: E402
from rlm_tui.kernel.base import ignore_output  # noqa: E402
from rlm_tui.kernel.pool import LocalKernelPool  # noqa: E402
from rlm_tui.models.litellm_model import LiteLLMModel  # noqa: E402

RUNS = 3
POOL = 4
LATENCIES = (0.0, 0.2)
SEQUENTIAL_CALLS = 5
"""root step 1, its llm_query, a child, a grandchild, root step 2."""
ROOT = (
    "note = llm_query('say hi')\n"
    "print('x' * 100000)\n"
    "parts = rlm_query_batched(['child 1', 'child 2', 'child 3'])\n"
    "result = {'note': note, 'parts': {f'c{i}': p for i, p in enumerate(parts)}}"
)
CHILD = "FINAL({'child': rlm_query('grandchild')})"
GRANDCHILD = "FINAL({'leaf': [1, 2, 3]})"
FINISH = "FINAL_VAR('result')"
# rlms answers through its answer dict, and its sub-agents see their prompt only as `context`:
# every agent's first cell tells by its context who it is
RLMS_FIRST = (
    "if context.startswith('grandchild'):\n"
    "    answer['content'] = str({'leaf': [1, 2, 3]}); answer['ready'] = True\n"
    "elif context.startswith('child'):\n"
    "    answer['content'] = str({'child': rlm_query('grandchild')}); answer['ready'] = True\n"
    "else:\n" + "".join(f"    {line}\n" for line in ROOT.splitlines())
)
RLMS_FINISH = "answer['content'] = str(result)\nanswer['ready'] = True"
RLMS_DRIVER = """
import json, statistics, sys, time
from rlm import RLM
base, runs = sys.argv[1], int(sys.argv[2])
times = []
for i in range(runs + 1):
    rlm = RLM(backend="openai", environment="local", max_iterations=10, max_depth=3,
              backend_kwargs={"model_name": "bench", "base_url": base, "api_key": "sk-bench"})
    started = time.perf_counter()
    out = rlm.completion("bench context", root_prompt="root")
    assert "leaf" in str(out.response), out.response  # the whole trajectory really ran
    if i:
        times.append(time.perf_counter() - started)
print(json.dumps(statistics.median(times)))
"""


RESPONDER = "bench_kernels:responder"
"""The trajectory's server: ``served(RESPONDER, latency, rlms)``."""


def cell(code: str) -> str:
    return f"```repl\n{code}\n```"


def responder(latency: float, rlms: bool = False):
    """Who is asking (root, child, grandchild, a plain query) and at which step."""

    def reply(request: dict) -> Reply:
        messages = request["messages"]
        text = " ".join(str(m.get("content", "")) for m in messages if m["role"] == "user")
        said = sum(1 for m in messages if m["role"] == "assistant")
        if len(messages) == 1 and "say hi" in text:
            return Reply(text="hi", delay=latency)
        if rlms:
            return Reply(text=cell(RLMS_FIRST if said == 0 else RLMS_FINISH), delay=latency)
        if re.search(r"\bgrandchild\b", text):
            code = GRANDCHILD
        elif re.search(r"\bchild \d\b", text):
            code = CHILD
        else:
            code = ROOT if said == 0 else FINISH
        return Reply(text=cell(code), delay=latency)

    return reply


async def rlm_tui_trajectory(latency: float) -> float:
    """Runs on one kernel pool (its template started once), its reserve refilled between."""
    times = []
    with served(RESPONDER, latency) as base_url, tempfile.TemporaryDirectory() as tmp:
        model = LiteLLMModel("openai/bench", api_base=base_url, api_key="sk-bench", stream=False)
        async with LocalKernelPool(size=POOL) as pool:
            for i in range(RUNS + 1):
                await pool.start()
                await asyncio.sleep(0.5)
                config = RunConfig(query="root", sessions_dir=Path(tmp))
                started = time.perf_counter()
                result = await Run(config, model=model, provider=pool).execute()
                assert result.status == "answered", result.reason
                assert result.answer["parts"]["c2"] == {"child": {"leaf": [1, 2, 3]}}
                if i:
                    times.append(time.perf_counter() - started)
        await model.aclose()
    return statistics.median(times)


def rlms_trajectory(python: Path, latency: float) -> float:
    with served(RESPONDER, latency, True) as base_url:
        return run_driver(python, RLMS_DRIVER, base_url, str(RUNS))


def whole_process() -> dict[str, float]:
    """`rlm-tui run` of the trajectory (0 latency) against a bare `import litellm`."""
    bare, ours = [], []
    cli = [sys.executable, "-m", "rlm_tui", "run", "--model", "openai/bench", "--no-stream"]
    with served(RESPONDER, 0.0) as base_url, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        for _ in range(RUNS):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import litellm"], check=True, env=env)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            done = subprocess.run(
                [*cli, "--api-base", base_url, "--sessions-dir", tmp, "root"],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            ours.append(time.perf_counter() - started)
            assert done.returncode == 0 and "leaf" in done.stdout, done.stderr[-2000:]
    return {
        "bare_import_litellm_s": statistics.median(bare),
        "rlm_tui_run_process_s": statistics.median(ours),
        "rlm_tui_run_process_over_import_litellm": statistics.median(ours)
        / statistics.median(bare),
    }


def memory_of(pid: int) -> tuple[float, float]:
    """RSS and unique (USS: private clean + dirty) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields["Rss"] / 1024, (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024


FAILING_CELL = "def total(rows):\n    return sum(r['n'] for r in rows)\n\ntotal([{'n': 1}, {}])"
"""A cell whose error is two frames deep, as a model's often is."""


async def kernels(samples: int = 40, gap: float = 0.2) -> dict[str, float]:
    """Kernel ready for its agent (acquire + setup), one agent every ``gap`` seconds, as agents
    arrive while the reserve refills; then each agent's first cell, one that raises (a model's
    code often does, and each agent's kernel is fresh); a cold fork (no reserve); memory of 8
    live kernels."""
    ready, first_error, cold = [], [], []
    async with LocalKernelPool(size=2) as pool:
        await (await pool.acquire()).shutdown()  # the template is up
        for i in range(samples):
            await asyncio.sleep(gap)
            started = time.perf_counter()
            kernel = await pool.acquire()
            await kernel.setup(str(i), None, "none")
            ready.append(time.perf_counter() - started)
            result = await kernel.execute(FAILING_CELL, ignore_output)
            assert result.status == "error", result
            first_error.append(result.duration)
            await pool.release(kernel)
        live = [await pool.acquire() for _ in range(8)]
        for kernel in live:
            await kernel.setup("m", None, "none")
        memory = [memory_of(k.pid) for k in live if k.pid]
    async with LocalKernelPool(size=0) as pool:
        await (await pool.acquire()).shutdown()
        for i in range(10):
            started = time.perf_counter()
            kernel = await pool.acquire()
            await kernel.setup(str(i), None, "none")
            cold.append(time.perf_counter() - started)
            await pool.release(kernel)
    ready.sort()
    return {
        "kernel_ready_p50_ms": 1000 * statistics.median(ready),
        "kernel_ready_p99_ms": 1000 * ready[min(len(ready) - 1, round(0.99 * len(ready)))],
        "kernel_first_error_cell_p50_ms": 1000 * statistics.median(first_error),
        "kernel_cold_fork_p50_ms": 1000 * statistics.median(cold),
        "kernel_rss_mb": statistics.median(m[0] for m in memory),
        "kernel_unique_mb": statistics.median(m[1] for m in memory),
    }


def main() -> None:
    python = ensure_rlms()
    figures: dict[str, float] = {}
    for latency in LATENCIES:
        ours = asyncio.run(rlm_tui_trajectory(latency))
        theirs = rlms_trajectory(python, latency)
        tag = f"{latency:g}s"
        figures[f"trajectory_7_agents_{tag}_rlm_tui_s"] = ours
        figures[f"trajectory_7_agents_{tag}_rlms_local_s"] = theirs
        figures[f"trajectory_7_agents_{tag}_speedup_vs_rlms_local"] = theirs / ours
        if latency:
            figures[f"trajectory_7_agents_{tag}_over_critical_path"] = ours / (
                SEQUENTIAL_CALLS * latency
            )
    figures |= whole_process()
    figures |= asyncio.run(kernels())
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
