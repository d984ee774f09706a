"""Read a YAML file into a pydantic model or dataclass; every failure is one line naming file
and field."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rlm_tui.errors import UsageError, validation_problem

if TYPE_CHECKING:
    from yaml import YAMLError

M = TypeVar("M")


def read_yaml_mapping(path: Path, error: type[UsageError]) -> dict[str, Any]:
    """Read a YAML mapping; every failure is one line naming the file (yaml is imported here:
    the app's first frame reads its built-in themes with it, and waits for what it imports)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of fields, found {type(data).__name__}")
    return data


def read_yaml_model(path: Path, model: type[M], error: type[UsageError]) -> M:
    """Read a YAML mapping into ``model``; every failure is one line naming file and field."""
    from pydantic import TypeAdapter, ValidationError

    data = read_yaml_mapping(path, error)
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise error(f"{path}: {validation_problem(exc)}") from None


def _yaml_problem(exc: YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"
