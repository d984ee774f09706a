"""The kernel layer on real ipykernels: context loading, the bridge, secrets, limits, cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import live_processes_with, our_kernel_processes

from rlm_tui.kernel.bridge import BridgeServer
from rlm_tui.kernel.pool import SHARED_TEMPLATES, LocalKernelPool
from rlm_tui.kernel.zygote import Template, children, idle_group

pytestmark = pytest.mark.timeout(90)


class Host:
    """A bridge whose handler records calls and answers like a tiny engine would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.bridge = BridgeServer(self.handle)

    async def handle(self, agent: str, op: str, args: dict) -> dict:
        self.calls.append((agent, op, args))
        if op == "llm_query":
            return {"text": f"answer to {args['prompt']}"}
        if op == "llm_query_batched":
            return {"texts": [f"answer to {p}" for p in args["prompts"]]}
        if op == "rlm_query":  # echo the context back as the sub-agent's answer
            return {"value": args["context"]}
        if op == "final":
            return {}
        raise ValueError(f"no op {op}")


@pytest.fixture
async def host():
    h = Host()
    await h.bridge.start()
    yield h
    await h.bridge.close()


@pytest.fixture
async def pool():
    p = LocalKernelPool(size=1)
    await p.start()
    yield p
    await p.close()


async def run(kernel, code: str, timeout: float | None = 30) -> tuple[str, str | None, str]:
    parts: list[str] = []
    result = await kernel.execute(code, lambda _stream, text: parts.append(text), timeout=timeout)
    return result.status, result.error, "".join(parts)


@pytest.mark.parametrize(
    ("name", "content", "kind", "expected"),
    [
        ("c.txt", "hello\nworld", "text", "hello\nworld"),
        ("c.json", json.dumps({"a": [1, 2]}), "json", {"a": [1, 2]}),
        ("c.jsonl", '{"n": 1}\n{"n": 2}\n', "jsonl", [{"n": 1}, {"n": 2}]),
        ("c.yaml", yaml.safe_dump({"k": "v"}), "yaml", {"k": "v"}),
    ],
)
async def test_context_kinds(pool, host, tmp_path, name, content, kind, expected):
    path = tmp_path / name
    path.write_text(content)
    kernel = await pool.acquire()
    await kernel.setup("0", path, kind, host.bridge.grant("0"))
    status, _, out = await run(kernel, "print(repr(context))")
    assert status == "ok" and out.strip() == repr(expected)
    await pool.release(kernel)


async def test_directory_context(pool, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "sub" / "b.md").write_text("B")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00")
    os.mkfifo(tmp_path / "pipe")  # read, it would never end
    kernel = await pool.acquire()
    await kernel.setup("0", tmp_path, "dir")
    _, _, out = await run(kernel, "print(sorted(context.items()))")
    assert out.strip() == "[('a.txt', 'A'), ('sub/b.md', 'B')]"
    await pool.release(kernel)


async def test_sub_calls_values_and_final_through_the_bridge(pool, host):
    kernel = await pool.acquire()
    await kernel.setup("0.2", None, "none", host.bridge.grant("0.2"))
    code = """
print(llm_query("q1"))
print(llm_query_batched(["a", "b"]))
v = rlm_query("child", context={"t": (1, 2), 3: "int key"})
print(type(v).__name__, v)
FINAL_VAR("v")
answer["content"] = "done"; answer["ready"] = True
"""
    status, error, out = await run(kernel, code)
    assert status == "ok", error
    assert "answer to q1" in out and "['answer to a', 'answer to b']" in out
    assert "dict {'t': (1, 2), 3: 'int key'}" in out  # pickled across: tuple and int key kept
    finals = [args["value"] for agent, op, args in host.calls if op == "final"]
    assert [f["repr"] for f in finals] == ["{'t': (1, 2), 3: 'int key'}", "'done'"]
    assert all(agent == "0.2" for agent, _, _ in host.calls)
    status, error, _ = await run(kernel, "FINAL_VAR('missing')")
    assert status == "error" and "no variable named 'missing'" in error
    await pool.release(kernel)


async def test_a_traceback_has_one_line_of_code_a_frame(pool):
    """Python's own form, which a model reads in the fewest tokens: no lines around each
    frame's, as IPython's default shows."""
    kernel = await pool.acquire()
    await kernel.setup("0", None, "none")
    code = "def f():\n    unused = 1\n    return 1 / 0\n\nf()"
    status, error, out = await run(kernel, code)
    assert (status, error) == ("error", "ZeroDivisionError: division by zero")
    assert out.startswith("Traceback (most recent call last):")
    assert "line 3 in f\n    return 1 / 0" in out and "line 5\n    f()" in out
    assert "unused" not in out and "\x1b" not in out
    await pool.release(kernel)


async def test_secrets_and_bridge_token_are_not_visible(monkeypatch, host):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-secret")
    async with LocalKernelPool(size=0) as pool:
        kernel = await pool.acquire()
        grant = host.bridge.grant("0")
        token = grant["token"]
        await kernel.setup("0", None, "none", grant)
        _, _, out = await run(
            kernel,
            "import os\nprint(sorted(k for k in os.environ if 'KEY' in k or 'TOKEN' in k))\n"
            "print(llm_query('x'))",
        )
        assert "sk-secret-value" not in out and "OPENAI_API_KEY" not in out
        assert out.splitlines() == ["[]", "answer to x"]
        _, _, history = await run(kernel, "print(In)")
        assert token not in out + history


async def test_bridge_refuses_a_wrong_token(host):
    reader, writer = await asyncio.open_unix_connection(str(host.bridge.path))
    hello = json.dumps({"token": "wrong", "agent": "0"}).encode()
    writer.write(struct.pack(">I", len(hello)) + hello)
    request = json.dumps({"id": 1, "op": "llm_query", "args": {"prompt": "x"}}).encode()
    writer.write(struct.pack(">I", len(request)) + request)
    await writer.drain()
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    reply = json.loads(await reader.readexactly(size))
    assert reply["error"] == "bad token"
    assert await reader.read() == b""  # closed
    assert host.calls == []
    writer.close()
    assert oct(host.bridge.path.stat().st_mode & 0o777) == "0o600"
    assert oct(host.bridge.path.parent.stat().st_mode & 0o777) == "0o700"


async def test_memory_cap(tmp_path):
    # a kernel maps ~660 MB of address space here before any cell (600 failed at start)
    async with LocalKernelPool(size=0, memory_limit_mb=1024) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        # its /tmp (memory its cap does not count) holds no more than the cap
        _, _, tmp_bytes = await run(
            kernel, "import os\ns = os.statvfs('/tmp')\nprint(s.f_blocks * s.f_frsize)"
        )
        status, error, _ = await run(kernel, "x = bytearray(2 * 1024**3)")
        assert status in ("error", "killed")
        assert "MemoryError" in (error or "") or "memory cap" in (error or "")
    assert pool.sandbox.active and int(tmp_bytes) == 1024 * 1024**2


async def test_forked_processes_die_with_the_kernel():
    async with LocalKernelPool(size=0) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        await run(kernel, "import subprocess\np = subprocess.Popen(['sleep', '300.25'])")
        assert len(live_processes_with("300.25")) == 1
    await asyncio.sleep(0.2)
    assert live_processes_with("300.25") == []


async def test_pool_close_stops_kernels_that_are_still_booting():
    before = set(our_kernel_processes())
    pool = LocalKernelPool(size=2)
    await pool.start()
    await asyncio.sleep(0.1)
    await pool.close()
    await asyncio.sleep(0.2)
    assert set(our_kernel_processes()) - before == set()


async def test_runs_of_one_process_share_a_template_until_it_closes_them():
    first = LocalKernelPool(size=0, shared=True)
    kernel = await first.acquire()
    await kernel.setup("0", None, "none")
    await run(kernel, "leftover = 1\nopen('mine.txt', 'w').write('x')")
    await first.close()
    second = LocalKernelPool(size=0, shared=True)
    assert second._zygote is first._zygote  # no template start for the second run
    template = second._zygote._process
    assert template is not None and template.poll() is None
    kernel = await second.acquire()
    await kernel.setup("0", None, "none")
    status, error, out = await run(
        kernel, "import os\nprint('leftover' in globals(), os.path.exists('mine.txt'))"
    )
    assert (status, out) == ("ok", "False False\n"), error
    await second.close()
    assert template.poll() is None  # it outlives the runs...
    SHARED_TEMPLATES.close_all()
    assert template.poll() is not None  # ...until the process closes it (at its exit)
    assert kernel.pid not in our_kernel_processes()


async def test_the_leftover_check_sees_the_suites_kernels():
    async with LocalKernelPool(size=0) as pool:
        kernel = await pool.acquire()
        assert kernel.pid in our_kernel_processes()
    assert kernel.pid not in our_kernel_processes()


async def test_two_agents_kernels_from_one_template_share_nothing(pool, host):
    first, second = await pool.acquire(), await pool.acquire()
    await first.setup("0.1", None, "none", host.bridge.grant("0.1"))
    await second.setup("0.2", None, "none", host.bridge.grant("0.2"))
    status, error, out = await run(
        first,
        "import colorsys, json, os\ncolorsys.rgb_to_hsv = None\njson.marker = 1\nsecret_var = 1\n"
        "open('mine.txt', 'w').write('x')\nos.chdir('/')\nprint(os.getpid())",
    )
    assert status == "ok", error
    status, error, out = await run(
        second,
        "import colorsys, json, os\nprint(colorsys.rgb_to_hsv(1, 0, 0), hasattr(json, 'marker'), "
        "'secret_var' in globals(), os.path.exists('mine.txt'), os.getcwd() == '/')",
    )
    assert status == "ok", error
    assert out.split() == ["(0.0,", "1.0,", "1)", "False", "False", "False", "False"]
    assert first.pid != second.pid
    assert first.scratch != second.scratch and (first.scratch / "mine.txt").exists()
    await pool.release(first)
    await pool.release(second)


async def test_every_output_of_a_cell_arrives_before_its_end_in_order(pool):
    """The kernel's streams skip the flushes that have nothing to send (QuickFlushStream):
    what a cell writes still all arrives before the cell ends, in order on each stream (from
    the cell and a thread it joins), and so does what a subprocess writes to its stdout."""
    kernel = await pool.acquire()
    await kernel.setup("0", None, "none")
    code = (
        "import subprocess, sys, threading\n"
        "print(type(sys.stdout).__name__)\n"
        "for i in range(300):\n    print(i)\n    print(-i, file=sys.stderr)\n"
        "t = threading.Thread(target=print, args=('from a thread',))\nt.start()\nt.join()\n"
        "subprocess.run(['echo', 'from a subprocess'])\n"
        "print('last')"
    )
    for _ in range(3):
        chunks: list[tuple[str, str]] = []
        result = await kernel.execute(
            code, lambda stream, text, into=chunks: into.append((stream, text))
        )
        assert result.status == "ok", result.error
        out = "".join(text for stream, text in chunks if stream == "stdout").split()
        err = "".join(text for stream, text in chunks if stream == "stderr").split()
        assert out[0] == "QuickFlushStream"
        assert out[1:301] == [str(i) for i in range(300)]
        # the subprocess writes to the kernel's file descriptor, read by a thread of its own:
        # its place among the cell's prints is not kept (nor is it by ipykernel's own flush)
        rest = " ".join(out[301:])
        assert "from a subprocess" in rest
        assert rest.replace("from a subprocess", "").split() == ["from", "a", "thread", "last"]
        assert err == [str(-i) for i in range(300)]
    await pool.release(kernel)


async def test_a_kernel_sends_a_cells_output_up_to_its_limit_and_counts_the_rest():
    """Past its limit a kernel's stream sends nothing (a print loop grew a kernel to 3 GB and
    its host to 0.9 GB) and tells the host how much it did not send; the next cell has a
    limit of its own."""
    async with LocalKernelPool(size=0, output_limit=1000) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        for _ in range(2):
            chunks: list[tuple[str, str]] = []
            result = await kernel.execute(
                "import sys\nfor i in range(500):\n    print('y' * 99)\n"
                "    print('z' * 49, file=sys.stderr)",
                lambda stream, text, into=chunks: into.append((stream, text)),
            )
            assert result.status == "ok", result.error
            out = "".join(text for stream, text in chunks if stream == "stdout")
            err = "".join(text for stream, text in chunks if stream == "stderr")
            assert out == ("y" * 99 + "\n") * 10 and err == ("z" * 49 + "\n") * 20
            assert result.dropped == 500 * 100 + 500 * 50 - 2000


async def test_a_value_a_cell_shows_is_sent_up_to_the_limit_and_the_rest_counted():
    """A cell ending in a 100 MB string sent it all (1.7 s and 300 MB of the host to read);
    its last value and each ``display()`` are cut at the limit and the rest is counted."""
    async with LocalKernelPool(size=0, output_limit=1000) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        chunks: list[tuple[str, str]] = []
        result = await kernel.execute(
            "from IPython.display import display\ndisplay('d' * 5000)\n'r' * 3000",
            lambda stream, text: chunks.append((stream, text)),
        )
        assert result.status == "ok", result.error
        shown = [text for stream, text in chunks if stream == "result"]
        assert shown == ["'" + "d" * 999 + "\n", "'" + "r" * 999 + "\n"]
        assert result.dropped == (5002 - 1000) + (3002 - 1000)
        status, _, value = await run(kernel, "len(_)")
        assert status == "ok" and value.strip() == "3000"  # the kernel keeps the value whole


async def test_what_a_cell_printed_is_not_kept_in_its_kernel():
    """IPython 9 keeps every write of a cell to its streams for as long as the kernel lives:
    300 MB printed stayed 300 MB of the kernel's memory."""
    async with LocalKernelPool(size=0, output_limit=1000) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        status, _, _ = await run(kernel, "for i in range(3000):\n    print('x' * 100_000)")
        assert status == "ok"
        _, _, peak_kb = await run(
            kernel, "import resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        assert int(peak_kb) < 200 * 1024


SHELL_PROBE = (
    "import os\nip = get_ipython()\n"
    "print(hasattr(ip, 'marker'), ip.alias_manager.is_alias('hello'), "
    "len(ip.events.callbacks['pre_execute']), "
    "any(type(t).__name__ == 'Mark' for t in ip.ast_transformers), "
    "'leak' in ip.user_ns_hidden, "
    "not os.path.exists(os.path.join(ip.profile_dir.location, 'startup', 'planted.py')), "
    "ip.kernel is not None, ip.execution_count)"
)


async def test_the_shell_built_once_by_the_template_is_each_kernels_own(pool, host):
    """Every kernel's IPython shell is a copy of one the template built: what a cell does to
    its shell (attributes, aliases, hooks, AST transformers, execution count) stays in that
    kernel, and each has its own profile directory (a startup file planted in one is not in
    the next)."""
    first, second = await pool.acquire(), await pool.acquire()
    await first.setup("0.1", None, "none", host.bridge.grant("0.1"))
    await second.setup("0.2", None, "none", host.bridge.grant("0.2"))
    _, _, before = await run(second, SHELL_PROBE)
    status, error, _ = await run(
        first,
        "ip = get_ipython()\nip.marker = 1\nip.run_line_magic('alias', 'hello echo hi')\n"
        "ip.events.register('pre_execute', lambda: None)\nimport ast\n"
        "class Mark(ast.NodeTransformer):\n    pass\nip.ast_transformers.append(Mark())\n"
        "ip.user_ns_hidden['leak'] = 1\nimport os\n"
        "open(os.path.join(ip.profile_dir.location, 'startup', 'planted.py'), 'w').close()",
    )
    assert status == "ok", error
    for _ in range(3):
        await run(first, "pass")
    _, _, changed = await run(first, SHELL_PROBE)
    _, _, after = await run(second, SHELL_PROBE)
    *shared_before, count_before = before.split()
    *shared_after, count_after = after.split()
    *shared_changed, count_changed = changed.split()
    assert shared_changed[:2] == ["True", "True"] and shared_changed[3:5] == ["True", "True"]
    assert shared_after == shared_before and shared_after[:2] == ["False", "False"]
    assert shared_after[5:] == ["True", "True"]  # its own profile, its own kernel
    assert int(count_after) == int(count_before) + 1 < int(count_changed)
    await pool.release(first)
    await pool.release(second)


async def test_a_kernel_runs_no_startup_file_of_the_python_installation(host):
    """A kernel is the same on every machine: IPython runs the startup files of the Python
    installation's ``etc/ipython`` in every kernel it starts; ours runs none (nor reads a
    configuration file there)."""
    startup = Path(sys.prefix, "etc", "ipython", "startup")
    made = [p for p in (startup.parent.parent, startup.parent, startup) if not p.exists()]
    startup.mkdir(parents=True, exist_ok=True)
    planted = startup / "00-rlm-tui-test.py"
    planted.write_text("PLANTED = 1\n")
    pool = LocalKernelPool(size=0)  # its kernels are forked after the file is there
    try:
        await pool.start()
        kernel = await pool.acquire()
        await kernel.setup("0.1", None, "none", host.bridge.grant("0.1"))
        status, error, out = await run(kernel, "print('PLANTED' in globals())")
        assert status == "ok", error
        assert out.strip() == "False"
        await pool.release(kernel)
    finally:
        await pool.close()
        planted.unlink()
        for directory in reversed(made):
            directory.rmdir()


async def test_the_reserve_refills_between_cells_not_beside_them():
    """A refill is a kernel's start, CPU on the machine's few cores: it waits until no cell
    runs, so a running cell and the sub-agents it waits on have the cores."""
    async with LocalKernelPool(size=1) as pool:
        first = await pool.acquire()  # no cell runs: the reserve refills at once
        await first.setup("0", None, "none")
        cell = asyncio.ensure_future(run(first, "import time\ntime.sleep(1.5)"))
        await asyncio.sleep(0.3)
        second = await pool.acquire()  # the refilled kernel; its own refill waits
        assert pool.stocked == 0
        assert (await cell)[0] == "ok"
        assert pool.stocked == 1
        for kernel in (first, second):
            await pool.release(kernel)


async def test_kernels_yield_the_cpu_to_the_host_in_one_scheduling_group(pool):
    """Each kernel runs at nice 19 in a process group of its own (killed whole), but in the
    template's session: a session per kernel is a scheduling group (autogroup) per kernel,
    each weighing as much as the host's."""
    kernels = [await pool.acquire(), await pool.acquire()]
    # /proc/<pid>/stat after the command's ")": state ppid pgrp session ... nice (17th)
    stats = [Path(f"/proc/{k.pid}/stat").read_text().rsplit(")", 1)[1].split() for k in kernels]
    assert [int(stat[16]) for stat in stats] == [19, 19]
    assert stats[0][3] == stats[1][3]  # one session for both
    assert stats[0][2] != stats[1][2]  # a process group each
    for kernel in kernels:
        await pool.release(kernel)


def test_a_kernel_about_to_be_killed_gets_only_idle_cpu() -> None:
    """``idle_group``: every thread of the group's leader and of its child (a sandboxed
    kernel's keeper and the kernel), none outside."""
    threads = (
        "import threading, time\n" + "threading.Thread(target=time.sleep, args=(60,)).start()\n" * 3
    )
    kernel = (  # in a process group of its own, as a sandboxed kernel is
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {threads!r}], process_group=0)\n"
    )
    keeper = subprocess.Popen(
        [sys.executable, "-c", kernel + threads + "time.sleep(60)"], start_new_session=True
    )
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while len(tasks := kernel_tasks(keeper.pid)) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        idle_group(keeper.pid)
        assert [os.sched_getscheduler(task) for task in tasks] == [os.SCHED_IDLE] * 8
        assert os.sched_getscheduler(outside.pid) == os.SCHED_OTHER
    finally:
        for pid in children(keeper.pid):
            os.kill(pid, signal.SIGKILL)
        keeper.kill()
        keeper.wait()
        outside.kill()
        outside.wait()


def test_the_templates_end_is_not_cut_short_by_its_death_signal() -> None:
    """The host's death ends the template twice over (its socket, then SIGTERM): a SIGTERM
    in the middle of the killing starts it again, and none after can interrupt it."""

    class Interrupted(Template):
        calls = 0

        def kill_everything(self, passes: int = 3) -> None:
            self.calls += 1
            if self.calls == 1:
                raise SystemExit(0)  # what the template's SIGTERM handler raises

    ours, theirs = socket.socketpair()
    before = signal.getsignal(signal.SIGTERM)
    template = Interrupted(theirs)
    try:
        template.end()
        assert template.calls == 2
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
        template.selector.close()
        for fd in (template.wake_r, template.wake_w):
            os.close(fd)
        ours.close()
        theirs.close()


def kernel_tasks(keeper: int) -> list[int]:
    """The threads of ``keeper`` and of its children."""
    pids = [keeper, *children(keeper)]
    return [int(t.name) for pid in pids for t in Path(f"/proc/{pid}/task").iterdir()]


async def test_a_cell_killing_its_own_process_group_leaves_its_kernel_as_it_was(pool):
    """The kernel is pid 1 of its namespace, which its own SIGKILL does not reach; its keeper
    outside is in another group (it was not: the kernel died with it after the cell, and the
    next cell was blamed)."""
    kernel = await pool.acquire()
    await kernel.setup("0", None, "none")
    await run(kernel, "x = 41")
    assert (await run(kernel, "import os\nos.kill(0, 9)"))[0] == "ok"
    await asyncio.sleep(0.3)  # the keeper's death would reach the kernel by now
    assert await run(kernel, "print(x + 1)") == ("ok", None, "42\n")
    await pool.release(kernel)


async def test_a_killed_kernel_is_reported_with_a_reason_and_restarts_clean(pool):
    kernel = await pool.acquire()
    await kernel.setup("0", None, "none")
    await run(kernel, "x = 41")
    # from the host: in the sandbox the kernel is pid 1 of its namespace, which a cell's own
    # SIGKILL does not reach
    cell = asyncio.ensure_future(run(kernel, "import time\ntime.sleep(30)"))
    await asyncio.sleep(0.2)
    os.kill(kernel.pid, signal.SIGKILL)
    status, error, _ = await cell
    assert status == "killed" and "killed by signal 9, SIGKILL" in error
    assert not kernel.is_alive()
    await kernel.restart()
    status, error, out = await run(kernel, "print('x' in globals(), context == '')")
    assert (status, out.strip()) == ("ok", "False True")
    await pool.release(kernel)


async def test_interrupt_and_timeout_still_stop_a_cell(pool):
    kernel = await pool.acquire()
    await kernel.setup("0", None, "none")
    cell = asyncio.ensure_future(run(kernel, "import time\nwhile True: time.sleep(0.01)"))
    await asyncio.sleep(0.5)
    await kernel.interrupt()
    status, error, _ = await cell
    assert (status, error) == ("interrupted", "interrupted")
    status, error, _ = await run(kernel, "while True: pass", timeout=0.5)
    assert status == "timeout" and "interrupted" in error
    status, _, out = await run(kernel, "print('alive')")
    assert (status, out) == ("ok", "alive\n")
    await pool.release(kernel)


async def test_an_interrupt_stops_an_awaited_cell_at_once(pool):
    kernel = await pool.acquire()
    await kernel.setup("0", None, "none")
    cell = asyncio.ensure_future(run(kernel, "import asyncio\nawait asyncio.sleep(60)"))
    await asyncio.sleep(0.5)
    await kernel.interrupt()
    status, error, _ = await asyncio.wait_for(cell, 10)  # not the sleep's 60 s
    assert (status, error) == ("interrupted", "interrupted")
    code = "import asyncio\ntry:\n    await asyncio.sleep(0.01)\nfinally:\n    raise asyncio.CancelledError()"
    status, error, _ = await run(kernel, code)
    assert status == "error" and error == "CancelledError: "  # a cell's own cancel stays an error
    await pool.release(kernel)


async def test_a_template_that_cannot_start_is_an_error_with_its_reason():
    def failing(argv, runtime_dir):
        return ["sh", "-c", "echo 'bwrap: cannot do that' >&2; exit 1"]

    async with LocalKernelPool(size=0, wrap=failing) as pool:
        with pytest.raises(RuntimeError, match="template process ended: bwrap: cannot do that"):
            await pool.acquire()
