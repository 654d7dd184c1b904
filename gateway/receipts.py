"""Delivery receipts (SMPP 3.4 appendix B): the text, the TLVs, and when one is due."""

from __future__ import annotations

from collections.abc import Container

from .ids import MessageIds
from .smpp import text as smpp_text
from .smpp.constants import EsmClass, MessageState, RegisteredDelivery, Tag
from .smpp.segment import parse_udh
from .smpp.times import format_receipt_date
from .smpp.tlv import encode_tlvs
from .store.records import Direction, Message, MessageStatus, submission_of

# Plain ints: `&` on an IntFlag runs Python code and builds a new flag, and
# receipt_due runs for every delivered message.
_DELIVERY_RECEIPT = int(EsmClass.DELIVERY_RECEIPT)
_RECEIPT_MASK = int(RegisteredDelivery.RECEIPT_MASK)
_RECEIPT_ALWAYS = int(RegisteredDelivery.RECEIPT_ALWAYS)
_RECEIPT_ON_FAILURE = int(RegisteredDelivery.RECEIPT_ON_FAILURE)

# query_sm_resp's error_code is one octet, a receipt's err: three digits: they are the same number wherever it fits
# (000-255, every deliver_sm_resp status a receipt reports). The gateway's own refusals of an MT it had accepted,
# err:400/401/402 (its submit_sm statuses 0x400-0x402: refusal_error), are 40/41/42 there: SMPP 3.4 reserves
# 0x16-0x32 as command_status values, so no handset's refusal reads as one of them.
_REFUSAL_ERROR_CODES = {400: 40, 401: 41, 402: 42}
# What a receipt's `text:` keeps of the original: the characters that are the same octet in GSM 03.38 (its
# data_coding 0) and in ASCII, as clients parse receipts; `@`, `$` and `_` went out as GSM's 0x00, 0x02 and 0x11
# (a NUL inside the text), `[` `~` and the like as two-octet escapes.
_RECEIPT_TEXT = frozenset(
    c for c in map(chr, range(0x20, 0x7F)) if smpp_text.is_gsm(c) and smpp_text.encode(c, 0) == c.encode("ascii")
)

# How long a receipt waits for a receiver bind of its submitter, from when it was made: its own validity, not
# what was left of the original's (a 10 s MT delivered at once would leave its receipt 10 s).
RECEIPT_VALIDITY = 86400.0


def submitted_id(message: Message) -> str:
    """The id the submitter was given: the message's own, or for a destination of a submit_multi, the submit_multi's;
    on a bind of SMPP 3.3, their alias."""
    return submission_of(message) if message.short_id is None else message.short_id


def receipt_due(message: Message, state: MessageState) -> bool:
    """registered_delivery bits 0-1: 01 = always, 10 = on failure only."""
    if not message.account or message.esm_class & _DELIVERY_RECEIPT:
        return False  # gateway-generated text, or a receipt itself
    wanted = message.registered_delivery & _RECEIPT_MASK
    if wanted == _RECEIPT_ALWAYS:
        return True
    return wanted == _RECEIPT_ON_FAILURE and state is not MessageState.DELIVERED


def refusal_error(status: int) -> int:
    """A receipt's err for an MT the gateway ended with its own refusal `status` (0x400-0x402, what its submit_sm
    would be answered now): err:400-402 (query_error_code makes them 40-42)."""
    return 400 + (status & 0xFF)


def query_error_code(err: int) -> int:
    """query_sm_resp's error_code for a message whose receipt says (or would say) err:<err>. An MT waiting for its
    retry keeps the status its last attempt was refused with, as the handset sent it: its low octet."""
    return _REFUSAL_ERROR_CODES.get(err, err & 0xFF)


def receipt_text(message: Message, state: MessageState, done_at: float, error: int) -> str:
    delivered = 1 if state is MessageState.DELIVERED else 0
    _concat, body = parse_udh(message.esm_class, message.short_message)
    original = smpp_text.decode(body, message.data_coding)[:20]
    printable = "".join(c if c in _RECEIPT_TEXT else "?" for c in original)
    return (
        f"id:{submitted_id(message)} sub:001 dlvrd:{delivered:03d} "
        f"submit date:{format_receipt_date(message.submitted_at)} done date:{format_receipt_date(done_at)} "
        f"stat:{state.receipt_stat} err:{error:03d} text:{printable}"
    )


def make_receipt(
    message: Message, state: MessageState, done_at: float, error: int, receipt_id: str, sp_accounts: Container[str] = (),
    made_at: float | None = None,
) -> Message:  # fmt: skip
    """The receipt MT for `message`, addressed back to whoever submitted it. One to an SP (its account in
    `sp_accounts`) goes to the SP's service code: it names the subscriber the SP's MT went to, whom its log lines
    name as `msisdn` (messages.subscriber_of). `made_at`: when it is made, its own submission and the start of its
    validity, if after `done_at` (an expiry found late: its validity would have run out with the MT's)."""
    made_at = done_at if made_at is None else made_at
    extra = {"to_account": message.account}
    if message.account in sp_accounts:
        extra["subscriber"] = message.dest_addr
    return Message(
        id=receipt_id,
        direction=Direction.MT,
        status=MessageStatus.ENROUTE,
        account="",
        source_addr=message.dest_addr,
        dest_addr=message.source_addr,
        short_message=smpp_text.encode(receipt_text(message, state, done_at, error), 0),
        data_coding=0,
        esm_class=_DELIVERY_RECEIPT,
        tlvs=encode_tlvs({Tag.RECEIPTED_MESSAGE_ID: submitted_id(message), Tag.MESSAGE_STATE: int(state)}),
        submitted_at=made_at,
        expires_at=made_at + RECEIPT_VALIDITY,
        next_attempt_at=made_at,
        origin_id=message.id,
        extra=extra,
    )


def receipt_for(
    message: Message, state: MessageState, done_at: float, error: int, ids: MessageIds, sp_accounts: Container[str] = (),
    made_at: float | None = None,
) -> Message | None:  # fmt: skip
    """The receipt `message` reached `state` with, if its registered_delivery asks for one (`make_receipt`)."""
    if not receipt_due(message, state):
        return None
    return make_receipt(message, state, done_at, error, ids.next(), sp_accounts, made_at)
