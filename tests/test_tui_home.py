"""The home screen: a new run from the form, a saved session from the list."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import weakref

import pytest
from conftest import our_kernel_processes, screen_lines
from scripted import ScriptedModel, cell, until, until_true
from textual.widgets import DataTable, Input, Static

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig
from rlm_tui.tui.home_screen import QUERY, HomeScreen
from rlm_tui.tui.modals import ConfirmScreen, TextScreen
from rlm_tui.tui.run_screen import RunScreen

pytestmark = pytest.mark.timeout(60)


async def test_start_a_run_from_the_form(sessions_dir):
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(app.screen, HomeScreen)
        app.screen.query_one(
            "#query", Input
        ).value = (
            "Generate 50 names of fruits and count the number of R in each, return as a dictionary"
        )
        app.screen.query_one("#max-time", Input).value = "not a number"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)  # a bad budget is a notification
        assert any("--max-time not a number" in n.message for n in app._notifications)
        for field, bad, why in [
            ("#max-time", "nan", "--max-time nan"),
            ("#max-cost", "-1", "greater than 0"),
            ("#max-depth", "-1", "greater than or equal to 0"),
        ]:
            app.screen.query_one("#max-time", Input).value = "60"
            app.screen.query_one(field, Input).value = bad
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert isinstance(app.screen, HomeScreen), field  # refused, as the flag would be
            last = list(app._notifications)[-1].message
            assert why in last, last
            app.screen.query_one(field, Input).value = ""
        app.screen.query_one("#max-time", Input).value = "60"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await until(pilot, lambda: app.screen.view.finished)
        assert app.screen.view.status == "answered" and len(app.screen.view.answer) == 50
        assert app.screen.view.limits["max_time"] == 60


async def test_open_a_saved_session_from_the_list(sessions_dir):
    model = ScriptedModel({"q": [cell("print('hello')"), cell("FINAL('bye')")]})
    await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        view = app.screen.view
        assert view.finished and view.answer == "bye" and app.screen.run is None
        assert view.cells["0:1"].output == "hello\n"
        await pilot.press("f2")
        assert isinstance(app.screen, HomeScreen)


async def test_sessions_in_one_key_filter_and_escape_back_to_the_live_run(sessions_dir):
    for query in ["count the apples", "name the rivers"]:
        model = ScriptedModel({query: [cell("FINAL('ok')")]})
        await Run(RunConfig(query=query, sessions_dir=sessions_dir), model=model).execute()
    model = ScriptedModel({"q": [cell("x = 1"), cell("FINAL('done')")]})
    from rlm_tui.engine.control import Breakpoints

    live = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=model,
        breakpoints=Breakpoints(every_cell=True),
    )
    app = RlmApp(run=live, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "0:1" in live.control.pending)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        home = app.screen
        await pilot.press("f1")  # help on the home screen too
        await until(pilot, lambda: isinstance(app.screen, TextScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is home)
        await pilot.press("ctrl+o")  # the sessions, in one key (one pane at a time at 80x24)
        table = home.query_one(DataTable)
        assert table.has_focus and table.row_count == 3 and table.display
        queries = {str(table.get_row_at(i)[2]) for i in range(table.row_count)}
        assert {"count the apples", "name the rivers", "q"} == queries
        await pilot.press("slash")
        await pilot.press(*"rivers")
        await pilot.pause()
        assert table.row_count == 1 and str(table.get_row_at(0)[2]) == "name the rivers"
        await pilot.press("escape")  # closes the filter
        await pilot.press("escape")  # back to the live run
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run is live and live.result is None
        live.stop()
        await until(pilot, lambda: app.screen.view.finished)


def test_sessions_dir_without_a_command_opens_the_workbench_there(tmp_path):
    from rlm_tui.cli import build_parser

    args = build_parser().parse_args(["--sessions-dir", str(tmp_path)])
    assert args.command is None and args.home_sessions_dir == tmp_path


async def test_the_home_screen_of_a_run_lists_its_sessions_dir(sessions_dir):
    app = RlmApp(
        config=RunConfig(query="q", sessions_dir=sessions_dir, model="demo"),
        ui_config=UiConfig(),
        watch=False,
    )
    assert app.sessions_dir == sessions_dir


async def test_a_litellm_run_paints_first_and_loads_litellm_in_a_worker(sessions_dir):
    from openai_server import OpenAIServer, Reply

    from rlm_tui.tui.app import StartingScreen

    with OpenAIServer() as server:
        server.script([Reply(text="```repl\nFINAL('hi')\n```")])
        config = RunConfig(
            query="q",
            model="openai/test-model",
            api_base=server.base_url,
            sessions_dir=sessions_dir,
        )
        pushed: list[str] = []

        class WatchedApp(RlmApp):
            def push_screen(self, screen, *args, **kwargs):  # type: ignore[no-untyped-def]
                pushed.append(type(screen).__name__)
                return super().push_screen(screen, *args, **kwargs)

        app = WatchedApp(config=config, ui_config=UiConfig(), watch=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunScreen))
            # the first frame is the starting screen; the run's screen comes once litellm loaded
            # (in this process it may have been imported already, so it can come at once)
            assert pushed[:2] == [StartingScreen.__name__, RunScreen.__name__]
            await until(pilot, lambda: app.screen.view.finished)
            assert app.screen.view.answer == "hi"


async def test_the_next_run_reuses_the_models_connection(sessions_dir):
    """A provider's connection (TCP, and TLS where there is one) is opened once for the runs of
    the workbench, not for each."""
    from openai_server import OpenAIServer, Reply

    with OpenAIServer() as server:
        server.script([Reply(text="```repl\nFINAL('hi')\n```")])
        # whole replies: this server ends each stream by closing its connection
        settings = {"model": "openai/test-model", "api_base": server.base_url, "stream": False}
        config = RunConfig(query="first", sessions_dir=sessions_dir, **settings)
        app = RlmApp(config=config, ui_config=UiConfig(run=settings), watch=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, RunScreen))
            await until(pilot, lambda: app.screen.view.finished)
            await pilot.press("f2")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
            app.screen.query_one("#query", Input).value = "second"
            await pilot.press("ctrl+r")
            await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run)
            await until(pilot, lambda: app.screen.view.finished)
            assert app.screen.view.answer == "hi" and app.screen.view.query == "second"
        queries = [r["messages"][-1]["content"] for r in server.requests]
        assert len(queries) == 2 and "second" in queries[1], queries
        assert server.clients[0] == server.clients[1]  # one connection, kept


async def test_the_form_sets_the_sandbox_and_refuses_a_bad_mode(sessions_dir):
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        form = app.screen
        form.query_one(
            "#query", Input
        ).value = (
            "Generate 50 names of fruits and count the number of R in each, return as a dictionary"
        )
        form.query_one("#sandbox", Input).value = "maybe"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert any("sandbox" in n.message for n in app._notifications)
        form.query_one("#sandbox", Input).value = "off"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await until(pilot, lambda: app.screen.view.finished)
        assert app.current_run.config.sandbox == "off"
        assert app.screen.view.sandbox_warning  # the header says it runs unsandboxed


async def test_a_run_made_after_the_first_frame_paints_first_and_a_bad_one_exits_2(capfd):
    """`rlm-tui demo` hands the app a function that makes the run's config: the first frame
    (the starting line) comes before the engine is imported; a bad setting then ends the app
    with one line and exit code 2, as the CLI would."""
    from rlm_tui.errors import UsageError
    from rlm_tui.tui.app import StartingScreen

    def bad_config() -> RunConfig:
        raise UsageError("--sandbox must be one of auto, require, off")

    app = RlmApp(config=bad_config, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, StartingScreen)
        assert "starting a run" in str(app.screen.query_one(Static).render())
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 2
    printed = capfd.readouterr()
    lines = (printed.out + printed.err).strip().splitlines()
    assert lines[-1:] == ["rlm-tui: error: --sandbox must be one of auto, require, off"]


def test_the_app_module_imports_no_engine_before_the_first_frame():
    """What the first frame does not need stays out of the app's import: the engine, the
    kernels' client (jupyter_client, zmq), the event models, litellm."""
    import subprocess
    import sys

    heavy = ("rlm_tui.engine.run", "rlm_tui.events", "jupyter_client", "zmq", "litellm")
    code = (
        "import sys, rlm_tui.tui.app, rlm_tui.cli\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def test_at_80x24_the_sessions_fit_and_the_start_button_scrolls_into_view(sessions_dir):
    for query in ["Which guests talk about sleep, and what do they recommend?", "count the R's"]:
        model = ScriptedModel({query: [cell("FINAL('ok')")]})
        await Run(RunConfig(query=query, sessions_dir=sessions_dir), model=model).execute()
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.screen.query_one("#new-run")
        start = app.screen.query_one("#start")
        assert not form.region.contains_region(start.region)  # below the fold at first
        while app.screen.focused is not start:
            await pilot.press("tab")
        await pilot.pause()
        assert form.region.contains_region(start.region)
        await pilot.press("ctrl+o")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        widths = sum(column.get_render_width(table) for column in table.columns.values())
        assert widths <= table.region.width  # started, model and cells are not cut off
        row = [str(v) for v in table.get_row_at(0)]
        assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d", row[3])  # the started column: a date
        assert row[4] == "scripted" and row[5] == "1"


async def test_the_tui_commands_sandbox_flags_are_the_forms_defaults(sessions_dir, tmp_path):
    from rlm_tui.cli import build_parser, sandbox_options

    args = build_parser().parse_args(
        ["tui", "--sandbox", "off", "--allow-read", str(tmp_path), "--kernel-env", "LANG"]
    )
    app = RlmApp(
        sessions_dir=sessions_dir,
        ui_config=UiConfig(),
        watch=False,
        run_options=sandbox_options(args),
    )
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.screen.query_one("#sandbox", Input).value == "off"
        app.screen.query_one("#query", Input).value = "Generate 3 names of fruits"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await until(pilot, lambda: app.screen.view.finished)
        config = app.current_run.config
        assert (config.sandbox, config.allow_read, config.kernel_env) == (
            "off",
            [tmp_path],
            ["LANG"],
        )


def _form(home: HomeScreen) -> dict[str, str]:
    return {str(field.id): field.value for field in home.query_one("#new-run").query(Input)}


async def test_a_missing_context_file_is_refused_on_the_form_with_what_was_typed(sessions_dir):
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        home = app.screen
        typed = {
            "#query": "Generate 3 names of fruits",
            "#context": str(sessions_dir / "no-such-notes.txt"),
            "#max-time": "60",
            "#sandbox": "off",
        }
        for field, text in typed.items():
            home.query_one(field, Input).value = text
        await pilot.pause()
        before = _form(home)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen is home and app.current_run is None
        last = list(app._notifications)[-1]
        assert last.message == f"context file not found: {sessions_dir / 'no-such-notes.txt'}"
        assert _form(home) == before
        assert not any(sessions_dir.iterdir())  # nothing was started


async def test_an_empty_query_is_refused_on_the_form(sessions_dir):
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        home = app.screen
        for query in ["", " \t "]:
            home.query_one("#query", Input).value = query
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert app.screen is home and app.current_run is None
            assert list(app._notifications)[-1].message.startswith("the query is empty")
        assert not any(sessions_dir.iterdir())


async def test_after_a_run_that_failed_on_its_screen_f2_shows_the_form_as_typed(sessions_dir):
    """A bad gateway URL is found as the run starts, on its screen: the form comes back as the
    user left it."""
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        home = app.screen
        home.query_one("#query", Input).value = "Generate 3 names of fruits"
        home.query_one("#max-cost", Input).value = "0.5"
        home.query_one("#kernel-gateway", Input).value = "not-a-url"
        await pilot.pause()
        typed = _form(home)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await until(pilot, lambda: app.screen.view.status == "error")
        assert "bad kernel gateway URL 'not-a-url'" in app.screen.view.reason
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert app.screen is not home and _form(app.screen) == typed


LONG_QUERY = (
    "Which fruits have the most R's in their names, and how many of them are there in all, "
    "counted in code?"
)


async def test_the_query_column_takes_the_width_the_others_leave(sessions_dir):
    """The list was filled at 200 columns first: its columns stay no wider than the pane at
    80 and 160 (the table only ever widened them), and the table does not scroll sideways."""
    for query in [LONG_QUERY, "count the R's"]:
        await Run(RunConfig(query=query, sessions_dir=sessions_dir)).execute()
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(200, 50)) as pilot:
        for size in [(80, 24), (160, 48)]:
            await pilot.resize_terminal(*size)
            await pilot.press("ctrl+o")
            await pilot.pause()
            table = app.screen.query_one(DataTable)
            columns = list(table.columns.values())
            widths = sum(column.get_render_width(table) for column in columns)
            assert widths == table.scrollable_content_region.width, size
            assert table.max_scroll_x == 0, size
            shown = LONG_QUERY[: columns[QUERY].width - 1] + "…"
            assert any(f"  {shown}  " in line for line in screen_lines(app)), (size, shown)


async def test_a_query_with_brackets_is_listed_as_typed(sessions_dir):
    query = "[/b] count [b]R's[/b]"
    await Run(RunConfig(query=query, sessions_dir=sessions_dir)).execute()
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert any(f"  {query}  " in line for line in screen_lines(app))


@pytest.mark.parametrize("gateway", ["not-a-url", "http://127.0.0.1:9"])
async def test_a_run_that_failed_on_its_screen_is_not_live(sessions_dir, gateway):
    """A bad gateway URL fails the run's start, once its screen is up (nobody listening at the
    URL: its first kernel, and the run ends): from then on nothing treats it as live. Escape on
    the home screen stays there; the next run and quitting do not ask to stop it."""
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#query", Input).value = "Generate 3 names of fruits"
        app.screen.query_one("#kernel-gateway", Input).value = gateway
        for _ in range(2):  # the first run, then one started over the failed one
            await pilot.press("ctrl+r")
            await until(pilot, lambda: isinstance(app.screen, RunScreen | ConfirmScreen))
            assert isinstance(app.screen, RunScreen)
            await until(pilot, lambda: app.screen.view.finished)
            assert gateway in app.screen.view.reason
            await pilot.press("f2")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert isinstance(app.screen, HomeScreen)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running or isinstance(app.screen, ConfirmScreen))
        assert not app.is_running


def _stack(app: RlmApp) -> list[str]:
    return [type(screen).__name__ for screen in app.screen_stack]


async def test_each_run_from_the_home_screen_replaces_the_screens_of_the_last(sessions_dir):
    """F2 and a new run, again and again: the screens of the runs before, out of reach, are
    let go with their runs (memory does not grow with each run); the stack holds at most the
    live run's screen, which Escape on the home screen goes back to, and the home screen."""
    held = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=ScriptedModel({"q": [cell("x = 1"), cell("FINAL('done')")]}),
        breakpoints=Breakpoints(every_cell=True),
    )
    app = RlmApp(run=held, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "0:1" in held.control.pending)
        held.step()
        await until(pilot, lambda: "0:2" in held.control.pending)
        kernel = held.agents["0"].kernel
        assert kernel is not None and kernel.pid in our_kernel_processes()
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert _stack(app) == ["Screen", "RunScreen", "HomeScreen"]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run is held and _stack(app) == ["Screen", "RunScreen"]
        runs: list[weakref.ref[Run]] = []
        for _ in range(3):
            await pilot.press("f2")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
            under = [] if held.ended else ["RunScreen"]  # the live run's screen, for Escape
            assert _stack(app) == ["Screen", *under, "HomeScreen"]
            app.screen.query_one("#query", Input).value = "Generate 3 names of fruits"
            await pilot.press("ctrl+r")
            if not held.ended:  # the held run is live: stopped, once asked
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.view.run_id)
            assert app.screen.run is app.current_run and _stack(app) == ["Screen", "RunScreen"]
            runs.append(weakref.ref(app.current_run))
            await until(pilot, lambda: app.screen.view.finished)
            assert app.screen.view.status == "answered"
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert _stack(app) == ["Screen", "HomeScreen"]
        assert held.result is not None and held.result.status == "stopped"
        await until(pilot, lambda: kernel.pid not in our_kernel_processes())
        gc.collect()
        alive = {id(o) for o in gc.get_objects() if isinstance(o, Run)}  # not frozen ones
        # each run before is collected, or can be: the loop's cancelled timers may hold it a
        # while (their contexts reach its screen's worker)
        assert all(run() is None or id(run()) in alive for run in runs[:-1])


class PricedModel(ScriptedModel):
    """The scripted model, each reply priced as a paid model's would be."""

    async def complete(self, messages, info, on_delta=None):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return replace(await super().complete(messages, info, on_delta), cost=0.0125)


async def test_the_sessions_list_tells_runs_apart_by_status_and_cost(sessions_dir):
    from rlm_tui.engine.budget import Limits

    model = PricedModel({"paid": [cell("x = 1"), cell("FINAL(x)")], "cut": [cell("y = 2")]})
    await Run(RunConfig(query="paid twice", sessions_dir=sessions_dir), model=model).execute()
    cut = RunConfig(query="cut short", sessions_dir=sessions_dir, limits=Limits(max_calls=1))
    await Run(cut, model=model).execute()
    app = RlmApp(sessions_dir=sessions_dir, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        lines = screen_lines(app)
        paid = next(line for line in lines if "paid twice" in line)
        short = next(line for line in lines if "cut short" in line)
        assert "  answered  $0.0250  paid twice  " in paid
        assert "  budget    $0.0125  cut short  " in short


ESCAPES = re.compile(r"\x1b\[[0-9;?<>=]*[a-zA-Z~]|\x1b[()][0-9A-Za-z]|\x1b.")


class Terminal:
    """``rlm-tui`` on a real pseudo-terminal: what it draws, read as it comes, as text."""

    def __init__(self, args: list[str], cwd, size: tuple[int, int] = (160, 48)) -> None:
        self._primary, secondary = pty.openpty()
        columns, rows = size
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rlm_tui", *args],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(secondary)
        self.drawn = bytearray()
        """Every byte the app wrote to its terminal."""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._primary, 65536)
            except OSError:  # EIO: the app is gone
                return
            if not chunk:
                return
            self.drawn += chunk

    def text(self) -> str:
        return re.sub(
            r"\x1b\[[0-9;?<>=]*[a-zA-Z~]|\x1b[()][0-9A-Za-z]|\x1b.",
            "",
            self.drawn.decode(errors="replace"),
        )

    def send(self, keys: str) -> None:
        os.write(self._primary, keys.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        os.close(self._primary)


def finished_runs(sessions_dir) -> list:
    """The event logs of the finished runs saved in ``sessions_dir``."""
    logs = [path / "events.jsonl" for path in sessions_dir.iterdir()]
    return [log for log in logs if log.is_file() and "run_finished" in log.read_text()]


async def test_the_workbench_started_with_a_sessions_dir_lists_and_saves_there(tmp_path):
    """``rlm-tui --sessions-dir X`` on a terminal: the home screen lists X's sessions, and a run
    started from its form is saved in X, not in ./sessions."""
    saved = tmp_path / "X"
    model = ScriptedModel({"listed": [cell("FINAL(1)")]})
    await Run(RunConfig(query="listed here", sessions_dir=saved), model=model).execute()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    terminal = Terminal(["--sessions-dir", str(saved)], cwd)
    try:
        await until_true(lambda: "listed here" in terminal.text(), 60)
        terminal.send("typed in the form\x12")  # the query field has the focus; ctrl+r starts
        await until_true(lambda: len(finished_runs(saved)) == 2, 90)
        terminal.send("\x11")  # ctrl+q: the run is over, the app quits at once
        await until_true(lambda: terminal.process.poll() is not None, 30, asyncio.sleep, 0.1)
        assert terminal.process.returncode == 0
    finally:
        terminal.close()
    typed = sorted("typed in the form" in events.read_text() for events in finished_runs(saved))
    assert typed == [False, True]
    assert not (cwd / "sessions").exists()


async def test_a_moved_session_forks_and_diffs_where_it_is_now(sessions_dir, tmp_path):
    """A sessions folder moved after its runs: the session opened from the new place shows
    that place, and F forks it there (its events still name the old one, which is gone)."""
    import shutil

    from rlm_tui.tui.cell_log import CellLog
    from rlm_tui.tui.modals import TextScreen

    model = ScriptedModel({"q": [cell("x = 1"), cell("FINAL(x)")]})
    made = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    assert made.session_dir is not None
    moved = tmp_path / "moved"
    shutil.move(sessions_dir, moved)
    opened = moved / made.session_dir.name
    app = RlmApp(session=opened, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(200, 50)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.view.finished)
        assert str(opened) in str(app.screen.query_one("#status").render())
        app.screen.query_one(CellLog).select_cell("0:1")
        await pilot.press("F")
        await until(pilot, lambda: len(list(moved.iterdir())) == 2)
        fork_screen = app.screen
        assert isinstance(fork_screen, RunScreen) and fork_screen.run is not None
        await until(pilot, lambda: "0:1" in fork_screen.run.control.pending)
        fork_screen.run.stop()
        await until(pilot, lambda: fork_screen.view.finished)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, TextScreen))
    assert not sessions_dir.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_stops_the_workbenchs_run_and_gives_the_terminal_back(tmp_path, signum):
    """``kill`` or a closed terminal while a run is held: the run ends with run_finished, the
    app leaves the alternate screen and shows the cursor again, and exits 128 + the signal."""
    saved = tmp_path / "s"
    terminal = Terminal(["demo", "--pause", "--sessions-dir", str(saved)], tmp_path)
    try:

        def held() -> bool:
            logs = list(saved.glob("*/events.jsonl"))
            return bool(logs) and '"cell_paused"' in logs[0].read_text()

        await until_true(held, 60)
        terminal.process.send_signal(signum)
        await until_true(lambda: terminal.process.poll() is not None, 30, asyncio.sleep, 0.1)
        assert terminal.process.returncode == 128 + signum
    finally:
        terminal.close()
    [log] = saved.glob("*/events.jsonl")
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["type"] == "run_finished" and last["status"] == "stopped"
    drawn = bytes(terminal.drawn)
    assert drawn.rindex(b"\x1b[?1049l") > drawn.rindex(b"\x1b[?1049h")  # left the app's screen
    assert drawn.rindex(b"\x1b[?25h") > drawn.rindex(b"\x1b[?25l")  # the cursor shown again
