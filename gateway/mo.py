"""MO to a short code: reassemble, hand to its handler, store the replies, deliver them.

The MO is committed before it is acknowledged. Marking it processed and
storing the handler's replies happen in one transaction, so after a crash an
MO is either still `accepted` (and handled again at start) or done with its
replies safely stored: never handled twice, never lost.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from handlers.base import Handler, HandlerContext, Inbound, Reply

from .clock import Clock
from .delivery import Delivery
from .ids import MessageIds
from .logs import get_logger
from .smpp import text as smpp_text
from .smpp.segment import Reassembler, concat_info, segment_text
from .smpp.tlv import decode_tlvs, encode_tlvs
from .store.base import Store
from .store.records import Direction, Message, MessageStatus

log = get_logger("mo")


@dataclass(slots=True)
class ShortCode:
    code: str
    handler: Handler
    context: HandlerContext


class MoProcessor:
    def __init__(
        self,
        short_codes: dict[str, ShortCode],
        store: Store,
        delivery: Delivery,
        clock: Clock,
        ids: MessageIds,
        *,
        validity: float,
        reassembly_timeout: float,
    ) -> None:
        self.short_codes = short_codes
        self.store = store
        self.delivery = delivery
        self.clock = clock
        self.ids = ids
        self.validity = validity
        self.reassembler = Reassembler(timeout=reassembly_timeout)
        self._part_ids: dict[tuple, list[str]] = {}
        self._references = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()

    def is_short_code(self, address: str) -> bool:
        return address in self.short_codes

    def receive(self, message: Message) -> None:
        """A committed MO: handle it now (or, for one part of a long message, once all parts are here)."""
        ready = self._assemble(message)
        if ready is not None:
            task = asyncio.get_running_loop().create_task(self._handle(message, *ready))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def replay(self, messages: list[Message]) -> None:
        """At start: MOs acknowledged before a crash but never handled, in arrival order."""
        for message in messages:
            ready = self._assemble(message)
            if ready is not None:
                await self._handle(message, *ready)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _assemble(self, message: Message) -> tuple[str, tuple[str, ...]] | None:
        tlvs = decode_tlvs(message.tlvs, 0, len(message.tlvs)) if message.tlvs else {}
        concat, body = concat_info(message.esm_class, message.short_message, tlvs)
        if concat is None:
            return smpp_text.decode(body, message.data_coding), (message.id,)
        key = (message.source_addr, message.dest_addr)
        ids = self._part_ids.setdefault((key, concat.reference), [])
        ids.append(message.id)
        parts = self.reassembler.add(key, concat, body, self.clock.now())
        if parts is None:
            return None
        del self._part_ids[(key, concat.reference)]
        return smpp_text.decode(b"".join(parts), message.data_coding), tuple(ids)

    async def _handle(self, message: Message, text: str, mo_ids: tuple[str, ...]) -> None:
        short_code = self.short_codes[message.dest_addr]
        inbound = Inbound(
            subscriber=message.source_addr,
            short_code=message.dest_addr,
            text=text,
            received_at=message.submitted_at,
            message_ids=mo_ids,
        )
        try:
            replies = await short_code.handler.handle(inbound, short_code.context)
        except Exception:
            # The MO stays `accepted`: handled again at the next start rather than lost.
            log.exception("handler failed", message_id=message.id, msisdn=message.source_addr, short_code=message.dest_addr)
            return
        now = self.clock.now()
        mts = [mt for reply in replies for mt in self._reply_messages(reply, now, message.id)]
        await self.store.complete_mo(mo_ids, mts, now)
        for mt in mts:
            self.delivery.admit(mt)

    def _reply_messages(self, reply: Reply, now: float, mo_id: str) -> list[Message]:
        reference = next(self._references) & 0xFF
        return [
            Message(
                id=self.ids.next(),
                direction=Direction.MT,
                status=MessageStatus.ENROUTE,
                account="",
                source_addr=reply.source,
                dest_addr=reply.to,
                short_message=part.short_message,
                data_coding=part.data_coding,
                esm_class=part.esm_class,
                tlvs=encode_tlvs(part.tlvs) if part.tlvs else b"",
                submitted_at=now,
                expires_at=now + self.validity,
                next_attempt_at=now,
                origin_id=mo_id,
            )
            for part in segment_text(reply.text, reference=reference)
        ]

    def expire_partial(self) -> None:
        """Parts of long MOs whose other parts never came: log them; they are not answered."""
        for key, reference, _parts in self.reassembler.expire(self.clock.now()):
            ids = self._part_ids.pop((key, reference), [])
            log.warning("incomplete long MO dropped", msisdn=key[0], short_code=key[1], message_ids=ids)
            if ids:
                self.store.complete_mo(ids, [], self.clock.now())
