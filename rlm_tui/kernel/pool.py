"""Local ipykernel processes, kept warm in a pool so a sub-agent never waits for one to boot.

Each kernel: ``AsyncKernelManager`` over the "ipc" transport in a private directory, a private
kernelspec that runs this interpreter, its output to /dev/null, its own process group (killed
whole on shutdown, so processes a cell forked die with it), an environment without secrets,
and the prelude already run. AsyncKernelManager has no auto-restarter, so ``execute`` watches
the process itself: a dead kernel is an ``ExecResult`` with a reason, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from rlm_tui import defaults
from rlm_tui.kernel.base import ContextKind, ExecResult, OutputCallback
from rlm_tui.kernel.prelude import PRELUDE

KERNEL_NAME = "rlm-tui-python"
START_TIMEOUT = 60.0
POLL = 0.2
GRACE_AFTER_INTERRUPT = 2.0
_SECRET = re.compile(r"API_KEY|_KEY$|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def kernel_env(extra: dict[str, str]) -> dict[str, str]:
    """The host's environment without secrets (API keys, tokens, passwords)."""
    env = {k: v for k, v in os.environ.items() if not _SECRET.search(k)}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _private_kernelspecs(root: Path) -> KernelSpecManager:
    """A kernelspec of our own: this interpreter, whatever kernels the machine has installed."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rlm-tui",
        "language": "python",
        "interrupt_mode": "signal",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)


class LocalKernel:
    """One kernel process and its client; cells on it run one at a time."""

    def __init__(
        self,
        root: Path,
        specs: KernelSpecManager,
        env: dict[str, str],
        memory_limit_mb: int | None,
        startup_code: str,
    ) -> None:
        self.kernel_id = uuid.uuid4().hex[:8]
        self._km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
        self._km.transport = "ipc"
        self._km.ip = str(root / f"k-{self.kernel_id}")
        self._km.connection_file = str(root / f"k-{self.kernel_id}.json")
        self._env = env
        self._memory_limit_mb = memory_limit_mb
        self._startup_code = startup_code
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._root = root
        self._setup_args: tuple[str, Path | None, ContextKind, dict[str, str] | None] | None = None
        self._pgid: int | None = None

    @property
    def pid(self) -> int | None:
        process = getattr(self._km.provisioner, "process", None)
        return process.pid if process is not None else None

    def is_alive(self) -> bool:
        process = getattr(self._km.provisioner, "process", None)
        return process is not None and process.poll() is None

    def _exit_reason(self) -> str:
        process = getattr(self._km.provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return "kernel process died"
        if code < 0:
            name = (
                signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
            )
            reason = f"kernel process died (killed by signal {-code}, {name})"
        else:
            reason = f"kernel process exited with status {code}"
        if self._memory_limit_mb:
            reason += f"; its memory cap is {self._memory_limit_mb} MB"
        return reason

    async def start(self) -> None:
        await self._km.start_kernel(
            env=self._env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._pgid = _pgid(self.pid)
        await self._connect()

    async def _connect(self) -> None:
        self._client = self._km.client()
        self._client.start_channels()
        await self._client.wait_for_ready(timeout=START_TIMEOUT)
        await self._run_internal(PRELUDE + "\n" + self._startup_code)
        if self._memory_limit_mb:
            await self._run_internal(f"_rlm_limit_memory({self._memory_limit_mb})")

    async def _run_internal(self, code: str) -> None:
        result = await self._execute(code, lambda _s, _t: None, None, silent=True)
        if result.status != "ok":
            raise RuntimeError(f"kernel setup failed: {result.error}")

    async def setup(
        self,
        agent_id: str,
        context_path: Path | None,
        context_kind: ContextKind,
        bridge: dict[str, str] | None = None,
    ) -> None:
        self._setup_args = (agent_id, context_path, context_kind, bridge)
        async with self._lock:
            await self._run_setup()

    async def _run_setup(self) -> None:
        assert self._setup_args is not None
        agent_id, context_path, kind, bridge = self._setup_args
        path = str(context_path) if context_path else ""
        grant = ""
        if bridge is not None:
            grant_path = self._root / f"grant-{self.kernel_id}.json"
            fd = os.open(grant_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(bridge, f)
            grant = str(grant_path)
        await self._run_internal(f"_rlm_setup({agent_id!r}, {path!r}, {kind!r}, {grant!r})")

    async def execute(
        self, code: str, on_output: OutputCallback, timeout: float | None = None
    ) -> ExecResult:
        async with self._lock:
            return await self._execute(code, on_output, timeout)

    async def _execute(
        self, code: str, on_output: OutputCallback, timeout: float | None, silent: bool = False
    ) -> ExecResult:
        started = time.monotonic()
        if not self.is_alive():
            return ExecResult("killed", 0.0, self._exit_reason())
        client = self._client
        msg_id = client.execute(code, silent=silent, store_history=not silent, allow_stdin=False)
        deadline = started + timeout if timeout else None
        error: str | None = None
        interrupted_for_timeout = False
        while True:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                if interrupted_for_timeout:
                    await self.restart()
                    return ExecResult(
                        "timeout",
                        time.monotonic() - started,
                        f"cell ran past {timeout:g} s and did not stop when interrupted; the "
                        "kernel was restarted and its state lost",
                    )
                interrupted_for_timeout = True
                await self.interrupt()
                deadline = time.monotonic() + GRACE_AFTER_INTERRUPT
            try:
                msg = await client.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if not self.is_alive():
                    return ExecResult("killed", time.monotonic() - started, self._exit_reason())
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            content = msg["content"]
            if kind == "stream":
                on_output("stderr" if content["name"] == "stderr" else "stdout", content["text"])
            elif kind in ("execute_result", "display_data"):
                text = content.get("data", {}).get("text/plain")
                if text is not None:
                    on_output("result", text + "\n")
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
                trace = _ANSI.sub("", "\n".join(content.get("traceback", [])))
                on_output("error", trace + "\n")
                if content["ename"] == "KeyboardInterrupt":
                    error = "KeyboardInterrupt"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        duration = time.monotonic() - started
        if error == "KeyboardInterrupt":
            if interrupted_for_timeout:
                return ExecResult("timeout", duration, f"cell ran past {timeout:g} s: interrupted")
            return ExecResult("interrupted", duration, "interrupted")
        return ExecResult("error" if error else "ok", duration, error)

    async def interrupt(self) -> None:
        if self.is_alive():
            await self._km.interrupt_kernel()

    async def restart(self) -> None:
        self._stop_client()
        await self._kill_group()
        await self._km.restart_kernel(now=True, newports=True)
        self._pgid = _pgid(self.pid)
        await self._connect()
        if self._setup_args is not None:
            await self._run_setup()

    def _stop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.stop_channels()
            self._client = None

    async def _reap(self, limit: float = 1.0) -> None:
        """Wait (briefly, finely) for the killed process, so jupyter_client's 0.1 s polls
        find it already gone."""
        process = getattr(self._km.provisioner, "process", None)
        deadline = time.monotonic() + limit
        while process is not None and process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    async def _kill_group(self) -> None:
        if self._pgid is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._pgid, signal.SIGKILL)

    async def shutdown(self) -> None:
        self._stop_client()
        await self._kill_group()
        await self._reap()
        with contextlib.suppress(Exception):
            await self._km.shutdown_kernel(now=True)
        with contextlib.suppress(Exception):
            await self._km.cleanup_resources()


def _pgid(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class LocalKernelPool:
    """Kernels started ahead of need; ``acquire`` takes a warm one and starts its successor."""

    def __init__(
        self,
        size: int = defaults.POOL_SIZE,
        env: dict[str, str] | None = None,
        memory_limit_mb: int | None = None,
        startup_code: str = "",
    ) -> None:
        self.size = size
        self._root = Path(tempfile.mkdtemp(prefix="rlm-kernels-"))
        os.chmod(self._root, 0o700)
        self._specs = _private_kernelspecs(self._root)
        self._env = kernel_env(env or {})
        self._memory_limit_mb = memory_limit_mb
        self._startup_code = startup_code
        self._warm: asyncio.Queue[asyncio.Task[LocalKernel]] = asyncio.Queue()
        self._all: set[LocalKernel] = set()
        self._closed = False

    def _launch(self) -> asyncio.Task[LocalKernel]:
        kernel = LocalKernel(
            self._root, self._specs, self._env, self._memory_limit_mb, self._startup_code
        )
        self._all.add(kernel)

        async def boot() -> LocalKernel:
            starting = asyncio.ensure_future(kernel.start())
            try:
                await asyncio.shield(starting)
            except BaseException:
                # cancelled mid-launch: let the launch finish, so the process is known and dies
                with contextlib.suppress(BaseException):
                    await starting
                await kernel.shutdown()
                self._all.discard(kernel)
                raise
            return kernel

        return asyncio.ensure_future(boot())

    async def start(self) -> None:
        while self._warm.qsize() < self.size and not self._closed:
            self._warm.put_nowait(self._launch())

    async def acquire(self) -> LocalKernel:
        if self._closed:
            raise RuntimeError("the kernel pool is closed")
        task = self._warm.get_nowait() if not self._warm.empty() else self._launch()
        if self.size and not self._closed:
            self._warm.put_nowait(self._launch())
        try:
            return await task
        except Exception as exc:
            raise RuntimeError(f"kernel failed to start: {exc}") from exc

    async def release(self, kernel: Any) -> None:
        await kernel.shutdown()
        self._all.discard(kernel)

    async def close(self) -> None:
        """Shut down every kernel, warm, busy or still booting; safe to call twice."""
        self._closed = True
        while not self._warm.empty():
            task = self._warm.get_nowait()
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(k.shutdown() for k in list(self._all)), return_exceptions=True)
        self._all.clear()
        shutil.rmtree(self._root, ignore_errors=True)

    async def __aenter__(self) -> LocalKernelPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
