"""The kernel provider interface: the engine never knows where its kernels run.

Local processes now (``pool.LocalKernelPool``: kernels forked from a template process); a
Jupyter Kernel/Enterprise Gateway could implement the same two protocols later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

ExecStatus = Literal["ok", "error", "interrupted", "timeout", "killed"]
OutputStream = Literal["stdout", "stderr", "result", "error"]
OutputCallback = Callable[[OutputStream, str], None]


def ignore_output(_stream: OutputStream, _text: str) -> None:
    """The output callback of code that is not a cell (setup, warm-up, the engine's own)."""


ContextKind = Literal["none", "text", "json", "jsonl", "yaml", "dir", "pickle"]


@dataclass
class ExecResult:
    status: ExecStatus
    duration: float
    error: str | None = None
    """One line: 'ValueError: bad thing', or why the cell was cut short."""
    restarted: bool = False
    """The kernel was restarted to end the cell (its state is gone)."""
    dropped: int = 0
    """Characters the cell printed past its kernel's output limit: counted, never sent."""


class Kernel(Protocol):
    kernel_id: str

    @property
    def pid(self) -> int | None: ...

    def is_alive(self) -> bool: ...

    async def setup(
        self,
        agent_id: str,
        context_path: Path | None,
        context_kind: ContextKind,
        bridge: dict[str, str] | None = None,
    ) -> None:
        """Bind the kernel to an agent and a bridge; load its ``context`` from a private file.

        ``bridge`` ({"path", "token"}) reaches the kernel through a one-time private file.
        """
        ...

    def readable(self, path: Path, name: str) -> Path:
        """Where this kernel can read the host's file or directory ``path`` (a named input);
        linked into its own directory when it is sandboxed."""
        ...

    async def execute(
        self, code: str, on_output: OutputCallback, timeout: float | None = None
    ) -> ExecResult:
        """Run a cell; stream its output; interrupt (then restart) past ``timeout``."""
        ...

    async def interrupt(self) -> None: ...

    async def restart(self) -> None:
        """A fresh process with the prelude loaded; the caller runs ``setup`` again."""
        ...

    async def shutdown(self) -> None: ...


class KernelProvider(Protocol):
    async def start(self) -> None:
        """Warm up the pool."""
        ...

    async def acquire(self) -> Kernel: ...

    async def release(self, kernel: Kernel) -> None:
        """Kill the kernel; waiting for its end may go on in the background, ``close`` waits."""
        ...

    async def close(self) -> None:
        """Shut down every kernel: no process outlives this."""
        ...
