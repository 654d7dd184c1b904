"""10086 query and unsubscribe (SPEC 3.1), handler level: real store, simulated clock, no network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.store.records import Dialogue, Subscriber, Subscription, SubscriptionEvent
from handlers import unsubscribe
from handlers.base import Inbound, Outcome
from handlers.customer_service import CustomerService
from handlers.sp_notice import parse_sp_notice
from handlers.subscriptions import active_subscriptions
from tests.services_support import at, service_bench

A = "8613800000001"
B = "8613900000002"
DONE_NEWS = "您已成功退订新浪公司提供的头条新闻业务，下月起不再收取信息费。"
EXPIRED = "您的业务列表已过期，请重新发送0000到10086查询后再回复序号退订。"
ITEM = re.compile(r"(\d+)\.(\S+?)提供的(\S+?)，信息费(\d+(?:\.\d+)?)元/月，服务代码(\d+)；")


@pytest.fixture
async def bench(tmp_path: Path):
    bench = await service_bench(tmp_path, start=at(2026, 11, 10))
    yield bench
    await bench.close()


async def subscribe(bench, msisdn: str, *service_ids: str) -> list[Subscription]:
    """Active subscriptions ordered one minute apart (in this order), committed directly."""
    now = bench.clock.now()
    subs = [
        Subscription(f"sub-{msisdn[-4:]}-{i}", msisdn, sid, "active", now - 3600 + 60 * i, "sms", "mo-1", now)
        for i, sid in enumerate(service_ids)
    ]
    await bench.commit(Outcome().put(*subs))
    return subs


async def send(bench, text: str, msisdn: str = A) -> Outcome:
    return await bench.send(CustomerService(), msisdn, text, "10086")


def texts(outcome: Outcome, to: str = A) -> list[str]:
    return [r.text for r in outcome.replies if r.to == to]


def notices(outcome: Outcome) -> list[dict[str, str]]:
    return [parse_sp_notice(r.text) | {"account": r.to_account, "to": r.to} for r in outcome.replies if r.to_account]


async def status(bench, sub_id: str) -> str:
    return (await bench.store.find(Subscription, id=sub_id))[0].status


async def test_full_width_0000_lists_subscriptions_numbered_and_remembers_them(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "tencent-ringtones")
    outcome = await send(bench, "００００")
    [reply] = outcome.replies
    assert reply.source == "10086" and not outcome.completed
    assert ITEM.findall(reply.text) == [("1", "新浪", "头条新闻", "30", "1066916"), ("2", "腾讯公司", "精品图铃", "10", "1066888")]
    assert "多个序号用逗号隔开" in reply.text and "00000" in reply.text and "2小时" in reply.text
    [dialogue] = await bench.store.find(Dialogue, msisdn=A)
    assert dialogue.kind == "unsubscribe.listing" and dialogue.data == {"ids": [s.id for s in subs]}
    assert dialogue.expires_at == bench.clock.now() + 7200


async def test_listing_with_no_subscriptions(bench) -> None:
    await subscribe(bench, B, "sina-news")  # someone else's
    outcome = await send(bench, "0000")
    assert texts(outcome) == ["您目前没有定制任何梦网业务。"] and outcome.completed
    assert await bench.store.find(Dialogue, msisdn=A) == []


@pytest.mark.parametrize("reply", ["1,3", "1，3", "1 3", "１，３", " 3、1 "])
async def test_several_serials_in_one_reply_cancel_exactly_those(bench, reply) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather", "tencent-ringtones")
    await send(bench, "0000")
    outcome = await send(bench, reply)
    assert sorted(texts(outcome)) == sorted([DONE_NEWS, "您已成功退订腾讯公司提供的精品图铃业务，下月起不再收取信息费。"])
    assert all(r.source == "10086" for r in outcome.replies if r.to == A) and outcome.completed
    assert [await status(bench, s.id) for s in subs] == ["cancelled", "active", "cancelled"]
    events = await bench.store.find(SubscriptionEvent, msisdn=A)
    assert sorted((e.subscription_id, e.event, e.channel) for e in events) == [
        (subs[0].id, "cancelled", "sms"), (subs[2].id, "cancelled", "sms")]
    assert sorted((n["account"], n["to"], n["event"], n["service"], n["msisdn"]) for n in notices(outcome)) == [
        ("sina", "1066916", "CANCEL", "sina-news", A), ("tencent", "1066888", "CANCEL", "tencent-ringtones", A)]


async def test_out_of_range_serials_are_named_and_valid_ones_still_done(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather")
    await send(bench, "0000")
    outcome = await send(bench, "2,5,0")
    [done, refused] = texts(outcome)
    assert done == "您已成功退订新浪公司提供的天气预报业务，下月起不再收取信息费。"
    assert re.search(r"序号(\S+)不在您的业务列表中（有效序号为1至(\d+)）", refused).groups() == ("5,0", "2")
    assert [await status(bench, s.id) for s in subs] == ["active", "cancelled"]
    only_bad = await send(bench, "7")
    [refused] = texts(only_bad)
    assert "序号7不在" in refused and not only_bad.effects and not only_bad.completed


async def test_stale_listing_after_the_window(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather")
    await send(bench, "0000")
    bench.clock.advance(7200)
    assert await unsubscribe.latest_prompt(_inbound(bench, "1"), bench.ctx) is None
    assert texts(await unsubscribe.answer(_inbound(bench, "1"), bench.ctx, "zh")) == [EXPIRED]
    # Through 10086 with a serial that is not also a confirm word (a bare "1" with no prompt open is
    # first offered to the two-step confirmation, which may answer it itself).
    outcome = await send(bench, "2")
    assert texts(outcome) == [EXPIRED]
    assert [await status(bench, s.id) for s in subs] == ["active", "active"] and not notices(outcome)
    again = await send(bench, "2")  # told once; then it is just an unknown text
    assert texts(again)[0].startswith("中国移动10086")


@pytest.mark.parametrize(("keyword", "answer", "expired"), [
    ("0000", "2", EXPIRED), ("00000", "N", "您的全部退订请求已过期，未退订任何业务。如需退订请重新发送00000到10086。")])  # fmt: skip
async def test_other_text_after_a_listing_or_00000_question_lapsed_is_not_taken_for_its_answer(
    bench, keyword: str, answer: str, expired: str
) -> None:
    """A text that answers no listing (not serial numbers) or no 00000 question (not yes or no) after it lapsed is
    a text as any other, not told "expired"; the subscriber who then answers it late is still told, once (coverage
    review: no test ran it)."""
    subs = await subscribe(bench, A, "sina-news")
    await send(bench, keyword)
    bench.clock.advance(7200)
    other = texts(await send(bench, "天气"))
    assert other[0].startswith("中国移动10086") and expired not in other
    assert texts(await send(bench, answer)) == [expired]
    assert await status(bench, subs[0].id) == "active"


async def test_within_the_window_a_listing_still_answers(bench) -> None:
    [sub] = await subscribe(bench, A, "sina-news")
    await send(bench, "0000")
    bench.clock.advance(7199)
    assert texts(await send(bench, "1")) == [DONE_NEWS]
    assert await status(bench, sub.id) == "cancelled"


async def test_subscription_cancelled_meanwhile_is_already_unsubscribed(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather")
    await send(bench, "0000")
    api = await bench.commit(await unsubscribe.unsubscribe_ids(bench.ctx, A, [subs[0].id], "api", bench.clock.now()))
    assert texts(api) == [DONE_NEWS] and notices(api)[0]["channel"] == "api"
    outcome = await send(bench, "1")
    assert texts(outcome) == ["序号1：新浪提供的头条新闻业务已经退订，无需再次退订。"] and not notices(outcome)
    assert len(await bench.store.find(SubscriptionEvent, subscription_id=subs[0].id)) == 1


async def test_cancelled_subscription_no_longer_listed(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather", "tencent-ringtones")
    await send(bench, "0000")
    await send(bench, "2")
    listing = texts(await send(bench, "0000"))[0]
    assert [(n, s) for n, _, s, _, _ in ITEM.findall(listing)] == [("1", "头条新闻"), ("2", "精品图铃")]
    [dialogue] = await bench.store.find(Dialogue, msisdn=A, kind="unsubscribe.listing")
    assert dialogue.data["ids"] == [subs[0].id, subs[2].id]  # the new listing replaced the old one
    await send(bench, "2")
    assert [s.service_id for s in await active_subscriptions(bench.ctx, A)] == ["sina-news"]


async def test_00000_yes_cancels_all_after_confirmation(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "tencent-ringtones")
    ask = await send(bench, "０００００")
    [question] = texts(ask)
    assert re.search(r"共定制了(\d+)项业务", question).group(1) == "2" and "是" in question
    assert [await status(bench, s.id) for s in subs] == ["active", "active"]  # nothing before the answer
    outcome = await send(bench, "是")
    assert sorted(texts(outcome)) == sorted([DONE_NEWS, "您已成功退订腾讯公司提供的精品图铃业务，下月起不再收取信息费。"])
    assert outcome.completed and len(notices(outcome)) == 2
    assert [await status(bench, s.id) for s in subs] == ["cancelled", "cancelled"]
    assert await bench.store.find(Dialogue, msisdn=A, kind="unsubscribe.all") == []
    assert await unsubscribe.answer(_inbound(bench, "Y"), bench.ctx, "zh") is None  # the question is over


async def test_00000_no_changes_nothing(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "tencent-ringtones")
    await send(bench, "00000")
    outcome = await send(bench, "ｎｏ")
    assert texts(outcome) == ["您未退订任何业务，已定制的业务保持不变。"] and outcome.completed and not notices(outcome)
    assert [await status(bench, s.id) for s in subs] == ["active", "active"]
    assert await bench.store.find(Dialogue, msisdn=A) == []


async def test_00000_with_no_subscriptions(bench) -> None:
    outcome = await send(bench, "00000")
    assert texts(outcome) == ["您目前没有定制任何梦网业务。"] and await bench.store.find(Dialogue, msisdn=A) == []


async def test_00000_question_expires(bench) -> None:
    [sub] = await subscribe(bench, A, "sina-news")
    await send(bench, "00000")
    bench.clock.advance(7200)
    assert await unsubscribe.latest_prompt(_inbound(bench, "Y"), bench.ctx) is None
    # Through 10086: the question was the last prompt, so it reads the Y before the two-step confirmation.
    late = await send(bench, "Y")
    assert texts(late) == ["您的全部退订请求已过期，未退订任何业务。如需退订请重新发送00000到10086。"]
    assert await status(bench, sub.id) == "active"
    [question] = await bench.store.find(Dialogue, msisdn=A)
    assert question.kind == "unsubscribe.all" and question.data["told"]  # kept: it is still the last prompt
    again = await send(bench, "Y")  # told once; then it is just an unknown text
    assert texts(again)[0].startswith("中国移动10086") and await status(bench, sub.id) == "active"


async def test_the_newest_prompt_reads_the_answer(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather")
    await send(bench, "0000")
    bench.clock.advance(10)
    await send(bench, "00000")
    assert await unsubscribe.latest_prompt(_inbound(bench, "1"), bench.ctx) == bench.clock.now()
    await send(bench, "1")  # "yes" to 00000, not serial 1
    assert [await status(bench, s.id) for s in subs] == ["cancelled", "cancelled"]


async def test_not_an_answer_is_left_to_others(bench) -> None:
    await subscribe(bench, A, "sina-news")
    await send(bench, "0000")
    assert await unsubscribe.answer(_inbound(bench, "hello"), bench.ctx, "zh") is None
    assert await unsubscribe.answer(_inbound(bench, "1", msisdn=B), bench.ctx, "zh") is None  # not B's listing


async def test_english_texts_use_the_english_names(bench) -> None:
    await bench.commit(Outcome().put(Subscriber(A, "en")))
    await subscribe(bench, A, "sina-news")
    listing = texts(await send(bench, "0000"))[0]
    assert "1. Sina Headline News, 30 yuan/month, service code 1066916;" in listing and "2 h" in listing
    done = texts(await send(bench, "1"))
    assert done == ["You have unsubscribed from Headline News provided by Sina. No information fee will be charged from next month."]


async def test_api_unsubscribe_refuses_ids_not_theirs_and_takes_one_cancelled_already(bench) -> None:
    """Ids not the subscriber's were skipped: an empty Outcome, which the agent took for "done"."""
    mine = await subscribe(bench, A, "sina-news", "sina-weather")
    theirs = await subscribe(bench, B, "sina-news")
    with pytest.raises(ValueError, match=rf"^{A} has no subscription '{theirs[0].id}', 'no-such-id'; nothing cancelled$"):
        await unsubscribe.unsubscribe_ids(bench.ctx, A, [mine[1].id, theirs[0].id, "no-such-id"], "web", bench.clock.now())
    outcome = await bench.commit(await unsubscribe.unsubscribe_ids(
        bench.ctx, A, [mine[1].id, mine[1].id], "web", bench.clock.now()))
    assert texts(outcome) == ["您已成功退订新浪公司提供的天气预报业务，下月起不再收取信息费。"] and texts(outcome, B) == []
    assert [await status(bench, s.id) for s in (*mine, *theirs)] == ["active", "cancelled", "active"]
    [cancelled] = await bench.store.find(Subscription, id=mine[1].id)
    assert (cancelled.cancelled_at, cancelled.cancel_channel) == (bench.clock.now(), "web")
    again = await unsubscribe.unsubscribe_ids(bench.ctx, A, [mine[1].id], "web", bench.clock.now())
    assert again.replies == [] and again.effects == []


def _inbound(bench, text: str, msisdn: str = A) -> Inbound:
    return Inbound(msisdn, "10086", text, bench.clock.now())


# --------------------------------- a retried serial: the listing it was received after (README "Short-code services")
async def send_retried(bench, text: str, received_at: float) -> Outcome:
    """A text received at `received_at` whose first handling failed, handled now (the gateway's retry)."""
    inbound = Inbound(A, "10086", text, received_at, message_ids=(bench.ctx.new_id(),))
    return await bench.commit(await CustomerService().handle(inbound, bench.ctx))


async def test_a_retried_serial_whose_listing_was_replaced_since_is_told_it_expired(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather", "tencent-ringtones")
    await send(bench, "0000")
    bench.clock.advance(30)
    received = bench.clock.now()  # its first handling fails
    bench.clock.advance(1)
    await send(bench, "2")  # sent again: cancels 天气预报
    bench.clock.advance(1)
    assert [n for n, *_ in ITEM.findall(texts(await send(bench, "0000"))[0])] == ["1", "2"]  # 2 is 精品图铃 now
    bench.clock.advance(2)
    assert texts(await send_retried(bench, "2", received)) == [EXPIRED]
    assert [await status(bench, s.id) for s in subs] == ["active", "cancelled", "active"]
    assert texts(await send(bench, "2")) == ["您已成功退订腾讯公司提供的精品图铃业务，下月起不再收取信息费。"]  # the new listing still answers


async def test_a_retried_serial_whose_listing_was_sent_again_the_same_unsubscribes(bench) -> None:
    subs = await subscribe(bench, A, "sina-news", "sina-weather")
    await send(bench, "0000")
    bench.clock.advance(30)
    received = bench.clock.now()
    bench.clock.advance(5)
    await send(bench, "0000")  # the same listing, sent again
    bench.clock.advance(1)
    assert texts(await send_retried(bench, "1", received)) == [DONE_NEWS]
    assert [await status(bench, s.id) for s in subs] == ["cancelled", "active"]
