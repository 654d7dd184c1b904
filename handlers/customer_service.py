"""10086, the operator's customer-service short code (SPEC 3.1, 3.2).

Commands first (query_keyword `0000`, unsubscribe_all_keyword `00000`, the
language words: all configurable in [services]), then answers to the prompts the
subscriber has open, most recent prompt first: a `1` answers a 0000 listing
if that came last, a two-step confirmation if that did, and also a
confirmation answered since, within its validity, that came after an open
listing (a `1` sent again after confirming an order is told the order went
through, not taken as serial 1 of a listing received before the order, nor
as the yes of a confirmation waiting from before that listing); but not an
open `00000` question, which only a confirmation still waiting outranks (its
`是`, as the question asks, is the yes it waits for; a `1` though, with a
listing received after the question, is read as above). An
expired listing never outranks an open prompt. With none open, the prompt
sent last, expired or answered, reads the text first (a `1` after an expired
listing is about the listing, not an order confirmed before it). Serial numbers that
are not a confirm word (`2`, `1,3`) answer a listing still open even when a
confirmation came after it, and a listing expired since when it came after
the confirmation waiting (told so once): they name subscriptions, and a
confirmation would take them as "no". Any other text declines the
confirmations waiting (confirmation.py); with none waiting and no prompt that
it answers, it gets the help text.
"""

from __future__ import annotations

from functools import partial

from . import billing, confirmation, unsubscribe
from .base import Inbound, Outcome, ServiceContext, help_reply
from .keywords import fold, folded, matches, serial_numbers
from gateway.store.records import Subscriber
# The two modules whose prompts are answered on this short code each have latest_prompt() (open
# prompts), last_prompt() (open or not, while the module still answers about it) and answer().
# At equal times unsubscribe is asked first: it can tell a stale listing apart, while
# confirmation answers any confirm word ("nothing to confirm").


class CustomerService:
    def serial_keys(self, inbound: Inbound, ctx: ServiceContext) -> list[str]:
        """The subscriber's key; and billing's for a text sent before a billing moment and handled after it (a
        retry): an unsubscription then waits for a billing run in progress to commit, and voids the charge it
        made (handlers/subscriptions.py) instead of reading the store from before it."""
        if billing.billed_since(ctx, inbound.received_at, ctx.clock.now()):
            return [inbound.subscriber, billing.SERIAL_KEY]
        return [inbound.subscriber]

    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        text = fold(inbound.text)
        settings = ctx.settings
        language = await ctx.language_of(inbound.subscriber)
        if text in folded((settings.query_keyword,)):
            return await unsubscribe.query(inbound, ctx, language)
        if text in folded((settings.unsubscribe_all_keyword,)):
            return await unsubscribe.ask_all(inbound, ctx, language)
        chosen = "en" if text in folded(settings.english_words) else "zh" if text in folded(settings.chinese_words) else None
        if chosen is not None:
            return (
                Outcome(completed=True)
                .put(Subscriber(inbound.subscriber, chosen))
                .reply(inbound.subscriber, ctx.text("common.language_set", chosen), inbound.short_code)
            )
        if text not in folded(settings.help_words):
            for answer in await _in_order(inbound, ctx, text):
                outcome = await answer(inbound, ctx, language)
                if outcome is not None:
                    return outcome
        return help_reply(inbound, ctx, language)


async def question_waiting(inbound: Inbound, ctx: ServiceContext) -> bool:
    """A question of 10086 still waits for the subscriber's answer: a confirmation, or the unsubscribe-all
    question (a survey then would ask them for "1" in the middle of it)."""
    return await confirmation.latest_prompt(inbound, ctx) is not None or await unsubscribe.open_question_at(inbound, ctx) is not None


async def _in_order(inbound: Inbound, ctx: ServiceContext, text: str) -> list:
    """The modules' answer() to try, the one whose prompt the subscriber received last first (see the module
    docstring)."""
    listing = await unsubscribe.latest_prompt(inbound, ctx)
    numbers = serial_numbers(text) is not None  # `2`, `1,3`; and `1`, a serial or a yes
    serials = numbers and not matches(text, ctx.settings.confirm_words)
    if serials and listing is not None:  # serials that are no confirm word name subscriptions
        return [unsubscribe.answer, confirmation.answer]
    order = await confirmation.latest_prompt(inbound, ctx)
    if listing is None and order is None:  # none open: the prompt sent last, expired or answered
        listing, order = await unsubscribe.last_prompt(inbound, ctx), await confirmation.last_prompt(inbound, ctx)
    elif listing is not None and _listing_read(await unsubscribe.open_question_at(inbound, ctx), listing, numbers):
        waiting, order = order, await confirmation.last_prompt(inbound, ctx)  # answered since, still after the listing
        if numbers and (order or 0.0) > listing >= (waiting or 0.0):  # a `1`: about that order, not one waiting from
            return [partial(confirmation.answer, since=listing), unsubscribe.answer]  # before the listing
    elif serials:  # a listing received after the order waiting, expired since, reads them (says so, once), not "no"
        listing = await unsubscribe.last_prompt(inbound, ctx)
    if (order or 0.0) > (listing or 0.0):
        return [confirmation.answer, unsubscribe.answer]
    return [unsubscribe.answer, confirmation.answer]


def _listing_read(question: float | None, latest: float, numbers: bool) -> bool:
    """The open listing, not the 00000 question, is what the text would answer on unsubscribe's side: no question
    is open, or the text is a `1` and the listing came after the question."""
    return question is None or (numbers and question < latest)
