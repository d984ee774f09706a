"""UI figures: event-loop lag while runs play in a headless app (the demo; a fan-out to 64
sub-agents against a loopback server in a process of its own), the cell log while a 2 MB reply
streams in, the cell log with 5,000 cells, and the context browser on a 40 MB text (first
paint, first regex match shown). Prints JSON.

The lag is how late a 10 ms timer fires on the app's loop (the loop the engine runs on too),
sampled from the moment the run screen is up and quiet until the run has finished; for the
demo also from the moment its screen is pushed (``_from_start``: its mount and first frames
are in it). Its p99 includes the moments the cores are busy starting the sub-agents' kernels."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult

from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import AgentStarted, CellFinished, CellProposed
from rlm_tui.session.projection import RunView
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.cell_log import CellLog
from rlm_tui.tui.config import UiConfig
from rlm_tui.tui.context_view import ContextBrowser, ContextTextView
from rlm_tui.tui.home_screen import NESTED_QUERY
from rlm_tui.tui.run_screen import RunScreen

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from bench_scale import FAN_OUT  # noqa: E402
from bench_stream import reply_text  # noqa: E402
from loopback import served  # noqa: E402
from openai_server import OpenAIServer, Reply  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def follow_run(
    config: RunConfig, label: str, size: tuple[int, int] = (160, 48), from_start: bool = False
) -> dict:
    """Show the run of ``config`` in the app until it finishes; the loop's lag meanwhile, from
    the run screen's first quiet moment, or ``from_start``: from the moment it is pushed (its
    mount and first frames included).

    Also the cell log's renders (items it drew) per second while a model reply streamed in."""
    app = RlmApp(config=config, ui_config=UiConfig(), watch=False)
    lags: list[float] = []
    streaming = 0.0
    stream_renders = 0
    async with app.run_test(size=size) as pilot:
        while not isinstance(pilot.app.screen, RunScreen):  # a litellm model loads first
            await pilot.pause(0.01)
        if not from_start:
            await pilot.pause()  # the run screen is up and quiet
        screen = pilot.app.screen
        log = screen.query_one(CellLog)
        tick = 0.01
        expected = time.perf_counter() + tick
        while not screen.view.finished:
            renders = log.renders
            await asyncio.sleep(tick)
            now = time.perf_counter()
            lags.append(max(0.0, now - expected) * 1000)
            if any(a.streaming for a in screen.view.agents.values()):
                streaming += now - (expected - tick)
                stream_renders += log.renders - renders
            expected = now + tick
        assert screen.view.status == "answered", screen.view.reason
    figures = {
        f"ui_loop_lag{label}_p50_ms": statistics.median(lags),
        f"ui_loop_lag{label}_p99_ms": percentile(lags, 0.99),
        f"ui_loop_lag{label}_max_ms": max(lags),
        f"ui_loop{label}_samples": float(len(lags)),
    }
    if streaming:
        figures[f"ui{label}_streaming_s"] = streaming
        figures[f"ui{label}_cell_log_renders_per_s"] = stream_renders / streaming
    return figures


async def loop_lag_during_demo(
    delay: float = 0.02, label: str = "", from_start: bool = False
) -> dict[str, float]:
    """``delay`` 0.02 s is the pace of ``rlm-tui demo``; smaller plays the run faster."""
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(query=NESTED_QUERY, sessions_dir=Path(tmp), demo_delay=delay)
        return await follow_run(config, label, from_start=from_start)


def loopback_run(base_url: str, tmp: str, **settings: Any) -> RunConfig:
    """A run of the loopback server's model, saved under ``tmp``."""
    return RunConfig(model="openai/bench", api_base=base_url, sessions_dir=Path(tmp), **settings)


async def loop_lag_during_fan_out(children: int = 64, pool: int = 4) -> dict[str, float]:
    """The root starts ``children`` sub-agents at once (bench_scale's fan-out), in the app;
    then the same run with no app, for the lag the engine and the kernels cause alone."""
    figures: dict[str, float] = {}
    for shown in (True, False):
        with served(FAN_OUT, children, 0.2) as url, tempfile.TemporaryDirectory() as tmp:
            config = loopback_run(url, tmp, query="root", stream=False, pool_size=pool)
            if shown:
                figures |= await follow_run(config, f"_fanout{children}")
            else:
                figures |= await headless_lag(config, f"_fanout{children}_headless")
    return figures


async def headless_lag(config: RunConfig, label: str) -> dict[str, float]:
    run = Run(config)
    task = asyncio.create_task(run.execute())
    lags: list[float] = []
    tick = 0.01
    expected = time.perf_counter() + tick
    while not task.done():
        await asyncio.sleep(tick)
        now = time.perf_counter()
        lags.append(max(0.0, now - expected) * 1000)
        expected = now + tick
    assert (await task).status == "answered"
    return {
        f"ui_loop_lag{label}_p50_ms": statistics.median(lags),
        f"ui_loop_lag{label}_p99_ms": percentile(lags, 0.99),
    }


async def stream_2mb() -> dict[str, float]:
    """A 2 MB reply streamed by the loopback server, shown as it arrives (bench_stream's)."""
    with OpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.script([Reply(text=reply_text())])
        config = loopback_run(server.base_url, tmp, query="q", stream=True, pool_size=0)
        return await follow_run(config, "_stream2mb")


class CellLogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield CellLog()


async def cell_log(cells: int = 5000) -> dict[str, float]:
    """Show a session of ``cells`` cells, then jump to its first and to its middle cell."""
    view = RunView()
    view.apply(AgentStarted(agent_id="0", query="q", model="m"))
    for i in range(1, cells + 1):
        code = f"part = context[{i} * 1000:{i + 1} * 1000]\nprint(part.count('R'), len(part))"
        view.apply(
            CellProposed(
                agent_id="0", cell_id=f"0:{i}", step=i, index=i, preamble="Next.", code=code
            )
        )
        view.apply(
            CellFinished(agent_id="0", cell_id=f"0:{i}", status="ok", output=f"{i % 7} 1000\n")
        )
    app = CellLogApp()
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.query_one(CellLog)
        started = time.perf_counter()
        log.show(view)
        await pilot.pause()
        shown = time.perf_counter() - started
        started = time.perf_counter()
        log.action_first()
        await pilot.pause()
        first = time.perf_counter() - started
        started = time.perf_counter()
        log.select_cell(f"0:{cells // 2}")
        await pilot.pause()
        middle = time.perf_counter() - started
    return {
        f"cell_log_{cells}_cells_show_s": shown,
        f"cell_log_{cells}_cells_jump_first_s": first,
        f"cell_log_{cells}_cells_jump_middle_s": middle,
        f"cell_log_{cells}_cells_rendered": float(log.renders),
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
    figures |= await loop_lag_during_demo(label="_from_start", from_start=True)
    figures |= await loop_lag_during_fan_out()
    figures |= await stream_2mb()
    figures |= await cell_log()
    figures |= await context_browser()
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
