"""Bad values and files: one line on stderr, exit 2, no traceback, nothing started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from rlm_tui import defaults

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\xfa")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{nope\n')
    (tmp_path / "bad.json").write_text('{"a": ')
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    (tmp_path / "deep.yaml").write_text("- " * 3000 + "x\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "ok.txt").write_text("an input\n")
    (tmp_path / "name-\udcff.txt").write_text("a file named by a byte that is not UTF-8\n")
    return tmp_path


BAD = {
    "truncate below 100": (["run", "q", "--truncate", "5"], "--truncate"),
    "memory limit below 64": (
        ["run", "q", "--memory-limit", "10"],
        "argument --memory-limit: must be at least 64",
    ),
    "an input named by a keyword": (["run", "q", "--input", "class={tmp}/ok.txt"], "'class'"),
    "an input given twice": (
        ["run", "q", "--input", "x={tmp}/ok.txt", "--input", "x={tmp}/ok.txt"],
        "--input x is given twice",
    ),
    "kernel env of an empty name": (["run", "q", "--kernel-env", ""], "not a variable name"),
    "kernel env that is not set": (
        ["run", "q", "--kernel-env", "RLM_TUI_TEST_NEVER_SET"],
        "RLM_TUI_TEST_NEVER_SET is not set",
    ),
    "bridge host that is no address": (
        ["run", "q", "--kernel-gateway", "http://127.0.0.1:9", "--bridge-host", "999.1.1.1"],
        "not an IP address or host name",
    ),
    "pool size over its bound": (["run", "q", "--pool-size", "100000"], "--pool-size 100000"),
    "cell timeout nan": (["run", "q", "--cell-timeout", "nan"], "finite"),
    "max cost nan": (["run", "q", "--max-cost", "nan"], "finite"),
    "max time inf": (["run", "q", "--max-time", "inf"], "finite"),
    "request timeout -1": (["run", "q", "--request-timeout", "-1"], "--request-timeout"),
    "dangling symlink in a context dir": (["run", "q", "-c", "{tmp}/ctx"], "unreadable file"),
    "invalid yaml context": (["run", "q", "-c", "{tmp}/bad.yaml"], "not valid YAML"),
    "invalid jsonl context": (["run", "q", "-c", "{tmp}/bad.jsonl"], "line 2"),
    "invalid json context": (["run", "q", "-c", "{tmp}/bad.json"], "not valid JSON"),
    "api base not a url": (
        ["run", "q", "-m", "openai/x", "--api-base", "localhost:8000"],
        "not a URL",
    ),
    "import of a binary file": (["import", "{tmp}/binary.jsonl"], "not UTF-8"),
    "context on a fifo": (["run", "q", "-c", "{tmp}/fifo"], "not a regular file"),
    "context on a device": (["run", "q", "-c", "/dev/zero"], "not a regular file"),
    "context of an empty path": (["run", "q", "-c", ""], "an empty path"),
    "sessions dir of an empty path": (["sessions", "--sessions-dir", ""], "an empty path"),
    "json context nested too deeply": (["run", "q", "-c", "{tmp}/deep.json"], "nested too deeply"),
    "yaml context nested too deeply": (["run", "q", "-c", "{tmp}/deep.yaml"], "nested too deeply"),
    "schema nested too deeply": (
        ["run", "q", "--output-schema", "{tmp}/deep.json"],
        "nested too deeply",
    ),
    "import nested too deeply": (["import", "{tmp}/deep.json"], "nested too deeply"),
    "import of a fifo": (["import", "{tmp}/fifo"], "not a regular file"),
    "tools that exit": (["run", "q", "--tools", "{tmp}/exits.py"], "SystemExit: 3"),
    "ask with an empty question": (["ask", "x", " "], "the question is empty"),
    "demo delay -1": (["demo", "--delay", "-1"], "0 or more"),
    "demo delay nan": (["demo", "--delay", "nan"], "finite"),
    "resume of an empty name": (["resume", ""], "not a session"),
    "resume of a pattern": (["resume", "*"], "not a session"),
    "resume with a bad value": (["resume", "x", "--truncate", "abc"], "not a number"),
    "replay of a directory that is no session": (["replay", "{tmp}/ctx"], "not a session"),
    "query not utf-8": (["run", "plain \udcff q"], "the query is not UTF-8 text: the byte \\xff"),
    "context file name not utf-8": (
        ["run", "q", "-c", "{tmp}/name-\udcff.txt"],
        "--context-file is not UTF-8 text",
    ),
    "allow read of an empty path": (["run", "q", "--allow-read", ""], "an empty path"),
    "memory limit past what setrlimit takes": (
        ["run", "q", "--memory-limit", "99999999999999999"],
        f"argument --memory-limit: must be at most {defaults.MAX_MEMORY_LIMIT_MB}",
    ),
    "api base empty": (["run", "q", "-m", "openai/x", "--api-base", ""], "'' is not a URL"),
    "truncate below 100 by argparse": (
        ["run", "q", "--truncate", "0"],
        f"argument --truncate: must be at least {defaults.MIN_TRUNCATE}",
    ),
    "compact at below 100": (
        ["run", "q", "--compact-at", "50"],
        f"argument --compact-at: must be at least {defaults.MIN_COMPACT_AT}",
    ),
    "export of a path that is not there": (
        ["export", "{tmp}/none", "-o", "{tmp}/out.ipynb"],
        "no such directory",
    ),
}


@pytest.mark.parametrize("args, words", BAD.values(), ids=BAD.keys())
def test_bad_value_gets_one_line_and_exit_2(files: Path, args: list[str], words: str):
    sessions = files / "sessions"
    done = cli(*(a.format(tmp=files) for a in args), "--sessions-dir", str(sessions), cwd=files)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert words in lines[0]
    assert not sessions.exists() or not any(sessions.iterdir()), "nothing was started"


def test_a_config_file_that_is_a_directory(files: Path):
    (files / "config" / "config.yaml").mkdir(parents=True)
    done = cli(
        "run",
        "q",
        "--sessions-dir",
        str(files / "s"),
        env={"RLM_TUI_CONFIG_DIR": str(files / "config")},
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "config.yaml: not a regular file" in done.stderr


def test_a_pool_size_over_its_bound_in_the_config_file(files: Path):
    (files / "config").mkdir()
    (files / "config" / "config.yaml").write_text("run:\n  pool_size: 100000\n")
    env = {"RLM_TUI_CONFIG_DIR": str(files / "config")}
    done = cli("run", "q", "--sessions-dir", str(files / "s"), env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "pool_size" in done.stderr and f"{defaults.MAX_POOL_SIZE}" in done.stderr
    assert not (files / "s").exists()


@pytest.mark.parametrize("command", [["run", "q"], ["sessions"]])
def test_a_sessions_dir_that_is_a_file(files: Path, command: list[str]):
    done = cli(*command, "--sessions-dir", str(files / "bad.json"), cwd=files)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "bad.json: not a directory" in done.stderr
    assert (files / "bad.json").read_text() == '{"a": '


def test_a_closed_pipe_is_no_traceback(tmp_path: Path):
    sessions = tmp_path / "sessions"
    for _ in range(2):
        assert cli("run", "hello", "--sessions-dir", str(sessions)).returncode == 0
    listing = subprocess.Popen(
        [sys.executable, "-m", "rlm_tui", "sessions", "--sessions-dir", str(sessions)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    listing.stdout.close()  # the reader is gone before a line is written (`| head -0`)
    errors = listing.stderr.read()
    listing.wait(timeout=60)
    assert errors == "" and listing.returncode == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run", "--bogus"], "rlm-tui run: error: unrecognized arguments: --bogus"),
        (["run", "q", "--bogus"], "rlm-tui run: error: unrecognized arguments: --bogus"),
        (["sessions", "-x"], "rlm-tui sessions: error: unrecognized arguments: -x"),
        (["run"], "rlm-tui run: error: the following arguments are required: query"),
        (["run", ""], "rlm-tui run: error: the query is empty"),
        (["run", " \t\n"], "rlm-tui run: error: the query is empty"),
    ],
)
def test_a_commands_bad_flag_is_named_first_and_by_the_command(args: list[str], line: str):
    done = cli(*args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(line), done.stderr
    assert done.stderr.strip().endswith(f"(see {' '.join(['rlm-tui', args[0]])} --help)")


def test_the_session_list_shows_a_query_on_one_line_without_its_escapes(tmp_path: Path):
    sessions = tmp_path / "sessions"
    query = "evil \x1b[31mRED\x1b]0;title\x07 end\nsecond line"
    assert cli("run", query, "--sessions-dir", str(sessions)).returncode == 0
    listing = cli("sessions", "--sessions-dir", str(sessions))
    assert listing.returncode == 0 and listing.stdout.count("\n") == 1, listing.stdout
    assert "\x1b" not in listing.stdout and "\x07" not in listing.stdout
    assert "evil \\x1b[31mRED" in listing.stdout and "end second" in listing.stdout


def test_a_replay_model_is_a_session_of_the_runs_sessions_dir(tmp_path: Path):
    sessions = tmp_path / "sessions"
    first = cli("run", "count r", "--sessions-dir", str(sessions), "--json")
    assert first.returncode == 0, first.stderr
    recorded = next(sessions.iterdir()).name
    again = cli("run", "count r", "-m", f"replay:{recorded[:15]}", "--sessions-dir", str(sessions))
    assert again.returncode == 0, again.stderr
    assert again.stdout == json.loads(first.stdout)["answer"] + "\n"


def test_version_is_the_packages():
    from rlm_tui import __version__

    done = cli("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"rlm-tui {__version__}\n", "")


def test_an_answers_escape_codes_are_shown_on_a_terminal_and_kept_in_a_pipe(tmp_path: Path):
    import pty

    from openai_server import OpenAIServer, Reply
    from scripted import cell

    answer = "ok \x1b]0;TITLE\x07 done"
    with OpenAIServer() as server:
        server.script(lambda request: Reply(text=cell(f"FINAL({answer!r})")))
        args = ["run", "q", "-m", "openai/t", "--api-base", server.base_url]
        args += ["--sessions-dir", str(tmp_path / "s")]
        piped = cli(*args)
        primary, secondary = pty.openpty()
        shown = subprocess.run(
            [sys.executable, "-m", "rlm_tui", *args],
            stdout=secondary,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the writer is gone and all it wrote was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(primary)
        printed = b"".join(chunks).decode()
    assert piped.returncode == 0 and piped.stdout == answer + "\n"
    assert shown.returncode == 0
    assert "ok ␛]0;TITLE␇ done" in printed and "\x1b" not in printed


@pytest.mark.parametrize(
    ("closed", "extra", "code"),
    [(">&-", [], 0), ("2>&-", ["--json"], 0), ("<&-", ["-c", "-"], 2)],
    ids=["stdout", "stderr", "stdin"],
)
def test_a_closed_standard_stream_is_no_traceback(tmp_path: Path, closed, extra, code):
    command = [sys.executable, "-m", "rlm_tui", "run", "q", *extra]
    command += ["--sessions-dir", str(tmp_path / "s")]
    out, err = tmp_path / "out", tmp_path / "err"
    line = " ".join(f"'{part}'" for part in command)
    script = f"exec {line} {closed}"
    if closed != ">&-":
        script += f" >{out}"
    if closed != "2>&-":
        script += f" 2>{err}"
    done = subprocess.run(["sh", "-c", script], timeout=120)
    assert done.returncode == code
    if closed != "2>&-":
        assert "Traceback" not in err.read_text()
    if closed == "2>&-":  # the progress lines went nowhere, not into the JSON
        assert json.loads(out.read_text())["status"] == "answered"
    if closed == "<&-":
        assert err.read_text().count("\n") == 1 and "no standard input" in err.read_text()


def test_a_sessions_dir_not_utf8_is_refused_before_it_is_made(tmp_path: Path):
    sessions = tmp_path / "s\udcff"
    done = cli("run", "q", "--sessions-dir", str(sessions))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--sessions-dir is not UTF-8 text: the byte \\xff" in done.stderr
    assert not sessions.exists()


def test_stdin_not_utf8_loads_like_a_context_file(tmp_path: Path):
    """Bytes that are not UTF-8 become U+FFFD, as a context file's do in the kernel."""
    sessions = tmp_path / "s"
    done = subprocess.run(
        [sys.executable, "-m", "rlm_tui", "run", "-c", "-", "q", "--sessions-dir", str(sessions)],
        input=b"caf\xe9 \xff\xfe end",
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    (session,) = sessions.iterdir()
    assert (session / "context.txt").read_text(encoding="utf-8") == "caf\ufffd \ufffd\ufffd end"


def test_a_question_not_utf8_leaves_the_answered_session_as_it_was(tmp_path: Path):
    sessions = tmp_path / "s"
    assert cli("run", "count r", "--sessions-dir", str(sessions)).returncode == 0
    (session,) = sessions.iterdir()
    saved = (session / "events.jsonl").read_bytes()
    done = cli("ask", session.name, "q \udcff", "--sessions-dir", str(sessions))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "the question is not UTF-8 text" in done.stderr
    assert (session / "events.jsonl").read_bytes() == saved
    again = cli("ask", session.name, "and again?", "--sessions-dir", str(sessions))
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("command", ["resume", "fork", "ask"])
def test_continuing_commands_say_a_flag_left_out_keeps_the_sessions_setting(command: str):
    shown = " ".join(cli(command, "--help").stdout.split())
    for flag_help in ("'replay:SESSION'", "sub-agent depth", "the model sees"):
        assert f"{flag_help} (default: the session's)" in shown, flag_help
    assert f"(default {defaults.MODEL})" not in shown and "(default 2000)" not in shown
    assert "Every setting the session recorded stays as it was" in shown


def test_a_new_run_says_its_defaults():
    shown = " ".join(cli("run", "--help").stdout.split())
    assert f"'replay:SESSION' (default {defaults.MODEL})" in shown
    assert f"the model sees (default {defaults.TRUNCATE})" in shown


@pytest.mark.parametrize(
    "command",
    ["run", "resume", "ask", "fork", "tui", "demo", "export", "import", "replay", "sessions"],
)
def test_every_sessions_dir_says_what_it_is(command: str):
    shown = " ".join(cli(command, "--help").stdout.split())
    assert "--sessions-dir SESSIONS_DIR where sessions are saved (default" in shown
