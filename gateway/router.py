"""Who gets an MT (SPEC section 2).

For subscriber X: the bind that last carried MO from X, if it is still bound
and can receive; else a receiver-capable bind of an account whose number
ranges cover X, preferring binds whose SMPP `address_range` matches X and
skipping those whose range excludes it; else nobody (the message waits in the store). Messages
addressed to an account (receipts for an SP, notices to an SP) go to that
account's binds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from .accounts import Account, Accounts

if TYPE_CHECKING:
    from .store.records import Message


class Receiver(Protocol):
    account: Account
    can_receive: bool
    load: int  # messages queued or in flight on this bind
    address_range: re.Pattern[str] | None  # from bind_*: the addresses this bind serves

    def offer(self, message: Message) -> None: ...


class Router:
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._receivers: dict[str, list[Receiver]] = {a.system_id: [] for a in accounts}
        self._affinity: dict[str, Receiver] = {}
        self._turn = itertools.count()

    def bound(self, receiver: Receiver) -> None:
        if receiver.can_receive:
            self._receivers[receiver.account.system_id].append(receiver)

    def unbound(self, receiver: Receiver) -> None:
        binds = self._receivers.get(receiver.account.system_id, [])
        if receiver in binds:
            binds.remove(receiver)
        # Affinity entries pointing at it are dropped lazily in route().

    def note_mo(self, msisdn: str, carrier: Receiver) -> None:
        self._affinity[msisdn] = carrier

    def route(self, message: Message) -> Receiver | None:
        to_account = message.extra.get("to_account") if message.extra else None
        dest = message.dest_addr
        recent = self._affinity.get(dest)
        if recent is not None:
            if recent.can_receive and recent in self._receivers.get(recent.account.system_id, ()):
                if to_account is None or recent.account.system_id == to_account:
                    return recent
            elif recent.account.system_id not in self._receivers or recent not in self._receivers[recent.account.system_id]:
                del self._affinity[dest]
        if to_account is not None:
            return self._pick(self._receivers.get(to_account, ()), dest)
        for account in self._accounts:
            if account.receives_for(dest):
                chosen = self._pick(self._receivers[account.system_id], dest)
                if chosen is not None:
                    return chosen
        return None

    def _pick(self, binds: Sequence[Receiver], dest: str) -> Receiver | None:
        if not binds:
            return None
        serving = [r for r in binds if r.address_range is not None and r.address_range.fullmatch(dest)]
        if not serving:
            serving = [r for r in binds if r.address_range is None]
        if len(serving) <= 1:
            return serving[0] if serving else None
        binds = serving
        # Least loaded, ties broken in turn so equal binds share the work.
        start = next(self._turn) % len(binds)
        ordered = binds[start:] + binds[:start]
        return min(ordered, key=lambda r: r.load)


def compile_address_range(address_range: str, plan_country_code: str) -> re.Pattern[str] | None:
    """A bind's address_range as a pattern over canonical numbers (None = serves any).

    SMPP 3.4 calls it a regular expression; plain digits are taken as one
    number, and a national number is widened to its international form.
    """
    text = address_range.strip()
    if not text:
        return None
    if text.lstrip("+").isdigit():
        digits = text.lstrip("+")
        return re.compile(f"(?:{re.escape(plan_country_code)})?{re.escape(digits)}|{re.escape(digits)}")
    try:
        return re.compile(text.lstrip("^").rstrip("$"))
    except re.error:
        return re.compile(re.escape(text))
