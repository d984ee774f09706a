"""The kernel's ``sys.stdout`` and ``sys.stderr``: ipykernel's, with a flush that returns at once
when nothing is buffered, and a limit on what one request's output sends; the same limit on
each value a cell shows (``cap_displays``).

ipykernel flushes both streams before and after every request, and each flush waits for a
round trip to its IOPub thread, even with nothing to send: four thread hand-offs, about half of
a trivial cell's time. Skipping the empty ones keeps every guarantee a flush gives: whatever
the streams hold still goes out, and every message leaves through the IOPub thread's one queue
in the order it was sent. Set as ``IPKernelApp.outstream_class`` by the template.

The limit: a cell printing in a loop fills the stream's buffer between two flushes faster than
the host can read (``while True: print("x" * 100_000)`` grew a kernel to 3 GB and the host to
0.9 GB in 15 s), though the host keeps only its first ``keep_output`` characters. Past
``limit`` characters of a request, the stream only counts what it is given, and tells the host
the count (``wire.DROPPED``) in the request's last stream message, so the host still knows
how much the cell printed."""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import select
import struct
import sys
import termios
import threading
from collections import OrderedDict
from typing import Any

from ipykernel.iostream import OutStream

from rlm_tui.kernel.wire import DROPPED

_REQUESTS_COUNTED = 8
"""Requests whose output counts are kept (a thread of an earlier cell may still print)."""


class QuickFlushStream(OutStream):
    limit: int | None = None
    """Characters of one request's output that are sent; None: all (set by the template)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pipe_lock = threading.Lock()  # before ipykernel starts its pipe's reader
        self._pipe_text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        super().__init__(*args, **kwargs)
        self._start_counts()

    def _watch_pipe_fd(self) -> None:
        """ipykernel's reader of the pipe its stream captures the file descriptor with (what a
        subprocess writes to it), reading only under ``_pipe_lock`` what it then writes at
        once: a flush takes what is left itself (``_drain_pipe``), so nothing read is on its
        way meanwhile. ipykernel's reader wrote what it had read at its own pace, and under
        load a subprocess's output came after its cell's end."""
        fid = self._fid
        try:
            while fid is not None and self._should_watch:
                select.select([fid], [], [])
                if not self._drain_pipe():
                    return
        except Exception:
            self._exc = sys.exc_info()

    def _drain_pipe(self) -> bool:
        """Write what the pipe holds now to the stream; False once the pipe is closed."""
        fid = self._fid
        if fid is None:
            return False
        with self._pipe_lock:
            pending = struct.unpack("i", fcntl.ioctl(fid, termios.FIONREAD, b"\0" * 4))[0]
            if not pending:  # drained by a flush, or closed: readable with nothing to read
                return not select.select([fid], [], [], 0)[0]
            data = os.read(fid, pending)
            if not self._should_watch:  # the byte ``close`` wakes the reader with
                return False
            self.write(self._pipe_text.decode(data))
            os.write(self._original_stdstream_copy, data)
        return True

    @classmethod
    def adopt(cls, stream: OutStream) -> QuickFlushStream:
        """``stream``, made by ipykernel's own class (a gateway's kernel), made one of these:
        the class adds only methods and the counts, so its buffers and thread stay as they are.
        Not in a cell IPython copies the output of: it puts the stream's old ``write`` back on
        the instance when the cell ends, and after, that ``write`` (the ``OutStream``'s) is
        dropped here, as it would hide this class's."""
        if not isinstance(stream, cls):
            stream.__class__ = cls
            stream._start_counts()  # type: ignore[attr-defined]  # the class just changed
        vars(stream).pop("write", None)
        return stream  # type: ignore[return-value]

    def _start_counts(self) -> None:
        self._count_lock = threading.Lock()
        self._sent: OrderedDict[str, int] = OrderedDict()
        self._dropped: dict[str, tuple[dict[str, Any], int]] = {}
        """What each request printed past the limit and the host has not been told of."""

    def write(self, string: str) -> int | None:  # type: ignore[override]
        if self.limit is None or not isinstance(string, str):
            return super().write(string)
        given = len(string)
        parent = self.parent_header
        key = str(parent.get("msg_id", ""))
        with self._count_lock:
            sent = self._sent.pop(key, 0)
            room = max(self.limit - sent, 0)
            if given > room:
                _, dropped = self._dropped.get(key, (parent, 0))
                self._dropped[key] = (parent, dropped + given - room)
                string = string[:room]
            self._sent[key] = sent + len(string)
            while len(self._sent) > _REQUESTS_COUNTED:
                self._sent.popitem(last=False)
        if string:
            super().write(string)
        return given

    def flush(self) -> None:
        if getattr(self, "_pipe_lock", None) is not None:  # not a stream adopted (a gateway's)
            self._drain_pipe()
        lock, buffers = getattr(self, "_buffer_lock", None), getattr(self, "_buffers", None)
        if lock is not None and buffers is not None and not self._dropped:
            with lock:  # ipykernel 7's buffers; else every flush waits
                if not any(buffer.tell() for buffer in buffers.values()):
                    return
        super().flush()

    def _flush(self) -> None:
        super()._flush()
        with self._count_lock:
            reports, self._dropped = self._dropped, {}
        for parent, dropped in reports.values():
            content = {"name": self.name, "text": "", DROPPED: dropped}
            self.session.send(
                self.pub_thread,
                self.session.msg("stream", content, parent=parent),
                ident=self.topic,
            )


def limit_output(shell: Any, limit: int | None) -> None:
    """What ``shell``'s cells print and show is sent up to ``limit`` characters a request or a
    value, and counted past it (None: all is sent); IPython 9's copy of every stream write (for
    ``%history -o``, kept as long as the kernel lives: 3 GB in a 15 s print loop) is off."""
    shell._tee = lambda channel: contextlib.nullcontext()
    if limit is None:
        return
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, OutStream):
            QuickFlushStream.adopt(stream).limit = limit
    cap_displays(shell, limit)


def cap_displays(shell: Any, limit: int) -> None:
    """Each value ``shell`` shows (a cell's last expression, ``display()``) is sent cut to
    ``limit`` characters a format, and the characters of its text cut are told to the host
    (``DROPPED`` in its metadata): a cell ending in a 100 MB string sent it all, and the host
    took 1.7 s and 300 MB to read what it keeps the first ``keep_output`` characters of."""
    format_all = shell.display_formatter.format

    def format_capped(obj: Any, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        data, metadata = format_all(obj, include=include, exclude=exclude)
        dropped = max(len(data.get("text/plain", "")) - limit, 0)
        for mime, value in data.items():
            if isinstance(value, str) and len(value) > limit:
                data[mime] = value[:limit]
        return data, {**metadata, DROPPED: dropped} if dropped else metadata

    shell.display_formatter.format = format_capped
