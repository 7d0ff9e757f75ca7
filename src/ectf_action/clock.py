"""Time as an injected edge, so that polling and timeouts are tested without sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        """Sleep up to *seconds*; return True at once if *cancel* is set (or becomes set)."""


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        seconds = max(0.0, seconds)
        if cancel is None:
            time.sleep(seconds)
            return False
        return cancel.wait(seconds)


class FakeClock:
    """A clock whose waits return at once and move time forward; for tests."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.waits: list[float] = []

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None and cancel.is_set():
            return True
        seconds = max(0.0, seconds)
        self.waits.append(seconds)
        self.time += seconds
        return cancel is not None and cancel.is_set()
