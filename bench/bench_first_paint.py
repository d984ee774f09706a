"""First paint: seconds from a fresh process starting the app until its first frame is on
screen, for the demo model and for a litellm model at a loopback OpenAI-compatible server
(the engine and litellm are imported after that frame, in a worker: the first frame says the
run is starting), then until the run's screen is up. Prints JSON.

Each figure is measured in a new interpreter (imports are what costs), from before the imports
of the app itself, as `rlm-tui demo` does it (the run's config is made after the first frame),
so it is what a person waits for between `rlm-tui …` and a screen. The floor: the same for an
app of one Static (Textual's own import and first frame). Each figure is the median of
``RUNS`` processes: one start varies by ±30 ms here."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = 5

PAINTED = """
def painted(app, screen_name):
    # the time the app first draws a screen of that name (its driver gets the frame)
    import time

    times = []
    display = app._display

    def _display(screen, renderable):
        if renderable is not None and type(screen).__name__ == screen_name and not times:
            times.append(time.perf_counter())
        display(screen, renderable)

    app._display = _display
    return times
"""

CHILD = (
    """
import asyncio, sys, tempfile, time
from pathlib import Path
started = time.perf_counter()
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig
"""
    + PAINTED
    + """
async def main():
    with tempfile.TemporaryDirectory() as tmp:
        def config():
            from rlm_tui.engine.run import RunConfig

            return RunConfig(query="q", model=sys.argv[1], api_base=sys.argv[2] or None,
                             sessions_dir=Path(tmp))

        app = RlmApp(config=config, ui_config=UiConfig(), watch=False)
        first, run_screen = painted(app, "StartingScreen"), []
        async with app.run_test(size=(160, 48)) as pilot:
            while type(app.screen).__name__ != "RunScreen":
                await asyncio.sleep(0.005)
            run_screen = painted(app, "RunScreen")
            while not run_screen:
                await asyncio.sleep(0.005)
            app.exit()
        print(first[0] - started)
        print(run_screen[0] - started)

asyncio.run(main())
"""
)

FLOOR = (
    """
import asyncio, time
started = time.perf_counter()
from textual.app import App
from textual.screen import Screen
from textual.widgets import Static
"""
    + PAINTED
    + """
class Floor(Screen):
    def compose(self):
        yield Static("starting a run…")

async def main():
    app = App()
    first = painted(app, "Floor")
    async with app.run_test(size=(160, 48)) as pilot:
        app.push_screen(Floor())
        while not first:
            await asyncio.sleep(0.005)
    print(first[0] - started)

asyncio.run(main())
"""
)


def first_paint(model: str, api_base: str = "") -> tuple[float, float]:
    """(first frame, run screen up) in seconds, medians of ``RUNS`` processes."""
    runs = [_child(CHILD, model, api_base) for _ in range(RUNS)]
    return (
        statistics.median(float(lines[-2]) for lines in runs),
        statistics.median(float(lines[-1]) for lines in runs),
    )


def _child(code: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
    )
    return done.stdout.strip().splitlines()


def main() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from openai_server import OpenAIServer

    floor = statistics.median(float(_child(FLOOR)[-1]) for _ in range(RUNS))
    figures = {"first_paint_textual_floor_s": floor}
    paint, screen = first_paint("demo")
    figures |= {"first_paint_demo_s": paint, "first_paint_demo_run_screen_s": screen}
    with OpenAIServer() as server:
        paint, screen = first_paint("openai/test-model", server.base_url)
    figures |= {"first_paint_litellm_s": paint, "first_paint_litellm_run_screen_s": screen}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
