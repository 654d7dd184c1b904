"""What SMPP 3.4 lets an ESME put in a submission's fields (sections 4.4, 4.7 and 5.2), and in the same fields
of a replace_sm (4.10), which rewrites a submission and so may not carry what the submission could not; and
in the addresses a query_sm or cancel_sm names a submission by (4.8, 4.9).

The codec decodes any octet; these are the value tables. A value outside them
is refused with the field's own command_status, so a client learns which field
is wrong and nothing it did not mean is delivered: in particular no ESME may
submit what only an SMSC sends, a delivery receipt (esm_class message type
0x04, or the receipt TLVs), which would reach its recipient looking exactly
like one of the gateway's.

Of the messaging modes (esm_class bits 1-0, 2.10) the gateway is store and
forward: that mode and the default are what it does, and datagram mode is
taken as store and forward too (stored, retried, with its receipt: more than
datagram's best effort, never less). Transaction mode is refused: its
response would have to say whether the message reached its recipient, and
the gateway answers once the message is stored, before any attempt.
"""

from __future__ import annotations

from .refusal import Rejection
from .smpp.constants import CommandStatus as S
from .smpp.constants import Tag
from .smpp.pdu import CancelSm, DataSm, QuerySm, ReplaceSm, SubmitSm

_TONS = range(7)  # 5.2.5: unknown, international, national, network specific, subscriber, alphanumeric, abbreviated
_NPIS = frozenset({0, 1, 3, 4, 6, 8, 9, 10, 14, 18})  # 5.2.6
# 5.2.12: an ESME submits a default message, an ESME delivery acknowledgement or an ESME manual/user one.
_SUBMITTED_MESSAGE_TYPES = frozenset({0x00, 0x08, 0x10})
_MESSAGE_TYPE = 0x3C
_MESSAGING_MODE, _TRANSACTION_MODE = 0x03, 0x02  # 5.2.12 bits 1-0
_PRIORITIES = range(4)  # 5.2.14
_REGISTERED_DELIVERY_RESERVED = 0xE0  # 5.2.17: bits 7-5
_SMSC_RECEIPT = 0x03  # bits 1-0: 3 is reserved
# What the SMSC sets in the receipts it sends (4.6.1); a submission carrying them is forging one.
_SMSC_ONLY_TLVS = (int(Tag.RECEIPTED_MESSAGE_ID), int(Tag.MESSAGE_STATE), int(Tag.NETWORK_ERROR_CODE))
_MESSAGE_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)


# The same tables as octet -> 1 (allowed) / 0, for the one-expression test every submission takes.
_NPI_OK = bytes(npi in _NPIS for npi in range(256))
_ESM_CLASS_OK = bytes(
    e & _MESSAGE_TYPE in _SUBMITTED_MESSAGE_TYPES and e & _MESSAGING_MODE != _TRANSACTION_MODE for e in range(256)
)
_REGISTERED_DELIVERY_OK = bytes(not r & _REGISTERED_DELIVERY_RESERVED and r & _SMSC_RECEIPT != _SMSC_RECEIPT for r in range(256))


def check_submission(pdu: SubmitSm | DataSm) -> None:
    """Raise Rejection for the first field of a submit_sm / data_sm (or a submit_multi's per-destination
    submit_sm) whose value SMPP 3.4 does not allow from an ESME."""
    if (  # every submission: one expression (half the cost of the field-by-field checks, which name the fault)
        pdu.source_addr_ton < 7 and pdu.dest_addr_ton < 7 and _NPI_OK[pdu.source_addr_npi] and _NPI_OK[pdu.dest_addr_npi]
        and _ESM_CLASS_OK[pdu.esm_class] and _REGISTERED_DELIVERY_OK[pdu.registered_delivery] and not pdu.tlvs
        and (type(pdu) is DataSm or pdu.priority_flag < 4 and pdu.replace_if_present_flag < 2)
    ):  # fmt: skip
        return
    _find_fault(pdu)


def check_replacement(pdu: ReplaceSm) -> None:
    """Raise Rejection for the first field of a replace_sm that a submit_sm would be refused for: the MT it
    rewrites must stay one that could have been submitted. (Its times are checked as a submission's are, by the
    same functions in refusal.py; sm_default_msg_id is ignored by both: there are no canned messages.)"""
    _check_source(pdu)
    _check_registered_delivery(pdu.registered_delivery)
    _check_tlvs(pdu)


def check_addresses(pdu: QuerySm | CancelSm) -> None:
    """Raise Rejection for a TON or NPI of a query_sm's or cancel_sm's addresses that a submit_sm would be refused
    for, with the same status."""
    _check_source(pdu)
    if type(pdu) is CancelSm:  # (query_sm names no destination)
        _check_destination(pdu)


def _find_fault(pdu: SubmitSm | DataSm) -> None:
    _check_source(pdu)
    _check_destination(pdu)
    message_type = pdu.esm_class & _MESSAGE_TYPE
    if message_type not in _SUBMITTED_MESSAGE_TYPES:
        raise Rejection(S.ESME_RINVESMCLASS, f"esm_class message type 0x{message_type:02x} cannot be submitted"
                                             " (0x04 is a delivery receipt, which only the SMSC sends)")  # fmt: skip
    if pdu.esm_class & _MESSAGING_MODE == _TRANSACTION_MODE:
        raise Rejection(S.ESME_RINVESMCLASS, "esm_class messaging mode 0x02 (transaction) is not offered: the answer"
                                             " would have to say whether the message was delivered; submit it in"
                                             " default or store and forward mode")  # fmt: skip
    _check_registered_delivery(pdu.registered_delivery)
    if type(pdu) is not DataSm:  # data_sm has neither field
        if pdu.priority_flag not in _PRIORITIES:
            raise Rejection(S.ESME_RINVPRTFLG, f"priority_flag {pdu.priority_flag} is not 0-3")
        if pdu.replace_if_present_flag > 1:
            raise Rejection(S.ESME_RINVREPFLAG, f"replace_if_present_flag {pdu.replace_if_present_flag} is not 0 or 1")
    _check_tlvs(pdu)


def _check_source(pdu: SubmitSm | DataSm | ReplaceSm | QuerySm | CancelSm) -> None:
    if pdu.source_addr_ton not in _TONS:
        raise Rejection(S.ESME_RINVSRCTON, f"source_addr_ton {pdu.source_addr_ton} is not a type of number (0-6)")
    if pdu.source_addr_npi not in _NPIS:
        raise Rejection(S.ESME_RINVSRCNPI, f"source_addr_npi {pdu.source_addr_npi} is not a numbering plan")


def _check_destination(pdu: SubmitSm | DataSm | CancelSm) -> None:
    if pdu.dest_addr_ton not in _TONS:
        raise Rejection(S.ESME_RINVDSTTON, f"dest_addr_ton {pdu.dest_addr_ton} is not a type of number (0-6)")
    if pdu.dest_addr_npi not in _NPIS:
        raise Rejection(S.ESME_RINVDSTNPI, f"dest_addr_npi {pdu.dest_addr_npi} is not a numbering plan")


def _check_registered_delivery(registered: int) -> None:
    if registered & _REGISTERED_DELIVERY_RESERVED or registered & _SMSC_RECEIPT == _SMSC_RECEIPT:
        raise Rejection(S.ESME_RINVREGDLVFLG, f"registered_delivery 0x{registered:02x} uses reserved bits")


def _check_tlvs(pdu: SubmitSm | DataSm | ReplaceSm) -> None:
    tlvs = pdu.tlvs
    if tlvs:
        for tag in _SMSC_ONLY_TLVS:
            if tag in tlvs:
                raise Rejection(S.ESME_ROPTPARNOTALLWD, f"optional parameter 0x{tag:04x} belongs to an SMSC's delivery receipt")
        if _MESSAGE_PAYLOAD in tlvs and getattr(pdu, "short_message", b""):
            raise Rejection(S.ESME_ROPTPARNOTALLWD, "message_payload and short_message both carry text; send one of them")
