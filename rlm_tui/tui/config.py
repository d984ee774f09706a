"""The user's UI config (``~/.config/rlm-tui/config.yaml``): theme, key remapping, editor."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from textual.app import App

from rlm_tui.errors import UsageError
from rlm_tui.tui.themes import config_dir
from rlm_tui.tui.yaml_file import read_yaml_model


class ConfigError(UsageError):
    """A config file that cannot be used; the message names the file and the field."""


class UiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = "rlm-dark"
    keymap: dict[str, str] = {}
    """Binding id -> keys, e.g. {"run.pause": "ctrl+p,f5"}."""
    editor: str | None = None


def load_config() -> UiConfig:
    path = config_dir() / "config.yaml"
    if not path.is_file():
        return UiConfig()
    return read_yaml_model(path, UiConfig, ConfigError)


def apply_keymap(app: App[Any], keymap: dict[str, str], known_ids: set[str]) -> list[str]:
    """Remap bindings by id; returns a warning for each id no binding has."""
    unknown = [f"keymap: no binding with id '{k}'" for k in keymap if k not in known_ids]
    app.set_keymap({k: v for k, v in keymap.items() if k in known_ids and v.strip()})
    return unknown
