"""How many lines one peer (or connection) may have logged about the same kind of misbehaviour.

A client can send hundreds of thousands of PDUs the gateway refuses or
ignores (unsolicited responses, unknown commands) in seconds: a line for
each filled the disk and stalled every other bind while they were written.
The first few of a kind are logged as they come, the rest only counted and
reported in one summary line per interval (and when the connection ends).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping


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


class LogBudgets:
    """A LogBudget for each key (the peer's host and account: server.py), shared by every connection with that key.

    Per connection, a peer in a reconnect loop (a bind with a wrong password, close, again) had the first lines of a
    fresh budget each time, and a summary at each close: 1,000 refused binds in 0.3 s wrote 1,000 lines. A key's
    budget is forgotten once none of its lines came for an interval (its next ones are logged again), and beyond
    `limit` keys the least recently used is (many hosts at once): its count not logged yet goes with the next `due`.
    `levels`: the level (logging's) of the count lines of the kinds that are no warning (level_of). A map given once,
    not a level given with each line counted: a kind can name a status a peer sent (`mt retry (0x0000ABCD)`), and
    kinds remembered as they come would grow with each a peer made up.
    """

    def __init__(self, limit: int = 10_000, first: int = 5, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 levels: Mapping[str, int] | None = None) -> None:  # fmt: skip
        self.limit = limit
        self.first = first
        self.interval = interval
        self._clock = clock
        self._budgets: OrderedDict[Hashable, tuple[LogBudget, float]] = OrderedDict()  # key -> (budget, last used)
        self._forgotten: list[tuple[Hashable, str, int]] = []  # counts of budgets forgotten, not reported yet
        self._counting: set[Hashable] = set()  # keys whose budget has lines not logged since its last summary
        self._levels = dict(levels or {})

    def allow(self, key: Hashable, kind: str) -> bool:
        """LogBudget.allow on `key`'s budget."""
        now = self._clock()
        found = self._budgets.pop(key, None)  # (put back last: the most recently used)
        budget = LogBudget(self.first, self.interval, self._clock) if found is None else found[0]
        self._budgets[key] = (budget, now)
        if len(self._budgets) > self.limit:
            self._forget(*self._budgets.popitem(last=False))
        if budget.allow(kind):
            return True
        self._counting.add(key)
        return False

    def due(self, final: bool = False) -> list[tuple[Hashable, str, int]]:
        """(key, kind, count not logged) to report now: each budget's once per interval, all that is left when `final`.
        Budgets unused for an interval are forgotten (their counts reported now)."""
        idle = self._clock() - self.interval
        while self._budgets and next(iter(self._budgets.values()))[1] <= idle:
            self._forget(*self._budgets.popitem(last=False))
        due, self._forgotten = self._forgotten, []
        for key in list(self._counting):
            counts = self._budgets[key][0].due(final)
            if counts:  # (all it had: none left to report)
                self._counting.discard(key)
                due.extend((key, kind, count) for kind, count in counts)
        return due

    def level_of(self, kind: str) -> int:
        """The level of the count lines of `kind`: a warning (misbehaviour), unless the budgets were built with
        another for it."""
        return self._levels.get(kind, logging.WARNING)

    def _forget(self, key: Hashable, entry: tuple[LogBudget, float]) -> None:
        self._counting.discard(key)
        self._forgotten.extend((key, kind, count) for kind, count in entry[0].due(final=True))
