"""The bridge's wire format, one module for both ends: the host (asyncio) and the kernel (a
blocking socket), so the framing, its size limit and the operation names are defined once.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. A frame over
``MAX_FRAME`` is refused by the sender before it sends and by the receiver before it reads the
body. Standard library only: the kernel imports this module.
"""

from __future__ import annotations

import asyncio
import enum
import json
import socket
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 512 * 1024 * 1024
"""The largest frame either end sends or reads (a 40 MB context pickled is well inside)."""


class Op(enum.StrEnum):
    """What a kernel may ask the host for."""

    LLM_QUERY = "llm_query"
    LLM_QUERY_BATCHED = "llm_query_batched"
    RLM_QUERY = "rlm_query"
    RLM_QUERY_BATCHED = "rlm_query_batched"
    FINAL = "final"
    TOOL = "tool"


FETCH = "fetch"
"""A connection whose first frame names an offered context under this key gets, instead of
replies, one frame ``{"size": n}`` (or ``{"error": ...}``) and then the context's n raw bytes."""
CONTEXT_CHUNK = 1 << 20
"""Bytes per read and write while a context streams to a kernel."""
DROPPED = "rlm_dropped"
"""In the content of a kernel's Jupyter ``stream`` message: how many characters the request
printed past the kernel's output limit, counted there and never sent (``outstream``). Other
Jupyter clients ignore the key."""


class FrameTooLarge(ValueError):
    """A frame past the limit: refused, never sent or read."""


class UnknownOp(ValueError):
    """A request naming an operation the host does not have."""


def parse_op(name: object) -> Op:
    try:
        return Op(str(name))
    except ValueError:
        raise UnknownOp(f"unknown bridge operation {name!r}") from None


def encode(obj: Any, limit: int = MAX_FRAME) -> bytes:
    data = json.dumps(obj).encode()
    if len(data) > limit:
        raise FrameTooLarge(f"a frame of {len(data)} bytes is over the {limit}-byte limit")
    return HEADER.pack(len(data)) + data


def body_size(head: bytes, limit: int = MAX_FRAME) -> int:
    (size,) = HEADER.unpack(head)
    if size > limit:
        raise FrameTooLarge(f"a frame of {size} bytes is over the {limit}-byte limit")
    return int(size)


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> Any:
    """The next frame from an asyncio stream (the host's end)."""
    size = body_size(await reader.readexactly(HEADER.size), limit)
    return json.loads(await reader.readexactly(size))


def send(sock: socket.socket, obj: Any, limit: int = MAX_FRAME) -> None:
    """Send one frame on a blocking socket (the kernel's end)."""
    sock.sendall(encode(obj, limit))


def recv(sock: socket.socket, limit: int = MAX_FRAME) -> Any:
    """Read one frame from a blocking socket (the kernel's end)."""
    size = body_size(_exactly(sock, HEADER.size), limit)
    return json.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("the other end closed the connection")
        buf += chunk
    return bytes(buf)
