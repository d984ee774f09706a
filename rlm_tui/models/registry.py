"""Turn a model name from the command line into a Model."""

from __future__ import annotations

from rlm_tui.models.base import Model

DEMO = "demo"
REPLAY_PREFIX = "replay:"


def make_model(
    name: str,
    api_base: str | None = None,
    delay: float = 0.0,
    stream: bool = True,
    timeout: float = 60.0,
) -> Model:
    """``demo``, ``replay:<session>``, or any litellm model name (name and key checked
    without network)."""
    if name == DEMO:
        from rlm_tui.models.demo import DemoModel

        return DemoModel(delay=delay)
    if name.startswith(REPLAY_PREFIX):
        from rlm_tui.models.replay import ReplayModel

        return ReplayModel.from_session(name[len(REPLAY_PREFIX) :])
    from rlm_tui.models.litellm_model import LiteLLMModel, check_api_key, check_model_name

    check_model_name(name, api_base)
    check_api_key(name, api_base)
    return LiteLLMModel(name, api_base=api_base, stream=stream, timeout=timeout)
