"""Secrets out of the session, and nothing else: ordinary words and names are recorded as they are."""

from __future__ import annotations

import pytest
from scripted import ScriptedModel, cell

from rlm_tui import redact
from rlm_tui.engine.run import Run, RunConfig

pytestmark = pytest.mark.timeout(120)

KEY = "sk-test-a-real-looking-key-0123456789"
WORDS = ["task-management", "ask-question-now", "Jane Doe Smith", "jane@example.org"]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Jane Doe Smith")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "jane@example.org")
    redact._environment_secrets.cache_clear()
    yield
    redact._environment_secrets.cache_clear()


async def test_only_secrets_are_masked_in_the_session(sessions_dir, environment):
    code = f"words = {WORDS!r}\nprint(words, {KEY!r}, 'sk-' + 'x' * 30)\nFINAL(words)"
    model = ScriptedModel({"q": [cell(code)]})
    result = await Run(RunConfig(query="q", sessions_dir=sessions_dir), model=model).execute()
    assert result.answer == WORDS
    recorded = (result.session_dir / "events.jsonl").read_text()
    assert KEY not in recorded and "sk-" + "x" * 30 not in recorded
    for word in WORDS:
        assert word in recorded, word
