"""The context browser: a virtual view over a line index (40 MB stays instant), regex search in
a thread, a coverage overlay of what the models have seen, and a tree for structured contexts.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from itertools import islice
from pathlib import Path
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import ContentSwitcher, Input, Static, Tree
from textual.worker import get_current_worker

MAX_MATCHES = 100_000
QUICK_LINES = 2000
"""Lines indexed before the first paint of a big text; the rest is indexed in a thread."""
MIN_SEEN_LINE = 24
TREE_CHILDREN = 1000


class LineIndex:
    """Offsets of line starts: line n is ``text[starts[n]:starts[n+1]-1]``."""

    def __init__(self, text: str, max_lines: int | None = None) -> None:
        self.text = text
        ends = (m.end() for m in re.finditer("\n", text))
        self.starts = [0, *(ends if max_lines is None else islice(ends, max_lines))]
        self.complete = max_lines is None or len(self.starts) <= max_lines
        if self.starts[-1] == len(text) and len(self.starts) > 1:
            self.starts.pop()

    @property
    def line_count(self) -> int:
        return len(self.starts) if self.text else 0

    def line_span(self, n: int) -> tuple[int, int]:
        start = self.starts[n]
        end = self.starts[n + 1] - 1 if n + 1 < len(self.starts) else len(self.text)
        if end > start and self.text[end - 1] == "\r":
            end -= 1
        return start, end

    def line_text(self, n: int) -> str:
        start, end = self.line_span(n)
        return self.text[start:end]

    def line_of_offset(self, offset: int) -> int:
        return max(0, bisect_right(self.starts, offset) - 1)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def coverage_ranges(context: str, seen: str, min_len: int = MIN_SEEN_LINE) -> list[tuple[int, int]]:
    """Where the lines of ``seen`` (text a model was shown) occur in the context."""
    ranges = []
    for line in seen.splitlines():
        line = line.strip()
        if len(line) < min_len or line.startswith("... [output truncated"):
            continue
        pos = context.find(line)
        if pos >= 0:
            ranges.append((pos, pos + len(line)))
    return merge_ranges(ranges)


class _Ranges:
    """Merged character ranges with bisect lookup, so painting a line stays O(log n)."""

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self.ranges = merge_ranges(ranges or [])
        self.starts = [r[0] for r in self.ranges]

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        i = max(0, bisect_left(self.starts, start) - 1)
        found = []
        while i < len(self.ranges) and self.ranges[i][0] < end:
            a, b = self.ranges[i]
            if b > start:
                found.append((max(a, start), min(b, end)))
            i += 1
        return found

    @property
    def total(self) -> int:
        return sum(b - a for a, b in self.ranges)


class ContextTextView(ScrollView, can_focus=True):
    """Renders only the visible lines of a (possibly huge) text."""

    COMPONENT_CLASSES = {
        "context-view--gutter",
        "context-view--covered",
        "context-view--highlight",
        "context-view--match",
        "context-view--cursor",
        "context-view--selection",
    }
    DEFAULT_CSS = """
    ContextTextView { background: $surface; }
    ContextTextView > .context-view--gutter { color: $text-muted; }
    ContextTextView > .context-view--covered { background: $success 20%; }
    ContextTextView > .context-view--highlight { background: $warning 45%; }
    ContextTextView > .context-view--match { background: $accent 70%; color: $text; }
    ContextTextView > .context-view--cursor { background: $primary 25%; }
    ContextTextView > .context-view--selection { background: $secondary 35%; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False, id="context.up"),
        Binding("down", "cursor(1)", "Down", show=False, id="context.down"),
        Binding("pageup", "cursor(-20)", "Page up", show=False, id="context.page_up"),
        Binding("pagedown", "cursor(20)", "Page down", show=False, id="context.page_down"),
        Binding("home", "jump(0)", "Top", show=False, id="context.top"),
        Binding("end", "jump(-1)", "Bottom", show=False, id="context.bottom"),
        Binding("n", "next_match", "Next match", id="context.next_match"),
        Binding("N", "previous_match", "Previous match", id="context.previous_match"),
        Binding("v", "mark", "Mark selection", id="context.mark"),
    ]

    class SearchDone(Message):
        def __init__(self, pattern: str, count: int, error: str | None) -> None:
            super().__init__()
            self.pattern, self.count, self.error = pattern, count, error

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = LineIndex("")
        self.cursor = 0
        self.mark: int | None = None
        self.coverage = _Ranges()
        self.highlight = _Ranges()
        self.matches: list[tuple[int, int]] = []
        self._match_ranges = _Ranges()
        self.match_at = -1
        self._gutter = 2
        self._lowered: str | None = None

    def load_text(self, text: str) -> None:
        """Paint the first screen at once; a big text's full index follows from a thread."""
        self.index = LineIndex(text, QUICK_LINES)
        self._lowered = None
        self.cursor, self.mark = 0, None
        self.matches, self._match_ranges, self.match_at = [], _Ranges(), -1
        self._sized()
        self.scroll_to(0, 0, animate=False)
        if not self.index.complete:  # after the first paint: the thread competes for the GIL
            self.call_after_refresh(self._index_fully, text)

    def _sized(self) -> None:
        self._gutter = len(str(max(1, self.index.line_count))) + 1
        self.virtual_size = Size(self._gutter + 1 + 4096, self.index.line_count)
        self.refresh()

    @work(thread=True, exclusive=True, group="context-index")
    def _index_fully(self, text: str) -> None:
        index = LineIndex(text)
        self.app.call_from_thread(self._indexed, index)

    def _indexed(self, index: LineIndex) -> None:
        if index.text is self.index.text:
            self.index = index
            self._sized()

    @property
    def text(self) -> str:
        return self.index.text

    def set_coverage(self, ranges: list[tuple[int, int]]) -> None:
        self.coverage = _Ranges(ranges)
        self.refresh()

    def set_highlight(self, ranges: list[tuple[int, int]]) -> None:
        self.highlight = _Ranges(ranges)
        if self.highlight.ranges:
            self.jump_to_offset(self.highlight.ranges[0][0])
        self.refresh()

    @property
    def coverage_share(self) -> float:
        return self.coverage.total / len(self.text) if self.text else 0.0

    def selection(self) -> str | None:
        """The lines between the mark and the cursor, if a mark is set."""
        if self.mark is None or not self.text:
            return None
        first, last = sorted((self.mark, self.cursor))
        start, _ = self.index.line_span(first)
        _, end = self.index.line_span(last)
        return self.text[start:end]

    # -- movement ----------------------------------------------------------------------------

    def jump_to_line(self, line: int) -> None:
        count = self.index.line_count
        if count == 0:
            return
        self.cursor = max(0, min(line if line >= 0 else count - 1, count - 1))
        visible = self.scrollable_content_region.height or 1
        top = self.scroll_offset.y
        if not top <= self.cursor < top + visible:
            self.scroll_to(y=max(0, self.cursor - visible // 3), animate=False)
        self.refresh()

    def jump_to_offset(self, offset: int) -> None:
        self.jump_to_line(self.index.line_of_offset(offset))

    def action_cursor(self, delta: int) -> None:
        self.jump_to_line(self.cursor + delta)

    def action_jump(self, line: int) -> None:
        self.jump_to_line(line)

    def action_mark(self) -> None:
        self.mark = None if self.mark is not None else self.cursor
        self.refresh()

    # -- search ------------------------------------------------------------------------------

    def search(self, pattern: str, regex: bool = True) -> None:
        """Smart case: a pattern with a capital letter matches case; otherwise it ignores it."""
        source = pattern if regex else re.escape(pattern)
        try:
            compiled = re.compile(source)
        except re.error as exc:
            self.post_message(self.SearchDone(pattern, 0, f"bad regular expression: {exc}"))
            return
        self._search(compiled, pattern, ignore_case=pattern == pattern.lower())

    @work(thread=True, exclusive=True, group="context-search")
    def _search(self, compiled: re.Pattern[str], pattern: str, ignore_case: bool) -> None:
        worker = get_current_worker()
        text = self.text
        if ignore_case:
            text, compiled = self._case_blind(compiled)
        first = compiled.search(text)
        if first is None:
            self.app.call_from_thread(self._set_matches, [], pattern, done=True)
            return
        self.app.call_from_thread(self._set_matches, [first.span()], pattern, done=False)
        found = []
        for match in compiled.finditer(text):
            if worker.is_cancelled:
                return
            if match.end() > match.start():
                found.append(match.span())
            if len(found) >= MAX_MATCHES:
                break
        self.app.call_from_thread(self._set_matches, found, pattern, done=True)

    def _case_blind(self, compiled: re.Pattern[str]) -> tuple[str, re.Pattern[str]]:
        """A lower-cased copy searched case-sensitively: 17x faster than re.IGNORECASE
        (used while lower-casing keeps every offset where it was)."""
        if self._lowered is None:
            lowered = self.text.lower()
            self._lowered = lowered if len(lowered) == len(self.text) else ""
        if self._lowered:
            return self._lowered, compiled
        return self.text, re.compile(compiled.pattern, re.IGNORECASE)

    def _set_matches(self, found: list[tuple[int, int]], pattern: str, done: bool) -> None:
        first_time = not self.matches or not done
        self.matches = found
        self._match_ranges = _Ranges(found)
        if found and first_time:
            self.match_at = 0
            self.jump_to_offset(found[0][0])
        self.refresh()
        if done:
            self.post_message(self.SearchDone(pattern, len(found), None))

    def action_next_match(self) -> None:
        self._step_match(1)

    def action_previous_match(self) -> None:
        self._step_match(-1)

    def _step_match(self, direction: int) -> None:
        if not self.matches:
            return
        self.match_at = (self.match_at + direction) % len(self.matches)
        self.jump_to_offset(self.matches[self.match_at][0])

    # -- painting ----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        line_no = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if line_no >= self.index.line_count:
            return Strip.blank(width, self.rich_style)
        gutter_style = self.get_component_rich_style("context-view--gutter")
        base = self.rich_style
        if line_no == self.cursor:
            base = base + self.get_component_rich_style("context-view--cursor")
        elif self.mark is not None and min(self.mark, self.cursor) <= line_no <= max(
            self.mark, self.cursor
        ):
            base = base + self.get_component_rich_style("context-view--selection")
        start, end = self.index.line_span(line_no)
        x = self.scroll_offset.x
        visible_start = min(start + x, end)
        visible_end = min(end, visible_start + max(0, width - self._gutter - 1))
        text = self.text[visible_start:visible_end].expandtabs(4).replace("\r", "")
        segments = [Segment(f"{line_no + 1:>{self._gutter}} ", base + gutter_style)]
        segments += self._styled(text, visible_start, visible_end, base)
        strip = Strip(segments)
        return strip.extend_cell_length(width, base).crop(0, width)

    def _styled(self, text: str, start: int, end: int, base: Style) -> list[Segment]:
        if len(text) != end - start:  # tabs expanded: no per-character overlay
            return [Segment(text, base)]
        marks: list[tuple[int, int, Style]] = []
        for name, ranges in (
            ("context-view--covered", self.coverage.overlapping(start, end)),
            ("context-view--highlight", self.highlight.overlapping(start, end)),
            ("context-view--match", self._match_ranges.overlapping(start, end)),
        ):
            style = self.get_component_rich_style(name)
            marks += [(a - start, b - start, style) for a, b in ranges]
        if not marks:
            return [Segment(text, base)]
        styles = [base] * len(text)
        for a, b, style in marks:
            for i in range(a, b):
                styles[i] = styles[i] + style
        segments: list[Segment] = []
        run_start = 0
        for i in range(1, len(text) + 1):
            if i == len(text) or styles[i] != styles[run_start]:
                segments.append(Segment(text[run_start:i], styles[run_start]))
                run_start = i
        return segments


class ContextTree(Tree[Any]):
    """A dict/list/directory context as a tree opened lazily."""

    def load(self, value: Any) -> None:
        self.clear()
        self.root.data = value
        self.root.set_label(_label("context", value))
        self._fill(self.root, value)
        self.root.expand()

    def _fill(self, node: Any, value: Any) -> None:
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        for key, child in items[:TREE_CHILDREN]:
            if isinstance(child, dict | list) and child:
                branch = node.add(_label(str(key), child), data=child)
                branch.add_leaf("…")  # opened on expand
            else:
                node.add_leaf(_label(str(key), child), data=child)
        if len(items) > TREE_CHILDREN:
            node.add_leaf(f"… {len(items) - TREE_CHILDREN:,} more")

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        node = event.node
        if node is not self.root and node.children and str(node.children[0].label) == "…":
            node.remove_children()
            self._fill(node, node.data)


def _label(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"{key}: dict ({len(value):,} keys)"
    if isinstance(value, list):
        return f"{key}: list ({len(value):,} items)"
    shown = repr(value)
    return f"{key}: {shown[:80] + '…' if len(shown) > 80 else shown}"


class ContextBrowser(Vertical):
    """The pane: a header, a search box, and the text view or the tree."""

    DEFAULT_CSS = """
    ContextBrowser { height: 1fr; }
    ContextBrowser > #context-header { height: 1; background: $panel; color: $text; padding: 0 1; }
    ContextBrowser > #context-search { display: none; }
    ContextBrowser > #context-search.visible { display: block; }
    ContextBrowser ContentSwitcher { height: 1fr; }
    ContextBrowser ContextTextView, ContextBrowser ContextTree { height: 1fr; }
    """
    BINDINGS = [
        Binding("slash", "open_search", "Search", id="context.search"),
        Binding("colon", "goto_line", "Go to line", id="context.goto"),
        Binding("t", "toggle_tree", "Text/tree", id="context.toggle_tree"),
        Binding("escape", "close_search", "Close search", show=False, id="context.close_search"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = "none"
        self.status = ""
        self._goto = False

    def compose(self) -> Any:
        yield Static("context: none", id="context-header")
        yield Input(placeholder="regex search (Enter), or :line", id="context-search")
        with ContentSwitcher(initial="context-text"):
            yield ContextTextView(id="context-text")
            yield ContextTree("context", id="context-tree")

    @property
    def text_view(self) -> ContextTextView:
        return self.query_one(ContextTextView)

    def load(self, value: Any, kind: str = "text") -> None:
        """Show a str as text; dict/list as a tree (their JSON text stays searchable)."""
        self.kind = kind
        if isinstance(value, str):
            self.text_view.load_text(value)
            self._show("context-text")
        else:
            self.text_view.load_text(json.dumps(value, indent=1, ensure_ascii=False, default=str))
            self.query_one(ContextTree).load(value)
            self._show("context-tree")
        self.update_header()

    def load_file(self, path: str | None, kind: str) -> None:
        self.load(read_context(path, kind), kind)

    def _show(self, which: str) -> None:
        self.query_one(ContentSwitcher).current = which

    def update_header(self) -> None:
        view = self.text_view
        parts = [
            f"context: {self.kind}",
            f"{len(view.text):,} chars",
            f"{view.index.line_count:,} lines",
        ]
        if view.coverage.ranges:
            parts.append(f"seen {view.coverage_share:.1%}")
        if self.status:
            parts.append(self.status)
        self.query_one("#context-header", Static).update("  ·  ".join(parts))

    def set_coverage(self, ranges: list[tuple[int, int]]) -> None:
        self.text_view.set_coverage(ranges)
        self.update_header()

    def action_open_search(self, goto: bool = False) -> None:
        box = self.query_one("#context-search", Input)
        self._goto = goto
        box.placeholder = "line number, or @offset (Enter)" if goto else "regex search (Enter)"
        box.add_class("visible")
        box.focus()

    def action_goto_line(self) -> None:
        self.action_open_search(goto=True)

    def action_close_search(self) -> None:
        self.query_one("#context-search", Input).remove_class("visible")
        self.text_view.focus()

    def action_toggle_tree(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        if self.kind in ("json", "jsonl", "yaml", "dir"):
            switcher.current = (
                "context-text" if switcher.current == "context-tree" else "context-tree"
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self._show("context-text")
        if self._goto:
            if value.isdigit():
                self.text_view.jump_to_line(int(value) - 1)
            elif value.startswith("@") and value[1:].isdigit():
                self.text_view.jump_to_offset(int(value[1:]))
            else:
                self.app.notify("a line number, or @ and a character offset", severity="warning")
            self.action_close_search()
        elif value:
            self.status = f"searching /{value}/…"
            self.update_header()
            self.text_view.search(value)
            self.text_view.focus()

    def on_context_text_view_search_done(self, event: ContextTextView.SearchDone) -> None:
        if event.error:
            self.status = ""
            self.app.notify(event.error, severity="error")
        else:
            at = self.text_view.match_at + 1 if event.count else 0
            self.status = f"{at}/{event.count:,} matches for /{event.pattern}/"
        self.update_header()


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
