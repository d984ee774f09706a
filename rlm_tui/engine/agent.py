"""One agent: messages -> model -> cells -> kernel -> feedback, until it answers.

The agent owns its kernel and its conversation; everything shared (models, budget, control
gate, event stream) belongs to the run and is reached through the narrow ``AgentHost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rlm_tui.engine import prompts
from rlm_tui.engine.context import ContextSource
from rlm_tui.engine.parse import CodeCell, FinalMarker, code_cells, plain_final, truncate
from rlm_tui.engine.replay import BeyondRecord
from rlm_tui.errors import KernelError, RlmError
from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    AgentStatus,
    CallPurpose,
    CellEdited,
    CellFinished,
    CellOutput,
    CellProposed,
    CellRerunFinished,
    CellRerunStarted,
    CellSkipped,
    CellStarted,
    Event,
    FollowUp,
    HistoryCompacted,
    KernelEvent,
    Usage,
    Value,
)
from rlm_tui.kernel.base import Kernel, OutputStream, ignore_output
from rlm_tui.kernel.prelude import EXPECT_NAME, INPUT_NAME, TOOLS_NAME
from rlm_tui.models.base import estimate_tokens

if TYPE_CHECKING:
    from rlm_tui.engine.control import Decision, GateKind
    from rlm_tui.engine.recording import RecordedCell
    from rlm_tui.engine.tools import ToolSpec
    from rlm_tui.models.base import Model

MAX_KERNEL_DEATHS = 3
MIN_MESSAGES_TO_COMPACT = 7
StatusHint = Literal["ok", "error", "interrupted", "timeout", "killed", "skipped"]


@dataclass(frozen=True)
class AgentSettings:
    """The run's settings an agent works by."""

    truncate: int
    keep_output: int
    cell_timeout: float | None
    max_depth: int
    tools: tuple[ToolSpec, ...] = ()
    compact_at: int | None = None
    """Compact an agent's history when it passes this many tokens (characters / 4)."""


class AgentHost(Protocol):
    """What an agent may ask of its run, and nothing more."""

    settings: AgentSettings

    def emit(self, event: Event) -> None: ...

    def model_name(self, depth: int) -> str: ...

    async def acquire_kernel(self, agent: Agent) -> Kernel: ...

    async def release_kernel(self, agent: Agent, kernel: Kernel) -> None: ...

    def check_iterations(self, step: int, agent_id: str) -> None: ...

    def recorded_reply(self, agent_id: str, step: int) -> str | None: ...

    def recorded_cell(self, cell_id: str) -> RecordedCell | None: ...

    def recorded_compaction(self, agent_id: str, step: int) -> str | None: ...

    async def call_model(
        self,
        agent: Agent,
        messages: list[dict[str, Any]],
        new_messages: list[dict[str, Any]],
        step: int,
        purpose: CallPurpose = "agent",
        model: Model | None = None,
    ) -> str: ...

    async def gate(self, agent: Agent, kind: GateKind, gate_id: str, code: str) -> Decision: ...

    def note_cell_error(self, agent_id: str) -> None: ...

    def clock_stopped(self) -> contextlib.AbstractContextManager[None]:
        """Around time the time limit does not count (a recorded cell run again)."""
        ...

    def launched_by_hand(self, agent_id: str) -> bool:
        """The id belongs to a recorded hand-launched sub-agent."""
        ...

    async def redo_hand_launches(self, agent: Agent, decided: int | None) -> None:
        """Launch again (or bind the recorded answer of) the hand launches due at this point
        of a resumed agent: ``decided`` of its cells passed the gate (None: it goes live)."""
        ...

    def stop_cause(self) -> RlmError | None:
        """Why the run is ending, when it is."""
        ...

    def follow_up(self, agent_id: str, step: int) -> tuple[str, bool] | None:
        """A question to go on with after this answer: (text, whether it is new), or None."""
        ...


class Agent:
    def __init__(
        self,
        host: AgentHost,
        agent_id: str,
        query: str,
        context: ContextSource,
        depth: int = 0,
        parent: Agent | None = None,
        by_hand: bool = False,
        bind_var: str | None = None,
        schema: dict[str, Any] | None = None,
        inputs: dict[str, ContextSource] | None = None,
    ) -> None:
        self.host = host
        self.id = agent_id
        self.query = query
        self.context = context
        self.depth = depth
        self.parent = parent
        self.by_hand = by_hand
        self.bind_var = bind_var
        self.schema = schema
        self.inputs = dict(inputs or {})
        """Named inputs besides ``context`` (``--input NAME=FILE``): kernel variables."""
        """The JSON Schema this agent's answer must match (checked in its kernel)."""
        self.kernel: Kernel | None = None
        self._kernel_task: asyncio.Task[Kernel] | None = None
        self.messages: list[dict[str, Any]] = []
        self.usage = Usage()
        self.step = 0
        self.cell_count = 0
        self.children = 0
        self.follow_ups = 0
        self.final: Value | None = None
        self.notes: list[str] = []
        self.status: AgentStatus = "running"
        self._kernel_deaths = 0
        self.replaying = False
        """True while the current step's reply came from a recording (resume, fork)."""
        self.record_only = False
        """Started by a recorded cell being run again: it gets its replies from the recording
        and nothing more (``BeyondRecord`` where they end)."""
        self._rerunning = False

    @property
    def rebuilding(self) -> bool:
        """Its sub-calls must come from the recording: it runs a recorded cell again, or
        is a sub-agent of one."""
        return self._rerunning or self.record_only

    def next_child_id(self) -> str:
        while True:
            self.children += 1
            child_id = f"{self.id}.{self.children}"
            if not self.host.launched_by_hand(child_id):  # that one is relaunched by its id
                return child_id

    # -- life ------------------------------------------------------------------------------

    async def execute(self) -> Value:
        """Run to an answer; always leaves an AgentFinished event and no kernel behind."""
        self.host.emit(
            AgentStarted(
                agent_id=self.id,
                parent_id=self.parent.id if self.parent else None,
                depth=self.depth,
                query=self.query,
                model=self.host.model_name(self.depth),
                context_kind=self.context.kind,
                context_chars=self.context.chars,
                context_preview=self.context.preview,
                by_hand=self.by_hand,
                bind_var=self.bind_var,
            )
        )
        try:
            value = await self._loop()
        except asyncio.CancelledError:
            cause = self.host.stop_cause()
            status = cause.agent_status if cause else "stopped"
            self._finish(status, reason=str(cause) if cause else "stopped")
            raise
        except BaseException as exc:
            self._finish("failed", reason=str(exc))
            raise
        else:
            self._finish("answered", answer=value)
            return value
        finally:
            await self._release_kernel()

    def _finish(self, status: AgentStatus, answer: Value | None = None, reason: str = "") -> None:
        self.status = status
        self.host.emit(
            AgentFinished(
                agent_id=self.id,
                status=status,
                answer=answer,
                reason=reason,
                steps=self.step,
                usage=self.usage.model_copy(),
            )
        )

    async def _release_kernel(self) -> None:
        task, self._kernel_task = self._kernel_task, None
        if task is not None and not task.done():
            task.cancel()  # never needed: the acquire gives back what it got
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            await asyncio.shield(self.host.release_kernel(self, kernel))

    async def _prepare_kernel(self) -> Kernel:
        """Acquire the agent's kernel and load what it needs beside ``context``."""
        kernel = self.kernel = await self.host.acquire_kernel(self)
        for name, source in self.inputs.items():
            path = kernel.readable(source.path, name) if source.path else None
            load = f"{INPUT_NAME}({name!r}, {str(path)!r}, {source.kind!r})"
            await self._internal(load, f"load the input {name}", kernel)
        if tools := self.host.settings.tools:
            specs = [dataclasses.asdict(t) for t in tools]
            await self._internal(f"{TOOLS_NAME}({_json_literal(specs)})", "add the tools", kernel)
        if self.schema is not None:
            expect = f"{EXPECT_NAME}({_json_literal(self.schema)})"
            await self._internal(expect, "set its schema", kernel)
        return kernel

    async def _ready_kernel(self) -> Kernel:
        """The agent's kernel, waited for (prepared) the first time a cell needs it."""
        if self._kernel_task is not None:
            await self._kernel_task
        return self._require_kernel()

    async def _loop(self) -> Value:
        host, settings = self.host, self.host.settings
        # the kernel is prepared while the model writes its first reply
        self._kernel_task = asyncio.ensure_future(self._prepare_kernel())
        self.messages = [
            {
                "role": "system",
                "content": prompts.system_prompt(
                    self.context,
                    self.depth,
                    settings.max_depth,
                    settings.truncate,
                    settings.tools,
                    self.inputs,
                ),
            },
            {"role": "user", "content": prompts.first_message(self.query, self.schema)},
        ]
        sent = 0
        while True:
            self.step += 1
            host.check_iterations(self.step, self.id)
            self._attach_notes()
            if settings.compact_at is not None and self._tokens() > settings.compact_at:
                sent = await self._compact(sent)
            recorded = host.recorded_reply(self.id, self.step)
            self.replaying = recorded is not None
            if recorded is None and self.record_only:
                raise BeyondRecord(f"agent {self.id}'s step {self.step}")
            if recorded is not None:
                text = recorded
            else:
                await host.redo_hand_launches(self, None)
                self._attach_notes()  # a bound answer's note goes with this request
                text = await host.call_model(self, self.messages, self.messages[sent:], self.step)
            self.messages.append({"role": "assistant", "content": text})
            sent = len(self.messages)
            cells = code_cells(text)
            feedback = []
            for cell in cells:
                feedback.append(await self._run_cell(self.step, cell))
                if self.final is not None:
                    break
            if self.final is None and (marker := plain_final(text)) is not None:
                await self._resolve_plain_final(marker)
            if self.final is not None:
                asked = host.follow_up(self.id, self.step)
                if asked is None:
                    return self.final
                feedback.append(await self._take_follow_up(*asked))
                self.messages.append({"role": "user", "content": "\n\n".join(feedback)})
                continue
            if not cells:
                feedback.append(prompts.no_code_feedback())
            self.messages.append({"role": "user", "content": "\n\n".join(feedback)})

    def _tokens(self) -> int:
        return estimate_tokens(self.messages)

    async def _compact(self, sent: int) -> int:
        """Replace the turns between the query and the latest feedback by a model's summary.

        At least two turns must have passed since the start or the last compaction, so a
        history that stays long (a big system prompt) is not summarised at every step."""
        if len(self.messages) < MIN_MESSAGES_TO_COMPACT:
            return sent
        host, before = self.host, self._tokens()
        summary = host.recorded_compaction(self.id, self.step)
        recorded = summary is not None
        if summary is None:
            ask = [*self.messages, {"role": "user", "content": prompts.compaction_request()}]
            summary = await host.call_model(self, ask, ask[sent:], self.step, "compact")
        count = len(self.messages)
        self.messages = [
            *self.messages[:2],
            {"role": "assistant", "content": prompts.summary_turn(summary)},
            self.messages[-1],
        ]
        if not recorded:
            host.emit(
                HistoryCompacted(
                    agent_id=self.id,
                    step=self.step,
                    summary=summary,
                    messages_before=count,
                    messages_after=len(self.messages),
                    tokens_before=before,
                    tokens_after=self._tokens(),
                )
            )
        return 0

    def _attach_notes(self) -> None:
        if self.notes:
            last = self.messages[-1]
            last["content"] = "\n\n".join([last["content"], *self.notes])
            self.notes.clear()

    # -- cells -----------------------------------------------------------------------------

    async def _run_cell(self, step: int, cell: CodeCell) -> str:
        host = self.host
        self.cell_count += 1
        index = self.cell_count
        cell_id = f"{self.id}:{index}"
        await host.redo_hand_launches(self, index - 1)
        recorded = host.recorded_cell(cell_id) if self.replaying else None
        if recorded is not None:
            return await self._rerun_cell(cell_id, index, cell, recorded)
        host.emit(
            CellProposed(
                agent_id=self.id,
                cell_id=cell_id,
                step=step,
                index=index,
                code=cell.code,
                preamble=cell.preamble,
            )
        )
        decision = await host.gate(self, "cell", cell_id, cell.code)
        if decision.edited:
            host.emit(CellEdited(agent_id=self.id, cell_id=cell_id, code=decision.code))
        if decision.skipped:
            host.emit(CellSkipped(agent_id=self.id, cell_id=cell_id))
            host.emit(CellFinished(agent_id=self.id, cell_id=cell_id, status="skipped"))
            return prompts.cell_feedback(index, "skipped by the user, not run", "")
        status, output, total, error, duration = await self._execute(cell_id, decision.code)
        model_view = truncate(output, host.settings.truncate, total)
        if status == "error":
            host.note_cell_error(self.id)
        host.emit(
            CellFinished(
                agent_id=self.id,
                cell_id=cell_id,
                status=status,
                duration=duration,
                output=output,
                model_view=model_view,
                output_chars=total,
                error=error,
            )
        )
        if decision.edited:
            model_view = f"(the user replaced this cell's code before it ran)\n{model_view}"
        return prompts.cell_feedback(index, _status_words(status, error), model_view)

    async def _rerun_cell(
        self, cell_id: str, index: int, cell: CodeCell, recorded: RecordedCell
    ) -> str:
        """Run a recorded cell again to rebuild the kernel; its events are already saved, so
        only the re-run itself is recorded (started, finished). A cell interrupted in its run
        is interrupted again after as long; its sub-calls get what they got, nothing more."""
        code = recorded.code
        if code is None:
            return prompts.cell_feedback(index, "skipped by the user, not run", "")
        parts: list[str] = []
        kernel = await self._ready_kernel()
        self.host.emit(CellRerunStarted(agent_id=self.id, cell_id=cell_id, code=code))
        self._rerunning = True
        try:
            with self.host.clock_stopped():  # its first run counted its time
                result = await kernel.execute(
                    code, lambda _s, text: parts.append(text), timeout=recorded.cut_after
                )
        finally:
            self._rerunning = False
        self.host.emit(
            CellRerunFinished(
                agent_id=self.id,
                cell_id=cell_id,
                status=result.status,
                duration=result.duration,
                error=result.error,
            )
        )
        output = "".join(parts)
        model_view = truncate(output, self.host.settings.truncate)
        if code != cell.code:
            model_view = f"(the user replaced this cell's code before it ran)\n{model_view}"
        return prompts.cell_feedback(index, _status_words(result.status, result.error), model_view)

    async def _execute(
        self, cell_id: str, code: str
    ) -> tuple[StatusHint, str, int, str | None, float]:
        """Run a cell; keep (and record) at most ``keep_output`` characters of what it prints."""
        host = self.host
        kernel = await self._ready_kernel()
        keep = host.settings.keep_output
        parts: list[str] = []
        counts = {"kept": 0, "total": 0}

        def on_output(stream: OutputStream, text: str) -> None:
            counts["total"] += len(text)
            room = keep - counts["kept"]
            if room <= 0:
                return
            text = text[:room]
            counts["kept"] += len(text)
            parts.append(text)
            host.emit(CellOutput(agent_id=self.id, cell_id=cell_id, stream=stream, text=text))

        host.emit(CellStarted(agent_id=self.id, cell_id=cell_id, code=code))
        result = await kernel.execute(code, on_output, timeout=host.settings.cell_timeout)
        error = result.error
        if result.restarted:
            host.emit(
                KernelEvent(
                    agent_id=self.id,
                    kernel_id=kernel.kernel_id,
                    what="restarted",
                    reason=error or "restarted to end the cell",
                )
            )
        if result.status == "killed":
            error = await self._recover_kernel(kernel, result.error or "kernel died")
        total = counts["total"] + result.dropped
        return result.status, "".join(parts), total, error, result.duration

    async def _recover_kernel(self, kernel: Kernel, reason: str) -> str:
        """A dead kernel is restarted with its context; the model is told its state is gone."""
        self._kernel_deaths += 1
        self.host.emit(
            KernelEvent(agent_id=self.id, kernel_id=kernel.kernel_id, what="died", reason=reason)
        )
        if self._kernel_deaths > MAX_KERNEL_DEATHS:
            raise KernelError(
                f"kernel of agent {self.id} died {self._kernel_deaths} times; last: {reason}"
            )
        try:
            await kernel.restart()
        except Exception as exc:
            raise KernelError(f"kernel of agent {self.id} could not be restarted: {exc}") from None
        self.host.emit(
            KernelEvent(agent_id=self.id, kernel_id=kernel.kernel_id, what="restarted", reason="")
        )
        return f"{reason}; the kernel was restarted: every variable is lost, `context` is reloaded"

    def _require_kernel(self) -> Kernel:
        if self.kernel is None:
            raise KernelError(f"agent {self.id} has no kernel")
        return self.kernel

    async def _resolve_plain_final(self, marker: FinalMarker) -> None:
        """``FINAL(x)`` written as text: evaluate it in the kernel, or take it as a string."""
        kernel = await self._ready_kernel()
        code = f"{marker.kind}({marker.argument})"
        result = await kernel.execute(code, ignore_output, timeout=30)
        if self.final is None and marker.kind != "FINAL_VAR" and self.schema is None:
            text = marker.argument.strip().strip("\"'")
            self.final = Value.plain(text)
        if self.final is None:
            self.notes.append(f"Your text {code} failed: {result.error}")

    async def _take_follow_up(self, question: str, new: bool) -> str:
        """Go on after an answer: bind it as ``answer_N`` and put the question to the model."""
        assert self.final is not None
        self.follow_ups += 1
        var = f"answer_{self.follow_ups}"
        await self._bind_quietly(var, self.final)
        self.final = None
        if new:
            self.host.emit(
                FollowUp(agent_id=self.id, step=self.step, question=question, answer_var=var)
            )
        return prompts.follow_up(question, var)

    async def bind(self, name: str, value: Value) -> None:
        """Put a value into this agent's kernel under ``name`` (a hand-launched sub-agent)."""
        await self._bind_quietly(name, value)
        preview = value.repr if len(value.repr) <= 200 else value.repr[:200] + "…"
        self.notes.append(prompts.bound_value_note(name, value.type_name, preview))

    async def _bind_quietly(self, name: str, value: Value) -> None:
        if value.pickle is not None:
            code = f"{name} = __import__('pickle').loads(__import__('base64').b64decode({value.pickle!r}))"
        elif value.is_json:
            code = f"{name} = __import__('json').loads({_json_literal(value.json_value)})"
        else:
            code = f"{name} = {value.repr!r}"
        await self._internal(code, f"bind {name}")

    async def _internal(self, code: str, what: str, kernel: Kernel | None = None) -> None:
        """Run the engine's own code in this agent's kernel (no events: it is not a cell)."""
        kernel = kernel or await self._ready_kernel()
        result = await kernel.execute(code, ignore_output, timeout=30)
        if result.status != "ok":
            raise KernelError(f"could not {what} in agent {self.id}: {result.error}")


def _json_literal(value: Any) -> str:
    return repr(json.dumps(value))


def _status_words(status: StatusHint, error: str | None) -> str:
    if status == "ok":
        return "ok"
    return f"{status}: {error}" if error else status
