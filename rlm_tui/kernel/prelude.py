"""The code every kernel runs at start: the REPL contract's helpers, talking to the bridge.

It is imported inside the kernel (standard library and pyyaml only) and ``install``-ed into
the user namespace. The bridge's address and token arrive at setup in a one-time 0600 file that
is deleted once read (a kernel on a gateway, with no shared disk, gets them in the silent setup
call, which is kept out of the input history), and live on in a closure only, so cell code
finds them neither in the environment nor in the input history. Such a kernel streams its
context from the bridge and checks its size and hash before loading it. Everything private lives under underscore names that
``SHOW_VARS`` hides.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import threading
import types
from collections.abc import Callable
from typing import Any

from rlm_tui.kernel import wire

INSTALL_CODE = "from rlm_tui.kernel.prelude import install as _i\n_i(globals())\ndel _i"
"""What a kernel runs to load the helpers into its namespace."""
SETUP_NAME = "_rlm_setup"
LIMIT_MEMORY_NAME = "_rlm_limit_memory"
HIDDEN_NAMES = ("In", "Out", "exit", "quit", "get_ipython")
REPR_LIMIT = 2000


class RLMError(RuntimeError):
    """A sub-call the host refused or could not complete."""


def payload(value: Any) -> dict[str, Any]:
    """A kernel value as it crosses to the host: JSON if it round-trips, a pickle, a repr."""
    try:
        text = json.dumps(value)
        is_json = json.loads(text) == value
    except (TypeError, ValueError, RecursionError):
        is_json = False
    try:
        pickled: str | None = base64.b64encode(pickle.dumps(value)).decode()
    except Exception:
        pickled = None
    shown = repr(value)
    return {
        "json_value": value if is_json else None,
        "is_json": is_json,
        "repr": shown if len(shown) <= REPR_LIMIT else shown[:REPR_LIMIT] + "...",
        "type_name": type(value).__name__,
        "pickle": pickled,
    }


def unpayload(p: dict[str, Any]) -> Any:
    """A payload back as a Python value: the pickle if it loads, else JSON, else the repr."""
    if p.get("pickle"):
        try:
            return pickle.loads(base64.b64decode(p["pickle"]))
        except Exception:
            pass
    return p["json_value"] if p.get("is_json") else p.get("repr")


def load_context(file: str, kind: str) -> Any:
    """The agent's ``context`` from the private file the host wrote."""
    if kind == "none" or not file:
        return ""
    if kind == "text":
        with open(file, encoding="utf-8", errors="replace") as f:
            return f.read()
    if kind == "json":
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    if kind == "jsonl":
        with open(file, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if kind == "yaml":
        import yaml

        with open(file, encoding="utf-8") as f:
            return yaml.safe_load(f)
    if kind == "pickle":
        with open(file, "rb") as f:
            return pickle.load(f)
    if kind == "dir":
        return _read_dir(file)
    raise ValueError(f"unknown context kind {kind!r}")


def _read_dir(top: str) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                with open(full, encoding="utf-8") as f:
                    out[os.path.relpath(full, top).replace(os.sep, "/")] = f.read()
            except (UnicodeDecodeError, OSError):
                continue
    return out


def limit_memory(megabytes: int) -> None:
    import resource

    cap = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


class _Link:
    """The kernel's connection to the bridge: one request at a time, replies matched by id."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.agent = ""
        self.path = ""
        self.address: tuple[str, int] | None = None
        self.token = ""
        self.next_id = 0
        self.lock = threading.Lock()

    def bind(self, agent: str, grant: dict[str, str] | None) -> None:
        """``grant``: the bridge's socket path, or its TCP host and port, and the token."""
        if grant:
            self.token = grant["token"]
            self.path = grant.get("path", "")
            self.address = (grant["host"], int(grant["port"])) if "port" in grant else None
        self.agent = agent
        self.drop()

    def drop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self) -> socket.socket:
        self.sock = self.open({"agent": self.agent})
        return self.sock

    def open(self, hello: dict[str, Any]) -> socket.socket:
        """A new connection to the bridge, its first frame the token and ``hello``."""
        if self.address is not None:
            sock = socket.create_connection(self.address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif self.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.path)
        else:
            raise RLMError("no bridge: this kernel was not set up by rlm-tui")
        wire.send(sock, {"token": self.token, **hello})
        return sock

    def call(self, op: wire.Op, **args: Any) -> Any:
        with self.lock:
            self.next_id += 1
            rid = self.next_id
            request = wire.encode({"id": rid, "op": op.value, "args": args})
            reply = self._exchange(rid, request)
        if "error" in reply:
            raise RLMError(reply["error"])
        return reply["result"]

    def _exchange(self, rid: int, request: bytes) -> dict[str, Any]:
        for attempt in (1, 2):
            sock = self.sock or self._connect()
            try:
                sock.sendall(request)
                while True:
                    reply = wire.recv(sock)
                    if isinstance(reply, dict) and reply.get("id") == rid:
                        return reply
            except (OSError, ConnectionError):
                self.drop()
                if attempt == 2:
                    raise RLMError("lost the connection to the rlm-tui host") from None
            except BaseException:
                # an interrupt mid-call: the reply may still come; a new socket avoids it
                self.drop()
                raise
        raise AssertionError("unreachable")


def fetch_context(link: _Link, offer: dict[str, Any], kind: str) -> Any:
    """A context the host offered on the bridge: streamed in, checked, loaded.

    Its bytes go to a private temporary file (a directory context comes as a tar), checked
    against the offer's size and SHA-256, and are removed once loaded.
    """
    size, digest = int(offer["size"]), hashlib.sha256()
    fd, path = tempfile.mkstemp(prefix="rlm-context-")
    unpacked = ""
    try:
        with os.fdopen(fd, "wb") as f, link.open({wire.FETCH: offer["key"]}) as sock:
            head = wire.recv(sock)
            if "error" in head:
                raise RLMError(f"could not fetch the context: {head['error']}")
            got = 0
            while got < size:
                chunk = sock.recv(min(wire.CONTEXT_CHUNK, size - got))
                if not chunk:
                    break
                f.write(chunk)
                digest.update(chunk)
                got += len(chunk)
        if got != size or digest.hexdigest() != offer["sha256"]:
            raise RLMError(f"the context arrived damaged: {got} of {size} bytes, hash mismatch")
        if kind == "dir":
            unpacked = tempfile.mkdtemp(prefix="rlm-context-")
            with tarfile.open(path) as tar:
                tar.extractall(unpacked, filter="data")
            return load_context(unpacked, kind)
        return load_context(path, kind)
    finally:
        os.unlink(path)
        if unpacked:
            shutil.rmtree(unpacked, ignore_errors=True)


class _Answer(dict[str, Any]):
    """The official rlm library's answer dict: ready=True gives the content as FINAL."""

    def __init__(self, final: Callable[[Any], None]) -> None:
        super().__init__(content="", ready=False)
        self._final = final

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "ready" and value:
            self._final(self.get("content"))


def install(ns: dict[str, Any]) -> None:
    """Put the REPL contract's helpers into a kernel's user namespace ``ns``."""
    link = _Link()
    hidden: set[str] = set()

    def llm_query(prompt: Any, model: str | None = None) -> str:
        """Ask a language model one question; returns its text."""
        return str(link.call(wire.Op.LLM_QUERY, prompt=str(prompt), model=model)["text"])

    def llm_query_batched(prompts: list[Any], model: str | None = None) -> list[str]:
        """Ask many questions at once (answered concurrently); returns a list of texts."""
        texts = [str(p) for p in prompts]
        return list(link.call(wire.Op.LLM_QUERY_BATCHED, prompts=texts, model=model)["texts"])

    def rlm_query(prompt: Any, context: Any = None) -> Any:
        """Start a sub-agent with its own kernel; returns its final answer as a Python value."""
        ctx = None if context is None else payload(context)
        return unpayload(link.call(wire.Op.RLM_QUERY, prompt=str(prompt), context=ctx)["value"])

    def rlm_query_batched(prompts: list[Any], contexts: list[Any] | None = None) -> list[Any]:
        """Start many sub-agents at once; returns their answers in order."""
        texts = [str(p) for p in prompts]
        ctxs = None if contexts is None else [None if c is None else payload(c) for c in contexts]
        values = link.call(wire.Op.RLM_QUERY_BATCHED, prompts=texts, contexts=ctxs)["values"]
        return [unpayload(v) for v in values]

    def FINAL(value: Any) -> None:  # noqa: N802 - the REPL contract's name
        """Give the final answer (any Python value)."""
        link.call(wire.Op.FINAL, value=payload(value))

    def FINAL_VAR(name: Any) -> None:  # noqa: N802 - the REPL contract's name
        """Give the value of the variable ``name`` as the final answer."""
        if not isinstance(name, str):
            return FINAL(name)
        key = name.strip().strip("'\"")
        if key not in ns:
            shown = ", ".join(user_vars()) or "none"
            raise NameError(f"FINAL_VAR: no variable named {key!r}; variables: {shown}")
        FINAL(ns[key])

    def user_vars() -> list[str]:
        return [
            k
            for k, v in ns.items()
            if not k.startswith("_")
            and k not in hidden
            and not isinstance(v, types.ModuleType)
            and k not in HIDDEN_NAMES
        ]

    def SHOW_VARS() -> None:  # noqa: N802 - the REPL contract's name
        """Print the variables you have made, with their types."""
        names = user_vars()
        if not names:
            print("(no variables yet)")
        for k in names:
            shown = repr(ns[k])
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            print(f"{k}: {type(ns[k]).__name__} = {shown}")

    def setup(
        agent: str,
        file: str,
        kind: str,
        grant: str | dict[str, str] = "",
        offer: dict[str, Any] | None = None,
    ) -> None:
        # the bridge's address and token come in a one-time file, read and removed at once
        bridge = None
        if isinstance(grant, dict):
            bridge = grant
        elif grant:
            with open(grant, encoding="utf-8") as f:
                bridge = json.load(f)
            os.unlink(grant)
        link.bind(agent, bridge)
        if offer is None:
            ns["context"] = load_context(file, kind)
        else:
            ns["context"] = fetch_context(link, offer, kind)
        ns["answer"] = _Answer(FINAL)

    helpers: dict[str, Any] = {
        "RLMError": RLMError,
        "llm_query": llm_query,
        "llm_query_batched": llm_query_batched,
        "rlm_query": rlm_query,
        "rlm_query_batched": rlm_query_batched,
        "FINAL": FINAL,
        "FINAL_VAR": FINAL_VAR,
        "SHOW_VARS": SHOW_VARS,
    }
    hidden.update(helpers)
    hidden.update({"context", "answer"})
    ns.update(helpers)
    ns["context"] = ""
    ns["answer"] = _Answer(FINAL)
    ns[SETUP_NAME] = setup
    ns[LIMIT_MEMORY_NAME] = limit_memory
