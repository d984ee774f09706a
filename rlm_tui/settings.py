"""The user's config file (``config.yaml`` in the config dir): UI settings and run defaults.

``run:`` holds defaults for new runs under the names of ``RunConfig``'s fields (``model``,
``api_base``, ``truncate``, ``pool_size``, ``limits: {max_cost: ...}``, ...); a flag on the
command line or a field on the home screen still wins. The values themselves are defined once,
in ``RunConfig`` and ``Limits``; this file only overrides them.
"""

from __future__ import annotations

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


def load_config() -> UserConfig:
    path = config_file()
    if not path.is_file():
        return UserConfig()
    return read_yaml_model(path, UserConfig, ConfigError)


def run_defaults() -> dict[str, Any]:
    """The config file's defaults for new runs (RunConfig keyword arguments)."""
    return dict(load_config().run)
