"""Turn the JSONL logs of other RLM implementations into sessions the TUI opens.

Two formats: fast-rlm's run logs (one line per event, ``run_id``/``parent_run_id``/``depth``/
``step``/``event_type``) and the official rlm library's ``RLMLogger`` files (``metadata``,
``run_context``, then one ``iteration`` line per model turn). Both become the same events a
live run writes: agents in a tree, cells with their outputs, usage and answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rlm_tui.errors import SessionError
from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    CellFinished,
    CellProposed,
    CellStarted,
    Event,
    ModelResponse,
    Notice,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
    Usage,
    Value,
)
from rlm_tui.session.store import SessionWriter, default_sessions_dir


class ImportError_(SessionError):
    """A log that is not of a known format, or a line that breaks it (names file:line)."""


def _time(stamp: Any, fallback: float) -> float:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return fallback


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ImportError_(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            yield from _parsed(path, handle)
        except UnicodeDecodeError:
            raise ImportError_(f"{path}: not a text log (it is not UTF-8)") from None


def _parsed(path: Path, handle: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportError_(f"{path}:{number}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise ImportError_(f"{path}:{number}: not JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ImportError_(f"{path}:{number}: expected a JSON object")
        yield number, data


@dataclass
class _Builder:
    """Collects events for one imported run, numbering agents and cells as rlm-tui does."""

    source: Path
    events: list[Event] = field(default_factory=list)
    children: dict[str, int] = field(default_factory=dict)
    cells: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)

    def child_of(self, parent: str) -> str:
        self.children[parent] = self.children.get(parent, 0) + 1
        return f"{parent}.{self.children[parent]}"

    def cell(
        self,
        agent: str,
        step: int,
        code: str,
        output: str,
        error: bool,
        t: float,
        preamble: str = "",
    ) -> None:
        self.cells[agent] = self.cells.get(agent, 0) + 1
        index = self.cells[agent]
        cell_id = f"{agent}:{index}"
        self.events += [
            CellProposed(
                t=t,
                agent_id=agent,
                cell_id=cell_id,
                step=step,
                index=index,
                code=code,
                preamble=preamble,
            ),
            CellStarted(t=t, agent_id=agent, cell_id=cell_id, code=code),
            CellFinished(
                t=t,
                agent_id=agent,
                cell_id=cell_id,
                status="error" if error else "ok",
                output=output,
                model_view=output,
                output_chars=len(output),
            ),
        ]

    def response(
        self, agent: str, step: int, text: str, usage: Usage, t: float, model: str
    ) -> None:
        usage.calls = 1
        self.usage.add(usage)
        self.events.append(
            ModelResponse(
                t=t,
                agent_id=agent,
                call_id=f"i{len(self.events)}",
                step=step,
                model=model,
                text=text,
                usage=usage,
            )
        )

    def save(self, sessions_dir: Path) -> Path:
        writer = SessionWriter.create(sessions_dir)
        try:
            for seq, event in enumerate(self.events, 1):
                event.seq = seq
                if isinstance(event, RunStarted):
                    event.run_id, event.session_dir = writer.directory.name, str(writer.directory)
                writer.append(event)
        finally:
            writer.close()
        return writer.directory


def _fast_rlm(path: Path, lines: list[tuple[int, dict[str, Any]]]) -> _Builder:
    build = _Builder(path)
    first_t = _time(lines[0][1].get("time"), 0.0)
    ids = _fast_rlm_tree(path, lines, build, first_t)
    responded: set[tuple[str, int]] = set()
    finals: dict[str, Any] = {}
    for number, line in lines:
        kind = line["event_type"]
        t = _time(line.get("time"), first_t)
        agent, step = ids[str(line["run_id"])], int(line.get("step") or 0) + 1
        usage = line.get("usage") or {}
        if (agent, step) not in responded and (
            usage.get("total_tokens") or kind == "code_generated"
        ):
            responded.add((agent, step))
            build.response(
                agent,
                step,
                str(line.get("reasoning") or ""),
                Usage(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                    cost=float(usage.get("cost") or 0.0),
                ),
                t,
                "fast-rlm",
            )
        if kind in ("execution_result", "code_generated"):
            build.cell(
                agent,
                step,
                str(line.get("code") or ""),
                str(line.get("output") or ""),
                bool(line.get("hasError")),
                t,
                str(line.get("reasoning") or ""),
            )
        elif kind == "final_result":
            finals[agent] = line.get("result")
            build.events.append(
                AgentFinished(
                    t=t,
                    agent_id=agent,
                    status="answered",
                    answer=Value.plain(line.get("result")),
                    steps=step,
                )
            )
        else:
            raise ImportError_(f"{path}:{number}: unknown fast-rlm event_type '{kind}'")
    answered = "0" in finals
    build.events.append(
        RunFinished(
            t=build.events[-1].t,
            status="answered" if answered else "error",
            answer=Value.plain(finals["0"]) if answered else None,
            usage=build.usage,
            reason="" if answered else "no final result for the root run",
        )
    )
    return build


def _fast_rlm_tree(
    path: Path, lines: list[tuple[int, dict[str, Any]]], build: _Builder, t0: float
) -> dict[str, str]:
    """Agent ids for fast-rlm runs, parents before children, siblings in order of appearance;
    their AgentStarted events come first, so the tree is whole whatever the line order."""
    parents: dict[str, str | None] = {}
    depths: dict[str, int] = {}
    for number, line in lines:
        if "run_id" not in line or "event_type" not in line:
            raise ImportError_(f"{path}:{number}: fast-rlm line without run_id or event_type")
        run = str(line["run_id"])
        if run not in parents:
            parent = line.get("parent_run_id")
            parents[run] = str(parent) if parent is not None else None
            depths[run] = int(line.get("depth") or 0)
    roots = [run for run, parent in parents.items() if parent is None or parent not in parents]
    if len(roots) != 1:
        raise ImportError_(f"{path}: expected one root run, found {len(roots)}")
    ids = {roots[0]: "0"}
    build.events.insert(
        0,
        RunStarted(
            t=t0,
            run_id="",
            query=f"(imported from fast-rlm: {path.name})",
            model="fast-rlm",
            sub_model="fast-rlm",
            imported_from=str(path),
        ),
    )
    queue = [roots[0]]
    while queue:
        run = queue.pop(0)
        build.events.append(
            AgentStarted(
                t=t0,
                agent_id=ids[run],
                parent_id=ids.get(parents[run] or ""),
                depth=depths[run],
                query=f"fast-rlm run {run}",
                model="fast-rlm",
            )
        )
        for child in (c for c, p in parents.items() if p == run):
            ids[child] = build.child_of(ids[run])
            queue.append(child)
    return ids


def _official(path: Path, lines: list[tuple[int, dict[str, Any]]]) -> _Builder:
    build = _Builder(path)
    meta = next((line for _, line in lines if line.get("type") == "metadata"), {})
    context = next((line for _, line in lines if line.get("type") == "run_context"), {})
    model = str(meta.get("root_model") or "rlm")
    t0 = _time(meta.get("timestamp") or context.get("timestamp"), 0.0)
    prompt = context.get("root_prompt") or context.get("prompt") or f"(imported: {path.name})"
    query = prompt if isinstance(prompt, str) else json.dumps(prompt)[:2000]
    build.events.append(
        RunStarted(
            t=t0,
            run_id="",
            query=query,
            model=model,
            sub_model=model,
            imported_from=str(path),
            limits={
                "max_depth": meta.get("max_depth", 1),
                "max_iterations": meta.get("max_iterations", 30),
            },
        )
    )
    build.events.append(AgentStarted(t=t0, agent_id="0", depth=0, query=query, model=model))
    final: Any = None
    for number, line in lines:
        kind = line.get("type")
        if kind in ("metadata", "run_context"):
            continue
        if kind != "iteration":
            raise ImportError_(f"{path}:{number}: unknown rlm log line type '{kind}'")
        try:
            step = int(line["iteration"])
            response = str(line["response"])
            blocks = list(line.get("code_blocks") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportError_(f"{path}:{number}: iteration line without {exc}") from None
        t = _time(line.get("timestamp"), t0)
        usage = line.get("root_usage") or {}
        build.response(
            "0",
            step,
            response,
            Usage(
                prompt_tokens=int(usage.get("total_input_tokens") or 0),
                completion_tokens=int(usage.get("total_output_tokens") or 0),
            ),
            t,
            model,
        )
        for block in blocks:
            result = block.get("result") or {}
            output = str(result.get("stdout") or "") + str(result.get("stderr") or "")
            build.cell(
                "0", step, str(block.get("code") or ""), output, bool(result.get("stderr")), t
            )
            for call in result.get("rlm_calls") or []:
                _official_subcall(build, call, t)
        if line.get("final_answer") is not None:
            final = line["final_answer"]
    answered = final is not None
    build.events.append(
        AgentFinished(
            t=build.events[-1].t,
            agent_id="0",
            status="answered" if answered else "stopped",
            answer=Value.plain(final) if answered else None,
        )
    )
    build.events.append(
        RunFinished(
            t=build.events[-1].t,
            status="answered" if answered else "error",
            answer=Value.plain(final) if answered else None,
            usage=build.usage,
            reason="" if answered else "no final answer",
        )
    )
    return build


def _official_subcall(build: _Builder, call: dict[str, Any], t: float) -> None:
    child = build.child_of("0")
    prompt = call.get("prompt")
    query = prompt if isinstance(prompt, str) else json.dumps(prompt)[:2000]
    model = str(call.get("root_model") or "rlm")
    summary = call.get("usage_summary") or {}
    totals = summary.get("model_usage_summaries") or {}
    tokens_in = (
        sum(int(v.get("total_input_tokens") or 0) for v in totals.values())
        if isinstance(totals, dict)
        else 0
    )
    tokens_out = (
        sum(int(v.get("total_output_tokens") or 0) for v in totals.values())
        if isinstance(totals, dict)
        else 0
    )
    answer = Value.plain(call.get("response"))
    build.events += [
        SubcallStarted(
            t=t,
            agent_id="0",
            call_id=f"r{child}",
            kind="rlm_query",
            prompt=query,
            child_agent_id=child,
        ),
        AgentStarted(t=t, agent_id=child, parent_id="0", depth=1, query=query, model=model),
    ]
    build.response(
        child,
        1,
        str(call.get("response") or ""),
        Usage(prompt_tokens=tokens_in, completion_tokens=tokens_out),
        t,
        model,
    )
    build.events += [
        AgentFinished(t=t, agent_id=child, status="answered", answer=answer, steps=1),
        SubcallFinished(t=t, agent_id="0", call_id=f"r{child}", ok=True, result=answer),
    ]


def import_log(path: Path, sessions_dir: Path | None = None) -> Path:
    """Import a fast-rlm or official rlm log as a new session; returns its directory."""
    lines = list(_lines(path))
    if not lines:
        raise ImportError_(f"{path}: empty log")
    first = lines[0][1]
    if "event_type" in first and "run_id" in first:
        build = _fast_rlm(path, lines)
    elif first.get("type") in ("metadata", "run_context", "iteration"):
        build = _official(path, lines)
    else:
        raise ImportError_(
            f"{path}:1: not a fast-rlm or rlm (RLMLogger) log: no event_type/run_id or type field"
        )
    build.events.insert(1, Notice(t=build.events[0].t, message=f"imported from {path}"))
    return build.save(sessions_dir or default_sessions_dir())
