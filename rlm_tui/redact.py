"""Secrets out of every line we write: the values themselves, whatever their shape.

A secret is the value of any environment variable whose name looks secret (a part of it
ending in KEY, TOKEN, SECRET, PASSWORD, CREDENTIALS, or AUTH, PWD), and any key handed to a
model explicitly
(``remember``). Credentials inside URLs (``user:pass@``, ``?api-key=``) are blanked too.
Applied to model errors, every session line, log records, the CLI's error lines and exports.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:[A-Z0-9]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)|AUTH|AUTHORIZATION|PWD)"
    r"(?:_|$)",
    re.IGNORECASE,
)
"""A secret's variable, by a whole part of its name: ``OPENAI_API_KEY``, ``GH_TOKEN``,
``MYSQL_PWD``; not ``GIT_AUTHOR_NAME`` (whose value, masked, rewrote the user's own name in
every line)."""
_MIN_LENGTH = 8
_SK_SHAPED = re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}")
"""A key of OpenAI's shape not known as a value: a word of its own, 20 characters past
``sk-`` at least (inside ``task-management`` it masked ordinary code and text)."""
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")
_PARAM_NAMES = r"api[-_]?key|key|token|access[-_]?token|secret|password|sig"
_SECRET_PARAM = re.compile(rf"(?<=[?&])((?:{_PARAM_NAMES})=)[^&\s\"']+", re.IGNORECASE)
_remembered: set[str] = set()


def remember(secret: str | None) -> None:
    """Treat ``secret`` (a key passed in code, not the environment) as a secret from now on."""
    if secret and len(secret) >= _MIN_LENGTH:
        _remembered.add(secret)


@functools.cache
def _environment_secrets() -> frozenset[str]:
    """Read once: every line written goes through ``redact``, and the keys are set at start."""
    return frozenset(
        value
        for name, value in os.environ.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_LENGTH and not value.startswith("/")
    )


def secrets() -> list[str]:
    """Every secret value known, longest first (so a key inside another goes with it)."""
    return sorted(_environment_secrets() | _remembered, key=len, reverse=True)


def redact(text: str, *extra: str | None) -> str:
    """``text`` with every secret (and ``extra``), and credentials in URLs, masked."""
    for secret in [*secrets(), *(e for e in extra if e and len(e) >= _MIN_LENGTH)]:
        if secret in text:
            text = text.replace(secret, MASK)
        escaped = json.dumps(secret)[1:-1]  # as it appears inside a JSON string
        if escaped != secret and escaped in text:
            text = text.replace(escaped, MASK)
    text = _SK_SHAPED.sub("sk-" + MASK, text)
    return mask_url_credentials(text)


def mask_url_credentials(url: str) -> str:
    """``url`` with its user, password and secret query parameters masked (to be recorded).

    Each pattern runs only where it can match: a cell's 100,000-character print is scanned
    by two substring tests, not two regexes (14 ms of every such line)."""
    if "://" in url and "@" in url:
        url = _URL_USERINFO.sub(MASK + "@", url)
    if "=" in url and ("?" in url or "&" in url):
        url = _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, url)
    return url


def redact_logs() -> None:
    """Redact every log record's message before any handler sees it (once per process)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.msg, record.args = redact(record.getMessage()), None
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
