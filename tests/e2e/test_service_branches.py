"""Dialogue branches of the short codes (SPEC 3.1-3.4) that only unit tests covered, end to end.

A real gateway over TCP on a simulated clock, smpplib handsets texting the
short codes; every reply is decoded from its deliver_sm(s) and compared with
the text config/messages.zh.toml gives for that branch, and the resulting
state is read back from the gateway's store. Subscriptions are made the way a
subscriber makes them (order keyword, then `Y`), blocks the way the spam
service records them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.app import GatewayController
from gateway.clock import SimulatedClock
from gateway.store.records import Block, Dialogue, PendingOrder, SpamReport, Subscription, Survey
from gateway.templates import Templates
from handlers.base import Outcome
from tests.services_support import at
from tests.smpp_handset import ESME_ROK, Handset, texts_from

A = "8613800000001"
SPAMMER, SPAMMER_AT_HOME = "8613700000001", "13700000001"
OPERATOR, SPAM_CODE, RATING = "10086", "10086999", "10086700"
SINA, TENCENT = "1066916", "1066888"
SMSGW_RSENDERBLOCKED = 0x400  # the source is blocked network-wide
HOUR = 3600
LISTING_WINDOW = 2 * HOUR  # config/default.toml [services]: listing_window (also the 00000 question's)
VALIDITY = 24 * HOUR  # confirmation_validity and survey_validity
SPAM = "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取"
NEWER_SPAM = "【贷款】无抵押低息贷款，当天到账，详询 http://d.cn"

TEMPLATES = Templates.load(Path(__file__).resolve().parents[2] / "config", "zh")
CONFIRMATION_CODE = re.compile(r"回复“(Y\d+)”确认本笔")
PENDING_ITEM = re.compile(r"回复(Y\d+)定制(\S+?)（")
SPAM_ACK = re.compile(r"^您的举报已受理，举报编号(?P<id>\w+)，")


def zh(key: str, **values) -> str:
    """The reply text config/messages.zh.toml gives for `key`."""
    return TEMPLATES.render(key, "zh", **values)


HELP = zh("common.help")
SINA_NEWS = {"sp_name": "新浪", "service": "头条新闻", "fee": "30", "phone": "9510567", "operator": OPERATOR}
TENCENT_RINGTONES = {"sp_name": "腾讯公司", "service": "精品图铃", "fee": "10", "phone": "4006700700", "operator": OPERATOR}


# ---------------------------------------------------------------- helpers
def ask(phone: Handset, to: str, message: str, count: int = 1, source: str | None = None) -> list[str]:
    """Text `message` to `to`; the next `count` whole texts from `source` (default: `to`), in order of arrival."""
    assert phone.submit(to, message).status == ESME_ROK
    return texts_from(phone, source or to, count)


def order(phone: Handset, keyword: str, service_code: str) -> str:
    """Order by keyword; the confirmation's reply code (the confirmation comes from 10086)."""
    [request] = ask(phone, service_code, keyword, source=OPERATOR)
    code = CONFIRMATION_CODE.search(request)
    assert code, f"not a confirmation request: {request!r}"
    return code.group(1)


def subscribe(phone: Handset, keyword: str, service_code: str, names: dict[str, str]) -> None:
    """Subscribe as a subscriber does: order by keyword, confirm with Y."""
    order(phone, keyword, service_code)
    assert ask(phone, OPERATOR, "Y") == [zh("confirmation.ordered_this_month", **names)]


def stored(gw: GatewayController, record: type, **filters) -> list:
    return gw.call(gw.gateway.store.find(record, **filters))


def subscription_states(gw: GatewayController) -> dict[str, str]:
    return {s.service_id: s.status for s in stored(gw, Subscription, msisdn=A)}


def send_survey(gw: GatewayController, phone: Handset, channel: str) -> None:
    gw.call(gw.gateway.services.request_survey(phone.number, channel))
    [survey] = texts_from(phone, RATING)
    assert survey.startswith("【满意100】")


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(at(2026, 11, 10))


@pytest.fixture
def gw(make_gateway, clock) -> GatewayController:
    return make_gateway(clock=clock)


@pytest.fixture
def phone(gw, handset) -> Handset:
    return handset(A, gw=gw, address_range=A)


# ------------------------------------------------------- 10086 (SPEC 3.1)
def test_help_word_and_unknown_text_get_the_help_text(gw, phone) -> None:
    subscribe(phone, "TT", SINA, SINA_NEWS)
    assert ask(phone, OPERATOR, "0") == [HELP]
    assert ask(phone, OPERATOR, "hello") == [HELP]
    ask(phone, OPERATOR, "0000")
    assert ask(phone, OPERATOR, "0") == [HELP]  # help even while a listing waits for serial numbers
    assert ask(phone, OPERATOR, "hello") == [HELP]
    assert subscription_states(gw) == {"sina-news": "active"}


def test_digits_other_than_0_to_9_get_the_help_text(gw, phone) -> None:
    """`፩` (Ethiopic one) and `²` are digits to str.isdigit but not serial numbers: the handler used to
    fail on them, leaving the MO unanswered and handled again, failing, at every start."""
    subscribe(phone, "TT", SINA, SINA_NEWS)
    assert ask(phone, OPERATOR, "፩") == [HELP]
    ask(phone, OPERATOR, "0000")
    assert ask(phone, OPERATOR, "1,፩") == [HELP]
    assert ask(phone, OPERATOR, "1") == [zh("unsubscribe.done", sp_company="新浪公司", service="头条新闻")]
    assert subscription_states(gw) == {"sina-news": "cancelled"}


def test_unsubscribe_all_answered_after_its_window_is_expired_and_cancels_nothing(gw, phone, clock) -> None:
    subscribe(phone, "TT", SINA, SINA_NEWS)
    subscribe(phone, "TL", TENCENT, TENCENT_RINGTONES)
    assert ask(phone, OPERATOR, "00000") == [zh("unsubscribe.all_ask", count=2, window="2小时")]
    clock.advance(LISTING_WINDOW + 1)
    assert ask(phone, OPERATOR, "Y") == [zh("unsubscribe.all_expired")]
    assert subscription_states(gw) == {"sina-news": "active", "tencent-ringtones": "active"}
    # Told once; a second Y is an unknown text, not the last order's "already subscribed" (the
    # question stays stored, marked told, because it is still the last prompt 10086 sent).
    assert ask(phone, OPERATOR, "Y") == [HELP]
    assert [d.data.get("told") for d in stored(gw, Dialogue, msisdn=A)] == [True]


def test_serial_already_unsubscribed_is_said_so(gw, phone) -> None:
    subscribe(phone, "TT", SINA, SINA_NEWS)
    subscribe(phone, "TL", TENCENT, TENCENT_RINGTONES)
    ask(phone, OPERATOR, "0000")
    assert ask(phone, OPERATOR, "1") == [zh("unsubscribe.done", sp_company="新浪公司", service="头条新闻")]
    assert ask(phone, OPERATOR, "1") == [zh("unsubscribe.already", serial=1, sp_name="新浪", service="头条新闻")]
    assert subscription_states(gw) == {"sina-news": "cancelled", "tencent-ringtones": "active"}
    assert len(stored(gw, Subscription, msisdn=A, status="cancelled")) == 1


# -------------------------------------------- two-step confirmation (3.2)
def test_decline_with_a_reply_code_declines_only_that_order(gw, phone) -> None:
    assert [order(phone, "TT", SINA), order(phone, "TL", TENCENT)] == ["Y1", "Y2"]
    assert ask(phone, OPERATOR, "N1") == [zh("confirmation.declined", services="新浪的头条新闻")]
    assert [(o.service_id, o.status) for o in stored(gw, PendingOrder, msisdn=A, order_by="created_at")] == [
        ("sina-news", "declined"), ("tencent-ringtones", "pending")]  # fmt: skip
    assert ask(phone, OPERATOR, "Y") == [zh("confirmation.ordered_this_month", **TENCENT_RINGTONES)]  # the only one left
    assert subscription_states(gw) == {"tencent-ringtones": "active"}


def test_unknown_reply_code_is_named_and_the_waiting_orders_listed(gw, phone) -> None:
    order(phone, "TT", SINA)
    order(phone, "TL", TENCENT)
    [reply] = ask(phone, OPERATOR, "Y7")
    assert reply.startswith(zh("confirmation.unknown_code", reply_code="Y7"))
    assert dict(PENDING_ITEM.findall(reply)) == {"Y1": "新浪的头条新闻", "Y2": "腾讯公司的精品图铃"}
    assert {o.status for o in stored(gw, PendingOrder, msisdn=A)} == {"pending"}
    assert subscription_states(gw) == {}


def test_an_unknown_reply_code_with_one_order_waiting_lists_it_as_the_one(gw, phone) -> None:
    """With one order waiting the list said to confirm "其中一笔" (one of them) or "全部不定制" (order none of them)."""
    order(phone, "TT", SINA)
    [reply] = ask(phone, OPERATOR, "Y7")
    assert reply == ("没有代码为Y7的待确认定制。您有1笔业务定制待确认：回复Y1定制新浪的头条新闻（信息费30元/月）；"
                     "请回复对应代码确认定制（如回复Y1），回复“否”、“N”或“NO”则不定制。")


def test_ordering_again_while_waiting_resends_the_same_code_with_a_fresh_validity(gw, phone, clock) -> None:
    [first] = ask(phone, SINA, "TT", source=OPERATOR)
    assert order(phone, "TL", TENCENT) == "Y2"
    clock.advance(20 * HOUR)
    assert ask(phone, SINA, "TT", source=OPERATOR) == [first]  # the same confirmation, still Y1
    assert CONFIRMATION_CODE.search(first).group(1) == "Y1"
    assert len(stored(gw, PendingOrder, msisdn=A)) == 2  # no second order
    clock.advance(5 * HOUR)  # past the first request's validity, within the resent one's
    assert ask(phone, OPERATOR, "Y1") == [zh("confirmation.ordered_this_month", **SINA_NEWS)]
    assert {o.service_id: o.status for o in stored(gw, PendingOrder, msisdn=A)} == {
        "sina-news": "confirmed", "tencent-ringtones": "expired"}  # fmt: skip
    assert subscription_states(gw) == {"sina-news": "active"}


# ------------------------------------------------- 10086999 spam (3.3)
def test_report_of_a_number_already_blocked_network_wide_is_handled_at_once(gw, handset, phone, clock) -> None:
    block = Block("network-block", SPAMMER, "", clock.now(), reason="five distinct reporters")
    gw.call(gw.gateway.services.commit(Outcome().put(block)))
    assert handset(SPAMMER, gw=gw, address_range=SPAMMER).submit(A, "spam").status == SMSGW_RSENDERBLOCKED

    replies = ask(phone, SPAM_CODE, f"{SPAMMER_AT_HOME}*{SPAM}", count=2)  # parts may complete in either order
    handled = zh("spam.handled", number=SPAMMER_AT_HOME)
    assert handled in replies, replies
    [ack] = [r for r in replies if r != handled]
    acked = SPAM_ACK.match(ack)
    assert acked and ack == zh("spam.ack", report_id=acked["id"], number=SPAMMER_AT_HOME), ack
    [report] = stored(gw, SpamReport, reporter=A)
    assert (report.id, report.reported, report.text, report.status) == (acked["id"], SPAMMER, SPAM, "handled")
    assert [b.id for b in stored(gw, Block, reported=SPAMMER, reporter="")] == ["network-block"]  # no second one
    phone.expect_none(0.3, lambda p: p.source_addr == SPAM_CODE.encode())  # told once


def test_help_on_the_spam_code_explains_how_to_report(gw, phone) -> None:
    for word in ("帮助", "HELP", "0"):
        assert ask(phone, SPAM_CODE, word) == [zh("spam.usage", short_code=SPAM_CODE)]
    assert stored(gw, SpamReport) == [] and stored(gw, Dialogue, msisdn=A) == []


def test_a_text_sent_while_a_forwarded_one_waits_for_its_number_does_not_replace_it(gw, phone) -> None:
    assert ask(phone, SPAM_CODE, SPAM) == [zh("spam.ask_number", window="30分钟")]
    for text in (NEWER_SPAM, "Y"):  # the next message is taken as the number: a second forward or a stray Y are not
        assert ask(phone, SPAM_CODE, text) == [zh("spam.number_expected", text=SPAM[:15] + "…", window="30分钟")]
    [ack] = ask(phone, SPAM_CODE, SPAMMER_AT_HOME)
    assert SPAM_ACK.match(ack), ack
    [report] = stored(gw, SpamReport, reporter=A)
    assert (report.reported, report.text) == (SPAMMER, SPAM)
    assert stored(gw, Dialogue, msisdn=A) == []


# ----------------------------------------------- 10086700 ratings (3.4)
def test_reason_after_the_survey_expired_is_late_and_the_rating_stands(gw, phone, clock) -> None:
    send_survey(gw, phone, "hotline")
    assert ask(phone, RATING, "4") == [zh("rating.ask_reason")]
    clock.advance(VALIDITY + 60)
    assert ask(phone, RATING, "排队太久，问题也没解决") == [zh("rating.reason_late", validity="24小时")]
    [survey] = stored(gw, Survey, msisdn=A)
    assert (survey.status, survey.rating, survey.reason) == ("rated", 4, "")


def test_a_new_survey_supersedes_the_open_one(gw, phone) -> None:
    send_survey(gw, phone, "store:0101")
    send_survey(gw, phone, "hotline")
    assert ask(phone, RATING, "1") == [zh("rating.thanks")]
    assert [(s.channel, s.status, s.rating) for s in stored(gw, Survey, msisdn=A, order_by="created_at")] == [
        ("store:0101", "superseded", None), ("hotline", "rated", 1)]  # fmt: skip
