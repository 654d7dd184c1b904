"""RetryTimers: the MTs waiting for a retry, found by id and by sender (a block ends what its sender has waiting)."""

from __future__ import annotations

import asyncio

from gateway.retry_timers import RetryTimers
from gateway.store.records import Direction, Message, MessageStatus


def mt(message_id: str, source: str) -> Message:
    return Message(message_id, Direction.MT, MessageStatus.ENROUTE, "handset", source, "8613700000001", b"x")


async def test_a_senders_waiting_mts_are_found_without_the_others() -> None:
    loop = asyncio.get_running_loop()
    timers = RetryTimers()
    spam = [mt(f"s{i}", "8613800000001") for i in range(3)]
    other = mt("o", "8613800000002")
    for message in (*spam, other):
        timers.add(message, loop.call_later(60, lambda: None))
    assert sorted(m.id for _, m, _ in timers.from_sender("8613800000001")) == ["s0", "s1", "s2"]
    timer, message, _ = timers.pop("s1")
    timer.cancel()
    assert message is spam[1] and "s1" not in timers and timers.pop("s1") is None
    assert sorted(m.id for _, m, _ in timers.from_sender("8613800000001")) == ["s0", "s2"]
    timers.add(spam[0], loop.call_later(60, lambda: None))  # waiting again (its next attempt): once
    assert len(timers) == 3 and len(timers.from_sender("8613800000001")) == 2
    for message_id in ("s0", "s2"):
        timers.pop(message_id)[0].cancel()
    assert timers.from_sender("8613800000001") == [] and [m.id for _, m, _ in timers.from_sender("8613800000002")] == ["o"]
    for timer, _, _ in timers.values():
        timer.cancel()
    timers.clear()
    assert len(timers) == 0 and timers.from_sender("8613800000002") == []


def expiring(message_id: str, expires_at: float) -> Message:
    message = mt(message_id, "8613800000001")
    message.expires_at = expires_at
    return message


async def test_those_whose_validity_ran_out_come_out_once_without_the_others() -> None:
    loop = asyncio.get_running_loop()
    timers = RetryTimers()
    waiting = {m.id: m for m in (expiring("late", 300.0), expiring("a", 100.0), expiring("b", 100.0), expiring("gone", 50.0))}
    for message in waiting.values():
        timers.add(message, loop.call_later(60, lambda: None))
    timers.pop("gone")[0].cancel()  # sent again (or ended) before its validity ran out
    timers.add(waiting["a"], loop.call_later(60, lambda: None))  # its next attempt: waiting once, not twice
    assert timers.expired(99.0) == []
    ended = timers.expired(100.0)
    assert sorted(m.id for _, m, _ in ended) == ["a", "b"] and "a" not in timers and "b" not in timers
    assert timers.expired(299.0) == [] and [m.id for _, m, _ in timers.expired(1e9)] == ["late"]
    assert len(timers) == 0 and timers.from_sender("8613800000001") == []
    for timer, _, _ in ended:
        timer.cancel()


async def test_an_mt_retried_many_times_is_expired_when_due_and_leaves_no_growing_index() -> None:
    loop = asyncio.get_running_loop()
    timers = RetryTimers()
    message, other = expiring("m", 1000.0), expiring("o", 10.0)
    timers.add(other, loop.call_later(60, lambda: None))
    for _ in range(10_000):  # each attempt: out of the timers to be sent, back when it fails
        timers.add(message, loop.call_later(60, lambda: None))
        timers.pop("m")[0].cancel()
    timers.add(message, loop.call_later(60, lambda: None))
    assert len(timers._by_expiry) < 200
    assert [m.id for _, m, _ in timers.expired(10.0)] == ["o"] and [m.id for _, m, _ in timers.expired(1000.0)] == ["m"]
    for timer, _, _ in timers.values():
        timer.cancel()
