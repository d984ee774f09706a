"""Key remapping from the user's config (the file itself is read by ``rlm_tui.settings``)."""

from __future__ import annotations

from typing import Any

from textual.app import App

from rlm_tui.settings import ConfigError, load_config
from rlm_tui.settings import UserConfig as UiConfig

__all__ = ["ConfigError", "UiConfig", "apply_keymap", "load_config"]


def apply_keymap(app: App[Any], keymap: dict[str, str], known_ids: set[str]) -> list[str]:
    """Remap bindings by id; returns a warning for each id no binding has."""
    unknown = [f"keymap: no binding with id '{k}'" for k in keymap if k not in known_ids]
    app.set_keymap({k: v for k, v in keymap.items() if k in known_ids and v.strip()})
    return unknown
