"""Themes as YAML files, validated, registered with Textual, and reloaded when saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from textual.app import App
from textual.theme import Theme

from rlm_tui.errors import UsageError
from rlm_tui.paths import BUILTIN_THEMES, user_themes_dir
from rlm_tui.yaml_file import read_yaml_model


class ThemeError(UsageError):
    """A theme file that cannot be used; the message names the file and the field."""


class ThemeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dark: bool = True
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    foreground: str | None = None
    variables: dict[str, str] = {}


def theme_dirs() -> list[Path]:
    return [BUILTIN_THEMES, user_themes_dir()]


def load_theme_file(path: Path) -> Theme:
    spec = read_yaml_model(path, ThemeFile, ThemeError)
    try:
        return Theme(**spec.model_dump())
    except Exception as exc:  # Textual rejects a bad colour
        raise ThemeError(f"{path}: {exc}") from None


def load_themes(directories: list[Path]) -> tuple[dict[str, Theme], list[str]]:
    """Every theme found, and one line per file that could not be used."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                problems.append(str(exc))
                continue
            themes[theme.name] = theme
    return themes, problems


async def watch_themes(app: App[Any], directories: list[Path]) -> None:
    """Re-register a theme file when it is saved; re-apply it if it is the current theme."""
    from watchfiles import awatch

    existing = [str(d) for d in directories if d.is_dir()]
    if not existing:
        return
    async for changes in awatch(*existing, debounce=100, step=50):
        for _change, name in changes:
            path = Path(name)
            if path.suffix not in (".yaml", ".yml") or not path.is_file():
                continue
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                app.notify(str(exc), title="theme not loaded", severity="error")
                continue
            app.register_theme(theme)
            if app.theme == theme.name:
                app.theme = "textual-dark" if theme.dark else "textual-light"
                app.theme = theme.name
