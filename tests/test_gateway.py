"""Runs whose kernels live on a real Jupyter Kernel Gateway (started on 127.0.0.1 by the tests).

Everything goes through the gateway's REST API and websockets; sub-calls and the context
reach the kernels over the bridge's TCP listener. After every test the gateway lists no
kernels (``GET /api/kernels``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import conftest
import pytest
from conftest import (
    FRUITS_QUERY,
    NESTED_QUERY,
    our_kernel_processes,
    start_cli_run,
    wait_for_session_text,
)
from gateway_fixture import (  # noqa: F401
    MUTE_KERNEL,
    LoopbackGateway,
    free_port,
    kernel_gateway,
)
from openai_server import OpenAIServer, Reply
from scripted import ScriptedModel, cell
from test_engine import _check_r_counts, _first

from rlm_tui.engine.budget import Limits
from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.resume import resume_run
from rlm_tui.engine.run import Run, RunConfig
from rlm_tui.events import (
    AgentFinished,
    AgentStarted,
    CellFinished,
    CellPaused,
    CellStarted,
    KernelEvent,
)
from rlm_tui.kernel import prelude
from rlm_tui.kernel.bridge import BridgeServer
from rlm_tui.kernel.gateway import START_TIMEOUT, Gateway, GatewayKernelProvider
from rlm_tui.session.store import read_session

pytestmark = pytest.mark.timeout(180)
TOKEN_ENV = "RLM_TEST_GATEWAY_TOKEN"


@pytest.fixture
def gateway(kernel_gateway: LoopbackGateway, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The loopback gateway, its token in a variable of our naming; no kernel left after."""
    monkeypatch.setenv(TOKEN_ENV, kernel_gateway.token)
    yield kernel_gateway
    assert kernel_gateway.wait_no_kernels() == [], "kernels left on the gateway"


def gateway_config(gateway: LoopbackGateway, sessions_dir: Path, **options) -> RunConfig:
    return RunConfig(
        kernel_gateway=gateway.url,
        kernel_gateway_token_env=TOKEN_ENV,
        sessions_dir=sessions_dir,
        pool_size=1,
        **options,
    )


cli = functools.partial(conftest.cli, timeout=150)


async def test_a_context_streams_over_tcp_checked_by_size_and_hash(tmp_path: Path) -> None:
    """The kernel side in this process (no gateway): what a remote kernel does at setup."""

    async def answer(agent, op, args):
        return {"text": f"{agent} asked {args['prompt']}"}

    bridge = BridgeServer(answer, tcp_host="127.0.0.1")
    await bridge.start()
    try:
        grant = {k: v for k, v in bridge.grant("0.1").items() if k != "path"}
        assert grant["host"] == "127.0.0.1" and int(grant["port"]) > 0
        source = tmp_path / "context.json"
        source.write_text(json.dumps({"text": "é" * 3_000_000}))
        ns: dict = {}
        prelude.install(ns)
        setup = ns[prelude.SETUP_NAME]
        offer = bridge.offer(source)
        await asyncio.to_thread(setup, "0.1", "", "json", grant, offer)
        assert ns["context"] == {"text": "é" * 3_000_000}
        assert await asyncio.to_thread(ns["llm_query"], "hi") == "0.1 asked hi"
        damaged = {**offer, "sha256": "0" * 64}
        with pytest.raises(ns["RLMError"], match="arrived damaged"):
            await asyncio.to_thread(setup, "0.1", "", "json", grant, damaged)
        bridge.withdraw(offer["key"])
        with pytest.raises(ns["RLMError"], match="no such context on offer"):
            await asyncio.to_thread(setup, "0.1", "", "json", grant, offer)
        wrong = {**grant, "token": "not-the-token"}
        with pytest.raises(ns["RLMError"]):
            await asyncio.to_thread(setup, "0.1", "", "json", wrong, bridge.offer(source))
    finally:
        await bridge.close()


async def test_gateway_kernels_run_cells_and_are_seen_by_the_leftover_check(gateway) -> None:
    async def no_subcalls(agent, op, args):
        raise AssertionError("no sub-call expected")

    bridge = BridgeServer(no_subcalls, tcp_host="127.0.0.1")
    await bridge.start()
    provider = GatewayKernelProvider(Gateway(gateway.url, gateway.token), bridge, size=0)
    try:
        kernel = await provider.acquire()
        assert [k["id"] for k in gateway.kernels()] == [kernel.gateway_id]
        assert kernel.pid in our_kernel_processes()
        out: list[str] = []
        grant = bridge.grant("0")
        await kernel.setup("0", None, "none", grant)
        result = await kernel.execute(
            "print(6 * 7, callable(rlm_query))", lambda _s, t: out.append(t)
        )
        assert result.status == "ok"
        assert "".join(out) == "42 True\n"
        # the setup call that carried the bridge's token is not in the kernel's history
        history: list[str] = []
        await kernel.execute("print(repr(In))", lambda _s, t: history.append(t))
        assert grant["token"] not in "".join(history)
    finally:
        await provider.close()
        await bridge.close()
    assert gateway.wait_no_kernels() == []


async def test_a_gateway_kernel_sends_output_up_to_its_limit_and_counts_the_rest(gateway) -> None:
    """A gateway's kernel is stock ipykernel: its streams and shown values get the same cut as
    a local kernel's (a print loop there grew it by gigabytes), and IPython's copy is off."""

    async def no_subcalls(agent, op, args):
        raise AssertionError("no sub-call expected")

    bridge = BridgeServer(no_subcalls, tcp_host="127.0.0.1")
    await bridge.start()
    provider = GatewayKernelProvider(
        Gateway(gateway.url, gateway.token), bridge, size=0, output_limit=1000
    )
    try:
        kernel = await provider.acquire()
        await kernel.setup("0", None, "none", bridge.grant("0"))
        chunks: list[tuple[str, str]] = []
        result = await kernel.execute(
            "for i in range(500):\n    print('y' * 99)\n'r' * 3000",
            lambda stream, text: chunks.append((stream, text)),
        )
        assert result.status == "ok", result.error
        out = "".join(text for stream, text in chunks if stream == "stdout")
        shown = [text for stream, text in chunks if stream == "result"]
        assert out == ("y" * 99 + "\n") * 10 and shown == ["'" + "r" * 999 + "\n"]
        assert result.dropped == 500 * 100 - 1000 + 3002 - 1000
        kept: list[str] = []
        await kernel.execute(
            "outputs = get_ipython().history_manager.outputs.values()\n"
            "print(sum(len(o.bundle.get('stream', ())) for cell in outputs for o in cell))",
            lambda _s, t: kept.append(t),
        )
        assert "".join(kept).strip() == "0"
    finally:
        await provider.close()
        await bridge.close()


def test_nested_demo_problem_on_gateway_kernels(gateway, sessions_dir: Path) -> None:
    done = cli(
        "run",
        "--model",
        "demo",
        "--json",
        "--sessions-dir",
        str(sessions_dir),
        "--kernel-gateway",
        gateway.url,
        "--kernel-gateway-token-env",
        TOKEN_ENV,
        NESTED_QUERY,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert sorted(out["answer"]) == ["animals", "countries", "fruits"]
    for mapping in out["answer"].values():
        _check_r_counts(mapping)
    events = read_session(Path(out["session"])).events
    kernels = {
        e.agent_id: e.kernel_id
        for e in events
        if isinstance(e, KernelEvent) and e.what == "started"
    }
    assert sorted(kernels) == ["0", "0.1", "0.2", "0.3"]
    assert len(set(kernels.values())) == 4, "each agent on a gateway kernel of its own"
    saved = (Path(out["session"]) / "events.jsonl").read_text()
    assert gateway.token not in saved, "the gateway's token is never recorded"


async def test_fruits_demo_and_a_directory_context_through_the_python_api(
    gateway, sessions_dir: Path, tmp_path: Path
) -> None:
    result = await Run(gateway_config(gateway, sessions_dir, query=FRUITS_QUERY)).execute()
    assert result.status == "answered", result.reason
    _check_r_counts(result.answer)
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.txt").write_text("héllo")
    (notes / "sub" / "b.md").write_text("x" * 10_000)
    model = ScriptedModel({"q": [cell("FINAL({k: len(v) for k, v in context.items()})")]})
    config = gateway_config(gateway, sessions_dir, query="q", context_file=str(notes))
    result = await Run(config, model=model).execute()
    assert result.answer == {"a.txt": 5, "sub/b.md": 10_000}


SCRIPTS = {
    "main": [
        cell("echo = llm_query('say hi')\nprint(echo)"),
        cell(
            "parts = rlm_query_batched(['sub A', 'sub B'], contexts=[context[:5], context[5:10]])"
        ),
        cell("FINAL({'echo': echo, 'parts': parts, 'n': len(context)})"),
    ],
    "sub A": [cell("deeper = rlm_query('leaf', context=context.upper())\nFINAL({'leaf': deeper})")],
    "sub B": [cell("FINAL(context[::-1])")],
    "leaf": [cell("FINAL_VAR('context')")],
}


def trajectory(request: dict) -> Reply:
    messages = request["messages"]
    if len(messages) == 1:  # a plain llm_query
        return Reply(text=f"hi from the model to: {messages[0]['content']}")
    query = messages[1]["content"].split("\n", 1)[0].removeprefix("Query: ")
    step = sum(1 for m in messages if m["role"] == "assistant")
    return Reply(text=SCRIPTS[query][min(step, len(SCRIPTS[query]) - 1)])


def test_loopback_model_trajectory_two_levels_deep_with_a_plain_sub_call(
    gateway, sessions_dir: Path, tmp_path: Path
) -> None:
    context = tmp_path / "context.txt"
    context.write_text("abcdefghijklmnop")
    with OpenAIServer() as server:
        server.script(trajectory)
        done = cli(
            "run",
            "--json",
            "--model",
            "openai/test-model",
            "--api-base",
            server.base_url,
            "--sessions-dir",
            str(sessions_dir),
            "--context-file",
            str(context),
            "--kernel-gateway",
            gateway.url,
            "main",
            env={"JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token},
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["answer"] == {
        "echo": "hi from the model to: say hi",
        "parts": [{"leaf": "ABCDE"}, "jihgf"],
        "n": 16,
    }
    events = read_session(Path(out["session"])).events
    depths = {e.agent_id: e.depth for e in events if isinstance(e, AgentStarted)}
    assert depths == {"0": 0, "0.1": 1, "0.2": 1, "0.1.1": 2}


async def test_pause_replace_resume_on_a_gateway_kernel(
    gateway, sessions_dir: Path, start_run
) -> None:
    run = Run(
        gateway_config(gateway, sessions_dir, query=FRUITS_QUERY),
        breakpoints=Breakpoints(every_cell=True),
    )
    await start_run(run)
    paused = await _first(run, CellPaused, timeout=60)
    assert paused.cell_id == "0:1"
    run.replace_cell("0:1", "names = ['Rare Berry', 'Fig']")
    run.set_breakpoints(Breakpoints())
    run.resume()
    result = await run.wait()
    assert result.answer == {"Rare Berry": 4, "Fig": 0}


async def test_interrupt_and_a_hand_launched_sub_agent_on_gateway_kernels(
    gateway, sessions_dir: Path, start_run
) -> None:
    model = ScriptedModel(
        {
            "q": [cell("import time\ntime.sleep(60)"), cell("FINAL([len(context), zoo])")],
            "by hand": [cell("FINAL({'from': 'hand', 'n': len(context)})")],
        }
    )
    run = Run(gateway_config(gateway, sessions_dir, query="q", context_value="abcd"), model=model)
    await start_run(run)
    await _first(run, CellStarted, timeout=60)
    await asyncio.sleep(0.3)
    answered = asyncio.ensure_future(_first(run, AgentFinished, timeout=60))
    child = run.launch_subagent("0", "by hand", context="xyz", var="zoo")
    assert (await answered).agent_id == "0.1"  # on its own gateway kernel, the root still busy
    interrupted = asyncio.ensure_future(_first(run, CellFinished))
    await run.interrupt("0")
    assert (await interrupted).status == "interrupted"
    assert (await asyncio.wait_for(child, 30)).python() == {"from": "hand", "n": 3}
    result = await run.wait()
    assert result.answer == [4, {"from": "hand", "n": 3}], "bound in the gateway kernel"


async def test_a_run_stopped_by_its_budget_resumes_on_the_gateway(
    gateway, sessions_dir: Path
) -> None:
    def model() -> ScriptedModel:
        return ScriptedModel({"q": [cell("a = len(context)"), cell("FINAL(a * 10)")]})

    config = gateway_config(gateway, sessions_dir, query="q", context_value="abcde")
    config.limits = Limits(max_calls=1)
    stopped = await Run(config, model=model()).execute()
    assert stopped.status == "budget"
    resumed = resume_run(
        stopped.session_dir,
        live_model=model(),
        limits=Limits(max_calls=5),
        kernel_gateway=gateway.url,
        kernel_gateway_token_env=TOKEN_ENV,
    )
    result = await resumed.execute()
    assert result.answer == 50, "cell 1 re-ran on a gateway kernel with the context"


@pytest.mark.parametrize("how", ["kill", "delete"])
async def test_a_kernel_lost_on_the_gateway_mid_cell_is_an_event_and_the_run_goes_on(
    gateway, sessions_dir: Path, start_run, how: str
) -> None:
    model = ScriptedModel(
        {
            "q": [
                cell("x = 5\nimport time\ntime.sleep(60)"),
                cell("print('x' in globals())\nFINAL(len(context))"),
            ]
        }
    )
    run = Run(gateway_config(gateway, sessions_dir, query="q", context_value="abc"), model=model)
    await start_run(run)
    await _first(run, CellStarted, timeout=60)
    await asyncio.sleep(0.3)
    kernel = run.agents["0"].kernel
    if how == "kill":
        os.kill(kernel.pid, signal.SIGKILL)
    else:
        gateway.request("DELETE", f"/api/kernels/{kernel.gateway_id}")
    finished = await _first(run, CellFinished, timeout=60)
    assert finished.status == "killed"
    expected = "died on the gateway" if how == "kill" else "on the gateway"
    assert expected in (finished.error or "")
    result = await run.wait()
    assert result.answer == 3, "restarted with its context reloaded"
    died = [
        e
        for e in read_session(result.session_dir).events
        if isinstance(e, KernelEvent) and e.what == "died"
    ]
    assert len(died) == 1 and expected in died[0].reason


def start_gateway_run(
    server: OpenAIServer, gateway: LoopbackGateway, sessions_dir: Path, *extra: str
) -> subprocess.Popen[str]:
    """`rlm-tui run q` in a child process, its kernels on the gateway."""
    flags = ("--kernel-gateway", gateway.url, "--kernel-gateway-token-env", TOKEN_ENV, *extra)
    return start_cli_run(server.base_url, sessions_dir, *flags, "q")


def test_ctrl_c_of_a_gateway_run_deletes_its_kernels(gateway, sessions_dir: Path) -> None:
    with OpenAIServer() as server:
        server.script([Reply(text=cell("import time\ntime.sleep(60)"))])
        process = start_gateway_run(server, gateway, sessions_dir)
        wait_for_session_text(sessions_dir, '"cell_started"', timeout=90)
        assert gateway.kernels(), "the run's kernels are on the gateway"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert gateway.wait_no_kernels() == []


def test_ctrl_c_while_a_gateway_kernel_starts_ends_at_once(gateway, sessions_dir: Path) -> None:
    """A kernel that never answers: the run stops without waiting out its start timeout."""
    with OpenAIServer() as server:
        server.script([Reply(text=cell("1"))])
        process = start_gateway_run(server, gateway, sessions_dir, "--kernel-name", MUTE_KERNEL)
        wait_for_session_text(sessions_dir, '"model_response"', timeout=90)
        deadline = time.monotonic() + 30
        while not gateway.kernels() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gateway.kernels(), "the gateway has the kernel that does not answer"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=START_TIMEOUT / 3)  # not the wait for an answer
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert gateway.wait_no_kernels() == []


def test_a_bad_gateway_url_is_one_line_and_exit_2(sessions_dir: Path) -> None:
    done = cli("run", "--sessions-dir", str(sessions_dir), "--kernel-gateway", "gateway:8888", "q")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "bad kernel gateway URL 'gateway:8888'" in done.stderr
    assert not any(sessions_dir.iterdir()), "stopped before any run began"


def test_an_unreachable_gateway_is_one_line_and_exit_5(sessions_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = cli("run", "--sessions-dir", str(sessions_dir), "--kernel-gateway", url, "q")
    assert done.returncode == 5
    assert done.stderr.strip().count("\n") == 0
    assert f"cannot reach the kernel gateway at {url}" in done.stderr
    assert not any(sessions_dir.iterdir())


def test_a_refused_token_is_one_line_and_exit_5(gateway, sessions_dir: Path) -> None:
    done = cli(
        "run",
        "--sessions-dir",
        str(sessions_dir),
        "--kernel-gateway",
        gateway.url,
        "q",
        env={"JUPYTER_GATEWAY_AUTH_TOKEN": "not-the-token"},
    )
    assert done.returncode == 5
    assert done.stderr.strip().count("\n") == 0
    assert "refused the token" in done.stderr and "not-the-token" not in done.stderr
    assert not any(sessions_dir.iterdir())
