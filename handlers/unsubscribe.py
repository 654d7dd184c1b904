"""10086 `0000`: list active subscriptions, unsubscribe by serial number (SPEC 3.1).

- `0000` replies with one text listing the active subscriptions, numbered
  1..n in order of ordering, and remembers serial -> subscription id as a
  Dialogue "unsubscribe.listing" for settings.listing_window. A newer `0000`
  replaces it. The listing stays answerable for its whole window (a later
  "3" after "1" still works; a serial already done is "already unsubscribed",
  unless the subscriber has ordered that service again since: a serial names
  the service the listing showed, so the new subscription is cancelled).
- A serial list (`2`, `1,3`, `1，3`, `1 3`) while the listing is live cancels
  exactly those, one confirmation each; out-of-range serials are named in one
  more reply. After the window, the first serial list is told the listing
  expired; later ones get the help (the listing is kept, marked told, so that
  10086 still knows it was the last prompt and does not hand a `1` to an
  order confirmed before it).
- `00000` asks a yes/no question (Dialogue "unsubscribe.all", same window)
  naming how many subscriptions it would cancel: exactly those (one ordered
  meanwhile is not included). Yes cancels those of them still active, one
  confirmation each, like serial replies; with none of them left it says they
  were unsubscribed already, and either way it tells how many subscriptions
  the subscriber keeps that the question did not count. No changes nothing.
  Either ends the question.
- When both prompts are open, the newer one reads the text first (a `1`
  after `00000` is "yes", a `1` after `0000` is serial 1).
- A text answers the listing or question it was received after (handlers/base.py): handled later (a retry), after a
  newer one replaced it, it is told it expired (as after the window), not read against the newer one. One sent
  again naming the same subscriptions while open keeps when it was first sent (`since`), and still answers it.
- An expired listing or question is deleted `kept_expired` after it expired
  (with every other dialogue: `dialogues_past_use`): until then it is 10086's
  last prompt for any order made before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from gateway.store.effects import Delete
from gateway.store.records import Dialogue, Subscription

from .base import Inbound, Outcome, ServiceContext, answers_prompts_by, help_reply
from .keywords import matches, serial_numbers
from .subscriptions import active_subscriptions, cancel, naming_text

LISTING = "unsubscribe.listing"
ALL = "unsubscribe.all"
NAMED_SERIALS = 10  # serials out of range named in the reply


# ----------------------------------------------------------------- commands
async def query(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    """`0000`: the numbered listing (remembered for the reply window), or "no subscriptions"."""
    now, msisdn = inbound.received_at, inbound.subscriber
    active = await active_subscriptions(ctx, msisdn)
    if not active:
        return _none(inbound, ctx, language, LISTING)
    lines = [ctx.text("unsubscribe.listing_head", language, count=len(active))]
    for serial, subscription in enumerate(active, 1):
        entry = ctx.catalogue.get(subscription.service_id)
        lines.append(naming_text(ctx, "unsubscribe.listing_item", language, entry, subscription.service_id, subscription,
                                 serial=serial))
    lines.append(ctx.text("unsubscribe.listing_foot", language, window=_duration(ctx, language)))
    dialogue = await _prompt(ctx, msisdn, LISTING, [s.id for s in active], now)
    return Outcome().put(dialogue).reply(msisdn, "\n".join(lines), inbound.short_code, until=dialogue.expires_at)


async def ask_all(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    """`00000`: ask to confirm cancelling all (naming how many), or "no subscriptions"."""
    now, msisdn = inbound.received_at, inbound.subscriber
    active = await active_subscriptions(ctx, msisdn)
    if not active:
        return _none(inbound, ctx, language, ALL)
    dialogue = await _prompt(ctx, msisdn, ALL, [s.id for s in active], now)
    text = ctx.text("unsubscribe.all_ask", language, count=len(active), window=_duration(ctx, language))
    return Outcome().put(dialogue).reply(msisdn, text, inbound.short_code, until=dialogue.expires_at)


async def _prompt(ctx: ServiceContext, msisdn: str, kind: str, ids: list[str], now: float) -> Dialogue:
    """The listing or question naming `ids`, sent at `now`. The same one still open, sent again, keeps when it was
    first sent (`since`): a text received before now (a retry) still answers it, but no other (handlers/base.py)."""
    data: dict = {"ids": ids}
    same = [d for d in await ctx.store.find(Dialogue, msisdn=msisdn, kind=kind) if d.data["ids"] == ids and _live(d, now)]
    if same:
        data["since"] = _first_sent(same[0])
    return Dialogue(msisdn, kind, data, now, now + ctx.settings.listing_window)


async def unsubscribe_ids(ctx: ServiceContext, msisdn: str, subscription_ids: list[str], channel: str, now: float) -> Outcome:
    """The API/USSD path: cancel those of the subscriber's subscriptions still active, each confirmed (the Outcome
    names them); one already cancelled is done (a call retried does not fail). ValueError, and nothing cancelled,
    for ids that are none of the subscriber's subscriptions (another's, mistyped): an agent told nothing said "done"
    while the billing went on (SPEC 3.1: unsubscribing takes effect at once)."""
    wanted = list(dict.fromkeys(subscription_ids))
    found = {s.id: s for s in await ctx.store.find(Subscription, msisdn=msisdn, id__in=wanted)}
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise ValueError(f"{msisdn} has no subscription {', '.join(map(repr, unknown))}; nothing cancelled")
    language = await ctx.language_of(msisdn)
    outcome = Outcome()
    for subscription in (found[i] for i in wanted if found[i].status == "active"):
        outcome.extend(await cancel(ctx, subscription, ctx.catalogue.get(subscription.service_id), channel, now, language))
    return outcome


# ------------------------------------------------------------------ answers
async def latest_prompt(inbound: Inbound, ctx: ServiceContext) -> float | None:
    """When the newest unexpired listing or unsubscribe-all question was sent, if there is one."""
    live = [d for d in await _dialogues(ctx, inbound) if _live(d, inbound.received_at)]
    return max((d.created_at for d in live), default=None)


async def open_question_at(inbound: Inbound, ctx: ServiceContext) -> float | None:
    """When the unsubscribe-all question waiting for its yes or no was sent (None: none waits; a listing
    answered once stays open for more serials, but has done what it was for)."""
    live = [d for d in await _dialogues(ctx, inbound) if d.kind == ALL and _live(d, inbound.received_at)]
    return max((d.created_at for d in live), default=None)


async def last_prompt(inbound: Inbound, ctx: ServiceContext) -> float | None:
    """When the newest listing or unsubscribe-all question was sent, expired or not."""
    return max((d.created_at for d in await _dialogues(ctx, inbound)), default=None)


async def answer(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome | None:
    """The text as an answer to an open listing / unsubscribe-all question; None when it is not one. One sent in place
    of the prompt the text was received after (a retry) is not the one it answers: that one is over, as if expired."""
    now = inbound.received_at
    dialogues, replaced = await _in_force(ctx, inbound)
    for dialogue in sorted((d for d in dialogues if _live(d, now)), key=lambda d: -d.created_at):
        answered = await (_serials if dialogue.kind == LISTING else _yes_no)(inbound, ctx, language, dialogue)
        if answered is not None:
            return answered
    for dialogue in sorted(replaced, key=lambda d: -d.created_at):  # over for this text: told so (the newer one is not)
        if (key := _stale_key(inbound, ctx, dialogue)) is not None:
            return Outcome(completed=True).reply(inbound.subscriber, ctx.text(key, language), inbound.short_code)
    for dialogue in sorted(dialogues, key=lambda d: -d.created_at):  # expired: say so once, for a text that would have answered it
        if not _live(dialogue, now):
            stale = _stale(inbound, ctx, language, dialogue)
            if stale is not None:
                return stale
    return None


async def _serials(inbound: Inbound, ctx: ServiceContext, language: str, listing: Dialogue) -> Outcome | None:
    serials = serial_numbers(inbound.text)
    if serials is None:
        return None
    msisdn, ids = inbound.subscriber, listing.data["ids"]
    valid = [n for n in serials if 1 <= n <= len(ids)]
    invalid = [n for n in serials if not 1 <= n <= len(ids)]
    records = {s.id: s for s in await ctx.store.find(Subscription, msisdn=msisdn, id__in=[ids[n - 1] for n in valid])}
    # A serial means the service the listing showed: cancelled since and ordered again, it is the new, active
    # subscription the subscriber asks to end (not "already unsubscribed" while it is charged).
    active = {s.service_id: s for s in await active_subscriptions(ctx, msisdn)}
    outcome = Outcome(completed=bool(valid))
    for serial in valid:
        subscription = records.get(ids[serial - 1])
        if subscription is None:  # gone from the store altogether: nothing left to cancel
            continue
        entry = ctx.catalogue.get(subscription.service_id)
        if subscription.status != "active" and subscription.service_id in active:
            subscription = active[subscription.service_id]
        if subscription.status == "active":
            outcome.extend(await cancel(ctx, subscription, entry, inbound.channel, inbound.received_at, language))
        else:
            text = naming_text(ctx, "unsubscribe.already", language, entry, subscription.service_id, subscription,
                               serial=serial)
            outcome.reply(msisdn, text, inbound.short_code)
    if invalid:
        # At most the first few named (thousands made a reply longer than a text may be, and the valid ones were lost).
        named = ",".join(map(str, invalid[:NAMED_SERIALS]))
        text = ctx.text_citing("unsubscribe.out_of_range", language, "serials", ",".join(map(str, invalid)), len(named), count=len(ids))
        outcome.reply(msisdn, text, inbound.short_code)
    return outcome


async def _yes_no(inbound: Inbound, ctx: ServiceContext, language: str, question: Dialogue) -> Outcome | None:
    msisdn = inbound.subscriber
    if matches(inbound.text, ctx.settings.confirm_words):
        ids = question.data["ids"]
        active = await active_subscriptions(ctx, msisdn)
        found = {s.id: s for s in active if s.id in ids}
        # Yes cancels what the question counted; what was cancelled or ordered meanwhile (on the web, by an SP,
        # a confirmation) changes what is true to say: never "no subscriptions" while one stays active.
        others = len(active) - len(found)
        outcome = Outcome(completed=True)
        outcome.effects.append(Delete(Dialogue, (msisdn, ALL)))
        for subscription_id in ids:
            if subscription_id in found:
                subscription = found[subscription_id]
                entry = ctx.catalogue.get(subscription.service_id)
                outcome.extend(await cancel(ctx, subscription, entry, inbound.channel, inbound.received_at, language))
        if not found:
            outcome.reply(msisdn, ctx.text("unsubscribe.all_already", language, count=len(ids)), inbound.short_code)
        if others:
            outcome.reply(msisdn, ctx.text("unsubscribe.all_others_kept", language, count=others), inbound.short_code)
        return outcome
    if matches(inbound.text, ctx.settings.decline_words):
        outcome = Outcome(completed=True).reply(msisdn, ctx.text("unsubscribe.all_declined", language), inbound.short_code)
        outcome.effects.append(Delete(Dialogue, (msisdn, ALL)))
        return outcome
    return None


def _stale(inbound: Inbound, ctx: ServiceContext, language: str, dialogue: Dialogue) -> Outcome | None:
    key = _stale_key(inbound, ctx, dialogue)
    if key is None:
        return None
    if dialogue.data.get("told"):
        return help_reply(inbound, ctx, language)
    outcome = Outcome(completed=True).reply(inbound.subscriber, ctx.text(key, language), inbound.short_code)
    return outcome.put(replace(dialogue, data={**dialogue.data, "told": True}))


def _stale_key(inbound: Inbound, ctx: ServiceContext, dialogue: Dialogue) -> str | None:
    """What an answer to this listing or question, over, is told (None: the text is no answer to it)."""
    if dialogue.kind == LISTING:
        return "unsubscribe.expired" if serial_numbers(inbound.text) is not None else None
    return "unsubscribe.all_expired" if matches(inbound.text, (*ctx.settings.confirm_words, *ctx.settings.decline_words)) else None


# --------------------------------------------------------------- retention
def kept_expired(ctx: ServiceContext) -> float:
    """How long a dialogue is kept once expired: two confirmation validities. An expired listing or question is still
    10086's last prompt (`last_prompt`) while an order made before it is answered about (handlers/confirmation
    `last_prompt`: up to a validity after its own validity ended): deleted sooner, a `1` after an expired listing was
    taken as about an order confirmed before it. The other dialogues (a spam report's question for the number, a
    sampled survey's mark) are read only while they are open."""
    return 2 * ctx.settings.confirmation_validity


async def dialogues_past_use(ctx: ServiceContext, now: float, limit: int) -> list[Dialogue]:
    """Up to `limit` dialogues of any kind expired `kept_expired` ago by `now`, the earliest expired first (read by
    the index dialogues_ending)."""
    return await ctx.store.find(Dialogue, order_by="expires_at", limit=limit, expires_at__lte=now - kept_expired(ctx))


async def delete_dialogues_past_use(ctx: ServiceContext, msisdns: Iterable[str], now: float) -> Outcome:
    """Delete these subscribers' dialogues past use (`dialogues_past_use`), as read under their serial keys."""
    outcome = Outcome()
    ended_by = now - kept_expired(ctx)
    for msisdn in msisdns:
        ended = await ctx.store.find(Dialogue, msisdn=msisdn, expires_at__lte=ended_by)
        outcome.effects.extend(Delete(Dialogue, (msisdn, d.kind)) for d in ended)
    return outcome


# ------------------------------------------------------------------ helpers
def _none(inbound: Inbound, ctx: ServiceContext, language: str, kind: str) -> Outcome:
    """"No subscriptions"; an older prompt of this kind no longer applies."""
    outcome = Outcome(completed=True).reply(inbound.subscriber, ctx.text("unsubscribe.none", language), inbound.short_code)
    outcome.effects.append(Delete(Dialogue, (inbound.subscriber, kind)))
    return outcome


async def _dialogues(ctx: ServiceContext, inbound: Inbound) -> list[Dialogue]:
    """The subscriber's listing and unsubscribe-all question the text may answer (`_in_force`)."""
    return (await _in_force(ctx, inbound))[0]


async def _in_force(ctx: ServiceContext, inbound: Inbound) -> tuple[list[Dialogue], list[Dialogue]]:
    """(in force, replaced): the subscriber's listing and unsubscribe-all question first sent by the time the text was
    received, and those sent after it in place of the ones it may answer (a retry: handlers/base.py); none from a
    later time."""
    found = await ctx.store.find(Dialogue, msisdn=inbound.subscriber, kind__in=[LISTING, ALL], created_at__lte=ctx.clock.now())
    by = answers_prompts_by(inbound, ctx)
    return [d for d in found if _first_sent(d) <= by], [d for d in found if _first_sent(d) > by]


def _first_sent(dialogue: Dialogue) -> float:
    """When the listing or question was first sent: sent again the same (`_prompt`), it is still the one a text
    received before answers."""
    return dialogue.data.get("since", dialogue.created_at)


def _live(dialogue: Dialogue, now: float) -> bool:
    return now < dialogue.expires_at


def _duration(ctx: ServiceContext, language: str) -> str:
    """The reply window as subscribers read it: whole hours, else minutes."""
    return ctx.period(ctx.settings.listing_window, language)
