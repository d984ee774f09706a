"""Resume goes on with every recorded setting, under the session's lock; no secret is written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply
from scripted import cell

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.resume import resume_run
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import UsageError
from rlm_tui.events import CellFinished, RunFinished, RunStarted
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


def rlm(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rlm_tui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def by_step(steps: list[str]):
    def reply(request: dict) -> Reply:
        done = sum(1 for m in request["messages"] if m["role"] == "assistant")
        return Reply(text=steps[min(done, len(steps) - 1)])

    return reply


def only_session(sessions: Path) -> Path:
    (session,) = sessions.iterdir()
    return session


LIMIT = "import resource\nprint('AS', resource.getrlimit(resource.RLIMIT_AS)[0])"


def test_resume_keeps_the_memory_cap_and_the_cell_timeout(server, sessions_dir):
    server.script(
        by_step(
            [
                cell(LIMIT),
                cell(LIMIT + "\nimport time\ntime.sleep(8)"),
                cell("FINAL('done')"),
            ]
        )
    )
    base = ["--sessions-dir", str(sessions_dir)]
    first = rlm(
        "run", "q", "-m", "openai/t", "--api-base", server.base_url, *base,
        "--memory-limit", "700", "--cell-timeout", "3", "--max-calls", "1",
    )  # fmt: skip
    assert finish(first)[0] == 3
    session = only_session(sessions_dir)
    code, _, err = finish(rlm("resume", session.name, *base, "--max-calls", "5"))
    assert code == 0, err
    events = read_session(session).events
    cells = {e.cell_id: e for e in events if isinstance(e, CellFinished)}
    cap = f"AS {700 * 1024 * 1024}"
    assert cap in cells["0:1"].output  # before the resume
    assert cap in cells["0:2"].output  # after it
    assert cells["0:2"].status == "timeout"  # 3 s, not the default 120
    starts = [e for e in events if isinstance(e, RunStarted)]
    assert [s.settings["limits"]["max_calls"] for s in starts] == [1, 5]  # the change recorded
    assert all(s.settings["memory_limit_mb"] == 700 for s in starts)


def test_two_resumes_one_session_the_second_is_refused(server, sessions_dir):
    server.script(by_step([cell("x = 1"), cell("FINAL(x)")]))
    base = ["--sessions-dir", str(sessions_dir)]
    first = rlm(
        "run", "q", "-m", "openai/t", "--api-base", server.base_url, *base, "--max-calls", "1"
    )
    assert finish(first)[0] == 3
    session = only_session(sessions_dir)
    one = rlm("resume", session.name, *base, "--max-calls", "5")
    time.sleep(1.5)
    two = rlm("resume", session.name, *base, "--max-calls", "5")
    results = sorted([finish(one), finish(two)])
    (ok, _, _), (refused, _, err) = results
    assert (ok, refused) == (0, 2), results
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    events = read_session(session).events
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "no sequence number twice"
    assert [e.status for e in events if isinstance(e, RunFinished)] == ["budget", "answered"]


def test_no_secret_reaches_a_file(server, sessions_dir, tmp_path):
    key = "gsk_live_A1b2C3d4E5f6G7h8"  # a provider key that is not shaped sk-...
    server.script(
        [
            Reply(text=cell("x = 1")),
            Reply(status=400, text=f"Invalid API key: {key} (request from user)"),
        ]
    )
    run = rlm(
        "run", "q", "-m", "openai/t", "--api-base", server.base_url,
        "--sessions-dir", str(sessions_dir),
        env={"OPENAI_API_KEY": key, "GROQ_API_KEY": key},
    )  # fmt: skip
    code, out, err = finish(run)
    assert code == 4, err
    session = only_session(sessions_dir)
    export = tmp_path / "export.md"
    assert finish(rlm("export", str(session), "--format", "md", "-o", str(export)))[0] == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in written)
    for text in [out, err, *(p.read_text(errors="replace") for p in written)]:
        for secret in (key, key[4:]):
            assert secret not in text
    assert "refused the request" in err, err


async def test_api_base_credentials_are_never_recorded(sessions_dir, tmp_path):
    secret_base = "http://bob:hunter2hunter2@127.0.0.1:9/v1?api-key=q9w8e7r6t5&region=eu"
    config = RunConfig(
        query="hello", api_base=secret_base, sessions_dir=sessions_dir, limits=Limits(max_calls=1)
    )
    result = await Run(config).execute()  # the demo model: nothing is sent
    assert result.status == "budget"
    text = (result.session_dir / "events.jsonl").read_text()
    for secret in ("hunter2hunter2", "bob:", "q9w8e7r6t5"):
        assert secret not in text
    started = read_session(result.session_dir).started
    assert (
        started is not None
        and started.api_base == "http://***@127.0.0.1:9/v1?api-key=***&region=eu"
    )
    with pytest.raises(UsageError, match="give --api-base again"):
        resume_run(result.session_dir)
