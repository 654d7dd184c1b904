"""MO to a short code: reassemble, hand to its handler, commit, deliver the replies.

The MO is committed before it is acknowledged. Marking it processed, applying
the handler's effects and storing its replies happen in one transaction, so
after a crash an MO is either still `accepted` (and handled again at start,
on the same state) or done with everything it caused: never handled twice,
never lost. MOs are handled one at a time per subscriber (and per any other
key their handler names, e.g. the number a spam report is about), so each
sees what the previous one committed, in the order they arrived.

An MO that nothing holds up (one part, its serial keys free, no earlier MO of
its subscriber still on its way, no copy of it stored) is handled as soon as
it arrives and stored `processed` in the same transaction as its handling:
one commit instead of two before the reply, and the acknowledgement and the
replies go out after it. So is one whose keys are held by MOs of a handler
that hands its keys on (below), when few wait for them (`HELD_WAITERS`): it
waits for them unstored, behind handlings rather than commits (the victims
of one spam text report its number together). Any other MO is committed
`accepted` first and handled in its turn (`_receive`).

A handler whose reads all go through the record cache (`hands_keys_on`: the
spam reports, which queue on the reported number) hands its keys on as soon as
its commit is issued, not once it is done: its effects go to the cache then,
and the next holder's commit names it (`Store` `after`), so that one fails
too, and is tried again, if this one's commit fails (`_commit_handling`).

An MO whose handling fails (its handler raises, a reply it decided cannot be
made into SMS, or the commit of what it decided fails) stays `accepted` and is tried again after each delay of
`retry_backoff`, under its serial keys like any MO; the subscriber's later MOs
do not wait for it. (One held unstored whose commit fails while the store cannot
commit at all is not stored alone after it: its submission fails, as any does
then.) After the last delay it is given up: stored `failed`, its
subscriber told the short code could not handle it (`common.unavailable`),
never handled again. One whose reply no SMS can carry is given up at once, its
subscriber told that it cannot be answered (`common.unanswerable`), not to send
it again later. A restart in between tries every `accepted` MO again from
the start of the schedule (`replay`); one whose stored row cannot be handled
there (damaged while the gateway was down: it does not read back, or its parts
or TLVs do not parse) is given up, stored `failed` with no reply, and the
start goes on (as it does past one whose replay fails otherwise, left `accepted`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial

from handlers.base import Handler, Inbound, Outcome, Reply, ServiceContext
from handlers.silent import SilentHandler

from .clock import Clock
from .log_budget import LogBudget, LogBudgets
from .logs import get_logger
from .messages import is_acknowledgement, stored_tlvs
from .outbox import Outbox
from .receipts import receipt_for
from .refusal import Rejection
from .serial import SerialLocks, in_order
from .smpp import text as smpp_text
from .smpp.constants import CommandStatus, MessageState
from .smpp.segment import Concat, Reassembler, TextTooLong, concat_info
from .store.base import Store
from .store.cache import RecordCache
from .store.effects import Effect
from .store.records import Message, MessageStatus, UnreadableMo

log = get_logger("mo")
_DELIVERED = MessageState.DELIVERED  # an MO handled by its short code is delivered
_UNDELIVERABLE = MessageState.UNDELIVERABLE  # ... and one given up is not
_SYSTEM_ERROR = int(CommandStatus.ESME_RSYSERR)  # the `err:` of a given-up MO's receipt: the fault is ours
# What a part of a long MO holds while it waits for the others besides its text (`_held`): its Message (id,
# addresses, times, UDH) and its entries here and in the reassembler. Counted with the text against the
# reassembler's max_octets: parts of a few octets each, up to 255 to a text, hold this much each all the same.
_PART_HELD = 1024
_DROPPED = "incomplete long MO dropped"  # its line's event, and its kind in the gateway's log budgets (_give_up)
# What handles an SME acknowledgement to a short code (`MoProcessor._serving`): nothing, no reply and no effect.
_ACKNOWLEDGED = SilentHandler()
# Told how the submission of an MO ended, once it is: answer(result, None) with result (id, duplicate), or
# answer(None, error); returns True when it is a new message stored (not a copy, not failed).
Answer = Callable[[tuple[str, bool] | None, BaseException | None], bool]


class _Holding:
    """The serial keys an MO holds while it is handled: released once, when it is done or handed on earlier."""

    __slots__ = ("held", "keys", "locks")

    def __init__(self, locks: SerialLocks, keys: tuple[str, ...]) -> None:
        self.locks, self.keys, self.held = locks, keys, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.locks.release(self.keys)

    def hand_on(self, commit: Awaitable) -> None:
        """Released before the holder's commit is done (SerialLocks.hand_on)."""
        self.held = False
        self.locks.hand_on(self.keys, commit)


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What follows a completed dialogue (a sampled survey): `mark`, committed with the MO's handling, says it is
    due, so that a crash before `run` (awaited after that commit, under the MO's serial keys) does not lose it;
    `run` commits what follows and removes the mark."""

    mark: Effect
    run: Callable[[], Awaitable[object]]


@dataclass(slots=True)
class ShortCode:
    code: str
    handler: Handler
    context: ServiceContext


def serial_keys(short_code: ShortCode, inbound: Inbound) -> list[str]:
    """What this MO must hold one at a time: the subscriber, unless its handler names its own keys."""
    keys_of = getattr(short_code.handler, "serial_keys", None)
    return keys_of(inbound, short_code.context) if keys_of is not None else [inbound.subscriber]


def _inbound(message: Message, text: str, mo_ids: tuple[str, ...]) -> Inbound:
    return Inbound(
        subscriber=message.source_addr,
        short_code=message.dest_addr,
        text=text,
        received_at=message.submitted_at,
        message_ids=mo_ids,
    )


def _about_stored_mo(message: Message | UnreadableMo) -> dict[str, str]:
    """The fields a line about a stored MO names it by."""
    return {"message_id": message.id, "account": message.account, "msisdn": message.source_addr,
            "short_code": message.dest_addr}  # fmt: skip


def _concat_info(message: Message) -> tuple[Concat | None, bytes]:
    """Which part of a long message this MO is (None: a whole one), and its text's bytes."""
    tlvs = stored_tlvs(message)
    return concat_info(message.esm_class, message.short_message, tlvs)


def _held(message: Message, body: bytes) -> tuple[Message, bytes | memoryview]:
    """What is kept of a part of a long MO until the others come: its Message without its TLVs (they are stored,
    and neither its receipt nor giving it up reads them), and its text as a view of that Message's octets, not a
    second copy. Held whole, a part padded with 60,000 octets of a vendor TLV kept them all, counted as its 2
    octets of text against max_octets: 8,000 such parts grew the gateway by 490 MB."""
    held = replace(message, tlvs=b"") if message.tlvs else message
    octets = message.short_message
    if body is not octets and octets.endswith(body):  # its text after a UDH: the same octets
        body = memoryview(octets)[len(octets) - len(body) :]
    return held, body


class MoProcessor:
    # An MO of a handler that hands its keys on waits for them unstored (and unanswered: its submission is answered
    # with its handling's commit) only behind fewer than this many others; behind more it is committed first, so a
    # client's window does not fill up with MOs waiting for one much-reported number.
    HELD_WAITERS = 8

    def __init__(
        self,
        short_codes: dict[str, ShortCode],
        store: Store,
        outbox: Outbox,
        clock: Clock,
        *,
        reassembly_timeout: float,
        complaints: LogBudgets,
        max_incomplete_per_subscriber: int = 8,
        retry_backoff: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0),
        records: RecordCache | None = None,
        observe: Callable[[Iterable[Effect]], None] = lambda effects: None,
        after_dialogue: Callable[[Inbound], FollowUp | None] = lambda inbound: None,
        locks: SerialLocks | None = None,
    ) -> None:
        self.short_codes = short_codes
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.records = records  # the record cache handlers read through: told every effect (see _commit_handling)
        self.observe = observe  # sees every committed effect (the submission guards)
        self.after_dialogue = after_dialogue  # a dialogue ended (survey sampling): what follows it, if anything
        self.reassembler: Reassembler[tuple[bytes | memoryview, int]] = Reassembler(
            timeout=reassembly_timeout, on_evict=self._dropped, max_per_owner=max_incomplete_per_subscriber,
            octets=lambda part: len(part[0]) + _PART_HELD,  # a part is (its octets, its data_coding): see `_held`
        )
        self._parts: dict[tuple, dict[int, Message]] = {}  # the parts of long MOs received so far, by seqnum
        self._whole: dict[str, tuple[Message, ...]] = {}  # last part's id -> all parts of a long MO being handled
        self.locks = locks if locks is not None else SerialLocks()  # (an empty SerialLocks is falsy: len 0)
        self._tasks: dict[asyncio.Task, Message] = {}  # the handlings running, and their MOs (in_hand)
        self._queued: dict[str, Message] = {}  # by id: MOs waiting for a serial key another holder has
        # subscriber -> their MOs submitted but not yet being handled (committing, reassembling, queued):
        # while there are any, a newer MO of theirs must not be handled at once, ahead of them.
        self._on_the_way: dict[str, int] = {}
        # subscriber -> the writes of their later MOs, held back while one of theirs handled at once is not
        # stored yet: its row must be committed first (or a crash could keep a later MO and lose it).
        self._unstored: dict[str, list[tuple[Message, Answer]]] = {}
        self._idle: asyncio.Future[None] | None = None  # drain() waits on it
        self.retry_backoff = retry_backoff  # delays before each new try of an MO whose handling failed
        self.outage_log = LogBudget()  # lines about handlings not stored while the store cannot commit
        self.complaints = complaints  # the gateway's budgets of lines about a peer's misbehaviour (_give_up)
        self._outage = False  # a line was logged or counted in outage_log since the store last committed
        self._retries: dict[str, asyncio.TimerHandle] = {}  # MO id -> its next try
        self._stopping = False

    def is_short_code(self, address: str) -> bool:
        return address in self.short_codes

    def _serving(self, message: Message) -> ShortCode | None:
        """The short code an MO is handled as sent to (None: the config no longer has it). An SME acknowledgement
        (esm_class 0x08, 0x10: messages.is_acknowledgement) reports on a message the code sent; it is no text for its
        handler to answer or act on (one to 10086 got its help text, one reading EN switched the language): handled
        by none, it is stored processed, with its receipt if asked for, and nothing else happens. Under its
        subscriber's serial key alone. (One to an SP's service code is the SP's: intake makes it an MT to it.)"""
        short_code = self.short_codes.get(message.dest_addr)
        if not message.esm_class or short_code is None or not is_acknowledgement(message.esm_class):  # (most: 0)
            return short_code
        return ShortCode(short_code.code, _ACKNOWLEDGED, short_code.context)

    def submit(self, message: Message, answer: Answer, may_be_stored: bool = True) -> None:
        """A new MO (submit_sm, data_sm): handled at once if nothing holds it up, else committed first and
        handled in its turn; `answer` is told once it is committed (see the module docstring).
        `may_be_stored` False: no stored message can hold its dedup_key (messages.may_be_stored)."""
        source = message.source_addr
        if source in self._on_the_way or source in self._unstored or not self._handle_at_once(message, answer, may_be_stored):
            self._commit_first(message, answer)

    def accept(self, message: Message) -> Awaitable[tuple[str, bool]]:
        """A new MO from a submit_multi: committed, then handled in its turn. Resolves as Store.accept."""
        committed = asyncio.get_running_loop().create_future()

        def settled(result: tuple[str, bool] | None, error: BaseException | None) -> bool:
            if error is not None:
                committed.set_exception(error)
            else:
                committed.set_result(result)
            return error is None and result is not None and not result[1]

        self._commit_first(message, settled)
        return committed

    def _commit_first(self, message: Message, answer: Answer) -> None:
        """Store the MO `accepted` (after the write of the subscriber's MO being handled at once, if any), answer,
        then handle it in its turn."""
        source = message.source_addr
        self._on_the_way[source] = self._on_the_way.get(source, 0) + 1
        waiting = self._unstored.get(source)
        if waiting is None:
            self._write(message, answer)
        else:
            waiting.append((message, answer))

    def _write(self, message: Message, answer: Answer) -> None:
        self.store.accept_then(message, partial(self._accepted, message, answer))

    def _stored(self, source: str) -> None:
        """The write of the subscriber's MO handled at once is issued: the writes held back behind it follow."""
        for message, answer in self._unstored.pop(source, ()):
            if self._stopping:  # nothing of it is stored, and the link is about to go: the client sends it again
                self._accepted(message, answer, None, Rejection(CommandStatus.ESME_RTHROTTLED, "the gateway is stopping"))
            else:
                self._write(message, answer)

    def _handle_at_once(self, message: Message, answer: Answer, may_be_stored: bool) -> bool:
        """Start handling a single-part MO that is no copy of a stored one, unstored until its handling commits: True.
        Its keys are free, or held by a handler that hands them on and few wait (then it queues for them)."""
        text = self._single_part(message)
        if text is None:
            return False
        short_code = self._serving(message)
        inbound = _inbound(message, text, (message.id,))
        keys = in_order(serial_keys(short_code, inbound))
        free = self.locks.take_free(keys)
        if not free and not (
            getattr(short_code.handler, "hands_keys_on", False) and self.locks.waiters(keys) < self.HELD_WAITERS
        ):
            return False
        held = self.store.hold(message, may_be_stored)
        if held is None:
            if free:
                self.locks.release(keys)
            return False
        self._unstored[message.source_addr] = []
        if free or self.locks.take(keys, partial(self._held_turn, message, inbound, keys, (held, answer))):
            self._start(message, inbound, keys, (held, answer))
        else:
            self._queued[message.id] = message
        return True

    def _held_turn(self, message: Message, inbound: Inbound, keys: tuple[str, ...], held: tuple[object, Answer]) -> None:
        """The keys an unstored MO waited for are its own now (`_handle_at_once`)."""
        del self._queued[message.id]
        self._start(message, inbound, keys, held)

    def _accepted(self, message: Message, answer: Answer, result: tuple[str, bool] | None, error: BaseException | None) -> None:
        if answer(result, error):
            self._receive(message)
        else:
            self._arrived(message.source_addr)

    def _arrived(self, source: str) -> None:
        """One MO of this subscriber is no longer on its way (being handled, dropped, or in the reassembler)."""
        left = self._on_the_way[source] - 1
        if left:
            self._on_the_way[source] = left
        else:
            del self._on_the_way[source]

    def _receive(self, message: Message) -> None:
        """A committed MO: handle it now (or, for one part of a long message, once all parts are here)."""
        ready = self._assemble(message)
        if ready is not None and not self._in_turn(message, _inbound(message, *ready)):
            return  # still on its way until its turn
        self._arrived(message.source_addr)

    def _in_turn(self, message: Message, inbound: Inbound, attempt: int = 1) -> bool:
        """Handle the MO once its serial keys are free: True if they are now, False if it queues for them."""
        short_code = self._serving(message)  # (None: replayed for a code no longer configured)
        keys = in_order(serial_keys(short_code, inbound) if short_code is not None else [inbound.subscriber])
        if not self.locks.take(keys, partial(self._turn, message, inbound, keys, attempt)):
            self._queued[message.id] = message
            return False
        self._start(message, inbound, keys, attempt=attempt)
        return True

    async def replay(self, messages: list[Message | UnreadableMo]) -> None:
        """At start: MOs acknowledged before a crash but never handled (or whose handling failed), in arrival order.
        Parts of long MOs are timed from their arrival: those whose siblings did not come in time, the gateway
        down or not, are given up now (a new text reusing the reference would be joined to them). One whose row
        cannot be handled is given up (`_give_up_unreadable`): it stayed `accepted`, an error line at every start."""
        for message in messages:
            if isinstance(message, UnreadableMo):
                log.error("MO not replayed", **_about_stored_mo(message), reason=message.reason)
                await self._give_up_unreadable(message)
                continue
            try:
                ready = self._assemble(message)
                inbound = _inbound(message, *ready) if ready is not None else None
            except Exception:  # its row, damaged, does not make an MO to handle (its UDH, TLVs, text): given up
                log.exception("MO not replayed", **_about_stored_mo(message))
                await self._give_up_unreadable(message)
                continue
            if inbound is None:
                continue  # a part of a long MO: handled once its text is whole
            try:
                await self._handle(message, inbound)
            except Exception:  # a fault of ours, not of its row: it stays `accepted` and the start goes on
                log.exception("MO replay failed", **_about_stored_mo(message))
        self.expire_partial()

    async def _give_up_unreadable(self, message: Message | UnreadableMo) -> None:
        """An MO whose stored row cannot be handled (`replay`) is given up: stored `failed`, with no reply nor receipt
        (what its row says cannot be trusted), so that no start tries it again. If that cannot be committed it stays
        `accepted`, for the next start."""
        try:
            await self.store.complete_mo([message.id], [], self.clock.now(), failed=True, error=_SYSTEM_ERROR)
        except Exception:  # (logged with its traceback)
            log.exception("MO not given up", **_about_stored_mo(message))

    async def drain(self) -> None:
        """Wait until every MO received so far (and any queued behind another holder of its keys) is handled."""
        while self._tasks or self._queued:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    def in_hand(self) -> list[Message]:
        """The MOs drain() waits for: being handled, or queued for their turn (at the end of drain_timeout, those
        the next start handles: the line saying so names them)."""
        return [*self._tasks.values(), *self._queued.values()]

    def stop(self) -> None:
        """The gateway stops: no more tries of failed MOs, and a handling still running after the drain is called
        off (an acknowledged MO stays `accepted`, handled at the next start; one held until its handling commits
        is not answered: its client sends it again. A commit already issued is still written by the store's
        close: see `_commit_handling`)."""
        self._stopping = True
        for timer in self._retries.values():
            timer.cancel()
        self._retries.clear()
        for task in self._tasks:
            task.cancel()

    def _turn(self, message: Message, inbound: Inbound, keys: tuple[str, ...], attempt: int = 1) -> None:
        """The keys of a queued MO are ours now."""
        del self._queued[message.id]
        if attempt == 1:
            self._arrived(message.source_addr)
        self._start(message, inbound, keys, attempt=attempt)

    def _retry_later(
        self, message: Message, inbound: Inbound, parts: tuple[Message, ...], attempt: int, delay: float | None = None,
    ) -> None:  # fmt: skip
        """Handling try `attempt` failed: the next one after its delay (the MO stays `accepted` meanwhile)."""
        if self._stopping:
            return
        self._whole[message.id] = parts
        delay = self.retry_backoff[attempt - 1] if delay is None else delay
        self._retries[message.id] = asyncio.get_running_loop().call_later(
            delay, self._retry_now, message, inbound, attempt + 1
        )
        log.warning("MO to be tried again", message_id=message.id, account=message.account, msisdn=message.source_addr,
                    short_code=message.dest_addr, attempt=attempt + 1, in_seconds=delay)  # fmt: skip

    def _retry_now(self, message: Message, inbound: Inbound, attempt: int) -> None:
        del self._retries[message.id]
        self._in_turn(message, inbound, attempt)

    def _start(
        self, message: Message, inbound: Inbound, keys: tuple[str, ...], held: tuple[object, Answer] | None = None,
        attempt: int = 1,
    ) -> None:  # fmt: skip
        if self._stopping and held is None:  # stored `accepted`: handled at the next start, not on a closing store
            self.locks.release(keys)
            return
        task = asyncio.get_running_loop().create_task(self._serialized(message, inbound, keys, held, attempt))
        self._tasks[task] = message
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        del self._tasks[task]
        if self._idle is not None and not self._tasks and not self._queued and not self._idle.done():
            self._idle.set_result(None)

    @staticmethod
    def _single_part(message: Message) -> str | None:
        """The text of an MO that is not one part of a long message."""
        concat, body = _concat_info(message)
        return smpp_text.decode(body, message.data_coding) if concat is None else None

    def _assemble(self, message: Message) -> tuple[str, tuple[str, ...]] | None:
        """The MO's text and the ids of the submissions it came in, once whole."""
        concat, body = _concat_info(message)
        if concat is None:
            return smpp_text.decode(body, message.data_coding), (message.id,)
        # The total is part of which message a part belongs to: a reused reference with another total is another
        # message (segment.py). In the key, the parts booked here and the set the reassembler reports complete,
        # timed out or evicted (by key and reference) are always the same message's. So is the scheme: an 8-bit
        # and a 16-bit reference 5 are two texts.
        key = (message.source_addr, message.dest_addr, message.account, concat.total, concat.scheme)
        # Its set timed out, and the tick that gives up on such sets has not run since: given up on now, before
        # the part is booked, so that it begins a new text (one reusing the reference) rather than joining it.
        timed_out = self.reassembler.take_timed_out(key, concat, message.submitted_at)
        if timed_out is not None:
            self._dropped(key, concat.reference, timed_out, "timed out")
        received = self._parts.setdefault((key, concat.reference), {})
        # A part sent again replaces the copy held (as in the reassembler): kept once, however often it comes.
        earlier = received.pop(concat.seqnum, None)
        received[concat.seqnum], body = _held(message, body)
        # Each part with its own data_coding (TS 23.040: every part has its own DCS); replayed at start: timed
        # from when it came. Room for incomplete texts is kept per sending subscriber: one who starts texts it
        # never ends pushes out only their own.
        parts = self.reassembler.add(key, concat, (body, message.data_coding), message.submitted_at, owner=message.source_addr)
        if earlier is not None:
            self._give_up((earlier,), "part sent again", key)
        if parts is None:
            return None
        del self._parts[(key, concat.reference)]
        whole = tuple(received[seqnum] for seqnum in sorted(received))
        self._whole[message.id] = whole  # for their receipts (`_handle`)
        return smpp_text.decode_parts(parts), tuple(m.id for m in whole)

    async def _serialized(
        self, message: Message, inbound: Inbound, keys: tuple[str, ...], held: tuple[object, Answer] | None = None,
        attempt: int = 1,
    ) -> None:  # fmt: skip
        """Handle an MO whose serial keys are held; they are released when it is done (or handed on earlier)."""
        holding = _Holding(self.locks, keys)
        try:
            await self._handle(message, inbound, held, attempt, holding)
        finally:
            holding.release()
            if held is not None:
                self._stored(message.source_addr)  # (already done, unless its handling never got that far)

    async def _handle(
        self, message: Message, inbound: Inbound, held: tuple[object, Answer] | None = None, attempt: int = 1,
        holding: _Holding | None = None,
    ) -> None:  # fmt: skip
        """Run the MO's handler and commit what it decided (`held`: the MO itself is not stored yet; it goes
        in the same transaction, and its submission is answered after it). `attempt`: the how-manieth try."""
        short_code = self._serving(message)
        parts = self._whole.pop(message.id, None) or (message,)
        if short_code is None:  # stored for a code the config no longer has (replayed at start): never handled
            log.warning("MO to a short code no longer configured", message_id=message.id, account=message.account,
                        msisdn=message.source_addr, short_code=message.dest_addr)  # fmt: skip
            await self._failed(message, inbound, parts, attempt=len(self.retry_backoff) + 1)
            return
        try:
            outcome: Outcome = await short_code.handler.handle(inbound, short_code.context)
        except Exception:
            log.exception("handler failed", message_id=message.id, account=message.account, msisdn=message.source_addr,
                          short_code=message.dest_addr, attempt=attempt)  # fmt: skip
            await self._not_handled(message, inbound, parts, attempt, held)
            return
        now = self.clock.now()
        try:
            mts = self._receipts(parts, now) + self.outbox.messages_for(outcome.replies, now, origin_id=message.id)
        except TextTooLong as error:
            # A reply no SMS can carry (one needing more than 255 parts: an echo of a long message_payload): no try
            # builds it, so nothing of it is committed and the MO is given up at once, its subscriber told.
            await self._not_handled(message, inbound, parts, attempt, held, f"its reply cannot be built: {error}")
            return
        except Exception:
            # Any other fault fails the handling as a raising handler does: the MO is tried again, then given up;
            # an MO left to raise here would never be answered nor given up.
            log.exception("MO reply cannot be built", message_id=message.id, account=message.account,
                          msisdn=message.source_addr, short_code=message.dest_addr, attempt=attempt)  # fmt: skip
            await self._not_handled(message, inbound, parts, attempt, held)
            return
        follow_up = self.after_dialogue(inbound) if outcome.completed else None  # its mark is committed with the MO
        effects = outcome.effects if follow_up is None else [*outcome.effects, follow_up.mark]
        hand_on = (
            follow_up is None and holding is not None and self.records is not None
            and getattr(short_code.handler, "hands_keys_on", False)
        )  # fmt: skip
        if not await self._commit_handling(message, inbound, parts, attempt, held, holding, now, mts, effects, hand_on):
            return
        if not hand_on and self.records is not None:
            self.records.committed(effects)
        self.observe(effects)
        self.outbox.send(mts)
        if follow_up is not None:  # e.g. a sampled survey, under this MO's serial keys
            try:
                await follow_up.run()
            except Exception:
                log.exception("dialogue follow-up failed", message_id=message.id, account=message.account,
                              msisdn=message.source_addr)  # fmt: skip

    async def _commit_handling(
        self, message: Message, inbound: Inbound, parts: tuple[Message, ...], attempt: int,
        held: tuple[object, Answer] | None, holding: _Holding | None, done_at: float, replies: list[Message],
        effects: list[Effect], hand_on: bool,
    ) -> bool:  # fmt: skip
        """Commit the MO's handling (with the MO itself, if held; answered after it): True once stored.

        `hand_on`: its keys go to the next MO waiting for them as soon as the commit is issued, its effects to
        the record cache then (the next holder must read them); that MO's own commit then names this one
        (`Store` `after`) and fails if this one does. An MO whose handling is not stored is tried again later."""
        after = self.locks.in_flight(holding.keys) if holding is not None else ()
        commit = token = None
        try:
            if held is None:
                commit = self.store.complete_mo(inbound.message_ids, replies, done_at, effects, after=after)
            else:
                commit = self.store.accept_held(held[0], message, done_at, replies, effects, after=after)
                self._stored(message.source_addr)
            if hand_on:
                token = self._hand_on(holding, commit, effects)
            result = await commit
        except BaseException as error:
            if token is not None:
                self._handed_on_settled(holding.keys, commit, token, False)
            if not isinstance(error, Exception):
                # Cancelled (the gateway stops) with the commit issued: the store's close still writes it, so
                # its outcome is not known here. A held MO gets no answer rather than a failure it may not be
                # (its client sends it again, or finds it done); a stored one is handled or not at the next start.
                raise
            self._store_failed("MO handling not stored", message, attempt, stored=held is None)
            if held is None:
                await self._failed(message, inbound, parts, attempt)
            else:
                self._held_not_stored(message, held[1], error)
            return False
        stored = held is None or not result[1]  # a held copy of a stored message after all: its handling dropped
        if token is not None:
            self._handed_on_settled(holding.keys, commit, token, stored)
        if held is not None:
            held[1](result, None)
        return stored

    def _held_not_stored(self, message: Message, answer: Answer, error: Exception) -> None:
        """A held MO whose handling failed to commit: stored alone, answered once committed, then handled again in its
        turn. While the store cannot commit at all, its submission fails with the handling's error at once: alone, the
        MO would wait the same outage out a second time to fail the same (answered after up to 40 s, not 20)."""
        if not self.store.can_commit:
            answer(None, error)  # answered as any failed submission (and logged there)
            return
        message.status, message.done_at = MessageStatus.ACCEPTED, None
        self._commit_first(message, answer)

    def _store_failed(self, event: str, message: Message, attempt: int, stored: bool) -> None:
        """What an MO's handling (or its giving up) decided failed to commit: logged with its traceback when that is
        a fault of its own; while the store cannot commit at all (it says so itself: `store cannot commit`), the first
        few lines of each outage, the rest counted (`outage_counts`)."""
        about = {"message_id": message.id, "account": message.account, "msisdn": message.source_addr,
                 "short_code": message.dest_addr, "attempt": attempt}  # fmt: skip
        if self.store.can_commit:
            log.exception(event, **about)
            return
        self._outage = True
        if self.outage_log.allow(event):  # a held MO is answered ESME_RSYSERR then (_held_not_stored)
            log.warning(event, **about, reason="store cannot commit", mo_stored=stored)
        self.outage_counts()

    def outage_counts(self) -> None:
        """The `<event>: more not logged` lines of `_store_failed`: every 10 s at most while the store cannot commit,
        and the rest once it commits again (the gateway's tick); the next outage gets its own first lines."""
        final = self._outage and self.store.can_commit
        for kind, count in self.outage_log.due(final):
            log.warning(f"{kind}: more not logged", count=count)
        if final:
            self._outage, self.outage_log = False, LogBudget()

    def _hand_on(self, holding: _Holding, commit: Awaitable, effects: list[Effect]) -> int:
        """The MO's commit is issued: its effects to the record cache, its keys to the next MO waiting."""
        token = self.records.issued(effects)
        holding.hand_on(commit)
        return token

    def _handed_on_settled(self, keys: tuple[str, ...], commit: Awaitable, token: int, stored: bool) -> None:
        self.records.settled(token, stored)
        self.locks.settled(keys, commit)

    async def _not_handled(
        self, message: Message, inbound: Inbound, parts: tuple[Message, ...], attempt: int,
        held: tuple[object, Answer] | None, hopeless: str | None = None,
    ) -> None:  # fmt: skip
        """This try failed before anything of it was committed: the MO stays (or is stored) `accepted`, and is
        tried again later (`hopeless`: why no try can succeed, given up now)."""
        if held is None or await self._store_held(held, message):
            await self._failed(message, inbound, parts, attempt, hopeless)

    async def _store_held(self, held: tuple[object, Answer], message: Message) -> bool:
        """Store a held MO `accepted` (its handling failed: to be tried again) and answer its submission: True
        once stored (not a copy)."""
        reservation, answer = held
        try:
            committed = self.store.accept_held(reservation, message)
            self._stored(message.source_addr)
            result = await committed
        except BaseException as error:
            answer(None, error)  # answered as any failed submission (and logged there)
            if isinstance(error, Exception):
                return False
            raise
        answer(result, None)
        return not result[1]

    async def _failed(
        self, message: Message, inbound: Inbound, parts: tuple[Message, ...], attempt: int, hopeless: str | None = None
    ) -> None:
        """Handling try `attempt` of a stored MO failed: try again later, or give it up after the last try, or at once
        if `hopeless` says why no try can succeed (its content: one warning line, no more tracebacks)."""
        if hopeless is None and attempt <= len(self.retry_backoff):
            self._retry_later(message, inbound, parts, attempt)
            return
        # Given up: stored `failed` with a receipt if asked for, and the subscriber is told (in their language
        # if that can still be read): to send it again later, unless it is hopeless (told so, sending it again
        # fails the same).
        # (the sorry text in the templates every code shares, for a code no longer configured too)
        context = (self.short_codes.get(message.dest_addr) or next(iter(self.short_codes.values()))).context
        try:
            language = await context.language_of(inbound.subscriber)
        except Exception:  # noqa: BLE001  (the store failing again: the default language)
            language = context.settings.language
        sorry_text = "common.unavailable" if hopeless is None else "common.unanswerable"
        sorry = Reply(inbound.subscriber, context.text(sorry_text, language, short_code=inbound.short_code),
                      inbound.short_code)  # fmt: skip
        now = self.clock.now()
        mts = self._receipts(parts, now, _UNDELIVERABLE) + self.outbox.messages_for([sorry], now, origin_id=message.id)
        try:
            await self.store.complete_mo(inbound.message_ids, mts, now, failed=True, error=_SYSTEM_ERROR)
        except Exception:  # noqa: BLE001  (logged by _store_failed) still `accepted`: one more try after the last delay
            self._store_failed("MO not given up", message, attempt, stored=True)
            self._retry_later(message, inbound, parts, attempt - 1, self.retry_backoff[-1] if self.retry_backoff else 1.0)
            return
        line, why = (log.error, {}) if hopeless is None else (log.warning, {"reason": hopeless})  # (its content: no fault)
        line("MO given up", message_id=message.id, account=message.account, msisdn=message.source_addr,
             short_code=message.dest_addr, attempts=attempt, **why)  # fmt: skip
        self.outbox.send(mts)

    def _receipts(self, parts: tuple[Message, ...], done_at: float, state: MessageState = _DELIVERED) -> list[Message]:
        """Delivery receipts for the MO's submissions that asked for one: handled is delivered, to a short code."""
        error = 0 if state is _DELIVERED else _SYSTEM_ERROR
        receipts = []
        for m in parts:  # (a loop: a generator reading four locals made closure cells of them, for every MO)
            receipt = receipt_for(m, state, done_at, error, self.outbox.ids)
            if receipt is not None:
                receipts.append(receipt)
        return receipts

    def expire_partial(self) -> None:
        """Parts of long MOs whose other parts never came: log them; they are not answered."""
        for key, reference, parts in self.reassembler.expire(self.clock.now()):
            self._dropped(key, reference, parts, "timed out")

    def _dropped(self, key: tuple, reference: int, _parts: dict[int, tuple[bytes | memoryview, int]], why: str = "too many incomplete") -> None:
        """An incomplete long MO the reassembler let go: its parts are given up on, unanswered (failed, and
        stat:UNDELIV receipts for those that asked for one: a text never handled is not delivered)."""
        self._give_up(tuple(self._parts.pop((key, reference), {}).values()), why, key)

    def _give_up(self, parts: tuple[Message, ...], why: str, key: tuple) -> None:
        """Parts of a long MO that will never be handled: failed, with their stat:UNDELIV receipts. Logged for the
        first few such MOs of its account, the rest counted (`incomplete long MO dropped: more not logged`, under
        the gateway's budgets with peer `-`: its parts may have come on several binds, or before a restart): a
        client sending only the first part of each long text wrote ~15,000 lines in a soak."""
        if not parts:
            return
        if self.complaints.allow(("-", key[2]), _DROPPED):
            for part in parts:  # a line for each, under its own message_id: the id its submit_sm_resp gave the sender
                log.warning(_DROPPED, message_id=part.id, account=key[2], msisdn=key[0], short_code=key[1], why=why,
                            parts_held=len(parts))  # fmt: skip
        now = self.clock.now()
        receipts = self._receipts(parts, now, _UNDELIVERABLE)
        done = self.store.complete_mo([m.id for m in parts], receipts, now, failed=True, error=_SYSTEM_ERROR)
        if receipts:
            done.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self.outbox.send(receipts))
