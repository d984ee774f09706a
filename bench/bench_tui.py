"""UI figures: event-loop lag while the demo run plays in a headless app, and the context
browser on a 40 MB text (first paint, first regex match shown). Prints JSON."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from textual.app import App, ComposeResult

from rlm_tui.engine.run import RunConfig
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig
from rlm_tui.tui.context_view import ContextBrowser, ContextTextView
from rlm_tui.tui.home_screen import NESTED_QUERY
from rlm_tui.tui.run_screen import RunScreen


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def loop_lag_during_demo() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(query=NESTED_QUERY, sessions_dir=Path(tmp), demo_delay=0.005)
        app = RlmApp(config=config, ui_config=UiConfig(), watch=False)
        lags: list[float] = []
        async with app.run_test(size=(160, 48)) as pilot:
            tick = 0.01
            expected = time.perf_counter() + tick
            while True:
                await asyncio.sleep(tick)
                now = time.perf_counter()
                lags.append(max(0.0, now - expected) * 1000)
                expected = now + tick
                screen = pilot.app.screen
                if isinstance(screen, RunScreen) and screen.view.finished:
                    break
        return {
            "ui_loop_lag_p50_ms": statistics.median(lags),
            "ui_loop_lag_p99_ms": percentile(lags, 0.99),
            "ui_loop_samples": float(len(lags)),
        }


class BrowserApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ContextBrowser()


async def context_browser(megabytes: int = 40) -> dict[str, float]:
    line = "the quick brown fox jumps over the lazy dog, line filler 0123456789\n"
    text = line * (megabytes * 1024 * 1024 // len(line))
    text += "NEEDLE at the very end\n"
    app = BrowserApp()
    painted: list[float] = []
    render_line = ContextTextView.render_line

    def timed_render_line(self: ContextTextView, y: int):  # type: ignore[no-untyped-def]
        if self.text and not painted:
            painted.append(time.perf_counter())
        return render_line(self, y)

    ContextTextView.render_line = timed_render_line  # type: ignore[method-assign]
    async with app.run_test(size=(160, 48)) as pilot:
        browser = app.query_one(ContextBrowser)
        view = app.query_one(ContextTextView)
        started = time.perf_counter()
        browser.load(text)
        while not painted:
            await asyncio.sleep(0.001)
        paint = painted[0] - started
        while not view.index.complete:
            await pilot.pause(0.01)
        started = time.perf_counter()
        view.search("NEEDLE")
        while view.match_at < 0:
            await asyncio.sleep(0.001)
        first_match = time.perf_counter() - started
        assert view.cursor == view.index.line_count - 1
    return {
        f"context_{megabytes}mb_first_paint_s": paint,
        f"context_{megabytes}mb_regex_first_match_s": first_match,
    }


async def main() -> None:
    figures = await loop_lag_during_demo()
    figures |= await context_browser()
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
