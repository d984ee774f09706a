"""The user's config file (``config.yaml`` in the config dir): UI settings and run defaults.

``run:`` holds defaults for new runs under the names of ``RunConfig``'s fields (``model``,
``api_base``, ``truncate``, ``pool_size``, ``limits: {max_cost: ...}``, ...); a flag on the
command line or a field on the home screen still wins. The values themselves are defined once,
in ``RunConfig`` and ``Limits``; this file only overrides them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rlm_tui.errors import UsageError
from rlm_tui.paths import config_file
from rlm_tui.user_config import UserConfig


class ConfigError(UsageError):
    """A config file that cannot be used; the message names the file and the field."""


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
    return UserConfig(**{f.name: getattr(checked, f.name) for f in dataclasses.fields(UserConfig)})


def run_defaults() -> dict[str, Any]:
    """The config file's defaults for new runs (RunConfig keyword arguments)."""
    return dict(load_config().run)
