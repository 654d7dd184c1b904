"""The log contract (issue #2): JSON lines in production, and every line about a message names the
message, the account and the subscriber's number.

The gateway runs as `smsgw serve --log-json` does in production (tests.gateway_process), and the
test reads what it wrote to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import tty
import urllib.request
from pathlib import Path

import pytest

from gateway.config import DEFAULT_CONFIG
from gateway.store.migrations import SCHEMA_VERSION
from tests.e2e.test_amend import submit_multi
from tests.gateway_process import (
    GatewayProcess,
    children_of,
    config_file,
    free_port,
    tls_config_file,
)
from tests.polling import eventually
from tests.smpp_handset import (
    ESM_UDHI,
    ESME_RBINDFAIL,
    ESME_RCANCELFAIL,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVDLNAME,
    ESME_RINVDSTADR,
    ESME_RINVOPTPARSTREAM,
    ESME_RINVPASWD,
    ESME_RINVSRCADR,
    ESME_RINVSYSID,
    ESME_ROK,
    ESME_RQUERYFAIL,
    ESME_RREPLACEFAIL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    SMSGW_RNOSUBSCRIPTION,
    Handset,
    RawLink,
    answer,
    cancel_sm,
    cstr,
    encoded,
    frame,
    is_receipt,
    receipt_fields,
    replace_sm,
)
from tests.unit.test_store_migrations import build_old_database

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2


def test_lines_about_a_message_name_it_its_account_and_msisdn(tmp_path: Path, start_gateway) -> None:
    gateway = start_gateway(tmp_path / "gw.db")
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    try:
        a.bind("trx", "handset")
        b.bind("trx", "handset2")
        b.answers.append(ESME_RINVDSTADR)  # B's handset refuses it for good: undeliverable
        sent = a.submit(B, "hello")
        assert sent.status == ESME_ROK
        b.expect()
        assert a.submit("abc", "to nobody").status == ESME_RINVDSTADR
        assert a.query("no-such-id").status == ESME_RQUERYFAIL
    finally:
        a.close()
        b.close()
    assert gateway.terminate() == 0

    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    assert len(records) == len(gateway.log), "every line is a JSON object"
    events = [r["event"] for r in records]  # SIGTERM: the drain is not silent until "smsgw stopped"
    assert events.index("smsgw stopping: new submissions refused, draining") < events.index("smsgw stopped")
    by_event = {}
    for record in records:
        by_event.setdefault(record["event"], []).append(record)
    message_id = sent.message_id.decode()
    for event in ("mt undeliverable", "mt final"):
        [line] = by_event[event]
        assert (line["message_id"], line["account"], line["msisdn"]) == (message_id, "handset", B), event
    assert by_event["mt undeliverable"][0]["bind_account"] == "handset2"
    [rejected] = by_event["submission rejected"]
    assert (rejected["account"], rejected["msisdn"], rejected["status"]) == ("handset", A, "ESME_RINVDSTADR")
    assert rejected["reason"]
    [refused] = by_event["query_sm refused"]
    assert (refused["message_id"], refused["account"], refused["msisdn"]) == ("no-such-id", "handset", A)


def logged(gateway: GatewayProcess, event: str) -> list[dict]:
    return [record for line in list(gateway.log) if (record := json.loads(line))["event"] == event]


def test_a_retransmission_is_logged_under_the_msisdn_of_every_other_line_about_its_message(tmp_path: Path, start_gateway) -> None:
    """A handset's MT sent twice (same user_message_reference) was `retransmission recognised` under its sender's
    msisdn, while its cancel_sm and `mt final` lines named its addressee: a grep for one number missed half of them."""
    gateway = start_gateway(tmp_path / "gw.db")
    a = Handset(gateway.smpp_port, A)
    try:
        a.bind("trx", "handset")
        sent = [a.submit(B, "sent twice", user_message_reference=7) for _ in range(2)]  # B is not bound: it waits
        assert [r.status for r in sent] == [ESME_ROK, ESME_ROK] and sent[0].message_id == sent[1].message_id
        message_id = sent[0].message_id.decode()
        with RawLink(gateway.smpp_port) as link:
            link.bind("handset", command="bind_transmitter")
            link.send(cancel_sm(2, A, message_id, B))
            assert answer(link, 2)[0] == ESME_ROK
    finally:
        a.close()
    assert gateway.terminate() == 0
    about = [r for line in gateway.log if (r := json.loads(line)).get("message_id") == message_id]
    assert {"retransmission recognised", "cancel_sm", "mt final"} <= {r["event"] for r in about}
    assert {(r["account"], r["msisdn"]) for r in about} == {("handset", B)}


def test_a_final_status_written_again_names_the_message_its_account_and_msisdn(tmp_path: Path, start_gateway) -> None:
    """The store refused an acknowledged deliver_sm's final status (another process held the database's lock): the
    warning 'final status not committed; writing it again until it is' named the message id only."""
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    try:
        a.bind("trx", "handset")
        sent = a.submit(B, "hello", registered_delivery=1)  # B is not bound yet: the MT waits in the store
        message_id = sent.message_id.decode()
        with contextlib.closing(sqlite3.connect(db)) as conn:  # the refusal, caused for real: a trigger aborts it
            conn.execute(f"CREATE TRIGGER test_refuse BEFORE UPDATE OF status ON messages WHEN NEW.id = '{message_id}'"
                         " AND NEW.status = 'delivered' BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END")  # fmt: skip
        b.bind("trx", "handset2")
        b.expect()  # and acknowledged
        assert eventually(lambda: logged(gateway, "final status not committed; writing it again until it is"), 10)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("DROP TRIGGER test_refuse")
        assert receipt_fields(a.expect(10, is_receipt))["stat"] == "DELIVRD"  # written again, committed this time
    finally:
        a.close()
        b.close()
    assert gateway.terminate() == 0
    [line] = logged(gateway, "final status not committed; writing it again until it is")
    assert (line["message_id"], line["account"], line["msisdn"]) == (message_id, "handset", B)
    assert "refused by test trigger" in line["error"]


def answering_late(tmp_path: Path, start_gateway):
    """A gateway that waits 1 s for a deliver_sm_resp and retries 5 s later, and A and B bound (trx), to hold answers."""
    gateway = start_gateway(tmp_path / "gw.db", config=config_file(tmp_path, response_timeout=1, retry_backoff=[5]))
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    a.bind("trx", "handset")
    b.bind("trx", "handset2")
    return gateway, a, b


def test_account_is_the_submitter_on_every_line_about_an_mt_and_bind_account_the_bind_it_went_to(tmp_path: Path, start_gateway) -> None:
    """'deliver_sm timed out' named the bind's account (handset2) as `account`, 'mt retry' right after it the
    submitter's (handset): one line read as if the other account had sent the message."""
    gateway, a, b = answering_late(tmp_path, start_gateway)
    try:
        b.answering = False
        message_id = a.submit(B, "answered late", registered_delivery=1).message_id.decode()
        b.expect()
        assert eventually(lambda: logged(gateway, "mt retry"), 10)  # it timed out
        b.answer_held()  # before its retry: that answer counts
        assert receipt_fields(a.expect(10, is_receipt))["stat"] == "DELIVRD"
    finally:
        a.close()
        b.close()
    assert gateway.terminate() == 0
    for event in ("deliver_sm timed out", "mt retry", "deliver_sm answered late"):
        [line] = logged(gateway, event)
        assert (line["message_id"], line["account"], line["msisdn"]) == (message_id, "handset", B), event
    for event in ("deliver_sm timed out", "mt retry", "deliver_sm answered late"):
        [line] = logged(gateway, event)
        assert line["bind_account"] == "handset2", event


def test_lines_about_delivering_a_receipt_name_the_message_it_reports_on(tmp_path: Path, start_gateway) -> None:
    """A receipt its client did not answer in time was logged under the receipt's own id only: grepping the id the
    client held (its submit_sm_resp's, the receipt's `id:`) found nothing of the trouble delivering it."""
    gateway, a, b = answering_late(tmp_path, start_gateway)
    try:
        a.answering = False
        message_id = a.submit(B, "receipt please", registered_delivery=1).message_id.decode()
        b.expect()
        a.expect(5, is_receipt)  # held unanswered
        assert eventually(lambda: logged(gateway, "mt retry"), 10)  # it timed out
        a.answer_held(ESME_RINVDSTADR)  # before its retry: that answer counts, and ends it
        assert eventually(lambda: logged(gateway, "mt final"), 10)
        assert a.submit(B, "no receipt").status == ESME_ROK
        b.answers.append(ESME_RINVDSTADR)
        b.expect()
        assert eventually(lambda: len(logged(gateway, "mt final")) == 2, 10)
    finally:
        a.close()
        b.close()
    assert gateway.terminate() == 0
    events = ("deliver_sm timed out", "mt retry", "deliver_sm answered late", "mt undeliverable", "mt final")
    about_receipt = [logged(gateway, event)[0] for event in events]
    assert {(line["account"], line["msisdn"]) for line in about_receipt} == {("(gateway)", A)}
    assert [line["receipted_message_id"] for line in about_receipt] == [message_id] * len(events)
    other = logged(gateway, "mt undeliverable")[1:] + logged(gateway, "mt final")[1:]  # the MT without a receipt
    assert len(other) == 2 and not any("receipted_message_id" in line for line in other)  # as it was


def test_a_refused_deliver_sm_names_the_bind_it_went_to(tmp_path: Path, start_gateway) -> None:
    """'mt retry' after a deliver_sm refused for now (ESME_RX_T_APPN), and 'mt undeliverable' after one refused for
    good in an answer that came late (ESME_RX_P_APPN), named no bind_account: nothing said which bind refused it."""
    # The late answer must reach the gateway within the first back-off after its 'mt retry' line is read here (a log
    # line read from another process, then a PDU: 0.5 s was tight on a loaded machine); the retry after it, 30 s.
    gateway = start_gateway(tmp_path / "gw.db", config=config_file(tmp_path, response_timeout=1, retry_backoff=[2, 30]))
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    try:
        a.bind("trx", "handset")
        b.bind("trx", "handset2")
        b.answers.append(0x64)  # ESME_RX_T_APPN: refused for now, delivered at its retry
        delivered_id = a.submit(B, "refused for now").message_id.decode()
        b.expect()
        b.expect()
        b.answering = False
        undeliverable_id = a.submit(B, "refused for good, late").message_id.decode()
        b.expect()
        assert eventually(lambda: len(logged(gateway, "mt retry")) == 2, 10)  # it timed out
        b.answer_held(0x65)  # ESME_RX_P_APPN, before its retry: that answer counts
        assert eventually(lambda: logged(gateway, "mt undeliverable"), 10)
    finally:
        a.close()
        b.close()
    assert gateway.terminate() == 0
    assert [(line["message_id"], line["bind_account"]) for line in logged(gateway, "mt retry")] == [
        (delivered_id, "handset2"), (undeliverable_id, "handset2")]
    [line] = logged(gateway, "mt undeliverable")
    assert (line["message_id"], line["bind_account"], line["status"]) == (undeliverable_id, "handset2", "ESME_RX_P_APPN")


def test_an_address_range_re2_refuses_is_logged_with_the_bind_it_came_with(tmp_path: Path, start_gateway) -> None:
    """The warning named neither the account nor the peer: an operator could not tell whose bind it was."""
    gateway = start_gateway(tmp_path / "gw.db")
    phone = Handset(gateway.smpp_port, A)
    try:
        phone.bind("trx", "handset", address_range="^86138(?=0)")  # lookahead: RE2 has none
        port = phone.client._socket.getsockname()[1]
    finally:
        phone.close()
    assert gateway.terminate() == 0
    [line] = logged(gateway, "address_range is no regular expression RE2 takes; it serves the one number written so")
    assert (line["account"], line["peer"], line["address_range"]) == ("handset", f"127.0.0.1:{port}", "^86138(?=0)")
    assert line["reason"].startswith("invalid perl operator: (?="), line["reason"]  # RE2's words, not a bytes repr


def test_an_address_range_that_leaves_out_every_number_of_the_account_is_logged_at_the_bind(tmp_path: Path, start_gateway) -> None:
    """A range written nationally (`^138`, where numbers are kept as 86138...) was accepted and matched nothing: every
    MT to the account's subscribers waited in the store for another bind, and no line said why."""
    gateway = start_gateway(tmp_path / "gw.db")
    ranges = ["^138", "^8613800", "^8613", "^138\\d{8}$", "8613800000001", "13900000001"]
    for address_range in ranges:
        phone = Handset(gateway.smpp_port, A)
        try:
            phone.bind("trx", "handset", address_range=address_range)
        finally:
            phone.close()
    assert gateway.terminate() == 0
    lines = logged(gateway, "address_range leaves out every number of the account: no MT to its subscribers comes here")
    assert [(line["address_range"], line["numbers"], line["account"]) for line in lines] == [
        ("^138", ["86138", "86139"], "handset"), ("^138\\d{8}$", ["86138", "86139"], "handset")]


def test_lines_about_an_sp_notice_name_the_subscriber_it_is_about_and_the_gateway_as_its_account(tmp_path: Path, start_gateway) -> None:
    """An ORDER notice goes from the subscriber's number to the SP's service code: its 'deliver_sm timed out' and
    'mt retry' named 1066916 as msisdn, and a search of the log for the subscriber found nothing about it. Lines
    about the notice and the service's replies named account "" (what the store keeps for what the gateway made)."""
    gateway = start_gateway(tmp_path / "gw.db", config=config_file(tmp_path, response_timeout=1, retry_backoff=[5]))
    a, sina = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, "1066916")
    try:
        a.bind("trx", "handset")
        sina.bind("rx", "sina")
        sina.answering = False
        assert a.submit("1066916", "TT").status == ESME_ROK
        a.expect()  # the confirmation request
        assert a.submit("10086", "Y").status == ESME_ROK
        sina.expect()  # the ORDER notice, left unanswered
        assert eventually(lambda: logged(gateway, "mt retry"), 10)
    finally:
        a.close()
        sina.close()
    assert gateway.terminate() == 0
    for event in ("deliver_sm timed out", "mt retry"):
        lines = logged(gateway, event)
        assert lines and {line["msisdn"] for line in lines} == {A}, (event, lines)
        # made by the gateway, not submitted by an account: named so (it was account="")
        assert {line["account"] for line in lines} == {"(gateway)"}, (event, lines)
        assert None not in {line.get("bind_account") for line in lines} and "sina" in {line["bind_account"] for line in lines}


def test_a_refused_destination_is_logged_with_the_reason_that_applies(tmp_path: Path, start_gateway) -> None:
    """An SP's submit_sm to 10086 was logged as "is neither a subscriber nor a short code": 10086 is one. An SP
    sends content to subscribers only (SPEC 2), and its line now says so; a handset's keeps the reason it had."""
    gateway = start_gateway(tmp_path / "gw.db")
    sina, a = Handset(gateway.smpp_port, "1066916"), Handset(gateway.smpp_port, A)
    try:
        sina.bind("tx", "sina")
        a.bind("tx", "handset")
        assert sina.submit("10086", "0000").status == ESME_RINVDSTADR
        assert sina.submit("12345", "content").status == ESME_RINVDSTADR
        assert a.submit("12345", "hello").status == ESME_RINVDSTADR
    finally:
        sina.close()
        a.close()
    assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    assert [(r["account"], r["status"], r["reason"]) for r in records if r["event"] == "submission rejected"] == [
        ("sina", "ESME_RINVDSTADR", "destination_addr 10086 is a short code; an SP may send only to subscribers"),
        ("sina", "ESME_RINVDSTADR", "destination_addr 12345 is not a subscriber number; an SP may send only to subscribers"),
        ("handset", "ESME_RINVDSTADR", "destination_addr 12345 is neither a subscriber nor a short code"),
    ]


def test_refusals_name_the_subscriber_as_every_line_does_and_cancel_and_replace_say_why_as_warnings(tmp_path: Path, start_gateway) -> None:
    """`submission rejected` named the number as typed (13800000001), and for an SP its service code: a search for
    the subscriber's msisdn missed the SP's refused content. A cancel_sm or replace_sm that changed nothing was an
    info line without a reason, gone at --log-level warning."""
    gateway = start_gateway(tmp_path / "gw.db", log_level="warning")
    sina, a = Handset(gateway.smpp_port, "1066916"), Handset(gateway.smpp_port, A)
    try:
        sina.bind("tx", "sina")
        a.bind("trx", "handset")
        assert sina.submit("13700000001", "news").status == SMSGW_RNOSUBSCRIPTION  # B, nationally written
        assert a.submit("abc", "hello", source_addr="13800000001").status == ESME_RINVDSTADR
        with RawLink(gateway.smpp_port) as link:
            link.bind("handset", command="bind_transmitter")
            link.send(cancel_sm(2, "+8613800000001", "no-such-id"))
            link.send(replace_sm(3, "13800000001", "no-such-id", b"new text"))
            link.send(submit_multi(4, A, ["dl:friends"], b"to my friends"))  # refused, and it was not logged
            assert [answer(link, 2)[0], answer(link, 3)[0], answer(link, 4)[0]] == [
                ESME_RCANCELFAIL, ESME_RREPLACEFAIL, ESME_RINVDLNAME]  # fmt: skip
    finally:
        sina.close()
        a.close()
    assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    rejected = [(r["account"], r["msisdn"], r["source"], r["status"]) for r in records if r["event"] == "submission rejected"]
    assert rejected == [("sina", B, "1066916", "SMSGW_RNOSUBSCRIPTION"), ("handset", A, "13800000001", "ESME_RINVDSTADR"),
                        ("handset", A, A, "ESME_RINVDLNAME")]  # fmt: skip
    refused = [(r["event"], r["level"], r["msisdn"], r["message_id"], r["status"]) for r in records if "_sm refused" in r["event"]]
    assert refused == [("cancel_sm refused", "warning", A, "no-such-id", "ESME_RCANCELFAIL"),
                       ("replace_sm refused", "warning", A, "no-such-id", "ESME_RREPLACEFAIL")]  # fmt: skip
    assert all("no such message" in r["reason"] for r in records if "_sm refused" in r["event"])


DATA_SM = 0x00000103


def with_tlvs(pdu: bytes, tlvs: bytes) -> bytes:
    """`pdu` with `tlvs` appended, its command_length made good."""
    return struct.pack(">L", len(pdu) + len(tlvs)) + pdu[4:] + tlvs


def test_submissions_refused_before_they_are_read_whole_name_their_command_and_addresses(tmp_path: Path, start_gateway) -> None:
    """A submission with a TLV given twice (ESME_RINVOPTPARSTREAM) or a destination_addr longer than its field
    (ESME_RINVDSTADR) is refused as it is decoded: it was a `pdu rejected` line without msisdn, source, dest or
    command, where every other refused submission names them. It names what was read before the fault. One from a
    client not bound names no subscriber: it is a `pdu rejected` line (it must not end the connection unanswered)."""
    gateway = start_gateway(tmp_path / "gw.db", log_level="warning")
    reference_twice = struct.pack(">HHH", 0x0204, 2, 1) * 2  # user_message_reference
    malformed = with_tlvs(encoded("submit_sm", 2, source_addr="13800000001", destination_addr=B, short_message=b"x"), reference_twice)
    with RawLink(gateway.smpp_port) as a, RawLink(gateway.smpp_port) as sina, RawLink(gateway.smpp_port) as unbound:
        a.bind("handset")
        sina.bind("sina", command="bind_transmitter")
        a.send(malformed
               + frame(DATA_SM, 3, cstr("") + b"\x01\x01" + cstr(A) + b"\x01\x01" + cstr("8" * 65) + bytes(3))
               + with_tlvs(submit_multi(4, A, [B, "dl:friends"], b"x"), reference_twice))  # fmt: skip
        sina.send(with_tlvs(encoded("submit_sm", 2, source_addr="1066916", destination_addr="13700000001", short_message=b"x"),
                            reference_twice))  # fmt: skip
        unbound.send(malformed)
        assert [answer(a, 2)[0], answer(a, 3)[0], answer(a, 4)[0], answer(sina, 2)[0], answer(unbound, 2)[0]] == [
            ESME_RINVOPTPARSTREAM, ESME_RINVDSTADR, ESME_RINVOPTPARSTREAM, ESME_RINVOPTPARSTREAM, ESME_RINVOPTPARSTREAM]  # fmt: skip
    assert gateway.terminate() == 0
    lines = [(r["account"], r["msisdn"], r["source"], r.get("dest"), r.get("dl_name"), r["command"], r["status"])
             for r in logged(gateway, "submission rejected")]  # fmt: skip
    assert sorted(lines, key=str) == sorted([
        ("handset", A, "13800000001", B, None, "submit_sm", "ESME_RINVOPTPARSTREAM"),
        ("handset", A, A, None, None, "data_sm", "ESME_RINVDSTADR"),  # the fault is in destination_addr
        ("handset", A, A, B, None, "submit_multi", "ESME_RINVOPTPARSTREAM"),
        ("handset", A, A, None, "friends", "submit_multi", "ESME_RINVOPTPARSTREAM"),
        ("sina", B, "1066916", "13700000001", None, "submit_sm", "ESME_RINVOPTPARSTREAM"),  # an SP's: its addressee
    ], key=str)  # fmt: skip
    [before_bind] = logged(gateway, "pdu rejected")
    assert (before_bind["account"], before_bind["status"]) == ("-", "ESME_RINVOPTPARSTREAM")


def test_submissions_refused_on_a_receiver_name_their_command_and_addresses(tmp_path: Path, start_gateway) -> None:
    """A submit_sm, data_sm or submit_multi on a bind_receiver (ESME_RINVBNDSTS) was a `pdu rejected` line without
    msisdn, source or dest, where the same submission refused for any other reason names them."""
    gateway = start_gateway(tmp_path / "gw.db", log_level="warning")
    data_sm = encoded("data_sm", 3, source_addr=A, destination_addr="13700000001", message_payload=b"x")
    with RawLink(gateway.smpp_port) as receiver:
        receiver.bind("handset", command="bind_receiver")
        receiver.send(encoded("submit_sm", 2, source_addr="13800000001", destination_addr=B, short_message=b"x")
                      + data_sm + submit_multi(4, A, [B, "dl:friends"], b"x"))  # fmt: skip
        assert [answer(receiver, n)[0] for n in (2, 3, 4)] == [ESME_RINVBNDSTS] * 3
    assert gateway.terminate() == 0
    lines = [(r["account"], r["msisdn"], r["source"], r.get("dest"), r.get("dl_name"), r["command"], r["status"])
             for r in logged(gateway, "submission rejected")]  # fmt: skip
    assert lines == [
        ("handset", A, "13800000001", B, None, "submit_sm", "ESME_RINVBNDSTS"),
        ("handset", A, A, "13700000001", None, "data_sm", "ESME_RINVBNDSTS"),
        ("handset", A, A, B, None, "submit_multi", "ESME_RINVBNDSTS"),
        ("handset", A, A, None, "friends", "submit_multi", "ESME_RINVBNDSTS"),
    ]
    assert all("not allowed in state bound_rx" in r["reason"] for r in logged(gateway, "submission rejected"))
    assert logged(gateway, "pdu rejected") == []


def test_lines_about_an_sps_submissions_name_the_subscriber_it_sends_to(tmp_path: Path, start_gateway) -> None:
    """'retransmission recognised', 'query_sm refused' and 'replace_sm refused' named an SP's service code (or
    nothing) as msisdn: a search for the subscriber missed them. And the drain's line counted connections that
    never bound as binds."""
    gateway = start_gateway(tmp_path / "gw.db")
    a, sina = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, "1066916")
    idle = socket.create_connection(("127.0.0.1", gateway.smpp_port))  # connected, never bound
    try:
        a.bind("trx", "handset")
        sina.bind("trx", "sina")
        assert a.submit("1066916", "TT").status == ESME_ROK
        a.expect()  # the confirmation request
        assert a.submit("10086", "Y").status == ESME_ROK
        assert eventually(lambda: sina.submit(A, "news", user_message_reference=7).status == ESME_ROK, 10)
        first = sina.submit(A, "news", user_message_reference=7)  # sent again: recognised
        assert first.status == ESME_ROK
        assert sina.query(first.message_id, source="1066999").status == ESME_RQUERYFAIL
        with RawLink(gateway.smpp_port) as link:
            link.bind("sina", command="bind_transmitter")
            link.send(replace_sm(2, "1066916", first.message_id.decode(), b"late news", validity="bad"))
            assert answer(link, 2)[0] != ESME_ROK
    finally:
        a.close()
        sina.close()
    assert gateway.terminate() == 0
    idle.close()
    lines = {event: logged(gateway, event) for event in ("retransmission recognised", "query_sm refused", "replace_sm refused")}
    assert {event: [(r["account"], r["msisdn"]) for r in found] for event, found in lines.items()} == {
        "retransmission recognised": [("sina", A)], "query_sm refused": [("sina", A)], "replace_sm refused": [("sina", A)]}
    [stopping] = logged(gateway, "smsgw stopping: new submissions refused, draining")
    assert stopping["binds"] == 0


def test_a_port_in_use_refuses_the_start_before_anything_is_handled(tmp_path: Path, start_gateway) -> None:
    """README: a refusal to start is "the one plain line, written before any JSON one". With an MO left to handle, the
    start replayed it (its JSON lines written) and only then found the SMPP port in use: 'smsgw: cannot start' came
    after them, from a gateway that had worked. Now the ports are taken first; the MO waits for the next start."""
    db, config = tmp_path / "gw.db", config_file(tmp_path, mo_retry_backoff=[3600])
    gateway = start_gateway(db, config=config)
    a = Handset(gateway.smpp_port, A)
    try:
        a.bind("trx", "handset")
        with contextlib.closing(sqlite3.connect(db)) as conn:  # its echo cannot be stored: the MO is tried again later
            conn.execute("CREATE TRIGGER test_refuse BEFORE INSERT ON messages WHEN NEW.direction = 'mt'"
                         " BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END")  # fmt: skip
        assert a.submit("10086000", "echo me").status == ESME_ROK
        assert eventually(lambda: logged(gateway, "MO to be tried again"), 10)
    finally:
        a.close()
    assert gateway.terminate() == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refused = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--db", str(db), "--config", str(config), "--host", "127.0.0.1",
             "--smpp-port", str(taken.getsockname()[1]), "--http-port", "0", "--log-json"],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith("smsgw: cannot start: ") and "address already in use" in line
    again = start_gateway(db, config=config)
    [ready] = logged(again, "smsgw ready")
    assert ready["mo_replayed"] == 1
    assert again.terminate() == 0


def _refused_on_one_port(db: Path) -> tuple[int, str]:
    """`serve` given one port for SMPP and HTTP: its exit status and its one line (a start refused after the store
    opened)."""
    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--db", str(db), "--host", "127.0.0.1",
         "--smpp-port", str(port), "--http-port", str(port), "--log-json"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    return port, line


def test_two_listeners_given_one_port_refuse_the_start(tmp_path: Path) -> None:
    """Bound before listening, the SMPP and HTTP sockets did not clash: the start went on, uvloop's start_serving
    said nothing of the HTTP port it could not open, and 'smsgw ready' failed with a traceback."""
    db = tmp_path / "gw.db"
    port, line = _refused_on_one_port(db)
    assert line == (f"smsgw: cannot start: the SMPP and HTTP listeners were both given port {port} (127.0.0.1 and "
                    f"127.0.0.1) ({db} was created first)")  # fmt: skip


@pytest.mark.parametrize(
    ("version", "in_the_way", "failure"),
    [(5, "CREATE TABLE writer_progress (x)",  # what step 7 creates
      "table writer_progress already exists (its schema had moved from version 5 to 6 first)"),
     (13, "ALTER TABLE subscriptions ADD COLUMN fee INTEGER", "duplicate column name: fee")],  # step 14's: moved nothing
)  # fmt: skip
def test_a_migration_that_fails_half_way_says_how_far_it_moved_the_schema(tmp_path: Path, version, in_the_way, failure) -> None:
    """Steps that committed before one failed had moved the file forward, one way (an older release refuses it from
    then on), and the refusal said only the failure: here an operator's own table or column named as a later step's.
    One failing at its first step moved nothing, and says nothing of a move."""
    db = tmp_path / "old.db"
    build_old_database(db, version)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(in_the_way)
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--db", str(db), "--smpp-port", "0", "--http-port", "0"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line == f"smsgw: cannot start: cannot open SQLite store at {str(db)!r}: {failure}"


def test_a_start_refused_after_it_upgraded_the_database_says_so_in_its_line(tmp_path: Path) -> None:
    """The upgrade is logged once the gateway is ready: a start refused after the store opened (a port in use) had
    moved the schema forward, one way, and nothing ever said so (the next start found it at the version already)."""
    db = tmp_path / "old.db"
    build_old_database(db, 5)
    _port, line = _refused_on_one_port(db)
    assert line.endswith(f"(127.0.0.1 and 127.0.0.1) ({db} was upgraded from schema 5 to {SCHEMA_VERSION} first)")


def test_listeners_of_two_address_families_may_share_a_port(tmp_path: Path) -> None:
    """'::' and '0.0.0.0' on one port do not clash (asyncio's IPv6 listeners are IPv6-only): the start was refused."""
    port = free_port()
    config = tmp_path / "site.toml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace('http_host = "0.0.0.0"', 'http_host = "::"'),
                      encoding="utf-8")  # fmt: skip
    serving = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--db", str(tmp_path / "gw.db"), "--config", str(config),
         "--smpp-port", str(port), "--http-port", str(port), "--log-json"],
        cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serving.stderr is not None
        for line in serving.stderr:  # until it is ready, or refuses to start (a plain line)
            assert line.startswith("{"), line
            if json.loads(line)["event"] == "smsgw ready":
                assert (json.loads(line)["smpp_port"], json.loads(line)["http_port"]) == (port, port)
                break
        with urllib.request.urlopen(f"http://[::1]:{port}/health", timeout=10) as health:
            assert health.status == 200
    finally:
        serving.terminate()
        assert serving.wait(30) == 0


def test_a_gateway_whose_log_reader_went_away_keeps_serving(tmp_path: Path) -> None:
    """stderr a broken pipe (a `| tee` or log shipper gone): every line written raised BrokenPipeError into the code
    that logged it. A new bind (it logs `bound`) was dropped without a bind_resp, a refused submit_sm closed its
    connection, and /ready still said ready. Now the lines are lost and nothing else: README, /ready."""
    serving = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--db", str(tmp_path / "gw.db"), "--host", "127.0.0.1",
         "--smpp-port", "0", "--http-port", "0", "--log-json"],
        cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serving.stderr is not None
        ready = next(record for line in serving.stderr if (record := json.loads(line))["event"] == "smsgw ready")
        serving.stderr.close()  # the reader goes away: every write to stderr now fails with EPIPE
        with Handset(ready["smpp_port"], A) as a:
            assert a.bind_status("trx", "handset") == ESME_ROK
            assert a.submit("abc", "to nobody").status == ESME_RINVDSTADR  # a refusal, logged
            assert a.submit(B, "the connection is kept").status == ESME_ROK
        with urllib.request.urlopen(f"http://127.0.0.1:{ready['http_port']}/ready", timeout=10) as answer:
            assert (answer.status, json.loads(answer.read())["ready"]) == (200, True)
    finally:
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(30) == 0  # its last lines lost too, and the stop as it is otherwise


def test_a_gateway_started_with_stderr_closed_serves_and_writes_no_line_into_its_files(tmp_path: Path) -> None:
    """`smsgw serve 2>&-`: it exited 1 without a word (sys.stderr None); and the descriptor, taken by the next file
    opened, would have had log lines written into the database. Now its lines are lost, as with a reader gone."""
    db, smpp_port, http_port = tmp_path / "gw.db", free_port(), free_port()
    serving = subprocess.Popen(
        ["sh", "-c", 'exec "$0" "$@" 2>&-', sys.executable, "-m", "gateway", "serve", "--db", str(db),
         "--host", "127.0.0.1", "--smpp-port", str(smpp_port), "--http-port", str(http_port)],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert eventually(lambda: serving.poll() is not None or readiness(http_port) == 200, 30), serving.returncode
        with Handset(smpp_port, A) as a:
            assert a.bind_status("trx", "handset") == ESME_ROK  # `bound` logged (lost)
            assert a.submit("abc", "to nobody").status == ESME_RINVDSTADR
            assert a.submit(B, "kept").status == ESME_ROK
    finally:
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(30) == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1,)


def readiness(http_port: int) -> int | None:
    """GET /ready's HTTP status; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ready", timeout=2) as answer:
            return answer.status
    except OSError:
        return None


def test_a_terminal_is_written_no_control_character_a_peer_sent(tmp_path: Path) -> None:
    """Console lines (stderr a terminal) wrote a bind's system_id and a submit_sm's destination_addr raw: a peer, bound
    or not, set the operator's terminal title and cleared its screen. Now they are escaped, as JSON lines had them."""
    terminal, gateway_side = pty.openpty()
    tty.setraw(gateway_side)  # what the gateway writes, byte for byte (no \r before each \n)
    db, smpp_port = tmp_path / "短信网关.db", free_port()  # printable text, which stays as it is
    serving = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--db", str(db), "--host", "127.0.0.1",
         "--smpp-port", str(smpp_port), "--http-port", str(free_port())],
        cwd=Path(__file__).resolve().parents[2], stderr=gateway_side,
    )  # fmt: skip
    os.close(gateway_side)
    written = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO: every process that had the terminal has exited
            while chunk := os.read(terminal, 4096):
                written.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    system_id, dest = "\x1b]0;pwned\x07\x1b[2J\x9b", "\x1b[2J\x1b[31mRED\x7f"  # C0, C1 (CSI) and DEL
    try:
        assert eventually(lambda: b"smsgw ready" in written or serving.poll() is not None, 30)
        with Handset(smpp_port, A) as stranger:
            assert stranger.bind_status("trx", system_id) == ESME_RINVSYSID
        with Handset(smpp_port, A) as a:
            a.bind("trx", "handset")
            assert a.submit(dest, "to a terminal").status == ESME_RINVDSTADR
    finally:
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(30) == 0
        reader.join(10)
        os.close(terminal)
    text = written.decode()
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), text
    assert f"system_id={system_id!r}" in text and f"dest={dest!r}" in text  # escaped, as \x1b
    assert f"database={db}" in text


def answer_to(port: int, request: bytes) -> bytes:
    """What the HTTP port answers to raw bytes (it closes the connection after an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer


def test_a_malformed_http_request_is_one_json_line_without_a_traceback(tmp_path: Path, start_gateway) -> None:
    """aiohttp logs through the standard library: its tracebacks came out as plain text among the JSON lines, at
    error level, for what is a client's fault (a probe speaking another protocol, a bad Content-Length)."""
    gateway = start_gateway(tmp_path / "gw.db")
    try:
        for request in (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
                        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"):  # fmt: skip
            assert answer_to(gateway.http_port, request).startswith(b"HTTP/1.0 400 Bad Request")
    finally:
        assert gateway.terminate() == 0
    assert all(line.startswith("{") for line in gateway.log), "".join(gateway.log)
    records = [json.loads(line) for line in gateway.log]
    refused = [r for r in records if r["event"] == "malformed HTTP request refused"]
    assert [(r["level"], r["peer"], r["status"]) for r in refused] == [("info", "127.0.0.1", 400)] * 2
    assert "Invalid HTTP version" in refused[0]["reason"] and "Content-Length" in refused[1]["reason"]
    assert not [r for r in records if "exception" in r or r["level"] == "error"]


def test_a_malformed_http_request_is_logged_without_its_bytes(tmp_path: Path, start_gateway) -> None:
    """The reason quoted aiohttp's message, which quotes the request: an SMPP client pointed at the HTTP port had its
    bind's system_id and password written to the log, a header's secret likewise. Now only what was wrong."""
    gateway = start_gateway(tmp_path / "gw.db")
    bind = b"carrier\0S3cr3tPw\0\0\x34\x01\x01\0"
    try:
        for request in (frame(0x00000009, 1, bind), b"GET /health HTTP/1.1\r\nX-Api-Key: T0pS3cr3t\x01\r\n\r\n"):
            assert answer_to(gateway.http_port, request).startswith(b"HTTP/1.0 400 Bad Request")
    finally:
        assert gateway.terminate() == 0
    refused = [json.loads(line) for line in gateway.log if "malformed HTTP request refused" in line]
    assert [r["reason"] for r in refused] == ["Invalid method encountered", "Invalid header value char"]
    for secret in ("S3cr3tPw", "carrier", "T0pS3cr3t"):
        assert not [line for line in gateway.log if secret in line], secret


MALFORMED = {  # what the HTTP port gets that aiohttp refuses with a 400 before any handler of ours
    "bad HTTP version": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    # aiohttp logs a bad method at debug level, the others at error level
    "bad method": b"F@O /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "TLS ClientHello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
    "SMPP enquire_link": frame(0x00000015, 1),
}


@pytest.mark.parametrize(("log_level", "lines"), [("debug", 4), ("info", 4), ("warning", 0), ("error", 0)])
def test_each_malformed_http_request_is_one_info_line_if_the_log_level_allows_info(
    tmp_path: Path, log_level: str, lines: int, start_gateway) -> None:
    """The line was written at --log-level warning and error (aiohttp's error record relabelled info after the
    level check), and a bad method (TLS or SMPP sent to the HTTP port) gave none at info (aiohttp logs it at debug)."""
    gateway = start_gateway(tmp_path / "gw.db", log_level=log_level)
    try:
        for request in MALFORMED.values():
            assert answer_to(gateway.http_port, request).startswith(b"HTTP/1.0 400 Bad Request")
    finally:
        assert gateway.terminate() == 0  # its lines are all written once it has exited
    records = [json.loads(line) for line in gateway.log]
    refused = [r for r in records if r["event"] == "malformed HTTP request refused"]
    assert [(r["level"], r["status"]) for r in refused] == [("info", 400)] * lines
    if lines:
        assert "HTTPS" in refused[2]["reason"]
    assert not [r for r in records if r["level"] in ("error", "critical") or "exception" in r]


def test_malformed_http_requests_from_one_host_are_logged_for_the_first_few_and_then_counted(
    tmp_path: Path, start_gateway) -> None:
    """One host sending garbage to the HTTP port had a line for each request: 17,106 lines in 5 s. Now as refused PDUs
    are: the first 5 from a host, the rest counted."""
    gateway = start_gateway(tmp_path / "gw.db")
    try:
        for _ in range(12):
            assert answer_to(gateway.http_port, MALFORMED["TLS ClientHello"]).startswith(b"HTTP/1.0 400 Bad Request")
    finally:
        assert gateway.terminate() == 0  # (what is still counted is logged as it stops)
    assert len(logged(gateway, "malformed HTTP request refused")) == 5
    counted = logged(gateway, "malformed HTTP request refused: more not logged")
    assert sum(r["count"] for r in counted) == 7 and {(r["peer"], r["account"]) for r in counted} == {("127.0.0.1", "-")}


def test_submissions_refused_while_the_gateway_stops_are_logged_as_refused_submissions_are(
    tmp_path: Path, start_gateway) -> None:
    """During SIGTERM's drain every refused submit_sm was one 'refused: the gateway is stopping' line (200 pipelined, 200
    lines), without msisdn, source or dest. Now as any refused submission: the first few logged, the rest counted.
    A bind refused then was that line too, without the account it names or a reason: now a `bind refused` line."""
    gateway = start_gateway(tmp_path / "gw.db")
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    late = RawLink(gateway.smpp_port)  # open before the stop, bound during it
    try:
        a.bind("trx", "handset")
        b.bind("trx", "handset2")
        b.answering = False  # its deliver_sm in flight keeps the drain waiting
        assert a.submit(B, "in flight").status == ESME_ROK
        b.expect()
        gateway.proc.send_signal(signal.SIGTERM)
        assert eventually(lambda: logged(gateway, "smsgw stopping: new submissions refused, draining"), 10)
        assert [a.submit(B, f"while stopping {n}").status for n in range(12)] == [ESME_RTHROTTLED] * 12
        [bind_resp] = late.exchange(encoded("bind_transceiver", 1, system_id="handset", password="handset"))
        assert bind_resp.status == ESME_RBINDFAIL
        late.close()
        b.answer_held()
        a.expect_request("unbind", timeout=10)
        b.expect_request("unbind", timeout=10)
        assert gateway.wait(30) == 0
    finally:
        a.close()
        b.close()
    refused = logged(gateway, "submission rejected")
    assert [(r["account"], r["msisdn"], r["source"], r["dest"], r["status"], r["reason"]) for r in refused] == [
        ("handset", A, A, B, "ESME_RTHROTTLED", "the gateway is stopping")] * 5
    [summary] = logged(gateway, "submission rejected (ESME_RTHROTTLED): more not logged")
    assert summary["count"] == 7
    [bind] = logged(gateway, "bind refused")
    assert (bind["account"], bind["system_id"], bind["status"], bind["reason"]) == (
        "handset", "handset", "ESME_RBINDFAIL", "the gateway is stopping")  # fmt: skip
    assert not logged(gateway, "refused: the gateway is stopping")


def test_a_client_flooding_unanswerable_pdus_gets_a_few_lines_and_a_count(tmp_path: Path, start_gateway) -> None:
    """Each unsolicited response and each request refused before a bind was one warning line: 200000
    generic_nack from an unbound client wrote 200000 lines (42 MB) and stalled every other bind. Now the first
    few of each kind are logged, the rest counted in a summary line; every refusal is still answered."""
    gateway = start_gateway(tmp_path / "gw.db")
    generic_nack, unknown_command, enquire_link = 0x80000000, 0x00000099, 0x00000015
    with RawLink(gateway.smpp_port) as link:
        link.send(b"".join(frame(generic_nack, n) + frame(unknown_command, n) for n in range(1, 201))
                  + frame(enquire_link, 999))  # fmt: skip
        answers = [link.read() for _ in range(201)]
        assert [(a.command, a.status) for a in answers[:200]] == [("generic_nack", ESME_RINVCMDID)] * 200
        assert (answers[200].command, answers[200].sequence) == ("enquire_link_resp", 999)  # all were read
    assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    for event, kind in (("pdu ignored", "pdu ignored"), ("pdu rejected", "pdu rejected (ESME_RINVCMDID)")):
        logged = [r for r in records if r["event"] == event]
        [summary] = [r for r in records if r["event"] == f"{kind}: more not logged"]
        assert 1 <= len(logged) <= 10
        assert len(logged) + summary["count"] == 200, kind


def test_refused_pdus_of_another_status_get_their_own_first_lines(tmp_path: Path, start_gateway) -> None:
    """One budget for every refused PDU: after 5 refused ESME_RINVBNDSTS, the first of another status was only counted,
    under no status, where README promises the first 5 of each status."""
    gateway = start_gateway(tmp_path / "gw.db")
    unknown_command = 0x00000099
    with RawLink(gateway.smpp_port) as link:
        link.bind("handset")
        link.send(b"".join(encoded("deliver_sm", n, source_addr=B, destination_addr=A, short_message=b"x") for n in range(2, 9))
                  + frame(unknown_command, 9) + frame(unknown_command, 10))  # (an ESME may send no deliver_sm)
        assert [link.read().status for _ in range(9)] == [ESME_RINVBNDSTS] * 7 + [ESME_RINVCMDID] * 2
    assert gateway.terminate() == 0
    rejected = [r["status"] for r in logged(gateway, "pdu rejected")]
    assert rejected == ["ESME_RINVBNDSTS"] * 5 + ["ESME_RINVCMDID"] * 2
    [counted] = logged(gateway, "pdu rejected (ESME_RINVBNDSTS): more not logged")
    assert counted["count"] == 2


def test_refused_submissions_are_logged_for_the_first_few_of_each_status_on_a_bind_and_then_counted(tmp_path: Path, start_gateway) -> None:
    """A line each: a client throttled or blocked, sending tens of thousands a minute, filled the disk. Those refused
    as they are decoded (a TLV given twice) too: each was logged, whatever the budget."""
    gateway = start_gateway(tmp_path / "gw.db")
    a = Handset(gateway.smpp_port, A)
    try:
        a.bind("trx", "handset")
        assert {a.submit("abc", f"to nobody {n}").status for n in range(20)} == {ESME_RINVDSTADR}
        assert a.submit(B, "from a number not ours", source_addr="8613700000009").status == ESME_RINVSRCADR
    finally:
        a.close()
    twice = struct.pack(">HHH", 0x0204, 2, 1) * 2  # user_message_reference
    with RawLink(gateway.smpp_port) as raw:
        raw.bind("handset")
        raw.send(b"".join(with_tlvs(encoded("submit_sm", n, source_addr=A, destination_addr=B, short_message=b"x"), twice)
                          for n in range(2, 22)))  # fmt: skip
        assert {answer(raw, n)[0] for n in range(2, 22)} == {ESME_RINVOPTPARSTREAM}
    assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    assert [r["status"] for r in records if r["event"] == "submission rejected"] == (
        ["ESME_RINVDSTADR"] * 5 + ["ESME_RINVSRCADR"] + ["ESME_RINVOPTPARSTREAM"] * 5)  # fmt: skip
    for status in ("ESME_RINVDSTADR", "ESME_RINVOPTPARSTREAM"):
        [counted] = [r for r in records if r["event"] == f"submission rejected ({status}): more not logged"]
        assert (counted["account"], counted["count"]) == ("handset", 15)


def test_refused_binds_queries_cancels_and_replaces_are_logged_for_the_first_few_and_then_counted(
    tmp_path: Path, start_gateway
) -> None:
    """A line each: a password guesser on one connection wrote 74,000 'bind refused' lines in 5 s, and query_sm of
    guessed ids 63,000 'query_sm refused' lines (~2.5 MB/s). Every refusal is still answered."""
    gateway = start_gateway(tmp_path / "gw.db")
    with RawLink(gateway.smpp_port) as guesser:
        guesser.send(b"".join(encoded("bind_transceiver", n, system_id="handset", password=f"guess{n}") for n in range(1, 21)))
        assert [answer(guesser, n)[0] for n in range(1, 21)] == [ESME_RINVPASWD] * 20
    with RawLink(gateway.smpp_port) as link:
        link.bind("handset")
        link.send(b"".join(encoded("query_sm", n, message_id=f"guess{n}", source_addr=A) for n in range(2, 22))
                  + b"".join(cancel_sm(n, A, f"guess{n}") + replace_sm(n + 100, A, f"guess{n}", b"x") for n in range(22, 42)))
        assert {answer(link, n)[0] for n in range(2, 22)} == {ESME_RQUERYFAIL}
        assert sorted(_status(link) for _ in range(40)) == (
            [ESME_RCANCELFAIL] * 20 + [ESME_RREPLACEFAIL] * 20)
    assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    for event, status in (("bind refused", "ESME_RINVPASWD"), ("query_sm refused", "ESME_RQUERYFAIL"),
                          ("cancel_sm refused", "ESME_RCANCELFAIL"), ("replace_sm refused", "ESME_RREPLACEFAIL")):
        assert len([r for r in records if r["event"] == event]) == 5, event
        [counted] = [r for r in records if r["event"] == f"{event} ({status}): more not logged"]
        assert counted["count"] == 15, event


def test_refused_binds_of_a_peer_in_a_reconnect_loop_are_logged_for_the_first_few_and_then_counted(
    tmp_path: Path, start_gateway
) -> None:
    """The budget was per connection: a peer binding with a wrong password, closing and binding again on a new
    connection wrote a line each time (1,000 refused binds in 0.3 s, 1,000 lines), and a summary at each close."""
    gateway = start_gateway(tmp_path / "gw.db")
    for n in range(1, 21):
        with RawLink(gateway.smpp_port) as guesser:
            guesser.send(encoded("bind_transceiver", n, system_id="handset", password=f"guess{n}"))
            assert answer(guesser, n)[0] == ESME_RINVPASWD
    assert gateway.terminate() == 0
    assert len(logged(gateway, "bind refused")) == 5
    [counted] = logged(gateway, "bind refused (ESME_RINVPASWD): more not logged")
    assert (counted["peer"], counted["count"]) == ("127.0.0.1", 15)


def test_binds_of_a_peer_in_a_reconnect_loop_are_logged_for_the_first_few_with_their_unbinds_and_then_counted(
    tmp_path: Path, start_gateway
) -> None:
    """A line for each bind and unbind, with no budget: a client binding with the right password and dropping in a
    loop wrote 53,932 lines in 10 s (~1.3 MB/s), where the same loop with a wrong password wrote 6."""
    gateway = start_gateway(tmp_path / "gw.db")
    for _ in range(20):
        with RawLink(gateway.smpp_port) as flapper:
            flapper.bind("handset")
    with RawLink(gateway.smpp_port) as other:
        other.bind("handset2")  # another account's budget: its first bind logged
    assert gateway.terminate() == 0
    bound, unbound = logged(gateway, "bound"), logged(gateway, "unbound")
    assert [line["account"] for line in bound] == ["handset"] * 5 + ["handset2"]
    assert sorted(line["peer"] for line in unbound) == sorted(line["peer"] for line in bound)  # each one's unbind
    [counted] = logged(gateway, "bound: more not logged")
    assert (counted["peer"], counted["account"], counted["count"]) == ("127.0.0.1", "handset", 15)
    assert counted["level"] == "info"  # binds are no misbehaviour (a load test's 10 binds from one host warned)


def test_the_count_of_refused_binds_names_the_account_whose_password_is_guessed(tmp_path: Path, start_gateway) -> None:
    """'bind refused (ESME_RINVPASWD): more not logged' with count 50925 said account "-" (the connection is not
    bound): which account was being guessed went unsaid. A system_id of no account stays "-": a client making them
    up gets no first lines for each."""
    gateway = start_gateway(tmp_path / "gw.db")
    with RawLink(gateway.smpp_port) as guesser:
        guesser.send(b"".join(encoded("bind_transceiver", n, system_id="handset2", password=f"guess{n}") for n in range(1, 21))
                     + b"".join(encoded("bind_transceiver", n, system_id=f"nobody{n}", password="x") for n in range(21, 41)))
        assert [answer(guesser, n)[0] for n in range(1, 41)] == [ESME_RINVPASWD] * 20 + [ESME_RINVSYSID] * 20
    assert gateway.terminate() == 0
    refused = logged(gateway, "bind refused")
    # Each line names the account as its count line does, so the two add up by one key.
    assert [(line["account"], line["system_id"]) for line in refused] == (
        [("handset2", "handset2")] * 5 + [("-", f"nobody{n}") for n in range(21, 26)])
    [guessed] = logged(gateway, "bind refused (ESME_RINVPASWD): more not logged")
    assert (guessed["peer"], guessed["account"], guessed["count"]) == ("127.0.0.1", "handset2", 15)
    [made_up] = logged(gateway, "bind refused (ESME_RINVSYSID): more not logged")
    assert (made_up["account"], made_up["count"]) == ("-", 15)


def test_connections_closed_for_never_binding_are_logged_for_the_first_few_and_then_counted(
    tmp_path: Path, start_gateway
) -> None:
    """A line each: 4000 connections from one host, without credentials, never binding wrote 4000 lines (660 a
    second possible) when bind_timeout closed them. Now as a refused PDU's: the first few logged, the rest counted."""
    gateway = start_gateway(tmp_path / "gw.db", config_file(tmp_path, bind_timeout=1))
    links = [RawLink(gateway.smpp_port) for _ in range(8)]
    try:
        assert all(link.is_closed(timeout=5) for link in links)
    finally:
        for link in links:
            link.close()
    assert gateway.terminate() == 0
    closed = logged(gateway, "not bound within bind_timeout; closing")
    assert [(r["level"], r["account"], r["seconds"]) for r in closed] == [("warning", "-", 1)] * 5  # "-": before a bind
    [counted] = logged(gateway, "not bound within bind_timeout; closing: more not logged")
    assert (counted["peer"], counted["account"], counted["count"]) == ("127.0.0.1", "-", 3)


def test_failed_tls_handshakes_from_one_host_are_logged_for_the_first_few_and_then_counted(
    tmp_path: Path, start_gateway, tls_files
) -> None:
    """As connections closed for never binding are: a plain SMPP client in a reconnect loop on the TLS port would
    write a line for each connection."""
    cert, key = tls_files
    gateway = start_gateway(tmp_path / "gw.db", tls_config_file(tmp_path, cert, key))
    links = [RawLink(gateway.tls_port) for _ in range(8)]
    try:
        for link in links:
            link.send(encoded("bind_transceiver", 1, system_id="handset", password="handset"))
        assert all(link.is_closed() for link in links)
    finally:
        for link in links:
            link.close()
    assert gateway.terminate() == 0
    failed = logged(gateway, "TLS handshake failed")
    assert [(r["account"], r["reason"]) for r in failed] == [("-", "not TLS: a plain SMPP client on the TLS port?")] * 5
    [counted] = logged(gateway, "TLS handshake failed: more not logged")
    assert (counted["peer"], counted["account"], counted["count"]) == ("127.0.0.1", "-", 3)


def _status(link: RawLink) -> int:
    data = link.read_frame()
    assert data is not None
    return struct.unpack(">LLLL", data[:16])[2]


def test_a_query_of_another_accounts_message_names_nothing_of_it_in_the_log(tmp_path: Path, start_gateway) -> None:
    """'query_sm refused' named the other account's subscriber as msisdn, and its reason told the id existed."""
    gateway = start_gateway(tmp_path / "gw.db")
    a, other = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, "8613700000999")
    try:
        a.bind("trx", "handset")
        other.bind("trx", "handset2")
        sent = a.submit("8613000000123", "for a carrier's subscriber")
        assert sent.status == ESME_ROK
        assert other.query(sent.message_id).status == ESME_RQUERYFAIL
        assert other.query("no-such-id").status == ESME_RQUERYFAIL
    finally:
        a.close()
        other.close()
    assert gateway.terminate() == 0
    lines = logged(gateway, "query_sm refused")
    assert [(r["account"], r["msisdn"], r["reason"]) for r in lines] == [
        ("handset2", "8613700000999", "no message of this account has this id")] * 2


def test_accounts_whose_numbers_overlap_are_named_at_the_start(tmp_path: Path, start_gateway) -> None:
    """handset2 given numbers = ["8613"] started without a word: it could then send from, and was sent the MTs of,
    the subscribers of handset (86138, 86139) and of carrier (86130, ...)."""
    config = config_file(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace('numbers = ["86137"]', 'numbers = ["8613"]', 1), encoding="utf-8")
    gateway = start_gateway(tmp_path / "gw.db", config)
    assert gateway.terminate() == 0
    shared = {(r["account"], r["numbers"], r["other_account"], r["other_numbers"])
              for r in logged(gateway, "accounts share subscribers: each may send from, and is sent the MTs of, the other's")}
    assert shared == {("handset", "86138", "handset2", "8613"), ("handset", "86139", "handset2", "8613"),
                      *(("handset2", "8613", "carrier", p) for p in ("86130", "86131", "86132"))}  # fmt: skip
    default = start_gateway(tmp_path / "default.db")
    assert default.terminate() == 0
    assert not [line for line in default.log if "accounts share subscribers" in line]  # the demo accounts share none


def test_connections_near_the_open_file_limit_are_warned_of(tmp_path: Path, start_gateway) -> None:
    """At the limit on open files a new connection is refused without a word (uvloop logs no accept that fails):
    1,100 connections that never bound locked every account out, and the log said nothing."""
    gateway = start_gateway(tmp_path / "gw.db", open_files=(100, 100))  # soft = hard: the start cannot raise it
    [ready] = logged(gateway, "smsgw ready")
    assert ready["connections_allowed"] == 100 - 64
    warning = "connections near the open-file limit: new ones are refused at it, without a word (raise `ulimit -n`)"
    links = [socket.create_connection(("127.0.0.1", gateway.smpp_port)) for _ in range(40)]
    try:
        assert eventually(lambda: logged(gateway, warning), 10)
        [line] = logged(gateway, warning)  # once (at most one a 10 s)
        assert line["allowed"] == 36 and line["connections"] >= 36
    finally:
        for link in links:
            link.close()
    assert gateway.terminate() == 0


def test_the_start_raises_the_limit_on_open_files_to_the_hard_one(tmp_path: Path, start_gateway) -> None:
    """The usual soft limit, 1024, is some nine hundred connections; the hard one is often far higher."""
    gateway = start_gateway(tmp_path / "gw.db", open_files=(100, 4096))
    [ready] = logged(gateway, "smsgw ready")
    assert ready["connections_allowed"] == 4096 - 64
    assert gateway.terminate() == 0


def test_submissions_failing_while_the_store_cannot_commit_are_logged_for_the_first_few_and_then_counted(
    tmp_path: Path, start_gateway
) -> None:
    """A disk full: every submission failed with two error lines, one of them ("MO handling not stored") with a
    traceback, also for MOs never stored; the store says why once itself ("store cannot commit"). (Here no writer
    process can start: the database's directory is gone.)"""
    home = tmp_path / "data"
    home.mkdir()
    gateway = start_gateway(home / "gw.db")
    a = Handset(gateway.smpp_port, A)
    try:
        a.bind("trx", "handset")
        assert a.submit(B, "before").status == ESME_ROK
        home.rename(tmp_path / "moved")
        [writer] = children_of(gateway.proc.pid)
        os.kill(writer, signal.SIGKILL)
        sent = [a.send(a.make("submit_sm", "10086000" if n % 2 else B, f"no writer {n}")) for n in range(16)]
        assert {a.response(seq, timeout=30).status for seq in sent} == {ESME_RSYSERR}
        (tmp_path / "moved").rename(home)
    finally:
        a.close()
    assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log if line.startswith("{")]
    [cannot] = [r for r in records if r["event"] == "store cannot commit"]
    assert cannot["database"] == str(home / "gw.db")  # as `database created` and `smsgw ready` name it
    failed = [r for r in records if r["event"] == "store write failed"]
    assert len(failed) == 5 and B in {r["msisdn"] for r in failed} <= {A, B}  # an MT's addressee, an MO's sender
    counted = [r for r in records if r["event"] == "store write failed: more not logged"]
    assert sum(r["count"] for r in counted) == 11 and {r["account"] for r in counted} == {"handset"}
    not_stored = [r for r in records if r["event"] == "MO handling not stored"]
    assert 1 <= len(not_stored) <= 5 and not any("exception" in r for r in not_stored), not_stored
    assert {(r["reason"], r["mo_stored"]) for r in not_stored} == {("store cannot commit", False)}


def test_a_retry_not_committed_names_its_mt(tmp_path: Path, start_gateway) -> None:
    """While the store could not commit, each `mt retry` left an asyncio 'Future exception was never retrieved' error
    line, a traceback naming no message, account or msisdn (the future of the retry's write was dropped)."""
    home = tmp_path / "data"
    home.mkdir()
    gateway = start_gateway(home / "gw.db", config=config_file(tmp_path, response_timeout=1, retry_backoff=[1]))
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    try:
        a.bind("trx", "handset")
        b.bind("rx", "handset2")
        b.answering = False  # it times out, and is tried again
        message_id = a.submit(B, "never answered").message_id.decode()
        home.rename(tmp_path / "moved")
        [writer] = children_of(gateway.proc.pid)
        os.kill(writer, signal.SIGKILL)
        b.expect()
        assert eventually(lambda: logged(gateway, "retry not committed"), 10)
        (tmp_path / "moved").rename(home)
    finally:
        a.close()
        b.close()
    gateway.terminate()
    lines = logged(gateway, "retry not committed")
    assert {(line["message_id"], line["account"], line["msisdn"]) for line in lines} == {(message_id, "handset", B)}
    assert all(line["error"] for line in lines)
    assert not [r for r in map(json.loads, gateway.log) if "never retrieved" in r["event"]]


def test_long_mos_never_completed_are_logged_for_the_first_few_of_an_account_and_then_counted(
    tmp_path: Path, start_gateway
) -> None:
    """'incomplete long MO dropped' was a line for each: a client sending only part 1 of 3 of its long MOs wrote
    14,882 of them (most of an 8.4 MB log) in a soak. Each is still given up with its UNDELIV receipt."""
    gateway = start_gateway(tmp_path / "gw.db", config_file(tmp_path, reassembly_timeout=1))
    a = Handset(gateway.smpp_port, A)
    try:
        a.bind("trx", "handset")
        for reference in range(8):  # part 1 of 3 of 8 texts
            udh = bytes((5, 0, 3, reference, 3, 1))
            assert a.submit("10086", udh + b"part one", esm_class=ESM_UDHI, registered_delivery=1).status == ESME_ROK
        receipts = [receipt_fields(pdu) for pdu in a.expect_many(8, 15, is_receipt)]  # given up: reassembly_timeout
        assert {r["stat"] for r in receipts} == {"UNDELIV"}
    finally:
        a.close()
    assert gateway.terminate() == 0
    dropped = logged(gateway, "incomplete long MO dropped")
    assert [(r["account"], r["msisdn"], r["short_code"], r["why"]) for r in dropped] == [("handset", A, "10086", "timed out")] * 5
    assert {r["message_id"] for r in dropped} < {r["id"] for r in receipts}
    [counted] = logged(gateway, "incomplete long MO dropped: more not logged")
    assert (counted["peer"], counted["account"], counted["count"]) == ("-", "handset", 3)


def test_a_bind_that_never_answers_deliver_sm_gets_a_few_lines_of_each_kind_and_then_counts(
    tmp_path: Path, start_gateway
) -> None:
    """'deliver_sm timed out', 'mt retry' and 'deliver_sm answered late' were a line for each MT: a bind answering no
    deliver_sm wrote ~10 lines a second for as long as it stayed bound. They are counted by the bind's host and
    account, as refused PDUs are; each MT is still retried, and delivered by its late answer."""
    db = tmp_path / "gw.db"
    gateway = start_gateway(db, config_file(tmp_path, response_timeout=1, retry_backoff=[60]))
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    try:
        a.bind("trx", "handset")
        b.bind("trx", "handset2")
        b.answering = False
        ids = [a.submit(B, f"unanswered {n}", registered_delivery=1).message_id.decode() for n in range(8)]
        b.expect_many(8)

        def retried() -> int:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                marks = ",".join("?" * len(ids))
                return conn.execute(f"SELECT count(*) FROM messages WHERE attempts = 1 AND id IN ({marks})", ids).fetchone()[0]

        assert eventually(lambda: retried() == 8, 15)  # each timed out, its retry 60 s away
        b.answer_held()
        assert {receipt_fields(pdu)["stat"] for pdu in a.expect_many(8, 10, is_receipt)} == {"DELIVRD"}
    finally:
        a.close()
        b.close()
    assert gateway.terminate() == 0
    for event, kind in (("deliver_sm timed out", "deliver_sm timed out"), ("mt retry", "mt retry (no answer)"),
                        ("deliver_sm answered late", "deliver_sm answered late")):  # fmt: skip
        lines = logged(gateway, event)
        assert [(r["account"], r["msisdn"], r["bind_account"]) for r in lines] == [("handset", B, "handset2")] * 5, event
        assert {r["message_id"] for r in lines} < set(ids), event
        [counted] = logged(gateway, f"{kind}: more not logged")
        assert (counted["peer"], counted["account"], counted["count"]) == ("127.0.0.1", "handset2", 3), event


def test_a_new_database_and_a_schema_upgrade_are_each_logged_once(tmp_path: Path, start_gateway) -> None:
    """Nothing in the log said when a start moved a database's schema forward (one way: an older release refuses it
    from then on), nor that a mistyped --db had made a new, empty database."""
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    build_old_database(old, 5)
    for db, expected in ((old, ("database schema upgraded", 5)), (new, ("database created", 0))):
        gateway = start_gateway(db)
        assert gateway.terminate() == 0
        [line] = [r for r in map(json.loads, gateway.log) if r["event"].startswith("database ")]
        assert (line["event"], line.get("from_version", 0), line["database"]) == (*expected, str(db))
        assert line.get("to_version", line.get("schema_version")) == SCHEMA_VERSION
        assert ("seconds" in line) == (db == old) and 0 <= line.get("seconds", 0) < 60  # how long the upgrade took
        again = start_gateway(db)  # at the version now: neither
        assert again.terminate() == 0
        assert not [r for r in map(json.loads, again.log) if r["event"].startswith("database ")]
