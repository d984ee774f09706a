"""A real ``jupyter kernelgateway`` on 127.0.0.1 for the tests, and a look at its kernels.

The gateway passes the suite's tag (see conftest) from its environment to its kernels, so
the leftover-kernel check sees them like local ones.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SUITE_TAG

START_TIMEOUT = 90.0
LIST_ATTEMPTS = 20


@dataclass
class LoopbackGateway:
    url: str
    token: str
    log: Path

    def request(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict[str, object]]:
        """``GET /api/kernels``: the kernels the gateway has now.

        jupyter_server answers 500 to a listing made while a kernel is starting (its model has
        no ``last_activity`` yet: an AttributeError in ``kernel_model``), so a 500 is asked
        again; any other error, or 500s that last, still fail the test.
        """
        for attempt in range(LIST_ATTEMPTS):
            try:
                listed = self.request("GET", "/api/kernels")
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 500 or attempt == LIST_ATTEMPTS - 1:
                    raise
                time.sleep(0.05)
        assert isinstance(listed, list)
        return listed

    def wait_no_kernels(self, timeout: float = 10.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while (left := self.kernels()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MUTE_KERNEL = "mute"
"""A kernelspec of the gateway whose process runs but never answers: a kernel whose start
does not end."""


def _mute_kernelspec(root: Path) -> Path:
    """A Jupyter data directory holding the mute kernelspec (the gateway's JUPYTER_PATH)."""
    spec = root / "kernels" / MUTE_KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", "import time; time.sleep(600)", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": MUTE_KERNEL}))
    return root


def start_gateway(log: Path) -> tuple[subprocess.Popen[bytes], LoopbackGateway]:
    port, token = free_port(), secrets.token_hex(16)
    data = _mute_kernelspec(log.parent / "jupyter-data")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernel_gateway",
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={port}",
            "--JupyterWebsocketPersonality.list_kernels=True",
            f"--KernelGatewayApp.auth_token={token}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "JUPYTER_PATH": os.pathsep.join(
                filter(None, [str(data), os.environ.get("JUPYTER_PATH")])
            ),
            # what of the gateway's environment its kernels get: the suite's tag, for the check
            "KG_ENV_PROCESS_WHITELIST": f"{SUITE_TAG.split('=')[0]},PYDEVD_DISABLE_FILE_VALIDATION",
        },
    )
    gateway = LoopbackGateway(f"http://127.0.0.1:{port}", token, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            gateway.request("GET", "/api/kernelspecs")
            return process, gateway
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the kernel gateway did not start: {log.read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def kernel_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackGateway]:
    process, gateway = start_gateway(tmp_path_factory.mktemp("gateway") / "gateway.log")
    try:
        yield gateway
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
