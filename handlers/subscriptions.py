"""Subscriptions as every service sees them: the active ones, and cancelling one (SPEC 3.1).

Shared by 10086 query/unsubscribe, the API/USSD unsubscribe path and any
other service that ends a subscription. Cancelling is one set of effects and
messages committed together: the subscription becomes "cancelled" (so the
submission guards refuse the SP's content from that commit on), an event is
kept, the subscriber gets the confirmation from the operator short code and
the SP gets its order-relation notice (sp_notice.py, event CANCEL).

Who pays for a month is decided at its billing moment (billing.py): a
cancellation sent before it whose commit lands after billing charged the
subscription (its handling failed once and was retried after midnight, say)
voids that charge in the same commit, so the order of the two does not
matter ("本月内退订下月不再收费").
"""

from __future__ import annotations

from dataclasses import replace

from gateway.config import CatalogueEntry
from gateway.store.effects import Delete
from gateway.store.records import Charge, Subscription, SubscriptionEvent

from .base import Outcome, ServiceContext
from .billing_calendar import billing_moment, month_of, month_start, period_of
from .sp_notice import sp_notice


async def active_subscriptions(ctx: ServiceContext, msisdn: str) -> list[Subscription]:
    """The subscriber's active subscriptions, oldest order first (ties by id, so the order is stable)."""
    found = await ctx.store.find(Subscription, order_by="ordered_at", msisdn=msisdn, status="active")
    return sorted(found, key=lambda s: (s.ordered_at, s.id))


def subscription_event(
    ctx: ServiceContext, subscription_id: str, msisdn: str, event: str, channel: str, at: float, detail: str = ""
) -> SubscriptionEvent:
    """A line of a subscription's change history (ordered, cancelled, charged, voided, refunded, reminded)."""
    return SubscriptionEvent(ctx.new_id(), subscription_id, msisdn, at, event, channel, detail)


def yuan(fee: float) -> str:
    """A fee as shown to subscribers: 30 -> "30", 0.5 -> "0.5"."""
    return f"{fee:.2f}".rstrip("0").rstrip(".")


def fen(yuan_per_month: float) -> int:
    return round(yuan_per_month * 100)


def monthly_fee(subscription: Subscription, entry: CatalogueEntry) -> int:
    """What a month of the subscription costs, in fen: the catalogue's fee of the day, but never more than the fee its
    confirmation stated (SPEC 3.2: the subscriber pays what they confirmed). A decrease benefits the subscriber at once;
    an increase is not charged to one who confirmed the old fee (they would have to order again at the new one). One
    made before subscriptions kept their fee (schema 13 and older) pays the catalogue's."""
    fee = fen(entry.fee)
    return fee if subscription.fee is None else min(fee, subscription.fee)


def fee_shown(subscription: Subscription, entry: CatalogueEntry) -> str:
    """What the subscription pays a month (`monthly_fee`), as the texts about it state it: its listing, reminders."""
    return yuan(monthly_fee(subscription, entry) / 100)


def price(ctx: ServiceContext, fee: int, language: str) -> str:
    """A fee (fen a month) as the texts state it (`common.fee`), or `common.free` for a fee of 0: `{price}`."""
    return ctx.text("common.fee", language, fee=yuan(fee / 100)) if fee else ctx.text("common.free", language)


def service_names(ctx: ServiceContext, entry: CatalogueEntry, language: str, fee: int | None = None) -> dict[str, str]:
    """Placeholders naming a catalogue service in texts: sp_name, sp_company, service, fee, price, phone, keyword,
    service_code. The fee is the catalogue's, or `fee` (fen a month) where a record says which one its texts state:
    the one an order's confirmation stated, what a subscription pays (`monthly_fee`: its listing, reminders). The
    price is the fee as a text states it (`common.fee`), or `common.free` for a fee of 0."""
    fee = fen(entry.fee) if fee is None else fee
    shown = yuan(fee / 100)
    return {
        "sp_name": entry.sp_name_in(language),
        "sp_company": entry.company_in(language),
        "service": entry.name_in(language),
        "fee": shown,
        "price": price(ctx, fee, language),
        "phone": entry.phone,
        "keyword": entry.keyword,
        "service_code": entry.service_code,
    }


def naming_text(
    ctx: ServiceContext, key: str, language: str, entry: CatalogueEntry | None, service_id: str,
    subscription: Subscription | None = None, **values: object,
) -> str:
    """The text `key` about one subscription (or its charge), to the service `service_id`, `entry` in the catalogue.
    A service since removed from the catalogue has no SP name, fee or service code left to show (the records keep
    only its id): it gets the `<key>_removed` text, which names it by its id and says it is withdrawn, instead of
    "提供的tencent-ringtones，元/月，服务代码"."""
    if entry is None:
        return ctx.text(f"{key}_removed", language, service=service_id, **values)
    fee = None if subscription is None else monthly_fee(subscription, entry)
    return ctx.text(key, language, **service_names(ctx, entry, language, fee), **values)


def ended(
    ctx: ServiceContext, subscription: Subscription, channel: str, now: float, detail: str = ""
) -> tuple[Subscription, SubscriptionEvent]:
    """The subscription cancelled at `now` and its "cancelled" event: what the listing, the SP content guard and
    billing read as ended (an unsubscription, or billing finding its service withdrawn)."""
    cancelled = replace(subscription, status="cancelled", cancelled_at=now, cancel_channel=channel)
    return cancelled, subscription_event(ctx, subscription.id, subscription.msisdn, "cancelled", channel, now, detail)


async def cancel(
    ctx: ServiceContext,
    subscription: Subscription,
    entry: CatalogueEntry | None,
    channel: str,
    now: float,
    language: str,
) -> Outcome:
    """Cancel one active subscription at `now` (when it was asked for): the cancelled record, its event, the
    confirmation, the SP notice, and the voiding of any charge for a month that began after `now`.

    `entry` is the subscription's catalogue service (ctx.catalogue.get(subscription.service_id));
    with None (a service since removed from the catalogue) there is no SP to notify.
    """
    outcome = Outcome().put(*ended(ctx, subscription, channel, now)).extend(await _charges_voided(ctx, subscription, channel, now))
    text = naming_text(ctx, "unsubscribe.done", language, entry, subscription.service_id, subscription)
    outcome.reply(subscription.msisdn, text, ctx.settings.operator)
    if entry is not None:
        outcome.replies.append(sp_notice(ctx, entry, subscription.msisdn, "CANCEL", channel, now))
    return outcome


async def _charges_voided(ctx: ServiceContext, subscription: Subscription, channel: str, now: float) -> Outcome:
    """Delete the subscription's charges for months whose billing moment came after `now`, the cancellation's
    time: billing ran before the cancellation committed. A charge already refunded on a dispute stays (the
    subscriber has had the money back, and the refund is the record of it); an event keeps what was voided."""
    outcome = Outcome()
    # By the index on charges (msisdn, period): only this month's and later ones, at most a few rows.
    since = period_of(month_start(ctx.local_date(now)))
    for charge in await ctx.store.find(Charge, msisdn=subscription.msisdn, period__gte=since):
        if charge.subscription_id != subscription.id or charge.refund or charge.disputed_at is not None:
            continue
        if billing_moment(ctx, month_of(charge.period)) <= now:  # cancelled after the month began: it pays
            continue
        outcome.effects.append(Delete(Charge, (charge.id,)))
        outcome.put(subscription_event(ctx, subscription.id, subscription.msisdn, "voided", channel, now,
                                       f"charge={charge.id} period={charge.period} amount={charge.amount}"))  # fmt: skip
    return outcome
