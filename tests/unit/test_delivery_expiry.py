"""Delivery: parked MTs expire when their validity runs out, whatever else is parked or delivered meanwhile."""

from __future__ import annotations

import asyncio

from gateway.accounts import Accounts
from gateway.clock import SimulatedClock
from gateway.config import AccountConfig, GatewaySettings
from gateway.delivery import Delivery
from gateway.ids import MessageIds
from gateway.router import Router
from gateway.store.records import Direction, Message, MessageStatus


class RecordingStore:
    """Records mark_final calls; every write is 'committed' at once."""

    def __init__(self) -> None:
        self.final: list[tuple[str, str]] = []

    def _done(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def mark_final(self, message_id, status, done_at, error, receipt):
        self.final.append((message_id, status))
        return self._done()

    def mark_delivered(self, message_id, done_at, receipt):
        return self._done()


class Receiver:
    def __init__(self, account) -> None:
        self.account = account
        self.can_receive = True
        self.load = 0
        self.address_range = None
        self.offered: list[Message] = []

    def offer(self, message: Message) -> None:
        self.offered.append(message)


def setup(clock: SimulatedClock):
    accounts = Accounts((AccountConfig("handset", "pw", "handset", numbers=("86137",)),))
    router = Router(accounts)
    store = RecordingStore()
    delivery = Delivery(router, store, clock, MessageIds(), GatewaySettings())
    return accounts, router, store, delivery


def mt(id: str, dest: str, expires_at: float) -> Message:
    return Message(id, Direction.MT, MessageStatus.ENROUTE, "", "10086", dest, b"hi", expires_at=expires_at)


async def test_parked_messages_expire_in_time_order_and_only_when_due() -> None:
    clock = SimulatedClock(1_000_000.0, freeze=True)
    _, _, store, delivery = setup(clock)
    delivery.admit(mt("late", "8613700000001", 1_000_300.0))
    delivery.admit(mt("early", "8613700000002", 1_000_100.0))
    delivery.admit(mt("early-too", "8613700000001", 1_000_100.0))  # shares a destination with "late"
    delivery.sweep()
    assert store.final == []

    clock.set(1_000_100.0)
    delivery.sweep()
    assert sorted(store.final) == [("early", "expired"), ("early-too", "expired")]
    assert [m.id for m in delivery.parked["8613700000001"]] == ["late"]
    assert "8613700000002" not in delivery.parked

    clock.set(1_000_299.0)
    delivery.sweep()
    assert len(store.final) == 2
    clock.set(1_000_300.0)
    delivery.sweep()
    assert store.final[-1] == ("late", "expired")
    assert delivery.parked == {} and not delivery.queued


async def test_a_shorter_validity_parked_behind_a_longer_one_still_expires_on_time() -> None:
    clock = SimulatedClock(1_000_000.0, freeze=True)
    _, _, store, delivery = setup(clock)
    delivery.admit(mt("long", "8613700000001", 1_000_500.0))
    delivery.admit(mt("short", "8613700000001", 1_000_010.0))
    clock.set(1_000_010.0)
    delivery.sweep()
    assert store.final == [("short", "expired")]


async def test_messages_handed_to_a_receiver_do_not_expire_from_the_park() -> None:
    clock = SimulatedClock(1_000_000.0, freeze=True)
    accounts, router, store, delivery = setup(clock)
    delivery.admit(mt("a", "8613700000001", 1_000_100.0))
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    delivery.receiver_ready(receiver)
    assert [m.id for m in receiver.offered] == ["a"]
    clock.set(1_000_200.0)
    delivery.sweep()
    assert store.final == []


async def test_stale_expiry_entries_do_not_pile_up() -> None:
    clock = SimulatedClock(1_000_000.0, freeze=True)
    accounts, router, store, delivery = setup(clock)
    receiver = Receiver(accounts.get("handset"))
    for round in range(5):
        for i in range(1000):
            delivery.admit(mt(f"m{round}-{i}", f"86137{i:08d}", 1_086_400.0))
        router.bound(receiver)
        delivery.receiver_ready(receiver)  # takes everything parked
        router.unbound(receiver)
        delivery.sweep()
    assert len(delivery._expiry) <= 2000
    assert len(receiver.offered) == 5000
