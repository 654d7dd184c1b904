"""Checks every submission passes before it is accepted, from state the services keep.

- a number blocked network-wide after spam reports cannot send (SPEC 3.3),
  except to the operator's own services (customer service, spam reporting,
  ratings): a wrongly blocked subscriber must still be able to query and
  unsubscribe (SPEC 3.1: "must take effect at once") and reach customer service;
- a number a subscriber reported can no longer reach that subscriber;
- an SP's content reaches only subscribers with an active, confirmed
  subscription to one of its services on that service code (SPEC 2, 3.2).
  What waited from an account no longer configured (removed or renamed since
  it was accepted) is an SP's content when it was sent from a code rather than
  a subscriber's number: it was no handset's or carrier's.

Delivery asks again (`undeliverable`) when it takes up an MT that waited (off
line subscriber, retry, schedule), or one accepted before the last change that
tightened these (its commit still on its way then): a block or an unsubscription
committed since it was accepted stops it too (SPEC 3.1: unsubscribing takes
effect at once), even if the subscriber ordered again meanwhile: an SP's content
goes out only if the subscriber's subscription on its code was active, without a
break, since before it was accepted (its active period began with a subscription
whose id is older than the MT's; one loaded at start began before anything waiting).
So does a network-wide block lifted meanwhile: what its sender had waiting when
it was blocked (accepted before the block began) ends as it would have during
the block, wherever it waited (an MT queued on a bind ends at the block itself),
and does not go out after the lift. Before and after are told by ids, not by the
clock: a message's and a block's come from one sequence, in the order they were
made, whatever a simulated clock was set to meanwhile.

The answers must be instant (they are on the submit_sm path), so the state is
held in memory: loaded at start, then kept current from every committed
effect (`observe`). It is held as tuples of strings and counters, not as the
records: blocks only accumulate (one per report), and tuples of strings are
left alone by the garbage collector, where 50,000 Block records made every
generation-1 collection scan them (bench/perf-log.md, session 5).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable

from handlers.base import Catalogue

from .accounts import Account
from .ids import made_by_message_ids
from .numbers import NumberPlan
from .smpp.constants import CommandStatus
from .store.base import Store
from .store.effects import Effect, Put
from .store.records import Block, Message, Subscription

S = CommandStatus


class Guards:
    def __init__(
        self, catalogue: Catalogue, sp_accounts: Iterable[str] = (), operator_codes: Iterable[str] = (),
        accounts: Iterable[str] = (), plan: NumberPlan | None = None,
    ) -> None:  # fmt: skip
        self._sp_accounts = frozenset(sp_accounts)  # system_ids of the SP accounts (Account.is_sp)
        self._not_sp = frozenset(accounts).difference(self._sp_accounts)  # those of the other accounts configured
        self._plan = plan or NumberPlan()
        self._operator_codes = frozenset(operator_codes)  # the operator's own services: reached even when blocked
        self._code_of = {entry.id: entry.service_code for entry in catalogue}
        # Active blocks: how many for each number blocked network-wide, and for each
        # (reported, reporter) pair (a number reported twice by one subscriber has two).
        self._network: Counter[str] = Counter()
        self._personal: Counter[tuple[str, str]] = Counter()
        self._blocks: dict[str, tuple[str, str]] = {}  # active block id -> (reported, reporter)
        self._subscriptions: dict[str, tuple[str, str]] = {}  # active id -> (msisdn, service code)
        # (msisdn, service code) with an active subscription -> the id of the subscription its active period began
        # with (made at its confirmation, from the sequence MT ids come from: an MT with a lower one was accepted
        # before the subscriber ordered again; "" for one whose id is not of that sequence: it stops nothing); the
        # active subscriptions on that code beyond the first (two services sharing it).
        self._active: dict[tuple[str, str], str] = {}
        self._also_active: Counter[tuple[str, str]] = Counter()
        self._lifted: dict[str, str] = {}  # number -> the id of the last of its lifted network-wide blocks
        # Changes that may stop MTs accepted before them (a block, an unsubscription): binds ask their queues
        # again, about the MTs to the recipients these concern (`recipients_since`).
        self.tightened = 0
        self._tightenings: deque[str | None] = deque(maxlen=256)  # the recipient each of the last concerns (None: any)
        # Told (sender, recipient or None: anyone) of each: Delivery.refuse_waiting, set once the guards are loaded.
        self.on_tightened: Callable[[str, str | None], None] | None = None

    async def load(self, store: Store) -> None:
        self.observe(Put(b) for b in await store.find(Block, lifted_at=None))
        self.observe(Put(b) for b in await store.find(Block, reporter="", lifted_at__gt=0))  # few: lifts are rare
        # Loaded, an active period's beginning is not known (a subscription cancelled meanwhile on a code two services
        # share may have begun it, and is not read): it stops nothing accepted before (a break the sweep had not
        # acted on when the gateway stopped is the sweep's at the start, as before such beginnings were kept).
        for subscription in await store.find(Subscription, status="active"):
            self._subscription(subscription, loaded=True)

    def observe(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if not isinstance(effect, Put):
                continue
            record = effect.record
            if isinstance(record, Block):
                self._block(record)
            elif isinstance(record, Subscription):
                self._subscription(record)

    def check(self, account: Account, source: str, dest: str) -> tuple[int, str] | None:
        """(command_status, reason) when the submission must be refused, else None."""
        from_sp = account.is_sp
        if from_sp or source in self._network or (source, dest) in self._personal:  # else no call: every submit_sm asks
            return self._refusal(source, dest, from_sp)
        return None

    def stops(self, account: str, source: str, dest: str) -> bool:
        """Whether what `account` (a system_id; "": the gateway) sent from source to dest may no longer go out, or
        some of it: what waited through a lifted network-wide block (`undeliverable` says which, by id)."""
        if not account:
            return False
        if self._lifted and source in self._lifted and dest not in self._operator_codes:
            return True
        return self._refusal(source, dest, self._from_sp(account, source)) is not None

    def undeliverable(self, message: Message) -> tuple[int, str] | None:
        """(command_status, reason) when an MT accepted earlier may no longer go out, else None. Only what an
        account submitted: what the gateway made (account "": receipts, SP notices, service replies) names a
        subscriber as its source_addr without being theirs, and must reach its receiver whatever they did."""
        if not message.account:
            return None
        source, dest = message.source_addr, message.dest_addr
        from_sp = self._from_sp(message.account, source)
        refusal = self._refusal(source, dest, from_sp)
        if refusal is None and from_sp and message.id < self._active[(dest, source)]:
            return S.SMSGW_RNOSUBSCRIPTION, f"{dest} unsubscribed from {source} while this waited (ordered again since)"
        if refusal is None and self._lifted:
            lifted = self._lifted.get(source)
            if lifted is not None and message.id < lifted and dest not in self._operator_codes:
                return S.SMSGW_RSENDERBLOCKED, f"{source} was blocked network-wide after spam reports while this waited (lifted since)"
        return refusal

    def _from_sp(self, account: str, source: str) -> bool:
        """Whether what `account` sent from `source` is an SP's content: an sp account's, or one no longer configured
        that sent it from a code, not a subscriber's number (one set lookup for a handset's or a carrier's MT)."""
        return account not in self._not_sp and (account in self._sp_accounts or not self._plan.is_msisdn(source))

    def _refusal(self, source: str, dest: str, from_sp: bool) -> tuple[int, str] | None:
        if source in self._network and dest not in self._operator_codes:
            return S.SMSGW_RSENDERBLOCKED, f"{source} is blocked network-wide after spam reports"
        if (source, dest) in self._personal:
            return S.SMSGW_RBLOCKEDBYRECIPIENT, f"{dest} reported {source} as spam"
        if from_sp and (dest, source) not in self._active:
            return S.SMSGW_RNOSUBSCRIPTION, f"{dest} has no active confirmed subscription on {source}"
        return None

    def _block(self, block: Block) -> None:
        if block.lifted_at is not None and not block.reporter:
            # Its id, made when the block began: ids sort in the order they were made (gateway/ids.py), while a
            # simulated clock set back after a lift (QA going back to today) stamped later MTs before the block.
            self._lifted[block.reported] = max(block.id, self._lifted.get(block.reported, block.id))
        previous = self._blocks.pop(block.id, None)
        if previous is not None:
            self._count(*previous, -1)
        if block.lifted_at is None:
            self._blocks[block.id] = (block.reported, block.reporter)
            self._count(block.reported, block.reporter, +1)
            if previous is None:
                self._tighten(block.reported, block.reporter or None)  # a network-wide one (no reporter): anyone

    def _tighten(self, sender: str, recipient: str | None) -> None:
        self.tightened += 1
        self._tightenings.append(recipient)
        if self.on_tightened is not None:
            self.on_tightened(sender, recipient)

    def recipients_since(self, seen: int) -> frozenset[str] | None:
        """The recipients whose MTs what tightened after `seen` (a `tightened` read earlier) may stop; None:
        anyone's (a network-wide block among them, or more changes than are kept)."""
        new = self.tightened - seen
        if new > len(self._tightenings):
            return None
        recent = list(self._tightenings)[len(self._tightenings) - new:]
        return None if None in recent else frozenset(recent)

    def _count(self, reported: str, reporter: str, change: int) -> None:
        counts, key = (self._personal, (reported, reporter)) if reporter else (self._network, reported)
        counts[key] += change
        if counts[key] <= 0:
            del counts[key]  # membership is what `check` asks

    def _subscription(self, subscription: Subscription, loaded: bool = False) -> None:
        previous = self._subscriptions.pop(subscription.id, None)
        if previous is not None:
            if self._also_active[previous]:  # another stays active on the code: its active period goes on
                self._also_active[previous] -= 1
                if not self._also_active[previous]:
                    del self._also_active[previous]
            else:
                del self._active[previous]
                msisdn, code = previous
                self._tighten(code, msisdn)
        code = self._code_of.get(subscription.service_id)
        if subscription.status == "active" and code is not None:
            key = (subscription.msisdn, code)
            self._subscriptions[subscription.id] = key
            if key in self._active:
                self._also_active[key] += 1
            else:
                self._active[key] = subscription.id if not loaded and made_by_message_ids(subscription.id) else ""
