"""A prompt that can no longer be answered is not delivered: every reply that asks the subscriber for an answer waits
for a bind only as long as that answer would be taken (the MT's validity), where it used to wait the 48 h of any MT.
A confirmation delivered after 25 h ("valid 24 h") was answered Y at once and told it had expired."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.records import Subscription
from handlers import rating
from handlers.base import Outcome
from handlers.customer_service import CustomerService
from handlers.order import OrderHandler
from handlers.rating import RatingHandler
from handlers.spam_report import SpamReportHandler
from tests.services_support import at, service_bench

A = "8613800000001"
HOUR = 3600.0


@pytest.fixture
async def bench(tmp_path: Path):
    bench = await service_bench(tmp_path, start=at(2026, 11, 10))
    yield bench
    await bench.close()


def reply_to_a(outcome: Outcome):
    (reply,) = [r for r in outcome.replies if r.to == A]  # (an SP's notice has its own validity)
    return reply


def validity(outcome: Outcome, now: float) -> float | None:
    """How long the one reply to the subscriber waits from `now`: None for the gateway's default."""
    expires_at = reply_to_a(outcome).expires_at
    return None if expires_at is None else expires_at - now


async def test_the_10086_listing_and_the_cancel_all_question_wait_for_the_listing_window(bench) -> None:
    now = bench.clock.now()
    await bench.commit(Outcome().put(Subscription("sub-1", A, "sina-news", "active", now - HOUR, "sms", "mo-1", now)))
    assert validity(await bench.send(CustomerService(), A, "0000", "10086"), bench.clock.now()) == bench.ctx.settings.listing_window
    assert validity(await bench.send(CustomerService(), A, "00000", "10086"), bench.clock.now()) == bench.ctx.settings.listing_window
    assert validity(await bench.send(CustomerService(), A, "否", "10086"), bench.clock.now()) is None  # an answer, no prompt


async def test_an_order_confirmation_and_the_choice_between_two_wait_for_the_orders(bench) -> None:
    first = await bench.send(OrderHandler(), A, "TT", "1066916")
    assert validity(first, bench.clock.now()) == 24 * HOUR
    bench.clock.advance(HOUR)
    assert validity(await bench.send(OrderHandler(), A, "TQ", "1066916"), bench.clock.now()) == 24 * HOUR
    bench.clock.advance(HOUR)
    # A bare Y with two waiting lists them: the list is answerable while the later one waits.
    assert validity(await bench.send(CustomerService(), A, "Y", "10086"), bench.clock.now()) == 23 * HOUR
    # An unknown code is answered with the same list: as long.
    assert validity(await bench.send(CustomerService(), A, "Y7", "10086"), bench.clock.now()) == 23 * HOUR
    assert validity(await bench.send(CustomerService(), A, "Y1", "10086"), bench.clock.now()) is None  # the success notice


async def test_a_spam_report_waiting_for_the_number_asks_for_its_window(bench) -> None:
    window = bench.ctx.settings.spam_follow_up_window
    assert validity(await bench.send(SpamReportHandler(), A, "恭喜您中奖了，请点击链接", "10086999"), bench.clock.now()) == window
    bench.clock.advance(60)
    assert validity(await bench.send(SpamReportHandler(), A, "又一条广告", "10086999"), bench.clock.now()) == window - 60
    # One's own number is refused and asked for again: the question is still the one open.
    assert validity(await bench.send(SpamReportHandler(), A, "13800000001", "10086999"), bench.clock.now()) == window - 60


async def test_a_survey_its_reprompt_and_its_reason_question_wait_for_the_survey(bench) -> None:
    survey = await rating.request_survey(bench.ctx, A, "hotline", "007", bench.clock.now())
    await bench.commit(survey)
    assert validity(survey, bench.clock.now()) == 24 * HOUR
    bench.clock.advance(HOUR)
    assert validity(await bench.send(RatingHandler(), A, "好的", "10086700"), bench.clock.now()) == 23 * HOUR  # not a rating: reprompt
    assert validity(await bench.send(RatingHandler(), A, "4", "10086700"), bench.clock.now()) == 23 * HOUR  # why? (unsatisfied)
    assert validity(await bench.send(RatingHandler(), A, "排队太久", "10086700"), bench.clock.now()) is None  # thanks


def test_a_prompt_handled_late_ends_when_its_answer_is_no_longer_taken() -> None:
    """Its end is absolute: an MO handled a day late (a retry, a replay at start) used to get a prompt valid for
    the whole window from the handling, though the order it asks about had lapsed already."""
    from gateway.ids import MessageIds
    from gateway.outbox import Outbox
    from handlers.base import Reply

    outbox = Outbox(None, MessageIds(), validity=48 * HOUR)  # type: ignore[arg-type]  (messages_for only builds)
    ends_at = 1_000_000.0
    late = outbox.messages_for([Reply(A, "回复Y确认", "10086", expires_at=ends_at)], ends_at + 25 * HOUR)
    plain = outbox.messages_for([Reply(A, "您好", "10086")], ends_at)
    assert [m.expires_at for m in late + plain] == [ends_at, ends_at + 48 * HOUR]
