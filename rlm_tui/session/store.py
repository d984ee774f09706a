"""Session directories: an append-only ``events.jsonl`` written by one process at a time.

A session is a directory ``<sessions_dir>/<id>/`` holding ``events.jsonl`` (one event per
line, flushed as it happens, never rewritten), a ``lock`` file held with ``flock`` while a
process writes, and the context file when the context did not come from a file on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from rlm_tui.errors import SessionError
from rlm_tui.events import FORMAT_VERSION, Event, Notice, RunStarted, dump_event, parse_event
from rlm_tui.paths import default_sessions_dir, make_private_dirs
from rlm_tui.redact import redact

EVENTS_FILE = "events.jsonl"
TORN_NOTICE = "the line before this one was cut short by a crash and is ignored"
LOCK_FILE = "lock"
_SEQ = re.compile(r'"seq":\s*(\d+)')
"""An event's number, found in a line cut short."""


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class SessionWriter:
    """Appends events to a session it holds the lock of; a second writer is refused."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / EVENTS_FILE
        self._lock_fd: int | None = None
        self._file: IO[str] | None = None

    @classmethod
    def create(cls, sessions_dir: Path, session_id: str | None = None) -> SessionWriter:
        directory = sessions_dir / (session_id or new_session_id())
        try:
            make_private_dirs(sessions_dir)
            if not sessions_dir.is_dir():  # a file of that name
                raise SessionError(f"cannot create session in {sessions_dir}: not a directory")
            directory.mkdir(mode=0o700, exist_ok=False)  # sessions can hold private context
        except FileExistsError:
            raise SessionError(f"session directory already exists: {directory}") from None
        except OSError as exc:
            raise SessionError(f"cannot create session in {sessions_dir}: {exc.strerror}") from None
        writer = cls(directory)
        writer.open()
        return writer

    def open(self) -> None:
        """Take the lock and open the event file for appending."""
        try:
            fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SessionError(f"cannot open session {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SessionError(
                f"session {self.directory.name} is being written by pid {holder}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        events = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = open(events, "a", encoding="utf-8")  # noqa: SIM115 - held open on purpose
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """End a line a crash left unfinished, and say so, so readers can skip it."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            torn = f.read(1) != b"\n"
        if torn:
            assert self._file is not None
            self._file.write("\n")
            self.append(Notice(seq=self._last_seq() + 1, message=TORN_NOTICE))

    def _last_seq(self) -> int:
        """The highest sequence number in the file, the torn line's included (its event was
        numbered before it was cut; the notice of the repair comes after it)."""
        last = 0
        for _number, line in iter_lines(self.path):
            with contextlib.suppress(ValueError, AttributeError):
                last = max(last, int(json.loads(line).get("seq", 0)))
                continue
            if found := _SEQ.search(line):
                last = max(last, int(found.group(1)))
        return last

    def append(self, event: Event) -> None:
        if self._file is None:
            return
        self._file.write(redact(dump_event(event)) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


@dataclass
class SessionLog:
    """The events of a session as read back, with the lines that could not be read."""

    directory: Path
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def started(self) -> RunStarted | None:
        first = self.events[0] if self.events else None
        return first if isinstance(first, RunStarted) else None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from enumerate(f, 1)
    except FileNotFoundError:
        raise SessionError(f"no session events at {path}") from None
    except OSError as exc:
        raise SessionError(f"cannot read {path}: {exc.strerror}") from None


def read_session(directory: Path) -> SessionLog:
    """Read every event; a torn last line is reported and ignored, other bad lines fail."""
    path = directory / EVENTS_FILE
    log = SessionLog(directory)
    lines = list(iter_lines(path))
    for i, (number, line) in enumerate(lines):
        if not line.strip():
            continue
        try:
            log.events.append(parse_event(line))
        except ValidationError as exc:
            where = f"{path}:{number}"
            followed_by_repair = i + 1 < len(lines) and TORN_NOTICE in lines[i + 1][1]
            if followed_by_repair or (i == len(lines) - 1 and not line.endswith("\n")):
                log.problems.append(f"{where}: torn line ignored")
                continue
            reason = exc.errors()[0].get("msg", "invalid event")
            raise SessionError(f"{where}: corrupt session line: {reason}") from None
    start = log.started
    if start is None:
        raise SessionError(f"{path}: not a session (no run_started event first)")
    if start.version > FORMAT_VERSION:
        raise SessionError(
            f"{path}: session format {start.version} is newer than this rlm-tui reads"
            f" ({FORMAT_VERSION})"
        )
    return log


def find_session(ref: str, sessions_dir: Path | None = None) -> Path:
    """A session directory from a path, an id, or a unique prefix of an id (never a pattern)."""
    if not ref.strip() or any(c in ref for c in "*?["):
        raise SessionError(f"{ref!r} is not a session id, id prefix or directory")
    as_path = Path(ref)
    if (as_path / EVENTS_FILE).is_file():
        return as_path
    if as_path.name == EVENTS_FILE and as_path.is_file():
        return as_path.parent
    if os.sep in ref:  # a path, never an id: an id's prefix is matched in the sessions dir
        raise SessionError(f"{ref}: {_not_a_session(as_path)}")
    base = sessions_dir or default_sessions_dir()
    if (base / ref / EVENTS_FILE).is_file():
        return base / ref
    matches = sorted(p for p in base.glob(f"{ref}*") if (p / EVENTS_FILE).is_file())
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:5])
        raise SessionError(f"'{ref}' matches several sessions: {names}")
    if as_path.is_dir():
        raise SessionError(f"{ref}: {_not_a_session(as_path)}")
    raise SessionError(f"no session '{ref}' (looked in {base})")


def _not_a_session(path: Path) -> str:
    if path.is_dir():
        return f"not a session directory (it has no {EVENTS_FILE})"
    return "not a session (no such directory)" if not path.exists() else "not a session"
