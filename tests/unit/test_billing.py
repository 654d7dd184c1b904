"""Reminders, monthly billing and disputes (SPEC 3.2) without a network: real store, frozen simulated clock."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.store.effects import Put
from gateway.store.records import Charge, JobRun, Subscriber, Subscription, SubscriptionEvent
from handlers import billing
from handlers.sp_notice import parse_sp_notice
from handlers.base import Catalogue, Outcome
from simulator.testing import gateway_config
from tests.services_support import ServiceBench, at, catalogue_without, service_bench
from tests.unit.test_confirmation import A, B, SINA, TENCENT, say, texts

C, D = "8613800000003", "8613800000004"
CODES = {"TT": SINA, "TQ": SINA, "TL": TENCENT}


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[ServiceBench]:
    bench = await service_bench(tmp_path)
    yield bench
    await bench.close()


@pytest.fixture
async def free_news(tmp_path: Path) -> AsyncIterator[ServiceBench]:
    """A bench whose catalogue has sina-news (TT) at a fee of 0: valid config, a free service (never charged)."""
    catalogue = [entry | {"fee": 0} if entry["id"] == "sina-news" else entry for entry in catalogue_without()]
    bench = await service_bench(tmp_path, gateway_config(catalogue=catalogue))
    yield bench
    await bench.close()


async def subscribe(bench: ServiceBench, msisdn: str, keyword: str, when: float) -> Subscription:
    """Order by keyword and confirm with Y at `when`."""
    bench.clock.set(when)
    await say(bench, msisdn, keyword, CODES[keyword])
    await say(bench, msisdn, "Y")
    found = await bench.store.find(Subscription, order_by="-ordered_at", limit=1, msisdn=msisdn)
    return found[0]


async def cancel(bench: ServiceBench, subscription: Subscription) -> None:
    await bench.store.apply(Outcome().put(replace(subscription, status="cancelled", cancelled_at=bench.clock.now())).effects)


async def job(bench: ServiceBench, run, when: float) -> Outcome:
    """Run a billing job at `when`, committing each part it yields as the gateway does; all of it."""
    bench.clock.set(when)
    made = run(bench.ctx, when)
    if inspect.isawaitable(made):  # one Outcome (a dispute)
        return await bench.commit(await made)
    done = Outcome()
    async for part in made:
        done.extend(await bench.commit(part))
    return done


def pages_to(outcome: Outcome) -> dict[str, list[str]]:
    """Every text each subscriber is sent, in order (SP notices aside)."""
    sent: dict[str, list[str]] = {}
    for r in outcome.replies:
        if not r.to_account:
            sent.setdefault(r.to, []).append(r.text)
    return sent


def texts_to(outcome: Outcome) -> dict[str, str]:
    """What subscribers are told (SP notices aside); all of it from 10086."""
    to_subscribers = [r for r in outcome.replies if not r.to_account]
    assert all(r.source == "10086" for r in to_subscribers)
    return {r.to: r.text for r in to_subscribers}


async def test_reminder_between_21st_and_25th_once_a_month(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    await subscribe(bench, A, "TL", at(2026, 11, 12))
    await subscribe(bench, B, "TQ", at(2026, 10, 25))  # from the 21st: free in November too, charged from December
    await subscribe(bench, C, "TT", at(2026, 11, 21, 9))  # free until the end of December: next month's reminder
    await cancel(bench, await subscribe(bench, D, "TT", at(2026, 11, 3)))

    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 20, 23, 59))).replies == []
    sent = pages_to(await job(bench, billing.run_due_jobs, at(2026, 11, 21, 0, 0)))
    # As the seed: separate SMS cut between items, each marked (i/N), each fitting one SMS (70 UCS2 characters).
    assert sent == {
        A: [
            "(1/2)中国移动温馨提示:您已定制以下梦网业务:1.新浪提供的头条新闻短信业务,信息费30元/月;",
            "(2/2)2.腾讯公司提供的精品图铃WAP业务,信息费10元/月;本月内退订下月不再收费,退订请发送0000到10086。",
        ],
        B: [
            "(1/2)中国移动温馨提示:您已定制以下梦网业务:1.新浪提供的天气预报短信业务,信息费5元/月;",
            "(2/2)本月内退订下月不再收费,退订请发送0000到10086。",
        ],
    }
    assert all(len(page) <= 70 for pages in sent.values() for page in pages)
    reminded = await bench.store.find(SubscriptionEvent, event="reminded")
    assert sorted(e.msisdn for e in reminded) == [A, A, B] and {e.at for e in reminded} == {at(2026, 11, 21, 0, 0)}
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 22))).replies == []
    assert (await job(bench, billing.send_reminders, at(2026, 11, 25))).replies == []  # on demand: still once
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 12, 21)))) == [C]


async def test_a_first_check_on_the_25th_the_last_reminder_day_sends_the_reminder_that_day(bench: ServiceBench) -> None:
    """No check ran on the 21st-24th (the gateway down): the 25th is still a reminder day, and its first check
    reminds, not the catch-up on the 26th."""
    await subscribe(bench, A, "TT", at(2026, 11, 5))  # free in November, charged from December
    sent = pages_to(await job(bench, billing.run_due_jobs, at(2026, 11, 25, 9, 0)))
    assert sent == {
        A: [
            "(1/2)中国移动温馨提示:您已定制以下梦网业务:1.新浪提供的头条新闻短信业务,信息费30元/月;",
            "(2/2)本月内退订下月不再收费,退订请发送0000到10086。",
        ]
    }
    reminded = await bench.store.find(SubscriptionEvent, event="reminded")
    assert [(e.msisdn, e.at) for e in reminded] == [(A, at(2026, 11, 25, 9, 0))]
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 26, 9))).replies == []


async def test_an_english_reminder_names_the_type_of_each_service_as_the_chinese_one_does(bench: ServiceBench) -> None:
    """The Chinese reminder says 短信业务 / WAP业务 per service (the catalogue's kind); the English one said nothing of it."""
    await bench.store.apply([Put(Subscriber(A, "en"))])
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    await subscribe(bench, A, "TL", at(2026, 11, 12))
    assert pages_to(await job(bench, billing.run_due_jobs, at(2026, 11, 21, 9)))[A] == [
        ("(1/2) China Mobile reminder: you subscribe to: 1. Headline News (SMS) from Sina, 30 yuan/month. "
         "2. Ringtones & Pictures (WAP) from Tencent, 10 yuan/month. "),
        "(2/2) Unsubscribe this month and you will not be charged next month. To unsubscribe, text 0000 to 10086.",
    ]  # a space after the page marker, as English writes it (the Chinese has none); no capital after a semicolon


async def test_a_reminder_run_on_demand_early_leaves_later_orders_their_reminder(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    assert list(texts_to(await job(bench, billing.send_reminders, at(2026, 11, 12)))) == [A]  # an operator, on demand
    await subscribe(bench, B, "TQ", at(2026, 11, 15))  # charged from December too
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 11, 21, 9)))) == [B]  # A only once
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 21, 10))).replies == []


async def test_a_clock_set_back_before_the_last_reminder_run_does_not_hide_orders_from_the_next(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 11, 23, 10)))) == [A]
    await subscribe(bench, B, "TQ", at(2026, 11, 10))  # a simulated clock set back to the 10th
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 11, 22, 12)))) == [B]


async def test_an_order_after_the_21st_charged_next_month_is_reminded_at_the_next_check(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    await cancel(bench, await subscribe(bench, B, "TQ", at(2026, 11, 6)))
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 11, 21, 9)))) == [A]
    await subscribe(bench, A, "TL", at(2026, 11, 22, 9))  # a first order from the 21st: free in December, not due
    again = await subscribe(bench, B, "TQ", at(2026, 11, 22, 9))  # a repeat order: no trial, charged from December
    assert again.trial_until == at(2026, 12, 1, 0, 0)
    sent = pages_to(await job(bench, billing.run_due_jobs, at(2026, 11, 22, 9, 1)))
    assert sent == {
        B: [
            "(1/2)中国移动温馨提示:您已定制以下梦网业务:1.新浪提供的天气预报短信业务,信息费5元/月;",
            "(2/2)本月内退订下月不再收费,退订请发送0000到10086。",
        ]
    }
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 25, 23, 59))).replies == []
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 26, 9))).replies == []  # (not on other days)


async def test_an_order_placed_behind_the_months_reminder_run_by_a_clock_set_back_is_reminded(bench: ServiceBench) -> None:
    """The month's reminders ran on the 21st; the clock set back to the 20th, an order charged from next month was
    read by no later run (each read only the orders since the last) and was charged on the 1st unreminded."""
    await subscribe(bench, A, "TT", at(2026, 12, 5))
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 12, 21, 9)))) == [A]
    await subscribe(bench, B, "TQ", at(2026, 12, 20, 23, 59, 30))  # set back: free in December, charged from January
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 12, 22, 10)))) == [B]
    assert (await job(bench, billing.run_due_jobs, at(2026, 12, 23, 10))).replies == []


async def test_an_order_after_the_last_check_of_the_last_reminder_day_is_reminded_at_the_next_check(bench: ServiceBench) -> None:
    """Ordered on the 25th after its last job check, and charged from next month: the next check, on the 26th, did
    not remind it, and it was charged on the 1st unreminded."""
    await cancel(bench, await subscribe(bench, B, "TQ", at(2026, 11, 6)))
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 25, 23, 59, 30))).replies == []
    await subscribe(bench, B, "TQ", at(2026, 11, 25, 23, 59, 58))  # a repeat order: charged from December
    await subscribe(bench, C, "TT", at(2026, 11, 26, 0, 0, 5))  # a first order from the 21st: not due
    await cancel(bench, await subscribe(bench, D, "TT", at(2026, 11, 2)))
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 11, 26, 0, 0, 20)))) == [B]
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 26, 10))).replies == []
    await subscribe(bench, D, "TT", at(2026, 11, 27, 9))  # a repeat order after the reminder days: charged on the 1st
    assert list(texts_to(await job(bench, billing.run_due_jobs, at(2026, 11, 27, 9, 1)))) == [D]  # (it was charged
    assert (await job(bench, billing.run_due_jobs, at(2026, 11, 30, 10))).replies == []  # unreminded: review 4)


async def test_billing_charges_subscriptions_out_of_trial_once(bench: ServiceBench) -> None:
    tt = await subscribe(bench, A, "TT", at(2026, 11, 5))
    tl = await subscribe(bench, A, "TL", at(2026, 11, 21))
    await cancel(bench, await subscribe(bench, B, "TQ", at(2026, 11, 2)))

    november = (await job(bench, billing.run_due_jobs, at(2026, 11, 30, 23, 59))).effects
    # November: everything still free (and TT, charged from December, reminded: no check ran on the reminder days)
    assert [e for e in november if isinstance(e.record, (JobRun, Charge))] == [
        Put(JobRun("billing", "2026-11", at(2026, 11, 30, 23, 59))),
        Put(JobRun("reminders", "2026-11", at(2026, 11, 30, 23, 59))),
    ]
    assert [e.record.subscription_id for e in november if isinstance(e.record, SubscriptionEvent)] == [tt.id]
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 0))
    [charge] = await bench.store.find(Charge)
    assert (charge.subscription_id, charge.msisdn, charge.period, charge.amount) == (tt.id, A, "2026-12", 3000)
    [event] = await bench.store.find(SubscriptionEvent, event="charged")
    assert event.subscription_id == tt.id and charge.id in event.detail

    again = await job(bench, billing.run_billing, at(2026, 12, 1, 8))  # on demand, the same month
    assert not [e for e in again.effects if isinstance(e.record, Charge)]
    assert not [e for e in (await job(bench, billing.run_due_jobs, at(2026, 12, 2))).effects]
    assert len(await bench.store.find(Charge)) == 1

    await job(bench, billing.run_due_jobs, at(2027, 1, 1, 0, 1))
    january = await bench.store.find(Charge, period="2027-01")
    assert sorted((c.subscription_id, c.amount) for c in january) == sorted([(tt.id, 3000), (tl.id, 1000)])


async def test_billing_commits_a_part_at_a_time_and_a_run_cut_short_charges_only_the_rest(bench, monkeypatch) -> None:
    """A month's billing of 100,000 subscriptions in one commit held up every bind for ~5 s. It is committed a part
    at a time, its JobRun last: a run cut short (the gateway killed) leaves the month unbilled, and the next
    check charges those left, each once."""
    monkeypatch.setattr(billing, "COMMIT_CHUNK", 2)
    subscriptions = [await subscribe(bench, n, "TT", at(2026, 11, 5)) for n in (A, B, C, D)]
    bench.clock.set(at(2026, 12, 1, 0, 1))
    parts = billing.run_due_jobs(bench.ctx, bench.clock.now())
    first = await anext(parts)
    assert [type(e.record) for e in first.effects] == [Charge, SubscriptionEvent] * 2
    await bench.commit(first)
    await parts.aclose()  # killed before the next part
    assert len(await bench.store.find(Charge, period="2026-12")) == 2
    assert await billing.billing_due(bench.ctx, bench.clock.now())

    rest = await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 2))
    assert [type(e.record) for e in rest.effects if isinstance(e.record, (Charge, JobRun))] == [Charge, Charge, JobRun]
    charges = await bench.store.find(Charge, period="2026-12")
    assert sorted(c.subscription_id for c in charges) == sorted(s.id for s in subscriptions)
    assert not await billing.billing_due(bench.ctx, bench.clock.now())


async def test_reminders_commit_a_part_at_a_time_each_with_its_subscribers_reminded_events(bench, monkeypatch) -> None:
    monkeypatch.setattr(billing, "COMMIT_CHUNK", 1)
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    await subscribe(bench, A, "TL", at(2026, 11, 6))
    await subscribe(bench, B, "TT", at(2026, 11, 7))
    bench.clock.set(at(2026, 11, 21, 9))
    parts = [part async for part in billing.send_reminders(bench.ctx, bench.clock.now())]
    assert [sorted({r.to for r in p.replies if not r.to_account}) for p in parts] == [[A], [B], []]
    assert [[e.record.msisdn for e in p.effects if isinstance(e.record, SubscriptionEvent)] for p in parts] == [[A, A], [B], []]
    assert [type(e.record) for e in parts[-1].effects] == [JobRun]


async def test_billing_missed_on_the_1st_runs_when_the_gateway_is_back(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    await job(bench, billing.run_due_jobs, at(2026, 12, 3))
    assert [c.period for c in await bench.store.find(Charge)] == ["2026-12"]


async def test_every_month_missed_is_billed_as_it_stood_at_its_start(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))  # charged from December
    tq = await subscribe(bench, B, "TQ", at(2026, 11, 5))
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 1))
    bench.clock.set(at(2027, 1, 20))
    await cancel(bench, tq)  # while nobody looks at the calendar (a gateway down, or QA moving the clock on)
    await job(bench, billing.run_due_jobs, at(2027, 3, 2, 9))  # January, February and March all missed
    charges = sorted((c.period, c.msisdn) for c in await bench.store.find(Charge))
    assert charges == [("2026-12", A), ("2026-12", B), ("2027-01", A), ("2027-01", B), ("2027-02", A), ("2027-03", A)]
    runs = await bench.store.find(JobRun, order_by="period", job="billing")
    assert [r.period for r in runs] == ["2026-12", "2027-01", "2027-02", "2027-03"]
    assert not [e for e in (await job(bench, billing.run_due_jobs, at(2027, 3, 2, 10))).effects]


async def test_a_store_never_billed_bills_every_month_since_the_first_trial_ended(bench: ServiceBench) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 10))  # charged from December; no job check before the clock jumps
    await job(bench, billing.run_due_jobs, at(2027, 1, 2, 9))
    assert sorted((c.period, c.msisdn) for c in await bench.store.find(Charge)) == [("2026-12", A), ("2027-01", A)]
    runs = await bench.store.find(JobRun, order_by="period", job="billing")
    assert [r.period for r in runs] == ["2026-12", "2027-01"]


async def test_a_month_left_without_a_billing_run_between_two_runs_is_billed(bench: ServiceBench) -> None:
    """An earlier version's on-demand run billed January only, though December had no run: the job check bills it."""
    await subscribe(bench, A, "TT", at(2026, 11, 10))
    await job(bench, billing.run_due_jobs, at(2026, 11, 10, 11))
    await job(bench, billing.run_billing, at(2027, 1, 2, 9))  # this month's only
    await job(bench, billing.run_due_jobs, at(2027, 1, 2, 10))
    assert sorted(c.period for c in await bench.store.find(Charge)) == ["2026-12", "2027-01"]


async def test_who_pays_for_a_month_is_decided_at_midnight_starting_it(bench: ServiceBench) -> None:
    tt = await subscribe(bench, A, "TT", at(2026, 11, 5))
    tq = await subscribe(bench, B, "TQ", at(2026, 11, 5))
    bench.clock.set(at(2026, 11, 30, 23, 59))
    await cancel(bench, tt)  # "本月内退订下月不再收费"
    bench.clock.set(at(2026, 12, 1, 0, 0))
    await cancel(bench, tq)  # December has begun: it is charged, even though billing has not run yet
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 5))
    assert [(c.msisdn, c.period) for c in await bench.store.find(Charge)] == [(B, "2026-12")]


async def test_a_cancellation_after_billing_voids_only_a_charge_for_a_month_begun_after_it_and_not_refunded(
    bench: ServiceBench,
) -> None:
    await subscribe(bench, A, "TT", at(2026, 11, 5))
    await subscribe(bench, B, "TT", at(2026, 11, 5))
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 5))
    charge_b = (await bench.store.find(Charge, msisdn=B))[0]
    await job(bench, lambda ctx, now: billing.dispute(ctx, charge_b.id, now), at(2026, 12, 1, 9))
    # A unsubscribes in December, after its billing moment; B's unsubscription, sent on 30 November, is handled
    # only now (the bench's clock gives an MO its time), after the charge was disputed and refunded.
    for msisdn, sent in ((A, at(2026, 12, 2, 9)), (B, at(2026, 11, 30, 23, 58))):
        bench.clock.set(sent)
        await say(bench, msisdn, "0000")
        assert "成功退订" in texts(await say(bench, msisdn, "1"), msisdn)[0]
    charges = {c.msisdn: (c.period, c.amount, c.refund) for c in await bench.store.find(Charge)}
    assert charges == {A: ("2026-12", 3000, 0), B: ("2026-12", 3000, 3000)}
    assert not await bench.store.find(SubscriptionEvent, event="voided")


async def test_a_free_service_is_neither_charged_nor_reminded(free_news: ServiceBench) -> None:
    """A fee of 0 (valid config) was charged 0 fen each month and reminded ("信息费0元/月…本月内退订下月不再收费"), and a
    dispute of such a charge sent "退还0元" and a REFUND of 0 to the SP: there is nothing to bill. A paid service beside
    it is reminded and charged as ever."""
    bench = free_news
    await subscribe(bench, A, "TT", at(2026, 11, 5))  # free
    await subscribe(bench, A, "TL", at(2026, 11, 6))  # 10 yuan a month
    await subscribe(bench, B, "TT", at(2026, 11, 7))  # free, and nothing else
    reminded = pages_to(await job(bench, billing.run_due_jobs, at(2026, 11, 21)))
    assert list(reminded) == [A]
    assert "精品图铃" in "".join(reminded[A]) and "头条新闻" not in "".join(reminded[A])
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 5))
    await job(bench, billing.run_due_jobs, at(2027, 1, 1, 0, 5))
    charges = [(c.msisdn, c.service_id, c.period, c.amount) for c in await bench.store.find(Charge, order_by="period")]
    assert charges == [(A, "tencent-ringtones", "2026-12", 1000), (A, "tencent-ringtones", "2027-01", 1000)]
    assert len(await bench.store.find(SubscriptionEvent, event="charged")) == 2


async def test_dispute_refunds_double_without_a_confirmation_record(bench: ServiceBench) -> None:
    confirmed = await subscribe(bench, A, "TT", at(2026, 10, 5))
    unconfirmed = Subscription("sub-legacy", B, "tencent-ringtones", "active", at(2026, 9, 1), "sp", "", at(2026, 10, 1))
    await bench.store.apply(Outcome().put(unconfirmed).effects)
    await job(bench, billing.run_billing, at(2026, 11, 1, 0, 1))
    [charge_a] = await bench.store.find(Charge, msisdn=A)
    [charge_b] = await bench.store.find(Charge, msisdn=B)
    assert (charge_a.subscription_id, charge_b.subscription_id) == (confirmed.id, unconfirmed.id)

    single = await job(bench, lambda ctx, now: billing.dispute(ctx, charge_a.id, now), at(2026, 11, 9))
    assert texts_to(single) == {A: "中国移动:您2026年11月新浪的头条新闻业务信息费30元,经核实已为您退还30元。"}
    double = await job(bench, lambda ctx, now: billing.dispute(ctx, charge_b.id, now), at(2026, 11, 9))
    assert texts_to(double) == {
        B: "中国移动:您2026年11月腾讯公司的精品图铃业务信息费10元,因无法提供您本人确认定制的记录,"
        "按“信息费误差,双倍返还”为您返还20元。"
    }
    refunds = {c.msisdn: (c.refund, c.refund_reason, c.disputed_at) for c in await bench.store.find(Charge)}
    assert refunds == {
        A: (3000, billing.SINGLE_REFUND_REASON, at(2026, 11, 9)),
        B: (2000, billing.DOUBLE_REFUND_REASON, at(2026, 11, 9)),
    }
    assert len(await bench.store.find(SubscriptionEvent, event="refunded")) == 2
    # Each SP hears of the refund it bears, on its own binds.
    [notice_b] = [r for r in double.replies if r.to_account]
    assert notice_b.to_account == "tencent"
    assert parse_sp_notice(notice_b.text) | {"time": "", "notice": ""} == {
        "event": "REFUND", "service": "tencent-ringtones", "keyword": "TL", "msisdn": B, "channel": "dispute",
        "time": "", "charge": charge_b.id, "period": "2026-11", "refund": "20", "notice": "",
    }  # fmt: skip
    assert notice_b.text.endswith(f" refund=20 notice={parse_sp_notice(notice_b.text)['notice']}")
    with pytest.raises(ValueError, match="already refunded"):
        await billing.dispute(bench.ctx, charge_a.id, bench.clock.now())
    with pytest.raises(ValueError, match="no charge"):
        await billing.dispute(bench.ctx, "no-such-charge", bench.clock.now())


async def test_a_0_yuan_charge_billed_before_free_services_were_not_is_no_dispute(free_news: ServiceBench) -> None:
    """A charge of 0 fen (a free service's, billed by an earlier version) disputed sent "经核实已为您退还0元" and a
    REFUND notice of 0 to the SP: it is refused, nothing sent or changed."""
    bench = free_news
    subscription = await subscribe(bench, A, "TT", at(2026, 10, 5))
    charge = Charge("charge-free", subscription.id, A, "sina-news", "2026-11", 0, at(2026, 11, 1, 0, 1))
    await bench.store.apply(Outcome().put(charge).effects)
    bench.clock.set(at(2026, 11, 9))
    with pytest.raises(ValueError, match="is of 0 yuan: nothing to refund"):
        await billing.dispute(bench.ctx, charge.id, bench.clock.now())
    assert await bench.store.find(Charge) == [charge]
    assert await bench.store.find(SubscriptionEvent, event="refunded") == []


def fee_changed(bench: ServiceBench, service_id: str, fee: float) -> None:
    """The catalogue as a restart with this service's fee changed (yuan a month) gives it."""
    catalogue = [entry | {"fee": fee} if entry["id"] == service_id else entry for entry in catalogue_without()]
    bench.ctx = replace(bench.ctx, catalogue=Catalogue(gateway_config(catalogue=catalogue).catalogue))


async def test_a_subscription_pays_the_lower_of_its_confirmed_fee_and_the_catalogues(bench: ServiceBench) -> None:
    """Confirmed at 30, TT's fee raised to 50: the 1st charged 50 with no text; the subscriber pays what they confirmed
    (the reminder says so), one who confirmed at 50 pays 50, and a fall to 20 is charged to both at once."""
    at_30 = await subscribe(bench, A, "TT", at(2026, 11, 5))
    fee_changed(bench, "sina-news", 50)
    at_50 = await subscribe(bench, B, "TT", at(2026, 11, 6))
    assert (at_30.fee, at_50.fee) == (3000, 5000)
    sent = pages_to(await job(bench, billing.run_due_jobs, at(2026, 11, 21)))
    assert "信息费30元/月" in sent[A][0] and "信息费50元/月" in sent[B][0]
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 1))
    assert {c.msisdn: c.amount for c in await bench.store.find(Charge, period="2026-12")} == {A: 3000, B: 5000}
    fee_changed(bench, "sina-news", 20)
    await job(bench, billing.run_due_jobs, at(2027, 1, 1, 0, 1))
    assert {c.msisdn: c.amount for c in await bench.store.find(Charge, period="2027-01")} == {A: 2000, B: 2000}


async def test_a_charge_above_the_confirmed_fee_is_refunded_double_whatever_the_confirmation_record(bench) -> None:
    """"计费出错,多收、错收客户信息费(实施双倍返还)": a charge above the fee the subscriber confirmed (billed before
    subscriptions kept it, or a fee written by hand) was refunded once, the subscriber's confirmation being on record."""
    confirmed = Subscription("sub-1", A, "sina-news", "active", at(2026, 9, 1), "sms", "mo-1", at(2026, 10, 1), fee=3000)
    over = Charge("chg-over", confirmed.id, A, "sina-news", "2026-10", 5000, at(2026, 10, 1, 0, 1))
    agreed = Charge("chg-agreed", confirmed.id, A, "sina-news", "2026-11", 3000, at(2026, 11, 1, 0, 1))
    await bench.store.apply(Outcome().put(confirmed, over, agreed).effects)
    double = await job(bench, lambda ctx, now: billing.dispute(ctx, over.id, now), at(2026, 11, 9))
    assert texts_to(double) == {
        A: "中国移动:您2026年10月新浪的头条新闻业务信息费50元,高于您确认定制时的30元/月,按“多收信息费,双倍返还”为您返还100元。"
    }
    single = await job(bench, lambda ctx, now: billing.dispute(ctx, agreed.id, now), at(2026, 11, 9))
    assert texts_to(single) == {A: "中国移动:您2026年11月新浪的头条新闻业务信息费30元,经核实已为您退还30元。"}
    refunds = {c.id: (c.refund, c.refund_reason) for c in await bench.store.find(Charge)}
    assert refunds == {over.id: (10000, billing.OVERCHARGE_REFUND_REASON), agreed.id: (3000, billing.SINGLE_REFUND_REASON)}


async def test_a_charge_made_for_a_confirmation_committed_after_billing_is_no_more_than_its_confirmed_fee(bench) -> None:
    """A Y sent at 23:59 whose commit lands after December's run gets the charge the run would have made: at 30."""
    fee_changed(bench, "sina-news", 50)
    await job(bench, billing.run_billing, at(2026, 12, 1, 0, 1))
    late = Subscription("sub-late", A, "sina-news", "active", at(2026, 11, 30, 23, 59), "sms", "mo-1", at(2026, 12, 1, 0, 0),
                        fee=3000)  # fmt: skip
    missed = await billing.charges_missed(bench.ctx, late, at(2026, 12, 1, 0, 2))
    assert [(r.period, r.amount) for r in missed if isinstance(r, Charge)] == [("2026-12", 3000)]


@pytest.fixture
async def mid_month(tmp_path: Path) -> AsyncIterator[ServiceBench]:
    """A bench whose billing day is the 15th (`[services] billing_day`)."""
    bench = await service_bench(tmp_path, gateway_config(services={"billing_day": 15}))
    yield bench
    await bench.close()


async def charged(bench: ServiceBench) -> list[tuple[str, str]]:
    return sorted((c.subscription_id, c.period) for c in await bench.store.find(Charge))


async def test_a_billing_day_of_the_15th_bills_each_month_from_its_15th_as_it_stood_at_midnight_starting_it(
    mid_month: ServiceBench,
) -> None:
    """Not on the 1st nor the 14th: from the 15th. The free months are the same (ordered on the 1st-20th, free that
    month; from the 21st, the next one too), and who pays for a month is who was subscribed at midnight starting its
    15th: a cancellation on the 14th pays nothing for that month, one on the 15th pays it (no test ran billing on
    another day than the 1st)."""
    bench = mid_month
    tt = await subscribe(bench, A, "TT", at(2026, 11, 5))  # charged from December
    tl = await subscribe(bench, A, "TL", at(2026, 11, 21))  # free through December
    leaves_on_the_14th = await subscribe(bench, B, "TT", at(2026, 11, 5))
    leaves_on_the_15th = await subscribe(bench, C, "TT", at(2026, 11, 5))
    await job(bench, billing.run_due_jobs, at(2026, 12, 1, 0, 5))
    assert await charged(bench) == []  # November's run (all of it free), no December one yet
    bench.clock.set(at(2026, 12, 14, 23, 59))
    await cancel(bench, leaves_on_the_14th)
    await job(bench, billing.run_due_jobs, at(2026, 12, 14, 23, 59, 30))
    assert await charged(bench) == []
    bench.clock.set(at(2026, 12, 15, 0, 0))
    await cancel(bench, leaves_on_the_15th)
    await job(bench, billing.run_due_jobs, at(2026, 12, 15, 0, 5))
    assert await charged(bench) == sorted([(tt.id, "2026-12"), (leaves_on_the_15th.id, "2026-12")])
    await job(bench, billing.run_due_jobs, at(2027, 1, 14, 9))
    assert len(await charged(bench)) == 2
    await job(bench, billing.run_due_jobs, at(2027, 1, 15, 0, 5))
    assert [s for s, period in await charged(bench) if period == "2027-01"] == sorted([tt.id, tl.id])
    runs = await bench.store.find(JobRun, order_by="period", job="billing")
    assert [r.period for r in runs] == ["2026-11", "2026-12", "2027-01"]


def test_with_a_billing_day_of_the_15th_an_mo_is_billed_since_only_if_sent_before_the_last_15th(
    mid_month: ServiceBench,
) -> None:
    """An MO handled on 3 January (retried, or replayed at a start) was sent before the last billing moment if it was
    sent before 15 December's, not January's, still to come: only then is it decided after billing (a cancellation
    waits for billing's key, a confirmation gets the charges missed)."""
    handled = at(2027, 1, 3, 9)
    assert billing.billed_since(mid_month.ctx, at(2026, 12, 14, 23, 59), handled)
    assert not billing.billed_since(mid_month.ctx, at(2026, 12, 15, 0, 1), handled)
