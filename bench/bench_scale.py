"""Scale figures: fan-out to 64 sub-agents (with its CPU an agent: on the host, in each kernel's
whole life, in the template), 32 batched sub-calls, and contexts from 0 to 400 MB. Prints JSON. `--pool N` sets the warm kernel pool for the fan-out (default 4),
`--max-concurrency N` the model calls at once (default: the run's default). The fan-out runs
after the batched run in the same process, as a second run of a session would: it forks from
the kernel template the first run started. Each server runs in a process of its own, as a
provider does (``loopback``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loopback import served  # noqa: E402
from openai_server import OpenAIServer, Reply  # noqa: E402
from scripted import cell  # noqa: E402

from rlm_tui.engine.run import Run, RunConfig  # noqa: E402
from rlm_tui.events import CellFinished, KernelEvent, ModelRequest  # noqa: E402
from rlm_tui.kernel.zygote import children  # noqa: E402


def step_of(request: dict) -> int:
    return sum(1 for m in request["messages"] if m["role"] == "assistant")


async def run_against(base_url: str, tmp: Path, **config) -> tuple[Run, list]:
    events: list = []
    run = Run(
        RunConfig(
            query=config.pop("query", "root"),
            model="openai/bench",
            api_base=base_url,
            sessions_dir=tmp,
            stream=False,
            **config,
        )
    )
    run.subscribe(events.append)
    result = await run.execute()
    assert result.status == "answered", result.reason
    return run, events


FAN_OUT = "bench_scale:fan_out_responder"
"""The fan-out's server, in a process of its own (``loopback``): ``served(FAN_OUT, children,
latency)``."""


def fan_out_responder(children: int, latency: float) -> Callable[[dict], Reply]:
    """The root (query "root") starts ``children`` sub-agents in one batch; each answers 1."""

    def responder(request: dict) -> Reply:
        query = request["messages"][1]["content"]
        if "Query: root" in query:
            code = f"r = rlm_query_batched(['leaf'] * {children})\nFINAL(len(r))"
            return Reply(
                text=cell(code) if step_of(request) == 0 else cell("FINAL(0)"), delay=latency
            )
        return Reply(text=cell("FINAL(1)"), delay=latency)

    return responder


async def fan_out(
    pool: int, max_concurrency: int | None, children: int = 64, latency: float = 0.2
) -> dict[str, float]:
    with served(FAN_OUT, children, latency) as url, tempfile.TemporaryDirectory() as tmp:
        started, host, busy = time.perf_counter(), time.process_time(), machine_busy()
        limit = {} if max_concurrency is None else {"max_concurrency": max_concurrency}
        tag = "" if max_concurrency is None else f"_concurrency{max_concurrency}"
        templates = templates_cpu()
        _, events = await run_against(url, Path(tmp), pool_size=pool, **limit)
        wall = time.perf_counter() - started
        host, busy = time.process_time() - host, machine_busy() - busy
        await asyncio.sleep(1)  # the ended kernels' teardown, after the answer
        (own, lives), (own_before, lives_before) = templates_cpu(), templates
        own, lives = own - own_before, lives - lives_before
    kernels = sum(1 for e in events if isinstance(e, KernelEvent) and e.what == "started")
    return {
        f"fanout_{children}_subagents_pool{pool}{tag}_s": wall,
        "fanout_ideal_s": 2 * latency,
        "fanout_kernels_started": float(kernels),
        "fanout_host_cpu_s": host,
        "fanout_machine_cpu_s": busy,
        "fanout_cpu_floor_s": busy / (os.cpu_count() or 1),
        "fanout_host_cpu_per_agent_ms": 1000 * host / kernels,
        "fanout_kernel_life_cpu_per_agent_ms": 1000 * lives / kernels,
        "fanout_template_cpu_per_agent_ms": 1000 * own / kernels,
    }


def templates_cpu() -> tuple[float, float]:
    """CPU seconds of this process's kernel templates: their own, and those of the children
    they reaped (each kernel's whole life, from its fork to its end, with its keeper's in the
    sandbox and what its cells started)."""
    own = lives = 0.0
    for pid in descendants(os.getpid()):
        stat = read_stat(pid)
        if stat and is_template_or_fork(pid) and not is_template_or_fork(stat[1]):
            ticks = [int(n) / os.sysconf("SC_CLK_TCK") for n in stat[11:15]]
            own, lives = own + ticks[0] + ticks[1], lives + ticks[2] + ticks[3]
    return own, lives


def read_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the name (state, ppid, ...), None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_template_or_fork(pid: int | str) -> bool:
    """A Python process running the template module (not the bwrap that starts it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return TEMPLATE_MODULE in argv and name != "bwrap"


TEMPLATE_MODULE = b"rlm_tui.kernel.zygote"


def descendants(pid: int) -> set[int]:
    found, todo = set[int](), [pid]
    while todo:
        for child in children(todo.pop()) - found:
            found.add(child)
            todo.append(child)
    return found


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``): what a fan-out costs
    the whole machine, its kernels and template included, and so the wall time it cannot beat."""
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait; then irq, softirq (steal: another VM's)
    return (sum(ticks[:7]) - idle) / os.sysconf("SC_CLK_TCK")


BATCHED = "bench_scale:batched_responder"
"""The batched run's server, in a process of its own (``loopback``): ``served(BATCHED, calls,
latency)``; in the measured process its 32 threads took the GIL from the loop."""


def batched_responder(calls: int, latency: float) -> Callable[[dict], Reply]:
    """The root's one cell asks ``calls`` plain sub-calls at once; each answers after ``latency``."""

    def responder(request: dict) -> Reply:
        if len(request["messages"]) == 1:
            return Reply(text="ok", delay=latency)
        code = f"a = llm_query_batched(['q'] * {calls})\nFINAL(len(a))"
        return Reply(text=cell(code))

    return responder


async def batched(calls: int = 32, latency: float = 0.3) -> dict[str, float]:
    with served(BATCHED, calls, latency) as url, tempfile.TemporaryDirectory() as tmp:
        _, events = await run_against(url, Path(tmp))
    cell_time = next(e.duration for e in events if isinstance(e, CellFinished))
    return {f"batched_{calls}x{latency}s_subcalls_s": cell_time}


def context_scale_child(megabytes: int) -> None:
    """In a fresh process: time to the first model request, kernel and host memory."""

    async def main() -> dict[str, float]:
        with OpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "context.txt"
            line = "a line of the context, long enough to be realistic 0123456789\n"
            with open(path, "w") as f:
                for _ in range(megabytes):
                    f.write(line * (1024 * 1024 // len(line)))
            server.script(
                lambda request: Reply(
                    text=cell("import os\nprint(os.getpid())\nFINAL(len(context))")
                )
            )
            run = Run(
                RunConfig(
                    query="q",
                    context_file=str(path),
                    model="openai/bench",
                    api_base=server.base_url,
                    sessions_dir=Path(tmp),
                    stream=False,
                )
            )
            first: list[float] = []
            kernel_rss: list[float] = []

            def watch(event: object) -> None:
                if isinstance(event, ModelRequest) and not first:
                    first.append(time.perf_counter())
                if isinstance(event, KernelEvent) and event.what == "started" and not kernel_rss:
                    pid = int(event.reason.split()[-1])  # "pid N": its context is loaded
                    status = Path(f"/proc/{pid}/status").read_text()
                    rss = next(line for line in status.splitlines() if line.startswith("VmRSS"))
                    kernel_rss.append(int(rss.split()[1]) / 1024)

            run.subscribe(watch)
            started = time.perf_counter()
            await run.execute()
            return {
                f"context_{megabytes}mb_first_request_s": first[0] - started,
                f"context_{megabytes}mb_kernel_rss_mb": kernel_rss[0],
                f"context_{megabytes}mb_host_peak_rss_mb": resource.getrusage(
                    resource.RUSAGE_SELF
                ).ru_maxrss
                / 1024,
            }

    print(json.dumps(asyncio.run(main())))


def context_scale(sizes: list[int]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for size in sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--context-child", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures |= json.loads(done.stdout.strip().splitlines()[-1])
    return figures


async def main(pool: int, max_concurrency: int | None, sizes: list[int]) -> None:
    figures = await batched()
    figures |= await fan_out(pool, max_concurrency)
    figures |= context_scale(sizes)
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, help="model calls at once")
    parser.add_argument("--sizes", default="0,10,40,400", help="context sizes in MB")
    parser.add_argument("--context-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.context_child is not None:
        context_scale_child(args.context_child)
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        asyncio.run(main(args.pool, args.max_concurrency, sizes))
