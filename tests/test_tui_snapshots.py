"""Snapshots of each pane and of the whole screen, at 80x24 and 160x48, dark and light.

Deterministic: the panes are fed a fixed, recorded event list (no clock, kernel or model),
cursors do not blink and animations are off.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, TextArea
from tui_fixtures import sample_events

from rlm_tui.events import (
    AgentStarted,
    CellPaused,
    CellProposed,
    CellStarted,
    RunStateChanged,
    SubcallStarted,
)
from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig

pytestmark = pytest.mark.timeout(120)

THEMES = ["rlm-dark", "rlm-light"]


def app(theme: str = "rlm-dark", events: list | None = None) -> RlmApp:
    return RlmApp(
        events=sample_events() if events is None else events,
        ui_config=UiConfig(theme=theme),
        watch=False,
    )


async def still(pilot) -> None:
    """No blinking cursors, no animations: the same picture on every run."""
    pilot.app.animation_level = "none"
    for widget in pilot.app.screen.query("*"):
        if isinstance(widget, Input | TextArea):
            widget.cursor_blink = False
    await pilot.pause()


def paused_events() -> list:
    """The recorded run cut before its last cell, which waits at a breakpoint."""
    events = [e for e in sample_events() if e.seq <= 14]
    events += [
        CellProposed(
            agent_id="0",
            cell_id="0:3",
            step=3,
            index=3,
            preamble="Both guests agree; I return the habit.",
            code="result = {'habit': 'morning light walk', 'guests': 2}\nFINAL_VAR('result')",
        ),
        RunStateChanged(state="paused"),
        CellPaused(agent_id="0", cell_id="0:3", reason="breakpoint: every cell"),
    ]
    for seq, event in enumerate(events, 1):
        event.seq = seq
        if seq > 14:  # fixed times: the snapshot must not depend on the clock
            event.t = 1_700_000_005.0
    return events


def three_waiting_events() -> list:
    """Agent 0 fans out to three sub-agents: two hold their first cell, one its start."""
    events = [e for e in sample_events() if e.seq <= 6]
    events += [
        CellProposed(agent_id="0", cell_id="0:2", step=2, index=2, code=FAN_OUT),
        CellStarted(agent_id="0", cell_id="0:2", code=FAN_OUT),
    ]
    for n, guest in enumerate(["Rivera", "Okafor", "Lindqvist"], 1):
        child = f"0.{n}"
        prompt = f"What does {guest} recommend?"
        events.append(
            SubcallStarted(
                agent_id="0",
                call_id=f"r{child}",
                kind="rlm_query",
                prompt=prompt,
                child_agent_id=child,
            )
        )
        if n == 3:
            events.append(
                CellPaused(agent_id=child, cell_id=child, reason="breakpoint: sub-agent start")
            )
            continue
        events += [
            AgentStarted(agent_id=child, parent_id="0", depth=1, query=prompt, model="m"),
            CellProposed(
                agent_id=child,
                cell_id=f"{child}:1",
                step=1,
                index=1,
                code=f"lines = [l for l in context.splitlines() if '{guest.upper()}' in l]",
            ),
            CellPaused(agent_id=child, cell_id=f"{child}:1", reason="breakpoint: every cell"),
        ]
    events.append(RunStateChanged(state="paused"))
    for seq, event in enumerate(events, 1):
        event.seq = seq
        if seq > 6:
            event.t = 1_700_000_003.0
    return events


FAN_OUT = "answers = rlm_query_batched([f'What does {g} recommend?' for g in guests])"


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_paused_with_three_waiting(snap_compare, size):
    """The waiting list, the header's count and selection, the held start in the tree."""
    assert snap_compare(app(events=three_waiting_events()), terminal_size=size, run_before=still)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_help_scrolled(snap_compare, size):
    """F1, scrolled to its last keys."""
    assert snap_compare(app(), terminal_size=size, press=["f1", "end"], run_before=still)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_whole_screen(snap_compare, theme, size):
    assert snap_compare(app(theme), terminal_size=size, run_before=still)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("pane", ["1", "2", "3", "4"])
def test_each_pane_at_80x24(snap_compare, pane, theme):
    """1 cells, 2 agents (with the selected agent's prompt), 3 context, 4 budget."""
    assert snap_compare(app(theme), terminal_size=(80, 24), press=[pane], run_before=still)


def test_context_pane_marks_what_a_cell_saw(snap_compare):
    """The first cell selected: the context lines it printed are highlighted."""
    assert snap_compare(
        app("rlm-light"),
        terminal_size=(160, 48),
        press=["home"],
        run_before=still,
    )


def test_paused_run_waiting_at_a_cell(snap_compare):
    assert snap_compare(app(events=paused_events()), terminal_size=(160, 48), run_before=still)


def test_home_screen(snap_compare, tmp_path):
    home = RlmApp(sessions_dir=tmp_path, ui_config=UiConfig(theme="rlm-dark"), watch=False)
    assert snap_compare(home, terminal_size=(120, 30), run_before=still)
