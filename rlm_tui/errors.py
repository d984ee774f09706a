"""One error hierarchy: the CLI turns each into one clear line and an exit code.

Each class also says how a run it ends is recorded (``run_status``) and how an agent cut
short by it is recorded (``agent_status``), so those facts live in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError

    from rlm_tui.events import AgentStatus, RunStatus


class RlmError(Exception):
    """Base of every error a user can cause or meet; never shown as a traceback."""

    exit_code = 1
    run_status: ClassVar[RunStatus] = "error"
    agent_status: ClassVar[AgentStatus] = "stopped"


class UsageError(RlmError):
    """Bad flags, a missing or unreadable input file, an unknown model name."""

    exit_code = 2


class SessionError(RlmError):
    """A session that cannot be found, read, locked or parsed."""

    exit_code = 2


class BudgetExceeded(RlmError):
    """A limit ran out; ``limit`` names it and ``where`` the agent that hit it."""

    exit_code = 3
    run_status = "budget"
    agent_status = "budget"

    def __init__(self, limit: str, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.where = where


class ModelError(RlmError):
    """The model provider failed: bad key, unknown model, unreachable, retries exhausted."""

    exit_code = 4
    run_status = "model_error"


class KernelError(RlmError):
    """A kernel could not start, or died beyond recovery."""

    exit_code = 5
    run_status = "kernel_error"


class RunStopped(RlmError):
    """The run was stopped by a person (stop command or Ctrl-C)."""

    exit_code = 130
    run_status = "stopped"


def validation_problem(exc: ValidationError, whole: str = "(file)") -> str:
    """A pydantic error as one line: the first field at fault (``whole`` if the fault is of
    no one field) and what is wrong with it."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or whole
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        message = "unknown field"
    elif first["type"] == "missing":
        message = "required field is missing"
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {message}{more}"
