"""The Textual app: themes, keymap, command palette, and the home and run screens."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import RlmError
from rlm_tui.events import Event
from rlm_tui.session.store import read_session
from rlm_tui.tui.config import UiConfig, apply_keymap, load_config
from rlm_tui.tui.home_screen import HomeScreen
from rlm_tui.tui.run_screen import RunScreen
from rlm_tui.tui.themes import load_themes, theme_dirs, watch_themes


class RlmApp(App[None]):
    TITLE = "rlm-tui"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("ctrl+h", "home", "Home", id="app.home"),
    ]

    def __init__(
        self,
        config: RunConfig | None = None,
        run: Run | None = None,
        session: Path | None = None,
        events: list[Event] | None = None,
        replay_speed: float = 0.0,
        breakpoints: Breakpoints | None = None,
        sessions_dir: Path | None = None,
        ui_config: UiConfig | None = None,
        watch: bool = True,
    ) -> None:
        super().__init__()
        self.run_config = config
        self.session = session
        self.events = events
        self.replay_speed = replay_speed
        self.breakpoints = breakpoints
        self.sessions_dir = sessions_dir
        self.ui = ui_config or load_config()
        self.watch = watch
        self.keymap: dict[str, str] = dict(self.ui.keymap)
        self.current_run: Run | None = run

    def on_mount(self) -> None:
        themes, problems = load_themes(theme_dirs())
        for theme in themes.values():
            self.register_theme(theme)
        for problem in problems:
            self.notify(problem, title="theme not loaded", severity="error")
        self.theme = self.ui.theme if self.ui.theme in self.available_themes else "rlm-dark"
        for warning in apply_keymap(self, self.keymap, self._binding_ids()):
            self.notify(warning, severity="warning")
        if self.watch:
            self.run_worker(watch_themes(self, theme_dirs()), exclusive=True, group="themes")
        if self.current_run is not None:
            self.push_screen(RunScreen(self.current_run, editor=self.ui.editor))
        elif self.run_config is not None:
            self.start_run(self.run_config, self.breakpoints)
        elif self.session is not None:
            self.open_session(self.session)
        elif self.events is not None:
            self.push_screen(
                RunScreen(None, self.events, editor=self.ui.editor, replay_speed=self.replay_speed)
            )
        else:
            self.push_screen(HomeScreen(self.sessions_dir, self.ui.run))

    def _binding_ids(self) -> set[str]:
        from rlm_tui.tui import agent_tree, cell_log, context_view, home_screen, modals, run_screen

        ids: set[str] = set()
        for module in (agent_tree, cell_log, context_view, home_screen, modals, run_screen):
            for value in vars(module).values():
                for binding in getattr(value, "BINDINGS", []) if isinstance(value, type) else []:
                    if isinstance(binding, Binding) and binding.id:
                        ids.add(binding.id)
        ids |= {b.id for b in self.BINDINGS if isinstance(b, Binding) and b.id}
        return ids

    def start_run(self, config: RunConfig, breakpoints: Breakpoints | None = None) -> None:
        try:
            run = Run(config, breakpoints=breakpoints)
        except RlmError as exc:
            self.notify(str(exc), title="cannot start", severity="error")
            return
        self.current_run = run
        self.push_screen(RunScreen(run, editor=self.ui.editor))

    def open_session(self, directory: Path) -> None:
        try:
            log = read_session(directory)
        except RlmError as exc:
            self.notify(str(exc), title="cannot open session", severity="error")
            return
        for problem in log.problems:
            self.notify(problem, title="session repaired on reading", severity="warning")
        self.push_screen(RunScreen(None, list(log.events), editor=self.ui.editor))

    def action_home(self) -> None:
        if not isinstance(self.screen, HomeScreen):
            self.push_screen(HomeScreen(self.sessions_dir, self.ui.run))

    def action_help(self) -> None:
        if isinstance(self.screen, RunScreen):
            self.screen.action_help()

    async def on_unmount(self) -> None:
        run = self.current_run
        if run is not None and run.result is None:
            run.stop("the app was closed")
            await run.wait()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, RunScreen):
            for binding in screen.BINDINGS:
                if isinstance(binding, Binding) and binding.description:
                    yield SystemCommand(
                        binding.description,
                        f"{binding.description} ({binding.key})",
                        partial(screen.run_action, binding.action),
                    )
        yield SystemCommand("Home", "New run and saved sessions", self.action_home)
