"""Kernels on a Jupyter Kernel Gateway or Enterprise Gateway: a run whose kernels live elsewhere.

Kernels are created, interrupted, restarted and deleted through the gateway's REST API and
driven over its websocket channels with jupyter_server's own gateway client
(``GatewayKernelManager`` / ``GatewayKernelClient``). Two gaps of that client used standalone
are closed here: its websocket handshake does not send the auth token (a token-protected
gateway answers 401), and its channel queues wait by spinning the event loop; our client
sends the token and wakes a waiting cell when a message arrives (and see ``_WebSocket``).

A remote kernel cannot import rlm_tui nor read the host's files: the kernel-side modules are
sent as source, the bridge's TCP address and token arrive in the silent setup call (kept out
of the kernel's input history), and the context is offered on the bridge, which the kernel
fetches in chunks and checks by size and hash. The engine never knows the difference: this
is a ``KernelProvider`` like the local pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from threading import Thread
from typing import Any
from urllib.parse import urlsplit

import websocket
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import (
    ChannelQueue,
    GatewayKernelClient,
    GatewayKernelManager,
)
from jupyter_server.utils import url_escape, url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from rlm_tui import values
from rlm_tui.errors import KernelError, UsageError
from rlm_tui.kernel import aio_link, answer_check, awaiting, outstream, prelude, wire
from rlm_tui.kernel.base import ContextKind, ExecResult, OutputCallback, ignore_output
from rlm_tui.kernel.bridge import BridgeServer
from rlm_tui.kernel.cells import CellReader, unstoppable
from rlm_tui.kernel.reserve import WarmReserve

START_TIMEOUT = 60.0
PROBE_TIMEOUT = 10.0
POLL = 0.2
LIVENESS_EVERY = 1.0
"""Seconds of silence in a cell after which the gateway is asked whether the kernel exists."""
GRACE_AFTER_INTERRUPT = 2.0
DEFAULT_TOKEN_ENV = "JUPYTER_GATEWAY_AUTH_TOKEN"
URL_ENV = "JUPYTER_GATEWAY_URL"


def _shipped_modules() -> str:
    """Code that makes the kernel-side modules importable in a kernel that lacks rlm_tui."""
    modules: list[tuple[str, str | None]] = [("rlm_tui", None), ("rlm_tui.kernel", None)]
    shipped = (values, wire, outstream, aio_link, answer_check, awaiting, prelude)  # imports first
    modules += [(m.__name__, inspect.getsource(m)) for m in shipped]
    return (
        "import sys as _s, types as _t\n"
        f"for _n, _src in {modules!r}:\n"
        "    _m = _s.modules[_n] = _t.ModuleType(_n)\n"
        "    if _src is None:\n"
        "        _m.__path__ = []\n"
        "    else:\n"
        "        exec(compile(_src, f'<rlm-tui {_n}>', 'exec'), _m.__dict__)\n"
        "del _s, _t, _n, _src, _m\n"
    )


INSTALL_CODE = _shipped_modules() + prelude.INSTALL_CODE


@dataclass(frozen=True)
class Gateway:
    """Where the kernels run: the gateway's base URL, its token (a secret, never recorded),
    and the kernelspec to start (``None``: the gateway's default)."""

    url: str
    token: str = ""
    kernel_name: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"bad kernel gateway URL {self.url!r}: expected http://HOST:PORT or https://..."
            )

    @classmethod
    def from_settings(
        cls, url: str, token_env: str | None = None, kernel_name: str | None = None
    ) -> Gateway:
        """The token is read from ``token_env`` (default JUPYTER_GATEWAY_AUTH_TOKEN) only here,
        so no setting, session or event ever holds it."""
        return cls(url, os.environ.get(token_env or DEFAULT_TOKEN_ENV, ""), kernel_name)

    @property
    def is_loopback(self) -> bool:
        return urlsplit(self.url).hostname in ("127.0.0.1", "localhost", "::1")

    def bridge_host(self, requested: str | None) -> str:
        """Where the bridge listens for this gateway's kernels: named, or loopback for a
        gateway on this machine."""
        if requested:
            return requested
        if self.is_loopback:
            return "127.0.0.1"
        raise UsageError(
            f"kernels on the gateway at {self.url} cannot reach this machine's loopback: give "
            "--bridge-host, an address of this machine they can reach"
        )

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


async def probe(gateway: Gateway) -> str:
    """Check the gateway answers and takes the token; the kernelspec name to start.

    One request (``GET /api/kernelspecs``), so a bad URL or token fails in a second with one
    line, before any model is called.
    """
    request = HTTPRequest(
        url_path_join(gateway.url, "/api/kernelspecs"),
        headers=gateway.headers(),
        connect_timeout=PROBE_TIMEOUT,
        request_timeout=PROBE_TIMEOUT,
    )
    try:
        response = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as exc:
        if exc.code in (401, 403):
            raise KernelError(
                f"the kernel gateway at {gateway.url} refused the token (HTTP {exc.code})"
            ) from None
        if exc.code == 599:
            raise KernelError(f"cannot reach the kernel gateway at {gateway.url}: {exc}") from None
        raise KernelError(
            f"{gateway.url} is not a Jupyter kernel gateway (HTTP {exc.code} for /api/kernelspecs)"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise KernelError(f"cannot reach the kernel gateway at {gateway.url}: {reason}") from None
    try:
        specs = json.loads(response.body)
        names = set(specs["kernelspecs"])
        default = str(specs.get("default") or "")
    except (ValueError, KeyError, TypeError):
        raise KernelError(f"{gateway.url} is not a Jupyter kernel gateway") from None
    name = gateway.kernel_name or default
    if name not in names:
        shown = ", ".join(sorted(names)) or "none"
        raise UsageError(f"the kernel gateway has no kernel {name!r}; it has: {shown}")
    return name


def _configure_client(gateway: Gateway) -> None:
    """jupyter_server's gateway client is configured through one process-wide singleton."""
    client = GatewayClient.instance()
    parts = urlsplit(gateway.url)
    client.url = gateway.url
    client.ws_url = parts._replace(scheme="wss" if parts.scheme == "https" else "ws").geturl()
    client.auth_token = gateway.token or None
    client.allowed_envs = ""


class _WakingQueue(ChannelQueue):
    """A channel queue that wakes its asyncio waiter when the router thread adds a message."""

    def __init__(self, name: str, sock: Any, log: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name, sock, log)
        self._loop = loop
        self._arrived = asyncio.Event()

    def put_nowait(self, item: Any) -> None:  # called on the router thread
        super().put_nowait(item)
        self._loop.call_soon_threadsafe(self._arrived.set)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds of silence."""
        while True:
            with contextlib.suppress(Empty):
                return dict(self.get_nowait())
            if self.response_router_finished:
                raise ConnectionError("the gateway closed the kernel's channels")
            self._arrived.clear()
            with contextlib.suppress(Empty):
                return dict(self.get_nowait())
            try:
                # not wait_for: on 3.11 it swallows a cancel that meets a message arriving
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()
            except TimeoutError:
                return None


class _WebSocket:
    """The kernel's websocket as our client uses it.

    It acknowledges what arrives at once: the gateway's server does not set TCP_NODELAY, so
    each of a cell's small messages would otherwise wait for our delayed ACK (measured: a
    trivial cell 56 ms through a loopback gateway, 26 ms with this). And it closes at once,
    waking the router thread, without the closing handshake, which waits up to 3 s (the
    event loop blocked) while the router thread reads the same socket.
    """

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws

    def recv(self) -> Any:
        sock = self._ws.sock
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):  # Linux only
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._ws.recv()

    def close(self) -> None:
        sock = self._ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the router thread out of its recv
        self._ws.shutdown()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


async def _opened(ws: websocket.WebSocket, url: str, headers: dict[str, str]) -> None:
    """Open the kernel's websocket on a thread of its own. The gateway answers the handshake
    once the kernel has answered, which may take a minute; a cancel stops the wait at once,
    and no thread of asyncio's executor is left for the end of ``asyncio.run`` to wait for
    (a Ctrl-C while a kernel started took the rest of that minute)."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if opened.done():
            return
        if error is None:
            opened.set_result(None)
        else:
            opened.set_exception(error)

    def connect() -> None:
        error: BaseException | None = None
        try:
            ws.connect(url, header=headers)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, error)

    Thread(target=connect, name="gateway-websocket", daemon=True).start()
    try:
        await opened
    except asyncio.CancelledError:
        if ws.sock is not None:  # wakes the handshake's read; a connect still under way ends
            with contextlib.suppress(OSError):  # on its own (the thread is a daemon)
                ws.sock.shutdown(socket.SHUT_RDWR)
        raise


class _Client(GatewayKernelClient):
    """``GatewayKernelClient`` with the token on the websocket, and waking queues."""

    async def start_channels(  # type: ignore[override]  # async, as in GatewayKernelClient
        self,
        shell: bool = True,
        iopub: bool = True,
        stdin: bool = True,
        hb: bool = True,
        control: bool = True,
    ) -> None:
        config = GatewayClient.instance()
        url = url_path_join(
            config.ws_url or "", config.kernels_endpoint, url_escape(self.kernel_id), "channels"
        )
        headers = {"Authorization": f"token {config.auth_token}"} if config.auth_token else {}
        self._loop = asyncio.get_running_loop()
        ws = websocket.WebSocket(enable_multithread=True)
        ws.settimeout(START_TIMEOUT)
        await _opened(ws, url, headers)
        self.channel_socket = _WebSocket(ws)  # type: ignore[assignment]
        AsyncKernelClient.start_channels(
            self, shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control
        )
        self.response_router = Thread(target=self._route_responses, daemon=True)
        self.response_router.start()

    def _waking(self, name: str) -> _WakingQueue:
        queue = _WakingQueue(name, self.channel_socket, self.log, self._loop)
        assert self._channel_queues is not None
        self._channel_queues[name] = queue
        return queue

    @property
    def shell_channel(self) -> _WakingQueue:
        if self._shell_channel is None:
            self._shell_channel = self._waking("shell")
        return self._shell_channel  # type: ignore[return-value]

    @property
    def iopub_channel(self) -> _WakingQueue:
        if self._iopub_channel is None:
            self._iopub_channel = self._waking("iopub")
        return self._iopub_channel  # type: ignore[return-value]


class GatewayKernel:
    """One kernel on the gateway and its websocket; cells on it run one at a time."""

    def __init__(
        self,
        kernel_name: str,
        bridge: BridgeServer,
        packer: _Packer,
        startup_code: str = "",
        output_limit: int | None = None,
    ) -> None:
        """``output_limit``: the characters of a cell's output the kernel sends (``outstream``)."""
        self.kernel_id = uuid.uuid4().hex[:8]
        self._output_limit = output_limit
        self.kernel_name = kernel_name
        self._bridge = bridge
        self._packer = packer
        self._km = GatewayKernelManager()
        self._km.client_factory = _Client
        self._client: _Client | None = None
        self._startup_code = startup_code
        self._lock = asyncio.Lock()
        self._pid: int | None = None
        self._dead: str | None = None
        self._gateway_restarts = False
        """The gateway said it is restarting the kernel itself."""
        self._busy = False
        """A cell was sent and its end not seen (it may still run: the run was cancelled)."""
        self._setup_args: tuple[str, Path | None, ContextKind, dict[str, str]] | None = None

    @property
    def gateway_id(self) -> str | None:
        """The kernel's id on the gateway (``/api/kernels/<id>``)."""
        return self._km.kernel_id

    @property
    def pid(self) -> int | None:
        """The kernel's process id on the gateway's machine."""
        return self._pid

    def is_alive(self) -> bool:
        return self._km.has_kernel and self._dead is None

    async def start(self) -> None:
        """Cancelled, it stops once the gateway has said the kernel's id (so ``shutdown`` can
        delete it), not after the kernel has answered, which may take its whole timeout."""
        created = asyncio.ensure_future(self._km.start_kernel(kernel_name=self.kernel_name))
        try:
            await asyncio.shield(created)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await created
            raise
        await self._connect()

    async def _connect(self) -> None:
        self._dead = None
        client = self._km.client()
        await client.start_channels()
        self._client = client
        await self._wait_ready()
        limit = "from rlm_tui.kernel.outstream import limit_output as _l\n_l(get_ipython(), {})"
        # two cells: a cell's stream writes are wrapped while it runs (IPython's copy) and put
        # back as they were when it ends, so the streams are limited in a cell after the copy
        # is turned off
        await self._run_internal(f"{INSTALL_CODE}\n{limit.format(None)}")
        pid: list[str] = []
        await self._run_internal(
            f"{limit.format(self._output_limit)}\ndel _l\n{self._startup_code}\n"
            "print(__import__('os').getpid())",
            lambda _s, text: pid.append(text),
        )
        self._pid = int("".join(pid).split()[-1])

    async def _wait_ready(self) -> None:
        """Ask for kernel_info until the kernel answers (it may still be starting)."""
        assert self._client is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            msg_id = self._client.kernel_info()
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                reply = await self._client.shell_channel.next(0.1)
                if reply is not None and reply["parent_header"].get("msg_id") == msg_id:
                    while await self._client.iopub_channel.next(0) is not None:
                        pass  # what the kernel said while it started is not a cell's
                    return
        raise KernelError(f"kernel {self.gateway_id} on the gateway did not answer")

    async def _run_internal(self, code: str, on_output: OutputCallback = ignore_output) -> None:
        result = await self._execute(code, on_output, None, silent=True)
        if result.status != "ok":
            raise RuntimeError(f"kernel setup failed: {result.error}")

    def readable(self, path: Path, name: str) -> Path:
        """A named input is read where it is: on a gateway that needs a shared filesystem
        (the context itself is streamed; inputs are not yet)."""
        return path

    async def setup(
        self,
        agent_id: str,
        context_path: Path | None,
        context_kind: ContextKind,
        bridge: dict[str, str] | None = None,
    ) -> None:
        """Bind the kernel; its context travels over the bridge (no shared disk)."""
        grant = {k: v for k, v in (bridge or {}).items() if k != "path"}
        self._setup_args = (agent_id, context_path, context_kind, grant)
        async with self._lock:
            await self._run_setup()

    async def _run_setup(self) -> None:
        assert self._setup_args is not None
        agent_id, context_path, kind, grant = self._setup_args
        offer = None
        if context_path is not None and kind != "none":
            packed = await asyncio.to_thread(self._packer.pack, context_path)
            offer = await asyncio.to_thread(self._bridge.offer, packed)
        try:
            await self._run_internal(
                f"{prelude.SETUP_NAME}({agent_id!r}, '', {kind!r}, {grant!r}, {offer!r})"
            )
        finally:
            if offer is not None:
                self._bridge.withdraw(offer["key"])

    async def execute(
        self, code: str, on_output: OutputCallback, timeout: float | None = None
    ) -> ExecResult:
        async with self._lock:
            return await self._execute(code, on_output, timeout)

    async def _execute(
        self, code: str, on_output: OutputCallback, timeout: float | None, silent: bool = False
    ) -> ExecResult:
        started = time.monotonic()
        if self._dead is not None or self._client is None:
            return ExecResult("killed", 0.0, self._dead or "kernel is not running")
        client = self._client
        msg_id = client.execute(code, silent=silent, store_history=not silent, allow_stdin=False)
        self._busy = True
        reader = CellReader(msg_id, on_output)
        deadline = started + timeout if timeout else None
        interrupted_for_timeout = False
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                if interrupted_for_timeout:
                    await self.restart()
                    return unstoppable(timeout, started)
                interrupted_for_timeout = True
                await self.interrupt()
                deadline = time.monotonic() + GRACE_AFTER_INTERRUPT
            try:
                msg = await client.iopub_channel.next(POLL)
            except ConnectionError as exc:
                return self._died(started, await self._death_reason(str(exc)))
            if msg is None:
                if time.monotonic() - quiet_since > LIVENESS_EVERY:
                    quiet_since = time.monotonic()
                    gone = await self._missing()
                    if gone:
                        return self._died(started, gone)
                continue
            quiet_since = time.monotonic()
            death = _death_in(msg)
            if death is not None:
                self._gateway_restarts = msg["msg_type"] == "status"
                return self._died(started, death)
            if reader.feed(msg):
                break
        self._busy = False
        return reader.result(
            time.monotonic() - started, timeout if interrupted_for_timeout else None
        )

    def _died(self, started: float, reason: str) -> ExecResult:
        self._dead = reason
        return ExecResult("killed", time.monotonic() - started, reason)

    async def _missing(self) -> str | None:
        """Why the kernel is gone from the gateway, or None if it is still there."""
        try:
            model = await self._km.refresh_model()
        except Exception as exc:
            return f"lost the kernel gateway: {exc}"
        if not model:
            return "the kernel was deleted on the gateway"
        if model.get("execution_state") in _RESTARTED:
            return "kernel process died on the gateway"
        return None

    async def _death_reason(self, fallback: str) -> str:
        return await self._missing() or fallback

    async def interrupt(self) -> None:
        if self.is_alive():
            await self._km.interrupt_kernel()

    async def restart(self) -> None:
        """A fresh kernel (restarted by the gateway, or a new one if it was deleted there)."""
        self._stop_client()
        model = await self._km.refresh_model()
        if model is None:  # deleted there: a new one
            self._km.kernel = None
            await self._km.start_kernel(kernel_name=self.kernel_name)
        elif not self._gateway_restarts and model.get("execution_state") not in _RESTARTED:
            await self._km.restart_kernel()
        # else the gateway restarts it already (asking again is an HTTP 500): wait for it
        self._gateway_restarts = False
        await self._connect()
        if self._setup_args is not None:
            await self._run_setup()

    def _stop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.stop_channels()
            self._client = None

    async def shutdown(self) -> None:
        """Delete the kernel on the gateway; a busy one is interrupted first, as the gateway's
        shutdown asks the kernel to exit and waits (5 s by default) before it kills it."""
        self._stop_client()
        if self._busy:
            with contextlib.suppress(Exception):
                await self._km.interrupt_kernel()
        with contextlib.suppress(Exception):
            await self._km.shutdown_kernel(now=True)
        self._km.kernel = None


_RESTARTED = ("restarting", "dead", "starting")
"""Kernel states (REST model or iopub status) that mean the process running our cell is gone
("starting" is published only when a kernel process starts: the queue is emptied once it
answers, so during a cell it means the gateway restarted it)."""


def _death_in(msg: dict[str, Any]) -> str | None:
    """A message by which the gateway says the kernel died or was shut down under us."""
    kind = msg["msg_type"]
    if kind == "status" and msg["content"].get("execution_state") in _RESTARTED:
        return "kernel process died on the gateway"
    if kind == "shutdown_reply":
        return "the kernel was shut down on the gateway"
    return None


class _Packer:
    """A context as one file to send: a file as it is, a directory as a tar (made once)."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._tars: dict[Path, Path] = {}

    def pack(self, path: Path) -> Path:
        if not path.is_dir():
            return path
        if path not in self._tars:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="rlm-gateway-"))
            tar_path = self._root / f"{len(self._tars)}.tar"
            with tarfile.open(tar_path, "w") as tar:
                tar.add(path, arcname=".")
            self._tars[path] = tar_path
        return self._tars[path]

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root, self._tars = None, {}


class GatewayKernelProvider(WarmReserve[GatewayKernel]):
    """Kernels started on the gateway ahead of need, like the local pool's warm kernels."""

    failure = "kernel failed to start on the gateway"
    start_stops_safely = True

    def __init__(
        self,
        gateway: Gateway,
        bridge: BridgeServer,
        size: int = 2,
        startup_code: str = "",
        output_limit: int | None = None,
    ) -> None:
        """``output_limit``: as ``GatewayKernel``'s."""
        super().__init__(size)
        self._output_limit = output_limit
        self.gateway = gateway
        self._bridge = bridge
        self._packer = _Packer()
        self._startup_code = startup_code
        self._ready: asyncio.Task[str] | None = None

    async def _name(self) -> str:
        """Probe the gateway once; every kernel waits on the same answer."""
        if self._ready is None:
            _configure_client(self.gateway)
            self._ready = asyncio.ensure_future(probe(self.gateway))
        return await asyncio.shield(self._ready)

    async def new_kernel(self, ahead: bool) -> GatewayKernel:
        return GatewayKernel(
            await self._name(), self._bridge, self._packer, self._startup_code, self._output_limit
        )

    async def start(self) -> None:
        await self._name()
        await super().start()

    async def close_rest(self) -> None:
        self._packer.close()

    async def __aenter__(self) -> GatewayKernelProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
