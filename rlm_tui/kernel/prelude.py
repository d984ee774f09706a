"""The code every kernel runs at start: the REPL contract's helpers, talking to the bridge.

It is imported inside the kernel (standard library and pyyaml only) and ``install``-ed into
the user namespace. The bridge's address and token arrive at setup in a one-time 0600 file that
is deleted once read; a kernel on this machine connects at once and forgets the token (the host
knows its pid from then on, so reconnects need none), so cell code finds it neither in the
environment, the input history nor any object. A kernel on a gateway, with no shared disk,
gets them in the silent setup call (kept out of the input history) and keeps the token, as TCP
tells the host no pid; such a kernel streams its context from the bridge and checks its size
and hash before loading it. Everything private lives under underscore names that
``SHOW_VARS`` hides.
"""

from __future__ import annotations

import contextlib
import functools
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
from rlm_tui.kernel.aio_link import AsyncLink
from rlm_tui.kernel.answer_check import AnswerMismatch, Expected, schema_of
from rlm_tui.kernel.awaiting import AIO_NAME, AsyncForms
from rlm_tui.kernel.awaiting import install as install_rewriter
from rlm_tui.values import payload, unpayload

INSTALL_CODE = "from rlm_tui.kernel.prelude import install as _i\n_i(globals())\ndel _i"
"""What a kernel runs to load the helpers into its namespace."""
SETUP_NAME = "_rlm_setup"
LIMIT_MEMORY_NAME = "_rlm_limit_memory"
EXPECT_NAME = "_rlm_expect"
TOOLS_NAME = "_rlm_tools"
INPUT_NAME = "_rlm_input"
"""Called by the host to load a named input (``--input NAME=FILE``) like ``context``."""
"""Called by the host with the run's tools (name, signature, doc) as JSON."""
"""Called by the host with an agent's answer schema as JSON (empty for none)."""
Request = Callable[..., dict[str, Any]]
"""A helper's own code: its arguments -> the bridge request's arguments."""


class RLMError(RuntimeError):
    """A sub-call the host refused or could not complete."""


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
            if not os.path.isfile(full):  # a FIFO or a device would be read forever
                continue
            try:
                with open(full, encoding="utf-8") as f:
                    out[os.path.relpath(full, top).replace(os.sep, "/")] = f.read()
            except (UnicodeDecodeError, OSError):
                continue
    return out


def _tool_request(name: str, signature: str, doc: str) -> Request:
    def request(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            sent = json.loads(json.dumps([list(args), kwargs]))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: a tool's arguments must be JSON data ({exc})") from None
        return {"name": name, "args": sent[0], "kwargs": sent[1]}

    request.__name__ = request.__qualname__ = name
    request.__doc__ = f"{name}{signature}: {doc} (a tool: runs on the rlm-tui host)"
    return request


def _ipython() -> Any:
    """The kernel's IPython shell, or None outside IPython (a plain test process)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


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
        if self.token and self.address is None:
            self._connect()  # at once, so the token is forgotten before any cell runs

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
        if self.address is None:
            # the host now knows this process by its pid: a reconnect needs no token, so none
            # is left in memory for a cell to find
            self.token = ""
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
    alink = AsyncLink(link, RLMError)
    forms = AsyncForms()
    expected = Expected()
    hidden: set[str] = set(ns)  # what the shell put there (In, Out, open, exit...)

    def two_way(op: wire.Op, result: Callable[[Any], Any]) -> Callable[[Request], Any]:
        """A helper from its request: called plainly it blocks; awaited it runs concurrently."""

        def make(request: Request) -> Any:
            @functools.wraps(request)
            def plain(*args: Any, **kwargs: Any) -> Any:
                return result(link.call(op, **request(*args, **kwargs)))

            async def awaited(*args: Any, **kwargs: Any) -> Any:
                return result(await alink.call(op, **request(*args, **kwargs)))

            forms.register(plain, awaited)
            return plain

        return make

    @two_way(wire.Op.LLM_QUERY, lambda r: str(r["text"]))
    def llm_query(prompt: Any, model: str | None = None) -> dict[str, Any]:
        """Ask a language model one question; returns its text."""
        return {"prompt": str(prompt), "model": model}

    @two_way(wire.Op.LLM_QUERY_BATCHED, lambda r: list(r["texts"]))
    def llm_query_batched(prompts: list[Any], model: str | None = None) -> dict[str, Any]:
        """Ask many questions at once (answered concurrently); returns a list of texts."""
        return {"prompts": [str(p) for p in prompts], "model": model}

    @two_way(wire.Op.RLM_QUERY, lambda r: unpayload(r["value"]))
    def rlm_query(prompt: Any, context: Any = None, schema: Any = None) -> dict[str, Any]:
        """Start a sub-agent with its own kernel; returns its final answer as a Python value.

        ``schema`` (a JSON Schema, or a type such as ``dict[str, int]``) is the shape its answer
        must have."""
        ctx = None if context is None else payload(context)
        shape = None if schema is None else schema_of(schema)
        return {"prompt": str(prompt), "context": ctx, "schema": shape}

    @two_way(wire.Op.RLM_QUERY_BATCHED, lambda r: [unpayload(v) for v in r["values"]])
    def rlm_query_batched(
        prompts: list[Any], contexts: list[Any] | None = None, schema: Any = None
    ) -> dict[str, Any]:
        """Start many sub-agents at once; returns their answers in order (each of ``schema``)."""
        ctxs = None if contexts is None else [None if c is None else payload(c) for c in contexts]
        shape = None if schema is None else schema_of(schema)
        return {"prompts": [str(p) for p in prompts], "contexts": ctxs, "schema": shape}

    def FINAL(value: Any) -> None:  # noqa: N802 - the REPL contract's name
        """Give the final answer (any Python value; JSON data of the expected shape if any)."""
        try:
            value = expected.check(value)
        except AnswerMismatch as exc:
            raise AnswerMismatch(f"FINAL: {exc}") from None
        link.call(wire.Op.FINAL, value=payload(value))

    def SUBMIT(*value: Any, **fields: Any) -> None:  # noqa: N802 - DSPy's name for FINAL
        """FINAL by another name: ``SUBMIT(value)``, or ``SUBMIT(name=..., ...)`` for a dict."""
        if len(value) == 1 and not fields:
            return FINAL(value[0])
        if fields and not value:
            return FINAL(fields)
        raise TypeError("SUBMIT takes one value or keyword fields, e.g. SUBMIT(answer=42)")

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
            if not k.startswith("_") and k not in hidden and not isinstance(v, types.ModuleType)
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
        alink.drop()
        expected.set("")
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
        "SUBMIT": SUBMIT,
        "SHOW_VARS": SHOW_VARS,
    }
    hidden.update(helpers)
    hidden.update({"context", "answer"})
    ns.update(helpers)
    ns["context"] = ""
    ns["answer"] = _Answer(FINAL)
    ns[SETUP_NAME] = setup
    ns[AIO_NAME] = forms
    ns[EXPECT_NAME] = expected.set

    def add_tools(specs_json: str) -> None:
        """A helper for each of the run's tools: it calls the host's function by name."""
        for spec in json.loads(specs_json):
            ns[spec["name"]] = two_way(wire.Op.TOOL, lambda r: unpayload(r["value"]))(
                _tool_request(spec["name"], spec["signature"], spec["doc"])
            )
            hidden.add(spec["name"])

    ns[TOOLS_NAME] = add_tools

    def load_input(name: str, file: str, kind: str) -> None:
        ns[name] = load_context(file, kind)
        hidden.add(name)

    ns[INPUT_NAME] = load_input
    shell = _ipython()
    if shell is not None:
        install_rewriter(shell)
    ns[LIMIT_MEMORY_NAME] = limit_memory
