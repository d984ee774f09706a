"""rlm-tui against the official `rlms` library, on one scripted trajectory from one loopback
server, in the same run: peek at the context, 3 batched sub-calls, build a dict, answer.

`rlms` is installed by this script into its own virtualenv (bench/.rlms-venv, git-ignored) and
driven there with its local and its IPython environments. Prints JSON: medians and ratios.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from openai_server import OpenAIServer, Reply  # noqa: E402

from rlm_tui.engine.run import Run, RunConfig  # noqa: E402
from rlm_tui.kernel.pool import LocalKernelPool  # noqa: E402
from rlm_tui.models.litellm_model import LiteLLMModel  # noqa: E402

VENV = HERE / ".rlms-venv"
RUNS = 7
STEPS = [
    "```repl\nprint(len(context), context[:200])\n```",
    "```repl\nanswers = llm_query_batched(['summarise part 1', 'summarise part 2', "
    "'summarise part 3'])\nprint(answers)\n```",
    "```repl\nresult = {f'part {i + 1}': a for i, a in enumerate(answers)}\nprint(len(result))\n```",
    "```repl\nanswer['content'] = result\nanswer['ready'] = True\n```",
]

RLMS_DRIVER = """
import json, statistics, sys, time
from rlm import RLM
base, environment, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for i in range(runs + 1):
    rlm = RLM(backend="openai", environment=environment, max_iterations=10,
              backend_kwargs={"model_name": "bench", "base_url": base, "api_key": "sk-bench"})
    started = time.perf_counter()
    out = rlm.completion("x" * 10000, root_prompt="bench")
    assert "part 3" in str(out.response), out.response  # the scripted trajectory really ran
    if i:
        times.append(time.perf_counter() - started)
print(json.dumps(statistics.median(times)))
"""


def scripted(request: dict) -> Reply:
    """Answer by how many of the script's replies the conversation already holds."""
    messages = request["messages"]
    if len(messages) == 1:
        return Reply(text="a short summary")
    said = sum(1 for m in messages if m["role"] == "assistant" and m.get("content") in STEPS)
    return Reply(text=STEPS[min(said, len(STEPS) - 1)])


def ensure_rlms() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print("installing rlms into bench/.rlms-venv …", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "rlms==0.1.3", "ipykernel"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"could not install rlms:\n{done.stderr[-3000:]}")
    return python


async def rlm_tui_run(server: OpenAIServer) -> float:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        pool = LocalKernelPool(size=1)
        await pool.start()
        model = LiteLLMModel(
            "openai/bench", api_base=server.base_url, api_key="sk-bench", stream=False
        )
        for i in range(RUNS + 1):
            await pool.start()
            await asyncio.sleep(0.6)
            config = RunConfig(query="bench", context_value="x" * 10000, sessions_dir=Path(tmp))
            started = time.perf_counter()
            result = await Run(config, model=model, provider=pool).execute()
            assert result.status == "answered", result.reason
            if i:
                times.append(time.perf_counter() - started)
        await pool.close()
    return statistics.median(times)


def run_driver(python: Path, driver: str, *args: str) -> float:
    """Run a driver script in rlms's virtualenv; it prints one figure last."""
    done = subprocess.run(
        [str(python), "-c", driver, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"rlms ({' '.join(args)}) failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def rlms_run(python: Path, server: OpenAIServer, environment: str) -> float:
    return run_driver(python, RLMS_DRIVER, server.base_url, environment, str(RUNS))


def main() -> None:
    python = ensure_rlms()
    with OpenAIServer() as server:
        server.script(scripted)
        ours = asyncio.run(rlm_tui_run(server))
        local = rlms_run(python, server, "local")
        ipython = rlms_run(python, server, "ipython")
    print(
        json.dumps(
            {
                "rlm_tui_scripted_run_s": round(ours, 4),
                "rlms_local_scripted_run_s": round(local, 4),
                "rlms_ipython_scripted_run_s": round(ipython, 4),
                "speedup_vs_rlms_local": round(local / ours, 2),
                "speedup_vs_rlms_ipython": round(ipython / ours, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
