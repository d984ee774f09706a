"""First paint: seconds from a fresh process starting the app until its first frame is on
screen, for the demo model and for a litellm model at a loopback OpenAI-compatible server
(litellm is imported after that frame, in a worker). Prints JSON.

Each figure is measured in a new interpreter (imports are what costs), after the imports of
the app itself, so it is what a person waits for between `rlm-tui …` and a screen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import asyncio, sys, tempfile, time
from pathlib import Path
started = time.perf_counter()
from rlm_tui.engine.run import RunConfig
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(query="q", model=sys.argv[1], api_base=sys.argv[2] or None,
                           sessions_dir=Path(tmp))
        app = RlmApp(config=config, ui_config=UiConfig(), watch=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()  # the first frame has been drawn
            print(time.perf_counter() - started)
            app.exit()

asyncio.run(main())
"""


def first_paint(model: str, api_base: str = "") -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, api_base],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from openai_server import OpenAIServer

    figures = {"first_paint_demo_s": first_paint("demo")}
    with OpenAIServer() as server:
        figures["first_paint_litellm_s"] = first_paint("openai/test-model", server.base_url)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
