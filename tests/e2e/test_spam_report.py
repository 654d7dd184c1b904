"""10086999 spam reporting end to end (SPEC 3.3): handsets text reports, read the replies, spammers get refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.clock import SimulatedClock
from gateway.store.base import WriteSkipped
from gateway.store.records import Block, SpamReport
from gateway.templates import Templates
from handlers.spam_report import active_blocks, list_reports, reported_key, top_reported
from tests.e2e.test_unsubscribe import statuses, subscribe
from tests.polling import eventually
from tests.services_support import CHINA, at
from tests.smpp_handset import ESME_RMSGQFUL, ESME_ROK, is_receipt, receipt_fields, text, texts_from

SPAM_CODE = "10086999"
SMSGW_RSENDERBLOCKED = 0x400  # the source is blocked network-wide after spam reports
SMSGW_RBLOCKEDBYRECIPIENT = 0x401  # the destination reported the source as spam
A = "8613800000001"  # reporters: account handset
B = "8613900000001"  # a bystander who never reports: account handset
REPORTERS = [f"86138000000{i:02d}" for i in range(1, 6)]
SPAMMER = "8613700000001"  # account handset2
SPAM = "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取"
ACK = re.compile(r"^您的举报已受理，举报编号(?P<id>\w+)，我们将在48小时内处理。(?P<number>\d+)已不能再向您发送短信")
HANDLED = re.compile(r"^您举报的(?P<number>\d+)已被处理")
TEMPLATES = Templates.load(Path(__file__).resolve().parents[2] / "config", "zh")


def phone(handset, number: str, gw=None):
    return handset(number, address_range=number, gw=gw)


def replies(ph, count: int = 1, timeout: float = 5.0) -> list[str]:
    """The next `count` texts from 10086999, each reassembled from its parts."""
    return texts_from(ph, SPAM_CODE, count, timeout)


def ask(ph, message: str) -> str:
    assert ph.submit(SPAM_CODE, message).status == ESME_ROK
    return replies(ph)[0]


def report(ph, message: str, controller) -> SpamReport:
    """A report that must be accepted: the ack's id names a stored report of this reporter."""
    ack = ask(ph, message)
    match = ACK.match(ack)
    assert match, ack
    (stored,) = controller.call(controller.gateway.store.find(SpamReport, id=match["id"]))
    assert stored.reporter == ph.number and stored.reported.endswith(match["number"])
    return stored


def reports(controller, **filters) -> list[SpamReport]:
    return controller.call(controller.gateway.store.find(SpamReport, **filters))


def assert_rejected(sender, sent, err: str, error_code: int) -> None:
    """`sent` ended rejected: its receipt says REJECTD err:<err>, query_sm its state and one-octet error_code."""
    receipt = receipt_fields(sender.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"], receipt["err"]) == (sent.message_id.decode(), "REJECTD", err)
    answer = sender.query(sent.message_id)
    assert (answer.message_state, answer.error_code) == (MESSAGE_STATE_REJECTED, error_code)


def reaches(sender, receiver) -> bool:
    """sender's submit_sm to receiver is accepted and delivered; False when refused (asserting the status)."""
    resp = sender.submit(receiver.number, "hello")
    if resp.status != ESME_ROK:
        return False
    assert text(receiver.expect(predicate=lambda p: p.source_addr == sender.number.encode())) == "hello"
    return True


@pytest.mark.parametrize(
    "message",
    ["13700000001*" + SPAM, "13700000001＊" + SPAM, "13700000001 " + SPAM, "+8613700000001*" + SPAM, "8613700000001 " + SPAM,
     "+86 13700000001 " + SPAM, "137 0000 0001 " + SPAM],  # a number in groups before a space: was a forwarded text
)
def test_report_formats(gateway, handset, message: str) -> None:
    a = phone(handset, A)
    stored = report(a, message, gateway)
    assert (stored.reported, stored.text, stored.status) == (SPAMMER, SPAM, "received")


def test_a_report_to_a_short_code_running_the_service_is_answered_from_that_code(make_gateway, handset) -> None:
    """A [[short_codes]] entry running spam_report on 12321: its help and refusals came from 12321, but the ack
    with the report's id (and the notice that the number is handled) from 10086999, a number never texted."""
    gw = make_gateway(short_codes=[{"code": "12321", "handler": "spam_report"}])
    a = phone(handset, A, gw=gw)
    assert a.submit("12321", "13700000001*" + SPAM).status == ESME_ROK
    [ack] = texts_from(a, "12321", 1, 5.0)
    assert ACK.match(ack), ack
    a.expect_none(0.3, lambda p: p.source_addr == SPAM_CODE.encode())


def test_a_report_stops_the_spammer_reaching_the_reporter_only(gateway, handset) -> None:
    a, b, s = phone(handset, A), phone(handset, B), phone(handset, SPAMMER)
    assert reaches(s, a)
    report(a, "13700000001*" + SPAM, gateway)
    assert s.submit(A, "more spam").status == SMSGW_RBLOCKEDBYRECIPIENT
    a.expect_none(0.3, lambda p: p.source_addr == SPAMMER.encode())
    assert reaches(s, b)
    assert a.submit(SPAMMER, "stop it").status == ESME_ROK  # the block is one way


def test_bare_text_then_the_number_completes_the_report(gateway, handset) -> None:
    a = phone(handset, A)
    assert "请在30分钟内回复发送该垃圾短信的手机号码" in ask(a, SPAM)
    assert reports(gateway) == []
    stored = report(a, "１３７０００００００１", gateway)  # full-width digits, as a Chinese keyboard sends them
    assert (stored.reported, stored.text) == (SPAMMER, SPAM)


def test_a_complete_report_of_another_text_leaves_the_forwarded_text_waiting_for_its_number(gateway, handset) -> None:
    """The complete report closed the prompt without a word: the number sent in time, as asked, was filed with no
    text, the forwarded spam lost."""
    a = phone(handset, A)
    assert "请在30分钟内回复发送该垃圾短信的手机号码" in ask(a, SPAM)
    other = report(a, "13700000002*另一条垃圾短信", gateway)
    assert (other.reported, other.text) == ("8613700000002", "另一条垃圾短信")
    stored = report(a, "13700000001", gateway)
    assert (stored.reported, stored.text) == (SPAMMER, SPAM)


def test_the_number_with_the_full_stop_a_chinese_keyboard_adds_completes_the_report(gateway, handset) -> None:
    a = phone(handset, A)
    assert "请在30分钟内回复发送该垃圾短信的手机号码" in ask(a, SPAM)
    stored = report(a, "号码：13700000001。", gateway)
    assert (stored.reported, stored.text) == (SPAMMER, SPAM)


def test_the_number_after_the_window_is_a_report_without_the_text(make_gateway, handset) -> None:
    clock = SimulatedClock(at(2026, 11, 21, 10))
    gw = make_gateway(clock=clock)
    a = phone(handset, A, gw)
    assert "30分钟" in ask(a, SPAM)
    clock.advance(30 * 60 + 5)
    stored = report(a, "13700000001", gw)
    assert (stored.reported, stored.text) == (SPAMMER, "")


def test_a_report_made_exactly_the_window_ago_no_longer_counts_towards_a_block(make_gateway, handset) -> None:
    """spam_block_window (24 h) ends as the confirmation's and the survey's do: an answer exactly that long after is
    outside it. The first report counted for a block decided exactly 24 h after it."""
    clock = SimulatedClock(at(2026, 11, 21, 10), freeze=True)
    gw = make_gateway(clock=clock)
    phones = [phone(handset, n, gw) for n in REPORTERS]
    report(phones[0], "13700000001*" + SPAM, gw)
    clock.advance(86400)
    for ph in phones[1:]:
        report(ph, "13700000001*" + SPAM, gw)
    assert {r.status for r in reports(gw, reported=SPAMMER)} == {"received"}
    assert phone(handset, SPAMMER, gw).submit(B, "not blocked").status == ESME_ROK


def test_invalid_reports_get_a_clear_reply_and_no_report(gateway, handset) -> None:
    a, s = phone(handset, A), phone(handset, SPAMMER)
    assert "不能举报自己" in ask(a, "13800000001*" + SPAM)
    assert "是中国移动或业务提供商的服务号码" in ask(a, "10086*" + SPAM)
    assert "1066916是中国移动或业务提供商的服务号码" in ask(a, "1066916 " + SPAM)
    assert "“1380013800O”不是有效的手机号码" in ask(a, "1380013800O*" + SPAM)
    assert "不是有效的手机号码" in ask(a, "12345")
    assert reports(gateway) == [] and controller_blocks(gateway) == []
    assert reaches(s, a)


def controller_blocks(controller) -> list[Block]:
    return controller.call(controller.gateway.store.find(Block))


def block_by_five(controller, handset) -> list:
    """REPORTERS each report SPAMMER; returns their phones after checking each got the ack and the notice once."""
    phones = [phone(handset, n, controller) for n in REPORTERS]
    for ph in phones[:-1]:
        report(ph, "13700000001*" + SPAM, controller)
    last = phones[-1]
    assert last.submit(SPAM_CODE, "+8613700000001*" + SPAM).status == ESME_ROK
    got = replies(last, 2)
    assert any(ACK.match(t) for t in got), got
    for ph in phones:
        notices = [t for t in (got if ph is last else replies(ph)) if HANDLED.match(t)]
        assert [HANDLED.match(t)["number"] for t in notices] == ["13700000001"]
    for ph in phones:
        ph.expect_none(0.2, lambda p: p.source_addr == SPAM_CODE.encode())  # told once
    return phones


def test_five_distinct_reporters_block_the_number_network_wide(gateway, handset) -> None:
    s, b = phone(handset, SPAMMER), phone(handset, B)
    block_by_five(gateway, handset)
    assert s.submit(B, "spam to a bystander").status == SMSGW_RSENDERBLOCKED
    assert s.submit(REPORTERS[0], "spam").status == SMSGW_RSENDERBLOCKED
    b.expect_none(0.3)
    assert {r.status for r in reports(gateway, reported=SPAMMER)} == {"handled"}


def test_the_operators_look_reports_up_by_a_number_as_written_and_a_datetime(gateway, handset) -> None:
    """A supervisor's natural input answered nothing: a full-width number, a datetime (compared as text)."""
    block_by_five(gateway, handset)
    ctx = gateway.gateway.service_context
    hour_ago = dt.datetime.fromtimestamp(gateway.clock.now() - 3600, CHINA)
    listed = gateway.call(list_reports(ctx, reporter="１３８ ００００ ０００１", since=hour_ago))  # REPORTERS[0]
    assert [(r.reporter, r.reported, r.status) for r in listed] == [(REPORTERS[0], SPAMMER, "handled")]
    top = gateway.call(top_reported(ctx, since=hour_ago))
    assert [(t.number, t.reports, t.reporters, t.blocked) for t in top] == [(SPAMMER, 5, 5, True)]
    for bad in ({"status": "open"}, {"since": "yesterday"}, {"reporter": 8613800000001}):
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} "):
            gateway.call(list_reports(ctx, **bad))


def test_the_operators_lookups_as_the_readme_documents_them(gateway, handset) -> None:
    """SPEC 3.3: operators list reports, top reported numbers and blocks (README: "Operators look reports up")."""
    report(phone(handset, B), "13700000002*loan offer", gateway)
    block_by_five(gateway, handset)
    ctx = gateway.gateway.service_context
    newest = gateway.call(list_reports(ctx, status="handled", limit=2))
    assert [(r.reported, r.status) for r in newest] == [(SPAMMER, "handled")] * 2
    assert newest[0].created_at >= newest[1].created_at and newest[0].text == SPAM
    (loan,) = gateway.call(list_reports(ctx, reported="13700000002"))
    assert (loan.reporter, loan.text, loan.status) == (B, "loan offer", "received")
    top = gateway.call(top_reported(ctx, None, limit=1))
    assert [(t.number, t.reports, t.reporters, t.blocked) for t in top] == [(SPAMMER, 5, 5, True)]
    blocks = gateway.call(active_blocks(ctx))
    assert [(b.reported, b.reporter) for b in blocks] == [("8613700000002", B)] + [(SPAMMER, r) for r in REPORTERS] + [
        (SPAMMER, "")]  # oldest first: each reporter's own block, then the network-wide one
    (network,) = gateway.call(active_blocks(ctx, network_only=True))
    assert (network.reported, network.reporter, network.lifted_at) == (SPAMMER, "", None)
    assert network.reason.startswith("5 distinct reporters")


MESSAGE_STATE_REJECTED = 8


def test_spam_waiting_for_an_offline_reporter_is_not_delivered_after_the_report(gateway, handset) -> None:
    s = phone(handset, SPAMMER)
    spam = s.submit(A, SPAM, registered_delivery=1)  # A is off line: it waits in the store
    assert spam.status == ESME_ROK
    on_the_way = handset(A, bind="tx", address_range=A)  # A reports it from a phone that cannot receive
    assert on_the_way.submit(SPAM_CODE, "13700000001*" + SPAM).status == ESME_ROK
    spam_to_a = SimpleNamespace(source_addr=SPAMMER, dest_addr=A, account="handset2")
    assert eventually(lambda: gateway.gateway.guards.undeliverable(spam_to_a) is not None)  # the report is in force
    a = phone(handset, A)  # back on line: the ack, never the spam it says can no longer reach A
    assert ACK.match(replies(a)[0])
    a.expect_none(0.3, lambda p: p.source_addr == SPAMMER.encode())
    assert_rejected(s, spam, "401", 41)  # one octet: 41 for err:401


def test_spam_waiting_for_a_bystander_is_not_delivered_once_the_number_is_blocked(gateway, handset) -> None:
    s = phone(handset, SPAMMER)
    spam = s.submit(B, SPAM, registered_delivery=1)  # B is off line
    assert spam.status == ESME_ROK
    block_by_five(gateway, handset)
    b = phone(handset, B)
    b.expect_none(0.5)
    assert_rejected(s, spam, "400", 40)  # one octet: 40 for err:400


NEIGHBOUR = "8613900000077"  # a spammer of account handset, as the reporters are: one bind sends for both


@pytest.mark.parametrize(("network_wide", "err", "error_code"), [(False, "401", 41), (True, "400", 40)])
def test_spam_accepted_in_the_instant_before_the_report_committed_is_not_delivered(
    gateway, handset, network_wide: bool, err: str, error_code: int
) -> None:
    """The report (the fifth, blocking network-wide) and the spam in one write: the spam passed its intake checks
    before the report's block was committed, and its own commit came after it. Taken as having passed them, it went
    out to a bound victim after the reporter was told the number could no longer reach them."""
    reporters = REPORTERS if network_wide else [A]
    for reporter in reporters[:-1]:
        report(phone(handset, reporter), NEIGHBOUR[2:] + "*" + SPAM, gateway)
    victim = phone(handset, B if network_wide else A)
    spammer = phone(handset, NEIGHBOUR)  # for the spam's receipt
    both = handset(reporters[-1], bind="tx")
    sequences = both.send_together(
        both.make("submit_sm", SPAM_CODE, NEIGHBOUR[2:] + "*" + SPAM, source_addr=reporters[-1]),
        both.make("submit_sm", victim.number, SPAM, source_addr=NEIGHBOUR, registered_delivery=1),
    )  # fmt: skip
    reported, spam = (both.response(sequence) for sequence in sequences)
    assert (reported.status, spam.status) == (ESME_ROK, ESME_ROK)
    assert_rejected(spammer, spam, err, error_code)
    victim.expect_none(0.3, lambda p: p.source_addr == NEIGHBOUR.encode())


def test_a_receipt_naming_a_reported_number_still_reaches_its_reporter(gateway, handset) -> None:
    """A receipt comes from the number its MT went to: the gateway made it, the spammer did not send it."""
    s = phone(handset, SPAMMER)
    reporter = handset(A, bind="tx", address_range=A)  # off line for what comes to A
    assert reporter.submit(SPAM_CODE, "13700000001*" + SPAM).status == ESME_ROK
    spam_to_a = SimpleNamespace(source_addr=SPAMMER, dest_addr=A, account="handset2")
    assert eventually(lambda: gateway.gateway.guards.undeliverable(spam_to_a) is not None)  # the report is in force
    stop = reporter.submit(SPAMMER, "please stop", registered_delivery=1)  # the block is one way: A may still write
    assert text(s.expect()) == "please stop"  # answered: its receipt, from 13700000001, waits for A
    assert eventually(lambda: gateway.gateway.delivery.queued.get(A) == 3)  # the report's ack (2 parts), the receipt
    a = phone(handset, A)
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (stop.message_id.decode(), "DELIVRD")


def test_one_reporter_reporting_five_times_does_not_block(gateway, handset) -> None:
    a, s, b = phone(handset, A), phone(handset, SPAMMER), phone(handset, B)
    for n in range(5):
        report(a, f"13700000001*spam {n}", gateway)
    a.expect_none(0.3, lambda p: p.source_addr == SPAM_CODE.encode())  # no "handled" notice
    assert reaches(s, b)
    assert len(reports(gateway, reported=SPAMMER, status="received")) == 5


def test_rate_limit_per_reporter(make_gateway, handset) -> None:
    gw = make_gateway(services={"spam_reports_per_day": 2})
    a = phone(handset, A, gw)
    report(a, "13700000001*one", gw)
    report(a, "13700000002*two", gw)
    assert "您今天的举报已达2条上限" in ask(a, "13700000003*three")
    assert sorted(r.text for r in reports(gw, reporter=A)) == ["one", "two"]


def test_an_invalid_report_over_the_daily_limit_is_refused_for_what_is_wrong_with_it(make_gateway, handset) -> None:
    """Past the limit, a report naming the reporter's own number or 10086 was answered "您今天的举报已达2条上限…请明天再举报":
    the reporter was told to send it again tomorrow, when it would be refused all the same."""
    gw = make_gateway(services={"spam_reports_per_day": 2})
    a = phone(handset, A, gw)
    report(a, "13700000001*one", gw)
    report(a, "13700000002*two", gw)
    assert ask(a, "13800000001*my own number") == TEMPLATES.render("spam.own_number", "zh", number="13800000001")
    assert ask(a, "10086*a short code") == TEMPLATES.render("spam.short_code", "zh", number="10086", query_keyword="0000", operator="10086")
    assert sorted(r.text for r in reports(gw, reporter=A)) == ["one", "two"]


def test_lifting_the_block_lets_the_number_send_again(gateway, handset) -> None:
    s, b = phone(handset, SPAMMER), phone(handset, B)
    block_by_five(gateway, handset)
    assert s.submit(B, "blocked").status == SMSGW_RSENDERBLOCKED
    gateway.call(gateway.gateway.services.lift_block("13700000001"))
    assert reaches(s, b)
    assert s.submit(REPORTERS[0], "still not to a reporter").status == SMSGW_RBLOCKEDBYRECIPIENT
    with pytest.raises(ValueError, match="not blocked network-wide"):
        gateway.call(gateway.gateway.services.lift_block(SPAMMER))


def test_a_reporters_own_block_can_be_lifted_for_a_number_reported_by_mistake(gateway, handset) -> None:
    """Customer service had no way to let a friend reported by mistake reach the reporter again."""
    friend, a = phone(handset, SPAMMER), phone(handset, A)
    report(a, "13700000001*hello", gateway)
    assert friend.submit(A, "it's me").status == SMSGW_RBLOCKEDBYRECIPIENT
    with pytest.raises(ValueError, match="not blocked network-wide"):  # without the reporter: the network's block
        gateway.call(gateway.gateway.services.lift_block(SPAMMER))
    with pytest.raises(ValueError, match=f"not blocked by {B}"):
        gateway.call(gateway.gateway.services.lift_block(SPAMMER, reporter=B))
    gateway.call(gateway.gateway.services.lift_block("137-0000-0001", reporter="+86 13800000001"))
    assert reaches(friend, a)
    with pytest.raises(ValueError, match=f"not blocked by {A}"):
        gateway.call(gateway.gateway.services.lift_block(SPAMMER, reporter=A))
    for not_text in (8613700000001, None):
        with pytest.raises(ValueError, match="expected a telephone number as a string"):
            gateway.call(gateway.gateway.services.lift_block(not_text))


def test_a_block_reported_in_full_width_digits_is_lifted_by_its_number_in_full_width(gateway, handset) -> None:
    """The SMS path folds `１３７…` (a Chinese input method's digits), lift_block did not: told "not blocked … nothing to
    lift" of a block that was there; a text that is no number at all was "not blocked" either, not refused."""
    friend, a = phone(handset, SPAMMER), phone(handset, A)
    assert ACK.match(ask(a, "１３７０００００００１＊中奖了"))
    assert friend.submit(A, "it's me").status == SMSGW_RBLOCKEDBYRECIPIENT
    for not_a_number in ("abc", "１３７ＯＯＯＯ", "", "+"):
        with pytest.raises(ValueError, match="is not a telephone number"):
            gateway.call(gateway.gateway.services.lift_block(not_a_number, reporter=A))
    gateway.call(gateway.gateway.services.lift_block("１３７０００００００１", reporter="＋８６１３８０００００００１"))
    assert reaches(friend, a)
    with pytest.raises(ValueError, match=f"not blocked by {A}"):
        gateway.call(gateway.gateway.services.lift_block("１３７０００００００１", reporter=A))


def test_spam_that_waited_through_a_block_is_not_delivered_after_its_lift(gateway, handset) -> None:
    """What the spammer had waiting for an off-line subscriber when the block came ends rejected as it would
    during the block, also when the block is lifted before the subscriber comes on line: an MT queued on a
    bind ends at the block itself, and where an MT waited must not decide whether spam goes out."""
    s = phone(handset, SPAMMER)
    spam = s.submit(B, SPAM, registered_delivery=1)  # B is off line: it waits in the store
    assert spam.status == ESME_ROK
    block_by_five(gateway, handset)
    gateway.call(gateway.gateway.services.lift_block(SPAMMER))
    after = s.submit(B, "sent after the lift", registered_delivery=1)
    assert after.status == ESME_ROK
    b = phone(handset, B)
    assert text(b.expect(predicate=lambda p: p.source_addr == SPAMMER.encode())) == "sent after the lift"
    b.expect_none(0.3, lambda p: p.source_addr == SPAMMER.encode())
    assert_rejected(s, spam, "400", 40)
    delivered = receipt_fields(s.expect(predicate=is_receipt))
    assert (delivered["id"], delivered["stat"]) == (after.message_id.decode(), "DELIVRD")


def test_spam_that_waited_through_a_lifted_block_stays_undelivered_after_a_restart(make_gateway, handset, tmp_path) -> None:
    """Ended at the block by the next sweep (below), or, stopped before that sweep, after the restart."""
    db = tmp_path / "lifted.db"
    first = make_gateway(db_path=db)
    s = phone(handset, SPAMMER, first)
    spam = s.submit(B, SPAM, registered_delivery=1)
    assert spam.status == ESME_ROK
    phones = block_by_five(first, handset)
    first.call(first.gateway.services.lift_block(SPAMMER))
    for ph in (s, *phones):
        ph.close()
    first.stop()
    second = make_gateway(db_path=db)
    s = phone(handset, SPAMMER, second)
    b = phone(handset, B, second)
    b.expect_none(0.5, lambda p: p.source_addr == SPAMMER.encode())
    answer = s.query(spam.message_id)
    assert (answer.message_state, answer.error_code) == (MESSAGE_STATE_REJECTED, 40)


@pytest.mark.parametrize("block", ["network-wide", "by the victim"])
def test_a_spammers_backlog_for_an_off_line_victim_ends_at_the_block_and_frees_their_queue(make_gateway, handset, block) -> None:
    """What the spammer had waiting for a subscriber who is off line counted against that subscriber's queue until
    they bound: with max_queued_per_subscriber waiting, everyone else's texts to them were refused ESME_RMSGQFUL
    though none of the spam could ever go out."""
    gw = make_gateway(gateway={"max_queued_per_subscriber": 4})
    s, friend = phone(handset, SPAMMER, gw), phone(handset, "8613800000099", gw)
    spam = [s.submit(B, f"{SPAM} {i}", registered_delivery=1) for i in range(4)]
    assert {resp.status for resp in spam} == {ESME_ROK}
    assert friend.submit(B, "hello").status == ESME_RMSGQFUL
    if block == "network-wide":
        block_by_five(gw, handset)
    else:  # B reports from a bind that only sends: off line for what comes to B (its ack waits in the store too)
        victim = handset(B, gw=gw, bind="tx", address_range=B)
        assert victim.submit(SPAM_CODE, "13700000001*" + SPAM).status == ESME_ROK
    receipts = [receipt_fields(s.expect(predicate=is_receipt)) for _ in spam]
    err = "400" if block == "network-wide" else "401"
    assert sorted((r["id"], r["stat"], r["err"]) for r in receipts) == sorted(
        (resp.message_id.decode(), "REJECTD", err) for resp in spam)
    assert friend.submit(B, "hello").status == ESME_ROK  # (in the case of the report, next to its ack's parts)


@pytest.mark.parametrize("bind", ["tx", "trx"], ids=["from-a-bind-that-only-sends", "from-a-bind-whose-range-leaves-it-out"])
def test_a_spammers_backlog_for_a_victim_no_bind_serves_ends_at_their_report_though_their_account_has_binds(
    make_gateway, handset, bind: str
) -> None:
    """B's account has a bind, but its address_range leaves B out: what the spammer has waiting for B is in the store
    (no bind serves B) and must end at B's report, as for a victim off line, not count against B's queue until a bind
    for B appears. B reports from a bind that only sends, or from one that receives for another number (the account
    vouches for its numbers: a bind may send from one its range leaves out). From the latter, B counted as served
    (Router.serves took the bind B last sent from for one serving B, whatever its range): the spam stayed in the
    store, no receipt came."""
    gw = make_gateway(gateway={"max_queued_per_subscriber": 4})
    other = "8613900000002"
    handset(other, gw=gw, bind="rx", address_range=other)
    s = phone(handset, SPAMMER, gw)
    spam = [s.submit(B, f"{SPAM} {i}", registered_delivery=1) for i in range(4)]
    assert {resp.status for resp in spam} == {ESME_ROK}
    victim = handset(B, gw=gw, bind=bind, address_range=other)
    assert victim.submit(SPAM_CODE, "13700000001*" + SPAM).status == ESME_ROK
    receipts = [receipt_fields(s.expect(predicate=is_receipt)) for _ in spam]
    assert sorted((r["id"], r["stat"], r["err"]) for r in receipts) == sorted(
        (resp.message_id.decode(), "REJECTD", "401") for resp in spam)


@pytest.mark.parametrize("lifted_at", [None, 1.0], ids=["blocked", "lifted since"])
def test_a_spammers_backlog_a_crash_kept_from_its_sweep_ends_at_the_next_start(make_gateway, handset, tmp_path, lifted_at) -> None:
    """A block committed (and perhaps lifted), and the gateway gone before the sweep that ends what it stops
    (refuse_waiting: at the next tick, from memory): the spam waiting for the off-line victim counted against their
    queue again after the restart, until they bound. Here the block is written into the stopped gateway's store, as
    such a crash leaves it (its id sorts after the spam's, as a block's made after them does)."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db, gateway={"max_queued_per_subscriber": 4})
    s = phone(handset, SPAMMER, first)
    spam = [s.submit(B, f"{SPAM} {i}", registered_delivery=1) for i in range(4)]
    assert {resp.status for resp in spam} == {ESME_ROK}
    s.close()
    first.stop()
    store = sqlite3.connect(db, isolation_level=None)
    store.execute("INSERT INTO blocks VALUES ('zz-crash-block', ?, '', 0, ?, 'reported by 5')", (SPAMMER, lifted_at))
    store.close()
    second = make_gateway(db_path=db, gateway={"max_queued_per_subscriber": 4})
    s = phone(handset, SPAMMER, second)
    receipts = [receipt_fields(s.expect(predicate=is_receipt)) for _ in spam]  # B still off line
    assert sorted((r["id"], r["stat"], r["err"]) for r in receipts) == sorted(
        (resp.message_id.decode(), "REJECTD", "400") for resp in spam)
    assert phone(handset, "8613800000099", second).submit(B, "hello").status == ESME_ROK


def test_spam_waiting_for_its_retry_ends_at_the_block(make_gateway, handset) -> None:
    """Before, it ended only when its retry came (an hour here), counting against the recipient's queue until then."""
    gw = make_gateway(gateway={"retry_backoff": [3600]})
    s, b = phone(handset, SPAMMER, gw), phone(handset, B, gw)
    b.answers.append(0x64)  # ESME_RX_T_APPN: try again later
    spam = s.submit(B, SPAM, registered_delivery=1)
    assert spam.status == ESME_ROK
    assert text(b.expect(predicate=lambda p: p.source_addr == SPAMMER.encode())) == SPAM
    block_by_five(gw, handset)
    assert_rejected(s, spam, "400", 40)
    assert not gw.gateway.delivery.queued.get(B)


def test_a_blocked_sender_is_told_so_even_when_the_recipients_queue_is_full(make_gateway, handset) -> None:
    """The block's status, not ESME_RMSGQFUL: told 'queue full', a spammer's platform only tries again later."""
    gw = make_gateway(gateway={"max_queued_per_subscriber": 2})
    s, friend = phone(handset, SPAMMER, gw), phone(handset, "8613800000099", gw)  # not a reporter
    block_by_five(gw, handset)
    for i in range(2):  # B is off line: its queue fills with a friend's texts
        assert friend.submit(B, f"hello {i}").status == ESME_ROK
    assert s.submit(B, SPAM).status == SMSGW_RSENDERBLOCKED
    assert friend.submit(B, "one more").status == ESME_RMSGQFUL


def test_a_restart_between_the_forwarded_text_and_the_number(make_gateway, handset, tmp_path) -> None:
    db = tmp_path / "restart.db"
    first = make_gateway(db_path=db)
    a = phone(handset, A, first)
    assert "30分钟" in ask(a, SPAM)
    a.close()
    first.stop()
    second = make_gateway(db_path=db)
    a, s = phone(handset, A, second), phone(handset, SPAMMER, second)
    stored = report(a, "+86 13700000001", second)
    assert (stored.reported, stored.text) == (SPAMMER, SPAM)
    assert s.submit(A, "spam").status == SMSGW_RBLOCKEDBYRECIPIENT


def test_five_reporters_reporting_at_the_same_moment_still_block_once(gateway, handset) -> None:
    """Reports of one number are decided one at a time even when they arrive together (different reporters,
    different binds): the threshold is reached exactly once, and every reporter is told exactly once."""
    s, b = phone(handset, SPAMMER), phone(handset, B)
    phones = [phone(handset, n, gateway) for n in REPORTERS]
    sequences = [ph.send(ph.make("submit_sm", SPAM_CODE, f"13700000001*{SPAM} #{i}")) for i, ph in enumerate(phones)]
    assert [ph.response(seq).status for ph, seq in zip(phones, sequences)] == [ESME_ROK] * len(phones)
    for ph in phones:
        got = replies(ph, 2)
        assert sum(1 for t in got if ACK.match(t)) == 1 and sum(1 for t in got if HANDLED.match(t)) == 1, got
    network_wide = [blk for blk in controller_blocks(gateway) if not blk.reporter]
    assert [blk.reported for blk in network_wide] == [SPAMMER]
    assert s.submit(B, "spam to a bystander").status == SMSGW_RSENDERBLOCKED
    b.expect_none(0.3)


def test_reports_waiting_for_the_number_are_stored_with_their_handling_until_too_many_wait(make_gateway, handset, tmp_path) -> None:
    """The victims of one spam text report its number together, and reports of one number are decided one at a
    time. A report waiting for its number (held here by the test, as a report being decided holds it) waits
    unstored and is stored with its handling, one commit (it was committed `accepted` first, then handled: a
    second commit before its reply). Once HELD_WAITERS wait, the next are committed first, as before, so a
    client's window does not fill with unanswered reports. All are decided in arrival order, once each."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    gw.gateway.mo.HELD_WAITERS = 2
    # The scheduled jobs' first run bills the month, which passes through every key held at the time (it would
    # queue behind the test's): done here first, then not again for job_check_interval (30 s).
    gw.call(gw.gateway.services.run_due_jobs())
    key = reported_key(SPAMMER)
    locks = gw.gateway.mo.locks
    phones = [phone(handset, n, gw) for n in REPORTERS]
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("CREATE TABLE stored_first (source_addr TEXT)")
        conn.execute("CREATE TRIGGER stored_first AFTER INSERT ON messages WHEN NEW.status = 'accepted'"
                     f" AND NEW.dest_addr = '{SPAM_CODE}' BEGIN INSERT INTO stored_first VALUES (NEW.source_addr); END")  # fmt: skip

        async def hold_the_number() -> bool:
            return locks.take_free((key,))

        async def waiting() -> int:
            return locks.waiters((key,))

        async def release_the_number() -> None:
            locks.release((key,))

        assert gw.call(hold_the_number())
        sent = []
        for i, ph in enumerate(phones, 1):
            sent.append(ph.send(ph.make("submit_sm", SPAM_CODE, "13700000001*" + SPAM)))
            assert eventually(lambda i=i: gw.call(waiting()) == i), f"report {i} is not waiting for the number"
        gw.call(release_the_number())
        assert [ph.response(seq).status for ph, seq in zip(phones, sent)] == [ESME_ROK] * len(phones)
        for ph in phones:
            got = replies(ph, 2)
            assert sum(1 for t in got if ACK.match(t)) == 1 and sum(1 for t in got if HANDLED.match(t)) == 1, got
        assert [row[0] for row in conn.execute("SELECT source_addr FROM stored_first")] == REPORTERS[2:]
    finally:
        conn.close()
    decided = sorted(reports(gw, reported=SPAMMER), key=lambda r: r.created_at)
    assert [r.reporter for r in decided] == REPORTERS
    assert [blk.reported for blk in controller_blocks(gw) if not blk.reporter] == [SPAMMER]


def test_a_report_decided_on_one_whose_commit_fails_does_not_stand(make_gateway, handset, tmp_path) -> None:
    """Reports of one number hand its serial key on as soon as their commit is issued (gateway/mo.py). Here the
    second reporter's report is decided while the first one's commit waits for a lock, and counts it: two
    distinct reporters, the threshold, so it blocks the number. The first one's commit then fails. What the
    second decided must not stand: tried again, it counts only itself, and the number is not blocked."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, services={"spam_block_threshold": 2}, gateway={"mo_retry_backoff": [0.05]})
    first, second = phone(handset, REPORTERS[0], gw), phone(handset, REPORTERS[1], gw)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # Only the first report's own commit fails: it alone blocks the number for its reporter.
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON blocks WHEN NEW.reporter = '{REPORTERS[0]}'"
                     " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")  # fmt: skip
        conn.execute("BEGIN IMMEDIATE")  # the gateway's writer waits for this lock (busy timeout 5 s)
        in_flight = gw.gateway.records._in_flight  # the effects of handled reports whose commit is not done
        (sent_first,) = first.send_together(first.make("submit_sm", SPAM_CODE, "13700000001*" + SPAM))
        first_in_flight = eventually(lambda: len(in_flight) == 1)
        (sent_second,) = second.send_together(second.make("submit_sm", SPAM_CODE, "13700000001*" + SPAM))
        both_in_flight = eventually(lambda: len(in_flight) == 2)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert first_in_flight and both_in_flight, "the second report was not decided while the first one's commit was in flight"
    assert first.response(sent_first).status == ESME_ROK == second.response(sent_second).status
    assert replies(first) == ["抱歉，10086999暂时无法处理您发送的短信，请稍后重新发送。"]  # given up
    (ack,) = replies(second)
    assert ACK.match(ack), ack
    second.expect_none(0.3)  # no "has been handled" notice: the number was not blocked
    assert [(r.reporter, r.status) for r in reports(gw, reported=SPAMMER)] == [(REPORTERS[1], "received")]
    assert gw.call(gw.gateway.store.find(Block, reported=SPAMMER, reporter="")) == []



def test_lifting_a_block_decided_on_a_report_whose_commit_fails_does_not_stand(make_gateway, handset, tmp_path) -> None:
    """An operator lifts the block a report has just decided (the second of threshold 2), while that report's commit
    waits for a lock; the commit then fails. The lift was decided on it, so it fails too (WriteSkipped): no block row
    of a block that never was."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, services={"spam_block_threshold": 2}, gateway={"mo_retry_backoff": [0.05]})
    report(phone(handset, REPORTERS[1], gw), "13700000001*" + SPAM, gw)  # committed: the first of the two
    first = phone(handset, REPORTERS[0], gw)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON blocks WHEN NEW.reporter = '{REPORTERS[0]}'"
                     " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")  # fmt: skip
        conn.execute("BEGIN IMMEDIATE")
        (sent,) = first.send_together(first.make("submit_sm", SPAM_CODE, "13700000001*" + SPAM))
        reported = eventually(lambda: len(gw.gateway.records._in_flight) == 1)
        lift = asyncio.run_coroutine_threadsafe(gw.gateway.services.lift_block("13700000001"), gw._loop)
        lift_issued = eventually(lambda: any(op.after for op in gw.gateway.store._pending))
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert reported and lift_issued
    with pytest.raises(WriteSkipped):
        lift.result(10)
    assert first.response(sent).status == ESME_ROK
    assert replies(first) == ["抱歉，10086999暂时无法处理您发送的短信，请稍后重新发送。"]  # its report given up
    assert [blk.reporter for blk in gw.call(gw.gateway.store.find(Block, reported=SPAMMER))] == [REPORTERS[1]]


def test_a_number_blocked_network_wide_still_reaches_the_operators_own_services(make_gateway, handset) -> None:
    """A blocked number's 0000, serial reply, help and rating were all refused 0x400: a wrongly blocked subscriber
    could not unsubscribe (and was billed on) or reach customer service. The operator's own services (10086,
    10086999, 10086700, and a [[short_codes]] code running one of them) answer it as anyone; SP codes, other
    subscribers and the operator's other codes (10086000, echo) still refuse it."""
    # Not on the calendar's clock: from the 21st to the 25th the jobs' first check reminded SPAMMER of the subscription
    # made here (its trial ending this month), and that reminder from 10086 was read as the 0000 listing.
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), short_codes=[{"code": "10086001", "handler": "customer_service"}])
    s, b = phone(handset, SPAMMER, gw), phone(handset, B, gw)
    [news] = subscribe(gw, SPAMMER, "sina-news")
    block_by_five(gw, handset)
    for dest in (B, "1066916", "10086000"):
        assert s.submit(dest, "TT").status == SMSGW_RSENDERBLOCKED, dest
    b.expect_none(0.2)

    assert s.submit("10086", "0000").status == ESME_ROK
    [listing] = texts_from(s, "10086")
    assert "1.新浪提供的头条新闻，信息费30元/月，服务代码1066916；" in listing
    assert s.submit("10086", "1").status == ESME_ROK
    assert texts_from(s, "10086") == ["您已成功退订新浪公司提供的头条新闻业务，下月起不再收取信息费。"]
    assert statuses(gw, [news]) == ["cancelled"]
    assert s.submit("10086001", "帮助").status == ESME_ROK
    assert texts_from(s, "10086001") == [TEMPLATES.render("common.help", "zh")]
    assert s.submit(SPAM_CODE, "帮助").status == ESME_ROK
    assert replies(s) == [TEMPLATES.render("spam.usage", "zh", short_code=SPAM_CODE)]
    gw.call(gw.gateway.services.request_survey(SPAMMER, "hotline"))
    texts_from(s, "10086700")
    assert s.submit("10086700", "1").status == ESME_ROK
    assert texts_from(s, "10086700") == [TEMPLATES.render("rating.thanks", "zh")]


@pytest.mark.parametrize("code", ["10086", "10086700"])
def test_a_blocked_number_still_reaches_the_operators_code_taken_over_by_another_handler(make_gateway, handset, code: str) -> None:
    """A [[short_codes]] entry running a handler of its own on 10086 (an operator's extension of customer service)
    lost the exemption: the blocked number's texts to 10086 were refused 0x400. The [services] codes stay the
    operator's own whatever handler runs them: the rating code (10086700) too, not only customer service's."""
    gw = make_gateway(short_codes=[{"code": code, "handler": "echo", "prefix": "CS:"}])
    s = phone(handset, SPAMMER, gw)
    block_by_five(gw, handset)
    assert s.submit(B, "TT").status == SMSGW_RSENDERBLOCKED
    assert s.submit(code, "0000").status == ESME_ROK
    assert texts_from(s, code) == ["CS:0000"]


@pytest.mark.parametrize("number", ["010-12345678", "01012345678", "85291234567", "12345678901", "8612345678901"])
def test_a_report_of_a_number_no_mobile_phone_has_is_refused(gateway, handset, number: str) -> None:
    """A Beijing landline with its trunk 0, a Hong Kong mobile without its +, a made-up 12... number: 11 digits each,
    they were acknowledged ("...已不能再向您发送短信") and blocked from the reporter under a number that cannot exist."""
    a = phone(handset, A)
    assert f"“{number}”不是有效的手机号码" in ask(a, f"{number}*发票代开")
    assert reports(gateway) == [] and controller_blocks(gateway) == []
    report(a, "19912345678*发票代开", gateway)  # 19x is a mobile number


def test_the_mobile_numbers_a_report_may_name_are_the_configured_ones(make_gateway, handset) -> None:
    gw = make_gateway(gateway={"mobile_prefixes": ["137"]})
    a = phone(handset, A, gw)
    assert "“13912345678”不是有效的手机号码" in ask(a, "13912345678*" + SPAM)
    assert report(a, "13700000001*" + SPAM, gw).reported == SPAMMER


def test_reports_by_numbers_blocked_network_wide_do_not_count_towards_a_block(make_gateway, handset) -> None:
    """A blocked number may text 10086999 again (to reach customer service); its reports counted as a distinct
    reporter's, so spammers' blocked SIMs could together get an innocent subscriber blocked network-wide."""
    gw = make_gateway(services={"spam_block_threshold": 2})
    spammers = ["8613700000011", "8613700000012"]
    victim = "8613900000099"
    reporters = [phone(handset, n, gw) for n in REPORTERS[:4]]
    for spammer in spammers:
        for ph in reporters[:2]:
            ask(ph, f"{spammer}*{SPAM}")
    assert sorted(b.reported for b in controller_blocks(gw) if b.reporter == "") == spammers
    for spammer in spammers:
        report(phone(handset, spammer, gw), f"{victim}*they say I spam", gw)  # acknowledged, not counted
    report(reporters[2], f"{victim}*spam", gw)
    assert [b.reported for b in controller_blocks(gw) if b.reporter == ""] == spammers  # one reporter that counts
    assert gw.call(gw.gateway.services.block_reported_over_threshold()) == []  # nor a start: its warning named it blocked
    v, friend = phone(handset, victim, gw), phone(handset, "8613900000098", gw)
    assert v.submit(friend.number, "still here").status == ESME_ROK
    report(reporters[3], f"{victim}*spam", gw)  # a second one that counts: the threshold
    assert victim in [b.reported for b in controller_blocks(gw) if b.reporter == ""]


def test_reports_by_a_number_count_once_its_network_block_is_lifted(make_gateway, handset) -> None:
    """A report by a blocked number is acknowledged, not counted; lifted, the block no longer keeps it out ("Its own
    spam reports … do not count … while its block lasts"). It counted only at the next report of the number it named,
    or a restart: a number with enough reporters stayed unblocked meanwhile. Now counted at the lift."""
    gw = make_gateway(services={"spam_block_threshold": 2})
    spammer, victim = "8613700000011", "8613900000099"
    for ph in [phone(handset, n, gw) for n in REPORTERS[:2]]:
        ask(ph, f"{spammer}*{SPAM}")
    s, third = phone(handset, spammer, gw), phone(handset, REPORTERS[2], gw)
    report(s, f"{victim}*spam", gw)  # acknowledged, not counted
    report(third, f"{victim}*spam", gw)
    assert victim not in [b.reported for b in controller_blocks(gw) if b.reporter == ""]
    lifted = gw.call(gw.gateway.services.lift_block("+86 137-0000-0011"))  # the spammer, as an operator may write it
    assert sorted(r.to for r in lifted.replies) == sorted([spammer, REPORTERS[2]])  # the re-count's, as it sent them
    assert [b.reported for b in controller_blocks(gw) if b.reporter == "" and b.lifted_at is None] == [victim]
    assert {r.status for r in reports(gw, reported=victim)} == {"handled"}
    for ph in (s, third):
        assert HANDLED.match(replies(ph)[0])


def test_a_number_already_over_a_threshold_lowered_since_is_blocked_at_the_start(make_gateway, handset, tmp_path) -> None:
    """4 distinct reporters under the threshold of 5, restarted with 3: the spammer still reached anyone until one
    more report came. Blocked at the start as the report reaching the threshold blocks it: its reporters told."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db)
    reporters = [phone(handset, n, first) for n in REPORTERS[:4]]
    for ph in reporters:
        report(ph, f"{SPAMMER}*{SPAM}", first)
        ph.close()
    first.stop()
    second = make_gateway(db_path=db, services={"spam_block_threshold": 3})
    s = phone(handset, SPAMMER, second)
    assert s.submit(B, "spam to a bystander").status == SMSGW_RSENDERBLOCKED
    assert [b.reason for b in controller_blocks(second) if b.reporter == ""] == ["4 distinct reporters within 86400s"]
    assert {r.status for r in reports(second, reported=SPAMMER)} == {"handled"}
    for number in REPORTERS[:4]:
        assert HANDLED.match(replies(phone(handset, number, second))[0])


def test_a_number_exactly_at_a_threshold_lowered_since_is_blocked_at_the_start(make_gateway, handset, tmp_path) -> None:
    """3 distinct reporters, restarted with a threshold of 3: the threshold is reached as a third report reaching it
    blocks, so the spammer is refused at once; otherwise they reached anyone until a fourth report came."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db)
    for number in REPORTERS[:3]:
        ph = phone(handset, number, first)
        report(ph, f"{SPAMMER}*{SPAM}", first)
        ph.close()
    first.stop()
    second = make_gateway(db_path=db, services={"spam_block_threshold": 3})
    assert phone(handset, SPAMMER, second).submit(B, "spam to a bystander").status == SMSGW_RSENDERBLOCKED
    assert [b.reason for b in controller_blocks(second) if b.reporter == ""] == ["3 distinct reporters within 86400s"]
