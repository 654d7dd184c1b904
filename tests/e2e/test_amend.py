"""submit_multi, cancel_sm and replace_sm, from an ESME's side (SMPP 3.4 sections 4.5, 4.9, 4.10).

smpplib (the reference client) has none of the three, so they are written here
byte by byte from the specification's field tables (not with our codec) and
sent on a raw connection; what the subscribers receive is read with smpplib.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import threading
import time
from pathlib import Path

import pytest
import structlog
from smpplib import consts

from gateway.clock import SimulatedClock
from gateway.store.records import Subscription
from handlers.base import Outcome
from tests.e2e.test_spam_report import SMSGW_RBLOCKEDBYRECIPIENT, SPAM, phone, report
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_RCANCELFAIL,
    ESME_RINVDSTADR,
    ESME_RINVESMCLASS,
    ESME_RINVEXPIRY,
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    RawLink,
    answer,
    cancel_sm,
    cstr,
    encoded,
    frame,
    is_receipt,
    receipt_fields,
    replace_sm,
    text,
)

A = "8613800000001"  # account handset
B, B2 = "8613700000001", "8613700000002"  # account handset2
SINA = "1066916"  # account sina
SUBMIT_MULTI, DELIVER_SM = 0x00000021, 0x00000005
ENROUTE, DELIVERED, DELETED = 1, 2, 4  # message_state (5.2.28)
ESME_RX_T_APPN = 0x64  # a handset's temporary refusal (SMPP 3.4 5.1.3)


def submit_multi(
    sequence: int, source: str, destinations: list[str | tuple[int, int, str]], body: bytes, registered_delivery: int = 0,
    protocol_id: int = 0, priority_flag: int = 0, service_type: str = "", replace_if_present_flag: int = 0, esm_class: int = 0,
) -> bytes:
    """4.5.1; a destination "dl:<name>" is a distribution list (dest_flag 2), any other an SME address (flag 1),
    international (TON 1, NPI 1) unless given as (ton, npi, address)."""
    dests = b"".join(
        b"\x02" + cstr(d[3:]) if isinstance(d, str) and d.startswith("dl:")
        else b"\x01" + bytes((d[0], d[1])) + cstr(d[2]) if isinstance(d, tuple) else b"\x01\x01\x01" + cstr(d)
        for d in destinations
    )  # fmt: skip
    fields = (
        cstr(service_type) + b"\x01\x01" + cstr(source) + bytes([len(destinations)]) + dests
        + bytes([esm_class, protocol_id, priority_flag]) + cstr("") + cstr("")  # schedule, validity
        + bytes([registered_delivery, replace_if_present_flag, 0, 0, len(body)]) + body  # data_coding, sm_default_msg_id
    )  # fmt: skip
    return frame(SUBMIT_MULTI, sequence, fields)


def multi_resp(body: bytes) -> tuple[str, list[tuple[str, int]]]:
    """4.5.2: message_id and the unsuccess_sme list as (destination_addr, error_status_code)."""
    message_id, refused = unsuccess_smes(body)
    return message_id, [(address, status) for _ton, _npi, address, status in refused]


def unsuccess_smes(body: bytes) -> tuple[str, list[tuple[int, int, str, int]]]:
    """4.5.2: message_id and the unsuccess_sme list as (dest_addr_ton, dest_addr_npi, destination_addr,
    error_status_code)."""
    end = body.index(0)
    message_id, count, pos = body[:end].decode(), body[end + 1], end + 2
    refused = []
    for _ in range(count):
        end = body.index(0, pos + 2)
        status = struct.unpack(">L", body[end + 1 : end + 5])[0]
        refused.append((body[pos], body[pos + 1], body[pos + 2 : end].decode(), status))
        pos = end + 5
    assert pos == len(body)
    return message_id, refused


@pytest.fixture
def esme(gateway):
    """A raw transmitter bind of account `handset` (receipts go to its smpplib transceiver, if bound)."""
    with RawLink(gateway.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        yield link


# ------------------------------------------------------------------- cancel_sm
def test_cancel_sm_takes_back_an_mt_still_waiting_for_its_subscriber(handset, esme) -> None:
    a = handset(A)
    first = a.submit(B, "first", registered_delivery=1).message_id.decode()
    assert a.submit(B, "second").status == ESME_ROK
    esme.send(cancel_sm(2, A, first))
    assert answer(esme, 2) == (ESME_ROK, b"")
    receipt = a.expect()
    assert receipt_fields(receipt)["id"] == first and receipt_fields(receipt)["stat"] == "DELETED"
    assert a.query(first).message_state == DELETED
    esme.send(cancel_sm(3, A, first))
    assert answer(esme, 3)[0] == consts.SMPP_ESME_RCANCELFAIL  # once only

    b = handset(B)
    assert text(b.expect()) == "second"
    b.expect_none(0.3)


def test_cancel_sm_is_answered_once_the_cancellation_is_committed(handset, esme) -> None:
    a = handset(A)
    for n in range(5):
        message_id = a.submit(B, f"waiting {n}").message_id.decode()  # no receipt to wait for
        esme.send(cancel_sm(10 + n, A, message_id))
        assert answer(esme, 10 + n) == (ESME_ROK, b"")
        assert a.query(message_id).message_state == DELETED  # what the store says right after the answer


def test_cancel_sm_without_a_message_id_cancels_what_waits_from_that_sender_for_that_subscriber(handset, esme) -> None:
    a = handset(A)
    for n in range(3):
        assert a.submit(B, f"for B {n}").status == ESME_ROK
    assert a.submit(B2, "for B2").status == ESME_ROK
    esme.send(cancel_sm(2, A, dest=B))
    assert answer(esme, 2)[0] == ESME_ROK
    esme.send(cancel_sm(3, A, dest=B))
    assert answer(esme, 3)[0] == consts.SMPP_ESME_RCANCELFAIL  # nothing left to cancel

    b = handset(B)
    got = b.expect()
    assert (got.destination_addr.decode(), text(got)) == (B2, "for B2")
    b.expect_none(0.3)


def test_cancel_sm_without_a_message_id_but_with_a_service_type_cancels_only_the_mts_of_that_service_type(handset, esme) -> None:
    """A client withdrawing its WAP push to a subscriber (service_type WAP, no message_id) took back everything it had
    waiting for them: the personal text (CMT) never arrived either."""
    a = handset(A)
    assert a.submit(B, "promo", service_type="WAP").status == ESME_ROK
    assert a.submit(B, "personal", service_type="CMT").status == ESME_ROK
    esme.send(cancel_sm(2, A, dest=B, service_type="WAP"))
    assert answer(esme, 2)[0] == ESME_ROK

    b = handset(B)
    assert text(b.expect()) == "personal"
    b.expect_none(0.3)


def test_cancel_sm_without_a_message_id_pipelined_behind_the_submit_sm_cancels_it(handset, esme) -> None:
    """In one write with the submit_sm before it (and one after it): it read only what was committed, was answered
    ESME_RCANCELFAIL before the submit_sm was even acknowledged, and the MT went out. A submit_sm with
    replace_if_present_flag 1 in its place did replace it. The submit_sm after it is not cancelled."""
    esme.send(
        encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"to cancel")
        + cancel_sm(3, A, dest=B)
        + encoded("submit_sm", 4, source_addr=A, destination_addr=B, short_message=b"after the cancel")
    )  # fmt: skip
    answers = answers_by_sequence(esme, 3)
    assert [answers[sequence][0] for sequence in (2, 3, 4)] == [ESME_ROK, ESME_ROK, ESME_ROK]
    assert handset(A).query(answers[2][1]).message_state == DELETED
    b = handset(B)
    assert text(b.expect()) == "after the cancel"
    b.expect_none(0.3)


def answers_by_sequence(link: RawLink, count: int) -> dict[int, tuple[int, str]]:
    """The next `count` responses, in whatever order they come: sequence_number -> (command_status, message_id)."""
    answers = {}
    for _ in range(count):
        data = link.read_frame()
        _length, _command, status, sequence = struct.unpack(">LLLL", data[:16])
        answers[sequence] = (status, data[16:].rstrip(b"\0").decode())
    return answers


@contextlib.contextmanager
def store_cannot_commit(gw, home: Path):
    """Inside: no writer process can start (the database's directory renamed away, the writer killed), so the store
    cannot commit; the directory is back after."""
    moved = home.with_name("moved")
    home.rename(moved)
    os.kill(gw.gateway.store.writer.pid, signal.SIGKILL)
    assert eventually(lambda: not gw.gateway.store.can_commit)
    try:
        yield
    finally:
        moved.rename(home)


def test_replace_sm_and_cancel_sm_of_an_mt_while_the_store_cannot_commit_are_answered_esme_rsyserr(
    make_gateway, tmp_path
) -> None:
    """A replace_sm got no answer at all (the store's error ended its task), and a cancel_sm ESME_RCANCELFAIL ("too
    late to cancel"), the MT still waiting; one without a message_id too, after waiting for a transaction of its own
    (30 s with the database locked) once its wait for the writes before it had failed. (No writer process can start
    here: the database's directory is gone.) A replace_sm pipelined behind a cancel_sm: ESME_RREPLACEFAIL, "too
    late to replace", the MT still waiting."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db")
    with RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"waits"))
        status, body = answer(link, 2)
        assert status == ESME_ROK
        message_id = body.rstrip(b"\0").decode()
        with store_cannot_commit(gw, home):
            link.send(replace_sm(3, A, message_id, b"new text"))
            assert answer(link, 3)[0] == ESME_RSYSERR
            link.send(cancel_sm(4, A, message_id))
            assert answer(link, 4)[0] == ESME_RSYSERR
            link.send(cancel_sm(5, A, dest=B))
            assert answer(link, 5)[0] == ESME_RSYSERR
            # One behind a cancellation failing to commit was refused as too late: it waits, and finds the MT as it was.
            link.send(cancel_sm(6, A, message_id) + replace_sm(7, A, message_id, b"new text"))
            assert answers_by_sequence(link, 2) == {6: (ESME_RSYSERR, ""), 7: (ESME_RSYSERR, "")}


def test_an_mt_whose_cancel_sm_could_not_be_committed_still_goes_out_and_still_counts(make_gateway, handset, tmp_path) -> None:
    """Queued on its subscriber's bind, it was taken back for the cancellation and, that failing, left in the store
    for the next bind of the subscriber, out of order; and it no longer counted in its subscriber's queue, so
    max_queued_per_subscriber let more in (each failed cancel_sm, sent again, once more)."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db", gateway={"window": 1})
    b = handset(B, gw=gw, address_range=B)
    b.answering = False  # the first deliver_sm held: the others wait queued on B's bind
    with RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        ids = []
        for n in range(3):
            link.send(encoded("submit_sm", 2 + n, source_addr=A, destination_addr=B, short_message=f"text {n}".encode()))
            status, body = answer(link, 2 + n)
            assert status == ESME_ROK
            ids.append(body.rstrip(b"\0").decode())
        assert text(b.expect()) == "text 0"
        with store_cannot_commit(gw, home):
            for sequence in (10, 11):  # sent again after ESME_RSYSERR
                link.send(cancel_sm(sequence, A, ids[1]))
                assert answer(link, sequence)[0] == ESME_RSYSERR
            assert gw.gateway.delivery.queued[gw.gateway.plan.normalise(B)] == 3
        assert eventually(lambda: gw.gateway.store.can_commit, timeout=10)
    b.answering = True
    b.answer_held()
    assert [text(p) for p in b.expect_many(2)] == ["text 1", "text 2"]  # in order, on the bind it is on


def test_an_mt_waiting_for_its_retry_whose_cancel_sm_or_replace_sm_could_not_be_committed_waits_for_it_still(
    make_gateway, handset, tmp_path
) -> None:
    """Refused for now by B (its retry due in an hour): a cancel_sm and a replace_sm that the store cannot commit are
    answered ESME_RSYSERR, and the MT is as it was. It went out again at once instead (its back-off lost, and the
    bind that refused it not avoided), and the log said "mt final deleted" of an MT that was then delivered."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db", gateway={"retry_backoff": [3600]})
    b = handset(B, gw=gw, address_range=B)
    b.answers.append(ESME_RX_T_APPN)
    message_id = handset(A, gw=gw).submit(B, "retry me").message_id.decode()
    assert text(b.expect()) == "retry me"
    assert eventually(lambda: message_id in gw.gateway.delivery._retry_timers)
    home.rename(tmp_path / "moved")
    os.kill(gw.gateway.store.writer.pid, signal.SIGKILL)
    assert eventually(lambda: not gw.gateway.store.can_commit)
    with structlog.testing.capture_logs() as logs, RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(cancel_sm(2, A, message_id))
        assert answer(link, 2)[0] == ESME_RSYSERR
        link.send(replace_sm(3, A, message_id, b"replaced"))
        assert answer(link, 3)[0] == ESME_RSYSERR
        b.expect_none(1.0)  # it waits for its retry, an hour away
    assert message_id in gw.gateway.delivery._retry_timers
    assert [line for line in logs if line["event"] == "mt final"] == []
    (tmp_path / "moved").rename(home)
    assert eventually(lambda: gw.gateway.store.can_commit, timeout=10)
    assert handset(A, gw=gw).query(message_id).message_state == ENROUTE
    with structlog.testing.capture_logs() as logs, RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(cancel_sm(2, A, message_id))
        assert answer(link, 2)[0] == ESME_ROK
    assert [(line["message_id"], line["status"]) for line in logs if line["event"] == "mt final"] == [(message_id, "deleted")]


def test_a_cancel_sm_or_replace_sm_whose_store_read_fails_is_answered_esme_rsyserr(make_gateway, handset) -> None:
    """A read of the store that failed (an I/O error) ended the task before the answer: never answered."""
    gw = make_gateway()
    message_id = handset(A, gw=gw).submit(B, "waiting").message_id.decode()  # B not bound: it waits

    async def unreadable(*_args: object) -> list:
        raise sqlite3.OperationalError("disk I/O error")

    gw.gateway.store.submitted_as = gw.gateway.store.undelivered_from = unreadable
    with structlog.testing.capture_logs() as logs, RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(cancel_sm(2, A, message_id) + replace_sm(3, A, message_id, b"new") + cancel_sm(4, A, "", B))
        assert [answer(link, n)[0] for n in (2, 3, 4)] == [ESME_RSYSERR] * 3
    assert [(line["event"], line["reason"]) for line in logs if line["log_level"] == "warning"] == [
        (event, "the store failed: OperationalError('disk I/O error')")
        for event in ("cancel_sm refused", "replace_sm refused", "cancel_sm refused")
    ]


def test_a_cancel_sm_of_ones_own_mo_is_logged_naming_its_sender_not_the_short_code(make_gateway, handset) -> None:
    """The line named the MO's destination (10086000, a short code) as msisdn, as for an MT's subscriber."""
    gw = make_gateway()
    a = handset(A, gw=gw)
    message_id = a.submit("10086000", "echo me").message_id.decode()
    a.expect()  # the echo: the MO is handled
    with structlog.testing.capture_logs() as logs, RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(cancel_sm(2, A, message_id))
        assert answer(link, 2)[0] == ESME_RCANCELFAIL
    [line] = [line for line in logs if line["event"] == "cancel_sm refused"]
    assert (line["message_id"], line["msisdn"]) == (message_id, A)


def test_only_the_sender_may_cancel_and_only_before_the_deliver_sm_goes_out(gateway, handset, esme) -> None:
    a = handset(A)
    waiting = a.submit(B, "waiting").message_id.decode()
    esme.send(cancel_sm(2, "8613800000009", waiting))  # the account's, but another of its numbers
    assert answer(esme, 2)[0] == consts.SMPP_ESME_RCANCELFAIL
    with RawLink(gateway.smpp_port) as other:
        other.bind("handset2", command="bind_transmitter")
        other.send(cancel_sm(2, A, waiting))  # another account
        assert answer(other, 2)[0] == consts.SMPP_ESME_RCANCELFAIL

    b = handset(B)
    b.answering = False  # the deliver_sm stays unanswered: on its way, too late to cancel
    assert text(b.expect()) == "waiting"
    esme.send(cancel_sm(3, A, waiting))
    assert answer(esme, 3)[0] == consts.SMPP_ESME_RCANCELFAIL
    b.answering = True
    b.answer_held()
    delivered = a.submit(B, "delivered").message_id.decode()
    assert text(b.expect()) == "delivered"
    esme.send(cancel_sm(4, A, delivered))
    assert answer(esme, 4)[0] == consts.SMPP_ESME_RCANCELFAIL


# ------------------------------------------------------------------ replace_sm
def test_replace_sm_rewrites_an_mt_before_it_goes_out(handset, esme) -> None:
    a = handset(A)
    message_id = a.submit(B, "meet at 5").message_id.decode()
    esme.send(replace_sm(2, A, message_id, b"meet at 6 instead", registered_delivery=1))
    assert answer(esme, 2) == (ESME_ROK, b"")
    esme.send(replace_sm(3, A, message_id, b"x", validity="not a time"))
    assert answer(esme, 3)[0] == ESME_RINVEXPIRY
    esme.send(replace_sm(5, A, message_id, b"x", validity="010101000000000+"))  # 2001: already past
    assert answer(esme, 5)[0] == ESME_RINVEXPIRY
    esme.send(replace_sm(6, A, message_id, b"x", validity="301231235959096+"))  # offset past 48 quarter hours
    assert answer(esme, 6)[0] == ESME_RINVEXPIRY

    b = handset(B)
    assert text(b.expect()) == "meet at 6 instead"
    receipt = a.expect(predicate=is_receipt)  # registered_delivery was replaced too
    assert receipt_fields(receipt)["id"] == message_id and receipt_fields(receipt)["stat"] == "DELIVRD"
    esme.send(replace_sm(4, A, message_id, b"too late"))
    assert answer(esme, 4)[0] == consts.SMPP_ESME_RREPLACEFAIL
    b.expect_none(0.3)


def test_replace_sm_of_an_mt_queued_on_a_bind_keeps_its_place(make_gateway, handset) -> None:
    """Replaced while it waited on its subscriber's bind (the window full), it went out after the newer MTs to that
    subscriber; replaced while parked in the store, it kept its place. README: in order per subscriber."""
    gw = make_gateway(gateway={"window": 1})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    ids = [a.submit(B, f"m{i}").message_id.decode() for i in range(1, 5)]
    assert text(b.expect()) == "m1"  # unanswered: m2-m4 wait on the bind
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(replace_sm(2, A, ids[1], b"m2 replaced"))
        assert answer(esme, 2) == (ESME_ROK, b"")
    b.answering = True
    b.answer_held()
    assert [text(b.expect()) for _ in range(3)] == ["m2 replaced", "m3", "m4"]


def test_replace_sm_of_a_queued_mt_keeps_its_place_when_the_window_opens_while_it_commits(make_gateway, handset, tmp_path) -> None:
    """Taken off the bind's queue while its replacement committed, it was overtaken by the newer MTs to its
    subscriber when the window opened meanwhile: B got m3, m4, then "m2 replaced"."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"window": 1})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    ids = [a.submit(B, f"m{i}").message_id.decode() for i in range(1, 5)]
    assert text(b.expect()) == "m1"  # unanswered: m2-m4 wait on the bind
    # The replacement's write issued is what the window waits for: not any batch of the writer's (the scheduled
    # jobs' first write, due about now, counted as well and let the window open before the replace_sm was handled).
    store, issued = gw.gateway.store, threading.Event()
    replace_mts = store.replace_mts

    def replacing(messages):
        issued.set()
        return replace_mts(messages)

    store.replace_mts = replacing
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        with RawLink(gw.smpp_port) as esme:
            esme.bind("handset", command="bind_transmitter")
            lock.execute("BEGIN IMMEDIATE")  # the replacement's commit waits for this lock
            esme.send(replace_sm(2, A, ids[1], b"m2 replaced"))
            assert issued.wait(10), "the replacement was never written"
            b.answering = True
            b.answer_held()  # the window opens while the replacement commits
            b.expect_none(0.3)
            lock.execute("ROLLBACK")
            assert answer(esme, 2) == (ESME_ROK, b"")
    finally:
        lock.close()
    assert [text(b.expect()) for _ in range(3)] == ["m2 replaced", "m3", "m4"]


def test_replace_sm_keeps_an_mts_place_behind_a_retry_of_another_subscribers(make_gateway, handset) -> None:
    """The bind's queue is in no order once a retry joins its tail: the replaced MT, older than that retry, was
    appended behind the newer MT to its own subscriber."""
    gw = make_gateway(gateway={"window": 2, "response_timeout": 60, "retry_backoff": [0.2]})
    a = handset(A, gw=gw)
    receiver = handset("", system_id="handset2", gw=gw)  # one bind for the account's every subscriber
    receiver.answers.append(ESME_RX_T_APPN)  # the first is retried
    assert a.submit(B2, "retried").status == ESME_ROK
    assert text(receiver.expect()) == "retried"
    receiver.answering = False
    for held in ("held 1", "held 2"):  # the window full
        assert a.submit(B2, held).status == ESME_ROK
    assert [text(receiver.expect()) for _ in range(2)] == ["held 1", "held 2"]
    first, _second = (a.submit(B, f"m{i}").message_id.decode() for i in (1, 2))
    conn = next(c for c in gw.gateway.connections if c.system_id == "handset2")
    assert eventually(lambda: [m.short_message for m in conn.pending] == [b"m1", b"m2", b"retried"])
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(replace_sm(2, A, first, b"m1 replaced"))
        assert answer(esme, 2) == (ESME_ROK, b"")
    receiver.answering = True
    receiver.answer_held()
    got = [text(receiver.expect()) for _ in range(3)]
    assert [t for t in got if t.startswith("m")] == ["m1 replaced", "m2"]


def test_replace_sm_of_an_mt_waiting_for_its_retry_keeps_its_back_off_and_avoids_the_bind_that_refused_it(
    make_gateway, handset
) -> None:
    """Refused for now by the bind whose address_range names B, its retry 1.5 s away on B's other bind: a replace_sm
    sent the replacement at once, to the bind that had refused it (a sender replacing every 0.5 s a text a handset
    kept refusing had it sent every 0.5 s, not at the back-off's pace)."""
    gw = make_gateway(gateway={"retry_backoff": [1.5]})
    refusing, other = handset(B, gw=gw, address_range=B), handset(B, gw=gw)
    refusing.answers.append(ESME_RX_T_APPN)
    message_id = handset(A, gw=gw).submit(B, "the first text").message_id.decode()
    assert text(refusing.expect()) == "the first text"
    assert eventually(lambda: message_id in gw.gateway.delivery._retry_timers)
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(replace_sm(2, A, message_id, b"the replacement"))
        assert answer(esme, 2) == (ESME_ROK, b"")
    other.expect_none(0.8)  # its back-off stands
    assert text(other.expect(timeout=5)) == "the replacement"
    refusing.expect_none(0.5)


def test_replace_sm_giving_an_mt_waiting_for_its_retry_a_longer_validity_holds_it_to_the_new_one(make_gateway, handset) -> None:
    """Refused for now (ESME_RX_T_APPN), then a replace_sm that moved its validity from 10 minutes to 2 hours: past the
    10 minutes it still waits for its retry, and it expires at the end of the 2 hours."""
    clock = SimulatedClock(freeze=True)
    gw = make_gateway(clock=clock, gateway={"retry_backoff": [3600]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(ESME_RX_T_APPN)
    resp = a.submit(B, "for 10 minutes", registered_delivery=1, validity_period="000000001000000R")
    message_id = resp.message_id.decode()
    assert text(b.expect()) == "for 10 minutes"  # refused: its retry is due in an hour
    assert eventually(lambda: message_id in gw.gateway.delivery._retry_timers)
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(replace_sm(2, A, message_id, b"for 2 hours", registered_delivery=1, validity="000000020000000R"))
        assert answer(esme, 2) == (ESME_ROK, b"")
    assert message_id in gw.gateway.delivery._retry_timers  # replaced, it waits for its retry still
    clock.advance(700)  # past the old validity
    a.expect_none(1.5, predicate=is_receipt)  # three sweeps
    assert a.query(message_id).message_state == ENROUTE
    clock.advance(7200)  # past the new one
    receipt = receipt_fields(a.expect(timeout=10, predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (message_id, "EXPIRED")


def test_replace_sm_of_a_submit_multi_sends_no_destination_twice(handset, esme) -> None:
    """Its destinations were replaced one commit after another, each as read before the first: one delivered
    meanwhile was made undelivered again, with the new text, and went out a second time (100 of 100 did). Those
    on their way out keep the old text; those still waiting get the new one."""
    a = handset(A)
    served = [f"86137001{n:05d}" for n in range(100)]  # a bind takes them: each deliver_sm unanswered (window 100)
    waiting = [f"86137002{n:05d}" for n in range(100)]  # no bind serves them: they wait in the store
    receiver = handset(bind="rx", system_id="handset2", address_range="^86137001")
    receiver.answering = False
    esme.send(submit_multi(2, A, waiting + served, b"old text"))
    status, body = answer(esme, 2)
    message_id, refused = multi_resp(body)
    assert (status, refused) == (ESME_ROK, [])
    assert {text(pdu) for pdu in receiver.expect_many(100)} == {"old text"}
    esme.send(replace_sm(3, A, message_id, b"new text"))
    receiver.answer_held()  # acknowledged while the replacement is under way
    assert answer(esme, 3) == (ESME_ROK, b"")
    receiver.answering = True
    receiver.expect_none(1.0)
    assert a.query(f"{message_id}/101").message_state == DELIVERED  # the first served
    late = handset(bind="rx", system_id="handset2", address_range="^86137002")
    got = late.expect_many(100, timeout=10)
    assert {text(pdu) for pdu in got} == {"new text"} and {pdu.destination_addr.decode() for pdu in got} == set(waiting)


@pytest.mark.parametrize(("second", "goes_out"), [
    (lambda message_id: cancel_sm(3, A, message_id), None),
    (lambda message_id: replace_sm(3, A, message_id, b"meet at 7", registered_delivery=1), "meet at 7"),
], ids=["cancel_sm", "replace_sm"])  # fmt: skip
def test_a_cancel_sm_or_replace_sm_pipelined_behind_a_replace_sm_acts_on_the_replaced_mt(handset, esme, second, goes_out) -> None:
    """In hand while the replacement committed, the MT was taken for one gone out: the second was refused
    (ESME_RCANCELFAIL, ESME_RREPLACEFAIL), "too late", and the MT went out with the first one's text."""
    a = handset(A)
    message_id = a.submit(B, "meet at 5", registered_delivery=1).message_id.decode()
    esme.send(replace_sm(2, A, message_id, b"meet at 6", registered_delivery=1) + second(message_id))  # one write
    assert answers_by_sequence(esme, 2) == {2: (ESME_ROK, ""), 3: (ESME_ROK, "")}
    b = handset(B)
    if goes_out is None:
        receipt = receipt_fields(a.expect(predicate=is_receipt))
        assert (receipt["stat"], receipt["text"]) == ("DELETED", "meet at 6")
    else:
        assert text(b.expect()) == goes_out
    b.expect_none(0.3)


def test_a_cancel_sm_of_one_destination_pipelined_behind_a_replace_sm_of_its_submit_multi_stands(handset, esme) -> None:
    """The replace_sm wrote back, as it had read it, the destination the cancel_sm deleted meanwhile: answered
    ESME_ROK, its stat:DELETED receipt sent, and the subscriber got the new text all the same."""
    a = handset(A)
    destinations = [f"86137003{n:05d}" for n in range(200)]  # no bind serves them: they wait in the store
    esme.send(submit_multi(2, A, destinations, b"old text"))
    message_id, refused = multi_resp(answer(esme, 2)[1])
    assert refused == []
    esme.send(replace_sm(3, A, message_id, b"new text") + cancel_sm(4, A, message_id, dest=destinations[150]))
    assert answers_by_sequence(esme, 2) == {3: (ESME_ROK, ""), 4: (ESME_ROK, "")}
    assert a.query(f"{message_id}/151").message_state == DELETED
    b = handset(bind="rx", system_id="handset2", address_range="^86137003")
    got = b.expect_many(199, timeout=10)
    assert {text(pdu) for pdu in got} == {"new text"}
    assert {pdu.destination_addr.decode() for pdu in got} == set(destinations) - {destinations[150]}
    b.expect_none(0.3)


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"registered_delivery": 0x23}, consts.SMPP_ESME_RINVREGDLVFLG),  # bits 7-5 are reserved
        ({"registered_delivery": 0xFF}, consts.SMPP_ESME_RINVREGDLVFLG),
        ({"registered_delivery": 0x03}, consts.SMPP_ESME_RINVREGDLVFLG),  # SMSC receipt value 3 is reserved
        ({"source_addr_ton": 9}, consts.SMPP_ESME_RINVSRCTON),
        ({"source_addr_npi": 7}, consts.SMPP_ESME_RINVSRCNPI),
        ({"tlvs": tlv(0x0424, b"payload")}, consts.SMPP_ESME_ROPTPARNOTALLWD),  # message_payload beside short_message
        ({"tlvs": tlv(0x0427, b"\x02")}, consts.SMPP_ESME_ROPTPARNOTALLWD),  # message_state: a receipt's
    ],
    ids=["registered_delivery_0x23", "registered_delivery_0xFF", "registered_delivery_3", "source_addr_ton",
         "source_addr_npi", "message_payload_and_short_message", "message_state"],
)  # fmt: skip
def test_replace_sm_is_refused_what_submit_sm_is_and_the_mt_goes_out_unchanged(handset, esme, fields, status) -> None:
    a = handset(A)
    message_id = a.submit(B, "original", registered_delivery=1).message_id.decode()  # waits for B to bind
    esme.send(replace_sm(2, A, message_id, b"replaced", **fields))
    assert answer(esme, 2)[0] == status
    assert text(handset(B).expect()) == "original"
    receipt = receipt_fields(a.expect(predicate=is_receipt))  # registered_delivery 1 still stands
    assert (receipt["id"], receipt["stat"]) == (message_id, "DELIVRD")


def test_replace_sm_is_charged_to_the_throughput_the_sms_its_new_text_adds(make_gateway, handset) -> None:
    """replace_sm was charged nothing: ten 1-SMS MTs, the account's allowance spent, were each replaced by a text
    of 255 SMS and went out as 2,550 SMS in a second on an account allowed 10. The SMS the new text fills beyond the
    old one's are charged; past the allowance it is refused ESME_RTHROTTLED, as a submit_sm of that text is, and
    the MT goes out as it was."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 5}])
    four_sms, five_sms, longest = b"a" * 600, b"b" * 700, b"c" * 153 * 255  # GSM: 153 septets a part
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"one SMS"))  # 4 left
        status, body = answer(esme, 2)
        assert status == ESME_ROK
        message_id = body.rstrip(b"\0").decode()
        statuses = []
        for sequence, new_text in enumerate([four_sms, four_sms, five_sms, longest], 3):  # adds 3, 0, 1, 250
            esme.send(replace_sm(sequence, A, message_id, b"", tlvs=tlv(0x0424, new_text)))  # message_payload
            statuses.append(answer(esme, sequence)[0])
        assert statuses == [ESME_ROK, ESME_ROK, ESME_ROK, ESME_RTHROTTLED]
    b = handset(B, gw=gw)
    assert text(b.expect()) == five_sms.decode()
    b.expect_none(0.3)


def test_replace_sm_of_a_submit_multi_is_charged_at_each_destination_it_may_still_change(make_gateway, handset) -> None:
    """A submit_multi's destinations are each charged what the new text adds, those delivered already not (they
    keep their text): with 38 segments left, a text adding 38 SMS replaces the one destination still waiting."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 100}])
    served, waiting = ["8613700100001", "8613700100002"], "8613700200001"
    receiver = handset(bind="rx", system_id="handset2", address_range="^86137001", gw=gw)
    a = handset(A, gw=gw)
    assert a.submit("8613700200002", b"", message_payload=b"x" * 153 * 59).status == ESME_ROK  # 59 SMS: 41 left
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(submit_multi(2, A, [*served, waiting], b"old text"))  # 38 left
        status, body = answer(esme, 2)
        message_id, refused = multi_resp(body)
        assert (status, refused) == (ESME_ROK, [])
        assert {text(pdu) for pdu in receiver.expect_many(2)} == {"old text"}
        assert eventually(lambda: [a.query(i).message_state for i in (message_id, f"{message_id}/2")] == [DELIVERED] * 2)
        new_text = b"n" * 153 * 39  # 38 SMS more than the old text
        esme.send(replace_sm(3, A, message_id, b"", tlvs=tlv(0x0424, new_text)))
        assert answer(esme, 3)[0] == ESME_ROK
        esme.send(replace_sm(4, A, message_id, b"", tlvs=tlv(0x0424, b"c" * 153 * 255)))
        assert answer(esme, 4)[0] == ESME_RTHROTTLED
    assert text(handset(waiting, bind="rx", system_id="handset2", address_range=waiting, gw=gw).expect()) == new_text.decode()
    receiver.expect_none(0.3)


def test_replace_sm_keeps_the_protocol_id_and_priority_flag_it_cannot_change(handset, esme) -> None:
    """4.10.1 has neither field: a replaced SIM data download (protocol_id 0x7F) is still one."""
    a = handset(A)
    message_id = a.submit(B, "v1", protocol_id=0x7F, priority_flag=2).message_id.decode()
    esme.send(replace_sm(2, A, message_id, b"v2"))
    assert answer(esme, 2) == (ESME_ROK, b"")
    got = handset(B).expect()
    assert (got.protocol_id, got.priority_flag, text(got)) == (0x7F, 2, "v2")


def test_replace_sm_bringing_a_scheduled_sp_mt_forward_checks_the_subscription_again(gateway, handset) -> None:
    now = gateway.gateway.clock.now()
    subscription = Subscription("sub-1", B, "sina-news", "active", now - 3600, "sms", "mo-1", now)
    gateway.call(gateway.gateway.services.commit(Outcome().put(subscription)))
    sina = handset(SINA, system_id="sina")
    later = sina.submit(B, "tomorrow's news", schedule_delivery_time="000001000000000R")  # a day ahead
    assert later.status == ESME_ROK
    gateway.call(gateway.gateway.services.unsubscribe(B, [subscription.id], "web"))
    with RawLink(gateway.smpp_port) as link:
        link.bind("sina", command="bind_transmitter")
        past = time.strftime("%y%m%d%H%M%S", time.gmtime(now - 3600)) + "000+"  # due at once
        link.send(replace_sm(2, SINA, later.message_id.decode(), b"news now", registered_delivery=1, schedule=past))
        assert answer(link, 2) == (ESME_ROK, b"")
    receipt = receipt_fields(sina.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"], receipt["err"]) == (later.message_id.decode(), "REJECTD", "402")
    handset(B).expect_none(0.3, lambda p: p.source_addr == SINA.encode())  # unsubscribed: no SP content


def test_a_submit_sm_with_replace_if_present_flag_replaces_what_still_waits(handset) -> None:
    a = handset(A)
    first = a.submit(B, "score 0-0", service_type="SCORE").message_id
    assert a.submit(B, "news", service_type="NEWS").status == ESME_ROK
    second = a.submit(B, "score 1-0", service_type="SCORE", replace_if_present_flag=1).message_id
    assert a.query(first).message_state == DELETED  # answered once the cancellation is committed (it was before)
    assert a.submit(B, "score 2-0", service_type="SCORE", replace_if_present_flag=1).status == ESME_ROK
    assert a.query(second).message_state == DELETED
    b = handset(B)
    assert [text(p) for p in b.expect_many(2)] == ["news", "score 2-0"]
    b.expect_none(0.3)


def test_a_submit_sm_with_replace_if_present_flag_whose_store_read_fails_is_answered_and_logged(make_gateway, handset) -> None:
    """Answered once what it replaces is cancelled: a read of the store that failed (an I/O error) ended the task
    before the answer, and the submission was never answered. What it could not cancel goes out."""
    gw = make_gateway()
    a = handset(A, gw=gw)
    assert a.submit(B, "score 0-0", service_type="SCORE").status == ESME_ROK  # B not bound: it waits

    async def unreadable(*_args: object) -> list:
        raise sqlite3.OperationalError("disk I/O error")

    gw.gateway.store.undelivered_from = unreadable
    with structlog.testing.capture_logs() as logs:
        assert a.submit(B, "score 1-0", service_type="SCORE", replace_if_present_flag=1).status == ESME_ROK
    assert [(line["event"], line["reason"]) for line in logs if line["log_level"] == "warning"] == [
        ("replace if present failed", "the store failed: OperationalError('disk I/O error')")
    ]
    del gw.gateway.store.undelivered_from  # readable again
    assert [text(p) for p in handset(B, gw=gw).expect_many(2)] == ["score 0-0", "score 1-0"]


def test_an_mt_with_replace_if_present_flag_is_not_overtaken_by_the_next_one_to_that_subscriber(handset, esme) -> None:
    """A version that answered it only once what it replaced was cancelled (so that query_sm said DELETED of those
    from its answer on) handed it to delivery only then: an MT pipelined behind it to the same subscriber went out
    first, a bind appearing meanwhile could send it from the store and then again, and its receipt could come
    before its answer. Delivered at its commit, as any MT (and answered once what it replaces is cancelled), it
    keeps its place."""
    b = handset(B)
    for n in range(3):
        esme.send(
            encoded("submit_sm", 10 + 2 * n, source_addr=A, destination_addr=B, short_message=f"{n} first".encode(),
                    service_type="SCORE", replace_if_present_flag=1)
            + encoded("submit_sm", 11 + 2 * n, source_addr=A, destination_addr=B, short_message=f"{n} second".encode(),
                      service_type="NEWS")
        )  # fmt: skip
        answers = [struct.unpack(">LLLL", esme.read_frame()[:16])[2:] for _ in range(2)]  # (status, sequence)
        assert sorted(answers) == [(ESME_ROK, 10 + 2 * n), (ESME_ROK, 11 + 2 * n)]  # in either order
        assert [text(p) for p in b.expect_many(2)] == [f"{n} first", f"{n} second"]
    b.expect_none(0.3)


def test_the_receipt_of_an_mt_with_replace_if_present_flag_never_comes_before_its_answer(make_gateway, handset, tmp_path) -> None:
    """It goes out at its commit and is answered once what it replaces is cancelled: a receipt due in between waits
    for the answer. Here the cancellations of the second of two pipelined ones wait for the first's (of the same MT:
    Amendments._settled), held by a lock on the database until the subscriber has answered the second: its receipt
    came before its submit_sm_resp, on the bind it was sent on."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    b = handset(B, gw=gw)
    store, lock = gw.gateway.store, sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    mark_final, mark_delivered = store.mark_final, store.mark_delivered
    locked, delivered = threading.Event(), threading.Event()
    old = ""

    def marking_final(message_id, *args, **kwargs):
        if message_id == old and not locked.is_set():  # the first cancellation of `old` commits once the test says
            lock.execute("BEGIN IMMEDIATE")
            locked.set()
        return mark_final(message_id, *args, **kwargs)

    def marking_delivered(*args, **kwargs):
        delivered.set()
        return mark_delivered(*args, **kwargs)

    def score(sequence: int, body: bytes, **fields) -> bytes:
        return encoded("submit_sm", sequence, source_addr=A, destination_addr=B, short_message=body, service_type="SCORE", **fields)

    later = "000001000000000R"  # a day ahead: it waits, undelivered
    try:
        with RawLink(gw.smpp_port) as esme:
            esme.bind("handset")  # a transceiver: the receipts come to the bind the submissions are answered on
            esme.send(score(2, b"0-0", schedule_delivery_time=later))
            status, body = answer(esme, 2)
            assert status == ESME_ROK
            old = body.rstrip(b"\0").decode()
            store.mark_final, store.mark_delivered = marking_final, marking_delivered
            esme.send(score(3, b"1-0", schedule_delivery_time=later, replace_if_present_flag=1)
                      + score(4, b"2-0", replace_if_present_flag=1, registered_delivery=1))  # fmt: skip
            assert locked.wait(10), "the first never cancelled what it replaces"
            assert text(b.expect()) == "2-0"  # out at its commit; the subscriber answers it
            assert delivered.wait(10), "the subscriber's answer was never written"
            lock.execute("ROLLBACK")
            arrived = []  # the answers to 3 and 4 (sequence numbers) and the receipt of "2-0", in the order they came
            while len(arrived) < 3:
                data = esme.read_frame()
                assert data is not None, "the gateway closed the connection"
                command_id, _status, sequence = struct.unpack(">LLL", data[4:16])
                arrived.append("receipt" if command_id == DELIVER_SM else sequence)
            assert arrived.index(4) < arrived.index("receipt"), arrived
    finally:
        lock.close()
    b.expect_none(0.3)


# ---------------------------------------------------------------- submit_multi
def test_submit_multi_reaches_each_destination_and_lists_the_refused_ones(handset, esme) -> None:
    a, b = handset(A), handset(B)
    esme.send(submit_multi(2, A, [B, B2, "abc", "dl:friends"], b"to all", registered_delivery=1))
    status, body = answer(esme, 2)
    assert status == ESME_ROK
    message_id, refused = multi_resp(body)
    assert refused == [("abc", ESME_RINVDSTADR), ("friends", consts.SMPP_ESME_RINVDLNAME)]
    got = b.expect_many(2)
    assert sorted((p.destination_addr.decode(), text(p)) for p in got) == [(B, "to all"), (B2, "to all")]
    receipts = [receipt_fields(p) for p in a.expect_many(2)]
    assert [r["id"] for r in receipts] == [message_id, message_id]  # the id the ESME was given, for each destination
    assert {r["stat"] for r in receipts} == {"DELIVRD"}
    assert a.query(message_id).message_state == 2  # DELIVERED

    esme.send(submit_multi(2, A, [B, B2, "abc", "dl:friends"], b"to all", registered_delivery=1))  # retransmitted
    status, body = answer(esme, 2)
    assert (status, multi_resp(body)[0]) == (ESME_ROK, message_id)
    b.expect_none(0.3)  # not delivered twice


def test_the_lines_about_the_refused_destinations_of_a_submit_multi_name_the_id_it_was_answered_with(handset, esme) -> None:
    """A destination refused while others were accepted was logged 'submission rejected' without the id the
    submit_multi_resp gave: nothing tied the line to the message. Refused everywhere, it was given no id: none."""
    b = handset(B)
    with structlog.testing.capture_logs() as logs:
        esme.send(submit_multi(2, A, ["dl:friends", B, "abc"], b"to some"))
        status, body = answer(esme, 2)
        assert status == ESME_ROK
        message_id, refused = multi_resp(body)
        assert [dest for dest, _status in refused] == ["friends", "abc"]
        esme.send(submit_multi(3, A, ["abc", "dl:friends"], b"to none"))
        status, body = answer(esme, 3)
        assert status != ESME_ROK and multi_resp(body)[0] == ""  # no id given
    assert text(b.expect()) == "to some"
    lines = [line for line in logs if line["event"] == "submission rejected"]
    assert [(line.get("dest"), line.get("dl_name"), line.get("message_id")) for line in lines] == [
        (None, "friends", message_id), ("abc", None, message_id), ("abc", None, None), (None, "friends", None)]


def test_a_submit_multi_resent_after_a_temporary_refusal_answers_the_id_its_new_destination_is_stored_and_receipted_under(
    make_gateway, handset
) -> None:
    """Resent as the README advises after B was refused ESME_RMSGQFUL: B was stored numbered from the id of B2's
    copy (not stored again), an id the client was never given, and B's receipt named it."""
    gw = make_gateway(gateway={"max_queued_per_subscriber": 1})
    a = handset(A, gw=gw)
    assert a.submit(B, "fills B's queue").status == ESME_ROK
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(submit_multi(2, A, [B2, B], b"to both", registered_delivery=1))
        status, body = answer(esme, 2)
        first_id, refused = multi_resp(body)
        assert (status, refused) == (ESME_ROK, [(B, ESME_RMSGQFUL)])
        b = handset(B, gw=gw, address_range=B)  # (B2 stays off line)
        assert [text(p) for p in b.expect_many(1)] == ["fills B's queue"]
        esme.send(submit_multi(2, A, [B2, B], b"to both", registered_delivery=1))  # the same PDU again
        status, body = answer(esme, 2)
        resent_id, refused = multi_resp(body)
        assert (status, refused) == (ESME_ROK, [])
        assert resent_id != first_id  # B is stored now, under the id this answer gives
        assert text(b.expect()) == "to both"
        assert receipt_fields(a.expect(predicate=is_receipt))["id"] == resent_id
        assert a.query(resent_id).message_state == 2  # DELIVERED
        assert a.query(first_id).message_state == 1  # B2's, from the first answer: still waiting (B2 off line)


def test_a_resent_submit_multi_gets_its_throttled_destinations_through(make_gateway, handset) -> None:
    """The destinations a resend repeats were charged to the account's throughput again, though they are copies
    (nothing on the air): with throughput 3, the two of five refused ESME_RTHROTTLED were refused at every resend."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 3}])
    dests = [f"86137000001{n:02d}" for n in range(5)]
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(submit_multi(2, A, dests, b"five"))
        status, body = answer(esme, 2)
        assert (status, [d for d, _ in multi_resp(body)[1]]) == (ESME_ROK, dests[3:])

        assert eventually(lambda: _none_refused(esme, submit_multi(2, A, dests, b"five")), 5)
    b = handset(dests[4], gw=gw, address_range=dests[4])
    assert [text(p) for p in b.expect_many(1)] == ["five"]
    b.expect_none(0.3)


@pytest.mark.parametrize("new_bind", [False, True], ids=["same bind", "after a reconnect"])
def test_a_resent_submit_sm_is_answered_its_id_though_the_queue_it_fills_is_full(make_gateway, handset, new_bind) -> None:
    """The resend was refused ESME_RMSGQFUL (no id) while its original waited for B under an id the client never
    got; as a submit_multi's copies, it is checked as a copy before the subscriber's queue."""
    gw = make_gateway(gateway={"max_queued_per_subscriber": 1})
    a = handset(A, gw=gw)
    pdu = a.make("submit_sm", B, "news 1", user_message_reference=4711)
    first = a.request(pdu)
    assert first.status == ESME_ROK
    if new_bind:
        a.close()
        a = handset(A, gw=gw)
        pdu = a.make("submit_sm", B, "news 1", user_message_reference=4711)
    again = a.request(pdu)
    assert (again.status, again.message_id) == (ESME_ROK, first.message_id)
    b = handset(B, gw=gw, address_range=B)
    assert [text(p) for p in b.expect_many(1)] == ["news 1"]
    b.expect_none(0.3)


def test_a_resent_submit_sm_is_not_charged_to_the_throughput_again(make_gateway, handset) -> None:
    """With the account's throughput taken, the resend of an accepted submit_sm was ESME_RTHROTTLED, not its id."""
    gw = make_gateway(accounts=[{"system_id": "handset", "throughput": 1}])
    a = handset(A, gw=gw)
    # 6 segments: a full bucket lets it through and owes 5 s (accounts.TokenBucket), ample for what follows
    pdu = a.make("submit_sm", B, b"", message_payload=b"x" * 800, user_message_reference=4711)
    first = a.request(pdu)
    assert first.status == ESME_ROK
    assert a.submit(B, "one too many").status == ESME_RTHROTTLED
    again = a.request(pdu)
    assert (again.status, again.message_id) == (ESME_ROK, first.message_id)


def test_a_resent_submit_sm_is_answered_its_id_though_its_recipient_reported_the_sender_since(gateway, handset) -> None:
    """A block begun since the original (A reported B as a spammer) refused its resend, which was answered no id
    for a message A had; B's new submissions, one with its own user_message_reference too, are refused."""
    a, b = phone(handset, A), handset(B)
    pdu = b.make("submit_sm", A, "offer", user_message_reference=4711)
    first = b.request(pdu)
    assert first.status == ESME_ROK
    report(a, "13700000001*" + SPAM, gateway)
    assert b.submit(A, "another offer", user_message_reference=4712).status == SMSGW_RBLOCKEDBYRECIPIENT
    again = b.request(pdu)
    assert (again.status, again.message_id) == (ESME_ROK, first.message_id)


def test_a_new_submit_sm_with_its_own_user_message_reference_is_refused_on_a_full_queue_and_throttled(
    make_gateway, handset
) -> None:
    """Only a copy of a submission accepted before skips its subscriber's queue and the throughput: a new one that
    carries a user_message_reference (most of an SP's do) is refused as one without it is."""
    gw = make_gateway(gateway={"max_queued_per_subscriber": 1}, accounts=[{"system_id": "handset", "throughput": 1}])
    a = handset(A, gw=gw)
    # 6 segments: a full bucket lets it through and owes 5 s (accounts.TokenBucket), ample for what follows
    first = a.request(a.make("submit_sm", B, b"", message_payload=b"x" * 800, user_message_reference=1))
    assert first.status == ESME_ROK
    assert a.submit(B, "news", user_message_reference=2).status == ESME_RMSGQFUL  # (B is off line)
    assert a.submit(B2, "news", user_message_reference=3).status == ESME_RTHROTTLED


def _none_refused(esme: RawLink, pdu: bytes) -> bool:
    esme.send(pdu)
    status, body = answer(esme, 2)
    return status == ESME_ROK and multi_resp(body)[1] == []


def test_a_submit_multi_with_replace_if_present_flag_replaces_what_still_waits_at_each_destination(handset, esme) -> None:
    """As a submit_sm per destination would: the flag was ignored, and both versions reached each subscriber."""
    a = handset(A)
    older = [a.submit(to, "score 0-0", service_type="SCORE").message_id for to in (B, B2)]
    assert a.submit(B, "news", service_type="NEWS").status == ESME_ROK  # another service_type: not replaced
    esme.send(submit_multi(2, A, [B, B2], b"score 1-0", service_type="SCORE", replace_if_present_flag=1))
    assert answer(esme, 2)[0] == ESME_ROK
    assert [a.query(i).message_state for i in older] == [DELETED, DELETED]  # answered once that is committed
    b = handset(B)
    assert sorted((p.destination_addr.decode(), text(p)) for p in b.expect_many(3)) == [
        (B, "news"), (B, "score 1-0"), (B2, "score 1-0")
    ]  # fmt: skip
    b.expect_none(0.3)


def test_a_submit_multi_in_transaction_mode_is_refused_at_every_destination(handset, esme) -> None:
    """As a submit_sm in transaction mode is (tests/e2e/test_field_rules.py): its answer cannot say whether it was delivered."""
    esme.send(submit_multi(2, A, [B, B2], b"transaction mode", esm_class=0x02))
    status, body = answer(esme, 2)
    assert (status, multi_resp(body)) == (ESME_RINVESMCLASS, ("", [(B, ESME_RINVESMCLASS), (B2, ESME_RINVESMCLASS)]))
    esme.send(submit_multi(3, A, [B], b"default mode"))
    assert answer(esme, 3)[0] == ESME_ROK
    assert text(handset(B).expect()) == "default mode"  # the refused one never came before it


def test_submit_multi_naming_a_subscriber_twice_sends_one_copy_and_numbers_the_others_on(gateway, handset, esme) -> None:
    b = handset(B)
    esme.send(submit_multi(2, A, [B, "+" + B, B2, B[2:]], b"once each"))  # B three times, written three ways
    status, body = answer(esme, 2)
    message_id, refused = multi_resp(body)
    assert (status, refused) == (ESME_ROK, [])
    assert sorted(p.destination_addr.decode() for p in b.expect_many(2)) == [B, B2]
    b.expect_none(0.3)
    second = gateway.call(gateway.gateway.store.get(f"{message_id}/2"))
    assert second is not None and second.dest_addr == B2  # the n-th destination it stored is <id>/<n>
    assert gateway.call(gateway.gateway.store.get(f"{message_id}/3")) is None


def test_submit_multi_naming_a_subscriber_in_a_refused_form_then_a_good_one_sends_the_good_ones_copy(handset, esme) -> None:
    """B first with TON 9 (refused: ESME_RINVDSTTON), then as it should be: the refused entry marked B as named, and
    the good one was skipped as its repeat, so B got nothing while the answer listed only the refused entry."""
    b = handset(B)
    esme.send(submit_multi(2, A, [(9, 0, B), B, (1, 19, B2), B2], b"despite the typo"))
    status, body = answer(esme, 2)
    assert (status, unsuccess_smes(body)[1]) == (ESME_ROK, [(9, 0, B, consts.SMPP_ESME_RINVDSTTON),
                                                            (1, 19, B2, consts.SMPP_ESME_RINVDSTNPI)])  # fmt: skip
    assert sorted(p.destination_addr.decode() for p in b.expect_many(2)) == [B, B2]
    b.expect_none(0.3)


def test_submit_multi_destinations_the_store_could_not_take_are_listed_as_written(make_gateway, tmp_path) -> None:
    """Every other refusal lists a destination as the client wrote it (SMPP 3.4 4.5.2: its TON, NPI and address), so
    it can resend just those; those the store could not commit were listed normalised, TON and NPI 0."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db")
    with RawLink(gw.smpp_port) as link, store_cannot_commit(gw, home):
        link.bind("handset", command="bind_transmitter")
        link.send(submit_multi(2, A, [(0, 1, B[2:]), (1, 1, "+" + B2)], b"not now"))
        status, body = answer(link, 2)
    assert (status, unsuccess_smes(body)) == (ESME_RSYSERR, ("", [(0, 1, B[2:], ESME_RSYSERR), (1, 1, "+" + B2, ESME_RSYSERR)]))


def test_a_submission_the_store_cannot_commit_is_answered_esme_rsyserr_logged_and_never_sent(
    make_gateway, handset, tmp_path
) -> None:
    """A submit_sm, and each destination of a submit_multi, that the store cannot commit: answered ESME_RSYSERR with
    no message_id (nothing taken: the client sends it again), a `store write failed` line for each naming its
    account and subscriber, and nothing sent once the store commits again (coverage review: no test ran it)."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db")
    with structlog.testing.capture_logs() as logs, RawLink(gw.smpp_port) as link, store_cannot_commit(gw, home):
        link.bind("handset", command="bind_transmitter")
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"not now"))
        assert answer(link, 2) == (ESME_RSYSERR, b"")  # no body: SMPP 3.4 4.4.2
        link.send(submit_multi(3, A, [B, B2], b"nor now"))
        status, body = answer(link, 3)
        assert (status, multi_resp(body)) == (ESME_RSYSERR, ("", [(B, ESME_RSYSERR), (B2, ESME_RSYSERR)]))
    failed = [line for line in logs if line["event"] == "store write failed"]
    assert [(line["log_level"], line["account"], line["msisdn"]) for line in failed] == [
        ("error", "handset", B), ("error", "handset", B), ("error", "handset", B2)]  # fmt: skip
    assert eventually(lambda: gw.gateway.store.can_commit, timeout=10)
    handset(B, gw=gw).expect_none(0.5)  # (B and B2: account handset2)


def test_submit_multi_carries_protocol_id_and_priority_flag_to_each_destination(handset, esme) -> None:
    esme.send(submit_multi(2, A, [B, B2], b"silent", protocol_id=0x40, priority_flag=1))  # a Type 0 (silent) SMS
    assert answer(esme, 2)[0] == ESME_ROK
    got = handset(B).expect_many(2)
    assert sorted((p.destination_addr.decode(), p.protocol_id, p.priority_flag) for p in got) == [(B, 0x40, 1), (B2, 0x40, 1)]


def test_submit_multi_refused_everywhere_is_refused_with_the_reason(esme) -> None:
    esme.send(submit_multi(2, A, ["abc", "12ab"], b"nobody"))
    status, body = answer(esme, 2)
    assert (status, multi_resp(body)) == (ESME_RINVDSTADR, ("", [("abc", ESME_RINVDSTADR), ("12ab", ESME_RINVDSTADR)]))
    esme.send(submit_multi(3, A, ["abc", "dl:friends"], b"nobody"))
    status, body = answer(esme, 3)
    assert status == consts.SMPP_ESME_RSUBMITFAIL  # for different reasons, each listed
    assert multi_resp(body) == ("", [("abc", ESME_RINVDSTADR), ("friends", consts.SMPP_ESME_RINVDLNAME)])


def test_cancel_sm_with_a_message_id_cancels_only_at_the_destination_it_names(handset, esme) -> None:
    """SMPP 3.4 4.9.1: destination_addr "is used for verification purposes, and must match". A cancel_sm naming a
    waiting MT's id with another subscriber's number deleted it all the same."""
    a = handset(A)
    waiting = a.submit(B, "for B").message_id.decode()
    esme.send(cancel_sm(2, A, waiting, dest=B2))
    assert answer(esme, 2)[0] == consts.SMPP_ESME_RCANCELFAIL
    assert a.query(waiting).message_state != DELETED
    esme.send(submit_multi(3, A, [B, B2], b"to both"))
    message_id, _ = multi_resp(answer(esme, 3)[1])
    esme.send(cancel_sm(4, A, message_id, dest=B2))
    assert answer(esme, 4)[0] == ESME_ROK
    b = handset(B)  # (the bind of account handset2 takes B2's MTs too)
    got = [(pdu.destination_addr.decode(), text(pdu)) for pdu in b.expect_many(2)]
    assert got == [(B, "for B"), (B, "to both")]
    b.expect_none(0.3)


def test_cancel_sm_of_a_submit_multi_cancels_it_for_every_destination(handset, esme) -> None:
    esme.send(submit_multi(2, A, [B, B2], b"cancel me"))
    status, body = answer(esme, 2)
    assert status == ESME_ROK
    message_id, _ = multi_resp(body)
    esme.send(cancel_sm(3, A, message_id))
    assert answer(esme, 3)[0] == ESME_ROK
    handset(B).expect_none(0.3)
