"""Checks every submission passes before it is accepted, from state the services keep.

- a number blocked network-wide after spam reports cannot send (SPEC 3.3);
- a number a subscriber reported can no longer reach that subscriber;
- an SP's content reaches only subscribers with an active, confirmed
  subscription to one of its services on that service code (SPEC 2, 3.2).

The answers must be instant (they are on the submit_sm path), so the state is
held in memory: loaded at start, then kept current from every committed
effect (`observe`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from handlers.base import Catalogue

from .accounts import Account
from .smpp.constants import CommandStatus
from .store.base import Store
from .store.effects import Effect, Put
from .store.records import Block, Subscription

S = CommandStatus


class Guards:
    def __init__(self, catalogue: Catalogue) -> None:
        self._code_of = {entry.id: entry.service_code for entry in catalogue}
        self.network_blocked: set[str] = set()
        self.personal_blocks: set[tuple[str, str]] = set()  # (reported, reporter)
        self._blocks: dict[str, Block] = {}
        self._subscriptions: dict[str, tuple[str, str]] = {}  # active id -> (msisdn, service code)
        self._active: Counter[tuple[str, str]] = Counter()

    async def load(self, store: Store) -> None:
        self.observe(Put(b) for b in await store.find(Block, lifted_at=None))
        self.observe(Put(s) for s in await store.find(Subscription, status="active"))

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
        if source in self.network_blocked:
            return S.SMSGW_RSENDERBLOCKED, f"{source} is blocked network-wide after spam reports"
        if (source, dest) in self.personal_blocks:
            return S.SMSGW_RBLOCKEDBYRECIPIENT, f"{dest} reported {source} as spam"
        if account.role == "sp" and not self._active[(dest, source)]:
            return S.SMSGW_RNOSUBSCRIPTION, f"{dest} has no active confirmed subscription on {source}"
        return None

    def _block(self, block: Block) -> None:
        previous = self._blocks.pop(block.id, None)
        if previous is not None:
            self._unindex(previous)
        if block.lifted_at is None:
            self._blocks[block.id] = block
            if block.reporter:
                self.personal_blocks.add((block.reported, block.reporter))
            else:
                self.network_blocked.add(block.reported)

    def _unindex(self, block: Block) -> None:
        if block.reporter:
            self.personal_blocks.discard((block.reported, block.reporter))
        elif not any(b.reported == block.reported and not b.reporter for b in self._blocks.values()):
            self.network_blocked.discard(block.reported)

    def _subscription(self, subscription: Subscription) -> None:
        previous = self._subscriptions.pop(subscription.id, None)
        if previous is not None:
            self._active[previous] -= 1
            if self._active[previous] <= 0:
                del self._active[previous]
        code = self._code_of.get(subscription.service_id)
        if subscription.status == "active" and code is not None:
            key = (subscription.msisdn, code)
            self._subscriptions[subscription.id] = key
            self._active[key] += 1
