"""Turn a model name from the command line into a Model."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rlm_tui.models.base import Model

DEMO = "demo"
REPLAY_PREFIX = "replay:"


def make_model(
    name: str,
    api_base: str | None = None,
    delay: float = 0.0,
    stream: bool = True,
    timeout: float = 60.0,
    sessions_dir: Path | None = None,
) -> Model:
    """``demo``, ``replay:<session>`` (a session of ``sessions_dir``, or a path), or any
    litellm model name (name and key checked without network)."""
    if name == DEMO:
        from rlm_tui.models.demo import DemoModel

        return DemoModel(delay=delay)
    if name.startswith(REPLAY_PREFIX):
        from rlm_tui.models.replay import ReplayModel

        return ReplayModel.from_session(name[len(REPLAY_PREFIX) :], sessions_dir)
    from rlm_tui.models.litellm_model import LiteLLMModel, check_api_key, check_model_name

    check_model_name(name, api_base)
    check_api_key(name, api_base)
    return LiteLLMModel(name, api_base=api_base, stream=stream, timeout=timeout)


class KeptModels:
    """Models kept from one run to the next in one process (the workbench's), so that a
    provider's connections (TCP, TLS) are opened once, not for each run. Not the demo's or a
    replay's, which follow one run's script."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str | None, bool, float], Model] = {}

    def get(
        self, name: str | None, api_base: str | None, stream: bool, timeout: float
    ) -> Model | None:
        """The kept model of these settings (made on first use), or None for the run to make."""
        if not name or name == DEMO or name.startswith(REPLAY_PREFIX):
            return None
        key = (name, api_base, stream, timeout)
        if key not in self._models:
            self._models[key] = make_model(name, api_base, stream=stream, timeout=timeout)
        return self._models[key]

    async def aclose(self) -> None:
        models, self._models = list(self._models.values()), {}
        for model in models:
            with contextlib.suppress(Exception):  # closing must not fail because a model did
                await model.aclose()
