"""MO to a short code: reassemble, hand to its handler, commit, deliver the replies.

The MO is committed before it is acknowledged. Marking it processed, applying
the handler's effects and storing its replies happen in one transaction, so
after a crash an MO is either still `accepted` (and handled again at start,
on the same state) or done with everything it caused: never handled twice,
never lost. MOs are handled one at a time per subscriber (and per any other
key their handler names, e.g. the number a spam report is about), so each
sees what the previous one committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial

from handlers.base import Handler, Inbound, Outcome, ServiceContext

from .clock import Clock
from .logs import get_logger
from .outbox import Outbox
from .serial import SerialLocks, in_order
from .smpp import text as smpp_text
from .smpp.segment import Reassembler, concat_info
from .smpp.tlv import decode_tlvs
from .store.base import Store
from .store.effects import Effect
from .store.records import Message

log = get_logger("mo")


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


class MoProcessor:
    def __init__(
        self,
        short_codes: dict[str, ShortCode],
        store: Store,
        outbox: Outbox,
        clock: Clock,
        *,
        reassembly_timeout: float,
        observe: Callable[[Iterable[Effect]], None] = lambda effects: None,
        after_dialogue: Callable[[Inbound], Awaitable[object] | None] = lambda inbound: None,
        locks: SerialLocks | None = None,
    ) -> None:
        self.short_codes = short_codes
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.observe = observe  # sees every committed effect (the submission guards)
        self.after_dialogue = after_dialogue  # a dialogue ended (survey sampling): awaited if it returns something
        self.reassembler = Reassembler(timeout=reassembly_timeout, on_evict=self._dropped)
        self._part_ids: dict[tuple, list[str]] = {}
        self.locks = locks or SerialLocks()
        self._tasks: set[asyncio.Task] = set()
        self._queued = 0  # MOs waiting for a serial key another holder has
        self._idle: asyncio.Future[None] | None = None  # drain() waits on it

    def is_short_code(self, address: str) -> bool:
        return address in self.short_codes

    def receive(self, message: Message) -> None:
        """A committed MO: handle it now (or, for one part of a long message, once all parts are here)."""
        ready = self._assemble(message)
        if ready is None:
            return
        inbound = _inbound(message, *ready)
        keys = in_order(serial_keys(self.short_codes[message.dest_addr], inbound))
        if self.locks.take(keys, partial(self._turn, message, inbound, keys)):
            self._start(message, inbound, keys)
        else:
            self._queued += 1

    async def replay(self, messages: list[Message]) -> None:
        """At start: MOs acknowledged before a crash but never handled, in arrival order."""
        for message in messages:
            ready = self._assemble(message)
            if ready is not None:
                text, mo_ids = ready
                await self._handle(message, _inbound(message, text, mo_ids))

    async def drain(self) -> None:
        """Wait until every MO received so far (and any queued behind another holder of its keys) is handled."""
        while self._tasks or self._queued:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    def _turn(self, message: Message, inbound: Inbound, keys: tuple[str, ...]) -> None:
        """The keys of a queued MO are ours now."""
        self._queued -= 1
        self._start(message, inbound, keys)

    def _start(self, message: Message, inbound: Inbound, keys: tuple[str, ...]) -> None:
        task = asyncio.get_running_loop().create_task(self._serialized(message, inbound, keys))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if self._idle is not None and not self._tasks and not self._queued and not self._idle.done():
            self._idle.set_result(None)

    def _assemble(self, message: Message) -> tuple[str, tuple[str, ...]] | None:
        tlvs = decode_tlvs(message.tlvs, 0, len(message.tlvs)) if message.tlvs else {}
        concat, body = concat_info(message.esm_class, message.short_message, tlvs)
        if concat is None:
            return smpp_text.decode(body, message.data_coding), (message.id,)
        key = (message.source_addr, message.dest_addr, message.account)
        ids = self._part_ids.setdefault((key, concat.reference), [])
        ids.append(message.id)
        parts = self.reassembler.add(key, concat, body, self.clock.now())
        if parts is None:
            return None
        del self._part_ids[(key, concat.reference)]
        return smpp_text.decode(b"".join(parts), message.data_coding), tuple(ids)

    async def _serialized(self, message: Message, inbound: Inbound, keys: tuple[str, ...]) -> None:
        """Handle an MO whose serial keys are held; they are released when it is done."""
        try:
            await self._handle(message, inbound)
        finally:
            self.locks.release(keys)

    async def _handle(self, message: Message, inbound: Inbound) -> None:
        short_code = self.short_codes[message.dest_addr]
        try:
            outcome: Outcome = await short_code.handler.handle(inbound, short_code.context)
        except Exception:
            # The MO stays `accepted`: handled again at the next start rather than lost.
            log.exception("handler failed", message_id=message.id, account=message.account, msisdn=message.source_addr,
                          short_code=message.dest_addr)  # fmt: skip
            return
        now = self.clock.now()
        mts = self.outbox.messages_for(outcome.replies, now, origin_id=message.id)
        await self.store.complete_mo(inbound.message_ids, mts, now, outcome.effects)
        self.observe(outcome.effects)
        self.outbox.send(mts)
        if outcome.completed:
            follow_up = self.after_dialogue(inbound)
            if follow_up is not None:  # e.g. a sampled survey, under this MO's serial keys
                try:
                    await follow_up
                except Exception:
                    log.exception("dialogue follow-up failed", message_id=message.id, account=message.account,
                                  msisdn=message.source_addr)  # fmt: skip

    def expire_partial(self) -> None:
        """Parts of long MOs whose other parts never came: log them; they are not answered."""
        for key, reference, parts in self.reassembler.expire(self.clock.now()):
            self._dropped(key, reference, parts, "timed out")

    def _dropped(self, key: tuple, reference: int, _parts: dict[int, bytes], why: str = "too many incomplete") -> None:
        """An incomplete long MO the reassembler let go: its parts are done with (processed, unanswered)."""
        ids = self._part_ids.pop((key, reference), [])
        log.warning("incomplete long MO dropped", message_ids=ids, account=key[2], msisdn=key[0], short_code=key[1], why=why)
        if ids:
            self.store.complete_mo(ids, [], self.clock.now())
