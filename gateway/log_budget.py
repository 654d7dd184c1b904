"""How many lines one connection may have logged about the same kind of misbehaviour.

A client can send hundreds of thousands of PDUs the gateway refuses or
ignores (unsolicited responses, unknown commands) in seconds: a line for
each filled the disk and stalled every other bind while they were written.
The first few of a kind are logged as they come, the rest only counted and
reported in one summary line per interval (and when the connection ends).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogBudget:
    def __init__(self, first: int = 5, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.first = first
        self.interval = interval
        self._clock = clock
        self._seen: dict[str, int] = {}  # kind -> lines of that kind so far, logged or not
        self._suppressed: dict[str, int] = {}  # kind -> not logged since the last summary
        self._summarised_at = clock()

    def allow(self, kind: str) -> bool:
        """True if this occurrence of `kind` is to be logged; else it is counted for the next summary."""
        seen = self._seen.get(kind, 0) + 1
        self._seen[kind] = seen
        if seen <= self.first:
            return True
        self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
        return False

    def due(self, final: bool = False) -> list[tuple[str, int]]:
        """(kind, count not logged) to report now: once per interval, or all that is left when `final`."""
        if not self._suppressed or not (final or self._clock() - self._summarised_at >= self.interval):
            return []
        self._summarised_at = self._clock()
        due = list(self._suppressed.items())
        self._suppressed.clear()
        return due
