"""The loopback OpenAI-compatible server in a process of its own, as a provider is: the process
measured shares no interpreter, and no GIL, with it (64 sub-agents' requests are 64 server
threads; in the measured process they took the GIL from its event loop).

``served("module:factory", *args)`` runs the server with the responder ``factory(*args)`` of
a bench script, until the block ends; it gives the server's URL. Run as a script, this module
is that server process."""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def served(responder: str, *args: Any) -> Iterator[str]:
    argv = [sys.executable, __file__, responder, json.dumps(args)]
    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    try:
        url = server.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"the loopback server for {responder} did not start")
        yield url
    finally:
        server.stdin.close()  # its end
        server.wait(timeout=10)


def serve(responder: str, args: str) -> None:
    """As the server process: print the URL, answer until stdin closes."""
    sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]
    from openai_server import OpenAIServer

    module, name = responder.split(":")
    factory = getattr(importlib.import_module(module), name)
    with OpenAIServer() as server:
        server.script(factory(*json.loads(args)))
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    serve(*sys.argv[1:])
