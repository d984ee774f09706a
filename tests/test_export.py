"""Exports: a notebook that validates and re-runs top to bottom in a fresh kernel; a report."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import nbformat
import pytest
from conftest import NESTED_QUERY

from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.kernel.pool import LocalKernelPool
from rlm_tui.kernel.sandbox import SandboxPolicy, resolve_sandbox

pytestmark = pytest.mark.timeout(120)


async def test_notebook_validates_and_runs_top_to_bottom(sessions_dir, tmp_path):
    context = tmp_path / "notes.txt"
    context.write_text("alpha beta\ngamma delta\n")
    result = await Run(
        RunConfig(query=NESTED_QUERY, context_file=str(context), sessions_dir=sessions_dir)
    ).execute()
    output = tmp_path / "run.ipynb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "export",
            str(result.session_dir),
            "--format",
            "ipynb",
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    notebook = nbformat.read(output, as_version=4)
    nbformat.validate(notebook)
    headings = [c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown"]
    assert sum(h.startswith("## Sub-agent") for h in headings) == 3
    printed: list[str] = []
    plain = resolve_sandbox(SandboxPolicy(mode="off"))  # as in the user's own Jupyter
    async with LocalKernelPool(size=0, sandbox=plain) as pool:
        kernel = await pool.acquire()
        for code in (c.source for c in notebook.cells if c.cell_type == "code"):
            outcome = await kernel.execute(code, lambda _s, text: printed.append(text), timeout=30)
            assert outcome.status == "ok", (code, outcome.error)
    finals = [line for line in "".join(printed).splitlines() if line.startswith("FINAL:")]
    assert len(finals) == 4  # the root first, then its three sub-agents
    assert finals[0].startswith("FINAL: {'fruits': {'Apple': 0")  # rebuilt in a plain kernel


async def test_markdown_report(sessions_dir, tmp_path):
    result = await Run(RunConfig(query=NESTED_QUERY, sessions_dir=sessions_dir)).execute()
    output = tmp_path / "report.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "export",
            result.session_dir.name,
            "--sessions-dir",
            str(sessions_dir),
            "--format",
            "md",
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = output.read_text()
    assert "  - agent 0.2 (depth 1, answered" in report
    assert report.count("### Cell") == 3 + 3 * 2
    answer = report.split("## Answer")[1].split("```")[1]
    assert json.loads(answer) == result.answer


def test_export_of_a_missing_session_is_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "export",
            "nope",
            "--sessions-dir",
            str(tmp_path),
            "-o",
            str(tmp_path / "x.md"),
            "--format",
            "md",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"rlm-tui: error: no session 'nope' (looked in {tmp_path})"
    ]


async def test_a_torn_session_is_read_with_a_warning(sessions_dir, tmp_path):
    result = await Run(RunConfig(query="hello", sessions_dir=sessions_dir)).execute()
    with open(result.session_dir / "events.jsonl", "a") as events:
        events.write('{"type": "notice", "mess')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_tui",
            "export",
            str(result.session_dir),
            "--format",
            "md",
            "-o",
            str(tmp_path / "r.md"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "torn line ignored" in done.stderr
    assert "needs a real model" in (tmp_path / "r.md").read_text()


async def test_a_notebook_of_awaited_helpers_runs(sessions_dir, tmp_path):
    from scripted import ScriptedModel, cell

    from rlm_tui.session.export import export

    code = "import asyncio\nx = await llm_query('a')\nys = await asyncio.gather(*[llm_query(p) for p in 'bc'])\nFINAL([x, *ys])"
    model = ScriptedModel({"q": [cell(code)]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    assert result.answer == ["echo: a", "echo: b", "echo: c"]
    output = export(result.session_dir, "ipynb", tmp_path / "run.ipynb")
    notebook = nbformat.read(output, as_version=4)
    printed: list[str] = []
    async with LocalKernelPool(size=0) as pool:
        kernel = await pool.acquire()
        for source in (c.source for c in notebook.cells if c.cell_type == "code"):
            outcome = await kernel.execute(source, lambda _s, t: printed.append(t), timeout=30)
            assert outcome.status == "ok", (source, outcome.error)
    assert "FINAL: ['echo: a', 'echo: b', 'echo: c']" in "".join(printed)


async def test_an_export_never_replaces_a_sessions_file_or_one_beside_its_output(
    sessions_dir, tmp_path
):
    from scripted import ScriptedModel, cell

    from rlm_tui.errors import UsageError
    from rlm_tui.session.export import export

    model = ScriptedModel({"q": [cell("FINAL('kept')")]})
    session = (
        await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    ).session_dir
    events = (session / "events.jsonl").read_bytes()
    for target in (session / "events.jsonl", session / "report.md"):
        with pytest.raises(UsageError, match="will not write into a session's directory"):
            export(session, None, target)
    assert (session / "events.jsonl").read_bytes() == events
    with pytest.raises(UsageError, match="not a file name"):
        export(session, None, tmp_path)
    (tmp_path / "out.md.partial").write_text("the user's")
    output = export(session, None, tmp_path / "out.md")  # the format from its suffix
    assert output.read_text().startswith("# rlm-tui session") and "kept" in output.read_text()
    assert (tmp_path / "out.md.partial").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.glob("*out.md*")) == ["out.md", "out.md.partial"]


def test_an_export_writes_through_a_symlink_and_refuses_what_is_no_file(tmp_path):
    from conftest import cli

    sessions = tmp_path / "sessions"
    assert cli("run", "hello", "--sessions-dir", str(sessions)).returncode == 0
    session = str(next(sessions.iterdir()))
    (tmp_path / "target.md").write_text("old")
    (tmp_path / "target.md").chmod(0o640)
    (tmp_path / "link.md").symlink_to("target.md")
    done = cli("export", session, "-o", str(tmp_path / "link.md"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "link.md").is_symlink()
    assert (tmp_path / "target.md").read_text().startswith("# rlm-tui session")
    assert stat.S_IMODE((tmp_path / "target.md").stat().st_mode) == 0o640  # kept
    (tmp_path / "loop-a.md").symlink_to("loop-b.md")
    (tmp_path / "loop-b.md").symlink_to("loop-a.md")
    done = cli("export", session, "-o", str(tmp_path / "loop-a.md"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "symbolic links" in done.stderr and (tmp_path / "loop-a.md").is_symlink()
    (tmp_path / "loop-a.md").unlink()
    (tmp_path / "loop-b.md").unlink()
    os.mkfifo(tmp_path / "fifo.md")
    done = cli("export", session, "-o", str(tmp_path / "fifo.md"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.strip().endswith("fifo.md: not a regular file")
    assert stat.S_ISFIFO((tmp_path / "fifo.md").lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fifo.md",
        "link.md",
        "sessions",
        "target.md",
    ]


async def test_a_cell_still_running_is_exported_with_its_output_so_far(sessions_dir, tmp_path):
    import asyncio

    from scripted import ScriptedModel, cell

    from rlm_tui.events import CellOutput
    from rlm_tui.session.export import export

    code = "print('half way', flush=True)\nimport time\ntime.sleep(60)"
    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir), model=ScriptedModel({"q": [cell(code)]})
    )
    printed = asyncio.Event()
    run.subscribe(lambda e: printed.set() if isinstance(e, CellOutput) else None)
    await run.start()
    await asyncio.wait_for(printed.wait(), 60)
    assert run.session_dir is not None
    report = export(run.session_dir, None, tmp_path / "live.md").read_text()
    assert "### Cell 0:1 (running when exported: its output so far)" in report
    assert "half way" in report
    notebook = nbformat.read(export(run.session_dir, None, tmp_path / "live.ipynb"), as_version=4)
    assert notebook.cells[-1].outputs[0]["text"] == "half way\n"
    assert "was running when exported" in notebook.cells[-2].source
    run.stop("done")
    await run.wait()
