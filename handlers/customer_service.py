"""10086, the operator's customer-service short code (SPEC 3.1, 3.2).

Commands first (query_keyword `0000`, unsubscribe_all_keyword `00000`, the
language words: all configurable in [services]), then answers to the prompts the
subscriber got, the prompt sent last first, open or not: a `1` answers a 0000
listing if that came last, a two-step confirmation if that did, even when
the confirmation has been answered since (a `1` sent again after confirming
an order is told the order went through, not taken as serial 1 of a listing
sent before the order), and a listing if that came last even when it has
expired (told so once; a `1` after it is not about an order confirmed
before it). Serial numbers that
are not a confirm word (`2`, `1,3`) answer a listing still open even when a
confirmation came after it: they name subscriptions, and a confirmation would
take them as "no". Anything else gets the help text.
"""

from __future__ import annotations

from . import confirmation, unsubscribe
from .base import Inbound, Outcome, ServiceContext, help_reply
from .keywords import fold, folded, matches, serial_numbers
from gateway.store.records import Subscriber
# Modules whose prompts are answered on this short code; each has last_prompt() (open or not, while
# the module still answers about it) and answer(); unsubscribe also latest_prompt() (an open listing).
# At equal times the earlier one is asked first: unsubscribe can tell a
# stale listing apart, while confirmation answers any confirm word ("nothing to confirm").
DIALOGUES = (unsubscribe, confirmation)


class CustomerService:
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
            prompts = [(await module.last_prompt(inbound, ctx), index, module) for index, module in enumerate(DIALOGUES)]
            prompts.sort(key=lambda p: (-(p[0] or 0.0), p[1]))
            if (serial_numbers(text) is not None and not matches(text, settings.confirm_words)
                    and await unsubscribe.latest_prompt(inbound, ctx) is not None):  # fmt: skip
                prompts.sort(key=lambda p: p[2] is not unsubscribe)  # a live listing first
            for _at, _index, module in prompts:
                outcome = await module.answer(inbound, ctx, language)
                if outcome is not None:
                    return outcome
        return help_reply(inbound, ctx, language)
