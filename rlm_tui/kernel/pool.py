"""Local ipykernel processes, kept warm in a pool so a sub-agent never waits for one to boot.

Each kernel: ``AsyncKernelManager`` over the "ipc" transport in a private directory, a private
kernelspec that runs this interpreter (in the run's sandbox), its output to /dev/null, its own
process group (killed whole on shutdown, so processes a cell forked die with it), an
environment of allowed names only, a private scratch directory as cwd and ``$HOME``, and the
prelude already run. AsyncKernelManager has no auto-restarter, so ``execute`` watches
the process itself: a dead kernel is an ``ExecResult`` with a reason, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from rlm_tui.kernel.base import ContextKind, ExecResult, OutputCallback
from rlm_tui.kernel.prelude import PRELUDE
from rlm_tui.kernel.rundirs import private_dir, sweep_stale
from rlm_tui.kernel.sandbox import Sandbox, SandboxPolicy, resolve_sandbox

KERNEL_NAME = "rlm-tui-python"
KERNEL_TAG = "RLM_TUI_KERNEL"
"""In each kernel's environment (inherited by what its cells start): the kernel's directory."""
START_TIMEOUT = 60.0
POLL = 0.2
GRACE_AFTER_INTERRUPT = 2.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# the host's variables a kernel gets: locale, terminal, search path, and the knobs numeric
# libraries need (this machine sets OPENBLAS_CORETYPE for correctness); nothing else
_ALLOWED_ENV = re.compile(
    r"PATH|TERM|COLORTERM|NO_COLOR|LANG|LANGUAGE|LC_\w+|TZ|PYTHON\w*|RLM_TUI_\w+"
    r"|OPENBLAS_\w+|OMP_\w+|MKL_\w+|GOTO_\w+|NUMEXPR_\w+|VECLIB_\w+|BLIS_\w+|KMP_\w+"
)
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|CREDENTIAL|AUTH", re.IGNORECASE)
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def kernel_env(extra: dict[str, str], passed: Sequence[str] = ()) -> dict[str, str]:
    """An allowlist of the host's environment, plus the names the user passes on purpose
    (``--kernel-env NAME``); a secret-looking name gets through only that way."""
    env = {
        k: v for k, v in os.environ.items() if _ALLOWED_ENV.fullmatch(k) and not _SECRET.search(k)
    }
    env.update({k: os.environ[k] for k in passed if k in os.environ})
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _die_with_host() -> None:
    """In an unsandboxed kernel, before exec: SIGKILL when the host dies, however it dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Manager(AsyncKernelManager):
    """A kernel manager whose launch command goes through the run's sandbox."""

    wrap: Any = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        return self.wrap(argv) if self.wrap is not None else argv


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
        sandbox: Sandbox,
    ) -> None:
        self.kernel_id = uuid.uuid4().hex[:8]
        # its own directories: ipc files (and the one-time grant), its context, its scratch
        self._home = home = root / f"k-{self.kernel_id}"
        self._ipc, self._inbox, self._scratch = home / "ipc", home / "context", home / "scratch"
        for path in (self._ipc, self._inbox, self._scratch):
            path.mkdir(mode=0o700, parents=True)
        self._sandbox = sandbox
        self._km = _Manager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
        self._km.wrap = lambda argv: sandbox.command(
            argv, scratch=self._scratch, writable=[self._ipc], read_only=[self._inbox]
        )
        self._km.transport = "ipc"
        self._km.ip = str(self._ipc / "k")
        self._km.connection_file = str(self._ipc / "connection.json")
        self._tag = f"{KERNEL_TAG}={home}"
        scratch = str(self._scratch)
        self._env = {**env, "HOME": scratch, "TMPDIR": scratch, KERNEL_TAG: str(home)}
        self._memory_limit_mb = memory_limit_mb
        self._startup_code = startup_code
        self._client: Any = None
        self._lock = asyncio.Lock()
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
            env=self._env,
            cwd=str(self._scratch),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=None if self._sandbox.active else _die_with_host,
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
        path = str(self._visible(context_path, self._inbox)) if context_path else ""
        grant = ""
        if bridge is not None:
            socket_path = self._visible(Path(bridge["path"]), self._ipc)
            grant_path = self._ipc / "grant.json"
            fd = os.open(grant_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**bridge, "path": str(socket_path)}, f)
            grant = str(grant_path)
        await self._run_internal(f"_rlm_setup({agent_id!r}, {path!r}, {kind!r}, {grant!r})")

    def _visible(self, path: Path, into: Path) -> Path:
        """``path`` where the sandboxed kernel can reach it: hard-linked (a file that cannot be
        linked is copied) into one of its bound directories; unsandboxed, where it is."""
        if not self._sandbox.active:
            return path
        target = into / path.name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        if path.is_dir():
            shutil.copytree(path, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(path), str(target))
        return target

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
        if not self._sandbox.active:  # a sandbox's end takes all of its processes along
            _kill_tagged(self._tag)
        await self._reap()
        with contextlib.suppress(Exception):
            await self._km.shutdown_kernel(now=True)
        with contextlib.suppress(Exception):
            await self._km.cleanup_resources()
        shutil.rmtree(self._home, ignore_errors=True)


def _kill_tagged(tag: str) -> None:
    """SIGKILL every process whose environment holds ``tag`` (or ``tag/...``): what a cell
    started in a session of its own, out of the kernel's process group."""
    entry, below = tag.encode(), tag.encode() + b"/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            variables = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v == entry or v.startswith(below) for v in variables):
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        if stat.S_ISSOCK(os.stat(source).st_mode):
            raise
        shutil.copy2(source, target)


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
        size: int = 2,
        env: dict[str, str] | None = None,
        memory_limit_mb: int | None = None,
        startup_code: str = "",
        sandbox: Sandbox | None = None,
        pass_env: Sequence[str] = (),
    ) -> None:
        self.size = size
        self.sandbox = sandbox or resolve_sandbox(SandboxPolicy())
        for stale in sweep_stale("rlm-kernels-"):  # what unsandboxed kernels of dead runs left
            _kill_tagged(f"{KERNEL_TAG}={stale}")
        self._root = private_dir("rlm-kernels-")
        self._specs = _private_kernelspecs(self._root)
        self._env = kernel_env(env or {}, pass_env)
        self._memory_limit_mb = memory_limit_mb
        self._startup_code = startup_code
        self._warm: asyncio.Queue[asyncio.Task[LocalKernel]] = asyncio.Queue()
        self._all: set[LocalKernel] = set()
        self._closed = False

    def _launch(self) -> asyncio.Task[LocalKernel]:
        kernel = LocalKernel(
            self._root,
            self._specs,
            self._env,
            self._memory_limit_mb,
            self._startup_code,
            self.sandbox,
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
