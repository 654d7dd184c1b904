"""Message retention: messages are deleted from the store `[gateway] message_retention` seconds after they ended.

Every accepted submission leaves about 1 KB in the messages table (the message, often its receipt): at 150 msg/s,
some 12 GB a day that nothing read again. A message that reached a final state (an MT delivered, expired,
undeliverable, deleted or rejected, a receipt likewise, an MO processed or given up) is deleted once that state is
older than the retention; `query_sm` of its id is then answered ESME_RQUERYFAIL, as for an id never issued. An MO not
handled yet and an MT still waiting (however old) are never deleted, nor a row whose dedup key is still inside
`dedup_window` (the row is what recognises the client's retransmission, SPEC 5). No service record names a message
but a subscription's `confirmation` (the confirming MO's id), and that string is the dispute's evidence
(handlers/billing.dispute reads only it): the subscription keeps it after the MO's row is gone.

The deletes share the writer with the traffic. So they go a batch at a time, BATCH rows per transaction, with a pause
after each commit: the traffic's writes queued meanwhile go in a batch of their own, and a backlog (the first start
after an upgrade, a gateway down for days) is worked off at up to BATCH / PAUSE rows a second instead of holding the
writer for as long as it takes. Measurements: bench/perf-log.md, session 17.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .clock import Clock
from .logs import get_logger
from .store.base import Store

log = get_logger("retention")

BATCH = 250  # rows deleted per transaction (measured: bench/perf-log.md, session 17)
PAUSE = 0.05  # seconds after each batch's commit before the next is read


class Retention:
    def __init__(self, store: Store, clock: Clock, retention: float, dedup_window: float = 0.0,
                 last_short_id: Callable[[], str | None] = lambda: None) -> None:  # fmt: skip
        """`last_short_id`: the SMPP 3.3 alias given last (ids.ShortIds.last), kept with each batch deleted
        (Store.prune): a start goes on from it once the rows holding it are gone."""
        self._store = store
        self._clock = clock
        self._last_short_id = last_short_id
        # A retention shorter than dedup_window acts as dedup_window: a message ends no earlier than it was accepted,
        # so one that ended that long ago holds no dedup key still in its window, and every row read is deleted.
        # (Cut at the retention, the rows still in the window were read again, and counted as deleted, every pass.)
        self._retention = max(retention, dedup_window) if retention else 0.0
        self._running = False

    async def prune(self) -> int:
        """Delete every message that ended more than the retention ago; how many. Returns 0 at once with retention
        0 (keep for ever) or while another prune runs."""
        if not self._retention or self._running:
            return 0
        self._running = True
        try:
            return await self._prune(self._clock.now() - self._retention)
        finally:
            self._running = False

    async def _prune(self, ended_by: float) -> int:
        pruned = 0
        after = (float("-inf"), 0)
        while found := await self._store.prunable(ended_by, after, BATCH):
            await self._store.prune([seq for _done_at, seq in found], ended_by, self._last_short_id())
            pruned += len(found)
            if len(found) < BATCH:
                break
            after = found[-1]  # past the rows kept (a dedup key still in its window): they are not read again
            await asyncio.sleep(PAUSE)  # the traffic's writes queued meanwhile go before the next batch
        if pruned:
            log.info("messages past retention deleted", messages=pruned, ended_by=ended_by)
        return pruned
