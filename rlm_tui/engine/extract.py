"""The answer a run gives when its budget ends: one reserved call over the root's trajectory.

DSPy's RLM does the same when its iterations run out. The call was kept back from the budget
when the run started (``Budget.reserve_calls``), so a call limit still holds exactly. The reply
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

_FENCED = re.compile(r"^\s*```[\w-]*\n(.*?)\n```\s*$", re.DOTALL)


def extraction_messages(
    messages: list[dict[str, Any]], reason: str, schema: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The trajectory with the request for an answer added to its last user turn."""
    request = prompts.extraction_request(reason, schema)
    out = [dict(m) for m in messages]
    if out and out[-1]["role"] == "user":
        out[-1]["content"] = f"{out[-1]['content']}\n\n{request}"
    else:
        out.append({"role": "user", "content": request})
    return out


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
