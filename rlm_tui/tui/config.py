"""The user's UI config, ``~/.config/rlm-tui/config.yaml`` (``$RLM_TUI_CONFIG_DIR/config.yaml``)::

    theme: rlm-light           # a theme's name (see themes/ and ~/.config/rlm-tui/themes/)
    editor: nvim               # for editing a cell outside the app ($EDITOR when unset)
    keymap:                    # binding id -> keys, comma-separated
      run.pause: ctrl+p,f5
      run.skip: k

Every ``Binding`` of the app has an id ``<area>.<action>`` (``app.quit``, ``run.pause``,
``cells.fold``, ``context.search``, ...); the help screen lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode

from rlm_tui.errors import UsageError
from rlm_tui.tui.themes import DEFAULT_DARK, config_dir, read_yaml_model


class ConfigError(UsageError):
    """A config file that cannot be used; the one-line message names the file and the field."""


class UiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = DEFAULT_DARK
    keymap: dict[str, str] = {}
    """Binding id -> keys, e.g. ``{"run.pause": "ctrl+p,f5"}``."""
    editor: str | None = None

    @field_validator("theme")
    @classmethod
    def _theme(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a theme name cannot be empty")
        return value.strip()

    @field_validator("keymap")
    @classmethod
    def _keymap(cls, value: dict[str, str]) -> dict[str, str]:
        for binding_id, keys in value.items():
            problem = key_problem(binding_id, keys)
            if problem:
                raise ValueError(problem)
        return {binding_id: normalize_keys(keys) for binding_id, keys in value.items()}


def config_path() -> Path:
    return config_dir() / "config.yaml"


def load_config(path: Path | None = None) -> UiConfig:
    """The config file's settings; defaults when there is no file; ``ConfigError`` if bad."""
    path = path or config_path()
    if not path.exists():
        return UiConfig()
    return read_yaml_model(path, UiConfig, ConfigError)


def save_theme(theme: str, path: Path | None = None) -> None:
    """Remember the theme in the config file; its other lines (and comments) stay as they are."""
    path = path or config_path()
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    entry = f"theme: {theme}"
    for i, line in enumerate(lines):
        if line.startswith("theme:"):
            lines[i] = entry
            break
    else:
        lines.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def normalize_keys(keys: str) -> str:
    """``"ctrl+p, f5"`` -> ``"ctrl+p,f5"``."""
    return ",".join(key.strip() for key in keys.split(","))


def key_problem(binding_id: object, keys: object) -> str | None:
    """Why a keymap entry cannot be used, or None."""
    if not isinstance(binding_id, str) or not binding_id.strip():
        return f"binding id {binding_id!r} must be a non-empty string"
    if not isinstance(keys, str) or not keys.strip():
        return f"binding {binding_id!r}: keys must be a non-empty string like 'ctrl+p,f5'"
    for key in keys.split(","):
        key = key.strip()
        if not key or any(c.isspace() for c in key):
            return f"binding {binding_id!r}: bad key {key!r} in {keys!r}"
    return None


def binding_ids(app: App[Any]) -> set[str]:
    """The ids of the bindings the app can see now: its own, its screens' and their widgets'."""
    nodes: list[DOMNode] = [app]
    for screen in app.screen_stack:
        nodes += [screen, *screen.walk_children()]
    ids: set[str] = set()
    for node in nodes:
        for cls in type(node).__mro__:
            for binding in vars(cls).get("BINDINGS", []):
                if isinstance(binding, Binding) and binding.id:
                    ids.add(binding.id)
    return ids


def apply_keymap(
    app: App[Any], keymap: dict[str, str], known_ids: Iterable[str] | None = None
) -> list[str]:
    """Remap bindings by id with ``App.set_keymap``; returns one warning per unusable entry.

    An entry is skipped (with a warning) when its keys are not non-empty strings, or when
    ``known_ids`` is given and lacks its id. With ``known_ids=None`` the ids the app can see
    now (:func:`binding_ids`) are used; ids of screens not yet pushed then look unknown, so
    pass every id the app defines when the keymap is applied at start-up.
    """
    known = set(known_ids) if known_ids is not None else binding_ids(app)
    warnings: list[str] = []
    usable: dict[str, str] = {}
    for binding_id, keys in keymap.items():
        problem = key_problem(binding_id, keys)
        if problem:
            warnings.append(f"keymap: {problem}")
        elif binding_id not in known:
            warnings.append(f"keymap: no binding with id '{binding_id}'")
        else:
            usable[binding_id] = normalize_keys(keys)
    app.set_keymap(usable)
    return warnings
