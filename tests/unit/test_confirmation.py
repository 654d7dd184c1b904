"""Two-step confirmation (SPEC 3.2) without a network: real store, frozen simulated clock."""

from __future__ import annotations

import re
from dataclasses import replace
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.records import PendingOrder, Subscriber, Subscription, SubscriptionEvent
from handlers import confirmation
from handlers.base import Inbound, Outcome
from handlers.customer_service import CustomerService
from handlers.order import OrderHandler
from handlers.sp_notice import parse_sp_notice
from tests.services_support import ServiceBench, at, service_bench

A, B = "8613800000001", "8613800000002"
OPERATOR, SINA, TENCENT = "10086", "1066916", "1066888"
DAY = 86400
SEED_NOTICE = "您已定制试用新浪的头条新闻业务,信息费30元/月,由中国移动代收,客服电话9510567,当月免信息费,退订请发送0000到10086。"
REQUEST = re.compile(
    r"您正在定制(?P<sp>.+?)的(?P<service>.+?)业务，信息费(?P<fee>\d+)元/月，由中国移动代收，客服电话(?P<phone>\d+)。"
    r"确认定制请回复“是”、“Y”、“YES”或“1”（有多笔待确认时回复“(?P<code>Y\d+)”确认本笔）.*?(?P<hours>\d+)小时内有效"
)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[ServiceBench]:
    bench = await service_bench(tmp_path)
    yield bench
    await bench.close()


async def say(bench: ServiceBench, msisdn: str, text: str, to: str = OPERATOR, mo_id: str | None = None) -> Outcome:
    """Text from a subscriber to a short code, committed as the gateway would (mo_id: the MO's id)."""
    handler = CustomerService() if to == OPERATOR else OrderHandler()
    inbound = Inbound(msisdn, to, text, bench.clock.now(), message_ids=(mo_id or bench.ctx.new_id(),))
    return await bench.commit(await handler.handle(inbound, bench.ctx))


def texts(outcome: Outcome, msisdn: str) -> list[str]:
    """What the subscriber was sent (all of it from 10086)."""
    assert all(r.source == OPERATOR for r in outcome.replies if r.to == msisdn)
    return [r.text for r in outcome.replies if r.to == msisdn]


def only_text(outcome: Outcome, msisdn: str) -> str:
    sent = texts(outcome, msisdn)
    assert len(sent) == 1, sent
    return sent[0]


async def subscriptions(bench: ServiceBench, msisdn: str) -> list[Subscription]:
    return await bench.store.find(Subscription, order_by="ordered_at", msisdn=msisdn)


async def orders(bench: ServiceBench, msisdn: str) -> list[PendingOrder]:
    return await bench.store.find(PendingOrder, order_by="created_at", msisdn=msisdn)


@pytest.mark.parametrize("word", ["是", "Y", "1", "ｙ", " yes "])
async def test_full_width_keyword_then_confirm_word_subscribes(bench: ServiceBench, word: str) -> None:
    request = REQUEST.search(only_text(await say(bench, A, "ＴＴ", SINA), A))
    assert request and request.groupdict() == {
        "sp": "新浪", "service": "头条新闻", "fee": "30", "phone": "9510567", "code": "Y1", "hours": "24"
    }  # fmt: skip
    [order] = await orders(bench, A)
    assert (order.status, order.service_id, order.expires_at) == ("pending", "sina-news", bench.clock.now() + DAY)
    assert await subscriptions(bench, A) == []

    bench.clock.advance(3600)
    done = await say(bench, A, word, mo_id="mo-confirm")
    assert only_text(done, A) == SEED_NOTICE
    assert done.completed
    [notice] = [r for r in done.replies if r.to_account == "sina"]
    assert (notice.to, notice.source) == (SINA, A)
    fields = parse_sp_notice(notice.text)
    assert (fields["event"], fields["service"], fields["msisdn"], fields["channel"]) == ("ORDER", "sina-news", A, "sms")
    [subscription] = await subscriptions(bench, A)
    assert (subscription.status, subscription.service_id, subscription.channel) == ("active", "sina-news", "sms")
    assert subscription.confirmation == "mo-confirm"  # the subscriber's own answer is the record
    assert subscription.ordered_at == bench.clock.now()
    assert subscription.trial_until == at(2026, 12, 1, 0, 0)
    [event] = await bench.store.find(SubscriptionEvent, subscription_id=subscription.id)
    assert event.event == "ordered"
    assert [o.status for o in await orders(bench, A)] == ["confirmed"]


async def test_unknown_keyword_lists_what_the_code_offers(bench: ServiceBench) -> None:
    outcome = await say(bench, A, "TX", SINA)
    [reply] = outcome.replies
    assert (reply.to, reply.source) == (A, SINA)
    offered = dict(re.findall(r"(\w+)：新浪的(\w+)（", reply.text))
    assert offered == {"TT": "头条新闻", "TQ": "天气预报"}
    assert reply.text.endswith("查询或退订已定制的业务，请发送0000到10086。")  # a subscriber texting TD here learns how
    assert await orders(bench, A) == []


async def test_decline_orders_nothing(bench: ServiceBench) -> None:
    await say(bench, A, "TT", SINA)
    declined = await say(bench, A, "否")
    assert only_text(declined, A) == "您未定制新浪的头条新闻业务，不会收取信息费。"
    assert declined.completed
    assert await subscriptions(bench, A) == []
    assert [o.status for o in await orders(bench, A)] == ["declined"]
    assert only_text(await say(bench, A, "Y"), A).startswith("您目前没有待确认的业务定制")
    assert await subscriptions(bench, A) == []


async def test_an_answer_after_the_validity_finds_the_order_expired(bench: ServiceBench) -> None:
    await say(bench, A, "TT", SINA)
    await say(bench, B, "TT", SINA)
    bench.clock.advance(DAY - 1)
    assert only_text(await say(bench, B, "Y"), B) == SEED_NOTICE  # B answers in the last second
    bench.clock.advance(1)
    late = only_text(await say(bench, A, "Y"), A)
    assert late.startswith("您定制新浪的头条新闻业务的确认已超过有效期") and "重新发送TT到1066916" in late
    assert await subscriptions(bench, A) == []
    assert [o.status for o in await orders(bench, A)] == ["expired"]
    bench.clock.advance(3600)
    assert "已超过有效期" in only_text(await say(bench, A, "是"), A)  # still said for a while
    bench.clock.advance(DAY)
    assert only_text(await say(bench, A, "Y"), A).startswith("您目前没有待确认的业务定制")
    assert await subscriptions(bench, A) == []


async def test_already_subscribed_gets_no_new_confirmation(bench: ServiceBench) -> None:
    await say(bench, A, "TT", SINA)
    await say(bench, A, "Y")
    again = await say(bench, A, "tt", SINA)
    assert only_text(again, A).startswith("您已定制新浪的头条新闻业务（信息费30元/月），无需再次定制")
    api = await bench.commit(await confirmation.request_order(bench.ctx, A, "sina-news", "web", bench.clock.now()))
    assert "无需再次定制" in only_text(api, A)
    assert len(await orders(bench, A)) == 1
    # A second Y (a retransmission outside the gateway's dedup window) does not subscribe twice.
    second = await say(bench, A, "Y")
    assert "无需再次定制" in only_text(second, A)
    assert not [r for r in second.replies if r.to_account]  # the SP hears of the order once
    assert len(await subscriptions(bench, A)) == 1


async def test_ordering_again_while_waiting_resends_the_same_confirmation(bench: ServiceBench) -> None:
    first = REQUEST.search(only_text(await say(bench, A, "TT", SINA), A))
    bench.clock.advance(20 * 3600)
    second = REQUEST.search(only_text(await say(bench, A, "TT", SINA), A))
    assert first and second and first["code"] == second["code"] == "Y1"
    [order] = await orders(bench, A)
    assert order.expires_at == bench.clock.now() + DAY  # valid again for the 24 h the text says
    bench.clock.advance(10 * 3600)
    assert only_text(await say(bench, A, "Y"), A) == SEED_NOTICE


async def test_two_pending_confirmations_each_with_its_code(bench: ServiceBench) -> None:
    codes = [REQUEST.search(only_text(await say(bench, A, kw, code), A))["code"] for kw, code in (("TT", SINA), ("TL", TENCENT))]
    assert codes == ["Y1", "Y2"]
    listing = await say(bench, A, "Y")
    pending = dict(re.findall(r"回复(Y\d)定制(\S+?)（", only_text(listing, A)))
    assert pending == {"Y1": "新浪的头条新闻", "Y2": "腾讯公司的精品图铃"}
    assert not listing.completed and await subscriptions(bench, A) == []

    chosen = await say(bench, A, "Ｙ２")
    assert only_text(chosen, A).startswith("您已定制试用腾讯公司的精品图铃业务,信息费10元/月")
    assert [s.service_id for s in await subscriptions(bench, A)] == ["tencent-ringtones"]
    assert "没有代码为Y7的待确认定制" in only_text(await say(bench, A, "Y7"), A)
    # One waiting now: a bare Y confirms it, and its code is free again for the next order.
    assert only_text(await say(bench, A, "Y"), A) == SEED_NOTICE
    assert REQUEST.search(only_text(await say(bench, A, "TQ", SINA), A))["code"] == "Y1"


async def test_decline_one_by_code_keeps_the_other(bench: ServiceBench) -> None:
    await say(bench, A, "TT", SINA)
    await say(bench, A, "TL", TENCENT)
    assert only_text(await say(bench, A, "N1"), A) == "您未定制新浪的头条新闻业务，不会收取信息费。"
    assert only_text(await say(bench, A, "1"), A).startswith("您已定制试用腾讯公司的精品图铃业务")
    assert [s.service_id for s in await subscriptions(bench, A)] == ["tencent-ringtones"]


@pytest.mark.parametrize("answer", ["Y 2", "y 2", "是2", "是 2", "yes 2", "Ｙ　２"])
async def test_a_reply_code_written_with_a_space_or_after_another_confirm_word_confirms_just_its_order(
    bench: ServiceBench, answer: str
) -> None:
    """"Y 2" (a space, as phones' input methods insert) or "是2" (the Chinese yes with the code) declined both."""
    await say(bench, A, "TT", SINA)
    await say(bench, A, "TL", TENCENT)
    assert only_text(await say(bench, A, answer), A).startswith("您已定制试用腾讯公司的精品图铃业务")
    assert {o.service_id: o.status for o in await orders(bench, A)} == {"sina-news": "pending", "tencent-ringtones": "confirmed"}


@pytest.mark.parametrize("answer", ["N 1", "否1", "no 1"])
async def test_a_decline_code_written_with_a_space_or_after_another_decline_word_declines_just_its_order(
    bench: ServiceBench, answer: str
) -> None:
    await say(bench, A, "TT", SINA)
    await say(bench, A, "TL", TENCENT)
    assert only_text(await say(bench, A, answer), A) == "您未定制新浪的头条新闻业务，不会收取信息费。"
    assert {o.service_id: o.status for o in await orders(bench, A)} == {"sina-news": "declined", "tencent-ringtones": "pending"}


@pytest.mark.parametrize("answer", ["11", "Y1 2", "是的2", "Y 12345"])
async def test_a_text_that_is_no_reply_code_still_declines_what_waits(bench: ServiceBench, answer: str) -> None:
    """A confirm word that is a number (`1`) names no code, and a code is one number after one word."""
    await say(bench, A, "TT", SINA)
    await say(bench, A, "TL", TENCENT)
    assert only_text(await say(bench, A, answer), A) == "您未定制新浪的头条新闻、腾讯公司的精品图铃业务，不会收取信息费。"
    assert [o.status for o in await orders(bench, A)] == ["declined", "declined"]


async def test_any_other_text_declines_what_waits(bench: ServiceBench) -> None:
    """SPEC 3.2: 是/Y/1 confirm; anything else (or silence) declines."""
    await say(bench, A, "TT", SINA)
    inbound = Inbound(A, OPERATOR, "你好", bench.clock.now())
    assert await confirmation.last_prompt(inbound, bench.ctx) == bench.clock.now()
    reply = only_text(await say(bench, A, "你好"), A)
    assert "未定制" in reply or "不定制" in reply, reply
    assert [o.status for o in await orders(bench, A)] == ["declined"]
    assert await bench.store.find(Subscription, msisdn=A) == []


async def test_other_texts_are_not_answers_when_nothing_waits(bench: ServiceBench) -> None:
    inbound = Inbound(A, OPERATOR, "你好", bench.clock.now())
    assert await confirmation.answer(inbound, bench.ctx, "zh") is None
    assert only_text(await say(bench, A, "你好"), A).startswith("中国移动10086")  # the help text
    await say(bench, A, "TT", SINA)
    later = Inbound(A, OPERATOR, "你好", bench.clock.now() + DAY)  # the order has expired: nothing waits
    assert await confirmation.answer(later, bench.ctx, "zh") is None


async def test_confirm_word_with_nothing_waiting(bench: ServiceBench) -> None:
    outcome = await say(bench, A, "Y")
    assert only_text(outcome, A) == "您目前没有待确认的业务定制。查询已定制的业务请发送0000到10086。"


async def test_request_order_from_the_web(bench: ServiceBench) -> None:
    outcome = await bench.commit(await confirmation.request_order(bench.ctx, A, "sina-weather", "web", bench.clock.now()))
    assert REQUEST.search(only_text(outcome, A))["service"] == "天气预报"
    done = await say(bench, A, "1")
    assert only_text(done, A).startswith("您已定制试用新浪的天气预报业务,信息费5元/月")
    [subscription] = await subscriptions(bench, A)
    assert subscription.channel == "web"
    [notice] = [r for r in done.replies if r.to_account]
    assert parse_sp_notice(notice.text)["channel"] == "web"
    with pytest.raises(ValueError, match="unknown service 'sina-sports'"):
        await confirmation.request_order(bench.ctx, A, "sina-sports", "web", bench.clock.now())


@pytest.mark.parametrize(
    ("confirmed_at", "free_until", "wording"),
    [
        (at(2026, 11, 20, 23, 59), at(2026, 12, 1, 0, 0), "当月免信息费"),
        (at(2026, 11, 21, 0, 1), at(2027, 1, 1, 0, 0), "下月底前免信息费"),
        (at(2026, 12, 20, 12, 0), at(2027, 1, 1, 0, 0), "当月免信息费"),
        (at(2026, 12, 21, 1, 0), at(2027, 2, 1, 0, 0), "下月底前免信息费"),  # still the 20th in UTC
        (at(2026, 12, 31, 23, 30), at(2027, 2, 1, 0, 0), "下月底前免信息费"),
    ],
)
async def test_free_trial_follows_the_operator_calendar(
    bench: ServiceBench, confirmed_at: float, free_until: float, wording: str
) -> None:
    bench.clock.set(confirmed_at - 600)
    await say(bench, A, "TT", SINA)
    bench.clock.set(confirmed_at)
    notice = only_text(await say(bench, A, "Y"), A)
    assert f",客服电话9510567,{wording},退订请发送0000到10086。" in notice
    [subscription] = await subscriptions(bench, A)
    assert subscription.trial_until == free_until


async def test_english_subscriber(bench: ServiceBench) -> None:
    await bench.store.apply([*Outcome().put(Subscriber(A, "en")).effects])
    request = only_text(await say(bench, A, "TT", SINA), A)
    assert "Headline News from Sina, information fee 30 yuan/month" in request
    assert "reply Y1 to confirm this one" in request and request.endswith("Valid for 24 h.")
    assert "Free for the rest of this month." in only_text(await say(bench, A, "Y"), A)
    [unknown] = (await say(bench, A, "TX", SINA)).replies  # (from the SP's code)
    assert unknown.text.endswith("To list or cancel the services you have, text 0000 to 10086.")  # as in Chinese
    # Cancelled and ordered again the same month: what is left of the first order's trial is this month, and the
    # notice says what the Chinese one says (下月起收费), not that nothing is left.
    [first] = await bench.store.find(Subscription, msisdn=A)
    await bench.store.apply(Outcome().put(replace(first, status="cancelled", cancelled_at=bench.clock.now())).effects)
    await say(bench, A, "TT", SINA)
    again = only_text(await say(bench, A, "Y"), A)
    assert "it is charged from next month" in again and "none is left" not in again, again


# --------------------------------- a retried answer: the prompts it was received after (README "Short-code services")
async def say_retried(bench: ServiceBench, msisdn: str, text: str, received_at: float) -> Outcome:
    """A text received at `received_at` whose first handling failed, handled now (the gateway's retry)."""
    inbound = Inbound(msisdn, OPERATOR, text, received_at, message_ids=(bench.ctx.new_id(),))
    return await bench.commit(await CustomerService().handle(inbound, bench.ctx))


async def test_a_retried_yes_does_not_confirm_an_order_made_after_it_was_received(bench: ServiceBench) -> None:
    await say(bench, A, "TT", SINA)
    bench.clock.advance(60)
    received = bench.clock.now()  # its first handling fails
    bench.clock.advance(1)
    assert only_text(await say(bench, A, "Y"), A).startswith("您已定制试用新浪的头条新闻业务")  # sent again: this one confirms
    bench.clock.advance(1)
    await bench.commit(await confirmation.request_order(bench.ctx, A, "tencent-ringtones", "web", bench.clock.now()))
    bench.clock.advance(2)
    retried = await say_retried(bench, A, "Y", received)
    assert only_text(retried, A).startswith("您已定制新浪的头条新闻业务（信息费30元/月），无需再次定制")
    assert [s.service_id for s in await subscriptions(bench, A)] == ["sina-news"]  # not the web order it never saw
    assert [(o.service_id, o.status) for o in await orders(bench, A)] == [("sina-news", "confirmed"), ("tencent-ringtones", "pending")]


async def test_a_retried_yes_confirms_its_order_asked_again_after_it_was_received(bench: ServiceBench) -> None:
    await say(bench, A, "TT", SINA)
    bench.clock.advance(60)
    received = bench.clock.now()
    bench.clock.advance(5)
    await say(bench, A, "TT", SINA)  # no answer came: ordered again, the same order sent again
    bench.clock.advance(1)
    assert only_text(await say_retried(bench, A, "Y", received), A).startswith("您已定制试用新浪的头条新闻业务")
    assert [s.service_id for s in await subscriptions(bench, A)] == ["sina-news"]


async def test_a_retried_yes_does_not_answer_an_unsubscribe_all_question_asked_after_it_was_received(bench: ServiceBench) -> None:
    await say(bench, A, "TL", TENCENT)
    await say(bench, A, "Y")
    bench.clock.advance(3600)
    await say(bench, A, "TT", SINA)
    bench.clock.advance(60)
    received = bench.clock.now()
    bench.clock.advance(1)
    await say(bench, A, "Y")
    bench.clock.advance(1)
    assert only_text(await say(bench, A, "00000"), A).startswith("您共定制了2项业务")
    bench.clock.advance(2)
    retried = await say_retried(bench, A, "Y", received)
    assert only_text(retried, A).startswith("您已定制新浪的头条新闻业务（信息费30元/月），无需再次定制")
    assert sorted((s.service_id, s.status) for s in await subscriptions(bench, A)) == [
        ("sina-news", "active"), ("tencent-ringtones", "active")
    ]  # fmt: skip
