"""The Textual app: themes, keymap, command palette, help, and the home and run screens.

The first frame needs Textual only: the engine, the kernels' client, the event models, the
screens and litellm are imported after it, in a thread (a run shows a starting line meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import textual.content
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Static

from rlm_tui import heap
from rlm_tui.defaults import THEME
from rlm_tui.errors import RlmError
from rlm_tui.terminal import STOP_SIGNALS, show_controls
from rlm_tui.tui.config import UiConfig, apply_keymap, load_config, save_theme
from rlm_tui.tui.themes import load_themes, theme_dirs, watch_themes

if TYPE_CHECKING:
    from rlm_tui.engine.control import Breakpoints
    from rlm_tui.engine.run import Run, RunConfig
    from rlm_tui.events import Event
    from rlm_tui.models.registry import KeptModels


BINDING_MODULES = (
    "agent_tree",
    "budget_meter",
    "cell_log",
    "context_view",
    "home_screen",
    "modals",
    "run_screen",
    "wait_list",
)
"""The modules of tui/ whose widgets have bindings (their ids can be remapped)."""
REPLACE_QUESTION = "Stop the live run and start this one? Its session is kept."
QUIT_QUESTION = "Quit? The live run is stopped; its session is kept (`rlm-tui resume` goes on)."


def own_bindings(node: DOMNode) -> list[Binding]:
    """The bindings in force on a widget from its classes, most specific class first.

    Follows Textual's rules: a class made with ``inherit_bindings=False`` drops its bases'
    bindings, and a key bound by a subclass shadows the same key of a base class.
    """
    layers: list[list[Binding]] = []
    for base in reversed(type(node).__mro__):
        if vars(base).get("_inherit_bindings", True) is False:
            layers.clear()
        declared = [b for b in vars(base).get("BINDINGS", []) if isinstance(b, Binding)]
        if declared:
            layers.append(declared)
    found: list[Binding] = []
    keys: set[str] = set()
    actions: set[str] = set()
    for layer in reversed(layers):
        for binding in layer:
            binding_keys = {k.strip() for k in binding.key.split(",")}
            if binding.action in actions or binding_keys <= keys:
                continue
            keys |= binding_keys
            actions.add(binding.action)
            found.append(binding)
    return found


class ActionCommands(Provider):
    """Every action of the screen, its panes and the app, by its description, in the palette."""

    def _actions(self) -> Iterator[tuple[str, str, Any]]:
        screen = self.screen
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        nodes: list[DOMNode] = [screen, *screen.walk_children(), self.app]
        seen: set[str] = set()
        for node in nodes:
            for binding in own_bindings(node):
                if not binding.description or binding.action in ("command_palette",):
                    continue
                key = binding.id or f"{type(node).__name__}.{binding.action}"
                if key in seen:
                    continue
                seen.add(key)
                keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
                where = type(node).__name__
                yield (
                    binding.description,
                    f"{where} · {keys} · {binding.id or ''}",
                    partial(self.app.run_action, binding.action, node),
                )

    async def discover(self) -> Hits:
        for name, help_text, callback in self._actions():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._actions():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


def needs_litellm(config: RunConfig) -> bool:
    """Whether starting this run imports litellm (any model but the demo and a replay)."""
    from rlm_tui.models.registry import DEMO, REPLAY_PREFIX

    names = [config.model, config.sub_model or config.model]
    return any(name != DEMO and not name.startswith(REPLAY_PREFIX) for name in names)


class StartingScreen(Screen[None]):
    """The first frame while the engine (and litellm, for a real model) loads: the run starts
    as soon as they have."""

    DEFAULT_CSS = "StartingScreen { align: center middle; }"

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        yield Static(f"starting {self.what}…")


class RlmApp(App[None]):
    TITLE = "rlm-tui"
    COMMANDS = App.COMMANDS | {ActionCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", show=False, id="app.quit", priority=True),
        Binding("f2", "home", "Home", id="app.home"),
        Binding("f1", "help", "Help", id="app.help"),
    ]

    def get_css_variables(self) -> dict[str, str]:
        """The theme's variables and ``$pane-border``, the border of a pane without the focus:
        the foreground at half strength, 3:1 against the background in the shipped themes
        (WCAG's least for a part of a screen to be seen; at 30 % the light theme's vanished)."""
        variables = super().get_css_variables()
        return variables | {"pane-border": f"{variables['foreground']} 50%"}

    def __init__(
        self,
        config: RunConfig | Callable[[], RunConfig] | None = None,
        run: Run | None = None,
        session: Path | None = None,
        events: list[Event] | None = None,
        replay_speed: float = 0.0,
        breakpoints: Breakpoints | None = None,
        sessions_dir: Path | None = None,
        ui_config: UiConfig | None = None,
        watch: bool = True,
        pause: bool = False,
        run_options: dict[str, Any] | None = None,
    ) -> None:
        """``pause``: the first run holds before every cell (``rlm-tui demo --pause``).
        ``run_options``: RunConfig fields given on the command line, over the config file's
        ``run:`` defaults for the runs started from the home screen."""
        super().__init__()
        heap.collect_less_often()
        # a model's escape codes are drawn, not sent to the terminal
        show_controls()
        show_controls(textual.content._CONTROL_STRIP_TRANSLATE)
        self.run_config = config
        self._pause = pause
        self.session = session
        self.events = events
        self.replay_speed = replay_speed
        self.breakpoints = breakpoints
        origin = run.config if run is not None else config if not callable(config) else None
        self.sessions_dir = sessions_dir or (origin.sessions_dir if origin else None)
        """Where the home screen lists and saves sessions (that of the run it was opened on)."""
        self._config_problem: str | None = None
        self._remember_theme = ui_config is None
        """A theme chosen in the app is saved to the config file it was read from."""
        if ui_config is None:
            try:
                ui_config = load_config()
            except RlmError as exc:  # a bad config file is a notification, not a crash
                self._config_problem = str(exc)
                ui_config = UiConfig()
        if run_options:
            ui_config = dataclasses.replace(ui_config, run=ui_config.run | run_options)
        self.ui = ui_config
        self.watch_theme_files = watch
        self.keymap: dict[str, str] = dict(self.ui.keymap)
        self.current_run: Run | None = run
        self._engine_ready = False
        """The engine and the run screen are imported (litellm too, if a run needs it)."""
        self._litellm_ready = False
        self._kept_models: KeptModels | None = None
        """The models of the runs started here, kept for the next (made with the first run)."""
        self.form_values: dict[str, str] = {}
        """What was typed in the home screen's new-run form, by field id, for the next one."""

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum, reason in STOP_SIGNALS.items():
            loop.add_signal_handler(signum, self._stop_for_signal, signum, reason)
        if self._config_problem:
            self.notify(self._config_problem, title="config not used", severity="error")
        problems: list[str] = []
        for theme in load_themes(theme_dirs(), on_error=problems.append).values():
            self.register_theme(theme)
        for problem in problems:
            self.notify(problem, title="theme not loaded", severity="error")
        if self.ui.theme in self.available_themes:
            self.theme = self.ui.theme
        else:
            self.notify(f"no theme named '{self.ui.theme}'", severity="warning")
            self.theme = THEME if THEME in self.available_themes else "textual-dark"
        if self.keymap:  # the ids come from every screen's module: imported only for a keymap
            for warning in apply_keymap(self, self.keymap, self.binding_ids()):
                self.notify(warning, severity="warning")
        if self._remember_theme:
            self.theme_changed_signal.subscribe(self, self._theme_chosen)
        if self.watch_theme_files:
            self.run_worker(
                watch_themes(self, theme_dirs()),
                exclusive=True,
                group="themes",
                exit_on_error=False,
            )
        if self.current_run is not None:
            from rlm_tui.tui.run_screen import RunScreen

            self.push_screen(RunScreen(self.current_run, editor=self.ui.editor))
        elif self.run_config is not None:
            self.start_run(self.run_config, self.breakpoints)
        elif self.session is not None:
            self.open_session(self.session)
        elif self.events is not None:
            from rlm_tui.tui.run_screen import RunScreen

            self.push_screen(
                RunScreen(None, self.events, editor=self.ui.editor, replay_speed=self.replay_speed)
            )
        else:
            from rlm_tui.tui.home_screen import HomeScreen

            self.push_screen(
                HomeScreen(self.sessions_dir, self.ui.run, form_values=self.form_values)
            )

    def _theme_chosen(self, theme: Theme) -> None:
        if theme.name == self.ui.theme:
            return
        self.ui.theme = theme.name
        try:
            save_theme(theme.name)
        except OSError as exc:
            self.notify(f"the theme was not saved: {exc}", severity="warning")

    def binding_ids(self) -> set[str]:
        """Every binding id the app defines, on any screen or widget (for the keymap)."""
        ids: set[str] = {b.id for b in own_bindings(self) if b.id}
        modules = [importlib.import_module(f"rlm_tui.tui.{name}") for name in BINDING_MODULES]
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, DOMNode):
                    for binding in vars(value).get("BINDINGS", []):
                        if isinstance(binding, Binding) and binding.id:
                            ids.add(binding.id)
        return ids

    def start_run(
        self, config: RunConfig | Callable[[], RunConfig], breakpoints: Breakpoints | None = None
    ) -> None:
        """Start and follow a new run; a live one is stopped first, so ask.

        ``config`` may be a function that makes it: it is called after the first frame, with
        the engine imported (a bad setting then ends the app with one line and exit 2)."""
        self.replace_live_run(partial(self._start_run, config, breakpoints))

    def replace_live_run(self, start: Callable[[], None]) -> None:
        """Call ``start``, which starts another run (a new one, a fork): the app follows one
        run, so a live one is stopped first, and that is asked."""
        old = self.live_run
        if old is None:
            start()
            return
        from rlm_tui.tui.modals import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                old.stop("a new run was started")
                start()

        self.push_screen(ConfirmScreen(REPLACE_QUESTION), answered)

    def follow(self, run: Run, screen: Screen[Any]) -> None:
        """Follow ``run`` on ``screen``: it is the run quitting stops."""
        self.current_run = run
        self._show(screen)

    def _show(self, screen: Screen[Any]) -> None:
        """Show ``screen`` in place of every screen above the live run's: they are out of reach
        (Escape on the home screen goes back to the live run only), and each would keep a
        whole run in memory. The stack is at most the live run's screen and this one."""
        keep = self._live_screen() or self.screen_stack[0]
        with self.batch_update():
            while self.screen is not keep:
                self.pop_screen()
            self.push_screen(screen)

    def _live_screen(self) -> Screen[Any] | None:
        """The screen that follows the live run, if there is one."""
        live = self.live_run
        if live is None:
            return None
        from rlm_tui.tui.run_screen import RunScreen

        followers = (s for s in self.screen_stack if isinstance(s, RunScreen) and s.run is live)
        return next(followers, None)

    def _start_run(
        self, config: RunConfig | Callable[[], RunConfig], breakpoints: Breakpoints | None
    ) -> None:
        if (
            callable(config)
            or not self._engine_ready
            or (needs_litellm(config) and not self._litellm_ready)
        ):
            what = "a run" if callable(config) else f"a run with {config.model}"
            self.push_screen(StartingScreen(what), lambda _: None)
            # once that frame is drawn: the thread's imports would hold the GIL from it
            self.call_after_refresh(self._prepare, config, breakpoints)
            return
        from rlm_tui.engine.run import Run
        from rlm_tui.models.registry import KeptModels
        from rlm_tui.tui.run_screen import RunScreen

        if isinstance(self.screen, StartingScreen):
            self.pop_screen()
        kept = self._kept_models = self._kept_models or KeptModels()
        settings = (config.api_base, config.stream, config.request_timeout)
        try:
            model, sub_model = (
                kept.get(name, *settings) for name in (config.model, config.sub_model)
            )
            run = Run(config, model=model, sub_model=sub_model, breakpoints=breakpoints)
        except RlmError as exc:
            self.notify(str(exc), title="cannot start", severity="error")
            return
        self.follow(run, RunScreen(run, editor=self.ui.editor))

    @work(thread=True, exclusive=True, group="prepare", exit_on_error=False)
    def _prepare(
        self, config: RunConfig | Callable[[], RunConfig], breakpoints: Breakpoints | None
    ) -> None:
        """The imports a run needs take a second or more (litellm: seconds): in a thread,
        after the first frame; then the run starts on the app's loop."""
        import rlm_tui.tui.run_screen  # noqa: F401 - the engine, the kernels' client, the events
        from rlm_tui.engine.control import Breakpoints

        self._engine_ready = True
        if self._pause and breakpoints is None:
            breakpoints, self._pause = Breakpoints(every_cell=True), False
        try:
            made = config() if callable(config) else config
        except RlmError as exc:
            self.call_from_thread(self.exit, None, 2, Text(f"rlm-tui: error: {exc}"))
            return
        if self.sessions_dir is None:
            self.sessions_dir = made.sessions_dir
        if needs_litellm(made):
            from rlm_tui.models.litellm_model import preload

            preload()
            self._litellm_ready = True
        self.call_from_thread(self._start_run, made, breakpoints)

    def open_session(self, directory: Path) -> None:
        from rlm_tui.session.store import read_session
        from rlm_tui.tui.run_screen import RunScreen

        try:
            log = read_session(directory)
        except RlmError as exc:
            self.notify(str(exc), title="cannot open session", severity="error")
            return
        for problem in log.problems:
            self.notify(problem, title="session repaired on reading", severity="warning")
        self._show(RunScreen(None, list(log.events), editor=self.ui.editor, directory=directory))

    @property
    def live_run(self) -> Run | None:
        """The run this app follows, while it has not ended (finished, or failed to start)."""
        run = self.current_run
        return run if run is not None and not run.ended else None

    def action_home(self) -> None:
        from rlm_tui.tui.home_screen import HomeScreen

        if not isinstance(self.screen, HomeScreen):
            self._show(
                HomeScreen(
                    self.sessions_dir,
                    self.ui.run,
                    back=self._live_screen() is not None,
                    form_values=self.form_values,
                )
            )

    async def action_quit(self) -> None:
        """Quit; a live run is stopped first, so ask."""
        from rlm_tui.tui.modals import ConfirmScreen

        if self.live_run is None or isinstance(self.screen, ConfirmScreen):
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(QUIT_QUESTION), answered)

    def action_help(self) -> None:
        """The keys of the focused pane (and of what holds it), of the screen and the app."""
        from rlm_tui.tui.modals import TextScreen, bindings_table

        if isinstance(self.screen, TextScreen):
            return
        screen = self.screen
        groups: list[tuple[str, list[Binding]]] = []
        node: DOMNode | None = screen.focused
        while node is not None and node is not screen:
            bindings = own_bindings(node)
            if bindings:
                groups.append((type(node).__name__, bindings))
            node = node.parent
        groups.append((type(screen).__name__, own_bindings(screen)))
        groups.append(("App", own_bindings(self)))
        title = "Keys of the focused pane, the screen and the app (remap by id in config.yaml)"
        self.push_screen(TextScreen(title, bindings_table(groups, self.keymap)))

    def _stop_for_signal(self, signum: int, reason: str) -> None:
        """SIGTERM, SIGHUP (the terminal closed), SIGINT from outside: the run is stopped for
        that reason (``on_unmount`` waits for it) and the terminal given back, not left in the
        app's screen with its cursor hidden."""
        run = self.current_run
        if run is not None and not run.ended:
            run.stop(reason)
        self.exit(return_code=128 + signum)

    async def on_unmount(self) -> None:
        for signum in STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(signum)
        run = self.current_run
        if run is not None:
            with contextlib.suppress(Exception):  # closing must not fail because the run did
                if not run.ended:
                    run.stop("the app was closed")
                    await run.wait()
                await run.closed()  # no kernel outlives the app
        if self._kept_models is not None:
            await self._kept_models.aclose()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Home", "New run and saved sessions", self.action_home)
