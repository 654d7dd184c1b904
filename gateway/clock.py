"""The one clock the gateway reads. Tests (and, once the HTTP API exists, QA over it) can replace it with a simulated
one."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class SystemClock:
    # time.time itself, not a method calling it: the clock is read three times for every message (bench/inproc.py
    # b1), and a method cost a Python frame each time.
    now = staticmethod(time.time)


class SimulatedClock:
    """A clock QA can set and advance; it still moves with real time between changes.

    Moving with real time keeps timeouts (validity, reply windows) working in
    a simulated month; `freeze=True` stops it for unit tests.
    """

    def __init__(self, start: float | None = None, *, freeze: bool = False) -> None:
        self._offset = 0.0 if start is None else start - time.time()
        self._frozen_at: float | None = (start if start is not None else time.time()) if freeze else None

    def now(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return time.time() + self._offset

    def set(self, when: float) -> None:
        if self._frozen_at is not None:
            self._frozen_at = when
        else:
            self._offset = when - time.time()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + seconds)
