"""Free trial months, the 21st's reminder, billing on the 1st, disputes and the SP's order-relation notices (SPEC 3.2)
over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
import time

import pytest
import structlog

from gateway.clock import SimulatedClock
from gateway.store.records import Charge, JobRun, Subscription, SubscriptionEvent
from handlers.base import Outcome
from handlers.billing import SERIAL_KEY as BILLING_KEY
from handlers.sp_notice import parse_sp_notice
from tests.e2e.test_confirmation import (
    OPERATOR,
    SINA,
    SMSGW_RNOSUBSCRIPTION,
    ask,
    catalogue_with_fee,
    content_status,
    order,
    replies,
    subscriptions,
)
from tests.e2e.test_mo_retry import Failing
from tests.polling import eventually
from tests.services_support import at, catalogue_without
from tests.smpp_handset import ESME_ROK, text

A, B, C = "8613800000001", "8613800000002", "8613900000003"
REMINDER_ITEM = re.compile(r"(\d+)\.(\S+?)提供的(\S+?)(短信|WAP)业务,信息费(\d+)元/月;")


def subscribe(phone, keyword: str) -> str:
    """Order and confirm; the success notice."""
    order(phone, keyword)
    return ask(phone, "Y")


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(at(2026, 11, 10))


def test_trial_months_at_the_boundaries(make_gateway, handset, clock):
    """README "Free trial": ordered on the 1st-20th, free that month; from the 21st, that month and the next. A day
    off either way, an order on the 20th went a month unbilled, or one on the 21st was charged the next month though
    its notice said "下月底前免信息费"."""
    # No reminder days: the gateway's own job check must not send a reminder into these dialogues.
    gw = make_gateway(clock=clock, services={"reminder_first_day": 28, "reminder_last_day": 28})
    cases = [  # (subscriber, when the order is confirmed, free until, notice wording)
        ("8613800000011", at(2026, 11, 20, 23, 50), at(2026, 12, 1, 0, 0), "当月免信息费"),
        ("8613800000012", at(2026, 11, 21, 0, 10), at(2027, 1, 1, 0, 0), "下月底前免信息费"),
        ("8613800000013", at(2026, 12, 20, 23, 50), at(2027, 1, 1, 0, 0), "当月免信息费"),
        ("8613800000014", at(2026, 12, 21, 0, 10), at(2027, 2, 1, 0, 0), "下月底前免信息费"),
    ]
    for msisdn, when, free_until, wording in cases:
        clock.set(when)
        notice = subscribe(handset(msisdn, gw=gw, address_range=msisdn), "TT")
        assert f",客服电话9510567,{wording},退订请发送0000到10086。" in notice, msisdn
        [subscription] = subscriptions(gw, msisdn)
        assert subscription.trial_until == free_until, msisdn
    # What each pays: an order on the 20th from the 1st after it, one on the 21st a month later.
    clock.set(at(2027, 1, 1, 0, 5))
    gw.call(gw.gateway.services.run_billing())  # January, and December unless the gateway's own check billed it
    charged = gw.call(gw.gateway.store.find(Charge, order_by="period"))
    assert sorted((c.period, c.msisdn) for c in charged) == [
        ("2026-12", "8613800000011"), ("2027-01", "8613800000011"), ("2027-01", "8613800000012"), ("2027-01", "8613800000013")]


def unsubscribe(phone) -> None:
    phone.submit(OPERATOR, "0000")
    replies(phone, 1)
    phone.submit(OPERATOR, "1")
    assert "成功退订" in replies(phone, 1)[0]


def test_the_free_trial_is_for_the_first_order_of_a_service_only(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, services={"reminder_first_day": 28, "reminder_last_day": 28})
    phone = handset(A, gw=gw, address_range=A)
    clock.set(at(2026, 11, 10, 9))
    assert "当月免信息费" in subscribe(phone, "TT")  # free in November, charged from December
    unsubscribe(phone)
    clock.set(at(2026, 11, 25, 9))
    again = subscribe(phone, "TT")  # ordered again: no second trial
    assert again == "您已定制新浪的头条新闻业务,信息费30元/月,由中国移动代收,客服电话9510567,下月起收费,退订请发送0000到10086。"
    [active] = [s for s in subscriptions(gw, A) if s.status == "active"]
    assert active.trial_until == at(2026, 12, 1, 0, 0)
    clock.set(at(2026, 12, 1, 0, 5))
    gw.call(gw.gateway.services.run_billing())
    [charge] = gw.call(gw.gateway.store.find(Charge, msisdn=A))
    assert (charge.subscription_id, charge.period, charge.amount) == (active.id, "2026-12", 3000)


def test_an_order_again_keeps_what_is_left_of_the_first_orders_free_months(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, services={"reminder_first_day": 28, "reminder_last_day": 28})
    phone = handset(A, gw=gw, address_range=A)
    clock.set(at(2026, 11, 21, 9))
    first = subscribe(phone, "TT")  # first order from the 21st: free until the end of December
    unsubscribe(phone)
    clock.set(at(2026, 11, 22, 9))
    assert subscribe(phone, "TT") == first  # still free until the end of December, and told so
    [active] = [s for s in subscriptions(gw, A) if s.status == "active"]
    assert active.trial_until == at(2027, 1, 1, 0, 0)
    unsubscribe(phone)
    clock.set(at(2026, 12, 5, 9))
    again = subscribe(phone, "TT")  # in December: free for the rest of it, charged from January
    assert "下月起收费" in again
    clock.set(at(2026, 12, 5, 9, 5))
    gw.call(gw.gateway.services.run_billing())
    assert not gw.call(gw.gateway.store.find(Charge, msisdn=A))
    clock.set(at(2027, 1, 1, 0, 5))
    gw.call(gw.gateway.services.run_billing())
    assert [c.period for c in gw.call(gw.gateway.store.find(Charge, msisdn=A))] == ["2027-01"]


def test_the_gateway_runs_billing_and_reminders_on_schedule_by_itself(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 0.2})
    phone = handset(A, gw=gw, address_range=A)
    subscribe(phone, "TT")  # 10 November: reminded in November, charged from December
    clock.set(at(2026, 11, 21, 9))  # nobody runs a job by hand in this test
    first, second = replies(phone, 2)
    assert first.startswith("(1/2)中国移动温馨提示") and second.startswith("(2/2)")
    clock.set(at(2026, 12, 1, 0, 5))
    [subscription] = subscriptions(gw, A)
    deadline = time.monotonic() + 10
    while not (charges := gw.call(gw.gateway.store.find(Charge, msisdn=A))):  # the next job check bills
        assert time.monotonic() < deadline, "no billing run on the 1st"
        phone.expect_none(0.2)  # (and no text meanwhile)
    assert [(c.subscription_id, c.period, c.amount) for c in charges] == [(subscription.id, "2026-12", 3000)]


def test_a_billing_run_that_fails_is_logged_and_run_again_by_the_next_job_check(make_gateway, handset, clock, tmp_path):
    """A scheduled job that fails (billing here: the store refuses its charges, as a full disk would) is an error line
    with its traceback, and the gateway's next job check runs it again: the month is billed, once. A failure must not
    stop the jobs for good (coverage review: no test ran it)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 0.2},
                      services={"reminder_first_day": 28, "reminder_last_day": 28})  # fmt: skip
    subscribe(handset(A, gw=gw, address_range=A), "TT")  # 10 November: charged from December
    [subscription] = subscriptions(gw, A)
    with structlog.testing.capture_logs() as logs:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as outside:
            outside.execute("CREATE TRIGGER no_charge BEFORE INSERT ON charges BEGIN "
                            "SELECT RAISE(ABORT, 'database or disk is full'); END")  # fmt: skip
            clock.set(at(2026, 12, 1, 0, 5))
            assert eventually(lambda: any(line["event"] == "scheduled job failed" for line in logs), 10)
            outside.execute("DROP TRIGGER no_charge")
        assert eventually(lambda: gw.call(gw.gateway.store.find(Charge, msisdn=A)), 10), "not billed at the next check"
    failed = next(line for line in logs if line["event"] == "scheduled job failed")
    assert failed["log_level"] == "error" and "exc_info" in failed
    charges = gw.call(gw.gateway.store.find(Charge, msisdn=A))
    assert [(c.subscription_id, c.period, c.amount) for c in charges] == [(subscription.id, "2026-12", 3000)]


def test_a_clock_set_back_before_a_billing_run_bills_that_month_again_when_its_1st_comes(make_gateway, handset):
    """QA starts the gateway on 5 December (its job check records December's billing run, nobody to charge), then
    sets the clock back to 10 November to order: the order was reminded and stayed active past 1 December, but
    December counted as billed, so the scheduled job never charged it (only an operator's run_billing did)."""
    clock = SimulatedClock(at(2026, 12, 5, 9))
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 0.2})
    assert eventually(lambda: gw.call(gw.gateway.store.find(JobRun, job="billing", period="2026-12")))
    clock.set(at(2026, 11, 10, 9))
    phone = handset(A, gw=gw, address_range=A)
    assert "当月免信息费" in subscribe(phone, "TT")  # free in November, charged from December
    clock.set(at(2026, 12, 1, 0, 5))
    [subscription] = subscriptions(gw, A)
    assert eventually(lambda: gw.call(gw.gateway.store.find(Charge, msisdn=A)), 10), "December not billed again"
    charges = gw.call(gw.gateway.store.find(Charge, msisdn=A))
    assert [(c.subscription_id, c.period, c.amount) for c in charges] == [(subscription.id, "2026-12", 3000)]
    [run] = gw.call(gw.gateway.store.find(JobRun, job="billing", period="2026-12"))
    assert run.ran_at < at(2026, 12, 5)  # the run as it is now recorded: this one
    assert not gw.call(gw.gateway.services.run_due_jobs()).effects  # and only once


def test_reminder_on_the_21st_is_sent_once_as_marked_pages(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    phone = handset(A, gw=gw, address_range=A)
    subscribe(phone, "TT")
    subscribe(phone, "TL")

    clock.set(at(2026, 11, 20, 12))
    gw.call(gw.gateway.services.run_due_jobs())
    phone.expect_none(0.5, lambda p: p.source_addr == OPERATOR.encode())
    clock.set(at(2026, 11, 21, 9))
    gw.call(gw.gateway.services.run_due_jobs())
    gw.call(gw.gateway.services.send_reminders())  # on demand as well: still once this month
    first, second = replies(phone, 2)  # two SMS, each marked, as in the seed
    assert first.startswith("(1/2)中国移动温馨提示:您已定制以下梦网业务:")
    assert second.startswith("(2/2)") and second.endswith("本月内退订下月不再收费,退订请发送0000到10086。")
    # As the seed: 头条新闻 is a 短信业务, 精品图铃 (kind = "wap" in the catalogue) a WAP业务; every item said 短信业务.
    assert REMINDER_ITEM.findall(first + second) == [
        ("1", "新浪", "头条新闻", "短信", "30"), ("2", "腾讯公司", "精品图铃", "WAP", "10")
    ]
    phone.expect_none(1.0, lambda p: p.source_addr == OPERATOR.encode())


def test_a_free_service_gets_no_reminder_and_no_charge(make_gateway, handset, clock):
    """TT at a fee of 0 (config takes 0 or more): its subscriber was reminded "信息费0元/月…本月内退订下月不再收费" and
    charged 0 fen each month. A paid service of the same subscriber is reminded alone."""
    gw = make_gateway(clock=clock, catalogue=catalogue_with_fee("sina-news", 0))
    a, b = (handset(n, gw=gw, address_range=n) for n in (A, B))
    subscribe(a, "TT")
    subscribe(b, "TT")
    subscribe(b, "TQ")
    clock.set(at(2026, 11, 21, 9))
    gw.call(gw.gateway.services.run_due_jobs())
    first, second = replies(b, 2)
    assert REMINDER_ITEM.findall(first + second) == [("1", "新浪", "天气预报", "短信", "5")]
    a.expect_none(0.5, lambda p: p.source_addr == OPERATOR.encode())
    clock.set(at(2026, 12, 1, 0, 5))
    gw.call(gw.gateway.services.run_billing())
    charged = gw.call(gw.gateway.store.find(Charge))
    assert [(c.msisdn, c.service_id, c.amount) for c in charged] == [(B, "sina-weather", 500)]


def test_reminders_go_to_every_subscription_charged_next_month_whenever_an_operator_runs_them(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    a, b, c = (handset(n, gw=gw, address_range=n) for n in (A, B, C))
    subscribe(a, "TT")  # 10 November: charged from December
    subscribe(c, "TQ")
    ask(c, "0000")
    assert "成功退订" in ask(c, "1")
    clock.set(at(2026, 11, 12))
    gw.call(gw.gateway.services.send_reminders())  # an operator, on demand, before the reminder days
    assert [page[:5] for page in replies(a, 2)] == ["(1/2)", "(2/2)"]
    clock.set(at(2026, 11, 15))
    subscribe(b, "TT")  # charged from December as well
    clock.set(at(2026, 11, 21, 9))
    gw.call(gw.gateway.services.run_due_jobs())
    first, second = replies(b, 2)
    assert REMINDER_ITEM.findall(first + second) == [("1", "新浪", "头条新闻", "短信", "30")]
    clock.set(at(2026, 11, 22, 9))
    assert "下月起收费" in subscribe(c, "TQ")  # ordered again: no trial, charged from December
    gw.call(gw.gateway.services.run_due_jobs())
    first, second = replies(c, 2)
    assert REMINDER_ITEM.findall(first + second) == [("1", "新浪", "天气预报", "短信", "5")]
    a.expect_none(0.5, lambda p: p.source_addr == OPERATOR.encode())  # reminded once


def test_billing_on_the_first_then_disputes(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    a, b, c = (handset(n, gw=gw, address_range=n) for n in (A, B, C))
    subscribe(a, "TT")  # 10 November: free in November, charged from December
    clock.set(at(2026, 11, 25))
    subscribe(b, "TT")  # from the 21st: free until the end of December
    # An order relation without any record of the subscriber's own confirmation (say, imported from an SP).
    legacy = Subscription("sub-legacy", C, "tencent-ringtones", "active", at(2026, 9, 1), "sp", "", at(2026, 10, 1))
    gw.call(gw.gateway.services.commit(Outcome().put(legacy)))

    clock.set(at(2026, 12, 1, 0, 5))
    gw.call(gw.gateway.services.run_billing())
    gw.call(gw.gateway.services.run_billing())  # twice: still one charge per subscription and month
    charges = {c.msisdn: c for c in gw.call(gw.gateway.store.find(Charge, period="2026-12"))}
    assert {m: c.amount for m, c in charges.items()} == {A: 3000, C: 1000}
    [subscription_a] = subscriptions(gw, A)
    assert charges[A].subscription_id == subscription_a.id

    gw.call(gw.gateway.services.dispute(charges[A].id))
    assert replies(a) == ["中国移动:您2026年12月新浪的头条新闻业务信息费30元,经核实已为您退还30元。"]
    gw.call(gw.gateway.services.dispute(charges[C].id))
    [double] = replies(c)
    assert "信息费误差,双倍返还" in double and re.search(r"信息费(\d+)元.*返还(\d+)元。$", double).groups() == ("10", "20")
    refunds = {c.msisdn: c.refund for c in gw.call(gw.gateway.store.find(Charge, period="2026-12"))}
    assert refunds == {A: 3000, C: 2000}
    with pytest.raises(ValueError, match="already refunded"):
        gw.call(gw.gateway.services.dispute(charges[C].id))


def test_a_dispute_given_no_charge_id_string_is_refused_naming_the_argument(make_gateway, handset, clock):
    """A charge id passed in a list (or None, a number) raised sqlite3.ProgrammingError from the store's query, or
    was "no charge with id None": the one error the Services calls raise for bad input is a ValueError naming it."""
    gw = make_gateway(clock=clock)
    c = handset(C, gw=gw, address_range=C)
    legacy = Subscription("sub-legacy", C, "tencent-ringtones", "active", at(2026, 9, 1), "sp", "", at(2026, 10, 1))
    charge = Charge("chg-legacy", legacy.id, C, "tencent-ringtones", "2026-12", 1000, at(2026, 12, 1, 0, 5))
    gw.call(gw.gateway.services.commit(Outcome().put(legacy, charge)))
    for wrong in ([charge.id], None, 12345, b"chg-legacy"):
        with pytest.raises(ValueError, match=r"^charge_id .*: expected a charge id as a string$"):
            gw.call(gw.gateway.services.dispute(wrong))
    assert [stored.refund for stored in gw.call(gw.gateway.store.find(Charge, id=charge.id))] == [0]
    gw.call(gw.gateway.services.dispute(charge.id))
    assert "双倍返还" in replies(c)[0]  # the first text since: none for the refused calls


def test_a_charge_for_a_service_withdrawn_since_is_refunded_naming_it_by_its_id(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, catalogue=catalogue_without("tencent-ringtones"))
    c = handset(C, gw=gw, address_range=C)
    tencent_rx = handset("1066888", system_id="tencent", bind="rx", gw=gw)
    ask(c, "EN")  # replies in English: the Chinese texts name no SP either, but read well without one
    # Charged for December while the service was still in the catalogue; withdrawn before the dispute.
    legacy = Subscription("sub-legacy", C, "tencent-ringtones", "active", at(2026, 9, 1), "sp", "", at(2026, 10, 1))
    charge = Charge("chg-legacy", legacy.id, C, "tencent-ringtones", "2026-12", 1000, at(2026, 12, 1, 0, 5))
    gw.call(gw.gateway.services.commit(Outcome().put(legacy, charge)))
    gw.call(gw.gateway.services.dispute(charge.id))
    refunded = ("China Mobile: your 12/2026 information fee of 10 yuan for tencent-ringtones (service withdrawn) has no "
                "record of your own confirmation of the order, so it is refunded double: 20 yuan.")  # fmt: skip
    assert replies(c) == [refunded]
    tencent_rx.expect_none(0.2)  # no SP is known to bear it



def test_a_service_withdrawn_at_a_billing_run_ends_its_subscriptions_and_is_not_charged_when_it_comes_back(
    make_gateway, handset, clock, tmp_path
):
    """`0000` told the subscriber a withdrawn service is "不再收取信息费", and December's billing did not charge it;
    the gateway restarted with it back in the catalogue charged January with no new confirmation (SPEC 3.2)."""
    db = tmp_path / "gw.db"
    first = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600})
    phone = handset(B, gw=first, address_range=B)
    subscribe(phone, "TT")  # 10 November: charged from December
    clock.set(at(2026, 11, 25, 9))
    in_trial = handset(C, gw=first, address_range=C)
    subscribe(in_trial, "TT")  # free through December: not charged when withdrawn, but ended too
    phone.close()
    in_trial.close()
    first.stop()
    withdrawn = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600},
                             catalogue=catalogue_without("sina-news"))  # fmt: skip
    phone = handset(B, gw=withdrawn, address_range=B)
    assert "1.sina-news（该业务已下线，不再收取信息费）；" in ask(phone, "0000")
    clock.set(at(2026, 12, 1, 0, 5))
    withdrawn.call(withdrawn.gateway.services.run_billing())
    phone.close()
    withdrawn.stop()
    clock.set(at(2027, 1, 1, 0, 5))
    back = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600})
    back.call(back.gateway.services.run_billing())
    assert back.call(back.gateway.store.find(Charge)) == []
    for msisdn in (B, C):
        [ended] = subscriptions(back, msisdn)
        assert (ended.status, ended.cancel_channel) == ("cancelled", "billing")
        assert ended.cancelled_at == pytest.approx(at(2026, 12, 1, 0, 5), abs=60)  # by December's run
        [event] = back.call(back.gateway.store.find(SubscriptionEvent, subscription_id=ended.id, event="cancelled"))
        assert event.detail == "withdrawn"
    assert ask(handset(B, gw=back, address_range=B), "0000") == "您目前没有定制任何梦网业务。"
    assert content_status(handset(SINA, system_id="sina", bind="tx", gw=back), B) == SMSGW_RNOSUBSCRIPTION


def test_a_service_withdrawn_mid_month_is_ended_by_a_billing_run_for_those_charged_that_month_too(
    make_gateway, handset, clock, tmp_path
):
    """A run on demand on 15 December, sina-news withdrawn since the 1st's run: it ended C's subscription (in its
    trial) but skipped B's, charged for December already, before looking at the catalogue; B stayed active and was
    charged again from January once the service was back (the billing reconciliation review). It ends both, and
    its warning of a subscription `not charged` for a withdrawn service names C's only: B's was charged."""
    db = tmp_path / "gw.db"
    first = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600})
    phone, in_trial = handset(B, gw=first, address_range=B), handset(C, gw=first, address_range=C)
    subscribe(phone, "TT")  # 10 November: charged from December
    clock.set(at(2026, 11, 25, 9))
    subscribe(in_trial, "TT")  # free through December
    clock.set(at(2026, 12, 1, 0, 5))
    first.call(first.gateway.services.run_billing())
    [charged] = first.call(first.gateway.store.find(Charge))
    assert charged.msisdn == B
    [trial] = subscriptions(first, C)
    phone.close()
    in_trial.close()
    first.stop()
    clock.set(at(2026, 12, 15, 10))
    withdrawn = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600},
                             catalogue=catalogue_without("sina-news"))  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        withdrawn.call(withdrawn.gateway.services.run_billing())
    not_charged = [line["subscription"] for line in logs if line["event"] == "not charged: service no longer in the catalogue"]
    assert not_charged == [trial.id]  # not B's, charged for December
    withdrawn.stop()
    clock.set(at(2027, 1, 1, 0, 5))
    back = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600})
    back.call(back.gateway.services.run_billing())
    assert [(c.msisdn, c.period) for c in back.call(back.gateway.store.find(Charge))] == [(B, "2026-12")]
    for msisdn in (B, C):
        [ended] = subscriptions(back, msisdn)
        assert (ended.status, ended.cancel_channel) == ("cancelled", "billing")


def test_sp_notices_wait_for_an_sp_off_line_over_a_weekend(make_gateway, handset):
    """Order-relation notices are stored until the SP binds: not the 48 h of an ordinary MT (SPEC 3.1, 3.2)."""
    clock = SimulatedClock(at(2026, 11, 6, 18))  # Friday evening; the SP has no bind all weekend
    gw = make_gateway(clock=clock, services={"reminder_first_day": 28, "reminder_last_day": 28})
    phone = handset(A, gw=gw, address_range=A)
    subscribe(phone, "TT")
    clock.set(at(2026, 11, 7, 9))
    ask(phone, "0000")
    assert "成功退订" in ask(phone, "1")
    clock.set(at(2026, 11, 9, 9, 30))  # Monday morning, 63 h after the order
    sina = handset(SINA, system_id="sina", bind="rx", gw=gw)
    notices = [parse_sp_notice(text(sina.expect())) for _ in range(2)]
    assert [(n["event"], n["service"], n["msisdn"]) for n in notices] == [("ORDER", "sina-news", A), ("CANCEL", "sina-news", A)]


def test_sp_notices_expire_after_the_configured_validity(make_gateway, handset):
    clock = SimulatedClock(at(2026, 11, 6, 18))
    gw = make_gateway(clock=clock, services={"reminder_first_day": 28, "reminder_last_day": 28, "sp_notice_validity": 3600})
    subscribe(handset(A, gw=gw, address_range=A), "TT")
    clock.advance(3601)
    sina = handset(SINA, system_id="sina", bind="rx", gw=gw)
    sina.expect_none(1.0)  # expired before the SP came back (two expiry sweeps)


def test_a_gateway_back_after_missing_1sts_bills_every_month_it_missed(make_gateway, handset, clock, tmp_path):
    db = tmp_path / "gw.db"
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    subscribe(phone, "TT")  # 10 November: charged from December
    assert eventually(lambda: first.call(first.gateway.store.find(JobRun, job="billing")))  # November's run, at start
    phone.close()
    first.stop()
    clock.set(at(2027, 2, 2, 9))  # down over the 1st of December and of January
    second = make_gateway(clock=clock, db_path=db)  # it looks at the calendar as it starts
    assert eventually(lambda: len(second.call(second.gateway.store.find(Charge, msisdn=A))) == 3)
    charges = second.call(second.gateway.store.find(Charge, order_by="period", msisdn=A))
    assert [(c.period, c.amount) for c in charges] == [("2026-12", 3000), ("2027-01", 3000), ("2027-02", 3000)]


def test_a_gateway_down_over_every_reminder_day_reminds_at_its_first_check_after(make_gateway, handset, clock, tmp_path):
    """The seed: reminded twice before any charge. Down from the 20th to the 26th, the gateway sent no reminder at
    all and charged on the 1st."""
    db = tmp_path / "gw.db"
    first = make_gateway(clock=clock, db_path=db)
    phone = handset(A, gw=first, address_range=A)
    subscribe(phone, "TT")  # 10 November: reminded in November, charged from December
    phone.close()
    first.stop()
    clock.set(at(2026, 11, 26, 9))
    second = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 0.2})
    phone = handset(A, gw=second, address_range=A)
    first_page, second_page = replies(phone, 2)  # the job check's, nobody runs a job by hand
    assert first_page.startswith("(1/2)中国移动温馨提示") and second_page == "(2/2)本月内退订下月不再收费,退订请发送0000到10086。"
    clock.set(at(2026, 11, 27, 9))
    phone.expect_none(1.0)  # once
    assert not second.call(second.gateway.services.run_due_jobs()).replies


def test_an_operators_run_before_the_reminder_days_does_not_stand_for_them(make_gateway, handset, clock):
    """An on-demand run on the 12th counted as the month's reminders: down over the 21st-25th, the gateway then
    reminded nobody, and an order of the 15th was charged unreminded."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600})  # the jobs when the test runs them
    phone = handset(A, gw=gw, address_range=A)
    clock.set(at(2026, 11, 12, 9))
    assert not gw.call(gw.gateway.services.send_reminders()).replies  # nobody due yet
    clock.set(at(2026, 11, 15, 9))
    subscribe(phone, "TT")  # charged from December
    clock.set(at(2026, 11, 27, 9))  # no check on the 21st-25th
    gw.call(gw.gateway.services.run_due_jobs())
    first, second = replies(phone, 2)
    assert first.startswith("(1/2)中国移动温馨提示") and second.startswith("(2/2)")


def test_a_confirmation_retried_after_a_reminder_run_is_reminded_at_the_next_check(make_gateway, handset, clock):
    """A Y received at 23:55 on the 20th whose handling failed and was retried after the 21st's reminder run, more
    than REMINDER_OVERLAP (600 s) after it was received (a long mo_retry_backoff, a store outage): the later checks
    read only orders from 600 s before that run, and the subscription was charged on 1 December unreminded."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600, "mo_retry_backoff": [2.0]})
    phone = handset(A, gw=gw, address_range=A)
    clock.set(at(2026, 11, 20, 23, 50))
    order(phone, "TT")
    operator = gw.gateway.mo.short_codes[OPERATOR]
    operator.handler = failing = FailingFirst(operator.handler)
    clock.set(at(2026, 11, 20, 23, 55))
    assert phone.submit(OPERATOR, "Y").status == ESME_ROK  # free in November, charged from December
    assert failing.called.wait(5)
    clock.set(at(2026, 11, 21, 0, 10))
    gw.call(gw.gateway.services.run_due_jobs())  # the 21st's reminders, before the retry
    assert failing.calls == 1, "the retry came before the reminder run"
    assert "当月免信息费" in replies(phone)[0]  # the retry
    clock.set(at(2026, 11, 22, 9))
    gw.call(gw.gateway.services.run_due_jobs())
    first, second = replies(phone, 2)
    assert first.startswith("(1/2)中国移动温馨提示") and "头条新闻" in first and second.startswith("(2/2)")

def test_billing_on_demand_after_missed_1sts_bills_every_month_missed(make_gateway, handset, clock):
    """An operator runs billing as soon as a gateway that was down over two 1sts is back, before its job check."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600})  # billing when the test says
    phone = handset(A, gw=gw, address_range=A)
    subscribe(phone, "TT")  # 10 November: charged from December
    assert eventually(lambda: gw.call(gw.gateway.store.find(JobRun, job="billing")))  # November's, at start
    clock.set(at(2027, 1, 2, 9))
    gw.call(gw.gateway.services.run_billing())
    charges = gw.call(gw.gateway.store.find(Charge, order_by="period", msisdn=A))
    assert [(c.period, c.amount) for c in charges] == [("2026-12", 3000), ("2027-01", 3000)]
    assert not gw.call(gw.gateway.services.run_due_jobs()).effects  # the job check after it: nothing left to bill


def test_an_unsubscription_sent_before_midnight_is_not_charged_though_its_commit_lands_after_billing_began(
    make_gateway, handset, clock, tmp_path
):
    """The unsubscription's commit is held up (another process holds the SQLite write lock, as a backup tool may)
    when the 1st's billing starts: billing waits for it instead of charging the subscription it cancels."""
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600})  # billing when the test says
    a = unsubscribing_at_2359_59(gw, clock, handset)
    clock.set(at(2026, 12, 1, 0, 0) - 1)
    billing_waits = threading.Event()
    wait_for_others = gw.gateway.locks.wait_for_others

    async def noted(own):
        billing_waits.set()
        await wait_for_others(own)

    gw.gateway.locks.wait_for_others = noted
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the gateway's writer waits for it (busy timeout 5 s)
        (sent,) = a.send_together(a.make("submit_sm", OPERATOR, "1"))  # 23:59:59: unsubscribe
        handling = eventually(lambda: len(gw.gateway.locks) == 1)  # its subscriber's serial key: being handled
        clock.set(at(2026, 12, 1, 0, 0) + 1)
        billing = asyncio.run_coroutine_threadsafe(gw.gateway.services.run_due_jobs(), gw._loop)
        # Held until billing waits for the unsubscription's commit; a billing that does not wait has decided (and
        # charged) by the time this gives up.
        billing_waits.wait(3)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert handling, "the unsubscription was not being handled when billing began"
    billing.result(15)
    assert a.response(sent).status == ESME_ROK
    assert "成功退订" in replies(a)[0]
    charges = gw.call(gw.gateway.store.find(Charge, period="2026-12"))
    assert [c.msisdn for c in charges] == [B]


class FailingFirst(Failing):
    """10086's handler, whose first call fails (a transient fault); its serial keys are the handler's own."""

    def __init__(self, handler) -> None:
        super().__init__(handler, times=1)

    def serial_keys(self, inbound, ctx):
        keys_of = getattr(self.handler, "serial_keys", None)  # (as gateway/mo.py asks a handler)
        return keys_of(inbound, ctx) if keys_of is not None else [inbound.subscriber]


def sent_at_2359_59_failing_once(gw, clock, phone, text: str) -> FailingFirst:
    """`text` to 10086 at 23:59:59 on 30 Nov, its first try failing (injected once into 10086's handler); the
    clock then at 00:00:01, the retry due 1-2 s later."""
    operator = gw.gateway.mo.short_codes[OPERATOR]
    operator.handler = failing = FailingFirst(operator.handler)
    clock.set(at(2026, 12, 1, 0, 0) - 1)
    assert phone.submit(OPERATOR, text).status == ESME_ROK
    assert failing.called.wait(5)
    clock.set(at(2026, 12, 1, 0, 0) + 1)
    return failing


def unsubscribing_at_2359_59(gw, clock, handset):
    """A and B subscribed to TT in November (billed from December); A has its 0000 listing at 23:50 on 30 Nov."""
    a, b = (handset(n, gw=gw, address_range=n) for n in (A, B))
    subscribe(a, "TT")
    subscribe(b, "TT")
    assert eventually(lambda: gw.call(gw.gateway.store.find(JobRun, job="billing")))  # November's, at start
    clock.set(at(2026, 11, 30, 23, 50))
    ask(a, "0000")
    return a


def test_an_unsubscription_sent_before_midnight_and_handled_after_billing_voids_its_charge(make_gateway, handset, clock):
    """The unsubscription's first try fails (a transient fault: injected once into 10086's handler, nothing else)
    and its retry commits after the 1st's billing charged the subscription: the charge goes with the cancellation."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600, "mo_retry_backoff": [2.0]})
    a = unsubscribing_at_2359_59(gw, clock, handset)
    failing = sent_at_2359_59_failing_once(gw, clock, a, "1")
    gw.call(gw.gateway.services.run_due_jobs())
    assert failing.calls == 1, "the retry came before billing"
    assert sorted(c.msisdn for c in gw.call(gw.gateway.store.find(Charge, period="2026-12"))) == [A, B]
    assert "成功退订" in replies(a)[0]  # the retry
    assert [c.msisdn for c in gw.call(gw.gateway.store.find(Charge, period="2026-12"))] == [B]
    [voided] = gw.call(gw.gateway.store.find(SubscriptionEvent, msisdn=A, event="voided"))
    assert "period=2026-12 amount=3000" in voided.detail


def test_an_unsubscription_retried_while_billing_commits_waits_for_billing_and_voids_its_charge(
    make_gateway, handset, clock, tmp_path
):
    """The retry of an unsubscription sent at 23:59:59 comes while the 1st's billing is committing (its commit held
    up by another process holding the SQLite write lock): it must not decide on the store from before the charges."""
    db = tmp_path / "gw.db"
    gw = make_gateway(clock=clock, db_path=db, gateway={"job_check_interval": 3600, "mo_retry_backoff": [1.5]})
    a = unsubscribing_at_2359_59(gw, clock, handset)
    failing = sent_at_2359_59_failing_once(gw, clock, a, "1")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the gateway's writer waits for it (busy timeout 5 s)
        billing = asyncio.run_coroutine_threadsafe(gw.gateway.services.run_due_jobs(), gw._loop)
        eventually(lambda: bool(gw.gateway.store._pending), timeout=1.0)  # billing has decided; its commit waits
        assert failing.calls == 1, "the retry came before billing"
        # The retry is due: it waits for billing's serial key (or, deciding at once, misses the charge).
        assert eventually(lambda: failing.calls == 2 or bool(gw.gateway.locks._waiting.get(BILLING_KEY)), timeout=3.0)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    billing.result(15)
    assert "成功退订" in replies(a)[0]
    assert [c.msisdn for c in gw.call(gw.gateway.store.find(Charge, period="2026-12"))] == [B]


def test_a_repeat_order_confirmed_before_midnight_and_handled_after_billing_is_charged(make_gateway, handset, clock):
    """Its Y's first try fails (injected once into 10086's handler) and its retry commits after the 1st's billing
    run: the repeat order (no trial left, "下月起收费") was never charged for December, while the same Y handled
    at once was."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600, "mo_retry_backoff": [2.0]},
                      services={"reminder_first_day": 28, "reminder_last_day": 28})  # fmt: skip
    a = handset(A, gw=gw, address_range=A)
    clock.set(at(2026, 11, 10, 9))
    subscribe(a, "TT")  # free in November
    unsubscribe(a)
    assert eventually(lambda: gw.call(gw.gateway.store.find(JobRun, job="billing")))  # November's, at start
    clock.set(at(2026, 11, 30, 23, 50))
    order(a, "TT")  # ordered again: no trial left
    failing = sent_at_2359_59_failing_once(gw, clock, a, "Y")  # confirmed
    gw.call(gw.gateway.services.run_due_jobs())
    assert failing.calls == 1, "the retry came before billing"
    assert "下月起收费" in replies(a)[0]  # the retry
    [active] = [s for s in subscriptions(gw, A) if s.status == "active"]
    assert eventually(lambda: [(c.subscription_id, c.period) for c in gw.call(gw.gateway.store.find(Charge, msisdn=A))]
                      == [(active.id, "2026-12")])  # fmt: skip


def test_a_subscription_is_charged_no_more_than_the_fee_its_confirmation_stated(make_gateway, handset, clock, tmp_path):
    """A confirmed at 30 yuan a month; the gateway started again with TT at 50. The 1st charged A 5000 fen, with no
    text, though A never agreed to it (the seed: only what the subscriber confirmed is charged), and its dispute was
    refunded once. Now A pays 30 (B, who confirmed at 50, pays 50), both 20 once the fee falls to 20; a charge above
    the confirmed fee (billed before subscriptions kept it) is refunded double ("多收、错收…实施双倍返还")."""
    db = tmp_path / "gw.db"
    first = make_gateway(clock=clock, db_path=db)
    subscribe(handset(A, gw=first, address_range=A), "TT")  # 10 November, at 30: charged from December
    first.stop()
    clock.set(at(2026, 11, 15))
    second = make_gateway(clock=clock, db_path=db, catalogue=catalogue_with_fee("sina-news", 50))
    a, b, c = (handset(n, gw=second, address_range=n) for n in (A, B, C))
    assert "信息费50元/月" in subscribe(b, "TT")
    clock.set(at(2026, 11, 21, 9))
    second.call(second.gateway.services.run_due_jobs())
    assert REMINDER_ITEM.findall("".join(replies(a, 2))) == [("1", "新浪", "头条新闻", "短信", "30")]  # what it will pay
    assert REMINDER_ITEM.findall("".join(replies(b, 2))) == [("1", "新浪", "头条新闻", "短信", "50")]
    a.submit(OPERATOR, "0000")  # the listing too states what A pays, and so does an order of what A holds
    assert "头条新闻，信息费30元/月" in replies(a, 1)[0]
    assert "（信息费30元/月），无需再次定制" in ask(a, "TT", SINA)
    clock.set(at(2026, 12, 1, 0, 5))
    second.call(second.gateway.services.run_billing())
    december = second.call(second.gateway.store.find(Charge, period="2026-12"))
    assert {charge.msisdn: charge.amount for charge in december} == {A: 3000, B: 5000}

    # Confirmed at 30 and charged 50 by a gateway before subscriptions kept their fee: refunded double.
    legacy = Subscription("sub-legacy", C, "sina-news", "active", at(2026, 9, 1), "sms", "mo-1", at(2026, 10, 1), fee=3000)
    charge = Charge("chg-legacy", legacy.id, C, "sina-news", "2026-11", 5000, at(2026, 11, 1, 0, 5))
    second.call(second.gateway.services.commit(Outcome().put(legacy, charge)))
    second.call(second.gateway.services.dispute(charge.id))
    overcharged = "中国移动:您2026年11月新浪的头条新闻业务信息费50元,高于您确认定制时的30元/月,按“多收信息费,双倍返还”为您返还100元。"
    assert replies(c) == [overcharged]
    [refunded] = second.call(second.gateway.store.find(Charge, id=charge.id))
    assert (refunded.refund, refunded.refund_reason) == (10000, "charged above the confirmed fee: double refund")
    second.call(second.gateway.services.dispute(december[0].id))
    assert "经核实已为您退还" in replies(a if december[0].msisdn == A else b)[0]  # charged what was confirmed: once
    for phone in (a, b, c):
        phone.close()
    second.stop()

    clock.set(at(2027, 1, 1, 0, 5))
    third = make_gateway(clock=clock, db_path=db, catalogue=catalogue_with_fee("sina-news", 20))
    third.call(third.gateway.services.run_billing())
    january = third.call(third.gateway.store.find(Charge, period="2027-01"))
    assert {charge.msisdn: charge.amount for charge in january} == {A: 2000, B: 2000, C: 2000}  # a decrease at once
