"""An ESME of SMPP 3.3 (bind with interface_version 0x33) is sent no optional parameters.

SMPP 3.3 has no TLVs: a 3.3 SMSC or handset that binds to the gateway may refuse a deliver_sm with octets after
short_message, or read them as the next PDU. The gateway sent them anyway (receipts' receipted_message_id and
message_state, a relayed part's sar_* TLVs). Now what a sar_* or port TLV says goes into a UDH, as an SMSC puts it
on the air; the rest stays behind (a receipt's text says the same), and a text longer than short_message's 254
octets ends undeliverable, with its receipt, instead of going out in a message_payload the receiver cannot read.

The 3.3 side is a bare socket (smpplib binds as 3.4 whatever it is told); smpplib parses what it receives, and
each deliver_sm frame is checked to end with its short_message: nothing after it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from smpplib import consts, smpp
from smpplib.client import SimpleSequenceGenerator

from gateway.smpp.constants import MessageState
from tests.e2e.test_amend import multi_resp, submit_multi
from tests.gateway_process import config_file
from tests.polling import eventually
from tests.smpp_handset import (
    ESM_RECEIPT,
    ESM_UDHI,
    ESME_RCANCELFAIL,
    ESME_ROK,
    ESME_RQUERYFAIL,
    ESME_RSYSERR,
    Handset,
    RawLink,
    answer,
    cancel_sm,
    is_receipt,
    reassemble,
    receipt_fields,
    replace_sm,
    text,
)

A = "8613800000001"  # account handset
B, B2 = "8613700000001", "8613700000002"  # account handset2


class Smpp33Link:
    """A transceiver bind of SMPP 3.3 over a bare socket; deliver_sm are answered ESME_ROK as they are read."""

    def __init__(self, port: int, system_id: str) -> None:
        self.link = RawLink(port)
        self.sequence = SimpleSequenceGenerator()
        bind = smpp.make_pdu("bind_transceiver", client=self.sequence, system_id=system_id, password=system_id)
        bind.interface_version = 0x33  # (smpplib sets 0x34 over any keyword)
        [resp] = self.link.exchange(bind.generate())
        assert (resp.command, resp.status) == ("bind_transceiver_resp", ESME_ROK)

    def submit(self, to: str, body: bytes, source: str = A, **fields):
        pdu = smpp.make_pdu("submit_sm", client=self.sequence, source_addr=source, destination_addr=to,
                            short_message=body, **fields)  # fmt: skip
        [resp] = self.link.exchange(pdu.generate())
        return resp

    def request(self, command: str, **fields):
        """A query_sm, cancel_sm or the like, as smpplib builds it: its response."""
        [resp] = self.link.exchange(smpp.make_pdu(command, client=self.sequence, **fields).generate())
        return resp

    def deliver_sm(self, timeout: float = 5.0):
        """The next deliver_sm (answered), after checking that nothing follows its short_message."""
        frame = self.link.read_frame(timeout)
        assert frame is not None, "the gateway closed the connection"
        pdu = smpp.parse_pdu(frame, client=SimpleSequenceGenerator(), allow_unknown_opt_params=True)
        assert pdu.command == "deliver_sm", pdu.command
        assert frame.endswith(pdu.short_message) and len(pdu.short_message) == pdu.sm_length, frame.hex()
        assert [name for name in consts.OPTIONAL_PARAMS if getattr(pdu, name, None) is not None] == []
        resp = smpp.make_pdu("deliver_sm_resp", client=self.sequence)
        resp.sequence = pdu.sequence
        self.link.send(resp.generate())
        return pdu

    def close(self) -> None:
        self.link.sock.close()


@pytest.fixture
def link33(gateway) -> Iterator[Callable[[str], Smpp33Link]]:
    """link33(system_id): an SMPP 3.3 transceiver bind to the `gateway` fixture, closed at teardown."""
    opened: list[Smpp33Link] = []

    def bind(system_id: str) -> Smpp33Link:
        opened.append(Smpp33Link(gateway.smpp_port, system_id))
        return opened[-1]

    yield bind
    for link in opened:
        link.close()


def delivered(phone, resp) -> bool:
    """The receipt of the submission answered with `resp` (the next one `phone` gets) says DELIVRD."""
    fields = receipt_fields(phone.expect(predicate=is_receipt))
    assert fields["id"] == resp.message_id.decode()
    return fields["stat"] == "DELIVRD"


def test_an_smpp_3_3_sender_gets_its_receipt_without_optional_parameters(handset, link33):
    b = handset(B)
    a = link33("handset")
    resp = a.submit(B, b"hello from 3.3", registered_delivery=1)
    assert resp.status == ESME_ROK
    assert b.expect().short_message == b"hello from 3.3"
    receipt = a.deliver_sm()
    assert receipt.esm_class & ESM_RECEIPT and is_receipt(receipt)
    fields = receipt_fields(receipt)
    assert (fields["id"], fields["stat"]) == (resp.message_id.decode(), "DELIVRD")


def short_id(message_id: bytes) -> str:
    """A message id an ESME of SMPP 3.3 can hold: 8 characters at most (9 octets with the NUL), here hex digits."""
    given = message_id.decode()
    assert 0 < len(given) <= 8 and int(given, 16) > 0, given
    return given


def test_an_smpp_3_3_esme_is_given_ids_of_8_characters_that_its_receipts_and_query_and_cancel_sm_name(handset, link33):
    """It was given the 19-character ids of SMPP 3.4 (`1a24a2e901600000079`), which its 9-octet message_id field
    cannot hold (SMPP 5.0 2.11.2: none longer than 8 octets to an ESME of SMPP 3.3 or earlier)."""
    b = handset(B)
    a = link33("handset")
    resp = a.submit(B, b"hello from 3.3", registered_delivery=1)
    assert resp.status == ESME_ROK
    given = short_id(resp.message_id)
    assert b.expect().short_message == b"hello from 3.3"
    assert receipt_fields(a.deliver_sm())["id"] == given
    query = a.request("query_sm", message_id=given, source_addr=A)
    assert (query.status, query.message_id.decode(), query.message_state) == (ESME_ROK, given, MessageState.DELIVERED)

    later = a.submit(B, b"tomorrow", schedule_delivery_time="000001000000000R")  # waits a day: still to cancel
    assert later.status == ESME_ROK
    waiting = short_id(later.message_id)
    assert waiting != given
    a.link.send(cancel_sm(9, A, waiting))
    assert answer(a.link, 9) == (ESME_ROK, b"")
    assert a.request("query_sm", message_id=waiting, source_addr=A).message_state == MessageState.DELETED
    assert a.request("query_sm", message_id=waiting, source_addr=B).status == ESME_RQUERYFAIL  # not from there

    resp34 = b.submit(A, "from 3.4")  # a bind of SMPP 3.4 still gets the message's own id
    assert resp34.status == ESME_ROK and len(resp34.message_id) == 19
    assert a.deliver_sm().short_message == b"from 3.4"


def test_an_smpp_3_3_esme_is_given_one_short_id_for_a_submit_multi_its_copy_the_same(handset, link33):
    b = handset(B)
    a = link33("handset")
    a.link.send(submit_multi(9, A, [B, B2], b"to both", registered_delivery=1))
    status, body = answer(a.link, 9)
    assert status == ESME_ROK
    given = short_id(multi_resp(body)[0].encode())
    assert sorted(p.destination_addr.decode() for p in b.expect_many(2)) == [B, B2]
    assert [receipt_fields(a.deliver_sm())["id"] for _ in range(2)] == [given, given]
    a.link.send(submit_multi(9, A, [B, B2], b"to both", registered_delivery=1))  # retransmitted
    status, body = answer(a.link, 9)
    assert (status, multi_resp(body)[0]) == (ESME_ROK, given)
    once = smpp.make_pdu("submit_sm", client=a.sequence, source_addr=A, destination_addr=B, short_message=b"once")
    [resp] = a.link.exchange(once.generate())
    [copy] = a.link.exchange(once.generate())  # retransmitted: a copy, answered the id its original was given
    assert (copy.status, copy.message_id) == (ESME_ROK, short_id(resp.message_id).encode())
    assert b.expect().short_message == b"once"
    b.expect_none(0.3)


def test_a_submit_sm_first_sent_on_smpp_3_4_sent_again_on_3_3_is_given_a_short_id_that_names_it(handset, link33):
    """The copy on the 3.3 bind (same user_message_reference: recognised on any bind) was answered the 19-character
    id of SMPP 3.4 (`1a24ab2a12c00000007`), which its 9-octet message_id cannot hold: its original had no alias."""
    a = handset(A)
    pdu = a.make("submit_sm", B, b"sent twice", registered_delivery=1, user_message_reference=4242)
    first = a.request(pdu)
    assert first.status == ESME_ROK and len(first.message_id) == 19
    a.close()  # (its answer lost, say): the receipt goes to the bind of 3.3
    a33 = link33("handset")
    copy = a33.submit(B, b"sent twice", registered_delivery=1, user_message_reference=4242)
    assert copy.status == ESME_ROK
    given = short_id(copy.message_id)
    assert a33.submit(B, b"sent twice", registered_delivery=1, user_message_reference=4242).message_id.decode() == given
    query = a33.request("query_sm", message_id=given, source_addr=A)
    assert (query.status, query.message_id.decode(), query.message_state) == (ESME_ROK, given, MessageState.ENROUTE)
    b = handset(B)
    assert b.expect().short_message == b"sent twice"
    assert receipt_fields(a33.deliver_sm())["id"] == given
    assert a33.request("query_sm", message_id=given, source_addr=A).message_state == MessageState.DELIVERED
    b.expect_none(0.3)  # delivered once


def test_the_short_ids_go_on_after_a_restart(make_gateway, tmp_path):
    db = tmp_path / "short.db"
    gw = make_gateway(db_path=db)
    a = Smpp33Link(gw.smpp_port, "handset")
    first = short_id(a.submit(B, b"before", schedule_delivery_time="000001000000000R").message_id)
    a.close()
    gw.stop()
    gw = make_gateway(db_path=db)
    a = Smpp33Link(gw.smpp_port, "handset")
    try:
        after = short_id(a.submit(B, b"after").message_id)
        assert int(after, 16) == int(first, 16) + 1  # none given again
        assert a.request("query_sm", message_id=first, source_addr=A).message_state == MessageState.ENROUTE
    finally:
        a.close()


def test_a_submit_multi_first_sent_on_smpp_3_4_sent_again_on_3_3_is_given_a_short_id_that_names_it(gateway, link33):
    """As a submit_sm: every destination a copy, the 3.3 bind was answered the 19-character id."""
    tlv = struct.pack(">HHH", 0x0204, 2, 4243)  # user_message_reference: recognised on any bind
    multi = submit_multi(7, A, [B, B2], b"to both")
    multi = struct.pack(">I", len(multi) + len(tlv)) + multi[4:] + tlv
    with RawLink(gateway.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(multi)
        status, body = answer(esme, 7)
        assert status == ESME_ROK and len(multi_resp(body)[0]) == 19
    a33 = link33("handset")
    a33.link.send(multi)
    status, body = answer(a33.link, 7)
    given = multi_resp(body)[0]
    assert status == ESME_ROK and len(given) == 8
    query = a33.request("query_sm", message_id=given, source_addr=A)
    assert (query.status, query.message_state) == (ESME_ROK, MessageState.ENROUTE)


def test_a_submit_sm_on_3_3_copying_one_destination_of_a_submit_multi_sent_on_3_4_gives_every_destination_its_alias(
    gateway, handset, link33
):
    """A submit_multi's destinations share one short id: the copy of B2's (same user_message_reference) is answered
    one, query_sm by it answers, and the receipts of both B2 and B (not copied) name it."""
    tlv = struct.pack(">HHH", 0x0204, 2, 4244)  # user_message_reference: recognised on any bind
    multi = submit_multi(7, A, [B, B2], b"to both", registered_delivery=1)
    multi = struct.pack(">I", len(multi) + len(tlv)) + multi[4:] + tlv
    with RawLink(gateway.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(multi)
        assert answer(esme, 7)[0] == ESME_ROK
    a33 = link33("handset")
    copy = a33.submit(B2, b"to both", registered_delivery=1, user_message_reference=4244)
    assert copy.status == ESME_ROK
    given = short_id(copy.message_id)
    query = a33.request("query_sm", message_id=given, source_addr=A)
    assert (query.status, query.message_state) == (ESME_ROK, MessageState.ENROUTE)
    b = handset(B)  # (both B and B2: account handset2)
    assert sorted(p.destination_addr.decode() for p in b.expect_many(2)) == [B, B2]
    assert [receipt_fields(a33.deliver_sm())["id"] for _ in range(2)] == [given, given]
    b.expect_none(0.3)  # (B2's once)


def test_a_copy_on_3_3_whose_alias_the_store_cannot_commit_is_answered_esme_rsyserr(make_gateway, handset, tmp_path):
    """A submit_sm and a submit_multi first sent on SMPP 3.4, sent again on 3.3: each is recognised as a copy, but
    the alias naming it on 3.3 cannot be stored (its write fails); answered ESME_RSYSERR with a `store write failed`
    line and no id (one not stored could name another submission after a restart). Once the alias can be stored,
    the copy sent again is given it, and each subscriber is sent the text once (coverage review: no test ran it)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    tlv = struct.pack(">HHH", 0x0204, 2, 4245)  # user_message_reference: recognised on any bind
    multi = submit_multi(7, A, [B, B2], b"to both")
    multi = struct.pack(">I", len(multi) + len(tlv)) + multi[4:] + tlv
    assert handset(A, gw=gw).submit(B, b"sent twice", user_message_reference=4246).status == ESME_ROK
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(multi)
        assert answer(esme, 7)[0] == ESME_ROK
    a33 = Smpp33Link(gw.smpp_port, "handset")
    try:
        with structlog.testing.capture_logs() as logs, aliases_cannot_be_stored(db):
            copy = a33.submit(B, b"sent twice", user_message_reference=4246)
            assert (copy.status, copy.message_id) == (ESME_RSYSERR, None)  # no body: SMPP 3.4 4.4.2
            a33.link.send(multi)
            assert answer(a33.link, 7) == (ESME_RSYSERR, b"\0\0")  # no message_id, no destination refused
        failed = [(line["log_level"], line["account"], line["msisdn"]) for line in logs if line["event"] == "store write failed"]
        assert failed == [("error", "handset", B), ("error", "handset", B)]
        assert short_id(a33.submit(B, b"sent twice", user_message_reference=4246).message_id)
        a33.link.send(multi)
        status, body = answer(a33.link, 7)
        assert status == ESME_ROK and short_id(multi_resp(body)[0].encode())
    finally:
        a33.close()
    b = handset(B, gw=gw)  # (B and B2: account handset2)
    assert sorted(text(p) for p in b.expect_many(3)) == ["sent twice", "to both", "to both"]
    b.expect_none(0.3)


@contextlib.contextmanager
def aliases_cannot_be_stored(db: Path) -> Iterator[None]:
    """Inside: a write giving a message its SMPP 3.3 alias fails (a trigger refuses it, as a full disk would the
    write); other writes commit."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as outside:
        outside.execute("CREATE TRIGGER no_alias BEFORE UPDATE OF short_id ON messages BEGIN "
                        "SELECT RAISE(ABORT, 'database or disk is full'); END")  # fmt: skip
        try:
            yield
        finally:
            outside.execute("DROP TRIGGER no_alias")


def test_an_alias_given_to_an_older_submission_is_not_given_again_after_a_restart(make_gateway, handset, tmp_path):
    """The aliases went on from the newest row holding one: the alias a 3.3 copy gave later to an older submission
    (first sent on 3.4) was handed out again after a restart, and then named the newer submission; skipping those
    held right after it missed one beyond a gap (an alias a copy took and never held)."""
    db = tmp_path / "short.db"
    gw = make_gateway(db_path=db)
    a = handset(A, gw=gw)
    assert a.submit(B, b"on 3.4", user_message_reference=77).status == ESME_ROK
    a33 = Smpp33Link(gw.smpp_port, "handset")
    newer = short_id(a33.submit(B, b"on 3.3", user_message_reference=78).message_id)
    assert short_id(a33.submit(B, b"on 3.3", user_message_reference=78).message_id) == newer  # took one, not held
    older = short_id(a33.submit(B, b"on 3.4", user_message_reference=77).message_id)  # the copy: an alias for it
    assert int(older, 16) == int(newer, 16) + 2
    a33.close()
    a.close()
    gw.stop()
    gw = make_gateway(db_path=db)
    a33 = Smpp33Link(gw.smpp_port, "handset")
    try:
        assert int(short_id(a33.submit(B, b"after").message_id), 16) == int(older, 16) + 1
        assert a33.request("query_sm", message_id=older, source_addr=A).message_state == MessageState.ENROUTE
    finally:
        a33.close()


def test_the_short_ids_go_on_after_retention_deleted_every_message_holding_one_and_a_kill(tmp_path, start_gateway):
    """The aliases went on from the last one the messages held: once retention had deleted the rows holding them, a
    restart gave 00000001 again, and a query_sm of the first run's 00000001 was answered about the new message (a
    cancel_sm or replace_sm of it reached that one), where README promises ESME_RQUERYFAIL. kill -9, not a stop:
    the alias given last is kept in the deletes' own transaction."""
    db = tmp_path / "short.db"
    config = config_file(tmp_path, message_retention=1, dedup_window=1, job_check_interval=1)
    gw = start_gateway(db, config)
    with Handset(gw.smpp_port, B) as b:
        b.bind("rx", "handset2")
        a = Smpp33Link(gw.smpp_port, "handset")
        given = [short_id(a.submit(B, f"first run {n}".encode()).message_id) for n in range(2)]
        assert [text(pdu) for pdu in b.expect_many(2)] == ["first run 0", "first run 1"]
        assert eventually(lambda: aliases_held(db) == [], timeout=15)  # delivered, then deleted past retention
        a.close()
    gw.kill()
    gw = start_gateway(db, config)
    a = Smpp33Link(gw.smpp_port, "handset")
    try:
        after = short_id(a.submit(B, b"after the restart").message_id)  # B is not bound now: it waits
        assert int(after, 16) == int(given[-1], 16) + 1  # none given again
        assert a.request("query_sm", message_id=given[0], source_addr=A).status == ESME_RQUERYFAIL
        a.link.send(cancel_sm(9, A, given[0]))
        assert answer(a.link, 9)[0] == ESME_RCANCELFAIL
        assert a.request("query_sm", message_id=after, source_addr=A).message_state == MessageState.ENROUTE
    finally:
        a.close()


def aliases_held(db: Path) -> list[str]:
    """The SMPP 3.3 aliases the messages in the database hold (read-only, beside the gateway)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [alias for (alias,) in conn.execute("SELECT short_id FROM messages WHERE short_id IS NOT NULL")]


def test_parts_sent_with_sar_and_port_tlvs_reach_an_smpp_3_3_receiver_with_a_udh(handset, link33):
    """TS 23.040 9.2.3.24: the 8-bit concatenation IE and 16-bit application ports. Its reference above 255, the
    full part 1 got the 8-bit element with the low octet (no room for the 16-bit one), the short part 2 the 16-bit
    element: two references, and the receiver could not put the text together. Both now carry the low octet."""
    b = link33("handset2")
    a = handset(A)
    full = "满" * 67
    first = a.submit(B, full.encode("utf-16-be"), data_coding=8, sar_msg_ref_num=300, sar_total_segments=2,
                     sar_segment_seqnum=1, destination_port=2948, source_port=9200)  # fmt: skip
    second = a.submit(B, "尾".encode("utf-16-be"), data_coding=8, sar_msg_ref_num=300, sar_total_segments=2,
                      sar_segment_seqnum=2, destination_port=2948, source_port=9200)  # fmt: skip
    assert (first.status, second.status) == (ESME_ROK, ESME_ROK)
    got = [b.deliver_sm(), b.deliver_sm()]
    assert all(pdu.esm_class & ESM_UDHI for pdu in got)
    assert [pdu.short_message for pdu in got] == [
        bytes.fromhex("0b 00 03 2c 02 01 05 04 0b84 23f0") + full.encode("utf-16-be"),
        bytes.fromhex("0b 00 03 2c 02 02 05 04 0b84 23f0") + "尾".encode("utf-16-be"),
    ]
    assert reassemble(got) == full + "尾"


def test_a_full_part_keeps_an_8_bit_reference_and_ports_join_a_udh_the_text_has(handset, link33):
    """A part cut to fill one SMS (134 octets of UCS2 for an 8-bit reference UDH) had a 16-bit reference element
    put in front when its sar_msg_ref_num was above 255: 141 octets, no longer one SMS. It now gets the 8-bit
    element with the reference's low octet. And a part with a UDH of its own and port TLVs (a multi-part WAP
    push) reached a 3.3 receiver without its ports: they are now joined to its UDH."""
    b = link33("handset2")
    a = handset(A)
    full = "满" * 67
    assert a.submit(B, full.encode("utf-16-be"), data_coding=8, sar_msg_ref_num=300, sar_total_segments=2,
                    sar_segment_seqnum=1).status == ESME_ROK  # fmt: skip
    udh = bytes.fromhex("05 00 03 aa 02 01")
    assert a.submit(B, udh + b"push", esm_class=ESM_UDHI, destination_port=2948, source_port=9200).status == ESME_ROK
    first, second = b.deliver_sm(), b.deliver_sm()
    assert first.short_message == bytes.fromhex("05 00 03 2c 02 01") + full.encode("utf-16-be")
    assert len(first.short_message) == 140
    assert second.short_message == bytes.fromhex("0b 00 03 aa 02 01 05 04 0b84 23f0") + b"push"
    assert first.esm_class & ESM_UDHI and second.esm_class & ESM_UDHI


def test_a_long_text_goes_to_the_subscribers_smpp_3_4_bind_when_they_have_one_of_each(handset, link33):
    """The 3.3 bind came first, or carried the subscriber's last MO: a text longer than 254 octets went there
    and ended undeliverable while the account's 3.4 bind could take it. Shorter texts still follow the MO."""
    b33 = link33("handset2")
    b34 = handset(B)
    a = handset(A)
    long = a.data_sm(B, b"x" * 300, data_coding=0, registered_delivery=1)
    assert b34.expect().message_payload == b"x" * 300
    assert delivered(a, long)
    assert b33.submit(A, b"from the 3.3 bind", source=B).status == ESME_ROK  # MTs to B now follow this bind
    assert a.expect().short_message == b"from the 3.3 bind"
    assert a.submit(B, "short").status == ESME_ROK
    assert b33.deliver_sm().short_message == b"short"
    long = a.data_sm(B, b"y" * 300, data_coding=0, registered_delivery=1)
    assert b34.expect().message_payload == b"y" * 300
    assert delivered(a, long)


def test_a_text_longer_than_an_smpp_3_3_deliver_sm_waits_for_a_bind_of_smpp_3_4(handset, link33):
    """It would need message_payload, which SMPP 3.3 does not have. It ended undeliverable at once, also when the
    account's 3.4 bind had only dropped for a moment or bound after the 3.3 one: now it waits in the store, and
    MTs after it still reach the 3.3 bind."""
    b33 = link33("handset2")
    a = handset(A)
    with structlog.testing.capture_logs() as logs:
        long = a.data_sm(B, b"x" * 300, data_coding=0, registered_delivery=1)
        assert long.status == ESME_ROK
        assert a.submit(B, "short").status == ESME_ROK
        assert b33.deliver_sm().short_message == b"short"  # the first the 3.3 bind gets
    [waits] = [line for line in logs if line["event"].startswith("mt waits for a bind of SMPP 3.4")]
    assert (waits["message_id"], waits["account"], waits["msisdn"]) == (long.message_id.decode(), "handset", B)
    b34 = handset(B)  # binds later
    assert b34.expect().message_payload == b"x" * 300
    assert delivered(a, long)


def test_a_long_text_waiting_for_a_bind_of_smpp_3_4_is_logged_so_once_not_at_each_bind_of_its_account(handset, link33):
    """'mt waits for a bind of SMPP 3.4' came again at every bind of the account, each reading its backlog (those
    whose address_range leaves the subscriber out too): 200 lines per waiting MT for a fleet of 200 binds."""
    link33("handset2")
    a = handset(A)
    with structlog.testing.capture_logs() as logs:
        long = a.data_sm(B, b"x" * 300, data_coding=0, registered_delivery=1)
        assert long.status == ESME_ROK
        for n in range(2, 5):  # binds of the account for other subscribers, each reading its backlog
            other = f"861370000000{n}"
            bind = handset(other, address_range=other)
            assert a.submit(other, "after the backlog read").status == ESME_ROK
            assert bind.expect().short_message == b"after the backlog read"  # (held until the read passed it)
    waits = [line for line in logs if line["event"].startswith("mt waits for a bind of SMPP 3.4")]
    assert [line["message_id"] for line in waits] == [long.message_id.decode()]
    b34 = handset(B)
    assert b34.expect().message_payload == b"x" * 300


def test_a_long_text_whose_smpp_3_4_bind_drops_before_answering_waits_for_the_next_one(handset, link33):
    """Handed back when the link dropped, it went to the 3.3 bind, the only one left, and ended undeliverable."""
    link33("handset2")  # the account's 3.3 bind, there all along
    b34 = handset(B)
    a = handset(A)
    b34.answering = False
    long = a.data_sm(B, b"x" * 300, data_coding=0, registered_delivery=1)
    assert b34.expect().message_payload == b"x" * 300  # not answered: the link drops
    b34.close()
    again = handset(B)
    assert again.expect().message_payload == b"x" * 300
    assert delivered(a, long)


def test_a_text_its_tlvs_make_too_long_for_an_smpp_3_3_bind_goes_to_the_smpp_3_4_one(handset, link33):
    """250 octets fit a 3.3 short_message, but not with the UDH its port TLVs become there: it went to the 3.3
    bind carrying the subscriber's last MO and ended undeliverable."""
    b33 = link33("handset2")
    b34 = handset(B)
    a = handset(A)
    assert b33.submit(A, b"hi", source=B).status == ESME_ROK  # MTs to B follow the 3.3 bind
    a.expect()
    assert a.submit(B, b"p" * 250, destination_port=2948, source_port=9200).status == ESME_ROK
    got = b34.expect()
    assert (got.short_message, got.destination_port) == (b"p" * 250, 2948)


def test_an_mt_queued_on_an_smpp_3_3_bind_replaced_by_a_text_too_long_for_it_waits_for_a_bind_of_3_4(make_gateway, handset):
    """Replaced in its place on the bind (34a9187), it was then sent there, could not be, and ended undeliverable."""
    gw = make_gateway(gateway={"window": 1})
    b = Smpp33Link(gw.smpp_port, "handset2")
    try:
        a = handset(A, gw=gw)
        sent = [a.submit(B, text) for text in ("m1", "m2")]  # m1 unanswered: m2 waits on the bind
        assert {resp.status for resp in sent} == {ESME_ROK}
        long_text = b"L" * 300
        with RawLink(gw.smpp_port) as esme:
            esme.bind("handset", command="bind_transmitter")
            esme.send(replace_sm(2, A, sent[1].message_id.decode(), b"", tlvs=bytes.fromhex("0424012c") + long_text))
            assert answer(esme, 2) == (ESME_ROK, b"")
        assert b.deliver_sm().short_message == b"m1"
        with pytest.raises(AssertionError, match="no PDU"):
            b.deliver_sm(timeout=1.0)  # nothing more for the bind of 3.3
        smpp34 = handset(B, system_id="handset2", gw=gw)
        assert smpp34.expect().message_payload == long_text
    finally:
        b.close()
