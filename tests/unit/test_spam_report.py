"""10086999 spam reporting (SPEC 3.3) with a real store and the simulated clock, no network."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.store.effects import Put
from gateway.store.records import Block, Dialogue, SpamReport, Subscriber
from handlers import spam_report
from handlers.base import Outcome
from handlers.spam_report import SpamReportHandler, active_blocks, lift_block, list_reports, parse, top_reported
from tests.services_support import CHINA, at, service_bench

CODE = "10086999"
A = "8613800000001"  # reporters: account handset
SPAMMER = "8613700000001"  # account handset2
SPAMMER_NATIONAL = "13700000001"
REPORTERS = [f"86138000000{i:02d}" for i in range(1, 7)]
ACK = re.compile(r"举报编号(?P<id>\w+)，我们将在48小时内处理")


@pytest.fixture
async def bench(tmp_path: Path):
    b = await service_bench(tmp_path, start=at(2026, 11, 21, 10))
    yield b
    await b.close()


async def send(bench, msisdn: str, text: str):
    return await bench.send(SpamReportHandler(), msisdn, text, CODE)


def texts(outcome, to: str | None = None) -> list[str]:
    return [r.text for r in outcome.replies if to is None or r.to == to]


async def reports(bench, **filters) -> list[SpamReport]:
    return await bench.store.find(SpamReport, order_by="created_at", **filters)


async def report_ok(bench, reporter: str, text: str) -> SpamReport:
    """Send a report that must be accepted; returns the stored report the ack names."""
    outcome = await send(bench, reporter, text)
    match = ACK.search(outcome.replies[0].text)
    assert match, texts(outcome)
    (found,) = await bench.store.find(SpamReport, id=match["id"])
    assert found.reporter == reporter
    return found


@pytest.mark.parametrize(
    "text",
    [
        "13700000001*恭喜中奖，请点击领取",
        "13700000001＊恭喜中奖，请点击领取",  # full-width star
        "13700000001 恭喜中奖，请点击领取",  # space
        "+8613700000001*恭喜中奖，请点击领取",
        "8613700000001*恭喜中奖，请点击领取",
        "１３７０００００００１＊恭喜中奖，请点击领取",  # full-width digits
        "  13700000001 * 恭喜中奖，请点击领取  ",
        "(+86)13700000001*恭喜中奖，请点击领取",  # the country code in brackets
        "(+86) 137 0000 0001*恭喜中奖，请点击领取",
        "(+86)13700000001 恭喜中奖，请点击领取",  # and a space before the text
        "（+86） 13700000001 恭喜中奖，请点击领取",
    ],
)
async def test_report_formats_name_the_same_number_and_keep_the_text(bench, text: str) -> None:
    outcome = await send(bench, A, text)
    (report,) = await reports(bench)
    assert (report.reporter, report.reported, report.text, report.status) == (A, SPAMMER, "恭喜中奖，请点击领取", "received")
    ack = outcome.replies[0]
    assert (ack.to, ack.source) == (A, CODE)
    assert ACK.search(ack.text)["id"] == report.id
    assert SPAMMER_NATIONAL in ack.text and outcome.completed
    assert await bench.store.find(Block) == [Block(ANY_ID, SPAMMER, A, bench.clock.now(), None, ANY_ID)]


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


ANY_ID = _Any()


@pytest.mark.parametrize(("window", "zh", "en"), [(30, "1分钟", "1 min"), (90, "1分钟", "1 min"), (7200, "2小时", "2 h")])
async def test_the_prompt_for_the_number_words_its_window_as_the_other_prompts_do(tmp_path: Path, window, zh, en) -> None:
    """It said 2 minutes of a 90 s window (a number sent at 100 s filed a report without its text) and 120 minutes
    of 2 hours, where the 0000 listing and the confirmation say 1 minute and 2 hours; a window under a minute is
    1 minute, not 0 (a subscriber told to reply within 0 minutes would not try)."""
    config = load_config()
    config = replace(config, services=replace(config.services, spam_follow_up_window=window))
    bench = await service_bench(tmp_path, config, start=at(2026, 11, 21, 10))
    try:
        assert f"请在{zh}内回复发送该垃圾短信的手机号码" in texts(await send(bench, A, "恭喜中奖"))[0]
        assert f"请在{zh}内只回复发送该短信的手机号码" in texts(await send(bench, A, "又一条"))[0]
        await bench.store.apply([Put(Subscriber(REPORTERS[1], "en"))])
        assert f"Please reply within {en} with the mobile number" in texts(await send(bench, REPORTERS[1], "Win!"))[0]
    finally:
        await bench.close()


async def test_the_star_keeps_stars_and_case_of_the_text(bench) -> None:
    report = await report_ok(bench, A, "13700000001*Win a FREE iPhone *now*")
    assert report.text == "Win a FREE iPhone *now*"


async def test_bare_text_asks_for_the_number_and_the_number_completes_the_report(bench) -> None:
    asked = await send(bench, A, "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取")
    assert "30分钟内回复发送该垃圾短信的手机号码" in asked.replies[0].text and not asked.completed
    (dialogue,) = await bench.store.find(Dialogue, msisdn=A)
    assert (dialogue.kind, dialogue.expires_at) == ("spam.number", bench.clock.now() + 1800)
    assert await reports(bench) == []

    bench.clock.advance(29 * 60)
    report = await report_ok(bench, A, "+86 137-0000-0001")
    assert (report.reported, report.text) == (SPAMMER, "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取")
    assert await bench.store.find(Dialogue) == []


@pytest.mark.parametrize("answer", ["13700000001。", "13700000001.", "号码13700000001", "号码：137-0000-0001。", "手机号是 13700000001！",
                                    "(+86)13700000001", "（+86） 137 0000 0001",
                                    # English labels, whatever the subscriber's language (they were "not a number")
                                    "Number: 13700000001", "number is 13700000001", "Tel: 13700000001", "TEL. 13700000001",
                                    "Mobile number: 13700000001.", "mobile no.137 0000 0001", "Phone number is: +8613700000001",
                                    "phone 13700000001", "No. 13700000001", "NUMBER IS 13700000001",
                                    "Number Is: 13700000001", "My number is 13700000001", "THE MOBILE NUMBER IS 13700000001", "我的号码是13700000001",
                                    "我的手机号：137 0000 0001。",
                                    "Number : 13700000001", "号码 ：13700000001",  # a space before the colon
                                    "Tel.No. 13700000001", "PhoneNo: 13700000001",  # a label written without its space
                                    "13700000001。。", "13700000001!!"])  # fmt: skip
async def test_the_number_answered_with_a_label_or_a_full_stop_completes_the_report(bench, answer: str) -> None:
    await send(bench, A, "【发票】代开各类发票，量大从优")
    report = await report_ok(bench, A, answer)
    assert (report.reported, report.text) == (SPAMMER, "【发票】代开各类发票，量大从优")
    assert await bench.store.find(Dialogue) == []


async def test_after_the_window_a_bare_number_is_a_report_without_text(bench) -> None:
    await send(bench, A, "恭喜您中奖了")
    bench.clock.advance(30 * 60 + 1)
    report = await report_ok(bench, A, SPAMMER_NATIONAL)
    assert (report.reported, report.text) == (SPAMMER, "")
    assert await bench.store.find(Dialogue) == []  # the expired prompt is cleared too


async def test_while_a_forwarded_text_waits_for_its_number_another_text_does_not_replace_it(bench) -> None:
    await send(bench, A, "【中奖通知】恭喜您获得iPhone一部，请点击领取")
    bench.clock.advance(600)
    for text in ("不知道是哪个号码", "Y", "second spam"):
        [refused] = texts(await send(bench, A, text))
        assert refused == "未能识别号码，本条未作为举报内容。您之前转发的短信（“【中奖通知】恭喜您获得iPho…”）仍在等待发送号码：请在20分钟内只回复发送该短信的手机号码，例如13912345678。"
    [dialogue] = await bench.store.find(Dialogue)
    assert dialogue.expires_at == bench.clock.now() - 600 + 1800  # the prompt's window is not renewed
    report = await report_ok(bench, A, SPAMMER_NATIONAL)
    assert report.text == "【中奖通知】恭喜您获得iPhone一部，请点击领取"


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("13800000001*spam", "不能举报自己"),  # own number, national form
        ("+8613800000001 spam", "不能举报自己"),  # own number, international, space separator
        ("10086*你好", "服务号码"),
        ("10086999*spam", "服务号码"),
        ("10086700", "服务号码"),
        ("1066916*TT 头条新闻", "服务号码"),  # an SP service code
        ("106691601*spam", "服务号码"),  # an SP's extended code
        ("10669161234*回T退订", "服务号码"),  # an extended SP code of a subscriber number's length
        ("10086123456*x", "服务号码"),
        ("+8610086123456*x", "服务号码"),
        ("008610086*x", "服务号码"),  # the 00 form is the same number as the + form
        ("008610669161234*x", "服务号码"),
        ("hello1*spam", "不是有效的手机号码"),  # an attempt at a number: it holds a digit
        ("0*spam", "不是有效的手机号码"),  # (a zero is one)
        ("12345*spam", "不是有效的手机号码"),
        ("1380013800O*spam", "不是有效的手机号码"),
        ("12345", "不是有效的手机号码"),
    ],
)
async def test_invalid_reports_get_a_clear_reply_and_create_nothing(bench, text: str, phrase: str) -> None:
    outcome = await send(bench, A, text)
    assert phrase in outcome.replies[0].text and len(outcome.replies) == 1
    assert await reports(bench) == [] and await bench.store.find(Block) == []


async def test_an_invalid_number_leaves_the_forwarded_text_waiting(bench) -> None:
    await send(bench, A, "spam text")
    assert "服务号码" in texts(await send(bench, A, "10086"))[0]
    report = await report_ok(bench, A, SPAMMER_NATIONAL)
    assert report.text == "spam text"


async def test_leading_digits_with_a_space_but_no_number_are_a_forwarded_text(bench) -> None:
    outcome = await send(bench, A, "2026 新年大促，全场五折")
    assert "回复发送该垃圾短信的手机号码" in outcome.replies[0].text
    assert (await bench.store.find(Dialogue))[0].data == {"text": "2026 新年大促，全场五折"}


@pytest.mark.parametrize("written", ["+86 13700000001", "137 0000 0001", "+86 137 0000 0001", "（+86） 137-0000-0001",
                                     "８６ １３７ ００００ ０００１", "13700000001"])  # fmt: skip
async def test_a_number_written_in_groups_before_a_space_and_the_text_is_reported(bench, written: str) -> None:
    """`+86 137… 恭喜…` and `137 0000 0001 恭喜…` were forwarded texts: the reporter was asked for the number they had
    given (with a star they were reports)."""
    report = await report_ok(bench, A, f"{written} 恭喜您中奖了")
    assert (report.reported, report.text) == (SPAMMER, "恭喜您中奖了")
    assert await bench.store.find(Dialogue) == []


async def test_digits_after_a_number_and_a_space_stay_in_the_text(bench) -> None:
    """The number is the longest run of groups that is a subscriber's: `2 个红包` is not part of it."""
    report = await report_ok(bench, A, "137 0000 0001 2 个红包待领取")
    assert (report.reported, report.text) == (SPAMMER, "2 个红包待领取")


@pytest.mark.parametrize(("forwarded", "phrase"), [("2 个红包待领取", "回复发送该垃圾短信的手机号码"),
                                                   ("2026 13700000001 新年大促", "回复发送该垃圾短信的手机号码"),
                                                   ("10086 您的话费余额不足", "服务号码"),
                                                   ("+86 138 0000 0001 中奖", "您本机的号码")])  # fmt: skip
async def test_leading_groups_that_are_no_other_subscribers_number_file_no_report(bench, forwarded: str, phrase: str) -> None:
    """A forwarded text that merely begins with digits is no report of a wrong number; a code or the reporter's own
    number, written in groups, is refused."""
    outcome = await send(bench, A, forwarded)
    assert phrase in outcome.replies[0].text, texts(outcome)
    assert await reports(bench) == []


@pytest.mark.parametrize("forwarded", ["WINNER*Claim your 1000 prize now", "FreeMsg: *Reply STOP", "*FREE* ringtones, text GO",
                                       "abc*spam", "恭喜您获得一等奖*iPhone*"])  # fmt: skip
async def test_a_star_with_no_digit_before_it_is_in_a_forwarded_text(bench, forwarded: str) -> None:
    """English spam marks words with stars: `WINNER*Claim…` was refused as '"WINNER" is not a valid mobile
    number', `*FREE*…` as '"" is not…', where the Chinese `恭喜您中奖*…` was taken as the forwarded text it is."""
    outcome = await send(bench, A, forwarded)
    assert "回复发送该垃圾短信的手机号码" in outcome.replies[0].text and await reports(bench) == []
    report = await report_ok(bench, A, SPAMMER_NATIONAL)
    assert (report.reported, report.text) == (SPAMMER, forwarded)


async def test_help_explains_the_format(bench) -> None:
    outcome = await send(bench, A, "帮助")
    assert "号码*短信内容" in outcome.replies[0].text and await reports(bench) == []


async def test_a_report_blocks_the_number_for_that_reporter_only_once(bench) -> None:
    await report_ok(bench, A, "13700000001*one")
    await report_ok(bench, A, "13700000001*two")
    (block,) = await bench.store.find(Block)
    assert (block.reported, block.reporter, block.lifted_at) == (SPAMMER, A, None)


async def test_distinct_reporters_at_the_threshold_block_network_wide_and_all_are_told(bench) -> None:
    for reporter in REPORTERS[:4]:
        outcome = await send(bench, reporter, "13700000001*spam")
        assert len(outcome.replies) == 1
        bench.clock.advance(3600)
    assert await bench.store.find(Block, reporter="") == []
    last = await send(bench, REPORTERS[4], "13700000001*spam")
    (network,) = await bench.store.find(Block, reporter="")
    assert (network.reported, network.lifted_at) == (SPAMMER, None)
    told = [r.to for r in last.replies if "已被处理" in r.text]
    assert sorted(told) == sorted(REPORTERS[:5]) and all("13700000001" in t for t in texts(last)[1:])
    assert texts(last, REPORTERS[4])[0].startswith("您的举报已受理")  # the fifth gets the ack first
    assert {r.status for r in await reports(bench)} == {"handled"}


async def test_each_reporter_is_told_once_even_with_several_reports(bench) -> None:
    for reporter in [REPORTERS[0], REPORTERS[0], *REPORTERS[1:4], REPORTERS[1]]:
        await send(bench, reporter, "13700000001*spam")
    last = await send(bench, REPORTERS[4], "13700000001*spam")
    told = [r.to for r in last.replies if "已被处理" in r.text]
    assert sorted(told) == sorted(REPORTERS[:5])


async def test_one_reporter_repeating_never_blocks(bench) -> None:
    for _ in range(8):
        await report_ok(bench, A, "13700000001*spam again")
    assert await bench.store.find(Block, reporter="") == []
    assert len(await reports(bench, status="received")) == 8


async def test_reporters_outside_the_window_do_not_count(bench) -> None:
    for reporter in REPORTERS[:4]:
        await send(bench, reporter, "13700000001*spam")
    bench.clock.advance(24 * 3600 + 1)
    await send(bench, REPORTERS[4], "13700000001*spam")
    assert await bench.store.find(Block, reporter="") == []


async def test_a_report_of_a_number_already_blocked_is_handled_at_once(bench) -> None:
    for reporter in REPORTERS[:5]:
        await send(bench, reporter, "13700000001*spam")
    outcome = await send(bench, REPORTERS[5], "13700000001*more spam")
    assert [r.to for r in outcome.replies] == [REPORTERS[5]] * 2 and "已被处理" in outcome.replies[1].text
    assert (await reports(bench, reporter=REPORTERS[5]))[0].status == "handled"
    assert len(await bench.store.find(Block, reporter="")) == 1


async def test_rate_limit_per_reporter_per_calendar_day(tmp_path: Path) -> None:
    config = load_config()
    config = replace(config, services=replace(config.services, spam_reports_per_day=3))
    bench = await service_bench(tmp_path, config, start=at(2026, 11, 21, 23, 0))
    try:
        for i in range(3):
            await report_ok(bench, A, f"1370000000{i}*spam")
        refused = await send(bench, A, "13700000009*spam")
        assert "已达3条上限" in refused.replies[0].text
        refused_text = await send(bench, A, "a forwarded text")
        assert "已达3条上限" in refused_text.replies[0].text and await bench.store.find(Dialogue) == []
        assert len(await reports(bench)) == 3
        await report_ok(bench, REPORTERS[1], "13700000009*spam")  # others are not limited by A
        bench.clock.advance(3600)  # 00:00 the next day, operator time
        await report_ok(bench, A, "13700000009*spam")
    finally:
        await bench.close()


async def test_lift_block_lifts_the_network_block_but_keeps_personal_ones(bench) -> None:
    for reporter in REPORTERS[:5]:
        await send(bench, reporter, "13700000001*spam")
    bench.clock.advance(60)
    outcome = await bench.commit(await lift_block(bench.ctx, "+86 13700000001", bench.clock.now()))
    (network,) = await bench.store.find(Block, reporter="")
    assert network.lifted_at == bench.clock.now() and outcome.replies == []
    assert [b.reported for b in await active_blocks(bench.ctx, network_only=True)] == []
    assert len(await active_blocks(bench.ctx)) == 5  # the reporters' own blocks stay
    # Handled reports do not count again: one new report does not block it anew.
    await send(bench, REPORTERS[5], "13700000001*spam")
    assert await active_blocks(bench.ctx, network_only=True) == []
    with pytest.raises(ValueError, match="not blocked network-wide"):
        await lift_block(bench.ctx, SPAMMER, bench.clock.now())


async def test_lift_block_of_an_unknown_number_raises(bench) -> None:
    with pytest.raises(ValueError, match="13900000000"):
        await lift_block(bench.ctx, "13900000000", bench.clock.now())


async def test_operator_views(bench) -> None:
    other = "8613700000002"
    for reporter in REPORTERS[:5]:
        await send(bench, reporter, "13700000001*spam")
    await send(bench, A, "13700000002*a")
    await send(bench, A, "13700000002*b")
    listed = await list_reports(bench.ctx, reported=SPAMMER_NATIONAL)
    assert len(listed) == 5 and {r.reported for r in listed} == {SPAMMER}
    assert [r.text for r in await list_reports(bench.ctx, reporter=A, reported=other)] == ["b", "a"]  # newest first
    assert len(await list_reports(bench.ctx, status="received")) == 2
    top = await top_reported(bench.ctx, since=bench.clock.now() - 3600)
    assert [(t.number, t.reports, t.reporters, t.blocked) for t in top] == [(SPAMMER, 5, 5, True), (other, 2, 1, False)]
    assert await top_reported(bench.ctx, since=bench.clock.now() + 1) == []
    (network,) = await active_blocks(bench.ctx, network_only=True)
    assert network.reported == SPAMMER


async def test_network_blocks_are_listed_oldest_first_whatever_order_their_rows_are_in(bench) -> None:
    """active_blocks lists blocks oldest first (README), network-wide ones too: without its order the operator's list
    came in the store's row order, a block made later but stored first (an import, a restore) ahead of older ones."""
    now = bench.clock.now()
    newer = Block(id="a-newer", reported="8613700000009", reporter="", created_at=now)
    older = Block(id="z-older", reported="8613700000008", reporter="", created_at=now - 100)
    await bench.commit(Outcome().put(newer, older))
    assert [b.id for b in await active_blocks(bench.ctx, network_only=True)] == ["z-older", "a-newer"]
    assert [b.id for b in await active_blocks(bench.ctx)] == ["z-older", "a-newer"]


async def test_operator_views_take_numbers_as_written_and_datetimes(bench) -> None:
    for reporter in REPORTERS[:2]:
        await send(bench, reporter, "13700000001*spam")
    full_width = "１３８ ０００００ ００２"  # REPORTERS[1], as a phone's input method may type it
    for written in (full_width, "13800000002\n", "\t+86 138 0000 0002"):  # pasted with the line's end, or a tab
        assert [r.reporter for r in await list_reports(bench.ctx, reporter=written)] == [REPORTERS[1]]
    assert len(await list_reports(bench.ctx, reported="＋８６ １３７－００００－０００１")) == 2
    hour_ago = dt.datetime.fromtimestamp(bench.clock.now() - 3600, CHINA)
    assert len(await list_reports(bench.ctx, since=hour_ago, until=hour_ago + dt.timedelta(hours=2))) == 2
    assert [(t.number, t.reporters) for t in await top_reported(bench.ctx, since=hour_ago)] == [(SPAMMER, 2)]
    assert [t.number for t in await top_reported(bench.ctx, since=None)] == [SPAMMER]


@pytest.mark.parametrize(
    ("lookup", "filters", "named"),
    [
        (list_reports, {"reporter": 8613800000001}, "reporter"),  # an AttributeError from inside the number plan
        (list_reports, {"reporter": "010-12345678"}, "reporter"),  # a landline: no subscriber reports from it
        (list_reports, {"reported": "10086"}, "reported"),  # a report cannot name a short code
        (list_reports, {"reported": "abc"}, "reported"),
        (list_reports, {"status": "open"}, "status"),  # received or handled
        (list_reports, {"since": "yesterday"}, "since"),
        (list_reports, {"until": dt.datetime(2026, 11, 22)}, "until"),  # naive: whose midnight?
        (list_reports, {"limit": "10"}, "limit"),
        (top_reported, {"since": "yesterday"}, "since"),
        (top_reported, {"since": dt.datetime(2026, 11, 21)}, "since"),
        (top_reported, {"since": 0, "limit": 0}, "limit"),
        # Beyond SQLite's integers they raised OverflowError / IntegrityError from the store; milliseconds matched none
        (list_reports, {"since": 10**30}, "since"),
        (list_reports, {"until": 1_764_000_000_000}, "until"),
        (list_reports, {"until": 253_402_300_800}, "until"),  # a second after datetime's last
        # Before 1970: no report, ever (-10**30 also overflowed SQLite's integers)
        (list_reports, {"until": -1}, "until"),
        (list_reports, {"until": -(10**30)}, "until"),
        (list_reports, {"limit": 2**63}, "limit"),
        (top_reported, {"since": float("nan")}, "since"),
    ],
)
async def test_operator_views_refuse_a_filter_no_report_can_match(bench, lookup, filters: dict, named: str) -> None:
    """Each answered an empty list (or raised from inside), as if there were no such reports."""
    await send(bench, REPORTERS[0], "13700000001*spam")
    with pytest.raises(ValueError, match=f"^{named} "):
        await lookup(bench.ctx, **filters)


async def test_english_subscribers_get_english(bench) -> None:
    await bench.store.apply([Put(Subscriber(A, "en"))])
    outcome = await send(bench, A, "13700000001*spam")
    assert outcome.replies[0].text.startswith("Your report has been accepted, report ID ")
    assert "10086" in (await send(bench, A, "10086*x")).replies[0].text


def test_parse() -> None:
    assert parse("13700000001*x*y") == spam_report.Parsed("report", "13700000001", "x*y")
    assert parse("137 0000 0001") == spam_report.Parsed("report", "137 0000 0001")
    assert parse("号码：137 0000 0001。") == spam_report.Parsed("report", "137 0000 0001")
    assert parse("2026。").kind == "report"  # a number alone, refused as not a mobile number
    longest = "号码：13700000001" + "。" * (spam_report.ONLY_NUMBER_CHARS - len("号码：13700000001"))
    assert parse(longest) == spam_report.Parsed("report", "13700000001")  # a number alone up to the bound, not over it
    assert parse(longest + "。").kind == "text"
    assert parse("号码是多少？").kind == "text"
    assert parse("abc1*spam").kind == "report"  # an attempt at a number: refused as not a number
    assert parse("abc*spam").kind == "text"  # no digit before the star: spam text that holds one
    assert parse("恭喜您获得一等奖*iPhone*").kind == "text"  # spam text that holds a star: forwarded
    assert parse("HELP").kind == "help"


@pytest.mark.parametrize("run", ["1" + " " * 2000 + "x", " " * 20000 + "x", "1" + "　" * 2000 + "x", "号码" + " " * 2000 + "x",
                                 "Mobile" + " " * 2000 + "x", "number" + " " * 2000 + ":x", "1" + " 。" * 1000 + "x"])  # fmt: skip
def test_a_number_alone_is_matched_in_time_linear_in_the_text(run: str) -> None:
    """The pattern for a number alone backtracked over runs of spaces two of its parts could share: a digit and
    2,000 spaces took 8 s (the 64-character bound on what it is tried on was all that kept the event loop going).
    Here it takes well under a second, labelled or not, and with 20,000 leading spaces (backtracked over quadratically: 7 s)."""
    started = time.perf_counter()
    assert spam_report._ONLY_NUMBER.match(run) is None
    assert time.perf_counter() - started < 0.5
