"""The bridge: kernels call back into the host (llm_query, rlm_query, FINAL) over a Unix socket.

An asyncio server on the host's own loop, in a private 0700 directory, socket 0600. A
connection's first frame must carry a token granted to one agent, and the connection then acts
for that agent only; the process that presented it (its pid, from SO_PEERCRED) may reconnect
for that agent without it, so the kernel keeps no token in memory. Tokens and pids die when the
agent's kernel is released. Requests are length-prefixed JSON,
tagged with an id (after an interrupt a kept-open socket could deliver a stale reply), and
served concurrently so one long sub-agent does not hold up another call.

Kernels on other machines (a Jupyter gateway) reach the same server over TCP on an address
the user names, with the same frames; they present their token on every connection (TCP
tells no peer pid); their context, which they cannot read from
the host's disk, is offered here and streamed to them in chunks on a connection of its own
(``wire.FETCH``): raw bytes, as base64 in JSON frames would cost several times the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rlm_tui.kernel import wire
from rlm_tui.kernel.rundirs import private_dir
from rlm_tui.kernel.wire import Op

log = logging.getLogger(__name__)
Handler = Callable[[str, Op, dict[str, Any]], Awaitable[dict[str, Any]]]
_CREDS = struct.Struct("3i")


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The pid of the process at the other end of a Unix socket, in the host's PID namespace
    (the kernel translates it: a kernel in the sandbox's namespace is seen by its host pid)."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size)
    except OSError:
        return None
    pid, _uid, _gid = _CREDS.unpack(creds)
    return pid or None


class BridgeServer:
    def __init__(self, handler: Handler, tcp_host: str | None = None) -> None:
        """``tcp_host``: also listen on this address (a free port) for kernels elsewhere."""
        self._handler = handler
        self._dir: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_host = tcp_host
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._offers: dict[str, Path] = {}
        self._digests: dict[tuple[Path, int, int], str] = {}
        self._agents: dict[str, str] = {}
        """token -> the agent it was granted to"""
        self._peers: dict[int, str] = {}
        """pid of a kernel process that presented a token on the Unix socket -> its agent"""

    @property
    def path(self) -> Path:
        assert self._dir is not None, "start() the bridge first"
        return self._dir / "bridge.sock"

    def grant(self, agent: str) -> dict[str, str]:
        """What the kernel of ``agent`` needs to connect: the socket's path (and TCP address)
        and a new token."""
        self.revoke(agent)
        token = secrets.token_hex(24)
        self._agents[token] = agent
        grant = {"path": str(self.path), "token": token}
        if self._tcp is not None:
            host, port = self._tcp.sockets[0].getsockname()[:2]
            grant.update(host=str(host), port=str(port))
        return grant

    def revoke(self, agent: str) -> None:
        """The agent's kernel is gone: its token and its process open nothing any more."""
        for token in [t for t, a in self._agents.items() if a == agent]:
            del self._agents[token]
        for pid in [p for p, a in self._peers.items() if a == agent]:
            del self._peers[pid]

    def _agent_of(self, hello: Any, pid: int | None) -> str | None:
        """The agent a connection acts for: its token's, or (no token) its process's."""
        token = str(hello.get("token") or "") if isinstance(hello, dict) else ""
        if not token:
            return self._peers.get(pid) if pid is not None else None
        for known, agent in self._agents.items():
            if secrets.compare_digest(token, known):
                if pid is not None:
                    self._peers[pid] = agent
                return agent
        return None

    async def start(self) -> None:
        self._dir = private_dir("rlm-bridge-")
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)
        if self._tcp_host is not None:
            self._tcp = await asyncio.start_server(self._serve, self._tcp_host, 0)

    def offer(self, path: Path) -> dict[str, Any]:
        """Let kernels of this run fetch a file; what they need to fetch and check it."""
        key = secrets.token_hex(8)
        stat = path.stat()
        known = (path, stat.st_size, stat.st_mtime_ns)
        if known not in self._digests:  # a restarted kernel fetches the same context again
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
            self._digests[known] = digest.hexdigest()
        self._offers[key] = path
        return {"key": key, "size": stat.st_size, "sha256": self._digests[known]}

    def withdraw(self, key: str) -> None:
        self._offers.pop(key, None)

    async def _stream_offer(self, key: str, writer: asyncio.StreamWriter) -> None:
        path = self._offers.get(key)
        if path is None:
            writer.write(wire.encode({"error": "no such context on offer"}))
            return
        with path.open("rb") as f:
            writer.write(wire.encode({"size": path.stat().st_size}))
            while chunk := f.read(wire.CONTEXT_CHUNK):
                writer.write(chunk)
                await writer.drain()

    async def close(self) -> None:
        servers = [server for server in (self._server, self._tcp) if server is not None]
        for server in servers:
            server.close()
        # end each connection from our side: its reader sees EOF and its task ends (a
        # cancelled connection task is logged as an error by asyncio's streams)
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._server = self._tcp = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            hello = await wire.read_frame(reader)
            agent = self._agent_of(hello, _peer_pid(writer))
            if agent is None:
                writer.write(wire.encode({"id": None, "error": "bad token", "kind": "auth"}))
                await writer.drain()
                return
            if wire.FETCH in hello:
                await self._stream_offer(str(hello[wire.FETCH]), writer)
                return
            pending: set[asyncio.Task[None]] = set()
            try:
                while True:
                    request = await wire.read_frame(reader)
                    job = asyncio.ensure_future(self._answer(agent, request, writer))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
            finally:
                for job in pending:
                    job.cancel()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            # a torn, oversized or malformed frame ends the connection; the kernel reconnects
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, agent: str, request: Any, writer: asyncio.StreamWriter) -> None:
        rid = request.get("id") if isinstance(request, dict) else None
        try:
            op = wire.parse_op(request.get("op"))
            result = await self._handler(agent, op, dict(request.get("args") or {}))
            reply: dict[str, Any] = {"id": rid, "result": result}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = {"id": rid, "error": str(exc) or type(exc).__name__, "kind": type(exc).__name__}
        try:
            frame = wire.encode(reply)
        except wire.FrameTooLarge as exc:
            frame = wire.encode({"id": rid, "error": str(exc), "kind": "FrameTooLarge"})
        with contextlib.suppress(ConnectionError):
            writer.write(frame)
            await writer.drain()
