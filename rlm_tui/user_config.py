"""The user's settings, as the config file holds them; checked by
``config_file_schema.ConfigFile`` (this module imports neither pydantic nor yaml: the app's
first frame waits for what it imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_tui import defaults


@dataclass
class UserConfig:
    """UI settings and the defaults of new runs."""

    theme: str = defaults.THEME
    keymap: dict[str, str] = field(default_factory=dict)
    """Binding id -> keys, e.g. {"run.pause": "ctrl+p,f5"}."""
    editor: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    """RunConfig field -> default for new runs, validated by RunConfig itself."""
