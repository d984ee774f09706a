"""A cell's iopub messages as output and a result: the same reading for every kind of kernel."""

from __future__ import annotations

import re
import time
from typing import Any

from rlm_tui.kernel.awaiting import INTERRUPTED
from rlm_tui.kernel.base import ExecResult, OutputCallback
from rlm_tui.kernel.wire import DROPPED

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def interrupted(error: dict[str, Any]) -> bool:
    """Whether an error message's cell was interrupted (plain, or awaited and cancelled)."""
    return error["ename"] == "KeyboardInterrupt" or (
        error["ename"] == "CancelledError" and error["evalue"] == INTERRUPTED
    )


class CellReader:
    """Feeds one execute request's messages to ``on_output``; remembers its one-line error."""

    def __init__(self, msg_id: str, on_output: OutputCallback) -> None:
        self.msg_id = msg_id
        self.on_output = on_output
        self.error: str | None = None
        self.dropped = 0

    def feed(self, msg: dict[str, Any]) -> bool:
        """Take one iopub message; True once the cell is done (its kernel went idle)."""
        if msg["parent_header"].get("msg_id") != self.msg_id:
            return False
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "stream":
            self.dropped += int(content.get(DROPPED, 0))
            if content["text"]:
                name = content["name"]
                self.on_output("stderr" if name == "stderr" else "stdout", content["text"])
        elif kind in ("execute_result", "display_data"):
            self.dropped += int(content.get("metadata", {}).get(DROPPED, 0))
            text = content.get("data", {}).get("text/plain")
            if text is not None:
                self.on_output("result", text + "\n")
        elif kind == "error":
            self.error = f"{content['ename']}: {content['evalue']}"
            trace = _ANSI.sub("", "\n".join(content.get("traceback", [])))
            self.on_output("error", trace + "\n")
            if interrupted(content):
                self.error = "KeyboardInterrupt"
        elif kind == "status" and content["execution_state"] == "idle":
            return True
        return False

    def result(self, duration: float, timed_out_after: float | None = None) -> ExecResult:
        """The cell's result; ``timed_out_after`` if it was interrupted for its time limit."""
        if self.error == "KeyboardInterrupt":
            if timed_out_after is not None:
                why = f"cell ran past {timed_out_after:g} s: interrupted"
                return ExecResult("timeout", duration, why, dropped=self.dropped)
            return ExecResult("interrupted", duration, "interrupted", dropped=self.dropped)
        return ExecResult(
            "error" if self.error else "ok", duration, self.error, dropped=self.dropped
        )


def unstoppable(timeout: float | None, started: float) -> ExecResult:
    """The result of a cell that ran past its time limit and ignored the interrupt (its
    kernel was restarted)."""
    return ExecResult(
        "timeout",
        time.monotonic() - started,
        f"cell ran past {timeout or 0:g} s and did not stop when interrupted; the kernel was "
        "restarted and its state lost",
        restarted=True,
    )
