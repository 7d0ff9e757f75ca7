"""The run's secrets, and their removal from text before it goes anywhere.

Redaction works on the raw text, before any escaping, cutting or serialising: a token
that is first escaped (markdown's `\\_`, XML's `&amp;`, JSON's `\\"`) or cut to a prefix no
longer matches, yet still reads as the token. So the client redacts every reply it
parses, the downloads redact what they read from the job's logs, the result is redacted
once more before any report is rendered, and the workflow-command writer redacts what
it prints.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .text import RUNNER_LINE_BREAK

REDACTED = "***"


class Redactor:
    """A set of secrets; `redact` replaces each with `***` (the longest first, so a
    secret that contains another is redacted whole). Shared by threads."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> bool:
        """Register *secret* and each of its lines (the runner masks line by line);
        blank values are ignored (masking whitespace would garble every line). True
        when it was new."""
        if not secret or not secret.strip():
            return False
        with self._lock:
            if secret in self._secrets:
                return False
            for candidate in (secret, *(line for line in RUNNER_LINE_BREAK.split(secret))):
                if candidate.strip() and candidate not in self._secrets:
                    self._secrets.append(candidate)
            self._secrets.sort(key=len, reverse=True)
            return True

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_data(self, data: Any) -> Any:
        """A parsed JSON document with every string (keys included) redacted."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, Mapping):
            return {self.redact_data(key): self.redact_data(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return [self.redact_data(item) for item in data]
        return data
