"""MT delivery: store-and-forward, retries with back-off, expiry, receipts.

Every MT handed to `admit` is already committed to the store. It stays
there until its deliver_sm_resp arrives (`delivered`) or it ends for good
(`expired` / undeliverable); in between it is parked (no bind can take it),
queued or in flight on a bind, or waiting for its next attempt.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter

from .clock import Clock
from .config import GatewaySettings
from .ids import MessageIds
from .logs import get_logger
from .receipts import make_receipt, receipt_due
from .router import Receiver, Router
from .smpp.constants import CommandStatus, MessageState
from .store.base import Store
from .store.records import Message, MessageStatus

log = get_logger("delivery")
S = CommandStatus
_DELIVERED = MessageState.DELIVERED  # read per delivered MT; from the class it costs ~150 ns (CPython 3.11)

# deliver_sm_resp statuses after which another attempt cannot help.
PERMANENT_FAILURES = frozenset(
    {S.ESME_RINVDSTADR, S.ESME_RINVSRCADR, S.ESME_RINVESMCLASS, S.ESME_RX_P_APPN, S.ESME_RINVDSTTON, S.ESME_RINVDSTNPI}
)


class Delivery:
    def __init__(self, router: Router, store: Store, clock: Clock, ids: MessageIds, settings: GatewaySettings) -> None:
        self.router = router
        self.store = store
        self.clock = clock
        self.ids = ids
        self.backoff = settings.retry_backoff
        self.parked: dict[str, list[Message]] = {}
        # When each parked key's earliest message expires, and a heap of those
        # times, so a sweep looks only at keys that have something to expire
        # (not at every parked destination). Heap entries whose time is no
        # longer the key's `_due` are stale and skipped.
        self._due: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self.queued: Counter[str] = Counter()  # MTs not yet final, per destination
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------ intake
    def admit(self, message: Message) -> None:
        """A committed MT joins delivery."""
        dest = message.dest_addr
        self.queued[dest] = self.queued.get(dest, 0) + 1  # not `+= 1`: Counter.__missing__ is Python code
        self.dispatch(message)

    def dispatch(self, message: Message) -> None:
        if message.expires_at <= self.clock.now():
            self._finish(message, MessageStatus.EXPIRED, MessageState.EXPIRED, 0)
            return
        receiver = self.router.route(message)
        if receiver is None:
            self._park(message)
        else:
            receiver.offer(message)

    def receiver_ready(self, receiver: Receiver) -> None:
        """A bind that can receive appeared: give it what was waiting for its account."""
        account = receiver.account
        keys = [k for k in self.parked if k == "@" + account.system_id or account.receives_for(k)]
        for key in keys:
            self._due.pop(key, None)
            for message in self.parked.pop(key):
                self.dispatch(message)

    # ----------------------------------------------------------- outcomes
    def delivered(self, message: Message) -> None:
        now = self.clock.now()
        self._forget(message)
        receipt = self._receipt(message, _DELIVERED, now, 0)
        done = self.store.mark_delivered(message.id, now, receipt)
        if receipt is not None:
            done.add_done_callback(lambda f: f.exception() is None and self.admit(receipt))

    def failed(self, message: Message, status: int) -> None:
        if status in PERMANENT_FAILURES:
            log.warning("mt undeliverable", message_id=message.id, msisdn=message.dest_addr, status=S.name_of(status))
            self._finish(message, MessageStatus.UNDELIVERABLE, MessageState.UNDELIVERABLE, status & 0xFF)
        else:
            self.retry_later(message, status)

    def retry_later(self, message: Message, error: int = 0) -> None:
        message.attempts += 1
        delay = self.backoff[min(message.attempts - 1, len(self.backoff) - 1)] if self.backoff else 1.0
        now = self.clock.now()
        message.next_attempt_at = now + delay
        self.store.mark_retry(message.id, message.attempts, message.next_attempt_at, error)
        log.info("mt retry", message_id=message.id, msisdn=message.dest_addr, attempt=message.attempts,
                 delay=delay, status=S.name_of(error))
        loop = asyncio.get_running_loop()
        self._retry_timers[message.id] = loop.call_later(delay, self._retry_now, message)

    def _retry_now(self, message: Message) -> None:
        self._retry_timers.pop(message.id, None)
        self.dispatch(message)

    def requeue(self, messages: list[Message]) -> None:
        """Messages that were queued or in flight on a bind that went away: route them again."""
        for message in messages:
            self.dispatch(message)

    def sweep(self) -> None:
        """Expire parked messages whose validity has run out."""
        now = self.clock.now()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            due, key = heapq.heappop(expiry)
            if self._due.get(key) == due:
                del self._due[key]
                self._expire_parked(key, now)
        if len(expiry) > 2 * len(self._due) + 1000:
            # Mostly stale entries (keys delivered since): rebuild rather than keep them until their time.
            self._expiry = [(due, key) for key, due in self._due.items()]
            heapq.heapify(self._expiry)

    # ------------------------------------------------------------ parking
    def _park(self, message: Message) -> None:
        key = _park_key(message)
        waiting = self.parked.get(key)
        if waiting is None:
            self.parked[key] = [message]
        else:
            waiting.append(message)
        self._expire_at(key, message.expires_at)

    def _expire_at(self, key: str, when: float) -> None:
        """Make sure the sweep looks at `key` by `when`."""
        due = self._due.get(key)
        if due is None or when < due:
            self._due[key] = when
            heapq.heappush(self._expiry, (when, key))

    def _expire_parked(self, key: str, now: float) -> None:
        waiting = self.parked.get(key)
        if not waiting:
            return
        alive = [m for m in waiting if m.expires_at > now]
        if len(alive) != len(waiting):
            for message in waiting:
                if message.expires_at <= now:
                    self._finish(message, MessageStatus.EXPIRED, MessageState.EXPIRED, 0)
        if alive:
            self.parked[key] = alive
            self._expire_at(key, min(m.expires_at for m in alive))
        else:
            del self.parked[key]

    # ------------------------------------------------------------ helpers
    def _finish(self, message: Message, status: MessageStatus, state: MessageState, error: int) -> None:
        now = self.clock.now()
        self._forget(message)
        receipt = self._receipt(message, state, now, error)
        done = self.store.mark_final(message.id, status.value, now, error, receipt)
        log.info("mt final", message_id=message.id, msisdn=message.dest_addr, account=message.account, status=status.value)
        if receipt is not None:
            done.add_done_callback(lambda f: f.exception() is None and self.admit(receipt))

    def _forget(self, message: Message) -> None:
        remaining = self.queued[message.dest_addr] - 1
        if remaining > 0:
            self.queued[message.dest_addr] = remaining
        else:
            self.queued.pop(message.dest_addr, None)

    def _receipt(self, message: Message, state: MessageState, now: float, error: int) -> Message | None:
        if not receipt_due(message, state):
            return None
        return make_receipt(message, state, now, error, self.ids.next())

    def cancel_timers(self) -> None:
        for handle in self._retry_timers.values():
            handle.cancel()
        self._retry_timers.clear()


def _park_key(message: Message) -> str:
    to_account = message.extra.get("to_account") if message.extra else None
    return "@" + to_account if to_account else message.dest_addr
