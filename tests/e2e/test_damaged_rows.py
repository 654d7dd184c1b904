"""A stored message whose row was damaged outside the gateway (SQLite keeps whatever a column is given: text where a
number goes, no JSON where JSON goes) costs only itself: an MT ends on its own, with an error line naming it, and the
bind it was meant for, the reads of the others (a bind's backlog, the sweep) and every other MT go on (README:
Delivery).

Each test stores MTs with one gateway, damages one row with sqlite3 while it is stopped, and starts another on the
same file, as an operator's hand or a broken migration would leave it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import structlog

from gateway.clock import SimulatedClock
from tests.e2e.test_acknowledgements import asking_acknowledgements, content
from tests.e2e.test_smpp33 import Smpp33Link
from tests.polling import eventually
from tests.services_support import at
from tests.smpp_handset import (
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RQUERYFAIL,
    is_receipt,
    receipt_fields,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
SINA = "1066916"  # an SP's service code (account sina)
SME_DELIVERY_ACK = 0x08  # esm_class: an SME delivery acknowledgement
IN_AN_HOUR = "000000010000000R"


def stored_status(db: Path, message_id: bytes) -> str:
    """A message's status as its row in the SQLite file says, read from outside the gateway."""
    with contextlib.closing(sqlite3.connect(db)) as outside:
        [(status,)] = outside.execute("SELECT status FROM messages WHERE id = ?", (message_id.decode(),))
    return status


def waiting_for_b(make_gateway, handset, db: Path, *texts: str) -> list:
    """MTs from A to B, receipts asked for, left enroute (B not bound) by a gateway on `db` stopped since: their
    submit_sm_resps."""
    first = make_gateway(db_path=db)
    a = handset(A, gw=first)
    sent = [a.submit(B, words, registered_delivery=1) for words in texts]
    assert {resp.status for resp in sent} == {ESME_ROK}
    a.close()
    first.stop()
    return sent


def damage(db: Path, message_id: bytes, column: str, value: object) -> None:
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as outside:
        outside.execute(f"UPDATE messages SET {column} = ? WHERE id = ?", (value, message_id.decode()))


@pytest.mark.parametrize("window", [10, 1], ids=["sent-by-the-backlog-read", "sent-as-the-window-opens"])
@pytest.mark.parametrize(
    ("column", "value", "receipted"),
    [("data_coding", "x", False), ("service_type", b"WAP", True)],  # text for a number; bytes for text
    ids=["data_coding", "service_type"],
)
def test_an_mt_whose_stored_row_makes_no_deliver_sm_ends_undeliverable_alone_and_the_bind_goes_on(
    make_gateway, handset, tmp_path, window, column, value, receipted
):
    """Its deliver_sm raised TypeError or AttributeError as it was made: sent by the bind's backlog read, the read
    stopped there (the MTs after it waited for the next bind); sent as an answer opened the window, the exception
    came up through the bind's read of that answer and the connection was dropped. Now it ends undeliverable (an
    error line `mt cannot be sent` with its reason), with its receipt if its row makes one (text where its data_coding
    goes does not: `receipt cannot be made`), and the MTs after it go out on the same bind."""
    db = tmp_path / "gw.db"
    kept_1, damaged, kept_2 = waiting_for_b(make_gateway, handset, db, "kept 1", "damaged", "kept 2")
    damage(db, damaged.message_id, column, value)

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db, gateway={"window": window})
        b = handset(B, gw=again)
        assert [text(pdu) for pdu in b.expect_many(2)] == ["kept 1", "kept 2"]
        a = handset(A, gw=again)
        assert a.submit(B, "after it").status == ESME_ROK
        assert text(b.expect()) == "after it"  # the same bind
        assert eventually(lambda: stored_status(db, damaged.message_id) == "undeliverable")
        receipts = {receipt_fields(pdu)["id"]: receipt_fields(pdu)["stat"] for pdu in a.expect_many(2 + receipted, predicate=is_receipt)}
        a.expect_none(0.3, predicate=is_receipt)
    expected = {kept_1.message_id.decode(): "DELIVRD", kept_2.message_id.decode(): "DELIVRD"}
    if receipted:
        expected[damaged.message_id.decode()] = "UNDELIV"
    assert receipts == expected
    [cannot] = [line for line in logs if line["event"] == "mt cannot be sent"]
    assert (cannot["log_level"], cannot["message_id"], cannot["msisdn"]) == ("error", damaged.message_id.decode(), B)
    assert [line["message_id"] for line in logs if line["event"] == "receipt cannot be made"] == (
        [] if receipted else [damaged.message_id.decode()]
    )
    assert [line for line in logs if line["event"] in ("unbound", "reading waiting MTs failed")] == []


def test_a_scheduled_mt_whose_stored_row_does_not_read_back_is_given_up_and_the_sweep_releases_the_others(
    make_gateway, handset, tmp_path
):
    """A scheduled MT's `extra` damaged into no JSON (SQLite's JSON index refuses that only to an enroute MT): the
    sweep's read of due MTs raised JSONDecodeError at every sweep ('store-and-forward sweep failed'), and no MT due
    after it went out, nor did any expire. Now it is given up (stored undeliverable, an error line `stored message
    unreadable` naming it, once) and the sweep releases the others."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db)
    a = handset(A, gw=first)
    damaged, kept = (a.submit(B, words, schedule_delivery_time=IN_AN_HOUR) for words in ("damaged", "kept"))
    assert damaged.status == kept.status == ESME_ROK
    a.close()
    first.stop()
    damage(db, damaged.message_id, "extra", "{oops")

    clock = SimulatedClock()
    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db, clock=clock)
        b = handset(B, gw=again)
        clock.advance(3600)
        assert text(b.expect(timeout=10.0)) == "kept"
        b.expect_none(1.0)  # two sweeps more
    assert stored_status(db, damaged.message_id) == "undeliverable"
    [unreadable] = [line for line in logs if line["event"] == "stored message unreadable"]
    assert (unreadable["log_level"], unreadable["message_id"], unreadable["msisdn"]) == ("error", damaged.message_id.decode(), B)
    assert unreadable["reason"].startswith("JSONDecodeError")
    assert [line for line in logs if line["event"] == "store-and-forward sweep failed"] == []


@pytest.mark.parametrize("damaged_rows", [1, 2])
def test_an_mt_whose_stored_extra_is_no_json_object_is_given_up_and_the_backlog_read_goes_on(
    make_gateway, handset, tmp_path, damaged_rows: int
):
    """JSON but no object in an enroute MT's `extra` (`"x"`: SQLite's JSON index takes it): the bind's backlog read
    failed on it ('reading waiting MTs failed'), the MTs after it left until the next bind. Now it is given up and
    the others go out on the bind; read two at a time here, the page it was in is filled from the rows after it (a
    page short of the read's size is its end), also when the first row read to fill it is damaged too."""
    db = tmp_path / "gw.db"
    damaged_texts = [f"damaged {n}" for n in range(damaged_rows)]
    _kept_1, *damaged, _kept_2, _kept_3 = waiting_for_b(make_gateway, handset, db, "kept 1", *damaged_texts, "kept 2", "kept 3")
    for resp in damaged:
        damage(db, resp.message_id, "extra", '"x"')

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db)
        again.gateway.delivery.PAGE = 2
        b = handset(B, gw=again)
        assert [text(pdu) for pdu in b.expect_many(3)] == ["kept 1", "kept 2", "kept 3"]
        assert eventually(lambda: {stored_status(db, resp.message_id) for resp in damaged} == {"undeliverable"})
    unreadable = [line["message_id"] for line in logs if line["event"] == "stored message unreadable"]
    assert unreadable == [resp.message_id.decode() for resp in damaged]
    assert [line for line in logs if line["event"] == "reading waiting MTs failed"] == []


@pytest.mark.parametrize(("column", "value"), [("expires_at", "x"), ("account", b"handset")], ids=["expires_at", "account"])
def test_an_mt_whose_stored_routing_fields_are_damaged_is_given_up_and_the_backlog_read_goes_on(
    make_gateway, handset, tmp_path, column, value
):
    """Text where its validity's end goes, or bytes where its account does (SQLite keeps either): the bind's backlog
    read failed on it as it was routed ('reading waiting MTs failed'), before any deliver_sm was made, and none of the
    MTs read with it went out; or it went out, and its receipt, made as it was acknowledged, dropped the bind. Now its
    row does not read back: it is given up (`stored message unreadable`, naming the field), and the others go out."""
    db = tmp_path / "gw.db"
    _kept_1, damaged, _kept_2 = waiting_for_b(make_gateway, handset, db, "kept 1", "damaged", "kept 2")
    damage(db, damaged.message_id, column, value)

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db)
        b = handset(B, gw=again)
        assert [text(pdu) for pdu in b.expect_many(2)] == ["kept 1", "kept 2"]
        assert eventually(lambda: stored_status(db, damaged.message_id) == "undeliverable")
        assert handset(A, gw=again).submit(B, "after it").status == ESME_ROK
        assert text(b.expect()) == "after it"  # the same bind
    [unreadable] = [line for line in logs if line["event"] == "stored message unreadable"]
    assert (unreadable["message_id"], unreadable["reason"]) == (
        damaged.message_id.decode(), f"TypeError: {column} is {type(value).__name__}, not {'float' if column == 'expires_at' else 'str'}"
    )
    assert [line for line in logs if line["event"] in ("unbound", "reading waiting MTs failed")] == []


def test_an_mt_delivered_whose_stored_row_makes_no_receipt_leaves_the_bind_bound(make_gateway, handset, tmp_path):
    """Text where its submission time goes (SQLite keeps it in a REAL column): it went out, and its receipt, made as
    its deliver_sm_resp was read, raised TypeError up through the bind's read of that answer, and the bind was dropped
    ('Fatal error: protocol.data_received() call failed'). Now it is stored delivered without its receipt (`receipt cannot be made`), and the
    bind goes on."""
    db = tmp_path / "gw.db"
    damaged, kept = waiting_for_b(make_gateway, handset, db, "damaged", "kept")
    damage(db, damaged.message_id, "submitted_at", "x")

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db)
        a = handset(A, gw=again)
        b = handset(B, gw=again)
        assert [text(pdu) for pdu in b.expect_many(2)] == ["damaged", "kept"]
        assert receipt_fields(a.expect(predicate=is_receipt))["id"] == kept.message_id.decode()
        assert stored_status(db, damaged.message_id) == "delivered"  # (committed before the receipt that followed it)
        assert a.submit(B, "after it").status == ESME_ROK
        assert text(b.expect()) == "after it"  # the same bind
    assert [line["message_id"] for line in logs if line["event"] == "receipt cannot be made"] == [damaged.message_id.decode()]
    assert [line for line in logs if line["event"] == "unbound"] == []


def test_an_mt_whose_stored_text_is_damaged_ends_alone_on_a_bind_of_smpp_3_3_and_the_backlog_read_goes_on(
    make_gateway, handset, tmp_path
):
    """A number where its text goes (SQLite keeps it in a BLOB column): routed to a bind of SMPP 3.3, whether its text
    fits that bind's short_message raised TypeError (messages.carried_without_tlvs caught ValueError only), and the
    bind's backlog read stopped there ('reading waiting MTs failed'), the MTs after it left until the next bind. Now
    the bind is given it, and its send ends it, as on a bind of SMPP 3.4."""
    db = tmp_path / "gw.db"
    _kept_1, damaged, _kept_2 = waiting_for_b(make_gateway, handset, db, "kept 1", "damaged", "kept 2")
    damage(db, damaged.message_id, "short_message", 5)

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db)
        b = Smpp33Link(again.smpp_port, "handset2")
        try:
            assert [b.deliver_sm().short_message for _ in range(2)] == [b"kept 1", b"kept 2"]
            assert eventually(lambda: stored_status(db, damaged.message_id) == "undeliverable")
        finally:
            b.close()
    assert [line["message_id"] for line in logs if line["event"] == "mt cannot be sent"] == [damaged.message_id.decode()]
    assert [line for line in logs if line["event"] == "reading waiting MTs failed"] == []


def test_mts_given_up_for_their_rows_no_longer_count_against_their_subscribers_queue(make_gateway, handset, tmp_path):
    """Two MTs to B waiting at the start count against B's max_queued_per_subscriber; given up as B's backlog read
    met their rows, they went on counting until a restart, every new MT to B refused ESME_RMSGQFUL meanwhile. Now
    they count no longer once given up: as many as the limit are accepted again."""
    db = tmp_path / "gw.db"
    *damaged, kept = waiting_for_b(make_gateway, handset, db, "damaged 1", "damaged 2", "kept")
    for resp in damaged:
        damage(db, resp.message_id, "extra", '"x"')

    again = make_gateway(db_path=db, gateway={"max_queued_per_subscriber": 3})
    a = handset(A, gw=again)
    b = handset(B, gw=again)
    assert text(b.expect()) == "kept"
    # Its receipt is made as its delivery commits, after the give-ups issued before it (writes commit in order).
    assert receipt_fields(a.expect(predicate=is_receipt))["id"] == kept.message_id.decode()
    b.close()
    assert [a.submit(B, f"after them {n}").status for n in range(4)] == [ESME_ROK] * 3 + [ESME_RMSGQFUL]


def test_acknowledgements_given_up_for_their_rows_no_longer_count_against_their_subscribers_limit(
    make_gateway, handset, tmp_path
) -> None:
    """SME acknowledgements to an SP's code waiting at the start count against their sender's limit (README,
    Acknowledgements); two given up as the SP's backlog read meets their rows count no longer: as many as the limit
    are accepted again."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db, clock=SimulatedClock(at(2026, 11, 10)))
    a = handset(A, gw=first)
    asking_acknowledgements(first, handset, a, 3, bind="tx")  # each acknowledgement answers one
    *damaged, kept = [a.submit(SINA, words, esm_class=SME_DELIVERY_ACK, registered_delivery=1) for words in ("1", "2", "3")]
    assert {resp.status for resp in (*damaged, kept)} == {ESME_ROK}
    a.close()
    first.stop()
    for resp in damaged:
        damage(db, resp.message_id, "attempts", "x")

    again = make_gateway(db_path=db, clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 3})
    a = handset(A, gw=again)
    assert a.submit(SINA, "4", esm_class=SME_DELIVERY_ACK).status == ESME_RMSGQFUL  # the three count at start
    content(handset(SINA, system_id="sina", bind="tx", gw=again), a, 4)
    sina = handset(SINA, system_id="sina", bind="rx", gw=again)
    assert text(sina.expect(predicate=lambda p: p.esm_class == SME_DELIVERY_ACK)) == "3"  # (after the ORDER)
    assert receipt_fields(a.expect(predicate=is_receipt))["id"] == kept.message_id.decode()  # (after the give-ups)
    sina.close()
    acks = [a.submit(SINA, f"after them {n}", esm_class=SME_DELIVERY_ACK).status for n in range(4)]
    assert acks == [ESME_ROK] * 3 + [ESME_RMSGQFUL]


def test_a_query_of_a_message_whose_stored_row_does_not_read_back_is_answered(make_gateway, handset, tmp_path):
    """A delivered MT's `extra` damaged into no JSON: its query_sm raised JSONDecodeError and was never answered (the
    client waited for ever). Now it is answered ESME_RQUERYFAIL, as for no such message, with an error line naming
    it, and the bind goes on."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db)
    a, b = handset(A, gw=first), handset(B, gw=first)
    delivered = a.submit(B, "hello")
    assert text(b.expect()) == "hello"
    a.close()
    b.close()
    first.stop()
    damage(db, delivered.message_id, "extra", "{oops")

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db)
        a = handset(A, gw=again)
        assert a.query(delivered.message_id).status == ESME_RQUERYFAIL
        assert a.submit(A, "still bound").status == ESME_ROK
    assert [line["message_id"] for line in logs if line["event"] == "stored message unreadable"] == [delivered.message_id.decode()]


@pytest.mark.parametrize(
    ("column", "value", "ends", "logged"),
    [
        ("data_coding", "x", "expired", "receipt cannot be made"),
        ("error", "x", "undeliverable", "stored message unreadable"),
        ("account", b"handset", "undeliverable", "stored message unreadable"),
    ],
    ids=["data_coding", "error", "account"],
)
def test_an_mt_whose_stored_row_is_damaged_ends_alone_and_the_sweep_expires_the_others(
    make_gateway, handset, tmp_path, column, value, ends, logged
):
    """The exception came up through the sweep that expired it ('store-and-forward sweep failed' at every sweep), and
    neither it nor any MT expiring after it ended: its receipt could not be made (text where its data_coding goes:
    TypeError as the receipt's text was decoded), or the sweep's own reading of it failed (text where its last
    attempt's error goes, bytes where its account does). Now it expires without its receipt (`receipt cannot be
    made`), or is given up as a row that does not read back (`stored message unreadable`), and the others expire
    with theirs."""
    db = tmp_path / "gw.db"
    damaged, kept = waiting_for_b(make_gateway, handset, db, "damaged", "kept")  # (validity: default_validity)
    damage(db, damaged.message_id, column, value)

    clock = SimulatedClock()
    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db, clock=clock)
        a = handset(A, gw=again)
        clock.advance(3 * 86400)
        receipt = receipt_fields(a.expect(timeout=10.0, predicate=is_receipt))
        assert (receipt["id"], receipt["stat"]) == (kept.message_id.decode(), "EXPIRED")
        assert eventually(lambda: stored_status(db, damaged.message_id) == ends)
        a.expect_none(1.0, predicate=is_receipt)
    assert [line["message_id"] for line in logs if line["event"] == logged] == [damaged.message_id.decode()]
    assert [line for line in logs if line["event"] == "store-and-forward sweep failed"] == []
