"""Reading replies: which of the server's reply texts a message is, and what its placeholders were.

Every template in `config/messages.<language>.toml` (e.g. `spam.ack` =
"您的举报已受理，举报编号{report_id}，…{number}已不能再向您发送短信。…")
becomes a pattern with one group per placeholder, so a reply is checked by
its parts (the report id, the number, the fee) and not by string equality:

    texts = ReplyTexts.load(Path("config"), "zh")
    fields = texts.match("spam.ack", reply)      # {"report_id": "…", "number": "13012345678"} or None
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path

from gateway.config import ServiceSettings
from gateway.numbers import NumberPlan
from gateway.templates import Templates

_FORMATTER = string.Formatter()
# Templates that are parts of other texts (a word, a duration, a listing line, a channel name), never sent alone.
PARTS = (
    "common.word", "common.hours", "common.minutes", "unsubscribe.listing_", "rating.agent", "rating.channel.",
    "confirmation.service_name", "confirmation.separator", "confirmation.choose_item",
    "confirmation.keyword_item", "billing.page", "billing.month", "billing.reminder_",
)  # fmt: skip
# Texts a target sends of its own accord: a survey (after a dialogue, or a service event), a "report handled" notice (to
# every earlier reporter of a number blocked now), billing reminders and refunds. Every other whole text is only ever
# an answer to the subscriber's own MO (a 0000 listing, a confirmation request, help, a report's ack...): the fleet
# assumes nothing else acts for its subscribers (an order an SP or the web asks for, an unsubscription by the API).
UNPROMPTED = ("rating.survey", "spam.handled", "billing.")


def pattern_of(template: str, fixed: dict[str, str] | None = None) -> re.Pattern[str]:
    """A template as a regular expression: literal text as is, each {name} a (non-greedy) named group, except
    the `fixed` ones, which must hold exactly their value."""
    out: list[str] = []
    seen: set[str] = set()
    for literal, name, _spec, _conversion in _FORMATTER.parse(template):
        out.append(re.escape(literal))
        if name is None:
            continue
        if fixed and name in fixed:
            out.append(re.escape(fixed[name]))
        elif name in seen:
            out.append(f"(?P={name})")
        else:
            seen.add(name)
            out.append(f"(?P<{name}>.*?)")
    return re.compile("".join(out), re.S)


class ReplyTexts:
    """The reply templates of one language, as patterns."""

    def __init__(self, templates: dict[str, str], fixed: dict[str, dict[str, str]] | None = None) -> None:
        """fixed: by key, the placeholders whose value is known (the configured keywords and numbers)."""
        self.templates = templates
        self.fixed = fixed or {}
        self._patterns: dict[str, re.Pattern[str]] = {}

    @classmethod
    def load(
        cls, directory: Path | str | Mapping[str, Path], language: str = "zh", settings: ServiceSettings | None = None,
        plan: NumberPlan | None = None,
    ) -> ReplyTexts:  # fmt: skip
        """The templates of `language` from messages.<language>.toml in `directory`, or from the files given by language
        (gateway.config.messages_files), validated as the gateway does. With the target's `settings`, a text naming a
        configured keyword or number ({query_keyword}, {confirm_words}, {spam_report}...) must show it as the target
        renders it: a help text telling the subscriber to send 9999 where the target takes 0000 is not its help text.
        With its number `plan` too (Config.number_plan()), a text naming {example_number} shows the target's."""
        templates = Templates.load(directory, language, settings=settings, plan=plan)
        texts = templates.texts[language]
        fixed = {key: templates.common_values_of(key, language) for key in texts} if settings is not None else None
        return cls(texts, fixed)

    def pattern(self, key: str) -> re.Pattern[str]:
        found = self._patterns.get(key)
        if found is None:
            found = self._patterns[key] = pattern_of(self.templates[key], self.fixed.get(key))
        return found

    def match(self, key: str, text: str) -> dict[str, str] | None:
        """The placeholder values if `text` is template `key` (the whole text), else None."""
        m = self.pattern(key).fullmatch(text)
        return m.groupdict() if m else None

    def which(self, text: str, keys: Iterable[str]) -> tuple[str, dict[str, str]] | None:
        """The first of `keys` whose template `text` is, with its values."""
        for key in keys:
            fields = self.match(key, text)
            if fields is not None:
                return key, fields
        return None

    def key_of(self, text: str) -> str | None:
        """Which whole reply text `text` is (a 0000 listing: "unsubscribe.listing"), or None: a text the target's
        config cannot have sent. The parts texts are made of are left out: "{channel}服务" would take anything."""
        found = self.which(text, (key for key in self.templates if not key.startswith(PARTS)))
        if found is not None:
            return found[0]
        lines = text.split("\n")
        if (len(lines) > 2 and self.match("unsubscribe.listing_head", lines[0]) is not None
                and self.match("unsubscribe.listing_foot", lines[-1]) is not None
                and all(self.match("unsubscribe.listing_item", line) is not None for line in lines[1:-1])):  # fmt: skip
            return "unsubscribe.listing"
        return None

    def render(self, key: str, **values: object) -> str:
        return self.templates[key].format(**{**self.fixed.get(key, {}), **values})
