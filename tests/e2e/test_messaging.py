"""Messages between handsets and to short codes, as the handsets see them (SPEC sections 2, 4, 5)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from smpplib import gsm, smpp

from gateway.clock import SimulatedClock
from gateway.mo import _PART_HELD
from gateway.smpp.times import parse_smpp_time
from gateway.store.records import Direction, Message, MessageStatus
from tests.gateway_process import config_file
from tests.polling import eventually
from tests.smpp_handset import (
    ESM_UDHI,
    ESME_RCANCELFAIL,
    ESME_RINVDSTADR,
    ESME_RINVEXPIRY,
    ESME_RINVSCHED,
    ESME_RINVSRCADR,
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RQUERYFAIL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    SMSGW_RNOSUBSCRIPTION,
    Handset,
    RawLink,
    answer,
    cancel_sm,
    encode,
    frame,
    is_receipt,
    reassemble,
    receipt_fields,
    replace_sm,
    split_udh,
    text,
    udh16_parts,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
ECHO = "10086000"  # replies with the text it received
SUBMIT_SM_RESP = 0x80000004
LONG_CHINESE = "移动梦网统一查询退订服务：发送0000查询您已定制的全部业务，发送TD加业务代码退订。" * 3  # 123 characters
MESSAGE_STATE_ENROUTE, MESSAGE_STATE_UNDELIVERABLE, MESSAGE_STATE_EXPIRED, MESSAGE_STATE_REJECTED = 1, 5, 3, 8
ESME_RX_T_APPN = 0x64  # a handset's temporary refusal (SMPP 3.4 5.1.3)


def test_two_handsets_message_each_other(handset):
    a, b = handset(A), handset(B)
    assert a.submit(B, "Hi B, it's A").status == ESME_ROK
    got = b.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (A.encode(), B.encode(), "Hi B, it's A")
    assert b.submit(A, "Hi A!").status == ESME_ROK
    got = a.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (B.encode(), A.encode(), "Hi A!")


def test_binds_of_one_account_get_the_numbers_of_their_address_range(handset):
    c = "8613900000002"  # also account handset
    on_a, on_c = handset(A, address_range=A), handset(c, address_range=c)
    b = handset(B)
    for n in range(3):
        assert b.submit(A, f"for A {n}").status == ESME_ROK
        assert b.submit(c, f"for C {n}").status == ESME_ROK
    assert sorted(text(p) for p in on_a.expect_many(3)) == [f"for A {n}" for n in range(3)]
    assert sorted(text(p) for p in on_c.expect_many(3)) == [f"for C {n}" for n in range(3)]
    on_a.expect_none(0.2)
    on_c.expect_none(0.2)
    assert on_a.submit(c, "hi C, from A").status == ESME_ROK  # and between the two
    assert text(on_c.expect()) == "hi C, from A"


@pytest.mark.parametrize("written", ["008613900000003", "0086-139-0000-0003", "+86 139 0000 0003", "139 0000 0003"])
def test_an_address_range_of_one_number_serves_it_however_it_is_written(handset, written):
    """A number the plan reads (README "Numbers") is that subscriber as an address_range too: 0086... built a pattern
    no stored number matched, and the bind's own subscriber never got an MT (they waited in the store)."""
    c = "8613900000003"
    on_c = handset(c, address_range=written)
    assert handset(B).submit(c, "for C").status == ESME_ROK
    assert text(on_c.expect()) == "for C"


def test_an_address_range_anchored_with_a_caret_serves_every_number_starting_so(handset):
    """SMPP 3.4 5.2.7: address_range is a UNIX regular expression. "^86130" was taken as the single number
    86130: the carrier's bind for 86130... got none of its subscribers' MTs, which waited in the store."""
    on_130, on_131 = (handset(bind="rx", system_id="carrier", address_range=r) for r in ("^86130", "^86131"))
    a = handset(A)
    for subscriber in ("8613000000007", "8613100000007", "8613000000008"):
        assert a.submit(subscriber, f"for {subscriber}").status == ESME_ROK
    assert sorted(text(p) for p in on_130.expect_many(2)) == ["for 8613000000007", "for 8613000000008"]
    assert text(on_131.expect()) == "for 8613100000007"


def test_a_receipt_no_binds_address_range_serves_goes_to_the_bind_that_sent_from_its_number(handset):
    """The account vouches for its numbers: a bind may send from one its address_range leaves out. The receipt, to
    that number, skipped every bind of the account by their ranges, the submitting one too, and waited a day."""
    sender = "8613000000001"
    carrier = handset(sender, system_id="carrier", address_range="^86131")
    b = handset(B)
    resp = carrier.submit(B, "receipt please", registered_delivery=1)
    assert text(b.expect()) == "receipt please"
    receipt = carrier.expect(predicate=is_receipt)
    assert (receipt.destination_addr, receipt_fields(receipt)["id"].encode()) == (sender.encode(), resp.message_id)
    # A bind whose range serves the number is preferred.
    on_130 = handset(bind="rx", system_id="carrier", address_range="^86130")
    resp = carrier.submit(B, "and again", registered_delivery=1)
    assert text(b.expect()) == "and again"
    assert receipt_fields(on_130.expect(predicate=is_receipt))["id"].encode() == resp.message_id
    carrier.expect_none(0.3, predicate=is_receipt)


def test_a_subscribers_receipt_never_goes_to_a_bind_of_another_subscriber_of_its_account(handset):
    """Only an SP's receipts go to any bind of its account when no bind's range serves their number (README
    "Receipts"): a handset account's binds are its subscribers' phones, and A's receipt, A sending on a transmitter,
    waits for a bind serving A rather than reach C's phone."""
    c = "8613900000002"  # also account handset
    on_c = handset(c, address_range=c)
    sender, b = handset(A, bind="tx"), handset(B)
    resp = sender.submit(B, "receipt please", registered_delivery=1)
    assert text(b.expect()) == "receipt please"
    on_c.expect_none(0.5)  # its receipt waits in the store
    on_a = handset(A, bind="rx", address_range=A)
    assert receipt_fields(on_a.expect(predicate=is_receipt))["id"].encode() == resp.message_id


def test_an_address_range_that_makes_a_backtracking_engine_run_for_hours_still_routes_at_once(
    tmp_path: Path, start_gateway
) -> None:
    """address_range was searched with `re` on the event loop for every MT to the account: with this one (22 of
    the 41 octets a bind may send) each MT froze the whole gateway, every bind, for hours. Its own process: a
    frozen gateway in this one would freeze the test too."""
    gateway = start_gateway(tmp_path / "gw.db")
    with Handset(gateway.smpp_port, A) as a, Handset(gateway.smpp_port) as greedy, Handset(gateway.smpp_port, B) as b:
        a.bind("rx", "handset")
        greedy.bind("rx", "handset", address_range=r"(\d|\d|\d|\d|\d|\d)*!")
        b.bind("tx", "handset2")
        assert b.submit(A, "through").status == ESME_ROK
        assert text(a.expect()) == "through"  # the pattern matches no number: the bind without a range takes it
        greedy.expect_none(0.2)


def test_registered_delivery_brings_a_receipt_for_the_submitted_id(handset):
    a, b = handset(A), handset(B)
    message = "Dinner at 8? Bring 5 (cash)"
    resp = a.submit(B, message, registered_delivery=1)
    assert text(b.expect()) == message
    receipt = a.expect()
    fields = receipt_fields(receipt)
    assert receipt.esm_class & 0x3C == 0x04
    assert (receipt.source_addr, receipt.destination_addr) == (B.encode(), A.encode())
    assert fields["id"].encode() == resp.message_id == receipt.receipted_message_id
    assert receipt.message_state == 2
    assert (fields["sub"], fields["dlvrd"], fields["stat"], fields["err"]) == ("001", "001", "DELIVRD", "000")
    assert fields["text"] == message[:20]
    submitted, done = (datetime.strptime(fields[k], "%y%m%d%H%M").replace(tzinfo=UTC) for k in ("submit", "done"))
    assert submitted <= done <= datetime.now(UTC) <= done + timedelta(minutes=2)


@pytest.mark.parametrize(("message", "data_coding", "shown"), [
    ("Dinner @ 8? $5 cash_ or not", 0, "Dinner ? 8? ?5 cash?"),
    ("Café [crème] £5", 3, "Caf? ?cr?me? ?5"),
    ("你好 ok", 8, "?? ok"),
])  # fmt: skip
def test_a_receipts_text_is_what_reads_the_same_in_ascii_and_gsm(handset, message, data_coding, shown):
    """The receipt goes out with data_coding 0: its `text:` kept `@`, `$` and `_` as GSM 03.38's 0x00, 0x02 and 0x11
    (a NUL in the middle of a receipt a client parses as ASCII) and `[` as a two-octet escape. Those are `?` now, as
    every character is that is not the same octet in both."""
    a, b = handset(A), handset(B)
    octets = message.encode("utf-16-be" if data_coding == 8 else "latin-1")
    octets = octets.replace(b"@", b"\x00").replace(b"$", b"\x02").replace(b"_", b"\x11") if data_coding == 0 else octets
    assert a.submit(B, octets, registered_delivery=1, data_coding=data_coding).status == ESME_ROK
    assert text(b.expect()) == message
    receipt = a.expect()
    assert receipt.data_coding == 0
    assert receipt.short_message.endswith(b" text:" + shown.encode("ascii"))


def test_a_text_to_a_short_code_brings_a_receipt_when_asked(handset):
    """registered_delivery applies to any submission (5.2.17): handled by its short code is delivered."""
    a = handset(A)
    resp = a.submit(ECHO, "ping", registered_delivery=1)
    receipt, reply = a.expect_many(2)
    fields = receipt_fields(receipt)
    assert (receipt.source_addr, receipt.destination_addr) == (ECHO.encode(), A.encode())
    assert fields["id"].encode() == resp.message_id == receipt.receipted_message_id
    assert (fields["stat"], fields["text"], receipt.message_state) == ("DELIVRD", "ping", 2)
    assert text(reply) == "ping" and not is_receipt(reply)


def test_a_long_text_to_a_short_code_brings_a_receipt_for_each_part(handset):
    a = handset(A)
    parts, coding, esm_class = gsm.make_parts(LONG_CHINESE, encoding=8)
    ids = [a.submit(ECHO, part, data_coding=coding, esm_class=esm_class, registered_delivery=1).message_id for part in parts]
    receipts = a.expect_many(len(parts), predicate=is_receipt)
    assert sorted(r.receipted_message_id for r in receipts) == sorted(ids)
    assert reassemble(a.expect_many(2, predicate=lambda p: not is_receipt(p))) == LONG_CHINESE


def test_no_receipt_from_a_short_code_on_success_when_asked_for_failures_only(handset):
    a = handset(A)
    assert a.submit(ECHO, "ping", registered_delivery=2).status == ESME_ROK
    assert a.submit(ECHO, "pong").status == ESME_ROK
    assert [text(p) for p in a.expect_many(2)] == ["ping", "pong"]  # a receipt would have come before "ping"


def test_no_receipt_unless_asked(handset):
    a, b = handset(A), handset(B)
    assert a.submit(B, "no receipt please").status == ESME_ROK
    assert text(b.expect()) == "no receipt please"
    assert a.submit(ECHO, "ping").status == ESME_ROK  # an event after the one a receipt would follow
    assert text(a.expect()) == "ping"
    a.expect_none(0.3, is_receipt)


@pytest.mark.parametrize("written", ["+8613700000001", "8613700000001", "13700000001"])
def test_every_way_of_writing_a_number_reaches_the_same_handset(handset, written):
    a, b = handset(A), handset(B)
    a.number = "13800000001"  # the sender writes its own number nationally too
    assert a.submit(written, f"to {written}").status == ESME_ROK
    got = b.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (A.encode(), B.encode(), f"to {written}")


def test_a_national_number_that_begins_with_the_country_codes_digits_is_that_subscriber(make_gateway, handset):
    """Under country code 91, 9123456789 (10 digits, national) was kept as written, not taken for 919123456789: the
    handset writing its own number so had every submission refused (ESME_RINVSRCADR), 9876543210 none."""
    india = {"country_code": "91", "national_number_length": 10}
    gw = make_gateway(gateway=india, accounts=[{"system_id": name, "numbers": [prefix]} for name, prefix in
                                               (("handset", "919"), ("handset2", "918"), ("carrier", "917"))])  # fmt: skip
    a = handset("9123456789", gw=gw, system_id="handset", address_range="9123456789")  # its own number, nationally
    b = handset("918123456789", gw=gw, system_id="handset2")
    assert a.submit(ECHO, "ping").status == ESME_ROK
    got = a.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (ECHO.encode(), b"919123456789", "ping")
    assert a.submit("8123456789", "hi").status == ESME_ROK
    got = b.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (b"919123456789", b"918123456789", "hi")
    assert b.submit("9123456789", "hello").status == ESME_ROK  # to it, written nationally too
    assert text(a.expect()) == "hello"


def test_a_national_number_written_with_the_configured_trunk_prefix_is_that_subscriber(make_gateway, handset):
    """07700900001, as the UK writes mobile numbers (trunk 0, then the 10 digits), was refused everywhere: its 11
    digits are neither the national 10 nor the international 12."""
    uk = {"country_code": "44", "national_number_length": 10, "mobile_prefixes": ["7"], "trunk_prefix": "0"}
    gw = make_gateway(gateway=uk, accounts=[{"system_id": name, "numbers": [prefix]} for name, prefix in
                                            (("handset", "4477"), ("handset2", "4478"), ("carrier", "4479"))])  # fmt: skip
    a = handset("07700900001", gw=gw, system_id="handset", address_range="07700900001")
    b = handset("447800900002", gw=gw, system_id="handset2")
    assert a.submit("07800 900002", "hi").status == ESME_ROK
    got = b.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (b"447700900001", b"447800900002", "hi")
    assert b.submit("07700900001", "hello").status == ESME_ROK
    assert text(a.expect()) == "hello"
    assert a.submit(ECHO, "ping").status == ESME_ROK
    assert text(a.expect()) == "ping"


def test_a_number_a_code_with_an_extension_would_read_as_is_a_subscribers_where_it_may_be_a_mobile(make_gateway, handset):
    """Under country code 1 with a short code 21212, New York's 1 212 12x xxxx (100,000 numbers) read as 21212 with an
    extension: refused as a destination (ESME_RINVDSTADR) and as a source (ESME_RINVSRCADR). With no mobile prefix
    known for the country code, a number of a subscriber's length is a subscriber's, as normalise reads a national
    one; China's 8610086123456 stays 10086's (the codes no mobile prefix 13-19 starts)."""
    us = {"country_code": "1", "national_number_length": 10}
    gw = make_gateway(gateway=us, accounts=[{"system_id": name, "numbers": [prefix]} for name, prefix in
                                            (("handset", "1212"), ("handset2", "1646"), ("carrier", "1718"))],
                      short_codes=[{"code": "21212", "handler": "echo"}])  # fmt: skip
    a = handset("12121234567", gw=gw, system_id="handset")
    b = handset("16465550100", gw=gw, system_id="handset2")
    assert a.submit("21212", "ping").status == ESME_ROK
    assert text(a.expect()) == "ping"
    assert b.submit("2121234567", "hi").status == ESME_ROK  # to it, written nationally
    got = a.expect()
    assert (got.source_addr, got.destination_addr, text(got)) == (b"16465550100", b"12121234567", "hi")


def test_a_code_as_long_as_a_national_number_takes_its_texts(make_gateway, handset):
    """An 11-digit code (10657120000) was read as the national number 8610657120000: ESME_RINVDSTADR."""
    gw = make_gateway(short_codes=[{"code": "10657120000", "handler": "echo"}])
    a = handset(A, gw=gw)
    assert a.submit("10657120000", "ping").status == ESME_ROK
    got = a.expect()
    assert (got.source_addr, text(got)) == (b"10657120000", "ping")


@pytest.mark.parametrize("written", ["8610086123456", "10086123456", "8610086999000", "8610669161234"])
def test_a_code_with_an_extension_is_no_subscriber_to_send_from_even_where_an_account_covers_it(
    make_gateway, handset, written
):  # fmt: skip
    """An smsc account whose prefix `86` covers the codes sent as `8610086123456` (10086 and digits) to a subscriber:
    ESME_ROK, the victim saw "10086" text it, its reply to it was refused, its spam report of it too ("a China Mobile
    or service provider number"), and it could order services. README: such a number "is that code with an
    extension, never a subscriber"."""
    national = {"system_id": "national", "password": "national", "role": "smsc", "numbers": ["86"], "max_binds": 2,
                "throughput": 1000}  # fmt: skip
    gw = make_gateway(accounts=[national])
    carrier, b = handset("8613000000009", gw=gw, system_id="national"), handset(B, gw=gw)
    carrier.number = written
    assert carrier.submit(B, "China Mobile: reply Y to claim").status == ESME_RINVSRCADR
    carrier.number = "8613000000009"  # a subscriber of it still sends
    assert carrier.submit(B, "hi").status == ESME_ROK
    assert text(b.expect()) == "hi"


@pytest.mark.parametrize(
    ("message", "data_coding"),
    [("GSM {braces} [brackets] ~ | € ^ \\", 0), ("Latin-1: café, naïve, ¿qué?", 3), ("UCS2: 你好，世界！", 8)],
)
def test_text_arrives_in_the_coding_it_was_sent_in(handset, message, data_coding):
    a, b = handset(A), handset(B)
    assert a.submit(B, message, data_coding=data_coding).status == ESME_ROK
    got = b.expect()
    assert got.data_coding == data_coding
    assert text(got) == message


def test_long_chinese_parts_arrive_as_sent_both_ways(handset):
    a, b = handset(A), handset(B)
    for sender, receiver, to in ((a, b, B), (b, a, A)):
        parts, coding, esm_class = gsm.make_parts(LONG_CHINESE, encoding=8)
        assert len(parts) == 2 and esm_class == ESM_UDHI
        for part in parts:
            assert sender.submit(to, part, data_coding=coding, esm_class=esm_class).status == ESME_ROK
        got = receiver.expect_many(len(parts))
        assert all(p.esm_class & ESM_UDHI and p.data_coding == 8 for p in got)
        assert sorted(p.short_message for p in got) == sorted(parts)
        assert reassemble(got) == LONG_CHINESE


def _parts_udh8(data: bytes) -> list[tuple[bytes, dict]]:
    return [(part, {"esm_class": ESM_UDHI}) for part in gsm.make_parts_encoded(data, 134)]


def _parts_udh16(data: bytes) -> list[tuple[bytes, dict]]:
    return [(part, {"esm_class": ESM_UDHI}) for part in udh16_parts(data, reference=0x1234)]


def _parts_sar(data: bytes) -> list[tuple[bytes, dict]]:
    chunks = [data[i : i + 134] for i in range(0, len(data), 134)]
    return [
        (chunk, {"sar_msg_ref_num": 0x0102, "sar_total_segments": len(chunks), "sar_segment_seqnum": n})
        for n, chunk in enumerate(chunks, 1)
    ]


def _parts_payload(data: bytes) -> list[tuple[bytes, dict]]:
    return [(b"", {"message_payload": data})]


@pytest.mark.parametrize("split", [_parts_udh8, _parts_udh16, _parts_sar, _parts_payload], ids=["udh8", "udh16", "sar", "payload"])
def test_long_chinese_to_echo_comes_back_whole(handset, split):
    a = handset(A)
    for part, fields in split(encode(LONG_CHINESE, 8)):
        assert a.submit(ECHO, part, data_coding=8, **fields).status == ESME_ROK
    first = a.expect()
    concat, _ = split_udh(first)
    assert concat is not None, "a 123-character UCS2 reply needs more than one SMS"
    replies = [first] + a.expect_many(concat.total - 1)
    assert all(p.source_addr == ECHO.encode() for p in replies)
    assert reassemble(replies) == LONG_CHINESE


def test_message_payload_between_handsets(handset):
    a, b = handset(A), handset(B)
    payload = encode(LONG_CHINESE, 8)  # 246 octets: more than one SMS, in one PDU
    assert a.submit(B, b"", data_coding=8, message_payload=payload).status == ESME_ROK
    got = b.expect()
    assert text(got) == LONG_CHINESE


def test_message_waits_for_an_unbound_handset(handset):
    a = handset(A)
    resp = a.submit(B, "are you there?", registered_delivery=1)
    assert resp.status == ESME_ROK
    a.expect_none(0.3)  # neither delivered nor failed while B is away
    b = handset(B)
    assert text(b.expect()) == "are you there?"
    assert receipt_fields(a.expect())["id"].encode() == resp.message_id


def test_message_expires_when_its_validity_runs_out(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a = handset(A, gw=gw)
    resp = a.submit(B, "call me back", registered_delivery=1, validity_period="000000000010000R")  # 10 s
    assert resp.status == ESME_ROK
    clock.advance(60)
    receipt = a.expect(timeout=5)
    fields = receipt_fields(receipt)
    assert (fields["id"].encode(), fields["stat"], fields["dlvrd"]) == (resp.message_id, "EXPIRED", "000")
    assert receipt.receipted_message_id == resp.message_id
    assert receipt.message_state == 3
    b = handset(B, gw=gw)
    b.expect_none(1.0)


def test_an_mt_whose_validity_ran_out_while_the_gateway_was_down_is_dated_when_it_ran_out(make_gateway, handset, tmp_path):
    """Its receipt's done date and query_sm's final_date were the time of the restart that expired it, days late. (The
    receipt itself is valid from when it is made: dated with the MT's expiry, it would expire before going out.)"""
    clock, db = SimulatedClock(), tmp_path / "restarted.db"
    gw = make_gateway(clock=clock, db_path=db)
    submitted = clock.now()
    a = handset(A, gw=gw)
    resp = a.submit(B, "for a minute", registered_delivery=1, validity_period="000000000100000R")
    a.close()
    gw.stop()
    assert clock.now() < submitted + 55  # stopped before it expired
    clock.advance(2 * 86400)  # longer than a receipt waits for its bind
    a = handset(A, gw=make_gateway(clock=clock, db_path=db))
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
    assert fields["done"] in {datetime.fromtimestamp(submitted + t, UTC).strftime("%y%m%d%H%M") for t in (60, 61)}
    final = parse_smpp_time(a.query(resp.message_id).final_date.decode(), clock.now())  # (whole seconds)
    assert submitted + 59 <= final <= submitted + 61


def test_a_data_sm_expires_when_its_qos_time_to_live_runs_out(make_gateway, handset):
    """data_sm has no validity_period; its qos_time_to_live was ignored, and the MT waited the default 48 h."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a = handset(A, gw=gw)
    resp = a.data_sm(B, "for a minute only", registered_delivery=1, qos_time_to_live=60)
    assert resp.status == ESME_ROK
    # The simulated clock moves with real time too: 5 s short of the end, so that the second of listening (and a
    # loaded machine's delay before it) stays inside the 60 s (at 59 s the MT expired during it in a CI run).
    clock.advance(55)
    a.expect_none(1.0)  # two sweeps: still waiting for B
    clock.advance(6)
    receipt = a.expect(timeout=5)
    assert (receipt.receipted_message_id, receipt_fields(receipt)["stat"], receipt.message_state) == (resp.message_id, "EXPIRED", 3)
    handset(B, gw=gw).expect_none(1.0)


def test_a_receipt_outlives_the_validity_of_the_message_it_reports_on(make_gateway, handset):
    """A DELIVRD receipt waits a day for the submitter's receiver bind, as an EXPIRED one does, not for what was
    left of the original's validity (here 10 s)."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw, bind="tx"), handset(B, gw=gw)
    resp = a.submit(B, "short-lived", registered_delivery=1, validity_period="000000000010000R")
    assert text(b.expect()) == "short-lived"
    clock.advance(3600)
    receiver = handset(A, gw=gw, bind="rx")
    fields = receipt_fields(receiver.expect(timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "DELIVRD")


def test_an_mt_whose_validity_runs_out_while_queued_on_a_bind_expires_instead_of_going_out(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"window": 1})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "first").status == ESME_ROK
    assert text(b.expect()) == "first"  # unanswered: the window of one is full
    resp = a.submit(B, "second, for 10 s", registered_delivery=1, validity_period="000000000010000R")
    clock.advance(60)
    b.answer_held()
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
    b.expect_none(0.5)


def test_an_mt_whose_validity_runs_out_while_it_waits_for_a_retry_expires_then(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"retry_backoff": [3600]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(ESME_RSYSERR)
    resp = a.submit(B, "for 10 s", registered_delivery=1, validity_period="000000000010000R")
    assert text(b.expect()) == "for 10 s"  # refused: the retry is due in an hour
    clock.advance(60)
    fields = receipt_fields(a.expect(timeout=5))  # from the next sweep, not the retry
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
    assert gw.call(gw.gateway.store.get(resp.message_id.decode())).status is MessageStatus.EXPIRED


@pytest.mark.parametrize(
    ("refusal", "stat", "state"),
    [(0x65, "UNDELIV", MESSAGE_STATE_UNDELIVERABLE), (0x66, "REJECTD", MESSAGE_STATE_REJECTED),  # ESME_RX_P/R_APPN
     (ESME_RINVDSTADR, "UNDELIV", MESSAGE_STATE_UNDELIVERABLE)],
)
def test_an_mt_the_receiver_refuses_for_good_is_not_offered_again(make_gateway, handset, refusal, stat, state):
    """SMPP 3.4 5.1.3: ESME_RX_R_APPN is the receiver rejecting the message. It was retried like a temporary
    refusal: the same deliver_sm at every back-off step until its validity ran out, then stat:EXPIRED. So would
    be an MT the handset answers ESME_RINVDSTADR (the number is none of its own), were it not a permanent refusal."""
    gw = make_gateway(gateway={"retry_backoff": [0.1]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(refusal)
    resp = a.submit(B, "not wanted", registered_delivery=1)
    assert text(b.expect()) == "not wanted"
    receipt = receipt_fields(a.expect(timeout=5, predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, stat, f"{refusal & 0xFF:03d}")
    b.expect_none(0.5)  # no second copy, though a retry would have been due in 0.1 s
    queried = a.query(resp.message_id)
    assert (queried.message_state, queried.error_code) == (state, refusal)


def test_delivery_is_retried_after_a_temporary_failure(make_gateway, handset):
    gw = make_gateway(gateway={"retry_backoff": [0.2]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(ESME_RSYSERR)
    resp = a.submit(B, "try again", registered_delivery=1)
    first = b.expect()
    # Only B's acknowledgement can bring a receipt, and B has refused it so far.
    a.expect_none(0.5)
    second = b.expect(timeout=5)
    assert text(first) == text(second) == "try again"
    receipt = receipt_fields(a.expect())
    assert (receipt["id"].encode(), receipt["stat"]) == (resp.message_id, "DELIVRD")
    b.expect_none(0.5)  # delivered once acknowledged: no third copy


def test_query_sm_of_an_mt_delivered_on_its_retry_says_no_error_as_its_receipt_does(make_gateway, handset):
    """The first attempt's refusal (ESME_RSYSERR) stayed: query_sm said DELIVERED with error_code 8, the receipt err:000."""
    gw = make_gateway(gateway={"retry_backoff": [0.2]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(ESME_RSYSERR)
    resp = a.submit(B, "second time lucky", registered_delivery=1)
    assert [text(b.expect()) for _ in range(2)] == ["second time lucky"] * 2  # refused, then acknowledged
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, "DELIVRD", "000")
    answer = a.query(resp.message_id)
    assert (answer.message_state, answer.error_code) == (2, 0)


@pytest.mark.parametrize("waiting", ["for its retry", "for a bind"])
def test_an_mt_that_expires_after_a_refused_attempt_reports_that_refusal(make_gateway, handset, waiting):
    """SMPP 3.4 appendix B: err: is the error of the attempted delivery. Refused (ESME_RX_T_APPN, temporary), then
    out of validity before another attempt, the MT said stat:EXPIRED err:000 and query_sm error_code 0, although
    query_sm said 100 while it waited."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"retry_backoff": [3600 if waiting == "for its retry" else 0.1]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(ESME_RX_T_APPN)
    resp = a.submit(B, "out of time", registered_delivery=1, validity_period="000000001000000R")  # 10 minutes
    assert text(b.expect()) == "out of time"
    assert eventually(lambda: a.query(resp.message_id).error_code == ESME_RX_T_APPN)
    if waiting == "for a bind":
        b.close()  # its retry finds no bind: it waits in the store
        assert eventually(lambda: not gw.gateway.delivery._retry_timers)
    clock.advance(700)
    receipt = receipt_fields(a.expect(timeout=10, predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, "EXPIRED", "100")
    queried = a.query(resp.message_id)
    assert (queried.message_state, queried.error_code) == (MESSAGE_STATE_EXPIRED, 100)


def test_retransmitted_submit_is_delivered_once(handset):
    a, b = handset(A), handset(B)
    pdu = a.make("submit_sm", B, "sent twice")
    first = a.request(pdu)
    again = a.request(pdu)  # same sequence number and content: the client never saw the first answer
    assert first.status == again.status == ESME_ROK
    assert again.message_id == first.message_id
    assert text(b.expect()) == "sent twice"
    b.expect_none(0.5)


def test_the_same_text_again_on_a_new_bind_is_a_new_message(handset):
    """Without user_message_reference a sequence number only identifies a message on its own bind:
    every new bind starts again from the same numbers."""
    b = handset(B)
    ids = []
    for _ in range(2):
        a = handset(A)
        resp = a.submit(B, "Y")  # a fresh bind: the same sequence number as the last one's
        ids.append(resp.message_id)
        a.close()
    assert ids[0] != ids[1]
    assert [text(p) for p in b.expect_many(2)] == ["Y", "Y"]


@pytest.mark.parametrize("registered_delivery", [1, 2])  # always / on failure only
def test_a_long_mo_whose_other_parts_never_come_is_given_up_with_an_undeliv_receipt(make_gateway, handset, registered_delivery):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"reassembly_timeout": 60})
    a = handset(A, gw=gw)
    part = a.submit(ECHO, b"\x05\x00\x03\x07\x02\x01first half, ", esm_class=ESM_UDHI,
                    registered_delivery=registered_delivery)  # part 1 of 2  # fmt: skip
    assert part.status == ESME_ROK
    message_id = part.message_id.decode()
    assert a.query(message_id).message_state == MESSAGE_STATE_ENROUTE  # waits for part 2: not final (6 ACCEPTED is)
    with structlog.testing.capture_logs() as logs:
        clock.advance(120)  # the next tick gives it up: never answered, and a failure
        receipt = receipt_fields(a.expect(timeout=10))
    assert (receipt["id"], receipt["stat"], receipt["dlvrd"]) == (message_id, "UNDELIV", "000")
    [dropped] = [line for line in logs if line["event"] == "incomplete long MO dropped"]  # by the id the sender has
    assert (dropped["message_id"], dropped["account"], dropped["msisdn"], dropped["why"]) == (message_id, "handset", A, "timed out")
    queried = a.query(message_id)
    assert (queried.message_state, queried.error_code) == (MESSAGE_STATE_UNDELIVERABLE, int(receipt["err"]))
    assert gw.call(gw.gateway.store.get(message_id)).status is MessageStatus.FAILED
    a.expect_none(0.3)
    assert not gw.gateway.mo._parts  # nothing left of it in memory


def test_a_subscriber_starting_long_mos_it_never_ends_pushes_out_only_its_own(make_gateway, handset):
    """Room for incomplete long MOs was shared by everyone (10000 sets): one client sending first parts only
    pushed out every other subscriber's half-received texts."""
    gw = make_gateway(gateway={"max_incomplete_per_subscriber": 2})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert b.submit(ECHO, b"\x05\x00\x03\x07\x02\x01HELLO ", esm_class=ESM_UDHI).status == ESME_ROK
    ids = [a.submit(ECHO, bytes([5, 0, 3, n, 2, 1]) + b"never ends", esm_class=ESM_UDHI, registered_delivery=1)
           for n in range(3)]  # fmt: skip
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (ids[0].message_id.decode(), "UNDELIV")  # A's oldest, for A's third
    assert b.submit(ECHO, b"\x05\x00\x03\x07\x02\x02WORLD", esm_class=ESM_UDHI).status == ESME_ROK
    assert text(b.expect()) == "HELLO WORLD"


def test_long_mos_never_ended_are_held_to_a_number_of_octets_too(make_gateway, handset):
    """Incomplete long MOs were limited in number only: a bind sending parts of 60,000 octets it never ended (8 texts
    a subscriber, over many subscribers) grew the gateway by 12 MB a second. When the octets held pass the limit
    (64 MiB; 100,000 here), the oldest text of the subscriber with the most waiting ends, as for the count."""
    gw = make_gateway()
    gw.gateway.mo.reassembler.max_octets = 100_000  # (64 MiB in service)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert b.submit(ECHO, b"\x05\x00\x03\x07\x02\x01HELLO ", esm_class=ESM_UDHI).status == ESME_ROK
    ids = [a.data_sm(ECHO, bytes([5, 0, 3, n, 2, 1]) + b"x" * 40_000, esm_class=ESM_UDHI, registered_delivery=1)
           for n in range(3)]  # fmt: skip
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (ids[0].message_id.decode(), "UNDELIV")  # A's oldest, for A's third
    assert b.submit(ECHO, b"\x05\x00\x03\x07\x02\x02WORLD", esm_class=ESM_UDHI).status == ESME_ROK
    assert text(b.expect()) == "HELLO WORLD"
    a.expect_none(0.3, predicate=is_receipt)  # A's other two wait
    assert gw.gateway.mo.reassembler.octets == 2 * (40_000 + _PART_HELD)


def test_what_parts_of_long_mos_hold_while_they_wait_is_counted_against_the_octets_held(make_gateway, handset):
    """The limit counted a waiting part's text only, where the gateway held the whole part: first parts of 2 octets
    of text and 60,000 of a vendor TLV (8,000 of them, each from another number) grew it by 490 MB, counted as
    16,000 octets. What it holds of a waiting part is within what that part counts; the TLVs stay stored."""
    gw = make_gateway()
    mo = gw.gateway.mo
    a = handset(A, gw=gw)
    padding = (0x1401).to_bytes(2, "big") + (30_000).to_bytes(2, "big") + b"p" * 30_000  # vendor TLV

    def first_part(reference: int, body: bytes) -> str:
        pdu = a.make("submit_sm", ECHO, body, registered_delivery=1,
                     sar_msg_ref_num=reference, sar_total_segments=2, sar_segment_seqnum=1)  # fmt: skip
        wire = pdu.generate() + padding
        a.client._socket.sendall(len(wire).to_bytes(4, "big") + wire[4:])
        resp = a.response(pdu.sequence)
        assert resp.status == ESME_ROK
        return resp.message_id.decode()

    first = [first_part(reference, b"part one, ") for reference in (1, 2, 3)]
    waiting = [m for parts in mo._parts.values() for m in parts.values()]
    assert len(waiting) == 3
    assert sum(len(m.short_message) + len(m.tlvs) for m in waiting) <= mo.reassembler.octets
    assert mo.reassembler.octets == 3 * (len(b"part one, ") + _PART_HELD)
    stored = gw.call(gw.gateway.store.get(first[0]))
    assert stored.tlvs.endswith(padding)  # as it came, for the recipient
    assert a.submit(ECHO, b"two", sar_msg_ref_num=2, sar_total_segments=2, sar_segment_seqnum=2).status == ESME_ROK
    assert text(a.expect(predicate=lambda pdu: not is_receipt(pdu))) == "part one, two"
    receipt = receipt_fields(a.expect(predicate=is_receipt))  # for the part held without its TLVs
    assert (receipt["id"], receipt["stat"]) == (first[1], "DELIVRD")


def test_first_parts_of_a_few_octets_each_count_what_they_hold_besides_their_text(make_gateway, handset):
    """A waiting part holds ~1 KiB besides its text (its Message, its entries: _PART_HELD): counted by its text alone,
    parts of 2 octets each, from many numbers, were unbounded. With room for 3,000 octets here, the third such part
    (from a third number) ends the oldest text, as 6 octets of text alone never would."""
    gw = make_gateway()
    gw.gateway.mo.reassembler.max_octets = 3_000  # (64 MiB in service)
    senders = [handset(number, gw=gw) for number in (A, B, "8613800000002")]
    ids = [h.submit(ECHO, bytes([5, 0, 3, 9, 2, 1]) + b"hi", esm_class=ESM_UDHI, registered_delivery=1)
           for h in senders]  # fmt: skip
    assert all(resp.status == ESME_ROK for resp in ids)
    receipt = receipt_fields(senders[0].expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (ids[0].message_id.decode(), "UNDELIV")
    senders[1].expect_none(0.3, predicate=is_receipt)  # the other two wait


def test_a_waiting_parts_text_is_a_view_of_its_message_not_a_second_copy(make_gateway, handset):
    """What a part after a UDH holds of its text until the others come is a view of its Message's octets (mo._held):
    a copy doubled what long MOs in parts hold (up to 64 MiB more). White-box: memory is not seen over SMPP."""
    gw = make_gateway()
    mo = gw.gateway.mo
    a = handset(A, gw=gw)
    assert a.submit(ECHO, bytes([5, 0, 3, 9, 2, 1]) + b"x" * 100, esm_class=ESM_UDHI).status == ESME_ROK
    [(message,)] = [tuple(parts.values()) for parts in mo._parts.values()]
    [(held, _coding)] = [part for waiting in mo.reassembler._sets.values() for part in waiting.bodies.values()]
    assert isinstance(held, memoryview) and held.obj is message.short_message and bytes(held) == b"x" * 100


def test_a_part_sent_again_takes_the_place_of_the_copy_held(make_gateway, handset):
    """Each copy of a part was kept in memory until the text was whole (60 KB each, as often as a client sent
    it) and all were answered delivered. The last copy stands for the part now; the one it replaced ends."""
    gw = make_gateway()
    a = handset(A, gw=gw)

    def part(seqnum: int, body: bytes) -> str:
        resp = a.submit(ECHO, bytes([5, 0, 3, 0x42, 2, seqnum]) + body, esm_class=ESM_UDHI, registered_delivery=1)
        assert resp.status == ESME_ROK
        return resp.message_id.decode()

    first, again = part(1, b"one, "), part(1, b"one, ")
    replaced = receipt_fields(a.expect(predicate=is_receipt))
    assert (replaced["id"], replaced["stat"]) == (first, "UNDELIV")
    second = part(2, b"two")
    assert text(a.expect(predicate=lambda pdu: not is_receipt(pdu))) == "one, two"
    delivered = [receipt_fields(pdu) for pdu in a.expect_many(2, predicate=is_receipt)]
    assert {fields["id"]: fields["stat"] for fields in delivered} == {again: "DELIVRD", second: "DELIVRD"}
    a.expect_none(0.3)
    assert not gw.gateway.mo._parts  # nothing left of either copy in memory


def test_a_reference_reused_with_another_total_is_another_long_mo(make_gateway, handset):
    """Two long MOs reuse reference 0x41, one in 2 parts, one in 3: they are two messages. The 2-part one whole
    does not take the 3-part one's first part with it; that part waits for its own siblings, and when they never
    come it is given up as an MO alone is (UNDELIV)."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"reassembly_timeout": 60})
    a = handset(A, gw=gw)

    def part(total: int, seqnum: int, body: bytes) -> str:
        resp = a.submit(ECHO, bytes([5, 0, 3, 0x41, total, seqnum]) + body, esm_class=ESM_UDHI, registered_delivery=1)
        assert resp.status == ESME_ROK
        return resp.message_id.decode()

    x1, y1, x2 = part(2, 1, b"x one, "), part(3, 1, b"y one, "), part(2, 2, b"x two")
    assert text(a.expect(predicate=lambda pdu: not is_receipt(pdu))) == "x one, x two"  # the echo of X alone
    delivered = [receipt_fields(pdu) for pdu in a.expect_many(2, predicate=is_receipt)]
    assert {fields["id"]: fields["stat"] for fields in delivered} == {x1: "DELIVRD", x2: "DELIVRD"}
    assert a.query(y1).message_state == MESSAGE_STATE_ENROUTE  # Y waits for its parts 2 and 3
    clock.advance(120)  # they never come: the next tick gives Y's part up
    receipt = receipt_fields(a.expect(timeout=10, predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (y1, "UNDELIV")
    queried = a.query(y1)
    assert (queried.message_state, queried.error_code) == (MESSAGE_STATE_UNDELIVERABLE, int(receipt["err"]))
    assert not gw.gateway.mo._parts  # nothing left of either in memory


def test_a_part_stored_before_a_restart_is_timed_from_its_arrival_not_joined_to_a_later_text(make_gateway, handset, tmp_path):
    """Replayed at start, a part waiting for its siblings was timed from the restart: a new long text reusing
    its reference (256 values) got its old first part joined to its own second one, garbled, and the old part
    a DELIVRD receipt. It is given up at start when its reassembly_timeout ran out while the gateway was down."""
    clock, db = SimulatedClock(), tmp_path / "restarted.db"
    gw = make_gateway(clock=clock, db_path=db, gateway={"reassembly_timeout": 60})
    a = handset(A, gw=gw)

    def part(seqnum: int, body: bytes) -> str:
        resp = a.submit(ECHO, bytes([5, 0, 3, 0x41, 2, seqnum]) + body, esm_class=ESM_UDHI, registered_delivery=1)
        assert resp.status == ESME_ROK
        return resp.message_id.decode()

    old = part(1, b"OLD one, ")
    a.close()
    gw.stop()
    clock.advance(20 * 60)
    gw = make_gateway(clock=clock, db_path=db, gateway={"reassembly_timeout": 60})
    a = handset(A, gw=gw)
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (old, "UNDELIV")
    new = [part(1, b"NEW one, "), part(2, b"NEW two")]
    assert text(a.expect(predicate=lambda pdu: not is_receipt(pdu))) == "NEW one, NEW two"
    delivered = [receipt_fields(pdu) for pdu in a.expect_many(2, predicate=is_receipt)]
    assert {fields["id"]: fields["stat"] for fields in delivered} == dict.fromkeys(new, "DELIVRD")


def test_a_part_after_its_sets_timeout_begins_a_new_text_though_no_tick_ran_since(make_gateway, handset):
    """Parts 1 and 2 of a 3-part text X came, part 3 never did. Past X's reassembly_timeout (a clock jumped on,
    before the tick that gives such sets up ran), a new text Y reusing X's reference sent its part 3 first: it
    joined X's parts and the garbled "X1 X2 Y3" was answered. X is given up as timed out on Y's first part."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"reassembly_timeout": 60})
    a = handset(A, gw=gw)

    def part(seqnum: int, body: bytes) -> str:
        resp = a.submit(ECHO, bytes([5, 0, 3, 0x41, 3, seqnum]) + body, esm_class=ESM_UDHI, registered_delivery=1)
        assert resp.status == ESME_ROK
        return resp.message_id.decode()

    old = [part(1, b"X1 "), part(2, b"X2 ")]
    clock.advance(61)
    new = [part(3, b"Y3"), part(1, b"Y1 "), part(2, b"Y2 ")]
    assert text(a.expect(predicate=lambda pdu: not is_receipt(pdu))) == "Y1 Y2 Y3"
    stats = {fields["id"]: fields["stat"] for fields in map(receipt_fields, a.expect_many(5, predicate=is_receipt))}
    assert stats == {**dict.fromkeys(old, "UNDELIV"), **dict.fromkeys(new, "DELIVRD")}
    a.expect_none(0.3)
    assert not gw.gateway.mo._parts


def test_unanswered_delivery_is_sent_again(make_gateway, handset):
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [0.2]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "hello?").status == ESME_ROK
    assert text(b.expect()) == "hello?"
    b.answering = True
    assert text(b.expect(timeout=5)) == "hello?"


def test_a_delivery_answered_after_its_timeout_but_before_its_retry_is_not_sent_again(make_gateway, handset):
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [2.0]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    resp = a.submit(B, "slow to answer", registered_delivery=1)
    assert text(b.expect()) == "slow to answer"
    message_id = resp.message_id.decode()
    assert eventually(lambda: gw.call(gw.gateway.store.get(message_id)).attempts == 1)  # timed out: retry due in 2 s
    b.answer_held()
    b.answering = True
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "DELIVRD")
    assert gw.call(gw.gateway.store.get(message_id)).status is MessageStatus.DELIVERED
    b.expect_none(3.0)  # the retry was called off: no second copy


def test_a_receiver_that_answers_more_than_a_window_of_deliver_sm_late_gets_each_mt_once(tmp_path, start_gateway, handset):
    """A receiver that stalls past two response_timeouts: its window of deliver_sm times out, the next window goes
    out and times out too, then a third goes out; it answers them all. Only the last `window` of the deliver_sm given
    up on were kept for a late answer: the answers to the first window were ignored, those MTs stayed undelivered
    and went out a second time at their retry (84 copies too many for a receiver stalled 4 s under load)."""
    window = 4
    gw = start_gateway(tmp_path / "gw.db", config_file(tmp_path, window=window, response_timeout=1, retry_backoff=[5]))
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    sent = {a.submit(B, f"stalled {n}", registered_delivery=1).message_id.decode() for n in range(3 * window)}
    assert len(b.expect_many(3 * window, timeout=10)) == 3 * window  # the third window went out: two timed out
    b.answer_held()  # two windows late, the third in time; the retries are 5 s away
    b.answering = True
    receipts = [receipt_fields(pdu) for pdu in a.expect_many(3 * window, timeout=4, predicate=is_receipt)]
    assert sorted((fields["id"], fields["stat"]) for fields in receipts) == sorted((id_, "DELIVRD") for id_ in sent)
    b.expect_none(1.0)  # delivered: no retry goes out


def test_a_delivery_acknowledged_late_after_its_retry_went_out_is_delivered_once(make_gateway, handset):
    """The acknowledgement of the first copy came after the retry had gone out on the subscriber's other bind: it
    was dropped, and the MT went out a third time (or a refusal of the second copy ended it UNDELIV)."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [0.2, 30]})
    # Both bound first (B's first copy goes to the bind whose address_range names B): bound after it went out, the
    # other bind had to come within the timeout and back-off, 0.7 s; a pause of 1.5 s there and the retry went to
    # `first` again.
    a, first, other = handset(A, gw=gw), handset(B, gw=gw, address_range=B), handset(B, gw=gw)
    first.answering = other.answering = False
    resp = a.submit(B, "acknowledged late", registered_delivery=1)
    assert text(first.expect()) == "acknowledged late"
    assert text(other.expect(timeout=10)) == "acknowledged late"  # the retry, on the subscriber's other bind
    first.answer_held()  # ESME_ROK, after its timeout and after the retry went out
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "DELIVRD")
    other.answer_held(0x65)  # the second copy refused for good: the MT was delivered all the same
    assert a.query(resp.message_id).message_state == 2  # DELIVERED
    a.expect_none(1.0)  # no UNDELIV receipt
    first.expect_none(1.0)
    other.expect_none(0.5)  # nor a third copy


def test_a_delivery_acknowledged_late_counts_while_its_client_unbinds(make_gateway, handset):
    """The retry's copy was on a bind whose client had sent unbind (no longer a receiver): it was not looked at, and
    the refusal of that copy ended the MT UNDELIV though the first copy had been acknowledged."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [0.2, 30]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    resp = a.submit(B, "acknowledged while unbinding", registered_delivery=1)
    first, again = b.expect(), b.expect(timeout=10)  # the retry, on the same bind
    b.send(smpp.make_pdu("unbind", client=b.client))
    b.answer(first)  # ESME_ROK, late: it counts while the client waits for its unbind_resp
    b.answer(again, 0x65)
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "DELIVRD")
    assert a.query(resp.message_id).message_state == 2  # DELIVERED


def timed_out_mt(gw, handset, content: str, **fields) -> tuple[Handset, Handset, str, object]:
    """Handsets A and B (B not answering), and the id and deliver_sm of an MT from A to B (a receipt asked for) whose
    deliver_sm timed out: it waits for its retry."""
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    message_id = a.submit(B, content, registered_delivery=1, **fields).message_id.decode()
    first = b.expect()
    assert eventually(lambda: message_id in gw.gateway.delivery._retry_timers, 5)
    return a, b, message_id, first


def amended(gw, request: bytes) -> int:
    """The status a cancel_sm or replace_sm (sequence 2) from a transmitter bind of account handset is answered with."""
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(request)
        return answer(esme, 2)[0]


def test_a_late_acknowledgement_of_a_copy_sent_before_a_replace_sm_settles_nothing(make_gateway, handset):
    """It ended the replaced MT delivered, with a receipt built from the old content and registered_delivery, while
    the replacement's own copy was still on its way (or, read back from the store, never went out)."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [1.5, 30]})
    a, b, message_id, first = timed_out_mt(gw, handset, "the first text")
    assert amended(gw, replace_sm(2, A, message_id, b"the replacement", registered_delivery=0)) == ESME_ROK
    second = b.expect(timeout=5)
    assert text(second) == "the replacement"
    b.answer(first)  # ESME_ROK for the first text, late: the replacement is still on its way
    b.answer(second)  # which this answer decides
    assert eventually(lambda: gw.call(gw.gateway.store.get(message_id)).status is MessageStatus.DELIVERED, 5)
    a.expect_none(1.0, is_receipt)  # the replacement asked for none
    b.expect_none(0.5)


def test_a_cancel_sm_fails_while_a_deliver_sm_that_timed_out_may_still_be_answered(make_gateway, handset):
    """Cancelled while it waited for its retry, its deliver_sm unanswered past response_timeout: the handset's
    ESME_ROK that came next was dropped, and the receipt said DELETED (query_sm: 4) of an MT the subscriber had."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [30]})
    a, b, message_id, first = timed_out_mt(gw, handset, "cancel me")
    assert amended(gw, cancel_sm(2, A, message_id)) == ESME_RCANCELFAIL  # as for one whose deliver_sm is out: it may have arrived
    b.answer(first)  # ESME_ROK, late
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"], fields["stat"]) == (message_id, "DELIVRD")
    assert a.query(message_id).message_state == 2  # DELIVERED


@pytest.mark.parametrize("how", ["its bind went", "it was refused for now"])
def test_an_mt_whose_timed_out_deliver_sm_can_be_answered_no_more_is_cancelled(make_gateway, handset, how):
    """The bind holding its timed-out deliver_sm went (or answered it ESME_RX_T_APPN, late): no answer can come, yet
    a cancel_sm was refused ESME_RCANCELFAIL for 10 response_timeouts, and the MT went out at its retry."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [30]})
    a, b, message_id, first = timed_out_mt(gw, handset, "cancel me")
    if how == "its bind went":
        b.close()
    else:
        b.answer(first, ESME_RX_T_APPN)
    assert eventually(lambda: message_id not in gw.gateway.delivery._answerable, 2)  # (5 s: 10 response_timeouts)
    assert amended(gw, cancel_sm(2, A, message_id)) == ESME_ROK
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"], fields["stat"]) == (message_id, "DELETED")


def test_an_mt_whose_validity_ends_after_the_bind_holding_its_timed_out_deliver_sm_went_expires_then(make_gateway, handset):
    """Its bind gone, no answer could come, yet the MT was held past its validity for one, its EXPIRED receipt 10
    response_timeouts late."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"response_timeout": 2, "retry_backoff": [60]})
    a, b, message_id, _first = timed_out_mt(gw, handset, "for 10 s", validity_period="000000000010000R")
    clock.advance(9)
    assert eventually(lambda: message_id in gw.gateway.delivery._expiring, 5)  # held for an answer
    b.close()
    fields = receipt_fields(a.expect(timeout=5))
    assert (fields["id"], fields["stat"]) == (message_id, "EXPIRED")


@pytest.mark.parametrize("answered", [True, False])
def test_an_mt_whose_validity_ends_while_a_deliver_sm_that_timed_out_may_still_be_answered_waits_for_that_answer(
    make_gateway, handset, answered
):
    """Its validity ended while it waited for its retry, its deliver_sm unanswered past response_timeout: it expired
    then, and the handset's ESME_ROK that came next was dropped (stat:EXPIRED dlvrd:000 of an MT the subscriber had).
    Now it waits for that answer while one would count (10 x response_timeout): delivered if it comes, else EXPIRED,
    dated when its validity ended."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"response_timeout": 2, "retry_backoff": [60]})
    submitted = clock.now()
    a, b, message_id, first = timed_out_mt(gw, handset, "for 10 s", validity_period="000000000010000R")
    clock.advance(9)  # its validity over, not the 20 s after the timeout that an answer counts for
    a.expect_none(1.5, predicate=is_receipt)  # three sweeps
    if answered:
        b.answer(first)  # ESME_ROK, late
        fields = receipt_fields(a.expect(timeout=5))
        assert (fields["id"], fields["stat"], fields["dlvrd"]) == (message_id, "DELIVRD", "001")
        assert a.query(message_id).message_state == 2  # DELIVERED
    else:
        clock.advance(20)  # the 20 s over: no answer will count
        fields = receipt_fields(a.expect(timeout=5))
        assert (fields["id"], fields["stat"]) == (message_id, "EXPIRED")
        assert fields["done"] in {datetime.fromtimestamp(submitted + t, UTC).strftime("%y%m%d%H%M") for t in (10, 11)}
    b.expect_none(0.5)


def test_a_delivery_acknowledged_late_at_the_stop_after_its_retry_found_no_bind_is_not_sent_again(
    make_gateway, handset, tmp_path
):
    """Its retry had found no bind (the gateway stopping) and left it in the store: the acknowledgement, sent before
    the unbind_resp, was dropped and the next start sent the MT again."""
    db = tmp_path / "gw.db"
    settings = {"response_timeout": 1, "retry_backoff": [0.2, 30], "drain_timeout": 5}
    gw = make_gateway(db_path=db, gateway=settings)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    message_id = a.submit(B, "acknowledged at the stop", registered_delivery=1).message_id.decode()
    first = b.expect()
    a.close()
    stopping = threading.Thread(target=gw.stop)
    stopping.start()
    delivery = gw.gateway.delivery
    assert eventually(lambda: message_id in delivery._retry_timers, 10)  # timed out during the drain
    assert eventually(lambda: message_id not in delivery._retry_timers, 10)  # its retry found no bind
    b.answer(first)  # ESME_ROK, before the unbind_resp
    b.expect_request("unbind")
    stopping.join(30)
    b.close()
    again = make_gateway(db_path=db, gateway=settings)
    handset(B, gw=again).expect_none(1.0)
    assert again.call(again.gateway.store.get(message_id)).status is MessageStatus.DELIVERED


def test_a_delivery_answered_with_the_wrong_response_is_sent_again(make_gateway, handset):
    """A submit_sm_resp does not answer a deliver_sm (SMPP 3.4 section 3.2), even with its sequence number."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "retry_backoff": [0.2]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "answer me properly").status == ESME_ROK
    first = b.expect()
    b.client._socket.sendall(frame(SUBMIT_SM_RESP, first.sequence, b"wrong\0"))
    b.answering = True
    again = b.expect(timeout=5)
    assert text(again) == "answer me properly" and again.sequence != first.sequence


def test_deliveries_in_flight_are_limited_by_the_window(make_gateway, handset):
    gw = make_gateway(gateway={"window": 2})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(5):
        assert a.submit(B, f"message {n}").status == ESME_ROK
    held = b.expect_many(2)
    b.expect_none(0.5)  # two are unanswered: the gateway waits
    b.answer_held()
    b.answering = True
    rest = b.expect_many(3)
    assert sorted(text(p) for p in held + rest) == [f"message {n}" for n in range(5)]


def test_query_sm_reports_delivered_and_refuses_unknown_ids(handset):
    a, b = handset(A), handset(B)
    resp = a.submit(B, "query me", registered_delivery=1)
    b.expect()
    a.expect(predicate=is_receipt)  # sent once the delivery is recorded
    answer = a.query(resp.message_id)
    assert (answer.command, answer.status, answer.message_id, answer.message_state) == ("query_sm_resp", ESME_ROK, resp.message_id, 2)
    assert a.query("no-such-id").status == ESME_RQUERYFAIL


def test_burst_above_throughput_is_throttled(make_gateway, handset):
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 5}])
    a = handset(A, gw=gw)
    sequences = [a.send(a.make("submit_sm", B, f"burst {n}")) for n in range(30)]
    statuses = [a.response(seq).status for seq in sequences]
    accepted, throttled = statuses.count(ESME_ROK), statuses.count(ESME_RTHROTTLED)
    assert accepted + throttled == 30
    assert 5 <= accepted < 30 and throttled > 0


def test_throughput_is_counted_in_segments(make_gateway, handset):
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 5}])
    a = handset(A, gw=gw)
    three_sms = encode("长" * 150, 8)  # 300 octets in one message_payload: three SMS
    sequences = [
        a.send(a.make("submit_sm", B, b"", data_coding=8, message_payload=three_sms)),  # 5 - 3 = 2 left
        a.send(a.make("submit_sm", B, b"", data_coding=8, message_payload=three_sms)),  # needs 3
        a.send(a.make("submit_sm", B, "one SMS")),  # needs 1
    ]
    assert [a.response(seq).status for seq in sequences] == [ESME_ROK, ESME_RTHROTTLED, ESME_ROK]


def test_a_gsm_part_as_clients_cut_it_costs_one_segment(make_gateway, handset):
    """6 octets of UDH and 153 GSM septets are 159 octets in SMPP (unpacked) but one SMS on the air: each such
    part counted two, so a long GSM text was throttled at half the account's rate."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 2}])
    a = handset(A, gw=gw)
    parts = [bytes([5, 0, 3, 9, 2, seqnum]) + b"a" * 153 for seqnum in (1, 2)]
    sequences = [a.send(a.make("submit_sm", B, part, esm_class=ESM_UDHI)) for part in parts]
    sequences.append(a.send(a.make("submit_sm", B, "one SMS too many")))
    assert [a.response(seq).status for seq in sequences] == [ESME_ROK, ESME_ROK, ESME_RTHROTTLED]


def test_a_sar_part_too_long_for_one_sms_with_its_udh_costs_two_segments(make_gateway, handset):
    """A sar_* part goes on the air with the concatenation UDH the SMSC gives it: 160 GSM septets, or 140 UCS2
    octets, are two SMS there, as with that UDH written by the client; counted one, parts of 160 septets went out at
    twice the account's rate."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 3}])
    a = handset(A, gw=gw)
    sar = {"sar_msg_ref_num": 77, "sar_total_segments": 2}
    sequences = [
        a.send(a.make("submit_sm", B, b"a" * 160, sar_segment_seqnum=1, **sar)),  # 3 - 2 = 1 left
        a.send(a.make("submit_sm", B, encode("是" * 70, 8), data_coding=8, sar_segment_seqnum=2, **sar)),  # needs 2
        a.send(a.make("submit_sm", B, "one SMS")),  # needs 1
    ]
    assert [a.response(seq).status for seq in sequences] == [ESME_ROK, ESME_RTHROTTLED, ESME_ROK]


def test_a_udh_in_front_of_a_long_payload_does_not_make_it_one_sms(make_gateway, handset):
    """A submission with UDHI counted as one SMS against throughput however long its message_payload: 100
    of 60 KB went through in a second on a budget of 5 SMS."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 5}])
    a = handset(A, gw=gw)
    three_sms = bytes([5, 0, 3, 7, 2, 1]) + b"a" * 400  # 406 octets after its UDH: three SMS of 140
    sequences = [
        a.send(a.make("submit_sm", B, b"", esm_class=ESM_UDHI, message_payload=three_sms)),  # 5 - 3 = 2 left
        a.send(a.make("submit_sm", B, b"", esm_class=ESM_UDHI, message_payload=three_sms)),  # needs 3
        a.send(a.make("submit_sm", B, bytes([5, 0, 3, 8, 2, 1]) + b"a" * 134, esm_class=ESM_UDHI)),  # a part: 1
    ]
    assert [a.response(seq).status for seq in sequences] == [ESME_ROK, ESME_RTHROTTLED, ESME_ROK]


def test_full_queue_for_a_subscriber_refuses_more(make_gateway, handset):
    gw = make_gateway(gateway={"max_queued_per_subscriber": 3})
    a = handset(A, gw=gw)
    statuses = [a.submit(B, f"queued {n}").status for n in range(4)]
    assert statuses == [ESME_ROK, ESME_ROK, ESME_ROK, ESME_RMSGQFUL]
    assert a.submit("8613700000002", "another subscriber").status == ESME_ROK


def test_full_queue_holds_for_a_pipelining_client(make_gateway, handset):
    gw = make_gateway(gateway={"max_queued_per_subscriber": 3})
    a = handset(A, gw=gw)
    sequences = a.send_together(*(a.make("submit_sm", B, f"queued {n}") for n in range(6)))  # read in one go
    statuses = [a.response(seq).status for seq in sequences]
    assert statuses == [ESME_ROK] * 3 + [ESME_RMSGQFUL] * 3
    assert sum(gw.gateway.delivery.queued.values()) == 3


def test_data_sm_to_echo_is_answered(handset):
    a = handset(A)
    resp = a.data_sm(ECHO, "data_sm ping")
    assert (resp.command, resp.status) == ("data_sm_resp", ESME_ROK)
    assert resp.message_id
    got = a.expect()
    assert (got.source_addr, text(got)) == (ECHO.encode(), "data_sm ping")


@pytest.mark.parametrize(
    ("system_id", "source", "dest", "status"),
    [
        ("handset", "8613700000009", B, ESME_RINVSRCADR),  # a number of another account
        ("sina", "1066888", A, ESME_RINVSRCADR),  # tencent's service code
        ("handset", A, "12345", ESME_RINVDSTADR),  # neither a subscriber nor a short code
        # A code with an extension, of a national number's length: it was taken for subscriber 8610669161234,
        # acknowledged, and held for that nobody until its validity ended.
        ("handset", A, "10669161234", ESME_RINVDSTADR),
        ("handset", A, "+8610086123456", ESME_RINVDSTADR),
        ("sina", "1066916", "10669161234", ESME_RINVDSTADR),  # (it said 0x402: no subscription)
    ],
    ids=["foreign-msisdn", "foreign-service-code", "unknown-destination", "sp-code-extension",
         "operator-code-extension", "sp-content-to-a-code-extension"],
)
def test_addresses_an_account_may_not_use_are_refused(handset, system_id, source, dest, status):
    phone = handset(source, system_id=system_id, bind="trx")
    assert phone.submit(dest, "not allowed").status == status


@pytest.mark.parametrize("source", ["86138hello", "86138" + "0" * 15, "+86138000000011"])
def test_a_source_that_is_no_subscriber_number_is_refused_even_within_the_accounts_prefix(handset, source):
    """The prefix alone let them in: a data_sm from a 30-digit source was acknowledged, then could not be
    delivered (deliver_sm's source_addr holds 20 octets) and stopped the recipient's backlog; a submit_sm from
    `86138hello` reached the recipient from that sender."""
    a, b = handset(A), handset(B)
    assert a.submit(B, "from nobody", source_addr=source).status == ESME_RINVSRCADR
    assert a.data_sm(B, "from nobody", source_addr="86138" + "0" * 25).status == ESME_RINVSRCADR
    assert a.data_sm(ECHO, "from nobody", source_addr="86138" + "0" * 25).status == ESME_RINVSRCADR
    assert a.submit(B, "from A").status == ESME_ROK
    assert text(b.expect()) == "from A"


def test_a_stored_mt_no_deliver_sm_can_carry_ends_undeliverable_and_the_backlog_goes_on(make_gateway, handset):
    """A row an earlier version let in (a 30-digit source) stopped the recipient's whole backlog read: every
    MT after it stayed in the store until the next bind. It now ends undeliverable (its receipt, to that
    source, cannot go out either, and ends the same way), and takes no room in the bind's window (it held
    a slot until response_timeout)."""
    gateway = make_gateway(gateway={"window": 1, "response_timeout": 30})
    a = handset(A, gw=gateway)
    now = gateway.gateway.clock.now()
    poisoned = Message(gateway.gateway.ids.next(), Direction.MT, MessageStatus.ENROUTE, "handset", "86138" + "0" * 25, B,
                       b"stored by an earlier version", registered_delivery=1, submitted_at=now, expires_at=now + 3600)

    async def store_it() -> None:
        await gateway.gateway.store.accept(poisoned)

    gateway.call(store_it())
    assert a.submit(B, "after it 1").status == a.submit(B, "after it 2").status == ESME_ROK
    b = handset(B, gw=gateway)
    assert sorted(text(b.expect()) for _ in range(2)) == ["after it 1", "after it 2"]

    async def status() -> MessageStatus:
        return (await gateway.gateway.store.get(poisoned.id)).status

    assert eventually(lambda: gateway.call(status()) is MessageStatus.UNDELIVERABLE)


def test_malformed_validity_period_is_refused(handset):
    a = handset(A)
    assert a.submit(B, "when?", validity_period="tomorrow").status == ESME_RINVEXPIRY


@pytest.mark.parametrize("offset", ["49", "96", "99"])
def test_a_time_offset_beyond_48_quarter_hours_is_refused_and_the_link_goes_on(handset, offset):
    """SMPP 3.4 section 7.1.1.1: nn is 00-48. A larger one is a malformed time, refused with the field's status."""
    a, b = handset(A), handset(B)
    assert a.submit(B, "v", validity_period=f"3012312359590{offset}+").status == ESME_RINVEXPIRY
    assert a.submit(B, "s", schedule_delivery_time=f"3012312359590{offset}-").status == ESME_RINVSCHED
    assert a.submit(B, "still here", validity_period="301231235959048+").status == ESME_ROK
    assert text(b.expect()) == "still here"


def test_a_validity_period_already_past_is_refused(handset):
    """An absolute time before now: the sender meant it to expire before it was accepted (not to live the default
    two days). A relative period of zero is taken as none given."""
    a, b = handset(A), handset(B)
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%y%m%d%H%M%S") + "000+"
    assert a.submit(B, "too late", validity_period=an_hour_ago).status == ESME_RINVEXPIRY
    assert a.submit(B, "no validity", validity_period="000000000000000R").status == ESME_ROK
    assert text(b.expect()) == "no validity"


def test_sp_content_needs_a_subscription(handset):
    sp = handset("1066916", system_id="sina")
    assert sp.submit(A, "今日天气：晴").status == SMSGW_RNOSUBSCRIPTION


def test_undelivered_message_survives_a_restart(make_gateway, handset, tmp_path):
    db = tmp_path / "restart.db"
    first = make_gateway(db_path=db)
    a = handset(A, gw=first)
    resp = a.submit(B, "after the restart", registered_delivery=1)
    assert resp.status == ESME_ROK
    a.close()
    first.stop()
    second = make_gateway(db_path=db)
    b = handset(B, gw=second)
    assert text(b.expect()) == "after the restart"
    a = handset(A, gw=second)
    assert receipt_fields(a.expect())["id"].encode() == resp.message_id
    b.expect_none(0.3)  # once, not once per start


def test_after_the_clock_was_stepped_back_a_restart_gives_ids_after_the_last_runs(make_gateway, handset, tmp_path):
    """An id begins with its run's start time: a host clock stepped back (NTP, a VM resumed, a date fixed) made the
    next run's ids sort before the last run's (which lifted blocks are compared with), and a start in the very
    millisecond of an earlier one made its ids again, every submission ESME_RSYSERR (the id taken). Here the last
    run's id is moved an hour ahead, as if it had started then."""
    db = tmp_path / "stepped.db"
    first = make_gateway(db_path=db)
    waiting = handset(A, gw=first).submit(B, "waits").message_id.decode()
    first.stop()
    later = f"{int(waiting[:11], 16) + 3_600_000:011x}{waiting[11:]}"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE messages SET id = ? WHERE id = ?", (later, waiting))
    second = make_gateway(db_path=db)
    assert handset(A, gw=second).submit(B, "after").message_id.decode() > later
