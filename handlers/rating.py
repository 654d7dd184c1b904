"""10086700 satisfaction ratings ("满意100" window-service ratings, SPEC 3.4).

A service event (a store visit, a hotline call, an online session, a 10086
SMS dialogue picked by sampling) sends the subscriber a survey from the
rating short code; the Survey record it creates is the dialogue state, so a
reply is understood after a restart or on another node.

Life of a survey (`Survey.status`):

    sent --1..3--> rated
    sent --4..5--> reason --any text--> rated (with the reason)
    sent --not a rating--> sent (reprompted=True) --not a rating again--> invalid
    sent, past expires_at --> expired (marked so by the gateway soon after, `expire_lapsed`; a
                              reply is told it is late, or unsolicited past one more validity period)
    reason, past expires_at --> rated (the rating stands, the late reason is not kept; marked so
                                by the gateway soon after; a reply is told so, or unsolicited
                                past one more validity period)
    sent --a newer survey to the same subscriber--> superseded
    reason --a newer survey--> rated (the rating stands, no reason)
    superseded or closed at its end, then a reply received while it was open handled (a retry, a replay at start)
        --> as if handled in time; a rating of a superseded survey takes no reason (a newer survey is open)

Decisions where the SPEC is silent:
- One open survey per subscriber: a new survey supersedes the open one, so a
  bare `1` always answers the survey received last (SMS replies carry no
  reference to the message they answer).
- A rating is a digit 1-5 (full-width too) or a word, Chinese or English,
  whatever the subscriber's language ([services] rating_words), or a digit
  with its own option label as the survey prints it ("1非常满意"); a digit
  with another option's label ("1 非常不满意") is not understood. Any of them
  followed by a separator and text ("5 排队太久", "不满意，排队太久") is the
  rating and its reason at once; after a 1-3 the text is kept, but the reply
  is the plain thanks (thanks_reason promises to look into a complaint).
- The reason step ends with the survey (`expires_at` is not extended).
- Nobody is told when the gateway closes a survey at its end: silence is an
  answer the operator counts (`response_rate`). Whether a reply came in time
  is decided by when it was received, not by the status: a reply received in
  time and handled after the gateway closed its survey (a retry, a replay at
  start) answers it; one received after gets the same late answer either way.
  A survey closed unanswered can be told from one answered by its fields
  (`_unanswered`): expired; or rated 4-5 with no reason.
- A reply within one validity period after a survey expired is "late" (every
  one of them; "reason late" after one whose reason never came); a reply while
  a rated survey is still within its validity is "already rated"; anything
  else without an open survey is "unsolicited". None of them records a rating.
- Aggregates count every survey with a rating (also one still waiting for its
  reason), by the time of the service event (`created_at`), in the
  operator's calendar.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from gateway.config import DEFAULT_RATING_WORDS
from gateway.store.records import Survey

from .base import (
    Inbound,
    Outcome,
    ServiceContext,
    checked_agent,
    checked_channel,
    epoch_seconds,
)
from .billing_calendar import period_of
from .keywords import fold, fold_each

OPEN = ("sent", "reason")
# The answer to a reply after the validity, by what the survey was still waiting for then.
LATE = {"sent": "late", "reason": "reason_late"}
SCORES = (1, 2, 3, 4, 5)
SATISFIED = (1, 2)
ASK_REASON = (4, 5)
REASON_LIMIT = 500  # characters of free text kept

_SPACES = re.compile(r"\s+")

_FOLDED_WORDS: dict[int, tuple[dict[str, int], dict[str, int]]] = {}  # id(words) -> (words, folded)


def _folded_words(words: dict[str, int]) -> dict[str, int]:
    """`words` as texts are compared with them, folded once per configured table (settings live as long as the gateway)."""
    cached = _FOLDED_WORDS.get(id(words))
    if cached is None or cached[0] is not words:
        cached = _FOLDED_WORDS[id(words)] = (words, {_SPACES.sub(" ", fold(w)): s for w, s in words.items()})
    return cached[1]


# Between a rating and the text after it: spaces and punctuation, after fold_each (`，。、！＊` are half-width).
_SEPARATORS = r"[\s,.:;*#\-!~]"


_PATTERNS: dict[int, tuple[dict[str, int], re.Pattern[str]]] = {}  # id(words) -> (words, pattern)


def _pattern(words: dict[str, int]) -> re.Pattern[str]:
    """What a rating reply looks like with these words, built once per configured table (settings live as long as
    the gateway): a digit 1-5, its option label after it or not, or a word alone; then a separator and the rest, the
    reason. A label or word must end the text or be followed by a separator (`满意度低` is no `满意`)."""
    cached = _PATTERNS.get(id(words))
    if cached is None or cached[0] is not words:
        # Longest first, so that `非常不满意` is not read as a shorter word it starts with.
        labels = "|".join(r"\s+".join(map(re.escape, fold(w).split())) for w in sorted(words, key=len, reverse=True))
        pattern = re.compile(
            rf"(?:(?P<digit>[1-5]){_SEPARATORS}*(?:(?P<label>{labels})(?={_SEPARATORS}|$))?"
            rf"|(?P<word>{labels})(?={_SEPARATORS}|$))"
            rf"(?:{_SEPARATORS}+(?P<reason>.*))?",
            re.DOTALL,
        )
        cached = _PATTERNS[id(words)] = (words, pattern)
    return cached[1]


def parse_rating(text: str, words: dict[str, int] = DEFAULT_RATING_WORDS) -> tuple[int, str] | None:
    """(score, reason) for `1`, `５`, `非常满意`, `very satisfied!`, `5 排队太久`; None if not a rating.

    The survey's own wording counts as the rating it names: `1非常满意`, `5 very dissatisfied`, and with a
    reason after it, `4不满意，排队太久`, `不满意，排队太久`. A digit with another option's label (`1 非常不满意`)
    contradicts itself and is not understood (re-prompted) rather than guessed at. A digit with any other text
    after a separator (`5 排队太久`) is the rating and its reason; a reason of digits only (`1,3`) is no rating.

    `words`: [services] rating_words, matched as fold() leaves them (trimmed, upper-cased, full-width folded)."""
    stripped = text.strip()
    # fold_each keeps every character in place, so the reason is cut from the text as the subscriber wrote it.
    found = _pattern(words).fullmatch(fold_each(stripped))
    if found is None:
        return None
    label = found["label"] or found["word"]
    labelled = _folded_words(words)[_SPACES.sub(" ", label)] if label else None
    score = int(found["digit"]) if found["digit"] else labelled
    if labelled not in (None, score):
        return None
    reason = stripped[found.start("reason"):].strip() if found["reason"] is not None else ""
    if reason.isdecimal():
        return None  # `1,3`, `12`: a list of numbers (as 10086 takes serials), not a rating with a reason
    return score, reason[:REASON_LIMIT]


def _validity(ctx: ServiceContext, language: str) -> str:
    return ctx.period(ctx.settings.survey_validity, language)


def _latest(surveys: list[Survey]) -> Survey | None:
    return max(surveys, key=lambda s: (s.created_at, s.id), default=None)


# Channels the texts name in their own words: the operator's service points and the product's own channels (web and
# api are the Services API's, ussd SPEC 3.5's); any other channel name is shown as given (rating.channel.other).
_NAMED_CHANNELS = frozenset({"store", "hotline", "online", "web", "api", "ussd"})


def _service_phrase(ctx: ServiceContext, channel: str, agent: str, language: str) -> str:
    kind, _, detail = channel.partition(":")
    if kind in _NAMED_CHANNELS:
        phrase = ctx.text(f"rating.channel.{kind}", language)
    elif kind == "sms" and detail:
        phrase = ctx.text("rating.channel.sms", language, code=detail)
    else:
        phrase = ctx.text("rating.channel.other", language, channel=channel)
    if agent:
        phrase += ctx.text("rating.agent", language, agent=agent)
    return phrase


def _closed_at_end(survey: Survey) -> Survey:
    """An open survey closed unanswered at the end of its validity: a rating waiting for its reason stands (rated,
    no reason), an unrated one expired."""
    return replace(survey, status="rated" if survey.status == "reason" else "expired")


def _unanswered(survey: Survey) -> str | None:
    """What a survey closed unanswered (`_closed_at_end`, or superseded by a newer one) was still waiting for
    ("sent", "reason"); None for any other. A 4-5 is rated with no reason only so: the reason step takes no empty
    text."""
    if survey.status in ("expired", "superseded"):
        return "sent"
    if survey.status == "rated" and survey.rating in ASK_REASON and not survey.reason:
        return "reason"
    return None


def _as_received(survey: Survey | None, received_at: float) -> Survey | None:
    """`survey` as it stood when a reply received at `received_at` came, if it was open then and has been closed at
    its end since (the reply's handling is a retry, or a replay at start): the reply answers it as it would have."""
    waiting = _unanswered(survey) if survey is not None and received_at < survey.expires_at else None
    return replace(survey, status=waiting) if waiting else None


async def open_surveys(ctx: ServiceContext, msisdn: str, now: float) -> list[Survey]:
    """Surveys the subscriber can still answer (sent or awaiting a reason, not expired)."""
    # (none from a later time: handlers/base.py)
    found = await ctx.store.find(Survey, msisdn=msisdn, status__in=list(OPEN), created_at__lte=ctx.clock.now())
    return [s for s in found if now < s.expires_at]


async def request_survey(ctx: ServiceContext, msisdn: str, channel: str, agent: str | None, now: float) -> Outcome:
    """A service event: a Survey (status "sent") and the survey SMS from the rating short code."""
    language = await ctx.language_of(msisdn)
    outcome = Outcome()
    # (none from a later time, handlers/base.py: a clock set back must not close one not sent yet)
    for older in await ctx.store.find(Survey, msisdn=msisdn, status__in=list(OPEN), created_at__lte=now):
        if older.status == "sent" and older.expires_at > now:
            outcome.put(replace(older, status="superseded"))
        else:  # a rating waiting for its reason stands; the reason is no longer awaited
            outcome.put(_closed_at_end(older))
    survey = Survey(
        id=ctx.new_id(),
        msisdn=msisdn,
        channel=channel,
        agent=agent or "",
        created_at=now,
        expires_at=now + ctx.settings.survey_validity,
        status="sent",
    )
    text = ctx.text(
        "rating.survey", language, service=_service_phrase(ctx, channel, survey.agent, language),
        validity=_validity(ctx, language),
    )
    return outcome.put(survey).reply(msisdn, text, ctx.settings.rating, until=survey.expires_at)


class RatingHandler:
    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        language = await ctx.language_of(inbound.subscriber)
        now = inbound.received_at

        def say(key: str, outcome: Outcome | None = None, **values: Any) -> Outcome:
            return (outcome or Outcome()).reply(inbound.subscriber, ctx.text(f"rating.{key}", language, **values), inbound.short_code)

        def ask(key: str, outcome: Outcome, survey: Survey) -> Outcome:
            """A question about the survey: it is not delivered once the survey can no longer be answered."""
            text = ctx.text(f"rating.{key}", language)
            return outcome.reply(inbound.subscriber, text, inbound.short_code, until=survey.expires_at)

        # A reply answers the last survey sent before it was received, also when its handling is a retry or a replay
        # at start: none sent after it (a survey is never re-stamped), nor from a later time (handlers/base.py).
        sent_by = min(now, ctx.clock.now())
        open_then = await ctx.store.find(Survey, msisdn=inbound.subscriber, status__in=list(OPEN), created_at__lte=sent_by)
        survey = _latest(open_then)
        superseded = False  # a newer survey came after the reply (its handling is late): the rating is all it takes
        if survey is None:
            recent = await _most_recent(ctx, inbound.subscriber, sent_by)
            survey = _as_received(recent, now)
            if survey is None:
                # {code}: where surveys come from (services.rating), also when this is another [[short_codes]] code.
                return say(_without_open_survey(recent, now, ctx), validity=_validity(ctx, language), code=ctx.settings.rating)
            superseded = recent is not None and recent.status == "superseded"

        if survey.expires_at <= now:
            # The gateway had not closed it yet (expire_lapsed): this reply closes it, answered as after that.
            closed = Outcome(completed=True).put(_closed_at_end(survey))
            if not _in_late_period(survey, now, ctx):
                # Past the late period the reply answers nothing, as it will once the survey is closed.
                return say("unsolicited", closed, code=ctx.settings.rating)
            return say(LATE[survey.status], closed, validity=_validity(ctx, language))

        if survey.status == "reason":
            reason = inbound.text.strip()
            if not fold(reason):  # nothing readable (spaces, a NUL, a zero-width space): asked again
                return ask("ask_reason", Outcome(), survey)
            survey.status, survey.reason = "rated", reason[:REASON_LIMIT]
            return say("thanks_reason", Outcome(completed=True).put(survey))

        parsed = parse_rating(inbound.text, ctx.settings.rating_words)
        if parsed is None:
            if superseded:  # asked again, the subscriber's next rating answers the newer survey, the one they have
                return ask("reprompt", Outcome(), survey)
            if not survey.reprompted:
                survey.reprompted = True
                return ask("reprompt", Outcome().put(survey), survey)
            survey.status = "invalid"
            return say("invalid", Outcome(completed=True).put(survey))

        score, reason = parsed
        survey.rating, survey.rated_at = score, now
        if score in ASK_REASON and not reason and not superseded:
            survey.status = "reason"
            return ask("ask_reason", Outcome().put(survey), survey)
        survey.status, survey.reason = "rated", reason
        # thanks_reason promises to look into a complaint: words after a satisfied rating get the plain thanks.
        complaint = score in ASK_REASON and reason
        return say("thanks_reason" if complaint else "thanks", Outcome(completed=True).put(survey))


async def _most_recent(ctx: ServiceContext, msisdn: str, sent_by: float) -> Survey | None:
    """The subscriber's last survey sent by `sent_by`."""
    return _latest(await ctx.store.find(Survey, msisdn=msisdn, order_by="-created_at", limit=5, created_at__lte=sent_by))


def _without_open_survey(recent: Survey | None, now: float, ctx: ServiceContext) -> str:
    """Which polite answer a text gets when no survey awaits it (`recent`: the subscriber's latest survey):
    already_rated, late, reason_late or unsolicited."""
    if recent is None:
        return "unsolicited"
    if recent.status == "rated" and now < recent.expires_at:
        return "already_rated"
    waiting = _unanswered(recent)
    if waiting is not None and _in_late_period(recent, now, ctx):
        return LATE[waiting]
    return "unsolicited"


def _in_late_period(survey: Survey, now: float, ctx: ServiceContext) -> bool:
    """Within one validity period after the survey expired: a reply is told it came late, after that it is unsolicited."""
    return now < survey.expires_at + ctx.settings.survey_validity


# ------------------------------------------------------------------ expiry
async def lapsed_surveys(ctx: ServiceContext, now: float, limit: int) -> list[Survey]:
    """Up to `limit` surveys still open whose validity ended by `now`, the longest lapsed first (read by the partial
    index surveys_lapsing: closed surveys are never scanned). One query per open status: SQLite reads that index
    for `status = ?`, not for the `status IN (?, ?)` a list gives."""
    lapsed = [survey for status in OPEN for survey in await ctx.store.find(
        Survey, order_by="expires_at", limit=limit, status=status, expires_at__lte=now)]  # fmt: skip
    return sorted(lapsed, key=lambda s: s.expires_at)[:limit]


async def expire_lapsed(ctx: ServiceContext, msisdns: Iterable[str], now: float) -> Outcome:
    """Close these subscribers' open surveys whose validity ended by `now`, as read under their serial keys (a reply
    handled meanwhile stands): `_closed_at_end`. No text to anyone: a reply tells the subscriber it came late."""
    outcome = Outcome()
    for msisdn in msisdns:
        for survey in await ctx.store.find(Survey, msisdn=msisdn, status__in=list(OPEN)):
            if survey.expires_at <= now:
                outcome.put(_closed_at_end(survey))
    return outcome


# --------------------------------------------------------------- aggregates
def _stats(scores: list[int]) -> dict[str, Any]:
    count = len(scores)
    satisfied = sum(1 for s in scores if s in SATISFIED)
    return {
        "count": count,
        "mean": round(sum(scores) / count, 4) if count else None,
        "satisfied": satisfied,
        "satisfied_share": round(satisfied / count, 4) if count else None,
        "distribution": {str(s): scores.count(s) for s in SCORES},
    }


def _response(surveys: list[Survey]) -> dict[str, Any]:
    """A group's ratings (`_stats`) and the surveys sent in it, rated or not, with the share rated (response_rate): an
    agent or a channel whose surveys all went unanswered (expired, invalid, superseded) is one with count 0."""
    scores = [s.rating for s in surveys if s.rating is not None]
    return {**_stats(scores), "surveys": len(surveys), "response_rate": round(len(scores) / len(surveys), 4)}


def _channel_matches(channel: str, wanted: str) -> bool:
    """`store:12` matches itself; `store` matches `store` and every `store:<id>`."""
    return channel == wanted or channel.startswith(wanted + ":")


async def aggregates(
    ctx: ServiceContext,
    *,
    channel: str | None = None,
    agent: str | None = None,
    since: float | None = None,
    until: float | None = None,
    bucket: str | None = None,
) -> dict[str, Any]:
    """Ratings of surveys sent in [since, until) per channel and per agent, and per day/month with `bucket`.

    Each group: count (ratings), mean (1 = very satisfied ... 5), satisfied
    (ratings 1-2) and satisfied_share, distribution {"1".."5": count}.
    `surveys` counts every survey sent under the same filters, rated or not,
    `response_rate` the share rated; each channel, agent and period has its own
    two (`_response`), so one whose surveys all went unanswered is listed.

    `channel` and `agent` are names as request_survey takes them (`agent=""`: the surveys sent with none), `since`
    and `until` epoch seconds or aware datetimes (`epoch_seconds`); ValueError for anything else, which matched
    nothing and answered zero surveys as if there had been none.
    """
    channel = None if channel is None else checked_channel(channel)
    agent = agent if agent in (None, "") else checked_agent(agent)
    since, until = epoch_seconds("since", since), epoch_seconds("until", until)
    if bucket not in (None, "day", "month"):
        raise ValueError(f"bucket must be 'day' or 'month'; got {bucket!r}")
    filters: dict[str, Any] = {}
    if agent is not None:
        filters["agent"] = agent
    if since is not None:
        filters["created_at__gte"] = since
    if until is not None:
        filters["created_at__lt"] = until
    surveys = [s for s in await ctx.store.find(Survey, order_by="created_at", **filters)
               if channel is None or _channel_matches(s.channel, channel)]  # fmt: skip
    rated = [s for s in surveys if s.rating is not None]

    by_channel: dict[str, list[Survey]] = defaultdict(list)
    by_agent: dict[str, list[Survey]] = defaultdict(list)
    by_period: dict[str, list[Survey]] = defaultdict(list)
    for s in surveys:
        by_channel[s.channel].append(s)
        if s.agent:
            by_agent[s.agent].append(s)
        if bucket is not None:
            day = ctx.local_date(s.created_at)
            by_period[day.isoformat() if bucket == "day" else period_of(day)].append(s)
    result: dict[str, Any] = {
        "filters": {"channel": channel, "agent": agent, "since": since, "until": until, "bucket": bucket},
        "surveys": len(surveys),
        "response_rate": round(len(rated) / len(surveys), 4) if surveys else None,
        "overall": _stats([s.rating for s in rated]),
        "by_channel": {name: _response(sent) for name, sent in sorted(by_channel.items())},
        "by_agent": {name: _response(sent) for name, sent in sorted(by_agent.items())},
    }
    if bucket is not None:
        result["over_time"] = [{"period": period, **_response(sent)} for period, sent in sorted(by_period.items())]
    return result
