"""One-at-a-time sections: several keys are taken in one order, so holders never wait on each other."""

from __future__ import annotations

import asyncio

from gateway.serial import SerialLocks


async def test_holders_of_a_shared_key_take_turns_and_others_run_alongside() -> None:
    locks = SerialLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold_all(["reporter-a", "number-x"]):
            order.append("first in")
            first_in.set()
            await release_first.wait()
            order.append("first out")

    async def second_same_number() -> None:
        await first_in.wait()
        async with locks.hold_all(["number-x", "reporter-b"]):  # other order, same key: waits its turn
            order.append("second in")

    async def unrelated() -> None:
        await first_in.wait()
        async with locks.hold_all(["reporter-c", "number-y"]):
            order.append("unrelated in")
            release_first.set()

    await asyncio.wait_for(asyncio.gather(first(), second_same_number(), unrelated()), 5)
    assert order == ["first in", "unrelated in", "first out", "second in"]
    assert len(locks) == 0  # nothing left behind


async def test_a_holder_that_stops_waiting_passes_its_keys_on_in_turn() -> None:
    locks = SerialLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold("number-x"):
            first_in.set()
            await release_first.wait()
            order.append("first out")

    async def impatient() -> None:
        async with locks.hold_all(["number-x", "reporter-b"]):
            order.append("impatient in")  # never: it is cancelled while waiting

    async def third() -> None:
        async with locks.hold("number-x"):
            order.append("third in")

    holder = asyncio.create_task(first())
    await first_in.wait()
    waiting = asyncio.create_task(impatient())
    await asyncio.sleep(0)  # let it queue behind the holder
    queued_after = asyncio.create_task(third())
    await asyncio.sleep(0)
    waiting.cancel()
    release_first.set()
    await asyncio.wait_for(asyncio.gather(holder, queued_after), 5)
    assert waiting.cancelled()
    assert order == ["first out", "third in"]
    assert len(locks) == 0
