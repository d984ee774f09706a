"""Typed events: the one vocabulary of the engine, the TUI, the CLI and session files.

Every state change of a run is one of these. They are published to subscribers as they
happen and appended, one JSON object a line, to the session's ``events.jsonl``. Reading a
session back goes through the same models (``parse_event``), so a live run, a resumed one
and a replay look the same to whoever folds them.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from rlm_tui import defaults
from rlm_tui.values import payload

FORMAT_VERSION = 1

AgentStatus = Literal["running", "answered", "failed", "stopped", "budget"]
CellStatus = Literal["ok", "error", "interrupted", "timeout", "killed", "skipped"]
RunStatus = Literal["answered", "budget", "model_error", "kernel_error", "stopped", "error"]
RunState = Literal["running", "paused", "stepping"]
CallPurpose = Literal["agent", "llm_query", "extract", "compact"]
"""An agent's turn, a cell's llm_query, the one call that extracts an answer at a budget stop,
or the summary that compacts an agent's history."""
OnBudget = Literal["extract", "stop"]


class Usage(BaseModel):
    """Tokens, calls and cost; added up per agent and per run."""

    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost: float = 0.0
    cached_tokens: int = 0
    """Of prompt_tokens, those read from the provider's cache (priced lower)."""
    reasoning_tokens: int = 0
    """Of completion_tokens, those spent on hidden reasoning."""

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.calls += other.calls
        self.cost += other.cost

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Value(BaseModel):
    """A Python value carried out of a kernel: JSON where it can be, always a repr.

    ``pickle`` (base64) keeps the exact object for handing it to another kernel; it is not
    written to session files unless the value has no JSON form.
    """

    model_config = ConfigDict(extra="ignore")

    json_value: Any = None
    is_json: bool = False
    repr: str = ""
    type_name: str = ""
    pickle: str | None = None

    def python(self) -> Any:
        """The value on the host: the JSON form, or the repr when there is none."""
        return self.json_value if self.is_json else self.repr

    @classmethod
    def from_host(cls, value: Any) -> Value:
        """A value the host made, for a kernel (the host pickles only what it made itself)."""
        return cls(**payload(value))

    @classmethod
    def plain(cls, value: Any) -> Value:
        """A value the host made or read, with no pickle (JSON where it can be)."""
        return cls(**payload(value, pickled=False))


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int = 0
    t: float = Field(default_factory=time.time)


class SandboxInfo(BaseModel):
    """How the run's kernels were isolated: what was asked, and what the machine allowed."""

    mode: str = "auto"
    active: bool = False
    warning: str | None = None
    """Why there is no sandbox (auto fell back, or the user turned it off)."""
    allow_read: list[str] = Field(default_factory=list)
    allow_net: bool = False
    kernel_env: list[str] = Field(default_factory=list)


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    version: int = FORMAT_VERSION
    run_id: str
    query: str
    model: str
    sub_model: str
    model_is_demo: bool = False
    context_kind: str = "str"
    context_chars: int = 0
    context_file: str | None = None
    session_dir: str | None = None
    limits: dict[str, Any] = Field(default_factory=dict)
    truncate: int = defaults.TRUNCATE
    api_base: str | None = None
    """Without credentials (``user:pass@``, ``?api-key=``): those are never recorded."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Every setting of the run (RunConfig.recorded_settings), restored by resume and fork."""
    model_spec: str | None = None
    """The --model value that made ``model`` ('demo' for the demo model), for resuming."""
    sub_model_spec: str | None = None
    resumed_from: str | None = None
    forked_from: str | None = None
    output_schema: dict[str, Any] | None = None
    """The JSON Schema the answer had to match (--output-schema, output_type=)."""
    on_budget: OnBudget = "extract"
    tools_file: str | None = None
    compact_at: int | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    """Named inputs besides ``context``: variable name -> the file it was loaded from."""
    input_sizes: dict[str, int] = Field(default_factory=dict)
    """Each input's size as loaded (``context_chars``'s measure): a resume checks it."""
    sandbox: SandboxInfo | None = None
    """None in sessions recorded before the sandbox existed."""
    imported_from: str | None = None
    """The peer's log this session was imported from (``rlm-tui import``): a record to read,
    with no context or kernel to go on from."""


class RunStateChanged(_Event):
    type: Literal["run_state"] = "run_state"
    state: RunState
    reason: str = ""


class AgentStarted(_Event):
    type: Literal["agent_started"] = "agent_started"
    agent_id: str
    parent_id: str | None = None
    depth: int = 0
    query: str
    model: str
    context_kind: str = "str"
    context_chars: int = 0
    context_preview: str = ""
    by_hand: bool = False
    bind_var: str | None = None
    kernel_id: str | None = None


class AgentFinished(_Event):
    type: Literal["agent_finished"] = "agent_finished"
    agent_id: str
    status: AgentStatus
    answer: Value | None = None
    reason: str = ""
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)


class ModelRequest(_Event):
    type: Literal["model_request"] = "model_request"
    agent_id: str
    call_id: str
    step: int
    model: str
    purpose: CallPurpose = "agent"
    messages: list[dict[str, Any]] = Field(default_factory=list)
    max_tokens: int | None = None
    """The completion limit sent with the call (what was left of the budget)."""
    """Only the messages added since the agent's previous request (all of them the first time)."""


class ModelDelta(_Event):
    """Streamed text of a call, a few pieces a second; the response holds the whole text."""

    type: Literal["model_delta"] = "model_delta"
    agent_id: str
    call_id: str
    text: str
    reset: bool = False
    """The text streamed so far by this call is void (a failed attempt): drop it first."""


class ModelResponse(_Event):
    type: Literal["model_response"] = "model_response"
    agent_id: str
    call_id: str
    step: int
    model: str
    purpose: CallPurpose = "agent"
    text: str
    usage: Usage = Field(default_factory=Usage)
    duration: float = 0.0


class CellProposed(_Event):
    type: Literal["cell_proposed"] = "cell_proposed"
    agent_id: str
    cell_id: str
    step: int
    index: int
    code: str
    preamble: str = ""


class CellPaused(_Event):
    """The cell waits at the control gate (pause, step or a breakpoint)."""

    type: Literal["cell_paused"] = "cell_paused"
    agent_id: str
    cell_id: str
    reason: str


class CellEdited(_Event):
    type: Literal["cell_edited"] = "cell_edited"
    agent_id: str
    cell_id: str
    code: str


class CellSkipped(_Event):
    type: Literal["cell_skipped"] = "cell_skipped"
    agent_id: str
    cell_id: str


class CellStarted(_Event):
    type: Literal["cell_started"] = "cell_started"
    agent_id: str
    cell_id: str
    code: str


class CellOutput(_Event):
    type: Literal["cell_output"] = "cell_output"
    agent_id: str
    cell_id: str
    stream: Literal["stdout", "stderr", "result", "error"] = "stdout"
    text: str


class CellFinished(_Event):
    type: Literal["cell_finished"] = "cell_finished"
    agent_id: str
    cell_id: str
    status: CellStatus
    duration: float = 0.0
    output: str = ""
    """The whole output as the kernel printed it (up to the keep limit)."""
    model_view: str = ""
    """What the model is shown: the output cut to the truncation limit, with a marker."""
    output_chars: int = 0
    error: str | None = None


class CellRerunStarted(_Event):
    """A resumed or forked run runs a recorded cell again to rebuild its kernel (its
    recorded events stand; the re-run's output is not kept)."""

    type: Literal["cell_rerun_started"] = "cell_rerun_started"
    agent_id: str
    cell_id: str
    code: str


class CellRerunFinished(_Event):
    type: Literal["cell_rerun_finished"] = "cell_rerun_finished"
    agent_id: str
    cell_id: str
    status: CellStatus
    duration: float = 0.0
    error: str | None = None


class SubcallStarted(_Event):
    type: Literal["subcall_started"] = "subcall_started"
    agent_id: str
    call_id: str
    kind: Literal["llm_query", "rlm_query", "tool"]
    prompt: str
    """The prompt; for a tool, the call as Python (``lookup('Oslo', unit='C')``)."""
    arguments: dict[str, Any] | None = None
    """A tool's arguments as JSON: ``{"args": [...], "kwargs": {...}}``."""
    child_agent_id: str | None = None
    context_preview: str = ""
    context_chars: int = 0


class SubcallFinished(_Event):
    type: Literal["subcall_finished"] = "subcall_finished"
    agent_id: str
    call_id: str
    ok: bool
    result: Value | None = None
    error: str | None = None
    duration: float = 0.0


class KernelEvent(_Event):
    """Kernel life: queued (the run holds --max-kernels already; kernel_id is ""), started,
    died (with reason), restarted, shut down."""

    type: Literal["kernel"] = "kernel"
    agent_id: str
    kernel_id: str
    what: Literal["queued", "started", "died", "restarted", "interrupted", "shutdown"]
    reason: str = ""


class BudgetUpdate(_Event):
    type: Literal["budget"] = "budget"
    usage: Usage
    depth: int = 0
    elapsed: float = 0.0


class BudgetStop(_Event):
    type: Literal["budget_stop"] = "budget_stop"
    limit: str
    message: str
    agent_id: str | None = None


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    kind: str
    message: str
    agent_id: str | None = None


class Notice(_Event):
    """Something a person should know that is not an error (a retry, a hand launch)."""

    type: Literal["notice"] = "notice"
    message: str
    agent_id: str | None = None


class HistoryCompacted(_Event):
    """An agent's earlier turns were replaced by a summary (``--compact-at``); kernel untouched."""

    type: Literal["history_compacted"] = "history_compacted"
    agent_id: str
    step: int
    """The step whose request was the first to carry the summary."""
    summary: str
    messages_before: int
    messages_after: int
    tokens_before: int
    """The history's size as estimated (characters / 4), before and after."""
    tokens_after: int


class AgentLaunched(_Event):
    """A person launched a sub-agent by hand; its answer is bound as ``bind_var`` in the
    parent's kernel. Resume and fork launch it again at the same point of the parent."""

    type: Literal["agent_launched"] = "agent_launched"
    agent_id: str
    """The parent."""
    child_agent_id: str
    prompt: str
    context: Value | None = None
    bind_var: str


class FollowUp(_Event):
    """A new question to an agent that had answered (``rlm-tui ask``): its next user turn."""

    type: Literal["follow_up"] = "follow_up"
    agent_id: str
    step: int
    """The step whose answer it follows."""
    question: str
    answer_var: str
    """The kernel variable the previous answer was bound to."""


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    status: RunStatus
    answer: Value | None = None
    reason: str = ""
    usage: Usage = Field(default_factory=Usage)
    elapsed: float = 0.0
    extracted: bool = False
    """The answer was extracted from the trajectory when the budget ran out (status budget)."""


Event = Annotated[
    RunStarted
    | RunStateChanged
    | AgentStarted
    | AgentFinished
    | ModelRequest
    | ModelDelta
    | ModelResponse
    | CellProposed
    | CellPaused
    | CellEdited
    | CellSkipped
    | CellStarted
    | CellOutput
    | CellFinished
    | CellRerunStarted
    | CellRerunFinished
    | SubcallStarted
    | SubcallFinished
    | KernelEvent
    | BudgetUpdate
    | BudgetStop
    | ErrorEvent
    | Notice
    | AgentLaunched
    | FollowUp
    | HistoryCompacted
    | RunFinished,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(line: str | bytes) -> Event:
    """Parse one JSON line of a session file into its event model."""
    return _ADAPTER.validate_json(line)


def event_from_dict(data: dict[str, Any]) -> Event:
    return _ADAPTER.validate_python(data)


def dump_event(event: Event) -> str:
    """One JSON line (without newline); the pickle of values is dropped when JSON holds them."""
    return event.model_dump_json(exclude=_pickle_excludes(event))


def _pickle_excludes(event: Event) -> dict[str, Any] | None:
    for field in ("answer", "result", "context"):
        value = getattr(event, field, None)
        if isinstance(value, Value) and value.is_json and value.pickle is not None:
            return {field: {"pickle"}}
    return None
