"""MTs waiting for their next delivery attempt, each with its timer: by id, by sender, and by end of validity (and
how many failed on each bind).

A block or an unsubscription ends what its sender has waiting for a retry (Delivery.refuse_waiting). Found by
walking every timer, that cost ~63 ms of the event loop per spam report or unsubscription with 100,000 MTs waiting
for a retry (a carrier's binds failing every deliver_sm); by sender, it costs what that sender has waiting. The
sweep's walk of every timer for those whose validity had run out cost ~11 ms a second at 100,000; a heap by
expiry costs what has expired.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import ValuesView
from typing import TYPE_CHECKING

from .store.records import Message
from .throttles import HOLDING

if TYPE_CHECKING:
    from .router import Receiver
    from .throttles import Holding

# An MT waiting for its retry: its timer, the MT, and the bind its last attempt failed on (None: it timed out on a bind
# gone since, or none is known), which the retry avoids if another bind serves the subscriber. (An MT a receiver
# throttles waits here with HOLDING for a timer, gateway/throttles.py: it goes when its throttle lets it.)
Waiting = tuple["asyncio.TimerHandle | Holding", Message, "Receiver | None"]


class RetryTimers:
    def __init__(self) -> None:
        self._by_id: dict[str, Waiting] = {}
        self._by_sender: dict[str, set[str]] = {}  # source_addr -> ids (a waiting MT's source does not change)
        # (expires_at, id) of each MT that waited here since the last compaction: one left by an MT no longer
        # waiting (or by its earlier wait) is skipped when it comes up, or dropped when the heap is rebuilt.
        self._by_expiry: list[tuple[float, str]] = []
        self._by_bind: dict[Receiver, int] = {}  # bind -> how many of the MTs here failed on it (Delivery.probe)
        self.holding = 0  # how many of the MTs here a throttle holds (HOLDING)

    def add(self, message: Message, timer: asyncio.TimerHandle | Holding, failed_on: Receiver | None = None) -> None:
        replaced = self.pop(message.id)
        if replaced is not None:  # (one timer per MT)
            replaced[0].cancel()
        self._by_id[message.id] = (timer, message, failed_on)
        if timer is HOLDING:
            self.holding += 1
        self._by_sender.setdefault(message.source_addr, set()).add(message.id)
        if failed_on is not None:
            self._by_bind[failed_on] = self._by_bind.get(failed_on, 0) + 1
        if len(self._by_expiry) > 2 * len(self._by_id) + 64:  # mostly left behind: a retry adds one per attempt
            self._by_expiry = [(waiting.expires_at, message_id) for message_id, (_, waiting, _) in self._by_id.items()]
            heapq.heapify(self._by_expiry)
        else:
            heapq.heappush(self._by_expiry, (message.expires_at, message.id))

    def get(self, message_id: str) -> Waiting | None:
        return self._by_id.get(message_id)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def pop(self, message_id: str) -> Waiting | None:
        """The MT's timer, the MT and the bind it failed on, no longer waiting here (None if it was not)."""
        waiting = self._by_id.pop(message_id, None)
        if waiting is not None:
            if waiting[0] is HOLDING:
                self.holding -= 1
            source = waiting[1].source_addr
            ids = self._by_sender[source]
            ids.discard(message_id)
            if not ids:
                del self._by_sender[source]
            failed_on = waiting[2]
            if failed_on is not None:
                left = self._by_bind[failed_on] - 1
                if left:
                    self._by_bind[failed_on] = left
                else:
                    del self._by_bind[failed_on]
        return waiting

    def failed_on(self, bind: Receiver) -> int:
        """How many MTs wait here whose last attempt failed on `bind`."""
        return self._by_bind.get(bind, 0)

    def from_sender(self, source: str) -> list[Waiting]:
        return [self._by_id[message_id] for message_id in self._by_sender.get(source, ())]

    def expired(self, now: float) -> list[Waiting]:
        """Those whose validity has run out by `now`, no longer waiting here."""
        ended = []
        by_expiry = self._by_expiry
        while by_expiry and by_expiry[0][0] <= now:
            message_id = heapq.heappop(by_expiry)[1]
            waiting = self._by_id.get(message_id)
            if waiting is None or waiting[1].expires_at > now:
                continue  # left by an MT that waits no longer, or by an earlier wait of one (its own is in the heap)
            ended.append(waiting)
            self.pop(message_id)
        return ended

    def values(self) -> ValuesView[Waiting]:
        return self._by_id.values()

    def clear(self) -> None:
        self._by_id.clear()
        self._by_sender.clear()
        self._by_expiry.clear()
        self._by_bind.clear()
        self.holding = 0
