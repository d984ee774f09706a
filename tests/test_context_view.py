"""The context browser: line index, coverage ranges, structured documents, the text view and
tree under Pilot (a 5 MB text), and snapshots of the pane in the dark and light themes."""

from __future__ import annotations

import asyncio
import json
import random
import re

import pytest
from conftest import screen_lines
from textual.app import App, ComposeResult
from textual.widgets import Input

from rlm_tui.tui.context_view import (
    MAX_MATCHES,
    ContextBrowser,
    LineIndex,
    coverage_ranges,
    directory_document,
    json_document,
    json_offset,
    merge_ranges,
)
from rlm_tui.tui.themes import BUILTIN_THEMES, load_themes

pytestmark = pytest.mark.timeout(60)


# -- LineIndex ---------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """What the index should give: split on \\n, no empty line after a final newline,
    a \\r before the \\n dropped."""
    if not text:
        return []
    parts = text.split("\n")
    if text.endswith("\n"):
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def test_line_index_empty_text():
    index = LineIndex("")
    assert index.line_count == 0 and index.complete
    assert index.line_of_offset(0) == 0 and index.offset_of_line(0) == 0
    assert index.offset_of_line(5) == 0


def test_line_index_without_and_with_final_newline():
    index = LineIndex("one\ntwo")
    assert index.line_count == 2 and [index.line_text(i) for i in range(2)] == ["one", "two"]
    index = LineIndex("one\ntwo\n")
    assert index.line_count == 2 and index.line_text(1) == "two"  # no trailing newline shown
    assert index.offset_of_line(1) == 4 and index.offset_of_line(2) == len("one\ntwo\n")
    assert LineIndex("\n").line_count == 1 and LineIndex("\n").line_text(0) == ""
    assert [LineIndex("a\n\n").line_text(i) for i in range(2)] == ["a", ""]


def test_line_index_crlf():
    index = LineIndex("a\r\nbb\r\n\r\nccc\r")
    assert [index.line_text(i) for i in range(index.line_count)] == ["a", "bb", "", "ccc"]
    assert index.line_span(1) == (3, 5)


def test_line_index_offsets_agree_with_split():
    rng = random.Random(7)
    for _ in range(200):
        text = "".join(rng.choice("ab\n\r") for _ in range(rng.randint(0, 40)))
        index = LineIndex(text)
        assert [index.line_text(i) for i in range(index.line_count)] == _lines(text)
        for offset in range(len(text) + 1):
            line = index.line_of_offset(offset)
            assert line == min(text[:offset].count("\n"), max(0, index.line_count - 1))
            assert index.offset_of_line(line) <= offset
        for line in range(index.line_count):
            assert index.offset_of_line(line) == (0 if line == 0 else _nth_newline(text, line) + 1)


def _nth_newline(text: str, n: int) -> int:
    return [m.start() for m in re.finditer("\n", text)][n - 1]


def test_quick_index_then_full_index():
    text = "".join(f"line {i}\n" for i in range(100))
    quick = LineIndex(text, max_lines=10)
    assert not quick.complete and quick.line_count == 11
    assert quick.line_text(10) == "line 10"  # the last quick line is whole
    assert LineIndex("a\nb\nc", max_lines=2).complete  # no newline after the last start
    full = LineIndex(text)
    assert full.complete and full.line_count == 100 and full.line_text(99) == "line 99"
    assert full.longest >= len("line 99")


# -- ranges and coverage -----------------------------------------------------------------------


def test_merge_ranges():
    assert merge_ranges([(5, 9), (0, 2), (1, 3), (9, 10), (12, 12)]) == [(0, 3), (5, 10)]


CONTEXT = "".join(
    f"Chapter {i}: the {w} of the {v} walked into line number {i} of this text.\n"
    for i, (w, v) in enumerate(
        (w, v) for w in ("river", "forest", "lamp", "story") for v in ("cat", "ship", "clock")
    )
)


def test_coverage_of_a_contiguous_slice_is_one_range():
    start = CONTEXT.index("Chapter 3:")
    end = CONTEXT.index("Chapter 7:")
    assert coverage_ranges(CONTEXT, CONTEXT[start:end]) == [(start, end)]
    assert coverage_ranges(CONTEXT, CONTEXT) == [(0, len(CONTEXT))]


def test_coverage_of_a_truncated_output_with_noise():
    start = CONTEXT.index("Chapter 2:")
    shown = CONTEXT[start : start + 150]
    seen = f"12\nprinting lines\n{shown}\n... [output truncated: 800 of 950 characters cut]\n"
    assert coverage_ranges(CONTEXT, seen) == [(start, start + 150)]


def test_coverage_of_separate_lines_and_misses():
    lines = CONTEXT.splitlines()
    seen = f"{lines[9]}\nsomething the model computed, not in the context at all\n{lines[1]}"
    first, ninth = CONTEXT.index(lines[1]), CONTEXT.index(lines[9])
    assert coverage_ranges(CONTEXT, seen) == [
        (first, first + len(lines[1])),
        (ninth, ninth + len(lines[9]) + 1),  # and the newline after it, also seen
    ]
    assert coverage_ranges(CONTEXT, "nothing of this line is in the context, not at all") == []
    assert coverage_ranges(CONTEXT, "") == [] and coverage_ranges("", "abc") == []


def test_coverage_of_short_lines_goes_by_runs():
    context = "".join(f"row{i},{i * 7}\n" for i in range(200))
    start = context.index("row50,")
    end = context.index("row60,")
    seen = context[start:end]
    assert all(len(line) < 40 for line in seen.splitlines())
    assert coverage_ranges(context, seen) == [(start, end)]
    assert coverage_ranges(context, "row50,350") == []  # too short to place alone


def test_coverage_ignores_indentation_of_the_seen_line():
    line = CONTEXT.splitlines()[4]
    at = CONTEXT.index(line)
    assert coverage_ranges(CONTEXT, f"    {line}   ") == [(at, at + len(line))]


def test_coverage_of_a_big_slice_of_a_big_context():
    context = "".join(
        f"{i:>8} some text of the line that is long enough {i % 97}\n" for i in range(200_000)
    )
    start, end = len(context) // 3, 2 * len(context) // 3
    assert coverage_ranges(context, context[start:end]) == [(start, end)]


# -- structured documents ----------------------------------------------------------------------


def test_json_offset_finds_every_item():
    value = {
        "episodes": [{"title": "Sleep", "tags": ["a", "b"]}, {"title": "Run", "n": [1, [2, 3]]}],
        "n": 2,
        7: "seven",
        "title": "top",
    }
    document = json_document(value)

    def paths(node, path=()):
        yield path, node
        if isinstance(node, dict):
            for k, v in node.items():
                yield from paths(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths(v, (*path, i))

    for path, node in paths(value):
        offset = json_offset(document, value, path)
        assert offset is not None, path
        if not path:
            assert offset == 0
        elif isinstance(path[-1], int) and not isinstance(_parent(value, path), dict):
            assert document.startswith(json.dumps(node, indent=1)[:1], offset), path
        else:
            assert document.startswith(json.dumps(str(path[-1])) + ":", offset), path
    assert json_offset(document, value, ("missing",)) is None


def _parent(value, path):
    for key in path[:-1]:
        value = value[key]
    return value


def test_directory_document():
    text, offsets, headings = directory_document({"a/b.txt": "hello\nworld", "c.md": "# C\n"})
    assert text[offsets["a/b.txt"] :].startswith("hello\nworld\n")
    assert text[offsets["c.md"] :] == "# C\n"
    assert [text[h:].split("\n")[0] for h in headings] == ["━━ a/b.txt ━━", "━━ c.md ━━"]


# -- the pane under Pilot ----------------------------------------------------------------------


class BrowserApp(App[None]):
    def __init__(self, theme: str | None = None) -> None:
        super().__init__()
        self._theme = theme

    def compose(self) -> ComposeResult:
        yield ContextBrowser()

    def on_mount(self) -> None:
        if self._theme:
            for theme in load_themes([BUILTIN_THEMES]).values():
                self.register_theme(theme)
            self.theme = self._theme


async def _until(pilot, condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await pilot.pause(0.01)


WORDS = ["alpha", "beta", "gamma", "delta", "needle", "epsilon", "zeta", "Needle", "eta", "theta"]


def big_text(megabytes: float = 5) -> str:
    rng = random.Random(3)
    block = "".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) + "\n" for _ in range(4000)
    )
    repeat = int(megabytes * 1_000_000) // len(block) + 1
    return "".join(f"{i:07d} {line}\n" for i, line in enumerate((block * repeat).splitlines()))


@pytest.fixture(scope="module")
def text_5mb() -> str:
    return big_text(5)


async def test_big_text_jump_search_and_coverage(text_5mb):
    text = text_5mb
    app = BrowserApp()
    async with app.run_test(size=(100, 30)) as pilot:
        browser = app.query_one(ContextBrowser)
        view = browser.text_view
        browser.load(text)
        assert view.text is text and view.indexing  # painted from the quick index first
        await pilot.pause()
        assert any(" 1 0000000 " in line for line in screen_lines(app))
        await _until(pilot, lambda: not view.indexing)
        assert view.index.line_count == text.count("\n")
        assert "indexing" not in str(browser.query_one("#context-header").render())

        view.focus()
        view.jump_to_line(99_999)
        await pilot.pause()
        assert any(line.lstrip().startswith("100000 0099999 ") for line in screen_lines(app))

        await pilot.press("g", *"120000", "enter")
        assert view.cursor == 119_999
        await pilot.press("colon", *f"@{text.index('0001234 ')}", "enter")
        assert view.cursor == 1234

        pattern = r"ne+dle \w+a\b"
        await pilot.press("slash", *pattern, "enter")
        await _until(pilot, lambda: "matches" in browser.status)
        count = len(re.findall(pattern, text, re.IGNORECASE))  # smart case: all lower-case
        assert view.match_count == len(view.matches) == count > 1000
        assert browser.status == f"1/{count:,} matches for /{pattern}/"
        first = view.matches[0][0]
        assert view.cursor == text.count("\n", 0, first)
        await pilot.press("n", "n")
        assert view.cursor == text.count("\n", 0, view.matches[2][0])
        assert browser.status.startswith("3/")
        await pilot.press("N", "N", "N")
        assert view.match_at == count - 1 and browser.status.startswith(f"{count:,}/")
        assert view.cursor == text.count("\n", 0, view.matches[-1][0])
        assert any("needle" in line.lower() for line in screen_lines(app))

        assert view.search("Needle") is None  # a capital: case matters
        await _until(pilot, lambda: not view.searching)
        assert view.match_count == len(re.findall("Needle", text))

        error = browser.search("(unclosed")
        assert error and error.startswith("bad regular expression")
        await pilot.pause()
        assert browser.error and browser.status == error
        assert any("bad regular expression" in n.message for n in app._notifications)
        assert view.match_count == 0

        a = text.index("0000010 ")
        b = text.index("0000020 ")
        browser.set_coverage([(a, a + 100), (a + 50, a + 150), (b, b + 10)])
        assert browser.coverage_share == pytest.approx(160 / len(text))
        assert "seen 160 chars (<0.1%)" in str(browser.query_one("#context-header").render())


async def test_jump_before_the_full_index_lands_after_it(text_5mb):
    app = BrowserApp()
    async with app.run_test(size=(100, 30)) as pilot:
        browser = app.query_one(ContextBrowser)
        view = browser.text_view
        browser.load(text_5mb)
        view.jump_to_line(150_000)
        view.search("zeta theta")
        await _until(pilot, lambda: not view.indexing and not view.searching)
        await pilot.pause()
        first = text_5mb.index("zeta theta")
        assert view.cursor == text_5mb.count("\n", 0, first)  # the search's jump came later


async def test_many_matches_are_counted_past_the_kept_ones():
    text = "ab\n" * 60_000
    app = BrowserApp()
    async with app.run_test(size=(80, 20)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load(text)
        browser.search("[ab]")
        await _until(pilot, lambda: "matches" in browser.status)
        view = browser.text_view
        assert view.match_count == 120_000 and len(view.matches) == MAX_MATCHES
        assert browser.status.startswith("1/120,000 matches") and "100,000" in browser.status


async def test_long_lines_are_cut_with_markers():
    text = "short\n" + "".join(f"{i % 10}" for i in range(300)) + "TAIL\nend"
    app = BrowserApp()
    async with app.run_test(size=(60, 10)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load(text)
        await pilot.pause()
        row = next(line for line in screen_lines(app) if "0123456789" in line)
        assert row.rstrip().endswith("›") and "TAIL" not in row
        browser.text_view.jump_to_offset(text.index("TAIL"))
        await pilot.pause()
        row = next(line for line in screen_lines(app) if "TAIL" in line)
        assert "‹" in row and browser.text_view.cursor == 1


async def test_highlight_jumps_to_what_was_seen():
    text = "".join(
        f"line {i}: some words that go on for a while, enough to be seen\n" for i in range(500)
    )
    app = BrowserApp()
    async with app.run_test(size=(80, 20)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load(text)
        seen = "\n".join(text.splitlines()[300:303])
        ranges = coverage_ranges(text, seen)
        browser.set_highlight(ranges)
        await pilot.pause()
        assert browser.text_view.cursor == 300
        assert any(line.lstrip().startswith("301 line 300:") for line in screen_lines(app))


async def test_dict_context_tree_opens_lazily():
    value = {"episodes": [{"title": f"t{i}"} for i in range(2500)], "n": 2, "note": "hi"}
    app = BrowserApp()
    async with app.run_test(size=(80, 24)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load(value)
        await pilot.pause()
        assert browser.kind == "json" and browser.has_class("-tree")
        tree = browser.tree_view
        episodes = tree.root.children[0]
        assert str(episodes.label) == "episodes: list (2,500 items)" and not episodes.children
        episodes.expand()
        await pilot.pause()
        labels = [str(c.label) for c in episodes.children]
        assert len(labels) == 1001 and labels[0] == "0: dict (1 keys)"
        assert labels[-1] == "… 1,500 more"
        tree.select_node(episodes.children[-1])
        await pilot.pause()
        assert len(episodes.children) == 2001 and str(episodes.children[1000].label).startswith(
            "1000:"
        )
        first = episodes.children[0]
        first.expand()
        await pilot.pause()
        leaf = first.children[0]
        assert str(leaf.label) == "title: 't0'"
        tree.select_node(leaf)
        await pilot.pause()
        view = browser.text_view
        assert browser.has_class("-tree") is False  # a leaf opens the text
        assert view.index.line_text(view.cursor).strip() == '"title": "t0"'
        await pilot.press("t")
        assert browser.has_class("-tree")


async def test_directory_context_splits_tree_and_text():
    files = {
        "notes/a.txt": "alpha\nbeta\n",
        "notes/deep/b.py": "print('b')\n",
        "readme.md": "# R\n",
    }
    app = BrowserApp()
    async with app.run_test(size=(120, 24)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load(files, "dir")
        await pilot.pause()
        assert browser.has_class("-split")
        tree = browser.tree_view
        notes = tree.root.children[0]
        assert str(notes.label) == "notes/  (2 files)"
        notes.expand()
        await pilot.pause()
        a_file = next(c for c in notes.children if str(c.label).startswith("a.txt"))
        tree.select_node(a_file)
        await pilot.pause()
        view = browser.text_view
        assert view.index.line_text(view.cursor) == "alpha"
        header = str(browser.query_one("#context-header").render())
        assert "context: dir" in header and "3 files" in header and "notes/a.txt" in header
        screen = "\n".join(screen_lines(app))
        assert "━━ notes/a.txt ━━" in screen and "readme.md" in screen
        browser.search("print")
        await _until(pilot, lambda: "matches" in browser.status)
        assert browser.status == "1/1 matches for /print/"
        assert "notes/deep/b.py" in str(browser.query_one("#context-header").render())


async def test_none_and_empty_contexts():
    app = BrowserApp()
    async with app.run_test(size=(80, 10)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load(None)
        await pilot.pause()
        assert "context: none" in str(browser.query_one("#context-header").render())
        browser.load("")
        browser.search("x")
        await _until(pilot, lambda: "no matches" in browser.status)
        browser.text_view.jump_to_line(10)
        await pilot.press("n")


async def test_search_box_opens_and_closes():
    app = BrowserApp()
    async with app.run_test(size=(80, 10)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load("one\ntwo\n")
        browser.text_view.focus()
        box = browser.query_one("#context-search", Input)
        assert not box.display
        await pilot.press("slash")
        assert box.display and box.has_focus
        await pilot.press("escape")
        assert not box.display and browser.text_view.has_focus


# -- snapshots ---------------------------------------------------------------------------------

SNAP_TEXT = (
    "Episode 12: Sleep, light and the morning walk\n"
    "HOST: Welcome back. Today we talk about sleep with Dr. Rivera.\n"
    "RIVERA: The single best habit is a walk in morning light within an hour of waking.\n"
    "HOST: What about caffeine?\n"
    "RIVERA: Keep it to the morning; its half-life is longer than people think, so a cup at "
    "three in the afternoon is still with you at bedtime.\n"
    "HOST:\tAnd screens at night?\n"
    "RIVERA: Dim them. Light is the signal your clock listens to.\n"
) * 3


def snapshot_app(theme: str) -> BrowserApp:
    return BrowserApp(theme)


async def _prepare_snapshot(pilot) -> None:
    browser = pilot.app.query_one(ContextBrowser)
    browser.load(SNAP_TEXT)
    seen = "RIVERA: The single best habit is a walk in morning light within an hour of waking."
    browser.set_coverage(coverage_ranges(SNAP_TEXT, seen + "\nHOST: What about caffeine?"))
    browser.search("morning")
    await _until(pilot, lambda: "matches" in browser.status)
    browser.text_view.focus()
    await pilot.press("n")
    await pilot.pause()


@pytest.mark.parametrize("theme", ["rlm-dark", "rlm-light"])
def test_browser_snapshot(snap_compare, theme):
    assert snap_compare(snapshot_app(theme), terminal_size=(80, 24), run_before=_prepare_snapshot)
