"""rlm-tui: a terminal workbench for Recursive Language Models over live Jupyter kernels.

The Python API is ``rlm_tui.run(...)`` / ``await rlm_tui.arun(...)``; it is imported on first
use so that ``import rlm_tui.events`` (or the CLI's ``--help``) stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Limits", "Run", "RunConfig", "RunResult", "arun", "run"]

_HOMES = {
    "arun": "rlm_tui.api",
    "run": "rlm_tui.api",
    "Limits": "rlm_tui.engine.budget",
    "Run": "rlm_tui.engine.run",
    "RunConfig": "rlm_tui.engine.run",
    "RunResult": "rlm_tui.engine.run",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'rlm_tui' has no attribute {name!r}")
