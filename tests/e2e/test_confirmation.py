"""Two-step confirmation (SPEC 3.2) over real TCP: smpplib handsets, SP binds, a simulated clock."""

from __future__ import annotations

import contextlib
import re
import sqlite3

import pytest
import structlog

from gateway import app as gateway_app
from gateway.clock import SimulatedClock
from gateway.store.records import MessageStatus, PendingOrder, Subscription
from handlers.base import Outcome
from handlers.sp_notice import parse_sp_notice
from tests.e2e.test_mo_retry import Failing
from tests.e2e.test_rating import send_survey, statuses
from tests.polling import eventually
from tests.services_support import account_changed, at, catalogue_without
from tests.smpp_handset import (
    ESME_ROK,
    Handset,
    is_receipt,
    receipt_fields,
    text,
    texts_from,
)

A, B = "8613800000001", "8613900000002"
OPERATOR, SINA, TENCENT = "10086", "1066916", "1066888"
SMSGW_RNOSUBSCRIPTION = 0x402
MESSAGE_STATE_REJECTED = 8
SEED_NOTICE = "您已定制试用新浪的头条新闻业务,信息费30元/月,由中国移动代收,客服电话9510567,当月免信息费,退订请发送0000到10086。"
REQUEST = re.compile(
    r"您正在定制(?P<sp>.+?)的(?P<service>.+?)业务，(?:信息费(?P<fee>\d+)元/月，由中国移动代收|免费（不收信息费）)，客服电话(?P<phone>\d+)。"
    r".*回复“(?P<code>Y\d+)”确认本笔.*?(?P<hours>\d+)小时内有效"
)
CODE_OF = {"TT": SINA, "TQ": SINA, "TL": TENCENT}


# ---------------------------------------------------------------- helpers
def replies(phone, count: int = 1, source: str = OPERATOR, timeout: float = 5.0) -> list[str]:
    return texts_from(phone, source, count, timeout)


def send(phone, to: str, message: str, **fields) -> str:
    """Submit and return the MO's message id (what the gateway keeps as the evidence of it)."""
    resp = phone.submit(to, message, **fields)
    assert resp.status == ESME_ROK
    return resp.message_id.decode()


def ask(phone, message: str, to: str = OPERATOR, source: str = OPERATOR) -> str:
    """Text `message` to `to`; the one reply the subscriber gets (from 10086 unless `source` says otherwise)."""
    send(phone, to, message)
    return replies(phone, source=source)[0]


def order(phone, keyword: str, to: str | None = None) -> re.Match:
    """Order by keyword to its SP's code: the confirmation from 10086, parsed."""
    request = REQUEST.search(ask(phone, keyword, to or CODE_OF[keyword]))
    assert request, "not a confirmation request"
    return request


def subscriptions(controller, msisdn: str) -> list[Subscription]:
    return controller.call(controller.gateway.store.find(Subscription, order_by="ordered_at", msisdn=msisdn))


def orders(controller, msisdn: str) -> list[PendingOrder]:
    return controller.call(controller.gateway.store.find(PendingOrder, order_by="created_at", msisdn=msisdn))


def content_status(sp, msisdn: str = A) -> int:
    return sp.submit(msisdn, "今日头条：SP content").status


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(at(2026, 11, 10))


@pytest.fixture
def gw(make_gateway, clock):
    return make_gateway(clock=clock)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("word", ["是", "Y", "1", "ｙ", "是。", "Y！"])  # punctuation as input methods add it
def test_keyword_order_confirmed_then_sp_content_flows(gw, handset, word):
    phone = handset(A, gw=gw, address_range=A)
    sina_tx = handset(SINA, system_id="sina", bind="tx", gw=gw)
    assert content_status(sina_tx) == SMSGW_RNOSUBSCRIPTION

    request = order(phone, "ＴＴ", SINA)
    assert request.groupdict() == {"sp": "新浪", "service": "头条新闻", "fee": "30", "phone": "9510567", "code": "Y1", "hours": "24"}
    assert content_status(sina_tx) == SMSGW_RNOSUBSCRIPTION  # not before the subscriber confirms
    confirm_id = send(phone, OPERATOR, word)
    assert replies(phone) == [SEED_NOTICE]

    [subscription] = subscriptions(gw, A)
    assert (subscription.status, subscription.service_id, subscription.channel) == ("active", "sina-news", "sms")
    assert subscription.confirmation == confirm_id  # the subscriber's own MO is the record
    assert content_status(sina_tx) == ESME_ROK
    assert text(phone.expect(predicate=lambda p: p.source_addr == SINA.encode())) == "今日头条：SP content"

    # The SP had no receiving bind when the order went through: the notice waited for one.
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    notice = sina_rx.expect(predicate=lambda p: p.source_addr == A.encode())
    fields = parse_sp_notice(text(notice))
    assert (notice.destination_addr, fields["event"], fields["service"], fields["keyword"], fields["msisdn"]) == (
        SINA.encode(), "ORDER", "sina-news", "TT", A
    )  # fmt: skip


def subscribed_off_line(gw, handset) -> Handset:
    """B subscribed to sina-news, then off line (what the SP sends B waits in the store); Sina's bind."""
    phone = handset(B, gw=gw, address_range=B)
    order(phone, "TT")
    assert ask(phone, "Y").startswith("您已定制试用新浪的头条新闻业务")
    phone.close()
    return handset(SINA, system_id="sina", gw=gw)


def test_sp_content_waiting_when_the_subscriber_unsubscribes_is_not_delivered(gw, handset, clock):
    sina = subscribed_off_line(gw, handset)
    waiting = sina.submit(B, "今日头条：waiting", registered_delivery=1)
    scheduled = sina.submit(B, "明日头条：scheduled", registered_delivery=1, schedule_delivery_time="000000010000000R")
    assert (waiting.status, scheduled.status) == (ESME_ROK, ESME_ROK)
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe(B, [subscription.id], "web"))  # takes effect at once (SPEC 3.1)
    phone = handset(B, gw=gw, address_range=B)
    assert replies(phone)[0].startswith("您已成功退订新浪公司提供的头条新闻业务")
    clock.advance(3601)  # the scheduled one falls due
    receipts = [receipt_fields(sina.expect(predicate=is_receipt)) for _ in range(2)]
    assert sorted((r["id"], r["stat"], r["err"]) for r in receipts) == sorted(
        (resp.message_id.decode(), "REJECTD", "402") for resp in (waiting, scheduled))
    phone.expect_none(0.3, lambda p: p.source_addr == SINA.encode())
    # query_sm's error_code is one octet: 42 stands for err:402 (it said 146, 402 & 0xFF)
    for resp in (waiting, scheduled):
        answer = sina.query(resp.message_id)
        assert (answer.message_state, answer.error_code) == (MESSAGE_STATE_REJECTED, 42)


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
def test_sp_content_waiting_when_the_subscriber_unsubscribes_and_orders_again_at_once_is_not_delivered(
    make_gateway, handset, clock, tmp_path, monkeypatch, restart
):
    """Accepted while B was subscribed and off line, it went out once B bound if B unsubscribed and ordered the same
    service again before the next sweep: the guards asked only whether a subscription was active now. Ordering again
    does not bring back what the unsubscription stopped, also when it waited through a restart before both. (The
    sweep, which ends it first when it runs between the two, is kept out of the race.)"""
    monkeypatch.setattr(gateway_app, "TICK_SECONDS", 3600.0)
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db)
    sina = subscribed_off_line(gw, handset)
    waiting = sina.submit(B, "今日头条：waiting", registered_delivery=1)
    assert waiting.status == ESME_ROK
    if restart:
        gw.stop()
        gw = make_gateway(clock=clock, db_path=db)
        sina = handset(SINA, system_id="sina", gw=gw)
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe(B, [subscription.id], "web"))
    gw.call(gw.gateway.services.request_order(B, "sina-news", "web"))
    send(handset(B, bind="tx", gw=gw), OPERATOR, "Y")  # B's MOs only: what goes to B keeps waiting
    assert eventually(lambda: sorted(s.status for s in subscriptions(gw, B)) == ["active", "cancelled"])
    phone = handset(B, gw=gw, address_range=B)
    assert content_status(sina, B) == ESME_ROK  # subscribed again: what the SP sends now goes out, and only that
    assert text(phone.expect(predicate=lambda p: p.source_addr == SINA.encode())) == "今日头条：SP content"
    receipt = receipt_fields(sina.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"], receipt["err"]) == (waiting.message_id.decode(), "REJECTD", "402")


def test_sp_content_waiting_through_a_restart_goes_out_while_another_service_on_its_code_stayed_active(
    make_gateway, handset, clock, tmp_path, monkeypatch
):
    """B ordered sina-news, Sina's content waited, B ordered sina-weather (the same code) and cancelled sina-news:
    still subscribed on 1066916 throughout. After a restart the content was refused REJECTD err:402 ("unsubscribed
    ... ordered again since"): the guards took the period on the code to begin with weather, the oldest subscription
    still active (regression review 2)."""
    monkeypatch.setattr(gateway_app, "TICK_SECONDS", 3600.0)
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db)
    sina = subscribed_off_line(gw, handset)
    waiting = sina.submit(B, "今日头条：waiting", registered_delivery=1)
    gw.call(gw.gateway.services.request_order(B, "sina-weather", "web"))
    send(handset(B, bind="tx", gw=gw), OPERATOR, "Y")
    news = next(s for s in subscriptions(gw, B) if s.service_id == "sina-news")
    gw.call(gw.gateway.services.unsubscribe(B, [news.id], "web"))
    gw.stop()
    gw = make_gateway(clock=clock, db_path=db)
    sina, phone = handset(SINA, system_id="sina", gw=gw), handset(B, gw=gw, address_range=B)
    assert text(phone.expect(predicate=lambda p: p.source_addr == SINA.encode())) == "今日头条：waiting"
    receipt = receipt_fields(sina.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (waiting.message_id.decode(), "DELIVRD")


def test_sp_content_waiting_for_an_off_line_subscriber_ends_at_the_unsubscription_and_frees_their_queue(make_gateway, handset, clock):
    """It counted against the subscriber's queue until they bound again: with max_queued_per_subscriber of it
    waiting, everyone else's texts to them were refused ESME_RMSGQFUL though none of it could ever go out."""
    gw = make_gateway(clock=clock, gateway={"max_queued_per_subscriber": 3})
    sina, friend = subscribed_off_line(gw, handset), handset(A, gw=gw, address_range=A)
    waiting = [sina.submit(B, f"今日头条 {n}", registered_delivery=1) for n in range(3)]
    assert {resp.status for resp in waiting} == {ESME_ROK}
    assert friend.submit(B, "hello").status != ESME_ROK  # ESME_RMSGQFUL
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe(B, [subscription.id], "web"))
    receipts = [receipt_fields(sina.expect(predicate=is_receipt)) for _ in waiting]  # B still off line
    assert sorted((r["id"], r["stat"], r["err"]) for r in receipts) == sorted(
        (resp.message_id.decode(), "REJECTD", "402") for resp in waiting)
    assert friend.submit(B, "hello").status == ESME_ROK  # next to the unsubscription's notice


def test_sp_content_queued_on_the_subscribers_bind_when_they_unsubscribe_is_not_delivered(make_gateway, handset, clock):
    """Queued behind a deliver_sm the handset has not answered yet (window 1), content escaped the
    unsubscription: it went out afterwards with DELIVRD receipts (SPEC 3.1: at once)."""
    gw = make_gateway(clock=clock, gateway={"window": 1})
    phone = handset(B, gw=gw, address_range=B)
    order(phone, "TT")
    assert ask(phone, "Y").startswith("您已定制试用新浪的头条新闻业务")
    phone.answering = False
    sina = handset(SINA, system_id="sina", gw=gw)
    sent = [sina.submit(B, f"今日头条 {n}", registered_delivery=1) for n in range(3)]
    assert {resp.status for resp in sent} == {ESME_ROK}
    assert text(phone.expect(predicate=lambda p: p.source_addr == SINA.encode())) == "今日头条 0"  # in flight
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe(B, [subscription.id], "web"))
    phone.answering = True
    phone.answer_held()
    assert replies(phone)[0].startswith("您已成功退订新浪公司提供的头条新闻业务")
    receipts = [receipt_fields(sina.expect(predicate=is_receipt)) for _ in range(3)]
    assert sorted((r["id"], r["stat"], r["err"]) for r in receipts) == sorted(
        [(sent[0].message_id.decode(), "DELIVRD", "000")]
        + [(resp.message_id.decode(), "REJECTD", "402") for resp in sent[1:]])
    phone.expect_none(0.3, lambda p: p.source_addr == SINA.encode())


def test_sp_content_to_a_subscriber_off_line_until_its_validity_ends_after_unsubscribing_ends_rejected(gw, handset, clock):
    """It ended EXPIRED (err:000), as if nothing but the time had stopped it."""
    phone = handset(B, gw=gw, address_range=B)
    order(phone, "TT")
    assert ask(phone, "Y").startswith("您已定制试用新浪的头条新闻业务")
    phone.close()
    sina = handset(SINA, system_id="sina", gw=gw)
    waiting = sina.submit(B, "今日头条：waiting", registered_delivery=1, validity_period="000000000100000R")
    assert waiting.status == ESME_ROK
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe(B, [subscription.id], "web"))
    clock.advance(61)
    receipt = receipt_fields(sina.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"], receipt["err"]) == (waiting.message_id.decode(), "REJECTD", "402")


def test_sp_content_waiting_when_its_account_is_removed_is_not_delivered_after_the_unsubscription(make_gateway, handset, clock, tmp_path):
    """The SP account tencent was taken out of the config (with its service) while its content waited for an off line
    subscriber, who then unsubscribed: it went out all the same, the guards taking an account no longer configured
    for no SP's. Sent from a service code, it is an SP's content: it ends REJECTED err:402 as before the change."""
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db)
    phone = handset(B, gw=gw, address_range=B)
    order(phone, "TL")
    assert ask(phone, "Y").startswith("您已定制")
    phone.close()
    tencent = handset(TENCENT, system_id="tencent", bind="tx", gw=gw)
    waiting = tencent.submit(B, "图铃：waiting", registered_delivery=1)
    assert waiting.status == ESME_ROK
    tencent.close()
    gw.stop()
    gw = make_gateway(clock=clock, db_path=db, base=account_changed("tencent"))
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe(B, [subscription.id], "web"))
    phone = handset(B, gw=gw, address_range=B)
    assert replies(phone)[0].startswith("您已成功退订")
    message_id = waiting.message_id.decode()
    assert eventually(lambda: gw.call(gw.gateway.store.get(message_id)).status is MessageStatus.REJECTED)
    assert gw.call(gw.gateway.store.get(message_id)).error == 402
    phone.expect_none(0.3, lambda p: p.source_addr == TENCENT.encode())


def test_unknown_keyword_then_decline(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    listing = ask(phone, "TX", SINA, source=SINA)  # answered on the code it was sent to
    assert dict(re.findall(r"(\w+)：新浪的(\w+)（", listing)) == {"TT": "头条新闻", "TQ": "天气预报"}
    order(phone, "TT")
    assert ask(phone, "否") == "您未定制新浪的头条新闻业务，不会收取信息费。"
    assert subscriptions(gw, A) == []
    assert [o.status for o in orders(gw, A)] == ["declined"]
    assert content_status(handset(SINA, system_id="sina", bind="tx", gw=gw)) == SMSGW_RNOSUBSCRIPTION


@pytest.mark.parametrize("command, answer", [("帮助", "发送0000查询并退订"), ("0000", "您目前没有定制任何梦网业务"),
                                             ("00000", "您目前没有定制任何梦网业务")])  # fmt: skip
def test_a_10086_command_while_an_order_waits_is_answered_as_such_and_the_order_still_waits(gw, handset, command, answer):
    """README: any other text declines, but 10086's own commands are answered and the order keeps waiting."""
    phone = handset(A, gw=gw, address_range=A)
    order(phone, "TT")
    assert answer in ask(phone, command)
    assert [o.status for o in orders(gw, A)] == ["pending"]
    assert ask(phone, "Y") == SEED_NOTICE
    assert [s.service_id for s in subscriptions(gw, A)] == ["sina-news"]


def test_any_other_text_while_an_order_waits_declines_it(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    order(phone, "TT")
    assert ask(phone, "hello") == "您未定制新浪的头条新闻业务，不会收取信息费。"
    assert [o.status for o in orders(gw, A)] == ["declined"]


def test_confirmation_expires_on_the_simulated_clock(gw, handset, clock):
    phone = handset(A, gw=gw, address_range=A)
    order(phone, "TT")
    clock.advance(24 * 3600 + 1)
    late = ask(phone, "Y")
    assert late.startswith("您定制新浪的头条新闻业务的确认已超过有效期") and "重新发送TT到1066916" in late
    assert subscriptions(gw, A) == []
    assert [o.status for o in orders(gw, A)] == ["expired"]
    assert "已超过有效期" in ask(phone, "是")
    assert subscriptions(gw, A) == []


def order_statuses(controller, msisdn: str) -> dict[str, str]:
    return {o.service_id: o.status for o in orders(controller, msisdn)}


def test_a_confirmation_nobody_answers_is_marked_expired_by_the_gateway_and_nobody_is_told(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 0.2})
    phone = handset(A, gw=gw, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    order(phone, "TT"), order(phone, "TL")
    clock.advance(3600)
    order(phone, "TQ")
    clock.advance(23 * 3600 + 1)  # TT's and TL's 24 h are over, TQ's are not
    assert eventually(lambda: order_statuses(gw, A) == {
        "sina-news": "expired", "tencent-ringtones": "expired", "sina-weather": "pending"})  # fmt: skip
    phone.expect_none(0.3)  # silence declined them: no text, and no notice to an SP that never had the order
    sina_rx.expect_none(0.1)
    assert ask(phone, "Y").startswith("您已定制试用新浪的天气预报业务")  # the one still waiting is the only one
    clock.advance(3600)  # its validity over too: answered, it is not marked expired (a day later it is deleted)
    gw.call(gw.gateway.services.expire_orders())
    assert order_statuses(gw, A)["sina-weather"] == "confirmed"
    clock.advance(3 * 86400)
    assert [s.service_id for s in subscriptions(gw, A)] == ["sina-weather"]


def ordered_then_restarted(make_gateway, handset, clock, db, down: float):
    """A orders TT; the gateway stops for `down` seconds of the clock and starts again on the same database."""
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    order(phone, "TT")
    phone.close()
    first.stop()
    clock.advance(down)
    return make_gateway(clock=clock, db_path=db)


def test_a_confirmation_that_lapsed_while_the_gateway_was_down_is_marked_expired_at_start(make_gateway, handset, clock, tmp_path):
    # Down for a day and an hour: 24 h validity.
    second = ordered_then_restarted(make_gateway, handset, clock, tmp_path / "lapsed.db", down=25 * 3600)
    assert eventually(lambda: order_statuses(second, A) == {"sina-news": "expired"})
    phone = handset(A, gw=second, address_range=A)
    assert ask(phone, "Y").startswith("您定制新浪的头条新闻业务的确认已超过有效期")
    assert subscriptions(second, A) == []


def test_a_failure_marking_lapsed_confirmations_expired_is_logged_and_a_later_check_marks_them(
    make_gateway, handset, clock, tmp_path
):
    """The job check's write marking lapsed confirmations expired fails (the store refuses the orders' writes, as a
    damaged page would): an error line with its traceback, the lapsed surveys closed all the same by that check, and
    the confirmations marked expired by the first check once the store takes them (coverage review: no test ran it)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 0.2})
    order(handset(A, gw=gw, address_range=A), "TT")
    send_survey(gw, handset(B, gw=gw, address_range=B))
    with structlog.testing.capture_logs() as logs:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as outside:
            for write in ("INSERT", "UPDATE"):
                outside.execute(f"CREATE TRIGGER refused_{write} BEFORE {write} ON pending_orders BEGIN "
                                "SELECT RAISE(ABORT, 'refused'); END")  # fmt: skip
            clock.advance(24 * 3600 + 1)  # both lapsed
            assert eventually(lambda: any(line["event"] == "expiring lapsed confirmations failed" for line in logs))
            assert eventually(lambda: statuses(gw, B) == {B: ("expired", None, "")})  # the surveys do not wait for it
            assert order_statuses(gw, A) == {"sina-news": "pending"}
            for write in ("INSERT", "UPDATE"):
                outside.execute(f"DROP TRIGGER refused_{write}")
        assert eventually(lambda: order_statuses(gw, A) == {"sina-news": "expired"})
    failed = next(line for line in logs if line["event"] == "expiring lapsed confirmations failed")
    assert failed["log_level"] == "error" and "exc_info" in failed


def test_a_confirmation_sent_in_time_and_handled_after_its_order_was_marked_expired_still_confirms(
    make_gateway, handset, clock
):
    """The Y's first try fails (injected once into 10086's handler); the order lapses and the gateway marks it
    expired before the retry: the retry still confirms it, as the Y was received within the validity."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600, "mo_retry_backoff": [2.0]})
    phone = handset(A, gw=gw, address_range=A)
    order(phone, "TT")
    operator = gw.gateway.mo.short_codes[OPERATOR]
    operator.handler = failing = Failing(operator.handler, times=1)
    clock.advance(24 * 3600 - 1)
    send(phone, OPERATOR, "Y")
    assert failing.called.wait(5)
    clock.advance(2)
    assert gw.call(gw.gateway.services.expire_orders()) == 1
    assert failing.calls == 1, "the retry came before the order was marked expired"
    assert replies(phone) == [SEED_NOTICE]
    assert [s.status for s in subscriptions(gw, A)] == ["active"]
    assert order_statuses(gw, A) == {"sina-news": "confirmed"}


def restarted_without(make_gateway, clock, first, db, *service_ids: str):
    """`first` (on `db`) stops; a gateway starts on the same database with these services withdrawn from its catalogue."""
    first.stop()
    return make_gateway(clock=clock, db_path=db, catalogue=catalogue_without(*service_ids))


def test_a_confirmation_for_a_service_withdrawn_while_it_waited_counts_as_waiting_nowhere(make_gateway, handset, clock, tmp_path):
    """TT's (Y1) and TL's (Y2) confirmations wait; TL leaves the catalogue. A bare Y was answered "您有2笔业务定制待确认"
    listing only TT, and confirmed nothing: TT is the only order still waiting."""
    db = tmp_path / "withdrawn.db"
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    assert [order(phone, kw)["code"] for kw in ("TT", "TL")] == ["Y1", "Y2"]
    phone.close()
    second = restarted_without(make_gateway, clock, first, db, "tencent-ringtones")
    phone = handset(A, gw=second, address_range=A)
    assert ask(phone, "Y") == SEED_NOTICE
    assert [s.service_id for s in subscriptions(second, A)] == ["sina-news"]
    assert order_statuses(second, A) == {"sina-news": "confirmed", "tencent-ringtones": "expired"}
    assert ask(phone, "Y2").startswith("您目前没有待确认的业务定制。")  # its code names nothing waiting either
    assert [s.service_id for s in subscriptions(second, A)] == ["sina-news"]


def test_a_confirmation_for_a_withdrawn_service_does_not_outrank_the_00000_question_before_it(make_gateway, handset, clock, tmp_path):
    """00000's question, then TL's confirmation; TL leaves the catalogue. The `是` the question asks for was taken as
    the yes to TL's confirmation ("您目前没有待确认的业务定制"), nothing unsubscribed."""
    db = tmp_path / "withdrawn.db"
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    order(phone, "TT")
    assert ask(phone, "Y") == SEED_NOTICE
    assert ask(phone, "00000").startswith("您共定制了1项业务")
    order(phone, "TL")
    phone.close()
    second = restarted_without(make_gateway, clock, first, db, "tencent-ringtones")
    phone = handset(A, gw=second, address_range=A)
    assert ask(phone, "是") == "您已成功退订新浪公司提供的头条新闻业务，下月起不再收取信息费。"
    assert [s.status for s in subscriptions(second, A)] == ["cancelled"]


def catalogue_with_fee(service_id: str, fee: float) -> list[dict]:
    """The built-in [[catalogue]] with this service's fee changed (yuan a month)."""
    return [dict(entry, fee=fee) if entry["id"] == service_id else entry for entry in catalogue_without()]


def test_a_confirmation_stating_a_fee_changed_since_subscribes_nobody_and_is_asked_again(make_gateway, handset, clock, tmp_path):
    """TT's confirmation said 30 yuan a month; the gateway starts again with its fee at 50. The Y subscribed at 50
    ("您已定制试用新浪的头条新闻业务,信息费50元/月"), which the subscriber was never shown, and the 1st charged 5000 fen."""
    db = tmp_path / "fee.db"
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    assert order(phone, "TT")["fee"] == "30"
    phone.close()
    first.stop()
    second = make_gateway(clock=clock, db_path=db, catalogue=catalogue_with_fee("sina-news", 50))
    phone = handset(A, gw=second, address_range=A)
    again = ask(phone, "Y")
    assert again.startswith("中国移动提醒您：新浪的头条新闻业务的资费已由信息费30元/月调整为信息费50元/月（由中国移动代收，客服电话9510567），"
                            "业务未按原资费定制。按新资费定制请回复"), again
    assert "回复“Y1”确认本笔" in again and again.endswith("24小时内有效。")
    assert subscriptions(second, A) == []
    assert [(o.status, o.fee, o.reply_code) for o in orders(second, A)] == [("expired", 3000, "Y1"), ("pending", 5000, "Y1")]
    assert ask(phone, "Y") == SEED_NOTICE.replace("信息费30元", "信息费50元")  # agreed to what it was told
    assert [s.status for s in subscriptions(second, A)] == ["active"]


@pytest.mark.parametrize(("before", "after", "told"), [
    (30, 0, "中国移动提醒您：新浪的头条新闻业务的资费已由信息费30元/月调整为免费（不收信息费，客服电话9510567），业务未按原资费定制。"),
    (0, 30, "中国移动提醒您：新浪的头条新闻业务的资费已由免费调整为信息费30元/月（由中国移动代收，客服电话9510567），业务未按原资费定制。"),
])
def test_a_confirmation_waiting_as_a_service_becomes_free_or_paid_states_each_price_as_the_texts_do(
    make_gateway, handset, clock, tmp_path, before, after, told
):  # fmt: skip
    """A service made free while its order waited was asked again "信息费已由30元/月调整为0元/月（由中国移动代收…）":
    a charge of 0 collected by the operator; one free before, "由0元/月调整为…"."""
    db = tmp_path / "fee.db"
    first = make_gateway(clock=clock, db_path=db, catalogue=catalogue_with_fee("sina-news", before))
    phone = handset(A, gw=first, address_range=A)
    order(phone, "TT")
    phone.close()
    first.stop()
    second = make_gateway(clock=clock, db_path=db, catalogue=catalogue_with_fee("sina-news", after))
    phone = handset(A, gw=second, address_range=A)
    assert ask(phone, "Y").startswith(told)
    assert ask(phone, "Y").startswith("您已定制试用" if after else "您已定制新浪的头条新闻业务,免费")  # what it was told
    assert [s.fee for s in subscriptions(second, A)] == [after * 100]


def test_a_free_service_is_offered_ordered_and_listed_as_free(make_gateway, handset, clock):
    """TT at a fee of 0 (a free service: never charged or reminded) was offered "信息费0元/月，由中国移动代收", ordered
    as a trial "当月免信息费" of a service that costs nothing, and listed by 0000 as "0元/月" ("0 yuan/month" in
    English)."""
    gw = make_gateway(clock=clock, catalogue=catalogue_with_fee("sina-news", 0))
    a, b = (handset(n, gw=gw, address_range=n) for n in (A, B))
    assert ask(a, "TT", SINA) == ("中国移动提醒您：您正在定制新浪的头条新闻业务，免费（不收信息费），客服电话9510567。确认定制请回复"
                                  "“是”、“Y”、“YES”或“1”（有多笔待确认时回复“Y1”确认本笔），回复其他内容或不回复则不定制。24小时内有效。")
    order(a, "TQ")
    listed = ask(a, "Y")
    assert "回复Y1定制新浪的头条新闻（免费）；回复Y2定制新浪的天气预报（信息费5元/月）；" in listed, listed
    assert ask(a, "Y1") == "您已定制新浪的头条新闻业务,免费(不收信息费),客服电话9510567,退订请发送0000到10086。"
    assert ask(a, "Y2").startswith("您已定制试用新浪的天气预报业务,信息费5元/月,")  # a paid one: as before
    assert ask(a, "TT", SINA) == "您已定制新浪的头条新闻业务（免费），无需再次定制。查询或退订请发送0000到10086。"
    assert ask(a, "0000").splitlines()[1:3] == ["1.新浪提供的头条新闻，免费，服务代码1066916；",
                                                "2.新浪提供的天气预报，信息费5元/月，服务代码1066916；"]  # fmt: skip
    assert ask(b, "EN") == "Your messages will now be in English."
    assert ask(b, "TX", SINA, source=SINA).startswith("1066916 did not recognise your message. Services you can order: TT: "
                                                      "Headline News from Sina (free); TQ: Weather Forecast from Sina (5 "
                                                      "yuan/month); ")  # fmt: skip
    assert ask(b, "TT", SINA).startswith("China Mobile: you are ordering Headline News from Sina, free of charge (no "
                                         "information fee), customer service 9510567. Reply Y, YES or 1 to confirm")
    assert ask(b, "Y") == ("You have ordered Headline News from Sina, free of charge (no information fee), customer "
                           "service 9510567. To unsubscribe, text 0000 to 10086.")
    assert ask(b, "0000").splitlines()[1] == "1. Sina Headline News, free, service code 1066916;"


def test_the_list_of_waiting_orders_states_the_fee_each_code_confirms(make_gateway, handset, clock, tmp_path):
    """The list quoted the catalogue's new fee (50) for Y1, whose order keeps its confirmation's (30): the Y1 it asked
    for was then told the fee had changed and nothing was ordered."""
    db = tmp_path / "fee.db"
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    order(phone, "TT")
    order(phone, "TQ")
    phone.close()
    first.stop()
    second = make_gateway(clock=clock, db_path=db, catalogue=catalogue_with_fee("sina-news", 50))
    phone = handset(A, gw=second, address_range=A)
    listed = ask(phone, "Y")
    assert "回复Y1定制新浪的头条新闻（信息费30元/月）" in listed, listed
    assert ask(phone, "Y1").startswith("中国移动提醒您：新浪的头条新闻业务的资费已由信息费30元/月调整为信息费50元/月")  # as the list said


def test_an_order_kept_before_orders_kept_their_fee_is_confirmed_at_the_catalogues(gw, handset, clock):
    now = clock.now()
    legacy = PendingOrder("order-legacy", A, "sina-news", "sms", "Y1", now, now + 3600, "pending")  # fee: None
    gw.call(gw.gateway.services.commit(Outcome().put(legacy)))
    assert ask(handset(A, gw=gw, address_range=A), "Y") == SEED_NOTICE


def test_a_confirmation_for_a_service_held_states_the_fee_the_subscription_pays(make_gateway, handset, clock):
    """Confirmed at 30, TT's fee now 50: a Y again (its order confirmed) and a Y to an order of TT made meanwhile (here
    one kept before orders kept their fee) are answered "您已定制…无需再次定制" with the 30 it pays, as an order of TT
    by keyword is, not the catalogue's 50."""
    gw = make_gateway(clock=clock, catalogue=catalogue_with_fee("sina-news", 50))
    now = clock.now()
    held = Subscription("sub-held", A, "sina-news", "active", now - 3600, "sms", "mo-1", at(2026, 12, 1), fee=3000)
    confirmed = PendingOrder("order-held", A, "sina-news", "sms", "Y1", now - 7200, now + 79200, "confirmed", fee=3000)
    gw.call(gw.gateway.services.commit(Outcome().put(held, confirmed)))
    phone = handset(A, gw=gw, address_range=A)
    held_at_30 = "您已定制新浪的头条新闻业务（信息费30元/月），无需再次定制"
    assert ask(phone, "Y").startswith(held_at_30)
    meanwhile = PendingOrder("order-web", A, "sina-news", "web", "Y1", now, now + 86400, "pending")  # fee: None
    gw.call(gw.gateway.services.commit(Outcome().put(meanwhile)))
    assert ask(phone, "Y").startswith(held_at_30)
    assert [o.status for o in orders(gw, A)] == ["confirmed", "confirmed"] and len(subscriptions(gw, A)) == 1


def test_retransmitted_confirmation_confirms_once_and_already_subscribed(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    order(phone, "TT")
    first = send(phone, OPERATOR, "Y", user_message_reference=7)
    assert send(phone, OPERATOR, "Y", user_message_reference=7) == first  # recognised as the same MO
    assert replies(phone) == [SEED_NOTICE]
    phone.expect_none(1.0, lambda p: p.source_addr == OPERATOR.encode())
    assert len(subscriptions(gw, A)) == 1

    assert ask(phone, "Y").startswith("您已定制新浪的头条新闻业务（信息费30元/月），无需再次定制")
    assert ask(phone, "TT", SINA).startswith("您已定制新浪的头条新闻业务")
    assert len(subscriptions(gw, A)) == 1 and len(orders(gw, A)) == 1


def test_two_pending_confirmations_each_answered_by_its_code(gw, handset):
    phone = handset(A, gw=gw, address_range=A)
    assert [order(phone, kw)["code"] for kw in ("TT", "TL")] == ["Y1", "Y2"]
    listing = ask(phone, "Y")
    assert dict(re.findall(r"回复(Y\d)定制(\S+?)（", listing)) == {"Y1": "新浪的头条新闻", "Y2": "腾讯公司的精品图铃"}
    assert subscriptions(gw, A) == []
    assert ask(phone, "Y2").startswith("您已定制试用腾讯公司的精品图铃业务,信息费10元/月")
    assert [s.service_id for s in subscriptions(gw, A)] == ["tencent-ringtones"]
    assert ask(phone, "Y1") == SEED_NOTICE
    assert [s.service_id for s in subscriptions(gw, A)] == ["tencent-ringtones", "sina-news"]


def test_a_reply_code_written_with_a_space_or_after_the_chinese_yes_confirms_just_its_order(gw, handset):
    """"Y 1" or "是2" to two waiting orders declined both (the space, the 是 made it no reply code)."""
    phone = handset(A, gw=gw, address_range=A)
    assert [order(phone, kw)["code"] for kw in ("TT", "TL")] == ["Y1", "Y2"]
    assert ask(phone, "是 2").startswith("您已定制试用腾讯公司的精品图铃业务")
    assert order_statuses(gw, A) == {"sina-news": "pending", "tencent-ringtones": "confirmed"}
    assert ask(phone, "y 1") == SEED_NOTICE
    assert [s.service_id for s in subscriptions(gw, A)] == ["tencent-ringtones", "sina-news"]


def test_a_new_order_takes_the_lowest_reply_code_free_not_one_still_waiting(gw, handset):
    """TT (Y1) confirmed, TQ (Y2) still waiting: TL's confirmation asked for Y2 as well, and the subscriber's Y2 then
    named two orders (TQ's, which they had not meant to confirm, or TL's)."""
    phone = handset(A, gw=gw, address_range=A)
    assert [order(phone, kw)["code"] for kw in ("TT", "TQ")] == ["Y1", "Y2"]
    assert ask(phone, "Y1") == SEED_NOTICE
    assert order(phone, "TL")["code"] == "Y1"  # freed by TT's confirmation; Y2 is still TQ's
    assert ask(phone, "Y1").startswith("您已定制试用腾讯公司的精品图铃业务")
    assert [s.service_id for s in subscriptions(gw, A)] == ["sina-news", "tencent-ringtones"]
    assert order_statuses(gw, A) == {"sina-news": "confirmed", "sina-weather": "pending", "tencent-ringtones": "confirmed"}


def test_order_requested_over_the_api(gw, handset):
    phone = handset(B, gw=gw, address_range=B)
    gw.call(gw.gateway.services.request_order(B, "sina-weather", "web"))
    request = REQUEST.search(replies(phone)[0])
    assert request and (request["service"], request["fee"]) == ("天气预报", "5")
    assert ask(phone, "1").startswith("您已定制试用新浪的天气预报业务,信息费5元/月")
    [subscription] = subscriptions(gw, B)
    assert subscription.channel == "web"
    with pytest.raises(ValueError, match="unknown service 'sina-sports'"):
        gw.call(gw.gateway.services.request_order(B, "sina-sports", "web"))
    for not_text in (["sina-news"], None, 1):  # a list was a TypeError (unhashable) from the catalogue's lookup
        with pytest.raises(ValueError, match=r"^service_id .*: expected a catalogue service id as a string"):
            gw.call(gw.gateway.services.request_order(B, not_text, "web"))
    assert [o.service_id for o in orders(gw, B)] == ["sina-weather"]


def test_a_confirmation_or_survey_is_not_delivered_once_it_can_no_longer_be_answered(gw, handset, clock):
    """Asked for while the handset was off: it came back after 25 h, was told "reply Y, valid 24 h", replied Y at
    once and was told the order had expired (the survey: "late"). The prompts now wait only their own validity."""
    services = gw.gateway.services
    for msisdn in (A, B):
        gw.call(services.request_order(msisdn, "sina-weather", "web"))
        gw.call(services.request_survey(msisdn, "hotline", "007"))
    clock.advance(23 * 3600)
    b = handset(B, gw=gw, address_range=B)
    assert REQUEST.search(replies(b)[0]) and replies(b, source="10086700")[0].startswith("【满意100】")
    clock.advance(2 * 3600)
    a = handset(A, gw=gw, address_range=A)
    a.expect_none(2.0)  # several sweeps past the 24 h: both expired unsent
    assert ask(a, "Y").startswith("您定制新浪的天气预报业务的确认已超过有效期")  # what a late Y is told


def test_the_api_takes_a_subscriber_number_in_any_form_and_refuses_what_is_none(gw, handset):
    phone = handset(B, gw=gw, address_range=B)
    gw.call(gw.gateway.services.request_order("+86 139-0000-0002", "sina-weather", "web"))
    assert REQUEST.search(replies(phone)[0])
    assert ask(phone, "1").startswith("您已定制试用新浪的天气预报业务")
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.unsubscribe("13900000002", [subscription.id]))  # national form: the same subscriber
    assert replies(phone)[0].startswith("您已成功退订新浪公司提供的天气预报业务")
    assert [s.status for s in subscriptions(gw, B)] == ["cancelled"]
    # Also numbers of a national number's 11 digits that no phone has: they were taken, and an order confirmation
    # and its MTs waited for ever for a landline, a foreign mobile written without its + and a made-up number (and an
    # international one a digit short).
    for junk in ("10086", "abc", "", "010-12345678", "85291234567", "12345678901", "86139000000"):
        for call in (gw.gateway.services.request_order(junk, "sina-news", "web"),
                     gw.gateway.services.unsubscribe(junk, [subscription.id])):  # fmt: skip
            with pytest.raises(ValueError, match="is not a subscriber number"):
                gw.call(call)
    for not_text in (8613900000002, None):  # an AttributeError before
        with pytest.raises(ValueError, match="expected a telephone number as a string"):
            gw.call(gw.gateway.services.request_order(not_text, "sina-news", "web"))
    assert orders(gw, B)[-1].status == "confirmed" and len(orders(gw, B)) == 1
    assert gw.call(gw.gateway.store.find(PendingOrder, msisdn__in=["8601012345678", "8685291234567"])) == []


def test_the_api_takes_a_subscriber_number_written_in_full_width(gw, handset):
    """`１３９０００００００２` (a Chinese input method's digits) was "is not a subscriber number" for every call that takes
    a subscriber, while the SMS path reads it."""
    phone = handset(B, gw=gw, address_range=B)
    gw.call(gw.gateway.services.request_order("１３９０００００００２", "sina-weather", "hotline"))
    assert REQUEST.search(replies(phone)[0])
    assert ask(phone, "1").startswith("您已定制试用新浪的天气预报业务")
    [subscription] = subscriptions(gw, B)
    gw.call(gw.gateway.services.request_survey("＋８６ １３９－００００－０００２", "hotline"))
    assert "请您对本次服务作出评价" in replies(phone, source="10086700")[0]
    gw.call(gw.gateway.services.unsubscribe("（＋８６）１３９０００００００２", [subscription.id], "hotline"))
    assert replies(phone)[0].startswith("您已成功退订新浪公司提供的天气预报业务")
    assert [s.status for s in subscriptions(gw, B)] == ["cancelled"]
    with pytest.raises(ValueError, match="is not a subscriber number"):  # folded, a full-width landline is none
        gw.call(gw.gateway.services.request_order("０１０－１２３４５６７８", "sina-news", "web"))


def test_an_api_unsubscription_given_ids_not_as_a_list_is_refused_and_cancels_nothing(gw, handset):
    """One id passed as a string was taken for a list of its characters: nothing cancelled, nothing said."""
    phone = handset(B, gw=gw, address_range=B)
    gw.call(gw.gateway.services.request_order(B, "sina-weather", "web"))
    replies(phone)
    ask(phone, "Y")
    [subscription] = subscriptions(gw, B)
    for wrong in (subscription.id, None, [7], []):
        with pytest.raises(ValueError, match="expected a non-empty list of subscription ids"):
            gw.call(gw.gateway.services.unsubscribe(B, wrong))
    assert [s.status for s in subscriptions(gw, B)] == ["active"]


def test_an_order_whose_channel_is_no_name_is_refused(gw, handset):
    """The channel goes into the SP's `key=value` notice: `web service=sina-weather msisdn=86139...` was taken,
    and the SP's parser read another service and another subscriber; None failed in the store."""
    phone = handset(B, gw=gw, address_range=B)
    for channel in ("web service=sina-weather msisdn=8613999999999", None, "", "网页"):
        with pytest.raises(ValueError, match=r"channel .*expected a name"):
            gw.call(gw.gateway.services.request_order(B, "sina-news", channel))
        with pytest.raises(ValueError, match=r"channel .*expected a name"):
            gw.call(gw.gateway.services.unsubscribe(B, [], channel))
    assert orders(gw, B) == []
    phone.expect_none(0.3)


def test_restart_between_confirmation_request_and_answer(make_gateway, handset, clock, tmp_path):
    second = ordered_then_restarted(make_gateway, handset, clock, tmp_path / "restart.db", down=3600)
    phone = handset(A, gw=second, address_range=A)
    assert ask(phone, "Y") == SEED_NOTICE
    [subscription] = subscriptions(second, A)
    assert subscription.status == "active"
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=second)
    assert parse_sp_notice(text(sina_rx.expect(predicate=lambda p: p.source_addr == A.encode())))["event"] == "ORDER"
