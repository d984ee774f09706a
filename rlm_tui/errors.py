"""One error hierarchy: the CLI turns each into one clear line and an exit code."""

from __future__ import annotations


class RlmError(Exception):
    """Base of every error a user can cause or meet; never shown as a traceback."""

    exit_code = 1


class UsageError(RlmError):
    """Bad flags, a missing or unreadable input file, an unknown model name."""

    exit_code = 2


class SessionError(RlmError):
    """A session that cannot be found, read, locked or parsed."""

    exit_code = 2


class BudgetExceeded(RlmError):
    """A limit ran out; ``limit`` names it and ``where`` the agent that hit it."""

    exit_code = 3

    def __init__(self, limit: str, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.where = where


class ModelError(RlmError):
    """The model provider failed: bad key, unknown model, unreachable, retries exhausted."""

    exit_code = 4


class KernelError(RlmError):
    """A kernel could not start, or died beyond recovery."""

    exit_code = 5


class RunStopped(RlmError):
    """The run was stopped by a person (stop command or Ctrl-C)."""

    exit_code = 130
