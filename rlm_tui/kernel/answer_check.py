"""Kernel side: an answer checked against the shape it must have, before it leaves the kernel.

The host gives an agent a JSON Schema (from ``--output-schema``, ``output_type=`` or
``rlm_query(..., schema=...)``); ``FINAL`` then sends only JSON data that matches it, so the host
never has to unpickle an answer to check it. A mismatch raises ``AnswerMismatch`` in the cell,
where the model reads it and tries again. Schemas are checked with ``jsonschema``; a Python type
given as a schema in a cell (``dict[str, int]``, a pydantic model) goes through pydantic.
Both are imported only when a schema is in use.
"""

from __future__ import annotations

import json
from typing import Any

SHOWN_ERRORS = 3


class AnswerMismatch(ValueError):
    """The answer does not have the shape the run asked for."""


class SchemaNotApplicable(AnswerMismatch):
    """The schema itself fails on a value (a loop of ``$ref``), whatever the answer."""


def schema_of(shape: Any) -> dict[str, Any]:
    """A JSON Schema from a JSON Schema (a dict) or a Python type (through pydantic)."""
    if isinstance(shape, dict):
        return shape
    from pydantic import TypeAdapter

    return TypeAdapter(shape).json_schema()


def as_json(value: Any) -> Any:
    """The JSON form of an answer (a pydantic model by its fields), or AnswerMismatch."""
    if hasattr(value, "model_dump") and callable(value.model_dump):
        value = value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise AnswerMismatch(
            f"the answer must be JSON data (dict, list, str, number, bool, None) for the "
            f"expected shape; got {type(value).__name__}: {exc}"
        ) from None


def check(value: Any, schema: dict[str, Any]) -> Any:
    """``value``'s JSON form if it matches ``schema``; else AnswerMismatch saying where not.

    A schema that cannot be applied (a loop of ``$ref``, one refused as remote) is an
    AnswerMismatch too: a FINAL, or the answer extracted at a budget stop, never crashes."""
    from jsonschema import validators

    data = as_json(value)
    checker = validators.validator_for(schema)(schema, registry=_no_fetching())
    try:
        errors = sorted(checker.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    except Exception as exc:
        raise SchemaNotApplicable(
            f"the expected schema cannot be applied ({type(exc).__name__}: {exc})"
        ) from None
    if not errors:
        return data
    lines = [f"at {_where(e.absolute_path)}: {e.message}" for e in errors[:SHOWN_ERRORS]]
    if len(errors) > SHOWN_ERRORS:
        lines.append(f"... and {len(errors) - SHOWN_ERRORS} more")
    raise AnswerMismatch(
        "the answer does not match the expected schema; " + "; ".join(lines) + ". "
        f"Expected: {json.dumps(schema)}"
    )


def unresolved_ref(schema: Any) -> str | None:
    """The first ``$ref`` of ``schema`` that does not resolve inside it (or the bundled
    meta-schemas), else None: checked when a schema is loaded, so a bad one is refused up
    front rather than failing every FINAL. Nothing is fetched: the registry refuses."""
    from jsonschema import validators
    from jsonschema_specifications import REGISTRY
    from referencing import Resource, jsonschema
    from referencing.exceptions import Unresolvable

    cls = validators.validator_for(schema)
    spec = jsonschema.specification_with(
        cls.ID_OF(cls.META_SCHEMA) or "", default=jsonschema.DRAFT202012
    )
    root = spec.create_resource(schema)
    todo = [(root, REGISTRY.combine(_no_fetching()).resolver_with_root(root))]
    seen: set[int] = set()
    while todo:
        resource, resolver = todo.pop()
        if id(resource.contents) in seen:
            continue
        seen.add(id(resource.contents))
        if isinstance(resource.contents, dict):
            for key in ("$ref", "$dynamicRef"):
                ref = resource.contents.get(key)
                if not isinstance(ref, str):
                    continue
                try:
                    resolved = resolver.lookup(ref)
                except Unresolvable:
                    return ref
                if not isinstance(resolved.contents, (dict, bool)):
                    return ref
                # what it points at is checked too: it may lie outside every subschema
                target = Resource.from_contents(resolved.contents, default_specification=spec)
                todo.append((target, resolved.resolver))
        todo.extend((sub, resolver.in_subresource(sub)) for sub in resource.subresources())
    return None


def _no_fetching() -> Any:
    """A registry whose retrieve refuses: jsonschema's default fetches a remote ``$ref``."""
    from referencing import Registry
    from referencing.exceptions import NoSuchResource

    def refuse(uri: str) -> Any:
        raise NoSuchResource(uri)

    return Registry(retrieve=refuse)  # type: ignore[call-arg]


def _where(path: Any) -> str:
    parts = "".join(f"[{p!r}]" for p in path)
    return f"answer{parts}" if parts else "the answer"


class Expected:
    """The schema this kernel's agent must answer in (none until the host sets one)."""

    def __init__(self) -> None:
        self.schema: dict[str, Any] | None = None

    def set(self, schema_json: str) -> None:
        self.schema = json.loads(schema_json) if schema_json else None

    def check(self, value: Any) -> Any:
        return value if self.schema is None else check(value, self.schema)
