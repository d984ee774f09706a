"""The one-line status of a run: what a person must always see comes first and is never cut.

Parts go in by importance (state, what waits, badges, model, origin, session path); each
optional part is added only if it fits the width, and the session path is cut from its left.
"""

from __future__ import annotations

from rich.text import Text

from rlm_tui.session.projection import RunView

ICONS = {"running": "●", "paused": "⏸", "answered": "✔", "replay": "⏵"}


def run_state(view: RunView, mode: str) -> str:
    """``running``, ``paused``, ``answered``…; a replay and a saved session say so."""
    state = view.status or view.state
    if view.rerun_cells and not view.finished:
        state = f"re-running recorded cells ({', '.join(view.rerun_cells)})"
    if mode == "replay":
        return f"replay · {state}"
    if mode == "saved":
        return f"{state} · saved session"
    return state


def status_line(
    view: RunView,
    width: int,
    mode: str,
    selected: str | None,
    playing: str = "",
    path: str | None = None,
) -> Text:
    """The status for ``width`` columns; ``mode`` is "live", "replay" or "saved";
    ``playing`` is a replay's position and speed; ``path`` the session's (None: the one its
    events name)."""
    state = run_state(view, mode)
    icon = ICONS.get("replay" if mode == "replay" else (view.status or view.state), "■")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{icon} {state}", style="bold")
    if playing:
        text.append(f"  {playing}", style="bold")
    waiting = view.waiting
    if waiting and not view.finished:
        item = waiting.get(selected or "") or next(iter(waiting.values()))
        text.append(f"  {len(waiting)} waiting", style="bold yellow")
        text.append(f" ▸ {item.label}", style="bold")
    badges = []
    if view.model_is_demo:
        badges.append(("DEMO", "bold reverse"))
    if view.sandbox_warning:
        badges.append((view.sandbox_warning, "bold reverse red"))
    elif view.sandbox:
        badges.append((f"SANDBOX {view.sandbox}", "bold reverse"))
    for badge, style in badges:
        text.append("  ")
        text.append(f" {badge} ", style=style)
    room = width - 2  # the padding
    optional = [("  │  model ", "dim"), (view.model, "bold")]
    if view.model_is_demo:
        optional.append((" (canned text, real kernels)", "dim"))
    if view.forked_from:
        optional.append((f"  (fork of {view.forked_from})", "dim"))
    elif view.resumed_from:
        optional.append(("  (resumed)", "dim"))
    for part, style in optional:
        if text.cell_len + len(part) > room:
            break
        text.append(part, style=style)
    if path is None:
        path = view.session_dir or ""
    left = room - text.cell_len - 5
    if path and left >= 12:
        shown = path if len(path) <= left else "…" + path[-(left - 1) :]
        text.append("  │  ", style="dim")
        text.append(shown, style="dim")
    return text
