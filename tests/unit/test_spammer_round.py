"""The fleet's check of a spammer's round (simulator.behaviours.spammer_round): each text the target accepts must
arrive, except at a victim whose report of the spammer was acknowledged meanwhile (the gateway may refuse such a text
when it is taken up from the victim's queue, once the report is committed); and a refusal as blocked network-wide must
be confirmed by the acks of the threshold's reports begun before it was answered."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from types import SimpleNamespace

from simulator.behaviours import (
    BLOCKED_BY_RECIPIENT,
    BUSY,
    SENDER_BLOCKED,
    Phone,
    PostOffice,
    Spammer,
    spammer_round,
)
from simulator.esme import BindLost, ShortMessage
from simulator.scenario import DEFAULT_SCENARIO, parse_scenario

SPAMMER, REPORTER, BYSTANDER = "8613000000001", "8613800000001", "8613800000002"
TEXT = "【中奖通知】恭喜您获得iPhone一部"


class Target:
    """Accepts every text; delivers it to everyone but `withheld` (then `meanwhile()`: a report's ack arriving)."""

    def __init__(self, post: PostOffice, withheld: str) -> None:
        self.post, self.withheld = post, withheld
        self.meanwhile = lambda: None
        self.sent: list[ShortMessage] = []  # each text as the victim would receive it

    def submissions(self, source: str, destination: str, text: str) -> list[tuple[str, str, str]]:
        return [(source, destination, text)]

    async def submit_pdus(self, pdus: list[tuple[str, str, str]]) -> tuple[list[SimpleNamespace], float]:
        [(source, destination, text)] = pdus
        self.sent.append(ShortMessage(source, destination, text, data_coding=8, esm_class=0, parts=1, received_at=0.0))
        if destination == self.withheld:
            asyncio.get_running_loop().call_soon(self.meanwhile)
        else:
            self.post.arrived(ShortMessage(source, destination, text, data_coding=8, esm_class=0, parts=1,
                                           received_at=time.monotonic()))  # fmt: skip
        return [SimpleNamespace(command_status=0)], time.monotonic()


async def round_withholding(withheld: str, *, reporting: set[str], acked_meanwhile: set[str],
                            bind_lost: BindLost | None = None) -> object:  # fmt: skip
    """A round to REPORTER and BYSTANDER, `reporting` having reported the spammer (no ack yet) when it starts; the
    acks of `acked_meanwhile` arrive while the texts are on their way, and `bind_lost` of the withheld victim's bind."""
    return (await round_and_victims(withheld, reporting=reporting, acked_meanwhile=acked_meanwhile, bind_lost=bind_lost))[0]


async def round_and_victims(withheld: str, *, reporting: set[str], acked_meanwhile: set[str],
                            bind_lost: BindLost | None = None) -> tuple[object, list[Phone], Target]:  # fmt: skip
    """round_withholding, with the victims and the target."""
    post = PostOffice()
    env = SimpleNamespace(rng=random.Random(1), post=post, rules=SimpleNamespace(spam_block_threshold=5), timeout=0.2, report_lasts=0.2,
                          on_event=lambda event, detail: None, on_mo=lambda: None, resend=None)  # fmt: skip
    target = Target(post, withheld)
    spammer = Spammer(SPAMMER, target)
    spammer.reporting |= reporting

    def meanwhile() -> None:
        for victim in acked_meanwhile:
            spammer.report_acked(victim)
        if bind_lost is not None:
            post.cut_off({withheld}, bind_lost)

    target.meanwhile = meanwhile
    victims = [Phone(n, target, fleet=None) for n in (REPORTER, BYSTANDER)]
    return await spammer_round(spammer, env, victims), victims, target


async def test_a_text_to_a_victim_whose_report_was_acknowledged_may_be_withheld() -> None:
    result = await round_withholding(REPORTER, reporting={REPORTER}, acked_meanwhile={REPORTER})
    assert (result.ok, result.outcome, result.data["withheld"]) == (True, "sent", "1"), result.error


async def test_a_withheld_text_that_comes_late_after_all_is_that_text_once() -> None:
    """The target may deliver a text the round gave up on (taken up before the report was committed), after the round:
    it is that text, no copy (spam texts repeat word for word: a victim that ignored the same text in an earlier round
    was judged sent it twice, regression review qa2); a second arrival of it is (Fleet.unasked judges it a copy)."""
    result, (reporter, bystander), target = await round_and_victims(REPORTER, reporting={REPORTER},
                                                                     acked_meanwhile={REPORTER})  # fmt: skip
    assert result.ok, result.error
    [late] = [m for m in target.sent if m.destination == REPORTER]
    assert not bystander.came_late(late)
    assert reporter.came_late(late)
    assert not reporter.came_late(late)  # once


async def test_a_withheld_text_is_no_longer_expected_after_the_victims_next_mo() -> None:
    """After the victim's next MO the text may be one it gets again legitimately (its recent texts start anew)."""
    _result, (reporter, _bystander), target = await round_and_victims(REPORTER, reporting={REPORTER},
                                                                      acked_meanwhile={REPORTER})  # fmt: skip
    [late] = [m for m in target.sent if m.destination == REPORTER]
    await reporter.send("10086", "0000")
    assert not reporter.came_late(late)


async def test_a_text_accepted_for_a_victim_who_reported_nothing_must_arrive() -> None:
    result = await round_withholding(BYSTANDER, reporting={REPORTER}, acked_meanwhile={REPORTER})
    assert not result.ok
    assert (result.step, result.error) == ("spam->victim", f"1 victims received nothing within 0.2 s: ['{BYSTANDER}']")


async def test_a_report_that_was_never_acknowledged_excuses_nothing() -> None:
    """A report dialogue that failed leaves its victim `reporting` for good; that must not hide a lost text."""
    result = await round_withholding(REPORTER, reporting={REPORTER}, acked_meanwhile=set())
    assert not result.ok and result.step == "spam->victim", result.error


async def test_texts_accepted_before_the_spammer_was_blocked_network_wide_may_be_withheld() -> None:
    """The threshold's acks came while the texts waited for their turn on the victims' binds: the gateway refuses them
    when it takes them up (the sender is blocked now, README "an MT still waiting ... when its sender is blocked"), so
    a victim who reported nothing gets nothing either. The round failed, 'victims received nothing'."""
    reporters = {f"86138000001{i:02d}" for i in range(5)}  # the threshold (5)
    result = await round_withholding(BYSTANDER, reporting=reporters, acked_meanwhile=reporters)
    assert (result.ok, result.data["withheld"]) == (True, "1"), result.error


async def test_a_text_to_a_victim_whose_bind_was_lost_fails_the_round_naming_the_loss() -> None:
    """The victim's receiver went while the text was on its way (the fleet cuts off the numbers it served): the round
    fails at that text, saying so, not as an internal error (BindLost escaping) nor as a text that never came."""
    result = await round_withholding(REPORTER, reporting=set(), acked_meanwhile=set(),
                                     bind_lost=BindLost("the bind rx #2 as 'handset' was lost"))  # fmt: skip
    assert (result.ok, result.step, result.error) == (False, "spam->victim", f"to {REPORTER}: the bind rx #2 as 'handset' was lost")


class Blocking:
    """Refuses every text as from a sender blocked network-wide (0x400); then `after()` (reports ending) runs."""

    def __init__(self) -> None:
        self.after = lambda: None

    def submissions(self, source: str, destination: str, text: str) -> list[tuple[str, str, str]]:
        return [(source, destination, text)]

    async def submit_pdus(self, pdus: list[tuple[str, str, str]]) -> tuple[list[SimpleNamespace], float]:
        asyncio.get_running_loop().call_soon(self.after)
        self.after = lambda: None
        return [SimpleNamespace(command_status=SENDER_BLOCKED)], time.monotonic()


async def round_refused_while_reports_under_way(acked_then: int, ended_then: int) -> tuple[object, Spammer]:
    """A round refused 0x400 while the threshold's 5 reports are under way (begun, none acknowledged); then the first
    `acked_then` are acknowledged and the first `ended_then` end."""
    reporters = [f"86138000001{i:02d}" for i in range(5)]
    env = SimpleNamespace(rng=random.Random(1), post=PostOffice(), rules=SimpleNamespace(spam_block_threshold=5),
                          timeout=0.5, report_lasts=0.5, on_event=lambda event, detail: None, on_mo=lambda: None, resend=None)  # fmt: skip
    target = Blocking()
    spammer = Spammer(SPAMMER, target)
    for reporter in reporters:
        spammer.report_sent(reporter)

    def after() -> None:
        for reporter in reporters[:acked_then]:
            spammer.report_acked(reporter)
        for reporter in reporters[:ended_then]:
            spammer.report_ended(reporter)

    target.after = after
    victims = [Phone(n, target, fleet=None) for n in (REPORTER, BYSTANDER)]
    return await spammer_round(spammer, env, victims), spammer


async def test_a_block_is_allowed_once_the_reports_begun_before_it_are_acknowledged() -> None:
    result, spammer = await round_refused_while_reports_under_way(acked_then=5, ended_then=5)
    assert (result.ok, result.outcome, spammer.refused_seen) == (True, "blocked", True), result.error


async def test_a_block_the_reports_begun_before_it_never_account_for_fails_the_round() -> None:
    """5 reports had begun when the texts were refused 0x400, as the threshold allows, but only 2 were acknowledged:
    the target blocked the spammer on fewer reports than the threshold. Before, 5 reports on their way were enough."""
    result, spammer = await round_refused_while_reports_under_way(acked_then=2, ended_then=5)
    assert (result.ok, result.step) == (False, "spam") and not spammer.refused_seen
    assert result.error == ("refused SMSGW_RSENDERBLOCKED (0x400) too early: of the 5 victims whose report had begun "
                            "when the answers came, 2 had it acknowledged, threshold 5")  # fmt: skip


async def test_a_block_is_not_judged_while_the_reports_it_may_rest_on_are_still_under_way() -> None:
    """Their acks may come after the round's timeout (a two-step report takes two replies): no correct target fails."""
    result, _spammer = await round_refused_while_reports_under_way(acked_then=2, ended_then=2)
    assert result.ok, result.error


async def test_news_of_the_reports_comes_once_per_change_so_a_waiting_round_sleeps_until_the_next() -> None:
    """A round waiting for its texts or for acks waits on Spammer.news until the reports change (one acknowledged,
    refused or ended). The future is new after each change: one left done would have the round's wait return at once,
    again and again, spinning the fleet's event loop until its step timeout."""
    spammer = Spammer(SPAMMER, Blocking())
    first = spammer.news()
    spammer.report_sent(REPORTER)
    assert not first.done()  # (a report begun is no news)
    spammer.report_acked(REPORTER)
    assert first.done()
    second = spammer.news()
    assert not second.done()
    spammer.report_ended(REPORTER)
    assert second.done() and not spammer.news().done()


class Answering:
    """Answers each text with the status `statuses` gives its victim (none: accepted, and delivered)."""

    def __init__(self, post: PostOffice, statuses: dict[str, int]) -> None:
        self.post, self.statuses = post, statuses

    def submissions(self, source: str, destination: str, text: str) -> list[tuple[str, str, str]]:
        return [(source, destination, text)]

    async def submit_pdus(self, pdus: list[tuple[str, str, str]]) -> tuple[list[SimpleNamespace], float]:
        [(source, destination, text)] = pdus
        status = self.statuses.get(destination, 0)
        if not status:
            self.post.arrived(ShortMessage(source, destination, text, data_coding=8, esm_class=0, parts=1,
                                           received_at=time.monotonic()))  # fmt: skip
        return [SimpleNamespace(command_status=status)], time.monotonic()


async def round_answered(statuses: dict[str, int], *, acked_before: Iterable[str] = (), begun_before: Iterable[str] = (),
                         queued_before: Iterable[str] = (), then: Callable[[Spammer], None] = lambda spammer: None) -> object:  # fmt: skip
    """A round to REPORTER and BYSTANDER answered as `statuses` say, the reports of `acked_before` acknowledged, those
    of `begun_before` under way and those of `queued_before` queued when it starts; `then(spammer)` once the round,
    its answers judged against them, first waits for news of the reports (Spammer.news)."""
    post = PostOffice()
    env = SimpleNamespace(rng=random.Random(1), post=post, rules=SimpleNamespace(spam_block_threshold=5), timeout=0.5, report_lasts=0.5,
                          on_event=lambda event, detail: None, on_mo=lambda: None, resend=None)  # fmt: skip
    target = Answering(post, statuses)
    spammer = Spammer(SPAMMER, target)
    for victim in (*acked_before, *begun_before):
        spammer.report_sent(victim)
    for victim in acked_before:
        spammer.report_acked(victim)
        spammer.report_ended(victim)
    for victim in queued_before:
        spammer.report_queued(victim)
    news = spammer.news

    def first_wait() -> asyncio.Future[None]:
        spammer.news = news  # type: ignore[method-assign]
        asyncio.get_running_loop().call_soon(then, spammer)
        return news()

    spammer.news = first_wait  # type: ignore[method-assign]
    return await spammer_round(spammer, env, [Phone(n, target, fleet=None) for n in (REPORTER, BYSTANDER)])


async def test_texts_accepted_after_the_thresholds_reports_were_acknowledged_fail_the_round() -> None:
    """The threshold's 5 reports were acknowledged before the texts went: the spammer is blocked network-wide, so a
    target that still accepts its texts (to victims who reported nothing) is wrong."""
    result = await round_answered({}, acked_before=[f"86138000001{i:02d}" for i in range(5)])
    assert (result.ok, result.step) == (False, "spam")
    assert result.error.startswith("2 of 2 answered wrongly (5 victims' reports acknowledged, threshold 5)"), result.error


async def test_a_refusal_as_blocked_by_the_recipient_whose_report_was_under_way_is_right_once_acknowledged() -> None:
    """REPORTER's report was under way when the text to it went: the target may have filed it first and refuse the text
    0x401, which the report's ack then confirms; no correct target fails."""

    def acknowledged(spammer: Spammer) -> None:
        spammer.report_acked(REPORTER)
        spammer.report_ended(REPORTER)

    result = await round_answered({REPORTER: BLOCKED_BY_RECIPIENT}, begun_before=[REPORTER], then=acknowledged)
    assert (result.ok, result.outcome, result.data["accepted"]) == (True, "sent", "1"), result.error


async def test_a_refusal_as_blocked_by_the_recipient_whose_report_had_not_begun_fails_the_round() -> None:
    """REPORTER's report was only queued (the fleet's reaction waiting its turn) when its text was answered: the target
    cannot have filed it, so a refusal 0x401 is wrong, even if the report is acknowledged later."""

    def acknowledged(spammer: Spammer) -> None:
        spammer.report_sent(REPORTER)
        spammer.report_acked(REPORTER)
        spammer.report_ended(REPORTER)

    result = await round_answered({REPORTER: BLOCKED_BY_RECIPIENT}, queued_before=[REPORTER], then=acknowledged)
    assert (result.ok, result.step) == (False, "spam")
    assert result.error.startswith("1 of 2 answered wrongly"), result.error


async def test_a_block_is_not_confirmed_by_the_acks_of_reports_begun_after_it() -> None:
    """5 reports had begun when the texts were refused 0x400; 3 of them are acknowledged, and 2 reports begun after
    the answers: those cannot have been filed before them, so the target blocked the spammer on 3 reports."""
    begun = [f"86138000001{i:02d}" for i in range(5)]
    later = [f"86138000002{i:02d}" for i in range(2)]

    def three_then_two_later(spammer: Spammer) -> None:
        for victim in later:
            spammer.report_sent(victim)
        for victim in (*begun[:3], *later):
            spammer.report_acked(victim)
        for victim in (*begun, *later):
            spammer.report_ended(victim)

    result = await round_answered({REPORTER: SENDER_BLOCKED, BYSTANDER: SENDER_BLOCKED}, begun_before=begun,
                                  then=three_then_two_later)  # fmt: skip
    assert (result.ok, result.step) == (False, "spam")
    assert result.error == ("refused SMSGW_RSENDERBLOCKED (0x400) too early: of the 5 victims whose report had begun "
                            "when the answers came, 3 had it acknowledged, threshold 5")  # fmt: skip


async def test_a_block_is_judged_once_the_reports_begun_before_it_end_whatever_report_begun_after_is_under_way() -> None:
    """The 5 reports begun before the 0x400 answers end, 2 acknowledged; another victim's report, begun after, is still
    under way: it cannot confirm the block, so the round is judged now, not left unjudged at its step timeout."""
    begun = [f"86138000001{i:02d}" for i in range(5)]

    def two_and_one_under_way(spammer: Spammer) -> None:
        spammer.report_sent("8613800000200")
        for victim in begun[:2]:
            spammer.report_acked(victim)
        for victim in begun:
            spammer.report_ended(victim)

    result = await round_answered({REPORTER: SENDER_BLOCKED, BYSTANDER: SENDER_BLOCKED}, begun_before=begun,
                                  then=two_and_one_under_way)  # fmt: skip
    assert (result.ok, result.step) == (False, "spam") and "2 had it acknowledged" in result.error, result.error


async def test_the_fleet_takes_a_withheld_text_come_late_for_that_spam_not_for_a_copy_of_the_same_text_before() -> None:
    """Spam texts repeat word for word: the victim ignored one, and a later round gave up on the same text once the
    victim was excused (Phone.withhold). Come late after all, it is that text, spam (Fleet.unasked asks
    Phone.came_late before its copy check), not 'text delivered twice' (regression review qa2: on a correct
    gateway); a second arrival of it is a copy."""
    from simulator.fleet import Fleet

    fleet = Fleet(parse_scenario({"reactions": {"spam": {"report": 0, "two_step": 0, "ignore": 1}}}, DEFAULT_SCENARIO))
    victim = Phone(REPORTER, Blocking(), fleet)
    fleet.by_number[REPORTER] = victim
    spam = ShortMessage(SPAMMER, REPORTER, TEXT, data_coding=8, esm_class=0, parts=1, received_at=time.monotonic())
    victim.deliver(spam)  # an earlier round's, ignored
    victim.withhold(SPAMMER, TEXT)
    victim.deliver(spam)  # the later round's, late
    assert (fleet.stats["spam_ignored"], fleet.stats["delivered_twice"]) == (2, 0)
    victim.deliver(spam)
    assert fleet.stats["delivered_twice"] == 1


async def test_a_report_queued_behind_a_dialogue_of_its_victim_counts_as_reporting_not_as_begun() -> None:
    """The victim is busy with a dialogue when the spam comes: its report reaction waits its turn. The target cannot have
    filed it, so the rounds judge their answers as if it had not begun (Spammer.sent): the fleet tells the spammer it is
    queued (report_queued), not begun."""
    from simulator.fleet import Fleet

    fleet = Fleet(parse_scenario({"reactions": {"spam": {"report": 1, "two_step": 0, "ignore": 0}}}, DEFAULT_SCENARIO))
    spammer = Spammer(SPAMMER, Blocking())
    fleet.spammer_by_number[SPAMMER] = spammer
    victim = Phone(REPORTER, Blocking(), fleet)
    fleet.by_number[REPORTER] = victim
    victim.state = BUSY
    victim.deliver(ShortMessage(SPAMMER, REPORTER, TEXT, data_coding=8, esm_class=0, parts=1, received_at=time.monotonic()))
    assert [kind for kind, _make in victim.reactions] == ["spam"]
    assert (spammer.reporting, spammer.sent, spammer.under_way) == ({REPORTER}, set(), set())
