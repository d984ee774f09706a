"""How a Python value crosses between a kernel and the host, built the same way on both sides.

Standard library only: the kernel-side prelude imports it.
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

PREVIEW_LIMIT = 2000
"""Characters of a value's repr that are carried (and recorded) with it."""


def safe_repr(value: Any) -> str:
    """``repr(value)``; a repr that fails (one of its own raising, or nested too deeply) is
    said, so the value still crosses."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} object; its repr failed: {type(exc).__name__}>"


def preview(value: Any) -> str:
    """``safe_repr(value)``, cut at ``PREVIEW_LIMIT`` characters."""
    shown = safe_repr(value)
    return shown if len(shown) <= PREVIEW_LIMIT else shown[:PREVIEW_LIMIT] + "..."


def payload(value: Any, pickled: bool = True) -> dict[str, Any]:
    """A value as it crosses: JSON if it round-trips, a pickle (unless not ``pickled``), a
    preview of its repr."""
    try:
        is_json = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError, RecursionError):
        is_json = False
    exact: str | None = None
    if pickled:
        try:
            exact = base64.b64encode(pickle.dumps(value)).decode()
        except Exception:
            exact = None
    return {
        "json_value": value if is_json else None,
        "is_json": is_json,
        "repr": preview(value),
        "type_name": type(value).__name__,
        "pickle": exact,
    }


def unpayload(p: dict[str, Any]) -> Any:
    """A payload back as a Python value: the pickle if it loads, else JSON, else the repr."""
    if p.get("pickle"):
        try:
            return pickle.loads(base64.b64decode(p["pickle"]))
        except Exception:
            pass
    return p["json_value"] if p.get("is_json") else p.get("repr")
