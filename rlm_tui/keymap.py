"""A keymap entry (binding id -> keys) of the config file: checked and normalized."""

from __future__ import annotations


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
