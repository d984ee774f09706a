"""`make bench`: run every benchmark script, print one table, keep the JSON in bench/results/.

The machine's own speed is measured before and after (``machine_speed_*``): a fixed pure-Python
loop, in a fresh interpreter. This machine's speed moves by up to 2x from one hour to the next,
and every other figure moves with it; the two figures say which phase a run was in, and whether
it changed during the run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_engine.py",
    "bench_tui.py",
    "bench_first_paint.py",
    "bench_resume.py",
    "bench_scale.py",
    "bench_vs_rlms.py",
    "bench_kernels.py",
    "bench_awaited.py",
    "bench_gateway.py",
    "bench_stream.py",
]
SPEED_CHECK = (
    "import time; t = time.perf_counter(); sum(i * i for i in range(2_000_000)); "
    "print((time.perf_counter() - t) * 1000)"
)
"""A fixed loop of pure Python: milliseconds on this machine's current phase."""

TARGETS = {
    "machine_speed_before_ms": ("(2M-step Python loop)", None),
    "machine_speed_after_ms": ("(the same, after)", None),
    "scripted_4_step_run_whole_replies_s": ("< 0.1 s", 0.1),
    "scripted_4_step_run_streaming_s": ("(streaming)", None),
    "subcall_round_trip_ms": ("< 0.5 ms", 0.5),
    "context_load_40mb_s": ("< 0.3 s", 0.3),
    "ui_loop_lag_p99_ms": ("< 16 ms", 16.0),
    "ui_loop_lag_fanout64_p99_ms": ("< 16 ms", 16.0),
    "ui_stream2mb_cell_log_renders_per_s": ("(while 2 MB stream)", None),
    "first_paint_demo_s": ("<= 0.3 s", 0.3),
    "first_paint_litellm_s": ("<= 0.3 s", 0.3),
    "context_40mb_first_paint_s": ("< 0.1 s", 0.1),
    "context_40mb_regex_first_match_s": ("< 0.05 s", 0.05),
    "resume_200_cells_s": ("< 2 s", 2.0),
    "batched_32x0.3s_subcalls_s": ("< 0.35 s", 0.35),
    "speedup_vs_rlms_local": ("> 5x", None),
    "fanout_64_subagents_pool4_s": ("< 1.5 s", 1.5),
    "trajectory_7_agents_0s_speedup_vs_rlms_local": ("> 5x", None),
    "trajectory_7_agents_0.2s_over_critical_path": ("< 1.1", 1.1),
    "rlm_tui_run_process_over_import_litellm": ("< 1.3", 1.3),
    "kernel_ready_p50_ms": ("< 60 ms", 60.0),
    "kernel_ready_p99_ms": ("< 150 ms", 150.0),
    "gateway_context_40mb_delivery_s": ("<= 1 s", 1.0),
    "reply_2mb_streamed_vs_whole_time_x": ("< 2x", 2.0),
    "reply_2mb_streamed_vs_whole_rss_x": ("< 1.2x", 1.2),
}


def machine_speed() -> float:
    """The speed check's median of 5 fresh interpreters, in milliseconds."""
    times = []
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", SPEED_CHECK], capture_output=True, text=True, check=True
        )
        times.append(float(done.stdout))
    return statistics.median(times)


def main() -> int:
    figures: dict[str, float] = {"machine_speed_before_ms": machine_speed()}
    for script in SCRIPTS:
        print(f"running {script} …", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, str(HERE / script)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            print(f"{script} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        figures |= json.loads(done.stdout)
    figures["machine_speed_after_ms"] = machine_speed()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"{'figure':<40} {'value':>12}  target")
    for name, value in figures.items():
        target, limit = TARGETS.get(name, ("", None))
        mark = "" if limit is None else ("  ok" if value < limit else "  MISSED")
        print(f"{name:<40} {value:>12.4f}  {target}{mark}")
    print(f"\n(written to {out.relative_to(HERE.parent)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
