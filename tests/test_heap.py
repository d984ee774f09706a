"""The garbage collector kept off what a process imports: no collection during a large import,
and what it made frozen after it."""

from __future__ import annotations

import gc

from rlm_tui import heap


def test_a_large_import_sets_off_no_collection_and_is_frozen_after() -> None:
    started: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(watch)
    try:
        frozen = gc.get_freeze_count()
        with heap.import_settled():
            made = [[i] for i in range(50_000)]  # 70 times what sets off a young collection
        during = list(started)
        gc.collect(0)
    finally:
        gc.callbacks.remove(watch)
    assert during == []
    assert gc.get_freeze_count() >= frozen + len(made)
    assert gc.isenabled()
    assert len(started) == 1  # collections come back after it


def test_the_app_collects_the_young_generation_less_often() -> None:
    before = gc.get_threshold()
    # CPython's default young threshold: an app made by another test may have set it already
    gc.set_threshold(700, 9, 11)
    try:
        from rlm_tui.tui.app import RlmApp
        from rlm_tui.tui.config import UiConfig

        RlmApp(ui_config=UiConfig(), watch=False)
        assert gc.get_threshold() == (heap.YOUNG_COLLECTION_EVERY, 9, 11)
    finally:
        gc.set_threshold(*before)
