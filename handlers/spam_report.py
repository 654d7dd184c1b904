"""10086999 spam reporting ("垃圾信息举报", SPEC 3.3).

What a subscriber texts to 10086999:

- `<number>*<text>`: report `number` as the sender of the spam `text`. The
  separator may also be the full-width `＊` or a space (`13912345678 买房…`);
  the number may be written `+8613912345678`, `8613912345678`,
  `13912345678` or in full-width digits. With a space, the number is the
  longest run of the leading groups of digits, one space between each two,
  that is a subscriber's number (`+86 13912345678 买房…`, `139 1234 5678 买房…`);
  with none, the first group alone, which must be a complete subscriber number
  (or a short code, which is refused): otherwise the whole message is a
  forwarded text starting with digits (`2026 新年大促…`, `2 个红包…`).
- a bare forwarded text (no leading number): we ask for the sender's number
  and remember the text (Dialogue "spam.number") for `spam_follow_up_window`
  (30 min). A number sent within it completes the report with that text
  (the GSMA 7726 two-step). While it waits, the next message is taken as
  that number: a text that is none is not a new forwarded text (it would
  replace the evidence with `不知道` or a `Y` meant for 10086); it is refused,
  the waiting text quoted, and the prompt stays as it was. A bare number with no text waiting (never
  forwarded, or the window passed) is a report of that number without text:
  what the subscriber wants is clear, only the evidence is missing.
- `HELP`/`帮助`/`0`/nothing: how to report.

A report is acknowledged with its id and the 48-hour promise, and the
reported number can no longer reach the reporter (a personal Block, which
gateway/guards.py turns into submit_sm status 0x401). Invalid reports (not a
subscriber number, the reporter's own number, an operator short code or SP
service code) get a clear reply and create nothing; a reporter may file
`spam_reports_per_day` reports per operator calendar day.

When the DISTINCT reporters of one number with open reports (status
"received") within `spam_block_window` reach `spam_block_threshold`, the
number is blocked network-wide (Block with reporter "": every submit_sm from
it is refused with 0x400, except to the operator's own services, 10086,
10086999 and 10086700 or the codes configured for them, so that a wrongly
blocked subscriber can still unsubscribe and reach customer service), all of its open reports become "handled" and each
of their reporters is told once. Reports against a number already blocked
network-wide are handled at once (ack, then the handled notice). After a
block is lifted, only reports filed after the earlier ones were handled
count towards a new block.

Operators: `list_reports`, `top_reported`, `active_blocks` and `lift_block`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.config import DEFAULT_HELP_WORDS
from gateway.numbers import NumberPlan, ascii_digits, without_separators
from gateway.store.effects import Delete
from gateway.store.records import Block, Dialogue, SpamReport

from .base import (
    Inbound,
    Outcome,
    ServiceContext,
    epoch_seconds,
    folded_number,
    written_number,
)
from .keywords import fold, folded

DIALOGUE = "spam.number"
RECEIVED = "received"
HANDLED = "handled"
STATUSES = (RECEIVED, HANDLED)
MAX_NUMBER_CHARS = 20
QUOTED_CHARS = 15  # of a forwarded text, quoted to remind its reporter which one waits

# `<number><*|＊><text>` and `<number><space><text>`, matched on the original text so
# the spam text is kept as the subscriber sent it (the number part is folded afterwards).
_DIGIT = "0-9０-９"
_NUMBER = rf"(?:[(（][+＋]?[{_DIGIT}]{{1,4}}[)）]\s*)?[+＋]?[{_DIGIT}][{_DIGIT}\-－]*"  # `(+86)` may open it
_SPACE = re.compile(rf"^\s*(?P<number>{_NUMBER})\s+(?P<text>.*)$", re.S)
# One more group of a number written in groups (`139 1234 5678`, `+86 139…`): one space, digits, a space after them.
_NEXT_GROUP = re.compile(rf"[ 　][{_DIGIT}][{_DIGIT}\-－]*(?=\s)")
# A number alone, as a subscriber answers the prompt for one: perhaps labelled, in either language whatever the
# subscriber's (`号码：…`, `Number: …`, `MY MOBILE NUMBER IS …`), and ended with the full stop a Chinese input method
# adds (`13912345678。`).
_ENGLISH_LABEL = r"(?i:(?:(?:my|the)\s++)?(?:(?:mobile|phone|tel\.?)(?:\s*+(?:number|no\.?))?|number|no\.?)(?:\s++is)?)"
_LABEL = rf"(?:(?:我的)?(?:号码|手机号码?|电话)?(?:是|为)?|{_ENGLISH_LABEL})(?:\s*+[:：])?"
# The country code may stand in brackets, the plus inside them: `(+86)139…`, `（+86） 139…`.
_OPENING = r"[(（]?[+＋]?"
# Every run is possessive (`*+`): with runs of spaces that two neighbours could share, a digit and 2,000 spaces
# backtracked for 8 s (4,000: 63 s) and held the event loop; now the match is linear in the text.
_ONLY_NUMBER = re.compile(
    rf"^\s*+{_LABEL}\s*+(?P<number>{_OPENING}[{_DIGIT}][{_DIGIT}\-－ 　()（）]*+)\s*+[。．.！!，,；;]*+\s*+$"
)
_NUMBERISH = re.compile(rf"^{_OPENING}[{_DIGIT}\-－ 　()（）]*$")
# Longer than this, a text is no number alone (and is not matched at all).
ONLY_NUMBER_CHARS = 64
_STARS = "*＊"
CHINA = NumberPlan()  # (parse's, when not given the gateway's)


@dataclass(frozen=True, slots=True)
class Parsed:
    kind: str  # report | text | help
    number: str = ""  # as written (folded), for replies
    text: str = ""
    strict: bool = True  # False (space separator): a leading token that is no number means a forwarded text


@dataclass(frozen=True, slots=True)
class ReportedNumber:
    """One line of the operators' "top reported numbers" view."""

    number: str
    reports: int
    reporters: int  # distinct
    last_reported_at: float
    blocked: bool  # blocked network-wide now


@lru_cache(maxsize=64)
def parse(text: str, help_words: tuple[str, ...] = DEFAULT_HELP_WORDS, plan: NumberPlan = CHINA) -> Parsed:
    """What a text to 10086999 is: a report (number and text), a forwarded text, or a help request
    (an empty text, or one of [services] help_words); `plan` tells a number written in groups before a space
    (`_spaced`). Kept for the last texts parsed: an MO's text is parsed for its serial keys and again when it is
    handled (a Parsed is frozen, so one may be handed out twice)."""
    folded_text = fold(text)
    if not folded_text or folded_text in folded(help_words):
        return Parsed("help")
    only = _ONLY_NUMBER.match(text) if len(text) <= ONLY_NUMBER_CHARS else None
    if only:
        return Parsed("report", folded_number(only["number"]))
    star = _split_at_star(text)
    if star is not None and _attempted_number(fold(star[0])):
        return Parsed("report", folded_number(star[0]), star[1].strip())
    spaced = _SPACE.match(text)
    if spaced:
        number_end = _spaced_number_end(text, spaced.start("number"), spaced.end("number"), plan)
        return Parsed("report", folded_number(text[spaced.start("number"):number_end]), text[number_end:].strip(), strict=False)
    return Parsed("text", text=text.strip())


def _spaced_number_end(text: str, start: int, first_end: int, plan: NumberPlan) -> int:
    """Where the number of `<number> <text>` ends, its first group `text[start:first_end]`: after the longest run of
    groups, one space between each two, that is a subscriber's number (`+86 139 1234 5678`), at most MAX_NUMBER_CHARS
    long; with none, after the first group (`2 个红包`, `10086 您的话费…`: refused, or a forwarded text, as written)."""
    ends = [first_end]
    while (group := _NEXT_GROUP.match(text, ends[-1])) is not None and group.end() - start <= MAX_NUMBER_CHARS:
        ends.append(group.end())
    return next((end for end in reversed(ends[1:]) if _subscriber_number(plan, text[start:end])), first_end)


def _split_at_star(text: str) -> tuple[str, str] | None:
    """`<number><*|＊>...<text>` as (number, text), trimmed, cut at the first star (stars after it stay in the text);
    None without a star. Found, not matched: a pattern for it backtracked over long texts."""
    at = min((i for i in map(text.find, _STARS) if i >= 0), default=-1)
    if at < 0:
        return None
    rest = text[at:].lstrip(_STARS)
    return text[:at].strip(), rest.lstrip()


def _attempted_number(before_star: str) -> bool:
    """`x*…` is a report when x (folded) looks like an attempt at a number: it holds a digit and is written as one
    (`+86 137-0000-0001`, `12345`) or is short ASCII without spaces (`1380013800O`, `+86-abc1`), refused then as
    no number. Otherwise it is spam text that happens to hold a star: with no digit (`WINNER*…`, `FreeMsg: *…`,
    `*FREE*…`, as English spam marks words) or longer or not ASCII (`恭喜您中奖*…`)."""
    if not re.search("[0-9]", before_star):
        return False
    if _NUMBERISH.match(before_star):
        return True
    return len(before_star) <= MAX_NUMBER_CHARS and before_star.isascii() and not re.search(r"\s", before_star)


def reported_key(number: str) -> str:
    """The serial key of everything that decides about one reported number (thresholds, blocks)."""
    return f"spam-reported:{number}"


class SpamReportHandler:
    # Victims report one spammer in bursts, so reports queue on the reported number's key. Each hands its keys
    # on as soon as its commit is issued rather than once it is done (gateway/mo.py): the next report reads this
    # one's effects from the record cache. That is exact because everything this handler reads is a record
    # the cache keeps by partition (Dialogue, SpamReport, Block, Subscriber), never a query the store answers.
    hands_keys_on = True

    def serial_keys(self, inbound: Inbound, ctx: ServiceContext) -> list[str]:
        """The reporter (their prompt, their daily limit) and the number reported (distinct reporters
        counted against the threshold) are each handled one report at a time."""
        parsed = parse(inbound.text, ctx.settings.help_words, ctx.plan)
        if parsed.kind != "report":
            return [inbound.subscriber]
        return [inbound.subscriber, reported_key(ctx.plan.normalise(parsed.number))]

    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        reporter, now = inbound.subscriber, inbound.received_at
        language = await ctx.language_of(reporter)
        parsed = parse(inbound.text, ctx.settings.help_words, ctx.plan)
        if parsed.kind == "help":
            return _say(inbound, ctx, "spam.usage", language, completed=True, short_code=ctx.settings.spam_report)
        plan = ctx.plan
        refusal = _refusal(plan, parsed.number, reporter) if parsed.kind == "report" else None
        if refusal == "spam.not_a_number" and not parsed.strict:  # `2026 新年大促…`: a forwarded text
            parsed, refusal = Parsed("text", text=inbound.text.strip()), None
        if await _over_limit(ctx, reporter, now) and refusal is None:
            limit = ctx.settings.spam_reports_per_day
            return _say(inbound, ctx, "spam.rate_limited", language, completed=True, limit=limit)
        if parsed.kind == "text":  # the first step: ask who sent it
            pending = await _pending(ctx, reporter, now)
            if pending is not None:  # SPEC 3.3: the next message completes the report; this one cannot
                return _number_expected(inbound, ctx, language, str(pending.data.get("text", "")), pending.expires_at)
            window = ctx.settings.spam_follow_up_window
            dialogue = Dialogue(reporter, DIALOGUE, {"text": parsed.text}, now, now + window)
            return _say(inbound, ctx, "spam.ask_number", language, window=ctx.period(window, language), until=dialogue.expires_at).put(dialogue)

        pending = await _pending(ctx, reporter, now)
        if refusal is not None:  # a prompt still open stays open: the subscriber may correct the number
            reply = ctx.text_citing(refusal, language, "number", parsed.number, MAX_NUMBER_CHARS, short_code=ctx.settings.spam_report)
            outcome = Outcome(completed=pending is None)
            return outcome.reply(inbound.subscriber, reply, inbound.short_code, until=pending and pending.expires_at)
        text = parsed.text
        answer = not text and pending is not None  # the second step: the number for the text forwarded before
        if answer:
            text = str(pending.data.get("text", ""))
        outcome = Outcome(completed=True)
        # A complete report of another text leaves an open prompt open: the forwarded text still waits for its number.
        if answer or (pending is None and await ctx.store.find(Dialogue, msisdn=reporter, kind=DIALOGUE)):
            outcome.effects.append(Delete(Dialogue, (reporter, DIALOGUE)))  # answered, or expired
        return outcome.extend(await _file(ctx, inbound, plan.normalise(parsed.number), text, language))


async def _file(ctx: ServiceContext, inbound: Inbound, reported: str, text: str, language: str) -> Outcome:
    """Store the report, block `reported` from the reporter, and block it everywhere at the threshold."""
    reporter, now, settings = inbound.subscriber, inbound.received_at, ctx.settings
    shown = _display(ctx, reported)
    already_blocked = bool(await _network_blocks(ctx, reported))
    recent = set() if already_blocked else await _counted_reporters(ctx, reported, now, reporter)
    blocking = not already_blocked and len(recent) >= settings.spam_block_threshold

    report = SpamReport(ctx.new_id(), reporter, reported, text, now, HANDLED if already_blocked or blocking else RECEIVED)
    outcome = Outcome(completed=True).put(report)
    if not await ctx.store.find(Block, reported=reported, reporter=reporter, lifted_at=None):
        outcome.put(Block(ctx.new_id(), reported, reporter, now, reason=f"spam report {report.id}"))
    # From the code the report came to (a [[short_codes]] entry may run this service on another); the other
    # reporters' notices below come from [services] spam_report: a report does not keep the code it came to.
    outcome.reply(reporter, ctx.text("spam.ack", language, report_id=report.id, number=shown), inbound.short_code)
    if already_blocked:  # handled at once: the number cannot send anything any more
        return outcome.reply(reporter, ctx.text("spam.handled", language, number=shown), inbound.short_code)
    if not blocking:
        return outcome
    return await _block(ctx, outcome, reported, len(recent), now, report, inbound.short_code)


async def block_over_threshold(ctx: ServiceContext, reported: str, now: float) -> Outcome:
    """Block `reported` network-wide if its open reports already come from spam_block_threshold distinct reporters
    (counted as a report counts them) and it is not blocked: a threshold lowered since they were filed, which the
    next report would otherwise have had to reach. As a report reaching it: its open reports handled, their
    reporters told. Nothing to do: an empty Outcome."""
    if await _network_blocks(ctx, reported):
        return Outcome()
    recent = await _counted_reporters(ctx, reported, now)
    if len(recent) < ctx.settings.spam_block_threshold:
        return Outcome()
    return await _block(ctx, Outcome(), reported, len(recent), now, None, ctx.settings.spam_report)


async def _counted_reporters(ctx: ServiceContext, reported: str, now: float, reporter: str | None = None) -> set[str]:
    """The distinct reporters of `reported` (`reporter`, filing a report now, among them) with open reports within
    spam_block_window: those that count towards its block, once they may reach spam_block_threshold."""
    settings = ctx.settings
    filing = {reporter} if reporter is not None else set()
    # counted without building a record per open report: a number may have thousands
    since = now - settings.spam_block_window
    recent = filing | await ctx.store.distinct(SpamReport, "reporter", reported=reported, status=RECEIVED, created_at__gt=since)
    if len(recent) >= settings.spam_block_threshold:  # (below it, leaving some out changes nothing: not looked up)
        # Not those from a later time (handlers/base.py): read again, as a scan of a much-reported number's
        # reports with one more test each costs every report, and the threshold is reached once.
        recent = filing | await ctx.store.distinct(SpamReport, "reporter", reported=reported, status=RECEIVED,
                                                   created_at__gt=since, created_at__lte=ctx.clock.now())  # fmt: skip
        # A reporter itself blocked network-wide may still text this code (gateway/guards.py), but is not counted:
        # five spammers' SIMs must not get an innocent number blocked. Its report counts once its block is lifted.
        recent = {r for r in recent if not await _network_blocks(ctx, r)}
    return recent


async def _block(
    ctx: ServiceContext, outcome: Outcome, reported: str, reporters: int, now: float, report: SpamReport | None,
    short_code: str,
) -> Outcome:  # fmt: skip
    """Block `reported` network-wide: its open reports handled, and each of their reporters told once (the one
    filing `report` on `short_code`, the others from [services] spam_report)."""
    settings = ctx.settings
    shown = _display(ctx, reported)
    reason = f"{reporters} distinct reporters within {settings.spam_block_window:g}s"
    outcome.put(Block(ctx.new_id(), reported, "", now, reason=reason))
    open_reports = await ctx.store.find(SpamReport, reported=reported, status=RECEIVED, created_at__lte=ctx.clock.now())
    outcome.put(*(dataclasses.replace(r, status=HANDLED) for r in open_reports))
    told: list[str] = []
    for r in [*([report] if report is not None else []), *sorted(open_reports, key=lambda r: r.created_at)]:
        if r.reporter not in told:
            told.append(r.reporter)
            notice = ctx.text("spam.handled", await ctx.language_of(r.reporter), number=shown)
            outcome.reply(r.reporter, notice, short_code if r is report else settings.spam_report)
    return outcome


def _subscriber_number(plan: NumberPlan, written: str) -> bool:
    """`written` is a number a spam report may name (whoever reports it)."""
    return _refusal(plan, folded_number(written), reporter="") is None


def _refusal(plan: NumberPlan, written: str, reporter: str) -> str | None:
    """The reply key when `written` cannot be reported by `reporter`, else None."""
    digits = without_separators(written)
    bare = digits.lstrip("+")
    if not ascii_digits(bare):
        return "spam.not_a_number"
    number = plan.normalise(digits)
    # A code with digits after it is still the operator's or the SP's (1066916 + extension, 10086 + anything),
    # whatever its length: 10669161234 has a subscriber number's length and is no subscriber's. In the form
    # normalise gives, so that `+86`, `0086` and `86` before it are one.
    if plan.is_code_number(number):
        return "spam.short_code"
    if not plan.is_mobile(number):  # 010-12345678, 85291234567 (no +), 12345678901: 11 digits, no mobile phone's
        return "spam.not_a_number"
    if number == reporter:
        return "spam.own_number"
    return None


async def _pending(ctx: ServiceContext, reporter: str, now: float) -> Dialogue | None:
    found = await ctx.store.find(Dialogue, msisdn=reporter, kind=DIALOGUE)
    return found[0] if found and found[0].created_at <= ctx.clock.now() and now < found[0].expires_at else None  # (base.py)


async def _over_limit(ctx: ServiceContext, reporter: str, now: float) -> bool:
    """The reporter already filed spam_reports_per_day reports this operator calendar day."""
    midnight = ctx.local_midnight(ctx.local_date(now))
    today = await ctx.store.find(SpamReport, reporter=reporter, created_at__gte=midnight, created_at__lte=ctx.clock.now())
    return len(today) >= ctx.settings.spam_reports_per_day


async def _network_blocks(ctx: ServiceContext, reported: str | None = None) -> list[Block]:
    """The network-wide blocks in force (reporter "", not lifted), oldest first: of `reported`, else of every number."""
    of = {} if reported is None else {"reported": reported}
    return await ctx.store.find(Block, order_by="created_at", reporter="", lifted_at=None, **of)


def _display(ctx: ServiceContext, number: str) -> str:
    """A subscriber number as people write it at home (13912345678), for reply texts."""
    plan = ctx.plan
    return number[len(plan.country_code):] if plan.is_msisdn(number) else number


def _number_expected(inbound: Inbound, ctx: ServiceContext, language: str, waiting: str, until: float) -> Outcome:
    """A forwarded text came while another still waits for its sender's number: quote the start of that one (cut
    with "..." in a reply GSM 03.38 can carry, English, a Latin text: "…" would send it as UCS2, in twice the parts)."""
    window = ctx.period(until - inbound.received_at, language)
    reply = ctx.text_citing("spam.number_expected", language, "text", waiting, QUOTED_CHARS, window=window)
    return Outcome().reply(inbound.subscriber, reply, inbound.short_code, until=until)


def _say(inbound: Inbound, ctx: ServiceContext, key: str, language: str, *, completed: bool = False,
         until: float | None = None, **values) -> Outcome:  # fmt: skip
    outcome = Outcome(completed=completed)
    return outcome.reply(inbound.subscriber, ctx.text(key, language, **values), inbound.short_code, until=until)


# ----------------------------------------------------------------- operators
async def lift_block(ctx: ServiceContext, reported: str, now: float, reporter: str | None = None) -> Outcome:
    """Lift the network-wide block of `reported` (any written form); personal blocks stay. With `reporter` (in the
    store's form), that subscriber's own block of it instead: it can reach them again.

    Raises ValueError when there is no such block.
    """
    number = ctx.plan.normalise(reported)
    if reporter is not None:
        blocks = await ctx.store.find(Block, reported=number, reporter=reporter, lifted_at=None)
        if not blocks:
            raise ValueError(f"{reported} ({number}) is not blocked by {reporter}; nothing to lift")
    else:
        blocks = await _network_blocks(ctx, number)
        if not blocks:
            raise ValueError(f"{reported} ({number}) is not blocked network-wide; nothing to lift")
    return Outcome().put(*(dataclasses.replace(b, lifted_at=now) for b in blocks))


async def list_reports(
    ctx: ServiceContext,
    *,
    reporter: str | None = None,
    reported: str | None = None,
    status: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 100,
) -> list[SpamReport]:
    """Reports, newest first, filtered by reporter / reported number (any written form, `_filter_number`), status
    (received or handled), time (`epoch_seconds`). ValueError for a filter no report can match: it answered an empty
    list, as if there were no such reports."""
    filters: dict = {}
    if reporter is not None:
        filters["reporter"] = _filter_number(ctx.plan, "reporter", reporter)
    if reported is not None:
        filters["reported"] = _filter_number(ctx.plan, "reported", reported)
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        filters["status"] = status
    if (since := epoch_seconds("since", since)) is not None:
        filters["created_at__gte"] = since
    if (until := epoch_seconds("until", until)) is not None:
        filters["created_at__lt"] = until
    return await ctx.store.find(SpamReport, order_by="-created_at", limit=_limit(limit), **filters)


def _filter_number(plan: NumberPlan, argument: str, written: object) -> str:
    """A number an operator looks reports up by, in the store's form: written as a report may name it (full-width
    too, folded as the SMS path folds it: `written_number`), and a subscriber's (the rule a report's number meets:
    `_refusal`). ValueError naming `argument` otherwise: a full-width number matched nothing, an int raised from
    deep inside the number plan."""
    number = written_number(argument, written)
    if _refusal(plan, number, reporter="") is not None:
        raise ValueError(f"{argument} {written!r} is not a subscriber number")
    return plan.normalise(number)


def _limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit < 2**63:  # (SQLite's integers)
        raise ValueError(f"limit {limit!r}: expected a whole number of rows, from 1 to 2**63 - 1")
    return limit


async def top_reported(ctx: ServiceContext, since: float | None, limit: int = 10) -> list[ReportedNumber]:
    """The most reported numbers since `since` (`epoch_seconds`; None: ever): by distinct reporters, then reports,
    then most recent."""
    since, limit = epoch_seconds("since", since), _limit(limit)
    counts: dict[str, list] = {}
    for r in await ctx.store.find(SpamReport, **({} if since is None else {"created_at__gte": since})):
        entry = counts.setdefault(r.reported, [0, set(), 0.0])
        entry[0] += 1
        entry[1].add(r.reporter)
        entry[2] = max(entry[2], r.created_at)
    blocked = {b.reported for b in await _network_blocks(ctx)}
    rows = [ReportedNumber(n, c, len(who), last, n in blocked) for n, (c, who, last) in counts.items()]
    rows.sort(key=lambda row: (-row.reporters, -row.reports, -row.last_reported_at, row.number))
    return rows[:limit]


async def active_blocks(ctx: ServiceContext, *, network_only: bool = False) -> list[Block]:
    """Blocks in force, oldest first: network-wide ones (reporter "") and, unless network_only, personal ones."""
    if network_only:
        return await _network_blocks(ctx)
    return await ctx.store.find(Block, order_by="created_at", lifted_at=None)
