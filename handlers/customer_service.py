"""10086, the operator's customer-service short code (SPEC 3.1, 3.2).

Commands first (`0000`, `00000`, language), then answers to the prompts the
subscriber has open, most recent prompt first: a `1` answers a 0000 listing
if that came last, a two-step confirmation if that did. Serial numbers that
are not a confirm word (`2`, `1,3`) answer a listing still open even when a
confirmation came after it: they name subscriptions, and a confirmation would
take them as "no". Anything else gets the help text.
"""

from __future__ import annotations

from . import confirmation, unsubscribe
from .base import Inbound, Outcome, ServiceContext
from .keywords import fold, matches, serial_numbers
from gateway.store.records import Subscriber

HELP_WORDS = ("0", "HELP", "帮助", "?", "？")
LANGUAGES = {"EN": "en", "ENGLISH": "en", "中文": "zh", "ZH": "zh", "CN": "zh"}
# Modules whose prompts are answered on this short code; each has latest_prompt() and answer().
# With no open prompt (or equal times) the earlier one is asked first: unsubscribe can tell a
# stale listing apart, while confirmation answers any confirm word ("nothing to confirm").
DIALOGUES = (unsubscribe, confirmation)


class CustomerService:
    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        folded = fold(inbound.text)
        language = await ctx.language_of(inbound.subscriber)
        if folded == "0000":
            return await unsubscribe.query(inbound, ctx, language)
        if folded == "00000":
            return await unsubscribe.ask_all(inbound, ctx, language)
        if folded in LANGUAGES:
            chosen = LANGUAGES[folded]
            return (
                Outcome(completed=True)
                .put(Subscriber(inbound.subscriber, chosen))
                .reply(inbound.subscriber, ctx.text("common.language_set", chosen), inbound.short_code)
            )
        if folded not in HELP_WORDS:
            prompts = [(await module.latest_prompt(inbound, ctx), index, module) for index, module in enumerate(DIALOGUES)]
            prompts.sort(key=lambda p: (-(p[0] or 0.0), p[1]))
            if serial_numbers(folded) is not None and not matches(folded, ctx.settings.confirm_words):
                prompts.sort(key=lambda p: not (p[2] is unsubscribe and p[0] is not None))  # a live listing first
            for _at, _index, module in prompts:
                outcome = await module.answer(inbound, ctx, language)
                if outcome is not None:
                    return outcome
        return Outcome(completed=True).reply(inbound.subscriber, ctx.text("common.help", language), inbound.short_code)
