"""The sandbox on real kernels: what a cell cannot reach, what the flags open, and that no
process of a run outlives it however the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import cli, live_processes_with, start_cli_run, wait_for_session_text
from openai_server import OpenAIServer, Reply
from scripted import ScriptedModel, cell, until

from rlm_tui import defaults
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import Notice, RunFinished, RunStarted, SandboxInfo
from rlm_tui.kernel import wire
from rlm_tui.kernel.bridge import BridgeServer
from rlm_tui.kernel.pool import LocalKernelPool, kernel_env
from rlm_tui.kernel.rundirs import OWNER_FILE, private_dir
from rlm_tui.kernel.sandbox import SandboxPolicy, SandboxUnavailable, resolve_sandbox
from rlm_tui.session.export import export
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
SECRETS = {
    "OPENAI_API_KEY": "sk-test-canary-0123456789",
    "DATABASE_URL": "postgres://u:pw-canary@h/db",
    "SSH_AUTH_SOCK": "/tmp/ssh-canary/agent.1",
    "MYSQL_PWD": "mysql-canary",
    "AWS_ACCESS_KEY_ID": "AKIA-canary",
}
# what a cell tries: it prints one JSON object of what it could reach
PROBE = """
import json, os, socket
def attempt(action):
    try:
        return ("ok", action())
    except Exception as exc:
        return ("refused", type(exc).__name__)
def read(path):
    with open(path) as f:
        return f.read()
def write(path):
    with open(path, "w") as f:
        f.write("written by a cell")
def connect(port):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
leaks = []
for pid in pids:
    try:
        leaks.append(read(f"/proc/{pid}/environ"))
    except OSError:
        pass
print(json.dumps({
    "home": attempt(lambda: read(HOME_CANARY)),
    "project": attempt(lambda: read(PROJECT_CANARY)),
    "write_outside": attempt(lambda: write(OUTSIDE)),
    "write_venv": attempt(lambda: write(VENV_FILE)),
    "write_scratch": attempt(lambda: write("scratch.txt")),
    "tcp": attempt(lambda: connect(PORT)),
    "host_environ": attempt(lambda: read(f"/proc/{HOST_PID}/environ")),
    "pids": pids,
    "environ": dict(os.environ),
    "proc_environs": leaks,
}))
"""


@pytest.fixture
def tcp_port():
    """A TCP server on 127.0.0.1 (listening: a connect succeeds without an accept)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def host_secrets(monkeypatch, tmp_path):
    """The user's secrets in the host environment, and a canary in their $HOME."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    (home / "canary.txt").write_text("home canary")
    monkeypatch.setenv("HOME", str(home))
    # a host process whose /proc/<pid>/environ holds them (this one's shows its start's only)
    decoy = subprocess.Popen(["sleep", "120"], env={**os.environ, **SECRETS})
    yield home
    decoy.kill()
    decoy.wait()


@pytest.fixture
def project_canary():
    path = ROOT / f".canary-{uuid.uuid4().hex[:8]}"
    path.write_text("project canary")
    yield path
    path.unlink()


async def probe(kernel, **names: object) -> dict:
    parts: list[str] = []
    code = "".join(f"{k} = {v!r}\n" for k, v in names.items()) + PROBE
    result = await kernel.execute(code, lambda _s, text: parts.append(text), timeout=60)
    assert result.status == "ok", (result.error, "".join(parts))
    return json.loads("".join(parts))


async def test_a_cell_reaches_nothing_of_the_host(host_secrets, project_canary, tcp_port, tmp_path):
    outside = tmp_path / "outside.txt"
    venv_file = Path(sys.prefix) / "written-by-a-cell.txt"
    async with LocalKernelPool(size=0) as pool:
        assert pool.sandbox.active and pool.sandbox.warning is None
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        seen = await probe(
            kernel,
            HOME_CANARY=str(host_secrets / "canary.txt"),
            PROJECT_CANARY=str(project_canary),
            OUTSIDE=str(outside),
            VENV_FILE=str(venv_file),
            PORT=tcp_port,
            HOST_PID=os.getpid(),
        )
    for reach in ("home", "project", "write_outside", "write_venv", "tcp", "host_environ"):
        assert seen[reach][0] == "refused", (reach, seen[reach])
    assert seen["write_scratch"][0] == "ok"
    assert not outside.exists() and not venv_file.exists()
    # the kernel alone, pid 1 of its own PID namespace: no host process, no other of the run
    assert seen["pids"] == [1]
    text = json.dumps([seen["environ"], seen["proc_environs"]])
    for name, value in SECRETS.items():
        assert value not in text and name not in seen["environ"]
    assert seen["environ"]["HOME"] == seen["environ"]["TMPDIR"]
    assert "/scratch" in seen["environ"]["HOME"]


async def test_two_kernels_of_a_run_cannot_see_each_others_files():
    async with LocalKernelPool(size=0) as pool:
        first, second = await pool.acquire(), await pool.acquire()
        out: list[str] = []
        code = (
            "import os\nopen('mine.txt', 'w').write('x')\nopen('/tmp/left.txt', 'w').write('x')\n"
            "open('/dev/shm/left.txt', 'w').write('x')\nprint(os.getcwd())"
        )
        await first.execute(code, lambda _s, text: out.append(text))
        where, pid = "".join(out).strip(), first.pid
        first_scratch = Path(where)
        assert (first_scratch / "mine.txt").exists()  # on the host, in its scratch
        assert list(first_scratch.parent.glob("c-*.json"))  # its connection file (HMAC key)
        out.clear()
        # its files; its view of them through /proc; its environment and memory
        # (/tmp and /dev/shm too: the sandbox's are one for all kernels, each has its own)
        paths = [
            first_scratch,
            first_scratch.parent,
            f"/proc/{pid}/root{first_scratch}",
            "/tmp/left.txt",
            "/dev/shm/left.txt",
        ]
        look = (
            "import os\n"
            f"for p in {[str(p) for p in paths]!r}:\n"
            "    print(os.path.exists(p))\n"
            f"for p in ['/proc/{pid}/environ', '/proc/{pid}/mem']:\n"
            "    try:\n"
            "        open(p, 'rb').read(1)\n"
            "        print('read', p)\n"
            "    except OSError:\n"
            "        print('refused')\n"
            "import ctypes\n"
            f"print(ctypes.CDLL(None).ptrace(16, {pid}, 0, 0))"  # PTRACE_ATTACH
        )
        result = await second.execute(look, lambda _s, text: out.append(text))
    assert result.status == "ok", result.error
    assert "".join(out).split() == ["False"] * 5 + ["refused"] * 2 + ["-1"]


def nspids(host_pid: int) -> list[int]:
    """A process's pids, the host's first, then in each namespace below it."""
    status = Path(f"/proc/{host_pid}/status").read_text()
    return [
        int(n) for n in next(x for x in status.splitlines() if x.startswith("NSpid:")).split()[1:]
    ]


FORK_BOMB = """
import ctypes, os, time
def bomb(report):
    kids, error = [], None
    try:
        while len(kids) < 5000:
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            kids.append(pid)
    except OSError as exc:
        error = type(exc).__name__
    for pid in kids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.write(report, f"{len(kids)} {error}".encode())
r, w = os.pipe()
if NESTED:  # from a PID namespace of the cell's own (a single-threaded child can make one)
    child = os.fork()
    if child == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x10000000 | 0x20000000):  # CLONE_NEWUSER | CLONE_NEWPID
            os.write(w, f"0 unshare-{ctypes.get_errno()}".encode())
            os._exit(1)
        first = os.fork()  # pid 1 of the new namespace
        if first == 0:
            bomb(w)
            os._exit(0)
        os.waitpid(first, 0)
        os._exit(0)
    os.waitpid(child, 0)
else:
    bomb(w)
os.close(w)
print(os.read(r, 100).decode())
"""


@pytest.mark.parametrize("nested", [False, True])
async def test_a_fork_bomb_stops_at_the_kernels_task_cap(nested):
    async with LocalKernelPool(size=0) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        parts: list[str] = []
        result = await kernel.execute(
            f"NESTED = {nested}\n{FORK_BOMB}", lambda _s, text: parts.append(text), timeout=60
        )
        assert result.status == "ok", "".join(parts)
        forked, error = "".join(parts).split()[:2]
        assert 100 < int(forked) < defaults.KERNEL_MAX_TASKS and error == "BlockingIOError"
        parts.clear()
        await kernel.execute("import os\nprint(os.getpid())", lambda _s, t: parts.append(t))
        assert "".join(parts).strip() == "1"  # the kernel itself lives on


def parent_of(host_pid: int) -> int:
    status = Path(f"/proc/{host_pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1])


async def test_a_kernel_sees_and_signals_only_its_own_processes():
    async with LocalKernelPool(size=0) as pool:
        mine, other = await pool.acquire(), await pool.acquire()
        await mine.setup("0.1", None, "none")
        await other.setup("0.2", None, "none")
        keeper = parent_of(other.pid)
        template = parent_of(keeper)
        # the other kernel, its keeper and the template: by their pids in the sandbox (the
        # numbers a cell could guess) and on the host
        targets = [nspids(p)[1] for p in (other.pid, keeper, template)]
        targets += [other.pid, keeper, template]
        code = (
            "import json, os, subprocess\n"
            "child = subprocess.Popen(['sleep', '30'])\n"
            "tasks = {int(t) for t in os.listdir('/proc/self/task')} | {child.pid}\n"
            "def answers(pid):\n"
            "    try:\n"
            "        os.kill(pid, 0)\n"
            "        return True\n"
            "    except ProcessLookupError:\n"
            "        return False\n"
            "def kill(pid):\n"
            "    try:\n"
            "        os.kill(pid, 9)\n"
            "        return 'killed'\n"
            "    except OSError as exc:\n"
            "        return type(exc).__name__\n"
            "print(json.dumps({\n"
            "    'proc': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
            "    'me': os.getpid(), 'child': child.pid, 'tasks': sorted(tasks),\n"
            "    'answering': [p for p in range(1, 4096) if answers(p)],\n"
            f"    'kills': {{p: kill(p) for p in {targets!r} if p not in tasks}},\n"
            "}))"
        )
        out: list[str] = []
        result = await mine.execute(code, lambda _s, text: out.append(text), timeout=30)
        assert result.status == "ok", (result.error, out)
        seen = json.loads("".join(out))
        after: list[str] = []
        result = await other.execute("print(6 * 7)", lambda _s, text: after.append(text))
    # /proc lists the kernel (pid 1) and what its cell started, nothing else
    assert seen["me"] == 1 and seen["proc"] == [1, seen["child"]]
    # every pid that answers a signal is one of its own threads or processes
    assert set(seen["answering"]) <= set(seen["tasks"])
    assert all(str(p) in seen["kills"] for p in targets[3:])  # host pids: never its own
    assert set(seen["kills"].values()) == {"ProcessLookupError"}
    assert (result.status, "".join(after)) == ("ok", "42\n")  # the other kernel goes on


async def test_allow_read_opens_that_path_read_only_and_allow_net_the_network(tmp_path, tcp_port):
    # under /tmp (where each kernel has a /tmp of its own), one with a space in its name
    allowed, other = tmp_path / "allowed dir", tmp_path / "other"
    for directory in (allowed, other):
        directory.mkdir()
        (directory / "data.txt").write_text(f"in {directory.name}")
    one_file = tmp_path / "one file.txt"
    one_file.write_text("a file allowed alone")
    link = tmp_path / "a link"  # allowed by a symlink's name: seen at that name
    link.symlink_to(other)
    policy = SandboxPolicy(allow_read=(allowed, one_file, link), allow_net=True)
    async with LocalKernelPool(size=0, sandbox=resolve_sandbox(policy)) as pool:
        kernel = await pool.acquire()
        await kernel.setup("0", None, "none")
        out: list[str] = []
        code = (
            f"print(open({str(one_file)!r}).read())\n"
            f"try:\n    open({str(one_file)!r}, 'a')\nexcept OSError as exc:\n    print(exc.errno)\n"
            f"print(open({str(link / 'data.txt')!r}).read())"
        )
        await kernel.execute(code, lambda _s, t: out.append(t))
        seen = await probe(
            kernel,
            HOME_CANARY=str(allowed / "data.txt"),
            PROJECT_CANARY=str(other / "data.txt"),
            OUTSIDE=str(allowed / "new.txt"),
            VENV_FILE=str(other / "new.txt"),
            PORT=tcp_port,
            HOST_PID=os.getpid(),
        )
    assert "".join(out).split("\n")[:3] == ["a file allowed alone", str(errno.EROFS), "in other"]
    assert seen["home"] == ["ok", "in allowed dir"]
    assert seen["project"][0] == "refused"
    assert seen["write_outside"][0] == "refused" and not (allowed / "new.txt").exists()
    assert seen["tcp"] == ["ok", None]


async def test_secrets_reach_neither_the_session_nor_its_exports(host_secrets, tmp_path):
    sessions_dir = tmp_path / "sessions"
    leak = cell(
        "import os\nfound = {}\nfor p in os.listdir('/proc'):\n"
        "    try:\n        found[p] = open(f'/proc/{p}/environ').read()\n"
        "    except OSError:\n        pass\n"
        "print(dict(os.environ), found)\nFINAL(str(dict(os.environ)) + str(found))"
    )
    run = Run(
        RunConfig(
            query="q",
            context_value="a private context",
            sessions_dir=sessions_dir,
            sandbox="require",
        ),
        model=ScriptedModel({"q": [leak]}),
    )
    result = await run.execute()
    assert result.status == "answered" and "HOME" in result.answer
    outputs = [export(result.session_dir, fmt, tmp_path / f"out.{fmt}") for fmt in ("md", "ipynb")]
    files = [p for p in result.session_dir.rglob("*") if p.is_file()] + outputs
    for path in files:
        text = path.read_text(errors="replace")
        for value in SECRETS.values():
            assert value not in text, (path, value)
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(result.session_dir.stat().st_mode) == 0o700
    started = read_session(result.session_dir).events[0]
    assert isinstance(started, RunStarted) and started.sandbox is not None
    assert started.sandbox.active and started.sandbox.mode == "require"


@pytest.fixture
def failing_bwrap(tmp_path, monkeypatch):
    """A bwrap that cannot start anything, as on a machine without user namespaces."""
    script = tmp_path / "bwrap"
    script.write_text(
        "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("RLM_TUI_BWRAP", str(script))
    return script


async def test_the_sandbox_probe_runs_off_the_runs_event_loop(monkeypatch, sessions_dir):
    """The first resolve of a sandbox starts bwrap and waits for it: in the TUI, on the app's
    loop, that wait was a frozen screen."""
    from rlm_tui.kernel import sandbox

    threads: list[threading.Thread] = []
    probe = sandbox._probe

    def recorded(bwrap: str, allow_net: bool) -> str | None:
        threads.append(threading.current_thread())
        return probe(bwrap, allow_net)

    monkeypatch.setattr(sandbox, "_probe", recorded)
    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=ScriptedModel({"q": [cell("FINAL(1)")]}),
    )
    assert (await run.execute()).status == "answered"
    assert threads and threading.main_thread() not in threads


def refused_run(cwd: Path, *flags: str) -> list[str]:
    """``rlm-tui run FLAGS q`` that must end before the run does: its lines of stderr."""
    done = cli("run", *flags, "q", cwd=cwd)
    assert done.returncode == 2, done.stderr
    assert not (cwd / "sessions").exists()
    return done.stderr.strip().splitlines()


def test_sandbox_require_without_a_sandbox_is_one_line_and_exit_2(failing_bwrap, tmp_path):
    lines = refused_run(tmp_path, "--sandbox", "require")
    assert len(lines) == 1 and lines[0].startswith("rlm-tui: error: --sandbox require"), lines
    assert "Permission denied" in lines[0]


@pytest.mark.parametrize(
    ("allowed", "covered"), [("/", "/proc"), ("/tmp", "/tmp"), ("/dev", "/dev")]
)
def test_allow_read_of_what_would_cover_the_sandboxs_own_mounts_is_one_line_and_exit_2(
    tmp_path, allowed, covered
):
    """A read-only bind of /tmp (or of /) over the sandbox's own /tmp stopped the template, as a
    kernel error after the run had started."""
    assert refused_run(tmp_path, "--allow-read", allowed) == [
        f"rlm-tui: error: --allow-read: {allowed} would cover the sandbox's own {covered}; "
        "name the directories inside it you want read"
    ]


def test_sandbox_auto_without_a_sandbox_answers_with_a_loud_warning(failing_bwrap, sessions_dir):
    with OpenAIServer() as server:
        server.script([Reply(text=cell("FINAL('answered unsandboxed')"))])
        process = start_cli_run(server.base_url, sessions_dir, "--sandbox", "auto", "q")
        stdout, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    assert stdout.strip() == "answered unsandboxed"
    assert "NO SANDBOX" in stderr and "Permission denied" in stderr
    events = read_session(next(sessions_dir.iterdir())).events
    started = events[0]
    assert isinstance(started, RunStarted) and started.sandbox is not None
    assert not started.sandbox.active and "NO SANDBOX" in (started.sandbox.warning or "")
    assert any(isinstance(e, Notice) and "NO SANDBOX" in e.message for e in events)


def test_an_interpreter_started_through_dotdot_runs_its_kernels_in_the_sandbox(tmp_path):
    """``../venv/bin/python -m rlm_tui`` from a directory beside the venv: Python keeps the
    ``..`` in ``sys.executable``, and the sandbox has none of the directories it goes
    through (the kernel's template failed with execvp's "No such file or directory")."""
    python = os.path.relpath(sys.executable, tmp_path)
    assert python.startswith("..")
    done = subprocess.run(
        [python, "-m", "rlm_tui", "run", "--sandbox", "require", "--sessions-dir", "s", "hi"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    started = read_session(next((tmp_path / "s").iterdir())).events[0]
    assert isinstance(started, RunStarted) and started.sandbox and started.sandbox.active


def test_a_system_bwrap_that_fails_gives_way_to_the_bundled_one(tmp_path, monkeypatch):
    """A setuid system bwrap refuses the sandbox's capability; the bundled one is tried next
    instead of running with no sandbox (named by $RLM_TUI_BWRAP, only the named one is)."""
    script = tmp_path / "bwrap"
    script.write_text("#!/bin/sh\necho 'bwrap: --cap-add in setuid mode' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.delenv("RLM_TUI_BWRAP", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sandbox = resolve_sandbox(SandboxPolicy("require"))
    assert sandbox.active and sandbox.bwrap != str(script)
    monkeypatch.setenv("RLM_TUI_BWRAP", str(script))
    with pytest.raises(SandboxUnavailable, match="setuid mode"):
        resolve_sandbox(SandboxPolicy("require"))


# -- orphans ----------------------------------------------------------------------------------


def descendants(root: int) -> set[int]:
    """Every live process under ``root`` (by parent pid), sandboxed ones included."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


def described(pids: set[int]) -> dict[int, str]:
    """What each of ``pids`` runs: an assertion's message names the survivors."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def gone_within(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


def start_cli_holding_children(server: OpenAIServer, sessions_dir: Path, *extra: str):
    """A headless run whose cell starts 10 children, one in a session of its own and one there
    with its environment cleared (no tag), then spins in C (``sum`` over a range holds the
    GIL and ignores interrupts)."""
    marker = f"3000.{uuid.uuid4().int % 10**6}"
    code = (
        "import subprocess\n"
        f"kids = [subprocess.Popen(['sleep', '{marker}']) for _ in range(10)]\n"
        f"loner = subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        f"ghost = subprocess.Popen(['sleep', '{marker}'], start_new_session=True, env={{}})\n"
        "print('children started', flush=True)\n"
        "sum(range(10**15))"
    )
    server.script([Reply(text=cell(code))])
    process = start_cli_run(server.base_url, sessions_dir, *extra, "q")
    try:
        # the cell has started (its code holds the words: its output may never leave, as the
        # C loop after it holds the GIL the kernel's IOPub thread needs to send it)
        wait_for_session_text(sessions_dir, "children started", timeout=90)
        deadline = time.monotonic() + 60
        while len(live_processes_with(marker)) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(live_processes_with(marker)) == 12
        run_processes = descendants(process.pid)
        assert set(live_processes_with(marker)) <= run_processes
    except BaseException:
        process.terminate()
        process.communicate(timeout=30)
        raise
    return process, run_processes


def test_kill_9_of_the_host_leaves_no_process_of_the_run(sessions_dir):
    with OpenAIServer() as server:
        process, run_processes = start_cli_holding_children(server, sessions_dir)
        process.kill()
        process.communicate(timeout=10)
    assert gone_within(run_processes, 2.0) == set()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGHUP, 129), (signal.SIGTERM, 143)])
def test_hangup_and_terminate_stop_the_run_cleanly(sessions_dir, signum, code):
    with OpenAIServer() as server:
        process, run_processes = start_cli_holding_children(server, sessions_dir, "--json")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    assert gone_within(run_processes, 2.0) == set()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert json.loads(stdout)["status"] == "stopped"
    events = read_session(next(sessions_dir.iterdir())).events
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped"


@pytest.mark.parametrize("end", ["SIGTERM", "kill -9, then the next start"])
def test_sandbox_off_leaves_no_child_of_a_cell_behind(sessions_dir, end):
    with OpenAIServer() as server:
        process, run_processes = start_cli_holding_children(
            server, sessions_dir, "--sandbox", "off"
        )
        kernels = set(live_processes_with("rlm_tui.kernel.zygote")) & run_processes
        assert len(kernels) >= 2  # the template, the root's kernel and the warm ones
        if end == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            process.kill()
        _, stderr = process.communicate(timeout=30)
    if end == "SIGTERM":
        assert "sandbox off" in stderr
    else:  # the kernel died with the host; what its cell started waits for the next start
        assert gone_within(kernels, 2.0) == set()
        asyncio.run(LocalKernelPool(size=0).close())
    left = gone_within(run_processes, 2.0)
    assert left == set(), described(left)


async def test_sandbox_off_kills_what_escaped_its_group_and_tag_when_its_kernel_ends():
    """A cell's child in a session of its own with a cleared environment, and one it leaves
    behind by exiting first (a daemon's double fork): neither process group nor tag finds
    them. They live while their kernel does (another kernel's end leaves them be), then come
    back to the template as orphans, which kills them."""
    marker = f"3000.{uuid.uuid4().int % 10**6}"
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True, env={{}})\n"
        f"subprocess.Popen(['sh', '-c', 'setsid sleep {marker} & exit'], env={{}}).wait()"
    )
    sandbox = resolve_sandbox(SandboxPolicy(mode="off"))
    async with LocalKernelPool(size=0, sandbox=sandbox) as pool:
        kernel, other = await pool.acquire(), await pool.acquire()
        await kernel.setup("0", None, "none")
        result = await kernel.execute(code, lambda _stream, _text: None, timeout=30)
        assert result.status == "ok", result.error
        deadline = time.monotonic() + 10
        while len(live_processes_with(marker)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        escaped = set(live_processes_with(marker))
        assert len(escaped) == 2
        assert all(os.getsid(pid) not in (os.getsid(0), kernel.pid) for pid in escaped)
        await other.shutdown()  # the template reaps, and looks for orphans
        await asyncio.sleep(0.3)
        assert alive(escaped) == escaped, "a live kernel's processes are its own"
        await pool.release(kernel)  # its end runs on this loop: wait off it
        assert await asyncio.to_thread(gone_within, escaped, 2.0) == set()


def test_the_next_start_sweeps_temp_dirs_of_dead_runs_only():
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = private_dir("rlm-kernels-")
    (stale / OWNER_FILE).write_text(str(dead.pid))  # as a host killed with SIGKILL leaves it
    (stale / "k-1").mkdir()
    live = private_dir("rlm-kernels-")
    try:
        fresh = private_dir("rlm-kernels-")
        assert not stale.exists() and live.exists() and fresh.exists()
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    finally:
        for path in (live, fresh):
            shutil.rmtree(path, ignore_errors=True)


async def test_the_tui_header_says_when_kernels_run_unsandboxed():
    from tui_fixtures import sample_events

    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.config import UiConfig

    events = sample_events()
    warning = "NO SANDBOX: model-written code runs with your full rights (no bwrap found)"
    events[0] = events[0].model_copy(update={"sandbox": SandboxInfo(warning=warning)})
    app = RlmApp(events=events, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(200, 40)) as pilot:
        await until(pilot, lambda: warning in str(pilot.app.screen.query_one("#status").render()))


async def test_no_object_in_the_kernel_holds_the_bridge_token_and_reconnects_still_work():
    release = asyncio.Event()

    async def handle(agent: str, op: str, args: dict) -> dict:
        if args.get("prompt") == "slow":
            await release.wait()
        return {"text": f"{agent} asked {args['prompt']}"}

    bridge = BridgeServer(handle)
    await bridge.start()
    try:
        async with LocalKernelPool(size=0) as pool:
            kernel = await pool.acquire()
            grant = bridge.grant("0.1")
            await kernel.setup("0.1", None, "none", grant)
            digest = hashlib.sha256(grant["token"].encode()).hexdigest()
            hunt = (
                "import gc, hashlib\n"
                "def held(s):\n"
                f"    return isinstance(s, str) and len(s) == 48 and "
                f"hashlib.sha256(s.encode()).hexdigest() == {digest!r}\n"
                "print(any(held(r) for o in gc.get_objects() for r in gc.get_referents(o)))"
            )
            out: list[str] = []
            result = await kernel.execute(hunt, lambda _s, text: out.append(text))
            assert result.status == "ok" and "".join(out).strip() == "False"
            call = asyncio.ensure_future(
                kernel.execute("llm_query('slow')", lambda _s, _t: None, timeout=60)
            )
            await asyncio.sleep(1.0)
            await kernel.interrupt()
            assert (await call).status == "interrupted"
            out.clear()
            await kernel.execute("print(llm_query('again'))", lambda _s, text: out.append(text))
            assert "".join(out).strip() == "0.1 asked again"  # a new connection, no token
        # another process claiming the agent without its token is refused
        reader, writer = await asyncio.open_unix_connection(str(bridge.path))
        writer.write(wire.encode({"agent": "0.1"}))
        assert (await wire.read_frame(reader))["error"] == "bad token"
        writer.close()
    finally:
        release.set()
        await bridge.close()


def test_the_kernel_environment_is_an_allowlist(monkeypatch):
    for name, value in {**SECRETS, "OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SOME_TOOL_SETTING", "x")
    env = kernel_env({})
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and env["OMP_NUM_THREADS"] == "1"
    assert "PATH" in env and "SOME_TOOL_SETTING" not in env
    assert not set(SECRETS) & set(env)
    passed = kernel_env({}, ["DATABASE_URL", "NOT_SET_ANYWHERE"])  # --kernel-env, on purpose
    assert passed["DATABASE_URL"] == SECRETS["DATABASE_URL"] and "NOT_SET_ANYWHERE" not in passed
