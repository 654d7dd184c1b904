"""Two-step confirmation of monthly subscriptions ("二次确认", SPEC 3.2).

An order, an order keyword texted to an SP's service code or `request_order`
from the web or an SP (API), subscribes nobody. It stores a PendingOrder, and
the subscriber gets a confirmation from the operator short code (10086) with
the SP, the service, the fee, the customer-service phone, how to answer and
how long the request stays valid. Only the subscriber's own answer makes the
subscription active. That answer (its MO ids) is kept in the subscription as
the record of the confirmation, which disputes look for (billing.py).

Each confirmation carries a reply code, `Y1`, `Y2`, … (the lowest one free
among the subscriber's waiting orders). Answers on 10086 (customer_service.py
hands them to `answer`):

- a confirm word (是/Y/YES/1): with exactly one order waiting it confirms that
  order. With several it confirms nothing and lists them with their codes;
- `Y<n>` confirms exactly the order whose confirmation carried it, and so does
  any confirm word that is no number followed by the code's number (`Y 2`,
  `是2`, `YES 2`: as phones and subscribers write it);
- a decline word (否/N/NO): every waiting order is not made. `N<n>` (`N 2`,
  `否2`) declines just one;
- an answer after the validity: the order has expired, and nothing is created
  or charged. For one validity period afterwards, a confirm word is answered
  with what became of the last order ("expired", or "already subscribed" for a
  second `Y` after the order went through);
- no answer at all: the gateway marks the order expired soon after its
  validity ends (`expire_lapsed`, run with the scheduled jobs), so the store
  never shows it waiting for ever. Nobody is told: the subscriber's silence
  declined it, and the SP never heard of an order that was not confirmed.
  Whether an answer came in time is decided by when it was received: one
  received in time and handled after the gateway marked its order expired (a
  retry, a replay at start) still confirms it. An answer is about the orders whose confirmation was first sent
  before it was received: none made meanwhile (on the web, by the subscriber's later texts), though one ordered
  again meanwhile, its confirmation sent again, is still the one it answers (`first_asked_at`);
- a confirm for an order whose confirmation stated a fee the catalogue no
  longer has (changed by a restart with another config) subscribes nobody: the
  subscriber agreed to the fee they were shown. The order ends (as below) and a
  new confirmation, same code, says the fee changed and asks again at the
  catalogue's. (An order stored before orders kept their fee is taken at the
  catalogue's.) Subscriptions already active are billed at the catalogue's fee
  of the day of each charge: a fee change applies from the next bill;
- a service that left the catalogue while its confirmation waited (a restart
  with another config): no answer can make that order, so it waits nowhere (not
  counted, listed or found by its code, no prompt on 10086), and is marked
  expired when met;
- any other text declines every waiting order (SPEC 3.2: "anything else or
  silence to decline"). With nothing waiting it is not an answer (None), and
  the help text answers it. 10086's own commands (`0000`, `00000`, the help
  and language words) never reach `answer`: the order keeps waiting.

An order is deleted once nothing answers about it any more: answered or marked
expired, its validity over for one more validity period (`delete_past_use`, run
with the gateway's retention pass, gateway/app.py). A subscriber texting a
keyword every day without answering kept a row a day for ever, each read at
every answer to 10086.

Ordering a service again while its confirmation is waiting resends the same
confirmation (same code) with a fresh validity. No second order is created.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache

from gateway.config import CatalogueEntry
from gateway.store.effects import Delete
from gateway.store.records import PendingOrder, Subscription

from .base import Inbound, Outcome, ServiceContext, answers_prompts_by
from .billing import (
    billed_since,
    charges_missed,
    repeat_trial_until,
    runs_voided_by_an_order,
    trial_until,
)
from .billing_calendar import month_start
from .keywords import fold, matches
from .sp_notice import sp_notice
from .subscriptions import fen, monthly_fee, price, service_names, subscription_event

# Orders nobody answered: "expired" ones too, marked so once their validity ended (never before it), which an answer
# received before then still finds waiting.
UNANSWERED = ("pending", "expired")


# ------------------------------------------------------------------ orders
async def order_by_keyword(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    """A keyword to an SP's service code: start the confirmation, or list what that code offers."""
    offered = ctx.catalogue.on_code(inbound.short_code)
    entry = next((e for e in offered if matches(inbound.text, [e.keyword])), None)
    if entry is None:
        items = "".join(ctx.text("confirmation.keyword_item", language, **service_names(ctx, e, language)) for e in offered)
        text = ctx.text("confirmation.unknown_keyword", language, service_code=inbound.short_code, items=items,
                        operator=ctx.settings.operator)  # fmt: skip
        return Outcome(completed=True).reply(inbound.subscriber, text, inbound.short_code)
    return await _order(ctx, inbound.subscriber, entry, inbound.channel, inbound.received_at, language)


async def request_order(ctx: ServiceContext, msisdn: str, service_id: str, channel: str, now: float) -> Outcome:
    """An order from the web or an SP (`msisdn` canonical): the same confirmation as for a keyword."""
    entry = ctx.catalogue.get(service_id)
    if entry is None:
        known = ", ".join(e.id for e in ctx.catalogue)
        raise ValueError(f"unknown service {service_id!r}: the catalogue has {known}")
    return await _order(ctx, msisdn, entry, channel, now, await ctx.language_of(msisdn))


async def _order(
    ctx: ServiceContext, msisdn: str, entry: CatalogueEntry, channel: str, now: float, language: str
) -> Outcome:
    operator = ctx.settings.operator
    if (active := await _active(ctx, msisdn, entry.id)) is not None:
        return Outcome(completed=True).reply(msisdn, _already_subscribed(ctx, language, entry, active), operator)
    # Those from a later time too (a clock set back): a code they hold is taken, and the same order asked again now
    # is that one, sent again.
    waiting, ending = await _open_orders(ctx, msisdn, now, asked_by=None)
    outcome = _expire(ending, now)
    expires_at = now + ctx.settings.confirmation_validity
    same = next((o for o in waiting if o.service_id == entry.id), None)
    if same is not None:  # asked again: the same confirmation (and code) again, valid from now, at today's fee
        order = replace(same, created_at=now, expires_at=expires_at, fee=fen(entry.fee), first_asked_at=_first_asked(same))
    else:
        used = {o.reply_code for o in waiting}
        code = next(f"Y{n}" for n in range(1, len(used) + 2) if f"Y{n}" not in used)
        order = PendingOrder(ctx.new_id(), msisdn, entry.id, channel, code, now, expires_at, "pending", fen(entry.fee), now)
    return _request(ctx, language, outcome, order, entry, "confirmation.request" if order.fee else "confirmation.request_free")


def _request(
    ctx: ServiceContext, language: str, outcome: Outcome, order: PendingOrder, entry: CatalogueEntry, key: str, **values: str
) -> Outcome:
    """Store `order` and send its confirmation (the text `key`), which states the fee the order keeps."""
    text = ctx.text(key, language, reply_code=order.reply_code, validity=_validity(ctx, language),
                    **service_names(ctx, entry, language), **values)  # fmt: skip
    return outcome.put(order).reply(order.msisdn, text, ctx.settings.operator, until=order.expires_at)


# ----------------------------------------------------------------- answers
async def latest_prompt(inbound: Inbound, ctx: ServiceContext) -> float | None:
    """When the newest confirmation still waiting was sent (None: nothing waits)."""
    waiting, _ = await _open_orders(ctx, inbound.subscriber, inbound.received_at, answers_prompts_by(inbound, ctx))
    return waiting[-1].created_at if waiting else None


async def last_prompt(inbound: Inbound, ctx: ServiceContext) -> float | None:
    """When the newest confirmation was sent that a confirm word may still be about: waiting, or
    ended within the last validity period (what `_not_waiting` answers about)."""
    found = await _recent_orders(ctx, inbound.subscriber, inbound.received_at, answers_prompts_by(inbound, ctx))
    return found[0].created_at if found else None


async def answer(inbound: Inbound, ctx: ServiceContext, language: str, since: float | None = None) -> Outcome | None:
    """An answer on 10086 to the confirmations waiting: a confirm word or Y<code> confirms; anything
    else declines (SPEC 3.2: "anything else or silence to decline"). None when nothing waits and the
    text is no confirmation word, so help can answer it. `since`: a bare confirm word confirms no order
    whose confirmation came before then (a later prompt, a listing, outranks it): it is told what became
    of the last one, or what waits."""
    folded = fold(inbound.text)
    coded = _reply_code(ctx.settings.confirm_words, ctx.settings.decline_words).fullmatch(folded)
    confirm = matches(folded, ctx.settings.confirm_words)
    decline = matches(folded, ctx.settings.decline_words)
    now = inbound.received_at
    waiting, ending = await _open_orders(ctx, inbound.subscriber, now, answers_prompts_by(inbound, ctx))
    outcome = _expire(ending, now)
    if not (coded or confirm or decline):
        return _decline(inbound, ctx, language, outcome, waiting) if waiting else None
    if coded:
        code = "Y" + coded["number"]
        chosen = [o for o in waiting if o.reply_code == code]
        if not chosen:
            return await _not_waiting(inbound, ctx, language, outcome, waiting, code)
        if coded["confirm"] is not None:
            return await _confirm(inbound, ctx, language, outcome, chosen[0])
        return _decline(inbound, ctx, language, outcome, chosen)
    if decline:
        if not waiting:
            return _nothing_pending(inbound, ctx, language, outcome)
        return _decline(inbound, ctx, language, outcome, waiting)
    answerable = waiting if since is None else [o for o in waiting if o.created_at > since]
    if len(answerable) == 1:
        return await _confirm(inbound, ctx, language, outcome, answerable[0])
    if len(answerable) > 1:
        return outcome.reply(inbound.subscriber, _choose(ctx, language, answerable), ctx.settings.operator,
                             until=_last_end(answerable))  # fmt: skip
    return await _not_waiting(inbound, ctx, language, outcome, waiting, None)


async def _confirm(inbound: Inbound, ctx: ServiceContext, language: str, outcome: Outcome, order: PendingOrder) -> Outcome:
    msisdn, now, operator = inbound.subscriber, inbound.received_at, ctx.settings.operator
    outcome.completed = True
    entry = ctx.catalogue.get(order.service_id)  # (waiting: still in the catalogue, see _open_orders)
    if order.fee not in (None, fen(entry.fee)):  # the fee changed while it waited: not the one the subscriber agreed to
        return _ask_again(ctx, language, outcome, order, entry, now)
    outcome.put(replace(order, status="confirmed"))
    if (active := await _active(ctx, msisdn, entry.id)) is not None:
        return outcome.reply(msisdn, _already_subscribed(ctx, language, entry, active), operator)
    earlier = await ctx.store.find(Subscription, msisdn=msisdn, service_id=entry.id)
    subscription = Subscription(
        id=ctx.new_id(),
        msisdn=msisdn,
        service_id=entry.id,
        status="active",
        ordered_at=now,
        channel=order.channel,
        confirmation=inbound.evidence,
        trial_until=repeat_trial_until(ctx, now, earlier) if earlier else trial_until(ctx, now),
        fee=fen(entry.fee),  # what the confirmation stated (checked above): billing charges no more than it
    )
    event = subscription_event(ctx, subscription.id, msisdn, "ordered", order.channel, now,
                               f"order={order.id} confirmed_by={inbound.evidence}")  # fmt: skip
    # The notice says what is free: a repeat order within the earlier order's free months is still free.
    if not subscription.fee:  # a free service: no trial, nothing charged from any month
        key = "confirmation.ordered_free"
    elif subscription.trial_until >= ctx.local_midnight(month_start(ctx.local_date(now), 2)):
        key = "confirmation.ordered_next_month"
    elif earlier:
        key = "confirmation.ordered_again"  # charged from next month
    else:
        key = "confirmation.ordered_this_month"
    notice = ctx.text(key, language, operator=operator, **service_names(ctx, entry, language))
    outcome.put(subscription, event).reply(msisdn, notice, operator)
    if billed_since(ctx, now, ctx.clock.now()):  # confirmed before a billing run, committed after it (a retry)
        outcome.put(*await charges_missed(ctx, subscription, ctx.clock.now()))
    outcome.effects.extend(await runs_voided_by_an_order(ctx, now, ctx.clock.now()))
    outcome.replies.append(sp_notice(ctx, entry, msisdn, "ORDER", order.channel, now))
    return outcome


def _ask_again(
    ctx: ServiceContext, language: str, outcome: Outcome, order: PendingOrder, entry: CatalogueEntry, now: float
) -> Outcome:
    """A confirmation stating a fee the catalogue no longer has subscribes nobody (SPEC 3.2: the subscriber confirms
    what they were told): it ends as one for a withdrawn service does, and a new confirmation (same reply code, a new
    validity) tells the subscriber the fee changed and asks them again at the catalogue's."""
    again = replace(order, id=ctx.new_id(), created_at=now, expires_at=now + ctx.settings.confirmation_validity,
                    fee=fen(entry.fee), first_asked_at=now)  # fmt: skip
    outcome.extend(_expire([order], now))
    key = "confirmation.fee_changed" if again.fee else "confirmation.fee_changed_free"
    return _request(ctx, language, outcome, again, entry, key, old_price=price(ctx, order.fee, language))


def _decline(inbound: Inbound, ctx: ServiceContext, language: str, outcome: Outcome, orders: list[PendingOrder]) -> Outcome:
    outcome.completed = True
    names = []
    for order in orders:
        outcome.put(replace(order, status="declined"))
        entry = ctx.catalogue.get(order.service_id)
        names.append(ctx.text("confirmation.service_name", language, **service_names(ctx, entry, language)) if entry else order.service_id)
    services = ctx.text("confirmation.separator", language).join(names)
    text = ctx.text("confirmation.declined", language, services=services)
    return outcome.reply(inbound.subscriber, text, ctx.settings.operator)


async def _not_waiting(
    inbound: Inbound, ctx: ServiceContext, language: str, outcome: Outcome, waiting: list[PendingOrder], code: str | None
) -> Outcome:
    """A confirmation for no waiting order: say what became of the latest (or the coded) one, or list what waits."""
    msisdn, now, operator = inbound.subscriber, inbound.received_at, ctx.settings.operator
    ended = [o for o in await _recent_orders(ctx, msisdn, now, answers_prompts_by(inbound, ctx)) if o.status not in UNANSWERED or o.expires_at <= now]
    last = next((o for o in ended if code is None or o.reply_code == code), None)
    if last is not None:
        entry = ctx.catalogue.get(last.service_id)  # (still in the catalogue: _recent_orders)
        if last.status in ("pending", "expired"):
            outcome.completed = True
            return outcome.reply(msisdn, ctx.text("confirmation.expired", language, **service_names(ctx, entry, language)), operator)
        if last.status == "confirmed" and (active := await _active(ctx, msisdn, entry.id)) is not None:
            outcome.completed = True
            return outcome.reply(msisdn, _already_subscribed(ctx, language, entry, active), operator)
    if waiting:
        unknown = ctx.text("confirmation.unknown_code", language, reply_code=code) if code is not None else ""
        return outcome.reply(msisdn, unknown + _choose(ctx, language, waiting), operator, until=_last_end(waiting))
    return _nothing_pending(inbound, ctx, language, outcome)


def _last_end(waiting: list[PendingOrder]) -> float:
    """Until when a list of the waiting orders can be answered: while one of them waits."""
    return max(o.expires_at for o in waiting)


def _nothing_pending(inbound: Inbound, ctx: ServiceContext, language: str, outcome: Outcome) -> Outcome:
    outcome.completed = True
    operator = ctx.settings.operator
    return outcome.reply(inbound.subscriber, ctx.text("confirmation.nothing_pending", language, operator=operator), operator)


def _choose(ctx: ServiceContext, language: str, waiting: list[PendingOrder]) -> str:
    """The waiting orders (all still in the catalogue: `_open_orders`), each with its reply code and the fee its
    confirmation stated, which its code confirms (the catalogue's may have changed since: `_ask_again`)."""
    items = "".join(ctx.text("confirmation.choose_item", language, reply_code=o.reply_code,
                             **service_names(ctx, ctx.catalogue.get(o.service_id), language, o.fee)) for o in waiting)  # fmt: skip
    return ctx.text("confirmation.choose", language, count=len(waiting), items=items, example=waiting[0].reply_code)


# ----------------------------------------------------------------- helpers
@lru_cache(maxsize=8)
def _reply_code(confirm_words: tuple[str, ...], decline_words: tuple[str, ...]) -> re.Pattern[str]:
    """A folded answer naming one order by its reply code: `Y2` confirms the order with code Y2, `N2` declines it;
    so do the other confirm and decline words that are no number (`是2`, `否 2`), spaces before the number or not.
    A word that is a number (`1`) is none: `11` is no code."""

    def words(configured: tuple[str, ...], letter: str) -> str:
        named = {letter} | {w for w in map(fold, configured) if w and not w.isdigit()}
        return "|".join(re.escape(w) for w in sorted(named, key=len, reverse=True))

    return re.compile(rf"(?:(?P<confirm>{words(confirm_words, 'Y')})|{words(decline_words, 'N')})\s*0*(?P<number>\d{{1,4}})")


async def _active(ctx: ServiceContext, msisdn: str, service_id: str) -> Subscription | None:
    found = await ctx.store.find(Subscription, limit=1, msisdn=msisdn, service_id=service_id, status="active")
    return found[0] if found else None


def _already_subscribed(ctx: ServiceContext, language: str, entry: CatalogueEntry, subscription: Subscription) -> str:
    """The answer to an order of a service the subscriber holds: it states the fee the subscription pays
    (monthly_fee: its confirmed one, when the catalogue's went up since), as its listing does."""
    names = service_names(ctx, entry, language, monthly_fee(subscription, entry))
    return ctx.text("confirmation.already_subscribed", language, operator=ctx.settings.operator, **names)


async def _recent_orders(ctx: ServiceContext, msisdn: str, now: float, asked_by: float) -> list[PendingOrder]:
    """Orders still waiting, or ended (or lapsed) within the last validity period, newest first (only those first
    asked by `asked_by`: handlers/base.py; none for a service withdrawn since, which is nobody's prompt any more:
    `_open_orders`)."""
    found = await ctx.store.find(PendingOrder, order_by="-created_at", msisdn=msisdn,
                                 expires_at__gt=now - ctx.settings.confirmation_validity)  # fmt: skip
    return [o for o in found if _first_asked(o) <= asked_by and _offered(ctx, o)]


async def _open_orders(
    ctx: ServiceContext, msisdn: str, now: float, asked_by: float | None
) -> tuple[list[PendingOrder], list[PendingOrder]]:
    """(waiting, ending): unanswered orders still within their validity at `now` (oldest first), and those to mark
    expired: past it and still marked pending, or for a service that left the catalogue while they waited (no answer
    can make them, so none counts as waiting: not in a bare confirm word's "exactly one", a list, a reply code's
    lookup or 10086's order of prompts); only those first asked by `asked_by` (handlers/base.py), any if None."""
    found = await ctx.store.find(PendingOrder, order_by="created_at", msisdn=msisdn, status__in=UNANSWERED)
    waiting: list[PendingOrder] = []
    ending: list[PendingOrder] = []
    for order in found:
        if asked_by is not None and _first_asked(order) > asked_by:
            continue
        if order.expires_at <= now:
            if order.status == "pending":
                ending.append(order)
        else:
            (waiting if _offered(ctx, order) else ending).append(order)
    return waiting, ending


def _first_asked(order: PendingOrder) -> float:
    """When the order's confirmation was first sent: asked again, it is still the one a text received before answers."""
    return order.created_at if order.first_asked_at is None else order.first_asked_at


def _offered(ctx: ServiceContext, order: PendingOrder) -> bool:
    """The order's service is still in the catalogue."""
    return ctx.catalogue.get(order.service_id) is not None


# ------------------------------------------------------------------ expiry
async def lapsed_orders(ctx: ServiceContext, now: float, limit: int) -> list[PendingOrder]:
    """Up to `limit` orders still marked pending whose validity ended by `now`, the longest lapsed first (read by
    the partial index pending_orders_lapsing: answered orders are never scanned)."""
    return await ctx.store.find(PendingOrder, order_by="expires_at", limit=limit, status="pending", expires_at__lte=now)


async def expire_lapsed(ctx: ServiceContext, msisdns: Iterable[str], now: float) -> Outcome:
    """Mark expired these subscribers' orders whose validity ended by `now`, as read under their serial keys (an
    answer handled meanwhile stands). No text to anyone: silence declines (SPEC 3.2)."""
    outcome = Outcome()
    for msisdn in msisdns:
        outcome.extend(_expire((await _open_orders(ctx, msisdn, now, ctx.clock.now()))[1], now))
    return outcome


def _expire(ending: list[PendingOrder], now: float) -> Outcome:
    """Mark these orders expired, each ended by `now` at the latest (one for a withdrawn service ends at once)."""
    return Outcome().put(*(replace(o, status="expired", expires_at=min(o.expires_at, now)) for o in ending))


# --------------------------------------------------------------- retention
async def orders_past_use(ctx: ServiceContext, now: float, limit: int) -> list[PendingOrder]:
    """Up to `limit` orders nothing reads any more, the earliest ended first: answered or marked expired, their
    validity over for longer than a validity period by `now` (`_recent_orders` answers about none of them; read by the
    partial index pending_orders_ended). One still marked pending is `expire_lapsed`'s first."""
    return await ctx.store.find(PendingOrder, order_by="expires_at", limit=limit, status__ne="pending",
                                expires_at__lte=now - ctx.settings.confirmation_validity)  # fmt: skip


async def delete_past_use(ctx: ServiceContext, msisdns: Iterable[str], now: float) -> Outcome:
    """Delete these subscribers' orders past use (`orders_past_use`), as read under their serial keys. What a dispute
    reads stays: the subscription an order made keeps its confirming MO's id (billing.dispute)."""
    outcome = Outcome()
    ended_by = now - ctx.settings.confirmation_validity
    for msisdn in msisdns:
        ended = await ctx.store.find(PendingOrder, msisdn=msisdn, status__ne="pending", expires_at__lte=ended_by)
        outcome.effects.extend(Delete(PendingOrder, (o.id,), o) for o in ended)
    return outcome


def _validity(ctx: ServiceContext, language: str) -> str:
    return ctx.period(ctx.settings.confirmation_validity, language)
