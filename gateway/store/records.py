"""The records the store keeps: one row per short message, MO or MT."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..smpp.constants import EsmClass


class Direction(str, Enum):
    MO = "mo"  # from a subscriber to a short code: a handler answers it
    MT = "mt"  # to a subscriber (or to an SP's bind): delivered as deliver_sm


class MessageStatus(str, Enum):
    """Life of a stored message.

    MO:  accepted -> processed | failed (given up: its handling kept failing, gateway/mo.py)
    MT:  [scheduled ->] enroute -> delivered | expired | undeliverable | deleted (cancel_sm) | rejected
         (scheduled: schedule_delivery_time not reached yet; it may also be deleted;
         rejected: its sender was blocked after it was accepted, gateway/guards.py)
    """

    ACCEPTED = "accepted"
    PROCESSED = "processed"
    FAILED = "failed"
    SCHEDULED = "scheduled"
    ENROUTE = "enroute"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    UNDELIVERABLE = "undeliverable"
    DELETED = "deleted"
    REJECTED = "rejected"


@dataclass(slots=True)
class Message:
    id: str  # exactly as sent in submit_sm_resp (on a bind of SMPP 3.3: short_id), or in our own deliver_sm
    direction: Direction
    status: MessageStatus
    account: str  # system_id that submitted it; "" for gateway-generated text
    source_addr: str  # normalised MSISDN or short code
    dest_addr: str
    short_message: bytes  # body, with UDH when esm_class has UDHI (or the message_payload)
    data_coding: int = 0
    esm_class: int = 0
    # As submitted, for the recipient's deliver_sm (data_sm has neither: 0). protocol_id is GSM 03.40's TP-PID:
    # 0x40 a silent (Type 0) SMS, 0x41-0x47 one that replaces the last of its type, 0x7F a SIM data download.
    protocol_id: int = 0
    priority_flag: int = 0  # 0-3; carried only: delivery order does not depend on it
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
    # Submitted on a bind of SMPP 3.3: the id its submitter was given instead (ids.ShortIds), every destination of a
    # submit_multi the same. None for every other message.
    short_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


def submission_of(message: Message) -> str:
    """The id of the submission `message` is part of: its own, or for a destination of a submit_multi, the first's."""
    return message.extra.get("submit_multi", message.id) if message.extra else message.id


# The esm_class message types of an SME acknowledgement (SMPP 3.4 5.2.12): 0x08 SME delivery, 0x10 manual/user. The
# one home of the rule: gateway/messages.py and the store read it from here (the store's SQL spells it `& 24`).
ACKNOWLEDGEMENT = int(EsmClass.SME_DELIVERY_ACK | EsmClass.MANUAL_USER_ACK)


def acknowledgement_kind(esm_class: int) -> int:
    """The SME acknowledgement an esm_class is (its message type: 0x08 SME delivery, 0x10 manual/user); 0: none."""
    return esm_class & ACKNOWLEDGEMENT


def acknowledging(esm_class: int, to_account: Any, source_addr: str) -> str | None:
    """The subscriber an MT with these fields is an SME acknowledgement from, to an SP's service code (intake
    `_acknowledged_sp`: addressed to the SP account, `to_account` in its extra, with its esm_class): its source_addr.
    None for any other. Those waiting for SPs are bounded per subscriber (Delivery.acknowledgements; the store counts
    them at start as `_ACKNOWLEDGEMENT_COUNTS` does: to_account not NULL)."""
    return source_addr if esm_class & ACKNOWLEDGEMENT and to_account is not None else None


FINAL_STATUSES = frozenset(
    {MessageStatus.PROCESSED, MessageStatus.FAILED, MessageStatus.DELIVERED, MessageStatus.EXPIRED, MessageStatus.UNDELIVERABLE, MessageStatus.DELETED,
     MessageStatus.REJECTED}
)


@dataclass(frozen=True, slots=True)
class UnreadableMo:
    """An MO stored `accepted` whose row does not read back as a Message (damaged outside the gateway: its `extra` no
    JSON, say): what of it could be read, and why the rest could not. The start gives it up (MoProcessor.replay)."""

    id: str
    account: str
    source_addr: str
    dest_addr: str
    reason: str


# --------------------------------------------------------------------------
# Service records (SPEC section 3). Each is one table with the same column
# names; `TABLES` below names it and its key. Handlers never write them
# directly: they return Put/Delete effects (effects.py) that the store
# applies in the same transaction as the MO they answer.


@dataclass(slots=True)
class Subscriber:
    msisdn: str
    language: str  # "zh" | "en"


@dataclass(slots=True)
class Subscription:
    id: str
    msisdn: str
    service_id: str  # catalogue id ([[services]] id)
    status: str  # "active" | "cancelled"
    ordered_at: float  # when the subscriber's confirmation made it active
    channel: str  # where the order came from: sms | web | sp | ussd | api
    confirmation: str  # evidence of the subscriber's own confirmation (MO id), "" if none
    trial_until: float  # no charge before this (free trial, SPEC 3.2)
    cancelled_at: float | None = None
    cancel_channel: str | None = None
    fee: int | None = None  # fen a month, as its confirmation stated it; None: made before subscriptions kept it (the catalogue's)


@dataclass(slots=True)
class SubscriptionEvent:
    id: str
    subscription_id: str
    msisdn: str
    at: float
    event: str  # ordered | cancelled | charged | voided (cancelled before billing moment) | refunded
    channel: str
    detail: str = ""


@dataclass(slots=True)
class PendingOrder:
    """A two-step confirmation waiting for the subscriber's answer."""

    id: str
    msisdn: str
    service_id: str
    channel: str
    reply_code: str  # "Y<code>" confirms this one when several are pending
    created_at: float
    expires_at: float
    status: str  # pending | confirmed | declined | expired
    fee: int | None = None  # fen a month, as its confirmation stated it; None: sent before orders kept it (the catalogue's)
    # When its confirmation was first sent (created_at: last sent; ordered again, it is sent again); None: stored
    # before orders kept it (created_at).
    first_asked_at: float | None = None


@dataclass(slots=True)
class Dialogue:
    """A prompt a subscriber may answer next (a listing, a yes/no question, a missing number)."""

    msisdn: str
    kind: str  # e.g. unsubscribe.listing, unsubscribe.all, spam.number
    data: dict
    created_at: float
    expires_at: float


@dataclass(slots=True)
class SpamReport:
    id: str
    reporter: str
    reported: str
    text: str
    created_at: float
    status: str  # received | handled


@dataclass(slots=True)
class Block:
    """`reported` may no longer message `reporter`; reporter "" = blocked network-wide."""

    id: str
    reported: str
    reporter: str
    created_at: float
    lifted_at: float | None = None
    reason: str = ""


@dataclass(slots=True)
class Survey:
    id: str
    msisdn: str
    channel: str  # store:<id> | hotline | online | sms:10086 ...
    agent: str
    created_at: float
    expires_at: float
    status: str  # sent | reason | rated | expired | invalid | superseded (handlers/rating.py)
    rating: int | None = None
    reason: str = ""
    reprompted: bool = False
    rated_at: float | None = None


@dataclass(slots=True)
class Charge:
    id: str
    subscription_id: str
    msisdn: str
    service_id: str
    period: str  # YYYY-MM
    amount: int  # fen (0.01 yuan)
    created_at: float
    refund: int = 0
    refund_reason: str = ""
    disputed_at: float | None = None


@dataclass(slots=True)
class JobRun:
    """A scheduled job done for a period (billing 2026-12, reminders 2026-11)."""

    job: str
    period: str
    ran_at: float


# record type -> (table, key columns)
TABLES: dict[type, tuple[str, tuple[str, ...]]] = {
    Subscriber: ("subscribers", ("msisdn",)),
    Subscription: ("subscriptions", ("id",)),
    SubscriptionEvent: ("subscription_events", ("id",)),
    PendingOrder: ("pending_orders", ("id",)),
    Dialogue: ("dialogues", ("msisdn", "kind")),
    SpamReport: ("spam_reports", ("id",)),
    Block: ("blocks", ("id",)),
    Survey: ("surveys", ("id",)),
    Charge: ("charges", ("id",)),
    JobRun: ("job_runs", ("job", "period")),
}
