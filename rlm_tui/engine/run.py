"""A run: the tree of agents, its life (start, wait, stop) and the control API.

The run wires its parts together and owns their lifetimes: the event bus (``bus.py``), model
calls and the budget (``calls.py``), sub-calls from kernels (``dispatch.py``), replay of a
recording (``replay.py``) and the control gate (``control.py``). Agents reach it only
through the ``AgentHost`` interface. Everything a person can do to a live run goes through
the methods under "control".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rlm_tui import defaults, heap
from rlm_tui.checks import check_query, non_empty_path, set_variable, utf8_text
from rlm_tui.engine.agent import Agent, AgentSettings
from rlm_tui.engine.budget import Budget, Limits
from rlm_tui.engine.bus import EventBus, Subscriber
from rlm_tui.engine.calls import ModelCalls, Models, model_maker
from rlm_tui.engine.context import NO_CONTEXT, ContextSource, context_from_file, context_from_value
from rlm_tui.engine.control import Breakpoints, Control, Decision, GateKind, Pending
from rlm_tui.engine.dispatch import Subcalls
from rlm_tui.engine.extract import extracted_value, extraction_messages
from rlm_tui.engine.recording import RecordedCell, Recording
from rlm_tui.engine.replay import Replay
from rlm_tui.engine.slots import KernelSlots, default_max_kernels
from rlm_tui.engine.tools import Tools, check_free_name, load_tools
from rlm_tui.errors import BudgetExceeded, KernelError, RlmError, RunStopped, UsageError
from rlm_tui.events import (
    AgentLaunched,
    BudgetStop,
    CallPurpose,
    CellPaused,
    ErrorEvent,
    Event,
    KernelEvent,
    Notice,
    OnBudget,
    RunFinished,
    RunStarted,
    RunState,
    RunStateChanged,
    RunStatus,
    SandboxInfo,
    Usage,
    Value,
)
from rlm_tui.kernel.answer_check import AnswerMismatch
from rlm_tui.kernel.base import Kernel, KernelProvider
from rlm_tui.kernel.bridge import BridgeServer
from rlm_tui.kernel.pool import LocalKernelPool
from rlm_tui.kernel.rundirs import private_dir
from rlm_tui.kernel.sandbox import Sandbox, SandboxMode, SandboxPolicy, resolve_sandbox
from rlm_tui.models.base import CallInfo, Model, price_of
from rlm_tui.redact import mask_url_credentials
from rlm_tui.session.store import SessionWriter, default_sessions_dir

log = logging.getLogger(__name__)


class RunConfig(BaseModel):
    """Everything that defines a run; recorded (without secrets) in its session."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    query: str
    context_file: str | None = None
    context_value: Any = Field(default=None, exclude=True)
    model: str = defaults.MODEL
    sub_model: str | None = None
    api_base: str | None = None
    limits: Limits = Field(default_factory=Limits)
    truncate: int = Field(defaults.TRUNCATE, ge=defaults.MIN_TRUNCATE)
    sessions_dir: Path = Field(default_factory=default_sessions_dir)
    session_id: str | None = None
    pool_size: int = Field(defaults.POOL_SIZE, ge=0, le=defaults.MAX_POOL_SIZE)
    kernel_gateway: str | None = None
    """A Jupyter Kernel/Enterprise Gateway URL: the run's kernels are created there."""
    kernel_gateway_token_env: str | None = None
    """The variable holding the gateway's token (default JUPYTER_GATEWAY_AUTH_TOKEN); the
    token itself is never part of the config, so never recorded."""
    kernel_name: str | None = None
    """The gateway's kernelspec (default: the gateway's default kernel)."""
    bridge_host: str | None = None
    """Where gateway kernels reach the bridge over TCP (default 127.0.0.1 for a loopback
    gateway; required for any other)."""
    cell_timeout: float | None = Field(defaults.CELL_TIMEOUT, gt=0, allow_inf_nan=False)
    memory_limit_mb: int | None = Field(
        None, ge=defaults.MIN_MEMORY_LIMIT_MB, le=defaults.MAX_MEMORY_LIMIT_MB
    )
    max_kernels: int | None = Field(None, ge=1)
    """Kernels held at once; past it sub-agents queue. None: from the memory available."""
    keep_output: int = Field(1_000_000, ge=1000)
    demo_delay: float = Field(0.0, ge=0, allow_inf_nan=False)
    stream: bool = True
    request_timeout: float = Field(60.0, gt=0, allow_inf_nan=False)
    """Seconds one model request may take before it is retried."""
    max_concurrency: int = Field(defaults.MAX_CONCURRENCY, ge=1)
    """Model calls at once across the run; more wait their turn."""
    append_to: Path | None = None
    """An existing session directory to go on in (resume, fork) instead of a new one."""
    save: bool = True
    output_schema: dict[str, Any] | None = None
    """The JSON Schema the root agent's answer must match (checked in its kernel)."""
    on_budget: OnBudget = "extract"
    """At a budget stop: one call kept back asks for the best answer so far, or just stop."""
    tools_file: str | None = None
    """A Python file whose public functions are the run's tools (--tools)."""
    tools: list[Callable[..., Any]] = Field(default_factory=list, exclude=True)
    """More tools, as functions (the Python API's ``tools=[...]``)."""
    inputs: dict[str, str] = Field(default_factory=dict)
    """Named inputs besides ``context``: variable name -> file (``--input NAME=FILE``)."""
    compact_at: int | None = Field(None, ge=defaults.MIN_COMPACT_AT)
    """Replace an agent's earlier turns by a summary when its history passes this many tokens."""
    follow_up: str | None = Field(default=None, exclude=True)
    """A question for the root after its recorded answer (``rlm-tui ask``)."""
    input_values: dict[str, Any] = Field(default_factory=dict, exclude=True)
    """Named inputs as Python values (the Python API's ``inputs={...}``)."""

    sandbox: SandboxMode = "auto"
    allow_read: list[Path] = Field(default_factory=list)
    """Paths the kernels may read besides their context (read-only)."""
    allow_net: bool = False
    kernel_env: list[str] = Field(default_factory=list)
    """Host environment variables passed to the kernels by name (beyond the allowlist)."""

    @model_validator(mode="after")
    def _one_context(self) -> RunConfig:
        if self.context_file is not None and self.context_value is not None:
            raise ValueError("the context is given twice: as a value and as a file")
        return self

    @model_validator(mode="after")
    def _savable(self) -> RunConfig:
        """Every text the session saves (settings, query, question, paths) must be UTF-8."""
        values = {
            "context_value": [self.context_value],
            "input_values": list(self.input_values.values()),
        }
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in values:  # a text is saved as text; any other value is pickled
                value = [item for item in values[name] if isinstance(item, str)]
            for text in _texts(value):
                utf8_text(text, _what(name))
        return self

    @field_validator("query")
    @classmethod
    def _has_query(cls, value: str) -> str:
        """Refused as the CLI and the TUI refuse it: a run of nothing spends its budget."""
        return check_query(value)

    @field_validator("context_file", "sessions_dir", "allow_read", mode="before")
    @classmethod
    def _no_empty_path(cls, value: Any, info: ValidationInfo) -> Any:
        """Checked before pydantic makes it a Path: ``Path("")`` is the current directory."""
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                non_empty_path(item, _what(str(info.field_name)))
        return value

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """An empty base is no local server: litellm would send the key to the provider's."""
        if value is not None:
            check_url(value)
        return value

    @field_validator("kernel_env")
    @classmethod
    def _set_variables(cls, value: list[str]) -> list[str]:
        """As ``--kernel-env``: a variable that is not set is a typo, not a choice."""
        return [set_variable(name) for name in value]

    @field_validator("sessions_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Absolute, as recorded in the session (a fork diff opens its original from there,
        from whatever directory the TUI was started in)."""
        return value.absolute()

    @field_validator("session_id")
    @classmethod
    def _plain_session_id(cls, value: str | None) -> str | None:
        """A session's directory is named by its id, inside the sessions directory."""
        if value is not None and (not value.strip() or value in (".", "..") or "/" in value):
            raise ValueError(f"a session id is a plain name, not {value!r}")
        return value

    def kernel_cap(self) -> int:
        """Kernels the run holds at once: ``max_kernels``, else from the memory available."""
        return self.max_kernels or default_max_kernels()

    def reserve_size(self) -> int:
        """Kernels kept warm: never more than the run may hold, else they only pile up."""
        return min(self.pool_size, self.kernel_cap())

    def sandbox_policy(self) -> SandboxPolicy:
        return SandboxPolicy(self.sandbox, tuple(self.allow_read), self.allow_net)

    def recorded_settings(self) -> dict[str, Any]:
        """The settings a session records so that resume and fork go on with the same ones.

        Every field but the run's identity and where it is saved; a new field is recorded
        (and restored) without more code. The API base is recorded without credentials.
        """
        settings = self.model_dump(mode="json", exclude=NOT_RECORDED)
        if self.api_base:
            settings["api_base"] = mask_url_credentials(self.api_base)
        return settings


NOT_RECORDED = {"query", "context_file", "context_value", "sessions_dir", "session_id"} | {
    "append_to",
    "save",
}
FLAG_OF_FIELD = {"memory_limit_mb": "--memory-limit", "stream": "--no-stream", "inputs": "--input"}


def _what(name: str) -> str:
    """A RunConfig field as the CLI names it, for a message."""
    words = {
        "query": "the query",
        "follow_up": "the question",
        "context_value": "the context",
        "input_values": "an input",
    }
    return words.get(name) or FLAG_OF_FIELD.get(name, "--" + name.replace("_", "-"))


def _texts(value: Any) -> list[str]:
    """The text in a setting, paths as text."""
    if isinstance(value, str | Path):
        return [str(value)]
    items = [*value, *value.values()] if isinstance(value, dict) else value
    if not isinstance(items, list | tuple):
        return []
    return [text for item in items for text in _texts(item)]


def config_from_settings(settings: dict[str, Any], **fields: Any) -> RunConfig:
    """A RunConfig from settings (given flags, or recorded ones); a bad value is a UsageError."""
    try:
        return RunConfig.model_validate({**settings, **fields})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][-1]) if error["loc"] else "settings"
        flag = FLAG_OF_FIELD.get(name, "--" + name.replace("_", "-"))
        value = error.get("input")
        raise UsageError(f"{flag} {value}: {error['msg'].lower()}") from None


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = mask_url_credentials(url)
        raise UsageError(f"--api-base {shown!r} is not a URL (like http://127.0.0.1:8000/v1)")


@dataclass
class RunResult:
    status: RunStatus
    value: Value | None
    usage: Usage
    elapsed: float
    session_dir: Path | None
    reason: str = ""
    exit_code: int = 0
    extracted: bool = False
    """The answer came from the extraction call at a budget stop (status is "budget")."""
    typed: Callable[[Any], Any] | None = field(default=None, repr=False)
    """Turns the checked JSON answer into the type asked for (``output_type=``)."""

    @property
    def answer(self) -> Any:
        """The answer on the host: its JSON form (typed if asked), or its repr (never unpickled)."""
        if self.value is None:
            return None
        value = self.value.python()
        return self.typed(value) if self.typed is not None else value

    @property
    def cost(self) -> float:
        return self.usage.cost


def kernel_pool(config: RunConfig, sandbox: Sandbox | None = None) -> LocalKernelPool:
    """The local kernels a run of this config uses (made by the run, or early by the CLI), in
    its sandbox (``sandbox``, or resolved here), forked from the template this process shares
    between its runs; a required sandbox that cannot start is a ``SandboxUnavailable`` here."""
    return LocalKernelPool(
        size=config.reserve_size(),
        memory_limit_mb=config.memory_limit_mb,
        sandbox=sandbox or resolve_sandbox(config.sandbox_policy()),
        pass_env=config.kernel_env,
        shared=True,
        output_limit=config.keep_output,
    )


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
        writer: SessionWriter | None = None,
    ) -> None:
        """``writer``: the session, already locked and read (resume, fork), to go on in."""
        self.config = config
        self.overrides = dict(overrides or {})
        self.replay = Replay(recording)
        self.bus = EventBus(self.replay.last_seq)
        self.bus.writer = writer
        make = model_maker(
            config.api_base,
            config.demo_delay,
            config.stream,
            config.request_timeout,
            config.sessions_dir,
        )
        self.models = Models.build(config.model, config.sub_model, make, model, sub_model)
        self.budget = Budget(
            config.limits,
            reserve_calls=int(config.on_budget == "extract"),
            extract_price=price_of(self.models.model),
        )
        self.budget.usage, self.budget.earlier = self.replay.usage, self.replay.elapsed
        self.calls = ModelCalls(self.budget, self.emit, config.max_concurrency)
        self.subcalls = Subcalls(self)
        file_tools = load_tools(Path(config.tools_file)).functions if config.tools_file else []
        self.tools = Tools([*file_tools, *config.tools])
        self.settings = AgentSettings(
            truncate=config.truncate,
            keep_output=config.keep_output,
            cell_timeout=config.cell_timeout,
            max_depth=config.limits.max_depth,
            tools=tuple(self.tools.specs),
            compact_at=config.compact_at,
        )
        self.control = Control(breakpoints, on_change=self._control_changed)
        self.agents: dict[str, Agent] = {}
        self.root: Agent | None = None
        self.session_dir: Path | None = None
        self.context: ContextSource = NO_CONTEXT
        self.inputs: dict[str, ContextSource] = {}
        self.scratch: Path
        """Private files of this run (sub-agents' contexts); made by start(), removed at the end."""
        self._provider = provider
        self._owns_provider = provider is None
        self.kernel_slots = KernelSlots(config.kernel_cap())
        self._bridge: BridgeServer | None = None
        self._services = AsyncExitStack()
        """Closed when the run ends, before its last events: bridge, kernels, models."""
        self._fatal: RlmError | None = None
        self._root_task: asyncio.Task[Value] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._result: RunResult | None = None
        self._start_failed = False
        self._teardown: asyncio.Future[None] | None = None
        self._state: RunState | None = None
        """The state the events last told: none before ``RunStarted``, which tells "running"."""
        self._question = config.follow_up

    @property
    def model(self) -> Model:
        return self.models.model

    @model.setter
    def model(self, model: Model) -> None:
        """Let the root agent's next calls go to another model."""
        self.models.model = model

    @property
    def sub_model(self) -> Model:
        return self.models.sub_model

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        return self.bus.subscribe(subscriber)

    def emit(self, event: Event) -> None:
        self.bus.emit(event)

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session, start the bridge and the kernel pool, and launch the root agent.

        If any of it fails, what was already opened is closed again before the error leaves.
        """
        created: Path | None = None
        self.scratch = private_dir("rlm-run-")
        try:
            created = self._open_session()
            self.context = self._resolve_context()
            self.inputs = self._resolve_inputs()
            await self._start_services()
            self._emit_started()
            heap.settle()  # a first run: what the process imported outlives it, out of gc sight
        except BaseException:
            self._start_failed = True
            await self._services.aclose()
            self._close_session()
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)  # nothing worth keeping was written
                self.session_dir = None
            raise
        assert self._provider is not None
        self._spawn(self._provider.start())
        self.root = Agent(
            self,
            "0",
            self.config.query,
            self.context,
            schema=self.config.output_schema,
            inputs=self.inputs,
        )
        self.agents["0"] = self.root
        self._root_task = asyncio.ensure_future(self.root.execute())
        if self.budget.time_to_stop is not None:
            self._spawn(self._watch_time(self.budget.time_to_stop))

    def _open_session(self) -> Path | None:
        """Take the session's lock; returns the directory if this call created it."""
        config = self.config
        if self.bus.writer is not None:
            self.session_dir = self.bus.writer.directory
            return None
        if not config.save:
            return None
        if config.append_to is not None:
            writer = SessionWriter(config.append_to)
            writer.open()
            created = None
        else:
            writer = SessionWriter.create(config.sessions_dir, config.session_id)
            created = writer.directory
        self.bus.writer = writer
        self.session_dir = writer.directory
        return created

    async def _start_services(self) -> None:
        services = self._services
        services.push_async_callback(self.models.aclose)
        config = self.config
        gateway = None
        if config.kernel_gateway and self._provider is None:
            # jupyter_server is imported only for a gateway run: it costs every other start
            from rlm_tui.kernel.gateway import Gateway, GatewayKernelProvider

            gateway = Gateway.from_settings(
                config.kernel_gateway, config.kernel_gateway_token_env, config.kernel_name
            )
        tcp_host = gateway.bridge_host(config.bridge_host) if gateway else None
        bridge = BridgeServer(self.subcalls.handle, tcp_host=tcp_host)
        await bridge.start()
        services.push_async_callback(bridge.close)
        self._bridge = bridge
        if gateway is not None:
            self._provider = GatewayKernelProvider(
                gateway, bridge, size=config.reserve_size(), output_limit=config.keep_output
            )
        elif self._provider is None:
            # the first resolve starts bwrap to probe it: in a thread, not on the app's loop
            sandbox = await asyncio.to_thread(resolve_sandbox, config.sandbox_policy())
            self._provider = kernel_pool(config, sandbox)
        if self._owns_provider:
            services.push_async_callback(self._provider.close)

    def _emit_started(self) -> None:
        config = self.config
        sandbox = getattr(self._provider, "sandbox", None)
        run_id = self.session_dir.name if self.session_dir else "unsaved"
        origin = self.replay.origin
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
                api_base=mask_url_credentials(config.api_base) if config.api_base else None,
                settings=config.recorded_settings(),
                model_spec=config.model,
                sub_model_spec=config.sub_model,
                resumed_from=origin if origin == run_id else None,
                forked_from=origin if origin not in (None, run_id) else None,
                output_schema=config.output_schema,
                on_budget=config.on_budget,
                tools_file=config.tools_file,
                compact_at=config.compact_at,
                inputs={k: str(v.path) for k, v in self.inputs.items()},
                input_sizes={k: v.chars for k, v in self.inputs.items()},
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
        self._state = "running"
        self._control_changed()  # paused while it started: its view would say running

    def _close_session(self) -> None:
        self.bus.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _resolve_context(self) -> ContextSource:
        config = self.config
        if config.context_value is not None:
            directory = self.session_dir or self.scratch
            return context_from_value(config.context_value, directory)
        if config.context_file is not None:
            return context_from_file(Path(config.context_file))
        return NO_CONTEXT

    def _resolve_inputs(self) -> dict[str, ContextSource]:
        config = self.config
        directory = (self.session_dir or self.scratch) / "inputs"
        inputs = {name: context_from_file(Path(file)) for name, file in config.inputs.items()}
        for name, value in config.input_values.items():
            inputs[name] = context_from_value(value, directory / name)
        for name in inputs:
            check_free_name(name)
        return inputs

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
            await self._stop_tasks()
            extracted = await self._extract_answer()
        self._result = self._finish(value, extracted)
        # the answer is out; kernels are torn down after it, to the end even if this is cancelled
        self._teardown = asyncio.ensure_future(self._services.aclose())
        await asyncio.shield(self._teardown)
        waiter = asyncio.current_task()
        if waiter is not None and waiter.cancelling():
            # the waiter itself was cancelled (Ctrl-C of ``asyncio.run``, a timeout around it):
            # the session is saved; the cancel goes on to whoever asked for it
            raise asyncio.CancelledError
        return self._result

    async def closed(self) -> None:
        """Wait until the kernels of a finished run are torn down."""
        if self._teardown is not None:
            await self._teardown

    async def _extract_answer(self) -> Value | None:
        """At a budget stop, the root's best answer from its trajectory (the reserved call)."""
        root, cause = self.root, self._fatal
        if self.config.on_budget != "extract" or not isinstance(cause, BudgetExceeded):
            return None
        if root is None or not root.messages:
            return None
        budget = self.budget
        messages = extraction_messages(root.messages, str(cause), root.schema, budget.prompt_left())
        info = CallInfo(root.id, root.depth, root.step, "extract", root.query)
        call = self.calls.call(self.models.model, info, messages, messages[-1:], reserved=True)
        try:
            async with asyncio.timeout(budget.time_left()):
                text, usage = await call
            value = extracted_value(text, root.schema)
        except TimeoutError:
            self.emit(Notice(agent_id=root.id, message="no answer could be extracted in time"))
            return None
        except (RlmError, AnswerMismatch) as exc:
            self.emit(Notice(agent_id=root.id, message=f"no answer could be extracted: {exc}"))
            return None
        root.usage.add(usage)
        return value

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

    def _finish(self, value: Value | None, extracted: Value | None = None) -> RunResult:
        fatal = self._fatal
        status: RunStatus = fatal.run_status if fatal else "answered"
        reason = str(fatal) if fatal else ""
        if isinstance(fatal, BudgetExceeded):
            self.emit(BudgetStop(limit=fatal.limit, message=str(fatal), agent_id=fatal.where))
        elif fatal is not None and not isinstance(fatal, RunStopped):
            self.emit(ErrorEvent(kind=type(fatal).__name__, message=str(fatal)))
        answer = value if fatal is None else extracted
        elapsed = self.budget.elapsed
        self.emit(
            RunFinished(
                status=status,
                answer=answer,
                reason=reason,
                usage=self.budget.usage.model_copy(),
                elapsed=elapsed,
                extracted=extracted is not None and fatal is not None,
            )
        )
        self._close_session()
        exit_code = fatal.exit_code if fatal else 0
        return RunResult(
            status,
            answer,
            self.budget.usage,
            elapsed,
            self.session_dir,
            reason,
            exit_code,
            extracted=extracted is not None and fatal is not None,
        )

    async def _stop_tasks(self) -> None:
        self.control.release_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def fail(self, exc: RlmError) -> None:
        """End the whole run for this reason (the first reason wins)."""
        if self._fatal is None:
            self._fatal = exc
        self.control.release_all()
        if self._root_task is not None and not self._root_task.done():
            self._root_task.cancel()

    async def _watch_time(self, seconds: float) -> None:
        """Stop the run ``seconds`` of its elapsed time after its start (time it waited on a
        person is not counted, so the watch goes on past it)."""
        while (left := seconds - self.budget.elapsed) > 0:
            await asyncio.sleep(left)
        self.fail(self.budget.time_exceeded())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- what agents and sub-calls may ask (AgentHost, SubcallHost) ----------------------------

    def stop_cause(self) -> RlmError | None:
        return self._fatal

    def follow_up(self, agent_id: str, step: int) -> tuple[str, bool] | None:
        recorded = self.replay.follow_up(agent_id, step)
        if recorded is not None:
            return recorded, False
        if agent_id == "0" and self._question is not None:
            question, self._question = self._question, None
            return question, True
        return None

    def model_name(self, depth: int) -> str:
        return self.models.for_depth(depth).name

    def check_iterations(self, step: int, agent_id: str) -> None:
        self.budget.check_iterations(step, agent_id)

    def recorded_reply(self, agent_id: str, step: int) -> str | None:
        return self.replay.reply(agent_id, step)

    def recorded_compaction(self, agent_id: str, step: int) -> str | None:
        return self.replay.compaction(agent_id, step)

    def recorded_cell(self, cell_id: str) -> RecordedCell | None:
        return self.replay.cell(cell_id)

    def note_cell_error(self, agent_id: str) -> None:
        self.control.note_cell_error(agent_id)

    def clock_stopped(self) -> contextlib.AbstractContextManager[None]:
        return self.budget.clock_stopped()

    def launched_by_hand(self, agent_id: str) -> bool:
        return self.replay.launched_by_hand(agent_id)

    async def redo_hand_launches(self, agent: Agent, decided: int | None) -> None:
        for launch in self.replay.hand_launches_due(agent.id, decided):
            if launch.answer is not None:
                await agent.bind(launch.bind_var, launch.answer)
            else:
                payload = launch.context.model_dump() if launch.context else None
                self._spawn(
                    self._launch(agent, launch.child_id, launch.prompt, payload, launch.bind_var)
                )

    def agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise UsageError(f"no agent {agent_id}") from None

    def new_agent(
        self,
        parent: Agent,
        agent_id: str,
        prompt: str,
        source: ContextSource,
        by_hand: bool,
        bind_var: str | None,
        schema: dict[str, Any] | None = None,
    ) -> Agent:
        child = Agent(
            self,
            agent_id,
            prompt,
            source,
            depth=parent.depth + 1,
            parent=parent,
            by_hand=by_hand,
            bind_var=bind_var,
            schema=schema,
        )
        self.agents[agent_id] = child
        return child

    async def acquire_kernel(self, agent: Agent) -> Kernel:
        assert self._provider is not None and self._bridge is not None
        await self.kernel_slots.take(agent.id, lambda held: self._emit_queued(agent, held))
        try:
            kernel = await self._provider.acquire()
        except BaseException as exc:
            self.kernel_slots.give(agent.id)
            if isinstance(exc, Exception) and not isinstance(exc, RlmError):
                raise KernelError(f"could not start a kernel for agent {agent.id}: {exc}") from None
            raise
        try:
            await kernel.setup(
                agent.id, agent.context.path, agent.context.kind, self._bridge.grant(agent.id)
            )
        except BaseException as exc:
            await asyncio.shield(self.release_kernel(agent, kernel))
            if isinstance(exc, Exception) and not isinstance(exc, RlmError):
                raise KernelError(f"could not start a kernel for agent {agent.id}: {exc}") from None
            raise
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
        self.kernel_slots.give(agent.id)
        if self._bridge is not None:
            self._bridge.revoke(agent.id)
        with contextlib.suppress(Exception):
            await self._provider.release(kernel)

    def _emit_queued(self, agent: Agent, held: int) -> None:
        reason = f"{held} of {self.kernel_slots.limit} kernels in use (--max-kernels)"
        self.emit(KernelEvent(agent_id=agent.id, kernel_id="", what="queued", reason=reason))

    def lend_kernel_slot(self, agent: Agent) -> contextlib.AbstractAsyncContextManager[None]:
        """While an agent waits on its sub-agents, its kernel does not count against the cap."""
        return self.kernel_slots.lent(agent.id, lambda held: self._emit_queued(agent, held))

    async def call_model(
        self,
        agent: Agent,
        messages: list[dict[str, Any]],
        new_messages: list[dict[str, Any]],
        step: int,
        purpose: CallPurpose = "agent",
        model: Model | None = None,
    ) -> str:
        """One model call of ``agent``, counted in its usage and the run's budget."""
        model = model or self.models.for_depth(agent.depth)
        info = CallInfo(agent.id, agent.depth, step, purpose, agent.query)
        text, usage = await self.calls.call(model, info, messages, new_messages)
        agent.usage.add(usage)
        return text

    async def gate(self, agent: Agent, kind: GateKind, gate_id: str, code: str) -> Decision:
        edited = gate_id in self.overrides
        if edited:
            code = self.overrides.pop(gate_id)
        reason = self.control.wait_reason(kind, agent.id, agent.depth)
        if reason is None:
            return Decision(code, skipped=False, edited=edited)
        self.emit(CellPaused(agent_id=agent.id, cell_id=gate_id, reason=reason))
        with self.budget.clock_stopped():
            decision = await self.control.hold(
                Pending(kind, agent.id, gate_id, code, reason, edited=edited)
            )
        if self._fatal is not None:
            raise asyncio.CancelledError
        return decision

    def _control_changed(self) -> None:
        """Tell the run's state when it changes. Before ``RunStarted`` there is no run to tell
        of (a pause pressed while the run starts): ``_emit_started`` tells it right after."""
        state: RunState = "paused" if self.control.paused else "running"
        if self._state is not None and state != self._state:
            self._state = state
            self.emit(RunStateChanged(state=state))

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
        agent = self.agent(agent_id)
        if agent.kernel is not None:
            await agent.kernel.interrupt()

    def stop(self, reason: str = "stopped by the user") -> None:
        self.fail(RunStopped(reason))

    def launch_subagent(
        self, parent_id: str, prompt: str, context: Any = None, var: str = "sub_answer"
    ) -> asyncio.Task[Value]:
        """Start a sub-agent by hand; its answer is bound as ``var`` in the parent's kernel."""
        parent = self.agent(parent_id)
        check_free_name(var, "the answer's variable")
        if parent.status != "running":  # its kernel may still be coming: bind waits for it
            raise UsageError(f"agent {parent_id} is not running")
        value = None if context is None else Value.from_host(context)
        child_id = parent.next_child_id()
        self.emit(Notice(agent_id=parent_id, message=f"sub-agent launched by hand -> {var}"))
        self.emit(
            AgentLaunched(
                agent_id=parent_id,
                child_agent_id=child_id,
                prompt=prompt,
                context=value,
                bind_var=var,
            )
        )
        payload = value.model_dump() if value is not None else None
        return self._spawn(self._launch(parent, child_id, prompt, payload, var))

    async def _launch(
        self, parent: Agent, child_id: str, prompt: str, payload: dict[str, Any] | None, var: str
    ) -> Value:
        """Run a hand-launched sub-agent, then bind its answer as ``var`` in its parent."""
        value = await self.subcalls.spawn(
            parent, prompt, payload, by_hand=True, bind_var=var, child_id=child_id
        )
        await parent.bind(var, value)
        return value

    def abandon(self) -> None:
        """Let go of a run that will not be started: its session's lock is released."""
        self.bus.close()

    @property
    def result(self) -> RunResult | None:
        return self._result

    @property
    def ended(self) -> bool:
        """Finished, or failed to start: nothing more will happen (a failed start has no
        result, as ``start`` raised instead)."""
        return self._result is not None or self._start_failed
