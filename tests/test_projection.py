"""The TUI's state: a pure fold over events (no Textual), the same for live runs and sessions."""

from __future__ import annotations

import pytest
from conftest import FRUITS_QUERY
from scripted import until
from tui_fixtures import sample_events

from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    CellEdited,
    CellFinished,
    CellOutput,
    CellPaused,
    CellProposed,
    CellSkipped,
    CellStarted,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    RunFinished,
    RunStarted,
    RunStateChanged,
    SubcallFinished,
    SubcallStarted,
    Usage,
)
from rlm_tui.session.projection import RunView, fold
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(60)


def test_recorded_run_folds_into_agents_cells_usage_and_answer():
    view = fold(sample_events())
    assert view.finished and view.status == "answered" and view.state == "finished"
    assert view.answer == {"habit": "morning light walk", "guests": 2}
    assert list(view.agents) == ["0", "0.1"]
    root, child = view.agents["0"], view.agents["0.1"]
    assert root.children == ["0.1"] and child.parent_id == "0" and child.depth == 1
    assert root.status == child.status == "answered"
    assert child.answer_preview == "'a morning light walk'"
    assert root.usage.calls == 2 and root.usage.total_tokens == 900 + 60 + 1500 + 80
    assert root.step == 2 and child.step == 1
    assert view.cell_order == ["0:1", "0.1:1", "0:2", "0:3"]
    assert [c.cell_id for c in view.cells_of("0")] == ["0:1", "0:2", "0:3"]
    assert [c.cell_id for c in view.cells_of("0.1")] == ["0.1:1"]
    first = view.cells["0:1"]
    assert first.preamble.startswith("Let me look") and first.status == "ok"
    assert first.output.startswith("640\nRIVERA") and first.duration == 0.004
    assert view.cells["0:2"].status == "error" and "ZeroDivision" in view.cells["0:2"].error
    assert view.tokens_per_step == [960, 740, 1580]
    assert view.usage.calls == 3 and view.depth == 1
    assert view.limits["max_calls"] == 10


def test_what_each_agent_saw_is_kept_for_the_coverage_overlay():
    view = fold(sample_events())
    seen = "RIVERA: The single best habit is a walk in morning light within an hour of waking."
    assert seen in view.seen_by("0")[0]  # the cell's model view
    assert view.seen_by("0.1") == [seen]  # the sub-agent's context preview
    assert view.seen_log == [("0", f"640\n{seen}\n"), ("0.1", seen)]


def _live_cell_events():
    return [
        RunStarted(run_id="r", query="q", model="m", sub_model="m", limits={"max_depth": 2}),
        AgentStarted(agent_id="0", query="q", model="m"),
        ModelRequest(agent_id="0", call_id="c1", step=1, model="m"),
        ModelDelta(agent_id="0", call_id="c1", text="I will "),
        ModelDelta(agent_id="0", call_id="c1", text="print."),
    ]


def test_an_agent_stopped_while_its_model_writes_shows_no_reply_being_written():
    view = fold(_live_cell_events())
    assert view.agents["0"].streaming == "I will print."
    view.apply(AgentFinished(agent_id="0", status="stopped", reason="the run was stopped"))
    assert view.agents["0"].streaming == ""


def test_pause_edit_stream_and_finish_a_cell():
    view = fold(_live_cell_events())
    agent = view.agents["0"]
    assert agent.step == 1 and agent.streaming == "I will print."
    events = [
        ModelResponse(
            agent_id="0", call_id="c1", step=1, model="m", text="x", usage=Usage(calls=1)
        ),
        CellProposed(agent_id="0", cell_id="0:1", step=1, index=1, code="print(1)"),
        RunStateChanged(state="paused"),
        CellPaused(agent_id="0", cell_id="0:1", reason="paused"),
    ]
    for event in events:
        view.apply(event)
    assert agent.streaming == ""
    cell = view.cells["0:1"]
    assert view.paused and cell.status == "paused" and cell.paused_reason == "paused"
    assert [c.cell_id for c in view.pending] == ["0:1"]
    rev = cell.rev
    view.mark_edited("0:1", "print(2)")
    assert cell.code == "print(2)" and cell.original_code == "print(1)" and cell.rev > rev
    for event in [
        RunStateChanged(state="running"),
        CellEdited(agent_id="0", cell_id="0:1", code="print(2)"),
        CellStarted(agent_id="0", cell_id="0:1", code="print(2)"),
        CellOutput(agent_id="0", cell_id="0:1", text="2"),
        CellOutput(agent_id="0", cell_id="0:1", text="\n" + "y" * 30),
    ]:
        view.apply(event)
    assert cell.status == "running" and view.running_cells == [cell]
    assert cell.output == "2\n" + "y" * 30  # streamed chunks joined
    view.apply(
        CellFinished(
            agent_id="0",
            cell_id="0:1",
            status="ok",
            duration=0.2,
            output="2\n" + "y" * 30,
            model_view="2\nyyy\n... [output truncated: 27 of 32 characters cut]",
            output_chars=32,
        )
    )
    assert cell.status == "edited" and cell.duration == 0.2 and cell.output_chars == 32
    assert view.seen_by("0")[-1].startswith("2\nyyy")
    assert not view.pending and not view.running_cells


def test_skipped_cells_and_held_sub_agent_starts():
    view = fold(_live_cell_events())
    view.apply(CellProposed(agent_id="0", cell_id="0:1", step=1, index=1, code="x = 1"))
    view.apply(CellPaused(agent_id="0", cell_id="0:1", reason="breakpoint: every cell"))
    view.apply(CellSkipped(agent_id="0", cell_id="0:1"))
    assert view.cells["0:1"].status == "skipped"
    view.apply(
        SubcallStarted(
            agent_id="0", call_id="r0.1", kind="rlm_query", prompt="p", child_agent_id="0.1"
        )
    )
    view.apply(CellPaused(agent_id="0.1", cell_id="0.1", reason="breakpoint: sub-agent start"))
    assert view.waiting_starts == {"0.1": "breakpoint: sub-agent start"}
    assert "0.1" not in view.cells
    view.apply(AgentStarted(agent_id="0.1", parent_id="0", depth=1, query="p", model="m"))
    assert view.waiting_starts == {} and view.agents["0"].children == ["0.1"]
    view.apply(
        SubcallStarted(
            agent_id="0", call_id="r0.2", kind="rlm_query", prompt="p", child_agent_id="0.2"
        )
    )
    view.apply(CellPaused(agent_id="0.2", cell_id="0.2", reason="breakpoint: sub-agent start"))
    view.apply(SubcallFinished(agent_id="0", call_id="r0.2", ok=True))  # skipped at its start
    assert view.waiting_starts == {}


def test_a_stopped_run_leaves_no_cell_waiting_or_running():
    view = fold(_live_cell_events())
    view.apply(CellProposed(agent_id="0", cell_id="0:1", step=1, index=1, code="x"))
    view.apply(CellPaused(agent_id="0", cell_id="0:1", reason="paused"))
    view.apply(CellProposed(agent_id="0", cell_id="0:2", step=1, index=2, code="y"))
    view.apply(CellStarted(agent_id="0", cell_id="0:2", code="y"))
    view.apply(RunStateChanged(state="paused"))
    view.apply(RunFinished(status="stopped", reason="stopped by the user"))
    assert view.cells["0:1"].status == "cancelled"
    assert view.cells["0:2"].status == "stopped"
    assert view.agents["0"].status == "stopped"
    view.apply(RunStateChanged(state="running"))  # late state events do not revive it
    assert view.state == "finished" and view.reason == "stopped by the user"


async def test_a_live_run_and_its_saved_session_fold_alike(sessions_dir):
    run = Run(RunConfig(query=FRUITS_QUERY, sessions_dir=sessions_dir, demo_delay=0))
    live = RunView()
    run.subscribe(live.apply)
    result = await run.execute()
    saved = fold(read_session(result.session_dir).events)
    assert live.status == saved.status == "answered"
    assert live.answer == saved.answer == result.answer and len(saved.answer) == 50
    assert live.cell_order == saved.cell_order
    assert [c.status for c in live.cells.values()] == [c.status for c in saved.cells.values()]
    assert [c.output for c in live.cells.values()] == [c.output for c in saved.cells.values()]
    assert live.usage == saved.usage and live.tokens_per_step == saved.tokens_per_step
    assert live.seen_log == saved.seen_log
    assert live.model_is_demo and live.model == "demo (offline)"


def test_a_resumed_run_clears_stale_waits_and_says_it_re_runs_recorded_cells():
    from rlm_tui.events import (
        CellPaused,
        CellProposed,
        CellRerunFinished,
        CellRerunStarted,
        ModelRequest,
        RunStarted,
    )

    events = [e for e in sample_events() if e.seq <= 6]  # cut while cell 0:2 waited
    events += [
        CellProposed(agent_id="0", cell_id="0:2", step=2, index=2, code="y = 2"),
        CellPaused(agent_id="0", cell_id="0:2", reason="paused"),
    ]
    view = fold(events)
    assert list(view.waiting) == ["0:2"]
    first = events[0]
    assert isinstance(first, RunStarted)
    view.apply(first.model_copy(update={"resumed_from": first.run_id}))
    assert not view.waiting and view.cells["0:2"].status == "cancelled"
    assert not view.rerun_cells and view.status is None  # re-running is said by events only
    view.apply(CellRerunStarted(agent_id="0", cell_id="0:1", code="x = 1"))
    assert view.rerun_cells == ["0:1"] and view.cells["0:1"].rerunning
    view.apply(CellRerunFinished(agent_id="0", cell_id="0:1", status="ok"))
    assert not view.rerun_cells and not view.cells["0:1"].rerunning
    view.apply(ModelRequest(agent_id="0", call_id="c9", step=2, model="m"))
    view.apply(CellProposed(agent_id="0", cell_id="0:2", step=2, index=2, code="y = 2"))
    assert view.cell_order.count("0:2") == 1 and view.cells["0:2"].status == "pending"


async def test_an_extracted_answer_and_a_compaction_show_in_the_panes():
    from rlm_tui.events import HistoryCompacted, RunFinished
    from rlm_tui.tui.app import RlmApp
    from rlm_tui.tui.config import UiConfig

    events = sample_events()
    finished = events.pop()
    assert isinstance(finished, RunFinished)
    events.append(
        HistoryCompacted(
            t=finished.t,
            agent_id="0",
            step=3,
            summary="so far: two guests",
            messages_before=7,
            messages_after=3,
            tokens_before=1500,
            tokens_after=300,
        )
    )
    events.append(
        finished.model_copy(
            update={"status": "budget", "reason": "model call limit 3 reached", "extracted": True}
        )
    )
    for seq, event in enumerate(events, 1):
        event.seq = seq
    view = fold(events)
    assert view.extracted and view.status == "budget"
    assert view.cells_of("0")[-1].tool_calls[-1].startswith("⟲ history compacted before step 3")
    app = RlmApp(events=events, ui_config=UiConfig(), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: "extracted answer" in app.screen._answer_text().plain)
        assert "morning light walk" in app.screen._answer_text().plain


async def test_sub_calls_replies_and_answers_are_in_the_view(sessions_dir):
    """What export and the replay model read from the projection: every sub-call in call
    order with its result, each reply by (agent, step), llm_query replies by prompt."""
    from scripted import ScriptedModel, cell

    from rlm_tui.models.replay import ReplayModel

    model = ScriptedModel(
        {
            "q": [cell("a = llm_query('one')\nb = rlm_query('sub')"), cell("FINAL([a, b])")],
            "sub": [cell("FINAL({'k': 1})")],
        }
    )
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    assert result.answer == ["echo: one", {"k": 1}]
    view = fold(read_session(result.session_dir).events)
    calls = [(c.agent_id, c.kind, c.prompt, c.ok) for c in view.subcalls]
    assert calls == [("0", "llm_query", "one", True), ("0", "rlm_query", "sub", True)]
    assert view.subcalls[1].child_agent_id == "0.1" and view.subcalls[1].result.json_value == {
        "k": 1
    }
    assert not view.open_subcalls
    assert view.replies[("0", 2)] == cell("FINAL([a, b])")
    assert view.replies[("0.1", 1)] == cell("FINAL({'k': 1})")
    assert view.query_replies == {("0", "one"): ["echo: one"]}
    assert view.agents["0.1"].answer.json_value == {"k": 1} and view.agents["0.1"].reason == ""
    assert view.answer_value is not None and view.answer_value.type_name == "list"
    replayed = ReplayModel.from_directory(result.session_dir)
    again = await Run(
        RunConfig(query="q", sessions_dir=sessions_dir), model=replayed, sub_model=replayed
    ).execute()
    assert again.answer == result.answer and again.usage.cost == 0


def test_hand_launches_follow_ups_and_compactions_are_kept_for_resume():
    """Where in the parent's cells a hand launch and its answer came, by cells past the gate."""
    from rlm_tui.events import AgentLaunched, FollowUp, HistoryCompacted, Value

    answer = Value(json_value={"lion": 0}, is_json=True, repr="{'lion': 0}", type_name="dict")
    sizes = {"messages_before": 7, "messages_after": 4, "tokens_before": 900, "tokens_after": 200}
    view = fold(_live_cell_events())
    for event in [
        CellProposed(agent_id="0", cell_id="0:1", step=1, index=1, code="x = 1"),
        CellStarted(agent_id="0", cell_id="0:1", code="x = 1"),
        CellFinished(agent_id="0", cell_id="0:1", status="ok"),
        CellProposed(agent_id="0", cell_id="0:2", step=1, index=2, code="y"),
        CellPaused(agent_id="0", cell_id="0:2", reason="paused"),
        AgentLaunched(agent_id="0", child_agent_id="0.1", prompt="zoo", bind_var="zoo"),
        CellSkipped(agent_id="0", cell_id="0:2"),
        SubcallFinished(agent_id="0", call_id="r0.1", ok=True, result=answer),
        FollowUp(agent_id="0", step=2, question="and then?", answer_var="answer_1"),
        HistoryCompacted(agent_id="0", step=3, summary="so far", **sizes),
    ]:
        view.apply(event)
    launch = view.launches["0.1"]
    assert (launch.parent_id, launch.prompt, launch.bind_var) == ("0", "zoo", "zoo")
    assert launch.launched_at == 1 and launch.answered_at == 2
    assert launch.answer is not None and launch.answer.json_value == {"lion": 0}
    assert view.follow_ups == {("0", 2): "and then?"}
    assert view.compactions == {("0", 3): "so far"}


def test_an_agents_time_is_what_it_ran_not_the_gap_before_its_resume():
    from rlm_tui.events import AgentStarted, RunStarted

    start = RunStarted(t=1000.0, run_id="r", query="q", model="m", sub_model="m", limits={})
    view = fold(
        [
            start,
            AgentStarted(t=1000.0, agent_id="0", query="q", model="m"),
            AgentStarted(t=1001.0, agent_id="0.1", parent_id="0", depth=1, query="c", model="m"),
            ModelRequest(t=1003.0, agent_id="0.1", call_id="c1", step=1, model="m"),
        ]
    )  # the process died here; resumed ten minutes later
    view.apply(start.model_copy(update={"t": 1603.0, "resumed_from": "r"}))
    assert view.agents["0.1"].elapsed() == 2.0 and view.agents["0.1"].status == "stopped"
    for agent_id in ["0", "0.1"]:
        view.apply(AgentStarted(t=1603.5, agent_id=agent_id, query="q", model="m"))
    view.apply(AgentFinished(t=1604.5, agent_id="0.1", status="answered"))
    view.apply(AgentFinished(t=1605.0, agent_id="0", status="answered"))
    assert view.agents["0.1"].elapsed() == 3.0  # 2 s before, 1 s after
    assert view.agents["0"].elapsed() == 4.5  # 3 s before, 1.5 s after
