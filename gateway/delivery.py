"""MT delivery: store-and-forward, retries with back-off, expiry, receipts.

Every MT handed to `admit` is already committed to the store. It stays
there until its deliver_sm_resp arrives (`delivered`) or it ends for good
(`expired` / undeliverable); in between it is queued or in flight on a bind,
waiting for its next attempt, or parked: no bind can take it.

A parked MT is kept only in the store, not in memory: a backlog for
subscribers who are off line can be millions of messages (held in memory, a
load test toward unbound numbers grew the gateway by ~1 GB a minute), and
after a restart it must all go out, not just what fits in memory. One routed
to a stalled bind (Router.stalled) that already has FULL MTs queued or in
flight, or has parked one since it stalled, is parked too (`_full`): a bind
that answers enquire_link but never deliver_sm was queued every MT routed to
it for as long as it stayed bound; so is one that would wait behind the read
of its backlog (`_park_for`), and the read waits (`_has_room`). When a bind
that can receive appears, or a stalled one
that parked MTs answers again or goes (`answering`, `unbound`), its MTs are
read back from the store a page at a time (`_pull`), each page when the bind
has room for it; a stalled one that holds nothing is handed the oldest of
them meanwhile, so that it has a deliver_sm to answer again (`probe`);
expired ones are found by the sweep through the store's expiry index (one
whose deliver_sm timed out and may still be answered waits for that answer
first: `_expire`).
`_held` names the MTs this process has in hand (in memory, or with their
final status not yet committed), so a page read meanwhile does not hand the
same MT out twice.

Per subscriber, MTs go out in the order they were accepted: one accepted while
its account's backlog is being read, for a bind that appeared since (or that
answers again after MTs were parked for it), waits behind the read
(`BacklogRead`) until the read has passed its subscriber, or it would
overtake the older MTs still in the store. The rest of the account's traffic
does not wait: a bind that was bound when the read passed a subscriber was
handed all of their waiting MTs then, and nothing to them waits in the store
while it stays bound (and parks none: then it is read for again). A retry
does not hold the MTs behind it, except for SP notices: they go out one at a
time per subscriber, each after the one before it ended
(gateway/notice_order.py). A receiver's ESME_RTHROTTLED does, being no
failed attempt: its subscriber's next MTs are held with the MT it refused, or,
past a few, parked behind it and read back in order once it goes
(gateway/throttles.py).

An MT that may no longer go out when delivery takes it up again (off line
subscriber, retry, schedule) ends REJECTED (gateway/guards.py): its sender
was blocked after spam reports since it was accepted, or it is SP content and
the subscriber has unsubscribed meanwhile. Its receipt says err:400 (blocked
network-wide), err:401 (reported by that recipient) or err:402 (unsubscribed),
the gateway's submit_sm refusal for the same case. The block or unsubscription
itself ends those waiting for a retry, and the next sweep the parked ones
(`refuse_waiting`): they no longer count against their recipient's queue. One
accepted in the instant before it, its commit still on its way then, is asked
about when it joins delivery (`dispatch`), not sent to its subscriber after
they were told.

An MT with a schedule_delivery_time still ahead is stored as scheduled and
joins delivery only when the sweep finds it due (`_release_due`), so a
campaign scheduled for tomorrow costs disk, not memory, and survives restarts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from .accounts import Account
from .clock import Clock
from .config import GatewaySettings
from .ids import MessageIds
from .log_budget import LogBudget
from .logs import get_logger
from .messages import (
    UNSENDABLE,
    account_of,
    acknowledging_subscriber,
    addressed_account,
    receipted,
    subscriber_of,
)
from .notice_order import NoticeOrder
from .receipts import receipt_for, refusal_error
from .retry_timers import RetryTimers, Waiting
from .router import Receiver, Router, carries, could_take, range_prefixes
from .smpp.constants import CommandStatus, MessageState
from .smpp.session import LATE_ANSWER_TIMEOUTS
from .store.base import Store
from .store.records import Direction, Message, MessageStatus
from .throttles import HOLDING, LONGEST_PAUSE, Holding, Throttle

log = get_logger("delivery")
S = CommandStatus
_DELIVERED = MessageState.DELIVERED  # read per delivered MT; from the class it costs ~150 ns (CPython 3.11)
_SCHEDULED, _ENROUTE = MessageStatus.SCHEDULED, MessageStatus.ENROUTE  # read per admitted MT
_DELIVERED_STATUS = MessageStatus.DELIVERED  # per delivered MT, as _DELIVERED

# deliver_sm_resp statuses after which another attempt cannot help: the MT ends undeliverable, or rejected when the
# receiver rejected this very message (ESME_RX_R_APPN, SMPP 3.4 5.1.3: "ESME Receiver Reject Message Error").
PERMANENT_FAILURES = frozenset(
    {S.ESME_RINVDSTADR, S.ESME_RINVSRCADR, S.ESME_RINVESMCLASS, S.ESME_RX_P_APPN, S.ESME_RINVDSTTON, S.ESME_RINVDSTNPI,
     S.ESME_RX_R_APPN}
)  # fmt: skip


class Delivery:
    PAGE = 500  # MTs read from the store at a time
    ROOM = 1000  # a pull hands a bind its next page once fewer than this are queued or in flight on it
    # A stalled bind holds at most this many (`_full`): what a pull may bring it (fewer than ROOM, then a page), so a
    # page read for it is not parked again at once; ~16 MB of MTs of 10 KB.
    FULL = ROOM + PAGE
    # So does one that answers, more slowly than MTs come for it (`_full`); and a backlog read holds at most this many
    # accepted meanwhile behind it (`dispatch`): the next ones are parked, the read finds them in the store.
    BUSY = FULL
    HELD_BEHIND_READ = FULL
    # MTs a receiver's flow control holds in memory (gateway/throttles.py): per subscriber, and for all of them; the
    # rest are parked, read back from the store when their throttle lifts.
    HELD_PER_THROTTLE = 100
    HELD_FOR_THROTTLES = FULL
    ONE_READ_ABOVE = 32  # recipients of one sender whose MTs a restart ends: above this, one read by sender (restore)
    REWRITE_DELAY = 1.0  # seconds between writes of a final status the store failed to commit

    def __init__(
        self, router: Router, store: Store, clock: Clock, ids: MessageIds, settings: GatewaySettings,
        undeliverable: Callable[[Message], tuple[int, str] | None] = lambda message: None,
    ) -> None:  # fmt: skip
        self.router = router
        self.undeliverable = undeliverable  # Guards.undeliverable: (status, reason) when it may no longer go out
        self.store = store
        self.clock = clock
        self.ids = ids
        self.backoff = settings.retry_backoff
        # MTs not yet final, per destination (parked ones too). A plain dict, not a Counter: Counter defines __delitem__
        # in Python, so storing a count went through a Python-level slot (~1,000 instructions an MT, bench/inproc.py b1).
        self.queued: dict[str, int] = {}
        # Per subscriber: their SME acknowledgements to SPs' service codes among those, waiting for the SPs; intake
        # refuses more beyond max_queued_per_subscriber (they would fill the store, and queue ahead of the notices
        # of that subscriber the SP is sent after them).
        self.acknowledgements: dict[str, int] = {}
        store.mt_given_up = self.given_up
        self._held: set[str] = set()  # ids of the MTs in hand (see the module docstring)
        self._reading = 0  # pages being read and handed out (`_take_waiting`)
        self._release_after_reading: list[str] = []
        self._retry_timers = RetryTimers()  # (MTs waiting for a retry, and those a receiver throttles: `_throttles`)
        # Subscribers whose receiver refused an MT for flow control, and their MTs held out of the binds meanwhile
        # (`throttled`; gateway/throttles.py). Those MTs wait in `_retry_timers`, each with HOLDING for a timer.
        self._throttles: dict[str, Throttle] = {}
        # account -> its turn to read back what a lifted throttle parked (`_read_back`): one at a time, each page when
        # the account's binds have room, as its backlog read's (all at once: gateway/throttles.py)
        self._read_back_turns: dict[str, asyncio.Lock] = {}
        self._retries_taken: dict[str, Waiting] = {}  # by id: MTs a cancel_sm took from their wait for a retry, until it commits
        self._pulls: dict[str, asyncio.Task] = {}  # account -> its backlog being read (receiver_ready)
        self._pull_again: set[str] = set()  # accounts a bind appeared for while their backlog was being read
        self._reads: dict[str, BacklogRead] = {}  # account -> how far its backlog read got, and the MTs held behind it
        # Accounts whose binds may not have had all their backlog: their last read failed, or a bind that parked MTs
        # went (`unbound`). The next read is for every bind of the account.
        self._unread: set[str] = set()
        self._parked_on: set[Receiver] = set()  # stalled binds that MTs were parked for (`_full`), until read back
        self._room_waiters: dict[str, asyncio.Future[None]] = {}  # pulls waiting for their account's binds to drain
        self._probes: dict[Receiver, asyncio.Task] = {}  # stalled binds whose parked MTs are being read for them (`probe`)
        self._probe_took_off_retry: set[str] = set()  # ids of MTs a probe took off their wait and handed out, until they end (`_ended`)
        # MT id -> its final status's next write (_write_final): the timer, then the task that writes
        self._rewrites: dict[str, asyncio.TimerHandle | asyncio.Task] = {}
        self._replaced: dict[str, Message] = {}  # id -> the replacement (replace_sm) of an MT not yet ended
        # id -> its receipt (None: none yet) of an MT out before its submission is answered (`answer_pending`)
        self._answer_pending: dict[str, Message | None] = {}
        self._late: set[asyncio.Task] = set()  # deliveries acknowledged late, their MT read back from the store
        # id -> (until when, bind): a deliver_sm of the MT that timed out on that bind may still be answered (`retry_later`;
        # the bind keeps it that long: gateway/smpp/session.py GivenUp), until the MT ends, the bind goes (`unbound`) or
        # answers it for now (`answered_late`). Meanwhile it counts as awaiting its answer: a cancel_sm fails, and an
        # expiry waits for the answer (`_expire`).
        self._answerable: dict[str, tuple[float, Receiver]] = {}
        self.late_answer_time = LATE_ANSWER_TIMEOUTS * settings.response_timeout
        # id -> (until, MT, bind): those whose validity ran out meanwhile, held for that answer until then (`_expire`)
        self._expiring: dict[str, tuple[float, Message, Receiver]] = {}
        self.finals_not_committed: set[str] = set()  # MTs answered whose final status failed to commit, until it does
        # Lines about final statuses that keep failing while the store commits (their own fault, not the store's).
        self.rewrite_log = LogBudget()
        self._stopped = False
        self._notices = NoticeOrder()  # SP notices waiting for the one before them to end
        self._stopped_senders: deque[tuple[str, str | None]] = deque()  # `refuse_waiting`, for the sweep
        # An id made at the last block or unsubscription (`refuse_waiting`): a new MT with a lower one was accepted
        # before it (ids sort in the order they were made), its intake checks blind to it.
        self._tightened_at = ""

    async def restore(self, stops: Callable[[str, str, str], bool] = lambda account, source, dest: False) -> None:
        """At start: count the MTs waiting in the store (they go out when their binds appear). Those `stops`
        (account, source, dest) says may no longer go out are ended at the first sweep: a block or an
        unsubscription whose own sweep a crash cut short (refuse_waiting) left them counting against their
        recipients' queues."""
        queued: dict[str, int] = {}
        stopped: dict[str, set[str]] = {}
        for (account, source, dest), count in (await self.store.waiting_counts()).items():
            queued[dest] = queued.get(dest, 0) + count
            if stops(account, source, dest):
                stopped.setdefault(source, set()).add(dest)
        for source, dests in stopped.items():
            # A spammer blocked network-wide with thousands of victims off line: one read by sender, not one each.
            self._stopped_senders.extend([(source, None)] if len(dests) > self.ONE_READ_ABOVE else ((source, d) for d in dests))
        self.queued = queued
        self.acknowledgements = await self.store.acknowledgement_counts()

    # ------------------------------------------------------------ intake
    def count(self, message: Message) -> None:
        """An MT whose commit is issued counts against its subscriber's queue from now (max_queued_per_subscriber):
        admit it with `counted`, or `uncount` it if it is not stored after all. A scheduled one counts when due."""
        if message.status is not _SCHEDULED:
            self._count(message)

    def uncount(self, message: Message) -> None:
        if message.status is not _SCHEDULED:
            self._forget(message)

    def answer_pending(self, message_id: str) -> None:
        """An MT about to be admitted whose submission is answered later (a replace_if_present_flag 1 one: once what
        it replaces is cancelled): its receipt waits for `answered`, as every other comes after its MT's answer."""
        self._answer_pending[message_id] = None

    def answered(self, message_id: str) -> None:
        """The submission of an MT `answer_pending` named is answered: its receipt, if it came meanwhile, goes out."""
        receipt = self._answer_pending.pop(message_id, None)
        if receipt is not None:
            self.admit(receipt)

    def admit(self, message: Message, counted: bool = False) -> None:
        """A committed MT joins delivery (a scheduled one when it is due: the sweep releases it); `counted`: by `count`.

        The store's reads see a commit before the loop hears of it: a bind's backlog read (`_pull`) may have
        handed the MT out already, between its commit and this call. Then it is in hand, and counting it is
        all that is left to do (offering it again would send it twice)."""
        if message.status is _SCHEDULED:
            return
        if not counted:
            self._count(message)
        if message.id not in self._held:
            self.dispatch(message, new=True)

    def dispatch(
        self, message: Message, new: bool = False, behind_read: bool = False, again: bool = False,
        avoid: Receiver | None = None, read_back: bool = False,
    ) -> None:  # fmt: skip
        """Offer the MT to a bind, or park it; it is in hand (`_held`) exactly while it is on a bind or ending.

        A `new` MT (not read back from the store, not a retry), or one `behind_read` (replaced), for an
        account whose backlog is being read waits behind the read (BacklogRead.holds) until it has passed
        its subscriber, if older MTs to them may still be in the store. `avoid`: a bind its last attempt
        failed on, taken only if no other serves it.
        `read_back`: by a bind's backlog read; parked again, it is not logged again (Router.route's `tell`)."""
        if message.expires_at <= self.clock.now():
            self._expire(message)  # rejected rather, if its sender was blocked meanwhile (as the sweep does)
            return
        # A new MT passed the same checks at intake a moment ago: asked again only if accepted before the last block
        # or unsubscription (`_tightened_at`), committed while its own commit was on its way.
        if (not new or message.id < self._tightened_at) and self._refused(message):
            return
        receiver = self.router.route(message, avoid, tell=not read_back)
        if (
            receiver is None or (read_back and self._parked_by_pass(message, receiver))
            or ((receiver.stalled or self._parked_on or receiver.load >= self.BUSY) and self._full(receiver))
        ):  # fmt: skip
            self._held.discard(message.id)  # parked: the store has it, `_pull` reads it back
            return
        self._held.add(message.id)
        if (new or behind_read) and self._reads:
            read = self._reads.get(receiver.account.system_id)
            if read is not None and read.holds(message, receiver):
                if receiver.stalled or len(read.behind) >= self.HELD_BEHIND_READ:  # parked: the read finds it in order
                    self._park_for(receiver, message)
                    return
                read.hold(message)
                return
        if self._throttles and message.dest_addr in self._throttles and self._hold_throttled(message):
            return
        if message.extra and self._notices.wait_turn(message):  # `extra`: not for a plain MT, the most common
            return
        receiver.offer(message, again or behind_read)

    def _full(self, receiver: Receiver) -> bool:
        """Whether an MT routed to a bind is parked: it has FULL MTs queued or in flight (BUSY if it answers), or has
        parked one since (a newer MT to that subscriber queued there would go out ahead of it). A bind that answers
        enquire_link but never deliver_sm, the only one for its subscribers, was queued every MT routed to it, in
        memory, for as long as it stayed bound (15,000 MTs of 10 KB: +165 MB); so was one that answers each, more
        slowly than MTs come for it (one a 10 ms, ~9,000 MTs a second: +210 MB in 30 s). What a `stalled` bind
        parked is read back when it answers again or goes (`answering`, `unbound`), meanwhile only a window's worth
        once it holds nothing (`probe`); what one that answers parked, once it holds fewer than ROOM (`drained`), as
        for one that answers again, or for the binds that answer once it stalls (`_stand_in_for`)."""
        if receiver in self._parked_on:
            return True
        if receiver.load < (self.FULL if receiver.stalled else self.BUSY):
            return False
        self._parked_on.add(receiver)
        return True

    def _park_for(self, receiver: Receiver, message: Message) -> None:
        """An MT to a `stalled` bind, or to any while HELD_BEHIND_READ wait behind its account's backlog read, would
        wait behind the read: it is parked instead (the read, or its next pass, finds it in the store, in order), and
        a stalled bind counts as one that parked MTs (`_full`, `_has_room`). Held behind the read, in memory, with no
        bound: a stuck client that binds again while MTs wait for it had every MT routed to it held (30,000 of 10 KB:
        +325 MB), a slow one every MT accepted for it while the read of its backlog went on."""
        self._held.discard(message.id)
        if receiver.stalled:
            self._parked_on.add(receiver)

    def stalled(self, receiver: Receiver) -> None:
        """`receiver` is now `stalled` (SmppConnection._stall, as the stall begins): the MTs held behind its account's
        backlog read that go to it, or to another stalled bind (no bind that answers takes them), are parked
        (`_park_for`), as the next ones will be (`dispatch` holds none for a stalled bind), not kept in memory until it
        answers again (the read waits for that): what was routed to it until its first deliver_sm timed out (1,000 a
        second: 10,000). Those of another: held for this bind as that one stalled, they go to it now. What it parked
        while it answered goes to the binds of its account that answer (`_stand_in_for`)."""
        self._stand_in_for(receiver)
        read = self._reads.get(receiver.account.system_id) if self._reads else None
        if read is None or not read.behind:
            return
        route = self.router.route
        stalled_for: dict[str, Receiver] = {}  # subscriber -> the stalled bind their MTs go to
        for message in read.behind:
            bind = route(message, tell=False)
            if bind is not None and bind.stalled:
                stalled_for.setdefault(message.dest_addr, bind)
        for message in read.let_go(set(stalled_for)):
            self._park_for(stalled_for[message.dest_addr], message)

    def probe(self, receiver: Receiver, count: int) -> bool:
        """`receiver` is `stalled` and holds nothing (SmppConnection.tick): if MTs were parked for it (`_full`), and none
        whose attempt failed on it waits for its retry (their back-off stands: they go back to the store, and to it
        first), its oldest are read back from the store for it, up to `count` (at most FULL). If it answers one, what
        is parked is read back for it (`answering`). (Before, a bind whose deliver_sm in flight all went unanswered,
        even late, had nothing left to answer: what was parked for it waited until another bind of its account
        answered or appeared, or it went, its client healthy again or not.) True: a read began."""
        if receiver not in self._parked_on or receiver in self._probes or self._stopped or self._retry_timers.failed_on(receiver):
            return False
        self._probes[receiver] = asyncio.get_running_loop().create_task(self._probe(receiver, min(count, self.FULL)))
        return True

    async def _probe(self, receiver: Receiver, count: int) -> None:
        """Read the first page of each range of its account's backlog that `receiver` serves (_backlog_ranges, as a bind
        that appears), handing it each MT it would take until it holds `count`, in order per subscriber: a
        subscriber's MTs from their first in the store, and none while one of theirs is in hand (queued on another
        bind, waiting for a retry) or one another bind would take (`_probe_offer`) comes first. Those of a
        subscriber whose MTs in hand all wait for their retry after failing on another stalled bind of its account
        (`_retry_failed_on_stalled`) are handed out in their turn, taken off their wait (left there if not handed):
        a bind that never answers again, probed too, held an SP's receipts (all to its service code) most of the
        time, and the probe of one that answers again handed it none while that one stayed bound. An MT is taken off
        so once at most: with both binds dead, each one's probe took back what failed on the other, and it went out
        every probe, its back-off ignored. A read that fails is tried again at the next probe (the MTs stay in the
        store)."""
        passed_over: set[str] = set()  # subscribers none of whose MTs this probe hands out from here on
        off_retry: dict[str, Waiting] = {}  # MTs read_page took off their wait for a retry, until `take` comes to them

        async def read_page(to_account: str | None, below: str, after: tuple[str, int]) -> list[tuple[Any, Message]]:
            page = await self.store.waiting_mts(to_account, after, below, self.PAGE)
            held = self._held
            in_hand = [message for _cursor, message in page if message.id in held]
            if not in_hand:
                return page
            passed_over.update(m.dest_addr for m in in_hand if not self._retry_failed_on_stalled(receiver, m.id))
            for message in in_hand:
                if message.dest_addr not in passed_over:  # (out of hand for `take`, the MT it waits with in its place)
                    off_retry[message.id] = self._off_retry(message.id)
            return [(cursor, off_retry[message.id][1] if message.id in off_retry else message) for cursor, message in page]

        def take(message: Message) -> None:
            waiting = off_retry.pop(message.id, None)
            if hand(message):
                if waiting is not None:
                    self._probe_took_off_retry.add(message.id)
            elif waiting is not None:  # back to its wait, which the MTs after it to its subscriber do not overtake
                self._wait_again(waiting)
                passed_over.add(message.dest_addr)

        def hand(message: Message) -> bool:
            dest = message.dest_addr
            if receiver.load >= count or dest in passed_over or not self._probing(receiver):
                return False
            chosen = self.router.route(message, tell=False)
            if chosen is None and not carries(receiver, message):
                return False  # too long for it (SMPP 3.3), and no bind of 3.4 takes it: it waits, the next ones go (as a read's)
            if self._probe_offer(receiver, message, chosen):
                return True
            passed_over.add(dest)
            return False

        async def one_page(_after: tuple[str, int]) -> bool:
            return False

        try:
            for _index, to_account, low, below in _backlog_ranges(receiver.account, _served_prefixes((receiver,))):
                if receiver.load >= count or not self._probing(receiver):
                    break
                await self._take_waiting(partial(read_page, to_account, below), (low, 0), take, one_page)
        except Exception:
            if receiver.may_log("reading MTs parked for a stalled bind failed"):  # (at each probe while it fails)
                log.exception("reading MTs parked for a stalled bind failed", account=receiver.account.system_id)
        finally:
            del self._probes[receiver]

    def _retry_failed_on_stalled(self, receiver: Receiver, message_id: str) -> bool:
        """Whether the MT (in hand) waits for its retry after failing on another bind of `receiver`'s account that is
        still stalled (its deliver_sm went unanswered): no attempt of it is on its way, and a probe of `receiver`
        may hand it out in its turn (`_probe`)."""
        waiting = self._retry_timers.get(message_id)
        if waiting is None or message_id in self._probe_took_off_retry:  # once only: its back-off stands after that
            return False
        timer, _message, failed_on = waiting
        return (
            timer is not HOLDING and failed_on is not None and failed_on is not receiver and failed_on.stalled
            and failed_on.account is receiver.account
        )  # fmt: skip

    def _off_retry(self, message_id: str) -> Waiting:
        """Take an MT off its wait for a retry (`_retry_failed_on_stalled`), its timer cancelled, out of hand as if
        parked; not handed out, it waits again as it did (`_wait_again`)."""
        waiting = self._retry_timers.pop(message_id)
        assert waiting is not None
        waiting[0].cancel()
        self._held.discard(message_id)
        return waiting

    def _probing(self, receiver: Receiver) -> bool:
        """A probe's read goes on for `receiver`: still stalled with MTs parked for it (not answering again, nor gone)."""
        return receiver.stalled and receiver in self._parked_on and not self._stopped

    def _probe_offer(self, receiver: Receiver, message: Message, chosen: Receiver | None) -> bool:
        """Offer an MT read back for a probed bind to it if it takes it: routed (`chosen`) to it, or to another stalled
        bind of its account when it could take it too (any that answers, the account's parked MTs are read back for
        it). True: it went to `receiver`, or ended now (expired, or refused); False: another bind would take it, or
        none, or its subscriber's receiver throttles (its held MTs go first, its parked ones when it lifts)."""
        if message.expires_at <= self.clock.now():
            self._expire(message)
            return True
        if self._refused(message):
            return True
        if chosen is not receiver and (
            chosen is None or not chosen.stalled or chosen.account is not receiver.account or not could_take(receiver, message)
        ):  # fmt: skip
            return False
        if self._throttles and message.dest_addr in self._throttles:
            return False
        self._held.add(message.id)
        if not (message.extra and self._notices.wait_turn(message)):
            receiver.offer(message)
        return True

    def answering(self, receiver: Receiver, drained: bool = False) -> None:
        """A stalled bind answers again (Router.answered): what was parked for it, or for another bind of its account
        still stalled, is read back for it, as for a bind that appears (`receiver_ready`); its new MTs wait behind that
        read, not ahead of the parked ones. (Those parked for another bind: it goes first for their subscribers now,
        and they waited in the store until that one answered or went, the newer MTs to them going out ahead.) A read
        that waits for room on it goes on (`_has_room`: a timeout frees none for it). `drained`: it never stopped
        answering, it parked MTs coming faster than it answers and holds few again (`drained`)."""
        if self._parked_on and self._parked_for(receiver):  # (almost always none parked: one test)
            self._parked_on.discard(receiver)
            if not self._stopped:
                self.receiver_ready(receiver, drained)
        if self._room_waiters:
            self._wake_pulls()

    def drained(self) -> None:
        """A bind's load fell (an answer, or a tick: SmppConnection.tick): each that answers and parked MTs (`_full`)
        and holds fewer than ROOM now is read back what it parked, as one that answers again (`answering`)."""
        if self._parked_on:
            for receiver in [r for r in self._parked_on if not r.stalled and r.load < self.ROOM]:
                self.answering(receiver, drained=True)

    def _parked_for(self, receiver: Receiver) -> bool:
        """Whether MTs were parked for this bind or another of its account (`_parked_on`)."""
        account = receiver.account
        return any(bind.account is account for bind in self._parked_on)

    def unbound(self, receiver: Receiver) -> None:
        """A bind went (Router.unbound): what was parked for it is read back for the account's binds left, every one
        of them new to that read (their new MTs wait behind it); with none left, it waits in the store for the next.
        A read that waits for room on the account's binds goes on (`_has_room`), or ends if none is left."""
        if self._room_waiters:
            self._wake_pulls()
        if self._answerable or self._expiring:
            self._unanswerable_on(receiver)
        if receiver not in self._parked_on:
            return
        self._parked_on.discard(receiver)
        self._read_parked_for(receiver.account.system_id, self.router.receivers_of(receiver.account.system_id))

    def _unanswerable_on(self, receiver: Receiver) -> None:
        """A bind went: the deliver_sm that timed out on it can be answered no more (`_answerable`): those MTs may be
        cancelled again, and those held past their validity for that answer expire now (a cancel_sm refused, an EXPIRED
        receipt held, for 10 response_timeouts after the bind had gone)."""
        for message_id in [m for m, (_until, bind) in self._answerable.items() if bind is receiver]:
            del self._answerable[message_id]
        for _until, message, _bind in [held for held in self._expiring.values() if held[2] is receiver]:
            del self._expiring[message.id]
            self._expire(message)

    def _stand_in_for(self, receiver: Receiver) -> None:
        """`receiver` stalls having parked MTs while it answered, more slowly than they came (`_full`: BUSY): they are
        read back for the binds of its account that answer, which take its subscribers' next MTs from now on
        (Router.route), as when it goes (`unbound`); the MTs queued on it go there first (SmppConnection.hand_over,
        right after this: they were queued before any was parked). Left parked, they waited until it answered again
        or went (for ever, a client that answers enquire_link and never deliver_sm), the newer MTs to their
        subscribers going out ahead of them on a bind that answered. It still counts as a bind that parked MTs: what
        only it takes stays parked for it, read back when it answers again or goes, as for any stalled bind."""
        if receiver not in self._parked_on:
            return
        system_id = receiver.account.system_id
        self._read_parked_for(system_id, [r for r in self.router.answering_of(system_id) if not r.stalled])

    def _read_parked_for(self, system_id: str, binds: Sequence[Receiver]) -> None:
        """Read what was parked for a bind of the account back for `binds`, every one of them new to that read (their
        new MTs wait behind it); with none, it waits in the store."""
        if self._stopped or not binds:
            return
        if system_id in self._pulls:  # each arrives: the read goes over the backlog again for all of them
            for bind in binds:
                self.receiver_ready(bind)
        else:
            self._unread.add(system_id)
            self.receiver_ready(binds[0])

    def _parked_by_pass(self, message: Message, receiver: Receiver) -> bool:
        """A page of a backlog read routes an MT to a bind that appeared during the current pass, or that drained
        during it when the pass had got to the MT's subscriber: it stays parked. The pages before may have parked its
        subscriber's older MTs (no bind served them then, or this one was full), which only the next pass (it begins
        with that bind) hands out: given now, it went out ahead of them. That pass hands out all of them, in order (a
        bind appearing or draining during a pass makes the read go over the backlog again: _pull_again)."""
        read = self._reads.get(receiver.account.system_id) if self._reads else None
        return read is not None and read.parks(message, receiver)

    def receiver_ready(self, receiver: Receiver, drained: bool = False) -> None:
        """A bind that can receive appeared: give its account, from the store, what was waiting for it.

        One read of the backlog per account at a time: binds appearing meanwhile (an ESME opening
        its 200 binds) share it, and it starts over once at its end in case one of them can take
        what the binds before it could not (address ranges). The account's other binds were bound
        through a read that ended: nothing to their subscribers waits in the store (unless it failed).
        `drained`: not new, a bind that parked MTs as they came faster than it answered (Delivery.drained): the
        read in progress goes on handing it MTs (BacklogRead.drained).
        """
        account = receiver.account
        if account.system_id in self._pulls:
            self._pull_again.add(account.system_id)
            read = self._reads[account.system_id]
            if drained:
                read.drained(receiver)
            else:
                read.arrived(receiver)
            if self._room_waiters:  # (waiting for room on binds that parked MTs, it may have some now)
                self._wake_pulls()
            return
        bound = () if account.system_id in self._unread else self.router.receivers_of(account.system_id)
        others = (r for r in bound if r is not receiver)
        self._reads[account.system_id] = BacklogRead(account, others)
        self._pulls[account.system_id] = asyncio.get_running_loop().create_task(self._pull(account))

    async def _pull(self, account: Account) -> None:
        system_id = account.system_id
        read = self._reads[system_id]

        async def room_left(after: tuple[str, int]) -> bool:
            self._release_passed(read, read.range, after[0])  # a page handed out: what is below its last subscriber
            if not self._has_room(system_id):
                await self._room(system_id)
            return bool(self.router.receivers_of(system_id))

        def take(message: Message) -> None:
            # Committed during the read, its admit still to come, and newer than an MT to its subscriber
            # already waiting behind the read: it waits there too, or it would overtake that one.
            first = read.first.get(message.dest_addr)
            if first is not None and message.id > first:  # ids sort in the order MTs were accepted
                self._held.add(message.id)  # in hand: its admit only counts it
                read.hold(message)
            else:
                self.dispatch(message, read_back=True)

        stopped = failed = False
        try:
            while True:
                self._pull_again.discard(system_id)
                # Only what the binds this pass is for can take (after a failed read, every bind: BacklogRead's `bound`).
                newcomers = read.begin_pass(self.router.receivers_of(system_id))
                for index, to_account, low, below in _backlog_ranges(account, _served_prefixes(newcomers)):
                    if not self.router.receivers_of(system_id):
                        return
                    self._release_passed(read, index, low)
                    await self._take_waiting(
                        lambda after, to=to_account, below=below: self.store.waiting_mts(to, after, below, self.PAGE),
                        (low, 0), take, room_left,
                    )  # fmt: skip
                self._release_passed(read, len(account.numbers) + 1, "")  # the pass is over: every subscriber passed
                if system_id not in self._pull_again:
                    return
        except asyncio.CancelledError:
            stopped = True
            raise
        except Exception:
            # Nothing is lost (the MTs stay in the store); the next bind reads them again.
            failed = True
            log.exception("reading waiting MTs failed", account=system_id)
        finally:
            del self._pulls[system_id]  # no await since the last look at _pull_again: no bind slips between
            del self._reads[system_id]
            if failed:
                self._unread.add(system_id)
            else:
                self._unread.discard(system_id)
            behind = sorted(read.behind, key=_acceptance_order)
            if stopped:  # shutting down: what waited behind stays in the store, like the rest
                self._held.difference_update(message.id for message in behind)
            else:
                for message in behind:
                    self.dispatch(message)

    async def _take_waiting(
        self,
        read_page: Callable[[Any], Awaitable[list[tuple[Any, Message]]]],
        after: Any,
        take: Callable[[Message], None],
        go_on: Callable[[Any], Awaitable[bool]] | None = None,
    ) -> None:
        """Page through undelivered MTs the store has (`read_page(cursor)`), handing each not in hand to `take`.

        While a page is read and handed out, an MT whose final status commits stays held (see
        `_write_final`): the page may have been read before that commit and still show it undelivered.
        After each full page, `go_on(cursor)` (its last MT's) may wait (for room on the binds) or say to stop.
        """
        while True:
            self._reading += 1
            try:
                page = await read_page(after)
                for _cursor, message in page:
                    if message.id not in self._held:
                        take(message)
            finally:
                self._reading -= 1
                if not self._reading and self._release_after_reading:
                    self._held.difference_update(self._release_after_reading)
                    self._release_after_reading.clear()
            if len(page) < self.PAGE:
                return
            after = page[-1][0]
            if go_on is not None and not await go_on(after):
                return
            await asyncio.sleep(0)  # the store's reads do not yield: let the binds be served between pages

    def _release_passed(self, read: BacklogRead, range_index: int, past: str) -> None:
        """The read has handed out every MT in the ranges before `range_index`, and in that range every MT to a
        subscriber below `past`: the MTs held behind it for those subscribers go on, in the order they were accepted
        (`new`: checked as one just accepted; behind the read again if a bind that appeared during this pass takes
        one)."""
        for message in read.reached(range_index, past):
            self.dispatch(message, new=True)

    def _has_room(self, system_id: str) -> bool:
        """A bind of the account that MTs go to first has fewer than ROOM MTs queued or in flight (or none is left:
        stop waiting). Not a `stalled` one while another is bound: the page would go to the others, beyond ROOM. Nor
        one that parked MTs (`_full`): each page would be parked again, the whole backlog read for nothing; the read
        goes on when it answers again or goes."""
        if not self.router.receivers_of(system_id):
            return True
        parked_on = self._parked_on
        return any(r.load < self.ROOM and r not in parked_on for r in self.router.answering_of(system_id))

    def _room(self, system_id: str) -> asyncio.Future[None]:
        waiter = self._room_waiters.get(system_id)
        if waiter is None:
            waiter = self._room_waiters[system_id] = asyncio.get_running_loop().create_future()
        return waiter

    def _wake_pulls(self) -> None:
        """A delivery attempt ended: a pull whose account has room again (or no bind left) goes on."""
        for system_id in [a for a in self._room_waiters if self._has_room(a)]:
            waiter = self._room_waiters.pop(system_id)
            if not waiter.done():
                waiter.set_result(None)

    # ----------------------------------------------------------- outcomes
    def delivered(self, message: Message) -> None:
        now = self.clock.now()
        self._forget(message)
        receipt = self._receipt_for_end(message, _DELIVERED, now, 0)
        self._write_final(message, _DELIVERED_STATUS, receipt, self.store.mark_delivered, (message.id, now, receipt),
                          answered=True)  # fmt: skip
        if self._room_waiters:
            self._wake_pulls()
        if self._parked_on:
            self.drained()
        if self._throttles:
            self._throttle_lifted(message.dest_addr)
        if message.extra:
            self._next_notice(message)

    def failed(self, message: Message, status: int, bind: Receiver | None = None) -> None:
        """The deliver_sm to `bind` was refused with `status` (at once, or in an answer that came late)."""
        if self._room_waiters:
            self._wake_pulls()
        if self._parked_on:
            self.drained()
        if status in PERMANENT_FAILURES:
            log.warning("mt undeliverable", message_id=message.id, account=account_of(message), msisdn=subscriber_of(message),
                        bind_account=_account_of(bind), status=S.name_of(status),
                        **receipted(message))  # fmt: skip
            if status == S.ESME_RX_R_APPN:
                self._finish(message, MessageStatus.REJECTED, MessageState.REJECTED, status & 0xFF, answered=True)
            else:
                self._finish(message, MessageStatus.UNDELIVERABLE, MessageState.UNDELIVERABLE, status & 0xFF, answered=True)
        else:
            self.retry_later(message, status, bind)

    def cannot_send(self, message: Message, reason: str) -> None:
        """An MT no deliver_sm can carry (intake refuses such fields now; an earlier version stored some):
        it ends undeliverable, with its receipt, instead of stopping the delivery of the MTs after it."""
        log.error("mt cannot be sent", message_id=message.id, account=account_of(message), msisdn=subscriber_of(message),
                  reason=reason, **receipted(message))  # fmt: skip
        if self._room_waiters:
            self._wake_pulls()
        self._finish(message, MessageStatus.UNDELIVERABLE, MessageState.UNDELIVERABLE, S.ESME_RSYSERR & 0xFF)

    def retry_later(self, message: Message, error: int = 0, bind: Receiver | None = None) -> None:
        """Its deliver_sm to `bind` timed out, or was refused for now (`error`): it goes out again after the back-off,
        on another bind that serves its subscriber if there is one, and that bind is no longer the subscriber's
        (Router.note_failure). A bind that answers enquire_link but never deliver_sm otherwise held a subscriber's
        MTs and every retry of them until their validity ended, a healthy bind of the same account idle. (After a
        timeout the bind comes last for every MT, and those queued on it move: Router.stalled.)"""
        if bind is not None:
            self.router.note_failure(message.dest_addr, bind)
        message.attempts += 1
        message.error = error  # as the store has it: an expiry while it waits reports it (_expire)
        delay = self.backoff[min(message.attempts - 1, len(self.backoff) - 1)]  # (config: at least one)
        now = self.clock.now()
        if not error and bind is not None:  # it timed out: its answer may still come (answered_late)
            self._answerable[message.id] = (now + self.late_answer_time, bind)
        message.next_attempt_at = now + delay
        self.store.mark_retry(message.id, message.attempts, message.next_attempt_at, error,
                              then=partial(self._retry_written, message))  # fmt: skip
        status = S.name_of(error) if error else "no answer"  # 0: it timed out
        if bind is None or bind.may_log(f"mt retry ({status})"):  # (a bind that answers none: every MT sent to it)
            log.info("mt retry", message_id=message.id, account=account_of(message), msisdn=subscriber_of(message),
                     attempt=message.attempts, bind_account=_account_of(bind), delay=delay, status=status,
                     **receipted(message))  # fmt: skip
        loop = asyncio.get_running_loop()
        self._retry_timers.add(message, loop.call_later(delay, self._retry_now, message, bind), bind)

    def answered_late(self, message: Message, status: int, bind: Receiver, binds: Iterable[Receiver]) -> None:
        """The answer to a deliver_sm to `bind` given up on (timed out) came after all. While the MT still waits for its
        retry, a delivery or a permanent refusal stands (no second copy); a temporary refusal leaves the retry. Once
        the retry has gone out, a delivery still stands: the copy queued or on its way on one of `binds` (every bind,
        unbinding ones too) is taken back (its answer, when it comes, is not awaited), where the MT went out again,
        or a refusal of that copy ended it UNDELIV, acknowledged all the same; a refusal leaves that attempt to
        decide. One whose validity ran out meanwhile waits for this answer (`_expire`)."""
        if self._expiring and message.id in self._expiring:
            self._answered_expiring(message, status, bind)
            return
        if self._answerable and self._answerable.get(message.id, (0.0, None))[1] is bind:
            del self._answerable[message.id]  # answered: no other answer to it can come
        waiting = self._retry_timers.get(message.id)
        if waiting is None:
            if status or self._replaced.get(message.id, message) is not message:
                return  # (a copy of what it was before a replace_sm: the replacement is still to be delivered)
            if any(receiver.abandon(message.id) for receiver in binds):
                self.delivered(message)
            else:  # parked (its retry found no bind, or a full stalled one), handed out again as read back, or ended
                # Parked: in hand from now on, or a backlog read starting as the bind answers again (Delivery.answering)
                # could hand it out, and send it again, before the store is asked.
                parked = message.id not in self._held
                if parked:
                    self._held.add(message.id)
                task = asyncio.get_running_loop().create_task(self._delivered_late(message, binds, parked))
                self._late.add(task)
                task.add_done_callback(self._late.discard)
            return
        if waiting[1] is not message or (status and status not in PERMANENT_FAILURES):
            return  # a replacement's retry, or still to be retried
        self._retry_timers.pop(message.id)
        waiting[0].cancel()
        if status:
            self.failed(message, status, bind)
        else:
            self.delivered(message)

    def _answered_expiring(self, message: Message, status: int, bind: Receiver) -> None:
        """A late answer to a deliver_sm of an MT held past its validity for it (`_expire`): a delivery stands, so does
        a permanent refusal; a temporary one on the bind awaited expires it now (one to a copy sent before a
        replace_sm, or on another bind, leaves it held)."""
        if self._replaced.get(message.id, message) is not message:
            return
        temporary = status and status not in PERMANENT_FAILURES
        if temporary and self._expiring[message.id][2] is not bind:
            return
        _until, expiring, _bind = self._expiring.pop(message.id)
        if temporary:
            self._expire(expiring)
        elif status:
            self.failed(expiring, status, bind)
        else:
            self.delivered(expiring)

    @property
    def settled(self) -> bool:
        """Every delivery acknowledged is written: none acknowledged late still read back from the store
        (`answered_late`), no final status that failed to commit (`finals_not_committed`)."""
        return not self._late and not self.finals_not_committed

    async def _delivered_late(self, message: Message, binds: Iterable[Receiver], taken: bool) -> None:
        """A delivery acknowledged late, its MT no longer in hand as it was then: delivered if it is still to go out.
        `taken`: it was not in hand, and is now (answered_late); out of hand again unless delivered here, the store's
        read failing too (else it stayed ENROUTE for good, no backlog read handing it out nor the sweep expiring it)."""
        message_id = message.id
        delivered = False
        try:
            stored = await self.store.get(message_id)
            if (
                self._stopped or stored is None or stored.status is not _ENROUTE or stored.direction is not Direction.MT
                or self._replaced.get(message_id, message) is not message
            ):  # fmt: skip
                return  # ended meanwhile (its final status committed), scheduled again by a replace_sm, replaced, or too late
            if taken or self._take_back(stored) or any(receiver.abandon(message_id) for receiver in binds):
                delivered = True
                self.delivered(stored)
        finally:
            if taken and not delivered:
                self._held.discard(message_id)

    # ------------------------------------------------- a receiver's flow control
    def throttled(self, message: Message, status: int, bind: Receiver) -> bool:
        """The deliver_sm to `bind` was refused for flow control (ESME_RTHROTTLED, ESME_RMSGQFUL): no failed attempt;
        the MT, and its subscriber's MTs queued on the bind, wait out of it for a pause (gateway/throttles.py).
        True if that pause is the subscriber's first: not one of an MT tried again, nor sent beside one refused (they
        probe the subscriber, not the bind's rate: SmppConnection._on_delivery_answer)."""
        if self._room_waiters:
            self._wake_pulls()
        message.error = status  # (not stored: what its receipt says if its validity ends while it waits)
        subscriber = message.dest_addr
        throttle = self._throttles.get(subscriber)
        if throttle is None:
            throttle = self._throttles[subscriber] = Throttle(bind.account.system_id)
        self._hold(throttle, message)
        first = not throttle.pause
        pause = throttle.refused(message.id)
        if pause is None:  # one sent beside the one that began the pause under way
            return False
        throttle.refused_on = bind
        for queued in bind.take_queued(subscriber):
            self._hold_or_park(throttle, queued)
        if self._room_waiters:  # (the bind's queue is shorter)
            self._wake_pulls()
        throttle.cancel()
        throttle.timer = asyncio.get_running_loop().call_later(pause, self._try_again, subscriber, bind)
        if bind.may_log("mt throttled"):
            log.info("mt throttled", message_id=message.id, account=account_of(message), msisdn=subscriber,
                     bind_account=_account_of(bind), status=S.name_of(status), pause=pause, held=len(throttle.held),
                     **receipted(message))  # fmt: skip
        return first

    def _hold(self, throttle: Throttle, message: Message) -> None:
        """Hold the MT out of the binds for its subscriber's `throttle`: in hand, and waiting in `_retry_timers` (a
        cancel_sm, a block, its validity, a stop find it there) with HOLDING, no timer of its own."""
        self._held.add(message.id)
        self._retry_timers.add(message, HOLDING)
        throttle.held.add(message.id)

    def _hold_throttled(self, message: Message) -> bool:
        """An MT offered to a subscriber whose receiver throttles: held with the one refused, or parked (`_hold_or_park`),
        not to overtake it (False: it is the one let through)."""
        throttle = self._throttles[message.dest_addr]
        if throttle.trying == message.id:
            return False
        self._hold_or_park(throttle, message)
        return True

    def _hold_or_park(self, throttle: Throttle, message: Message) -> None:
        """Hold the MT for its subscriber's throttle, or park it: the throttle holds HELD_PER_THROTTLE (the one tried
        again counted: refused again, it is held with them), all of them HELD_FOR_THROTTLES, or it has parked one
        already (a newer one held would go out ahead of it), or its parked ones are being read back. Parked, it waits
        in the store, out of hand (the backlog read reads on past it), and is read back when the throttle lifts
        (`_read_back`)."""
        if (
            throttle.parked or throttle.reading or throttle.holds >= self.HELD_PER_THROTTLE
            or self._retry_timers.holding >= self.HELD_FOR_THROTTLES
        ):  # fmt: skip
            throttle.parked.add(addressed_account(message))
            throttle.parkings += 1
            self._held.discard(message.id)
        else:
            self._hold(throttle, message)

    def _still_held(self, throttle: Throttle) -> set[str]:
        """The ids of the MTs the throttle still holds (not cancelled, expired, rejected, taken back by a replace_sm,
        or waiting for a retry now), kept as its `held`."""
        get = self._retry_timers.get
        throttle.held = {i for i in throttle.held if (waiting := get(i)) is not None and waiting[0] is HOLDING}
        return throttle.held

    def _try_again(self, subscriber: str, bind: Receiver | None) -> None:
        """The pause is over: the oldest MT held goes out alone (to another bind of the subscriber's first if one serves
        it); the rest wait for its answer, looked for every LONGEST_PAUSE (a timeout makes it a retry: they wait for
        that). One that leaves hand unanswered (its validity ended; no bind serves the subscriber now, so it waits
        in the store) lifts the throttle: the rest go as it did (parked: read back in order when a bind appears)."""
        throttle = self._throttles[subscriber]
        throttle.timer = asyncio.get_running_loop().call_later(LONGEST_PAUSE, self._try_again, subscriber, bind)
        if throttle.trying is not None:
            if throttle.trying not in self._held:
                self._throttle_lifted(subscriber)
            return
        held = self._still_held(throttle)
        if not held:
            self._throttle_lifted(subscriber)
            return
        oldest = min(held)  # ids sort in the order MTs were accepted
        held.remove(oldest)
        throttle.trying = oldest
        self.dispatch(self._retry_timers.pop(oldest)[1], again=True, avoid=bind)
        if oldest not in self._held:
            self._throttle_lifted(subscriber)

    def _throttle_lifted(self, subscriber: str) -> None:
        """An MT to `subscriber` was accepted (or the one tried again left hand unanswered: `_try_again`): the MTs held
        for its throttle go out, in the order they were accepted; then those it parked are read back (`_read_back`)."""
        throttle = self._throttles.get(subscriber)
        if throttle is None or throttle.reading:
            return
        held = sorted(self._still_held(throttle))
        throttle.lifted()
        pop = self._retry_timers.pop
        for message_id in held:
            waiting = pop(message_id)
            if waiting is not None:  # (none that one dispatched before it took out of its wait)
                self._let_through(throttle, waiting[1])
        if throttle.read_back is not None:  # refused again during it: it reads on (or again, from the first)
            return
        if throttle.parked:
            throttle.read_back = asyncio.get_running_loop().create_task(self._read_back(subscriber, throttle))
        else:
            del self._throttles[subscriber]

    def _let_through(self, throttle: Throttle, message: Message, read_back: bool = False) -> None:
        """Dispatch an MT its subscriber's throttle lets go (held until it lifted, or `read_back`), not held nor parked
        for it again, nor sent to the bind that refused last if another serves the subscriber."""
        throttle.trying = message.id
        try:
            self.dispatch(message, avoid=throttle.refused_on, read_back=read_back)
        finally:
            throttle.trying = None

    async def _read_back(self, subscriber: str, throttle: Throttle) -> None:
        """Read the MTs a lifted throttle parked back from the store, in the order they were accepted, from each part
        of the store it parked them in (`Throttle.parked`); one such read at a time for the account of the bind that
        refused them, each page when its binds have room for it (as the backlog read's); again from the first while any
        was parked meanwhile; then (no await between the last page and this) the throttle is gone: the subscriber's new
        MTs go as they come. Refused again meanwhile, the throttle is no longer `reading`: the read stops, its parked
        MTs wait for the next lift; if that comes before the read saw the refusal, it reads again from the first (what
        it handed out before may be parked again)."""
        account = throttle.account
        lifts = throttle.lifts  # at this pass's start

        def cut_short() -> bool:
            """Refused since this pass began (and lifted again, perhaps: a lift counts): it stops."""
            return not throttle.reading or throttle.lifts != lifts

        def take(message: Message) -> None:
            if not cut_short() and message.dest_addr == subscriber:  # (the range has the longer numbers it begins too)
                self._let_through(throttle, message, read_back=True)

        async def go_on(_after: tuple[str, int]) -> bool:
            return not cut_short()

        async def read_page(to_account: str | None, after: tuple[str, int]) -> list[tuple[tuple[str, int], Message]]:
            if not self._has_room(account):
                await self._room(account)
            return await self.store.waiting_mts(to_account, after, _after_prefix(subscriber), self.PAGE)

        try:
            async with self._read_back_turns.setdefault(account, asyncio.Lock()):
                while throttle.reading:
                    parkings, lifts = throttle.parkings, throttle.lifts
                    for to_account in sorted(throttle.parked, key=lambda part: part or ""):
                        if not cut_short():
                            await self._take_waiting(partial(read_page, to_account), (subscriber, 0), take, go_on)
                    if not cut_short() and throttle.parkings == parkings:
                        del self._throttles[subscriber]
                        return
        except Exception:
            # Nothing is lost (they stay in the store): the throttle stays, its new MTs parked, and lifts again (read
            # again) once a pause is over, as after a refusal.
            log.exception("reading MTs parked for a throttle failed", msisdn=subscriber)
            if throttle.reading:
                throttle.reading = False
                throttle.timer = asyncio.get_running_loop().call_later(LONGEST_PAUSE, self._try_again, subscriber, None)
        finally:
            throttle.read_back = None

    def _retry_now(self, message: Message, failed_on: Receiver | None) -> None:
        self._retry_timers.pop(message.id)
        self.dispatch(message, again=True, avoid=failed_on)

    # ------------------------------------------------- cancel_sm / replace_sm
    def cancel(self, message: Message) -> asyncio.Future[None] | None:
        """End an undelivered MT as DELETED (its receipt if one is due): a future that settles when that is
        committed (with the store's error if it fails: then the MT is still undelivered, and goes out). None if
        it is already on its way (a deliver_sm awaiting its answer, or one that timed out whose answer may still
        come: the subscriber may have it) or ended. `message` as the store has it."""
        if self._may_be_answered(message.id):
            return None
        waiting = self._retry_timers.get(message.id)
        if not self._take_back(message):
            return None
        if waiting is not None:  # waits for it again if the cancellation fails to commit (`_cancel_undone`)
            self._retries_taken[message.id] = waiting
        settled = asyncio.get_running_loop().create_future()
        self._finish(message, MessageStatus.DELETED, MessageState.DELETED, 0, counted=message.status is _ENROUTE,
                     settled=settled)  # fmt: skip
        return settled

    async def replace(self, changes: list[tuple[Message, Message]]) -> list[str]:
        """Store undelivered MTs' new content and schedule in one commit, then let them go on: the ids of those
        replaced (not of those gone out or ended, as for cancel).

        Each change is (stored, replacement): the MT as the store has it, and the same MT with its new short_message,
        registered_delivery, expires_at, and schedule (status scheduled or enroute, next_attempt_at). Every one is
        taken out of delivery before anything is awaited, as `stored` was read: a submit_multi's destination taken back
        after a wait for the commit of another's had been delivered meanwhile, its `stored` stale, and went out twice
        (or, cancelled meanwhile, went out after all)."""
        taken = [(stored, replacement, *hold) for stored, replacement in changes
                 if (hold := self._take_for_replacement(stored)) is not None]  # fmt: skip
        committed = False
        try:
            if taken:
                await self.store.replace_mts([replacement for _stored, replacement, _bind, _waiting in taken])
            committed = True
        finally:
            for stored, replacement, bind, waiting in taken:
                if committed:
                    self._replaced[replacement.id] = replacement  # a late answer to a copy sent before settles nothing
                    if self._answerable:  # (so nothing waits for one: `_expire`)
                        self._answerable.pop(replacement.id, None)
                self._go_on(stored, replacement if committed else stored, bind, waiting)  # (failed: as it was)
        return [stored.id for stored, _replacement, _bind, _waiting in taken]

    def _take_for_replacement(self, stored: Message) -> tuple[Receiver | None, Waiting | None] | None:
        """Hold an MT while its replacement commits: the bind it stays frozen on (None if it is not queued on one) and
        the retry it was taken from; None if it has gone out or ended."""
        bind = self._freeze(stored)  # queued on a bind: it keeps its place there meanwhile
        waiting = self._retry_timers.get(stored.id)
        if bind is None and not self._take_back(stored):
            return None
        return bind, waiting

    def _go_on(self, stored: Message, current: Message, bind: Receiver | None, waiting: Waiting | None) -> None:
        """An MT held while its replacement committed (`current`: the replacement) or failed to (`stored`) goes on."""
        if bind is not None:
            self._thaw(bind, stored, current)
        elif current.status is _SCHEDULED:  # out of delivery until the sweep finds it due
            self._held.discard(current.id)
            if stored.status is _ENROUTE:
                self._forget(stored)
        elif stored.status is _SCHEDULED:
            self._rejoin(current)  # taken back from its schedule, as when that comes due
        elif waiting is not None:  # replaced or not, its back-off stands and the bind it failed on is still avoided
            self._wait_again((waiting[0], current, waiting[2]))
        else:  # not ahead of older MTs to its subscriber that a backlog read has yet to hand out
            self.dispatch(current, behind_read=True)

    def _freeze(self, message: Message) -> Receiver | None:
        """The bind an MT is queued on, not yet sent, now frozen there (Receiver.freeze); None if it is not."""
        message_id = message.id
        if message.status is not _ENROUTE or message_id not in self._held or message_id in self._retry_timers:
            return None
        return next((receiver for receiver in self.router.all_receivers() if receiver.freeze(message_id)), None)

    def _thaw(self, bind: Receiver, stored: Message, current: Message) -> None:
        """After the replacement of an MT frozen on `bind` committed (`current`: the replacement) or failed (`stored`)."""
        if current.status is _SCHEDULED:  # out of delivery until the sweep finds it due
            bind.thaw(current.id, None)
            self._held.discard(current.id)
            self._forget(stored)
        elif self.undeliverable(current) is not None:  # a block or an unsubscription came while it committed
            bind.thaw(current.id, None)
            self._refused(current)
        elif not carries(bind, current):  # too long now for this bind of SMPP 3.3
            bind.thaw(current.id, None)
            self.dispatch(current, again=True)  # to a bind of SMPP 3.4, or it waits for one (Router.route)
        elif not bind.thaw(current.id, current):  # its bind went away meanwhile
            self.dispatch(current, again=True)

    def _may_be_answered(self, message_id: str) -> bool:
        """Whether a deliver_sm of the MT that timed out may still be answered (`_answerable`)."""
        return bool(self._answerable) and self._answerable.get(message_id, (0.0, None))[0] > self.clock.now()

    def _take_back(self, message: Message) -> bool:
        """Take an MT out of delivery before it goes out: True if it was parked, scheduled, waiting for a
        retry, queued on a bind or behind a backlog read, and is now in hand (`_held`) for the caller."""
        if (message.status is not _ENROUTE and message.status is not _SCHEDULED) or message.direction is not Direction.MT:
            return False
        message_id = message.id
        waiting = self._retry_timers.pop(message_id)
        if waiting is not None:
            waiting[0].cancel()
            return True
        if message_id not in self._held:  # parked: from now on no page read hands it out
            self._held.add(message_id)
            return True
        for read in self._reads.values():
            behind = read.behind
            for i, waiting in enumerate(behind):
                if waiting.id == message_id:
                    del behind[i]
                    return True
        return any(receiver.withdraw(message_id) is not None for receiver in self.router.all_receivers())

    def requeue(self, messages: list[Message]) -> None:
        """Messages that were queued or in flight on a bind that went away: route them again."""
        for message in messages:
            self.dispatch(message, again=True)
        if self._room_waiters:
            self._wake_pulls()

    def refuse_waiting(self, source: str, recipient: str | None) -> None:
        """A block or an unsubscription stopped what `source` sends to `recipient` (None: to anyone). The MTs it
        stops that wait for a retry end REJECTED now, the parked ones at the next sweep (a read of the store): they
        counted against their recipient's queue (max_queued_per_subscriber), and a spammer's backlog toward an off
        line victim kept everyone else's MTs to them out until the victim bound. (Those on a bind: its queue asks
        again, `rejected_now`. Those accepted before it whose commit is still on its way: `dispatch`.)"""
        self._tightened_at = self.ids.next()
        for handle, message, _bind in self._retry_timers.from_sender(source):
            if recipient in (None, message.dest_addr) and self._refused(message):
                self._retry_timers.pop(message.id)
                handle.cancel()
        # A personal block or an unsubscription: only a recipient off line, or served by a stalled bind that parked
        # MTs (`_full`), has MTs parked (the common report comes from a subscriber on line, and the read would cost
        # the loop for nothing).
        if recipient is None or (self.queued.get(recipient) and (not self.router.serves(recipient) or self._parked_on)):
            self._stopped_senders.append((source, recipient))

    async def _refuse_parked(self) -> None:
        while self._stopped_senders:
            source, recipient = self._stopped_senders[0]
            read_page = partial(self.store.enroute_mts_from, source, recipient, limit=self.PAGE)
            await self._take_waiting(read_page, (0.0, 0), self._refused)
            self._stopped_senders.popleft()  # (not before: a read that fails is tried again at the next sweep)
            await asyncio.sleep(0)  # one read each, and a restart may queue thousands: serve the binds between them

    async def sweep(self) -> None:
        """End the parked MTs a block or an unsubscription stopped (`refuse_waiting`). Expire the parked MTs, those
        waiting for a retry and those behind a backlog read whose validity has run out (those queued on a bind: its
        tick); release the scheduled MTs that are due."""
        await self._refuse_parked()
        now = self.clock.now()
        for handle, message, _bind in self._retry_timers.expired(now):
            handle.cancel()
            self._expire(message)
        for read in self._reads.values():
            behind = read.behind
            expired = [message for message in behind if message.expires_at <= now]
            if expired:
                behind[:] = [message for message in behind if message.expires_at > now]
                for message in expired:
                    self._expire(message)
        await self._take_waiting(lambda after: self.store.expired_mts(now, after, self.PAGE), (0.0, 0), self._expire)
        if self._expiring:
            self._expire_unanswered(now)
        await self._release_due(now)

    def _expire(self, message: Message) -> None:
        """Its validity has run out: EXPIRED, unless the guards refuse it now: then it is REJECTED, which says
        why it never went out (an SP's content to a subscriber who unsubscribed while off line: err:402). EXPIRED is
        dated when its validity ran out, not when this is found: a sweep after a restart (or a late one) dated an MT
        that expired while the gateway was down at the restart (its receipt's done date, query_sm's final_date).

        One with a deliver_sm that timed out and may still be answered (`_answerable`) is held (`_expiring`) until the
        answer comes (`answered_late`) or none can count any more (the sweep: `_expire_unanswered`): expired at once,
        the handset's ESME_ROK that came next found it ended, and its receipt said EXPIRED of an MT the subscriber had."""
        until, bind = self._answerable.pop(message.id, (0.0, None)) if self._answerable else (0.0, None)
        if until > self.clock.now() and bind is not None:
            self._held.add(message.id)
            self._expiring[message.id] = (until, message, bind)
        elif not self._refused(message):
            # err: is "the error code for the attempted delivery" (SMPP 3.4 appendix B): the refusal of its last
            # attempt (0 if none, or it went unanswered), its low octet as for a permanent refusal (`failed`).
            self._finish(message, MessageStatus.EXPIRED, MessageState.EXPIRED, message.error & 0xFF,
                         ended_at=min(self.clock.now(), message.expires_at))  # fmt: skip

    def _expire_unanswered(self, now: float) -> None:
        """The MTs held past their validity for a late answer (`_expire`) that none can count for any more expire."""
        for _until, message, _bind in [held for held in self._expiring.values() if held[0] <= now]:
            del self._expiring[message.id]
            self._expire(message)

    async def _release_due(self, now: float) -> None:
        """Scheduled MTs due by `now` become enroute and join delivery, a page at a time."""
        due: list[Message] = []

        def take(message: Message) -> None:
            self._held.add(message.id)  # being released: no cancel_sm or replace_sm now
            due.append(message)

        async def release(_after: object = None) -> bool:
            page = due[:]
            due.clear()
            try:
                if page:
                    await self.store.release_scheduled([m.id for m in page])
            except BaseException:
                self._held.difference_update(m.id for m in page)  # still scheduled: the next sweep tries again
                raise
            for message in page:
                message.status = _ENROUTE
                self._rejoin(message)
            return True

        await self._take_waiting(lambda after: self.store.due_scheduled(now, after, self.PAGE), (0.0, 0), take, release)
        await release()

    # ------------------------------------------------------------ helpers
    def _count(self, message: Message) -> None:
        dest = message.dest_addr
        self.queued[dest] = self.queued.get(dest, 0) + 1
        if message.esm_class:  # (most: 0)
            self._acknowledgement_waits(acknowledging_subscriber(message), 1)

    def _rejoin(self, message: Message) -> None:
        """A scheduled MT this process held while its release (or replacement) committed joins delivery now, now
        enroute: unless the guards would refuse it by now (it is not in `queued` yet)."""
        self._held.discard(message.id)
        if not self._refused(message, counted=False):
            self.admit(message)

    def rejected_now(self, message: Message) -> bool:
        """A bind's queue asks again for an MT queued before a block or an unsubscription: True if it ended REJECTED."""
        return self._refused(message)

    def _refused(self, message: Message, counted: bool = True) -> bool:
        """End the MT as REJECTED if the guards would refuse it now (blocked or unsubscribed since it was accepted)."""
        refusal = self.undeliverable(message)
        if refusal is None:
            return False
        status, reason = refusal
        log.warning("mt rejected", message_id=message.id, account=account_of(message), msisdn=subscriber_of(message), reason=reason)
        self._finish(message, MessageStatus.REJECTED, MessageState.REJECTED, refusal_error(status), counted)
        return True

    def _finish(
        self, message: Message, status: MessageStatus, state: MessageState, error: int, counted: bool = True,
        settled: asyncio.Future[None] | None = None, answered: bool = False, ended_at: float | None = None,
    ) -> None:  # fmt: skip
        """`counted`: the MT is in `queued` (it is, unless it was still scheduled); `settled`: told the commit's outcome;
        `answered`: the status is the answer to its deliver_sm; `ended_at`: when it ended, if before now (its final
        status is dated so; its receipt, made now, is valid from now)."""
        now = self.clock.now()
        ended_at = now if ended_at is None else ended_at
        self._held.add(message.id)  # until its final status is committed
        if counted:
            self._forget(message)
        receipt = self._receipt_for_end(message, state, ended_at, error, now)
        self._write_final(message, status, receipt, self.store.mark_final,
                          (message.id, status.value, ended_at, error, receipt), settled, answered)  # fmt: skip
        if settled is None:  # (a cancellation's once it commits: it may not, and then the MT is as it was)
            _log_final(message, status)
        if message.extra:
            self._next_notice(message)

    def _receipt_for_end(
        self, message: Message, state: MessageState, done_at: float, error: int, now: float | None = None
    ) -> Message | None:
        """The receipt of an MT that ends (at `done_at`; made `now`, if later), if one is due; None if its row, damaged
        outside the gateway (text where its data_coding or submission time goes, say), makes none: it ends all the
        same, the reason logged."""
        try:
            return receipt_for(message, state, done_at, error, self.ids, self.router.sp_accounts, now)
        except UNSENDABLE as exc:
            log.error("receipt cannot be made", message_id=message.id, account=account_of(message),
                      msisdn=subscriber_of(message), reason=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return None

    def _next_notice(self, message: Message) -> None:
        """An MT ended: if it was an SP notice, the next one of its subscriber goes out now."""
        following = self._notices.ended(message)
        if following is not None:
            self.dispatch(following)

    def _write_final(
        self, message: Message, status: MessageStatus, receipt: Message | None, write: Callable[..., Any], args: tuple,
        settled: asyncio.Future[None] | None = None, answered: bool = False,
    ) -> None:  # fmt: skip
        """Write an MT's final status (`write(*args, then=...)`): once committed, the MT is no longer in hand; then its
        receipt goes out. (A callback, not a future: no loop callback per delivered MT.) `answered`: the status is
        the answer to its deliver_sm (one not committed at the stop has the MT sent again at the next start).

        One that fails to commit (the disk full, the database locked by another process) is written again
        every REWRITE_DELAY seconds until it commits, the MT in hand meanwhile: a deliver_sm the subscriber
        acknowledged is not sent again when a backlog read finds the MT still enroute. Only with `settled`
        (a cancel_sm waiting for its answer) is a failure final: the client is told, and the MT stays enroute,
        offered to a bind again (`_cancel_undone`)."""
        message_id = message.id

        def committed(_result: None, error: BaseException | None) -> None:
            if error is not None and settled is not None:  # a cancellation not committed: the MT as it was
                if not settled.done():
                    settled.set_exception(error)
                self._cancel_undone(message)
                return
            if error is not None and settled is None:
                self._log_not_committed(message, error, answered)
                if answered:
                    self.finals_not_committed.add(message_id)
                if not self._stopped:  # (else the MT goes out again after the restart: see stop)
                    # Written again through _write_final: `committed` naming itself would make every MT's callback,
                    # Message and row a reference cycle, freed only by the cyclic collector (its pauses, under load).
                    rewrite = partial(self._write_final, message, status, receipt, write, args, answered=answered)
                    again = partial(self._rewrite_final, message, status, receipt, rewrite)
                    self._rewrites[message_id] = asyncio.get_running_loop().call_later(self.REWRITE_DELAY, again)
                return
            self._final_committed(message_id, receipt)
            if settled is not None:
                _log_final(message, status)
                self._retries_taken.pop(message_id, None)
                if not settled.done():
                    settled.set_result(None)

        write(*args, then=committed)

    def _cancel_undone(self, message: Message) -> None:
        """A cancel_sm whose DELETED status failed to commit (the store cannot commit): the MT is as it was, counted
        in its subscriber's queue again and offered to a bind again (it had been taken back from one, and a bound
        subscriber's MTs are read from the store only at a bind), or one taken from its wait for a retry waits for
        it again; a scheduled one waits for the sweep again."""
        waiting = self._retries_taken.pop(message.id, None)
        self._held.discard(message.id)
        if message.status is not _ENROUTE:
            return
        self._count(message)
        if self._stopped:
            return
        if waiting is None:
            self.dispatch(message, again=True)
        else:
            self._wait_again(waiting)

    def _wait_again(self, waiting: Waiting) -> None:
        """An MT a cancel_sm took from its wait for a retry, its change not committed, a replace_sm took from it (the
        MT in `waiting` as it is now: replaced, or not if that failed to commit), or a probe took from it and did not
        hand out (`_off_retry`): it waits again for the same time and avoiding the same bind (not at once: its back-off
        stands)."""
        timer, message, failed_on = waiting
        self._held.add(message.id)
        if isinstance(timer, Holding):  # held for its receiver's flow control: held again while that lasts, else it goes
            self.dispatch(message, again=True)
            return
        retry = asyncio.get_running_loop().call_at(timer.when(), self._retry_now, message, failed_on)
        self._retry_timers.add(message, retry, failed_on)

    def _final_committed(self, message_id: str, receipt: Message | None) -> None:
        """The MT's final status is committed: it is no longer in hand, and its receipt (if any) goes out."""
        self._ended(message_id)
        self._rewrites.pop(message_id, None)
        if self.finals_not_committed:
            self.finals_not_committed.discard(message_id)
        if self._replaced:
            self._replaced.pop(message_id, None)
        if self._reading:
            self._release_after_reading.append(message_id)
        else:
            self._held.discard(message_id)
        if receipt is None:
            return
        if self._answer_pending and message_id in self._answer_pending:  # it ended before its submission's answer
            self._answer_pending[message_id] = receipt
        else:
            self.admit(receipt)

    def _rewrite_final(self, message: Message, status: MessageStatus, receipt: Message | None, write: Callable[[], Any]) -> None:
        again = self._write_final_again(message, status, receipt, write)
        self._rewrites[message.id] = asyncio.get_running_loop().create_task(again)

    async def _write_final_again(
        self, message: Message, status: MessageStatus, receipt: Message | None, write: Callable[[], Any]
    ) -> None:
        """Write a final status that failed to commit again, unless it did commit after all: a write whose answer was
        lost (its writer process died, and none could start again to tell) may have. Its receipt is stored with it,
        so writing it again would fail on the receipt's row for ever, the MT in hand and the receipt held back."""
        stored = await self.store.get(message.id)
        if stored is None or stored.status is not status:
            write()
            return
        log.warning("final status was committed after all", message_id=message.id, account=account_of(message),
                    msisdn=subscriber_of(message), status=status.value)  # fmt: skip
        if receipt is not None:
            stored_receipt = await self.store.get(receipt.id)
            if stored_receipt is None or stored_receipt.status is not _ENROUTE:
                receipt = None  # gone out already: a bind's backlog read found it in the store
        self._final_committed(message.id, receipt)

    def _retry_written(self, message: Message, _result: None, error: BaseException | None) -> None:
        """mark_retry's outcome. One not committed (the store cannot commit, and says so itself: `store cannot
        commit`) is logged naming the MT, the first few and then counted (`rewrite_log`); the MT is tried again all
        the same, and a restart before another commit takes its attempt count and time from the row as it was."""
        if error is not None:
            if self.rewrite_log.allow("retry not committed"):
                log.warning("retry not committed", **_about(message, error))
            for kind, count in self.rewrite_log.due():
                log.warning(f"{kind}: more not logged", count=count)

    def _log_not_committed(self, message: Message, error: BaseException, answered: bool) -> None:
        """The first failure of a final status, and (within `rewrite_log`) those that go on while the store commits:
        while it cannot, the store says so itself (`store cannot commit`, /ready)."""
        about = _about(message, error)
        if self._stopped and answered:
            log.warning("final status not committed at the stop; the MT goes out again at the next start", **about)
        elif self._stopped:
            log.warning("final status not committed at the stop; the next start decides it again", **about)
        elif message.id not in self._rewrites:
            log.warning("final status not committed; writing it again until it is", **about)
        elif self.store.can_commit and self.rewrite_log.allow("final status still not committed"):
            log.warning("final status still not committed", **about)
        for kind, count in self.rewrite_log.due():
            log.warning(f"{kind}: more not logged", count=count)

    def _forget(self, message: Message) -> None:
        self.not_waiting(message.dest_addr, acknowledging_subscriber(message) if message.esm_class else None)

    def _ended(self, message_id: str) -> None:
        """The MT has ended (its final status committed, or the store gave it up): the mark that a probe took it off its
        wait for a retry goes. Not before: one a cancellation failed to end, or a replace_sm scheduled, goes on as the
        same MT, taken off so once at most."""
        if self._probe_took_off_retry:
            self._probe_took_off_retry.discard(message_id)
        if self._answerable:
            self._answerable.pop(message_id, None)

    def given_up(self, message_id: str, dest_addr: str | None, acknowledging: str | None = None) -> None:
        """The store gave up the MT, its row unreadable (SqliteStore.mt_given_up): it has ended; `dest_addr`: it was
        enroute, counted as waiting for that subscriber (and for `acknowledging`, see not_waiting)."""
        self._ended(message_id)
        if dest_addr is not None:
            self.not_waiting(dest_addr, acknowledging)

    def not_waiting(self, dest_addr: str, acknowledging: str | None = None) -> None:
        """An MT to `dest_addr` no longer waits: the store gave it up (`given_up`), or (`_forget`) it ended, was
        scheduled again, or was not stored. `acknowledging`: the subscriber whose SME acknowledgement to an SP it was
        (messages.acknowledging_subscriber)."""
        remaining = self.queued.get(dest_addr, 0) - 1
        if remaining > 0:
            self.queued[dest_addr] = remaining
        else:
            self.queued.pop(dest_addr, None)
        if acknowledging is not None:
            self._acknowledgement_waits(acknowledging, -1)

    def _acknowledgement_waits(self, subscriber: str | None, change: int) -> None:
        """One more (`change` 1) or one fewer (-1) of `subscriber`'s acknowledgements to SPs waits (None: no such)."""
        if subscriber is None:
            return
        waiting = self.acknowledgements.get(subscriber, 0) + change
        if waiting > 0:
            self.acknowledgements[subscriber] = waiting
        else:
            self.acknowledgements.pop(subscriber, None)

    def stop(self) -> None:
        """Shutting down: no more retries, reads or rewrites (what is undelivered stays in the store; an MT whose
        final status never committed goes out again after the restart)."""
        self._stopped = True
        for handle, _message, _bind in self._retry_timers.values():
            handle.cancel()
        self._retry_timers.clear()
        self._expiring.clear()  # (enroute in the store: the next start expires them)
        for throttle in self._throttles.values():
            throttle.cancel()
            if throttle.read_back is not None:
                throttle.read_back.cancel()
        self._throttles.clear()
        for rewrite in self._rewrites.values():
            rewrite.cancel()
        self._rewrites.clear()
        for task in self._pulls.values():
            task.cancel()
        for task in self._probes.values():
            task.cancel()


class BacklogRead:
    """An account's backlog being read (Delivery._pull): how far the read got, and the new MTs held behind it.

    The read goes over the account's ranges (the MTs addressed to the account, then each of its number prefixes),
    each in (dest_addr, seq) order, and over them again when a bind appeared meanwhile; a pass only over the numbers
    the binds it is for can serve, when their address_ranges say (_backlog_ranges). When a pass went past a
    subscriber, a bind that was bound as that pass began had their waiting MTs handed out (to it, or to another bind
    that serves them); none is parked again while it stays bound. So an MT to that subscriber for that bind has
    nothing to overtake; for a bind that appeared later, it waits until a pass that began with it bound goes past.
    A bind the pass is for that parked MTs coming faster than it answered, and drained (`drained`), is not new: the
    pass hands it on what it reads past where it had got to then; what it parked before that goes out in the next pass.
    """

    def __init__(self, account: Account, bound: Iterable[Receiver]) -> None:
        self.numbers = account.numbers
        self.behind: list[Message] = []  # new MTs held until the read has passed their subscriber
        self.first: dict[str, str] = {}  # subscriber -> id of their first MT in `behind`
        self.passes = 0  # passes begun
        self.range = 0  # the range the current pass reads: 0 the account's own MTs, 1... its number prefixes
        self.past = ""  # in that range, every MT to a subscriber below this one was handed out
        # bind -> the first pass that began with it bound; 0: bound through an earlier read of the account, now over
        self._since: dict[Receiver, int] = dict.fromkeys(bound, 0)
        self._arrivals: list[Receiver] = []  # binds that appeared during the current pass, gone since or not
        # binds the current pass is for that drained during it (`drained`) -> (range, past) of the pass then
        self._drained: dict[Receiver, tuple[int, str]] = {}

    def begin_pass(self, binds: Iterable[Receiver]) -> list[Receiver]:
        """A pass begins with `binds` bound. Returned: the binds it is for, those the passes before could not
        serve (the bind the read began for, those that appeared or drained during the last pass). One of these that is
        gone already counts too: the last pass parked MTs it would have taken (`parks`), which another bind, bound all
        along, may serve."""
        self.passes += 1
        self.range, self.past = 0, ""
        arrivals, self._arrivals = self._arrivals, []
        self._drained.clear()
        since = self._since
        for receiver in arrivals:  # (one that drained was still in `_since`: new to this pass too)
            since.pop(receiver, None)
        self._since = {r: since.get(r, self.passes) for r in binds}  # (binds gone since: forgotten)
        return [*(r for r, first in self._since.items() if first == self.passes), *arrivals]

    def arrived(self, receiver: Receiver) -> None:
        """A bind appeared during the pass, or one that parked MTs answers again or another of the account went
        (Delivery.answering, unbound): the read goes over the backlog again for it, and until then its MTs wait as for
        a bind that appeared."""
        self._since.pop(receiver, None)
        self._drained.pop(receiver, None)
        self._arrivals.append(receiver)

    def drained(self, receiver: Receiver) -> None:
        """A bind that parked MTs coming faster than it answered holds few again (Delivery.drained). If this pass is for
        it, it reads all that bind can take from where it has got to: the MTs of a subscriber it has not reached yet
        that the bind parked are ahead of it in the store, in order, and the pass goes on handing the bind what it
        reads (else a pass read the rest of the backlog only to park it again, and the next read it all again: each MT
        parked 2-3 times under a sustained overload). Those of a subscriber it reached, or is reaching (the last page
        may have parked older MTs of theirs), wait for the next pass (`parks`, `holds`), which is for this bind.
        Another bind is as one that appeared (`arrived`): this pass may not read all that it serves."""
        if self._since.get(receiver) != self.passes:
            self.arrived(receiver)
            return
        self._drained[receiver] = (self.range, self.past)
        self._arrivals.append(receiver)

    def holds(self, message: Message, receiver: Receiver) -> bool:
        """Whether an MT offered to `receiver` waits behind the read: older MTs to its subscriber wait here, or may
        still be in the store (the pass that began with `receiver` bound has not passed them yet, or had when
        `receiver` drained: what it parked before then waits for the next pass)."""
        if message.dest_addr in self.first:
            return True
        since = self._since.get(receiver)
        if since is None:  # it appeared during this pass
            return True
        if since != self.passes:
            return False
        return not self._passed(message) or (bool(self._drained) and self._reached_as_drained(message, receiver))

    def parks(self, message: Message, receiver: Receiver) -> bool:
        """Whether an MT this pass reads, routed to `receiver`, stays parked for the next pass (Delivery._parked_by_pass):
        the bind appeared during this pass, or drained during it when the pass was at the MT's subscriber."""
        return receiver not in self._since or (bool(self._drained) and self._reached_as_drained(message, receiver))

    def _reached_as_drained(self, message: Message, receiver: Receiver) -> bool:
        """Whether `receiver` drained during this pass (`drained`) when it had got to the MT's subscriber."""
        at = self._drained.get(receiver)
        return at is not None and (self._range_of(message), message.dest_addr) <= at

    def hold(self, message: Message) -> None:
        self.behind.append(message)
        first = self.first.get(message.dest_addr)
        if first is None or message.id < first:  # a replaced one is older
            self.first[message.dest_addr] = message.id

    def let_go(self, subscribers: set[str]) -> list[Message]:
        """The MTs held behind the read to these subscribers, taken out: every one of theirs (the read finds them in
        the store, in order)."""
        if not subscribers:
            return []
        gone = [message for message in self.behind if message.dest_addr in subscribers]
        self.behind[:] = [message for message in self.behind if message.dest_addr not in subscribers]
        for subscriber in subscribers:
            self.first.pop(subscriber, None)
        return gone

    def reached(self, range_index: int, past: str) -> list[Message]:
        """The current pass got to `past` in range `range_index`: the MTs held behind it whose subscriber it passed,
        taken out in the order they were accepted."""
        self.range, self.past = range_index, past
        passed, kept, first = [], [], {}
        for message in self.behind:
            if self._passed(message):
                passed.append(message)
            else:
                kept.append(message)
                if first.get(message.dest_addr, message.id) >= message.id:
                    first[message.dest_addr] = message.id
        self.behind[:] = kept
        self.first = first  # (anew: one taken back by cancel_sm or replace_sm left its subscriber's entry)
        passed.sort(key=_acceptance_order)
        return passed

    def _passed(self, message: Message) -> bool:
        index = self._range_of(message)
        return index < self.range or (index == self.range and message.dest_addr < self.past)

    def _range_of(self, message: Message) -> int:
        """The first of the read's ranges that holds MTs like this one; -1 if none (the read never hands them out)."""
        if addressed_account(message) is not None:
            return 0  # (addressed to this account: the only one whose binds it goes to)
        dest = message.dest_addr
        return next((i for i, prefix in enumerate(self.numbers, 1) if dest.startswith(prefix)), -1)


_ABOVE_ALL = "\U0010ffff"  # sorts after every address


def _served_prefixes(binds: Iterable[Receiver]) -> list[str] | None:
    """What every number these binds serve starts with (one of these, none starting with another), or None when one
    serves numbers no prefix bounds (no address_range, a range with no literal start) or there is none."""
    prefixes: set[str] = set()
    for bind in binds:
        own = range_prefixes(bind.address_range)
        if own is None:
            return None
        prefixes.update(own)
    if not prefixes:
        return None
    return [p for p in sorted(prefixes) if not p.startswith(tuple(q for q in prefixes if q != p))]


def _backlog_ranges(account: Account, prefixes: list[str] | None) -> Iterator[tuple[int, str | None, str, str]]:
    """The parts of the account's backlog a pass reads, as (BacklogRead range index, to_account, low, below), by
    (index, low): what is addressed to the account itself (index 0), then each of its number prefixes. With
    `prefixes` (_served_prefixes of the binds the pass is for), only the numbers starting with one of them: a bind
    whose address_range leaves a number out is given none of its MTs (Router._pick), so only those can have become
    deliverable, and a bind that appears for one number does not read, decode and route the whole backlog. An SP
    account's binds take all that is addressed to it, whatever their ranges (Router._route): it is read whole."""
    system_id = account.system_id
    if prefixes is None or account.is_sp:
        yield 0, system_id, "", _ABOVE_ALL
    else:
        for prefix in prefixes:
            yield 0, system_id, prefix, _after_prefix(prefix)
    if prefixes is None:
        for index, number in enumerate(account.numbers, 1):
            yield index, None, number, _after_prefix(number)
        return
    for index, number in enumerate(account.numbers, 1):
        for prefix in prefixes:
            if prefix.startswith(number):
                yield index, None, prefix, _after_prefix(prefix)
            elif number.startswith(prefix):
                yield index, None, number, _after_prefix(number)


def _account_of(bind: Receiver | None) -> str | None:
    """The account of the bind an attempt to deliver an MT went to, as a line about that attempt names it
    (`bind_account`); None: not known."""
    return bind.account.system_id if bind is not None else None


def _acceptance_order(message: Message) -> str:
    return message.id  # MessageIds sort in the order they were given out


def _after_prefix(prefix: str) -> str:
    """The least string above every string starting with `prefix` (digits, so never the top character)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else _ABOVE_ALL


def _about(message: Message, error: BaseException) -> dict[str, str]:
    """The fields of a line about an MT whose write failed with `error`."""
    return {"message_id": message.id, "account": account_of(message), "msisdn": subscriber_of(message), "error": str(error),
            **receipted(message)}


def _log_final(message: Message, status: MessageStatus) -> None:
    log.info("mt final", message_id=message.id, msisdn=subscriber_of(message), account=account_of(message), status=status.value,
             **receipted(message))  # fmt: skip
