"""Sub-calls from kernels: one handler per bridge operation, one bracket around each call.

A cell's ``llm_query``/``rlm_query`` (and their batched forms, and ``FINAL``) arrive over the
bridge as an operation name and arguments. Each operation has one handler here; every
sub-call, however it ends, leaves one ``SubcallStarted`` and one ``SubcallFinished``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rlm_tui.engine.agent import AgentHost
from rlm_tui.engine.budget import Budget
from rlm_tui.engine.calls import Models
from rlm_tui.engine.context import (
    NO_CONTEXT,
    ContextSource,
    context_from_pickle_bytes,
    context_from_value,
)
from rlm_tui.engine.replay import BeyondRecord, Replay
from rlm_tui.engine.schema import checked
from rlm_tui.engine.tools import ToolFailed, Tools
from rlm_tui.errors import BudgetExceeded, KernelError, ModelError, RlmError, UsageError
from rlm_tui.events import Notice, SubcallFinished, SubcallStarted, Value
from rlm_tui.kernel.wire import Op

if TYPE_CHECKING:
    from rlm_tui.engine.agent import Agent

Handler = Callable[["Agent", dict[str, Any]], Awaitable[dict[str, Any]]]


class SubcallHost(AgentHost, Protocol):
    """What sub-calls need of the run: what agents may ask, and the run's shared parts."""

    replay: Replay
    budget: Budget
    models: Models
    scratch: Path
    tools: Tools

    def agent(self, agent_id: str) -> Agent: ...

    def new_agent(
        self,
        parent: Agent,
        agent_id: str,
        prompt: str,
        source: ContextSource,
        by_hand: bool,
        bind_var: str | None,
        schema: dict[str, Any] | None = None,
    ) -> Agent: ...

    def fail(self, exc: RlmError) -> None: ...

    def lend_kernel_slot(self, agent: Agent) -> AbstractAsyncContextManager[None]: ...


class Subcalls:
    def __init__(self, run: SubcallHost) -> None:
        self._run = run
        self._count = 0
        self._handlers: dict[Op, Handler] = {
            Op.FINAL: self._final,
            Op.LLM_QUERY: self._llm_query,
            Op.LLM_QUERY_BATCHED: self._llm_query_batched,
            Op.RLM_QUERY: self._rlm_query,
            Op.RLM_QUERY_BATCHED: self._rlm_query_batched,
            Op.TOOL: self._tool,
        }
        assert set(self._handlers) == set(Op), "every bridge operation has a handler"

    async def handle(self, agent_id: str, op: Op, args: dict[str, Any]) -> dict[str, Any]:
        """Serve one bridge request; a budget, model or kernel failure ends the whole run."""
        agent = self._run.agent(agent_id)
        try:
            return await self._handlers[op](agent, args)
        except (BudgetExceeded, ModelError, KernelError) as exc:
            self._run.fail(exc)
            raise

    # -- handlers ----------------------------------------------------------------------------

    async def _final(self, agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
        agent.final = Value.model_validate(args["value"])
        return {}

    async def _llm_query(self, agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": await self.llm_query(agent, args["prompt"], args.get("model"))}

    async def _llm_query_batched(self, agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
        model = args.get("model")
        texts = await asyncio.gather(*(self.llm_query(agent, p, model) for p in args["prompts"]))
        return {"texts": list(texts)}

    async def _rlm_query(self, agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
        schema = _schema(args, "rlm_query")
        async with self._run.lend_kernel_slot(agent):
            value = await self.spawn(agent, args["prompt"], args.get("context"), schema=schema)
        return {"value": value.model_dump()}

    async def _rlm_query_batched(self, agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
        prompts = list(args["prompts"])
        contexts = args.get("contexts") or [None] * len(prompts)
        if len(contexts) != len(prompts):
            raise UsageError("rlm_query_batched: contexts and prompts differ in length")
        schema = _schema(args, "rlm_query_batched")
        async with self._run.lend_kernel_slot(agent):
            values = await asyncio.gather(
                *(
                    self.spawn(agent, p, c, schema=schema)
                    for p, c in zip(prompts, contexts, strict=True)
                )
            )
        return {"values": [v.model_dump() for v in values]}

    async def _tool(self, agent: Agent, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args["name"])
        value = await self.tool(agent, name, list(args.get("args") or []), args.get("kwargs") or {})
        return {"value": value.model_dump()}

    # -- the kinds of sub-call ---------------------------------------------------------------

    async def tool(self, agent: Agent, name: str, args: list[Any], kwargs: dict[str, Any]) -> Value:
        """A tool call on the host (its recorded outcome when resuming, without calling it)."""
        run = self._run
        call = (
            f"{name}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
        )
        recorded = run.replay.tool_result(agent.id, call)
        if recorded is not None:
            if recorded.value is None:
                raise ToolFailed(recorded.error or f"{name} failed")
            return recorded.value
        if agent.rebuilding:
            raise BeyondRecord(f"the tool call {call[:60]}")
        self._count += 1
        started = SubcallStarted(
            agent_id=agent.id,
            call_id=f"t{self._count}",
            kind="tool",
            prompt=call,
            arguments={"args": args, "kwargs": kwargs},
        )
        async with self._bracket(started) as done:
            result = await run.tools.call(name, args, kwargs)
            value = Value.from_host(result)
            done(value)
        return value

    async def llm_query(self, agent: Agent, prompt: str, model_name: str | None) -> str:
        """A plain model call from a cell (its recorded reply when resuming)."""
        run = self._run
        recorded = run.replay.query_reply(agent.id, prompt)
        if recorded is not None:
            return recorded
        if agent.rebuilding:
            raise BeyondRecord(f"llm_query({' '.join(prompt.split())[:40]!r})")
        self._count += 1
        call_id = f"q{self._count}"
        started = SubcallStarted(
            agent_id=agent.id, call_id=call_id, kind="llm_query", prompt=prompt
        )
        async with self._bracket(started) as done:
            messages = [{"role": "user", "content": prompt}]
            text = await run.call_model(
                agent, messages, messages, agent.step, "llm_query", run.models.named(model_name)
            )
            done(Value.plain(text))
        return text

    async def spawn(
        self,
        parent: Agent,
        prompt: str,
        context: dict[str, Any] | None,
        by_hand: bool = False,
        bind_var: str | None = None,
        schema: dict[str, Any] | None = None,
        child_id: str | None = None,
    ) -> Value:
        """Run a child agent to its answer (its recorded answer when resuming)."""
        run = self._run
        child_id = child_id or parent.next_child_id()
        recorded = run.replay.answer(child_id)
        if recorded is not None:
            return recorded
        run.budget.check_depth(parent.depth + 1, child_id)
        source = self._child_context(child_id, context)
        child = run.new_agent(parent, child_id, prompt, source, by_hand, bind_var, schema)
        child.record_only = parent.rebuilding
        started = SubcallStarted(
            agent_id=parent.id,
            call_id=f"r{child_id}",
            kind="rlm_query",
            prompt=prompt,
            child_agent_id=child_id,
            context_preview=source.preview,
            context_chars=source.chars,
        )
        async with self._bracket(started) as done:
            decision = await run.gate(child, "agent_start", child_id, prompt)
            if decision.skipped:
                run.emit(Notice(agent_id=child_id, message="sub-agent skipped by the user"))
                value = Value(json_value=None, is_json=True, repr="None", type_name="NoneType")
            else:
                value = await child.execute()
            done(value)
        return value

    @asynccontextmanager
    async def _bracket(self, started: SubcallStarted) -> AsyncIterator[Callable[[Value], None]]:
        """Emit ``started``, then one SubcallFinished: with the value given, or the failure."""
        emit = self._run.emit
        emit(started)
        began = time.monotonic()
        result: list[Value] = []
        try:
            yield result.append
        except BaseException as exc:
            emit(
                SubcallFinished(
                    agent_id=started.agent_id,
                    call_id=started.call_id,
                    ok=False,
                    error=str(exc) or type(exc).__name__,
                    duration=time.monotonic() - began,
                )
            )
            raise
        emit(
            SubcallFinished(
                agent_id=started.agent_id,
                call_id=started.call_id,
                ok=True,
                result=result[0] if result else None,
                duration=time.monotonic() - began,
            )
        )

    def _child_context(self, child_id: str, payload: dict[str, Any] | None) -> ContextSource:
        if payload is None:
            return NO_CONTEXT
        value = Value.model_validate(payload)
        directory = self._run.scratch / "contexts"
        if value.pickle is not None:
            data = base64.b64decode(value.pickle)
            shown = (
                value.json_value
                if value.is_json and isinstance(value.json_value, str)
                else value.repr
            )
            return context_from_pickle_bytes(data, directory, child_id, shown)
        return context_from_value(value.python(), directory / child_id)


def _schema(args: dict[str, Any], helper: str) -> dict[str, Any] | None:
    """The answer schema a cell gave a sub-agent, if any (a bad one is the cell's error)."""
    schema = args.get("schema")
    return None if schema is None else checked(schema, f"{helper}'s schema")
