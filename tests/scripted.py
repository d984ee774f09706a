"""A scripted model for engine and UI tests: fixed replies per agent query and step.

It implements the real Model protocol, so the engine, kernels and sub-agents are all real;
only the text is fixed, like the demo model's.
"""

from __future__ import annotations

from rlm_tui.models.base import CallInfo, Completion, DeltaCallback, Message


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
