"""Resume a saved session where it stopped, or fork it from a cell into a new session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.recording import Recording, cut_before_cell
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.errors import SessionError
from rlm_tui.events import Notice
from rlm_tui.session.store import SessionWriter, read_session


def config_for(recording: Recording, directory: Path, **changes: Any) -> RunConfig:
    """The recorded run's settings, with ``changes`` (new limits, another model) on top."""
    started = recording.started
    limits = changes.pop("limits", None) or Limits.model_validate(started.limits)
    model = (
        changes.pop("model", None)
        or started.model_spec
        or ("demo" if started.model_is_demo else started.model)
    )
    kept = started.sandbox
    if kept is not None:  # the recorded run's sandbox, unless a flag changes it
        recorded = {
            "sandbox": kept.mode,
            "allow_read": kept.allow_read,
            "allow_net": kept.allow_net,
        }
        changes = {**recorded, "kernel_env": kept.kernel_env, **changes}
    return RunConfig(
        query=started.query,
        context_file=started.context_file,
        model=model,
        sub_model=changes.pop("sub_model", None) or started.sub_model_spec,
        api_base=changes.pop("api_base", None) or started.api_base,
        limits=limits,
        truncate=started.truncate,
        sessions_dir=directory.parent,
        append_to=directory,
        **changes,
    )


def resume_run(directory: Path, breakpoints: Breakpoints | None = None, **changes: Any) -> Run:
    """A Run that goes on in ``directory``: the recorded part is redone for free, then live."""
    recording = Recording.from_session(directory)
    if recording.finished is not None and recording.finished.status == "answered":
        raise SessionError(f"session {directory.name} has already answered; fork it to go on")
    config = config_for(recording, directory, **changes)
    return Run(config, breakpoints=breakpoints, recording=recording)


def fork_session(directory: Path, at_cell: str, sessions_dir: Path | None = None) -> Path:
    """A new session holding ``directory``'s history up to ``at_cell``; the original is only read."""
    log = read_session(directory)
    kept = cut_before_cell(list(log.events), at_cell)
    writer = SessionWriter.create(sessions_dir or directory.parent)
    try:
        for event in kept:
            writer.append(event)
        writer.append(
            Notice(seq=kept[-1].seq + 1, message=f"forked from {directory.name} at cell {at_cell}")
        )
    finally:
        writer.close()
    return writer.directory


def fork_run(
    directory: Path,
    at_cell: str,
    code: str | None = None,
    breakpoints: Breakpoints | None = None,
    sessions_dir: Path | None = None,
    **changes: Any,
) -> Run:
    """Fork at a cell and go on from there, with that cell's code replaced if ``code`` is given."""
    new = fork_session(directory, at_cell, sessions_dir)
    recording = Recording.from_session(new)
    config = config_for(recording, new, **changes)
    overrides = {at_cell: code} if code is not None else None
    return Run(config, breakpoints=breakpoints, recording=recording, overrides=overrides)
