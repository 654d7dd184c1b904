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
    assert sorted(m.id for _, m in timers.from_sender("8613800000001")) == ["s0", "s1", "s2"]
    timer, message = timers.pop("s1")
    timer.cancel()
    assert message is spam[1] and "s1" not in timers and timers.pop("s1") is None
    assert sorted(m.id for _, m in timers.from_sender("8613800000001")) == ["s0", "s2"]
    timers.add(spam[0], loop.call_later(60, lambda: None))  # waiting again (its next attempt): once
    assert len(timers) == 3 and len(timers.from_sender("8613800000001")) == 2
    for message_id in ("s0", "s2"):
        timers.pop(message_id)[0].cancel()
    assert timers.from_sender("8613800000001") == [] and [m.id for _, m in timers.from_sender("8613800000002")] == ["o"]
    for timer, _ in timers.values():
        timer.cancel()
    timers.clear()
    assert len(timers) == 0 and timers.from_sender("8613800000002") == []
