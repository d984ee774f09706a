"""A run: the tree of agents, the shared budget, the event stream and the control API.

Everything a person can do to a live run goes through the methods under "control"; every
state change leaves as an event through ``emit`` (to the session file and to subscribers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlm_tui.engine.agent import Agent
from rlm_tui.engine.budget import Budget, Limits
from rlm_tui.engine.context import (
    NO_CONTEXT,
    ContextSource,
    context_from_file,
    context_from_pickle_bytes,
    context_from_value,
)
from rlm_tui.engine.control import Breakpoints, Control, Decision, GateKind, Pending
from rlm_tui.engine.recording import Recording
from rlm_tui.errors import (
    BudgetExceeded,
    KernelError,
    ModelError,
    RlmError,
    RunStopped,
    UsageError,
)
from rlm_tui.events import (
    AgentStatus,
    BudgetStop,
    BudgetUpdate,
    CellPaused,
    ErrorEvent,
    Event,
    KernelEvent,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    Notice,
    RunFinished,
    RunStarted,
    RunState,
    RunStateChanged,
    RunStatus,
    SandboxInfo,
    SubcallFinished,
    SubcallStarted,
    Usage,
    Value,
)
from rlm_tui.kernel.base import Kernel, KernelProvider
from rlm_tui.kernel.bridge import BridgeServer
from rlm_tui.kernel.pool import LocalKernelPool
from rlm_tui.kernel.rundirs import private_dir
from rlm_tui.kernel.sandbox import SandboxMode, SandboxPolicy, resolve_sandbox
from rlm_tui.models.base import CallInfo, Model
from rlm_tui.models.registry import make_model
from rlm_tui.session.store import SessionWriter, default_sessions_dir

log = logging.getLogger(__name__)
Subscriber = Callable[[Event], None]

EXIT_CODES: dict[RunStatus, int] = {
    "answered": 0,
    "budget": 3,
    "model_error": 4,
    "kernel_error": 5,
    "stopped": 130,
    "error": 1,
}


class RunConfig(BaseModel):
    """Everything that defines a run; recorded (without secrets) in its session."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    query: str
    context_file: str | None = None
    context_value: Any = Field(default=None, exclude=True)
    model: str = "demo"
    sub_model: str | None = None
    api_base: str | None = None
    limits: Limits = Field(default_factory=Limits)
    truncate: int = Field(2000, ge=100)
    sessions_dir: Path = Field(default_factory=default_sessions_dir)
    session_id: str | None = None
    pool_size: int = Field(2, ge=0)
    cell_timeout: float | None = Field(120.0, gt=0)
    memory_limit_mb: int | None = Field(None, ge=64)
    keep_output: int = Field(1_000_000, ge=1000)
    demo_delay: float = Field(0.0, ge=0)
    stream: bool = True
    append_to: Path | None = None
    """An existing session directory to go on in (resume, fork) instead of a new one."""
    save: bool = True
    sandbox: SandboxMode = "auto"
    allow_read: list[Path] = Field(default_factory=list)
    """Paths the kernels may read besides their context (read-only)."""
    allow_net: bool = False
    kernel_env: list[str] = Field(default_factory=list)
    """Host environment variables passed to the kernels by name (beyond the allowlist)."""

    def sandbox_policy(self) -> SandboxPolicy:
        return SandboxPolicy(self.sandbox, tuple(self.allow_read), self.allow_net)


@dataclass
class RunResult:
    status: RunStatus
    value: Value | None
    usage: Usage
    elapsed: float
    session_dir: Path | None
    reason: str = ""

    @property
    def answer(self) -> Any:
        """The answer on the host: its JSON form, or its repr (never unpickled here)."""
        return self.value.python() if self.value else None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def cost(self) -> float:
        return self.usage.cost


class Run:
    def __init__(
        self,
        config: RunConfig,
        model: Model | None = None,
        sub_model: Model | None = None,
        provider: KernelProvider | None = None,
        breakpoints: Breakpoints | None = None,
        recording: Recording | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.recording = recording
        self.overrides = dict(overrides or {})
        self.model = model or self._make_model(config.model)
        if sub_model is not None:
            self.sub_model = sub_model
        elif config.sub_model and config.sub_model != config.model:
            self.sub_model = self._make_model(config.sub_model)
        else:
            self.sub_model = self.model
        self.budget = Budget(config.limits)
        self._seq = 0
        if recording is not None:
            self.budget.usage = recording.usage.model_copy()
            self._seq = recording.last_seq
        self.control = Control(breakpoints, on_change=self._control_changed)
        self.agents: dict[str, Agent] = {}
        self.root: Agent | None = None
        self.session_dir: Path | None = None
        self._provider = provider
        self._owns_provider = provider is None
        self._bridge: BridgeServer | None = None
        self._writer: SessionWriter | None = None
        self._subscribers: list[Subscriber] = []
        self._calls = 0
        self._subcalls = 0
        self._fatal: RlmError | None = None
        self._root_task: asyncio.Task[Value] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scratch = private_dir("rlm-run-")
        self._result: RunResult | None = None
        self._state: RunState = "running"
        self.context: ContextSource = NO_CONTEXT

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        self._seq += 1
        event.seq = self._seq
        if self._writer is not None:
            self._writer.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed")

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session, start the bridge and the kernel pool, and launch the root agent."""
        config = self.config
        # a required sandbox that cannot start fails here, before anything is written
        own_sandbox = resolve_sandbox(config.sandbox_policy()) if self._provider is None else None
        if config.save and config.append_to is not None:
            self._writer = SessionWriter(config.append_to)
            self._writer.open()
            self.session_dir = config.append_to
        elif config.save:
            self._writer = SessionWriter.create(config.sessions_dir, config.session_id)
            self.session_dir = self._writer.directory
        self.context = self._resolve_context()
        self._bridge = BridgeServer(self._handle_subcall)
        await self._bridge.start()
        if self._provider is None:
            self._provider = LocalKernelPool(
                size=config.pool_size,
                memory_limit_mb=config.memory_limit_mb,
                sandbox=own_sandbox,
                pass_env=config.kernel_env,
            )
        sandbox = getattr(self._provider, "sandbox", None)
        run_id = self.session_dir.name if self.session_dir else "unsaved"
        origin = self.recording.started.run_id if self.recording else None
        self.emit(
            RunStarted(
                run_id=run_id,
                query=config.query,
                model=self.model.name,
                sub_model=self.sub_model.name,
                model_is_demo=self.model.is_demo,
                context_kind=self.context.kind,
                context_chars=self.context.chars,
                context_file=str(self.context.path) if self.context.path else None,
                session_dir=str(self.session_dir) if self.session_dir else None,
                limits=config.limits.model_dump(),
                truncate=config.truncate,
                api_base=config.api_base,
                model_spec=config.model,
                sub_model_spec=config.sub_model,
                resumed_from=origin if origin == run_id else None,
                forked_from=origin if origin not in (None, run_id) else None,
                sandbox=SandboxInfo(
                    mode=config.sandbox,
                    active=bool(sandbox and sandbox.active),
                    warning=sandbox.warning if sandbox else None,
                    allow_read=[str(p) for p in config.allow_read],
                    allow_net=config.allow_net,
                    kernel_env=config.kernel_env,
                ),
            )
        )
        if sandbox is not None and sandbox.warning:
            self.emit(Notice(message=sandbox.warning))
        warm = asyncio.ensure_future(self._provider.start())
        self._tasks.add(warm)
        self.root = Agent(self, "0", config.query, self.context)
        self.agents["0"] = self.root
        self._root_task = asyncio.ensure_future(self.root.execute())
        if config.limits.max_time is not None:
            self._spawn(self._watch_time(config.limits.max_time))

    def _resolve_context(self) -> ContextSource:
        config = self.config
        if config.context_value is not None:
            directory = self.session_dir or self._scratch
            return context_from_value(config.context_value, directory)
        if config.context_file is not None:
            return context_from_file(Path(config.context_file))
        return NO_CONTEXT

    async def wait(self) -> RunResult:
        if self._result is not None:
            return self._result
        assert self._root_task is not None, "start() the run first"
        value: Value | None = None
        try:
            value = await self._root_task
        except asyncio.CancelledError:
            if self._fatal is None:
                self._fatal = RunStopped("the run was cancelled")
        except RlmError as exc:
            self._fatal = self._fatal or exc
        except Exception as exc:
            log.exception("run failed")
            self._fatal = self._fatal or RlmError(f"internal error: {exc!r}")
        finally:
            await self._shutdown()
        self._result = self._finish(value)
        return self._result

    async def execute(self) -> RunResult:
        await self.start()
        return await self.wait()

    async def __aenter__(self) -> Run:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._result is None:
            self.stop("the run's context was left")
            await self.wait()

    def _finish(self, value: Value | None) -> RunResult:
        fatal = self._fatal
        status: RunStatus = "answered" if fatal is None else self.stop_run_status()
        reason = str(fatal) if fatal else ""
        if isinstance(fatal, BudgetExceeded):
            self.emit(BudgetStop(limit=fatal.limit, message=str(fatal), agent_id=fatal.where))
        elif fatal is not None and not isinstance(fatal, RunStopped):
            self.emit(ErrorEvent(kind=type(fatal).__name__, message=str(fatal)))
        elapsed = self.budget.elapsed
        self.emit(
            RunFinished(
                status=status,
                answer=value if fatal is None else None,
                reason=reason,
                usage=self.budget.usage.model_copy(),
                elapsed=elapsed,
            )
        )
        if self._writer is not None:
            self._writer.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
        return RunResult(
            status,
            value if fatal is None else None,
            self.budget.usage,
            elapsed,
            self.session_dir,
            reason,
        )

    async def _shutdown(self) -> None:
        self.control.release_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._provider is not None and self._owns_provider:
            await self._provider.close()
        if self._bridge is not None:
            await self._bridge.close()
        for model in {id(self.model): self.model, id(self.sub_model): self.sub_model}.values():
            with contextlib.suppress(Exception):
                await model.aclose()

    def fail(self, exc: RlmError) -> None:
        """End the whole run for this reason (the first reason wins)."""
        if self._fatal is None:
            self._fatal = exc
        self.control.release_all()
        if self._root_task is not None and not self._root_task.done():
            self._root_task.cancel()

    def stop_run_status(self) -> RunStatus:
        fatal = self._fatal
        if isinstance(fatal, BudgetExceeded):
            return "budget"
        if isinstance(fatal, ModelError):
            return "model_error"
        if isinstance(fatal, KernelError):
            return "kernel_error"
        if isinstance(fatal, RunStopped):
            return "stopped"
        return "error"

    def stop_status(self) -> AgentStatus:
        """How an agent cut short by the run's end is recorded."""
        return "budget" if isinstance(self._fatal, BudgetExceeded) else "stopped"

    def stop_reason(self) -> str:
        return str(self._fatal) if self._fatal else "stopped"

    async def _watch_time(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.fail(BudgetExceeded("time", f"time limit {seconds:g} s reached"))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- services for agents ---------------------------------------------------------------

    def model_for(self, agent: Agent) -> Model:
        return self.model if agent.depth == 0 else self.sub_model

    async def acquire_kernel(self, agent: Agent) -> Kernel:
        assert self._provider is not None
        try:
            kernel = await self._provider.acquire()
            assert self._bridge is not None
            grant = self._bridge.grant(agent.id)
            await kernel.setup(agent.id, agent.context.path, agent.context.kind, grant)
        except RlmError:
            raise
        except Exception as exc:
            raise KernelError(f"could not start a kernel for agent {agent.id}: {exc}") from None
        self.emit(
            KernelEvent(
                agent_id=agent.id,
                kernel_id=kernel.kernel_id,
                what="started",
                reason=f"pid {kernel.pid}",
            )
        )
        return kernel

    async def release_kernel(self, agent: Agent, kernel: Kernel) -> None:
        assert self._provider is not None
        if self._bridge is not None:
            self._bridge.revoke(agent.id)
        with contextlib.suppress(Exception):
            await self._provider.release(kernel)

    async def call_model(
        self,
        agent: Agent,
        messages: list[dict[str, Any]],
        new_messages: list[dict[str, Any]],
        step: int,
        purpose: Literal["agent", "llm_query"] = "agent",
        model: Model | None = None,
    ) -> str:
        """One model call with its events, budget checks and usage accounting.

        A reply the recording holds is served as it was, with no event and no cost.
        """
        if purpose == "agent":
            recorded = self.recording.reply(agent.id, step) if self.recording else None
            agent.replaying = recorded is not None
            if recorded is not None:
                return recorded
        model = model or self.model_for(agent)
        self.budget.check_before_call(agent.id)
        self._calls += 1
        call_id = f"c{self._calls}"
        kind = purpose
        self.emit(
            ModelRequest(
                agent_id=agent.id,
                call_id=call_id,
                step=step,
                model=model.name,
                purpose=kind,
                messages=new_messages,
            )
        )
        started = time.monotonic()
        info = CallInfo(agent.id, agent.depth, step, kind, agent.query)

        def on_delta(text: str) -> None:
            self.emit(ModelDelta(agent_id=agent.id, call_id=call_id, text=text))

        completion = await model.complete(messages, info, on_delta)
        usage = Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            calls=1,
            cost=completion.cost,
        )
        self.budget.record(usage)
        agent.usage.add(usage)
        self.emit(
            ModelResponse(
                agent_id=agent.id,
                call_id=call_id,
                step=step,
                model=completion.model or model.name,
                purpose=kind,
                text=completion.text,
                usage=usage,
                duration=time.monotonic() - started,
            )
        )
        self.emit(
            BudgetUpdate(
                usage=self.budget.usage.model_copy(),
                depth=self.budget.max_depth_seen,
                elapsed=self.budget.elapsed,
            )
        )
        self.budget.check_spent(agent.id)
        return completion.text

    async def gate(self, agent: Agent, kind: GateKind, gate_id: str, code: str) -> Decision:
        if gate_id in self.overrides:
            code = self.overrides.pop(gate_id)
            return await self._gate(agent, kind, gate_id, code, edited=True)
        return await self._gate(agent, kind, gate_id, code, edited=False)

    async def _gate(
        self, agent: Agent, kind: GateKind, gate_id: str, code: str, edited: bool
    ) -> Decision:
        reason = self.control.wait_reason(kind, agent.id, agent.depth)
        if reason is None:
            return Decision(code, skipped=False, edited=edited)
        self.emit(CellPaused(agent_id=agent.id, cell_id=gate_id, reason=reason))
        decision = await self.control.hold(
            Pending(kind, agent.id, gate_id, code, reason, edited=edited)
        )
        if self._fatal is not None:
            raise asyncio.CancelledError
        return decision

    def _control_changed(self) -> None:
        state: RunState = "paused" if self.control.paused else "running"
        if state != self._state:
            self._state = state
            self.emit(RunStateChanged(state=state))

    # -- sub-calls from kernels --------------------------------------------------------------

    async def _handle_subcall(self, agent_id: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise UsageError(f"unknown agent {agent_id}")
        try:
            return await self._dispatch(agent, op, args)
        except (BudgetExceeded, ModelError, KernelError) as exc:
            self.fail(exc)
            raise

    async def _dispatch(self, agent: Agent, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "final":
            agent.final = Value.model_validate(args["value"])
            return {}
        if op == "llm_query":
            return {"text": await self._llm_query(agent, args["prompt"], args.get("model"))}
        if op == "llm_query_batched":
            prompts = list(args["prompts"])
            texts = await asyncio.gather(
                *(self._llm_query(agent, p, args.get("model")) for p in prompts)
            )
            return {"texts": list(texts)}
        if op == "rlm_query":
            value = await self.spawn(agent, args["prompt"], args.get("context"))
            return {"value": value.model_dump()}
        if op == "rlm_query_batched":
            prompts = list(args["prompts"])
            contexts = args.get("contexts") or [None] * len(prompts)
            if len(contexts) != len(prompts):
                raise UsageError("rlm_query_batched: contexts and prompts differ in length")
            values = await asyncio.gather(
                *(self.spawn(agent, p, c) for p, c in zip(prompts, contexts, strict=True))
            )
            return {"values": [v.model_dump() for v in values]}
        raise UsageError(f"unknown bridge operation {op!r}")

    async def _llm_query(self, agent: Agent, prompt: str, model_name: str | None) -> str:
        recorded = self.recording.query_reply(agent.id, prompt) if self.recording else None
        if recorded is not None:
            return recorded
        self._subcalls += 1
        call_id = f"q{self._subcalls}"
        self.emit(
            SubcallStarted(agent_id=agent.id, call_id=call_id, kind="llm_query", prompt=prompt)
        )
        started = time.monotonic()
        model = self._named_model(model_name)
        messages = [{"role": "user", "content": prompt}]
        try:
            text = await self.call_model(agent, messages, messages, agent.step, "llm_query", model)
        except Exception as exc:
            self._subcall_failed(agent, call_id, exc, started)
            raise
        self.emit(
            SubcallFinished(
                agent_id=agent.id,
                call_id=call_id,
                ok=True,
                result=Value(
                    json_value=text, is_json=True, repr=repr(text[:2000]), type_name="str"
                ),
                duration=time.monotonic() - started,
            )
        )
        return text

    def _named_model(self, name: str | None) -> Model:
        if not name or name in (self.sub_model.name, self.config.sub_model):
            return self.sub_model
        return self._make_model(name)

    def _make_model(self, name: str) -> Model:
        config = self.config
        return make_model(
            name,
            config.api_base,
            delay=config.demo_delay,
            stream=config.stream,
            on_retry=lambda message: self.emit(Notice(message=message)),
        )

    def _subcall_failed(
        self, agent: Agent, call_id: str, exc: BaseException, started: float
    ) -> None:
        message = str(exc) or type(exc).__name__
        self.emit(
            SubcallFinished(
                agent_id=agent.id,
                call_id=call_id,
                ok=False,
                error=message,
                duration=time.monotonic() - started,
            )
        )

    async def spawn(
        self,
        parent: Agent,
        prompt: str,
        context: dict[str, Any] | None,
        by_hand: bool = False,
        bind_var: str | None = None,
    ) -> Value:
        """Run a child agent to its answer; its kernel comes from the pool."""
        child_id = parent.next_child_id()
        if self.recording is not None and child_id in self.recording.answers:
            return self.recording.answers[child_id]
        self.budget.check_depth(parent.depth + 1, child_id)
        source = self._child_context(child_id, context)
        child = Agent(
            self,
            child_id,
            prompt,
            source,
            depth=parent.depth + 1,
            parent=parent,
            by_hand=by_hand,
            bind_var=bind_var,
        )
        self.agents[child_id] = child
        call_id = f"r{child_id}"
        self.emit(
            SubcallStarted(
                agent_id=parent.id,
                call_id=call_id,
                kind="rlm_query",
                prompt=prompt,
                child_agent_id=child_id,
                context_preview=source.preview,
                context_chars=source.chars,
            )
        )
        started = time.monotonic()
        decision = await self.gate(child, "agent_start", child_id, prompt)
        if decision.skipped:
            self.emit(Notice(agent_id=child_id, message="sub-agent skipped by the user"))
            value = Value(json_value=None, is_json=True, repr="None", type_name="NoneType")
        else:
            try:
                value = await child.execute()
            except BaseException as exc:
                self._subcall_failed(parent, call_id, exc, started)
                raise
        self.emit(
            SubcallFinished(
                agent_id=parent.id,
                call_id=call_id,
                ok=True,
                result=value,
                duration=time.monotonic() - started,
            )
        )
        return value

    def _child_context(self, child_id: str, payload: dict[str, Any] | None) -> ContextSource:
        if payload is None:
            return NO_CONTEXT
        value = Value.model_validate(payload)
        directory = self._scratch / "contexts"
        if value.pickle is not None:
            data = base64.b64decode(value.pickle)
            shown = (
                value.json_value
                if value.is_json and isinstance(value.json_value, str)
                else value.repr
            )
            return context_from_pickle_bytes(data, directory, child_id, shown)
        return context_from_value(value.python(), directory / child_id)

    # -- control: what a person can do to a live run ------------------------------------------

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def step(self, gate_id: str | None = None) -> None:
        self.control.step(gate_id)

    def set_breakpoints(self, breakpoints: Breakpoints) -> None:
        self.control.breakpoints = breakpoints

    def replace_cell(self, cell_id: str, code: str) -> None:
        self.control.replace(cell_id, code)

    def skip_cell(self, cell_id: str) -> None:
        self.control.skip(cell_id)

    async def interrupt(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        if agent.kernel is not None:
            await agent.kernel.interrupt()

    def stop(self, reason: str = "stopped by the user") -> None:
        self.fail(RunStopped(reason))

    def launch_subagent(
        self, parent_id: str, prompt: str, context: Any = None, var: str = "sub_answer"
    ) -> asyncio.Task[Value]:
        """Start a sub-agent by hand; its answer is bound as ``var`` in the parent's kernel."""
        parent = self._agent(parent_id)
        if not var.isidentifier():
            raise UsageError(f"'{var}' is not a valid Python variable name")
        if parent.kernel is None or parent.status != "running":
            raise UsageError(f"agent {parent_id} is not running")
        payload = None if context is None else _payload_of(context)
        self.emit(Notice(agent_id=parent_id, message=f"sub-agent launched by hand -> {var}"))

        async def launch() -> Value:
            value = await self.spawn(parent, prompt, payload, by_hand=True, bind_var=var)
            await parent.bind(var, value)
            return value

        return self._spawn(launch())

    def _agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise UsageError(f"no agent {agent_id}") from None

    @property
    def result(self) -> RunResult | None:
        return self._result


def _payload_of(value: Any) -> dict[str, Any]:
    """A host value as a kernel value payload (the host pickles only plain data it made)."""
    try:
        is_json = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        is_json = False
    return Value(
        json_value=value if is_json else None,
        is_json=is_json,
        repr=repr(value)[:2000],
        type_name=type(value).__name__,
        pickle=base64.b64encode(pickle.dumps(value)).decode(),
    ).model_dump()
