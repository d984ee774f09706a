"""The kernel template ("zygote"): imports ipykernel, IPython and the prelude once, then forks
a fresh kernel per request, so a kernel costs an ``IPKernelApp.initialize`` and not a Python
start and its imports.

Run as ``python -m rlm_tui.kernel.zygote FD`` with one end of a socketpair on ``FD``; it speaks
``wire`` frames over it. The host asks ``fork`` (a kernel id, its connection file, cwd, env,
memory cap), ``signal`` (a kernel's process group) and ``kill``; the template answers ``forked``
and reports each child's end as ``exited`` with its wait status. Nothing here ever runs user
code, and no ZMQ context exists before a fork (ZMQ does not survive one): every kernel is a copy
of a template that never ran a cell. The template ends with the host (PR_SET_PDEATHSIG, however
the host dies) and its kernels with the template; when the host's end closes, it kills every
kernel and exits. It is its processes' subreaper: what a cell starts and leaves behind comes
back to it, and is killed, also unsandboxed, where no namespace ends it.

In the run's sandbox a fork asks to be isolated (``isolate``): the kernel enters user and mount
namespaces of its own where the runtime root holds its own directory only, and cannot be
ptraced or read through ``/proc`` by its siblings. Then a PID namespace of its own (``own_pids``):
the fork stays outside it as the kernel's keeper (the pid the template signals and waits for)
and forks the kernel as pid 1 inside it, with its own ``/proc``: a cell sees and can signal
only its own kernel's processes, never another kernel or the template, and when the kernel
dies every process of its namespace dies with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import selectors
import signal
import socket
import sys
import tempfile
import time
import traceback
from typing import Any

from rlm_tui import defaults
from rlm_tui.kernel import prelude, wire
from rlm_tui.kernel.outstream import limit_output

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 2
SANDBOXED = "--sandboxed"
"""The template's flag when it runs in the run's sandbox."""
KERNEL_IPYTHONDIR = "/tmp/.ipython"
"""IPython's directory in a sandboxed kernel: on the kernel's own /tmp (``own_tmp``)."""
SPARE_PROC = "/tmp/.rlm-proc"
"""A /proc of the sandbox with nothing mounted over it, which the template mounts at its start:
the kernel lets a user namespace mount a new /proc only beside a fully visible one (bwrap's own
has read-only covers over /proc/sys and others). Each kernel covers it before any cell runs."""
SHM = "/dev/shm"
_PROC_COVERS = ("sys", "sysrq-trigger", "irq", "bus")
"""What bwrap makes read-only in its /proc; a kernel's own /proc gets the same."""
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(number: int = signal.SIGKILL) -> None:
    """Signal this process (SIGKILL) when the process that started it dies, however it dies."""
    _libc.prctl(PR_SET_PDEATHSIG, number, 0, 0, 0)


def _end(*_: object) -> None:
    raise SystemExit(0)


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _own_namespaces(flags: int) -> None:
    """New user (and other) namespaces, this process's uid and gid mapped to themselves."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | flags), "unshare")
    maps = {"setgroups": "deny", "uid_map": f"{uid} {uid} 1", "gid_map": f"{gid} {gid} 1"}
    for name, text in maps.items():  # setgroups first: an unprivileged gid_map needs it
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    encoded = [x.encode() if x else None for x in (source, target, fstype, data)]
    _check(_libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]), f"mount {target}")


def isolate(root: str, own: str) -> None:
    """Hide every other kernel's directory of ``root`` (the runtime root) from this process.

    In new user and mount namespaces: ``own`` is held on a mount point aside, a tmpfs covers
    ``root``, and ``own`` is bound back at its path (so the sockets the kernel binds land in the
    directory the host sees). A second user namespace then locks those mounts (mounts copied into
    a less privileged namespace cannot be undone: the tmpfs cannot be unmounted to look beneath);
    a new IPC namespace parts System V objects; and the process is not dumpable, so a sibling can
    neither ptrace it nor read its ``/proc`` entries (its memory, its ``root`` and ``cwd``
    links, where this kernel's view of the files would be)."""
    _own_namespaces(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    hold = tempfile.mkdtemp(prefix=".rlm-own-", dir="/tmp")
    _mount(own, hold, None, MS_BIND | MS_REC)
    _mount("tmpfs", root, "tmpfs", 0, "mode=0700")
    os.makedirs(own, mode=0o700)
    _mount(hold, own, None, MS_BIND | MS_REC)
    _check(_libc.umount2(hold.encode(), MNT_DETACH), f"umount {hold}")
    os.rmdir(hold)
    _own_namespaces(CLONE_NEWNS | CLONE_NEWIPC)
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl")


def mount_spare_proc() -> None:
    """In the sandbox (given the capability for it): mount ``SPARE_PROC``, then drop the
    capabilities, so the template and its forks hold none that matters in the sandbox's
    namespaces."""
    os.makedirs(SPARE_PROC, mode=0o700)
    _mount("proc", SPARE_PROC, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    drop_capabilities()


def drop_capabilities() -> None:
    """Every capability but CAP_SETFCAP, which a new user namespace needs to map uid 0 (a
    host's root user, as in a container) to itself."""
    PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, CAP_SETFCAP = 47, 4, 31
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # (effective, permitted, inheritable) of caps 0-31, 32-63
    _check(_libc.capget(header, data), "capget")
    keep = 1 << CAP_SETFCAP
    data[:] = [data[0] & keep, data[1] & keep, 0, 0, 0, 0]
    _check(_libc.capset(header, data), "capset")


def own_pids(tmp_size_mb: int | None) -> None:
    """Fork the kernel as pid 1 of a new PID namespace; this process stays outside as its
    keeper, returns only in the kernel, and otherwise ends as the kernel ended.

    The kernel mounts its own /proc (with bwrap's read-only covers), covers the spare one,
    takes a /tmp and a /dev/shm of its own (``own_tmp``, ``own_shm``, of ``tmp_size_mb``), and
    enters one more user namespace so that a cell can undo none of it."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare")
    alive_r, alive_w = os.pipe()  # the keeper holds the write end while it lives
    kernel = os.fork()
    if kernel:
        os.close(alive_r)
        # the kernel leads a process group of its own, so a cell's ``os.kill(0, 9)`` cannot
        # reach its keeper (the kernel, pid 1, ignores it: the cell goes on, as it did); an
        # interrupt the template sends this group is the kernel's group's
        signal.signal(signal.SIGINT, lambda *_: os.killpg(kernel, signal.SIGINT))
        while True:
            with contextlib.suppress(InterruptedError):
                _, status = os.waitpid(kernel, 0)
                break
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
                signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.close(alive_w)
    os.setpgid(0, 0)
    die_with_parent()
    if select.select([alive_r], [], [], 0)[0]:  # the keeper died before the death signal was set
        os._exit(1)
    os.close(alive_r)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    cap_tasks(defaults.KERNEL_MAX_TASKS)
    for name in _PROC_COVERS:
        path = f"/proc/{name}"
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    if os.path.isdir(SPARE_PROC):
        _mount("tmpfs", SPARE_PROC, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=4k")
    own_tmp(tmp_size_mb)
    own_shm(tmp_size_mb)
    _own_namespaces(CLONE_NEWNS)
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl")


def cap_tasks(count: int) -> None:
    """At most ``count`` processes and threads in this PID namespace and those below it: its
    ``pid_max`` (a namespace's own since Linux 6.14; before, the write is refused and there is
    no cap). Set before /proc/sys is made read-only; a cell cannot raise it (the namespace
    belongs to a user namespace above the cell's)."""
    with contextlib.suppress(OSError), open("/proc/sys/kernel/pid_max", "w") as f:
        f.write(str(count + 1))  # pids 1 .. pid_max - 1


def own_tmp(size_mb: int | None) -> None:
    """A new tmpfs on /tmp (of ``size_mb``: the kernel's memory cap, whose count its pages
    escape; else half the memory, as the sandbox's own), with what the sandbox mounted under
    /tmp bound back at its path (the runtime root holding this kernel's directory,
    ``--allow-read`` paths), read-only where it was.

    The sandbox's /tmp is one for all of a run's kernels: a file one agent left there was read
    by the next. IPython's profile lives here too (``KERNEL_IPYTHONDIR``): its five directories
    on the disk were a tenth of a kernel's start in a fan-out (ext4 searches past the inodes of
    the kernels just deleted)."""
    kept: list[tuple[str, int]] = []
    try:
        for path in _mounts_below("/tmp"):
            kept.append((path, os.open(path, os.O_PATH)))
        size = f",size={size_mb}m" if size_mb else ""
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + size)
        try:
            for path, fd in kept:
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(path, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    open(path, "x").close()  # noqa: SIM115 - a mount point, nothing to write
                _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        except BaseException:
            # the runtime root back in sight: the host reads why in the kernel's .err file
            _libc.umount2(b"/tmp", MNT_DETACH)
            raise
    finally:
        for _, fd in kept:
            os.close(fd)


def own_shm(size_mb: int | None) -> None:
    """A new tmpfs on /dev/shm, as on /tmp (``own_tmp``): the sandbox's was one for all of a
    run's kernels, so a file one agent left there was read by another."""
    if os.path.isdir(SHM):
        size = f",size={size_mb}m" if size_mb else ""
        _mount("tmpfs", SHM, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + size)


def _mounts_below(top: str) -> list[str]:
    """The outermost mount points under ``top`` (each bound with those below it), but the
    spare /proc, which only the template's mount of a new /proc needs."""
    with open("/proc/self/mountinfo") as f:
        points = sorted({_unescape(line.split()[4]) for line in f})
    below = [p for p in points if p.startswith(top + "/") and not _within(p, SPARE_PROC)]
    return [p for p in below if not any(_within(p, q) for q in below if q != p)]


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are octal escapes there."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[-3:], 8)))
    return field


def preload() -> None:
    """Import what a kernel's initialize would import, so each fork skips it.

    Without debugpy: ipykernel's debugger is what nobody here uses and half the import time
    (a cell can still ``import debugpy``)."""
    import faulthandler  # noqa: F401

    sys.modules["debugpy"] = None  # type: ignore[assignment]
    try:
        import ipykernel.debugger  # noqa: F401 - finds no debugpy: no debugger in the kernel
    finally:
        del sys.modules["debugpy"]
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import IPython.core.completerlib  # noqa: F401
    import IPython.core.debugger  # noqa: F401
    import IPython.core.oinspect  # noqa: F401
    import IPython.extensions.storemagic  # noqa: F401
    import IPython.utils.wildcard  # noqa: F401
    import tornado.platform.asyncio  # noqa: F401
    import tornado.queues  # noqa: F401
    import yaml  # noqa: F401 - a yaml context


SHELL: Any = None
"""The IPython shell every kernel starts with, built once by the template (``prebuild``)."""
APP: Any = None
"""The kernel application every kernel initializes, made once by the template: its traits
are this module's, its connection file each kernel's own."""


def kernel_config() -> Any:
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no history database: nothing reads it
    # tracebacks as Python prints them, one line of code a frame, without colors (the host
    # strips them): what a model reads in the fewest tokens, and the cheapest to format (a
    # kernel's first traceback took 61 ms in IPython's default, its later ones 11 ms; in this
    # form 20 and 1.5 ms)
    config.InteractiveShell.xmode = "Plain"
    config.InteractiveShell.colors = "nocolor"
    config.IPKernelApp.outstream_class = "rlm_tui.kernel.outstream.QuickFlushStream"
    # a pause before each reply, for clients that read output until the reply: the host reads
    # iopub until the kernel is idle, which follows all of a cell's output
    config.Kernel._execute_sleep = 0.0
    return config


def prebuild() -> None:
    """Build what needs no socket before any fork: each kernel's ``IPythonKernel`` finds the
    shell (a third of a kernel's start) as the shell singleton, a copy that never ran code,
    and the kernel application is made once too (made in each fork, it cost 20-27 ms of the
    fork's CPU: the copies of the template's pages it touched). The kernel hands the shell its
    own streams and session after the fork."""
    global SHELL, APP
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.zmqshell import ZMQInteractiveShell

    SHELL = ZMQInteractiveShell.instance(config=kernel_config(), compiler_class=XCachingCompiler)
    APP = IPKernelApp.instance(
        parent_handle=0,  # no parent polling: the death signal does it
        quiet=True,
        config=kernel_config(),
    )
    # the traits are set above: skip building a parser for an empty command line (~30 ms)
    APP.parse_command_line = lambda argv=None: None
    # no heartbeat (its own zmq context and thread): the template reports a kernel's death
    APP.init_heartbeat = lambda: None
    # the connection file is the host's, written before the fork
    APP.write_connection_file = lambda: None
    # no IPython or Jupyter configuration file and no startup file: a kernel is the same on
    # every machine, so a session replays elsewhere as it ran (the kernel's own profile,
    # where IPython looks first, is new and empty anyway)
    APP.init_config_files = APP.load_config_file = lambda *_: None
    APP.init_code = hide_initial_namespace
    # IPython's default extension, loaded into the shell every kernel starts with
    SHELL.extension_manager.load_extension("storemagic")
    APP.init_extensions = lambda: None
    warm_first_use()


def hide_initial_namespace() -> None:
    """What IPython's ``init_code`` leaves where no startup code runs: the names the kernel
    starts with hidden from ``%who``, the modules ``%reset`` keeps."""
    SHELL.user_ns_hidden.update(SHELL.user_ns)
    SHELL._sys_modules_keys = set(sys.modules)


def warm_first_use() -> None:
    """Take, once, what each kernel would do on its first cell, its first value shown and its
    first traceback, and keep after: a cell's tokenizer compiles its regular expression (~8
    ms), the display formatter resolves its printers (~2 ms), a traceback imports pygments'
    formatters and compiles its patterns (~15 ms). No code runs in the shell: a cell's text is
    only transformed, a value of this function's only formatted, and the traceback is one of
    its own."""
    SHELL.transform_cell("pass\n")
    SHELL.display_formatter.format({"a": [1]})
    try:
        raise RuntimeError("warm-up")
    except RuntimeError:
        SHELL.InteractiveTB.structured_traceback(*sys.exc_info())
    SHELL.InteractiveTB.tb = None  # a kernel's ``%tb`` has no traceback before its first error


def run_kernel(request: dict[str, Any], template: int) -> None:
    """In the forked child: become a pristine kernel for ``request`` and serve until killed."""
    # its own process group, killed whole with its cells' children; not its own session,
    # which would be a scheduling group of its own (``yield_to_host``)
    os.setpgid(0, 0)
    die_with_parent()
    if os.getppid() != template:  # the template died before the death signal was set
        os._exit(1)
    # what its cells start and leave (a daemon's double fork) stays the kernel's while it
    # lives, and comes back to the template, which kills it, only when the kernel has ended
    # (sandboxed, the kernel is pid 1 of its namespace: that is so already)
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl")
    if request.get("isolate"):
        isolate(request["isolate"]["root"], request["isolate"]["own"])
        own_pids(request.get("memory_limit_mb"))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    app = APP
    app.connection_file = request["connection_file"]
    app.initialize([])  # its kernel takes the shell the template built
    shell = app.shell
    assert shell is not None and shell is SHELL
    # what the shell took from the template's process: now this kernel's
    shell.parent = shell.kernel = app.kernel
    shell.ipython_dir = app.ipython_dir
    shell.profile_dir = app.profile_dir
    shell.starting_dir = os.getcwd()
    shell.home_dir = os.environ["HOME"]
    shell.init_environment()
    prelude.install(shell.user_ns)
    limit_output(shell, request.get("output_limit"))
    if request.get("memory_limit_mb"):
        prelude.limit_memory(int(request["memory_limit_mb"]))
    app.start()


class Template:
    """The template's loop: requests from the host, child exits from SIGCHLD."""

    def __init__(self, host: socket.socket) -> None:
        self.host = host
        self.children: set[int] = set()
        self.groups: set[int] = set()
        """Every process group forked: a cell's children outlive their kernel until killed."""
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> None:
        # what a cell started and its ended kernel left (in a session of its own with its
        # environment cleared, which no process group or tag finds) comes back here as an
        # orphan, and is killed (``reap``)
        _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl")
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.host, selectors.EVENT_READ, "host")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "child")
        try:
            while True:
                for key, _ in self.selector.select():
                    if key.data == "child":
                        os.read(self.wake_r, 4096)
                        self.reap()
                    elif not self.handle(wire.recv(self.host)):
                        return
        except (ConnectionError, OSError):
            traceback.print_exc()
        finally:
            self.end()

    def end(self) -> None:
        """Kill every descendant, once nothing can cut that short: the host's death is both
        the socket's end and the death signal, and the signal (``SystemExit``) came in the
        middle of the killing the socket's end had begun (CI: a cell's child survived)."""
        while True:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                self.kill_everything()
                return
            except SystemExit:
                continue  # the death signal came before it was ignored: kill from the start

    def handle(self, request: dict[str, Any]) -> bool:
        op = request.get("op")
        if op == "fork":
            pid = self.fork(request)
            self.children.add(pid)
            self.groups.add(pid)
            wire.send(self.host, {"forked": request["kernel_id"], "pid": pid})
        elif op == "signal" and int(request["pid"]) in self.groups:
            if int(request["signal"]) == signal.SIGKILL:
                idle_group(int(request["pid"]))
            with contextlib.suppress(OSError):
                os.killpg(int(request["pid"]), int(request["signal"]))
        elif op == "exit":
            return False
        return True

    def fork(self, request: dict[str, Any]) -> int:
        template = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.selector.close()
            self.host.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            run_kernel(request, template)
        except BaseException as exc:
            code = 1
            with contextlib.suppress(OSError), open(request["connection_file"] + ".err", "w") as f:
                f.write("".join(traceback.format_exception_only(type(exc), exc)).strip())
        os._exit(code)

    def reap(self) -> None:
        """Report each kernel that ended, and kill every orphan that has come back: an orphan's
        end brings this here again, for the orphans it leaves in turn."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                break
            if pid in self.children:
                self.children.discard(pid)
                wire.send(self.host, {"exited": pid, "status": status})
        for orphan in self.orphans():
            with contextlib.suppress(OSError):
                os.kill(orphan, signal.SIGKILL)

    def orphans(self) -> set[int]:
        """The template's children that are not its kernels: processes of ended kernels' cells
        (a live kernel keeps its own orphans: it is their subreaper)."""
        return children(os.getpid()) - self.children

    def kill_everything(self, passes: int = 3) -> None:
        """At the end: SIGKILL every descendant at once, whatever its group, session or
        environment (waiting for each kernel's end to hand back its orphans took seconds on a
        loaded machine); the next passes take what forked meanwhile."""
        for _ in range(passes):
            found, seen = [os.getpid()], set[int]()
            while found:
                pid = found.pop()
                for child in children(pid) - seen:
                    seen.add(child)
                    found.append(child)
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGKILL)
            if not seen:
                return
            time.sleep(0.001)


def children(pid: int) -> set[int]:
    """The children of process ``pid`` (of each of its threads)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{pid}/task/{task}/children") as f,
            ):
                found.update(int(child) for child in f.read().split())
    return found


def idle_group(group: int) -> None:
    """Move every thread of the kernel that leads process group ``group`` (or of its keeper
    and the keeper's kernel, sandboxed) to SCHED_IDLE: it is about to be killed.

    A killed kernel's end is ~10 ms of system CPU (unmapping and freeing its pages), in its
    own threads and at their priority. At SCHED_IDLE that end takes only a core nothing else
    wants, not one the cells still running (and the answers they return) wait for: a 7-agent
    run at 0.2 s latency ended ~20 ms sooner. (What its cells started ends at the kill's
    priority: finding it took a read of every process's stat, for each kernel.)"""
    idle = os.sched_param(0)
    for pid in {group} | children(group):
        with contextlib.suppress(OSError):  # gone meanwhile
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(int(task), os.SCHED_IDLE, idle)


def yield_to_host() -> None:
    """Give the template and every kernel it forks the lowest CPU priority, so the host (its
    event loop, the TUI) runs first and kernels take the rest.

    Where the scheduler groups processes by session (Linux's autogroups), the priority of the
    template's session counts: each kernel stays in it. A kernel per session, even at nice 19,
    was a scheduling group as heavy as the host's: in a fan-out, 65 of them kept the host's
    event loop waiting on the run queue for up to a second."""
    os.nice(19)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:
        f.write("19")


def main(argv: list[str]) -> None:
    # the host's death (even kill -9) ends the template through its loop's cleanup, which
    # kills every kernel and what their cells left (``Template.serve``), not at once
    signal.signal(signal.SIGTERM, _end)
    die_with_parent(signal.SIGTERM)
    yield_to_host()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's to handle
    host = socket.socket(fileno=int(argv[0]))
    if SANDBOXED in argv[1:]:
        mount_spare_proc()
    preload()
    prebuild()
    wire.send(host, {"ready": os.getpid()})
    try:
        Template(host).serve()
    finally:
        # its kernels are dead: no interpreter teardown of all it imported (a loaded machine
        # took seconds of it, at the template's low priority, after the host's death)
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
