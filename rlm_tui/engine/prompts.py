"""What the model is told: the REPL contract, the first message, and each step's feedback."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rlm_tui.engine.context import ContextSource

if TYPE_CHECKING:
    from rlm_tui.engine.tools import ToolSpec

SYSTEM_PROMPT = """\
You are a Recursive Language Model (RLM). You answer a query by writing Python code that runs \
in a live Jupyter kernel (a REPL). The data you work on is NOT in this conversation: it is the \
variable `context` in the kernel. Explore it with code, like a data scientist in a notebook.

Write code in fenced blocks marked ```repl (or ```python). Every block runs in order in the \
same kernel; variables persist between blocks and between turns. After your blocks run you \
see what they printed, cut to {truncate:,} characters per block, so print summaries, lengths, \
slices and counts rather than whole objects.

Available in the kernel:
- `context`: the data ({context_label}).{inputs}
- `llm_query(prompt, model=None) -> str`: ask a language model one question (it does not see \
`context` unless you put a part of it in the prompt).
- `llm_query_batched(prompts) -> list[str]`: many questions at once, answered concurrently.
- `rlm_query(prompt, context=None, schema=None)`: start a sub-agent: an RLM like you with its \
own kernel, whose `context` is the value you pass. It returns the sub-agent's final answer as \
a Python value (a dict stays a dict); `schema` (a JSON Schema or a type like `dict[str, int]`) \
is the shape its answer must have. Use it to split work too big or too varied for one agent.
- `rlm_query_batched(prompts, contexts=None, schema=None) -> list`: many sub-agents at once, \
concurrently.
- Each helper above also works with `await`, to run calls concurrently: \
`texts = await asyncio.gather(*[llm_query(p) for p in prompts])` (top-level `await` works).
- `SHOW_VARS()`: list the variables you have made.
- `FINAL(value)`: give your final answer (any Python value) and stop. `SUBMIT(value)` or \
`SUBMIT(field=value, ...)` (a dict of the fields) does the same.
- `FINAL_VAR("name")`: give the value of the kernel variable `name` as your final answer.

Build answers in code and return them with FINAL_VAR rather than retyping values. You are at \
recursion depth {depth} of at most {max_depth}.{sub_agent_note}"""

_SUB_AGENT_NOTE = (
    " You are a sub-agent: your final value is returned to the code of the agent that "
    "started you, so return exactly the Python value it asked for."
)


def system_prompt(
    context: ContextSource,
    depth: int,
    max_depth: int,
    truncate: int,
    tools: Sequence[ToolSpec] = (),
    inputs: Mapping[str, ContextSource] | None = None,
) -> str:
    named = "".join(
        f"\n- `{name}`: an input ({_context_label(source)})"
        for name, source in (inputs or {}).items()
    )
    text = SYSTEM_PROMPT.format(
        truncate=truncate,
        context_label=_context_label(context),
        inputs=named,
        depth=depth,
        max_depth=max_depth,
        sub_agent_note=_SUB_AGENT_NOTE if depth > 0 else "",
    )
    return f"{text}\n\n{tools_note(tools)}" if tools else text


def tools_note(tools: Sequence[ToolSpec]) -> str:
    lines = "\n".join(f"- {t.line}" for t in tools)
    return (
        "Tools: functions that run outside the kernel (they can reach what it cannot). Call "
        "them like the helpers above (plainly, or with `await`); arguments must be JSON data, "
        f"and a tool's error is raised in your cell.\n{lines}"
    )


def _context_label(context: ContextSource) -> str:
    if context.kind == "none":
        return 'empty: the string ""'
    kinds = {
        "text": "a str",
        "json": "the parsed JSON (dict or list)",
        "jsonl": "a list of the parsed JSON lines",
        "yaml": "the parsed YAML",
        "dir": "a dict {relative path: file text}",
        "pickle": "a Python value",
        "none": "",
    }
    return f"{kinds[context.kind]} of {context.chars:,} characters"


def first_message(query: str, schema: dict[str, Any] | None = None) -> str:
    text = (
        f"Query: {query}\n\n"
        "The context is in the kernel as `context`. Start by looking at it with code, "
        "then work towards the answer."
    )
    return text if schema is None else f"{text}\n\n{schema_note(schema)}"


def schema_note(schema: dict[str, Any]) -> str:
    return (
        "Your final answer must be JSON data matching this JSON Schema:\n"
        f"{json.dumps(schema)}\n"
        "FINAL checks it in the kernel: a mismatch raises an error in the cell that says "
        "where; fix the value and call FINAL again."
    )


def cell_feedback(index: int, status: str, model_view: str) -> str:
    body = model_view if model_view.strip() else "(no output)"
    return f"[cell {index}: {status}]\n{body}"


def no_code_feedback() -> str:
    return (
        "Your reply had no ```repl code block and no FINAL. Write code to make progress, "
        'or give the answer with FINAL(value) / FINAL_VAR("name").'
    )


def compaction_request() -> str:
    return (
        "Your history is getting long and will be shortened. Summarise your work so far for "
        "yourself: what you found, the kernel variables you made and what they hold, what is "
        "left to do. Be specific and brief; no code blocks."
    )


def summary_turn(summary: str) -> str:
    return f"(My earlier turns, summarised; the kernel still holds every variable.)\n{summary}"


def follow_up(question: str, answer_var: str) -> str:
    return (
        f"Follow-up question: {question}\n\n"
        f"Your previous answer is in the kernel as `{answer_var}`; every variable you made is "
        "still there. Answer this question with FINAL again."
    )


def bound_value_note(var: str, type_name: str, preview: str) -> str:
    return (
        f"A sub-agent launched by the user has finished. Its answer is now in the kernel as "
        f"`{var}` ({type_name}): {preview}"
    )


def extraction_request(reason: str, schema: dict[str, Any] | None) -> str:
    shape = (
        f"JSON data matching this JSON Schema: {json.dumps(schema)}"
        if schema is not None
        else "JSON (a JSON string for a text answer)"
    )
    return (
        f"The run's budget has run out ({reason}); no more code will run. From everything "
        "above, give the best final answer you can now. Reply with only the answer, as "
        f"{shape}: no code, no explanation."
    )
