"""The short-code dialogues (SPEC 3.1-3.4), driven by a simulated subscriber and checked step by step.

Each dialogue is a coroutine taking a `Handset` and a `Plan` (the short
codes, reply texts and SP catalogue of the server under test) and returning
a `DialogueResult`: ok or not, its outcome, the MO -> reply latency of every
step, the MOs it sent, and on failure the reason and the transcript. Replies
are checked by their parts (`simulator.texts`): which reply text it is and
what its placeholders hold (the listing's serials and services, the
confirmation's reply code and fee, the report id and number, the survey's
service), never by string equality.

- `query_unsubscribe`: `0000` -> listing (or "no subscriptions") -> a serial -> unsubscribe confirmation
- `order_confirm`: keyword (`TT`) to the SP's service code -> confirmation from 10086 -> `Y` -> success notice
- `spam_report`: `<number>*<text>` to 10086999 -> ack with a report id
- `rating`: `帮助` to 10086 -> help, then (with survey sampling on) a survey from 10086700 -> `1` -> thanks

The handset's `subscriptions` is what the subscriber believes it holds: the
listing is checked against it, and order / unsubscribe keep it up to date.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Config, load_config, messages_files
from gateway.smpp.constants import CommandStatus
from gateway.templates import period

from .esme import EsmeError, ShortMessage
from .handset import THROTTLED, Handset, NoReply, Resend
from .texts import ReplyTexts

__all__ = [
    "FIRST_ORDERED",
    "KINDS",
    "ORDERED",
    "DialogueFailed",
    "DialogueResult",
    "Plan",
    "Run",
    "Service",
    "order_confirm",
    "parse_listing",
    "query_unsubscribe",
    "rating",
    "run_dialogue",
    "spam_report",
]

_REPORT_ID = re.compile(r"\S+")  # a spam report's id: one word, in whatever form the SMSC gives it
_PLACEHOLDER = re.compile(r"\{\w*\}")  # a template's placeholder ({report_id}) sent as it is, unfilled
# The success notice: a first order's (free this month / until the end of next month), or a repeat order's (no trial,
# or what is left of an earlier order's free months: then the next-month wording).
FIRST_ORDERED = ("confirmation.ordered_this_month", "confirmation.ordered_next_month")
ORDERED = (*FIRST_ORDERED, "confirmation.ordered_again")
FREE_ORDERED = ("confirmation.ordered_free",)  # a free service's (a fee of 0): no trial


@dataclass(frozen=True, slots=True)
class Service:
    """A catalogue service as its texts name it (in the plan's language)."""

    id: str
    keyword: str
    service_code: str
    sp_name: str
    sp_company: str
    name: str
    fee: str  # as texts show it: "30", "0.5"
    phone: str
    price: str  # what it costs a month as texts show it (common.fee, common.free): "信息费30元/月", "免费"

    @property
    def free(self) -> bool:
        """A fee of 0: offered and ordered as free (confirmation.request_free, ordered_free)."""
        return self.fee == "0"

    @property
    def request(self) -> str:
        """The key of its confirmation request."""
        return "confirmation.request_free" if self.free else "confirmation.request"

    def ordered(self, first: bool) -> tuple[str, ...]:
        """The keys of the success notices its order may bring: `first`, one the subscriber never held (a trial)."""
        return FREE_ORDERED if self.free else FIRST_ORDERED if first else ORDERED

    def listed(self) -> tuple[str, str, str, str]:
        """What a 0000 listing line shows of it (as `listed_item` reads a line)."""
        return self.name, self.price, self.service_code, self.sp_name

    def fields(self, operator: str) -> dict[str, str]:
        """What each placeholder naming this service must hold."""
        return {
            "sp_name": self.sp_name, "sp_company": self.sp_company, "service": self.name, "fee": self.fee,
            "price": self.price, "phone": self.phone, "service_code": self.service_code, "keyword": self.keyword,
            "operator": operator,
        }  # fmt: skip


def listed_item(line: dict[str, str]) -> tuple[str, str, str, str]:
    """What a 0000 listing line (unsubscribe.listing_item's fields) shows, as Service.listed."""
    return line["service"], line["price"], line["service_code"], line["sp_name"]


@dataclass(frozen=True)
class Plan:
    """What the server under test is expected to do: its short codes, reply texts and SP catalogue."""

    texts: ReplyTexts
    services: dict[str, Service]  # by service id
    operator: str = "10086"
    spam_report: str = "10086999"
    rating: str = "10086700"
    country_code: str = "86"
    confirm_word: str = "Y"  # what order_confirm confirms with, as a subscriber would (a word the target takes)
    help_word: str = "帮助"
    help_words: tuple[str, ...] = ("0", "HELP", "帮助", "?", "？")  # every word the target takes for help
    query_keyword: str = "0000"
    confirmation_validity: str = "24小时"  # as the confirmation text shows it
    survey_validity: str = "24小时"  # as the survey text shows it
    survey_seconds: float = 86400.0  # the target config's survey_validity
    listing_window: str = "2小时"  # the 0000 listing's reply window, as its foot shows it
    spam_follow_up_window: str = "30分钟"  # how long a forwarded spam text waits for its sender's number, as worded
    survey_service: str = "10086短信服务"  # what a survey sampled after a 10086 dialogue names (rating.channel.sms)

    @classmethod
    def from_config(cls, config: Config | Path | str | None = None, language: str | None = None) -> Plan:
        """The plan of a gateway run with this config (default: config/default.toml) and its reply texts."""
        if not isinstance(config, Config):
            config = load_config(config, tls_files=False)
        settings = config.services
        language = language or settings.language
        texts = ReplyTexts.load(messages_files(config), language, settings, config.number_plan())
        services = {
            e.id: Service(e.id, e.keyword, e.service_code, e.sp_name_in(language), e.company_in(language),
                          e.name_in(language), _yuan(e.fee), e.phone,
                          texts.render("common.fee", fee=_yuan(e.fee)) if e.fee else texts.render("common.free"))  # fmt: skip
            for e in config.catalogue
        }
        return cls(
            texts=texts, services=services, operator=settings.operator, spam_report=settings.spam_report,
            rating=settings.rating, country_code=config.gateway.country_code,
            confirm_word=_preferred(settings.confirm_words, "Y"),
            help_word=_preferred(settings.help_words, "帮助" if language == "zh" else "HELP"), help_words=settings.help_words,
            query_keyword=settings.query_keyword,
            confirmation_validity=period(texts.render, settings.confirmation_validity),
            survey_validity=period(texts.render, settings.survey_validity), survey_seconds=settings.survey_validity,
            listing_window=period(texts.render, settings.listing_window),
            spam_follow_up_window=period(texts.render, settings.spam_follow_up_window),
            survey_service=texts.render("rating.channel.sms", code=settings.operator),
        )  # fmt: skip

    def by_keyword(self, keyword: str) -> Service:
        for service in self.services.values():
            if service.keyword.upper() == keyword.upper():
                return service
        raise KeyError(f"no catalogue service with keyword {keyword!r}")

    def national(self, msisdn: str) -> str:
        """8613012345678 -> 13012345678, as subscribers write numbers and replies show them."""
        return msisdn[len(self.country_code):] if msisdn.startswith(self.country_code) else msisdn


@dataclass(slots=True)
class DialogueResult:
    kind: str
    msisdn: str
    ok: bool
    outcome: str  # what happened: "unsubscribed", "none", "ordered", "reported", "rated"; "failed" when not ok
    steps: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds from the MO to its reply)
    mo: int = 0  # MOs accepted by the server
    started_at: float = 0.0  # time.monotonic()
    ended_at: float = 0.0
    error: str = ""
    step: str = ""  # where it failed
    transcript: list[tuple[float, str, str, str]] = field(default_factory=list)  # kept when it failed
    unexpected: list[str] = field(default_factory=list)  # texts waiting before the dialogue began: nobody asked
    data: dict[str, str] = field(default_factory=dict)  # e.g. report_id, reply_code
    refused: list[str] = field(default_factory=list)  # statuses the target refused MOs with that no check allowed


class DialogueFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class _Run:
    """One dialogue in progress: sends, expects, checks, times every step."""

    def __init__(self, kind: str, handset: Handset, plan: Plan, timeout: float,
                 on_mo: Callable[[], None] | None = None, resend: Resend | None = None) -> None:  # fmt: skip
        self.handset = handset
        self.plan = plan
        self.timeout = timeout
        self.on_mo = on_mo  # told as each MO is accepted, not when the dialogue ends (a fleet's MO/s)
        self.resend = resend  # MOs answered ESME_RTHROTTLED are sent again (Handset.send), else they fail the dialogue
        self.sent_at = 0.0  # the last MO's submit_sm
        self.answered_at = 0.0  # ... and its submit_sm_resp's arrival
        self.step = "start"
        self.result = DialogueResult(kind, handset.msisdn, False, "failed")

    async def send(self, to: str, text: str, label: str = "", to_name: str = "") -> None:
        """Text `to`; `label` names the step in failures (default: the text), `to_name` the receiver (default: its
        number; a subscriber's kind, not its number, so that failures group by step and not by peer)."""
        self.step = f"{label or text}->{to_name or to}"
        try:
            resp, at, answered_at = await self.handset.send(to, text, self.resend)
        except EsmeError as exc:
            raise DialogueFailed(self.step, f"MO not answered: {exc}") from None
        if resp.command_status:
            status = CommandStatus.name_of(resp.command_status)
            self.result.refused.append(status)  # counted by the recorder (mo_refused), as the failure is
            raise DialogueFailed(self.step, f"MO refused with {status}{self._held_back(resp.command_status)}")
        self.result.mo += 1
        if self.on_mo is not None:
            self.on_mo()
        self.sent_at, self.answered_at = at, answered_at

    def _held_back(self, command_status: int) -> str:
        """What became of an MO refused ESME_RTHROTTLED that was to be sent again (Handset.send): given up as its bind
        was lost and not bound again within the timeout (nothing more could be sent), or still refused so."""
        if not self.resend or command_status != THROTTLED:
            return ""
        if not self.handset.esme.is_bound:
            return f", then its bind lost and not bound again within {self.timeout:g} s"
        return f", still after sending it again for {self.timeout:g} s"

    async def receive(self, step: str, source: str) -> str:
        """The next text from `source`; its latency from the last MO is recorded as `step`."""
        self.step = step
        try:
            message = await self.handset.expect(source, timeout=self.timeout)
        except NoReply as exc:
            in_part = self.handset.arrived_in_part(source)
            reason = f"a long text from {source} arrived in part within {self.timeout:g} s: {in_part}" if in_part else str(exc)
            raise DialogueFailed(step, reason) from None
        self.result.steps.append((step, self.latency(message)))
        return message.text

    def latency(self, message: ShortMessage) -> float:
        """From the last MO's submit_sm to `message`, or to the MO's submit_sm_resp when that came later: an SMSC
        that delivers the reply before it answers the MO is no quicker for it (the subscriber waited for both)."""
        return max(message.received_at, self.answered_at) - self.sent_at

    async def reply(self, step: str, source: str, *keys: str) -> tuple[str, dict[str, str]]:
        """The next text from `source`: it must be one of the reply texts `keys`; its latency is recorded as `step`."""
        return self._which(step, source, await self.receive(step, source), keys)

    async def reply_unless_withheld(self, step: str, source: str, *keys: str, withheld: Callable[[], bool]) -> tuple[str, dict[str, str]] | None:
        """As reply; None when nothing came in time and `withheld()` says the target may rightly have sent nothing."""
        try:
            text = await self.receive(step, source)
        except DialogueFailed:  # nothing came in time
            if withheld() and not self.handset.arrived_in_part(source):
                return None
            raise
        return self._which(step, source, text, keys)

    def _which(self, step: str, source: str, text: str, keys: tuple[str, ...]) -> tuple[str, dict[str, str]]:
        found = self.plan.texts.which(text, keys)
        if found is None:
            raise DialogueFailed(step, f"expected {' or '.join(keys)} from {source}, got {text!r}")
        return found

    def check(self, fields: dict[str, str], expected: dict[str, str]) -> None:
        """Every placeholder the reply has that `expected` names must hold the expected value."""
        wrong = {k: (v, expected[k]) for k, v in fields.items() if k in expected and v != expected[k]}
        if wrong:
            raise DialogueFailed(self.step, "; ".join(f"{k}={got!r}, expected {want!r}" for k, (got, want) in wrong.items()))

    def fail(self, reason: str) -> None:
        raise DialogueFailed(self.step, reason)

    def check_report_id(self, report_id: str, given: set[str]) -> None:
        """A spam report's id, as its ack shows it: one word, no template placeholder, and none that `given` (the ids
        earlier reports were given, which it joins) holds: each report has its own."""
        if not _REPORT_ID.fullmatch(report_id):
            self.fail(f"report id {report_id!r}")
        if _PLACEHOLDER.search(report_id):
            self.fail(f"report id {report_id!r}: a placeholder of the template, unfilled")
        if report_id in given:
            self.fail(f"report id {report_id!r} again: an earlier report was given it; each report has its own")
        given.add(report_id)
        self.result.data["report_id"] = report_id


async def _run(kind: str, handset: Handset, plan: Plan, timeout: float, body: Callable[[_Run], Awaitable[str]],
               on_mo: Callable[[], None] | None = None, resend: Resend | None = None) -> DialogueResult:  # fmt: skip
    run = _Run(kind, handset, plan, timeout, on_mo, resend)
    result = run.result
    result.unexpected = [f"{m.source}: {m.text}" for m in handset.take_inbox()]
    handset.transcript = []
    result.started_at = time.monotonic()
    try:
        result.outcome = await body(run)
        result.ok = True
    except DialogueFailed as exc:
        result.step, result.error = exc.step, exc.reason
    except (EsmeError, OSError) as exc:  # the connection went
        result.step, result.error = run.step, f"{type(exc).__name__}: {exc}"
    result.ended_at = time.monotonic()
    if not result.ok:
        result.transcript = handset.transcript
    return result


# ------------------------------------------------------------------ dialogues
async def query_unsubscribe(handset: Handset, plan: Plan, *, serial: int = 1, timeout: float = 5.0) -> DialogueResult:
    """`0000` to the operator: the listing must show exactly the handset's subscriptions, numbered 1..n; reply
    `serial` and expect that service's unsubscribe confirmation. Without subscriptions: "no subscriptions"."""

    async def body(run: _Run) -> str:
        await run.send(plan.operator, plan.query_keyword)
        if not handset.subscriptions:
            await run.reply("0000->none", plan.operator, "unsubscribe.none")
            return "none"
        items = _listing(run, await run.receive("0000->listing", plan.operator))
        held = sorted(plan.services[s].listed() for s in handset.subscriptions)
        listed = sorted(map(listed_item, items))
        if listed != held:
            run.fail(f"listing shows {listed}, the subscriber holds {held}")
        chosen = items[serial - 1]
        service = next(plan.services[s] for s in handset.subscriptions
                       if (plan.services[s].name, plan.services[s].service_code) == (chosen["service"], chosen["service_code"]))  # fmt: skip
        await run.send(plan.operator, str(serial))
        _, done = await run.reply("serial->unsubscribed", plan.operator, "unsubscribe.done")
        run.check(done, service.fields(plan.operator))
        handset.subscriptions.remove(service.id)
        run.result.data["service"] = service.id
        return "unsubscribed"

    return await _run("query", handset, plan, timeout, body)


def _listing(run: _Run, text: str) -> list[dict[str, str]]:
    """A 0000 listing: head line (count), one line per subscription (serial 1..n), foot line."""
    texts = run.plan.texts
    if texts.match("unsubscribe.none", text) is not None:
        run.fail(f"'no subscriptions', but the subscriber holds {run.handset.subscriptions}")
    lines = text.split("\n")
    head = texts.match("unsubscribe.listing_head", lines[0])
    foot = texts.match("unsubscribe.listing_foot", lines[-1]) if len(lines) > 2 else None
    if head is None or foot is None:
        run.fail(f"not a listing: {text!r}")
    items = []
    for n, line in enumerate(lines[1:-1], 1):
        item = texts.match("unsubscribe.listing_item", line)
        if item is None or item["serial"] != str(n):
            run.fail(f"listing line {n} is {line!r}")
        items.append(item)
    if head["count"] != str(len(items)):  # type: ignore[index]
        run.fail(f"listing says {head['count']} subscriptions and lists {len(items)}")  # type: ignore[index]
    window = foot.get("window", run.plan.listing_window)  # type: ignore[union-attr]  # a foot may not name it
    if window != run.plan.listing_window:
        run.fail(f"listing says to reply within {window!r}, the target's listing_window is {run.plan.listing_window!r}")
    return items


async def order_confirm(handset: Handset, plan: Plan, keyword: str = "TT", *, timeout: float = 5.0) -> DialogueResult:
    """Order by keyword: the confirmation from the operator names the service, fee, phone, reply code Y1 and
    validity; confirming with `Y` (or the first confirm word of a target that takes no Y) brings the success notice.
    The handset must not hold the service yet."""
    service = plan.by_keyword(keyword)

    async def body(run: _Run) -> str:
        if service.id in handset.subscriptions:
            run.fail(f"the subscriber already holds {service.id}")
        await run.send(service.service_code, keyword)
        _, request = await run.reply(f"{keyword}->confirmation", plan.operator, service.request)
        run.check(request, {**service.fields(plan.operator), "reply_code": "Y1", "validity": plan.confirmation_validity})
        run.result.data["reply_code"] = request["reply_code"]
        await run.send(plan.operator, plan.confirm_word)
        _, notice = await run.reply(f"{plan.confirm_word}->ordered", plan.operator, *service.ordered(first=False))
        run.check(notice, service.fields(plan.operator))
        handset.subscriptions.append(service.id)
        return "ordered"

    return await _run("order", handset, plan, timeout, body)


async def spam_report(handset: Handset, plan: Plan, reported: str, spam_text: str, *, timeout: float = 5.0) -> DialogueResult:
    """`<number>*<text>` to the spam code: the ack must carry a report id and the reported number."""
    number = plan.national(reported)

    async def body(run: _Run) -> str:
        await run.send(plan.spam_report, f"{number}*{spam_text}", label="number*text")
        _, ack = await run.reply("report->ack", plan.spam_report, "spam.ack")
        run.check(ack, {"number": number})
        run.check_report_id(ack["report_id"], set())
        return "reported"

    return await _run("spam", handset, plan, timeout, body)


async def rating(handset: Handset, plan: Plan, score: str = "1", *, timeout: float = 5.0) -> DialogueResult:
    """`帮助` to the operator: the help text, then a survey from the rating code (the gateway must sample every
    10086 dialogue, survey_sample_rate = 1, and the subscriber have no survey open); `score` (1-3) -> thanks."""

    async def body(run: _Run) -> str:
        await run.send(plan.operator, plan.help_word)
        await run.reply("help->help", plan.operator, "common.help")
        _, survey = await run.reply("help->survey", plan.rating, "rating.survey")
        run.check(survey, {"service": plan.texts.render("rating.channel.sms", code=plan.operator), "validity": plan.survey_validity})
        await run.send(plan.rating, score)
        await run.reply(f"{score}->thanks", plan.rating, "rating.thanks")
        return "rated"

    return await _run("rating", handset, plan, timeout, body)


KINDS = ("query", "order", "spam", "rating")


def _preferred(words: tuple[str, ...], word: str) -> str:
    """The word a subscriber would send (帮助 or HELP for help, by language; Y to confirm), if the target's config
    takes it, else the first word it takes: a word of the built-in config may mean "anything else" to another."""
    return word if word in words else words[0]


def _yuan(fee: float) -> str:
    return f"{fee:.2f}".rstrip("0").rstrip(".")


# The runner and the listing parser, for dialogues written elsewhere (simulator/behaviours.py: the fleet's).
Run = _Run
run_dialogue = _run
parse_listing = _listing
