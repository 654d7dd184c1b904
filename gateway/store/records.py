"""The records the store keeps: one row per short message, MO or MT."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Direction(str, Enum):
    MO = "mo"  # from a subscriber to a short code: a handler answers it
    MT = "mt"  # to a subscriber (or to an SP's bind): delivered as deliver_sm


class MessageStatus(str, Enum):
    """Life of a stored message.

    MO:  accepted -> processed
    MT:  enroute -> delivered | expired | undeliverable
    """

    ACCEPTED = "accepted"
    PROCESSED = "processed"
    ENROUTE = "enroute"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    UNDELIVERABLE = "undeliverable"


@dataclass(slots=True)
class Message:
    id: str  # exactly as sent in submit_sm_resp (or in our own deliver_sm)
    direction: Direction
    status: MessageStatus
    account: str  # system_id that submitted it; "" for gateway-generated text
    source_addr: str  # normalised MSISDN or short code
    dest_addr: str
    short_message: bytes  # body, with UDH when esm_class has UDHI (or the message_payload)
    data_coding: int = 0
    esm_class: int = 0
    registered_delivery: int = 0
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    tlvs: bytes = b""  # encoded optional parameters carried to the recipient (sar_*, ports, ussd ...)
    submitted_at: float = 0.0  # epoch seconds, from the gateway clock
    expires_at: float = 0.0  # validity end: an undelivered MT expires here
    attempts: int = 0
    next_attempt_at: float = 0.0
    done_at: float | None = None  # delivered / expired / processed time
    error: int = 0  # SMPP error reported in the receipt's err: field
    origin_id: str | None = None  # the MO an MT answers; the message a receipt reports on
    dedup_key: str | None = None  # recognises a client's retransmission of the same MO
    extra: dict = field(default_factory=dict)  # small JSON-able annotations (e.g. receipt target account)

    @property
    def is_final(self) -> bool:
        return self.status in _FINAL


_FINAL = frozenset(
    {MessageStatus.PROCESSED, MessageStatus.DELIVERED, MessageStatus.EXPIRED, MessageStatus.UNDELIVERABLE}
)
