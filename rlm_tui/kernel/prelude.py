"""The code every kernel runs at start: the REPL contract's helpers, talking to the bridge.

It runs inside ipykernel with the stdlib (and pyyaml) only. The bridge's address and token
arrive at setup in a one-time 0600 file that is deleted once read; the kernel connects at once
and forgets the token (the host knows its pid from then on), so cell code finds it neither in
the environment, the input history nor any object. Everything private lives under underscore names that ``SHOW_VARS`` hides.
"""

from __future__ import annotations

PRELUDE = r'''
def _rlm_install(ns):
    import base64, json, os, pickle, socket, struct, threading

    state = {"sock": None, "agent": "", "next_id": 0, "path": "", "token": ""}
    lock = threading.Lock()

    class RLMError(RuntimeError):
        """A sub-call the host refused or could not complete."""

    def payload(value):
        try:
            text = json.dumps(value)
            is_json = json.loads(text) == value
        except (TypeError, ValueError, RecursionError):
            is_json = False
        try:
            pickled = base64.b64encode(pickle.dumps(value)).decode()
        except Exception:
            pickled = None
        shown = repr(value)
        return {
            "json_value": value if is_json else None,
            "is_json": is_json,
            "repr": shown if len(shown) <= 2000 else shown[:2000] + "...",
            "type_name": type(value).__name__,
            "pickle": pickled,
        }

    def unpayload(p):
        if p.get("pickle"):
            try:
                return pickle.loads(base64.b64decode(p["pickle"]))
            except Exception:
                pass
        return p["json_value"] if p.get("is_json") else p.get("repr")

    def send(sock, obj):
        data = json.dumps(obj).encode()
        sock.sendall(struct.pack(">I", len(data)) + data)

    def recv(sock):
        head = b""
        while len(head) < 4:
            chunk = sock.recv(4 - len(head))
            if not chunk:
                raise ConnectionError("the bridge closed the connection")
            head += chunk
        (size,) = struct.unpack(">I", head)
        buf = bytearray()
        while len(buf) < size:
            chunk = sock.recv(min(size - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError("the bridge closed the connection")
            buf += chunk
        return json.loads(buf)

    def connect():
        if not state["path"]:
            raise RLMError("no bridge: this kernel was not set up by rlm-tui")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(state["path"])
        send(sock, {"token": state["token"], "agent": state["agent"]})
        # the host now knows this process by its pid: a reconnect needs no token, so none is
        # left in memory for a cell to find
        state["sock"], state["token"] = sock, ""
        return sock

    def call(op, **args):
        with lock:
            state["next_id"] += 1
            rid = state["next_id"]
            for attempt in (1, 2):
                sock = state["sock"] or connect()
                try:
                    send(sock, {"id": rid, "op": op, "args": args})
                    while True:
                        reply = recv(sock)
                        if reply.get("id") == rid:
                            break
                    break
                except (OSError, ConnectionError):
                    state["sock"] = None
                    try:
                        sock.close()
                    except OSError:
                        pass
                    if attempt == 2:
                        raise RLMError("lost the connection to the rlm-tui host")
                except BaseException:
                    # an interrupt mid-call: the reply may still come; a new socket avoids it
                    state["sock"] = None
                    sock.close()
                    raise
        if "error" in reply:
            raise RLMError(reply["error"])
        return reply["result"]

    def llm_query(prompt, model=None):
        """Ask a language model one question; returns its text."""
        return call("llm_query", prompt=str(prompt), model=model)["text"]

    def llm_query_batched(prompts, model=None):
        """Ask many questions at once (answered concurrently); returns a list of texts."""
        return call("llm_query_batched", prompts=[str(p) for p in prompts], model=model)["texts"]

    def rlm_query(prompt, context=None):
        """Start a sub-agent with its own kernel; returns its final answer as a Python value."""
        ctx = None if context is None else payload(context)
        return unpayload(call("rlm_query", prompt=str(prompt), context=ctx)["value"])

    def rlm_query_batched(prompts, contexts=None):
        """Start many sub-agents at once; returns their answers in order."""
        prompts = [str(p) for p in prompts]
        ctxs = None if contexts is None else [None if c is None else payload(c) for c in contexts]
        values = call("rlm_query_batched", prompts=prompts, contexts=ctxs)["values"]
        return [unpayload(v) for v in values]

    def FINAL(value):
        """Give the final answer (any Python value)."""
        call("final", value=payload(value))

    def FINAL_VAR(name):
        """Give the value of the variable ``name`` as the final answer."""
        if not isinstance(name, str):
            return FINAL(name)
        key = name.strip().strip("'\"")
        if key not in ns:
            shown = ", ".join(_user_vars()) or "none"
            raise NameError(f"FINAL_VAR: no variable named {key!r}; variables: {shown}")
        FINAL(ns[key])

    class _Answer(dict):
        """The official rlm library's answer dict: ready=True gives the content as FINAL."""

        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            if key == "ready" and value:
                FINAL(self.get("content"))

    hidden = set()

    def _user_vars():
        import types
        return [
            k for k, v in ns.items()
            if not k.startswith("_") and k not in hidden
            and not isinstance(v, types.ModuleType)
            and k not in ("In", "Out", "exit", "quit", "get_ipython")
        ]

    def SHOW_VARS():
        """Print the variables you have made, with their types."""
        names = _user_vars()
        if not names:
            print("(no variables yet)")
        for k in names:
            shown = repr(ns[k])
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            print(f"{k}: {type(ns[k]).__name__} = {shown}")

    def load_context(file, kind):
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
            out = {}
            for root, dirs, files in os.walk(file):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    full = os.path.join(root, name)
                    try:
                        with open(full, encoding="utf-8") as f:
                            out[os.path.relpath(full, file).replace(os.sep, "/")] = f.read()
                    except (UnicodeDecodeError, OSError):
                        continue
            return out
        raise ValueError(f"unknown context kind {kind!r}")

    def setup(agent, file, kind, grant=""):
        # the bridge's address and token come in a one-time file, read and removed at once
        if grant:
            with open(grant, encoding="utf-8") as f:
                bridge = json.load(f)
            os.unlink(grant)
            state["path"], state["token"] = bridge["path"], bridge.pop("token")
        state["agent"] = agent
        if state["sock"] is not None:
            state["sock"].close()
            state["sock"] = None
        if state["token"]:
            connect()
        ns["context"] = load_context(file, kind)
        ns["answer"] = _Answer(content="", ready=False)

    def limit_memory(megabytes):
        import resource
        cap = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    helpers = {
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
    ns["answer"] = _Answer(content="", ready=False)
    ns["_rlm_setup"] = setup
    ns["_rlm_limit_memory"] = limit_memory


_rlm_install(globals())
del _rlm_install
'''
