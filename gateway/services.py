"""The services as an API: what the HTTP API, USSD and tests call, besides texting a short code.

Every operation produces an Outcome from the same handler code the short
codes use, and commits it the same way: effects and the messages they send
in one transaction, then delivery. Operations on one subscriber take the
same serial lock as that subscriber's MOs.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from handlers import (
    billing,
    confirmation,
    customer_service,
    rating,
    spam_report,
    unsubscribe,
)
from handlers.base import (
    Inbound,
    Outcome,
    ServiceContext,
    checked_agent,
    checked_channel,
    checked_string,
    written_number,
)

from .clock import Clock
from .logs import get_logger
from .mo import FollowUp
from .numbers import ascii_digits
from .outbox import Outbox
from .serial import SerialLocks, in_order
from .store.base import Store
from .store.effects import Delete, Effect, Put
from .store.records import Dialogue, SpamReport

log = get_logger("services")
SAMPLED = "survey.sampled"  # Dialogue kind: a completed dialogue sampled for a survey not yet decided (after_dialogue)
BILLING = billing.SERIAL_KEY
EXPIRY_BATCH = 200  # lapsed records closed per commit (their subscribers' MOs wait for it meanwhile)
# A dialogue's records still open past their validity: (ctx, now, limit) -> up to `limit`, longest lapsed first ...
LapsedReader = Callable[[ServiceContext, float, int], Awaitable[list[Any]]]
# ... and closing those of these subscribers, as read again under their keys: (ctx, msisdns, now) -> the Outcome.
Expiry = Callable[[ServiceContext, tuple[str, ...], float], Awaitable[Outcome]]


class Services:
    def __init__(
        self,
        ctx: ServiceContext,
        store: Store,
        outbox: Outbox,
        observe: Callable[[Iterable[Effect]], None],
        clock: Clock,
        locks: SerialLocks,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.outbox = outbox
        self.observe = observe  # sees every committed effect (the submission guards, the record cache)
        self.clock = clock
        self.locks = locks
        self._sampler = random.Random()
        self._pruning = False  # prune_prompts runs

    async def commit(self, outcome: Outcome, keys: tuple[str, ...] = ()) -> Outcome:
        """Commit what an operation decided under `keys` (it stands only if the commits it was decided on do)."""
        now = self.clock.now()
        messages = self.outbox.messages_for(outcome.replies, now)
        await self.store.apply(outcome.effects, messages, after=self.locks.in_flight(keys))
        self.observe(outcome.effects)
        self.outbox.send(messages)
        return outcome

    async def _for(self, key: str, make: Callable[[float], Awaitable[Outcome]]) -> Outcome:
        async with self.locks.hold(key):
            return await self.commit(await make(self.clock.now()), (key,))

    # ------------------------------------------------------- operations
    def subscriber(self, msisdn: str) -> str:
        """`msisdn` in the one form the store and the subscriber's own MOs use; ValueError when it is no subscriber's:
        no phone has a landline's number (010-12345678) or a foreign one written without its + (85291234567),
        which have a national number's 11 digits (NumberPlan.is_mobile)."""
        number = self.ctx.plan.normalise(written_number("number", msisdn))
        if not self.ctx.plan.is_mobile(number):
            raise ValueError(f"{msisdn!r} is not a subscriber number")
        return number

    async def request_order(self, msisdn: str, service_id: str, channel: str = "api") -> Outcome:
        """An order from an SP or the web: the subscriber gets the two-step confirmation (SPEC 3.2)."""
        msisdn, channel = self.subscriber(msisdn), checked_channel(channel)
        service_id = checked_string("service_id", service_id, "a catalogue service id as a string, such as 'sina-news'")
        return await self._for(msisdn, lambda now: confirmation.request_order(self.ctx, msisdn, service_id, channel, now))

    async def request_survey(self, msisdn: str, channel: str, agent: str | None = None) -> Outcome:
        """A service event: the subscriber gets a satisfaction survey from the rating short code (SPEC 3.4)."""
        msisdn, channel, agent = self.subscriber(msisdn), checked_channel(channel), checked_agent(agent)
        return await self._for(msisdn, lambda now: rating.request_survey(self.ctx, msisdn, channel, agent, now))

    async def unsubscribe(self, msisdn: str, subscription_ids: list[str], channel: str = "api") -> Outcome:
        """Cancel those of the subscriber's subscriptions still active (the API's and USSD's path; the outcome names
        what was cancelled; one cancelled already is done). ValueError for ids not given as a non-empty list of
        strings (one id passed as a string was taken for a list of its characters) and for an id that is none of the
        subscriber's subscriptions (handlers/unsubscribe.unsubscribe_ids): nothing is cancelled."""
        msisdn, channel = self.subscriber(msisdn), checked_channel(channel)
        if (not isinstance(subscription_ids, (list, tuple)) or not subscription_ids
                or not all(isinstance(i, str) for i in subscription_ids)):  # fmt: skip
            raise ValueError(f"subscription_ids {subscription_ids!r}: expected a non-empty list of subscription ids (strings)")
        return await self._for(
            msisdn, lambda now: unsubscribe.unsubscribe_ids(self.ctx, msisdn, subscription_ids, channel, now)
        )

    async def dispute(self, charge_id: str) -> Outcome:
        charge_id = checked_string("charge_id", charge_id, "a charge id as a string")
        return await self._for(BILLING, lambda now: billing.dispute(self.ctx, charge_id, now))

    async def lift_block(self, reported: str, reporter: str | None = None) -> Outcome:
        """Lift the network-wide block of `reported`; with `reporter`, that subscriber's own block of it instead (a
        number they reported by mistake). ValueError when there is no such block, or `reported` is no number at all
        (told "not blocked", the agent would look for the block under another number)."""
        written = written_number("number", reported)
        number = self.ctx.plan.normalise(written)
        if not ascii_digits(number):
            raise ValueError(f"{reported!r} is not a telephone number")
        if reporter is not None:
            reporter = self.subscriber(reporter)
        outcome = await self._for(spam_report.reported_key(number),
                                  lambda now: spam_report.lift_block(self.ctx, written, now, reporter))  # fmt: skip
        if reporter is None:  # its open reports count again: those that now reach a threshold block their numbers
            since = self.clock.now() - self.ctx.settings.spam_block_window
            reported_by_it = await self.store.distinct(SpamReport, "reported", reporter=number,
                                                       status=spam_report.RECEIVED, created_at__gt=since)  # fmt: skip
            for recount in (await self._block_over_threshold(sorted(reported_by_it))).values():
                outcome.extend(recount)
        return outcome

    async def run_due_jobs(self) -> Outcome:
        """Confirmations and surveys lapsed unanswered closed; billing on the billing day (once per month), reminders
        on the reminder days (once per subscription). Run every job_check_interval: it waits for the others' commits
        (`_calendar_job`) only when it bills."""
        for dialogue, expire in (("confirmations", self.expire_orders), ("surveys", self.expire_surveys)):
            try:
                await expire()
            except Exception:  # logged, and tried again at the next run: the others and billing must not wait for it
                log.exception(f"expiring lapsed {dialogue} failed")
        due = await billing.billing_due(self.ctx, self.clock.now())
        return await self._calendar_job(lambda now: billing.run_due_jobs(self.ctx, now), wait_for_others=due)

    async def expire_orders(self) -> int:
        """Mark expired every confirmation whose validity ended unanswered (SPEC 3.2), so that none stays pending in
        the store for ever; how many."""
        return await self._expire_lapsed(confirmation.lapsed_orders, confirmation.expire_lapsed)

    async def expire_surveys(self) -> int:
        """Close every survey whose validity ended unanswered (SPEC 3.4): expired, or rated when only its reason was
        awaited, so that none stays sent or reason in the store for ever; how many."""
        return await self._expire_lapsed(rating.lapsed_surveys, rating.expire_lapsed)

    async def prune_prompts(self) -> int:
        """Delete the orders nothing answers about any more (handlers/confirmation.delete_past_use) and the dialogues
        expired long enough (handlers/unsubscribe.delete_dialogues_past_use); how many. Run with the message
        retention, whatever it is (they are no record of anything: a subscription keeps its own evidence). A no-op
        while another pass works off a backlog (the first start after an upgrade)."""
        if self._pruning:
            return 0
        self._pruning = True
        try:
            orders = await self._expire_lapsed(confirmation.orders_past_use, confirmation.delete_past_use)
            dialogues = await self._expire_lapsed(unsubscribe.dialogues_past_use, unsubscribe.delete_dialogues_past_use)
        finally:
            self._pruning = False
        if orders or dialogues:
            log.info("prompts past use deleted", orders=orders, dialogues=dialogues)
        return orders + dialogues

    async def _expire_lapsed(self, lapsed_records: LapsedReader, expire: Expiry) -> int:
        """Close (or delete: prune_prompts) what `lapsed_records` finds, a batch at a time, longest lapsed first, each committed under its
        subscribers' keys: an answer handled at the same time is read, not overwritten (`expire` reads again)."""
        expired = 0
        while True:
            lapsed = await lapsed_records(self.ctx, self.clock.now(), EXPIRY_BATCH)
            if not lapsed:
                return expired
            keys = in_order(r.msisdn for r in lapsed)
            async with self.locks.hold_all(keys):
                outcome = await self.commit(await expire(self.ctx, keys, self.clock.now()), keys)
            expired += len(outcome.effects)
            if len(lapsed) < EXPIRY_BATCH or not outcome.effects:  # the last batch; or read stale: the next run
                return expired

    async def run_billing(self) -> Outcome:
        """Billing on demand: every month missed before this one, then this month (whatever the day)."""
        return await self._calendar_job(lambda now: billing.bill_on_demand(self.ctx, now))

    async def send_reminders(self) -> Outcome:
        return await self._calendar_job(lambda now: billing.send_reminders(self.ctx, now))

    async def _calendar_job(self, make: Callable[[float], AsyncIterator[Outcome]], wait_for_others: bool = True) -> Outcome:
        """A job over every subscriber, run once the subscription changes already decided are committed: an
        unsubscription sent at 23:59:59 whose commit is still in flight at midnight is seen by the billing
        it keeps from charging (billing reads the store, not the subscribers' serial sections). An MO waiting for
        a retry after a failed try holds no key and is not waited for: its retry takes this job's key too (10086's
        serial_keys), and a cancellation among them voids the charge when it commits (handlers/subscriptions.py),
        rather than billing waiting out the retry schedule.

        The job's Outcome comes in parts (handlers/billing.py, COMMIT_CHUNK), each committed before the next is made:
        the binds are served meanwhile. Returned whole."""
        async with self.locks.hold(BILLING):
            if wait_for_others:
                await self.locks.wait_for_others((BILLING,))
            done = Outcome()
            async for part in make(self.clock.now()):
                done.extend(await self.commit(part, (BILLING,)))
            return done

    # --------------------------------------------------------- triggers
    def after_dialogue(self, inbound: Inbound) -> FollowUp | None:
        """A short-code dialogue ended: follow it with a survey for the configured share of them.

        The mark that a survey is due is committed with the dialogue's last MO; the survey is decided after that
        commit, by the MO's own handling, which still holds the subscriber's serial key (a survey needs no task or
        lock of its own). A crash in between leaves the mark: the next start decides it (resume_sampled_surveys)."""
        rate = self.ctx.settings.survey_sample_rate
        if not (rate > 0 and self._sampler.random() < rate and inbound.short_code == self.ctx.settings.operator):
            return None
        now = self.clock.now()
        mark = Dialogue(inbound.subscriber, SAMPLED, {"short_code": inbound.short_code}, now,
                        now + self.ctx.settings.survey_validity)  # fmt: skip
        return FollowUp(Put(mark), partial(self._sampled_survey, mark))

    async def block_reported_over_threshold(self) -> list[str]:
        """At start: the numbers not blocked network-wide whose open reports within spam_block_window already come from
        spam_block_threshold distinct reporters (a threshold lowered since) blocked as a report reaching it blocks
        them (handlers/spam_report.block_over_threshold); those blocked. One read of the open reports in the window."""
        settings = self.ctx.settings
        reports = await self.store.scan(SpamReport, status=spam_report.RECEIVED,
                                        created_at__gt=self.clock.now() - settings.spam_block_window)  # fmt: skip
        reporters: dict[str, set[str]] = {}
        for report in reports:
            reporters.setdefault(report.reported, set()).add(report.reporter)
        return list(await self._block_over_threshold(
            reported for reported, distinct in reporters.items() if len(distinct) >= settings.spam_block_threshold))

    async def _block_over_threshold(self, numbers: Iterable[str]) -> dict[str, Outcome]:
        """Those of `numbers` whose open reports reach the threshold, counted again under each one's key as a report
        counts them (handlers/spam_report.block_over_threshold), blocked network-wide: each with its Outcome."""
        blocked = {}
        for reported in numbers:
            key = spam_report.reported_key(reported)
            outcome = await self._for(key, partial(spam_report.block_over_threshold, self.ctx, reported))
            if outcome.effects:
                blocked[reported] = outcome
        return blocked

    async def resume_sampled_surveys(self) -> int:
        """At start: the surveys of dialogues whose last MO was committed before a crash cut their decision short
        (their marks are still there); how many marks were found. One read of every dialogue (few, and once)."""
        marks = await self.store.find(Dialogue, kind=SAMPLED)
        for mark in marks:
            async with self.locks.hold(mark.msisdn):
                # Read again under the key: MOs taken since the start may have replaced the mark with their own,
                # whose survey went out with its removal (and may be rated already: none is open to hold off another).
                current = await self.ctx.store.find(Dialogue, msisdn=mark.msisdn, kind=SAMPLED)
                if current:
                    await self._sampled_survey(current[0])
        return len(marks)

    async def _sampled_survey(self, mark: Dialogue) -> Outcome:
        """A sampled survey never displaces one the subscriber is still answering, and waits until 10086 has
        nothing more to ask (SPEC 3.4: "after a short-code dialogue completes"): no survey after `Y1` while
        `Y2` waits. Nor does one go out once the survey it would be has lapsed (a start long after the crash).
        Committed with the mark's removal."""
        now, msisdn, code = self.clock.now(), mark.msisdn, mark.data["short_code"]
        outcome = Outcome()
        if (
            now < mark.expires_at
            and not await rating.open_surveys(self.ctx, msisdn, now)
            and not await customer_service.question_waiting(Inbound(msisdn, code, "", now), self.ctx)
        ):
            outcome = await rating.request_survey(self.ctx, msisdn, f"sms:{code}", None, now)
        outcome.effects.append(Delete(Dialogue, (msisdn, SAMPLED)))
        return await self.commit(outcome)
