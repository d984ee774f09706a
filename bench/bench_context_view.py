"""The context browser on a generated 40 MB text, in a headless app: index time, first paint,
jump, and regex search (first match shown, full count); plus coverage_ranges. Prints JSON.

Every "shown" time runs from the call to the moment the app renders the line in question
(``render_line`` is wrapped to log when each line is painted)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import time
from typing import Any

from textual.app import App, ComposeResult
from textual.strip import Strip

from rlm_tui.tui.context_view import ContextBrowser, ContextTextView, LineIndex, coverage_ranges

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "river",
    "forest",
    "lamp",
    "story",
    "clock",
    "ship",
    "cat",
]


def generate(megabytes: int = 40) -> str:
    """Varied lines (1-14 words, a running number every 97 lines), the last one a NEEDLE."""
    rng = random.Random(1)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14))) for _ in range(9973)]
    for i in range(0, len(lines), 97):
        lines[i] = f"section {i}: {lines[i]}"
    block = "\n".join(lines) + "\n"
    text = block * (megabytes * 1_000_000 // len(block) + 1)
    return text + "the NEEDLE is on the very last line\n"


class BrowserApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ContextBrowser()


painted: list[tuple[float, int]] = []
_render_line = ContextTextView.render_line


def _logged_render_line(self: ContextTextView, y: int) -> Strip:
    strip = _render_line(self, y)
    if self.text:
        painted.append((time.perf_counter(), self.scroll_offset.y + y))
    return strip


ContextTextView.render_line = _logged_render_line  # type: ignore[method-assign]


async def _shown(line: int, since: float, timeout: float = 10.0) -> float:
    """Seconds from ``since`` until ``line`` was painted."""
    deadline = time.perf_counter() + timeout
    seen = 0
    while time.perf_counter() < deadline:
        for at, painted_line in painted[seen:]:
            if at >= since and painted_line == line:
                return at - since
        seen = len(painted)
        await asyncio.sleep(0.001)
    raise TimeoutError(f"line {line} was not painted")


async def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.001)


def index_time(text: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        LineIndex(text)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def browser_figures(text: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    app = BrowserApp()
    async with app.run_test(size=(160, 48)) as pilot:
        browser = app.query_one(ContextBrowser)
        view = browser.text_view
        await pilot.pause()
        height = view.scrollable_content_region.height

        painted.clear()
        started = time.perf_counter()
        browser.load(text)
        figures["first_paint_s"] = await _shown(height - 1, started)  # the whole first screen
        await _until(lambda: not view.indexing)
        figures["full_index_in_app_s"] = time.perf_counter() - started
        figures["lines"] = view.index.line_count

        target = view.index.line_count * 3 // 4
        started = time.perf_counter()
        view.jump_to_line(target)
        figures["jump_s"] = await _shown(target, started)

        # case-sensitive (a capital letter), the only match on the last line
        needle_line = view.index.line_count - 1
        started = time.perf_counter()
        view.search("NEEDLE")
        figures["search_first_match_shown_s"] = await _shown(needle_line, started)
        await _until(lambda: not view.searching)
        figures["search_count_s"] = time.perf_counter() - started

        # a lower-case regex: smart case ignores case, searching a lower-cased copy of the
        # text, made in a thread when the search box opens (here: once cold, once prepared)
        pattern = r"section \d+: omega\b"
        for label in ("cold", "prepared"):
            view.jump_to_line(target)
            await pilot.pause()
            if label == "prepared":
                view.prepare_search()
                await asyncio.sleep(0.3)
            else:
                view._lowered = None
            started = time.perf_counter()
            view.search(pattern)
            await _until(lambda: view.match_at >= 0)
            figures[f"regex_{label}_first_match_shown_s"] = await _shown(view.cursor, started)
            await _until(lambda: not view.searching)
            figures[f"regex_{label}_count_s"] = time.perf_counter() - started
        figures["regex_matches"] = view.match_count
        assert view.match_count == len(re.findall(pattern, text))

        # a slow regex (a leading \b: no literal prefix to skip ahead with), 236,000 matches:
        # the count goes on past the 100,000 kept
        started = time.perf_counter()
        view.search(r"\bkappa\b")
        await _until(lambda: view.match_at >= 0)
        figures["many_first_match_shown_s"] = await _shown(view.cursor, started)
        await _until(lambda: not view.searching)
        figures["many_count_s"] = time.perf_counter() - started
        figures["many_matches"] = view.match_count

        started = time.perf_counter()
        await pilot.press("n")
        figures["next_match_shown_s"] = await _shown(view.cursor, started)
    return figures


def coverage_figures(text: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    middle = len(text) // 2
    for name, seen in [
        ("cell_output_2kb", text[middle : middle + 2000]),
        ("slice_1mb", text[middle : middle + 1_000_000]),
        (
            "missing_lines_50",
            "\n".join(f"line {i} the model computed, not in it {i}" for i in range(50)),
        ),
    ]:
        started = time.perf_counter()
        coverage_ranges(text, seen + "\n")  # a fresh string: not memoized
        figures[f"coverage_{name}_s"] = time.perf_counter() - started
    return figures


async def main() -> None:
    started = time.perf_counter()
    text = generate(40)
    figures: dict[str, float] = {
        "context_mb": len(text) / 1e6,
        "generate_s": time.perf_counter() - started,
        "index_s": index_time(text),
    }
    figures |= await browser_figures(text)
    figures |= coverage_figures(text)
    figures["targets_met"] = float(
        figures["first_paint_s"] < 0.1
        and figures["search_first_match_shown_s"] < 0.05
        and figures["regex_prepared_first_match_shown_s"] < 0.05
    )
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
