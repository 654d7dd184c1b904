"""A submission becomes the Message the store keeps, field by field (message_from_submission builds it positionally)."""

from __future__ import annotations

import struct
import zlib

from hypothesis import given
from hypothesis import strategies as st

from gateway.messages import (
    deliver_sm_for,
    message_from_submission,
    receipted,
    segments_of,
)
from gateway.numbers import NumberPlan
from gateway.smpp.constants import Tag
from gateway.smpp.pdu import DataSm, SubmitSm
from gateway.smpp.tlv import MAX_TLVS, decode_tlvs
from gateway.store.records import Direction, Message, MessageStatus


def test_submit_sm_becomes_the_message_with_every_field_in_its_place() -> None:
    pdu = SubmitSm(
        sequence_number=7, service_type="WAP", source_addr="13800138000", destination_addr="10086",
        esm_class=0x40, protocol_id=0x41, priority_flag=2, registered_delivery=1, data_coding=8,
        short_message=b"\x05\x00\x03\x01\x02\x01hi",
        tlvs={Tag.SOURCE_PORT: 9200, Tag.MESSAGE_PAYLOAD: b"ignored: short_message is set"},
    )  # fmt: skip
    message = message_from_submission(
        pdu, message_id="m1", direction=Direction.MO, account="handset", session="bind9", source="8613800138000",
        dest="10086", now=1000.0, expires_at=2000.0,
    )  # fmt: skip
    body = b"\x05\x00\x03\x01\x02\x01hi"
    assert message == Message(
        id="m1", direction=Direction.MO, status=MessageStatus.ACCEPTED, account="handset",
        source_addr="8613800138000", dest_addr="10086", short_message=body, data_coding=8, esm_class=0x40,
        protocol_id=0x41, priority_flag=2, registered_delivery=1, service_type="WAP", tlvs=message.tlvs,
        submitted_at=1000.0, expires_at=2000.0, next_attempt_at=1000.0,
        dedup_key=f"handset|8613800138000|10086|sbind9:7|{zlib.crc32(body):08x}{len(body)}",
    )  # fmt: skip
    # message_payload describes the submission; the other optional parameters travel on.
    assert decode_tlvs(message.tlvs, 0, len(message.tlvs)) == {Tag.SOURCE_PORT: 9200}
    assert (message.attempts, message.done_at, message.error, message.origin_id, message.extra) == (0, None, 0, None, {})


def test_data_sm_mt_without_optional_parameters() -> None:
    pdu = DataSm(sequence_number=3, source_addr="10086", destination_addr="8613800138000",
                 tlvs={Tag.MESSAGE_PAYLOAD: b"long text"})  # fmt: skip
    message = message_from_submission(
        pdu, message_id="m2", direction=Direction.MT, account="sp", session="bind3", source="10086",
        dest="8613800138000", now=5.0, expires_at=6.0,
    )  # fmt: skip
    assert (message.status, message.short_message, message.tlvs) == (MessageStatus.ENROUTE, b"long text", b"")
    assert (message.source_addr_ton, message.source_addr_npi, message.dest_addr_ton, message.dest_addr_npi) == (0, 0, 0, 0)
    assert (message.protocol_id, message.priority_flag) == (0, 0)  # data_sm has neither field


def test_an_mt_stored_with_more_tlvs_than_a_pdu_may_now_carry_still_goes_out_with_them() -> None:
    """A PDU with more than MAX_TLVS optional parameters is refused since the cap came; a row an earlier version
    stored with more must still become its deliver_sm (or it failed wherever it was read, at every delivery)."""
    stuffed = b"".join(struct.pack(">HH", 0x1401, 0) for _ in range(MAX_TLVS + 1))
    message = Message(id="m3", direction=Direction.MT, status=MessageStatus.ENROUTE, account="carrier",
                      source_addr="8613000000001", dest_addr="8613800138000", short_message=b"hi", tlvs=stuffed)  # fmt: skip
    deliver = deliver_sm_for(message, NumberPlan())
    assert deliver.short_message == b"hi" and len(deliver.tlvs[0x1401]) == MAX_TLVS + 1


def test_a_submission_costs_one_segment_per_sms_it_becomes() -> None:
    assert segments_of(SubmitSm(short_message=b"a" * 160)) == 1  # 160 GSM characters: one SMS
    assert segments_of(SubmitSm(short_message=b"a" * 200)) == 2  # one short_message, two SMS on the air
    assert segments_of(SubmitSm(short_message=b"a" * 200, data_coding=8)) == 2  # 100 UCS2 characters
    assert segments_of(SubmitSm(short_message=b"\x05\x00\x03\x01\x02\x01" + b"a" * 134, esm_class=0x40)) == 1  # a part
    # GSM septets are packed after the UDH (7 septets for 6 octets): 153 septets fill one SMS, 154 two.
    udh = b"\x05\x00\x03\x01\x02\x01"
    assert segments_of(SubmitSm(short_message=udh + b"a" * 153, esm_class=0x40)) == 1  # a part as smpplib cuts it
    assert segments_of(SubmitSm(short_message=udh + b"a" * 154, esm_class=0x40)) == 2
    assert segments_of(SubmitSm(short_message=udh + b"a" * 136, esm_class=0x40, data_coding=8)) == 2  # UCS2: octets
    # More than one SMS holds, UDH or not: the SMS it fills, its UDH in each (a UDH is no discount: 60000 GSM
    # characters cost 393 SMS of 153 either way, 60000 octets 448 of 134; a longer UDH leaves less room).
    assert segments_of(DataSm(esm_class=0x40, tlvs={Tag.MESSAGE_PAYLOAD: udh + b"a" * 60000})) == 393
    assert segments_of(DataSm(tlvs={Tag.MESSAGE_PAYLOAD: b"a" * 60000})) == 393
    assert segments_of(DataSm(esm_class=0x40, data_coding=4, tlvs={Tag.MESSAGE_PAYLOAD: udh + b"a" * 60000})) == 448
    ports = b"\x0b\x00\x03\x01\x02\x01\x05\x04\x0b\x84\x23\xf0"  # concatenation and ports: 12 octets
    assert segments_of(DataSm(esm_class=0x40, data_coding=4, tlvs={Tag.MESSAGE_PAYLOAD: ports + b"a" * 1280})) == 10
    assert segments_of(SubmitSm(short_message=b"\xff" + b"a" * 200, esm_class=0x40)) == 2  # a UDH past its end: text
    # Ports alone (7 octets): each SMS of a longer text carries them and a concatenation element, 12 octets in all.
    only_ports = b"\x06\x05\x04\x0b\x84\x23\xf0"
    assert segments_of(SubmitSm(short_message=only_ports + b"a" * 152, esm_class=0x40)) == 1  # 8 + 152 septets
    assert segments_of(DataSm(esm_class=0x40, tlvs={Tag.MESSAGE_PAYLOAD: only_ports + b"a" * 293})) == 3  # 146 a part
    assert segments_of(DataSm(esm_class=0x40, tlvs={Tag.MESSAGE_PAYLOAD: ports + b"a" * 293})) == 3


def test_ia5_text_counts_as_the_7_bit_text_it_is_on_the_air() -> None:
    """data_coding 1 (IA5, node-smpp's default) was counted in octets: 160 characters, one SMS, counted two."""
    assert segments_of(SubmitSm(short_message=b"a" * 160, data_coding=1)) == 1
    assert segments_of(SubmitSm(short_message=b"a" * 161, data_coding=1)) == 2
    assert segments_of(DataSm(data_coding=1, tlvs={Tag.MESSAGE_PAYLOAD: b"a" * 306})) == 2  # 153 a part
    assert segments_of(DataSm(tlvs={Tag.MESSAGE_PAYLOAD: b"a" * 400})) == 3


@given(text=st.integers(0, 3000), coding=st.sampled_from([0, 1, 3, 4, 8]))
def test_a_udh_of_its_own_never_makes_a_text_cost_fewer_segments(text: int, coding: int) -> None:
    udh = b"\x05\x00\x03\x01\x02\x01"
    with_udh = DataSm(esm_class=0x40, data_coding=coding, tlvs={Tag.MESSAGE_PAYLOAD: udh + b"a" * text})
    without = DataSm(data_coding=coding, tlvs={Tag.MESSAGE_PAYLOAD: b"a" * text})
    assert segments_of(with_udh) >= segments_of(without)


@given(text=st.integers(0, 3000), coding=st.sampled_from([0, 1, 3, 4, 8]), payload=st.booleans())
def test_a_sar_part_costs_what_the_same_part_with_its_udh_costs(text: int, coding: int, payload: bool) -> None:
    """The SMSC puts a sar_* part on the air with an 8-bit concatenation UDH: a part of 160 GSM septets (or 140
    octets) counted one SMS, as any text of that length, and fills two, as the same part with that UDH does."""
    sar = {Tag.SAR_MSG_REF_NUM: 77, Tag.SAR_TOTAL_SEGMENTS: 2, Tag.SAR_SEGMENT_SEQNUM: 1}
    with_udh = b"\x05\x00\x03\x4d\x02\x01" + b"a" * text
    if payload:
        part = DataSm(data_coding=coding, tlvs={**sar, Tag.MESSAGE_PAYLOAD: b"a" * text})
        udh_part = DataSm(esm_class=0x40, data_coding=coding, tlvs={Tag.MESSAGE_PAYLOAD: with_udh})
    else:
        part = SubmitSm(data_coding=coding, short_message=b"a" * text, tlvs=sar)
        udh_part = SubmitSm(esm_class=0x40, data_coding=coding, short_message=with_udh)
    assert segments_of(part) == segments_of(udh_part)


def test_a_sar_part_or_ports_sent_as_tlvs_cost_the_sms_they_fill_with_their_udh() -> None:
    sar = {Tag.SAR_MSG_REF_NUM: 77, Tag.SAR_TOTAL_SEGMENTS: 2, Tag.SAR_SEGMENT_SEQNUM: 1}
    assert segments_of(SubmitSm(short_message=b"a" * 153, tlvs=sar)) == 1  # as segment_text cuts a sar_* part
    assert segments_of(SubmitSm(short_message=b"a" * 154, tlvs=sar)) == 2
    assert segments_of(SubmitSm(short_message=b"a" * 160, tlvs=sar)) == 2
    assert segments_of(SubmitSm(short_message=b"a" * 134, data_coding=8, tlvs=sar)) == 1
    assert segments_of(SubmitSm(short_message=b"a" * 140, data_coding=8, tlvs=sar)) == 2
    ports = {Tag.DESTINATION_PORT: 2948, Tag.SOURCE_PORT: 9200}  # a 16-bit ports element on the air: 7 octets of UDH
    assert segments_of(SubmitSm(short_message=b"a" * 133, data_coding=4, tlvs=ports)) == 1
    assert segments_of(SubmitSm(short_message=b"a" * 134, data_coding=4, tlvs=ports)) == 2


def test_a_line_about_a_receipt_names_what_it_reports_on_and_one_with_malformed_tlvs_is_written_all_the_same() -> None:
    """A receipt row with a TLV whose length runs past its end (an earlier version's, or damage) raised TlvError from
    the line about it ('mt cannot be sent'): the MT never ended, and every later read of its account's backlog failed
    on it (regression review 3)."""

    def receipt(tlvs: bytes, esm_class: int = 0x04) -> Message:
        return Message(id="r1", direction=Direction.MT, status=MessageStatus.ENROUTE, account="", source_addr="8613800000002",
                       dest_addr="8613800000001", short_message=b"", esm_class=esm_class, tlvs=tlvs)  # fmt: skip

    named = bytes.fromhex("001e") + (10).to_bytes(2) + b"1a24a2e90\0"  # receipted_message_id
    assert receipted(receipt(named)) == {"receipted_message_id": "1a24a2e90"}
    assert receipted(receipt(named, esm_class=0)) == {}  # not a receipt: nothing, whatever it carries
    assert receipted(receipt(bytes.fromhex("001e0040616263"))) == {}
