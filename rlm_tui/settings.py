"""The user's config file (``config.yaml`` in the config dir): UI settings and run defaults.

``run:`` holds defaults for new runs under the names of ``RunConfig``'s fields (``model``,
``api_base``, ``truncate``, ``pool_size``, ``limits: {max_cost: ...}``, ...); a flag on the
command line or a field on the home screen still wins. The values themselves are defined once,
in ``RunConfig`` and ``Limits``; this file only overrides them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rlm_tui.errors import UsageError
from rlm_tui.paths import config_file
from rlm_tui.yaml_file import read_yaml_model

PER_RUN_FIELDS = frozenset(
    {"query", "context_file", "context_value", "session_id", "append_to", "save", "sessions_dir"}
)
"""RunConfig fields that describe one run, not a default for all of them (the sessions
directory is ``$RLM_TUI_SESSIONS`` or ``--sessions-dir``, so listing and saving agree)."""


class ConfigError(UsageError):
    """A config file that cannot be used; the message names the file and the field."""


class UserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = "rlm-dark"
    keymap: dict[str, str] = {}
    """Binding id -> keys, e.g. {"run.pause": "ctrl+p,f5"}."""
    editor: str | None = None
    run: dict[str, Any] = Field(default_factory=dict)
    """RunConfig field -> default for new runs, validated by RunConfig itself."""

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

    @field_validator("run")
    @classmethod
    def _known_run_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        from rlm_tui.engine.run import RunConfig

        allowed = set(RunConfig.model_fields) - PER_RUN_FIELDS
        for name in value:
            if name not in allowed:
                raise ValueError(f"'{name}' is not a run setting ({', '.join(sorted(allowed))})")
        try:
            checked = RunConfig.model_validate({"query": "", **value})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
        return {name: getattr(checked, name) for name in value}


def load_config(path: Path | None = None) -> UserConfig:
    """The config file's settings; defaults when there is no file; ``ConfigError`` if bad."""
    path = path or config_file()
    if not path.is_file():
        return UserConfig()
    return read_yaml_model(path, UserConfig, ConfigError)


def run_defaults() -> dict[str, Any]:
    """The config file's defaults for new runs (RunConfig keyword arguments)."""
    return dict(load_config().run)


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
