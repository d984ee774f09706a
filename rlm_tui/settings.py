"""The user's config file (``config.yaml`` in the config dir): UI settings and run defaults.

``run:`` holds defaults for new runs under the names of ``RunConfig``'s fields (``model``,
``api_base``, ``truncate``, ``pool_size``, ``limits: {max_cost: ...}``, ...); a flag on the
command line or a field on the home screen still wins. The values themselves are defined once,
in ``RunConfig`` and ``Limits``; this file only overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_tui import defaults
from rlm_tui.errors import UsageError
from rlm_tui.paths import config_file


class ConfigError(UsageError):
    """A config file that cannot be used; the message names the file and the field."""


@dataclass
class UserConfig:
    """The settings; a file's are checked by ``config_file_schema`` (pydantic and yaml are
    imported only when there is a file: the app's first frame waits for what this imports)."""

    theme: str = defaults.THEME
    keymap: dict[str, str] = field(default_factory=dict)
    """Binding id -> keys, e.g. {"run.pause": "ctrl+p,f5"}."""
    editor: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    """RunConfig field -> default for new runs, validated by RunConfig itself."""


def load_config(path: Path | None = None) -> UserConfig:
    """The config file's settings; defaults when there is no file; ``ConfigError`` if bad."""
    path = path or config_file()
    if not path.exists():
        return UserConfig()
    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file")
    from rlm_tui.config_file_schema import ConfigFile
    from rlm_tui.yaml_file import read_yaml_model

    checked = read_yaml_model(path, ConfigFile, ConfigError)
    return UserConfig(**{name: getattr(checked, name) for name in ConfigFile.model_fields})


def run_defaults() -> dict[str, Any]:
    """The config file's defaults for new runs (RunConfig keyword arguments)."""
    return dict(load_config().run)
