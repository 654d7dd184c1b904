"""Between the wire and the store: a submitted PDU becomes a Message, a Message becomes a deliver_sm."""

from __future__ import annotations

import zlib

from .numbers import NumberPlan
from .smpp.codec import MAX_PDU_LENGTH, encode_pdu
from .smpp.constants import EsmClass, RegisteredDelivery, Tag
from .smpp.pdu import DataSm, DeliverSm, SubmitMulti, SubmitSm
from .smpp.segment import SMS_OCTETS, sms_on_air, with_tlvs_in_udh
from .smpp.tlv import STORED, TlvValue, decode_tlvs, encode_tlvs
from .store.records import (
    ACKNOWLEDGEMENT,
    Direction,
    Message,
    MessageStatus,
    acknowledging,
)

MAX_SHORT_MESSAGE = 254
# The optional parameters a deliver_sm may carry (SMPP 3.4 section 4.6.1), and ussd_service_op, which USSD
# gateways carry in deliver_sm too.
_DELIVER_SM_TLVS = frozenset({
    Tag.USER_MESSAGE_REFERENCE, Tag.SOURCE_PORT, Tag.DESTINATION_PORT, Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS,
    Tag.SAR_SEGMENT_SEQNUM, Tag.USER_RESPONSE_CODE, Tag.PRIVACY_INDICATOR, Tag.PAYLOAD_TYPE, Tag.MESSAGE_PAYLOAD,
    Tag.CALLBACK_NUM, Tag.SOURCE_SUBADDRESS, Tag.DEST_SUBADDRESS, Tag.LANGUAGE_INDICATOR, Tag.ITS_SESSION_INFO,
    Tag.NETWORK_ERROR_CODE, Tag.MESSAGE_STATE, Tag.RECEIPTED_MESSAGE_ID, Tag.USSD_SERVICE_OP,
})  # fmt: skip
# Optional parameters of a submission that are not passed on to its recipient: message_payload (the text is the
# message's body), and the standard ones a deliver_sm may not carry, which only tell the SMSC how to deliver
# (dest_addr_subunit, qos_time_to_live, ms_validity, ...): a strict receiver refuses a deliver_sm with them
# (smpplib's client fails to parse it). Tags SMPP 3.4 does not define (vendor-specific) go on as they came.
_NOT_FORWARDED = frozenset(int(tag) for tag in Tag if tag not in _DELIVER_SM_TLVS) | {int(Tag.MESSAGE_PAYLOAD)}
_USER_MESSAGE_REFERENCE = int(Tag.USER_MESSAGE_REFERENCE)  # Tag.X from the class: ~150 ns (EnumType.__getattr__)
_SAR_MSG_REF_NUM, _SAR_TOTAL_SEGMENTS, _SAR_SEGMENT_SEQNUM = (
    int(Tag.SAR_MSG_REF_NUM), int(Tag.SAR_TOTAL_SEGMENTS), int(Tag.SAR_SEGMENT_SEQNUM)
)
_UDHI = int(EsmClass.UDHI)
_SME_ACK_REQUESTED = int(RegisteredDelivery.SME_ACK_MASK)
_NOT_MESSAGING_MODE = 0xFC  # esm_class without bits 1-0 (datagram, forward, store and forward)
_MOST_UDH_ADDED = 1 + 6 + 6  # octets: a UDH's length, a 16-bit concatenation element, a 16-bit ports element
# Octets of text one SMS holds in every alphabet, with any UDH the SMSC adds for the TLVs (160 GSM septets, 140
# octets, 70 UCS2 characters without one).
_FITS_ANY_SMS = SMS_OCTETS - _MOST_UDH_ADDED
# The first status of a submission, by direction (an enum member read from its class costs ~150 ns in CPython 3.11).
_FIRST_STATUS = {Direction.MO: MessageStatus.ACCEPTED, Direction.MT: MessageStatus.ENROUTE}


def addressed_account(message: Message) -> str | None:
    """The account an MT is addressed to (`to_account` in its extra: a receipt, an SP's notice); None: to a number.
    (Router._route reads it inline: once per MT routed.)"""
    return message.extra.get("to_account") if message.extra else None


def notice_account(message: Message) -> str | None:
    """The SP account an SP notice goes to (an MT to an SP's service code, from the subscriber it is about:
    handlers/sp_notice.py); None for any other MT (a receipt names its account too, but is no notice)."""
    if not message.extra or message.esm_class & _RECEIPT:
        return None
    return message.extra.get("to_account") or None


def is_acknowledgement(esm_class: int) -> bool:
    """An SME delivery or manual/user acknowledgement (esm_class message type 0x08 or 0x10, SMPP 3.4 5.2.12): a
    report on a message its sender received (which asked for it: registered_delivery bits 3-2), not a text to act on.
    (Of the message types, only these and the default may be submitted: field_rules.)"""
    return bool(esm_class & ACKNOWLEDGEMENT)


def acknowledging_subscriber(message: Message) -> str | None:
    """The subscriber whose SME acknowledgement to an SP's service code this MT is (intake `_acknowledged_sp`: an MT
    to the SP account, with its esm_class): those waiting for SPs are bounded per subscriber (Delivery.acknowledgements).
    None for any other message."""
    return acknowledging(message.esm_class, addressed_account(message), message.source_addr)


GATEWAY_MADE = "(gateway)"  # the `account` a log line names for an MT the gateway made (stored with account "")


def account_of(message: Message) -> str:
    """The `account` a log line about an MT names: the account that submitted it, or GATEWAY_MADE for a service
    reply, an SP notice or a receipt (an empty account left operators guessing)."""
    return message.account or GATEWAY_MADE


def subscriber_of(message: Message) -> str:
    """The subscriber a log line about a message names (its `msisdn`): an MO's sender (not the short code it went
    to); an MT's destination; an SP notice's source, and for a receipt to an SP (at its service code) the subscriber
    the SP's MT went to (receipts.make_receipt)."""
    if message.direction is Direction.MO:
        return message.source_addr
    if not message.extra:
        return message.dest_addr
    return message.extra.get("subscriber") or (message.source_addr if notice_account(message) else message.dest_addr)


_RECEIPT = int(EsmClass.DELIVERY_RECEIPT)
_NO_FIELDS: dict[str, str] = {}
_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)


def stored_tlvs(message: Message, refuse_repeats: bool = True) -> dict[int, TlvValue]:
    """The TLVs a stored message carries, read whole (tlv.STORED: the cap on a PDU's was checked when it came)."""
    return decode_tlvs(message.tlvs, 0, len(message.tlvs), refuse_repeats, most=STORED) if message.tlvs else {}


def receipted(message: Message) -> dict[str, str]:
    """What a log line about a message adds when it is a receipt: `receipted_message_id`, the id of the message it
    reports on as its submitter was given it (its receipted_message_id TLV: an SMPP 3.3 bind's alias, a submit_multi's
    id). The client greps the log for that id; the receipt's own is news to it. For any other message nothing, after
    one bit test (`**receipted(message)` in the line's fields)."""
    if not message.esm_class & _RECEIPT or not message.tlvs:
        return _NO_FIELDS
    try:
        value = stored_tlvs(message, refuse_repeats=False).get(_RECEIPTED_MESSAGE_ID)
    except ValueError:  # a row an earlier version or damage left malformed: the line is written all the same
        return _NO_FIELDS
    if value is None:
        return _NO_FIELDS
    return {"receipted_message_id": value.decode("latin-1").rstrip("\0") if isinstance(value, bytes) else str(value)}


def subscriber_submitting(from_sp: bool, source: str, dest: str, plan: NumberPlan | None = None) -> str:
    """The subscriber a log line about a submission (recognised again, refused, cancelled, replaced, queried) names
    as its msisdn: the sender; for an SP, which sends from its service code, its addressee. With `plan`, the
    addresses are as sent, and the one named is written as every other line writes it (normalised)."""
    number = dest if from_sp else source
    return number if plan is None else plan.normalise(number)


def body_of(pdu: SubmitSm | DataSm) -> bytes:
    """The message text octets: short_message, or message_payload when that is used instead."""
    body = getattr(pdu, "short_message", b"")
    if not body:
        payload = pdu.tlvs.get(Tag.MESSAGE_PAYLOAD)
        if isinstance(payload, bytes):
            return payload
    return body


def segments_of(pdu: SubmitSm | DataSm) -> int:
    """What a submission costs against a throughput limit: one per SMS it becomes (segment.sms_on_air).

    A part the client cut itself (UDH) is one SMS, if it fits in one (GSM septets packed after the UDH, as on
    the air: 6 octets and 153 septets are one): a UDH in front of a 60 KB message_payload counted as one let a
    client send hundreds of SMS for the price of one, so a longer one counts the SMS it fills. So does a sar_*
    part, with the UDH the SMSC gives it: 160 GSM septets with sar_* TLVs counted one, and fill two. Otherwise
    the text's length decides, as for a message_payload: 200 GSM characters in one short_message are two SMS.
    """
    body = getattr(pdu, "short_message", b"") or body_of(pdu)  # (no call for the usual short_message)
    if len(body) <= _FITS_ANY_SMS:  # most submissions: one SMS, whatever else
        return 1
    return sms_on_air(body, pdu.esm_class, pdu.data_coding, pdu.tlvs)


def segments_stored(message: Message) -> int:
    """What a stored MT costs against a throughput limit, as its submission did (segments_of): a replace_sm is
    charged the segments its new text adds. TLVs that do not decode (a row damaged) are left out of the count."""
    body = message.short_message
    if len(body) <= _FITS_ANY_SMS:
        return 1
    try:
        tlvs = stored_tlvs(message, refuse_repeats=False)
    except ValueError:
        tlvs = None
    return sms_on_air(body, message.esm_class, message.data_coding, tlvs)


def dedup_key(account: str, session: str, pdu: SubmitSm | DataSm, source: str, dest: str, body: bytes) -> str:
    """What makes a retransmission the same message: the same addresses and content, and

    - the client's own user_message_reference when it sends one (recognised across binds: a client
      that lost its connection and sends again on a new one);
    - otherwise the sequence number on the same bind (`session`). A new bind starts its sequence
      numbers again, so across binds an equal number says nothing: a subscriber texting "Y" again
      from a new session is a new message, not a copy to drop;
    - for a part of a long message sent with sar_* TLVs, which part it is: two parts of one message
      may carry the same octets and one user_message_reference (a UDH part has its seqnum in the body).
    """
    tlvs = pdu.tlvs
    ref = tlvs.get(_USER_MESSAGE_REFERENCE) if tlvs else None  # (most submissions have none to look up)
    marker = f"u{ref}" if ref is not None else f"s{session}:{pdu.sequence_number}"
    if tlvs and (seqnum := tlvs.get(_SAR_SEGMENT_SEQNUM)) is not None:
        marker = f"{marker}|p{tlvs.get(_SAR_MSG_REF_NUM)}.{tlvs.get(_SAR_TOTAL_SEGMENTS)}.{seqnum}"
    return f"{account}|{source}|{dest}|{marker}|{zlib.crc32(body):08x}{len(body)}"


def may_be_stored(pdu: SubmitSm | DataSm | SubmitMulti, highest_before: int) -> bool:
    """Whether a stored message may already hold this submission's `dedup_key`: always with a
    user_message_reference; without one, only if its sequence number is not above every one its bind
    submitted before (a retransmission, or numbers that wrapped around)."""
    return pdu.sequence_number <= highest_before or bool(pdu.tlvs) and _USER_MESSAGE_REFERENCE in pdu.tlvs


def schedule(message: Message, at: float, now: float) -> None:
    """schedule_delivery_time (submit_sm, replace_sm): a time ahead makes the MT wait as scheduled, one past
    lets it go now."""
    if at > now:
        message.status, message.next_attempt_at = MessageStatus.SCHEDULED, at
    else:
        message.status, message.next_attempt_at = MessageStatus.ENROUTE, now


def message_from_submission(
    pdu: SubmitSm | DataSm,
    *,
    message_id: str,
    direction: Direction,
    account: str,
    session: str,
    source: str,
    dest: str,
    now: float,
    expires_at: float,
) -> Message:
    body = body_of(pdu)
    data_sm = type(pdu) is DataSm  # it has no protocol_id nor priority_flag (read without getattr: every submission)
    tlvs = pdu.tlvs
    carried = {tag: value for tag, value in tlvs.items() if tag not in _NOT_FORWARDED} if tlvs else None
    # Positional, in Message's field order: this runs for every submission, and
    # matching 18 keywords against 27 parameters cost more than half of the call.
    return Message(
        message_id,  # id
        direction,
        _FIRST_STATUS[direction],  # status
        account,
        source,  # source_addr
        dest,  # dest_addr
        body,  # short_message
        pdu.data_coding,
        pdu.esm_class,
        0 if data_sm else pdu.protocol_id,
        0 if data_sm else pdu.priority_flag,
        pdu.registered_delivery,
        pdu.service_type,
        0, 0, 0, 0,  # source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi
        encode_tlvs(carried) if carried else b"",  # tlvs
        now,  # submitted_at
        expires_at,
        0,  # attempts
        now,  # next_attempt_at
        None,  # done_at
        0,  # error
        None,  # origin_id
        dedup_key(account, session, pdu, source, dest, body),
    )  # fmt: skip


# What making a stored MT into a deliver_sm (or its receipt) raises for a row no deliver_sm can carry: a value too long
# or out of range (ValueError: a row an earlier version let in), or one of the wrong type (a row damaged outside the
# gateway, SQLite keeping whatever a column is given: text where a number goes, TypeError; a number or bytes where
# text goes, AttributeError).
UNSENDABLE = (ValueError, TypeError, AttributeError)


def deliver_sm_for(message: Message, plan: NumberPlan, *, optional_parameters: bool = True) -> DeliverSm:
    """The deliver_sm of an MT; `optional_parameters` False for a bind of SMPP 3.3 (interface_version below 0x34),
    which has none: see `_without_tlvs`. One of UNSENDABLE, here or as it is encoded, for an MT it cannot carry."""
    tlvs = stored_tlvs(message)
    body = message.short_message
    esm_class = message.esm_class & _NOT_MESSAGING_MODE  # 5.2.12: deliver_sm has no messaging mode
    if not optional_parameters:
        body, esm_class = _without_tlvs(body, esm_class, tlvs)
        tlvs = {}
    elif len(body) > MAX_SHORT_MESSAGE:
        tlvs[Tag.MESSAGE_PAYLOAD] = body
        body = b""
    src_ton, src_npi = _ton_npi(message.source_addr, plan)
    dst_ton, dst_npi = _ton_npi(message.dest_addr, plan)
    return DeliverSm(
        service_type=message.service_type,
        source_addr_ton=src_ton,
        source_addr_npi=src_npi,
        source_addr=message.source_addr,
        dest_addr_ton=dst_ton,
        dest_addr_npi=dst_npi,
        destination_addr=message.dest_addr,
        esm_class=esm_class,
        protocol_id=message.protocol_id,  # 5.2.13: the handset acts on it (silent, replace type, SIM download)
        priority_flag=message.priority_flag,
        # 5.2.17: the SME acknowledgements the sender asks the recipient for (the SMSC's receipt is the gateway's)
        registered_delivery=message.registered_delivery & _SME_ACK_REQUESTED,
        data_coding=message.data_coding,
        short_message=body,
        tlvs=tlvs,
    )


# Octets of a deliver_sm besides its text and TLVs, at most: the header, service_type (6) and two addresses (21
# each) with their NULs, TON and NPI, the ten one-octet fields, and a message_payload TLV's tag and length.
_MOST_DELIVER_SM_FIELDS = 16 + 6 + 1 + 2 + 21 + 1 + 2 + 21 + 1 + 10 + 4


def deliver_sm_length_over(message: Message, plan: NumberPlan) -> int | None:
    """The length of the MT's deliver_sm if it is over MAX_PDU_LENGTH, the most a peer is told this gateway sends
    (and reads), else None. It can be a few octets over a submission within it: a national number gains its
    country code, and a data_sm lacks seven one-octet fields a deliver_sm has. (Encoded only for a text and TLVs
    within ~80 octets of the limit.)"""
    if len(message.short_message) + len(message.tlvs) + _MOST_DELIVER_SM_FIELDS <= MAX_PDU_LENGTH:
        return None
    length = len(encode_pdu(deliver_sm_for(message, plan)))
    return length if length > MAX_PDU_LENGTH else None


def carried_without_tlvs(message: Message) -> bool:
    """Whether a bind of SMPP 3.3 can take the MT: its text, with what its TLVs say in a UDH (`_without_tlvs`),
    fits short_message. One whose row was damaged outside the gateway into values of the wrong type (TypeError,
    AttributeError: see UNSENDABLE), which no deliver_sm carries, is taken: the bind's send ends it, as on any bind
    (Server._send_deliver); raised here, it stopped the routing of every MT after it (a bind's backlog read)."""
    try:
        if len(message.short_message) <= MAX_SHORT_MESSAGE - _MOST_UDH_ADDED:  # (every MT but the longest: no decoding)
            return True
        _without_tlvs(message.short_message, message.esm_class, stored_tlvs(message))
    except ValueError:  # too long for it (or TLVs that do not decode: a bind of SMPP 3.4 ends it as it is sent)
        return False
    except (TypeError, AttributeError):
        return True
    return True


def _without_tlvs(body: bytes, esm_class: int, tlvs: dict[int, int | bytes]) -> tuple[bytes, int]:
    """An MT's text and esm_class for a receiver that takes no optional parameters. What sar_* and port TLVs say
    goes into its UDH, as the SMSC puts it on the air (segment.with_tlvs_in_udh). The others stay behind: a
    receipt's text says what its receipted_message_id and message_state do, and the rest
    (user_message_reference, callback_num, ...) only inform. A text longer than short_message's 254 octets has
    no way there (message_payload is a TLV): ValueError (the router gives such a text to a bind of SMPP 3.4 only:
    `carried_without_tlvs`)."""
    if tlvs:
        with_udh = with_tlvs_in_udh(body, esm_class, tlvs)
        if with_udh is not body:
            body, esm_class = with_udh, esm_class | _UDHI
    if len(body) > MAX_SHORT_MESSAGE:
        raise ValueError(f"{len(body)} octets of text do not fit the short_message of an SMPP 3.3 deliver_sm "
                         f"(at most {MAX_SHORT_MESSAGE}, and SMPP 3.3 has no message_payload)")  # fmt: skip
    return body, esm_class


def _ton_npi(address: str, plan: NumberPlan) -> tuple[int, int]:
    # International/ISDN for subscribers; network-specific for short codes.
    return (1, 1) if plan.is_msisdn(address) else (3, 0)
