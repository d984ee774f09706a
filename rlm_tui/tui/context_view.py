"""The context browser: the user's context as a virtual text view (only the visible lines are
rendered, from a line-offset index, so a 40 MB text stays instant), a lazily opened tree for
dict/list/directory contexts, regex search in a thread, and an overlay of what the models saw.

Widgets: :class:`ContextTextView` (the text), :class:`ContextTreeView` (the structure) and
:class:`ContextBrowser` (the pane: header, search box, tree and/or text, search status line).
Functions: :func:`coverage_ranges` (where a text a model was shown came from in the context),
:func:`json_document` / :func:`directory_document` (the searchable text of a structured context).
"""

from __future__ import annotations

import json
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from operator import sub
from pathlib import Path
from typing import Any

import regex
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

BIG_TEXT = 1_000_000
"""Above this many characters the full line index is built in a thread, after a first paint."""
QUICK_LINES = 2000
"""Lines indexed at once for a big text's first paint."""
MAX_MATCHES = 100_000
"""Matches kept for highlighting and n/N; the count goes on past them."""
SEARCH_TIMEOUT = 10.0
"""Seconds a search may take: a pattern that backtracks without end (``(\\w+\\s?)+!``) stops
there, with the matches found so far."""
MIN_SEEN_LINE = 40
COVERAGE_SCAN = 2_000_000_000
"""Characters ``str.find`` may scan for one :func:`coverage_ranges` call (misses cost most)."""
TREE_CHILDREN = 1000
"""Children a tree node opens with; a "… N more" node opens the next ones."""
RENDER_CACHE = 1024
SPLIT_WIDTH = 100
"""A structured context shows tree and text side by side in a pane at least this wide."""
TAB = 4
TRUNCATION_MARKER = "... [output truncated"
# Worker descriptions: without one, Textual would repr() the arguments (a 40 MB str: 0.17 s).
_INDEX, _LOWER, _SEARCH = "index the context", "lower-case the context", "search the context"

# Control characters would move the terminal's cursor: show their Unicode pictures instead
# (one character for one, so the offsets of matches and coverage stay where they are).
_VISIBLE = {c: 0x2400 + c for c in range(32) if c != 9} | {0x7F: 0x2421}


# -- the line index ----------------------------------------------------------------------------


class LineIndex:
    """Offsets of line starts: line ``n`` is ``text[starts[n]:starts[n+1]-1]`` (without its
    ``\\r\\n`` or ``\\n``). ``max_lines`` stops after that many line ends (a quick first index
    of a big text); ``complete`` says whether the whole text is indexed."""

    def __init__(self, text: str, max_lines: int | None = None) -> None:
        self.text = text
        ends = map(re.Match.end, re.finditer("\n", text))  # C all the way: ~0.08 s for 40 MB
        self.starts: list[int] = [0]
        self.starts += ends if max_lines is None else islice(ends, max_lines)
        self.complete = (
            max_lines is None
            or len(self.starts) <= max_lines
            or text.find("\n", self.starts[-1]) < 0
        )
        if len(self.starts) > 1 and self.starts[-1] == len(text):
            self.starts.pop()  # a final newline ends the last line; it does not start one
        steps = max(map(sub, self.starts[1:], self.starts), default=0)
        last = len(text) - self.starts[-1] if self.complete else 0
        self.longest = max(steps, last)
        """An upper bound of the longest line's length (of the indexed part)."""

    @property
    def line_count(self) -> int:
        return len(self.starts) if self.text else 0

    def line_span(self, n: int) -> tuple[int, int]:
        """Start and end offsets of line ``n``, its line break left out."""
        text = self.text
        start = self.starts[n]
        if n + 1 < len(self.starts):
            end = self.starts[n + 1] - 1
        elif self.complete:
            end = len(text) - 1 if text.endswith("\n") and len(text) > start else len(text)
        else:
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
        if end > start and text[end - 1] == "\r":
            end -= 1
        return start, end

    def line_text(self, n: int) -> str:
        start, end = self.line_span(n)
        return self.text[start:end]

    def line_of_offset(self, offset: int) -> int:
        return max(0, bisect_right(self.starts, offset) - 1)

    def offset_of_line(self, n: int) -> int:
        """Where line ``n`` starts; past the last line, the end of the text."""
        if n >= len(self.starts):
            return len(self.text)
        return self.starts[max(0, n)]


# -- character ranges --------------------------------------------------------------------------


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping, non-touching ranges covering the same characters."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


class _Ranges:
    """Merged character ranges with bisect lookup, so painting a line stays O(log n)."""

    def __init__(self, ranges: list[tuple[int, int]] | None = None, limit: int | None = None):
        merged = merge_ranges(ranges or [])
        if limit is not None:
            merged = [(a, min(b, limit)) for a, b in merged if a < limit]
        self.ranges = merged
        self.starts = [r[0] for r in merged]
        self.total = sum(b - a for a, b in merged)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of the ranges inside ``[start, end)``."""
        i = max(0, bisect_left(self.starts, start) - 1)
        found = []
        ranges = self.ranges
        while i < len(ranges) and ranges[i][0] < end:
            a, b = ranges[i]
            if b > start:
                found.append((max(a, start), min(b, end)))
            i += 1
        return found


def seen_share(seen: int, total: int) -> str:
    """``12.5%``; a sliver of a huge text reads as its characters, never as ``0.0%``."""
    share = seen / total if total else 0.0
    if seen and share < 0.001:
        return f"{seen:,} chars (<0.1%)"
    return f"{share:.1%}"


# -- coverage: where the texts a model saw came from -------------------------------------------

_coverage_memo: dict[tuple[str, int], tuple[tuple[int, int], ...]] = {}
_coverage_memo_for: list[str] = [""]


def coverage_ranges(
    context_text: str, seen_text: str, min_len: int = MIN_SEEN_LINE
) -> list[tuple[int, int]]:
    """The character ranges of ``context_text`` that ``seen_text`` (a cell's output as the
    model got it, or a context slice given to a sub-agent) was copied from.

    Lines of at least ``min_len`` characters (stripped), or runs of shorter consecutive lines
    that long, are anchors found with ``str.find`` (first right after the previous find, then
    anywhere); from each anchor the match is grown both ways with ``startswith`` over blocks,
    so a contiguous slice costs about one scan however long it is. Lines that are not in the
    context are skipped; the search stops after ``COVERAGE_SCAN`` characters of scanning.
    Results are memoized for the last context seen.
    """
    if not context_text or not seen_text:
        return []
    if _coverage_memo_for[0] is not context_text:
        _coverage_memo.clear()
        _coverage_memo_for[0] = context_text
    key = (seen_text, min_len)
    found = _coverage_memo.get(key)
    if found is None:
        found = tuple(_coverage(context_text, seen_text, max(1, min_len)))
        if len(_coverage_memo) > 2048:
            _coverage_memo.clear()
        _coverage_memo[key] = found
    return list(found)


def _coverage(context: str, seen: str, min_len: int) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    budget = max(COVERAGE_SCAN, 4 * len(context))
    pos, last_end = 0, -1
    missed: set[str] = set()
    while budget > 0:
        anchor = _next_anchor(seen, pos, min_len)
        if anchor is None:
            break
        s, e, after_miss = anchor
        probe = seen[s:e]
        if probe in missed:
            pos = after_miss
            continue
        hit = -1
        if last_end >= 0:  # most often the text goes on where the previous piece ended
            hit = context.find(probe, last_end, last_end + (e - pos) + 256)
        if hit < 0:
            hit = context.find(probe)
            budget -= len(context) if hit < 0 else hit
        if hit < 0:
            missed.add(probe)
            pos = after_miss
            continue
        delta = hit - s
        start = s - _common_suffix(seen, pos, s, context, hit)
        end = e + _common_prefix(seen, e, context, e + delta)
        ranges.append((start + delta, end + delta))
        last_end = end + delta
        pos = end
    return merge_ranges(ranges)


def _next_anchor(seen: str, pos: int, min_len: int) -> tuple[int, int, int] | None:
    """The next probe from ``pos``: (start, end, where to go on if it is not found)."""
    n = len(seen)
    run_start = -1  # the first of a run of short lines
    run_next = -1
    while pos < n:
        newline = seen.find("\n", pos)
        line_end = n if newline < 0 else newline
        line = seen[pos:line_end]
        stripped = line.strip()
        following = line_end + 1
        if stripped.startswith(TRUNCATION_MARKER) or not stripped:
            run_start = -1
        elif len(stripped) >= min_len and run_start < 0:
            if len(set(stripped[:64])) >= 4:  # not a rule of dashes: it would match anywhere
                s = pos + len(line) - len(line.lstrip())
                return s, s + len(stripped), following
        else:
            if run_start < 0:
                run_start = pos + len(line) - len(line.lstrip())
                run_next = following
            end = pos + len(line.rstrip())
            if end - run_start >= min_len and len(set(seen[run_start : run_start + 64])) >= 4:
                return run_start, end, run_next
        pos = following
    return None


def _common_prefix(a: str, i: int, b: str, j: int) -> int:
    """How many characters ``a[i:]`` and ``b[j:]`` share at their start."""
    return _gallop(
        min(len(a) - i, len(b) - j),
        lambda n, step: b.startswith(a[i + n : i + n + step], j + n),
    )


def _common_suffix(a: str, lo: int, i: int, b: str, j: int) -> int:
    """How many characters ``a[lo:i]`` and ``b[:j]`` share at their end."""
    return _gallop(
        min(i - lo, j),
        lambda n, step: b.startswith(a[i - n - step : i - n], j - n - step),
    )


def _gallop(limit: int, matches: Callable[[int, int], bool]) -> int:
    """How many of at most ``limit`` characters match, where ``matches(n, step)`` says whether
    the ``step`` characters after the first ``n`` do: blocks double while they match, then
    halve down to one character."""
    length, step, shrinking = 0, 64, False
    while length < limit:
        step = min(step, limit - length)
        if matches(length, step):
            length += step
            if not shrinking:
                step = min(step * 2, 1 << 20)
        elif step == 1:
            break
        else:
            step //= 2
            shrinking = True
    return length


# -- the text view -----------------------------------------------------------------------------


class ContextTextView(ScrollView, can_focus=True):
    """A virtual view of a (possibly huge) text: only the visible lines are rendered, each
    cut to the width (no wrapping; a marker where a line goes on), with a line-number gutter,
    a cursor line, search matches, and coverage/highlight overlays."""

    COMPONENT_CLASSES = {
        "context-view--gutter",
        "context-view--marker",
        "context-view--heading",
        "context-view--covered",
        "context-view--highlight",
        "context-view--match",
        "context-view--current-match",
        "context-view--cursor",
        "context-view--selection",
    }
    DEFAULT_CSS = """
    ContextTextView { background: $surface; }
    ContextTextView > .context-view--gutter { color: $text-muted; }
    ContextTextView > .context-view--marker { color: $text-accent; text-style: bold; }
    ContextTextView > .context-view--heading { color: $text-primary; text-style: bold; }
    ContextTextView > .context-view--covered { background: $success 20%; }
    ContextTextView > .context-view--highlight { background: $warning 45%; }
    ContextTextView > .context-view--match { background: $accent 45%; }
    ContextTextView > .context-view--current-match { text-style: bold reverse; }
    ContextTextView > .context-view--cursor { background: $primary 25%; }
    ContextTextView > .context-view--selection { background: $secondary 35%; }
    """
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="context.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="context.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="context.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="context.page_down"),
        Binding("home", "jump(0)", "Top", show=False, id="context.top"),
        Binding("end", "jump(-1)", "Bottom", show=False, id="context.bottom"),
        Binding("n", "next_match", "Next match", id="context.next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="context.previous_match"),
        Binding("v", "mark", "Mark selection", show=False, id="context.mark"),
    ]

    class Indexed(Message):
        """The whole text is indexed (at once for a small text, from a thread for a big one)."""

        def __init__(self, view: ContextTextView, line_count: int) -> None:
            super().__init__()
            self.view, self.line_count = view, line_count

    class SearchDone(Message):
        """A search finished: ``count`` matches in all (``error`` for a bad pattern)."""

        def __init__(
            self, view: ContextTextView, pattern: str, count: int, error: str | None
        ) -> None:
            super().__init__()
            self.view, self.pattern, self.count, self.error = view, pattern, count, error

    class MatchMoved(Message):
        """The current match changed; ``count`` is None while the search is still counting."""

        def __init__(
            self, view: ContextTextView, pattern: str, index: int, count: int | None, line: int
        ) -> None:
            super().__init__()
            self.view, self.pattern, self.index = view, pattern, index
            self.count, self.line = count, line

    class CursorMoved(Message):
        def __init__(self, view: ContextTextView, line: int, offset: int) -> None:
            super().__init__()
            self.view, self.line, self.offset = view, line, offset

    class _IndexReady(Message):
        bubble = False

        def __init__(self, index: LineIndex) -> None:
            super().__init__()
            self.index = index

    class _FirstMatch(Message):
        bubble = False

        def __init__(self, search_id: int, span: tuple[int, int]) -> None:
            super().__init__()
            self.search_id, self.span = search_id, span

    class _SearchResult(Message):
        bubble = False

        def __init__(
            self, search_id: int, found: list[tuple[int, int]], count: int, stopped: bool
        ) -> None:
            super().__init__()
            self.search_id, self.found, self.count = search_id, found, count
            self.stopped = stopped
            """The search took ``SEARCH_TIMEOUT``: ``found`` is what it had found by then."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = LineIndex("")
        self.cursor = 0
        self.mark: int | None = None
        self.coverage = _Ranges()
        self.highlight = _Ranges()
        self.headings = _Ranges()
        self.matches: list[tuple[int, int]] = []
        self.match_count = 0
        self.match_at = -1
        self.search_pattern = ""
        self.searching = False
        self._match_ranges = _Ranges()
        self._search_id = 0
        self._pending: tuple[str, int] | None = None
        self._gutter = 2
        self._rows = 0
        self._lowered: tuple[str, str | None] | None = None
        self._lower_lock = threading.Lock()
        self._cache: LRUCache[tuple[Any, ...], Strip] = LRUCache(RENDER_CACHE)

    # -- loading -------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.index.text

    @property
    def indexing(self) -> bool:
        """True while a big text's full index is still being built."""
        return not self.index.complete

    def load_text(self, text: str) -> None:
        """Show ``text``. A big one paints its first screen at once from a quick index of its
        first lines; the full index follows from a thread (:class:`Indexed` when done)."""
        big = len(text) > BIG_TEXT
        self.index = LineIndex(text, QUICK_LINES if big else None)
        self._lowered = None
        self._pending = None
        self.cursor, self.mark = 0, None
        self.coverage, self.highlight, self.headings = _Ranges(), _Ranges(), _Ranges()
        self.clear_search()
        self._resized()
        self.scroll_to(0, 0, animate=False, immediate=True, force=True)
        if self.index.complete:
            self.post_message(self.Indexed(self, self.index.line_count))
        else:  # after the first paint: the thread competes for the GIL
            self.call_after_refresh(self._index_fully, text)

    def _resized(self) -> None:
        index = self.index
        lines = index.line_count
        if not index.complete and index.starts[-1]:  # estimate the count for the gutter
            lines = max(lines, len(index.text) * lines // index.starts[-1])
        self._gutter = len(str(max(1, lines))) + 1
        self.virtual_size = Size(self._gutter + 1 + index.longest + 1, index.line_count)
        self._cache.clear()
        self.refresh()

    @work(thread=True, exclusive=True, group="context-index", description=_INDEX)
    def _index_fully(self, text: str) -> None:
        self.post_message(self._IndexReady(LineIndex(text)))

    @on(_IndexReady)
    def _index_ready(self, event: _IndexReady) -> None:
        event.stop()
        if event.index.text is not self.index.text:
            return
        self.index = event.index
        self._resized()
        pending, self._pending = self._pending, None
        if pending is not None:
            kind, where = pending
            if kind == "line":
                self.jump_to_line(where)
            else:
                self.jump_to_offset(where)
        self.post_message(self.Indexed(self, self.index.line_count))

    # -- overlays ------------------------------------------------------------------------------

    def set_coverage(self, ranges: list[tuple[int, int]]) -> None:
        """Character ranges some model has seen (merged; painted with ``--covered``)."""
        self.coverage = _Ranges(ranges, len(self.text))
        self._cache.clear()
        self.refresh()

    def set_highlight(self, ranges: list[tuple[int, int]], jump: bool = True) -> None:
        """What the selected cell or agent saw: a stronger mark; jumps to its first range."""
        self.highlight = _Ranges(ranges, len(self.text))
        self._cache.clear()
        if jump and self.highlight:
            self.jump_to_offset(self.highlight.ranges[0][0])
        self.refresh()

    def set_headings(self, ranges: list[tuple[int, int]]) -> None:
        """Lines starting in these ranges are painted as headings (a directory's file names)."""
        self.headings = _Ranges(ranges, len(self.text))
        self._cache.clear()
        self.refresh()

    @property
    def coverage_share(self) -> float:
        """Covered characters / all characters."""
        return self.coverage.total / len(self.text) if self.text else 0.0

    def selection(self) -> str | None:
        """The lines between the mark and the cursor, if a mark is set."""
        if self.mark is None or not self.text:
            return None
        first, last = sorted((self.mark, self.cursor))
        start, _ = self.index.line_span(first)
        _, end = self.index.line_span(last)
        return self.text[start:end]

    # -- movement ------------------------------------------------------------------------------

    def jump_to_line(self, line: int, column: int | None = None) -> None:
        """Put the cursor on line ``line`` (0-based; negative counts from the end) and scroll
        it into view (and ``column`` too, if given). A line past a big text's quick index is
        reached as soon as the full index is ready."""
        self._pending = None
        if self.indexing and (line < 0 or line >= self.index.line_count - 1):
            self._pending = ("line", line)
        self._move(line, column)

    def on_resize(self, event: events.Resize) -> None:
        """Keep a cursor that was in view in view (a status line or scrollbar took a row)."""
        rows, self._rows = self._rows, self.scrollable_content_region.height
        if rows and self.scroll_offset.y <= self.cursor < self.scroll_offset.y + rows:
            self._scroll_to_cursor(None, self.cursor, deferred=True)

    def jump_to_offset(self, offset: int) -> None:
        """Put the cursor on the line holding character ``offset`` and show that column."""
        index = self.index
        offset = max(0, min(offset, len(index.text)))
        line = index.line_of_offset(offset)
        self._pending = None
        self._move(line, offset - index.offset_of_line(line))
        if self.indexing and index.line_count and offset >= index.starts[-1]:
            self._pending = ("offset", offset)

    def _move(self, line: int, column: int | None) -> None:
        count = self.index.line_count
        if count == 0:
            return
        self.cursor = max(0, min(line if line >= 0 else count + line, count - 1))
        self._scroll_to_cursor(column, self.cursor)
        self.refresh()
        offset = self.index.offset_of_line(self.cursor)
        self.post_message(self.CursorMoved(self, self.cursor, offset))

    def _scroll_to_cursor(self, column: int | None, cursor: int, deferred: bool = False) -> None:
        if cursor != self.cursor:
            return  # moved again since
        region = self.scrollable_content_region
        if not region.height and not deferred:  # not laid out yet: once it is
            self.call_after_refresh(self._scroll_to_cursor, column, cursor, True)
            return
        visible = region.height or 1
        if not self.scroll_offset.y <= cursor < self.scroll_offset.y + visible:
            y = max(0, cursor - visible // 3)
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        if column is not None:
            width = max(1, region.width - self._gutter - 1)
            left = self.scroll_offset.x
            if not left <= column < left + width - 1:
                x = 0 if column < width - 1 else column - width // 3
                self.scroll_to(x=x, animate=False, immediate=True, force=True)

    def action_cursor(self, delta: int) -> None:
        self.jump_to_line(max(0, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        page = max(1, self.scrollable_content_region.height - 1)
        self.jump_to_line(max(0, self.cursor + direction * page))

    def action_jump(self, line: int) -> None:
        self.jump_to_line(line)

    def action_mark(self) -> None:
        self.mark = None if self.mark is not None else self.cursor
        self._cache.clear()
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        line = self.scroll_offset.y + event.y
        if 0 <= line < self.index.line_count:
            self.jump_to_line(line)

    # -- search --------------------------------------------------------------------------------

    def search(self, pattern: str, is_regex: bool = True, case: bool | None = None) -> str | None:
        """Search in a thread: the first match is shown as soon as it is found
        (:class:`MatchMoved`), then the count (:class:`SearchDone`). ``case=None`` is smart
        case: a pattern with a capital letter matches case, otherwise case is ignored.
        Returns the error message of a bad pattern (also posted in ``SearchDone``), else None.
        An empty pattern clears the search."""
        self._search_id += 1
        self._set_search([], 0)
        self.match_at, self.searching = -1, False
        self.search_pattern = pattern
        if not pattern:
            return None
        source = pattern if is_regex else regex.escape(pattern)
        sensitive = case if case is not None else pattern != pattern.lower()
        try:
            compiled = regex.compile(source, 0 if sensitive else regex.IGNORECASE)
        except (regex.error, OverflowError, RecursionError, ValueError) as exc:
            error = f"bad regular expression: {exc}"
            self.post_message(self.SearchDone(self, pattern, 0, error))
            return error
        self.searching = True
        blind = not sensitive and source == source.lower()
        self._search(compiled, self.text, pattern, self._search_id, blind)
        return None

    def clear_search(self) -> None:
        self.search("")

    def prepare_search(self) -> None:
        """Lower-case a big text in a thread now, so a case-blind search finds its first match
        at once (called when the search box opens, while the user types)."""
        if len(self.text) > BIG_TEXT and self._lowered is None:
            self._prepare(self.text)

    @work(thread=True, exclusive=True, group="context-lower", description=_LOWER)
    def _prepare(self, text: str) -> None:
        self._lower(text)

    def _lower(self, text: str) -> str | None:
        """A lower-cased copy searched case-sensitively is ~10x faster than re.IGNORECASE,
        and usable as long as lower-casing keeps every character where it was."""
        with self._lower_lock:
            if self._lowered is None or self._lowered[0] is not text:
                lowered = text.lower()
                self._lowered = (text, lowered if len(lowered) == len(text) else None)
            return self._lowered[1]

    @work(thread=True, exclusive=True, group="context-search", description=_SEARCH)
    def _search(
        self, compiled: regex.Pattern[str], text: str, pattern: str, search_id: int, blind: bool
    ) -> None:
        """With ``regex``, not ``re``: it lets go of the GIL while it matches (``re`` held it,
        and a pattern that backtracked without end froze the app) and stops at a timeout."""
        worker = get_current_worker()
        if blind:
            lowered = self._lower(text)
            if lowered is not None:
                text, compiled = lowered, regex.compile(compiled.pattern)
        found: list[tuple[int, int]] = []
        count = 0
        stopped = False
        try:
            for match in compiled.finditer(text, concurrent=True, timeout=SEARCH_TIMEOUT):
                if count < MAX_MATCHES:
                    found.append(match.span())
                count += 1
                if count == 1:
                    self.post_message(self._FirstMatch(search_id, match.span()))
                elif not count & 0xFFF and worker.is_cancelled:
                    return
        except TimeoutError:
            stopped = True
        self.post_message(self._SearchResult(search_id, found, count, stopped))

    @on(_FirstMatch)
    def _first_match(self, event: _FirstMatch) -> None:
        event.stop()
        if event.search_id == self._search_id and self.match_at < 0:
            self._set_search([event.span], 1)
            self._go_to_match(0, counting=True)

    @on(_SearchResult)
    def _search_result(self, event: _SearchResult) -> None:
        event.stop()
        if event.search_id != self._search_id:
            return
        self.searching = False
        self._set_search(event.found, event.count)
        if event.found and self.match_at < 0:
            self._go_to_match(0)
        error = (
            f"search stopped after {SEARCH_TIMEOUT:g} s: the pattern backtracks too much on"
            f" this text ({event.count:,} matches before)"
            if event.stopped
            else None
        )
        self.post_message(self.SearchDone(self, self.search_pattern, event.count, error))

    def _set_search(self, found: list[tuple[int, int]], count: int) -> None:
        self.matches, self.match_count = found, count
        self._match_ranges = _Ranges(found)
        self._cache.clear()
        self.refresh()

    def _go_to_match(self, at: int, counting: bool = False) -> None:
        self.match_at = at
        start, end = self.matches[at]
        self.jump_to_offset(start)
        count = None if counting else self.match_count
        self.post_message(self.MatchMoved(self, self.search_pattern, at, count, self.cursor))

    def next_match(self) -> None:
        self._step_match(1)

    def previous_match(self) -> None:
        self._step_match(-1)

    def action_next_match(self) -> None:
        self._step_match(1)

    def action_previous_match(self) -> None:
        self._step_match(-1)

    def _step_match(self, direction: int) -> None:
        if not self.matches:
            self.app.bell()
            return
        self._go_to_match((self.match_at + direction) % len(self.matches), self.searching)

    # -- painting ------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        line_no = self.scroll_offset.y + y
        index = self.index
        if line_no >= index.line_count or width <= 0:
            return Strip.blank(width, self.rich_style)
        start, end = index.line_span(line_no)
        x = self.scroll_offset.x
        cursor = line_no == self.cursor
        selected = self.mark is not None and min(self.mark, self.cursor) <= line_no <= max(
            self.mark, self.cursor
        )
        current = None
        if 0 <= self.match_at < len(self.matches):
            a, b = self.matches[self.match_at]
            if a <= end and b >= start:
                current = (a, max(b, a + 1))
        key = (line_no, x, width, cursor, selected, current)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_text_line(line_no, start, end, x, width, cursor, selected, current)
            self._cache[key] = strip
        return strip

    def _render_text_line(
        self,
        line_no: int,
        start: int,
        end: int,
        x: int,
        width: int,
        cursor: bool,
        selected: bool,
        current: tuple[int, int] | None,
    ) -> Strip:
        base = self.rich_style
        if selected:
            base += self.get_component_rich_style("context-view--selection")
        if cursor:
            base += self.get_component_rich_style("context-view--cursor")
        if self.headings and self.headings.overlapping(start, start + 1):
            base += self.get_component_rich_style("context-view--heading")
        gutter = Segment(
            f"{line_no + 1:>{self._gutter}} ",
            base + self.get_component_rich_style("context-view--gutter"),
        )
        avail = width - self._gutter - 1
        if avail <= 0:
            return Strip([gutter]).crop_extend(0, width, base)
        visible_start = min(start + x, end)
        visible_end = min(end, visible_start + avail)
        chunk = self.text[visible_start:visible_end].translate(_VISIBLE)
        body = Strip(self._segments(chunk, visible_start, base, current))
        marker = self.get_component_rich_style("context-view--marker")
        if visible_end < end or body.cell_length > avail:
            body = Strip([*body.crop(0, avail - 1), Segment("›", base + marker)])
        if x > 0 and end > start:
            body = Strip([Segment("‹", base + marker), *body.crop(1)])
        return Strip([gutter, *body]).crop_extend(0, width, base)

    def _segments(
        self, chunk: str, offset: int, base: Style, current: tuple[int, int] | None
    ) -> list[Segment]:
        """``chunk`` (at ``offset`` in the text) styled with the overlays, tabs expanded."""
        end = offset + len(chunk)
        layers: list[tuple[int, int, int]] = []
        for layer, ranges in enumerate((self.coverage, self.highlight, self._match_ranges)):
            if ranges:
                layers += [
                    (a - offset, b - offset, layer) for a, b in ranges.overlapping(offset, end)
                ]
        if current is not None and current[0] < end and current[1] > offset:
            layers.append((max(current[0], offset) - offset, min(current[1], end) - offset, 3))
        runs: list[tuple[str, Style]] = []
        if not layers:
            runs.append((chunk, base))
        else:
            styles = [
                self.get_component_rich_style(name)
                for name in (
                    "context-view--covered",
                    "context-view--highlight",
                    "context-view--match",
                    "context-view--current-match",
                )
            ]
            bounds = sorted([(a, 1, i) for a, _, i in layers] + [(b, -1, i) for _, b, i in layers])
            active = [0, 0, 0, 0]
            pos = 0
            for at, step, layer in bounds:
                if at > pos:
                    style = base
                    for i, on_ in enumerate(active):
                        if on_:
                            style += styles[i]
                    runs.append((chunk[pos:at], style))
                    pos = at
                active[layer] += step
            if pos < len(chunk):
                runs.append((chunk[pos:], base))
        if "\t" not in chunk:
            return [Segment(text, style) for text, style in runs]
        segments = []
        column = 0
        for text, style in runs:
            if "\t" in text:
                pieces = []
                for i, part in enumerate(text.split("\t")):
                    if i:
                        spaces = TAB - column % TAB
                        pieces.append(" " * spaces)
                        column += spaces
                    pieces.append(part)
                    column += cell_len(part)
                text = "".join(pieces)
            else:
                column += cell_len(text)
            segments.append(Segment(text, style))
        return segments


# -- structured contexts -----------------------------------------------------------------------


def json_document(value: Any) -> str:
    """The searchable text of a dict/list context: JSON with one-space indents (the layout
    :func:`json_offset` relies on)."""
    try:
        return json.dumps(value, indent=1, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # keys JSON cannot hold, or a cycle
        try:
            return json.dumps(value, indent=1, ensure_ascii=False, default=str, skipkeys=True)
        except (TypeError, ValueError):
            return repr(value)


def json_offset(document: str, value: Any, path: tuple[Any, ...]) -> int | None:
    """Where the item at ``path`` (keys and list indices from the root ``value``) starts in
    ``json_document(value)``, or None. Items at depth ``d`` are the lines indented by exactly
    ``d`` spaces, so each step is one ``str.find`` (dict key) or regex scan (list index)."""
    pos = 0
    for depth, key in enumerate(path, start=1):
        if isinstance(value, dict):
            try:
                token = json.dumps({key: 0}, ensure_ascii=False)[1:-4]
            except (TypeError, ValueError):
                return None
            found = document.find(f"\n{' ' * depth}{token}:", pos)
            if found < 0:
                return None
        elif isinstance(value, list | tuple) and isinstance(key, int):
            item = re.compile(rf"\n {{{depth}}}[^ \]}}]")
            match = next(islice(item.finditer(document, pos), key, None), None)
            if match is None:
                return None
            found = match.start()
        else:
            return None
        pos = found + 1
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return pos + len(path) if path else 0


def directory_document(files: dict[str, Any]) -> tuple[str, dict[str, int], list[int]]:
    """The searchable text of a directory context ({relative path: text}): each file after a
    heading line. Returns the text, each file's offset, and the headings' offsets."""
    parts: list[str] = []
    offsets: dict[str, int] = {}
    headings: list[int] = []
    pos = 0
    for path, content in files.items():
        body = content if isinstance(content, str) else str(content)
        heading = f"━━ {path} ━━\n"
        headings.append(pos)
        parts.append(heading)
        pos += len(heading)
        offsets[str(path)] = pos
        if body and not body.endswith("\n"):
            body += "\n"
        parts.append(body)
        pos += len(body)
    return "".join(parts), offsets, headings


@dataclass
class ContextItem:
    """What a node of the context tree stands for: ``path`` (keys and indices from the root;
    for a directory, ``(relative path,)``), the ``value`` there, and for a "… N more" node the
    index of the first child not shown yet."""

    path: tuple[Any, ...]
    value: Any
    more_from: int = -1
    folder: bool = False
    filled: bool = False


class ContextTreeView(Tree[ContextItem]):
    """A dict/list context, or a directory context as folders and files, opened lazily:
    a node's children are made when it is expanded, a thousand at a time."""

    DEFAULT_CSS = """
    ContextTreeView { background: $surface; }
    """

    class ValueSelected(Message):
        """A node was selected: its ``path`` (keys/indices, or ``(file path,)``) and value."""

        def __init__(
            self, tree: ContextTreeView, path: tuple[Any, ...], value: Any, leaf: bool
        ) -> None:
            super().__init__()
            self.tree, self.path, self.value, self.leaf = tree, path, value, leaf

    def __init__(self, label: str = "context", **kwargs: Any) -> None:
        super().__init__(Text(label), **kwargs)
        self.kind = "json"

    def load(self, value: Any, kind: str = "json") -> None:
        self.clear()
        self.kind = kind
        if kind == "dir" and isinstance(value, dict):
            self.root.data = ContextItem((), _folders(value), folder=True)
            self.root.set_label(Text(f"context: {len(value):,} files"))
        else:
            self.root.data = ContextItem((), value)
            self.root.set_label(Text(_label("context", value)))
        self._fill(self.root)
        self.root.expand()

    def _fill(self, node: TreeNode[ContextItem], start: int = 0) -> None:
        item = node.data
        if item is None:
            return
        item.filled = True
        value = item.value
        if item.folder:
            self._fill_folder(node, value)
            return
        if not isinstance(value, dict | list | tuple):
            return
        pairs = (
            islice(value.items(), start, start + TREE_CHILDREN)
            if isinstance(value, dict)
            else enumerate(value[start : start + TREE_CHILDREN], start)
        )
        for key, child in pairs:
            data = ContextItem((*item.path, key), child)
            label = Text(_label(str(key), child))
            if isinstance(child, dict | list | tuple) and child:
                node.add(label, data=data)
            else:
                node.add_leaf(label, data=data)
        more = len(value) - start - TREE_CHILDREN
        if more > 0:
            node.add_leaf(
                Text(f"… {more:,} more"),
                data=ContextItem(item.path, value, more_from=start + TREE_CHILDREN),
            )

    def _fill_folder(self, node: TreeNode[ContextItem], folder: dict[str, Any]) -> None:
        for name, entry in folder.items():
            if isinstance(entry, dict):
                files = _count_files(entry)
                node.add(
                    Text(f"{name}/  ({files:,} files)"),
                    data=ContextItem((), entry, folder=True),
                )
            else:
                path, text = entry
                size = len(text) if isinstance(text, str) else 0
                lines = text.count("\n") + 1 if isinstance(text, str) and text else 0
                node.add_leaf(
                    Text(f"{name}  ({size:,} chars, {lines:,} lines)"),
                    data=ContextItem((path,), text),
                )

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[ContextItem]) -> None:
        event.stop()
        node = event.node
        if node.data is not None and not node.data.filled:
            self._fill(node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[ContextItem]) -> None:
        event.stop()  # not an agent tree's selection for the screen around
        node, item = event.node, event.node.data
        if item is None:
            return
        if item.more_from >= 0 and node.parent is not None:
            parent = node.parent
            node.remove()
            self._fill(parent, item.more_from)
            return
        if item.folder:
            return
        leaf = not node.allow_expand
        self.post_message(self.ValueSelected(self, item.path, item.value, leaf))


ContextTree = ContextTreeView
"""The name the tree had first."""


def _folders(files: dict[str, Any]) -> dict[str, Any]:
    """{"a/b.txt": t} -> {"a": {"b.txt": ("a/b.txt", t)}}."""
    root: dict[str, Any] = {}
    for path, text in files.items():
        parts = str(path).replace("\\", "/").split("/")
        folder = root
        for part in parts[:-1]:
            entry = folder.setdefault(part, {})
            if not isinstance(entry, dict):  # a file and a folder of one name: keep both
                entry = folder.setdefault(part + "/", {})
            folder = entry
        folder[parts[-1]] = (path, text)
    return root


def _count_files(folder: dict[str, Any]) -> int:
    return sum(_count_files(e) if isinstance(e, dict) else 1 for e in folder.values())


def _label(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"{key}: dict ({len(value):,} keys)"
    if isinstance(value, list | tuple):
        return f"{key}: list ({len(value):,} items)"
    if isinstance(value, str) and len(value) > 80:
        return f"{key}: {value[:60]!r}… ({len(value):,} chars)"
    shown = repr(value)
    return f"{key}: {shown[:80] + '…' if len(shown) > 80 else shown}"


# -- the pane ----------------------------------------------------------------------------------


class ContextBrowser(Vertical):
    """The context pane: a header (kind, size, share seen), a search box (``/``; ``g`` or
    ``:`` for a line number or ``@offset``), the text view and/or the tree, and a search
    status line ("3/120 matches for /foo/")."""

    DEFAULT_CSS = """
    ContextBrowser { height: 1fr; }
    ContextBrowser > #context-header { height: 1; background: $panel; color: $text; padding: 0 1; }
    ContextBrowser > #context-search { display: none; }
    ContextBrowser > #context-search.visible { display: block; }
    ContextBrowser > #context-body { height: 1fr; }
    ContextBrowser #context-tree { display: none; width: 1fr; height: 1fr; }
    ContextBrowser #context-text { width: 1fr; height: 1fr; }
    ContextBrowser.-tree #context-tree { display: block; }
    ContextBrowser.-tree #context-text { display: none; }
    ContextBrowser.-split #context-tree {
        display: block; width: 35%; max-width: 48; border-right: vkey $panel-lighten-2;
    }
    ContextBrowser > #context-status {
        height: 1; display: none; background: $panel; color: $text-muted; padding: 0 1;
    }
    ContextBrowser > #context-status.visible { display: block; }
    ContextBrowser > #context-status.error { color: $text-error; }
    """
    BINDINGS = [
        Binding("slash", "open_search", "Search", id="context.search"),
        Binding("g,colon", "goto_line", "Go to line", id="context.goto"),
        Binding("t", "toggle_tree", "Text/tree", show=False, id="context.toggle_tree"),
        Binding("escape", "close_search", "Close search", show=False, id="context.close_search"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = "none"
        self.value: Any = None
        self._status = ""
        self.error = False
        self._goto = False
        self._structured = False
        self._show_tree = False
        self._file_offsets: dict[str, int] = {}
        self._file_starts: list[tuple[int, str]] = []
        self._current_file = ""

    def compose(self) -> ComposeResult:
        yield Static("context: none", id="context-header", markup=False)
        yield Input(placeholder="regex search (Enter)", id="context-search")
        with Horizontal(id="context-body"):
            yield ContextTreeView("context", id="context-tree")
            yield ContextTextView(id="context-text")
        yield Static("", id="context-status", markup=False)

    @property
    def text_view(self) -> ContextTextView:
        return self.query_one(ContextTextView)

    @property
    def tree_view(self) -> ContextTreeView:
        return self.query_one(ContextTreeView)

    # -- loading -------------------------------------------------------------------------------

    def load(self, value: Any, kind: str | None = None) -> None:
        """Show a context: a str as text; a dict/list as a tree beside its JSON text; a
        directory ({relative path: text}, ``kind="dir"``) as a file tree beside the files'
        text; None as nothing."""
        self.value = value
        self._file_offsets, self._file_starts, self._current_file = {}, [], ""
        view = self.text_view
        if value is None:
            self.kind = kind or "none"
            self._structured = False
            self.tree_view.clear()
            view.load_text("")
        elif isinstance(value, str):
            self.kind = kind or "text"
            self.tree_view.clear()
            self._structured = False
            view.load_text(value)
        elif isinstance(value, dict | list | tuple):
            self._structured = True
            if kind == "dir" and isinstance(value, dict):
                self.kind = "dir"
                text, self._file_offsets, headings = directory_document(value)
                view.load_text(text)
                view.set_headings([(h, h + 1) for h in headings])
                self._file_starts = sorted((o, p) for p, o in self._file_offsets.items())
            else:
                self.kind = kind or "json"
                view.load_text(json_document(value))
            self.tree_view.load(value, self.kind)
        else:
            self.kind = kind or type(value).__name__
            self._structured = False
            view.load_text(str(value))
        self._show_tree = self._structured
        self._set_status("")
        self._arrange()
        self.update_header()

    def load_file(self, path: str | None, kind: str) -> None:
        self.load(read_context(path, kind), kind)

    def _arrange(self) -> None:
        split = self._structured and self._show_tree and self.size.width >= SPLIT_WIDTH
        self.set_class(split, "-split")
        self.set_class(self._structured and self._show_tree and not split, "-tree")

    def on_resize(self, event: events.Resize) -> None:
        self._arrange()

    def _show_text(self) -> None:
        if self.has_class("-tree"):
            self._show_tree = False
            self._arrange()

    def update_header(self) -> None:
        view = self.text_view
        parts = [f"context: {self.kind}"]
        if self.kind == "dir":
            parts.append(f"{len(self._file_offsets):,} files")
        parts += [f"{len(view.text):,} chars", f"{view.index.line_count:,} lines"]
        if view.indexing:
            parts[-1] = f"{view.index.line_count:,}+ lines (indexing…)"
        if view.coverage:
            parts.append(f"seen {seen_share(view.coverage.total, len(view.text))}")
        if self._current_file:
            parts.append(self._current_file)
        self.query_one("#context-header", Static).update("  ·  ".join(parts))

    @property
    def status(self) -> str:
        """The status line under the text: the search's progress, or a note (set it)."""
        return self._status

    @status.setter
    def status(self, status: str) -> None:
        self._set_status(status)

    def _set_status(self, status: str, error: bool = False) -> None:
        self._status, self.error = status, error
        line = self.query_one("#context-status", Static)
        line.update(status)
        line.set_class(bool(status), "visible")
        line.set_class(error, "error")

    # -- overlays ------------------------------------------------------------------------------

    def set_coverage(self, ranges: list[tuple[int, int]]) -> None:
        self.text_view.set_coverage(ranges)
        self.update_header()

    def set_highlight(self, ranges: list[tuple[int, int]]) -> None:
        self.text_view.set_highlight(ranges)

    @property
    def coverage_share(self) -> float:
        return self.text_view.coverage_share

    # -- search and go-to ----------------------------------------------------------------------

    def search(self, pattern: str, is_regex: bool = True, case: bool | None = None) -> str | None:
        """Search the text (see :meth:`ContextTextView.search`); the status line follows it."""
        self._show_text()
        error = self.text_view.search(pattern, is_regex, case)
        if error:
            self._set_status(error, error=True)
        elif pattern:
            self._set_status(f"searching /{pattern}/…")
        else:
            self._set_status("")
        return error

    def action_open_search(self, goto: bool = False) -> None:
        box = self.query_one("#context-search", Input)
        self._goto = goto
        box.placeholder = "line number, or @offset (Enter)" if goto else "regex search (Enter)"
        box.value = "" if goto else self.text_view.search_pattern
        box.add_class("visible")
        box.focus()
        if not goto:
            self.text_view.prepare_search()

    def action_goto_line(self) -> None:
        self.action_open_search(goto=True)

    def action_close_search(self) -> None:
        self.query_one("#context-search", Input).remove_class("visible")
        if self.has_class("-tree"):
            self.tree_view.focus()
        else:
            self.text_view.focus()

    def action_toggle_tree(self) -> None:
        if self._structured:
            self._show_tree = not self._show_tree
            self._arrange()
            (self.tree_view if self._show_tree else self.text_view).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        view = self.text_view
        if self._goto:
            self._show_text()
            # isdecimal, not isdigit: int() refuses "²", which isdigit takes
            line = value.replace(",", "").replace("_", "")
            if line.isdecimal():
                view.jump_to_line(max(0, int(line) - 1))
            elif value.startswith("@") and value[1:].isdecimal():
                view.jump_to_offset(int(value[1:]))
            elif value:
                self.app.notify("a line number, or @ and a character offset", severity="warning")
        else:
            self.search(event.value)
        self.action_close_search()

    def on_context_text_view_match_moved(self, event: ContextTextView.MatchMoved) -> None:
        event.stop()
        if event.count is None:
            self._set_status(f"first match at line {event.line + 1:,}; counting…")
        else:
            self._set_status(self._count_status(event.index, event.count, event.pattern))

    def on_context_text_view_search_done(self, event: ContextTextView.SearchDone) -> None:
        event.stop()
        if event.error:
            self._set_status(event.error, error=True)
            self.app.notify(event.error, severity="error")
        elif event.pattern and not event.count:
            self._set_status(f"no matches for /{event.pattern}/")
        elif event.pattern:
            at = max(0, self.text_view.match_at)
            self._set_status(self._count_status(at, event.count, event.pattern))

    def _count_status(self, at: int, count: int, pattern: str) -> str:
        status = f"{at + 1:,}/{count:,} matches for /{pattern}/"
        kept = len(self.text_view.matches)
        if count > kept:
            status += f" (n/N go through the first {kept:,})"
        return status

    def on_context_text_view_indexed(self, event: ContextTextView.Indexed) -> None:
        event.stop()
        self.update_header()

    def on_context_text_view_cursor_moved(self, event: ContextTextView.CursorMoved) -> None:
        event.stop()
        if self._file_starts:
            i = bisect_right(self._file_starts, (event.offset, "\uffff")) - 1
            current = self._file_starts[i][1] if i >= 0 else ""
            if current != self._current_file:
                self._current_file = current
                self.update_header()

    def on_context_tree_view_value_selected(self, event: ContextTreeView.ValueSelected) -> None:
        event.stop()
        if self.kind == "dir":
            offset = self._file_offsets.get(str(event.path[0])) if event.path else None
        else:
            offset = json_offset(self.text_view.text, self.value, event.path)
        if offset is None:
            return
        view = self.text_view
        if self.has_class("-split"):
            view.jump_to_offset(offset)
        elif event.leaf:
            self._show_text()
            view.jump_to_offset(offset)
            view.focus()


def read_context(path: str | None, kind: str) -> Any:
    """The context as the TUI shows it; a file that went missing shows as a note, not a crash."""
    if not path:
        return ""
    file = Path(path)
    try:
        if kind == "dir":
            return {
                str(p.relative_to(file)): p.read_text(encoding="utf-8", errors="replace")
                for p in sorted(file.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(file).parts)
            }
        text = file.read_text(encoding="utf-8", errors="replace")
        if kind == "json":
            return json.loads(text)
        if kind == "jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if kind == "yaml":
            import yaml

            return yaml.safe_load(text)
        return text
    except (OSError, ValueError) as exc:
        return f"(the context file {path} cannot be read: {exc})"
