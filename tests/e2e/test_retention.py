"""[gateway] message_retention: messages that ended longer ago than it are deleted; query_sm of them then fails."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import Charge, Dialogue, PendingOrder
from tests.e2e.test_amend import multi_resp, submit_multi
from tests.e2e.test_confirmation import (
    OPERATOR,
    ask,
    order,
    orders,
    replies,
    send,
    subscriptions,
)
from tests.polling import eventually
from tests.services_support import at
from tests.smpp_handset import (
    ESME_ROK,
    ESME_RQUERYFAIL,
    RawLink,
    answer,
    cancel_sm,
    is_receipt,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
B2 = "8613700000002"  # account handset2
C = "8613900000009"  # account handset, never bound: an MT to it waits
ECHO = "10086000"  # replies with the text it received
SPAM_REPORT = "10086999"
DAY = 86400.0
DELIVERED, ENROUTE = 2, 1  # query_sm message_state


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


def stored_ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM messages")}


def cached_orders(controller, msisdn: str) -> list[PendingOrder]:
    """A subscriber's orders as the handlers read them (the record cache), as `orders` reads the store."""
    return controller.call(controller.gateway.records.find(PendingOrder, order_by="created_at", msisdn=msisdn))


def test_messages_ended_before_the_retention_are_deleted_after_a_restart_and_query_sm_of_them_fails(
    make_gateway, handset, clock, tmp_path
):
    db = tmp_path / "retention.db"
    first = make_gateway(clock=clock, db_path=db, gateway={"message_retention": DAY})
    a, b = handset(A, gw=first, address_range=A), handset(B, gw=first)
    old = a.submit(B, "old news", registered_delivery=1).message_id
    b.expect()
    a.expect(predicate=is_receipt)
    mo = a.submit(ECHO, "ping").message_id
    assert text(a.expect(predicate=lambda pdu: not is_receipt(pdu))) == "ping"
    waiting = a.submit(C, "call me", registered_delivery=1).message_id  # C never binds: enroute for default_validity (2 days)
    clock.advance(DAY - 3600)
    recent = a.submit(B, "fresh news", registered_delivery=1).message_id
    b.expect()
    a.expect(predicate=is_receipt)
    assert a.query(old).message_state == DELIVERED  # nothing is past the retention yet
    a.close(), b.close()
    first.stop()
    before = stored_ids(db)

    clock.advance(2 * 3600)  # old, its receipt, the MO and its reply ended 25 h ago; recent 2 h ago
    second = make_gateway(clock=clock, db_path=db, gateway={"message_retention": DAY})
    a = handset(A, gw=second, address_range=A)
    assert eventually(lambda: a.query(old).status == ESME_RQUERYFAIL)
    assert a.query(mo).status == ESME_RQUERYFAIL
    assert (a.query(recent).status, a.query(recent).message_state) == (ESME_ROK, DELIVERED)
    assert (a.query(waiting).status, a.query(waiting).message_state) == (ESME_ROK, ENROUTE)  # older, but not ended
    a.close()
    second.stop()
    kept = stored_ids(db)
    # recent and its receipt, and waiting, are what is left; old's receipt and the MO's reply went with them
    assert len(before) == 7 and len(kept) == 3 and {recent.decode(), waiting.decode()} < kept


def test_a_message_whose_retransmission_is_still_recognised_is_kept_past_a_shorter_retention(make_gateway, handset, clock):
    """A retention shorter than dedup_window: the stored MO is what recognises the client's copy (SPEC 5: handled once)."""
    gw = make_gateway(clock=clock, gateway={"message_retention": 60, "dedup_window": 3600})
    a = handset(A, gw=gw, address_range=A)
    first = a.submit(ECHO, "once", user_message_reference=7).message_id
    assert text(a.expect()) == "once"
    clock.advance(120)
    # Nothing deleted, and none said to be: the pass read the rows it kept and logged them as deleted, every time.
    assert gw.call(gw.gateway.retention.prune()) == 0
    assert a.submit(ECHO, "once", user_message_reference=7).message_id == first  # the copy, answered with its id
    a.expect_none(0.5)  # and not handled again
    clock.advance(3600)  # out of the dedup window: now it goes, with the echo's reply
    assert gw.call(gw.gateway.retention.prune()) == 2
    assert a.query(first).status == ESME_RQUERYFAIL


def test_a_retention_of_0_keeps_every_message(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, gateway={"message_retention": 0})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    sent = a.submit(B, "keep me", registered_delivery=1).message_id
    b.expect()
    a.expect(predicate=is_receipt)  # sent once the delivery is recorded
    clock.advance(365 * DAY)
    assert gw.call(gw.gateway.retention.prune()) == 0
    assert a.query(sent).message_state == DELIVERED


def test_a_charge_is_refunded_once_after_the_mo_that_confirmed_its_subscription_was_deleted(make_gateway, handset):
    """A subscription keeps the id of the MO that confirmed it: that is the record a dispute looks at (SPEC 3.2), so
    deleting the MO past retention does not turn the single refund into a double one."""
    clock = SimulatedClock(at(2026, 11, 10))
    gw = make_gateway(clock=clock, gateway={"message_retention": DAY})
    a = handset(A, gw=gw, address_range=A)
    order(a, "TT")
    confirmed_by = send(a, OPERATOR, "Y")
    replies(a)  # the success notice
    [subscription] = subscriptions(gw, A)
    assert subscription.confirmation == confirmed_by
    clock.set(at(2026, 12, 1, 0, 5))
    gw.call(gw.gateway.retention.prune())
    assert a.query(confirmed_by).status == ESME_RQUERYFAIL
    gw.call(gw.gateway.services.run_billing())
    [charge] = gw.call(gw.gateway.store.find(Charge, msisdn=A))
    gw.call(gw.gateway.services.dispute(charge.id))
    assert replies(a) == ["中国移动:您2026年12月新浪的头条新闻业务信息费30元,经核实已为您退还30元。"]


def test_orders_nothing_answers_about_any_more_are_deleted_whatever_the_message_retention(make_gateway, handset):
    """One subscriber texting TT every day without answering kept a pending_orders row a day for ever, each read at
    every answer to 10086: an order answered or expired goes once its validity has been over for one more validity
    period (24 h), the time a late `Y` is still told what became of it; its subscription keeps the confirming MO."""
    clock = SimulatedClock(at(2026, 11, 10))
    gw = make_gateway(clock=clock, gateway={"message_retention": 0, "job_check_interval": 3600})
    a = handset(A, gw=gw, address_range=A)
    order(a, "TT")
    confirmed_by = send(a, OPERATOR, "Y")
    replies(a)  # the success notice
    for _day in range(3):  # TQ every day, never answered: each request lapses, the next is a new order
        clock.advance(60)
        order(a, "TQ")
        clock.advance(DAY)
        gw.call(gw.gateway.services.expire_orders())
    gw.call(gw.gateway.prune())
    # TT (confirmed) and the first two TQ ended 24 h or more ago; the last TQ's validity has just ended
    assert [(o.service_id, o.status) for o in orders(gw, A)] == [("sina-weather", "expired")]
    assert cached_orders(gw, A) == orders(gw, A)  # what the handlers read: the deleted ones gone there too
    assert "已超过有效期" in ask(a, "Y")  # a late answer is still told the last order expired
    clock.advance(DAY - 1)
    gw.call(gw.gateway.prune())
    assert len(orders(gw, A)) == 1  # not yet: its validity has been over for a second less than a validity period
    clock.advance(1)
    gw.call(gw.gateway.prune())
    assert orders(gw, A) == [] == cached_orders(gw, A)
    assert [(s.service_id, s.status, s.confirmation) for s in subscriptions(gw, A)] == [("sina-news", "active", confirmed_by)]


def test_dialogues_are_deleted_two_confirmation_validities_after_they_expired(make_gateway, handset):
    """Prompts nobody answered (a spam report's question for the number, a 0000 listing) stayed in the dialogues table
    for ever. One goes 48 h after it expired: until then an expired listing is 10086's last prompt for a `1`, where an
    order confirmed before it would otherwise answer (one a validity after its own validity ended)."""
    clock = SimulatedClock(at(2026, 11, 10))
    gw = make_gateway(clock=clock, gateway={"message_retention": 0, "job_check_interval": 3600})
    a = handset(A, gw=gw, address_range=A)
    order(a, "TT")
    send(a, OPERATOR, "Y")
    replies(a)  # the success notice
    clock.advance(60)
    assert "1.新浪" in ask(a, "0000")  # a listing, for 2 h
    send(a, SPAM_REPORT, "【中奖通知】恭喜您获得iPhone一部")
    replies(a, source=SPAM_REPORT)  # asked for the number, for 30 min

    def kinds() -> set[str]:
        gw.call(gw.gateway.prune())
        return {d.kind for d in gw.call(gw.gateway.store.find(Dialogue, msisdn=A))}

    clock.advance(47 * 3600)  # TT's order is still answered about (its validity ended 23 h ago)
    assert kinds() == {"unsubscribe.listing", "spam.number"}
    assert ask(a, "1").startswith("您的业务列表已过期")  # about the listing, the prompt sent last
    clock.advance(3 * 3600 - 1)  # the spam question expired 48.5 h ago, the listing 48 h less a second
    assert kinds() == {"unsubscribe.listing"}
    clock.advance(1)
    assert kinds() == set()


def test_cancel_sm_of_a_submit_multi_reaches_the_destinations_still_waiting_after_the_first_was_deleted(
    make_gateway, handset, clock
):
    """Its destinations were found by reading <id>, <id>/2, ... up to the first one missing: with the first
    delivered and deleted past retention, cancel_sm failed (ESME_RCANCELFAIL) and the one still waiting went out."""
    gw = make_gateway(clock=clock, gateway={"message_retention": DAY, "default_validity": 30 * DAY})
    b = handset(B, gw=gw, address_range=B)  # B's only: B2 (same account) is off line
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(submit_multi(2, A, [B, B2, C], b"meeting at 3"))
        status, body = answer(esme, 2)
        assert status == ESME_ROK
        first = multi_resp(body)[0]
        assert text(b.expect()) == "meeting at 3"  # B2 and C are off line: they wait
        assert eventually(lambda: gw.call(gw.gateway.store.get(first)).status.value == "delivered")
        clock.advance(2 * DAY)
        gw.call(gw.gateway.retention.prune())
        assert handset(A, gw=gw, address_range=A).query(first).status == ESME_RQUERYFAIL  # the first one is gone
        esme.send(cancel_sm(3, A, first))
        assert answer(esme, 3)[0] == ESME_ROK
    assert [gw.call(gw.gateway.store.get(f"{first}/{n}")).status.value for n in (2, 3)] == ["deleted", "deleted"]
    handset(B2, gw=gw).expect_none(0.3)
