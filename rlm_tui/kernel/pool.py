"""Local kernels forked from a template process, a few kept ready ahead of need; a run's
pool forks from the template its process shares between runs of the same sandbox settings.

The template (``zygote``) has imported ipykernel, IPython and the prelude once; each kernel is
a fork of it that was never used, so every agent starts pristine, in tens of milliseconds. The
host talks to a kernel over its shell and iopub channels only (``channels``), on the "ipc"
transport in a private directory (no kernel manager, no ``wait_for_ready`` polling: its iopub's
welcome says it is up). Processes are only ever signalled through the template, which also
reports each kernel's exit, so a dead kernel is an ``ExecResult`` with a reason, never a hang;
and the template's command line passes through ``wrap``: the run's sandbox (``sandbox.py``)
holds the template and every kernel it forks. Each kernel has a directory of its own under the
runtime root (its connection and ipc files, its scratch, the links to its context and the
bridge socket); in the sandbox a kernel sees only that one (``zygote.isolate``). Kernels get an allowlisted
environment; unsandboxed, each is tagged in it, so what its cells start in sessions of their
own is found and killed (at its end, or at the next start after a kill -9 of the host).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq.asyncio

from rlm_tui import defaults
from rlm_tui.kernel import wire
from rlm_tui.kernel.base import ContextKind, ExecResult, OutputCallback, ignore_output
from rlm_tui.kernel.cells import CellReader, unstoppable
from rlm_tui.kernel.channels import KernelChannels
from rlm_tui.kernel.prelude import SETUP_NAME
from rlm_tui.kernel.reserve import WarmReserve
from rlm_tui.kernel.rundirs import private_dir, sweep_stale
from rlm_tui.kernel.sandbox import Sandbox, SandboxPolicy, resolve_sandbox
from rlm_tui.kernel.zygote import KERNEL_IPYTHONDIR, SANDBOXED, children

START_TIMEOUT = 60.0
GRACE_AFTER_INTERRUPT = 2.0
RECONNECT_MS = 5
"""zmq retries a connect to a kernel that has not bound yet this often (its default: 100 ms)."""
KERNEL_TAG = "RLM_TUI_KERNEL"
"""In each kernel's environment (inherited by what its cells start): the kernel's directory."""
# the host's variables a kernel gets: locale, terminal, search path, and the knobs numeric
# libraries need (this machine sets OPENBLAS_CORETYPE for correctness); nothing else
_ALLOWED_ENV = re.compile(
    r"PATH|TERM|COLORTERM|NO_COLOR|LANG|LANGUAGE|LC_\w+|TZ|PYTHON\w*|RLM_TUI_\w+"
    r"|OPENBLAS_\w+|OMP_\w+|MKL_\w+|GOTO_\w+|NUMEXPR_\w+|VECLIB_\w+|BLIS_\w+|KMP_\w+"
)
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|CREDENTIAL|AUTH", re.IGNORECASE)
_CHANNELS = ("shell", "iopub", "stdin", "control", "hb")

Wrap = Callable[[list[str], Path], list[str]]
"""Wraps the template's command line (a sandbox); gets the runtime directory the template and
its kernels write to (ipc files, each kernel's scratch)."""


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


def exit_reason(status: int, memory_limit_mb: int | None) -> str:
    """A kernel's wait status in words."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else "?"
        reason = f"kernel process died (killed by signal {number}, {name})"
    else:
        reason = f"kernel process exited with status {os.waitstatus_to_exitcode(status)}"
    if memory_limit_mb:
        reason += f"; its memory cap is {memory_limit_mb} MB"
    return reason


class Zygote:
    """The host's end of the template process: fork requests out, exits back."""

    def __init__(self, env: dict[str, str], root: Path, wrap: Wrap) -> None:
        self._env = env
        self._root = root
        self._wrap = wrap
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._forks: dict[str, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._gone_reason = ""
        self._socket: socket.socket | None = None
        self._connecting: asyncio.Future[asyncio.StreamWriter] | None = None
        self._template_pid: asyncio.Future[int] | None = None
        """The template's own pid, as it reports it (its sandbox's PID namespace's)."""
        self._host_template: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop its connection lives on, once connected."""
        self._known: dict[int, int] = {}
        """The template's children seen so far: pid in the sandbox -> pid on the host."""

    def launch(self) -> None:
        """Start the template now; it imports while the host goes on (requests queue)."""
        if self._process is not None:
            return
        ours, theirs = socket.socketpair()
        argv = [interpreter(), "-m", "rlm_tui.kernel.zygote", str(theirs.fileno())]
        with open(self._root / "zygote.log", "wb") as log:
            self._process = subprocess.Popen(
                self._wrap(argv, self._root),
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a terminal's Ctrl-C or hangup is the host's to handle
            )
        theirs.close()
        self._socket = ours

    def usable(self) -> bool:
        """Not ended, and bound to no event loop or to the running one."""
        if self._gone_reason or (self._process is not None and self._process.poll() is not None):
            return False
        if self._loop is None:
            return True
        try:
            return self._loop is asyncio.get_running_loop()
        except RuntimeError:
            return False

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._loop = asyncio.get_running_loop()
            self.launch()
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> asyncio.StreamWriter:
        assert self._socket is not None
        reader, writer = await asyncio.open_unix_connection(sock=self._socket)
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._read(reader))
        return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await wire.read_frame(reader)
                if "ready" in message:
                    self._ready().set_result(int(message["ready"]))
                elif "forked" in message:
                    future = self._forks.pop(str(message["forked"]), None)
                    if future is not None and not future.done():
                        future.set_result(int(message["pid"]))
                elif "exited" in message:
                    self._known.pop(int(message["exited"]), None)  # its pid may come again
                    done = self._exits.setdefault(int(message["exited"]), _future())
                    if not done.done():
                        done.set_result(int(message["status"]))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        self._gone_reason = self._why_gone()
        waiting = [self._template_pid] if self._template_pid is not None else []
        for future in [*self._forks.values(), *self._exits.values(), *waiting]:
            if not future.done():
                future.set_exception(RuntimeError(self._gone_reason))

    def _why_gone(self) -> str:
        log = ""
        with contextlib.suppress(OSError):
            lines = (self._root / "zygote.log").read_text(errors="replace").strip().splitlines()
            log = f": {lines[-1]}" if lines else ""
        return f"the kernel template process ended{log}"

    async def fork(self, request: dict[str, Any]) -> int:
        if self._gone_reason:
            raise RuntimeError(self._gone_reason)
        writer = await self._connect()
        future: asyncio.Future[int] = _future()
        self._forks[str(request["kernel_id"])] = future
        if self._gone_reason:  # it ended while we connected
            raise RuntimeError(self._gone_reason)
        writer.write(wire.encode({"op": "fork", **request}))
        pid = await future
        self._exits.setdefault(pid, _future())
        return pid

    def _ready(self) -> asyncio.Future[int]:
        if self._template_pid is None:
            self._template_pid = _future()
        return self._template_pid

    async def host_pid(self, pid: int, keeper: bool) -> int:
        """A kernel's pid as the host sees it, from the pid the template reported.

        The template, in a sandbox's PID namespace, reports that namespace's pids: the host's
        /proc says which of the template's children has it (``NSpid``: its pid in each
        namespace, the host's first). ``keeper``: that child is the kernel's keeper (outside
        the kernel's own PID namespace); the kernel is its one child."""
        assert self._process is not None
        template = await asyncio.shield(self._ready())
        found: int | None = pid
        if template != self._process.pid:  # a namespace between host and template
            if self._host_template is None:
                self._host_template = _descendant(self._process.pid, template, depth=3)
            found = _child_with_nspid(self._host_template, pid, self._known)
        if found is not None and keeper:
            found = next(iter(children(found)), None)  # a keeper's one child: its kernel
        if found is None:
            raise RuntimeError(f"kernel {pid} of the sandbox is not among its processes")
        return found

    def exited(self, pid: int) -> asyncio.Future[int]:
        """Resolves to the kernel's wait status when it ends (an error if the template did)."""
        return self._exits.setdefault(pid, _future())

    def signal(self, pid: int, number: int) -> None:
        """Signal a kernel's process group (the kernel and whatever its cells started)."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.encode({"op": "signal", "pid": pid, "signal": number}))

    def kill(self) -> None:
        """End the template outside any event loop: its end of the socket closes, so it kills
        its kernels and what their cells left on its way out; killed if it takes a second."""
        if self._socket is not None:
            self._socket.close()
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(1.0)
            self._process.kill()
            self._process.wait()

    async def close(self) -> None:
        """Stop the template; it kills every kernel it forked on its way out."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(wire.encode({"op": "exit"}))
                self._writer.close()
        elif self._socket is not None:
            self._socket.close()
        if self._process is not None:
            deadline = time.monotonic() + 1.0
            while self._process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
        if self._reader_task is not None:
            with contextlib.suppress(BaseException):
                await self._reader_task


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


def _inner_pid(pid: int) -> int | None:
    """The pid of host process ``pid`` in the namespace one level below the host's."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[2])
    return None


def _child_with_nspid(parent: int | None, inner_pid: int, known: dict[int, int]) -> int | None:
    """The host pid of the child of ``parent`` whose inner pid is ``inner_pid``; ``known``
    caches the children already read (an entry goes when its process is reaped)."""
    if parent is None:
        return None
    if inner_pid not in known:
        seen = set(known.values())
        for child in children(parent):
            if child not in seen and (inner := _inner_pid(child)) is not None:
                known[inner] = child
    return known.get(inner_pid)


def _descendant(ancestor: int, inner_pid: int, depth: int) -> int | None:
    """The host pid of the process under ``ancestor`` (at most ``depth`` levels down) whose pid
    in the namespace one level below the host's is ``inner_pid``."""
    level = [ancestor]
    for _ in range(depth):
        below = [child for pid in level for child in children(pid)]
        for pid in below:
            if _inner_pid(pid) == inner_pid:
                return pid
        level = below
    return None


def interpreter() -> str:
    """This interpreter's path as the sandbox binds it: its directory resolved (a path through
    ``..`` or a symlinked directory does not exist there), its own name kept (a venv's
    ``python`` is a symlink to the base interpreter, which would not see the venv)."""
    path = Path(sys.executable)
    return str(path.parent.resolve() / path.name)


class LocalKernel:
    """One forked kernel and its client; cells on it run one at a time."""

    def __init__(
        self,
        root: Path,
        zygote: Zygote,
        env: dict[str, str],
        memory_limit_mb: int | None,
        sandbox: Sandbox,
        running: Callable[[], contextlib.AbstractContextManager[None]],
        warm_up: bool = True,
        output_limit: int | None = None,
    ) -> None:
        """``running``: held around each cell (the pool's ``WarmReserve.running``);
        ``warm_up``: its first start runs the warm-up pass (``start``); ``output_limit``: the
        characters of a cell's printed output the kernel sends (``outstream``)."""
        self._warm_up = warm_up
        self._output_limit = output_limit
        self.kernel_id = uuid.uuid4().hex[:8]
        self._running = running
        self._root = root
        self._home = root / f"k-{self.kernel_id}"
        """Everything of this kernel: in the sandbox, the one directory of the root it sees."""
        self._zygote = zygote
        self._sandbox = sandbox
        self._memory_limit_mb = memory_limit_mb
        self._scratch = self._home / "scratch"
        self._tag = f"{KERNEL_TAG}={self._home}"
        scratch = str(self._scratch)
        self._env = {**env, "HOME": scratch, "TMPDIR": scratch, KERNEL_TAG: str(self._home)}
        self._client: KernelChannels | None = None
        self._pid: int | None = None
        """Its pid as the template knows it (to signal it through the template)."""
        self._host_pid: int | None = None
        self._exited: asyncio.Future[int] | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._setup_args: tuple[str, Path | None, ContextKind, dict[str, str] | None] | None = None

    @property
    def pid(self) -> int | None:
        """Its pid on the host."""
        return self._host_pid

    @property
    def scratch(self) -> Path:
        """Its private working directory (its cwd; outside the sandbox, IPython's profile too)."""
        return self._scratch

    def is_alive(self) -> bool:
        return self._exited is not None and not self._exited.done()

    def _exit_reason(self) -> str:
        if self._exited is None or not self._exited.done():
            return "kernel process died"
        if self._exited.exception() is not None:
            return str(self._exited.exception())
        reason = exit_reason(self._exited.result(), self._memory_limit_mb)
        err = self._connection_file().with_name(self._connection_file().name + ".err")
        with contextlib.suppress(OSError):
            reason += f": {err.read_text().strip()}"
        return reason

    def _connection_file(self) -> Path:
        return self._home / f"c-{self._generation}.json"

    def _write_files(self, path: Path, info: dict[str, Any]) -> None:
        self._scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)

    async def start(self) -> None:
        """Fork a kernel and wait for its first reply (zmq queues until the kernel binds)."""
        self._generation += 1
        key = secrets.token_hex(16)
        info: dict[str, Any] = {
            "transport": "ipc",
            "ip": str(self._home / f"c-{self._generation}"),
            **{f"{name}_port": n for n, name in enumerate(_CHANNELS, 1)},
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "rlm-tui",
        }
        path = self._connection_file()
        # file system calls wait on the sandboxes' mount work during a fan-out: off the loop
        await asyncio.to_thread(self._write_files, path, info)
        ipython = KERNEL_IPYTHONDIR if self._sandbox.active else str(self._scratch / ".ipython")
        env = {**self._env, "IPYTHONDIR": ipython}
        request = {
            "kernel_id": self.kernel_id,
            "connection_file": str(path),
            "cwd": str(self._scratch),
            "env": env,
            "memory_limit_mb": self._memory_limit_mb,
            "output_limit": self._output_limit,
            "isolate": {"root": str(self._root), "own": str(self._home)}
            if self._sandbox.active
            else None,
        }
        self._pid = await self._zygote.fork(request)
        self._exited = self._zygote.exited(self._pid)
        ports = {name: info[f"{name}_port"] for name in _CHANNELS}
        self._client = KernelChannels(_zmq_context(), info["ip"], ports, key)
        await self._handshake()
        # once it answers, the kernel exists (in the sandbox: its keeper's child)
        self._host_pid = await self._zygote.host_pid(self._pid, keeper=self._sandbox.active)
        # a request's first pass through the kernel copies the template's pages it touches
        # (~10 ms of CPU here): paid now, in the reserve, not by the agent's setup and first
        # cell. Silent: no execution count, no history, no output. A kernel an agent already
        # waits for (started on demand, or restarted) skips it: its setup pays those copies
        # anyway, and the pass would add a cell's own cost (~4 ms) to the wait.
        if self._warm_up:
            self._warm_up = False
            await self._run_cell("pass", ignore_output, None, silent=True)

    async def _handshake(self) -> None:
        """Wait until the kernel's iopub welcomes our subscription (ipykernel 7): it is up, no
        output can be missed, and requests queue on its shell socket, bound before iopub."""
        client = self._client
        assert client is not None and self._exited is not None
        deadline = time.monotonic() + START_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            msg = await client.receive(client.iopub, left, until=self._exited)
            if not self.is_alive():
                raise RuntimeError(self._exit_reason())
            if msg is not None and msg["msg_type"] == "iopub_welcome":
                return
        raise RuntimeError(f"the kernel did not answer within {START_TIMEOUT:g} s")

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
        path = str(self._visible(context_path, "context")) if context_path else ""
        grant = ""
        if bridge is not None:
            socket_path = self._visible(Path(bridge["path"]), "bridge")
            grant_path = self._home / "grant.json"
            fd = os.open(grant_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**bridge, "path": str(socket_path)}, f)
            grant = str(grant_path)
        code = f"{SETUP_NAME}({agent_id!r}, {path!r}, {kind!r}, {grant!r})"
        result = await self._execute(code, ignore_output, None, silent=True)
        if result.status != "ok":
            raise RuntimeError(f"kernel setup failed: {result.error}")

    def readable(self, path: Path, name: str) -> Path:
        return self._visible(path, f"input-{name}")

    def _visible(self, path: Path, into: str) -> Path:
        """``path`` where the sandboxed kernel can reach it: hard-linked (a file that cannot be
        linked is copied) into its own directory; unsandboxed, where it is."""
        if not self._sandbox.active:
            return path
        target = self._home / into / path.name
        if target.parent.exists():
            shutil.rmtree(target.parent)
        target.parent.mkdir(mode=0o700)
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
        with self._running():
            return await self._run_cell(code, on_output, timeout, silent)

    async def _run_cell(
        self, code: str, on_output: OutputCallback, timeout: float | None, silent: bool
    ) -> ExecResult:
        started = time.monotonic()
        if not self.is_alive():
            return ExecResult("killed", 0.0, self._exit_reason())
        client = self._client
        assert client is not None
        msg_id = client.execute(code, silent=silent)
        reader = CellReader(msg_id, on_output)
        deadline = started + timeout if timeout else None
        interrupted_for_timeout = False
        while True:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                if interrupted_for_timeout:
                    await self.restart()
                    return unstoppable(timeout, started)
                interrupted_for_timeout = True
                await self.interrupt()
                deadline = time.monotonic() + GRACE_AFTER_INTERRUPT
            wait = deadline - time.monotonic() if deadline is not None else START_TIMEOUT
            msg = await client.receive(client.iopub, wait, until=self._exited)
            if msg is None:
                if not self.is_alive():
                    return ExecResult("killed", time.monotonic() - started, self._exit_reason())
                continue
            if reader.feed(msg):
                break
        return reader.result(
            time.monotonic() - started, timeout if interrupted_for_timeout else None
        )

    async def interrupt(self) -> None:
        if self.is_alive() and self._pid is not None:
            self._zygote.signal(self._pid, signal.SIGINT)

    async def restart(self) -> None:
        await self._stop()
        await self.start()
        if self._setup_args is not None:
            await self._run_setup()

    async def _stop(self) -> None:
        """Kill the process group, wait (briefly) until the template saw it end, drop files."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._pid is not None and self._exited is not None:
            self._zygote.signal(self._pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._exited), 1.0)
        for leftover in self._home.glob(f"c-{self._generation}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    async def shutdown(self) -> None:
        await self._stop()
        await asyncio.to_thread(self._remove)  # /proc scans and file removal: off the loop

    def _remove(self) -> None:
        if not self._sandbox.active:  # in a sandbox, its end takes every process along
            kill_tagged(self._tag)
        shutil.rmtree(self._home, ignore_errors=True)


def kill_tagged(tag: str) -> None:
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


_CONTEXT: zmq.asyncio.Context | None = None


def _zmq_context() -> zmq.asyncio.Context:
    """One zmq context (one io thread) for every client of this host."""
    global _CONTEXT
    if _CONTEXT is None or _CONTEXT.closed:
        _CONTEXT = zmq.asyncio.Context()
        _CONTEXT.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
    return _CONTEXT


def new_template(
    sandbox: Sandbox, env: dict[str, str], wrap: Wrap | None = None
) -> tuple[Path, Zygote]:
    """A runtime root and a template for it (not started yet), in ``sandbox``: the runtime
    root bound read-write at its own path (host and kernels name every file alike), its cwd
    and ``$HOME``."""
    for stale in sweep_stale("rlm-kernels-"):  # what unsandboxed kernels of dead runs left
        kill_tagged(f"{KERNEL_TAG}={stale}")
    root = private_dir("rlm-kernels-")

    def in_sandbox(argv: list[str], runtime_dir: Path) -> list[str]:
        if not sandbox.active:
            return argv
        return sandbox.command([*argv, SANDBOXED], scratch=runtime_dir)

    # the shell the template builds puts its profile in IPYTHONDIR: the runtime root's
    template_env = {**env, KERNEL_TAG: str(root), "IPYTHONDIR": str(root / ".ipython")}
    return root, Zygote(template_env, root, wrap or in_sandbox)


class SharedTemplates:
    """The kernel templates the runs of this process share, one per sandbox and kernel
    environment: a run after the first forks its kernels at once instead of waiting for a
    template to start and import. Each runs until ``close_all``, called at the process's exit
    (it dies with the process anyway, however that ends, and its kernels with it); a template
    bound to an event loop that is gone is replaced. Kernels of every sharing run have their
    directories in its runtime root, each seeing only its own in the sandbox."""

    def __init__(self) -> None:
        self._templates: dict[tuple[Any, ...], tuple[Path, Zygote, bool]] = {}

    def get(self, sandbox: Sandbox, env: dict[str, str]) -> tuple[Path, Zygote]:
        key = (sandbox, tuple(sorted(env.items())))
        if key in self._templates:
            root, zygote, _ = self._templates[key]
            if zygote.usable():
                return root, zygote
            self._close(*self._templates.pop(key))
        root, zygote = new_template(sandbox, env)
        self._templates[key] = (root, zygote, sandbox.active)
        return root, zygote

    def close_all(self) -> None:
        while self._templates:
            self._close(*self._templates.popitem()[1])

    @staticmethod
    def _close(root: Path, zygote: Zygote, sandboxed: bool) -> None:
        zygote.kill()  # its kernels die with it
        if not sandboxed:
            kill_tagged(f"{KERNEL_TAG}={root}")
        shutil.rmtree(root, ignore_errors=True)


SHARED_TEMPLATES = SharedTemplates()
atexit.register(SHARED_TEMPLATES.close_all)


class LocalKernelPool(WarmReserve[LocalKernel]):
    """Kernels forked ahead of need from the template."""

    def __init__(
        self,
        size: int = defaults.POOL_SIZE,
        env: dict[str, str] | None = None,
        memory_limit_mb: int | None = None,
        sandbox: Sandbox | None = None,
        pass_env: Sequence[str] = (),
        wrap: Wrap | None = None,
        shared: bool = False,
        output_limit: int | None = None,
    ) -> None:
        """``sandbox``: the run's (default: the machine's, mode auto); ``wrap`` replaces it
        around the template's command line (tests); ``shared``: fork from this process's
        template for the same sandbox and environment (``SHARED_TEMPLATES``), not one of its
        own; ``output_limit``: as ``LocalKernel``'s."""
        super().__init__(size)
        self._output_limit = output_limit
        self.sandbox = sandbox or resolve_sandbox(SandboxPolicy())
        self._env = kernel_env(env or {}, pass_env)
        self._memory_limit_mb = memory_limit_mb
        self._owns_template = not shared or wrap is not None
        if self._owns_template:
            self._root, self._zygote = new_template(self.sandbox, self._env, wrap)
        else:
            self._root, self._zygote = SHARED_TEMPLATES.get(self.sandbox, self._env)

    def launch(self) -> None:
        """Start the template process at once (it imports on its own core meanwhile)."""
        self._zygote.launch()

    def abandon(self) -> None:
        """Undo ``launch`` outside any event loop (the run never started)."""
        self._closed = True
        if self._owns_template:
            self._zygote.kill()
            shutil.rmtree(self._root, ignore_errors=True)

    async def new_kernel(self, ahead: bool) -> LocalKernel:
        return LocalKernel(
            self._root,
            self._zygote,
            self._env,
            self._memory_limit_mb,
            self.sandbox,
            self.running,
            warm_up=ahead,
            output_limit=self._output_limit,
        )

    async def close_rest(self) -> None:
        if self._owns_template:
            await self._zygote.close()
            if not self.sandbox.active:
                kill_tagged(f"{KERNEL_TAG}={self._root}")
            shutil.rmtree(self._root, ignore_errors=True)

    async def __aenter__(self) -> LocalKernelPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
