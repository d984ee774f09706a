"""Tools: the user's own Python functions, run on the host, that a model calls from its kernel.

A tool can reach what the sandboxed kernel cannot (a database, a search index, the network).
They come from a file (``--tools FILE.py``: its public functions) or from the Python API
(``tools=[...]``). The model sees each one's signature and first docstring line; in the
kernel each is a helper that works plainly and with ``await``. Arguments cross as JSON (the
host never unpickles what a kernel sends); a tool runs in a worker thread unless it is a
coroutine function, so a slow tool does not stall the run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import keyword
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_tui.errors import UsageError

RESERVED = {
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "SUBMIT",
    "SHOW_VARS",
    "RLMError",
    "context",
    "answer",
}
"""Names of the REPL contract a tool may not take."""


def check_free_name(name: str, what: str = "an input") -> None:
    """A variable of the kernel the user names (an input, a hand-launched sub-agent's answer):
    a public Python name that is not a keyword (``class = ...`` cannot be assigned) and not
    one of the REPL contract's (bound over ``FINAL_VAR``, the answer breaks every ``FINAL_VAR``
    after it)."""
    if (
        not name.isidentifier()
        or keyword.iskeyword(name)
        or name.startswith("_")
        or name in RESERVED
    ):
        raise UsageError(f"{what} cannot be called {name!r}: use a free Python name")


@dataclass(frozen=True)
class ToolSpec:
    """What the kernel and the model are told about a tool."""

    name: str
    signature: str
    doc: str

    @property
    def line(self) -> str:
        return f"`{self.name}{self.signature}`" + (f": {self.doc}" if self.doc else "")


class Tools:
    def __init__(self, functions: Iterable[Callable[..., Any]] = ()) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}
        for function in functions:
            name = getattr(function, "__name__", "")
            if not name.isidentifier() or name.startswith("_"):
                raise UsageError(f"a tool needs a public function name, got {name!r}")
            if name in RESERVED:
                raise UsageError(f"a tool cannot be called {name!r}: the REPL contract uses it")
            self._functions[name] = function

    @property
    def functions(self) -> list[Callable[..., Any]]:
        return list(self._functions.values())

    @property
    def specs(self) -> list[ToolSpec]:
        return [_spec(name, f) for name, f in self._functions.items()]

    async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run a tool; what it raises leaves as ``ToolFailed`` (the dispatcher reports it to the
        cell), a ``sys.exit()`` or a ``KeyboardInterrupt`` of its own too: asyncio would let
        those end the whole run."""
        function = self._functions.get(name)
        if function is None:
            raise UsageError(f"no tool named {name!r}")
        try:
            if inspect.iscoroutinefunction(function):
                return await function(*args, **kwargs)
            return await asyncio.to_thread(function, *args, **kwargs)
        except UsageError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            raise ToolFailed(f"{type(exc).__name__}: {exc}") from None


def _spec(name: str, function: Callable[..., Any]) -> ToolSpec:
    try:
        signature = str(inspect.signature(function, eval_str=True))
    except Exception:  # an annotation that does not evaluate: show it as written
        try:
            signature = str(inspect.signature(function))
        except (TypeError, ValueError):
            signature = "(...)"
    doc = (inspect.getdoc(function) or "").strip().split("\n", 1)[0]
    return ToolSpec(name, signature, doc)


def load_tools(path: Path) -> Tools:
    """The public functions a file defines; a missing file, an error in it, or none: one line."""
    if not path.is_file():
        raise UsageError(f"tools file not found: {path}")
    module_name = f"rlm_tui_tools_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a module up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # a sys.exit() there is no exit of rlm-tui
        raise UsageError(f"{path} failed to load: {type(exc).__name__}: {exc}") from None
    functions = [
        f
        for name, f in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(f) and f.__module__ == module_name
    ]
    if not functions:
        raise UsageError(f"{path} defines no public function to use as a tool")
    return Tools(functions)


class ToolFailed(Exception):
    """A tool raised: the message (with its exception's type) goes back to the cell."""
