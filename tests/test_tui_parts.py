"""Context browser, themes, config and keymap on their own."""

from __future__ import annotations

import asyncio
import re

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from rlm_tui.tui.config import ConfigError, apply_keymap, load_config
from rlm_tui.tui.context_view import (
    ContextBrowser,
    ContextTextView,
    ContextTree,
    LineIndex,
    coverage_ranges,
)
from rlm_tui.tui.themes import BUILTIN_THEMES, ThemeError, load_theme_file, watch_themes

pytestmark = pytest.mark.timeout(60)


def test_line_index():
    index = LineIndex("a\r\nbb\nccc")
    assert index.line_count == 3
    assert [index.line_text(i) for i in range(3)] == ["a", "bb", "ccc"]
    assert (
        index.line_of_offset(0) == 0
        and index.line_of_offset(4) == 1
        and index.line_of_offset(8) == 2
    )
    assert LineIndex("").line_count == 0
    assert LineIndex("x\n").line_count == 1
    partial = LineIndex("l\n" * 100, max_lines=10)
    assert not partial.complete and partial.line_count == 11


def test_coverage_ranges():
    context = "first line of the context here\nsecond line that a model printed out\nthird"
    seen = "[cell 1]\nsecond line that a model printed out\nnoise that is not in it at all!!"
    start = context.index("second")
    assert coverage_ranges(context, seen) == [
        (start, start + len("second line that a model printed out"))
    ]


class BrowserApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ContextBrowser()


async def test_browser_jump_search_and_coverage():
    lines = [f"line {i} {'needle' if i % 1000 == 0 else 'hay'}" for i in range(200_000)]
    text = "\n".join(lines)
    app = BrowserApp()
    async with app.run_test(size=(100, 30)) as pilot:
        browser = app.query_one(ContextBrowser)
        view = app.query_one(ContextTextView)
        browser.load(text)
        for _ in range(100):
            if view.index.complete:
                break
            await pilot.pause(0.02)
        assert view.index.line_count == 200_000
        view.focus()
        view.jump_to_line(150_000)
        await pilot.pause()
        assert any("150001 line 150000" in line for line in _screen_lines(app))
        browser.action_goto_line()
        await pilot.press(*"@25", "enter")
        assert view.cursor == text[:25].count("\n")
        view.jump_to_line(150_000)
        await pilot.press("slash", *"needle", "enter")
        for _ in range(100):
            if "matches" in browser.status:
                break
            await pilot.pause(0.02)
        assert len(view.matches) == len(re.findall("needle", text)) == 200
        assert browser.status.startswith("1/200 matches")
        await pilot.press("n")
        assert view.cursor == 1000
        await pilot.press("N", "N")
        assert view.cursor == 199_000
        start = text.index("line 5 hay")
        browser.set_coverage([(start, start + 10)])
        assert view.coverage_share == pytest.approx(10 / len(text))
        browser.action_open_search()
        await pilot.press(*"(unclosed", "enter")
        await pilot.pause(0.1)
        assert any("bad regular expression" in n.message for n in app._notifications)


async def test_browser_tree_for_structured_context():
    app = BrowserApp()
    async with app.run_test(size=(100, 30)) as pilot:
        browser = app.query_one(ContextBrowser)
        browser.load({"episodes": [{"title": "Sleep"}, {"title": "Running"}], "n": 2}, "json")
        await pilot.pause()
        tree = app.query_one(ContextTree)
        episodes = tree.root.children[0]
        assert str(episodes.label) == "episodes: list (2 items)"
        episodes.expand()
        await pilot.pause()
        assert [str(c.label) for c in episodes.children] == ["0: dict (1 keys)", "1: dict (1 keys)"]
        assert '"title": "Sleep"' in browser.text_view.text  # the JSON text stays searchable


def _screen_lines(app: App) -> list[str]:
    return [
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    ]


def test_shipped_themes_load():
    names = {load_theme_file(p).name for p in BUILTIN_THEMES.glob("*.yaml")}
    assert {"rlm-dark", "rlm-light"} <= names


def test_bad_theme_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndark: maybe\nprimary: '#ffffff'\n")
    with pytest.raises(ThemeError, match=r"bad.yaml: dark:"):
        load_theme_file(bad)


async def test_theme_hot_reload(tmp_path):
    theme = tmp_path / "mine.yaml"
    theme.write_text("name: mine\ndark: true\nprimary: '#112233'\n")

    class ThemedApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("hi")

        def on_mount(self) -> None:
            self.register_theme(load_theme_file(theme))
            self.theme = "mine"
            self.run_worker(watch_themes(self, [tmp_path]))

    app = ThemedApp()
    async with app.run_test() as pilot:
        await pilot.pause(0.3)
        theme.write_text("name: mine\ndark: true\nprimary: '#AA0000'\n")
        for _ in range(100):
            if app.current_theme.primary.upper() == "#AA0000":
                break
            await asyncio.sleep(0.05)
        assert app.current_theme.primary.upper() == "#AA0000"
        assert app.theme == "mine"


def test_config(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_TUI_CONFIG_DIR", str(tmp_path))
    assert load_config().theme == "rlm-dark"
    (tmp_path / "config.yaml").write_text("theme: rlm-light\nkeymap:\n  run.pause: p\n")
    assert load_config().keymap == {"run.pause": "p"}
    (tmp_path / "config.yaml").write_text("theme: 3\nkeymap: nope\n")
    with pytest.raises(ConfigError, match=r"config.yaml: (theme|keymap)"):
        load_config()


async def test_keymap_remaps_a_binding_by_id():
    class KeyApp(App[None]):
        BINDINGS = [Binding("x", "hit", "Hit", id="test.hit")]
        hits = 0

        def action_hit(self) -> None:
            self.hits += 1

    app = KeyApp()
    async with app.run_test() as pilot:
        warnings = apply_keymap(app, {"test.hit": "y", "nope.id": "z"}, {"test.hit"})
        assert warnings == ["keymap: no binding with id 'nope.id'"]
        await pilot.press("x")
        assert app.hits == 0
        await pilot.press("y")
        assert app.hits == 1
