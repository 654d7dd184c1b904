"""Field values SMPP 3.4 does not allow in a submission are refused with the field's own status (gateway/field_rules.py).

Above all no subscriber can forge a delivery receipt: a submit_sm with esm_class 0x04, or with the
receipt TLVs, would reach its recipient looking exactly like one the gateway sends.
"""

from __future__ import annotations

import pytest

from gateway.smpp.tlv import MAX_TLVS, decode_tlvs
from tests.smpp_handset import (
    ESM_RECEIPT,
    ESME_ROK,
    RawLink,
    answer,
    frame,
    is_receipt,
    receipt_fields,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
ESME_RINVPRTFLG = 0x06
ESME_RINVREGDLVFLG = 0x07
ESME_RINVESMCLASS = 0x43
ESME_RINVSRCTON = 0x48
ESME_RINVSRCNPI = 0x49
ESME_RINVDSTTON = 0x50
ESME_RINVDSTNPI = 0x51
ESME_RINVREPFLAG = 0x54
ESME_RINVOPTPARSTREAM = 0xC0
ESME_ROPTPARNOTALLWD = 0xC1
QUERY_SM, SUBMIT_SM, CANCEL_SM = 0x00000003, 0x00000004, 0x00000008
ENROUTE = 1  # message_state (5.2.28)
RECEIPT_TEXT = "id:1a23d4d2e7e00000002 sub:001 dlvrd:001 submit date:2612031200 done date:2612031200 stat:DELIVRD err:000 text:hi"


def cstr(value: str) -> bytes:
    return value.encode() + b"\0"


def tlv(tag: int, value: bytes) -> bytes:
    return tag.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


def submit_sm(sequence: int, short_message: bytes, *, esm_class: int = 0, tlvs: bytes = b"") -> bytes:
    """A submit_sm from A to B written field by field from section 4.4.1."""
    body = (
        cstr("") + bytes([1, 1]) + cstr(A) + bytes([1, 1]) + cstr(B)
        + bytes([esm_class, 0, 0]) + cstr("") + cstr("") + bytes([0, 0, 0, 0, len(short_message)]) + short_message
        + tlvs
    )  # fmt: skip
    return frame(SUBMIT_SM, sequence, body)


def raw_status(phone, pdu: bytes, sequence: int) -> int:
    phone.client._socket.sendall(pdu)
    return phone.response(sequence).status


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"priority_flag": 9}, ESME_RINVPRTFLG),
        ({"replace_if_present_flag": 2}, ESME_RINVREPFLAG),
        ({"source_addr_ton": 9}, ESME_RINVSRCTON),
        ({"dest_addr_npi": 7}, ESME_RINVDSTNPI),
        ({"registered_delivery": 0x03}, ESME_RINVREGDLVFLG),  # SMSC receipt value 3 is reserved
        ({"registered_delivery": 0x21}, ESME_RINVREGDLVFLG),  # bits 7-5 are reserved
        ({"esm_class": 0x3C}, ESME_RINVESMCLASS),
    ],
    ids=["priority_flag", "replace_if_present_flag", "source_addr_ton", "dest_addr_npi", "registered_delivery_3",
         "registered_delivery_reserved_bits", "esm_class_type"],
)  # fmt: skip
def test_a_value_outside_its_table_is_refused_and_nothing_is_delivered(handset, fields, status):
    a, b = handset(A), handset(B)
    assert a.submit(B, "refused", **fields).status == status
    assert a.submit(B, "next").status == ESME_ROK
    assert text(b.expect()) == "next"  # the refused one never came before it


def query_sm(sequence: int, message_id: str, *, source: tuple[int, int] = (1, 1)) -> bytes:
    """A query_sm of A's message, source_addr_ton and source_addr_npi as given (section 4.8.1)."""
    return frame(QUERY_SM, sequence, cstr(message_id) + bytes(source) + cstr(A))


def cancel_sm(sequence: int, message_id: str, *, source: tuple[int, int] = (1, 1), dest: tuple[int, int] = (1, 1)) -> bytes:
    """A cancel_sm of A's message to B, the TONs and NPIs as given (section 4.9.1)."""
    return frame(CANCEL_SM, sequence, cstr("") + cstr(message_id) + bytes(source) + cstr(A) + bytes(dest) + cstr(B))


@pytest.mark.parametrize(
    ("request_with", "status"),
    [
        (lambda message_id: query_sm(100, message_id, source=(9, 1)), ESME_RINVSRCTON),
        (lambda message_id: query_sm(100, message_id, source=(1, 2)), ESME_RINVSRCNPI),
        (lambda message_id: cancel_sm(100, message_id, source=(9, 77)), ESME_RINVSRCTON),
        (lambda message_id: cancel_sm(100, message_id, dest=(9, 1)), ESME_RINVDSTTON),
        (lambda message_id: cancel_sm(100, message_id, dest=(1, 77)), ESME_RINVDSTNPI),
    ],
    ids=["query_sm_source_ton", "query_sm_source_npi", "cancel_sm_source_ton", "cancel_sm_dest_ton", "cancel_sm_dest_npi"],
)  # fmt: skip
def test_a_query_sm_or_cancel_sm_naming_an_address_outside_the_tables_is_refused_as_a_submission_is(
    gateway, handset, request_with, status
):
    """They were answered (and the MT cancelled) whatever TON or NPI they gave, where a submit_sm or replace_sm
    with the same values is refused with the field's own status."""
    a = handset(A)
    message_id = a.submit(B, "waits").message_id.decode()  # B is not bound: it waits
    with RawLink(gateway.smpp_port) as link:  # (smpplib reads no cancel_sm_resp)
        link.bind("handset", command="bind_transmitter")
        link.send(request_with(message_id))
        assert answer(link, 100)[0] == status
    assert a.query(message_id).message_state == ENROUTE  # not cancelled


def test_a_forged_delivery_receipt_is_refused(handset):
    a, b = handset(A), handset(B)
    assert raw_status(a, submit_sm(101, RECEIPT_TEXT.encode(), esm_class=ESM_RECEIPT), 101) == ESME_RINVESMCLASS
    receipt_tlvs = tlv(0x001E, cstr("1a23d4d2e7e00000002")) + tlv(0x0427, bytes([2]))  # receipted_message_id, message_state
    assert raw_status(a, submit_sm(102, RECEIPT_TEXT.encode(), tlvs=receipt_tlvs), 102) == ESME_ROPTPARNOTALLWD
    assert a.submit(B, "next").status == ESME_ROK
    assert text(b.expect()) == "next"


def test_short_message_and_message_payload_together_are_refused(handset):
    a, b = handset(A), handset(B)
    both = submit_sm(103, b"short", tlvs=tlv(0x0424, b"payload"))
    assert raw_status(a, both, 103) == ESME_ROPTPARNOTALLWD  # which text was meant? neither is dropped silently
    assert raw_status(a, submit_sm(104, b"", tlvs=tlv(0x0424, b"payload")), 104) == ESME_ROK
    assert text(b.expect()) == "payload"


def test_an_esme_acknowledgement_is_delivered_as_one_and_the_messaging_mode_is_not(handset):
    a, b = handset(A), handset(B)
    assert a.submit(B, "ack", esm_class=0x08).status == ESME_ROK  # ESME delivery acknowledgement
    assert a.submit(B, "datagram mode", esm_class=0x01, registered_delivery=1).status == ESME_ROK  # stored all the same
    ack, datagram = b.expect_many(2)
    assert (text(ack), ack.esm_class) == ("ack", 0x08)  # deliver_sm: SME delivery acknowledgement
    assert (text(datagram), datagram.esm_class) == ("datagram mode", 0x00)  # bits 1-0 do not apply to deliver_sm
    assert receipt_fields(a.expect(predicate=is_receipt))["stat"] == "DELIVRD"  # with its receipt, as store and forward


@pytest.mark.parametrize("command", ["submit_sm", "data_sm"])
def test_transaction_mode_is_refused_since_the_answer_cannot_say_whether_it_was_delivered(handset, command):
    """SMPP 3.4 2.10.3: in transaction mode the response says whether the message reached its recipient. It was
    answered ESME_ROK at once and stored for 48 h, as if delivered, while the recipient might never get it."""
    a, b = handset(A), handset(B)
    send = a.submit if command == "submit_sm" else a.data_sm
    assert send(B, "transaction mode", esm_class=0x02).status == ESME_RINVESMCLASS
    assert send(B, "store and forward mode", esm_class=0x03).status == ESME_ROK
    assert text(b.expect()) == "store and forward mode"  # the refused one never came before it


def test_only_what_a_deliver_sm_may_carry_is_passed_on_to_the_recipient(gateway, handset):
    """dest_addr_subunit, ms_validity and the like tell the SMSC how to deliver; a deliver_sm may not carry them,
    and smpplib's client cannot even parse one that does. source_port is for the recipient; a vendor TLV goes on as
    it came."""
    a, b = handset(A), handset(B)
    tlvs = (
        tlv(0x0005, bytes([1]))  # dest_addr_subunit: MS display
        + tlv(0x1204, bytes([0]))  # ms_validity
        + tlv(0x020A, (1234).to_bytes(2, "big"))  # source_port
        + tlv(0x1400, b"ref-42")  # vendor-specific
    )  # fmt: skip
    a.client._socket.sendall(submit_sm(105, b"with options", tlvs=tlvs))
    resp = a.response(105)
    assert resp.status == ESME_ROK
    delivered = b.expect()  # smpplib fails on a deliver_sm with dest_addr_subunit (not one of its fields)
    assert (text(delivered), delivered.source_port) == ("with options", 1234)
    stored = gateway.call(gateway.gateway.store.get(resp.message_id.decode()))
    assert decode_tlvs(stored.tlvs, 0, len(stored.tlvs)) == {0x020A: 1234, 0x1400: b"ref-42"}


def deliver_sm_tlvs(pdu: bytes) -> bytes:
    """The optional parameters of a deliver_sm as they came on the wire (section 4.6.1 read field by field)."""
    pos = 16
    for kind in ("c", 1, 1, "c", 1, 1, "c", 1, 1, 1, "c", "c", 1, 1, 1, 1):  # service_type .. sm_default_msg_id
        pos = pdu.index(b"\0", pos) + 1 if kind == "c" else pos + kind
    return pdu[pos + 1 + pdu[pos] :]  # after sm_length and short_message


def test_a_vendor_tag_sent_twice_reaches_the_recipient_twice_byte_for_byte(handset, gateway):
    a = handset(A)
    vendor = tlv(0x1400, b"\x01\x02") + tlv(0x1400, b"\x03") + tlv(0x1401, b"\xaa")
    with RawLink(gateway.smpp_port) as b:  # smpplib skips TLVs it does not know: B reads the bytes
        b.bind("handset2")
        assert raw_status(a, submit_sm(106, b"vendor", tlvs=vendor), 106) == ESME_ROK
        assert deliver_sm_tlvs(b.read_frame()) == vendor


def test_a_submission_with_more_tlvs_than_the_most_read_is_refused_and_nothing_is_delivered(handset, gateway):
    """One bind sending 100 submit_sm a second, each with 16,000 empty vendor TLVs, held the event loop ~18 ms per
    PDU: every other bind's enquire_link waited 150 ms. The most a PDU may carry goes on; one more is refused."""
    a = handset(A)
    most = (tlv(0x1401, b"") + tlv(0x1400, b"")) * (MAX_TLVS // 2)
    with RawLink(gateway.smpp_port) as b:  # smpplib skips TLVs it does not know: B reads the bytes
        b.bind("handset2")
        assert raw_status(a, submit_sm(108, b"too many", tlvs=most + tlv(0x1401, b"")), 108) == ESME_RINVOPTPARSTREAM
        assert raw_status(a, submit_sm(109, b"as many as read", tlvs=most), 109) == ESME_ROK
        delivered = b.read_frame()
        assert b"as many as read" in delivered  # the refused one never came before it
        assert deliver_sm_tlvs(delivered) == tlv(0x1401, b"") * (MAX_TLVS // 2) + tlv(0x1400, b"") * (MAX_TLVS // 2)


def test_a_standard_tag_sent_twice_is_refused_and_nothing_is_delivered(handset):
    a, b = handset(A), handset(B)
    twice = tlv(0x0204, (7).to_bytes(2, "big")) + tlv(0x0204, (9).to_bytes(2, "big"))  # user_message_reference
    assert raw_status(a, submit_sm(107, b"which reference?", tlvs=twice), 107) == ESME_RINVOPTPARSTREAM
    assert a.submit(B, "next").status == ESME_ROK
    assert text(b.expect()) == "next"  # the refused one never came before it
