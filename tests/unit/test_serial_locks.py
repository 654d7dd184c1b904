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


async def test_waiting_for_others_waits_for_every_holder_and_commit_before_it_and_holds_nothing() -> None:
    locks = SerialLocks()
    loop = asyncio.get_running_loop()
    commit = loop.create_future()  # a holder's commit, its key handed on before it is done
    assert locks.take_free(("reporter-a",))
    locks.hand_on(("reporter-a",), commit)
    release = asyncio.Event()
    events: list[str] = []

    async def subscriber() -> None:
        async with locks.hold("8613800000001"):
            await release.wait()
            events.append("subscriber done")

    async def billing() -> None:
        async with locks.hold("*billing"):
            await locks.wait_for_others(("*billing",))
            events.append("billing reads")

    holder = asyncio.create_task(subscriber())
    await asyncio.sleep(0)  # the subscriber is in its section
    waiting = asyncio.create_task(billing())
    async with locks.hold("8613800000002"):  # a newcomer's key: not held up
        events.append("newcomer")
    release.set()
    await holder
    await asyncio.sleep(0.01)
    assert events == ["newcomer", "subscriber done"]  # the handed-on commit is still in flight
    commit.set_exception(RuntimeError("its commit failed"))
    await asyncio.wait_for(waiting, 5)
    assert events[-1] == "billing reads" and len(locks) == 0
