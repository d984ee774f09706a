"""A scripted model for engine and UI tests: fixed replies per agent query and step.

It implements the real Model protocol, so the engine, kernels and sub-agents are all real;
only the text is fixed, like the demo model's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_tui.models.base import CallInfo, Completion, DeltaCallback, Message

if TYPE_CHECKING:
    from rlm_tui.engine.run import RunResult


def cell(code: str, prose: str = "") -> str:
    return f"{prose}\n```repl\n{code}\n```"


class ScriptedModel:
    is_demo = False

    def __init__(self, scripts: dict[str, list[str]], name: str = "scripted") -> None:
        """``scripts`` maps a query prefix to the replies for steps 1, 2, ...; the last repeats."""
        self.scripts = scripts
        self.name = name
        self.seen: list[tuple[CallInfo, list[Message]]] = []

    async def complete(
        self, messages: list[Message], info: CallInfo, on_delta: DeltaCallback | None = None
    ) -> Completion:
        self.seen.append((info, [dict(m) for m in messages]))
        if info.purpose == "llm_query":
            text = f"echo: {messages[-1]['content']}"
        else:
            replies = next(
                (r for prefix, r in self.scripts.items() if info.query.startswith(prefix)), None
            )
            if replies is None:
                raise AssertionError(f"no script for query {info.query!r}")
            text = replies[min(info.step, len(replies)) - 1]
        if on_delta:
            on_delta(text)
        chars = sum(len(str(m["content"])) for m in messages)
        return Completion(text, prompt_tokens=chars // 4, completion_tokens=len(text) // 4)

    async def aclose(self) -> None:
        return None


ZOO_SCRIPTS = {
    "q": [cell("x = 1"), cell("print(sorted(zoo))\nFINAL(zoo)")],
    "make a zoo": [cell("zoo = {'lion': 0}\nFINAL(zoo)")],
}
"""The root's second cell uses ``zoo``, bound by a sub-agent a person launches by hand."""


async def until_true(
    predicate: Callable[[], bool],
    timeout: float = 30.0,
    wait: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    every: float = 0.02,
) -> None:
    for _ in range(int(timeout / every)):
        if predicate():
            return
        await wait(every)
    raise AssertionError("condition not reached in time")


async def until(pilot: Any, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """``until_true`` in a Pilot test: each wait lets the app handle its messages."""
    await until_true(predicate, timeout, pilot.pause, 0.05)


async def run_with_a_hand_launch(sessions_dir: Path) -> RunResult:
    """A saved session: the root waits at 0:1 while 0.1 is launched by hand (bound as
    ``zoo``); 0.1 answers {'lion': 0}, then the root prints and answers it."""
    from rlm_tui.engine.control import Breakpoints
    from rlm_tui.engine.run import Run, RunConfig

    run = Run(
        RunConfig(query="q", sessions_dir=sessions_dir),
        model=ScriptedModel(ZOO_SCRIPTS),
        breakpoints=Breakpoints(every_cell=True),
    )
    await run.start()
    await until_true(lambda: "0:1" in run.control.pending)
    launched = run.launch_subagent("0", "make a zoo", var="zoo")
    await until_true(lambda: "0.1:1" in run.control.pending)
    run.step("0.1:1")
    await launched
    run.set_breakpoints(Breakpoints())
    run.resume()
    return await run.wait()
