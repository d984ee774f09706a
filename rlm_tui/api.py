"""The Python API: ``rlm_tui.run(...)`` and ``await rlm_tui.arun(...)``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rlm_tui import defaults
from rlm_tui.engine.budget import Limits
from rlm_tui.engine.run import Run, RunConfig, RunResult
from rlm_tui.engine.schema import OutputSchema
from rlm_tui.errors import UsageError, validation_problem

ENGINE_ONLY = frozenset({"append_to"})
"""RunConfig fields that are not arguments: a run appended to a session is resume's and fork's
(appended from here, a new query's run went into a saved, even answered, session)."""


async def arun(
    query: str,
    context: Any = None,
    *,
    context_file: str | Path | None = None,
    model: str = defaults.MODEL,
    sub_model: str | None = None,
    api_base: str | None = None,
    limits: Limits | None = None,
    sessions_dir: str | Path | None = None,
    output_type: Any = None,
    inputs: dict[str, Any] | None = None,
    **options: Any,
) -> RunResult:
    """Run an RLM to its answer. ``result.answer`` is the value, ``result.session_dir`` its log.

    ``context`` is any Python value (str, dict, list, ...); ``context_file`` a file or directory.
    ``output_type`` (a pydantic model, ``dict[str, int]``, ...) is the answer's shape: the model
    is told it, the kernel checks it, and ``result.answer`` is of that type.
    ``tools=[f, ...]`` are functions the model can call from its kernel (run on this host).
    ``inputs={"name": value}`` become more kernel variables beside ``context``.
    Other keyword options are ``RunConfig`` fields (``truncate``, ``cell_timeout``, ...) and
    ``Limits`` fields (``max_calls``, ``max_cost``, ...: over those of ``limits``); any other
    is a ``TypeError``, as a misspelled budget must not run unbounded.
    """
    with _arguments_checked():
        limit_options = {
            name: options.pop(name) for name in list(options) if name in Limits.model_fields
        }
        unknown = sorted(set(options) - (set(RunConfig.model_fields) - ENGINE_ONLY))
        if unknown:
            raise TypeError(f"arun() got unexpected keyword arguments: {', '.join(unknown)}")
        if limit_options:
            given = limits.model_dump(exclude_unset=True) if limits is not None else {}
            limits = Limits.model_validate({**given, **limit_options})
        if inputs:
            options["input_values"] = dict(inputs)
        schema = OutputSchema.from_type(output_type) if output_type is not None else None
        if schema is not None:
            options["output_schema"] = schema.schema
        config = RunConfig(
            query=query,
            context_value=context,
            context_file=str(context_file) if context_file is not None else None,
            model=model,
            sub_model=sub_model,
            api_base=api_base,
            limits=limits or Limits(),
            **({"sessions_dir": sessions_dir} if sessions_dir is not None else {}),
            **options,
        )
    result = await Run(config).execute()
    if schema is not None:
        result.typed = schema.typed
    return result


@contextlib.contextmanager
def _arguments_checked() -> Iterator[None]:
    """A bad argument is one UsageError line naming it, as a bad flag is in the CLI (not
    pydantic's several lines)."""
    try:
        yield
    except ValidationError as exc:
        raise UsageError(validation_problem(exc, "arguments")) from None


def run(query: str, context: Any = None, **kwargs: Any) -> RunResult:
    """Blocking form of ``arun`` for scripts; where a loop runs already (a notebook, an async
    program), ``await rlm_tui.arun(...)``. Ctrl-C saves the session, then raises
    ``KeyboardInterrupt``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun(query, context, **kwargs))
    raise RuntimeError(
        "rlm_tui.run() cannot run inside a running event loop (a notebook, an async program): "
        "use `await rlm_tui.arun(...)`"
    )
