"""Kernel side: the connection awaited helper calls go through, many requests in flight at once.

A plain call holds the kernel's one blocking socket until its reply comes; awaited calls share
a second connection on the kernel's asyncio loop instead, each request tagged with an id and
its reply handed to the call that waits for it, so ``asyncio.gather`` over helpers overlaps on
the host. Requests leave in the order the calls start, so sub-agents get the same ids run after
run. Cancelling every call in flight (an interrupted cell) closes the connection, which makes
the host cancel the work; cancelling one (``wait_for`` timed out) leaves the others running.
ipykernel turns an interrupt into a cancel from its SIGINT handler, which does not wake the
loop, so while calls wait the loop is woken every ``TICK`` seconds to act on it promptly.
Standard library only: the kernel imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Protocol

from rlm_tui.kernel import wire

TICK = 0.1


class Address(Protocol):
    """Opens authenticated connections to the bridge (the blocking link does)."""

    agent: str

    def open(self, hello: dict[str, Any]) -> socket.socket: ...


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    def close(self, reason: BaseException) -> None:
        self.writer.close()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(reason)
        self.pending.clear()


class AsyncLink:
    def __init__(self, address: Address, error: type[Exception]) -> None:
        self._address = address
        self._error = error
        self._conn: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._ticking = False

    def drop(self) -> None:
        """Forget the connection (the kernel was set up for another agent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(self._lost())

    def _lost(self) -> Exception:
        return self._error("lost the connection to the rlm-tui host")

    async def call(self, op: wire.Op, **args: Any) -> Any:
        conn = await self._connection()
        self._next_id += 1
        rid = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        conn.pending[rid] = future
        if not self._ticking:
            self._ticking = True
            self._tick()
        try:
            conn.writer.write(wire.encode({"id": rid, "op": op.value, "args": args}))
            await conn.writer.drain()
            reply = await future
        except asyncio.CancelledError:
            asyncio.get_running_loop().call_soon(self._close_if_abandoned, conn)
            raise
        except (OSError, ConnectionError):
            raise self._lost() from None
        finally:
            conn.pending.pop(rid, None)
        if "error" in reply:
            raise self._error(reply["error"])
        return reply["result"]

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.drop()
            self._loop, self._opening = loop, asyncio.Lock()
        assert self._opening is not None
        async with self._opening:
            if self._conn is None:
                sock = self._address.open({"agent": self._address.agent})
                sock.setblocking(False)
                reader, writer = await asyncio.open_connection(sock=sock)
                self._conn = _Connection(writer)
                self._reader = loop.create_task(self._read(reader, self._conn))
            return self._conn

    async def _read(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, OSError, ValueError):
            while True:
                reply = await wire.read_frame(reader)
                rid = reply.get("id") if isinstance(reply, dict) else None
                future = conn.pending.pop(rid, None) if isinstance(rid, int) else None
                if future is not None and not future.done():
                    future.set_result(reply)
        if self._conn is conn:
            self._conn = None
        conn.close(self._lost())

    def _tick(self) -> None:
        conn, loop = self._conn, self._loop
        if conn is not None and conn.pending and loop is not None:
            loop.call_later(TICK, self._tick)
        else:
            self._ticking = False

    def _close_if_abandoned(self, conn: _Connection) -> None:
        if not any(not f.done() for f in conn.pending.values()):
            if self._conn is conn:
                self._conn = None
            conn.close(self._lost())
