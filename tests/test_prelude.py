"""The kernel-side helpers as a plain module: no kernel, a real bridge on the test's loop."""

from __future__ import annotations

import asyncio
import json

import pytest

from rlm_tui import values
from rlm_tui.events import Value
from rlm_tui.kernel import prelude
from rlm_tui.kernel.bridge import BridgeServer


def fresh_namespace() -> dict:
    ns: dict = {}
    prelude.install(ns)
    return ns


def test_install_puts_the_repl_contract_in_the_namespace():
    ns = fresh_namespace()
    for name in ("llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"):
        assert callable(ns[name])
    assert ns["context"] == "" and ns["answer"] == {"content": "", "ready": False}
    assert callable(ns[prelude.SETUP_NAME])


def test_show_vars_lists_only_what_the_cell_made(capsys):
    ns = fresh_namespace()
    ns["SHOW_VARS"]()
    assert capsys.readouterr().out == "(no variables yet)\n"
    ns["x"] = [1, 2]
    ns["_private"] = 1
    ns["json"] = json
    ns["SHOW_VARS"]()
    assert capsys.readouterr().out == "x: list = [1, 2]\n"


def test_final_var_of_a_missing_name_lists_the_variables():
    ns = fresh_namespace()
    ns["total"] = 3
    with pytest.raises(NameError, match="no variable named 'nope'; variables: total"):
        ns["FINAL_VAR"]("nope")


def test_a_helper_without_a_bridge_says_so():
    ns = fresh_namespace()
    with pytest.raises(prelude.RLMError, match="no bridge"):
        ns["llm_query"]("hi")


def test_payload_round_trips_values_json_cannot_hold():
    value = {"t": (1, 2), 3: "int key"}
    p = values.payload(value)
    assert p["is_json"] is False and p["type_name"] == "dict"
    assert values.unpayload(p) == value
    assert values.payload({"a": [1]})["is_json"] is True
    assert values.unpayload({"pickle": None, "is_json": False, "repr": "<x>"}) == "<x>"


def test_host_and_kernel_build_a_value_the_same_way():
    long = "x" * (values.PREVIEW_LIMIT + 10)
    host = Value.from_host({"k": long})
    assert host.model_dump() == values.payload({"k": long})
    assert host.repr.endswith("...") and len(host.repr) == values.PREVIEW_LIMIT + 3
    plain = Value.plain(long)
    assert plain.pickle is None and plain.json_value == long and plain.type_name == "str"


@pytest.mark.parametrize(
    ("content", "kind", "expected"),
    [
        ("a\nb", "text", "a\nb"),
        ('{"k": 1}', "json", {"k": 1}),
        ('{"n":1}\n\n', "jsonl", [{"n": 1}]),
    ],
)
def test_load_context(tmp_path, content, kind, expected):
    path = tmp_path / "c"
    path.write_text(content)
    assert prelude.load_context(str(path), kind) == expected
    with pytest.raises(ValueError, match="unknown context kind"):
        prelude.load_context(str(path), "xml")


async def test_helpers_talk_to_a_real_bridge_and_the_grant_file_is_removed(tmp_path):
    calls = []

    async def handler(agent, op, args):
        calls.append((agent, op, args))
        if op == "llm_query":
            return {"text": "pong"}
        return {}

    bridge = BridgeServer(handler)
    await bridge.start()
    try:
        grant = tmp_path / "grant.json"
        grant.write_text(json.dumps(bridge.grant("0.1")))
        ns = fresh_namespace()
        ns[prelude.SETUP_NAME]("0.1", "", "none", str(grant))
        assert not grant.exists()
        assert await asyncio.to_thread(ns["llm_query"], "ping") == "pong"
        await asyncio.to_thread(ns["answer"].__setitem__, "content", 42)
        await asyncio.to_thread(ns["answer"].__setitem__, "ready", True)
        assert [(a, op) for a, op, _ in calls] == [("0.1", "llm_query"), ("0.1", "final")]
        assert calls[1][2]["value"]["json_value"] == 42
    finally:
        await bridge.close()
