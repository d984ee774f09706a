"""A run's private temporary directories, and the sweep of those dead runs left behind.

Each directory is 0700 and holds its owner's pid, so the next run removes the ones whose
owner is gone (a host killed with SIGKILL cannot clean up after itself).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

OWNER_FILE = "owner.pid"


def private_dir(prefix: str) -> Path:
    """A new 0700 directory ``$TMPDIR/<prefix>XXXX`` owned by this process."""
    sweep_stale(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o700)
    (path / OWNER_FILE).write_text(str(os.getpid()))
    return path


def sweep_stale(prefix: str) -> list[Path]:
    """Remove this user's ``<prefix>*`` directories whose owner process is dead."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            if path.stat().st_uid != os.getuid():
                continue
            pid = int((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, not a run's, or still being made
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True
