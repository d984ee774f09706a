"""Standard paths, run defaults from the config file, and the pre-flight key check."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rlm_tui import defaults
from rlm_tui.cli import build_parser, run_config_from_args
from rlm_tui.engine.budget import Limits
from rlm_tui.engine.run import RunConfig
from rlm_tui.errors import UsageError
from rlm_tui.paths import config_dir, default_sessions_dir
from rlm_tui.settings import ConfigError, load_config


def write_config(text: str) -> Path:
    path = config_dir() / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_from(*argv: str) -> RunConfig:
    return run_config_from_args(build_parser().parse_args(["run", *argv, "q"]), "q")


def test_xdg_dirs_without_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("RLM_TUI_CONFIG_DIR")
    monkeypatch.delenv("RLM_TUI_SESSIONS")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    if sys.platform.startswith("linux"):
        assert config_dir() == tmp_path / "xdg-config" / "rlm-tui"
        assert default_sessions_dir() == tmp_path / "xdg-data" / "rlm-tui" / "sessions"
    assert RunConfig(query="q").sessions_dir == default_sessions_dir()


def test_one_definition_of_each_default():
    config = RunConfig(query="q")
    assert (config.truncate, config.pool_size, config.model) == (
        defaults.TRUNCATE,
        defaults.POOL_SIZE,
        defaults.MODEL,
    )
    assert (Limits().max_depth, Limits().max_iterations) == (
        defaults.MAX_DEPTH,
        defaults.MAX_ITERATIONS,
    )
    from_cli = config_from()
    assert from_cli.model_dump(exclude={"query"}) == config.model_dump(exclude={"query"})


def test_config_file_sets_run_defaults_and_flags_win():
    write_config(
        "theme: rlm-light\n"
        "run:\n"
        "  truncate: 500\n"
        "  pool_size: 0\n"
        "  stream: false\n"
        "  limits: {max_cost: 1.5, max_depth: 1}\n"
    )
    config = config_from()
    assert (config.truncate, config.pool_size, config.stream) == (500, 0, False)
    assert config.limits.max_cost == 1.5 and config.limits.max_depth == 1
    assert config.limits.max_iterations == defaults.MAX_ITERATIONS
    flagged = config_from("--truncate", "900", "--max-depth", "2")
    assert (flagged.truncate, flagged.limits.max_depth, flagged.limits.max_cost) == (900, 2, 1.5)
    assert load_config().theme == "rlm-light"


@pytest.mark.parametrize(
    ("run_section", "message"),
    [
        ("truncate: 5", r"config.yaml: run: truncate: Input should be greater than or equal"),
        ("trunkate: 500", r"config.yaml: run: .trunkate' is not a run setting"),
        ("query: hi", r"'query' is not a run setting"),
    ],
)
def test_bad_run_default_is_one_line_naming_it(run_section, message):
    write_config(f"run:\n  {run_section}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        config_from()
    assert "\n" not in str(caught.value)


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    write_config("run:\n  pool_size: -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "rlm_tui", "run", "q"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "run: pool_size" in done.stderr


def test_missing_provider_key_is_refused_before_any_kernel(tmp_path, sessions_dir):
    """No OPENAI_API_KEY for an OpenAI model: one line naming it, exit 2, no kernel started."""
    process = psutil.Popen(
        [sys.executable, "-m", "rlm_tui", "run", "--model", "gpt-4o-mini"]
        + ["--sessions-dir", str(sessions_dir), "hello"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: set[str] = set()
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            children |= {" ".join(c.cmdline()) for c in process.children(recursive=True)}
        time.sleep(0.05)  # a kernel lives for 0.5 s at the very least: it cannot slip by
    out, err = process.communicate()
    assert process.returncode == 2
    assert (
        err.strip()
        == "rlm-tui: error: model 'gpt-4o-mini' needs OPENAI_API_KEY set in the environment"
    )
    assert not [c for c in children if "ipykernel" in c]
    assert not any(sessions_dir.iterdir()), "no session was opened"


def test_key_check_passes_with_the_key_or_a_local_server(monkeypatch):
    from rlm_tui.models.litellm_model import check_api_key

    check_api_key("gpt-4o-mini", api_base="http://127.0.0.1:8000/v1")
    check_api_key("ollama/llama3")  # its base URL has a default: not a missing key
    with pytest.raises(UsageError, match="ANTHROPIC_API_KEY"):
        check_api_key("anthropic/claude-sonnet-4-5")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    check_api_key("gpt-4o-mini")
