"""Resume a saved session where it stopped, or fork it from a cell into a new session.

The session's lock is taken before it is read, and held until the run ends, so two resumes
of one session cannot both go on: the second is refused before it reads anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.context import context_from_file
from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.recording import Recording, cut_before_cell
from rlm_tui.engine.run import Run, RunConfig, config_from_settings
from rlm_tui.errors import SessionError, UsageError
from rlm_tui.events import Notice, RunStarted
from rlm_tui.models.base import Model
from rlm_tui.redact import MASK
from rlm_tui.session.store import SessionWriter, read_session


def config_for(recording: Recording, directory: Path, **changes: Any) -> RunConfig:
    """The recorded run's settings, with ``changes`` (RunConfig fields) on top.

    ``limits`` in ``changes`` (a Limits or a dict) changes only the limits it sets.
    """
    started = recording.latest
    settings = dict(started.settings or _settings_of_old(started))
    limits = changes.pop("limits", None)
    if isinstance(limits, Limits):
        limits = limits.model_dump(exclude_unset=True)
    settings["limits"] = {**settings.get("limits", {}), **(limits or {})}
    settings.update({k: v for k, v in changes.items() if v is not None})
    if MASK in (settings.get("api_base") or "") and "api_base" not in changes:
        raise UsageError(
            "this session's --api-base held credentials, which are never recorded: "
            "give --api-base again"
        )
    _check_context_unchanged(recording.started, directory)
    return config_from_settings(
        settings,
        query=started.query,
        context_file=started.context_file,
        sessions_dir=directory.parent,
        append_to=directory,
    )


def _check_context_unchanged(started: RunStarted, directory: Path) -> None:
    """The recorded cells run again on the context and inputs they first ran on, or not at
    all: on a changed file they would rebuild the kernels from other data, silently. Kind and
    size stand for a file (a hash would read 400 MB on every resume). What the session saved
    itself (a value, stdin) is its own private file."""
    files: list[tuple[str, str | None, str | None, int]] = [
        ("the context", started.context_file, started.context_kind, started.context_chars)
    ]
    files += [
        (f"the input {name}", file, None, started.input_sizes[name])
        for name, file in started.inputs.items()
        if name in started.input_sizes  # recorded since sessions have input sizes
    ]
    for what, file, kind, size in files:
        if not file or Path(file).is_relative_to(directory.resolve()):
            continue
        now = context_from_file(Path(file))  # a missing file: one line
        if now.chars != size or kind not in (None, now.kind):
            raise UsageError(
                f"{what} {file} changed since the session was made ({size:,} -> "
                f"{now.chars:,} characters): its cells would run again on other data; put it "
                "back as it was, or start a new run"
            )


def _settings_of_old(started: RunStarted) -> dict[str, Any]:
    """What a session written before settings were recorded says of them."""
    settings: dict[str, Any] = {
        "model": started.model_spec or ("demo" if started.model_is_demo else started.model),
        "sub_model": started.sub_model_spec,
        "api_base": started.api_base,
        "limits": started.limits,
        "truncate": started.truncate,
    }
    return settings


def _locked(directory: Path) -> tuple[SessionWriter, Recording]:
    """Take the session's lock, then read it (a second writer is refused here)."""
    writer = SessionWriter(directory)
    writer.open()
    try:
        recording = Recording.from_session(directory)
        _refuse_imported(recording, directory)
        return writer, recording
    except BaseException:
        writer.close()
        raise


def _refuse_imported(recording: Recording, directory: Path) -> None:
    """An imported log holds what its run did, not its context or kernels: going on from it
    would be a new run of a placeholder query, appended to the record."""
    if recording.started.imported_from:
        raise SessionError(
            f"session {directory.name} was imported from {recording.started.imported_from}: "
            "it can be viewed, replayed and exported, not resumed, forked or asked"
        )


def ask_run(
    directory: Path,
    question: str,
    breakpoints: Breakpoints | None = None,
    live_model: Model | None = None,
    **changes: Any,
) -> Run:
    """A follow-up question to a session that answered: its root kernel is rebuilt from the
    record (variables and all, at no model cost) and the question is its next user turn.
    ``live_model`` and ``changes`` as ``resume_run``'s (``model``: a model name)."""
    writer, recording = _locked(directory)
    try:
        if recording.status != "answered":
            raise SessionError(f"session {directory.name} has not answered; resume it instead")
        config = config_for(recording, directory, follow_up=question, **changes)
    except BaseException:
        writer.close()
        raise
    return Run(
        config, model=live_model, breakpoints=breakpoints, recording=recording, writer=writer
    )


def resume_run(
    directory: Path,
    breakpoints: Breakpoints | None = None,
    live_model: Model | None = None,
    **changes: Any,
) -> Run:
    """A Run that goes on in ``directory``: the recorded part is redone for free, then live.

    ``live_model`` serves the live part in place of the recorded model (tests, benchmarks);
    ``changes`` are RunConfig fields (``model`` among them: a model name).
    The returned run holds the session's lock: start it (it lets go when it ends).
    """
    writer, recording = _locked(directory)
    try:
        if recording.status == "answered":
            raise SessionError(f"session {directory.name} has already answered; fork it to go on")
        config = config_for(recording, directory, **changes)
        return Run(
            config, model=live_model, breakpoints=breakpoints, recording=recording, writer=writer
        )
    except BaseException:
        writer.close()
        raise


def fork_session(directory: Path, at_cell: str, sessions_dir: Path | None = None) -> SessionWriter:
    """A new session holding ``directory``'s history up to ``at_cell``, left open and locked.

    The original is only read.
    """
    log = read_session(directory)
    kept = cut_before_cell(list(log.events), at_cell)
    writer = SessionWriter.create(sessions_dir or directory.parent)
    try:
        for event in kept:
            writer.append(event)
        writer.append(
            Notice(seq=kept[-1].seq + 1, message=f"forked from {directory.name} at cell {at_cell}")
        )
    except BaseException:
        writer.close()
        raise
    return writer


def fork_run(
    directory: Path,
    at_cell: str,
    code: str | None = None,
    breakpoints: Breakpoints | None = None,
    sessions_dir: Path | None = None,
    **changes: Any,
) -> Run:
    """Fork at a cell and go on from there, with that cell's code replaced if ``code`` is given.

    A fork that cannot start (a bad setting among ``changes``) leaves no session behind."""
    _refuse_imported(Recording.from_session(directory), directory)
    writer = fork_session(directory, at_cell, sessions_dir)
    try:
        recording = Recording.from_session(writer.directory)
        config = config_for(recording, writer.directory, **changes)
        overrides = {at_cell: code} if code is not None else None
        return Run(
            config, breakpoints=breakpoints, recording=recording, overrides=overrides, writer=writer
        )
    except BaseException:
        writer.close()
        shutil.rmtree(writer.directory, ignore_errors=True)  # made by this call, holds no new work
        raise
