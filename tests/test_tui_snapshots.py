"""Snapshots of each pane and of the whole screen, at 80x24 and 160x48, dark and light."""

from __future__ import annotations

import pytest
from tui_fixtures import sample_events

from rlm_tui.tui.app import RlmApp
from rlm_tui.tui.config import UiConfig

pytestmark = pytest.mark.timeout(120)


def app(theme: str = "rlm-dark") -> RlmApp:
    return RlmApp(events=sample_events(), ui_config=UiConfig(theme=theme), watch=False)


@pytest.mark.parametrize("theme", ["rlm-dark", "rlm-light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_whole_screen(snap_compare, theme, size):
    assert snap_compare(app(theme), terminal_size=size)


@pytest.mark.parametrize("pane", ["1", "2", "3", "4"])
def test_each_pane_at_80x24(snap_compare, pane):
    assert snap_compare(app(), terminal_size=(80, 24), press=[pane])


def test_light_context_pane_with_coverage(snap_compare):
    assert snap_compare(app("rlm-light"), terminal_size=(80, 24), press=["3"])


def test_home_screen(snap_compare, tmp_path):
    home = RlmApp(sessions_dir=tmp_path, ui_config=UiConfig(theme="rlm-dark"), watch=False)
    assert snap_compare(home, terminal_size=(120, 30))
