"""Headless progress: plain lines when stderr is a file or pipe, a live rich table on a terminal."""

from __future__ import annotations

import io

import pytest

from rlm_tui.events import AgentFinished, AgentStarted, ModelResponse, Notice, RunStarted, Usage
from rlm_tui.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def events() -> list:
    usage = Usage(prompt_tokens=1500, completion_tokens=200, calls=1, cost=0.0123)
    return [
        RunStarted(run_id="r1", query="q", model="demo", sub_model="demo", model_is_demo=True),
        AgentStarted(agent_id="0", depth=0, query="q", model="demo"),
        AgentStarted(agent_id="0.1", depth=1, query="sub", model="demo"),
        ModelResponse(agent_id="0.1", call_id="c1", step=2, model="demo", text="t", usage=usage),
        Notice(message="model retried once"),
        AgentFinished(agent_id="0.1", status="answered"),
    ]


@pytest.mark.parametrize("where", ["a file", "a dumb terminal"])
def test_plain_lines_off_a_terminal(where, monkeypatch):
    out = io.StringIO() if where == "a file" else Terminal()
    monkeypatch.setenv("TERM", "dumb")  # rich's dumb terminal: no redraw in place
    progress = Progress(out)
    for event in events():
        progress(event)
    progress.close()
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "rlm-tui: session r1, model demo  [offline demo model: canned text, real kernels]",
        "  agent 0 started (depth 0)",
        "  agent 0.1 started (depth 1)",
        "  model retried once",
        "  agent 0.1      depth 1  step   2     1.7k tokens  $0.0123  answered",
    ]


def test_live_table_on_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")  # whatever the suite's own terminal is
    out = Terminal()
    progress = Progress(out, refresh_per_second=50)
    for event in events()[:4]:
        progress(event)
    progress.close()
    text = out.getvalue()
    assert "rlm-tui: session r1" in text
    assert "agent 0.1" in text and "step 2" in text and "1.7k tokens" in text
    assert "started (depth" not in text, "a terminal shows the table, not a line per agent"
    assert "\x1b[" in text, "the table is redrawn in place"
