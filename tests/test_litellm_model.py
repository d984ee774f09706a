"""Real litellm against a loopback OpenAI-compatible server: streaming, usage, retries, errors."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from openai_server import OpenAIServer, Reply

from rlm_tui.errors import ModelError, UsageError
from rlm_tui.models.base import CallInfo
from rlm_tui.models.chat_stream import USER_AGENT
from rlm_tui.models.litellm_model import LiteLLMModel, check_model_name

INFO = CallInfo("0", 0, 1, "agent", "q")
MESSAGES = [{"role": "user", "content": "Say something about rivers, please."}]
KEY = "sk-test-not-real-123456"


@pytest.fixture
def server():
    with OpenAIServer() as s:
        yield s


def model(server: OpenAIServer, name: str = "openai/test-model", **kwargs) -> LiteLLMModel:
    options = {"api_key": KEY, "backoff": 0.01, "timeout": 5.0} | kwargs
    return LiteLLMModel(name, api_base=server.base_url, **options)


STREAMS = pytest.mark.parametrize(
    "name", ["openai/test-model", "hosted_vllm/test-model"], ids=["own-reader", "litellm"]
)
"""An ``openai/`` model at an API base is called through our own client, others through
litellm."""


@STREAMS
@pytest.mark.parametrize("stream", [True, False])
async def test_completion_with_usage(server, stream, name):
    server.script(
        [Reply(text="Rivers run to the sea, mostly.", prompt_tokens=11, completion_tokens=7)]
    )
    deltas: list[str] = []
    done = await model(server, name, stream=stream).complete(MESSAGES, INFO, deltas.append)
    assert done.text == "Rivers run to the sea, mostly."
    assert (done.prompt_tokens, done.completion_tokens) == (11, 7)
    if stream:
        assert len(deltas) > 1 and "".join(deltas) == done.text
    assert bool(server.requests[0].get("stream")) is stream
    headers = {k.lower(): v for k, v in server.headers[0].items()}
    own = headers.get("user-agent", "").startswith(USER_AGENT)
    assert own == name.startswith("openai/"), headers  # streamed or whole: our own client
    assert server.requests[0]["messages"] == MESSAGES


async def test_a_stream_without_usage_is_counted_by_the_tokenizer(server):
    server.script([Reply(text="a few words of reply", stream_usage=False)])
    done = await model(server).complete(MESSAGES, INFO)
    assert done.text == "a few words of reply"
    assert done.prompt_tokens > 0 and done.completion_tokens > 0


async def test_known_model_is_priced(server):
    server.script([Reply(text="ok", prompt_tokens=1000, completion_tokens=1000)])
    priced = LiteLLMModel("openai/gpt-4o-mini", api_base=server.base_url, api_key=KEY)
    done = await priced.complete(MESSAGES, INFO)
    assert done.cost > 0


@pytest.mark.parametrize("stream", [True, False])
async def test_cached_prompt_tokens_cost_less(server, stream):
    """litellm prices cached prompt tokens at the cache-read rate, not the full input rate."""
    priced = LiteLLMModel(
        "openai/gpt-4o-mini", api_base=server.base_url, api_key=KEY, stream=stream
    )
    server.script([Reply(text="ok", prompt_tokens=10_000, completion_tokens=100)])
    uncached = await priced.complete(MESSAGES, INFO)
    server.script(
        [Reply(text="ok", prompt_tokens=10_000, completion_tokens=100, cached_tokens=8_000)]
    )
    cached = await priced.complete(MESSAGES, INFO)
    assert (cached.prompt_tokens, cached.cached_tokens) == (10_000, 8_000)
    assert uncached.cached_tokens == 0
    assert 0 < cached.cost < uncached.cost


async def test_reasoning_tokens_are_counted(server):
    server.script([Reply(text="ok", prompt_tokens=50, completion_tokens=400, reasoning_tokens=300)])
    done = await LiteLLMModel("openai/o3-mini", api_base=server.base_url, api_key=KEY).complete(
        MESSAGES, INFO
    )
    assert (done.completion_tokens, done.reasoning_tokens) == (400, 300)
    assert done.cost > 0


async def test_429_then_success(server):
    server.script([Reply(status=429, retry_after=0.01), Reply(text="fine")])
    retries: list[str] = []
    done = await model(server).complete(MESSAGES, replace(INFO, on_retry=retries.append))
    assert done.text == "fine"
    assert len(server.requests) == 2
    assert len(retries) == 1 and "429" in retries[0]


async def test_500_until_retries_run_out(server):
    server.script([Reply(status=500)])
    with pytest.raises(ModelError, match="500 after 4 attempts") as caught:
        await model(server, max_retries=3).complete(MESSAGES, INFO)
    assert len(server.requests) == 4
    assert "\n" not in str(caught.value)


async def test_bad_key_is_not_retried_and_never_shown(server):
    server.script([Reply(status=401, text=f"Incorrect API key provided: {KEY}")])
    with pytest.raises(ModelError, match="OPENAI_API_KEY") as caught:
        await model(server).complete(MESSAGES, INFO)
    assert len(server.requests) == 1
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("stream", [True, False])
async def test_malformed_reply_is_retried(server, stream):
    server.script([Reply(malformed=True), Reply(text="second time lucky")])
    done = await model(server, stream=stream).complete(MESSAGES, INFO)
    assert done.text == "second time lucky"
    assert len(server.requests) == 2


@STREAMS
async def test_cut_stream_is_retried(server, name):
    server.script(
        [Reply(text="a reply long enough to be cut in half", cut_stream=True), Reply(text="whole")]
    )
    done = await model(server, name).complete(MESSAGES, INFO)
    assert done.text == "whole"
    assert len(server.requests) == 2


async def test_hanging_server_times_out(server):
    server.script([Reply(text="late", delay=3)])
    started = time.monotonic()
    with pytest.raises(ModelError, match="timed out"):
        await model(server, timeout=0.5, max_retries=1).complete(MESSAGES, INFO)
    assert time.monotonic() - started < 10


async def test_unreachable_server():
    unreachable = LiteLLMModel(
        "openai/x", api_base="http://127.0.0.1:9/v1", max_retries=1, backoff=0.01
    )
    with pytest.raises(ModelError, match=r"cannot reach http://127.0.0.1:9/v1"):
        await unreachable.complete(MESSAGES, INFO)


@pytest.mark.parametrize("bypassed", [False, True], ids=["through-proxy", "no-proxy"])
async def test_the_environments_proxy_is_used_unless_the_host_is_bypassed(
    server, monkeypatch, bypassed
):
    """HTTP_PROXY is where the request goes (the loopback server plays the proxy: it gets the
    absolute URL of a server that does not exist); NO_PROXY for that host skips it."""
    server.script([Reply(text="via the proxy")])
    monkeypatch.setenv("HTTP_PROXY", server.base_url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypassed else "")
    behind = LiteLLMModel("openai/x", api_base="http://127.0.0.1:9/v1", max_retries=0, api_key=KEY)
    try:
        if bypassed:
            with pytest.raises(ModelError, match="cannot reach"):
                await behind.complete(MESSAGES, INFO)
            assert server.requests == []
        else:
            assert (await behind.complete(MESSAGES, INFO)).text == "via the proxy"
            assert server.paths == ["http://127.0.0.1:9/v1/chat/completions"]
    finally:
        await behind.aclose()


def test_model_names():
    check_model_name("openai/gpt-4o-mini")
    check_model_name("gpt-4o-mini")
    check_model_name("my-local-model", api_base="http://127.0.0.1:8000/v1")
    with pytest.raises(UsageError, match="unknown model 'nonsense-provider/xyz'"):
        check_model_name("nonsense-provider/xyz")


async def test_32_concurrent_calls(server):
    server.script(lambda request: Reply(text="n" + request["messages"][0]["content"]))
    m = model(server)
    replies = await asyncio.gather(
        *(m.complete([{"role": "user", "content": str(i)}], INFO) for i in range(32))
    )
    assert sorted(r.text for r in replies) == sorted(f"n{i}" for i in range(32))


@pytest.mark.parametrize(
    "reply, stream, words",
    [
        (Reply(malformed=True), False, "malformed reply"),
        (Reply(malformed=True), True, "malformed reply"),
        (
            Reply(text="a reply long enough to be cut in half", cut_stream=True),
            True,
            "stream was cut",
        ),
    ],
    ids=["malformed", "malformed-stream", "cut-stream"],
)
async def test_a_failure_names_what_happened(server, reply, stream, words):
    server.script([reply])
    with pytest.raises(ModelError, match=words) as caught:
        await model(server, stream=stream, max_retries=0).complete(MESSAGES, INFO)
    assert "500" not in str(caught.value).replace(server.base_url, "")  # the port may hold it


async def test_an_api_base_that_is_not_a_url_is_named():
    broken = LiteLLMModel("openai/x", api_base="localhost:8000", max_retries=0)
    with pytest.raises(ModelError, match="not a URL"):
        await broken.complete(MESSAGES, INFO)


async def test_max_tokens_is_sent(server):
    server.script([Reply(text="short")])
    await model(server).complete(MESSAGES, replace(INFO, max_tokens=17))
    assert server.requests[0]["max_tokens"] == 17
