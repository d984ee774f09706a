"""The host's kernel channels: what they accept and what they drop (real zmq sockets, no
kernel: the kernel side is every other kernel test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import zmq
import zmq.asyncio

from rlm_tui.kernel.channels import DELIMITER, KernelChannels


def test_only_whole_messages_signed_with_the_key_arrive(tmp_path: Path) -> None:
    async def main() -> None:
        context = zmq.asyncio.Context()
        url = str(tmp_path / "k")
        publisher = context.socket(zmq.PUB)
        publisher.bind(f"ipc://{url}-2")
        kernel_shell = context.socket(zmq.ROUTER)
        kernel_shell.bind(f"ipc://{url}-1")
        ours = KernelChannels(context, url, {"shell": 1, "iopub": 2}, "right-key")
        forger = KernelChannels(
            context, str(tmp_path / "elsewhere"), {"shell": 1, "iopub": 2}, "wrong-key"
        )
        try:
            msg_id = ours.send("kernel_info_request", {})
            request = await asyncio.wait_for(kernel_shell.recv_multipart(), 5)
            signed = request[request.index(DELIMITER) + 2 :]
            assert b"kernel_info_request" in signed[0] and msg_id.encode() in signed[0]
            await asyncio.sleep(0.2)  # the subscription reaches the publisher
            # signed by our key but cut short, not JSON, not a mapping: dropped, not raised
            malformed = [[b"{}", b"{}"], [b"{", b"{}", b"{}", b"{}"], [b"[]", b"{}", b"{}", b"{}"]]
            for frames in malformed:
                await publisher.send_multipart([DELIMITER, ours._sign(frames), *frames])
            await publisher.send_multipart([b"no delimiter"])
            for channels in (forger, ours):  # each signs a status "reply" with its own key
                frames = [
                    b'{"msg_type": "status", "msg_id": "m"}',
                    f'{{"msg_id": "{msg_id}"}}'.encode(),
                    b"{}",
                    b'{"execution_state": "idle"}',
                ]
                await publisher.send_multipart([DELIMITER, channels._sign(frames), *frames])
            msg = await ours.receive(ours.iopub, 5)
            assert msg is not None and msg["parent_header"] == {"msg_id": msg_id}
            assert msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
            assert await ours.receive(ours.iopub, 0.1) is None  # the forged one was dropped
        finally:
            for sock in (publisher, kernel_shell):
                sock.close(linger=0)
            ours.close()
            forger.close()
            context.term()

    asyncio.run(main())
