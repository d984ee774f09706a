"""The host's end of a local kernel's shell and iopub channels: signed Jupyter messages
(protocol 5.3) over two zmq sockets, and nothing else.

What jupyter_client's ``AsyncKernelClient`` and ``Session`` do for these two channels, without
their traitlets objects (two per kernel, ~3 ms to build), their date parsing of every header
and their polling receive: a fan-out's host spent a fifth of its CPU there. A message arrives
as a dict with ``header``, ``parent_header``, ``msg_type`` and ``content``, as theirs do.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import zmq
import zmq.asyncio

DELIMITER = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.3"


class BadMessage(ValueError):
    """A frame list that is no signed Jupyter message of this session's key."""


class KernelChannels:
    """Shell requests out, shell replies and iopub messages in, each signed with ``key``."""

    def __init__(self, context: zmq.asyncio.Context, url: str, ports: dict[str, int], key: str):
        """``url``: the kernel's ipc path prefix; ``ports``: its channels' numbers by name."""
        self._key = key.encode()
        self._session = uuid.uuid4().hex
        self._ids = itertools.count()
        self.shell = context.socket(zmq.DEALER)
        self.shell.linger = 0
        self.shell.connect(f"ipc://{url}-{ports['shell']}")
        self.iopub = context.socket(zmq.SUB)
        self.iopub.linger = 0
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(f"ipc://{url}-{ports['iopub']}")
        # the same sockets without futures, for what never waits: sends and a ready message
        self._now: dict[Any, zmq.Socket[bytes]] = {
            sock: zmq.Socket.shadow(sock.underlying) for sock in (self.shell, self.iopub)
        }

    def _sign(self, frames: list[bytes]) -> bytes:
        digest = hmac.new(self._key, digestmod=hashlib.sha256)
        for frame in frames:
            digest.update(frame)
        return digest.hexdigest().encode()

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a shell request; its msg_id."""
        msg_id = f"{self._session}_{os.getpid()}_{next(self._ids)}"
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "rlm-tui",
            "session": self._session,
            "date": datetime.now(UTC).isoformat(),
            "version": PROTOCOL_VERSION,
        }
        frames = [_pack(header), b"{}", b"{}", _pack(content)]
        self._now[self.shell].send_multipart([DELIMITER, self._sign(frames), *frames])
        return msg_id

    def execute(self, code: str, silent: bool = False) -> str:
        return self.send(
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": not silent,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )

    async def receive(
        self,
        socket: zmq.asyncio.Socket,
        timeout: float,
        until: asyncio.Future[Any] | None = None,
    ) -> dict[str, Any] | None:
        """The next message on ``socket`` (``shell`` or ``iopub``), or None after ``timeout``
        seconds or once ``until`` is done (the kernel's end: no polling to notice it). One that
        is not signed with this kernel's key is dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                frames = self._now[socket].recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                left = deadline - loop.time()
                if left <= 0 or not await _readable(socket, left, until):
                    return None
                continue
            try:
                return self._unpack(frames)
            except BadMessage:
                continue

    def _unpack(self, frames: list[bytes]) -> dict[str, Any]:
        try:
            start = frames.index(DELIMITER) + 1
        except ValueError:
            raise BadMessage("no delimiter") from None
        if len(frames) < start + 5:
            raise BadMessage("too few frames")
        signature, signed = frames[start], frames[start + 1 : start + 5]
        if not hmac.compare_digest(signature, self._sign(signed)):
            raise BadMessage("bad signature")
        try:  # a cell can sign (the key is in its process): what it sends must not end the run
            header, parent, metadata, content = (json.loads(frame) for frame in signed)
        except ValueError:
            raise BadMessage("not JSON") from None
        if not all(isinstance(part, dict) for part in (header, parent, metadata, content)):
            raise BadMessage("not a message")
        return {
            "header": header,
            "parent_header": parent,
            "metadata": metadata,
            "msg_type": header.get("msg_type"),
            "content": content,
        }

    def close(self) -> None:
        self.shell.close()
        self.iopub.close()


async def _readable(
    socket: zmq.asyncio.Socket, timeout: float, until: asyncio.Future[Any] | None
) -> bool:
    ready = asyncio.ensure_future(socket.poll(timeout * 1000))
    if until is None:
        return bool(await ready)
    await asyncio.wait((ready, until), return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        return False
    return bool(ready.result())


def _pack(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
