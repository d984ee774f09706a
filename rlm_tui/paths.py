"""Where rlm-tui keeps its files: the platform's usual places (platformdirs), or the env override.

Linux follows XDG (``$XDG_CONFIG_HOME/rlm-tui``, ``$XDG_DATA_HOME/rlm-tui/sessions``); macOS
uses ``~/Library/Application Support/rlm-tui``. A ``./sessions`` folder is an explicit choice
(``--sessions-dir sessions``), never a silent default.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_path, user_data_path

APP = "rlm-tui"
BUILTIN_THEMES = Path(__file__).resolve().parent / "themes"
"""The themes shipped inside the package (so a wheel or pipx install has them)."""


def config_dir() -> Path:
    """``$RLM_TUI_CONFIG_DIR``, else the platform's config dir for rlm-tui."""
    return Path(os.environ.get("RLM_TUI_CONFIG_DIR") or user_config_path(APP))


def config_file() -> Path:
    return config_dir() / "config.yaml"


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def default_sessions_dir() -> Path:
    """``$RLM_TUI_SESSIONS``, else the platform's data dir for rlm-tui."""
    return Path(os.environ.get("RLM_TUI_SESSIONS") or user_data_path(APP) / "sessions")


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` whose every new directory is 0700 (``Path.mkdir`` makes the parents with
    the umask's mode): the sessions dir and the dirs above it that rlm-tui made hold private
    contexts. Directories that exist are left as they are."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
