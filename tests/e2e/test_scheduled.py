"""schedule_delivery_time: an MT waits in the store until its time, then goes out (SMPP 3.4 section 5.2.15).

The gateway runs on a simulated clock (which also runs on in real time); its
sweep (every 0.5 s of real time) finds what has become due after the test
moves the clock on.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timedelta, timezone

import structlog

from gateway.clock import SimulatedClock
from tests.e2e.test_amend import DELETED, store_cannot_commit
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_ROK,
    RawLink,
    answer,
    cancel_sm,
    is_receipt,
    receipt_fields,
    replace_sm,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
IN_AN_HOUR, IN_TWO_HOURS, IN_THREE_HOURS = "000000010000000R", "000000020000000R", "000000030000000R"
ESME_RINVSCHED = 0x61
ENROUTE = 1


def test_a_scheduled_mt_goes_out_at_its_time_not_before(make_gateway, handset) -> None:
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw), handset(B, gw=gw)  # B is bound all along
    resp = a.submit(B, "good morning", schedule_delivery_time=IN_AN_HOUR, registered_delivery=1)
    assert resp.status == ESME_ROK
    assert a.submit(B, "right now").status == ESME_ROK
    assert text(b.expect()) == "right now"
    assert a.query(resp.message_id).message_state == ENROUTE
    clock.advance(3590)  # the simulated clock also runs on in real time: 10 s to spare
    b.expect_none(1.0)  # two sweeps: not yet
    clock.advance(10)
    assert text(b.expect()) == "good morning"
    receipt = receipt_fields(a.expect())
    assert (receipt["id"].encode(), receipt["stat"]) == (resp.message_id, "DELIVRD")


def test_a_scheduled_mt_goes_out_within_about_a_second_of_its_time(make_gateway, handset) -> None:
    """README: it "goes out within about a second of its time". On a frozen clock set half a second past its time
    it goes out (however long the machine takes); half a second before it, it waits."""
    clock = SimulatedClock(freeze=True)
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert a.submit(B, "on time", schedule_delivery_time="000000000010000R").status == ESME_ROK  # in 10 s
    clock.advance(9.5)
    b.expect_none(1.0)  # two sweeps: not yet
    clock.advance(1.0)
    assert text(b.expect(timeout=10.0)) == "on time"


def test_an_absolute_schedule_is_read_in_the_time_zone_its_offset_names(make_gateway, handset) -> None:
    """'032+' is Beijing time (32 quarter hours ahead of UTC): an MT scheduled for an hour ahead, Beijing time,
    goes out in an hour. Had the offset been read the wrong way round it would have waited 16 hours more."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    due = datetime.fromtimestamp(clock.now() + 3600, timezone(timedelta(hours=8)))
    beijing = due.strftime("%y%m%d%H%M%S") + f"{due.microsecond // 100_000}32+"
    assert a.submit(B, "in an hour", schedule_delivery_time=beijing).status == ESME_ROK
    clock.advance(3590)  # 10 s to spare, as above
    b.expect_none(1.0)
    clock.advance(10)
    assert text(b.expect()) == "in an hour"


def test_a_schedule_that_cannot_be_kept_is_refused(make_gateway, handset) -> None:
    gw = make_gateway(clock=SimulatedClock())
    a = handset(A, gw=gw)
    assert a.submit(B, "x", schedule_delivery_time="tomorrow").status == ESME_RINVSCHED
    # after its validity ends
    assert a.submit(B, "x", schedule_delivery_time=IN_TWO_HOURS, validity_period=IN_AN_HOUR).status == ESME_RINVSCHED
    # at the moment it ends (SMPP 3.4: the validity is the time after which it is discarded; README: before it ends)
    assert a.submit(B, "x", schedule_delivery_time=IN_AN_HOUR, validity_period=IN_AN_HOUR).status == ESME_RINVSCHED
    assert a.submit(B, "x", schedule_delivery_time="000000000001000R").status == ESME_ROK


def test_without_a_validity_period_the_default_validity_counts_from_the_schedule(make_gateway, handset) -> None:
    """An SP scheduling Monday's newsletter on Friday sends no validity_period: the default validity (10 minutes
    here) runs from the time the MT may go out, not from its submission, so a schedule beyond it is not refused
    and the MT expires only that long after its time."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"default_validity": 600})
    a = handset(A, gw=gw)  # B never binds
    resp = a.submit(B, "newsletter", schedule_delivery_time=IN_AN_HOUR, registered_delivery=2)
    assert resp.status == ESME_ROK
    clock.advance(3600 + 300)
    a.expect_none(1.0, predicate=is_receipt)  # two sweeps: still valid, 5 minutes after its time
    assert a.query(resp.message_id).message_state == ENROUTE
    clock.advance(600)
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"]) == (resp.message_id, "EXPIRED")


def test_a_schedule_to_a_short_code_is_not_kept_but_a_malformed_one_is_refused(gateway, handset) -> None:
    """The service answers at once whatever the schedule; a schedule that is no SMPP time is refused all the same,
    as a malformed validity_period is (it was accepted to a short code)."""
    a = handset(A)
    assert a.submit("10086000", "now", schedule_delivery_time=IN_AN_HOUR).status == ESME_ROK
    assert text(a.expect()) == "now"  # the echo code's answer, not an hour later
    for malformed in ("tomorrow", "261341990000000+"):
        assert a.submit("10086000", "x", schedule_delivery_time=malformed).status == ESME_RINVSCHED
    a.expect_none(0.3)


def test_scheduled_mts_survive_a_restart(tmp_path, make_gateway, handset) -> None:
    db = tmp_path / "gw.db"
    clock = SimulatedClock()
    first = make_gateway(clock=clock, db_path=db)
    a = handset(A, gw=first)
    assert a.submit(B, "see you", schedule_delivery_time=IN_AN_HOUR).status == ESME_ROK
    a.close()
    first.stop()

    second = make_gateway(clock=clock, db_path=db)
    b = handset(B, gw=second)
    b.expect_none(1.0)
    clock.advance(3600)
    assert text(b.expect()) == "see you"


def test_a_scheduled_mt_can_be_cancelled_or_moved_until_it_goes_out(make_gateway, handset) -> None:
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    cancelled = a.submit(B, "never mind", schedule_delivery_time=IN_AN_HOUR).message_id.decode()
    moved = a.submit(B, "an hour later", schedule_delivery_time=IN_AN_HOUR).message_id.decode()
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(cancel_sm(2, A, cancelled))
        assert answer(esme, 2)[0] == ESME_ROK
        esme.send(replace_sm(3, A, moved, b"two hours later", schedule=IN_TWO_HOURS))
        assert answer(esme, 3)[0] == ESME_ROK
    assert a.query(cancelled).message_state == DELETED
    clock.advance(3600)
    b.expect_none(1.0)
    clock.advance(3600)
    assert text(b.expect()) == "two hours later"
    b.expect_none(0.5)


def test_a_scheduled_mt_whose_release_fails_goes_out_at_a_later_sweep(make_gateway, handset, tmp_path) -> None:
    """The release of a scheduled MT due fails (the store refuses it, as a damaged page would): an error line with its
    traceback, and the next sweep releases it; nothing is lost (coverage review: no test ran a failing sweep)."""
    clock = SimulatedClock()
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert a.submit(B, "good morning", schedule_delivery_time=IN_AN_HOUR).status == ESME_ROK
    with structlog.testing.capture_logs() as logs:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as outside:
            outside.execute("CREATE TRIGGER no_release BEFORE UPDATE OF status ON messages BEGIN "
                            "SELECT RAISE(ABORT, 'no release'); END")  # fmt: skip
            clock.advance(3600)
            assert eventually(lambda: any(line["event"] == "store-and-forward sweep failed" for line in logs), 10)
            outside.execute("DROP TRIGGER no_release")
        assert text(b.expect()) == "good morning"
    failed = next(line for line in logs if line["event"] == "store-and-forward sweep failed")
    assert failed["log_level"] == "error" and "exc_info" in failed
    b.expect_none(0.5)  # once


def test_a_scheduled_mt_due_while_the_store_cannot_commit_goes_out_once_it_commits_with_one_line_logged_per_outage(
    make_gateway, handset, tmp_path
) -> None:
    """Its release failed at every sweep of the outage, each an error line with a traceback: two a second for as long
    as the outage lasted (the store says why itself, once: `store cannot commit`). Now the first is a warning with the
    reason, the rest not logged; the MT stays scheduled and goes out at the first sweep once the store commits. The
    next outage is logged again, once."""
    clock = SimulatedClock()
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(clock=clock, db_path=home / "gw.db")
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    for greeting, due in [("good morning", IN_AN_HOUR), ("good day", IN_TWO_HOURS), ("good evening", IN_THREE_HOURS)]:
        assert a.submit(B, greeting, schedule_delivery_time=due).status == ESME_ROK
    with structlog.testing.capture_logs() as logs:
        with store_cannot_commit(gw, home):
            clock.advance(3600)
            b.expect_none(2.0)  # four sweeps, each failing its release
        assert text(b.expect(timeout=10.0)) == "good morning"
        clock.advance(3600)
        assert text(b.expect()) == "good day"  # (a sweep with the store committing, between the outages)
        with store_cannot_commit(gw, home):
            clock.advance(3600)
            b.expect_none(2.0)
        assert text(b.expect(timeout=10.0)) == "good evening"
    failed = [line for line in logs if line["event"] == "store-and-forward sweep failed"]
    assert [(line["log_level"], line["reason"], "exc_info" in line) for line in failed] == [
        ("warning", "the store cannot commit", False)] * 2
    b.expect_none(0.5)  # once
