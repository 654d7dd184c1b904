"""Free trial months, reminders, monthly billing and disputes (SPEC 3.2, "放心体验").

Everything follows the operator's calendar (`ctx.local_date`, UTC+8 by default):

- Free trial: a subscriber's first subscription to a service ("首次定购"),
  confirmed on days 1..trial_last_order_day (20), is free for the rest of that
  month, from the 21st for that month and the next. Ordering it again after
  unsubscribing brings no new trial: it keeps what is left of the earlier
  subscriptions' trial (ordered on 21 Nov, free through December, unsubscribed
  and ordered again on 22 Nov: still free through December, and told so), and
  is otherwise charged from the next billing day (the month it is ordered in is
  not billed; billing runs on the 1st, "每月1日0时开始触发包月话单").
  `trial_until` is the local midnight starting the first month that is charged.
- Reminder ("第二次提醒"): on reminder_first_day..reminder_last_day (21..25) every
  subscriber whose subscriptions are charged for the first time next month gets
  a text from 10086 listing them: "本月内退订下月不再收费". That is every
  subscription ordered on the 1st..20th of this month, every one ordered
  from the 21st of last month (still free this month, charged from next month),
  and every repeat order of this month with no trial left. Each subscription is
  reminded once (a "reminded" SubscriptionEvent), on the first check that finds
  it: one text for all of them on the 21st, another for an order of the 22nd.
  A JobRun "reminders" per month marks the last run, so the checks every 30 s
  of the reminder days read only the orders since (not the month's all); an
  order whose confirmation was received before that run and committed after it
  (a retry) deletes it, and the next check reads the month's orders again. A
  gateway down over every reminder day sends them at its first check after
  (the seed: reminded twice before any charge, "在正式收费前,都进行两次提醒确认").
  As in the seed, a reminder longer than one SMS goes out as separate SMS cut
  between items, each marked "(1/2)", "(2/2)" (handlers/pages.py).
- Billing: on the billing day (the 1st) a Charge per subscription whose trial
  has ended and that was active at midnight starting the billing day, for that
  month ("YYYY-MM"), in fen, never above the fee the subscription's confirmation
  stated (`monthly_fee`, the fee its reminder states); none for a free one (a
  fee of 0), which is not reminded either: an unsubscription before then is not charged for
  the month, one after it is, whenever billing runs (a cancellation sent before
  it that commits after billing charged the subscription voids that charge:
  handlers/subscriptions.py; an order confirmed before it that commits after
  the run gets the charges the run would have made: `charges_missed`). Never
  twice for the same (subscription, month):
  existing charges are skipped. A subscription whose service is no longer in
  the catalogue (`0000` lists it as "不再收取信息费") is not charged, and the
  run ends it (cancelled, channel "billing", event detail "withdrawn"): the
  service back in the catalogue later charges it no more without a new order.
- Jobs: `run_due_jobs` (every 30 s from the gateway, and on demand) runs billing
  for the current month once it is the billing day or later and it has not run
  yet, and for every month since the first run that has none (a gateway that was
  down on the 1st bills when it comes back; a store never billed starts with the
  month its earliest subscription's trial ends), each recorded as a JobRun; and
  the reminders due on the reminder days. Billing on demand (`bill_on_demand`)
  bills those missed months too, then the current one. gateway/services.py runs them once the
  subscription changes decided so far are committed (SerialLocks.wait_for_others).
- Disputes: a charge above the fee the subscription's confirmation stated ("多收",
  made before subscriptions kept their fee) or on a subscription without a record
  of the subscriber's own confirmation is refunded double ("信息费误差,双倍返还");
  the rest once, at the operator's discretion. The subscriber is told by SMS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace

from gateway.config import CatalogueEntry
from gateway.logs import get_logger
from gateway.store.effects import Delete
from gateway.store.records import Charge, JobRun, Subscription, SubscriptionEvent

from .base import Outcome, ServiceContext
from .billing_calendar import billing_moment, month_of, month_start, period_of
from .pages import paginate
from .sp_notice import sp_notice
from .subscriptions import (
    ended,
    fee_shown,
    monthly_fee,
    naming_text,
    subscription_event,
    yuan,
)

log = get_logger("billing")

SERIAL_KEY = "*billing"  # the serial key of billing, reminders and disputes (no subscriber's number starts with *)
REMINDED = "reminded"  # the SubscriptionEvent of a subscription's reminder
WITHDRAWN = "withdrawn"  # the detail of the "cancelled" event of a subscription billing found withdrawn from the catalogue
# A reminder run looks again at orders from this long before the last run of the month (JobRun "reminders"):
# an order decided before that run whose commit landed after it. Overlap costs nothing (REMINDED events).
REMINDER_OVERLAP = 600.0
DAY = 86400.0
LOOKUP_CHUNK = 500  # ids per `__in` lookup (SQLite caps the parameters of one statement)
# Subscriptions charged, or subscribers reminded, per commit: a job over 100,000 of them made in one went on ~5 s
# with no bind served (the jobs yield their Outcomes a part at a time; each part is committed before the next).
COMMIT_CHUNK = 1000
DOUBLE_REFUND_REASON = "no confirmation record: double refund"
OVERCHARGE_REFUND_REASON = "charged above the confirmed fee: double refund"
SINGLE_REFUND_REASON = "refund at operator's discretion"


# ----------------------------------------------------------------- calendar
def free_months(ctx: ServiceContext, ordered_at: float) -> int:
    """Calendar months free of charge: 1 (the month of ordering) up to the 20th, else 2 (and the next)."""
    return 1 if ctx.local_date(ordered_at).day <= ctx.settings.trial_last_order_day else 2


def trial_until(ctx: ServiceContext, ordered_at: float, first_order: bool = True) -> float:
    """When charging may start for a subscription ordered (confirmed) at `ordered_at`: after the free
    months for a first order, from the next month for a repeat one with no trial left (repeat_trial_until)."""
    months = free_months(ctx, ordered_at) if first_order else 1
    return ctx.local_midnight(month_start(ctx.local_date(ordered_at), months))


def repeat_trial_until(ctx: ServiceContext, ordered_at: float, earlier: list[Subscription]) -> float:
    """A repeat order's trial_until: what is left of the trial of the service's earlier subscriptions, else
    from next month. Unsubscribing and ordering again within the free months must not cost the subscriber the
    months the first order made free."""
    return max(trial_until(ctx, ordered_at, first_order=False), *(s.trial_until for s in earlier))


def billed_since(ctx: ServiceContext, sent_at: float, now: float) -> bool:
    """A billing moment came after `sent_at` and by `now`: an MO sent before it and handled only now (retried
    after a failed try, or handled again at start) may cancel a subscription billing charges meanwhile."""
    offset = ctx.settings.utc_offset_hours * 3600
    if now <= sent_at or (now + offset) // DAY == (sent_at + offset) // DAY:
        return False  # (billing moments are local midnights; this runs for every MO to 10086)
    month = month_start(ctx.local_date(now))
    moment = billing_moment(ctx, month)
    if moment > now:  # this month's is still to come: the last one was last month's
        moment = billing_moment(ctx, month_start(month, -1))
    return sent_at < moment


# --------------------------------------------------------------------- jobs
async def run_due_jobs(ctx: ServiceContext, now: float) -> AsyncIterator[Outcome]:
    today = ctx.local_date(now)
    settings = ctx.settings
    for month in await _months_unbilled(ctx, now):
        async for part in run_billing(ctx, now, month):
            yield part
    if settings.reminder_first_day <= today.day <= settings.reminder_last_day:
        async for part in send_reminders(ctx, now):
            yield part
    elif today.day > settings.reminder_last_day:
        # After the reminder days too, at every check, each order charged from next month that no check reminded
        # yet: made after the last one of those days (on the 25th at 23:59:58), all of them (the gateway down over
        # the 21st-25th), or later (a repeat order with no trial left on the 27th): the seed reminds before any
        # charge ("在正式收费前,都进行两次提醒确认"). Each run reads only the orders since the last.
        async for part in send_reminders(ctx, now):
            yield part


async def billing_due(ctx: ServiceContext, now: float) -> bool:
    """A month's billing is due (run_due_jobs would bill)."""
    return bool(await _months_unbilled(ctx, now))


async def _months_unbilled(ctx: ServiceContext, now: float) -> list[dt.date]:
    """The months whose billing day has come and that have no billing run, oldest first: this month from its
    billing day, and every earlier month without a run since the first run (a gateway down over a 1st, a
    simulated clock moved past several 1sts at once, an operator's on-demand run of a later month before the
    job check caught up). A store never billed starts with the month its earliest subscription's trial ends
    (one whose clock jumped past several 1sts before the first job check bills them all), but with no month
    after the last one due. A run recorded at a later time than `now` does not count: a simulated clock was set
    back before it (QA going back to order in a month already billed), and the month is billed again when its
    billing day comes (`run_billing` charges each subscription once), or a trial ending then would never pay."""
    today = ctx.local_date(now)
    last_due = month_start(today) if today.day >= ctx.settings.billing_day else month_start(today, -1)
    # One JobRun per month: reading them all is cheap, and it finds the gaps an on-demand run of a later month left.
    runs = await ctx.store.find(JobRun, order_by="period", job="billing")
    if runs:
        start = month_of(runs[0].period)
    else:  # (subscriptions are read only until the first run: this runs at every job check)
        earliest = await ctx.store.find(Subscription, order_by="trial_until", limit=1)
        start = min(month_start(ctx.local_date(earliest[0].trial_until)), last_due) if earliest else last_due
    billed = {run.period for run in runs if run.ran_at <= now}
    months = []
    month = start
    while month <= last_due:
        if period_of(month) not in billed:
            months.append(month)
        month = month_start(month, 1)
    return months


async def bill_on_demand(ctx: ServiceContext, now: float) -> AsyncIterator[Outcome]:
    """An operator's billing run: every month missed before this one (as `run_due_jobs` would bill them), then
    this month's, whatever the day (idempotent). Billing only this month would record its run, and a month
    missed before it would then never be billed."""
    this_month = month_start(ctx.local_date(now))
    for month in [m for m in await _months_unbilled(ctx, now) if m < this_month] + [this_month]:
        async for part in run_billing(ctx, now, month):
            yield part


async def run_billing(ctx: ServiceContext, now: float, month: dt.date | None = None) -> AsyncIterator[Outcome]:
    """Charge a month's fee (this month's unless `month` says) for every subscription out of its trial that was
    active at the month's billing moment (idempotent), and end every one to a service withdrawn from the catalogue.
    In parts of COMMIT_CHUNK charges or endings, the month's run (JobRun) in the last: a run cut short (a crash)
    is done again, and charges or ends only those it had not."""
    month = month or month_start(ctx.local_date(now))
    period = period_of(month)
    # Who pays is decided at the billing moment (midnight starting the billing day, "每月1日0时"), whenever this
    # runs: an unsubscription sent before it is not charged for the month even if its commit lands later, one
    # sent after it is ("下月起不再收取信息费"), and a month billed late is billed as it stood then.
    billed_at = billing_moment(ctx, month)
    out_of_trial = ctx.local_midnight(month)
    active = await ctx.store.scan(Subscription, status="active")  # (also those in their trial: to end the withdrawn)
    cancelled_since = await ctx.store.scan(
        Subscription, status="cancelled", trial_until__lte=out_of_trial, cancelled_at__gte=billed_at
    )
    charged = {c.subscription_id for c in await ctx.store.scan(Charge, period=period)}
    due = {s.id: s for s in (*active, *cancelled_since)}  # (one cancelled between the two reads is in both)
    outcome = Outcome()
    for subscription in sorted(due.values(), key=lambda s: (s.ordered_at, s.id)):
        entry = ctx.catalogue.get(subscription.service_id)
        if entry is None:  # every subscription to it, also one charged this month by an earlier run (one on demand)
            if subscription.id not in charged:
                log.warning("not charged: service no longer in the catalogue", subscription=subscription.id,
                            service_id=subscription.service_id, period=period)  # fmt: skip
            if subscription.status == "active":  # `0000` told the subscriber it is no longer charged: never again
                outcome.put(*ended(ctx, subscription, "billing", now, WITHDRAWN))
        elif subscription.id in charged:
            continue
        elif subscription.trial_until <= out_of_trial:
            outcome.put(*_charge(ctx, subscription, entry, period, now))
        if len(outcome.effects) >= 2 * COMMIT_CHUNK:  # a Charge, or an ending, and its SubscriptionEvent each
            yield outcome
            outcome = Outcome()
    yield outcome.put(JobRun("billing", period, now))


async def runs_voided_by_an_order(ctx: ServiceContext, ordered_at: float, now: float) -> list[Delete]:
    """A subscription confirmed at `now` before billing or reminder runs recorded later (a simulated clock set back
    before them: QA ordering in a month already billed or reminded) would be missed by them even once the clock is
    past them again (they count once `ran_at <= now`: `_months_unbilled`, and `send_reminders` reads only the orders
    since the month's last run): they are deleted with the order, and those jobs run again when due (each
    subscription charged once, reminded once). So is a reminder run made since the confirmation was received
    (`ordered_at`, the subscription's time), which could not see it: its handling retried, or replayed at a start,
    for longer than REMINDER_OVERLAP (the reminders read the month's orders again at the next check; billing
    runs missed have `charges_missed`)."""
    runs = await ctx.store.find(JobRun, ran_at__gt=min(ordered_at, now))
    return [Delete(JobRun, (run.job, run.period)) for run in runs if run.ran_at > now or run.job == "reminders"]


async def charges_missed(ctx: ServiceContext, subscription: Subscription, now: float) -> list[Charge | SubscriptionEvent]:
    """The charges billing runs already done would have made for a subscription decided before their billing
    moment but committed after the run (a confirmation sent at 23:59:59 whose handling was retried after
    midnight): a repeat order out of its trial pays that month, however late its commit."""
    entry = ctx.catalogue.get(subscription.service_id)
    if entry is None:
        return []
    first = period_of(month_start(ctx.local_date(subscription.ordered_at)))
    records: list[Charge | SubscriptionEvent] = []
    for run in await ctx.store.find(JobRun, order_by="period", job="billing", period__gte=first):
        month = month_of(run.period)
        if subscription.trial_until <= ctx.local_midnight(month) and subscription.ordered_at < billing_moment(ctx, month):
            records.extend(_charge(ctx, subscription, entry, run.period, now))
    return records


def _charge(
    ctx: ServiceContext, subscription: Subscription, entry: CatalogueEntry, period: str, now: float
) -> tuple[Charge, SubscriptionEvent] | tuple[()]:
    """The month's charge of the subscription (`monthly_fee`) and its event; none for a free one (a fee of 0): there is
    nothing to bill, remind of or refund."""
    amount = monthly_fee(subscription, entry)
    if amount == 0:
        return ()
    charge = Charge(
        id=ctx.new_id(),
        subscription_id=subscription.id,
        msisdn=subscription.msisdn,
        service_id=subscription.service_id,
        period=period,
        amount=amount,
        created_at=now,
    )
    event = subscription_event(ctx, subscription.id, subscription.msisdn, "charged", "billing", now,
                               f"charge={charge.id} period={period} amount={charge.amount}")  # fmt: skip
    return charge, event


async def send_reminders(ctx: ServiceContext, now: float) -> AsyncIterator[Outcome]:
    """The reminder to each subscriber with subscriptions first charged next month that were not reminded yet.

    Each subscription is reminded once, whenever this runs (`run_due_jobs` on the reminder days, or an
    operator on demand), and marked by a "reminded" event: so a run on the 12th does not keep a subscriber
    who orders on the 15th from the reminder of the 21st, and an order from the 22nd that is charged next
    month (a repeat order with no trial left) is reminded at the next check, also after the reminder days."""
    today = ctx.local_date(now)
    period = period_of(today)
    # Only orders whose trial can end next month (an index range, not every active subscription at every job
    # check of the reminder days): first orders from the day after the last trial day of last month, and of
    # those only the ones since this month's last run (it reminded every one before it).
    since = ctx.local_midnight(month_start(today, -1) + dt.timedelta(days=ctx.settings.trial_last_order_day))
    last_run = await ctx.store.find(JobRun, job="reminders", period=period)
    if last_run and last_run[0].ran_at <= now:  # (a simulated clock set back before it: read them all again)
        since = max(since, last_run[0].ran_at - REMINDER_OVERLAP)
    ending = await ctx.store.scan(
        Subscription,
        order_by="ordered_at",
        status="active",
        ordered_at__gte=since,
        trial_until__gt=ctx.local_midnight(month_start(today)),
        trial_until__lte=ctx.local_midnight(month_start(today, 1)),
    )
    reminded = await _reminded(ctx, [s.id for s in ending])
    by_subscriber: dict[str, list[Subscription]] = defaultdict(list)
    for subscription in sorted(ending, key=lambda s: (s.ordered_at, s.id)):
        entry = ctx.catalogue.get(subscription.service_id)
        if subscription.id not in reminded and entry is not None and monthly_fee(subscription, entry) > 0:
            by_subscriber[subscription.msisdn].append(subscription)  # (a free one is charged nothing: no reminder)
    outcome = Outcome()
    operator = ctx.settings.operator
    for count, (msisdn, subscriptions) in enumerate(by_subscriber.items(), 1):
        language = await ctx.language_of(msisdn)
        pieces = [ctx.text("billing.reminder_head", language)]
        for serial, subscription in enumerate(subscriptions, 1):
            entry = ctx.catalogue.get(subscription.service_id)
            assert entry is not None
            pieces.append(ctx.text("billing.reminder_item", language, serial=serial, sp_name=entry.sp_name_in(language),
                                   service=entry.name_in(language), kind=ctx.text(f"billing.kind.{entry.kind}", language),
                                   fee=fee_shown(subscription, entry)))  # fmt: skip
            outcome.put(subscription_event(ctx, subscription.id, msisdn, REMINDED, "billing", now,
                                           f"first charge {period_of(month_start(today, 1))}"))  # fmt: skip
        pieces.append(ctx.text("billing.reminder_foot", language, operator=operator))
        # As the seed shows it: separate SMS cut between items, each marked "(1/2)", "(2/2)".
        for page in paginate(pieces, lambda i, n: ctx.text("billing.page", language, page=i, pages=n)):
            outcome.reply(msisdn, page, operator)
        if count % COMMIT_CHUNK == 0:  # a subscriber's reminder and its "reminded" events commit together
            yield outcome
            outcome = Outcome()
    yield outcome.put(JobRun("reminders", period, now))


async def _reminded(ctx: ServiceContext, subscription_ids: list[str]) -> set[str]:
    """Those of the subscriptions that have had their reminder."""
    reminded: set[str] = set()
    for start in range(0, len(subscription_ids), LOOKUP_CHUNK):
        chunk = subscription_ids[start : start + LOOKUP_CHUNK]
        reminded |= await ctx.store.distinct(SubscriptionEvent, "subscription_id", subscription_id__in=chunk, event=REMINDED)
        await asyncio.sleep(0)  # the store's reads do not yield: serve the binds between them
    return reminded


# ----------------------------------------------------------------- disputes
async def dispute(ctx: ServiceContext, charge_id: str, now: float) -> Outcome:
    """Refund a disputed charge: double when above the fee the subscription's confirmation stated, or without a record
    of the subscriber's own confirmation; else once."""
    found = await ctx.store.find(Charge, id=charge_id)
    if not found:
        raise ValueError(f"no charge with id {charge_id!r}")
    charge = found[0]
    if charge.amount == 0:  # a free service's, billed before free services were not
        raise ValueError(f"charge {charge_id!r} is of 0 yuan: nothing to refund")
    if charge.refund or charge.disputed_at is not None:
        raise ValueError(f"charge {charge_id!r} was already refunded ({yuan(charge.refund / 100)} yuan: {charge.refund_reason})")
    subscriptions = await ctx.store.find(Subscription, id=charge.subscription_id)
    subscription = subscriptions[0] if subscriptions else None
    refund, reason, key, stated = _refund(charge, subscription)
    refunded = replace(charge, refund=refund, refund_reason=reason, disputed_at=now)
    event = subscription_event(ctx, charge.subscription_id, charge.msisdn, "refunded", "dispute", now,
                               f"charge={charge.id} period={charge.period} refund={refund} reason={reason}")  # fmt: skip
    language = await ctx.language_of(charge.msisdn)
    entry = ctx.catalogue.get(charge.service_id)
    month = month_of(charge.period)
    text = naming_text(
        ctx,
        key,
        language,
        entry,
        charge.service_id,
        month=ctx.text("billing.month", language, year=month.year, month=month.month),
        amount=yuan(charge.amount / 100),
        refund=yuan(refund / 100),
        **stated,
    )
    outcome = Outcome().put(refunded, event).reply(charge.msisdn, text, ctx.settings.operator)
    if entry is not None:  # the SP bears the refund: it hears of it like any order change
        outcome.replies.append(
            sp_notice(ctx, entry, charge.msisdn, "REFUND", "dispute", now,
                      charge=charge.id, period=charge.period, refund=yuan(refund / 100))  # fmt: skip
        )
    return outcome


def _refund(charge: Charge, subscription: Subscription | None) -> tuple[int, str, str, dict[str, str]]:
    """A disputed charge's refund (fen), its reason, the text telling the subscriber and that text's own values. The
    seed's "计费出错,多收、错收客户信息费(实施双倍返还)": a charge above the fee the subscriber confirmed (one billed
    before subscriptions kept their fee, or a fee written by hand) is refunded double whatever the confirmation record,
    and so is one with no record of the subscriber's own confirmation ("信息费误差,双倍返还"); the rest once."""
    if subscription is not None and subscription.fee is not None and charge.amount > subscription.fee:
        confirmed_fee = {"confirmed_fee": yuan(subscription.fee / 100)}
        return 2 * charge.amount, OVERCHARGE_REFUND_REASON, "billing.refund_overcharged", confirmed_fee
    if subscription is not None and subscription.confirmation:
        return charge.amount, SINGLE_REFUND_REASON, "billing.refund_single", {}
    return 2 * charge.amount, DOUBLE_REFUND_REASON, "billing.refund_double", {}
