"""10086 query and unsubscribe (SPEC 3.1) over real TCP: smpplib handsets and SP binds."""

from __future__ import annotations

import re

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import Subscription
from handlers.base import Outcome
from handlers.sp_notice import parse_sp_notice
from tests.services_support import at, catalogue_without
from tests.smpp_handset import ESME_ROK, text, texts_from

A = "8613800000001"
OPERATOR = "10086"
SINA, TENCENT = "1066916", "1066888"
SMSGW_RNOSUBSCRIPTION = 0x402
ITEM = re.compile(r"(\d+)\.(\S+?)提供的(\S+?)，信息费(\d+(?:\.\d+)?)元/月，服务代码(\d+)；")
NONE = "您目前没有定制任何梦网业务。"


def done(sp_name: str, service: str) -> str:
    return f"您已成功退订{sp_name}提供的{service}业务，下月起不再收取信息费。"


def subscribe(controller, msisdn: str, *service_ids: str) -> list[Subscription]:
    """Active subscriptions committed through the services (which also updates the submission guards)."""
    now = controller.gateway.clock.now()
    subs = [
        Subscription(f"sub-{i}", msisdn, sid, "active", now - 3600 + 60 * i, "sms", "mo-1", now)
        for i, sid in enumerate(service_ids)
    ]
    controller.call(controller.gateway.services.commit(Outcome().put(*subs)))
    return subs


def statuses(controller, subs: list[Subscription]) -> list[str]:
    found = controller.call(controller.gateway.store.find(Subscription, id__in=[s.id for s in subs]))
    by_id = {s.id: s.status for s in found}
    return [by_id[s.id] for s in subs]


def replies(phone, count: int, source: str = OPERATOR, timeout: float = 5.0) -> list[str]:
    return texts_from(phone, source, count, timeout)


def ask(phone, message: str, count: int = 1) -> list[str]:
    assert phone.submit(OPERATOR, message).status == ESME_ROK
    return replies(phone, count)


def notices(sp, count: int, msisdn: str = A) -> list[dict[str, str]]:
    """Order-relation notices the SP's bind receives from the subscriber's number."""
    return [parse_sp_notice(text(p)) for p in sp.expect_many(count, predicate=lambda p: p.source_addr == msisdn.encode())]


def content_status(sp, msisdn: str = A) -> int:
    return sp.submit(msisdn, "今日头条：SP content").status


def test_serial_reply_unsubscribes_exactly_those_and_stops_sp_content(gateway, handset):
    subs = subscribe(gateway, A, "sina-news", "sina-weather", "tencent-ringtones")
    a = handset(A, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx")
    sina_tx = handset(SINA, system_id="sina", bind="tx")
    tencent_tx = handset(TENCENT, system_id="tencent", bind="tx")
    assert content_status(sina_tx) == ESME_ROK
    assert text(a.expect(predicate=lambda p: p.source_addr == SINA.encode())) == "今日头条：SP content"

    [listing] = ask(a, "００００")  # full width
    assert ITEM.findall(listing) == [
        ("1", "新浪", "头条新闻", "30", SINA), ("2", "新浪", "天气预报", "5", SINA), ("3", "腾讯公司", "精品图铃", "10", TENCENT)]
    assert "回复序号退订" in listing and "1,3" in listing and "00000" in listing

    assert sorted(ask(a, "1，2", 2)) == sorted([done("新浪公司", "头条新闻"), done("新浪公司", "天气预报")])  # Chinese comma
    assert statuses(gateway, subs) == ["cancelled", "cancelled", "active"]
    got = notices(sina_rx, 2)
    assert sorted(n["service"] for n in got) == ["sina-news", "sina-weather"]
    assert {(n["event"], n["msisdn"], n["channel"]) for n in got} == {("CANCEL", A, "sms")}
    assert content_status(sina_tx) == SMSGW_RNOSUBSCRIPTION
    assert content_status(tencent_tx) == ESME_ROK  # the one not chosen is still subscribed

    [listing] = ask(a, "0000。")  # with the full stop an input method adds on its own
    assert ITEM.findall(listing) == [("1", "腾讯公司", "精品图铃", "10", TENCENT)]


def test_out_of_range_then_stale_listing(make_gateway, handset):
    clock = SimulatedClock(at(2026, 11, 10))
    gw = make_gateway(clock=clock)
    subs = subscribe(gw, A, "sina-news", "sina-weather")
    a = handset(A, gw=gw, address_range=A)
    ask(a, "0000")
    confirmed, refused = ask(a, "2,5", 2)
    assert confirmed == done("新浪公司", "天气预报")
    assert re.search(r"序号(\S+)不在您的业务列表中（有效序号为1至(\d+)）", refused).groups() == ("5", "2")
    clock.advance(7201)
    assert ask(a, "1,2") == ["您的业务列表已过期，请重新发送0000到10086查询后再回复序号退订。"]
    assert statuses(gw, subs) == ["active", "cancelled"]
    sina_tx = handset(SINA, gw=gw, system_id="sina", bind="tx")
    assert content_status(sina_tx) == ESME_ROK


def test_serials_answer_the_open_listing_even_when_a_confirmation_came_after_it(gateway, handset):
    subs = subscribe(gateway, A, "sina-news", "sina-weather")
    a = handset(A, address_range=A)
    assert len(ITEM.findall(ask(a, "0000")[0])) == 2
    assert a.submit(TENCENT, "TL").status == ESME_ROK  # an order: its confirmation is the newest prompt now
    assert "您正在定制腾讯公司的精品图铃业务" in replies(a, 1)[0]
    assert ask(a, "2") == [done("新浪公司", "天气预报")]  # not taken as declining the order
    assert statuses(gateway, subs) == ["active", "cancelled"]
    assert "您已定制试用腾讯公司的精品图铃业务" in ask(a, "Y")[0]  # the order still waited for its answer


def test_00000_no_then_yes(gateway, handset):
    subs = subscribe(gateway, A, "sina-news", "sina-weather")
    a = handset(A, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx")
    sina_tx = handset(SINA, system_id="sina", bind="tx")
    [question] = ask(a, "00000")
    assert re.search(r"共定制了(\d+)项业务", question).group(1) == "2"
    assert ask(a, "N") == ["您未退订任何业务，已定制的业务保持不变。"]
    assert statuses(gateway, subs) == ["active", "active"]
    sina_rx.expect_none(0.2)

    ask(a, "０００００")
    assert sorted(ask(a, "是", 2)) == sorted([done("新浪公司", "头条新闻"), done("新浪公司", "天气预报")])
    assert statuses(gateway, subs) == ["cancelled", "cancelled"]
    assert sorted((n["event"], n["service"]) for n in notices(sina_rx, 2)) == [
        ("CANCEL", "sina-news"), ("CANCEL", "sina-weather")]
    assert content_status(sina_tx) == SMSGW_RNOSUBSCRIPTION
    assert ask(a, "0000") == [NONE]
    assert ask(a, "00000") == [NONE]


@pytest.mark.parametrize("command, answer", [("0000", "1"), ("00000", "Y")], ids=["listing", "all"])
def test_restart_between_prompt_and_answer(make_gateway, handset, tmp_path, command, answer):
    db = tmp_path / "restart.db"
    first = make_gateway(db_path=db)
    subs = subscribe(first, A, "sina-news")
    a = handset(A, gw=first, address_range=A)
    ask(a, command)
    a.close()
    first.stop()

    second = make_gateway(db_path=db)
    sina_tx = handset(SINA, gw=second, system_id="sina", bind="tx")
    assert content_status(sina_tx) == ESME_ROK  # the guards came back with the store
    a = handset(A, gw=second, address_range=A)
    a.expect(predicate=lambda p: p.source_addr == SINA.encode())
    assert ask(a, answer) == [done("新浪公司", "头条新闻")]
    assert statuses(second, subs) == ["cancelled"]
    assert content_status(sina_tx) == SMSGW_RNOSUBSCRIPTION
    sina_rx = handset(SINA, gw=second, system_id="sina", bind="rx")  # the notice waited for the SP to bind
    [notice] = notices(sina_rx, 1)
    assert (notice["event"], notice["service"], notice["msisdn"]) == ("CANCEL", "sina-news", A)


def test_a_service_withdrawn_from_the_catalogue_is_listed_and_cancelled_by_its_id(make_gateway, handset):
    gw = make_gateway(catalogue=catalogue_without("tencent-ringtones"))  # withdrawn after the subscriber ordered it
    subs = subscribe(gw, A, "sina-news", "tencent-ringtones")
    a = handset(A, gw=gw, address_range=A)
    tencent_rx = handset(TENCENT, gw=gw, system_id="tencent", bind="rx")

    [listing] = ask(a, "0000")
    assert listing.split("\n")[1:3] == ["1.新浪提供的头条新闻，信息费30元/月，服务代码1066916；",
                                        "2.tencent-ringtones（该业务已下线，不再收取信息费）；"]  # fmt: skip
    assert ask(a, "2") == ["您已成功退订tencent-ringtones业务（该业务已下线，不再收取信息费）。"]
    assert statuses(gw, subs) == ["active", "cancelled"]
    assert ask(a, "2") == ["序号2：tencent-ringtones业务（已下线）已经退订，无需再次退订。"]
    tencent_rx.expect_none(0.2)  # no SP is known to tell


def test_a_serial_whose_service_was_ordered_again_since_the_listing_cancels_the_new_subscription(gateway, handset):
    subscribe(gateway, A, "sina-news", "sina-weather")
    a = handset(A, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx")
    sina_tx = handset(SINA, system_id="sina", bind="tx")
    ask(a, "0000")  # 1 = 头条新闻, 2 = 天气预报
    assert ask(a, "1") == [done("新浪公司", "头条新闻")]
    assert a.submit(SINA, "TT").status == ESME_ROK  # ordered again ...
    assert "您正在定制新浪的头条新闻业务" in replies(a, 1)[0]
    assert "您已定制新浪的头条新闻业务" in ask(a, "Y")[0]  # ... and active again
    assert [(n["event"], n["service"]) for n in notices(sina_rx, 2)] == [("CANCEL", "sina-news"), ("ORDER", "sina-news")]

    assert sorted(ask(a, "1,2", 2)) == sorted([done("新浪公司", "头条新闻"), done("新浪公司", "天气预报")])
    assert all(s.status == "cancelled" for s in gateway.call(gateway.gateway.store.find(Subscription, msisdn=A)))
    assert sorted((n["event"], n["service"]) for n in notices(sina_rx, 2)) == [
        ("CANCEL", "sina-news"), ("CANCEL", "sina-weather")]
    assert content_status(sina_tx) == SMSGW_RNOSUBSCRIPTION
    assert sorted(ask(a, "1,2", 2)) == ["序号1：新浪提供的头条新闻业务已经退订，无需再次退订。",  # none of them active now
                                        "序号2：新浪提供的天气预报业务已经退订，无需再次退订。"]  # fmt: skip


def test_yes_to_00000_after_its_subscriptions_were_cancelled_elsewhere_says_so_and_names_the_one_kept(gateway, handset):
    [news] = subscribe(gateway, A, "sina-news")
    a = handset(A, address_range=A)
    assert a.submit(SINA, "TQ").status == ESME_ROK  # 天气预报 ordered: its confirmation (Y1) waits
    assert "您正在定制新浪的天气预报业务" in replies(a, 1)[0]
    assert "您共定制了1项业务" in ask(a, "00000")[0]
    gateway.call(gateway.gateway.services.unsubscribe(A, [news.id], "web"))  # customer service, on the web
    assert replies(a, 1) == [done("新浪公司", "头条新闻")]
    assert "您已定制试用新浪的天气预报业务" in ask(a, "Y1")[0]

    assert ask(a, "是", 2) == ["您要退订的1项业务此前已全部退订，无需再次退订。",
                               "您目前仍定制有1项业务（不在本次全部退订之列，未退订），查询或退订请发送0000到10086。"]  # fmt: skip
    [listing] = ask(a, "0000")
    assert ITEM.findall(listing) == [("1", "新浪", "天气预报", "5", SINA)]


def test_yes_to_00000_after_an_order_confirmed_since_the_question_answers_the_question(gateway, handset):
    """An order confirmed after the 00000 question outranked it: the yes the question asks for was answered
    "您已定制…无需再次定制" and nothing was cancelled (charged on), the question left open."""
    subs = subscribe(gateway, A, "sina-news")
    a = handset(A, address_range=A)
    assert "您共定制了1项业务" in ask(a, "00000")[0]
    assert a.submit(TENCENT, "TL").status == ESME_ROK
    assert "您正在定制腾讯公司的精品图铃业务" in replies(a, 1)[0]
    assert "您已定制试用腾讯公司的精品图铃业务" in ask(a, "Y")[0]

    assert ask(a, "是", 2) == [done("新浪公司", "头条新闻"),
                               "您目前仍定制有1项业务（不在本次全部退订之列，未退订），查询或退订请发送0000到10086。"]  # fmt: skip
    assert statuses(gateway, subs) == ["cancelled"]


def test_yes_to_00000_cancels_exactly_the_counted_ones_still_active_and_names_the_one_ordered_since(gateway, handset):
    subs = subscribe(gateway, A, "sina-news", "sina-weather")
    a = handset(A, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx")
    assert a.submit(TENCENT, "TL").status == ESME_ROK  # 精品图铃 ordered: its confirmation (Y1) waits
    assert "您正在定制腾讯公司的精品图铃业务" in replies(a, 1)[0]
    assert "您共定制了2项业务" in ask(a, "00000")[0]
    gateway.call(gateway.gateway.services.unsubscribe(A, [subs[0].id], "web"))
    assert replies(a, 1) == [done("新浪公司", "头条新闻")]
    assert "您已定制试用腾讯公司的精品图铃业务" in ask(a, "Y1")[0]

    assert ask(a, "是", 2) == [done("新浪公司", "天气预报"),
                               "您目前仍定制有1项业务（不在本次全部退订之列，未退订），查询或退订请发送0000到10086。"]  # fmt: skip
    assert statuses(gateway, subs) == ["cancelled", "cancelled"]
    assert [(n["event"], n["service"], n["channel"]) for n in notices(sina_rx, 2)] == [
        ("CANCEL", "sina-news", "web"), ("CANCEL", "sina-weather", "sms")]
    assert ITEM.findall(ask(a, "0000")[0]) == [("1", "腾讯公司", "精品图铃", "10", TENCENT)]


def test_1_after_an_order_answered_since_the_listing_confirms_no_order_waiting_from_before_it(gateway, handset):
    """Ringtones' confirmation (Y1), a listing, weather's (Y2) answered: the `1` confirmed ringtones, 10 yuan a
    month, from a prompt older than the listing. The last prompt was weather's: it is told that went through."""
    subscribe(gateway, A, "sina-news")
    a = handset(A, address_range=A)
    assert a.submit(TENCENT, "TL").status == ESME_ROK
    assert "腾讯公司的精品图铃" in replies(a, 1)[0]  # its confirmation, from 10086
    assert "\n1.新浪提供的头条新闻" in ask(a, "0000")[0]
    assert a.submit(SINA, "TQ").status == ESME_ROK
    assert "Y2" in replies(a, 1)[0]
    assert ask(a, "Y2")[0].startswith("您已定制试用新浪的天气预报业务")
    [reply] = ask(a, "1")
    assert reply.startswith("您已定制新浪的天气预报业务") and "无需再次定制" in reply, reply
    active = gateway.call(gateway.gateway.store.find(Subscription, msisdn=A, status="active"))
    assert sorted(s.service_id for s in active) == ["sina-news", "sina-weather"]


def test_a_0000_answered_no_subscriptions_ends_the_listing_before_it(gateway, handset):
    """The one subscription listed, then cancelled on the web; 0000 again says there are none. The `1` after it was
    still taken as serial 1 of the earlier listing ("序号1：新浪提供的头条新闻业务已经退订，无需再次退订"), a listing the
    subscriber had just been told no longer named anything."""
    [news] = subscribe(gateway, A, "sina-news")
    a = handset(A, address_range=A)
    assert ITEM.findall(ask(a, "0000")[0]) == [("1", "新浪", "头条新闻", "30", SINA)]
    gateway.call(gateway.gateway.services.unsubscribe(A, [news.id], "web"))
    assert replies(a, 1) == [done("新浪公司", "头条新闻")]
    assert ask(a, "0000") == [NONE]
    assert ask(a, "1") == ["您目前没有待确认的业务定制。查询已定制的业务请发送0000到10086。"]
    assert statuses(gateway, [news]) == ["cancelled"]


def test_an_api_unsubscription_naming_none_of_the_subscribers_subscriptions_is_refused_and_cancels_nothing(gateway, handset):
    """An id that is none of the subscriber's (unknown, another subscriber's, upper-cased, padded), or no id, was
    skipped without a word: no text, no CANCEL, an empty Outcome the agent took for "done", and the billing went on.
    One cancelled already is taken (a call retried does not fail) and does nothing."""
    news, weather = subscribe(gateway, A, "sina-news", "sina-weather")
    theirs = Subscription("sub-b", "8613800000002", "sina-news", "active", news.ordered_at, "sms", "mo-2", news.trial_until)
    gateway.call(gateway.gateway.services.commit(Outcome().put(theirs)))
    a = handset(A, address_range=A)
    sina_rx = handset(SINA, system_id="sina", bind="rx")

    def unsubscribe(ids: list[str]) -> Outcome:
        return gateway.call(gateway.gateway.services.unsubscribe("138 0000 0001", ids, "hotline"))

    for wrong, named in ((["nope"], "'nope'"), ([theirs.id], "'sub-b'"), ([news.id.upper()], "'SUB-0'"),
                         ([f" {news.id}"], "' sub-0'"), ([news.id, "nope", weather.id], "'nope'")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{A} has no subscription {named}; nothing cancelled$"):
            unsubscribe(wrong)
    # An id in a list or a dict raised TypeError from inside (unhashable); 123 was "no subscription 123", as if mistyped.
    for ids in ([], [[news.id]], [{"id": news.id}], [123]):
        with pytest.raises(ValueError, match=r"^subscription_ids .*: expected a non-empty list of subscription ids"):
            unsubscribe(ids)
    assert statuses(gateway, [news, weather, theirs]) == ["active", "active", "active"]

    assert [r.text for r in unsubscribe([news.id]).replies if r.to == A] == [done("新浪公司", "头条新闻")]
    assert replies(a, 1) == [done("新浪公司", "头条新闻")]  # the first text since: none for the refused calls
    assert [r.text for r in unsubscribe([news.id, weather.id]).replies if r.to == A] == [done("新浪公司", "天气预报")]
    assert replies(a, 1) == [done("新浪公司", "天气预报")]
    assert unsubscribe([news.id]).replies == []  # a retry: done already
    assert [(n["event"], n["service"], n["channel"]) for n in notices(sina_rx, 2)] == [
        ("CANCEL", "sina-news", "hotline"), ("CANCEL", "sina-weather", "hotline")]
    assert statuses(gateway, [news, weather, theirs]) == ["cancelled", "cancelled", "active"]
