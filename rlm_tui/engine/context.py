"""Where the context comes from, what kind it is, and the private file a kernel loads it from.

The context never travels as code: the kernel reads it from a file (40 MB in 0.2 s, against
18.8 s as a code literal). A file on disk is used in place; a value given in Python, or text
read from stdin, is written into the session directory first so the session can be resumed.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_tui.errors import UsageError
from rlm_tui.kernel.base import ContextKind
from rlm_tui.values import safe_repr

PREVIEW_CHARS = 400
_KIND_BY_SUFFIX: dict[str, ContextKind] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".pickle": "pickle",  # a Python value's own file (context_from_value): resumed as the value
}


@dataclass(frozen=True)
class ContextSource:
    path: Path | None
    kind: ContextKind
    chars: int
    preview: str

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "none"
        return f"{self.kind}, {self.chars:,} characters"


NO_CONTEXT = ContextSource(None, "none", 0, "")


def context_from_file(path: Path) -> ContextSource:
    """Check a context file or directory and classify it; a clear UsageError if unusable."""
    if not path.exists():
        raise UsageError(f"context file not found: {path}")
    if path.is_dir():
        return _directory_source(path)
    if not path.is_file():  # a FIFO or a device would be read forever
        raise UsageError(f"context file is not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"context file is not readable: {path}")
    kind = _KIND_BY_SUFFIX.get(path.suffix.lower(), "text")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            preview = f.read(PREVIEW_CHARS)
    except OSError as exc:
        raise UsageError(f"cannot read context file {path}: {exc.strerror}") from None
    _check_structured(path, kind)
    return ContextSource(path.resolve(), kind, path.stat().st_size, preview)


def _check_structured(path: Path, kind: ContextKind) -> None:
    """Parse a JSON, JSONL or YAML context now, so a bad one stops the run before it starts."""
    if kind not in ("json", "jsonl", "yaml"):
        return
    import yaml

    line = 0
    try:
        with open(path, encoding="utf-8") as f:
            if kind == "json":
                json.load(f)
            elif kind == "yaml":
                yaml.safe_load(f)
            else:
                for line, text in enumerate(f, 1):  # noqa: B007 - reported below
                    if text.strip():
                        json.loads(text)
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        where = f" (line {line})" if kind == "jsonl" else ""
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        reason = " ".join(str(reason).split())[:200]
        raise UsageError(
            f"context file {path} is not valid {kind.upper()}{where}: {reason}"
        ) from None


def _directory_source(path: Path) -> ContextSource:
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"context directory is not readable: {path}")
    chars = 0
    names: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            file = Path(root, name)
            try:
                status = file.stat()
            except OSError as exc:
                raise UsageError(
                    f"context directory holds an unreadable file {file}: {exc.strerror}"
                ) from None
            if not stat.S_ISREG(status.st_mode):
                continue  # a FIFO or a device: never read (the kernel skips it too)
            chars += status.st_size
            names.append(str(file.relative_to(path)))
    preview = "\n".join(sorted(names)[:20])
    return ContextSource(path.resolve(), "dir", chars, preview)


def context_from_value(value: Any, directory: Path) -> ContextSource:
    """Write a Python value (text, dict, list, ...) into ``directory`` for a kernel to load."""
    if value is None:
        return NO_CONTEXT
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(value, str):
        path = directory / "context.txt"
        _write_private(path, value.encode("utf-8"))
        return ContextSource(path.resolve(), "text", len(value), value[:PREVIEW_CHARS])
    text = _json_text(value)
    if text is not None:
        path = directory / "context.json"
        _write_private(path, text.encode("utf-8"))
        return ContextSource(path.resolve(), "json", len(text), text[:PREVIEW_CHARS])
    try:
        data = pickle.dumps(value)
    except Exception as exc:  # a lambda, a generator, an open file: not a value to send
        raise UsageError(
            f"a {type(value).__name__} cannot be sent to the kernel as a context or input: "
            f"it cannot be pickled ({type(exc).__name__}: {exc})"
        ) from None
    path = directory / "context.pickle"
    _write_private(path, data)
    shown = safe_repr(value)  # its length is the context's size shown
    return ContextSource(path.resolve(), "pickle", len(shown), shown[:PREVIEW_CHARS])


def _write_private(path: Path, data: bytes) -> None:
    """A context file only its owner can read (0600): contexts can be private."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _json_text(value: Any) -> str | None:
    try:
        text = json.dumps(value, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError: a lone surrogate, kept by pickle
        return None
    return text if json.loads(text) == value else None


def context_from_pickle_bytes(data: bytes, directory: Path, name: str, shown: str) -> ContextSource:
    """A sub-agent's context as the parent kernel pickled it, passed on unchanged."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pickle"
    _write_private(path, data)
    return ContextSource(path.resolve(), "pickle", len(shown), shown[:PREVIEW_CHARS])
