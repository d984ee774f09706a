"""Importing other RLM implementations' logs: the tree, the cells, the answers, and errors by line.

The logs here are written in each format's exact shape (fast-rlm's sample_logs/ and the
official rlm library's RLMLogger output), with content of our own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_tui.engine.resume import ask_run, fork_run, resume_run
from rlm_tui.errors import SessionError
from rlm_tui.events import AgentStarted, CellFinished, RunFinished
from rlm_tui.session.importers import import_log
from rlm_tui.session.store import read_session


def _fast(run, parent, depth, step, kind, t, **extra):
    line = {
        "level": 30,
        "time": f"2026-02-22T14:56:{t:02d}.000Z",
        "run_id": run,
        "depth": depth,
        "step": step,
        "event_type": kind,
        **extra,
    }
    if parent:
        line["parent_run_id"] = parent
    return line


USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "total_tokens": 120,
    "cached_tokens": 0,
    "reasoning_tokens": 0,
    "cost": 0.001,
}


def write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_fast_rlm_log_gives_the_tree_cells_and_answer(tmp_path, sessions_dir):
    log = write(
        tmp_path / "run.jsonl",
        [
            _fast(
                "root",
                None,
                0,
                0,
                "execution_result",
                1,
                code="print(len(context))",
                output="42",
                hasError=False,
                usage=USAGE,
            ),
            # the grandchild's lines come before its parent's: the tree must still be right
            _fast("leaf", "mid", 2, 0, "final_result", 2, result="deep"),
            _fast(
                "mid",
                "root",
                1,
                0,
                "execution_result",
                3,
                code="x = rlm_query('leaf')",
                output="",
                hasError=False,
                usage=USAGE,
            ),
            _fast(
                "mid",
                "root",
                1,
                1,
                "code_generated",
                4,
                code="FINAL_VAR('x')",
                reasoning="done",
                usage=USAGE,
            ),
            _fast("mid", "root", 1, 1, "final_result", 5, result="deep"),
            _fast(
                "root",
                None,
                0,
                1,
                "execution_result",
                6,
                code="1/0",
                output="ZeroDivisionError",
                hasError=True,
                usage=USAGE,
            ),
            _fast("root", None, 0, 2, "final_result", 7, result="{'answer': 'deep'}"),
        ],
    )
    events = read_session(import_log(log, sessions_dir)).events
    starts = {e.agent_id: (e.parent_id, e.depth) for e in events if isinstance(e, AgentStarted)}
    assert starts == {"0": (None, 0), "0.1": ("0", 1), "0.1.1": ("0.1", 2)}
    cells = [(e.cell_id, e.status) for e in events if isinstance(e, CellFinished)]
    assert cells == [("0:1", "ok"), ("0.1:1", "ok"), ("0.1:2", "ok"), ("0:2", "error")]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "answered"
    assert finished.answer.json_value == "{'answer': 'deep'}"
    assert finished.usage.calls == 4 and finished.usage.prompt_tokens == 400


def test_official_rlm_log_gives_the_tree_cells_and_answer(tmp_path, sessions_dir):
    call = {
        "root_model": "gpt-4o-mini",
        "prompt": "count the r in cherry",
        "response": "2",
        "usage_summary": {
            "model_usage_summaries": {
                "gpt-4o-mini": {
                    "total_calls": 1,
                    "total_input_tokens": 30,
                    "total_output_tokens": 2,
                }
            }
        },
        "execution_time": 0.5,
    }
    log = write(
        tmp_path / "rlm_2026-01-13_13-25-38_abcd1234.jsonl",
        [
            {
                "type": "metadata",
                "timestamp": "2026-01-13T13:25:38.248550",
                "root_model": "gpt-4o",
                "max_depth": 1,
                "max_iterations": 30,
                "backend": "openai",
                "backend_kwargs": {},
                "environment_type": "local",
                "environment_kwargs": {},
                "other_backends": None,
            },
            {
                "type": "run_context",
                "timestamp": "2026-01-13T13:25:38.249350",
                "prompt": "How many r in cherry?",
                "root_prompt": None,
                "environment_type": "local",
                "environment_kwargs": {},
                "session_mode": False,
            },
            {
                "type": "iteration",
                "iteration": 1,
                "timestamp": "2026-01-13T13:25:40.494166",
                "prompt": [{"role": "user", "content": "..."}],
                "response": "```repl\nn = rlm_query('count the r in cherry')\nprint(n)\n```",
                "code_blocks": [
                    {
                        "code": "n = rlm_query('count the r in cherry')\nprint(n)",
                        "result": {
                            "stdout": "2\n",
                            "stderr": "",
                            "locals": {"n": "2"},
                            "execution_time": 0.6,
                            "rlm_calls": [call],
                        },
                    }
                ],
                "final_answer": None,
                "iteration_time": 1.8,
            },
            {
                "type": "iteration",
                "iteration": 2,
                "timestamp": "2026-01-13T13:25:42.803276",
                "prompt": [],
                "response": "FINAL_VAR(n)",
                "code_blocks": [],
                "final_answer": "2",
                "iteration_time": 0.9,
            },
        ],
    )
    events = read_session(import_log(log, sessions_dir)).events
    starts = {
        e.agent_id: (e.parent_id, e.depth, e.query) for e in events if isinstance(e, AgentStarted)
    }
    assert starts == {
        "0": (None, 0, "How many r in cherry?"),
        "0.1": ("0", 1, "count the r in cherry"),
    }
    assert [e.output for e in events if isinstance(e, CellFinished)] == ["2\n"]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.answer.json_value == "2"
    assert finished.usage.prompt_tokens == 30


def test_broken_logs_name_the_line(tmp_path, sessions_dir):
    good = _fast("root", None, 0, 0, "final_result", 1, result="x")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(SessionError, match=r"bad.jsonl:2: not JSON"):
        import_log(bad, sessions_dir)
    odd = write(tmp_path / "odd.jsonl", [{"hello": "world"}])
    with pytest.raises(SessionError, match=r"odd.jsonl:1: not a fast-rlm or rlm"):
        import_log(odd, sessions_dir)
    unknown = write(tmp_path / "unknown.jsonl", [good, {**good, "event_type": "teleport"}])
    with pytest.raises(SessionError, match=r"unknown.jsonl:2: unknown fast-rlm event_type"):
        import_log(unknown, sessions_dir)
    assert list(sessions_dir.iterdir()) == []  # nothing half-imported is left


def test_import_cli(tmp_path, sessions_dir):
    log = write(tmp_path / "run.jsonl", [_fast("root", None, 0, 0, "final_result", 1, result="ok")])
    done = subprocess.run(
        [sys.executable, "-m", "rlm_tui", "import", str(log), "--sessions-dir", str(sessions_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and (sessions_dir / done.stdout.strip() / "events.jsonl").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "rlm_tui", "import", str(tmp_path / "none.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    "go_on",
    [
        lambda session: resume_run(session, model="demo"),
        lambda session: fork_run(session, "0:1"),
        lambda session: ask_run(session, "and then?"),
    ],
    ids=["resume", "fork", "ask"],
)
def test_an_imported_session_is_not_gone_on_from(tmp_path, sessions_dir, go_on):
    log = write(
        tmp_path / "run.jsonl",
        [
            _fast("root", None, 0, 1, "code_generated", 1, code="x = 1", usage=USAGE),
            _fast("root", None, 0, 1, "execution_result", 2, output=""),
            _fast("root", None, 0, 2, "final_result", 3, result="ok"),
        ],
    )
    session = import_log(log, sessions_dir)
    record = (session / "events.jsonl").read_text()
    with pytest.raises(SessionError, match="was imported from .*run.jsonl"):
        go_on(session)
    assert (session / "events.jsonl").read_text() == record
    assert list(sessions_dir.iterdir()) == [session]
