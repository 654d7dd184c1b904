"""10086 hosts two dialogues that both accept `1`: a 0000 listing (serial 1) and a two-step
confirmation (1 = yes). The prompt the subscriber got last decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.records import PendingOrder, Subscription
from handlers.customer_service import CustomerService
from handlers.order import OrderHandler
from tests.services_support import ServiceBench, service_bench

A = "8613800000001"
OPERATOR = "10086"
SINA = "1066916"


@pytest.fixture
async def bench(tmp_path: Path):
    bench = await service_bench(tmp_path)
    yield bench
    await bench.close()


async def text(bench: ServiceBench, handler, words: str, code: str) -> list[str]:
    bench.clock.advance(1)  # each step a second later, so "which prompt came last" is well defined
    return [r.text for r in (await bench.send(handler, A, words, code)).replies if not r.to_account]


async def subscribed_to_weather(bench: ServiceBench) -> None:
    await text(bench, OrderHandler(), "TQ", SINA)
    await text(bench, CustomerService(), "Y", OPERATOR)


async def state(bench: ServiceBench) -> tuple[list[str], list[str]]:
    active = sorted(s.service_id for s in await bench.store.find(Subscription, msisdn=A, status="active"))
    pending = sorted(o.service_id for o in await bench.store.find(PendingOrder, msisdn=A, status="pending"))
    return active, pending


async def test_1_after_a_listing_that_came_last_unsubscribes(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, OrderHandler(), "TT", SINA)  # confirmation waiting...
    listing = await text(bench, CustomerService(), "0000", OPERATOR)  # ...then the listing, newer
    assert "天气预报" in listing[0]
    [done] = await text(bench, CustomerService(), "1", OPERATOR)
    assert done.startswith("您已成功退订新浪公司提供的天气预报业务")
    assert await state(bench) == ([], ["sina-news"])


async def test_1_after_a_confirmation_that_came_last_confirms(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "0000", OPERATOR)  # listing...
    await text(bench, OrderHandler(), "TT", SINA)  # ...then a confirmation, newer
    [done] = await text(bench, CustomerService(), "1", OPERATOR)
    assert done.startswith("您已定制试用新浪的头条新闻业务")
    assert await state(bench) == (["sina-news", "sina-weather"], [])


async def test_1_sent_again_after_confirming_an_order_is_not_serial_1_of_an_older_listing(bench: ServiceBench) -> None:
    """The subscriber got a listing, then ordered and confirmed with `1`: the last thing they got was the
    success notice, so another `1` (sent twice, or again after a reconnect) is about the order, as a second
    `Y` would be, and cancels nothing."""
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "0000", OPERATOR)  # the listing, still open...
    await text(bench, OrderHandler(), "TT", SINA)
    [done] = await text(bench, CustomerService(), "1", OPERATOR)  # ...and an order confirmed after it
    assert done.startswith("您已定制试用新浪的头条新闻业务")
    [again] = await text(bench, CustomerService(), "1", OPERATOR)
    assert again.startswith("您已定制新浪的头条新闻业务") and "无需再次定制" in again, again
    assert await state(bench) == (["sina-news", "sina-weather"], [])


async def test_1_confirms_an_open_order_even_when_a_listing_received_after_it_has_expired(bench: ServiceBench) -> None:
    """An expired listing never outranks an open confirmation: the `1` got "listing expired", every `1`
    after it the help text, and the order lapsed unconfirmed."""
    await subscribed_to_weather(bench)
    await text(bench, OrderHandler(), "TT", SINA)  # a confirmation waits (24 h)...
    await text(bench, CustomerService(), "0000", OPERATOR)  # ...a listing after it, which expires
    bench.clock.advance(7200)
    [done] = await text(bench, CustomerService(), "1", OPERATOR)
    assert done.startswith("您已定制试用新浪的头条新闻业务"), done
    assert await state(bench) == (["sina-news", "sina-weather"], [])


async def test_a_serial_for_an_expired_listing_is_told_so_and_does_not_decline_an_order_waiting(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, OrderHandler(), "TT", SINA)  # a confirmation waits...
    await text(bench, CustomerService(), "0000", OPERATOR)  # ...and a listing after it expires
    bench.clock.advance(7200)
    assert await text(bench, CustomerService(), "2", OPERATOR) == [LISTING_EXPIRED]
    assert await state(bench) == (["sina-weather"], ["sina-news"])  # the order still waits


async def test_a_serial_declines_an_order_received_after_a_listing_that_has_expired(bench: ServiceBench) -> None:
    """Only a listing received after the order reads serials once it has expired: an old one answered a `2`
    with "listing expired", then with the help text, and the order was never declined."""
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "0000", OPERATOR)
    bench.clock.advance(30 * 86_400)
    await text(bench, OrderHandler(), "TT", SINA)
    [declined] = await text(bench, CustomerService(), "2", OPERATOR)
    assert declined.startswith("您未定制新浪的头条新闻业务"), declined
    assert await state(bench) == (["sina-weather"], [])


async def test_commands_still_work_while_a_confirmation_waits(bench: ServiceBench) -> None:
    await text(bench, OrderHandler(), "TT", SINA)
    [help_text] = await text(bench, CustomerService(), "帮助", OPERATOR)
    assert "0000" in help_text and "10086999" in help_text and "10086700" in help_text
    [none] = await text(bench, CustomerService(), "0000", OPERATOR)
    assert "没有" in none
    assert await state(bench) == ([], ["sina-news"])  # neither command answered the confirmation


LISTING_EXPIRED = "您的业务列表已过期，请重新发送0000到10086查询后再回复序号退订。"
HELP = "中国移动10086："


async def test_a_second_1_to_an_expired_listing_gets_the_help_not_the_last_orders_courtesy(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)  # an order confirmed: its courtesy reply lasts one validity period
    await text(bench, CustomerService(), "0000", OPERATOR)  # then the listing, the last prompt
    bench.clock.advance(7200)
    assert await text(bench, CustomerService(), "1", OPERATOR) == [LISTING_EXPIRED]
    [again] = await text(bench, CustomerService(), "1", OPERATOR)  # told once: now an unknown text
    assert again.startswith(HELP), again
    assert await state(bench) == (["sina-weather"], [])


async def test_1_after_an_order_newer_than_an_expired_listing_answers_the_order(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "0000", OPERATOR)
    bench.clock.advance(7200)  # the listing has expired, untold...
    await text(bench, OrderHandler(), "TT", SINA)
    await text(bench, CustomerService(), "Y", OPERATOR)  # ...and an order went through after it
    [reply] = await text(bench, CustomerService(), "1", OPERATOR)
    assert reply.startswith("您已定制新浪的头条新闻业务") and "无需再次定制" in reply, reply
    assert await text(bench, CustomerService(), "2", OPERATOR) == [LISTING_EXPIRED]  # a serial only the listing reads


TENCENT = "1066888"


async def test_1_after_an_order_answered_since_a_listing_confirms_no_order_waiting_from_before_the_listing(bench: ServiceBench) -> None:
    """Ringtones' confirmation, then a listing, then weather's confirmation, answered (Y2): the last prompt is
    weather's, so a `1` is told weather went through. It confirmed ringtones (10 yuan a month), whose
    confirmation came before the listing: a prompt the subscriber's last two had outranked."""
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "Y", OPERATOR)
    await text(bench, OrderHandler(), "TL", TENCENT)  # Y1 waits...
    await text(bench, CustomerService(), "0000", OPERATOR)  # ...a listing after it...
    await text(bench, OrderHandler(), "TT", SINA)  # ...then Y2, answered
    [ordered] = await text(bench, CustomerService(), "Y2", OPERATOR)
    assert ordered.startswith("您已定制试用新浪的头条新闻业务"), ordered
    [reply] = await text(bench, CustomerService(), "1", OPERATOR)
    assert reply.startswith("您已定制新浪的头条新闻业务") and "无需再次定制" in reply, reply
    assert await state(bench) == (["sina-news", "sina-weather"], ["tencent-ringtones"])
    [confirmed] = await text(bench, CustomerService(), "Y", OPERATOR)  # a `Y` is no serial: the one waiting
    assert confirmed.startswith("您已定制试用腾讯公司的精品图铃业务"), confirmed


async def test_1_after_an_order_declined_since_a_listing_is_told_what_still_waits(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, OrderHandler(), "TL", TENCENT)
    await text(bench, CustomerService(), "0000", OPERATOR)
    await text(bench, OrderHandler(), "TT", SINA)
    await text(bench, CustomerService(), "N2", OPERATOR)
    [reply] = await text(bench, CustomerService(), "1", OPERATOR)
    assert reply.startswith("您有1笔业务定制待确认：回复Y1定制腾讯公司的精品图铃（信息费10元/月）"), reply
    assert await state(bench) == (["sina-weather"], ["tencent-ringtones"])


async def test_1_after_confirming_an_order_with_00000_open_and_a_listing_after_it_is_about_the_order(bench: ServiceBench) -> None:
    """00000's question, a listing after it, then an order confirmed: a `1` again was serial 1 of the listing
    (weather unsubscribed), while a `Y` answers the question, as the README says."""
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "00000", OPERATOR)
    await text(bench, CustomerService(), "0000", OPERATOR)
    await text(bench, OrderHandler(), "TT", SINA)
    [ordered] = await text(bench, CustomerService(), "1", OPERATOR)
    assert ordered.startswith("您已定制试用新浪的头条新闻业务"), ordered
    [reply] = await text(bench, CustomerService(), "1", OPERATOR)
    assert reply.startswith("您已定制新浪的头条新闻业务") and "无需再次定制" in reply, reply
    assert await state(bench) == (["sina-news", "sina-weather"], [])
    answered = "".join(await text(bench, CustomerService(), "是", OPERATOR))
    assert answered.startswith("您已成功退订新浪公司提供的天气预报业务") and "未退订" in answered, answered  # news kept
    assert await state(bench) == (["sina-news"], [])


async def test_1_with_two_confirmations_waiting_either_side_of_a_listing_confirms_neither_and_lists_them(bench: ServiceBench) -> None:
    """A question is no consent to a charge: with two waiting a `1` lists them, as `Y` does, also with a listing
    received between them (it confirmed the newer one)."""
    await subscribed_to_weather(bench)
    await text(bench, OrderHandler(), "TL", TENCENT)  # Y1
    await text(bench, CustomerService(), "0000", OPERATOR)
    await text(bench, OrderHandler(), "TT", SINA)  # Y2
    [reply] = await text(bench, CustomerService(), "1", OPERATOR)
    assert reply.startswith("您有2笔业务定制待确认：回复Y1定制腾讯公司的精品图铃"), reply
    assert await state(bench) == (["sina-weather"], ["sina-news", "tencent-ringtones"])
