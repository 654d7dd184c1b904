"""Who gets an MT (SPEC section 2).

For subscriber X: the bind that last carried MO from X, if it is still bound
and can receive (remembered for the AFFINITY_LIMIT subscribers noted last); else a receiver-capable bind of an account whose number
ranges cover X, preferring binds whose SMPP `address_range` matches X and
skipping those whose range excludes it, and for a text longer than an SMPP 3.3 deliver_sm carries, binds of
SMPP 3.4 only; else nobody (the message waits in the store). Messages
addressed to an account (receipts, notices to an SP) go to that account's
binds, the same way; if none's `address_range` serves their number, to the
bind that last sent from it, else (an SP account's) to any of them, whatever its range. A bind that left a
deliver_sm unanswered (`stalled`) is chosen only when no other bind would take the MT.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import re2

from .accounts import Account, Accounts
from .logs import get_logger
from .messages import account_of, addressed_account, carried_without_tlvs, subscriber_of

if TYPE_CHECKING:
    from .numbers import NumberPlan
    from .store.records import Message


class AddressRange(Protocol):
    """A compiled address_range (compile_address_range)."""

    def search(self, text: str) -> object | None: ...


class Receiver(Protocol):
    account: Account
    can_receive: bool
    load: int  # messages queued or in flight on this bind
    address_range: AddressRange | None  # from bind_*: the addresses this bind serves
    optional_parameters: bool  # False for a bind of SMPP 3.3: no TLVs, so no message_payload
    mo_numbers: set[str]  # the subscribers whose MO it carried last (kept by the Router: affinity)
    stalled: bool  # a deliver_sm timed out here and none was answered since, or its peer is not reading (Router.stalled)
    holding: bool  # it holds MTs handed to it from a stalled bind (kept by the Router: Router.handed)

    def offer(self, message: Message, again: bool = False) -> None:
        """Queue or send an MT; `again`: one queued before (replaced, retried, handed back by another bind), which goes
        ahead of the newer MTs queued to its subscriber."""

    def withdraw(self, message_id: str) -> Message | None:
        """The MT if it is queued on this bind and not yet sent (taken off the queue), else None."""

    def take_queued(self, subscriber: str) -> list[Message]:
        """The MTs queued on this bind to `subscriber`, not yet sent nor frozen, taken off the queue."""

    def abandon(self, message_id: str) -> bool:
        """This MT was acknowledged through another bind after all: off this bind's queue, or its deliver_sm in flight
        here no longer awaited (its answer and its timeout go unheeded); False if this bind has it in neither."""

    def freeze(self, message_id: str) -> bool:
        """Keep an MT queued here and not yet sent in its place, unsent with the MTs after it to its subscriber, until
        `thaw`; False if it is not queued here."""

    def thaw(self, message_id: str, replacement: Message | None) -> bool:
        """End `freeze`: `replacement` takes the MT's place (None: it leaves); False if the bind no longer has it."""

    def hand_over(self) -> None:
        """Stalled: the MTs queued here that another bind would take go to it (Router.route), in order per subscriber."""

    def may_log(self, kind: str) -> bool:
        """Whether a line of `kind` about this bind's misbehaviour is to be written (the first few from its peer's host
        and account), or only counted."""


# Subscribers whose bind of their last MO is remembered (~0.18 KB each with the bind's mo_numbers: ~45 MB); beyond it
# the one noted longest ago is forgotten, and MTs to them go to a bind of their account's numbers, as to a subscriber
# who never sent an MO, until their next MO. A carrier bind up for months carried MO from millions of subscribers and
# kept an entry for each for as long as it stayed bound.
AFFINITY_LIMIT = 250_000


class Router:
    def __init__(self, accounts: Accounts, affinity_limit: int = AFFINITY_LIMIT) -> None:
        self._receivers: dict[str, list[Receiver]] = {a.system_id: [] for a in accounts}
        self._affinity: OrderedDict[str, Receiver] = OrderedDict()  # subscriber -> bind, the longest noted first
        self.affinity_limit = affinity_limit
        self._turn = itertools.count()
        self._ranged = 0  # receiving binds that gave an address_range: while 0, every bind serves every number
        self._stalled = 0  # bound binds that are `stalled`: while 0, route() asks nothing more about them
        self._answering: dict[str, list[Receiver]] = {a.system_id: [] for a in accounts}  # the binds not stalled
        # Subscriber -> the bind that was handed their MTs queued on a stalled one (`handed`), while it holds some:
        # their next MTs go there too, not ahead of them to a bind routing would otherwise choose.
        self._handed: dict[str, Receiver] = {}
        self._holders: dict[Receiver, set[str]] = {}  # the same, by bind
        # Accounts that receive for MSISDN ranges (an SP account has none), in config order.
        self._by_number = [a for a in accounts if a.numbers]
        self.sp_accounts = frozenset(a.system_id for a in accounts if a.is_sp)  # by name, for receipts.make_receipt

    def bound(self, receiver: Receiver) -> None:
        binds = self._receivers[receiver.account.system_id]
        # Once: unbound() takes it out once, and a second entry kept routing MTs to a closed connection.
        if receiver.can_receive and receiver not in binds:
            binds.append(receiver)
            if receiver.address_range is not None:
                self._ranged += 1
            self._sort_out(receiver.account.system_id)

    def unbound(self, receiver: Receiver) -> None:
        binds = self._receivers.get(receiver.account.system_id, [])
        if receiver in binds:
            binds.remove(receiver)
            if receiver.address_range is not None:
                self._ranged -= 1
            if receiver.stalled:
                receiver.stalled = False
                self._stalled -= 1
            self._sort_out(receiver.account.system_id)
        self.released(receiver)
        # Now, not when an MT to each of them comes: a subscriber who texts once kept the closed bind alive.
        affinity = self._affinity
        for msisdn in receiver.mo_numbers:
            if affinity.get(msisdn) is receiver:
                del affinity[msisdn]
        receiver.mo_numbers.clear()

    def receivers_of(self, system_id: str) -> Sequence[Receiver]:
        """The account's binds that can take MTs now."""
        return self._receivers.get(system_id, ())

    def answering_of(self, system_id: str) -> Sequence[Receiver]:
        """The account's binds that MTs go to first: those not `stalled`, or all of them if every one is."""
        return self._answering.get(system_id) or self.receivers_of(system_id)

    def all_receivers(self) -> Iterator[Receiver]:
        for binds in self._receivers.values():
            yield from binds

    def note_mo(self, msisdn: str, carrier: Receiver) -> None:
        affinity = self._affinity
        previous = affinity.get(msisdn)
        if previous is carrier:  # the common case: the subscriber's bind again, now the last noted
            affinity.move_to_end(msisdn)
            return
        if previous is not None:
            previous.mo_numbers.discard(msisdn)
            del affinity[msisdn]  # (noted again below: now the last noted)
        if carrier.can_receive:
            affinity[msisdn] = carrier
            carrier.mo_numbers.add(msisdn)
            if len(affinity) > self.affinity_limit:  # the one noted longest ago is forgotten (AFFINITY_LIMIT)
                forgotten, bind = affinity.popitem(last=False)
                bind.mo_numbers.discard(forgotten)

    def note_failure(self, msisdn: str, receiver: Receiver) -> None:
        """A deliver_sm to `msisdn` timed out or was refused for now on `receiver`: the bind of its MO is no longer
        where its MTs go first (they go to the least busy bind serving it, until its next MO)."""
        if self._affinity.get(msisdn) is receiver:
            del self._affinity[msisdn]
            receiver.mo_numbers.discard(msisdn)

    def stalled(self, receiver: Receiver) -> None:
        """A deliver_sm timed out on `receiver`, or its peer stopped reading: until it answers one (`answered`; or
        reads again), MTs go to any other bind that serves their subscriber, and to it only if none does (route). A
        bind may answer enquire_link and never deliver_sm: its subscribers' MTs waited there, one window per
        response_timeout, a healthy bind idle."""
        if not receiver.stalled and receiver in self._receivers.get(receiver.account.system_id, ()):
            receiver.stalled = True
            self._stalled += 1
            self._sort_out(receiver.account.system_id)

    def answered(self, receiver: Receiver) -> None:
        """`receiver` answered a deliver_sm (late or not): a bind like any other again."""
        if receiver.stalled:  # (bound: unbound() clears it)
            receiver.stalled = False
            self._stalled -= 1
            self._sort_out(receiver.account.system_id)

    def handed(self, receiver: Receiver, msisdns: Iterable[str]) -> None:
        """`receiver` was handed MTs to these subscribers from a stalled bind: until it holds none (`released`), their
        next MTs go to it too. Else the stalled bind, answering again, or one preferred by its address_range, took
        the next one ahead of those still queued here."""
        receiver.holding = True
        held = self._holders.setdefault(receiver, set())
        for msisdn in msisdns:
            self._handed[msisdn] = receiver
            held.add(msisdn)

    def released(self, receiver: Receiver) -> None:
        """`receiver` holds no more MTs handed to it (its queue ran empty), or went away."""
        receiver.holding = False
        handed = self._handed
        for msisdn in self._holders.pop(receiver, ()):
            if handed.get(msisdn) is receiver:
                del handed[msisdn]

    def stalled_binds(self) -> list[Receiver]:
        """The binds `stalled` now (none to look for while the count says none)."""
        if not self._stalled:
            return []
        return [r for binds in self._receivers.values() for r in binds if r.stalled]

    def _sort_out(self, system_id: str) -> None:
        self._answering[system_id] = [r for r in self._receivers[system_id] if not r.stalled]

    def serves(self, msisdn: str) -> bool:
        """Whether a bind that can receive serves the subscriber now (so nothing to them waits parked in the store,
        but for a backlog being read, which hands each MT to delivery's checks). The bind they last sent from serves
        them only if its address_range does (`_route`): one may send from a number its range leaves out."""
        recent = self._affinity.get(msisdn)
        if recent is not None and in_range(recent, msisdn):
            return True
        for account in self._by_number:
            if msisdn.startswith(account.numbers):
                binds = self._receivers[account.system_id]
                if any(in_range(r, msisdn) for r in binds):
                    return True
        return False

    def route(self, message: Message, avoid: Receiver | None = None, tell: bool = True) -> Receiver | None:
        """The bind to offer `message` to (None: it waits in the store); `avoid`, or a `stalled` bind, only if no other
        bind can take it. `tell`: log that it waits for a bind of SMPP 3.4 (once, when it begins to: not at each
        backlog read)."""
        if self._handed:
            holder = self._handed.get(message.dest_addr)
            if holder is not None and holder is not avoid and not holder.stalled and carries(holder, message):
                return holder
        # (the affinity holds bound receivers only: unbound() drops the entries of one that goes)
        recent = self._affinity.get(message.dest_addr)
        if avoid is not None or self._stalled:
            chosen = self._route_around(message, recent, avoid)
            if chosen is not None:
                return chosen
        chosen = self._route(message, recent, self._receivers)
        if chosen is not None and not chosen.optional_parameters and not carried_without_tlvs(message):  # carries(),
            chosen = self._of_smpp34(message, self._receivers, tell)  # inlined: every MT comes this way
        return chosen

    def _route_around(self, message: Message, recent: Receiver | None, avoid: Receiver | None) -> Receiver | None:
        """The bind route() would choose if `avoid` and the `stalled` binds were not bound (None if none could take
        the message)."""
        others = self._answering
        if avoid is not None:
            others = {system_id: [r for r in binds if r is not avoid] for system_id, binds in others.items()}
        if recent is not None and (recent is avoid or recent.stalled):
            recent = None
        chosen = self._route(message, recent, others)
        if chosen is not None and not carries(chosen, message):
            chosen = self._of_smpp34(message, others, tell=False)
        return chosen

    def _of_smpp34(self, message: Message, receivers: dict[str, list[Receiver]], tell: bool = True) -> Receiver | None:
        """More than an SMPP 3.3 deliver_sm carries (it has no message_payload): a bind of SMPP 3.4 that serves the
        destination, else nobody: it waits in the store for one (a link dropped for a moment, binds coming back in any
        order), or until its validity ends. `tell`: log that it waits."""
        able = {system_id: [r for r in binds if r.optional_parameters] for system_id, binds in receivers.items()}
        chosen = self._route(message, None, able)
        if chosen is None and tell:
            log.info("mt waits for a bind of SMPP 3.4: longer than an SMPP 3.3 deliver_sm carries",
                     message_id=message.id, account=account_of(message), msisdn=subscriber_of(message),
                     octets=len(message.short_message))  # fmt: skip
        return chosen

    def _route(self, message: Message, recent: Receiver | None, receivers: dict[str, list[Receiver]]) -> Receiver | None:
        to_account = message.extra.get("to_account") if message.extra else None  # (messages.addressed_account, inline)
        dest = message.dest_addr
        # Not to a bind whose address_range leaves `dest` out: it never read dest's waiting MTs, which the new
        # ones would overtake there.
        if recent is not None and (to_account is None or recent.account.system_id == to_account) and (
            recent.address_range is None or recent.address_range.search(dest)
        ):
            return recent
        if to_account is not None:
            binds = receivers.get(to_account, ())
            chosen = self._pick(binds, dest)
            if chosen is None and recent is not None and recent.account.system_id == to_account:
                # No bind's range serves `dest`: the bind that last sent from it (its account vouches for its numbers,
                # whatever that bind's range), usually the one that submitted the MT this receipt reports on.
                return recent
            if chosen is None and binds and binds[0].account.is_sp:
                # Else an SP's least busy bind: it asked for what is addressed to it (receipts, notices), whatever its
                # binds' ranges (SMPP 3.4 5.2.7: the addresses a bind serves, for MO). A handset's receipt goes to its
                # subscriber's own bind, never to another subscriber's.
                return self._least_loaded(binds)
            return chosen
        for account in self._by_number:
            binds = receivers[account.system_id]
            # A bind of the account, which serves the number (one with no bind is passed over before the prefix test:
            # startswith costs several times the dict read)
            if binds and dest.startswith(account.numbers):
                chosen = self._pick(binds, dest)
                if chosen is not None:
                    return chosen
        return None

    def _pick(self, binds: Sequence[Receiver], dest: str) -> Receiver | None:
        if not binds:
            return None
        if self._ranged:
            serving = [r for r in binds if r.address_range is not None and r.address_range.search(dest)]
            if not serving:
                serving = [r for r in binds if r.address_range is None]
        else:
            serving = binds  # no bind narrowed itself with an address_range: all serve (no lists per message)
        if len(serving) <= 1:
            return serving[0] if serving else None
        return self._least_loaded(serving)

    def _least_loaded(self, binds: Sequence[Receiver]) -> Receiver:
        """Least loaded, ties broken in turn (the first from a rotating start) so equal binds share the work."""
        start = next(self._turn) % len(binds)
        best = binds[start]
        least = best.load
        # In order from the rotating start: the rest of the list, then its beginning (no index arithmetic per bind).
        for part in (binds[start + 1 :], binds[:start]):
            for candidate in part:
                if candidate.load < least:
                    best, least = candidate, candidate.load
        return best


def could_take(receiver: Receiver, message: Message) -> bool:
    """Whether `receiver` may be chosen for an MT to its account (not for its load, nor the subscriber's last MO): its
    address_range does not leave the subscriber out, or the MT is addressed to its account, an SP's (Router._route:
    any of an SP's binds, whatever its range); and a deliver_sm on it carries the MT."""
    return (in_range(receiver, message.dest_addr) or _to_its_sp(receiver, message)) and carries(receiver, message)


def _to_its_sp(receiver: Receiver, message: Message) -> bool:
    """Whether the MT is addressed to `receiver`'s account, an SP's (its receipts, its notices)."""
    account = receiver.account
    return account.is_sp and addressed_account(message) == account.system_id


def in_range(receiver: Receiver, number: str) -> bool:
    """Whether the bind's address_range (if it gave one) does not leave `number` out. (Router._route tests its
    `recent` bind so inline: once per MT.)"""
    return receiver.address_range is None or bool(receiver.address_range.search(number))


def carries(receiver: Receiver, message: Message) -> bool:
    """Whether a deliver_sm on `receiver` can carry the MT: any on a bind of SMPP 3.4; on one of 3.3 (no TLVs, so no
    message_payload), only what fits its short_message."""
    return receiver.optional_parameters or carried_without_tlvs(message)


# A client's address_range is searched for every MT routed to its account, on the event loop: RE2 matches in time
# linear in the number, where a backtracking engine (`re`) spends seconds to hours on a pattern such as
# `(\d|\d|\d)*!` and the whole gateway waits. Errors are ours to report (a bad pattern is no fault of the gateway).
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
# Python's spellings RE2 writes otherwise, which clients (and earlier versions of this gateway) used: `\Z` (end)
# and `{,n}` (0 to n times).
_PYTHON_ONLY = ((re.compile(r"(?<!\\)((?:\\\\)*)\\Z"), r"\1\\z"), (re.compile(r"(?<!\\)((?:\\\\)*)\{,(\d+)\}"), r"\1{0,\2}"))
log = get_logger("router")


def compile_address_range(address_range: str, plan: NumberPlan, **about: str) -> AddressRange | None:
    """A bind's address_range as a pattern over canonical numbers, to `search` them with (None = serves any).

    SMPP 3.4 (5.2.7) calls it a UNIX regular expression: it serves a number
    it matches anywhere in, `^` and `$` anchoring it as usual (`^86130` is
    every number starting 86130). Plain digits are taken as one number (what
    a client binding for one subscriber means), in any form the number plan
    reads (`+86 138…`, `0086-138…`, national: NumberPlan.normalise); text
    that is not a regular expression RE2 accepts (RE2 has no backreferences
    or lookaround), as that literal number (a warning says so, with `about`: the bind's peer and account).
    """
    text = address_range.strip()
    if not text:
        return None
    number = plan.normalise(text)
    if number.isascii() and number.isdigit():
        country_code = plan.country_code
        return _compile(f"^(?:{re2.escape(country_code)})?{re2.escape(number)}$", (number, country_code + number))
    for spelling, rewritten in _PYTHON_ONLY:
        text = spelling.sub(rewritten, text)
    try:
        return _compile(text, _literal_start(text))
    except re2.error as exc:
        log.warning("address_range is no regular expression RE2 takes; it serves the one number written so",
                    address_range=address_range, reason=_re2_reason(exc), **about)  # fmt: skip
        return _compile(f"^{re2.escape(text)}$", (text,))


def _re2_reason(error: Exception) -> str:
    """What RE2 said is wrong with a pattern: its message is bytes (str() of the error read "b'missing ]: ['")."""
    said = error.args[0] if error.args else error
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


def range_prefixes(address_range: AddressRange | None) -> tuple[str, ...] | None:
    """What every number a bind's address_range matches starts with (one of these), or None: not known (no range,
    one no literal start bounds, or a pattern not compiled by compile_address_range). A bind's backlog read reads
    only these (Delivery._pull)."""
    return getattr(address_range, "prefixes", None)


def leaves_out_every(address_range: AddressRange | None, numbers: tuple[str, ...]) -> bool:
    """Whether a bind's address_range matches no number starting with any of `numbers` (an account's prefixes), as far
    as its literal start tells (`^130` written nationally, where numbers are kept as 86130...): no MT to the account's
    subscribers is routed to that bind. False when unknown (no range, no literal start, no prefixes)."""
    starts = range_prefixes(address_range)
    if not starts or not numbers:
        return False
    return not any(start.startswith(number) or number.startswith(start) for start in starts for number in numbers)


def _literal_start(pattern: str) -> tuple[str, ...] | None:
    """The digits every match of a regular expression starts with, as written after its `^` (`^86138\\d{8}$`: 8613),
    or None when they bound nothing: unanchored, an alternation (anywhere: read no further), no digit first. Each digit
    of the run but its last is followed by a digit, so it must be there; the last must only where the run ends the
    pattern (or a `$` does): whatever follows may make it optional or repeat it (`^8613?`, and `^8613(?i)?` or
    `^8613\\Q\\E?`, whose quantifier follows something that matches nothing, so applies to the 3)."""
    if not pattern.startswith("^") or "|" in pattern:
        return None
    digits = _LEADING_DIGITS.match(pattern, 1).group()  # type: ignore[union-attr]  (it matches the empty string)
    if pattern[1 + len(digits) :] not in ("", "$"):
        digits = digits[:-1]
    return (digits,) if digits else None


_LEADING_DIGITS = re.compile("[0-9]*")


def _compile(pattern: str, prefixes: tuple[str, ...] | None) -> AddressRange:
    return _Remembered(re2.compile(pattern, _RE2_OPTIONS), prefixes)


class _Remembered:
    """A compiled address_range that remembers its answers: a bind is asked about the same subscribers again and
    again, and each RE2 search costs ~4.6 us of Python wrapping (~5% of the loop under the dialogue mix)."""

    __slots__ = ("_known", "_search", "prefixes")
    LIMIT = 10_000  # numbers remembered; then it starts again (a bind serving millions sees few twice in a row)

    def __init__(self, pattern: Any, prefixes: tuple[str, ...] | None) -> None:
        self._search = pattern.search
        self._known: dict[str, bool] = {}
        self.prefixes = prefixes  # what every number it matches starts with (range_prefixes)

    def search(self, text: str) -> bool:
        known = self._known
        found = known.get(text)
        if found is None:
            if len(known) >= self.LIMIT:
                known.clear()
            found = known[text] = self._search(text) is not None
        return found
