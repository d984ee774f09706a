"""The answer a run gives when its budget ends: one reserved call over the root's trajectory.

DSPy's RLM does the same when its iterations run out. The call was kept back from the budget
when the run started (``Budget.reserve_calls``, with a quarter of each other limit), so the
limits still hold exactly: its trajectory is cut to the prompt tokens left. The reply
is read as JSON on the host (no code runs) and checked against the run's schema if it has one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rlm_tui.engine import prompts
from rlm_tui.engine.parse import plain_final
from rlm_tui.events import Value
from rlm_tui.kernel.answer_check import check
from rlm_tui.models.base import estimate_tokens

_FENCED = re.compile(r"^\s*```[\w-]*\n(.*?)\n```\s*$", re.DOTALL)


def extraction_messages(
    messages: list[dict[str, Any]],
    reason: str,
    schema: dict[str, Any] | None,
    max_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """The trajectory with the request for an answer added to its last user turn.

    Cut to ``max_tokens`` (estimated), the prompt tokens left of the budget: the oldest turns
    after the query go first, then the system prompt, the query, and the head of the last turn.
    """
    request = prompts.extraction_request(reason, schema)
    out = [dict(m) for m in messages]
    if out and out[-1]["role"] == "user":
        out[-1]["content"] = f"{out[-1]['content']}\n\n{request}"
    else:
        out.append({"role": "user", "content": request})
    if max_tokens is None:
        return out
    head = out[: min(2 if out[0]["role"] == "system" else 1, len(out) - 1)]
    tail = out[len(head) :]
    while len(tail) > 1 and estimate_tokens(head + tail) > max_tokens:
        tail = tail[2:] if len(tail) > 2 else tail[-1:]  # an assistant turn and its feedback
    while head and estimate_tokens(head + tail) > max_tokens:
        head = head[1:]
    last = tail[-1]
    over = estimate_tokens(head + tail) - max_tokens
    if over > 0:
        keep = max(len(request), len(str(last["content"])) - 4 * over - 4)
        last["content"] = str(last["content"])[-keep:]
    return head + tail


def extracted_value(text: str, schema: dict[str, Any] | None) -> Value:
    """The reply as a value: JSON if it parses (a FINAL(...) around it is fine), else the text.

    Raises ``AnswerMismatch`` when a schema is given and the value does not match it.
    """
    body = text.strip()
    fenced = _FENCED.match(body)
    if fenced:
        body = fenced.group(1).strip()
    marker = plain_final(body)
    if marker is not None and marker.kind != "FINAL_VAR":
        body = marker.argument
    try:
        value: Any = json.loads(body)
    except ValueError:
        value = body.strip("\"'")
    if schema is not None:
        value = check(value, schema)
    return Value.plain(value)
