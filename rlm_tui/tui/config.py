"""The user's UI config (``~/.config/rlm-tui/config.yaml``): theme, key remapping, editor."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from textual.app import App

from rlm_tui.errors import UsageError
from rlm_tui.tui.themes import config_dir


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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return UiConfig.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "config"
        raise ConfigError(f"{path}: {field}: {error['msg']}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def apply_keymap(app: App[Any], keymap: dict[str, str], known_ids: set[str]) -> list[str]:
    """Remap bindings by id; returns a warning for each id no binding has."""
    unknown = [f"keymap: no binding with id '{k}'" for k in keymap if k not in known_ids]
    app.set_keymap({k: v for k, v in keymap.items() if k in known_ids and v.strip()})
    return unknown
