"""Export a session: a Jupyter notebook that re-runs it, or a Markdown report.

The notebook runs top to bottom in a plain kernel: its first cell loads the context from the
recorded file and defines the REPL helpers as stand-ins that hand back the recorded answers
(``rlm_query``, ``llm_query``) in the order they were given, so no model is needed.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from rlm_tui import defaults
from rlm_tui.errors import UsageError
from rlm_tui.redact import redact
from rlm_tui.session.projection import AgentView, CellView, RunView, fold
from rlm_tui.session.store import EVENTS_FILE, read_session

OUTPUT_IN_REPORT = 2000
NOT_RUN = frozenset({"pending", "paused", "cancelled", "stopped"})
"""Cell states of the projection that an export shows as "not run"."""
STILL_RUNNING = "running when exported: its output so far"
"""A cell of a live session (or of one a crash cut off mid-cell)."""


def _read(directory: Path) -> RunView:
    return fold(read_session(directory).events)


def _agent_status(agent: AgentView) -> str:
    return "unfinished" if agent.status == "running" else agent.status


def _agent_answer(agent: AgentView) -> str:
    return agent.answer.repr if agent.answer is not None else agent.reason


def _cell_status(cell: CellView) -> str:
    if cell.status in NOT_RUN:
        return "not run"
    if cell.status == "running":
        return STILL_RUNNING
    return "ok" if cell.status == "edited" else cell.status


def _cell_code(cell: CellView) -> str:
    """What ran (an edit included); the model's code for a cell that never started."""
    return cell.code if cell.started is not None else cell.original_code


def _cell_output(cell: CellView) -> str:
    return "" if cell.status in NOT_RUN else cell.output


def _answers(view: RunView) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """What ``rlm_query`` and ``llm_query`` returned, per calling agent, in call order."""
    rlm: dict[str, list[Any]] = defaultdict(list)
    llm: dict[str, list[str]] = defaultdict(list)
    for call in view.subcalls:
        if not call.ok or call.result is None:
            continue
        value = call.result.json_value if call.result.is_json else call.result.repr
        if call.kind == "rlm_query":
            rlm[call.agent_id].append(value)
        elif call.kind == "llm_query":
            llm[call.agent_id].append(str(value))
    return rlm, llm


def _ordered(view: RunView) -> list[AgentView]:
    """The root first, then every sub-agent, depth first."""
    out: list[AgentView] = []

    def walk(agent: AgentView) -> None:
        out.append(agent)
        for child in agent.children:
            walk(view.agents[child])

    for agent in view.agents.values():
        if agent.parent_id is None:
            walk(agent)
    return out


_SETUP = """\
# Set up by rlm-tui's export: the context, and stand-ins for the RLM helpers that hand back
# what the recorded run got, in order, so this notebook runs without any model.
import json, pathlib
{load_context}
_RLM_ANSWERS = json.loads({rlm_answers!r})
_LLM_ANSWERS = json.loads({llm_answers!r})
_agent = "0"

def rlm_query(prompt, context=None):
    return _RLM_ANSWERS[_agent].pop(0)

def rlm_query_batched(prompts, contexts=None):
    return [rlm_query(p) for p in prompts]

def llm_query(prompt, model=None):
    return _LLM_ANSWERS[_agent].pop(0)

def llm_query_batched(prompts, model=None):
    return [llm_query(p) for p in prompts]

def FINAL(value):
    print("FINAL:", repr(value))

def FINAL_VAR(name):
    FINAL(globals()[name] if isinstance(name, str) else name)

def SHOW_VARS():
    print(sorted(k for k in globals() if not k.startswith("_")))

answer = {{"content": "", "ready": False}}

def _awaitable_helpers():
    # cells that `await llm_query(...)` run as they did in the run (with rlm-tui installed)
    try:
        from rlm_tui.kernel.awaiting import AIO_NAME, AsyncForms, install
    except ImportError:
        return
    forms = AsyncForms()
    helpers = [rlm_query, rlm_query_batched, llm_query, llm_query_batched]
    for helper in helpers:
        async def form(*args, _helper=helper, **kwargs):
            return _helper(*args, **kwargs)
        forms.register(helper, form)
    globals()[AIO_NAME] = forms
    install(get_ipython())

_awaitable_helpers()
"""


def _load_context(view: RunView) -> str:
    path, kind = view.context_file, view.context_kind
    if not path or kind == "none":
        return 'context = ""'
    readers = {
        "text": "pathlib.Path({p!r}).read_text(encoding='utf-8', errors='replace')",
        "json": "json.loads(pathlib.Path({p!r}).read_text(encoding='utf-8'))",
        "jsonl": "[json.loads(l) for l in pathlib.Path({p!r}).read_text().splitlines() if l.strip()]",
        "yaml": "__import__('yaml').safe_load(pathlib.Path({p!r}).read_text())",
        "pickle": "__import__('pickle').loads(pathlib.Path({p!r}).read_bytes())",
        "dir": "{{str(f.relative_to({p!r})): f.read_text(errors='replace') for f in "
        "sorted(pathlib.Path({p!r}).rglob('*')) if f.is_file()}}",
    }
    return "context = " + readers[kind].format(p=path)


def to_notebook(directory: Path) -> Any:
    view = _read(directory)
    status = view.status or "unfinished"
    usage = view.usage
    rlm_answers, llm_answers = _answers(view)
    cells: list[Any] = [
        new_markdown_cell(
            f"# rlm-tui session {view.run_id}\n\n**Query:** {view.query}\n\n"
            f"Model `{view.model}`, status **{status}**, {usage.calls} model calls, "
            f"{usage.prompt_tokens:,} prompt and {usage.completion_tokens:,} completion tokens, "
            f"${usage.cost:.4f}."
        ),
        new_code_cell(
            _SETUP.format(
                load_context=_load_context(view),
                rlm_answers=json.dumps(rlm_answers, default=str),
                llm_answers=json.dumps(llm_answers, default=str),
            )
        ),
    ]
    for agent in _ordered(view):
        title = "Root agent" if agent.parent_id is None else f"Sub-agent {agent.agent_id}"
        cells.append(
            new_markdown_cell(
                f"## {title} (depth {agent.depth}): {_agent_status(agent)}\n\n"
                f"> {agent.query}\n\nAnswer: `{_agent_answer(agent)[:300]}`"
            )
        )
        if agent.parent_id is not None:
            cells.append(new_code_cell(f'_agent = "{agent.agent_id}"\ncontext = ""'))
        for cell in view.cells_of(agent.agent_id):
            if cell.preamble:
                cells.append(new_markdown_cell(cell.preamble))
            status, code = _cell_status(cell), _cell_code(cell)
            if status in ("skipped", "not run"):
                cells.append(
                    new_markdown_cell(
                        f"*Cell {cell.cell_id} was {status}:*\n\n```python\n{code}\n```"
                    )
                )
                continue
            if status == STILL_RUNNING:
                cells.append(new_markdown_cell(f"*Cell {cell.cell_id} was {status}:*"))
            notebook_cell = new_code_cell(code)
            if output := _cell_output(cell):
                notebook_cell.outputs = [new_output("stream", name="stdout", text=output)]
            cells.append(notebook_cell)
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


def to_markdown(directory: Path) -> str:
    view = _read(directory)
    usage = view.usage
    lines = [
        f"# rlm-tui session {view.run_id}",
        "",
        f"- Query: {view.query}",
        f"- Model: `{view.model}`; status: **{view.status or 'unfinished'}**",
        f"- Usage: {usage.calls} calls, {usage.prompt_tokens:,} prompt tokens, "
        f"{usage.completion_tokens:,} completion tokens, ${usage.cost:.4f}",
        "",
        "## Agents",
        "",
    ]
    for agent in _ordered(view):
        lines.append(
            f"{'  ' * agent.depth}- agent {agent.agent_id} (depth {agent.depth}, "
            f"{_agent_status(agent)}, {agent.usage.total_tokens:,} tokens): {agent.query[:100]}"
        )
    if (answer := view.answer_value) is not None:
        shown = (
            json.dumps(answer.json_value, indent=1, ensure_ascii=False)
            if answer.is_json
            else answer.repr
        )
        lines += ["", "## Answer", "", "```", shown, "```"]
    for agent in _ordered(view):
        lines += ["", f"## Agent {agent.agent_id}", "", f"> {agent.query}"]
        for cell in view.cells_of(agent.agent_id):
            lines += ["", f"### Cell {cell.cell_id} ({_cell_status(cell)})", ""]
            if cell.preamble:
                lines += [cell.preamble, ""]
            lines += ["```python", _cell_code(cell), "```"]
            if output := _cell_output(cell):
                shown = output[:OUTPUT_IN_REPORT]
                more = len(output) - len(shown)
                lines += ["", "```", shown.rstrip("\n"), "```"]
                if more:
                    lines.append(f"*… {more:,} more characters*")
    return "\n".join(lines) + "\n"


def export(directory: Path, fmt: str | None, output: Path) -> Path:
    """Write the export (``fmt``: by default the output's suffix, else a notebook); an existing
    file is only replaced once the new one is complete, and never one of a session's, nor
    anything that is not a regular file."""
    fmt = fmt or ("md" if output.suffix == ".md" else "ipynb")
    if fmt not in defaults.EXPORT_FORMATS:
        raise UsageError(
            f"unknown export format '{fmt}' (use {' or '.join(defaults.EXPORT_FORMATS)})"
        )
    # through a symlink to the file it names (the link stays); what is there must be a file:
    # a FIFO, a device or a socket would be replaced by a regular file
    try:
        target = Path(os.path.realpath(output, strict=True))
    except FileNotFoundError:  # a new file (or a link to one)
        target = Path(os.path.realpath(output))
    except OSError as exc:  # a loop of links
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    if not output.name or target.is_dir():
        raise UsageError(f"cannot write {output}: not a file name")
    if target.exists() and not target.is_file():
        raise UsageError(f"cannot write {output}: not a regular file")
    if (target.parent / EVENTS_FILE).exists():
        raise UsageError(f"will not write into a session's directory: {target.parent}")
    kept_mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    text = nbformat.writes(to_notebook(directory)) if fmt == "ipynb" else to_markdown(directory)
    try:  # a name of its own beside the target: no file of the user's is truncated
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp's mode: 0600
            f.write(redact(text))
        if kept_mode is not None:  # a file replaced keeps its permissions
            os.chmod(partial, kept_mode)
        os.replace(partial, target)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    return output
