"""Export a session: a Jupyter notebook that re-runs it, or a Markdown report.

The notebook runs top to bottom in a plain kernel: its first cell loads the context from the
recorded file and defines the REPL helpers as stand-ins that hand back the recorded answers
(``rlm_query``, ``llm_query``) in the order they were given, so no model is needed.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from rlm_tui.errors import UsageError
from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    CellFinished,
    CellProposed,
    CellSkipped,
    CellStarted,
    Event,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
    Usage,
)
from rlm_tui.redact import redact
from rlm_tui.session.store import read_session

OUTPUT_IN_REPORT = 2000


@dataclass
class _Cell:
    cell_id: str
    preamble: str
    code: str
    status: str = "not run"
    output: str = ""


@dataclass
class _Agent:
    agent_id: str
    parent_id: str | None
    depth: int
    query: str
    status: str = "unfinished"
    answer: str = ""
    usage: Usage = field(default_factory=Usage)
    cells: list[_Cell] = field(default_factory=list)


@dataclass
class _Session:
    started: RunStarted
    agents: dict[str, _Agent] = field(default_factory=dict)
    finished: RunFinished | None = None
    rlm_answers: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    llm_answers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Per calling agent, in the order the calls were made (not the order they finished)."""


def _fold(events: list[Event]) -> _Session:
    first = events[0]
    assert isinstance(first, RunStarted)
    session = _Session(first)
    cells: dict[str, _Cell] = {}
    order: dict[str, tuple[str, int]] = {}
    answered: dict[str, list[tuple[tuple[str, int], Any]]] = defaultdict(list)
    for e in events:
        if isinstance(e, AgentStarted) and e.agent_id not in session.agents:
            session.agents[e.agent_id] = _Agent(e.agent_id, e.parent_id, e.depth, e.query)
        elif isinstance(e, CellProposed):
            cells[e.cell_id] = _Cell(e.cell_id, e.preamble, e.code)
            session.agents[e.agent_id].cells.append(cells[e.cell_id])
        elif isinstance(e, CellStarted) and e.cell_id in cells:
            cells[e.cell_id].code = e.code
        elif isinstance(e, CellSkipped) and e.cell_id in cells:
            cells[e.cell_id].status = "skipped"
        elif isinstance(e, CellFinished) and e.cell_id in cells and e.status != "skipped":
            cells[e.cell_id].status, cells[e.cell_id].output = e.status, e.output
        elif isinstance(e, AgentFinished) and e.agent_id in session.agents:
            agent = session.agents[e.agent_id]
            agent.status, agent.usage = e.status, e.usage
            agent.answer = e.answer.repr if e.answer else e.reason
        elif isinstance(e, SubcallStarted):
            order[e.call_id] = (e.kind, e.seq)
        elif isinstance(e, SubcallFinished) and e.ok and e.result is not None:
            value = e.result.json_value if e.result.is_json else e.result.repr
            answered[e.agent_id].append((order.get(e.call_id, ("llm_query", e.seq)), value))
        elif isinstance(e, RunFinished):
            session.finished = e
    for agent_id, answers in answered.items():
        for (kind, _), value in sorted(answers, key=lambda item: item[0][1]):
            if kind == "rlm_query":
                session.rlm_answers[agent_id].append(value)
            elif kind == "llm_query":
                session.llm_answers[agent_id].append(str(value))
    return session


def _ordered(session: _Session) -> list[_Agent]:
    """The root first, then every sub-agent, depth first."""
    children: dict[str | None, list[_Agent]] = defaultdict(list)
    for agent in session.agents.values():
        children[agent.parent_id].append(agent)
    out: list[_Agent] = []

    def walk(parent: str | None) -> None:
        for agent in children[parent]:
            out.append(agent)
            walk(agent.agent_id)

    walk(None)
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


def _load_context(started: RunStarted) -> str:
    path, kind = started.context_file, started.context_kind
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
    session = _fold(list(read_session(directory).events))
    start = session.started
    status = session.finished.status if session.finished else "unfinished"
    usage = session.finished.usage if session.finished else Usage()
    cells: list[Any] = [
        new_markdown_cell(
            f"# rlm-tui session {start.run_id}\n\n**Query:** {start.query}\n\n"
            f"Model `{start.model}`, status **{status}**, {usage.calls} model calls, "
            f"{usage.prompt_tokens:,} prompt and {usage.completion_tokens:,} completion tokens, "
            f"${usage.cost:.4f}."
        ),
        new_code_cell(
            _SETUP.format(
                load_context=_load_context(start),
                rlm_answers=json.dumps(session.rlm_answers, default=str),
                llm_answers=json.dumps(session.llm_answers, default=str),
            )
        ),
    ]
    for agent in _ordered(session):
        title = "Root agent" if agent.parent_id is None else f"Sub-agent {agent.agent_id}"
        cells.append(
            new_markdown_cell(
                f"## {title} (depth {agent.depth}): {agent.status}\n\n> {agent.query}\n\n"
                f"Answer: `{agent.answer[:300]}`"
            )
        )
        if agent.parent_id is not None:
            cells.append(new_code_cell(f'_agent = "{agent.agent_id}"\ncontext = ""'))
        for cell in agent.cells:
            if cell.preamble:
                cells.append(new_markdown_cell(cell.preamble))
            if cell.status in ("skipped", "not run"):
                cells.append(
                    new_markdown_cell(
                        f"*Cell {cell.cell_id} was {cell.status}:*\n\n```python\n{cell.code}\n```"
                    )
                )
                continue
            code = new_code_cell(cell.code)
            if cell.output:
                code.outputs = [new_output("stream", name="stdout", text=cell.output)]
            cells.append(code)
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


def to_markdown(directory: Path) -> str:
    session = _fold(list(read_session(directory).events))
    start = session.started
    finished = session.finished
    usage = finished.usage if finished else Usage()
    lines = [
        f"# rlm-tui session {start.run_id}",
        "",
        f"- Query: {start.query}",
        f"- Model: `{start.model}`; status: **{finished.status if finished else 'unfinished'}**",
        f"- Usage: {usage.calls} calls, {usage.prompt_tokens:,} prompt tokens, "
        f"{usage.completion_tokens:,} completion tokens, ${usage.cost:.4f}",
        "",
        "## Agents",
        "",
    ]
    for agent in _ordered(session):
        lines.append(
            f"{'  ' * agent.depth}- agent {agent.agent_id} (depth {agent.depth}, {agent.status}, "
            f"{agent.usage.total_tokens:,} tokens): {agent.query[:100]}"
        )
    if finished is not None and finished.answer is not None:
        answer = finished.answer
        shown = (
            json.dumps(answer.json_value, indent=1, ensure_ascii=False)
            if answer.is_json
            else answer.repr
        )
        lines += ["", "## Answer", "", "```", shown, "```"]
    for agent in _ordered(session):
        lines += ["", f"## Agent {agent.agent_id}", "", f"> {agent.query}"]
        for cell in agent.cells:
            lines += ["", f"### Cell {cell.cell_id} ({cell.status})", ""]
            if cell.preamble:
                lines += [cell.preamble, ""]
            lines += ["```python", cell.code, "```"]
            if cell.output:
                shown = cell.output[:OUTPUT_IN_REPORT]
                more = len(cell.output) - len(shown)
                lines += ["", "```", shown.rstrip("\n"), "```"]
                if more:
                    lines.append(f"*… {more:,} more characters*")
    return "\n".join(lines) + "\n"


def export(directory: Path, fmt: str, output: Path) -> Path:
    """Write the export; an existing file is only replaced once the new one is complete."""
    if fmt == "ipynb":
        text = nbformat.writes(to_notebook(directory))
    elif fmt == "md":
        text = to_markdown(directory)
    else:
        raise UsageError(f"unknown export format '{fmt}' (use ipynb or md)")
    partial = output.with_name(output.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redact(text))
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    return output
