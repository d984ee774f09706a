"""The shape a run's answer must have: a JSON Schema, and the typed value the API returns.

A schema comes from a file (``--output-schema``) or a Python type (``output_type=`` a pydantic
model or a typing form such as ``dict[str, int]``). The kernel checks answers against the JSON
Schema (``kernel/answer_check.py``); the host only turns the checked JSON into the type asked
for, so it never unpickles anything to check it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from rlm_tui.errors import UsageError
from rlm_tui.kernel.answer_check import (
    AnswerMismatch,
    SchemaNotApplicable,
    check,
    unresolved_ref,
)


class OutputSchema:
    def __init__(self, schema: dict[str, Any], output_type: Any = None) -> None:
        self.schema = schema
        self._adapter: TypeAdapter[Any] | None = (
            TypeAdapter(output_type) if output_type is not None else None
        )

    @classmethod
    def from_file(cls, path: Path) -> OutputSchema:
        """A JSON Schema file; a missing file or a bad schema is one UsageError line."""
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read the output schema {path}: {exc.strerror}") from None
        except (ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise UsageError(f"the output schema {path} is not JSON: {why}") from None
        return cls(checked(schema, str(path)))

    @classmethod
    def from_type(cls, output_type: Any) -> OutputSchema:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = adapter.json_schema()
        except Exception as exc:
            raise UsageError(f"output_type {output_type!r} has no JSON Schema: {exc}") from None
        return cls(schema, output_type)

    def typed(self, value: Any) -> Any:
        """The checked JSON answer as the type asked for (a pydantic model's instance)."""
        return value if self._adapter is None else self._adapter.validate_python(value)


def checked(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema object, else one UsageError line."""
    from jsonschema import SchemaError, validators

    if not isinstance(schema, dict):
        raise UsageError(f"{where}: a JSON Schema must be an object, got {type(schema).__name__}")
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    ref = unresolved_ref(schema)
    if ref is not None:
        raise UsageError(
            f"{where}: $ref {ref!r} does not resolve inside the schema (nothing is fetched)"
        )
    probes: tuple[Any, ...] = (None, {}, [], 0, "")
    for probe in probes:  # a loop of $ref ({"$ref": "#"}) fails on any value
        try:
            check(probe, schema)
        except SchemaNotApplicable as exc:
            raise UsageError(f"{where}: {exc} (a $ref that loops back on itself?)") from None
        except AnswerMismatch:
            pass  # the probe is not an answer of this shape: as it should be
    return schema
