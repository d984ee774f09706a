"""The wire format shared by host and kernel: framing, the size limit on both ends, the ops."""

from __future__ import annotations

import asyncio
import socket

import pytest

from rlm_tui.kernel import wire
from rlm_tui.kernel.bridge import BridgeServer


def test_a_frame_round_trips_on_a_blocking_socket():
    a, b = socket.socketpair()
    with a, b:
        message = {"id": 3, "op": wire.Op.LLM_QUERY, "args": {"prompt": "é" * 10}}
        wire.send(a, message)
        assert wire.recv(b) == {"id": 3, "op": "llm_query", "args": {"prompt": "é" * 10}}


def test_the_sender_refuses_a_frame_over_the_limit():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(wire.FrameTooLarge, match="over the 100-byte limit"):
            wire.send(a, {"blob": "x" * 200}, limit=100)
        a.setblocking(False)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)  # nothing was sent


def test_the_receiver_refuses_a_frame_over_the_limit_before_reading_it():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(wire.HEADER.pack(10_000))  # a header only: the body never comes
        with pytest.raises(wire.FrameTooLarge, match="10000 bytes"):
            wire.recv(b, limit=1000)


async def test_the_async_receiver_refuses_a_frame_over_the_limit():
    reader = asyncio.StreamReader()
    reader.feed_data(wire.encode({"blob": "x" * 200}))
    with pytest.raises(wire.FrameTooLarge):
        await wire.read_frame(reader, limit=100)
    reader = asyncio.StreamReader()
    reader.feed_data(wire.encode({"ok": 1}))
    assert await wire.read_frame(reader, limit=100) == {"ok": 1}


def test_ops_are_one_enum_and_an_unknown_one_is_refused():
    assert [op.value for op in wire.Op] == [
        "llm_query",
        "llm_query_batched",
        "rlm_query",
        "rlm_query_batched",
        "final",
        "tool",
    ]
    assert wire.parse_op("final") is wire.Op.FINAL
    with pytest.raises(wire.UnknownOp, match="unknown bridge operation 'rm_rf'"):
        wire.parse_op("rm_rf")


async def test_the_bridge_answers_an_unknown_op_with_an_error_and_never_calls_the_engine():
    calls = []

    async def handler(agent, op, args):
        calls.append(op)
        return {}

    bridge = BridgeServer(handler)
    await bridge.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(bridge.path))
        writer.write(wire.encode({"token": bridge.grant("0")["token"]}))
        writer.write(wire.encode({"id": 1, "op": "rm_rf", "args": {}}))
        writer.write(wire.encode({"id": 2, "op": "final", "args": {}}))
        await writer.drain()
        replies = [await wire.read_frame(reader), await wire.read_frame(reader)]
        by_id = {r["id"]: r for r in replies}
        assert by_id[1]["error"] == "unknown bridge operation 'rm_rf'"
        assert by_id[2] == {"id": 2, "result": {}}
        assert calls == [wire.Op.FINAL]
        writer.close()
    finally:
        await bridge.close()
