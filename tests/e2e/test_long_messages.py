"""Long messages in parts, from smpplib handsets over TCP against a real gateway.

- A reply no SMS can carry (an echo needing more than 255 parts) fails the MO's handling for good (gateway/mo.py):
  before, the MO was never answered nor given up, and the gateway could not start again on its database; then it
  was tried again per mo_retry_backoff, a traceback each time; then its subscriber was asked to send it again
  later, which fails the same.
- Two sar_* parts of one message with the same octets and one user_message_reference are two parts, not a
  retransmission (gateway/messages.py dedup_key): before, the second was answered with the first's message_id
  and dropped.
- Parts of one MO in different data_coding are each decoded with their own (TS 23.040 gives every part its own
  DCS): before, all were decoded with the coding of the part that came last.
"""

from __future__ import annotations

import struct

import pytest
import structlog

from gateway.store.records import MessageStatus
from tests.smpp_handset import (
    ESME_ROK,
    RawLink,
    answer,
    encoded,
    frame,
    is_receipt,
    reassemble,
    receipt_fields,
    replace_sm,
    split_udh,
    text,
)

A, B = "8613800000001", "8613900000002"
ECHO = "10086000"  # replies with the text it received
# common.unanswerable: told an MO whose reply no SMS can carry (not common.unavailable's "send it again later")
UNANSWERABLE_ZH = "抱歉，10086000无法答复您发送的短信：答复内容过长，无法以短信发送，重新发送也无法处理。"
UNANSWERABLE_EN = ("Sorry, 10086000 cannot answer your message: the answer would be too long to send by SMS. "
                   "Sending it again will not help.")  # fmt: skip
OVER_255_PARTS = 255 * 153 + 1  # GSM septets: an echo of this needs 256 parts of 153


class Failing:
    """A short code's handler that raises: the MO is tried again after mo_retry_backoff."""

    async def handle(self, inbound, ctx):
        raise RuntimeError("handler down")


def status_of(gw, message_id) -> MessageStatus:
    return gw.call(gw.gateway.store.get(message_id.decode())).status


def test_an_mo_whose_echo_needs_more_than_255_parts_is_answered_and_given_up(make_gateway, handset):
    gw = make_gateway(gateway={"mo_retry_backoff": [0.1]})
    a = handset(A, gw=gw)
    resp = a.data_sm(ECHO, b"a" * OVER_255_PARTS, data_coding=0)
    assert resp.status == ESME_ROK  # before: no data_sm_resp ever
    assert text(a.expect()) == UNANSWERABLE_ZH  # given up at once
    assert status_of(gw, resp.message_id) == MessageStatus.FAILED
    assert a.submit(ECHO, "after it").status == ESME_ROK
    assert text(a.expect()) == "after it"


def test_an_mo_whose_reply_cannot_be_built_is_given_up_at_once_in_one_warning_line(make_gateway, handset):
    """No try can build its reply: it was tried again after each mo_retry_backoff delay (~156 s), each try an error
    line with a traceback, any client's such MOs unbudgeted. Now given up at once, as a given-up MO ends."""
    gw = make_gateway(gateway={"mo_retry_backoff": [3600]})
    a = handset(A, gw=gw)
    with structlog.testing.capture_logs() as logs:
        resp = a.data_sm(ECHO, b"a" * OVER_255_PARTS, data_coding=0, registered_delivery=1)
        assert resp.status == ESME_ROK
        receipt, sorry = a.expect_many(2)  # not an hour later
    assert (receipt_fields(receipt)["stat"], receipt_fields(receipt)["err"]) == ("UNDELIV", "008")
    assert text(sorry) == UNANSWERABLE_ZH
    assert status_of(gw, resp.message_id) == MessageStatus.FAILED
    [line] = [line for line in logs if line["log_level"] in ("warning", "error")]
    assert (line["event"], line["log_level"], line["message_id"], line["account"], line["msisdn"], line["attempts"]) == (
        "MO given up", "warning", resp.message_id.decode(), "handset", A, 1)
    assert line["reason"] == "its reply cannot be built: text needs 256 parts, at most 255 are possible"
    assert "exc_info" not in line


def test_a_gateway_starts_again_on_a_database_holding_such_an_mo(make_gateway, handset, tmp_path):
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"mo_retry_backoff": [3600]})
    gw.gateway.mo.short_codes[ECHO].handler = Failing()  # it stays `accepted` for the next start
    a = handset(A, gw=gw)
    ids = []
    for seq in (1, 2):  # two parts, stored `accepted` before they are handled
        resp = a.data_sm(ECHO, b"b" * 20000, data_coding=0, sar_msg_ref_num=5, sar_total_segments=2,
                         sar_segment_seqnum=seq, registered_delivery=1)  # fmt: skip
        assert resp.status == ESME_ROK
        ids.append(resp.message_id)
    assert [status_of(gw, i) for i in ids] == [MessageStatus.ACCEPTED] * 2
    a.close()
    gw.stop()  # its next try was an hour away

    again = make_gateway(db_path=db, gateway={"mo_retry_backoff": []})  # before: the start raised ValueError
    a = handset(A, gw=again)
    *receipts, sorry = a.expect_many(3)
    assert all(is_receipt(r) and receipt_fields(r)["stat"] == "UNDELIV" for r in receipts)
    assert text(sorry) == UNANSWERABLE_ZH
    assert [status_of(again, i) for i in ids] == [MessageStatus.FAILED] * 2


def test_the_subscriber_of_such_an_mo_is_told_it_cannot_be_answered_not_to_send_it_again(make_gateway, handset):
    """Given up at once, as no try can build its reply, it was answered common.unavailable: "could not handle your
    message just now. Please send it again later.", and sent again it failed the same. Told in the subscriber's
    language, in GSM 7-bit for English as every English reply."""
    gw = make_gateway(gateway={"mo_retry_backoff": [3600]})
    a = handset(A, gw=gw)
    assert a.submit("10086", "EN").status == ESME_ROK  # the operator's short code: English from now on
    a.expect()
    assert a.data_sm(ECHO, b"a" * OVER_255_PARTS, data_coding=0).status == ESME_ROK
    sorry = a.expect()  # not an hour later
    assert (text(sorry), sorry.data_coding) == (UNANSWERABLE_EN, 0)


def sar_parts(phone, to: str, chunk: bytes, **fields) -> list[bytes]:
    """Submit `chunk` twice as parts 1 and 2 of one UCS2 message (sar_* TLVs); their message ids."""
    ids = []
    for seq in (1, 2):
        resp = phone.submit(to, chunk, data_coding=8, sar_msg_ref_num=9, sar_total_segments=2, sar_segment_seqnum=seq,
                            user_message_reference=1234, **fields)  # fmt: skip
        assert resp.status == ESME_ROK
        ids.append(resp.message_id)
    return ids


SAME_HALF = ("哈" * 67).encode("utf-16-be")  # one full UCS2 part; the message is this twice


def test_two_sar_parts_with_the_same_octets_both_reach_a_subscriber(gateway, handset):
    a, b = handset(A, address_range=A), handset(B, address_range=B)
    first, second = sar_parts(a, B, SAME_HALF)
    assert first != second
    parts = b.expect_many(2)
    assert sorted(p.sar_segment_seqnum for p in parts) == [1, 2]
    assert all(p.short_message == SAME_HALF for p in parts)


def test_two_sar_parts_with_the_same_octets_make_one_long_mo(gateway, handset):
    a = handset(A, address_range=A)
    sar_parts(a, ECHO, SAME_HALF)
    assert reassemble(a.expect_many(2)) == "哈" * 134  # before: part 1 alone, given up after reassembly_timeout


def test_two_long_replies_with_one_text_have_concatenation_references_of_their_own(gateway, handset):
    """A handset tells the parts of two long messages apart by their reference: two echoes of one text sharing
    one (the second made from the first's cached parts) would be put together as one text of parts repeated."""
    a = handset(A, address_range=A)
    references = []
    for _ in range(2):
        assert a.submit(ECHO, "甲" * 100).status == ESME_ROK  # its echo: 2 UCS2 parts
        parts = a.expect_many(2)
        assert reassemble(parts) == "甲" * 100
        references.append(split_udh(parts[0])[0].reference)
    assert references[0] != references[1], references


def udh_part(reference: int, seqnum: int, body: bytes) -> bytes:
    return bytes((5, 0, 3, reference, 2, seqnum)) + body


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_parts_in_different_codings_are_each_decoded_with_their_own(gateway, handset, order):
    a = handset(A, address_range=A)
    parts = {1: (b"Hello ", 0), 2: ("世界".encode("utf-16-be"), 8)}  # GSM, then UCS2
    for seqnum in order:
        body, coding = parts[seqnum]
        assert a.submit(ECHO, udh_part(21, seqnum, body), data_coding=coding, esm_class=0x40).status == ESME_ROK
    assert text(a.expect()) == "Hello 世界"


def test_a_surrogate_pair_cut_between_two_parts_in_one_coding_is_kept(gateway, handset):
    """Some senders cut UCS2 between the two halves of a pair; parts in one coding are still decoded joined."""
    a = handset(A, address_range=A)
    pair = "😀".encode("utf-16-be")
    for seqnum, body in ((1, "a".encode("utf-16-be") + pair[:2]), (2, pair[2:] + "b".encode("utf-16-be"))):
        assert a.submit(ECHO, udh_part(22, seqnum, body), data_coding=8, esm_class=0x40).status == ESME_ROK
    assert text(a.expect()) == "a😀b"


def udh16_part(reference: int, seqnum: int, body: bytes) -> bytes:
    return bytes((6, 8, 4, reference >> 8, reference & 0xFF, 2, seqnum)) + body


def test_an_8_bit_and_a_16_bit_reference_with_one_number_are_two_texts(gateway, handset):
    """A handset numbers its 8-bit and its 16-bit references apart (TS 23.040 9.2.3.24.1 and .8): before, parts
    of two texts, both with reference 5, were taken for one text's, and the echo said "Good world"."""
    a = handset(A, address_range=A)
    for part in (udh_part(5, 1, b"Hello "), udh16_part(5, 1, b"Good "), udh_part(5, 2, b"world"), udh16_part(5, 2, b"bye")):
        assert a.submit(ECHO, part, data_coding=0, esm_class=0x40).status == ESME_ROK
    assert sorted(text(pdu) for pdu in a.expect_many(2)) == ["Good bye", "Hello world"]


ESME_RINVMSGLEN = 0x01
DATA_SM, DELIVER_SM = 0x00000103, 0x00000005
VENDOR_TLV = struct.pack(">HH", 0x1400, 5000) + b"V" * 5000  # passed on byte for byte


def national_data_sm(sequence: int, payload: int) -> bytes:
    """A data_sm between the national forms of A and B (13800000001 -> 13900000002) with a vendor TLV: a TLV's
    value holds at most 65,535 octets, so a PDU near 70,000 needs two."""
    pdu = encoded("data_sm", sequence, source_addr=A[2:], source_addr_ton=2, destination_addr=B[2:], dest_addr_ton=2,
                  data_coding=0, message_payload=b"x" * payload)  # fmt: skip
    return frame(DATA_SM, sequence, pdu[16:] + VENDOR_TLV)


def test_a_submission_whose_deliver_sm_would_pass_the_pdu_limit_is_refused(gateway):
    """A data_sm of the 70,000 octets this gateway reads, whose deliver_sm would be 70,011 (the numbers gain their
    country code, and a deliver_sm has seven one-octet fields a data_sm lacks): it was accepted and sent, and a peer
    told the limit (README, node-smpp's maxLength) or the gateway's own codec (the simulator's) dropped the link for
    it, again at every retry. One whose deliver_sm is just 70,000 octets goes."""
    with RawLink(gateway.smpp_port) as a, RawLink(gateway.smpp_port) as b:
        a.bind(command="bind_transmitter")
        resp = b.exchange(encoded("bind_receiver", 1, system_id="handset", password="handset", address_range=f"^{B}$"))[0]
        assert resp.status == ESME_ROK
        largest = national_data_sm(2, 1)
        largest = national_data_sm(2, 1 + 70_000 - len(largest))
        assert len(largest) == 70_000
        [refused] = a.exchange(largest)
        assert (refused.command, refused.status) == ("data_sm_resp", ESME_RINVMSGLEN)
        [accepted] = a.exchange(national_data_sm(3, 1 + 70_000 - len(national_data_sm(3, 1)) - 11))
        assert accepted.status == ESME_ROK
        delivered = b.read_frame(timeout=10)
        assert struct.unpack(">LL", delivered[:8]) == (70_000, DELIVER_SM)
        assert VENDOR_TLV in delivered


def test_a_replace_sm_whose_deliver_sm_would_pass_the_pdu_limit_is_refused(gateway):
    """The vendor TLV of the MT stays; a new text of 65,000 octets with it makes no deliver_sm this gateway may send."""
    with RawLink(gateway.smpp_port) as a:
        a.bind(command="bind_transmitter")
        [resp] = a.exchange(national_data_sm(2, 100))  # to B, not bound: it waits
        assert resp.status == ESME_ROK
        message_id = resp.message_id.decode()
        a.send(replace_sm(3, A, message_id, b"", tlvs=message_payload(65_000)))
        assert answer(a, 3)[0] == ESME_RINVMSGLEN
        a.send(replace_sm(4, A, message_id, b"", tlvs=message_payload(60_000)))
        assert answer(a, 4)[0] == ESME_ROK  # 60,000 octets fit


def message_payload(octets: int) -> bytes:
    return struct.pack(">HH", 0x0424, octets) + b"z" * octets
