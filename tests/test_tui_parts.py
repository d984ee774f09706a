"""Context browser, themes, config, keymap and budget meter on their own."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import screen_lines
from rich.style import Style
from scripted import until
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static, Tree

from rlm_tui.engine.budget import Limits
from rlm_tui.events import SandboxInfo, Usage
from rlm_tui.tui.budget_meter import BudgetMeter, meter_rows, warning_line
from rlm_tui.tui.config import ConfigError, UiConfig, apply_keymap, binding_ids, load_config
from rlm_tui.tui.context_view import (
    ContextBrowser,
    ContextTextView,
    ContextTree,
    LineIndex,
    coverage_ranges,
)
from rlm_tui.tui.themes import (
    BUILTIN_THEMES,
    ThemeError,
    load_theme_file,
    load_themes,
    theme_dirs,
    watch_themes,
)
from rlm_tui.tui.usage_table import UsageTable

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
    context = "first line of the context here\nsecond line that a model printed out in full\nthird"
    seen = (
        "[cell 1]\nsecond line that a model printed out in full\nnoise that is not in it at all!!"
    )
    line = "second line that a model printed out in full"
    [(a, b)] = coverage_ranges(context, seen)  # with the line breaks around it, also seen
    assert context[a:b].strip() == line


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
        assert any("150001 line 150000" in line for line in screen_lines(app))
        browser.action_goto_line()
        await pilot.press(*"@25", "enter")
        assert view.cursor == text[:25].count("\n")
        for typed in ["²", "@²", "1²"]:  # digits to isdigit, not to int(): a warning
            browser.action_goto_line()
            await pilot.press(*typed, "enter")
            assert view.cursor == text[:25].count("\n")
        assert sum("a line number" in n.message for n in app._notifications) == 3
        view.jump_to_line(150_000)
        await pilot.press("slash", *"needle", "enter")
        for _ in range(100):
            if "matches" in browser.status:
                break
            await pilot.pause(0.02)
        assert len(view.matches) == len(re.findall("needle", text)) == 200
        assert browser.status.startswith("1/200 matches")
        await pilot.press("n")
        assert view.cursor == 1000 and browser.status.startswith("2/200 matches")
        await pilot.press("N", "N")
        assert view.cursor == 199_000 and browser.status.startswith("200/200 matches")
        await pilot.press("colon")  # the go-to box opens empty, not holding the search
        assert browser.query_one("#context-search").value == ""
        await pilot.press("escape")
        view.focus()
        start = text.index("line 5 hay")
        browser.set_coverage([(start, start + 10)])
        assert view.coverage_share == pytest.approx(10 / len(text))
        browser.action_open_search()
        await pilot.press(*"(unclosed", "enter")
        await pilot.pause(0.1)
        assert any("bad regular expression" in n.message for n in app._notifications)


async def test_a_search_that_backtracks_without_end_stops_and_the_app_goes_on(monkeypatch):
    """``(\\w+\\s?)+$`` over 3 MB: the search lets go of the GIL (the app still answers keys
    while it runs) and stops at its timeout with one line saying so."""
    from rlm_tui.tui import context_view

    monkeypatch.setattr(context_view, "SEARCH_TIMEOUT", 4.0)
    text = ("word " * 30 + "!\n") * 20_000
    app = BrowserApp()
    async with app.run_test(size=(100, 30)) as pilot:
        browser = app.query_one(ContextBrowser)
        view = app.query_one(ContextTextView)
        browser.load(text)
        await until(pilot, lambda: view.index.complete)
        view.focus()
        browser.search(r"(\w+\s?)+$")
        await asyncio.sleep(0.3)
        assert view.searching
        at = view.cursor
        # a key, handled while the search runs (not pilot.press: it waits for the process's
        # CPU time to stand still, and the search's thread spends it)
        app.post_message(events.Key("down", None))
        await asyncio.sleep(0.2)
        assert view.cursor == at + 1 and view.searching  # moved while the search still ran
        await until(pilot, lambda: not view.searching, timeout=10)
        assert browser.status.startswith("search stopped after 4 s")
        assert any("search stopped" in n.message for n in app._notifications)


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


# -- themes, config and keymap ---------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_shipped_themes_load():
    from rlm_tui.tui.theme_file import ThemeFile
    from rlm_tui.yaml_file import read_yaml_model

    themes = {p.stem: load_theme_file(p) for p in BUILTIN_THEMES.glob("*.yaml")}
    for path in BUILTIN_THEMES.glob("*.yaml"):  # read as they are: they must meet the schema
        assert read_yaml_model(path, ThemeFile, ThemeError).to_theme() == themes[path.stem]
    assert themes["dark"].name == "rlm-dark" and themes["dark"].dark
    assert themes["light"].name == "rlm-light" and not themes["light"].dark
    assert themes["dark"].primary.upper() == "#4EA1FF"
    assert {"rlm-dark", "rlm-light", "rlm-solarized"} <= set(load_themes([BUILTIN_THEMES]))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: x\ndark: maybe\nprimary: '#ffffff'\n", "dark"),
        ("name: x\nprimary: '#ffffff'\nwarning: not-a-colour\n", "warning"),
        ("name: x\n", "primary"),
        ("name: x\nprimary: '#ffffff'\ncolour: red\n", "colour"),
        ("name: x\nprimary: '#ffffff'\nvariables:\n  $bad: red\n", "variables"),
    ],
)
def test_bad_theme_file_names_file_and_field(tmp_path, text, field):
    bad = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ThemeError, match=rf"bad\.yaml: {field}: ") as caught:
        load_theme_file(bad)
    assert "\n" not in str(caught.value)


def test_bad_yaml_is_one_line(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "name: x\nprimary: [unclosed\n")
    with pytest.raises(ThemeError, match=r"bad\.yaml: not valid YAML: line \d+") as caught:
        load_theme_file(bad)
    assert "\n" not in str(caught.value)


def test_load_themes_reports_bad_files_and_goes_on(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    _write(user / "mine.yaml", "name: mine\nprimary: '#123456'\n")
    _write(user / "broken.yaml", "name: broken\nprimary: 12\n")
    _write(user / "rlm-dark-override.yml", "name: rlm-dark\nprimary: '#010203'\n")
    problems: list[str] = []
    themes = load_themes([BUILTIN_THEMES, user, tmp_path / "missing"], on_error=problems.append)
    assert {"mine", "rlm-dark", "rlm-light"} <= set(themes) and "broken" not in themes
    assert themes["rlm-dark"].primary == "#010203"  # the user's folder wins
    assert len(problems) == 1 and "broken.yaml: primary:" in problems[0]


def test_theme_dirs_follow_the_config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_TUI_CONFIG_DIR", str(tmp_path))
    assert theme_dirs() == [BUILTIN_THEMES, tmp_path / "themes"]
    assert BUILTIN_THEMES.is_dir()


class ThemedApp(App[None]):
    def __init__(self, directory: Path, theme_file: Path) -> None:
        super().__init__()
        self.directory, self.theme_file = directory, theme_file

    def compose(self) -> ComposeResult:
        yield Static("hi")

    def on_mount(self) -> None:
        self.register_theme(load_theme_file(self.theme_file))
        self.theme = "mine"
        self.run_worker(watch_themes(self, [self.directory]), group="themes")


async def test_theme_hot_reload(tmp_path):
    theme = _write(tmp_path / "mine.yaml", "name: mine\ndark: true\nprimary: '#112233'\n")
    app = ThemedApp(tmp_path, theme)
    async with app.run_test() as pilot:
        await pilot.pause(0.3)  # the watcher is up
        _write(theme, "name: mine\ndark: true\nprimary: '#AA0000'\n")
        applied = load_theme_file(theme).to_color_system().generate()["primary"]
        assert applied != app.theme_variables["primary"]
        # the CSS variables are regenerated, not just the theme registered
        await until(pilot, lambda: app.theme_variables["primary"] == applied, timeout=5.0)
        assert app.current_theme.primary.upper() == "#AA0000" and app.theme == "mine"
        _write(theme, "name: mine\ndark: true\nprimary: nonsense\n")
        await until(
            pilot,
            lambda: any("mine.yaml: primary" in n.message for n in app._notifications),
            timeout=5.0,
        )
        assert app.current_theme.primary.upper() == "#AA0000"  # the last good one stays


def test_config_defaults_valid_and_invalid(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_TUI_CONFIG_DIR", str(tmp_path))
    assert load_config() == UiConfig(theme="rlm-dark", keymap={}, editor=None)
    _write(
        tmp_path / "config.yaml",
        """
        theme: rlm-light
        editor: nvim
        keymap:
          run.pause: "ctrl+p, f5"
        """,
    )
    assert load_config() == UiConfig(
        theme="rlm-light", keymap={"run.pause": "ctrl+p,f5"}, editor="nvim"
    )
    for text, field in [
        ("theme: [1]\n", "theme"),
        ("keymap: nope\n", "keymap"),
        ("keymap:\n  run.pause: ''\n", "keymap"),
        ("colour: red\n", "colour"),
    ]:
        _write(tmp_path / "config.yaml", text)
        with pytest.raises(ConfigError, match=rf"config\.yaml: {field}: ") as caught:
            load_config()
        assert "\n" not in str(caught.value)


async def test_keymap_remaps_a_binding_by_id():
    class KeyApp(App[None]):
        BINDINGS = [Binding("x", "foo", "Foo", id="test.foo")]
        hits = 0

        def action_foo(self) -> None:
            self.hits += 1

    app = KeyApp()
    async with app.run_test() as pilot:
        assert binding_ids(app) >= {"test.foo"}
        warnings = apply_keymap(app, {"test.foo": "y", "nope.id": "z", "test.bad": " "})
        assert warnings[0] == "keymap: no binding with id 'nope.id'"
        assert "test.bad" in warnings[1] and len(warnings) == 2
        await pilot.press("x")
        assert app.hits == 0
        await pilot.press("y")
        assert app.hits == 1
        assert apply_keymap(app, {"test.foo": "x,w"}, known_ids={"test.foo"}) == []
        await pilot.press("w", "x", "y")
        assert app.hits == 3


# -- the budget meter ----------------------------------------------------------------------

SAMPLE_LIMITS = Limits(
    max_depth=3, max_calls=10, max_prompt_tokens=10_000, max_cost=1.0, max_time=300
)
SAMPLE_AGENTS = [
    ("0", Usage(prompt_tokens=5_000, completion_tokens=800, calls=5, cost=0.008)),
    ("0.1", Usage(prompt_tokens=2_000, completion_tokens=300, calls=3, cost=0.003)),
    ("0.2", Usage(prompt_tokens=1_500, completion_tokens=134, calls=1, cost=0.0013)),
]


def _show_sample(meter: BudgetMeter) -> None:
    meter.show(
        SAMPLE_LIMITS,
        Usage(prompt_tokens=8_500, completion_tokens=1_234, calls=9, cost=0.0123),
        2,
        12.3,
        SAMPLE_AGENTS,
        [300, 800, 1200, 500, 2500, 900, 1800, 700, 1234],
    )


class MeterApp(App[None]):
    def __init__(self, theme: str = "rlm-dark") -> None:
        super().__init__()
        self._theme_name = theme

    def compose(self) -> ComposeResult:
        yield BudgetMeter()

    def on_mount(self) -> None:
        for theme in load_themes([BUILTIN_THEMES]).values():
            self.register_theme(theme)
        self.theme = self._theme_name
        _show_sample(self.query_one(BudgetMeter))


def test_meter_rows_levels():
    rows = {r.name: r for r in meter_rows({"max_calls": 10, "max_depth": 2}, Usage(calls=9), 2, 1)}
    assert rows["model calls"].level == "warning" and rows["model calls"].share == 0.9
    assert rows["depth"].level == "warning"  # depth can reach its limit, never pass it
    assert rows["prompt tokens"].share is None and rows["prompt tokens"].level == "ok"
    assert meter_rows(Limits(max_calls=10), Usage(calls=10), 0, 0)[3].level == "error"
    assert warning_line(meter_rows(Limits(max_calls=10), Usage(calls=10), 0, 0)) == (
        "⚠ model calls limit reached (10 of 10)"
    )


async def test_budget_meter_warns_and_updates_in_place():
    app = MeterApp()
    async with app.run_test(size=(80, 24)) as pilot:
        meter = app.query_one(BudgetMeter)
        meter.show(Limits(max_calls=10), Usage(calls=9), 1, 3.0, SAMPLE_AGENTS[:1], [10])
        await pilot.pause()
        assert "model calls at 90% of limit" in meter.warning
        assert "prompt tokens" not in meter.warning
        screen = "\n".join(screen_lines(app))
        assert "model calls at 90% of limit" in screen and "no limit" in screen
        table = app.query_one(UsageTable)
        children = list(meter.walk_children())
        meter.show(Limits(max_calls=10), Usage(calls=3), 1, 4.0, SAMPLE_AGENTS, [10, 20])
        await pilot.pause()
        assert list(meter.walk_children()) == children  # nothing rebuilt
        assert meter.warning == "" and table.row_count == 3
        assert table.cell("0.1", "calls") == "3"
        changed = [("0.1", Usage(calls=4, cost=2.5)), *SAMPLE_AGENTS[:1]]
        meter.show({}, Usage(calls=4), 0, 5.0, changed, [])
        await pilot.pause()
        assert table.row_count == 2 and table.cell("0.1", "cost") == "$2.50"


async def test_budget_meter_shown_before_mount_appears_on_mount():
    class LateApp(App[None]):
        def compose(self) -> ComposeResult:
            meter = BudgetMeter()
            meter.show(Limits(max_calls=10), Usage(calls=9), 0, 0.0, [], [])
            yield meter

    app = LateApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert "model calls" in app.query_one(BudgetMeter).warning


@pytest.mark.parametrize("passes", range(5))
async def test_an_app_ending_while_the_budget_meter_mounts_ends_cleanly(passes):
    """Its parts are gone before its Mount is handled: a query for them there raised."""
    app = App[None]()
    async with app.run_test():
        app.mount(BudgetMeter())
        for _ in range(passes):  # the end comes at each stage of the mount
            await asyncio.sleep(0)
        app.exit()
    assert app.return_code == 0


@pytest.mark.parametrize("theme", ["rlm-dark", "rlm-light"])
def test_budget_meter_snapshot(snap_compare, theme):
    assert snap_compare(MeterApp(theme), terminal_size=(80, 24))


async def test_the_cells_follow_the_tree_cursor_and_enter_folds():
    from tui_fixtures import sample_events

    from rlm_tui.tui.agent_tree import AgentTree
    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.cell_log import CellLog
    from rlm_tui.tui.config import UiConfig

    app = RlmApp(events=sample_events(), ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        cells = app.screen.query_one(CellLog)
        assert {c.agent_id for c in cells.cells} == {"0", "0.1"}
        tree = app.screen.query_one(AgentTree)
        assert tree.cursor_node is not None and tree.cursor_node.data == "0"  # from the start
        await pilot.press("2", "down")  # the cursor on agent 0.1
        await pilot.pause(0.1)
        assert {c.agent_id for c in cells.cells} == {"0.1"}
        await pilot.press("up")
        await pilot.pause(0.1)
        assert {c.agent_id for c in cells.cells} == {"0"}
        agent0 = tree.root.children[0]
        assert agent0.is_expanded
        await pilot.press("enter")
        assert not agent0.is_expanded
        await pilot.press("a")
        await pilot.pause(0.1)
        assert {c.agent_id for c in cells.cells} == {"0", "0.1"}


async def test_a_theme_chosen_in_the_app_is_saved_to_the_config(tmp_path, monkeypatch):
    from tui_fixtures import sample_events

    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.config import load_config

    monkeypatch.setenv("RLM_TUI_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.yaml").write_text("# my settings\neditor: vim\n")
    app = RlmApp(events=sample_events(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "rlm-dark"
        app.theme = "rlm-light"
        await pilot.pause(0.1)
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith("# my settings\neditor: vim\n")
    assert load_config(tmp_path / "config.yaml").theme == "rlm-light"


async def test_replay_pauses_steps_seeks_and_changes_speed_with_recorded_times():
    from tui_fixtures import sample_events

    from rlm_tui.tui.agent_tree import AgentTree
    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.config import UiConfig
    from rlm_tui.tui.run_screen import RunScreen

    events = sample_events()
    app = RlmApp(events=events, replay_speed=1.0, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.player is not None
        player = screen.player
        await pilot.press("space")  # pause
        await pilot.pause(0.1)
        at = player.position
        await pilot.pause(1.2)
        assert player.paused and player.position == at and at < len(events)
        await pilot.press("s")  # one event
        assert player.position == at + 1
        await pilot.press("greater_than_sign")  # to the end of the next cell
        assert type(events[player.position - 1]).__name__ == "CellFinished"
        await pilot.press("plus")
        assert player.speed == 2.0
        await pilot.pause(0.1)
        status = str(screen.query_one("#status").render())
        assert status.startswith("⏵ replay · running") and "⏸ 2x · event" in status
        await pilot.press("E")  # to the end
        await pilot.pause(0.2)
        assert player.done and screen.view.status == "answered"
        assert "replay · answered" in str(screen.query_one("#status").render())
        label = str(screen.query_one(AgentTree).root.children[0].label)
        assert "5.2s" in label  # agent 0's time in the recording, not since it was made
        await pilot.press("r")  # seek back: from the start, paused
        await pilot.pause(0.2)
        again = app.screen
        assert again is not screen and isinstance(again, RunScreen)
        assert again.player is not None and again.player.paused and again.player.position == 0
        await pilot.press("minus")
        assert again.player.speed == 1.0  # one step down from 2x
        ends = [i + 1 for i, e in enumerate(events) if type(e).__name__ == "CellFinished"]
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert again.player.position == ends[1]
        await pilot.press("less_than_sign")  # seek back a cell: shown up to the first's end
        await pilot.pause(0.2)
        back = app.screen
        assert back is not again and isinstance(back, RunScreen) and back.player is not None
        assert back.player.paused and back.player.position == ends[0]
        first, second = (events[end - 1].cell_id for end in ends[:2])
        assert back.view.cells[first].duration is not None  # played: it ended
        assert second not in back.view.cells or back.view.cells[second].duration is None


def test_the_status_line_cuts_the_path_never_the_state():
    from tui_fixtures import sample_events

    from rlm_tui.events import CellPaused, CellProposed
    from rlm_tui.session.projection import fold
    from rlm_tui.tui.status_line import status_line

    events = [e for e in sample_events() if e.seq <= 6]
    events[0] = events[0].model_copy(
        update={
            "model_is_demo": True,
            "sandbox": SandboxInfo(active=True),
            "session_dir": "/x/" + "y" * 200,
        }
    )
    events += [
        CellProposed(agent_id="0", cell_id="0:2", step=2, index=2, code="y = 2"),
        CellPaused(agent_id="0", cell_id="0:2", reason="paused"),
    ]
    view = fold(events)
    view.state = "paused"
    for width in (40, 80, 160):
        line = status_line(view, width, "live", None)
        assert line.plain.startswith("⏸ paused  1 waiting ▸ cell 0:2   DEMO    SANDBOX bwrap ")
        assert line.cell_len <= max(width, 60)
    wide = status_line(view, 160, "live", None).plain
    assert wide.endswith("y" * 20) and "…" in wide  # the path, cut from its left
    view.rerun_cells = ["0:1"]
    assert "re-running recorded cells (0:1)" in status_line(view, 80, "live", None).plain


async def test_a_burst_of_events_is_one_message_that_updates_only_its_slices():
    """Events fold into the projection at once; one Changed message carries the burst; the
    panes update their slices: the reply in the cell log, one tree label, one budget row."""
    from tui_fixtures import sample_events

    from rlm_tui.events import ModelDelta, ModelRequest, ModelResponse
    from rlm_tui.tui.agent_tree import AgentTree
    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.cell_log import CellLog
    from rlm_tui.tui.config import UiConfig
    from rlm_tui.tui.run_screen import RunScreen

    app = RlmApp(events=sample_events()[:-1], ui_config=UiConfig(), watch=False)  # not ended
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        tree, log = screen.query_one(AgentTree), screen.query_one(CellLog)
        labels = {a: str(n.label) for a, n in tree._agent_nodes.items()}
        screen._on_event(ModelRequest(agent_id="0.1", call_id="c9", step=2, model="m"))
        for word in ["Counting", " the", " guests"]:
            screen._on_event(ModelDelta(agent_id="0.1", call_id="c9", text=word))
        changes = screen._changes
        assert screen._posted and not changes.everything
        assert changes.streams == {"0.1"} and changes.agents == {"0.1"} and not changes.cells
        await pilot.pause()
        assert not screen._posted and screen._changes.streams == set()
        assert log.streams == ["0.1"]
        assert "step 2" in str(tree._agent_nodes["0.1"].label)
        assert str(tree._agent_nodes["0"].label) == labels["0"]  # not relabelled
        usage = Usage(prompt_tokens=50, completion_tokens=5, calls=1, cost=0.5)
        screen._on_event(
            ModelResponse(agent_id="0.1", call_id="c9", step=2, model="m", text="", usage=usage)
        )
        assert screen._changes.budget_agents == {"0.1"}
        table = screen.query_one("#budget-agents", UsageTable)
        # the budget pane repaints at most every BUDGET_EVERY seconds
        await until(pilot, lambda: "$0.5" in table.row("0.1")[-1], timeout=2.0)
        assert "$0.5" in table.row("0.1")[-1] and log.streams == []


def count_layouts(widget: Any, state: Any) -> list[Any]:
    """What ``state()`` was at each of the widget's requests for a layout of the screen."""
    layouts: list[Any] = []
    refresh = widget.refresh

    def counting_refresh(*regions, layout=False, **kwargs):  # type: ignore[no-untyped-def]
        if layout:
            layouts.append(state())
        return refresh(*regions, layout=layout, **kwargs)

    widget.refresh = counting_refresh
    return layouts


async def test_a_table_growing_lays_the_screen_out_only_when_a_scrollbar_comes():
    class TableApp(App[None]):
        CSS = "UsageTable { height: 5; width: 30; }"

        def compose(self) -> ComposeResult:
            yield UsageTable(["agent", "cost"])

    async with TableApp().run_test(size=(60, 12)) as pilot:
        table = pilot.app.query_one(UsageTable)
        table.set_row("0", ["0", "$0.01"])
        await pilot.pause()
        layouts = count_layouts(table, lambda: table.virtual_size)
        table.set_row("0.1", ["0.1", "$1,234.56"])  # wider columns, still inside the pane
        table.set_row("0.2", ["0.2", "$2"])
        await pilot.pause()
        assert layouts == [] and table.virtual_size.height == 4
        table.set_row("0.3", ["0.3", "$3"])  # header and 4 rows: the pane's 5 lines
        await pilot.pause()
        assert layouts == [] and not table.show_vertical_scrollbar
        table.set_row("0.4", ["0.4", "$4"])  # a row past them
        await pilot.pause()
        assert layouts and table.show_vertical_scrollbar
        assert table.virtual_size.height == 6


async def test_new_agents_lay_the_screen_out_only_when_the_trees_scrollbar_comes():
    """Tree lays the whole screen out for every node added or unfolded; the agent tree only
    when its content starts (or stops) overflowing its pane, and stays scrollable to its end."""
    from rlm_tui.events import AgentStarted
    from rlm_tui.session.projection import RunView
    from rlm_tui.tui.agent_tree import AgentTree

    class TreeApp(App[None]):
        CSS = "AgentTree { height: 6; }"

        def compose(self) -> ComposeResult:
            yield AgentTree()

    view = RunView()
    app = TreeApp()
    async with app.run_test(size=(60, 12)) as pilot:
        tree = app.query_one(AgentTree)
        layouts = count_layouts(tree, lambda: len(tree._agent_nodes))

        def add(count: int) -> None:
            for _ in range(count):
                agent_id = f"0.{len(view.agents)}" if view.agents else "0"
                parent = None if agent_id == "0" else "0"
                view.apply(AgentStarted(agent_id=agent_id, parent_id=parent, query="q", model="m"))
            tree.show(view)

        add(4)
        await pilot.pause()
        assert layouts == [] and tree.virtual_size.height == 4  # 4 agents fit in 6 rows
        add(10)
        await pilot.pause()
        assert layouts and set(layouts) == {14}  # only as the scrollbar came
        assert tree.virtual_size.height == 14 and tree.show_vertical_scrollbar
        tree.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert tree.scroll_offset.y == 14 - tree.scrollable_content_region.height
        assert "agent 0.13" in tree.render_line(tree.scrollable_content_region.height - 1).text


async def test_the_trees_kept_component_styles_follow_a_change_of_theme_and_of_focus():
    """Relabelling a node keeps the tree's component styles (Textual rebuilds them at every
    refresh); a restyle (another theme, the focus) gives the new ones at once."""
    from rlm_tui.events import AgentStarted
    from rlm_tui.session.projection import RunView
    from rlm_tui.tui.agent_tree import AgentTree

    class TreeApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("elsewhere", id="other")
            yield AgentTree()

    view = RunView()
    view.apply(AgentStarted(agent_id="0", query="q", model="m"))
    app = TreeApp()
    async with app.run_test(size=(60, 12)) as pilot:
        tree = app.query_one(AgentTree)
        tree.show(view)
        await pilot.pause()

        def cursor() -> Style:
            return tree.get_component_rich_style("tree--cursor")

        dark = cursor()
        tree.refresh()  # a relabel: the kept style is the same object
        assert cursor() is dark
        app.theme = "textual-light"
        await pilot.pause()
        light = cursor()
        assert light != dark
        assert light == Tree.get_component_rich_style(tree, "tree--cursor")  # Textual's own
        tree.focus()
        await pilot.pause()
        focused = cursor()
        assert focused == Tree.get_component_rich_style(tree, "tree--cursor")


def contrast(first: Any, second: Any) -> float:
    """WCAG's contrast ratio of two colors."""

    def luminance(color: Any) -> float:
        linear = [
            c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in color.rgb
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted([luminance(first), luminance(second)], reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("theme", ["rlm-dark", "rlm-light"])
async def test_a_pane_without_the_focus_has_a_border_that_can_be_seen(theme):
    """3:1 against the screen behind it (WCAG's least for a part of a screen); the focused
    pane's border stands out from the others."""
    from tui_fixtures import sample_events

    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.config import UiConfig

    app = RlmApp(events=sample_events(), ui_config=UiConfig(theme=theme), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        panes = list(app.screen.query("#panes > .pane"))
        focused = [pane for pane in panes if pane.has_focus_within]
        assert len(focused) == 1 and len(panes) == 4
        behind = app.screen.styles.background
        drawn = {}
        for pane in panes:
            _, color = pane.styles.border_top
            drawn[pane] = behind.blend(color.with_alpha(1.0), color.a)
            assert contrast(drawn[pane], behind) >= 3.0, (pane.id, drawn[pane].hex)
        assert len(set(drawn.values())) == 2  # the focused pane's, and the others'


def test_the_readme_key_table_names_every_binding_and_no_other():
    """Each binding id of the app is in the README's key table (exactly, or by a ``prefix.*``
    pattern), and each id the table names exactly is one the app has."""
    import fnmatch
    import importlib
    import pkgutil

    import rlm_tui.tui

    ids: set[str] = set()
    for module in pkgutil.iter_modules(rlm_tui.tui.__path__):
        found = importlib.import_module(f"rlm_tui.tui.{module.name}")
        for value in vars(found).values():
            if isinstance(value, type) and value.__module__ == found.__name__:
                ids |= {b.id for b in vars(value).get("BINDINGS", []) if getattr(b, "id", None)}
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("### Key bindings", 1)[1].split("\n## ", 1)[0]
    named = {
        name
        for row in table.splitlines()
        if row.startswith("| ") and row.count("|") >= 4
        for name in re.findall(r"`([a-z_*]+\.[a-z_*]+)`", row.rsplit("|", 2)[1])
    }
    assert len(ids) > 80 and len(named) > 20
    missing = sorted(i for i in ids if not any(fnmatch.fnmatch(i, name) for name in named))
    assert missing == []
    assert sorted(name for name in named if "*" not in name and name not in ids) == []


@pytest.mark.parametrize(
    ("typed", "depth"), [("2", 2), ("", None), ("²", "refused"), ("-1", "refused")]
)
async def test_the_breakpoints_depth_takes_a_whole_number(typed, depth):
    from textual.widgets import Input

    from rlm_tui.engine.control import Breakpoints
    from rlm_tui.tui.modals import BreakpointsScreen

    chosen: list[Any] = []

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(BreakpointsScreen(Breakpoints()), chosen.append)

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#depth", Input).value = typed
        await pilot.click("#apply")
        await pilot.pause()
        if depth == "refused":
            assert chosen == [] and isinstance(app.screen, BreakpointsScreen)
            assert any("whole number" in n.message for n in app._notifications)
        else:
            assert chosen[0].min_depth == depth


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@pytest.mark.parametrize("dialog", ["edit", "launch", "breakpoints"])
async def test_every_dialogs_buttons_are_on_the_screen(dialog, size):
    from textual.widgets import Button

    from rlm_tui.engine.control import Breakpoints
    from rlm_tui.tui.modals import BreakpointsScreen, EditCellScreen, LaunchScreen

    screens = {
        "edit": lambda: EditCellScreen("0:1", "\n".join(f"x{n} = {n}" for n in range(60))),
        "launch": lambda: LaunchScreen("0", "some lines " * 40),
        "breakpoints": lambda: BreakpointsScreen(Breakpoints()),
    }

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(screens[dialog]())

    app = Host()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        frame = app.screen.query_one("Modal > Vertical").content_region
        buttons = list(app.screen.query(Button))
        assert len(buttons) == 2
        for button in buttons:
            region = button.region
            assert region.height == 3 and frame.contains_region(region), (button.id, region)
            assert str(button.label) in "\n".join(screen_lines(app))


def test_the_trees_label_counts_an_agents_time_before_its_resume():
    from rlm_tui.events import AgentFinished, AgentStarted, ModelRequest, RunStarted
    from rlm_tui.session.projection import fold
    from rlm_tui.tui.agent_tree import agent_label

    start = RunStarted(t=1000.0, run_id="r", query="q", model="m", sub_model="m", limits={})
    view = fold(
        [
            start,
            AgentStarted(t=1000.0, agent_id="0", query="q", model="m"),
            ModelRequest(t=1009.4, agent_id="0", call_id="c1", step=1, model="m"),
        ]
    )  # stopped there; resumed 20 s later
    view.apply(start.model_copy(update={"t": 1030.0, "resumed_from": "r"}))
    view.apply(AgentStarted(t=1030.0, agent_id="0", query="q", model="m"))
    view.apply(AgentFinished(t=1046.2, agent_id="0", status="answered"))
    assert "· 25.6s" in str(agent_label(view.agents["0"]))  # 9.4 before the stop, 16.2 after
