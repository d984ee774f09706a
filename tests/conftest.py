"""Shared fixtures; and a check that the whole suite leaves no kernel process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App

from rlm_tui.kernel.pool import SHARED_TEMPLATES

NESTED_QUERY = (
    "Generate a dictionary of different categories: fruits, countries, animals. For each "
    "category, generate 50 names of that and count the number of R in each, return as a "
    "nested dictionary"
)
FRUITS_QUERY = (
    "Generate 50 names of fruits and count the number of R in each, return as a dictionary"
)


SUITE_TAG = f"RLM_TUI_TEST_SUITE={uuid.uuid4().hex}"
os.environ[SUITE_TAG.split("=")[0]] = SUITE_TAG.split("=")[1]  # inherited by CLIs and kernels


KERNEL_COMMANDS = {b"ipykernel_launcher", b"rlm_tui.kernel.zygote"}


def _live_processes() -> Iterator[tuple[Path, list[bytes]]]:
    """Each live (not zombie) process: its /proc entry and its arguments."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            yield entry, cmdline


def our_kernel_processes() -> list[int]:
    """Pids of live kernels and kernel templates this suite started (directly or by a CLI)."""
    pids = []
    for entry, cmdline in _live_processes():
        if not KERNEL_COMMANDS & set(cmdline):
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if SUITE_TAG.encode() in environ:
            pids.append(int(entry.name))
    return pids


def live_processes_with(marker: str) -> list[int]:
    """Host pids of live processes with ``marker`` as one of their arguments: pids a
    sandboxed cell prints are its own namespace's, so tests find processes this way."""
    return [int(e.name) for e, cmdline in _live_processes() if marker.encode() in cmdline]


@pytest.fixture(scope="session", autouse=True)
def no_kernel_left_behind():
    before = set(our_kernel_processes())
    yield
    SHARED_TEMPLATES.close_all()  # what the process's exit does: runs share their template
    deadline = time.monotonic() + 2  # a killed template's end is not waited for
    while (left := set(our_kernel_processes()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"kernel processes left after the suite: {sorted(left)}"


@pytest.fixture
def sessions_dir(tmp_path: Path) -> Path:
    path = tmp_path / "sessions"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the repository's sessions/ by accident."""
    monkeypatch.setenv("RLM_TUI_SESSIONS", str(tmp_path / "default-sessions"))
    monkeypatch.setenv("RLM_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
async def start_run():
    """Start runs that are stopped (kernels and all) even when the test fails midway."""
    runs = []

    async def start(run):
        runs.append(run)
        await run.start()
        return run

    yield start
    for run in runs:
        if run.result is None:
            run.stop("test teardown")
            await run.wait()


def screen_lines(app: App[Any]) -> list[str]:
    """The text of each line of the app's screen, as drawn."""
    return [
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    ]


def cli(
    *args: str,
    cwd: Path | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``rlm-tui ARGS`` in a fresh interpreter, its output captured; ``env`` over this one's."""
    return subprocess.run(
        [sys.executable, "-m", "rlm_tui", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
    )


def start_cli_run(base_url: str, sessions_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """`rlm-tui run` in a child process against a loopback server (stdin piped)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "run",
            "--model",
            "openai/test",
            "--api-base",
            base_url,
            "--sessions-dir",
            str(sessions_dir),
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_session_text(sessions_dir: Path, *needles: str, timeout: float = 60) -> Path:
    """The first session's directory, once its events file holds every needle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for events in sessions_dir.glob("*/events.jsonl"):
            text = events.read_text()
            if all(needle in text for needle in needles):
                return events.parent
        time.sleep(0.05)
    raise AssertionError(f"no session showed {needles} within {timeout} s")
