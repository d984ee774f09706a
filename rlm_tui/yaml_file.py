"""Read a YAML file into a pydantic model; every failure is one line naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rlm_tui.errors import UsageError

M = TypeVar("M", bound=BaseModel)


def read_yaml_model(path: Path, model: type[M], error: type[UsageError]) -> M:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return model.model_validate(data)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or model.__name__
        message = first["msg"].removeprefix("Value error, ")
        raise error(f"{path}: {field}: {message}") from None
