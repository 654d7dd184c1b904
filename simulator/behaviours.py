"""The fleet's subscribers and what they do: checked dialogues, and reactions to what arrives unasked.

A `Phone` is one fleet subscriber: a `Handset` (simulator/handset.py) that
is also a small state machine. Its `state` is idle, busy (one dialogue at a
time) or retired (a dialogue of it failed, so what the server holds for it is
unknown); while busy, `expecting` says what the current dialogue waits for:
the numbers it talks to (and, for session-based dialogues, a predicate on
each message). Every text that arrives is

1. a notice by its content (a "report handled" text, a reminder, a refund)
   -> recorded, whatever the phone is doing;
2. for the current dialogue (from a number it talks to, or matching its
   predicate) -> the dialogue's inbox, where `expect()` finds it;
3. anything else -> arrived unasked: the fleet records it and reacts as the
   scenario says (a survey is answered or not, spam is reported or not);
   a reaction is a checked dialogue queued on the phone, run when it is idle.

The phone also holds the facts its dialogues are checked against: the
services it holds (`subscriptions`), the confirmations it left unanswered
(`pending_orders`, with their reply codes), its spam reports today, the
numbers it reported.

A session-based dialogue (USSD, a later issue) fits the same way: it sets
`expecting` to its session (`Expectation(sources={"*10086#"}, match=<its
session id / ussd_service_op>)`), sends with the USSD fields, and takes the
screens from `expect()`; a push from the network that opens a session
arrives unasked and becomes a reaction.

Behaviours (each returns a `DialogueResult`; outcomes in brackets):

- `query`: 0000 -> the listing, checked against `subscriptions` -> some serials -> one confirmation
  each [unsubscribed | listed | none]
- `order`: keyword -> confirmation (service, fee, phone, reply code, validity) -> confirm / decline /
  ignore [ordered | declined | ignored | lapsed]
- `spam_report`: `<number>*<text>`, or the bare text -> asked for the number -> the number; -> ack with
  a report id of its own [reported | reported_two_step | rate_limited]
- `answer_survey`: a survey that arrived -> valid rating (4-5: the reason asked for and given), nonsense
  (re-prompted), or after its validity [rated | rated_with_reason | reprompted | invalid | late]
- `chatter`: A texts B, both fleet subscribers; B must receive the text unchanged [delivered]
- `spammer_round`: a spammer texts victims; each text must be accepted and arrive, or be refused as
  the victims' reports require (0x401 for a victim who reported it, 0x400 once enough did) [sent | blocked]
- `help`: 帮助 / 0 -> the help text [help]
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from gateway.config import DEFAULT_RATING_WORDS, Config
from gateway.smpp.constants import CommandStatus
from gateway.smpp.pdu import Pdu

from .dialogues import (
    DialogueFailed,
    DialogueResult,
    Plan,
    Run,
    Service,
    listed_item,
    parse_listing,
    run_dialogue,
)
from .esme import Esme, EsmeError, ShortMessage
from .handset import Handset, Resend
from .scenario import Scenario

__all__ = [
    "BUSY",
    "IDLE",
    "RETIRED",
    "Env",
    "Expectation",
    "Phone",
    "PostOffice",
    "Rules",
    "Spammer",
    "answer_survey",
    "chatter",
    "help_text",
    "order",
    "query",
    "spam_report",
    "spammer_round",
]

IDLE, BUSY, RETIRED = "idle", "busy", "retired"
AWAY = "away"  # idle, its bind lost and being bound again (--rebind): picked for nothing until it is back
SENDER_BLOCKED = CommandStatus.SMSGW_RSENDERBLOCKED  # 0x400: blocked network-wide
BLOCKED_BY_RECIPIENT = CommandStatus.SMSGW_RBLOCKEDBYRECIPIENT  # 0x401: the recipient reported the sender
LATE_MARGIN = 0.5  # seconds past a survey's validity (from its arrival, on the target's clock) before a late answer
LAPSED = ("confirmation.expired", "confirmation.nothing_pending")  # an answer to a confirmation that lapsed
REPORT_MOS = 2  # the MOs of a spam report at most: the forwarded text, then the number (two-step)
LAPSE_SLACK = 2.0  # seconds before a confirmation lapses in which the fleet cannot tell whether the server counts it
RECENT = 4  # arrivals a phone remembers (since its last MO) to tell a copy of one
BIND_LOST = -1  # in Phone.recent: a bind its texts arrive on was lost there (no hash() is -1)
DAY = 86400.0

SPAM_TEXTS = (
    "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取",
    "【贷款】无抵押当天放款，低息，详询客服",
    "【发票】代开各类发票，量大从优，联系王经理",
    "您的账户存在异常，请立即登录 http://bank-x.cn 验证",
)
CHAT_TEXTS = ("晚上一起吃饭吗？", "到了给我回个电话", "Meeting moved to 3pm", "收到，谢谢！", "OK see you tomorrow")
# Longer than one UCS2 SMS (70 characters): it travels as a concatenated message and must arrive whole.
LONG_CHAT = (
    "周末的安排：上午九点在公司楼下集合，先去超市买东西，然后开车去郊外的农家乐吃午饭，下午爬山，"
    "晚上回城一起看电影。记得带上身份证和充电宝，天气预报说下午可能有小雨，别忘了带伞。"
)
REASONS = ("排队太久", "营业员态度不好", "问题没有解决", "回复太慢")
NONSENSE = ("什么调查", "不知道", "你好", "好的谢谢")


# ---------------------------------------------------------------- the target
def _survey_words(rating_words: dict[str, int]) -> dict[int, str]:
    """The word a subscriber rates each score with: the first the target's [services] rating_words has for it (a
    score it has none for is rated in digits). The words of another config, the built-in Chinese ones in an English
    target's survey, would be re-prompted."""
    words: dict[int, str] = {}
    for word, score in rating_words.items():
        words.setdefault(score, word)
    return words


@dataclass(frozen=True)
class Rules:
    """The numbers behaviours check against and the words they send, from the target's config (its [services] table)."""

    confirmation_validity: float = 86400.0
    confirm_words: tuple[str, ...] = ("是", "Y", "YES", "1")
    decline_words: tuple[str, ...] = ("否", "N", "NO")
    query_keyword: str = "0000"
    spam_block_threshold: int = 5
    spam_block_window: float = 86400.0
    spam_reports_per_day: int = 20
    utc_offset_hours: float = 8.0  # the operator's calendar, on which a reporter's reports per day are counted
    short_codes: frozenset[str] = frozenset()
    notified_sps: dict[str, str] = field(default_factory=dict)  # service id -> SP account notified
    survey_words: dict[int, str] = field(default_factory=lambda: _survey_words(DEFAULT_RATING_WORDS))  # score -> word

    def day_start(self, at: float) -> float:
        """The midnight that begins the operator's calendar day `at` (seconds since the epoch) falls on: from it the
        target counts a reporter's reports towards spam_reports_per_day (handlers/spam_report.py)."""
        offset = self.utc_offset_hours * 3600
        return (at + offset) // DAY * DAY - offset

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        s = config.services
        codes = {s.operator, s.spam_report, s.rating, *(e.service_code for e in config.catalogue)}
        codes |= {c.code for c in config.short_codes}
        return cls(
            confirmation_validity=s.confirmation_validity, confirm_words=s.confirm_words, decline_words=s.decline_words,
            query_keyword=s.query_keyword, spam_block_threshold=s.spam_block_threshold, spam_block_window=s.spam_block_window,
            spam_reports_per_day=s.spam_reports_per_day, utc_offset_hours=s.utc_offset_hours, short_codes=frozenset(codes),
            notified_sps={e.id: e.sp for e in config.catalogue}, survey_words=_survey_words(s.rating_words),
        )  # fmt: skip


class PostOffice:
    """Texts between numbers the fleet holds (chatter, spam to victims): who waits for which."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], asyncio.Future[ShortMessage]] = {}
        self._ever: set[int] = set()  # hashes of every (source, destination) expected in the run (`ever_sent`)

    def expect(self, source: str, destination: str) -> asyncio.Future[ShortMessage]:
        future: asyncio.Future[ShortMessage] = asyncio.get_running_loop().create_future()
        self._waiting[(source, destination)] = future
        self._ever.add(hash((source, destination)))
        return future

    def ever_sent(self, source: str, destination: str) -> bool:
        """Whether `source` texted `destination` at some time in the run: one from it to anyone else was delivered to
        the wrong subscriber (one that comes after its dialogue stopped waiting is late, or a copy)."""
        return hash((source, destination)) in self._ever

    def forget(self, source: str, destination: str) -> None:
        self._waiting.pop((source, destination), None)

    def cut_off(self, destinations: set[str], error: Exception) -> None:
        """The bind these numbers receive on is gone: the dialogues waiting for a text to them fail with `error`."""
        for (source, destination), future in list(self._waiting.items()):
            if destination in destinations:
                del self._waiting[(source, destination)]
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # seen: its dialogue may fail before it awaits it (an MO unanswered)

    def arrived(self, message: ShortMessage) -> bool:
        """A text between fleet numbers arrived: True when a dialogue was waiting for it."""
        future = self._waiting.pop((message.source, message.destination), None)
        if future is None or future.done():
            return False
        future.set_result(message)
        return True


@dataclass
class Env:
    """What behaviours need from the fleet."""

    plan: Plan
    rules: Rules
    scenario: Scenario
    rng: random.Random
    post: PostOffice
    timeout: float
    # ("ORDER" | "CANCEL", service id, the subscriber's MSISDN), or ("refused", status name) for an expected refusal
    on_event: Callable[..., None] = lambda event, detail, msisdn="": None
    on_mo: Callable[[], None] = lambda: None  # an MO the target accepted, as its submit_sm_resp arrives
    resend: Resend | None = None  # --rebind: MOs answered ESME_RTHROTTLED are sent again (Handset.send)
    report_ids: set[str] = field(default_factory=set)  # the spam reports' ids acknowledged in the run (each its own)
    clock: Callable[[], float] = time.time  # the target's clock (seconds since the epoch): the days reports count on
    response_timeout: float = 10.0  # seconds the fleet's binds wait for the answer to a PDU (Esme response_timeout)

    @property
    def report_lasts(self) -> float:
        """The longest a spam report's dialogue takes: each of its MOs (REPORT_MOS) answered within response_timeout,
        sent again within `timeout` while refused ESME_RTHROTTLED (--rebind), and replied to within `timeout`."""
        return REPORT_MOS * (self.response_timeout + 2 * self.timeout)

    @property
    def order_services(self) -> list[Service]:
        keywords = self.scenario.behaviours.order.keywords
        services = list(self.plan.services.values())
        if keywords:
            wanted = {k.upper() for k in keywords}
            services = [s for s in services if s.keyword.upper() in wanted]
        return services


# ----------------------------------------------------------------- the phone
@dataclass(frozen=True, slots=True)
class Expectation:
    """What the current dialogue takes: texts from `sources`, or any text `match` accepts (a session's)."""

    sources: frozenset[str]
    match: Callable[[ShortMessage], bool] | None = None

    def wants(self, message: ShortMessage) -> bool:
        return message.source in self.sources or (self.match is not None and self.match(message))


@dataclass(slots=True)
class Waiting:
    """A confirmation the subscriber left unanswered: its reply code, and when it lapses on the target's clock (Env.clock,
    the one its validity runs on): not before `lapses_from` (its order went, plus the validity), by `lapses_by` (its
    confirmation came, plus the validity)."""

    code: str
    lapses_from: float
    lapses_by: float


class Phone(Handset):
    """One fleet subscriber: see the module docstring."""

    def __init__(self, msisdn: str, esme: Esme, fleet: Any) -> None:
        super().__init__(msisdn, esme)
        self.fleet = fleet  # .notice_kind(message) and .unasked(phone, message)
        self.state = IDLE
        self.expecting: Expectation | None = None
        self.reactions: deque[tuple[str, Callable[[], Awaitable[DialogueResult]]]] = deque()  # (kind, reaction)
        self.pending_orders: dict[str, Waiting] = {}
        # (began, acknowledged) on the target's clock (Env.clock), of its spam reports the target may count today
        self.reports: list[tuple[float, float]] = []
        self.reported: set[str] = set()  # numbers it reported (or is reporting)
        self.held: tuple[str, ...] = ()  # services it held at some time in this run (a repeat order has no free trial)
        # Hashes of (source, text) of what arrived since its last MO, the last RECENT and the arrival being judged: one
        # that is one of the RECENT before it is a copy (arrived_again; simulator/fleet.py Fleet._copy). Hashes, not
        # texts: 100k phones. BIND_LOST among them: a bind lost (bind_lost).
        self.recent: tuple[int, ...] = ()
        # Hashes of (source, text) of spam the target accepted for it whose round stopped waiting once it was excused
        # (Spammer.excused), the last RECENT since its last MO: each may yet come, late, and is then that text (came_late).
        self.withheld: tuple[int, ...] = ()

    def send(self, to: str, text: str, resend: Resend | None = None, **fields: object) -> Awaitable[tuple[Pdu, float, float]]:
        # After an MO a text may legitimately repeat an earlier one word for word (a second survey, the same
        # help text): only what arrives with no MO of the phone between counts as a copy.
        self.recent = self.withheld = ()
        return super().send(to, text, resend, **fields)

    def deliver(self, message: ShortMessage) -> None:
        arrival = hash((message.source, message.text))
        # One of the texts that came since its last MO, come again: a copy (Fleet._copy judges it), no dialogue's
        # reply, even from the number the dialogue waits for (the target's retry of a text the fleet answered late).
        self._remember(arrival)
        again = self.arrived_again(arrival)
        fleet = self.fleet
        expecting = self.expecting
        if not again and expecting is not None and expecting.wants(message) and fleet.notice_kind(message) is None:
            super().deliver(message)
        else:
            fleet.unasked(self, message)

    def bind_lost(self) -> None:
        """A bind its texts arrive on was lost (--rebind binds it again): a text that arrived before may come again, the
        target's redelivery of one whose answer it had not committed (Fleet._copy tells it apart)."""
        self._remember(BIND_LOST)

    def withhold(self, source: str, text: str) -> None:
        """A text from `source` accepted for it that the round waiting for it gave up on, its victim excused: the target
        may withhold it, or deliver it late (taken up before the report was committed)."""
        self.withheld = _kept(self.withheld, hash((source, text)))

    def came_late(self, message: ShortMessage) -> bool:
        """Whether `message` is a text withheld (withhold) come after all: True once for each, so a second is a copy."""
        arrival = hash((message.source, message.text))
        if arrival not in self.withheld:
            return False
        at = self.withheld.index(arrival)
        self.withheld = self.withheld[:at] + self.withheld[at + 1:]
        return True

    def arrived_again(self, arrival: int) -> bool:
        """Whether `arrival`, the last remembered, is one of the RECENT arrivals before it: a copy."""
        return self.recent.count(arrival) > 1

    def _remember(self, arrival: int) -> None:
        self.recent = _kept(self.recent, arrival, RECENT + 1)

    def begin(self, expectation: Expectation) -> None:
        self.expecting = expectation

    def end(self) -> list[ShortMessage]:
        """The dialogue is over: what it left in the inbox (nobody asked for it)."""
        self.expecting = None
        return self.take_inbox()

    # -------------------------------------------------------- confirmations
    def waiting_orders(self, now: float) -> dict[str, Waiting]:
        """Unanswered confirmations the server may still hold open at `now`, on its clock (surely lapsed ones dropped)."""
        for service_id in [s for s, w in self.pending_orders.items() if w.lapses_by < now]:
            del self.pending_orders[service_id]
        return self.pending_orders

    def orders_settled(self, now: float) -> bool:
        """No confirmation about to lapse at `now`, on the server's clock: around that moment the fleet cannot tell
        whether the server still counts it (reply codes and a bare Y depend on it)."""
        return all(not (w.lapses_from - LAPSE_SLACK <= now <= w.lapses_by) for w in self.pending_orders.values())

    def can_order(self, services: Iterable[Service], now: float) -> bool:
        return self.orders_settled(now) and any(s.id not in self.subscriptions for s in services)

    # -------------------------------------------------------- spam reports
    def reports_since(self, midnight: float) -> tuple[int, int]:
        """Of its spam reports, how many the target counts from `midnight` (the start of its day) on: at least those
        begun since, at most those acknowledged since (one begun before and acknowledged after may count either day).
        The earlier ones are forgotten."""
        self.reports = [r for r in self.reports if r[1] >= midnight]
        return sum(1 for began, _ in self.reports if began >= midnight), len(self.reports)

    def may_report(self, midnight: float, limit: int) -> bool:
        """Whether the target certainly takes a report of it today (the day beginning at `midnight`)."""
        return self.reports_since(midnight)[1] < limit


def _kept(kept: tuple[int, ...], arrival: int, size: int = RECENT) -> tuple[int, ...]:
    """`kept` with `arrival` added, the last `size`."""
    return (*kept[1:], arrival) if len(kept) >= size else (*kept, arrival)


class Spammer(Handset):
    """A number of another account that texts fleet subscribers; tracks who reported it."""

    def __init__(self, msisdn: str, esme: Esme, block_window: float = math.inf, clock: Callable[[], float] = time.time) -> None:
        super().__init__(msisdn, esme)
        self.state = IDLE
        self.block_window = block_window  # the target's spam_block_window: only reports within it count towards a block
        self.clock = clock  # the target's (Env.clock): the one its reports are filed on, and block_window measured on
        self.reporting: set[str] = set()  # victims whose report is queued, on its way or done (a superset of `sent`)
        self.sent: set[str] = set()  # victims whose report began (its MO may have gone), not refused: a superset of `acked`
        self.under_way: set[str] = set()  # victims whose report began and has not ended
        self.acked: set[str] = set()  # victims whose report was acknowledged
        self._began: dict[str, float] = {}  # victim -> when its report began (on `clock`), for those in `sent`
        self._acked_together = 0  # the most acks known to have been filed within one block_window (_filed_together)
        self.refused_seen = False  # a round was refused with 0x400
        self.rounds = 0
        self._news: asyncio.Future[None] | None = None  # done at the next report acknowledged, refused or ended (news())

    def must_be_blocked(self, threshold: int) -> bool:
        """Whether the target must have blocked the spammer network-wide: `threshold` victims' reports were acknowledged
        that it certainly filed within one spam_block_window (each filed between its beginning and its ack)."""
        return self._acked_together >= threshold

    def may_be_blocked(self, threshold: int) -> bool:
        """Whether the target may have blocked the spammer: `threshold` victims' reports were acknowledged (whether it
        filed them within one spam_block_window the fleet may not know)."""
        return len(self.acked) >= threshold

    def excused(self, victim: str, threshold: int) -> bool:
        """Whether a text to `victim` the target accepted may never arrive: the victim's report of the spammer was
        acknowledged, or enough victims' were to block it network-wide. The target refuses such a text when it takes it
        up (from the victim's queue, or for a retry) once the report is committed, and the ack follows the commit."""
        return victim in self.acked or self.may_be_blocked(threshold)

    def news(self) -> asyncio.Future[None]:
        """A future done at the next change in the reports of the spammer: one acknowledged, refused or ended (a round
        waiting for its texts, or for the acks its refusals call for, looks again then)."""
        if self._news is None or self._news.done():
            self._news = asyncio.get_running_loop().create_future()
        return self._news

    @staticmethod
    def allowed(victim: str, threshold: int, acked: set[str], sent: set[str], blocked: bool) -> frozenset[int]:
        """The submit_sm statuses a text to `victim` may get, from what the fleet knew of the reports: `acked` before the
        text went (the target had filed them: only the refusals they call for; `blocked`: must_be_blocked then), `sent`
        when its answer came (a report begun later cannot have been filed before it). A refusal the acks did not account
        for yet must be confirmed by the acks that follow (_unconfirmed)."""
        if blocked:
            return frozenset({SENDER_BLOCKED})
        if victim in acked:
            allowed = {BLOCKED_BY_RECIPIENT}
        elif victim in sent:
            allowed = {0, BLOCKED_BY_RECIPIENT}
        else:
            allowed = {0}
        if len(sent) >= threshold:  # enough reports may have been filed already
            allowed.add(SENDER_BLOCKED)
        return frozenset(allowed)

    # reporting hooks (the fleet calls report_queued as a victim's report reaction is queued, spam_report the others)
    def report_queued(self, victim: str) -> None:
        self.reporting.add(victim)

    def report_sent(self, victim: str) -> None:
        self.reporting.add(victim)
        self.sent.add(victim)
        self.under_way.add(victim)
        self._began[victim] = self.clock()

    def report_acked(self, victim: str) -> None:
        self.acked.add(victim)
        self._acked_together = max(self._acked_together, self._filed_together(self.clock()))
        self._tell()

    def _filed_together(self, now: float) -> int:
        """The acknowledged reports the target filed within one block_window of the one acknowledged `now`: those begun
        less than the window before it (as it files a report, the target counts the distinct reporters with open reports
        filed within spam_block_window). Each ack is the latest so far: every set within one window is counted at its
        last ack."""
        since = now - self.block_window
        return sum(1 for victim in self.acked if self._began.get(victim, now) > since)

    def report_refused(self, victim: str) -> None:
        if victim not in self.acked:
            self.reporting.discard(victim)
            self.sent.discard(victim)
        self._tell()

    def report_ended(self, victim: str) -> None:
        self.under_way.discard(victim)
        self._tell()

    def _tell(self) -> None:
        if self._news is not None and not self._news.done():
            self._news.set_result(None)


# ----------------------------------------------------------------- dialogues
async def _dialogue(kind: str, phone: Handset, env: Env, sources: Iterable[str], body: Callable[[Run], Awaitable[str]]) -> DialogueResult:
    is_phone = isinstance(phone, Phone)
    if is_phone:
        phone.begin(Expectation(frozenset(sources)))
    result = None
    try:
        result = await run_dialogue(kind, phone, env.plan, env.timeout, body, env.on_mo, env.resend)
        return result
    finally:
        if is_phone:
            for message in phone.end():  # replies nobody asked for (a duplicate, one after a timeout)
                phone.fleet.unasked(phone, message, after_failure=result is None or not result.ok)


async def query(phone: Phone, env: Env) -> DialogueResult:
    """0000 -> the listing, exactly the services the phone holds, numbered 1..n -> some serials -> one
    unsubscribe confirmation per serial (any order), naming the service and the SP's company."""
    plan, rng, settings = env.plan, env.rng, env.scenario.behaviours.query
    operator = plan.operator

    async def body(run: Run) -> str:
        await run.send(operator, env.rules.query_keyword)
        if not phone.subscriptions:
            await run.reply("0000->none", operator, "unsubscribe.none")
            return "none"
        items = parse_listing(run, await run.receive("0000->listing", operator))
        held = sorted(plan.services[s].listed() for s in phone.subscriptions)
        listed = sorted(map(listed_item, items))
        if listed != held:
            run.fail(f"listing shows {listed}, the subscriber holds {held}")
        if rng.random() >= settings.unsubscribe:
            return "listed"
        by_item = {plan.services[s].listed(): s for s in phone.subscriptions}
        count = rng.randint(1, min(settings.max_serials, len(items)))
        serials = sorted(rng.sample(range(1, len(items) + 1), count))
        chosen = {by_item[listed_item(items[n - 1])] for n in serials}
        await run.send(operator, rng.choice((",", "，")).join(map(str, serials)), label="serials")
        while chosen:
            _, done = await run.reply("serials->unsubscribed", operator, "unsubscribe.done")
            service = next((s for s in chosen if _same(done, plan.services[s].fields(operator))), None)
            if service is None:
                run.fail(f"confirmation for {done.get('service')!r} ({done.get('sp_company')!r}); "
                         f"expected one for {sorted(plan.services[s].name for s in chosen)}")  # fmt: skip
            chosen.discard(service)
            phone.subscriptions.remove(service)
            env.on_event("CANCEL", service, phone.msisdn)
        return "unsubscribed"

    return await _dialogue("query", phone, env, (operator,), body)


def _same(fields: dict[str, str], expected: dict[str, str]) -> bool:
    return all(v == expected[k] for k, v in fields.items() if k in expected)


async def order(phone: Phone, env: Env, variant: str) -> DialogueResult:
    """Order a service the phone does not hold: the confirmation must name it (fee, phone, validity) with the
    reply code the server owes (the same one again for a service still waiting, else the lowest free); then
    confirm (-> success notice), decline (-> "not ordered" naming it) or ignore (nothing: it lapses). Where the
    confirmation's validity may have ended on the target's clock (Env.clock) before the target read a text, it may
    have lapsed instead: its confirmation not sent, an answer told it expired or that nothing waits [lapsed]."""
    plan, rng, rules = env.plan, env.rng, env.rules
    operator = plan.operator
    candidates = [s for s in env.order_services if s.id not in phone.subscriptions]
    service = rng.choice(candidates)
    sent = env.clock()
    waiting = dict(phone.waiting_orders(sent))
    others = {sid: w for sid, w in waiting.items() if sid != service.id}

    def may_have_lapsed() -> bool:
        return env.clock() >= sent + rules.confirmation_validity

    def lapsed(run: Run, key: str, told: dict[str, str]) -> str:
        """The answer to the confirmation told lapsed (`key`, one of LAPSED): right only once it may have been."""
        if not may_have_lapsed():
            run.fail(f"{key}, yet the confirmation's validity ({rules.confirmation_validity:g} s) had not ended on the "
                     "target's clock")  # fmt: skip
        run.check(told, service.fields(operator))
        return "lapsed"

    async def body(run: Run) -> str:
        await run.send(service.service_code, service.keyword, label="order")
        # A confirmation goes only while its order waits: none once the target's clock passed its end.
        answer = await run.reply_unless_withheld("order->confirmation", operator, service.request, withheld=may_have_lapsed)
        if answer is None:
            return "lapsed"
        _, request = answer
        received = env.clock()
        run.check(request, {**service.fields(operator), "validity": plan.confirmation_validity})
        owed = _codes_owed(service.id, waiting, received)
        code = request.get("reply_code", min(owed))  # a config's text may not show it
        if code not in owed:
            run.fail(f"reply_code={code!r}, expected {' or '.join(map(repr, sorted(owed)))}")
        run.result.data["reply_code"] = code
        if variant == "ignore":
            validity = rules.confirmation_validity
            phone.pending_orders[service.id] = Waiting(code, sent + validity, received + validity)
            return "ignored"
        phone.pending_orders.pop(service.id, None)  # answered now, either way
        if variant == "confirm":
            word = code if others else rng.choice(rules.confirm_words)
            await run.send(operator, word, label="confirm")
            # The fleet's subscribers are fresh (README): a service the phone never held in this run was never
            # ordered, and its order brings the free trial; the repeat-order wording (charged from next month) is
            # wrong then. Which trial wording (this month / next) is left open: the target's clock may be simulated.
            first = service.id not in phone.held
            key, notice = await run.reply("confirm->ordered", operator, *service.ordered(first), *LAPSED)
            if key in LAPSED:
                return lapsed(run, key, notice)
            run.check(notice, service.fields(operator))
            phone.subscriptions.append(service.id)
            if first:
                phone.held += (service.id,)
            env.on_event("ORDER", service.id, phone.msisdn)
            return "ordered"
        word = "N" + code[1:] if others else rng.choice(rules.decline_words)
        await run.send(operator, word, label="decline")
        key, declined = await run.reply("decline->declined", operator, "confirmation.declined", *LAPSED)
        if key in LAPSED:
            return lapsed(run, key, declined)
        name = plan.texts.render("confirmation.service_name", sp_name=service.sp_name, service=service.name)
        run.check(declined, {"services": name})
        return "declined"

    return await _dialogue("order", phone, env, (operator, service.service_code), body)


def _codes_owed(service_id: str, waiting: dict[str, Waiting], answered_at: float) -> set[str]:
    """The reply codes the target may give a confirmation of `service_id`, ordered when `waiting` were open and
    answered at `answered_at` (on its clock): each of them that may have lapsed before the target read the order (by
    `answered_at`) either held or not."""
    unsure = [sid for sid, w in waiting.items() if w.lapses_from <= answered_at]
    return {_code_owed(service_id, {sid: w for sid, w in waiting.items() if sid not in lapsed})
            for n in range(len(unsure) + 1) for lapsed in combinations(unsure, n)}  # fmt: skip


def _code_owed(service_id: str, waiting: dict[str, Waiting]) -> str:
    """The reply code the target owes a confirmation of `service_id` while `waiting` are open: the same one again for
    it still waiting, else the lowest the others leave free."""
    same = waiting.get(service_id)
    if same is not None:
        return same.code
    used = {w.code for w in waiting.values()}
    return next(f"Y{n}" for n in range(1, len(used) + 2) if f"Y{n}" not in used)


async def spam_report(
    phone: Phone, env: Env, variant: str, reported: str, spam_text: str, *, spammer: Spammer | None = None
) -> DialogueResult:
    """Report `reported` to the spam code: `<number>*<text>` ("with_number") or the forwarded text, then the
    number when asked ("two_step"). The ack must carry the number and a report id of its own (one no other report
    of the run was given: Run.check_report_id); a subscriber who used up the day's reports must be told so instead."""
    plan, rng, limit = env.plan, env.rng, env.rules.spam_reports_per_day
    code, number = plan.spam_report, plan.national(reported)
    began = env.clock()
    midnight = env.rules.day_start(began)
    surely, maybe = phone.reports_since(midnight)
    # Told the day's limit is used up: the target may say so when it may count `limit` reports today; it must unless it
    # may count fewer, or the text reached it on the next day (a reply after the next midnight may show it did).
    refusable, acceptable = maybe >= limit, surely < limit
    phone.reported.add(reported)

    async def body(run: Run) -> str:
        if spammer is None:
            return await report(run)
        spammer.report_sent(phone.msisdn)
        try:
            return await report(run)
        finally:
            spammer.report_ended(phone.msisdn)

    async def report(run: Run) -> str:
        if variant == "with_number":
            label, taken = "report", "spam.ack"
            await run.send(code, f"{number}{rng.choice(('*', '＊'))}{spam_text}", label=label)
        else:
            label, taken = "forward", "spam.ask_number"
            await run.send(code, spam_text, label=label)
        step = f"{label}->{(taken if acceptable else 'spam.rate_limited').removeprefix('spam.')}"
        key, fields = await run.reply(step, code, taken, *(("spam.rate_limited",) if refusable else ()))
        if key == "spam.rate_limited":
            run.check(fields, {"limit": str(limit)})
            if spammer is not None:
                spammer.report_refused(phone.msisdn)
            return "rate_limited"
        if not acceptable and env.clock() < midnight + DAY:
            run.fail(f"{key}, expected spam.rate_limited: {surely} reports of the subscriber today, the limit {limit}")
        if variant != "with_number":
            run.check(fields, {"window": plan.spam_follow_up_window})
            await run.send(code, number, label="number")
            _, fields = await run.reply("number->ack", code, "spam.ack")
        run.check(fields, {"number": number})
        run.check_report_id(fields["report_id"], env.report_ids)
        phone.reports.append((began, env.clock()))
        if spammer is not None:
            spammer.report_acked(phone.msisdn)
        return "reported" if variant == "with_number" else "reported_two_step"

    return await _dialogue("spam", phone, env, (code,), body)


async def answer_survey(
    phone: Phone, env: Env, survey: ShortMessage, fields: dict[str, str], variant: str, arrived: float
) -> DialogueResult:
    """A survey that arrived unasked (at `arrived` on the target's clock, Env.clock), answered: "valid" (a rating in one
    of its forms; 4-5 bring the reason step), "invalid" (nonsense -> re-prompt -> a rating, or nonsense again ->
    "invalid"), "late" (after the validity the survey states -> "late"). A valid answer too close to the end of the
    validity to tell waits it out and must get "late" instead. The validity runs on the target's clock: a text the
    target may have read after it ended (its clock moved on while the text went) may be told it is late instead, or
    past one more validity period that nothing waits for a rating (SurveyTimes.judge)."""
    plan, rng, rules = env.plan, env.rng, env.rules
    code = plan.rating
    times = SurveyTimes(env.clock, arrived, _survey_validity(fields, plan))

    async def exchange(run: Run, label: str, text: str, step: str, *keys: str, lapsed: str = "rating.late",
                       asks: bool = False) -> str:  # fmt: skip
        """Send `text`; the reply's key: one of `keys`, or `lapsed` or rating.unsolicited where the target's clock allows;
        "" for none where it asks a question (`asks`): the target does not send one once the survey may have ended."""
        sent = env.clock()
        await run.send(code, text, label=label)
        keys_taken = (*keys, lapsed, "rating.unsolicited")
        if asks:
            answer = await run.reply_unless_withheld(step, code, *keys_taken, withheld=lambda: env.clock() >= times.unsure_from)
            if answer is None:
                return ""
            key, told = answer
        else:
            key, told = await run.reply(step, code, *keys_taken)
        times.judge(run, key, keys, lapsed, sent)
        if key == lapsed:
            run.check(told, {"validity": fields["validity"]})
        return key

    async def late(run: Run, label: str) -> str:
        # At most as long as on this machine's clock: a target's clock set back or frozen may never get there.
        give_up = survey.received_at + times.validity + LATE_MARGIN
        while (left := min(times.surely_late - env.clock(), give_up - time.monotonic())) > 0:
            await asyncio.sleep(left)
        await exchange(run, label, str(rng.randint(1, 5)), f"{label}->late")
        return "late"

    async def rate(run: Run, label: str) -> str:
        score = rng.randint(1, 5)
        form = rng.random()
        with_reason = score >= 4 and form < 0.25
        if with_reason:
            text = f"{score} {rng.choice(REASONS)}"
        elif form < 0.6:
            text = str(score)
        elif form < 0.8:
            text = chr(ord("０") + score)
        else:
            text = rules.survey_words.get(score, str(score))
        if with_reason:
            key = await exchange(run, label, text, f"{label}->thanks", "rating.thanks_reason")
            return "rated_with_reason" if key == "rating.thanks_reason" else "late"
        if score < 4:
            key = await exchange(run, label, text, f"{label}->thanks", "rating.thanks")
            return "rated" if key == "rating.thanks" else "late"
        key = await exchange(run, label, text, f"{label}->ask_reason", "rating.ask_reason", asks=True)
        if key != "rating.ask_reason":
            return "rated" if key == "" else "late"  # not asked (the survey ended): the rating stands
        key = await exchange(run, "reason", rng.choice(REASONS), "reason->thanks", "rating.thanks_reason", lapsed="rating.reason_late")
        return "rated_with_reason" if key == "rating.thanks_reason" else "rated"  # the rating stands, the reason came late

    async def body(run: Run) -> str:
        phone.transcript.append((survey.received_at, "<", survey.source, survey.text))
        run.step = "survey"
        run.check(fields, {"validity": plan.survey_validity, "service": plan.survey_service})
        if variant == "late":
            return await late(run, "late")
        if env.clock() > times.unsure_from:  # too close to the end to know which answer is due
            return await late(run, "rating")
        if variant == "valid":
            return await rate(run, "rating")
        if await exchange(run, "nonsense", rng.choice(NONSENSE), "nonsense->reprompt", "rating.reprompt", asks=True) != "rating.reprompt":
            return "late"
        if rng.random() < 0.5:
            outcome = await rate(run, "rating")
            return "reprompted" if outcome == "rated" else outcome
        key = await exchange(run, "nonsense", rng.choice(NONSENSE), "nonsense->invalid", "rating.invalid")
        return "invalid" if key == "rating.invalid" else "late"

    return await _dialogue("rating", phone, env, (code,), body)


@dataclass(slots=True)
class SurveyTimes:
    """When a survey the fleet answers ends on the target's clock (`clock`, Env.clock): `validity` after the target sent
    it, at most a little before it arrived (`arrived`): between unsure_from and ends_by."""

    clock: Callable[[], float]
    arrived: float
    validity: float

    @property
    def ends_by(self) -> float:
        return self.arrived + self.validity

    @property
    def unsure_from(self) -> float:
        """The earliest the survey may end: the target sent it at most half its validity, 2 s at most, before it arrived."""
        return self.ends_by - min(self.validity / 2, 2.0)

    @property
    def surely_late(self) -> float:
        """When a reply is surely past the survey's end (LATE_MARGIN after it at the latest)."""
        return self.ends_by + LATE_MARGIN

    def judge(self, run: Run, key: str, keys: tuple[str, ...], lapsed: str, sent: float) -> None:
        """Fail the dialogue unless the reply `key` to a text sent at `sent` (on the target's clock) fits when the
        target may have read the text, from `sent` to now: one of `keys` (the answer within the validity) if that was
        before the end, `lapsed` if within one validity period after it, rating.unsolicited if after that."""
        answered = self.clock()
        if key in keys:
            due = sent < self.ends_by
        elif key == lapsed:
            due = answered >= self.unsure_from and sent < self.ends_by + self.validity
        else:
            due = answered >= self.unsure_from + self.validity
        if not due:
            run.fail(f"{key}, yet the target read the text {sent - self.arrived:.3f} to {answered - self.arrived:.3f} s "
                     f"after the survey arrived, on its clock: valid for {self.validity:g} s")  # fmt: skip


def _survey_validity(fields: dict[str, str], plan: Plan) -> float:
    """Seconds a survey is valid for, as its text states: the target config's survey_validity when the text names
    the period that config's does (the texts round down to whole minutes: a QA config's 3 s reads "1分钟"), else the
    whole hours or minutes it names, else 24 h."""
    stated = fields.get("validity", "")
    if stated == plan.survey_validity:
        return plan.survey_seconds
    for key, unit in (("common.hours", 3600.0), ("common.minutes", 60.0)):
        named = plan.texts.match(key, stated)
        if named is not None and named["n"].isascii() and named["n"].isdigit():
            return int(named["n"]) * unit
    return 86400.0


async def help_text(phone: Phone, env: Env) -> DialogueResult:
    """帮助 (or 0) to the operator -> the help text."""
    plan = env.plan

    async def body(run: Run) -> str:
        await run.send(plan.operator, env.rng.choice(plan.help_words), label="help")
        await run.reply("help->help", plan.operator, "common.help")
        return "help"

    return await _dialogue("help", phone, env, (plan.operator,), body)


async def chatter(phone: Phone, env: Env, peer: Phone) -> DialogueResult:
    """A texts B (both fleet subscribers): B must receive the same text, whole (long ones in two parts)."""
    rng = env.rng
    text = LONG_CHAT if rng.random() < env.scenario.behaviours.chatter.long else rng.choice(CHAT_TEXTS)

    async def body(run: Run) -> str:
        arrival = env.post.expect(phone.msisdn, peer.msisdn)
        try:
            await run.send(peer.msisdn, text, label="chat", to_name="subscriber")
            run.step = "chat->peer"
            try:
                message = await asyncio.wait_for(arrival, env.timeout)
            except asyncio.TimeoutError:
                in_part = peer.arrived_in_part(phone.msisdn)
                if in_part:
                    run.fail(f"{peer.msisdn} received the text from {phone.msisdn} in part within {env.timeout:g} s: {in_part}")
                run.fail(f"{peer.msisdn} received nothing from {phone.msisdn} within {env.timeout:g} s")
        finally:
            env.post.forget(phone.msisdn, peer.msisdn)
        if message.text != text:
            run.fail(f"{peer.msisdn} received {message.text!r}, sent {text!r}")
        run.result.steps.append(("chat->peer", run.latency(message)))
        run.result.data["peer"] = peer.msisdn
        return "delivered"

    return await _dialogue("chatter", phone, env, (), body)


async def spammer_round(spammer: Spammer, env: Env, victims: list[Phone]) -> DialogueResult:
    """The spammer texts every victim at once (pipelined). Each submit_sm must get a status the victims'
    reports allow (`Spammer.allowed`); each accepted text must arrive at its victim. All refused with 0x400:
    the spammer is blocked [blocked]; else [sent]."""
    rng, post = env.rng, env.post
    threshold = env.rules.spam_block_threshold
    text = rng.choice(SPAM_TEXTS)
    result = DialogueResult("spammer", spammer.msisdn, False, "failed")
    spammer.transcript = []
    result.started_at = time.monotonic()
    step = "spam"
    try:
        acked, blocked = set(spammer.acked), spammer.must_be_blocked(threshold)
        arrivals = {v.msisdn: post.expect(spammer.msisdn, v.msisdn) for v in victims}
        # each with when it went and its submit_sm_resp arrived: a text delivered before that is timed to it
        responses = await asyncio.gather(*(spammer.send(v.msisdn, text, env.resend) for v in victims), return_exceptions=True)
        sent_reports = set(spammer.sent)
        allowed = {v.msisdn: spammer.allowed(v.msisdn, threshold, acked, sent_reports, blocked) for v in victims}
        accepted: list[str] = []
        refusals: list[int] = []
        expected: dict[str, int] = {}  # victim -> the refusal the reports allowed, confirmed by their acks (_unconfirmed)
        wrong: list[str] = []
        sent: dict[str, float] = {}
        answered: dict[str, float] = {}
        for victim, response in zip(victims, responses, strict=True):
            number = victim.msisdn
            if isinstance(response, BaseException):
                if isinstance(response, (EsmeError, OSError)):
                    raise DialogueFailed(step, f"spam to {number} not answered: {response}")
                raise response
            resp, sent[number], answered[number] = response
            status = resp.command_status
            if status not in allowed[number]:
                names = " or ".join(sorted(_status(s) for s in allowed[number]))
                wrong.append(f"to {number}: {_status(status)}, expected {names}")
            if status:
                post.forget(spammer.msisdn, number)
                refusals.append(status)
                if status in allowed[number]:  # a wrong refusal fails the round: it is no "refused (as expected)"
                    expected[number] = status
                else:
                    result.refused.append(_status(status))
            else:
                accepted.append(number)
                result.mo += 1
                env.on_mo()
        if wrong and not spammer.rounds and not spammer.reporting and set(refusals) == {SENDER_BLOCKED}:
            raise DialogueFailed(step, "blocked network-wide (0x400) before any report of this run: the target has seen "
                                       "this spammer before (an earlier run?); spammers need numbers it has not seen: "
                                       "another [spammers] start, or a fresh database")  # fmt: skip
        if wrong:
            raise DialogueFailed(step, f"{len(wrong)} of {len(victims)} answered wrongly ({len(spammer.acked)} victims' "
                                       f"reports acknowledged, threshold {threshold}): " + "; ".join(wrong[:5]))  # fmt: skip
        unconfirmed = await _unconfirmed(spammer, expected, acked, sent_reports, threshold, env.report_lasts)
        if unconfirmed:
            result.refused += [_status(s) for s in expected.values()]
            raise DialogueFailed(step, unconfirmed)
        for status in expected.values():
            env.on_event("refused", _status(status))
        if SENDER_BLOCKED in expected.values():
            spammer.refused_seen = True
        step = "spam->victim"
        pending = {arrivals[n]: n for n in accepted}
        missing = await _arrivals(spammer, pending, env.timeout, threshold)
        done = pending.keys() - missing
        for future in missing:
            post.forget(spammer.msisdn, pending[future])
        # A report that failed or never came excuses nothing. An excused text may yet come, late: it is that text.
        withheld = {pending[f] for f in missing if spammer.excused(pending[f], threshold)}
        for victim in victims:
            if victim.msisdn in withheld:
                victim.withhold(spammer.msisdn, text)
        lost = sorted({pending[f] for f in missing} - withheld)
        if lost:
            raise DialogueFailed(step, f"{len(lost)} victims received nothing within {env.timeout:g} s: {lost[:5]}")
        result.data["withheld"] = str(len(missing))
        for future in done:
            if future.exception() is not None:  # the victim's bind was lost (PostOffice.cut_off)
                raise DialogueFailed(step, f"to {pending[future]}: {future.exception()}")
            message = future.result()
            if message.text != text:
                raise DialogueFailed(step, f"{message.destination} received {message.text!r}, sent {text!r}")
            number = pending[future]
            result.steps.append((step, max(message.received_at, answered[number]) - sent[number]))  # as Run.latency
        spammer.rounds += 1
        blocked = bool(refusals) and not accepted and all(s == SENDER_BLOCKED for s in refusals)
        result.outcome = "blocked" if blocked else "sent"
        result.ok = True
        result.data["accepted"] = str(len(accepted))
    except DialogueFailed as exc:
        result.step, result.error = exc.step, exc.reason
    finally:
        for v in victims:
            post.forget(spammer.msisdn, v.msisdn)
    result.ended_at = time.monotonic()
    if not result.ok:
        result.transcript = spammer.transcript
    return result


async def _unconfirmed(spammer: Spammer, refused: dict[str, int], acked: set[str], sent: set[str], threshold: int,
                       within: float) -> str:  # fmt: skip
    """Why the round's refusals (`refused`: victim -> status) are wrong, or "": each 0x401 must be followed by its
    victim's ack, and a 0x400 by the acks of `threshold` victims among those whose report had begun when the answers
    came (`sent`: one begun later was not filed before them), unless the acks known before the texts went (`acked`)
    accounted for it already. Waits for those reports to end, at most `within` (the longest a report takes: each ends
    by its steps' timeouts, so the verdict does not hang on which ends first); one still under way then may yet be
    acknowledged, so nothing is judged wrong."""
    owed = {victim for victim, status in refused.items() if status == BLOCKED_BY_RECIPIENT} - acked
    block = SENDER_BLOCKED in refused.values() and len(acked) < threshold
    deadline = time.monotonic() + within
    while True:
        unacked = owed - spammer.acked
        filed = len(spammer.acked & sent)
        if not unacked and (not block or filed >= threshold):
            return ""
        left = deadline - time.monotonic()
        if not spammer.under_way & sent:
            break
        if left <= 0:
            return ""
        await asyncio.wait([spammer.news()], timeout=left)
    if unacked:
        return f"refused SMSGW_RBLOCKEDBYRECIPIENT (0x401) to {sorted(unacked)[:5]}, whose report of the spammer was never acknowledged"
    return (f"refused SMSGW_RSENDERBLOCKED (0x400) too early: of the {len(sent)} victims whose report had begun when the "
            f"answers came, {filed} had it acknowledged, threshold {threshold}")  # fmt: skip


async def _arrivals(spammer: Spammer, pending: dict[asyncio.Future[ShortMessage], str], timeout: float,
                    threshold: int) -> set[asyncio.Future[ShortMessage]]:  # fmt: skip
    """Wait for the round's accepted texts (`pending`: each arrival and its victim), within `timeout`: each until it
    arrives or its victim is excused (Spammer.excused: a report acknowledged meanwhile lets the target withhold it,
    and then the round stops waiting for it at once). Returns the arrivals that did not come."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = [f for f, victim in pending.items() if not f.done() and not spammer.excused(victim, threshold)]
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            return {f for f in pending if not f.done()}
        await asyncio.wait([*waiting, spammer.news()], timeout=left, return_when=asyncio.FIRST_COMPLETED)


def _status(status: int) -> str:
    return "ESME_ROK" if status == 0 else CommandStatus.name_of(status)
