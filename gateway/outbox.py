"""Service replies -> stored MT messages -> delivery.

Used by the MO path and by work that starts elsewhere (HTTP order requests,
surveys, reminders): the same text becomes the same parts either way.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from handlers.base import Reply

from .delivery import Delivery
from .ids import MessageIds
from .smpp.segment import IEI_CONCAT_8, Part, segment_text
from .smpp.tlv import encode_tlvs
from .store.records import Direction, Message, MessageStatus

_MT, _ENROUTE = Direction.MT, MessageStatus.ENROUTE  # per reply part (an Enum class's read: EnumType.__getattr__)
SEGMENT_CACHE_SIZE = 4096  # distinct reply texts whose parts are kept (most replies are a few fixed texts)


class Outbox:
    def __init__(self, delivery: Delivery, ids: MessageIds, validity: float) -> None:
        self.delivery = delivery
        self.ids = ids
        self.validity = validity
        self._references = itertools.count(1)
        # text -> its parts with concatenation reference 0: encoding and splitting a text is most of
        # what a reply costs here, and the same confirmation or thanks goes out again and again.
        self._segments: dict[str, list[Part]] = {}

    def messages_for(self, replies: Sequence[Reply], now: float, origin_id: str | None = None) -> list[Message]:
        messages: list[Message] = []
        for reply in replies:
            messages += self._parts(reply, now, origin_id)
        return messages

    def send(self, messages: Sequence[Message]) -> None:
        """Hand committed messages to delivery."""
        for message in messages:
            self.delivery.admit(message)

    def _parts(self, reply: Reply, now: float, origin_id: str | None) -> list[Message]:
        reference = next(self._references) & 0xFF
        extra = {"to_account": reply.to_account} if reply.to_account else {}
        if reply.expires_at is not None:
            expires_at = reply.expires_at
        else:
            expires_at = now + (reply.validity if reply.validity is not None else self.validity)
        parts = self._segment(reply.text)
        several = len(parts) > 1
        # Positional, in Message's field order (as messages.message_from_submission): every reply part is one, and
        # matching keywords against Message's 27 parameters cost more than building it. A loop, not a comprehension:
        # one would make closure cells of the eight locals it reads.
        messages = []
        for part in parts:
            messages.append(Message(
                self.ids.next(),  # id
                _MT,
                _ENROUTE,
                "",  # account
                reply.source,  # source_addr
                reply.to,  # dest_addr
                _with_reference(part.short_message, reference) if several else part.short_message,
                part.data_coding,
                part.esm_class,
                0, 0, 0, "",  # protocol_id, priority_flag, registered_delivery, service_type
                0, 0, 0, 0,  # source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi
                encode_tlvs(part.tlvs) if part.tlvs else b"",  # tlvs
                now, expires_at, 0, now,  # submitted_at, expires_at, attempts, next_attempt_at
                None, 0, origin_id, None,  # done_at, error, origin_id, dedup_key
                dict(extra),
            ))
        return messages

    def _segment(self, text: str) -> list[Part]:
        """segment_text(text, reference=0), kept per text: a reply of several parts takes its own reference
        (`_with_reference`), written into its short_message, not into a Part made again per reply."""
        parts = self._segments.get(text)
        if parts is None:
            if len(self._segments) >= SEGMENT_CACHE_SIZE:
                self._segments.clear()
            parts = self._segments[text] = segment_text(text, reference=0)
            # several parts: each begins with the UDH length, IEI_CONCAT_8, 3, reference, total, seqnum
            assert len(parts) == 1 or all(p.short_message[1] == IEI_CONCAT_8 and not p.tlvs for p in parts)
        return parts


def _with_reference(short_message: bytes, reference: int) -> bytes:
    """A part of a reply of several parts with its concatenation reference (its UDH's fourth octet) set."""
    return short_message[:3] + bytes((reference,)) + short_message[4:]
