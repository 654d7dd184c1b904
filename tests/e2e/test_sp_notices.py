"""Order-relation sync (SPEC 3.2) as the SP sees it: its receiver bind gets a subscriber's notices in order."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import structlog

from gateway.clock import SimulatedClock
from handlers.sp_notice import parse_sp_notice
from tests.services_support import CHINA, account_changed, at
from tests.smpp_handset import (
    ESME_ROK,
    ESME_RTHROTTLED,
    is_receipt,
    receipt_fields,
    texts_from,
)

A, FRIEND = "8613800000001", "8613700000002"
OPERATOR, SINA = "10086", "1066916"
ESME_RX_P_APPN = 0x65  # permanent: the SP will never take this one
ESME_RX_T_APPN = 0x64  # temporary: tried again after retry_backoff


def ask(phone, to: str, message: str) -> str:
    assert phone.submit(to, message).status == ESME_ROK
    return texts_from(phone, OPERATOR, 1)[0]


def order_and_confirm(phone) -> None:
    assert "回复" in ask(phone, SINA, "TT")
    assert ask(phone, OPERATOR, "Y").startswith("您已定制")


def unsubscribe(phone) -> None:
    assert "头条新闻" in ask(phone, OPERATOR, "0000")
    assert ask(phone, OPERATOR, "1").startswith("您已成功退订")


def events(sp, count: int, timeout: float = 10.0) -> list[str]:
    """The events of the next `count` notices the SP's bind receives about subscriber A, in arrival order."""
    pdus = sp.expect_many(count, timeout, predicate=lambda p: p.source_addr == A.encode())
    return [parse_sp_notice(p.short_message.decode())["event"] for p in pdus]


@pytest.fixture
def gw(make_gateway):
    return make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"retry_backoff": [2]})


def test_the_sp_reads_each_notice_as_one_line_of_key_value_pairs_in_the_documented_order(make_gateway, handset):
    """README "SP notices": event, service, keyword, msisdn, channel, time (YYYYMMDDhhmmss, China time), notice, in
    this order; SPs parse it so. The tests parsed it into a dict, which read any order and any time alike."""
    clock = SimulatedClock(at(2026, 11, 10, 15, 40, 27))
    gw = make_gateway(clock=clock)
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    made_from = clock.now()
    order_and_confirm(phone)
    unsubscribe(phone)
    pdus = sina_rx.expect_many(2, 10.0, predicate=lambda p: p.source_addr == A.encode())
    made_by = clock.now()
    for text, event in zip([p.short_message.decode() for p in pdus], ["ORDER", "CANCEL"], strict=True):
        form = re.fullmatch(rf"event={event} service=sina-news keyword=TT msisdn={A} channel=sms time=(\d{{14}}) notice=[0-9a-f]+", text)
        assert form, text
        when = dt.datetime.strptime(form[1], "%Y%m%d%H%M%S").replace(tzinfo=CHINA).timestamp()
        assert int(made_from) <= when <= made_by, (text, made_from, made_by)  # the clock's China time, to the second


def test_a_notice_sent_again_after_a_late_acknowledgement_carries_the_same_notice_id_and_each_notice_its_own(make_gateway, handset):
    """An SP that acknowledged late got the retry, a byte-identical second copy, and one counting events could not
    tell it from a second order in the same second (the same fields, the same time=): notice= names each notice."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"response_timeout": 1, "retry_backoff": [1]})
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    sina_rx.answering = False
    order_and_confirm(phone)
    first, retry = sina_rx.expect_many(2, 10.0, predicate=lambda p: p.source_addr == A.encode())  # unanswered: sent again
    sina_rx.answer_held()  # late: both acknowledged
    sina_rx.answering = True
    assert retry.short_message == first.short_message
    unsubscribe(phone)
    assert events(sina_rx, 1) == ["CANCEL"]
    order_and_confirm(phone)  # ordered again: the same fields as the first ORDER (the same time= within a second)
    [again] = sina_rx.expect_many(1, 10.0, predicate=lambda p: p.source_addr == A.encode())
    ordered, ordered_again = (parse_sp_notice(p.short_message.decode()) for p in (first, again))
    assert {**ordered, "time": "", "notice": ""} == {**ordered_again, "time": "", "notice": ""}
    assert ordered["notice"] != ordered_again["notice"]


def order_throttled(gw, handset):
    """A's order, whose ORDER notice the SP's receiver throttles (sent again after a pause): (A's phone, the SP's bind)."""
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    sina_rx.answers.append(ESME_RTHROTTLED)
    order_and_confirm(phone)
    assert events(sina_rx, 1) == ["ORDER"]
    return phone, sina_rx


def test_an_order_notice_the_sp_throttled_reaches_it_before_the_cancel_sent_while_it_waited(gw, handset):
    # Both notices carry the same time= (one second): the SP can only go by the order they come in.
    phone, sina_rx = order_throttled(gw, handset)
    unsubscribe(phone)
    # Before: CANCEL at once, then the ORDER's retry, and the SP believed A subscribed.
    assert events(sina_rx, 2) == ["ORDER", "CANCEL"]


def test_a_cancel_does_not_go_out_while_the_sp_has_not_answered_the_order(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    sina_rx.answering = False
    order_and_confirm(phone)
    assert events(sina_rx, 1) == ["ORDER"]  # held unanswered: in the gateway's window

    unsubscribe(phone)
    sina_rx.answer_held(ESME_RTHROTTLED)
    sina_rx.answering = True
    # Before: the CANCEL went out in the window behind the ORDER, was taken, and the ORDER came back on its retry.
    assert events(sina_rx, 2) == ["ORDER", "CANCEL"]


def test_a_notice_the_sp_refuses_for_good_does_not_hold_up_the_next(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    sina_rx.answers.append(ESME_RX_P_APPN)
    order_and_confirm(phone)
    assert events(sina_rx, 1) == ["ORDER"]  # undeliverable: never sent again

    unsubscribe(phone)
    assert events(sina_rx, 1, timeout=5.0) == ["CANCEL"]


def test_notices_held_behind_a_retry_go_out_once_when_the_sp_binds_again(gw, handset):
    phone, sina_rx = order_throttled(gw, handset)
    unsubscribe(phone)  # the CANCEL waits behind the ORDER
    sina_rx.close()  # the SP goes away before the retry: both wait in the store
    again = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert events(again, 2) == ["ORDER", "CANCEL"]
    again.expect_none(3.0, lambda p: p.source_addr == A.encode())  # each once


def test_notices_behind_one_unanswered_when_the_sp_went_away_go_out_once_in_order(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    sina_rx.answering = False
    order_and_confirm(phone)
    assert events(sina_rx, 1) == ["ORDER"]  # unanswered, in the gateway's window
    unsubscribe(phone)  # the CANCEL waits behind it
    sina_rx.close()  # gone without answering: the ORDER goes back to the store with the CANCEL
    again = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert events(again, 2) == ["ORDER", "CANCEL"]
    again.expect_none(3.0, lambda p: p.source_addr == A.encode())  # each once


MOVED = "SP notices to an account no longer configured go to the SP of their service code now"
LEFT = "MTs wait for an account no longer configured: they go out only if it is configured again"


def test_notices_waiting_for_an_sp_account_renamed_reach_it_under_its_new_name_in_order(make_gateway, handset, tmp_path):
    """sina renamed sinacorp (its services with it) while A's ORDER notice waited: the ORDER stayed addressed to sina
    until it expired, and the CANCEL made after the restart reached sinacorp on its own."""
    clock, db = SimulatedClock(at(2026, 11, 10)), tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=gw, address_range=A)
    order_and_confirm(phone)  # sina has no bind: its ORDER notice waits in the store
    phone.close()
    gw.stop()
    with structlog.testing.capture_logs() as logs:
        gw = make_gateway(clock=clock, db_path=db, base=account_changed("sina", "sinacorp"))
    unsubscribe(handset(A, gw=gw, address_range=A))
    sinacorp = handset(SINA, system_id="sinacorp", password="sina", bind="rx", gw=gw)
    assert events(sinacorp, 2) == ["ORDER", "CANCEL"]
    [moved] = [line for line in logs if line["event"] == MOVED]
    assert (moved["account"], moved["service_code"], moved["sp"], moved["count"]) == ("sina", SINA, "sinacorp", 1)
    assert not [line for line in logs if line["event"] == LEFT]


def test_a_start_names_each_account_no_longer_configured_that_receipts_wait_for(make_gateway, handset, tmp_path):
    """The handset account renamed phones while receipts waited for it: they waited for ever (until their validity),
    and nothing said so."""
    clock, db = SimulatedClock(at(2026, 11, 10)), tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db)
    sender = handset(A, bind="tx", gw=gw)  # no receiving bind: the receipts wait for one of the account
    friend = handset(FRIEND, gw=gw, address_range=FRIEND)
    for n in range(2):
        assert sender.submit(FRIEND, f"hello {n}", registered_delivery=1).status == ESME_ROK
    friend.expect_many(2)
    sender.close()
    friend.close()
    gw.stop()
    with structlog.testing.capture_logs() as logs:
        make_gateway(clock=clock, db_path=db, base=account_changed("handset", "phones"))
    assert [(line["account"], line["count"]) for line in logs if line["event"] == LEFT] == [("handset", 2)]  # one line


def test_lines_about_a_receipt_name_the_subscriber_the_sps_mt_went_to_and_a_handsets_own(make_gateway, handset):
    """README "Logs are structlog": `msisdn` is an SP's addressee. The receipt of sina's MT to A, which goes to sina's
    service code, was logged with msisdn 1066916 ('mt retry', 'deliver_sm timed out', ...): a search for A
    missed it. A handset's receipt goes to its own subscriber, who stays the one named."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"retry_backoff": [0.1]})
    phone = handset(A, gw=gw, address_range=A)
    sina = handset(SINA, system_id="sina", gw=gw)
    order_and_confirm(phone)
    assert events(sina, 1) == ["ORDER"]
    friend = handset(FRIEND, gw=gw)
    with structlog.testing.capture_logs() as logs:
        content = sina.submit(A, "news", registered_delivery=1)
        assert phone.expect().source_addr == SINA.encode()
        sina.answers.append(ESME_RX_T_APPN)  # its receipt's first deliver_sm: retried
        _refused, again = sina.expect_many(2, predicate=is_receipt)  # (each copy reaches the inbox)
        assert receipt_fields(again)["id"] == content.message_id.decode()
        friendly = phone.submit(FRIEND, "hello", registered_delivery=1)
        friend.expect()
        phone.answers.append(ESME_RX_T_APPN)
        _refused, again = phone.expect_many(2, predicate=is_receipt)
        assert receipt_fields(again)["id"] == friendly.message_id.decode()
    retried = [(line["account"], line["msisdn"]) for line in logs if line["event"] == "mt retry"]
    assert retried == [("(gateway)", A), ("(gateway)", A)]  # sina's receipt; A's own


def test_an_sp_receiver_whose_address_range_leaves_its_service_code_out_gets_its_notices_and_receipts(gw, handset):
    """README "Receipts": they belong to the account that asked for them, whatever its binds' address_range (SMPP 3.4
    5.2.7: the addresses a bind serves, for MO). sina's receiver bound with `^1065` (not its 1066916), its content
    sent on a transmitter: its ORDER notice and its receipt waited in the store for a bind whose range served 1066916."""
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw, address_range="^1065")
    sina_tx = handset(SINA, system_id="sina", bind="tx", gw=gw)
    phone = handset(A, gw=gw, address_range=A)
    order_and_confirm(phone)
    assert events(sina_rx, 1) == ["ORDER"]
    content = sina_tx.submit(A, "news", registered_delivery=1)
    assert phone.expect().source_addr == SINA.encode()
    receipt = receipt_fields(sina_rx.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (content.message_id.decode(), "DELIVRD")


def test_a_receipt_waiting_for_an_sp_goes_to_its_receiver_whose_address_range_leaves_the_service_code_out(gw, handset):
    """The same receipt, made while sina had no receiving bind: the bind that comes reads it back from the store
    (before, such a bind's read covered only the numbers its range starts with, 1065)."""
    phone = handset(A, gw=gw, address_range=A)
    sina_tx = handset(SINA, system_id="sina", bind="tx", gw=gw)
    order_and_confirm(phone)  # its ORDER notice waits in the store too
    content = sina_tx.submit(A, "news", registered_delivery=1)
    assert phone.expect().source_addr == SINA.encode()
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw, address_range="^1065")
    assert events(sina_rx, 1) == ["ORDER"]
    receipt = receipt_fields(sina_rx.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (content.message_id.decode(), "DELIVRD")
