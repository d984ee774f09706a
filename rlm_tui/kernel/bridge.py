"""The bridge: kernels call back into the host (llm_query, rlm_query, FINAL) over a Unix socket.

An asyncio server on the host's own loop, in a private 0700 directory, socket 0600. A
connection's first frame must carry a token granted to one agent, and the connection then acts
for that agent only; the process that presented it (its pid, from SO_PEERCRED) may reconnect
for that agent without it, so the kernel keeps no token in memory. Tokens and pids die when the
agent's kernel is released. Requests are length-prefixed JSON,
tagged with an id (after an interrupt a kept-open socket could deliver a stale reply), and
served concurrently so one long sub-agent does not hold up another call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rlm_tui.kernel.rundirs import private_dir

log = logging.getLogger(__name__)
Handler = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]
_HEADER = struct.Struct(">I")
_CREDS = struct.Struct("3i")
MAX_FRAME = 512 * 1024 * 1024


async def read_frame(reader: asyncio.StreamReader) -> Any:
    head = await reader.readexactly(_HEADER.size)
    (size,) = _HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    return json.loads(await reader.readexactly(size))


def encode_frame(obj: Any) -> bytes:
    data = json.dumps(obj).encode()
    return _HEADER.pack(len(data)) + data


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The pid of the process at the other end (in the host's PID namespace)."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size)
    except (AttributeError, OSError):
        return None
    pid, _uid, _gid = _CREDS.unpack(creds)
    return pid or None


class BridgeServer:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._dir: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._agents: dict[str, str] = {}
        """token -> the agent it was granted to"""
        self._peers: dict[int, str] = {}
        """pid of a kernel process that presented a token -> its agent"""

    @property
    def path(self) -> Path:
        assert self._dir is not None, "start() the bridge first"
        return self._dir / "bridge.sock"

    def grant(self, agent: str) -> dict[str, str]:
        """What the kernel of ``agent`` needs to connect: the socket's path and a new token."""
        self.revoke(agent)
        token = secrets.token_hex(24)
        self._agents[token] = agent
        return {"path": str(self.path), "token": token}

    def revoke(self, agent: str) -> None:
        """The agent's kernel is gone: its token and its process open nothing any more."""
        for token in [t for t, a in self._agents.items() if a == agent]:
            del self._agents[token]
        for pid in [p for p, a in self._peers.items() if a == agent]:
            del self._peers[pid]

    def _agent_of(self, hello: Any, pid: int | None) -> str | None:
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

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            agent = self._agent_of(await read_frame(reader), _peer_pid(writer))
            if agent is None:
                writer.write(encode_frame({"id": None, "error": "bad token", "kind": "auth"}))
                await writer.drain()
                return
            pending: set[asyncio.Task[None]] = set()
            try:
                while True:
                    request = await read_frame(reader)
                    job = asyncio.ensure_future(self._answer(agent, request, writer))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
            finally:
                for job in pending:
                    job.cancel()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, agent: str, request: Any, writer: asyncio.StreamWriter) -> None:
        rid = request.get("id") if isinstance(request, dict) else None
        try:
            result = await self._handler(agent, str(request["op"]), dict(request.get("args") or {}))
            reply: dict[str, Any] = {"id": rid, "result": result}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = {"id": rid, "error": str(exc) or type(exc).__name__, "kind": type(exc).__name__}
        with contextlib.suppress(ConnectionError):
            writer.write(encode_frame(reply))
            await writer.drain()
