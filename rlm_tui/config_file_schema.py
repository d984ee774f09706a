"""The config file's check: ``UserConfig`` itself, validated by pydantic (imported only
when there is a file)."""

from __future__ import annotations

from typing import Any

import pydantic.dataclasses
from pydantic import ConfigDict, ValidationError, field_validator

from rlm_tui.errors import UsageError
from rlm_tui.keymap import key_problem, normalize_keys
from rlm_tui.user_config import UserConfig

PER_RUN_FIELDS = frozenset(
    {"query", "context_file", "context_value", "session_id", "append_to", "save", "sessions_dir"}
)
"""RunConfig fields that describe one run, not a default for all of them (the sessions
directory is ``$RLM_TUI_SESSIONS`` or ``--sessions-dir``, so listing and saving agree)."""


@pydantic.dataclasses.dataclass(config=ConfigDict(extra="forbid"))
class ConfigFile(UserConfig):
    """``UserConfig`` with each field checked: what a config file holds."""

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
        try:  # the query is a placeholder: a run's own, never a default
            checked = RunConfig.model_validate({"query": "?", **value})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
        except UsageError as exc:  # a shared check's (rlm_tui.checks): its line, in the file's
            raise ValueError(str(exc)) from None
        return {name: getattr(checked, name) for name in value}
