"""What a short-code handler sees and returns. Handlers never touch sockets or PDUs.

The gateway (or USSD, or the HTTP API) turns whatever arrived into an
`Inbound`, calls the handler with a `ServiceContext`, and carries out the
`Outcome`: its effects are committed together with the MO, then its replies
are delivered as text. A handler reads state through `ctx.store.find` and
changes it only by returning effects, so running it twice on the same state
gives the same outcome (that is what makes a crash harmless).

Records from a later time: a prompt, a survey or a spam report created after
the clock's time now (`ctx.clock.now()`) does not exist yet. Only a
simulated clock set back (QA re-running a day) leaves such records; with
them, yesterday's `1` answered today's confirmation instead of the listing
just sent, reports three days apart counted as one day's, and a forwarded
text was told to answer within 1530 minutes. They count again once the clock
reaches them (billing runs likewise: handlers/billing.py).

Prompts a text answers: those first sent by the time it was received
(`answers_prompts_by`), also when its handling is a retry. A `Y` retried
after the subscriber ordered something else meanwhile confirmed that order,
one they never saw; a `2` retried after a newer `0000` cancelled the newer
listing's 2. A prompt asked again (re-stamped) keeps when it was first sent:
a retried text still answers it (confirmation.py, unsubscribe.py). Records
filed by others meanwhile (spam reports) are no prompts: they count.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from gateway.clock import Clock
from gateway.config import CatalogueEntry, ServiceSettings
from gateway.ids import MessageIds
from gateway.numbers import NumberPlan
from gateway.smpp.text import is_gsm
from gateway.store.base import Store
from gateway.store.effects import Effect, Put
from gateway.store.records import Subscriber
from gateway.templates import Templates, period


# Inbound and Reply are not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, and
# an MO makes one or more of each (~1.5% of a dialogue MO). Nobody changes one once made: a handler reads its Inbound
# (a retry hands the same one again), and an Outcome's replies are only read (gateway/outbox.py).
@dataclass(slots=True)
class Inbound:
    subscriber: str  # canonical MSISDN
    short_code: str
    text: str
    received_at: float  # epoch seconds, from the gateway clock
    channel: str = "sms"  # sms | ussd | web | api
    message_ids: tuple[str, ...] = ()  # the stored MO(s) this text came in

    @property
    def evidence(self) -> str:
        """What proves the subscriber sent this themselves (kept with confirmations)."""
        return ",".join(self.message_ids) or f"{self.channel}@{self.received_at:.3f}"


@dataclass(slots=True)
class Reply:
    to: str  # canonical MSISDN (or the SP service code for notices to an SP)
    text: str
    source: str  # the short code (or subscriber number) it comes from
    to_account: str | None = None  # deliver on this account's binds (SP notifications)
    validity: float | None = None  # seconds it waits for a bind before it expires; None: gateway.default_validity
    expires_at: float | None = None  # a prompt's: when its answer is no longer taken (wins over validity)


@dataclass(slots=True)
class Outcome:
    replies: list[Reply] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    completed: bool = False  # a dialogue ended: on the [services] operator code, the gateway may follow it with a survey

    def reply(self, to: str, text: str, source: str, until: float | None = None) -> Outcome:
        """`until`: a prompt's end, when its answer is no longer taken: it is not delivered after it (however late
        the MO asking for it is handled)."""
        self.replies.append(Reply(to, text, source, expires_at=until))
        return self

    def put(self, *records: Any) -> Outcome:
        for record in records:  # (a loop: a generator per call, for every record a handler decides)
            self.effects.append(Put(record))
        return self

    def extend(self, other: Outcome) -> Outcome:
        self.replies.extend(other.replies)
        self.effects.extend(other.effects)
        self.completed = self.completed or other.completed
        return self


class Catalogue:
    """The SP services subscribers can order (config [[catalogue]]), by id and by service code: looked up, not scanned
    (sp_of is asked for each SME acknowledgement to a short code: intake.py)."""

    def __init__(self, entries: tuple[CatalogueEntry, ...]) -> None:
        self.entries = entries
        self._by_id = {e.id: e for e in entries}
        on_code: dict[str, list[CatalogueEntry]] = {}
        for entry in entries:
            on_code.setdefault(entry.service_code, []).append(entry)
        self._by_code = {code: tuple(services) for code, services in on_code.items()}  # in config order

    def __iter__(self):
        return iter(self.entries)

    def get(self, service_id: str) -> CatalogueEntry | None:
        return self._by_id.get(service_id)

    def service_codes(self) -> set[str]:
        return set(self._by_code)

    def on_code(self, service_code: str) -> list[CatalogueEntry]:
        return list(self._by_code.get(service_code, ()))

    def sp_of(self, service_code: str) -> str | None:
        """The SP account whose services are on this code (one: config gives each code to one account); None: no
        service is."""
        services = self._by_code.get(service_code)
        return services[0].sp if services else None


@dataclass(slots=True)
class ServiceContext:
    store: Store
    clock: Clock
    templates: Templates
    settings: ServiceSettings
    catalogue: Catalogue
    ids: MessageIds
    plan: NumberPlan = field(default_factory=NumberPlan)
    options: dict[str, Any] = field(default_factory=dict)

    def new_id(self) -> str:
        return self.ids.next()

    async def language_of(self, msisdn: str) -> str:
        found = await self.store.find(Subscriber, msisdn=msisdn)
        return found[0].language if found else self.settings.language

    def text(self, key: str, language: str, **values: Any) -> str:
        return self.templates.render(key, language, **values)

    def text_citing(self, key: str, language: str, field: str, cited: str, length: int, **values: Any) -> str:
        """Template `key` with the subscriber's own words `cited` as `field`, cut to `length` characters and an
        ellipsis ("..." where the reply stays GSM 03.38 with it, else "…"): a reply naming all of a 20,000-digit
        "number" needed 300 SMS, more than a text may have, and the subscriber was sent an apology instead."""
        if len(cited) <= length:
            return self.text(key, language, **values, **{field: cited})
        text = self.text(key, language, **values, **{field: cited[:length] + "..."})
        return text if is_gsm(text) else self.text(key, language, **values, **{field: cited[:length] + "…"})

    def period(self, seconds: float, language: str) -> str:
        """A validity or a reply window as the texts name it ("24小时", "10 min")."""
        return period(lambda key, **values: self.templates.render(key, language, **values), seconds)

    def local_date(self, epoch: float) -> dt.date:
        """The operator's calendar day (trial months, reminders and billing follow it)."""
        return dt.datetime.fromtimestamp(epoch, operator_zone(self.settings.utc_offset_hours)).date()

    def local_midnight(self, day: dt.date) -> float:
        return dt.datetime(day.year, day.month, day.day, tzinfo=operator_zone(self.settings.utc_offset_hours)).timestamp()




# A channel is a name (`web`, `hotline`, `sms:10086`, `store:1`): it is written into the SP's one-line
# `key=value` notice and grouped by in the rating aggregates, so no space, `=` or control character.
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._@/-]{0,63}")
AGENT_LIMIT = 32


def checked_channel(channel: object) -> str:
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ValueError(f"channel {channel!r}: expected a name of up to 64 letters, digits and : . _ - @ / "
                         "(no space or '='), such as 'web', 'hotline' or 'sms:10086'")  # fmt: skip
    return channel


# Full-width ASCII (U+FF01-FF5E) and the ideographic space, as a Chinese input method types them, to ASCII.
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def agent_name(written: str) -> str:
    """A staff member's id (服务工号) as a survey stores it and the aggregates filter by: full width folded and white
    space around trimmed, so `Ａ１`, ` A1` and `A1` are one agent's figures, not three. Only that: NFKC would also
    make `①` `1` and `ﬃ` `ffi`, merging ids and lengthening them past the limit."""
    return written.translate(_HALF_WIDTH).strip()


def checked_agent(agent: object) -> str | None:
    if agent is None:
        return None
    name = agent_name(agent) if isinstance(agent, str) else ""
    if not (name and name.isprintable() and len(name) <= AGENT_LIMIT):
        raise ValueError(f"agent {agent!r}: expected None or a name of up to {AGENT_LIMIT} printable characters")
    return name


def folded_number(written: str) -> str:
    """A number as a subscriber or an operator's staff wrote it, full-width characters folded (`＋８６１３…` ->
    `+8613…`, as NFKC folds them) and trimmed; case kept for replies."""
    return unicodedata.normalize("NFKC", written).strip()


def checked_string(argument: str, value: object, expected: str) -> str:
    """A string argument of an operator's call (Services, the lookups: a number, an id). ValueError naming
    `argument`, not TypeError: the one error those calls raise for bad input (README); and raised here, not from deep
    inside (a list as a charge id failed in the store's SQL, one as a service id as an unhashable dict key)."""
    if not isinstance(value, str):
        raise ValueError(f"{argument} {value!r}: expected {expected}")  # noqa: TRY004
    return value


def written_number(argument: str, value: object) -> str:
    """A telephone number passed to an operator's call: a string in any written form, folded (`folded_number`:
    NumberPlan.normalise does not, run for every MO the binds submit)."""
    return folded_number(checked_string(argument, value, "a telephone number as a string, such as '13800138000'"))


LAST_EPOCH_SECOND = 253_402_300_799  # 9999-12-31 23:59:59 UTC, datetime's last


def epoch_seconds(argument: str, value: object) -> float | None:
    """An operator lookup's time bound (`since`, `until`) as the store compares it: epoch seconds given as a number,
    or an aware datetime's instant; None stays None (no bound). ValueError naming `argument` for anything else: a
    datetime or a text ("yesterday") was compared with the stored epoch seconds as text, which SQLite orders after
    every number, and the lookup silently answered nothing. A naive datetime is refused rather than guessed at (the
    machine's zone, or the operator's)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        return value.timestamp()
    if ((isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, float)) and (
        0 <= value <= LAST_EPOCH_SECOND
    ):  # (a float's NaN compares False; 10**30 overflowed SQLite's integers; milliseconds matched nothing)
        return value
    raise ValueError(f"{argument} {value!r}: expected epoch seconds (a number from 0 to {LAST_EPOCH_SECOND}, not "
                     "milliseconds) or a datetime with its tzinfo")  # fmt: skip


def answers_prompts_by(inbound: Inbound, ctx: ServiceContext) -> float:
    """A text answers the prompts first sent by this time: when it was received (its handling may be a retry, after
    the subscriber's later texts or a web order sent new ones), and none from a later time (see the module docstring)."""
    return min(inbound.received_at, ctx.clock.now())


def help_reply(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    """Customer service's help text (`common.help`, which names 10086's commands): its answer, and the listing's,
    to a text they do not understand."""
    return Outcome(completed=True).reply(inbound.subscriber, ctx.text("common.help", language), inbound.short_code)


@lru_cache(maxsize=8)
def operator_zone(utc_offset_hours: float) -> dt.timezone:
    """The operator's time zone (one object, not one per date computed)."""
    return dt.timezone(dt.timedelta(hours=utc_offset_hours))


class Handler(Protocol):
    """Handles one MO. The gateway runs MOs one at a time per subscriber; a handler whose decisions
    count across subscribers also defines `serial_keys(inbound, ctx) -> list[str]`: every key its MO
    must hold (the subscriber's included), e.g. the number a spam report is about."""

    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome: ...
