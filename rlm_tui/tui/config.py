"""The UI side of the user's config file (``config.yaml`` in the config dir, read by
``rlm_tui.settings``): saving the theme chosen in the app, and key remapping::

    theme: rlm-light           # a theme's name (built-in, or a file in the config dir's themes/)
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

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode

from rlm_tui.keymap import key_problem, normalize_keys
from rlm_tui.paths import config_file
from rlm_tui.settings import ConfigError, load_config
from rlm_tui.user_config import UserConfig as UiConfig

__all__ = ["ConfigError", "UiConfig", "apply_keymap", "load_config", "save_theme"]


def save_theme(theme: str, path: Path | None = None) -> None:
    """Remember the theme in the config file; its other lines (and comments) stay as they are."""
    path = path or config_file()
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
