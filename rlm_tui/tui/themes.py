"""Themes as YAML files: validated, turned into Textual themes, and reloaded when saved.

A theme file names its colours; anything left out is derived by Textual from ``primary``::

    name: my-theme        # what config.yaml's ``theme:`` and the command palette use
    dark: true
    primary: "#4EA1FF"
    secondary: "#B48EF5"
    ...
    variables:            # optional extra Textual CSS variables, e.g.
      footer-key-foreground: "#FFB454"

Two folders are read, later ones overriding earlier ones on equal names: the package's own
``rlm_tui/themes/``, then the user's ``themes/`` in the config directory (``rlm_tui.paths``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.theme import Theme

from rlm_tui.errors import UsageError
from rlm_tui.paths import BUILTIN_THEMES, user_themes_dir
from rlm_tui.yaml_file import read_yaml_mapping, read_yaml_model

log = logging.getLogger(__name__)

THEME_SUFFIXES = (".yaml", ".yml")


class ThemeError(UsageError):
    """A theme file that cannot be used; the one-line message names the file and the field."""


def theme_dirs() -> list[Path]:
    """Where themes are read from, lowest precedence first."""
    return [BUILTIN_THEMES, user_themes_dir()]


def load_theme_file(path: Path | str) -> Theme:
    """The Textual theme a file describes; ``ThemeError`` names the file and the bad field.

    The package's own files are read as they are (their test checks them against the
    schema): the app's first frame waits for them, and the schema's pydantic import alone
    took longer than the frame."""
    path = Path(path)
    if path.parent == BUILTIN_THEMES:
        return Theme(**read_yaml_mapping(path, ThemeError))
    from rlm_tui.tui.theme_file import ThemeFile

    return read_yaml_model(path, ThemeFile, ThemeError).to_theme()


def theme_files(directories: Iterable[Path]) -> list[Path]:
    """The theme files of the folders that exist, in precedence order (lowest first)."""
    files: list[Path] = []
    for directory in directories:
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if _is_theme_file(p))
    return files


def load_themes(
    directories: Iterable[Path], on_error: Callable[[str], None] | None = None
) -> dict[str, Theme]:
    """Every usable theme by name (a later folder wins a name clash).

    A file that cannot be used is reported through ``on_error`` (one line naming file and
    field; logged when no callback is given) and skipped.
    """
    themes: dict[str, Theme] = {}
    for path in theme_files(directories):
        try:
            theme = load_theme_file(path)
        except ThemeError as exc:
            (on_error or log.warning)(str(exc))
            continue
        themes[theme.name] = theme
    return themes


def _is_theme_file(path: Path) -> bool:
    return path.suffix in THEME_SUFFIXES and not path.name.startswith(".") and path.is_file()


async def watch_themes(
    app: App[Any],
    directories: Iterable[Path],
    *,
    debounce_ms: int = 150,
    force_polling: bool | None = None,
) -> None:
    """Reload theme files as they are saved: run it as an app worker, it never returns.

    A changed file is re-registered (``app.register_theme``); if it is the app's current theme
    the new colours are applied at once. A file that fails to load is retried once (editors
    write in steps), then reported with ``app.notify(..., severity="error")``. A file in a
    lower folder does not replace a theme of the same name from a higher one.
    """
    from watchfiles import Change, awatch

    folders = [d.resolve() for d in directories]
    watched = [str(d) for d in folders if d.is_dir()]
    if not watched:
        return
    rank = {d: i for i, d in enumerate(folders)}
    owners: dict[str, Path] = {}  # theme name -> the file it comes from
    for path in theme_files(folders):
        with contextlib.suppress(ThemeError):
            owners[load_theme_file(path).name] = path

    def outranked(path: Path, name: str) -> bool:
        owner = owners.get(name)
        if owner is None or owner == path or not owner.is_file():
            return False
        return rank.get(owner.parent, -1) > rank.get(path.parent, -1)

    async for changes in awatch(
        *watched, debounce=debounce_ms, step=50, recursive=False, force_polling=force_polling
    ):
        paths = {Path(name).resolve() for change, name in changes if change != Change.deleted}
        for path in sorted(paths):
            if not _is_theme_file(path):
                continue
            theme = await _load_with_retry(app, path)
            if theme is None or outranked(path, theme.name):
                continue
            previous_names = [name for name, owner in owners.items() if owner == path]
            owners[theme.name] = path
            app.register_theme(theme)
            if app.theme == theme.name:
                reapply_theme(app)
            elif app.theme in previous_names:
                app.theme = theme.name  # the current theme's file was renamed inside


async def _load_with_retry(app: App[Any], path: Path) -> Theme | None:
    try:
        return load_theme_file(path)
    except ThemeError:
        await asyncio.sleep(0.2)
    try:
        return load_theme_file(path)
    except ThemeError as exc:
        app.notify(str(exc), title="Theme not loaded", severity="error", timeout=8)
        return None


def reapply_theme(app: App[Any]) -> None:
    """Apply the current theme again after its definition was replaced under the same name."""
    # Setting ``app.theme`` to the name it already has is a no-op for the reactive, so run
    # what its watcher runs (as Posting does); Textual is pinned exactly in pyproject.toml.
    watcher = getattr(app, "_watch_theme", None)
    if callable(watcher):
        watcher(app.theme)
    else:  # pragma: no cover - a Textual without the private hook
        app.refresh_css(animate=False)
        app.theme_changed_signal.publish(app.current_theme)
