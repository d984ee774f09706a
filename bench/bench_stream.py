"""A 2 MB model reply streamed against the same reply whole: wall time and peak host memory.

Each mode runs in its own process (peak RSS is per process) against one loopback server;
the streamed run should stay within 2x the time and 1.2x the memory of the whole one, and
its session within a few delta lines a second. ``BENCH_STREAM_MB`` sets the size (default 2).
Prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openai_server import OpenAIServer, Reply  # noqa: E402

MB = float(os.environ.get("BENCH_STREAM_MB", "2"))


def reply_text() -> str:
    """Varied lines (litellm stops a stream that repeats one piece), then the answer's cell."""
    lines = int(MB * 1024 * 1024 / 16)
    body = "".join(f"{i:015d}\n" for i in range(lines))
    return body + "```repl\nFINAL('done')\n```"


async def child(mode: str, api_base: str) -> None:
    from rlm_tui.engine.run import Run, RunConfig

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            query="q",
            model="openai/bench",
            api_base=api_base,
            sessions_dir=Path(tmp),
            stream=mode == "streamed",
            pool_size=0,
        )
        started = time.perf_counter()
        result = await Run(config).execute()
        elapsed = time.perf_counter() - started
        assert result.status == "answered", result.reason
        assert result.session_dir is not None
        session = result.session_dir / "events.jsonl"
        lines = session.read_text().count('"model_delta"')
        print(
            json.dumps(
                {
                    "s": elapsed,
                    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "session_mb": session.stat().st_size / 1e6,
                    "delta_lines": lines,
                }
            )
        )


def main() -> None:
    figures: dict[str, float] = {}
    with OpenAIServer() as server:
        server.script([Reply(text=reply_text())])
        for mode in ("whole", "streamed"):
            done = subprocess.run(
                [sys.executable, __file__, mode, server.base_url],
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(done.stdout.strip().splitlines()[-1])
            figures[f"reply_2mb_{mode}_s"] = round(got["s"], 3)
            figures[f"reply_2mb_{mode}_rss_mb"] = round(got["rss_mb"], 1)
            figures[f"reply_2mb_{mode}_session_mb"] = round(got["session_mb"], 2)
            if mode == "streamed":
                figures["reply_2mb_streamed_delta_lines"] = got["delta_lines"]
    figures["reply_2mb_streamed_vs_whole_time_x"] = round(
        figures["reply_2mb_streamed_s"] / figures["reply_2mb_whole_s"], 2
    )
    figures["reply_2mb_streamed_vs_whole_rss_x"] = round(
        figures["reply_2mb_streamed_rss_mb"] / figures["reply_2mb_whole_rss_mb"], 2
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        asyncio.run(child(sys.argv[1], sys.argv[2]))
    else:
        main()
