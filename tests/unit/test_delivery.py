"""Delivery: parked MTs wait in the store, not in memory; they go out when a bind appears and expire when due;
cancel_sm / replace_sm take back an MT wherever it waits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import structlog.testing

from gateway.accounts import Accounts
from gateway.clock import SimulatedClock
from gateway.config import AccountConfig, GatewaySettings
from gateway.delivery import BacklogRead, Delivery, _backlog_ranges, _served_prefixes
from gateway.ids import MessageIds
from gateway.log_budget import LogBudget
from gateway.numbers import NumberPlan
from gateway.router import Router, compile_address_range
from gateway.smpp.constants import EsmClass
from gateway.store.records import Direction, Message, MessageStatus
from gateway.store.sqlite import SqliteStore
from gateway.store.writer import WriterDied

START = 1_000_000.0


class Receiver:
    """A bind as Delivery sees it: takes what it is offered and counts it as its load."""

    def __init__(self, account) -> None:
        self.account = account
        self.can_receive = True
        self.load = 0
        self.address_range = None
        self.optional_parameters = True
        self.mo_numbers: set[str] = set()
        self.stalled = False
        self.holding = False
        self.offered: list[Message] = []
        self.offered_event = asyncio.Event()
        self.sent: set[str] = set()  # ids offered and sent as deliver_sm (the rest are queued on the bind)

    def offer(self, message: Message, again: bool = False) -> None:
        self.load += 1
        self.offered.append(message)
        self.offered_event.set()

    def withdraw(self, message_id: str) -> Message | None:
        for message in self.offered:
            if message.id == message_id and message_id not in self.sent:
                self.offered.remove(message)
                self.load -= 1
                return message
        return None

    def freeze(self, message_id: str) -> bool:
        return False  # replace_sm takes it off the queue instead (withdraw)

    def thaw(self, message_id: str, replacement: Message | None) -> bool:  # pragma: no cover - never frozen
        return False

    def may_log(self, kind: str) -> bool:
        return True

    async def wait_for(self, count: int) -> None:
        while len(self.offered) < count:
            self.offered_event.clear()
            await self.offered_event.wait()


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START, freeze=True)


@pytest.fixture
async def store(tmp_path: Path, clock: SimulatedClock):
    s = SqliteStore(str(tmp_path / "gw.db"), clock=clock.now)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def accounts() -> Accounts:
    return Accounts(
        (
            AccountConfig("handset", "pw", "handset", numbers=("86137",)),
            AccountConfig("sp", "pw", "sp", service_codes=("1066",)),
        )
    )


@pytest.fixture
def router(accounts: Accounts) -> Router:
    return Router(accounts)


@pytest.fixture
def delivery(router: Router, store: SqliteStore, clock: SimulatedClock) -> Delivery:
    return Delivery(router, store, clock, MessageIds(), GatewaySettings())


def mt(id: str, dest: str, expires_at: float = START + 86_400, **extra) -> Message:
    return Message(id, Direction.MT, MessageStatus.ENROUTE, "", "10086", dest, b"hi", expires_at=expires_at, extra=extra)


async def admit(store: SqliteStore, delivery: Delivery, *messages: Message) -> None:
    for message in messages:
        await store.accept(message)  # committed first, as the gateway does
        delivery.admit(message)


async def reading_backlog(store: SqliteStore, delivery: Delivery, router: Router, accounts: Accounts, size: int) -> Receiver:
    """`size` MTs m00, m01, ... wait for one subscriber of `handset`; a bind appears and is handed the first
    page (delivery.PAGE, with delivery.ROOM set to it: the read then waits for answers)."""
    delivery.ROOM = delivery.PAGE
    await admit(store, delivery, *(mt(f"m{i:02d}", "8613700000001") for i in range(size)))
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    delivery.receiver_ready(receiver)
    await receiver.wait_for(delivery.PAGE)
    return receiver


def answer(delivery: Delivery, receiver: Receiver, messages: list[Message]) -> None:
    """The subscriber acknowledges these deliver_sm."""
    for message in messages:
        receiver.load -= 1
        delivery.delivered(message)


async def settled(store: SqliteStore) -> None:
    """Every write issued so far is committed (writes commit in issue order) and its callbacks have run."""
    await store.apply([])
    await asyncio.sleep(0)


async def status_of(store: SqliteStore, message_id: str) -> MessageStatus:
    return (await store.get(message_id)).status


@contextlib.asynccontextmanager
async def delivery_on(store: SqliteStore, router: Router, clock: SimulatedClock):
    """A Delivery over a store of the test's own making, opened for the test and closed after it."""
    await store.open()
    try:
        yield Delivery(router, store, clock, MessageIds(), GatewaySettings())
    finally:
        await store.close()


async def test_parked_messages_expire_in_time_order_and_only_when_due(store, delivery, clock) -> None:
    await admit(
        store, delivery,
        mt("late", "8613700000001", START + 300),
        mt("early", "8613700000002", START + 100),
        mt("early-too", "8613700000001", START + 100),  # shares a destination with "late"
    )  # fmt: skip
    await delivery.sweep()
    await settled(store)
    assert {await status_of(store, i) for i in ("late", "early", "early-too")} == {MessageStatus.ENROUTE}

    clock.set(START + 100)
    await delivery.sweep()
    await settled(store)
    assert await status_of(store, "early") is MessageStatus.EXPIRED
    assert await status_of(store, "early-too") is MessageStatus.EXPIRED
    assert await status_of(store, "late") is MessageStatus.ENROUTE
    assert delivery.queued == {"8613700000001": 1}

    clock.set(START + 299)
    await delivery.sweep()
    await settled(store)
    assert await status_of(store, "late") is MessageStatus.ENROUTE
    clock.set(START + 300)
    await delivery.sweep()
    await settled(store)
    assert await status_of(store, "late") is MessageStatus.EXPIRED
    assert not delivery.queued


async def test_a_parked_message_is_not_held_in_memory(store, delivery) -> None:
    await admit(store, delivery, *(mt(f"m{i}", f"861370000{i:04d}") for i in range(100)))
    assert not delivery._held  # only the store has them
    assert sum(delivery.queued.values()) == 100  # still counted against the per-subscriber queue limit


async def test_a_bind_gets_everything_waiting_for_it_page_by_page_each_once(store, delivery, router, accounts) -> None:
    delivery.PAGE = 3
    parked = [mt(f"m{i}", f"8613700000{i % 4:03d}") for i in range(10)]
    await admit(store, delivery, *parked, mt("to-sp", "1066", to_account="sp"), mt("not-ours", "8613900000001"))
    first, second = Receiver(accounts.get("handset")), Receiver(accounts.get("handset"))
    router.bound(first)
    delivery.receiver_ready(first)
    router.bound(second)  # a second bind of the account while the first one's pull is still reading
    delivery.receiver_ready(second)
    await asyncio.gather(*delivery._pulls.values())
    offered = first.offered + second.offered
    assert sorted(m.id for m in offered) == sorted(m.id for m in parked)  # each once, nothing else
    by_destination: dict[str, list[str]] = {}
    for message in first.offered:
        by_destination.setdefault(message.dest_addr, []).append(message.id)
    for ids in by_destination.values():
        assert ids == sorted(ids, key=lambda i: int(i[1:]))  # in order of arrival per subscriber

    sp = Receiver(accounts.get("sp"))
    router.bound(sp)
    delivery.receiver_ready(sp)
    await sp.wait_for(1)
    assert [m.id for m in sp.offered] == ["to-sp"]


async def test_a_pull_hands_out_the_next_page_only_when_the_bind_has_room(store, delivery, router, accounts) -> None:
    delivery.PAGE = 4
    receiver = await reading_backlog(store, delivery, router, accounts, 10)
    await asyncio.sleep(0)  # the pull has had its turn: with a full bind it waits
    assert len(receiver.offered) == 4 and "handset" in delivery._room_waiters
    answer(delivery, receiver, receiver.offered[:2])  # two answered: room again
    await receiver.wait_for(8)
    assert [m.id for m in receiver.offered] == [f"m{i:02d}" for i in range(8)]


async def test_a_pull_waits_for_room_on_the_binds_mts_go_to_not_on_a_stalled_one(store, delivery, router, accounts) -> None:
    """A bind that left a deliver_sm unanswered gets MTs only when no other takes them (Router.stalled): its room let a
    backlog read hand every page to the other binds at once, beyond ROOM, the whole backlog in memory."""
    delivery.PAGE = 4
    receiver = await reading_backlog(store, delivery, router, accounts, 10)
    stalled = Receiver(accounts.get("handset"))
    router.bound(stalled)
    router.stalled(stalled)
    delivery.receiver_ready(stalled)
    answer(delivery, receiver, receiver.offered[:1])  # room for one more page
    await receiver.wait_for(8)
    await asyncio.sleep(0)  # the pull has had its turn: with `receiver` full it waits
    assert len(receiver.offered) == 8 and "handset" in delivery._room_waiters and not stalled.offered


async def test_a_stalled_bind_is_given_no_more_than_full_the_rest_parked_and_read_back_in_order_when_it_answers(
    store, delivery, router, accounts
) -> None:
    """A bind that answers enquire_link but no deliver_sm, the only one for its subscribers, was queued every MT routed
    to it. Stalled (Router.stalled), it holds FULL: the next MTs, its retries among them, are parked in the store,
    and no more are queued there once one is parked (it would go out ahead of it) while it stays stalled; none is
    read back meanwhile. Once it answers, they are read back for it, in order per subscriber, an MT accepted
    meanwhile behind them. A bind that answers has no such limit."""
    delivery.FULL = 3
    delivery.backoff = [0.01]
    one, two = "8613700000001", "8613700000002"
    healthy = Receiver(accounts.get("handset"))
    router.bound(healthy)
    await admit(store, delivery, *(mt(f"h{i}", one) for i in range(5)))
    assert len(healthy.offered) == 5  # (no limit)
    router.unbound(healthy)
    bind = Receiver(accounts.get("handset"))
    router.bound(bind)
    router.stalled(bind)
    await admit(store, delivery, mt("m0", one), mt("m1", two), mt("m2", one), mt("m3", two), mt("m4", one))
    assert [m.id for m in bind.offered] == ["m0", "m1", "m2"]
    assert not {"m3", "m4"} & delivery._held  # parked: in the store only
    bind.load -= 1
    delivery.retry_later(bind.offered[1], bind=bind)  # m1 timed out: its retry is routed to the bind again, and parked
    await until(lambda: "m1" not in delivery._retry_timers)
    bind.load -= 1  # m0 timed out too (its retry a while away): room on the bind, but m4 is parked
    await admit(store, delivery, mt("m5", one))
    assert [m.id for m in bind.offered] == ["m0", "m1", "m2"] and not {"m1", "m5"} & delivery._held
    assert not delivery._pulls
    router.answered(bind)
    delivery.answering(bind)
    await admit(store, delivery, mt("m6", one))  # behind the read
    await asyncio.gather(*delivery._pulls.values())
    assert [m.id for m in bind.offered if m.dest_addr == one] == ["m0", "m2", "m4", "m5", "m6"]
    assert [m.id for m in bind.offered if m.dest_addr == two] == ["m1", "m1", "m3"]  # its retry, read back


async def test_what_a_stalled_bind_parked_is_read_back_for_the_binds_left_when_it_goes(store, delivery, router, accounts) -> None:
    """The bind whose address_range covers ...01 stalled with MTs parked; the account's other bind, stalled too, took
    none of them (a bind with a range that covers a number comes first). When the first goes, the other is given
    them, ahead of a newer one: with no read, they waited in the store until a bind appeared, the newer ones going
    out ahead of them."""
    delivery.FULL = 3
    one = "8613700000001"
    ranged_bind, other = ranged(accounts, "^8613700000001$"), Receiver(accounts.get("handset"))
    for bind in (ranged_bind, other):
        router.bound(bind)
        router.stalled(bind)
    await admit(store, delivery, *(mt(f"m{i}", one) for i in range(5)))
    assert [m.id for m in ranged_bind.offered] == ["m0", "m1", "m2"] and not other.offered  # m3, m4 parked
    router.unbound(ranged_bind)
    delivery.unbound(ranged_bind)
    await admit(store, delivery, mt("m5", one))  # behind the read
    await asyncio.gather(*delivery._pulls.values())
    assert [m.id for m in other.offered] == ["m3", "m4", "m5"]


async def test_what_a_stalled_bind_parked_is_read_back_for_another_of_its_account_that_answers_again(
    store, delivery, router, accounts
) -> None:
    """Two binds of the account serve every number, both stalled: `silent` parked m3 and m4 (it holds FULL), `other`
    parked none (it was the busier). `other` answers again, `silent` does not: m3 and m4 are read back for `other`
    (MTs to their subscriber go there now), ahead of m5 accepted meanwhile. They waited in the store until `silent`
    answered or went, m5 going out ahead of them."""
    delivery.FULL = 3
    other = Receiver(accounts.get("handset"))
    router.bound(other)
    await admit(store, delivery, *(mt(f"t{i}", TWO) for i in range(4)))  # (unanswered: busier than `silent` will be)
    router.stalled(other)
    silent = Receiver(accounts.get("handset"))
    router.bound(silent)
    delivery.receiver_ready(silent)
    await until(lambda: not delivery._pulls)
    router.stalled(silent)
    await admit(store, delivery, *(mt(f"m{i}", ONE) for i in range(5)))
    assert [m.id for m in silent.offered] == ["m0", "m1", "m2"]  # m3, m4 parked
    assert silent in delivery._parked_on and other not in delivery._parked_on
    router.answered(other)
    delivery.answering(other)
    await admit(store, delivery, mt("m5", ONE))  # behind the read
    await answer_until_read(store, delivery, other)
    assert not delivery._pulls
    assert [m.id for m in other.offered] == ["t0", "t1", "t2", "t3", "m3", "m4", "m5"]
    assert [m.id for m in silent.offered] == ["m0", "m1", "m2"]


async def test_what_only_a_busy_bind_takes_stays_parked_for_it_when_it_stalls_and_reaches_it_when_it_answers_again(
    store, delivery, router, accounts
) -> None:
    """`busy` (range ...0000000: ONE and TWO) answers more slowly than MTs come: past BUSY (3) the next ones are parked.
    `other` (range ONE) appears and its read, for ONE, waits for room on it when `busy` stalls: ONE's parked MTs go on
    to `other`, TWO's, which only `busy` takes, stay parked for it and reach it once it answers again. (Counted no
    more as a bind that parked MTs as it stalled, the read for `other` not going over TWO's, they waited in the store
    until another bind of the account appeared, `busy` answering again or going.)"""
    delivery.PAGE = delivery.ROOM = 2
    delivery.BUSY = 3
    busy, other = ranged(accounts, "^861370000000"), ranged(accounts, f"^{ONE}$")
    router.bound(busy)
    await admit(store, delivery, *(mt(f"m{i}", ONE) for i in range(3)))
    await admit(store, delivery, mt("o0", ONE), mt("t0", TWO), mt("o1", ONE), mt("t1", TWO), mt("o2", ONE))
    assert [m.id for m in busy.offered] == ["m0", "m1", "m2"] and busy in delivery._parked_on  # BUSY: the rest parked
    router.bound(other)
    delivery.receiver_ready(other)
    await other.wait_for(2)
    await asyncio.sleep(0)
    assert "handset" in delivery._room_waiters  # the read for `other` waits for room on it
    router.stalled(busy)
    delivery.stalled(busy)
    await answer_until_read(store, delivery, other)
    assert not delivery._pulls
    assert [m.id for m in other.offered] == ["o0", "o1", "o2"]
    router.answered(busy)
    delivery.answering(busy)
    await answer_until_read(store, delivery, busy)
    assert not delivery._pulls
    assert [m.id for m in busy.offered] == ["m0", "m1", "m2", "t0", "t1"]


async def test_an_mt_to_a_stalled_bind_that_answers_during_a_read_for_another_waits_for_the_mts_it_parked(
    store, delivery, router, accounts
) -> None:
    """`stalled`, the bind for ...01, has m3 and m4 parked when it answers again, while the account's backlog is read
    for a bind for ...02 (waiting for room there): ...01's next MT waits until the read has gone over the backlog
    again for `stalled` (BacklogRead.arrived), not out at once ahead of m3 and m4."""
    delivery.PAGE = delivery.ROOM = 2
    delivery.FULL = 3
    one = "8613700000001"
    await admit(store, delivery, *(mt(f"b{i}", "8613700000002") for i in range(4)))  # no bind for them yet
    stalled = ranged(accounts, "^8613700000001$")
    router.bound(stalled)
    router.stalled(stalled)
    await admit(store, delivery, *(mt(f"m{i}", one) for i in range(5)))
    assert [m.id for m in stalled.offered] == ["m0", "m1", "m2"]  # m3, m4 parked
    two = ranged(accounts, "^8613700000002$")
    router.bound(two)
    delivery.receiver_ready(two)
    await two.wait_for(2)
    await asyncio.sleep(0)
    assert "handset" in delivery._room_waiters  # the read waits for room on `two`
    router.answered(stalled)
    delivery.answering(stalled)
    await admit(store, delivery, mt("m5", one))
    await answer_until_read(store, delivery, two, stalled)
    assert not delivery._pulls
    assert [m.id for m in stalled.offered] == [f"m{i}" for i in range(6)]
    assert [m.id for m in two.offered] == [f"b{i}" for i in range(4)]


async def stalled_with_its_backlog_read_waiting(store, delivery, router, accounts) -> Receiver:
    """b0..b3 wait for ...01 when a bind of `handset` appears: the read hands it a page and waits for room, n00..n04 to
    ...02 accepted meanwhile wait behind it; the bind stalls (b0 and b1 time out, their retries parked), and n05..n09
    are accepted. The bind."""
    delivery.PAGE = delivery.ROOM = 2
    delivery.FULL = 3
    delivery.backoff = [0.01]
    await admit(store, delivery, *(mt(f"b{i}", ONE) for i in range(4)))  # no bind for them yet
    bind = Receiver(accounts.get("handset"))
    router.bound(bind)
    delivery.receiver_ready(bind)
    await bind.wait_for(2)
    await asyncio.sleep(0)
    assert "handset" in delivery._room_waiters  # the read waits for room
    await admit(store, delivery, *(mt(f"n{i:02d}", TWO) for i in range(5)))
    assert len(delivery._reads["handset"].behind) == 5
    router.stalled(bind)
    delivery.stalled(bind)  # (SmppConnection.hand_over)
    for message in bind.offered:  # timed out (no room freed for the read)
        bind.load -= 1
        delivery.retry_later(message, bind=bind)
    await admit(store, delivery, *(mt(f"n{i:02d}", TWO) for i in range(5, 10)))
    await until(lambda: not delivery._retry_timers)
    return bind


ONE, TWO = "8613700000001", "8613700000002"


THREE = "8613700000003"


async def stalled_with_nothing_left(store, delivery, router, accounts, m0_waits: bool = True) -> Receiver:
    """The only bind of `handset`, stalled (FULL made 3), was offered m0 (ONE), m1 (TWO), m2 (ONE) and parked m3 (TWO),
    m4 (ONE), m5 (TWO), m6 (THREE); m1 and m2 timed out, their retries parked too; m0 timed out too and, if
    `m0_waits`, waits for its retry (as one whose bind went since), else it is parked too. It holds nothing."""
    delivery.FULL = 3
    bind = Receiver(accounts.get("handset"))
    router.bound(bind)
    router.stalled(bind)
    dests = [ONE, TWO, ONE, TWO, ONE, TWO, THREE]
    await admit(store, delivery, *(mt(f"m{i}", dest) for i, dest in enumerate(dests)))
    assert [m.id for m in bind.offered] == ["m0", "m1", "m2"] and bind in delivery._parked_on
    bind.load = 0
    delivery.backoff = [60 if m0_waits else 0.01]
    delivery.retry_later(bind.offered[0])
    delivery.backoff = [0.01]
    for message in bind.offered[1:]:
        delivery.retry_later(message, bind=bind)
    await until(lambda: len(delivery._retry_timers) == int(m0_waits))  # (the others parked)
    del bind.offered[:]
    return bind


async def probed(delivery: Delivery, bind: Receiver, count: int) -> list[str]:
    """Probe `bind` (Delivery.probe), wait for its read: the ids it was offered."""
    assert delivery.probe(bind, count)
    await asyncio.gather(*delivery._probes.values())
    assert not delivery._probes
    return [m.id for m in bind.offered]


async def test_a_stalled_bind_holding_nothing_is_handed_its_oldest_parked_mts_in_order_per_subscriber(
    store, delivery, router, accounts
) -> None:
    """A stalled bind that parked MTs and holds nothing had no deliver_sm to answer: nothing parked for it went out
    until another bind answered or appeared, or it went, its client healthy again or not. Probed, it is handed the
    oldest of them from the store, up to the count asked (FULL at most), in order per subscriber: none of ONE's while
    m0, theirs, waits for its retry (they would overtake it). Not while a retry of one that failed on it waits: its
    back-off stands. Nor a bind that parked none."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts)
    assert await probed(delivery, bind, 2) == ["m1", "m3"]
    bind.load = 0
    for message in bind.offered:  # timed out
        delivery.retry_later(message, bind=bind)
    assert not delivery.probe(bind, 100)
    await until(lambda: len(delivery._retry_timers) == 1)  # (m1, m3 parked again)
    del bind.offered[:]
    assert await probed(delivery, bind, 100) == ["m1", "m3", "m5"]  # FULL
    other = Receiver(accounts.get("handset"))
    router.bound(other)
    router.stalled(other)
    assert not delivery.probe(other, 100)  # it parked none


async def test_a_probe_hands_a_stalled_bind_what_another_stalled_bind_would_take_not_what_a_bind_that_answers_would(
    store, delivery, router, accounts
) -> None:
    """Every bind of the account that serves ONE, TWO and FOUR is stalled: their MTs routed to another of them (ONE's:
    their last MO came through it; TWO's: the least busy) are handed to the one probed all the same (whichever
    answers again, what the account parked is read back for it). THREE's, which a bind that answers would take (its
    address_range), are not; nor is FOUR's first, too long for the probed bind (of SMPP 3.3), nor the next one to
    FOUR, which it could carry (it would overtake the first)."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts, m0_waits=False)
    four = "8613700000004"
    too_long_for_smpp33 = dataclasses.replace(mt("m8", four), short_message=b"x" * 300)
    await admit(store, delivery, mt("m7", THREE), too_long_for_smpp33, mt("m9", four))  # (parked)
    delivery.FULL = 10
    bind.optional_parameters = False
    other = Receiver(accounts.get("handset"))
    router.bound(other)
    router.stalled(other)
    router.note_mo(ONE, other)
    healthy = ranged(accounts, f"^{THREE}$")
    router.bound(healthy)
    assert router.route(mt("x", ONE)) is other
    assert await probed(delivery, bind, 10) == ["m0", "m2", "m4", "m1", "m3", "m5"]
    assert not other.offered and not healthy.offered


async def test_a_probe_hands_a_stalled_bind_none_of_the_mts_its_address_range_leaves_out(
    store, delivery, router, accounts
) -> None:
    """The probed bind's address_range serves ONE, not TWO (and names no prefix: its probe reads every number); the
    account's other bind, stalled too, serves TWO. Its probe hands it ONE's MTs, not TWO's (routed to that other
    stalled bind: it could take those, whichever of them answered again, were its range not to leave TWO out)."""
    delivery.FULL = 1
    probed_bind, other = ranged(accounts, "[13]$"), Receiver(accounts.get("handset"))
    for bind in (probed_bind, other):
        router.bound(bind)
        router.stalled(bind)
    await admit(store, delivery, mt("m0", ONE), mt("m1", TWO), mt("m2", ONE), mt("m3", TWO))
    assert ([m.id for m in probed_bind.offered], [m.id for m in other.offered]) == (["m0"], ["m1"])  # m2, m3 parked
    delivery.backoff = [0.01]
    for bind in (probed_bind, other):  # timed out: their retries parked too
        bind.load = 0
        delivery.retry_later(bind.offered.pop(), bind=bind)
    await until(lambda: not delivery._retry_timers)
    delivery.FULL = 10
    assert await probed(delivery, probed_bind, 10) == ["m0", "m2"]
    assert not other.offered


async def test_a_probe_hands_a_stalled_sp_bind_what_is_addressed_to_its_account_whatever_its_address_range(
    store, delivery, router, accounts
) -> None:
    """README "Receipts": what is addressed to an SP account (its receipts, its notices) goes to any of its binds,
    whatever their address_range. Both of sp's binds, stalled, gave `^1065`, which leaves its codes 1066x out; what is
    addressed to it, routed to the bind that last sent from each code (`other`), is handed to the one probed all the
    same. Before, could_take knew ranges only: the probe turned each down (regression review review1: two such binds
    of an SP, silent, then answering again, got nothing until they bound again)."""
    delivery.FULL = 1
    probed_bind, other = sp_ranged(accounts, "^1065"), sp_ranged(accounts, "^1065")
    for bind in (probed_bind, other):
        router.bound(bind)
        router.stalled(bind)
    codes = [f"1066{n}" for n in range(1, 5)]
    await admit(store, delivery, *(mt(f"r{i}", code, to_account="sp") for i, code in enumerate(codes)))
    assert len(probed_bind.offered) == len(other.offered) == 1  # (the least busy each time) r2, r3 parked
    delivery.backoff = [0.01]
    for bind in (probed_bind, other):  # timed out: their retries parked too
        bind.load = 0
        delivery.retry_later(bind.offered.pop(), bind=bind)
    await until(lambda: not delivery._retry_timers)
    for code in codes:
        router.note_mo(code, other)
    assert {router.route(mt("x", code, to_account="sp")) for code in codes} == {other}
    delivery.FULL = 10
    assert sorted(await probed(delivery, probed_bind, 10)) == ["r0", "r1", "r2", "r3"]
    assert not other.offered


async def receipts_parked_on_two_stalled_binds(store, delivery, router, accounts) -> tuple[Receiver, Receiver]:
    """Both of sp's binds stalled; what is addressed to sp (its receipts r0 to r3: one destination, its service code)
    parked. Retries from now wait 60 s."""
    delivery.FULL = 1
    binds = Receiver(accounts.get("sp")), Receiver(accounts.get("sp"))
    for bind in binds:
        router.bound(bind)
        router.stalled(bind)
    receipts = [dataclasses.replace(mt(f"r{i}", "10661", to_account="sp"), esm_class=EsmClass.DELIVERY_RECEIPT)
                for i in range(4)]  # fmt: skip
    await admit(store, delivery, *receipts)
    for bind in binds:  # timed out: their retries parked
        bind.load = 0
        delivery.retry_later(bind.offered.pop(), bind=bind)
    delivery.backoff = [0.01]
    await until(lambda: not delivery._retry_timers)
    delivery.FULL = 10
    delivery.backoff = [60]
    return binds


def unanswered(delivery: Delivery, bind: Receiver) -> None:
    """What `bind` was offered timed out: it waits for its retry, failed on `bind`."""
    bind.load = 0
    for message in bind.offered:
        delivery.retry_later(message, bind=bind)
    del bind.offered[:]


@pytest.mark.parametrize(("count", "handed"), [(10, ["r0", "r1", "r2", "r3"]), (1, ["r0"])], ids=["all", "one"])
async def test_a_probe_hands_a_stalled_bind_first_the_mts_whose_attempt_another_stalled_bind_left_unanswered(
    store, delivery, router, accounts, count, handed
) -> None:
    """Both of sp's binds stalled; what is addressed to sp (its receipts: one destination, its service code) parked.
    `dead`, probed, left r0 and r1 unanswered: they wait for their retry. The probe of `back` takes them off their
    wait and hands them to it first, then r2 and r3, in order, as many as it takes (`count`): r1, not handed, waits
    for its retry as before. `dead`'s next probe hands it none: those in hand on `back` (otherwise than waiting for a
    retry) still make a probe pass over their destination. Before, `back`'s probe passed over it at once: while
    `dead` stayed bound, its probes holding some of them most of the time, `back`, answering again, got nothing."""
    dead, back = await receipts_parked_on_two_stalled_binds(store, delivery, router, accounts)
    assert await probed(delivery, dead, 2) == ["r0", "r1"]
    unanswered(delivery, dead)
    assert await probed(delivery, back, count) == handed
    waiting = [(message.id, failed_on) for _timer, message, failed_on in delivery._retry_timers.values()]
    assert waiting == ([] if count > 1 else [("r1", dead)])
    assert all(message_id in delivery._held for message_id in ("r0", "r1"))
    assert delivery.probe(dead, 10) is (count > 1)  # (not while r1, which failed on it, waits: its back-off stands)
    await asyncio.gather(*delivery._probes.values())
    assert not dead.offered  # those in hand on `back`


async def test_a_probe_takes_an_mt_off_its_wait_for_a_retry_once_at_most_its_back_off_standing_after(
    store, delivery, router, accounts
) -> None:
    """Both of sp's binds stalled and dead (they answer enquire_link, never deliver_sm). `first`'s probe hands it r0
    and r1, unanswered; `second`'s takes them off their wait and hands them to it, then r2 and r3, unanswered too.
    `first`'s next probe hands it none: r0 and r1 were taken off once, and all four wait for their retry (60 s),
    failed on `second` (r2 and r3 not taken off either: r0 and r1 before them still wait). Before, each bind's probe took back
    what had failed on the other: one MT went out every ~1.6 s (response_timeout 1), its back-off ignored."""
    first, second = await receipts_parked_on_two_stalled_binds(store, delivery, router, accounts)
    assert await probed(delivery, first, 2) == ["r0", "r1"]
    unanswered(delivery, first)
    assert await probed(delivery, second, 10) == ["r0", "r1", "r2", "r3"]
    unanswered(delivery, second)
    assert await probed(delivery, first, 10) == []
    waiting = [(message.id, failed_on) for _timer, message, failed_on in delivery._retry_timers.values()]
    assert waiting == [(f"r{i}", second) for i in range(4)]


class FinalsFail(SqliteStore):
    """Its mark_final of the ids in `failing` does not commit: the caller hears the writer died, nothing written."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failing: set[str] = set()

    def mark_final(self, message_id, status, done_at, error, receipt, *, then=None):
        if message_id not in self.failing or then is None:
            return super().mark_final(message_id, status, done_at, error, receipt, then=then)
        asyncio.get_running_loop().call_soon(then, None, WriterDied("SQLite writer process exited with status -9"))
        return None


async def test_an_mt_a_probe_took_off_its_wait_is_not_taken_off_again_after_a_cancellation_that_did_not_commit(
    tmp_path: Path, router, accounts, clock
) -> None:
    """As the test above: r0 and r1, taken off their wait by `second`'s probe and left unanswered there too, wait for
    their retry. A cancel_sm of each fails to commit: they wait again as they were, and `first`'s next probe still hands
    none of the four. Before, the cancellation dropped their mark (the MT ended, it seemed): they were taken off their
    wait again, r2 and r3 with them."""
    store = FinalsFail(str(tmp_path / "gw.db"), clock=clock.now)
    async with delivery_on(store, router, clock) as delivery:
        first, second = await receipts_parked_on_two_stalled_binds(store, delivery, router, accounts)
        assert await probed(delivery, first, 2) == ["r0", "r1"]
        unanswered(delivery, first)
        assert await probed(delivery, second, 10) == ["r0", "r1", "r2", "r3"]
        unanswered(delivery, second)
        store.failing = {"r0", "r1"}
        clock.set(START + delivery.late_answer_time)  # past the time their deliver_sm could be answered: cancellable
        for message_id in ("r0", "r1"):
            with pytest.raises(WriterDied):
                await delivery.cancel(await store.get(message_id))
        assert await probed(delivery, first, 10) == []
        waiting = [(message.id, failed_on) for _timer, message, failed_on in delivery._retry_timers.values()]
        assert sorted(waiting, key=lambda w: w[0]) == [(f"r{i}", second) for i in range(4)]
        delivery.stop()


async def test_an_mt_a_probe_took_off_its_wait_is_forgotten_when_the_store_gives_it_up_not_when_it_is_scheduled(
    tmp_path: Path, store, delivery, router, accounts, clock
) -> None:
    """r0 and r1, taken off their wait by `second`'s probe, are marked so (once at most). A replace_sm schedules r0 for
    a minute later: it has not ended, its mark stays. Its row damaged outside the gateway meanwhile, the sweep that
    finds it due gives it up: its mark goes then. Before, the store told Delivery only the destination of an enroute
    MT it gave up: the mark of one it gave up stayed for good (a set entry per such MT)."""
    first, second = await receipts_parked_on_two_stalled_binds(store, delivery, router, accounts)
    assert await probed(delivery, first, 2) == ["r0", "r1"]
    unanswered(delivery, first)
    assert await probed(delivery, second, 10) == ["r0", "r1", "r2", "r3"]
    unanswered(delivery, second)
    stored = await store.get("r0")
    later = dataclasses.replace(stored, status=MessageStatus.SCHEDULED, next_attempt_at=START + 60)
    assert await delivery.replace([(stored, later)]) == ["r0"]
    assert delivery._probe_took_off_retry == {"r0", "r1"}
    with contextlib.closing(sqlite3.connect(tmp_path / "gw.db", isolation_level=None)) as outside:
        outside.execute("UPDATE messages SET extra = '\"x\"' WHERE id = 'r0'")  # no JSON object: it does not read back
        clock.set(START + 60)
        await delivery.sweep()
        await settled(store)
        assert outside.execute("SELECT status FROM messages WHERE id = 'r0'").fetchone() == (MessageStatus.UNDELIVERABLE.value,)
    assert delivery._probe_took_off_retry == {"r1"}
    delivery.stop()


async def test_a_probe_passes_over_an_mt_too_long_for_its_bind_of_smpp33_that_no_bind_takes_not_its_subscriber(
    store, delivery, router, accounts
) -> None:
    """The probed bind is of SMPP 3.3 and FOUR's first MT is too long for it, with no bind of 3.4 to take it: it waits
    (as any read leaves it), and FOUR's next one is handed to the bind all the same (regression review probe3: a
    subscriber's first MT too long passed over all its others, and a first page of such subscribers left the bind
    with nothing to answer for good)."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts, m0_waits=False)
    four = "8613700000004"
    too_long_for_smpp33 = dataclasses.replace(mt("m8", four), short_message=b"x" * 300)
    await admit(store, delivery, too_long_for_smpp33, mt("m9", four))  # (parked)
    delivery.FULL = 10
    bind.optional_parameters = False
    assert await probed(delivery, bind, 10) == ["m0", "m2", "m4", "m1", "m3", "m5", "m6", "m9"]


async def test_a_probe_whose_bind_answers_again_while_it_reads_hands_it_nothing(
    store, delivery, router, accounts, monkeypatch
) -> None:
    """The bind answers a deliver_sm again (late) while its probe reads: what it parked is read back for it
    (Delivery.answering), in order, and the probe hands it nothing."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts)
    waiting_mts = store.waiting_mts
    reading = asyncio.Event()
    gates = [asyncio.Event(), asyncio.Event()]  # the probe's read of the numbers, then the backlog read's

    async def held_back(to_account, *args):
        if to_account is None:  # (not those addressed to the account: there are none)
            gate = gates[reading.is_set()]
            reading.set()
            await gate.wait()
        return await waiting_mts(to_account, *args)

    monkeypatch.setattr(store, "waiting_mts", held_back)
    assert delivery.probe(bind, 100)
    await reading.wait()
    router.answered(bind)
    delivery.answering(bind)
    gates[0].set()
    await asyncio.gather(*delivery._probes.values())
    gates[1].set()
    await asyncio.gather(*delivery._pulls.values())
    assert [m.id for m in bind.offered] == ["m2", "m4", "m1", "m3", "m5", "m6"]  # by the read (m0 waits for its retry)


async def test_a_probe_whose_read_fails_is_logged_and_the_next_one_hands_the_mts(
    store, delivery, router, accounts, monkeypatch
) -> None:
    """The store's read fails: logged, nothing handed out nor lost (the MTs stay in the store); the next probe hands
    them."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts)
    waiting_mts = store.waiting_mts

    async def failing(*args):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "waiting_mts", failing)
    with structlog.testing.capture_logs() as logs:
        assert await probed(delivery, bind, 2) == []
    assert [line["event"] for line in logs] == ["reading MTs parked for a stalled bind failed"]
    monkeypatch.setattr(store, "waiting_mts", waiting_mts)
    assert await probed(delivery, bind, 2) == ["m1", "m3"]


async def test_a_probe_ends_an_mt_whose_validity_ran_out_while_parked_and_hands_the_rest(
    store, delivery, router, accounts, clock
) -> None:
    """m7, parked for the stalled bind, has run out of validity when its probe reads it (before the sweep found it): it
    ends EXPIRED, not handed to the bind to go out late; the others are handed as before."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts, m0_waits=False)
    await admit(store, delivery, mt("m7", THREE, expires_at=START + 60))  # (parked)
    delivery.FULL = 10
    clock.advance(120)
    assert await probed(delivery, bind, 10) == ["m0", "m2", "m4", "m1", "m3", "m5", "m6"]
    await settled(store)
    assert await status_of(store, "m7") == MessageStatus.EXPIRED


async def test_a_probe_ends_rejected_the_mts_whose_sender_was_blocked_while_parked_and_hands_the_rest(
    store, delivery, router, accounts
) -> None:
    """TWO reported the sender while its MTs were parked for the stalled bind: its probe ends them REJECTED (README: a
    blocked sender's MTs waiting for a recipient end when taken up), not handed to the bind; the others are handed."""
    bind = await stalled_with_nothing_left(store, delivery, router, accounts, m0_waits=False)
    delivery.FULL = 10
    delivery.undeliverable = lambda m: (0x401, "blocked by the recipient") if m.dest_addr == TWO else None
    assert await probed(delivery, bind, 10) == ["m0", "m2", "m4", "m6"]
    await settled(store)
    assert [await status_of(store, i) for i in ("m1", "m3", "m5")] == [MessageStatus.REJECTED] * 3


async def test_new_mts_to_a_stalled_bind_its_backlog_read_waits_for_are_parked_and_read_back_once_in_order_when_it_answers(
    store, delivery, router, accounts
) -> None:
    """A stuck client binds again while MTs wait for it (parked at its last bind, or accepted while it was away): the
    read of them hands it a page and waits for room, the bind stalls, and each MT accepted next to a subscriber the
    read has not reached was held behind the read, in memory, none of them in the bind's load (`_full`): every MT
    routed to it. They are parked, those held before it stalled too, and the read waits until it answers again: then
    every MT goes out once, in order per subscriber."""
    bind = await stalled_with_its_backlog_read_waiting(store, delivery, router, accounts)
    assert not delivery._held  # n00..n09 and the retries parked: in the store only
    sp_bind = Receiver(accounts.get("sp"))
    router.bound(sp_bind)
    router.unbound(sp_bind)
    delivery.unbound(sp_bind)  # another account's bind goes: a read waiting for room looks again
    await settled(store)
    # No read meanwhile: each page would be parked again.
    assert not delivery._held and len(bind.offered) == 2 and "handset" in delivery._room_waiters
    router.answered(bind)
    delivery.answering(bind)  # (the read goes on, as no answer says: the deliver_sm timed out)
    await admit(store, delivery, mt("n10", TWO))  # behind the read (ids sort in the order MTs were accepted)
    await answer_until_read(store, delivery, bind)
    assert not delivery._pulls
    assert [m.id for m in bind.offered if m.dest_addr == ONE] == ["b0", "b1", "b0", "b1", "b2", "b3"]  # (retries read back)
    assert [m.id for m in bind.offered if m.dest_addr == TWO] == [f"n{i:02d}" for i in range(11)]


async def test_mts_held_behind_the_read_for_a_bind_that_stalls_after_another_are_parked_for_that_one(
    store, delivery, router, accounts
) -> None:
    """n0..n2 wait behind the account's backlog read (held for a bind new to it). `first` stalls: they stay, `second`
    takes them. `second` stalls too (Delivery.stalled runs as a stall begins, not at each timeout): they go to
    `first` now, the less busy, and are parked, not kept in memory until the read goes on; read back in order when
    `first` answers again."""
    first, second = Receiver(accounts.get("handset")), Receiver(accounts.get("handset"))
    for bind in (first, second):
        router.bound(bind)
    held = [mt(f"n{i}", TWO) for i in range(3)]
    read = delivery._reads["handset"] = BacklogRead(accounts.get("handset"), [])
    for message in held:  # (as dispatch holds them: committed, in hand, behind the read)
        await store.accept(message)
        delivery._held.add(message.id)
        read.hold(message)
    router.stalled(first)
    delivery.stalled(first)
    assert len(read.behind) == 3  # (for `second`)
    second.load = 1
    router.stalled(second)
    delivery.stalled(second)
    assert not read.behind and not delivery._held and delivery._parked_on == {first}
    router.answered(first)
    delivery.answering(first)
    await answer_until_read(store, delivery, first)
    assert [m.id for m in first.offered] == ["n0", "n1", "n2"] and not second.offered


async def test_a_bind_that_appears_beside_a_stalled_one_its_backlog_read_waits_for_is_given_it(
    store, delivery, router, accounts
) -> None:
    """The read waits for room on a stalled bind that parked MTs: another bind of the account appears, and the read
    goes on for it at once (nothing it was given would wake the read: its MTs waited behind it)."""
    await stalled_with_its_backlog_read_waiting(store, delivery, router, accounts)
    other = Receiver(accounts.get("handset"))
    router.bound(other)
    delivery.receiver_ready(other)
    await admit(store, delivery, mt("n10", TWO))  # behind the read
    await answer_until_read(store, delivery, other)
    assert not delivery._pulls
    assert [m.id for m in other.offered] == ["b0", "b1", "b2", "b3", *(f"n{i:02d}" for i in range(11))]


async def test_a_backlog_read_waiting_for_room_on_a_stalled_bind_ends_when_it_goes_and_the_next_bind_gets_it_all(
    store, delivery, router, accounts
) -> None:
    """The stalled bind the read waits for goes, nothing queued on it: the read ends (it waited for room for good),
    and the next bind is given every MT once, in order."""
    bind = await stalled_with_its_backlog_read_waiting(store, delivery, router, accounts)
    router.unbound(bind)
    delivery.unbound(bind)
    await until(lambda: not delivery._pulls)
    fresh = Receiver(accounts.get("handset"))
    router.bound(fresh)
    delivery.receiver_ready(fresh)
    await answer_until_read(store, delivery, fresh)
    assert not delivery._pulls
    assert [m.id for m in fresh.offered] == ["b0", "b1", "b2", "b3", *(f"n{i:02d}" for i in range(10))]


async def test_a_backlog_read_waiting_for_room_on_a_bind_whose_deliver_sm_timed_out_goes_on_when_it_answers_again(
    store, delivery, router, accounts
) -> None:
    """The read waits for room on the bind; its deliver_sm time out (a timeout wakes no read) and it stalls, no MT
    parked for it. It answers again with no delivery to wake the read (its peer reads again, or a late answer
    refuses for now): the read goes on, rather than wait for a delivery that may never come."""
    delivery.PAGE = delivery.ROOM = 2
    delivery.backoff = [60]
    await admit(store, delivery, *(mt(f"b{i}", ONE) for i in range(4)))
    bind = Receiver(accounts.get("handset"))
    router.bound(bind)
    delivery.receiver_ready(bind)
    await bind.wait_for(2)
    router.stalled(bind)
    for message in bind.offered:
        bind.load -= 1
        delivery.retry_later(message, bind=bind)
    router.answered(bind)
    delivery.answering(bind)
    await until(lambda: len(bind.offered) == 4)  # (not after b0's retry, a minute away)
    assert [m.id for m in bind.offered] == ["b0", "b1", "b2", "b3"]


class Sending(Receiver):
    """A bind with room in its window: what it is offered goes out at once (no cancel_sm takes it back)."""

    def offer(self, message: Message, again: bool = False) -> None:
        super().offer(message, again)
        self.sent.add(message.id)


async def test_an_mt_parked_on_a_stalled_bind_answered_late_there_is_not_sent_again_by_the_read_its_answer_starts(
    store, delivery, router, accounts
) -> None:
    """m0 timed out on the stalled bind and its retry was parked; the bind then answers m0's deliver_sm, late. That
    answer makes it a bind like any other again (the read of what was parked for it begins: `answering`) before it is
    taken as m0's delivery (SmppConnection._on_late_answer): the read handed m0 out again, a second copy on the air."""
    delivery.FULL = 1
    delivery.backoff = [0.01]
    one = "8613700000001"
    bind = Sending(accounts.get("handset"))
    router.bound(bind)
    router.stalled(bind)
    await admit(store, delivery, mt("m0", one), mt("m1", one))
    [m0] = bind.offered  # m1 parked
    bind.load -= 1
    delivery.retry_later(m0, bind=bind)  # timed out
    await until(lambda: "m0" not in delivery._retry_timers)
    assert "m0" not in delivery._held  # its retry: parked
    router.answered(bind)
    delivery.answering(bind)
    delivery.answered_late(m0, 0, bind, [])
    await asyncio.gather(*delivery._pulls.values(), *delivery._late)
    await settled(store)
    assert [m.id for m in bind.offered] == ["m0", "m1"]
    assert await status_of(store, "m0") is MessageStatus.DELIVERED and "m0" not in delivery._held


class GetFails(SqliteStore):
    """Its reads of one MT fail while `failing` (the database could not be read for a moment)."""

    failing = False

    async def get(self, message_id):
        if self.failing:
            raise OSError("disk I/O error")
        return await super().get(message_id)


async def test_an_mt_parked_on_a_stalled_bind_answered_late_while_the_store_cannot_be_read_still_goes_out(
    tmp_path: Path, router, accounts, clock
) -> None:
    """m0's retry was parked on the stalled bind, which then answers m0's deliver_sm, late, as the store fails to read
    m0 back: m0 stayed in hand for good, ENROUTE in the store, no read handing it out, the sweep not expiring it."""
    store = GetFails(str(tmp_path / "gw.db"), clock=clock.now)
    async with delivery_on(store, router, clock) as delivery:
        delivery.FULL = 1
        delivery.backoff = [0.01]
        bind = Sending(accounts.get("handset"))
        router.bound(bind)
        router.stalled(bind)
        await admit(store, delivery, mt("m0", "8613700000001"), mt("m1", "8613700000001"))
        [m0] = bind.offered  # m1 parked
        bind.load -= 1
        delivery.retry_later(m0, bind=bind)  # timed out
        await until(lambda: "m0" not in delivery._retry_timers)  # its retry: parked
        store.failing = True
        delivery.answered_late(m0, 0, bind, [])
        await asyncio.gather(*delivery._late, return_exceptions=True)
        store.failing = False
        assert "m0" not in delivery._held
        router.unbound(bind)
        delivery.unbound(bind)
        fresh = Receiver(accounts.get("handset"))
        router.bound(fresh)
        delivery.receiver_ready(fresh)
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in fresh.offered] == ["m0", "m1"]  # (the late answer lost: m0 sent again)


async def test_an_mt_admitted_while_the_backlog_is_read_goes_out_after_it(store, delivery, router, accounts) -> None:
    delivery.PAGE = 4
    receiver = await reading_backlog(store, delivery, router, accounts, 10)  # 6 still in the store
    await admit(store, delivery, mt("new", "8613700000001"))
    assert "new" not in [m.id for m in receiver.offered] and "new" in delivery._held
    answered = 0
    while len(receiver.offered) < 11:  # the subscriber answers what it has, the pull goes on
        answer(delivery, receiver, receiver.offered[answered:])
        answered = len(receiver.offered)
        await receiver.wait_for(answered + 1)
    assert [m.id for m in receiver.offered] == [f"m{i:02d}" for i in range(10)] + ["new"]
    assert not delivery._pulls and not delivery._reads


async def test_an_mt_a_page_read_hands_out_before_its_admission_does_not_overtake_one_waiting_behind_the_read(
    store, delivery, router, accounts
) -> None:
    """n1 is admitted during the read and waits behind it; n2, accepted after it, is committed but not yet
    admitted when a page reads it: it went out at once, before n1 (README: none overtakes an older one)."""
    delivery.PAGE = 4
    receiver = await reading_backlog(store, delivery, router, accounts, 10)
    await admit(store, delivery, mt("n1", "8613700000001"))
    late = mt("n2", "8613700000001")
    await store.accept(late)  # committed; the commit's callback has not run yet
    answered = 0
    while len(receiver.offered) < 12:
        answer(delivery, receiver, receiver.offered[answered:])
        answered = len(receiver.offered)
        await receiver.wait_for(answered + 1)
    delivery.admit(late)  # the commit's callback, late: counted only
    await settled(store)
    assert [m.id for m in receiver.offered] == [f"m{i:02d}" for i in range(10)] + ["n1", "n2"]
    answer(delivery, receiver, receiver.offered[answered:])
    await settled(store)
    assert not delivery.queued and not delivery._held and not delivery._reads


async def test_a_replaced_mt_waiting_behind_the_read_still_goes_out_after_it_and_before_a_newer_one(
    store, delivery, router, accounts
) -> None:
    """replace_sm took it from behind the read and offered it at once, ahead of m04..m09 still in the store; and held
    again behind n2, it went out after n2 if the read released them in the order held, not the order accepted."""
    delivery.PAGE = 4
    receiver = await reading_backlog(store, delivery, router, accounts, 10)
    await admit(store, delivery, mt("n1", "8613700000001"), mt("n2", "8613700000001"))
    stored = await store.get("n1")
    assert await delivery.replace([(stored, dataclasses.replace(stored, short_message=b"replaced"))]) == ["n1"]
    answered = 0
    while len(receiver.offered) < 12:
        answer(delivery, receiver, receiver.offered[answered:])
        answered = len(receiver.offered)
        await receiver.wait_for(answered + 1)
    assert [m.id for m in receiver.offered] == [f"m{i:02d}" for i in range(10)] + ["n1", "n2"]
    assert receiver.offered[-2].short_message == b"replaced"


async def test_an_mt_that_expired_waiting_ends_rejected_when_taken_up_if_its_sender_was_blocked_meanwhile(
    store, router, accounts, clock
) -> None:
    """Taken up (its subscriber bound, or a retry) after its validity ran out, before the sweep found it: it ended
    EXPIRED err:000 where the sweep says REJECTED (README: "ends the same way, not expired")."""
    blocked = Delivery(router, store, clock, MessageIds(), GatewaySettings(), undeliverable=lambda m: (0x400, "blocked"))
    message = mt("x", "8613700000001", expires_at=START + 60)
    await store.accept(message)
    clock.advance(120)
    blocked.dispatch(message)
    await settled(store)
    stored = await store.get("x")
    assert (stored.status, stored.error) == (MessageStatus.REJECTED, 400)


async def test_an_mt_a_page_read_handed_out_before_its_admission_is_not_offered_again(
    store, delivery, router, accounts
) -> None:
    """A bind appears while an MT commits: its backlog read sees the committed row before the commit's callback
    admits the MT (the store's reads see a commit before the loop hears of it)."""
    message = mt("a", "8613700000001")
    await store.accept(message)  # committed; its admission has not run yet
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    delivery.receiver_ready(receiver)
    await receiver.wait_for(1)
    await asyncio.gather(*delivery._pulls.values())
    delivery.admit(message)  # the commit's callback, late
    await settled(store)
    assert [m.id for m in receiver.offered] == ["a"] and delivery.queued == {"8613700000001": 1}
    answer(delivery, receiver, receiver.offered)
    await settled(store)
    assert not delivery.queued and not delivery._held and await status_of(store, "a") is MessageStatus.DELIVERED


async def test_an_mt_waiting_behind_a_backlog_stays_in_the_store_when_delivery_stops(
    store, delivery, router, accounts
) -> None:
    delivery.PAGE = 4
    receiver = await reading_backlog(store, delivery, router, accounts, 10)
    await admit(store, delivery, mt("new", "8613700000001"))
    pull = delivery._pulls["handset"]
    delivery.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await pull
    assert "new" not in [m.id for m in receiver.offered]
    assert "new" not in delivery._held and not delivery._reads  # parked: a later read may hand it out
    assert await status_of(store, "new") is MessageStatus.ENROUTE


async def test_messages_handed_to_a_receiver_do_not_expire_from_the_park(store, delivery, router, accounts, clock) -> None:
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    await admit(store, delivery, mt("a", "8613700000001", START + 100))
    assert [m.id for m in receiver.offered] == ["a"]
    clock.set(START + 200)
    await delivery.sweep()
    await settled(store)
    assert await status_of(store, "a") is MessageStatus.ENROUTE  # in flight: its answer decides


async def test_a_delivered_message_is_not_handed_out_again_before_its_status_is_committed(
    store, delivery, router, accounts
) -> None:
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    await admit(store, delivery, mt("a", "8613700000001"))
    delivery.delivered(receiver.offered[0])  # its DELIVERED is issued, not yet committed
    late = Receiver(accounts.get("handset"))
    router.bound(late)
    delivery.receiver_ready(late)
    await asyncio.gather(*delivery._pulls.values())
    assert late.offered == []
    await settled(store)
    assert await status_of(store, "a") is MessageStatus.DELIVERED


async def test_after_a_restart_the_queue_counts_come_from_the_store(store, router, clock) -> None:
    """Each subscriber's count is the sum over the senders of the MTs waiting for them (the store counts them by
    account, sender and recipient)."""
    await store.accept(mt("a", "8613700000001"))
    await store.accept(mt("b", "8613700000001"))
    await store.accept(mt("c", "8613700000002"))
    await store.accept(dataclasses.replace(mt("d", "8613700000001"), source_addr="10658"))
    restarted = Delivery(router, store, clock, MessageIds(), GatewaySettings())
    await restarted.restore()
    assert restarted.queued == {"8613700000001": 3, "8613700000002": 1}


class PauseBefore(SqliteStore):
    """Hands back the page holding MT `held_back` only when the test says so (as a networked store
    might, some time after the database answered)."""

    def __init__(self, path: str, clock, held_back: str) -> None:
        super().__init__(path, clock=clock)
        self.held_back = held_back
        self.reached, self.go_on = asyncio.Event(), asyncio.Event()

    async def waiting_mts(self, *args):
        page = await super().waiting_mts(*args)
        if any(m.id == self.held_back for _, m in page):
            self.reached.set()
            await self.go_on.wait()
        return page


async def test_a_page_read_before_a_delivery_committed_does_not_hand_that_mt_out_again(
    tmp_path: Path, router, accounts, clock
) -> None:
    store = PauseBefore(str(tmp_path / "slow.db"), clock.now, held_back="a")
    async with delivery_on(store, router, clock) as delivery:
        receiver = Receiver(accounts.get("handset"))
        router.bound(receiver)
        await admit(store, delivery, mt("a", "8613700000001"))
        late = Receiver(accounts.get("handset"))
        router.bound(late)
        delivery.receiver_ready(late)
        await store.reached.wait()  # the page holds "a", still undelivered in the store
        delivery.delivered(receiver.offered[0])
        await settled(store)  # "a" is DELIVERED in the store now
        store.go_on.set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in receiver.offered + late.offered] == ["a"]
        assert not delivery._held  # released once the page was handed out


class CountedReads(SqliteStore):
    """Counts the pages of a backlog read (`page_reads`) and the reads of MTs by sender (`by_sender_reads`: the sweep
    after a block or an unsubscription)."""

    def __init__(self, path: str, clock) -> None:
        super().__init__(path, clock=clock)
        self.page_reads = self.by_sender_reads = self.rows_read = 0

    async def waiting_mts(self, *args):
        self.page_reads += 1
        page = await super().waiting_mts(*args)
        self.rows_read += len(page)
        return page

    async def enroute_mts_from(self, *args, **kwargs):
        self.by_sender_reads += 1
        return await super().enroute_mts_from(*args, **kwargs)


async def test_binds_appearing_together_share_one_read_of_their_backlog(tmp_path: Path, router, accounts, clock) -> None:
    store = CountedReads(str(tmp_path / "counted.db"), clock.now)
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 10
        await admit(store, delivery, *(mt(f"m{i:02d}", f"86137000000{i % 7:02d}") for i in range(45)))
        binds = [Receiver(accounts.get("handset")) for _ in range(10)]
        for receiver in binds:  # as an ESME opening its binds: each bound, then announced
            router.bound(receiver)
            delivery.receiver_ready(receiver)
        await asyncio.gather(*delivery._pulls.values())
        assert sorted(m.id for r in binds for m in r.offered) == [f"m{i:02d}" for i in range(45)]
        # One pass for all ten: the account's own messages (1 page) and its number range (5 pages), not 60 reads.
        assert store.page_reads == 6


async def test_a_bind_that_appears_during_the_read_gets_what_the_earlier_binds_could_not_take(
    tmp_path: Path, router, accounts, clock
) -> None:
    store = PauseBefore(str(tmp_path / "pause.db"), clock.now, held_back="for-ranged")
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 1
        await admit(store, delivery, mt("for-anyone", "8613700000001"), mt("for-ranged", "8613700000002"))
        ranged = Receiver(accounts.get("handset"))
        ranged.address_range = re.compile("8613700000002")  # serves only ...02: "for-anyone" stays parked
        router.bound(ranged)
        delivery.receiver_ready(ranged)
        await store.reached.wait()  # "for-anyone" was read and parked again; the read goes on
        anyone = Receiver(accounts.get("handset"))
        router.bound(anyone)
        delivery.receiver_ready(anyone)  # joins the read in progress...
        store.go_on.set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in ranged.offered] == ["for-ranged"]
        assert [m.id for m in anyone.offered] == ["for-anyone"]  # ...which went over the backlog once more for it



async def test_an_mt_held_behind_the_read_goes_out_once_the_read_has_passed_its_subscriber(
    store, delivery, router, accounts
) -> None:
    """Not at the end of the read: a bind appearing every few seconds kept an account's new MTs from going out."""
    delivery.PAGE = delivery.ROOM = 2
    await admit(store, delivery, mt("m1-0", "8613700000001"), mt("m1-1", "8613700000001"),
                *(mt(f"m5-{i}", "8613700000005") for i in range(4)))  # fmt: skip
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    delivery.receiver_ready(receiver)
    await receiver.wait_for(2)  # ...01's, and the read waits for room
    await admit(store, delivery, mt("new", "8613700000001"))
    answer(delivery, receiver, receiver.offered[:2])
    await receiver.wait_for(4)  # the next page ("new", in hand, and m5-0) got to ...05: nothing older to ...01 is left
    assert [m.id for m in receiver.offered] == ["m1-0", "m1-1", "m5-0", "new"] and delivery._pulls
    answered = 2
    while len(receiver.offered) < 7:  # the subscribers answer what they have, the read goes on
        answer(delivery, receiver, receiver.offered[answered:])
        answered = len(receiver.offered)
        await receiver.wait_for(answered + 1)
    assert [m.id for m in receiver.offered[4:]] == ["m5-1", "m5-2", "m5-3"]


async def test_an_mt_held_for_the_last_subscriber_read_goes_out_at_the_end_of_the_pass_not_after_the_next(
    store, delivery, router, accounts
) -> None:
    """A bind that appeared during the pass makes the read go over the backlog again: an MT held for a subscriber past
    the last page waited for that next pass to get to them too (all of it, while binds kept appearing)."""
    delivery.PAGE = delivery.ROOM = 2
    await admit(store, delivery, *(mt(f"m3-{i}", "8613700000003") for i in range(4)),
                mt("m9-0", "8613700000009"), mt("m9-1", "8613700000009"))  # fmt: skip
    nine = Receiver(accounts.get("handset"))
    nine.address_range = re.compile("8613700000009")
    router.bound(nine)
    delivery.receiver_ready(nine)
    await nine.wait_for(2)  # ...03's parked again (no bind serves them); the read waits for room after ...09's
    await admit(store, delivery, mt("new", "8613700000009"))  # held: the read has not passed ...09
    three = Receiver(accounts.get("handset"))
    three.address_range = re.compile("8613700000003")
    router.bound(three)
    delivery.receiver_ready(three)  # the read goes over the backlog again for it
    answer(delivery, nine, nine.offered[:])
    await three.wait_for(2)  # the next pass's first page
    assert [m.id for m in nine.offered] == ["m9-0", "m9-1", "new"]


async def test_a_newer_mt_does_not_overtake_one_held_behind_the_read_by_going_to_another_bind(
    store, delivery, router, accounts
) -> None:
    """x1 went to the bind that appeared (the less loaded) and waits behind the read; x2, to the same subscriber, went
    to their other bind, bound before the read and now the less loaded, at once: ahead of x1."""
    delivery.PAGE = delivery.ROOM = 4
    await admit(store, delivery, *(mt(f"m5-{i}", "8613700000005") for i in range(8)))  # parked: no bind serves ...05
    nine = Receiver(accounts.get("handset"))
    nine.address_range = re.compile("8613700000009")
    router.bound(nine)
    delivery.receiver_ready(nine)
    await asyncio.gather(*delivery._pulls.values())
    await admit(store, delivery, *(mt(f"o{i}", "8613700000009") for i in range(6)))
    assert len(nine.offered) == 6
    many = Receiver(accounts.get("handset"))
    many.address_range = re.compile("86137000000(03|05|09)")
    router.bound(many)
    delivery.receiver_ready(many)
    await many.wait_for(4)  # a page of ...05's; the read waits for room
    await admit(store, delivery, mt("x1", "8613700000009"))  # to `many` (load 4 < 6), behind the read
    await admit(store, delivery, *(mt(f"t{i}", "8613700000003") for i in range(3)))  # ...03 passed: out at once
    assert many.load == 7 and "x1" not in [m.id for m in many.offered]
    await admit(store, delivery, mt("x2", "8613700000009"))  # `nine` is now the less loaded
    assert "x2" not in [m.id for m in nine.offered + many.offered]
    answered = 0
    while len(many.offered) < 13:  # `many` answers what it has, the read goes on past ...05 and ...09
        answer(delivery, many, many.offered[answered:])
        answered = len(many.offered)
        await many.wait_for(answered + 1)
    assert [m.id for m in many.offered[-2:]] == ["x1", "x2"]  # to `many`, now the less loaded, in order
    assert [m.id for m in nine.offered] == [f"o{i}" for i in range(6)]


@pytest.mark.parametrize("as_gateway", [False, True], ids=["whole backlog", "its number only"])
async def test_a_bind_that_appears_after_the_read_passed_its_subscriber_gets_their_older_mts_first(
    tmp_path: Path, router, accounts, clock, as_gateway
) -> None:
    """The read parked ...02's MTs again (no bind served ...02), went on, and then a bind for ...02 appeared: a new MT
    to ...02 waits for the next pass over the backlog, which hands it the older ones. (A range the gateway compiled
    has the read go over ...09's MTs alone, then ...02's; a pattern with no prefix known, over all of them.)"""

    def bind_for(number: str) -> Receiver:
        if as_gateway:
            return ranged(accounts, f"^{number}$")
        receiver = Receiver(accounts.get("handset"))
        receiver.address_range = re.compile(number)
        return receiver

    store = PauseBefore(str(tmp_path / "pause.db"), clock.now, held_back="m9-2")
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 2
        await admit(store, delivery, mt("m2-0", "8613700000002"), mt("m2-1", "8613700000002"),
                    *(mt(f"m9-{i}", "8613700000009") for i in range(4)))  # fmt: skip
        nine = bind_for("8613700000009")
        router.bound(nine)
        delivery.receiver_ready(nine)
        await store.reached.wait()  # ...09's first page read (past ...02, parked again, when the whole backlog is)
        two = bind_for("8613700000002")
        router.bound(two)
        delivery.receiver_ready(two)
        await admit(store, delivery, mt("new", "8613700000002"))
        assert two.offered == []
        store.go_on.set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in two.offered] == ["m2-0", "m2-1", "new"]
        assert [m.id for m in nine.offered] == [f"m9-{i}" for i in range(4)]


async def test_a_bind_that_appears_between_two_pages_of_its_subscribers_backlog_gets_all_of_it_in_order(
    tmp_path: Path, router, accounts, clock
) -> None:
    """A page ended in the middle of ...03's backlog, parked again (no bind served ...03); ...03's bind appeared before
    the next page, which handed it the newer half at once: the older half came only with the next pass, after it."""
    store = PauseBefore(str(tmp_path / "split.db"), clock.now, held_back="m3-2")
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 2
        await admit(store, delivery, *(mt(f"m3-{i}", "8613700000003") for i in range(4)), mt("m9-0", "8613700000009"))
        nine = Receiver(accounts.get("handset"))
        nine.address_range = re.compile("8613700000009")
        router.bound(nine)
        delivery.receiver_ready(nine)
        await store.reached.wait()  # m3-0 and m3-1 parked again; the page of m3-2 and m3-3 read, not handed out yet
        three = Receiver(accounts.get("handset"))
        three.address_range = re.compile("8613700000003")
        router.bound(three)
        delivery.receiver_ready(three)
        store.go_on.set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in three.offered] == [f"m3-{i}" for i in range(4)]
        assert [m.id for m in nine.offered] == ["m9-0"]


async def test_a_bind_that_drains_during_the_read_of_what_it_parked_is_handed_the_rest_of_that_pass_not_read_it_again(
    store, delivery, router, accounts, monkeypatch
) -> None:
    """The only bind answers more slowly than MTs come: full (BUSY made 5), it parks them; drained, the read of them
    hands it a page and waits for room; MTs to a subscriber the read passed go straight to it and fill it again. When
    it drained again, the rest of the pass parked everything it read for it (as for a bind that appeared during the
    pass), and the next pass read it all again: under a sustained overload each MT was read back from the store 2-3
    times. Now only what the pass had got to then waits for the next one
    (TWO's: its last page may have parked older MTs of theirs); THREE's MTs are read back once, and all go out once,
    in order per subscriber."""
    delivery.PAGE, delivery.ROOM, delivery.BUSY, delivery.HELD_BEHIND_READ = 2, 3, 5, 5
    read_back = out_of_hand_reads(store, delivery, monkeypatch)
    bind = Receiver(accounts.get("handset"))
    router.bound(bind)
    dests = [ONE] * 5 + [TWO] * 4 + [THREE] * 4
    await admit(store, delivery, *(mt(f"m{i:02d}", dest) for i, dest in enumerate(dests)))
    assert bind.load == 5 and bind in delivery._parked_on  # m05..m12 parked
    answer(delivery, bind, bind.offered[:3])  # it drains: the read of what it parked begins
    while "handset" not in delivery._room_waiters:
        await settled(store)
    assert [m.id for m in bind.offered[5:]] == ["m05"]  # and it waits for room
    await admit(store, delivery, mt("m13", ONE), mt("m14", ONE), mt("m15", ONE))  # passed: m13, m14 to it, m15 parked
    assert bind.load == 5 and bind in delivery._parked_on
    answer(delivery, bind, bind.offered[3:6])  # it drains again, during the pass: the read goes on
    await answer_until_read(store, delivery, bind)
    offered = [m.id for m in bind.offered]
    assert sorted(offered) == [f"m{i:02d}" for i in range(16)]
    for dest in (ONE, TWO, THREE):
        mine = [m.id for m in bind.offered if m.dest_addr == dest]
        assert mine == sorted(mine)
    assert {i: read_back[i] for i in ("m09", "m10", "m11", "m12")} == dict.fromkeys(("m09", "m10", "m11", "m12"), 1)


def out_of_hand_reads(store: SqliteStore, delivery: Delivery, monkeypatch) -> Counter[str]:
    """How many times each MT is read from the store by a backlog read while out of hand (to be handed out)."""
    reads: Counter[str] = Counter()
    waiting_mts = store.waiting_mts

    async def counted(*args):
        page = await waiting_mts(*args)
        reads.update(message.id for _cursor, message in page if message.id not in delivery._held)
        return page

    monkeypatch.setattr(store, "waiting_mts", counted)
    return reads


@pytest.mark.parametrize("reading", [False, True], ids=["between-reads", "during-a-read"])
async def test_what_a_stalled_bind_parked_is_read_back_for_every_bind_left_not_only_the_first_listed(
    tmp_path: Path, router, accounts, clock, reading: bool
) -> None:
    """As when a stalled bind with MTs parked goes (above), but the bind listed first, bound all along, serves only
    ...02: a read for it alone goes over ...02's numbers only, so m3 and m4 waited in the store though `other` serves
    ...01. They reach `other`, whether the bind goes between reads of the account's backlog or during one (for a bind
    of ...02 that appears, its page holding t0 read when the bind goes)."""
    store = PauseBefore(str(tmp_path / "slow.db"), clock.now, held_back="t0")
    async with delivery_on(store, router, clock) as delivery:
        delivery.FULL = 3
        first, ranged_bind, other = ranged(accounts, f"^{TWO}$"), ranged(accounts, f"^{ONE}$"), Receiver(accounts.get("handset"))
        for bind in (first, ranged_bind, other):
            router.bound(bind)
        for bind in (ranged_bind, other):
            router.stalled(bind)
        await admit(store, delivery, *(mt(f"m{i}", ONE) for i in range(5)))
        assert [m.id for m in ranged_bind.offered] == ["m0", "m1", "m2"] and not other.offered  # m3, m4 parked
        if reading:
            await admit(store, delivery, mt("t0", TWO))
            newcomer = ranged(accounts, f"^{TWO}$")
            router.bound(newcomer)
            delivery.receiver_ready(newcomer)
            await store.reached.wait()
        router.unbound(ranged_bind)
        delivery.unbound(ranged_bind)
        store.go_on.set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in other.offered] == ["m3", "m4"]


class FailingFirst(PauseBefore):
    """PauseBefore whose first page read fails (the database could not be read for a moment)."""

    async def waiting_mts(self, *args):
        if not hasattr(self, "failed"):
            self.failed = True
            raise OSError("disk I/O error")
        return await super().waiting_mts(*args)


async def test_after_a_backlog_read_failed_the_binds_it_was_for_do_not_overtake_what_it_left(
    tmp_path: Path, router, accounts, clock
) -> None:
    """A bind bound through a read that ended had its subscribers' MTs handed out, so theirs go out at once during
    the next read; not if that read failed: they are still in the store."""
    store = FailingFirst(str(tmp_path / "failing.db"), clock.now, held_back="m1-0")
    async with delivery_on(store, router, clock) as delivery:
        await admit(store, delivery, mt("m1-0", "8613700000001"))
        one = Receiver(accounts.get("handset"))
        one.address_range = re.compile("8613700000001")
        router.bound(one)
        delivery.receiver_ready(one)
        await asyncio.gather(*delivery._pulls.values())  # failed: m1-0 is still in the store
        assert one.offered == []
        other = Receiver(accounts.get("handset"))
        router.bound(other)
        delivery.receiver_ready(other)  # reads the backlog again
        await store.reached.wait()
        await admit(store, delivery, mt("new", "8613700000001"))
        store.go_on.set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in one.offered] == ["m1-0", "new"]


def sp_ranged(accounts: Accounts, address_range: str) -> Receiver:
    """A bind of `sp` that gave this address_range, compiled as the gateway compiles it."""
    receiver = Receiver(accounts.get("sp"))
    receiver.address_range = compile_address_range(address_range, NumberPlan())
    return receiver


def ranged(accounts: Accounts, address_range: str) -> Receiver:
    """A bind of `handset` that gave this address_range, compiled as the gateway compiles it."""
    receiver = Receiver(accounts.get("handset"))
    receiver.address_range = compile_address_range(address_range, NumberPlan())
    return receiver


async def test_a_bind_for_one_number_reads_only_that_numbers_backlog_and_one_without_a_range_all_of_it(
    tmp_path: Path, router, accounts, clock
) -> None:
    """A bind whose address_range serves only ...42 can be handed none of the others' MTs: its read reads (decodes,
    routes) ...42's alone, not the account's whole backlog (250,000 MTs to others cost 2.95 s of the event loop per
    such bind). Binds appearing together, one of them without a range, read all of it."""
    store = CountedReads(str(tmp_path / "counted.db"), clock.now)
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 10
        others = [mt(f"o{i:02d}", f"86137000001{i % 5:02d}") for i in range(40)]
        receipts = [mt(f"r{i}", f"86137000001{i:02d}", to_account="handset") for i in range(5)]
        await admit(store, delivery, *others, *receipts,
                    mt("x0", "8613700000042"), mt("rx", "8613700000042", to_account="handset"), mt("x1", "8613700000042"))  # fmt: skip
        one = ranged(accounts, "^8613700000042$")
        router.bound(one)
        delivery.receiver_ready(one)
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in one.offered] == ["rx", "x0", "x1"]  # what is addressed to the account first, as ever
        assert store.rows_read == 3
        two, anyone = ranged(accounts, "13700000100"), Receiver(accounts.get("handset"))
        for receiver in (two, anyone):
            router.bound(receiver)
            delivery.receiver_ready(receiver)
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in two.offered] == ["r0", *(f"o{i:02d}" for i in range(0, 40, 5))]
        assert sorted(m.id for m in anyone.offered) == sorted(
            m.id for m in others + receipts if m.dest_addr != "8613700000100"
        )
        assert store.rows_read == 3 + 48  # the whole backlog (...42's, in hand, too)


async def test_a_bind_for_one_number_appearing_beside_one_without_a_range_reads_only_that_numbers_backlog(
    tmp_path: Path, router, accounts, clock
) -> None:
    """The bind without a range was bound through a read that ended: the new bind's read is for it alone, and reads
    ...42's MTs, not the account's whole backlog (here the 40 queued on the other bind) as a read for both would."""
    store = CountedReads(str(tmp_path / "counted.db"), clock.now)
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 10
        anyone = Receiver(accounts.get("handset"))
        router.bound(anyone)
        delivery.receiver_ready(anyone)
        await asyncio.gather(*delivery._pulls.values())
        await admit(store, delivery, *(mt(f"o{i:02d}", f"86137000001{i % 5:02d}") for i in range(40)),
                    mt("x0", "8613700000042"))  # fmt: skip
        store.rows_read = 0
        one = ranged(accounts, "^8613700000042$")
        router.bound(one)
        delivery.receiver_ready(one)
        await asyncio.gather(*delivery._pulls.values())
        assert store.rows_read == 1  # x0's (in hand: queued on `anyone` as it was admitted)
        assert len(anyone.offered) == 41 and one.offered == []


class PausesAt(SqliteStore):
    """Hands back the page holding each of these MTs, the first time, only when the test says so (`go_on[id]`)."""

    def __init__(self, path: str, clock, *held_back: str) -> None:
        super().__init__(path, clock=clock)
        self.reached = {i: asyncio.Event() for i in held_back}
        self.go_on = {i: asyncio.Event() for i in held_back}

    async def waiting_mts(self, *args):
        page = await super().waiting_mts(*args)
        for _, message in page:
            if message.id in self.reached and not self.reached[message.id].is_set():
                self.reached[message.id].set()
                await self.go_on[message.id].wait()
        return page


async def test_mts_parked_for_a_bind_that_left_before_the_next_pass_go_to_the_bind_that_serves_them(
    tmp_path: Path, router, accounts, clock
) -> None:
    """...02's bind appeared during the read and left before its next pass: ...02's MTs, parked for it, are read in
    that pass (which is for ...09's bind, appeared with it) all the same, and go to the bind without a range."""
    store = PausesAt(str(tmp_path / "left.db"), clock.now, "m1-0", "m9-0")
    async with delivery_on(store, router, clock) as delivery:
        delivery.PAGE = 1
        await admit(store, delivery, mt("m1-0", "8613700000001"), mt("m2-0", "8613700000002"),
                    mt("m2-1", "8613700000002"), mt("m9-0", "8613700000009"))  # fmt: skip
        anyone = Receiver(accounts.get("handset"))
        router.bound(anyone)
        delivery.receiver_ready(anyone)
        await store.reached["m1-0"].wait()
        two, nine = ranged(accounts, "^8613700000002$"), ranged(accounts, "^8613700000009$")
        for receiver in (two, nine):
            router.bound(receiver)
            delivery.receiver_ready(receiver)
        store.go_on["m1-0"].set()
        await store.reached["m9-0"].wait()  # ...02's parked again: they were for `two`, which appeared during the pass
        router.unbound(two)
        store.go_on["m9-0"].set()
        await asyncio.gather(*delivery._pulls.values())
        assert [m.id for m in anyone.offered] == ["m1-0", "m2-0", "m2-1"]
        assert [m.id for m in nine.offered] == ["m9-0"] and two.offered == []


def test_a_pass_for_ranged_binds_reads_where_their_prefixes_meet_the_account_s_numbers(accounts) -> None:
    """The parts of the backlog a pass reads, as (BacklogRead range, to_account, low, below): each number once."""
    binds = [ranged(accounts, r"^8613700000042$"), ranged(accounts, "^86137"), ranged(accounts, "^8615")]
    assert _served_prefixes(binds) == ["86137", "8615"]  # ...42 is among 86137's
    assert _served_prefixes([*binds, Receiver(accounts.get("handset"))]) is None
    account = Accounts((AccountConfig("handset", "pw", "handset", numbers=("86137", "86150")),)).get("handset")
    assert list(_backlog_ranges(account, None)) == [
        (0, "handset", "", "\U0010ffff"), (1, None, "86137", "86138"), (2, None, "86150", "86151")]  # fmt: skip
    assert list(_backlog_ranges(account, ["861"])) == [
        (0, "handset", "861", "862"), (1, None, "86137", "86138"), (2, None, "86150", "86151")]  # fmt: skip
    assert list(_backlog_ranges(account, ["8613700000042", "8615"])) == [
        (0, "handset", "8613700000042", "8613700000043"), (0, "handset", "8615", "8616"),
        (1, None, "8613700000042", "8613700000043"), (2, None, "86150", "86151")]  # fmt: skip
    assert list(_backlog_ranges(account, ["86139"])) == [(0, "handset", "86139", "8613:")]


# --------------------------------------------------------- cancel_sm / replace_sm
async def test_cancel_ends_an_mt_as_deleted_wherever_it_waits(store, delivery, router, accounts) -> None:
    await admit(store, delivery, mt("parked", "8613700000001"))
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    await admit(store, delivery, mt("queued", "8613700000002"), mt("sent", "8613700000003"), mt("retrying", "8613700000004"))
    receiver.sent.add("sent")
    receiver.load -= 1
    delivery.failed(receiver.offered[-1], 0x58)  # "retrying": ESME_RTHROTTLED, another attempt later
    receiver.offered.pop()
    for message_id in ("parked", "queued", "retrying"):
        assert delivery.cancel(await store.get(message_id)), message_id
    assert not delivery.cancel(await store.get("sent"))  # its deliver_sm is out: its answer decides
    await settled(store)
    assert [await status_of(store, i) for i in ("parked", "queued", "retrying", "sent")] == [
        MessageStatus.DELETED, MessageStatus.DELETED, MessageStatus.DELETED, MessageStatus.ENROUTE]
    assert [m.id for m in receiver.offered] == ["sent"] and receiver.load == 1
    assert not delivery._retry_timers
    assert delivery.queued == {"8613700000003": 1}
    assert not delivery.cancel(await store.get("parked"))  # ended: nothing to take back (the store says deleted)


async def test_an_mt_cancelled_while_its_backlog_is_read_does_not_go_out(store, delivery, router, accounts) -> None:
    delivery.PAGE = 2
    receiver = await reading_backlog(store, delivery, router, accounts, 4)  # m02, m03 still in the store
    await admit(store, delivery, mt("new", "8613700000001"))  # behind the backlog
    assert delivery.cancel(await store.get("m03")) and delivery.cancel(await store.get("new"))
    answer(delivery, receiver, list(receiver.offered))
    await asyncio.gather(*delivery._pulls.values())
    assert [m.id for m in receiver.offered] == ["m00", "m01", "m02"]


async def test_replace_changes_an_mt_before_it_goes_out(store, delivery, router, accounts) -> None:
    await admit(store, delivery, mt("a", "8613700000001"))
    stored = await store.get("a")
    assert await delivery.replace([(stored, dataclasses.replace(stored, short_message=b"new text", registered_delivery=1))]) == ["a"]
    assert (await store.get("a")).short_message == b"new text"
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    delivery.receiver_ready(receiver)
    await receiver.wait_for(1)
    assert (receiver.offered[0].short_message, receiver.offered[0].registered_delivery) == (b"new text", 1)
    receiver.sent.add("a")
    stored = await store.get("a")
    assert await delivery.replace([(stored, dataclasses.replace(stored, short_message=b"too late"))]) == []  # on its way


# ------------------------------------------------------------- schedule_delivery_time
def scheduled(id: str, dest: str, at: float) -> Message:
    message = mt(id, dest)
    message.status, message.next_attempt_at = MessageStatus.SCHEDULED, at
    return message


async def test_a_scheduled_mt_joins_delivery_when_the_sweep_finds_it_due(store, delivery, router, accounts, clock) -> None:
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    delivery.PAGE = 2  # released a page at a time
    await admit(store, delivery, *(scheduled(f"s{i}", "8613700000001", START + 60 + i) for i in range(5)))
    await delivery.sweep()
    assert receiver.offered == [] and not delivery.queued and not delivery._held  # nothing of them in memory
    clock.set(START + 63)
    await delivery.sweep()
    assert [m.id for m in receiver.offered] == ["s0", "s1", "s2", "s3"]
    assert delivery.queued == {"8613700000001": 4}
    assert [await status_of(store, f"s{i}") for i in (0, 4)] == [MessageStatus.ENROUTE, MessageStatus.SCHEDULED]


async def test_cancelling_a_scheduled_mt_leaves_the_queue_counts_alone(store, delivery, clock) -> None:
    await admit(store, delivery, mt("parked", "8613700000001"), scheduled("later", "8613700000001", START + 60))
    assert delivery.cancel(await store.get("later"))
    assert delivery.queued == {"8613700000001": 1}  # the parked one; the scheduled one was never counted
    clock.set(START + 60)
    await delivery.sweep()
    await settled(store)
    assert await status_of(store, "later") is MessageStatus.DELETED


async def test_replace_moves_an_mt_into_and_out_of_its_schedule(store, delivery, router, accounts, clock) -> None:
    receiver = Receiver(accounts.get("handset"))
    router.bound(receiver)
    await admit(store, delivery, mt("a", "8613700000001"), scheduled("b", "8613700000002", START + 60))
    assert [m.id for m in receiver.offered] == ["a"]  # queued on the bind, not sent yet
    stored = await store.get("a")
    assert await delivery.replace([(stored, dataclasses.replace(stored, status=MessageStatus.SCHEDULED, next_attempt_at=START + 30))])
    assert receiver.offered == [] and not delivery.queued  # out of delivery until its time
    stored = await store.get("b")
    assert await delivery.replace([(stored, dataclasses.replace(stored, status=MessageStatus.ENROUTE, next_attempt_at=START))])
    assert [m.id for m in receiver.offered] == ["b"]  # due now
    clock.set(START + 30)
    await delivery.sweep()
    assert [m.id for m in receiver.offered] == ["b", "a"]


async def test_a_retry_after_a_timeout_is_logged_as_unanswered_not_as_esme_rok(store, delivery) -> None:
    message = mt("late", "8613700000001")
    await admit(store, delivery, message)
    with structlog.testing.capture_logs() as logs:
        delivery.retry_later(message)  # its deliver_sm timed out: no status came back
        delivery.retry_later(message, 0x58)  # ESME_RTHROTTLED
    assert [(line["event"], line["status"]) for line in logs if line["event"] == "mt retry"] == [
        ("mt retry", "no answer"), ("mt retry", "ESME_RTHROTTLED")]  # fmt: skip
    delivery.stop()


class AnswerLost(SqliteStore):
    """Its first mark_delivered commits, but the caller hears it failed: as when the writer process dies after its
    COMMIT and no new one can start to tell whether it committed (writer.WriterProcess._committed_after_all). (The
    writer's kill switch, tests/e2e/test_writer_death.py, cannot stage this: there a new writer always starts.)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.answers_to_lose = 1

    def mark_delivered(self, message_id, done_at, receipt, *, then=None):
        if self.answers_to_lose and then is not None:
            self.answers_to_lose -= 1
            heard = then

            def then(_result, _error) -> None:
                heard(None, WriterDied("SQLite writer process exited with status -9"))

        return super().mark_delivered(message_id, done_at, receipt, then=then)


def sp_mt(id: str) -> Message:
    """An SP's MT to a subscriber of `handset` that asks for a receipt (it goes to the `sp` account)."""
    return dataclasses.replace(mt(id, "8613700000001"), account="sp", source_addr="1066", registered_delivery=1)


async def until(condition, timeout: float = 5.0) -> None:
    """Until `condition()` holds (state no event announces: log lines), within `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def answer_until_read(store, delivery, *binds: Receiver) -> None:
    """Each bind answers what it has in flight, again and again (100 rounds), until the backlog read is over."""
    for _ in range(100):
        for bind in binds:
            answer(delivery, bind, bind.offered[len(bind.offered) - bind.load :])
        await settled(store)


async def test_a_final_status_committed_though_its_write_was_reported_failed_is_not_written_again_for_ever(
    tmp_path: Path, router, accounts, clock
) -> None:
    store = AnswerLost(str(tmp_path / "gw.db"), clock=clock.now)
    async with delivery_on(store, router, clock) as delivery:
        delivery.REWRITE_DELAY = 0.01
        handset, sp = Receiver(accounts.get("handset")), Receiver(accounts.get("sp"))
        router.bound(handset)
        router.bound(sp)
        await admit(store, delivery, sp_mt("a"))
        with structlog.testing.capture_logs() as logs:
            delivery.delivered(handset.offered[0])
            # Before: written again every REWRITE_DELAY, each time failing on the receipt's row (UNIQUE), the
            # receipt held back until the SP bound again.
            await asyncio.wait_for(sp.wait_for(1), 5)
        assert sp.offered[0].origin_id == "a"
        assert [line["event"] for line in logs if line["log_level"] != "info"] == [
            "final status not committed; writing it again until it is", "final status was committed after all"]  # fmt: skip
        assert await status_of(store, "a") is MessageStatus.DELIVERED
        assert "a" not in delivery._held  # no longer in hand: nothing keeps it from the store's reads
        delivery.stop()


async def test_a_final_status_that_keeps_failing_while_the_store_commits_is_logged_within_a_budget(
    store, router, accounts, clock
) -> None:
    class TakenIds(MessageIds):
        def next(self) -> str:
            return "taken"  # the receipt's id is a stored message's: its INSERT fails, the transaction with it

    delivery = Delivery(router, store, clock, TakenIds(), GatewaySettings())
    delivery.REWRITE_DELAY = 0.001
    delivery.rewrite_log = LogBudget(first=2, interval=0.05)
    await store.accept(mt("taken", "8613700000002"))
    handset = Receiver(accounts.get("handset"))
    router.bound(handset)
    await admit(store, delivery, sp_mt("a"))
    with structlog.testing.capture_logs() as logs:
        delivery.delivered(handset.offered[0])
        # Before: one warning, then nothing, though it was written again every REWRITE_DELAY for ever.
        await until(lambda: any(line["event"].endswith("more not logged") for line in logs))
    delivery.stop()
    lines = [line for line in logs if line["log_level"] != "info"]
    assert [line["event"] for line in lines[:3]] == [
        "final status not committed; writing it again until it is", "final status still not committed",
        "final status still not committed"]  # fmt: skip
    assert "UNIQUE constraint failed: messages.id" in lines[1]["error"] and lines[1]["message_id"] == "a"
    summary = next(line for line in lines if line["event"] == "final status still not committed: more not logged")
    assert summary["count"] >= 1
    assert store.can_commit  # the store commits: the failure is this write's own
    assert await status_of(store, "a") is MessageStatus.ENROUTE


def spam(id: str, source: str, dest: str) -> Message:
    return Message(id, Direction.MT, MessageStatus.ENROUTE, "handset", source, dest, b"spam", expires_at=START + 86_400)


async def test_a_restart_ends_a_sender_s_backlog_for_many_recipients_in_one_read(tmp_path, router, clock) -> None:
    """A spammer blocked network-wide with thousands of victims off line, and a crash before the sweep that ends their
    spam: after the restart, one read by sender ends it all, not one read per victim (50,000 of them took 5 s)."""
    store = CountedReads(str(tmp_path / "gw.db"), clock.now)
    victims = [f"86137{i:08d}" for i in range(Delivery.ONE_READ_ABOVE + 1)]
    async with delivery_on(store, router, clock) as delivery:
        for i, victim in enumerate(victims):
            await store.accept(spam(f"s{i:03d}", "8613800000001", victim))
        await store.accept(spam("after-lift", "8613800000001", "8613700000999"))  # not stopped: it stays
        stopped = {m: (0x400, "blocked") for m in (f"s{i:03d}" for i in range(len(victims)))}
        delivery.undeliverable = lambda message: stopped.get(message.id)
        await delivery.restore(lambda account, source, dest: dest != "8613700000999")
        await delivery.sweep()
        await settled(store)
        assert store.by_sender_reads == 1
        assert {await status_of(store, m) for m in stopped} == {MessageStatus.REJECTED}
        assert await status_of(store, "after-lift") is MessageStatus.ENROUTE
        assert delivery.queued == {"8613700000999": 1}


async def test_the_sweep_lets_the_binds_be_served_between_its_reads(store, router, clock) -> None:
    """The store's reads do not yield to the loop: a restart that queued a read for each of 20 senders' victims ran
    them all at once, and no bind was served meanwhile (50,000 of them: enquire_link answered after 5.4 s)."""
    for s in range(20):
        await store.accept(spam(f"s{s:02d}", f"86138000000{s:02d}", "8613700000001"))
    delivery = Delivery(router, store, clock, MessageIds(), GatewaySettings(), lambda message: (0x400, "blocked"))
    await delivery.restore(lambda account, source, dest: True)
    sweep = asyncio.create_task(delivery.sweep())
    turns = 0
    while not sweep.done():  # what else the loop runs while the sweep goes on
        turns += 1
        await asyncio.sleep(0)
    await sweep
    assert turns > 20
    await settled(store)
    assert {await status_of(store, f"s{s:02d}") for s in range(20)} == {MessageStatus.REJECTED}


async def test_a_mass_expiry_lets_the_binds_be_served_between_its_pages(store, delivery, clock) -> None:
    delivery.PAGE = 2
    await admit(store, delivery, *(mt(f"m{i}", f"86137000000{i:02d}", START + 100) for i in range(10)))
    clock.set(START + 100)
    sweep = asyncio.create_task(delivery.sweep())
    turns = 0
    while not sweep.done():
        turns += 1
        await asyncio.sleep(0)
    await sweep
    assert turns > 5  # a turn after each of the 5 pages (and the reads that find nothing)
    await settled(store)
    assert {await status_of(store, f"m{i}") for i in range(10)} == {MessageStatus.EXPIRED}
