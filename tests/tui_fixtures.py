"""A fixed, recorded run for deterministic UI snapshots (no clock, no kernel, no model)."""

from __future__ import annotations

from pathlib import Path

from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    BudgetUpdate,
    CellFinished,
    CellProposed,
    CellStarted,
    ModelResponse,
    RunFinished,
    RunStarted,
    Usage,
    Value,
)

CONTEXT = Path(__file__).parent / "data" / "context.txt"


def _usage(p: int, c: int) -> Usage:
    return Usage(prompt_tokens=p, completion_tokens=c, calls=1, cost=0.0001 * (p + c) / 100)


def sample_events() -> list:
    t = 1_700_000_000.0
    seen = "RIVERA: The single best habit is a walk in morning light within an hour of waking."
    answer = {"habit": "morning light walk", "guests": 2}
    events = [
        RunStarted(
            t=t,
            run_id="20261124-120000-abcdef",
            query="What do the guests recommend?",
            model="openai/gpt-4o-mini",
            sub_model="openai/gpt-4o-mini",
            context_kind="text",
            context_chars=CONTEXT.stat().st_size,
            context_file=str(CONTEXT),
            session_dir="sessions/20261124-120000-abcdef",
            limits={"max_depth": 3, "max_iterations": 20, "max_calls": 10, "max_cost": 0.05},
        ),
        AgentStarted(
            t=t,
            agent_id="0",
            depth=0,
            query="What do the guests recommend?",
            model="openai/gpt-4o-mini",
            context_chars=640,
        ),
        ModelResponse(
            t=t + 1,
            agent_id="0",
            call_id="c1",
            step=1,
            model="m",
            text="Look first.",
            usage=_usage(900, 60),
        ),
        CellProposed(
            t=t + 1,
            agent_id="0",
            cell_id="0:1",
            step=1,
            index=1,
            preamble="Let me look at the context first.\nThen I will search it.",
            code="print(len(context))\nprint(context.splitlines()[2])",
        ),
        CellStarted(t=t + 1, agent_id="0", cell_id="0:1", code="print(len(context))"),
        CellFinished(
            t=t + 1.1,
            agent_id="0",
            cell_id="0:1",
            status="ok",
            duration=0.004,
            output=f"640\n{seen}\n",
            model_view=f"640\n{seen}\n",
        ),
        AgentStarted(
            t=t + 2,
            agent_id="0.1",
            parent_id="0",
            depth=1,
            query="Summarise what Dr. Rivera recommends",
            model="openai/gpt-4o-mini",
            context_preview=seen,
            context_chars=len(seen),
        ),
        ModelResponse(
            t=t + 3,
            agent_id="0.1",
            call_id="c2",
            step=1,
            model="m",
            text="...",
            usage=_usage(700, 40),
        ),
        CellProposed(
            t=t + 3,
            agent_id="0.1",
            cell_id="0.1:1",
            step=1,
            index=1,
            code="FINAL('a morning light walk')",
        ),
        CellFinished(t=t + 3.2, agent_id="0.1", cell_id="0.1:1", status="ok", duration=0.002),
        AgentFinished(
            t=t + 3.2,
            agent_id="0.1",
            status="answered",
            steps=1,
            answer=Value(
                json_value="a morning light walk",
                is_json=True,
                repr="'a morning light walk'",
                type_name="str",
            ),
            usage=_usage(700, 40),
        ),
        ModelResponse(
            t=t + 4,
            agent_id="0",
            call_id="c3",
            step=2,
            model="m",
            text="...",
            usage=_usage(1500, 80),
        ),
        CellProposed(t=t + 4, agent_id="0", cell_id="0:2", step=2, index=2, code="x = 1 / 0"),
        CellFinished(
            t=t + 4.1,
            agent_id="0",
            cell_id="0:2",
            status="error",
            duration=0.01,
            output="ZeroDivisionError: division by zero\n",
            error="ZeroDivisionError: division by zero",
        ),
        CellProposed(
            t=t + 5,
            agent_id="0",
            cell_id="0:3",
            step=3,
            index=3,
            code="result = {'habit': 'morning light walk', 'guests': 2}\nFINAL_VAR('result')",
        ),
        CellFinished(t=t + 5.1, agent_id="0", cell_id="0:3", status="ok", duration=0.003),
        BudgetUpdate(
            t=t + 5.1,
            usage=Usage(prompt_tokens=3100, completion_tokens=180, calls=3, cost=0.0328),
            depth=1,
            elapsed=5.1,
        ),
        AgentFinished(
            t=t + 5.2,
            agent_id="0",
            status="answered",
            steps=3,
            answer=Value(json_value=answer, is_json=True, repr=repr(answer), type_name="dict"),
            usage=_usage(2400, 140),
        ),
        RunFinished(
            t=t + 5.2,
            status="answered",
            answer=Value(json_value=answer, is_json=True, repr=repr(answer), type_name="dict"),
            usage=Usage(prompt_tokens=3100, completion_tokens=180, calls=3, cost=0.0328),
            elapsed=5.2,
        ),
    ]
    for seq, event in enumerate(events, 1):
        event.seq = seq
    return events
