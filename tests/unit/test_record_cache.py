"""The record cache answers every query the way the store does, after any sequence of committed effects."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from dataclasses import replace

import pytest

import gateway.store.cache
from gateway.store.cache import RecordCache, _Narrowed
from gateway.store.effects import Delete, Put
from gateway.store.records import Block, Dialogue, JobRun, PendingOrder, SpamReport, Subscriber, Subscription, Survey
from gateway.store.sqlite import SqliteStore
from handlers import confirmation
from tests.services_support import service_bench

PEOPLE = ("8613800000001", "8613800000002", "8613800000003")
NUMBERS = ("8613100000001", "8613100000002")


@pytest.fixture
async def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


def random_effect(rng: random.Random, n: int):
    """One effect on a record like the handlers write; ties in times are common on purpose.

    A record's partition columns (msisdn, reporter, reported) follow from its id, as in the handlers:
    they are fixed when it is created (the cache relies on it)."""
    k = rng.randint(0, 8)
    who, number = PEOPLE[k % len(PEOPLE)], NUMBERS[k % len(NUMBERS)]
    at = float(rng.randint(0, 5))
    kind = rng.randrange(11)
    if kind == 0:
        return Put(Subscriber(rng.choice(PEOPLE), rng.choice(("zh", "en"))))
    if kind == 1:
        return Put(Subscription(f"s{k}", who, rng.choice(("a", "b")), rng.choice(("active", "cancelled")),
                                at, "sms", "", at + 1, rng.choice((None, at)), None))  # fmt: skip
    if kind == 2:
        return Put(PendingOrder(f"o{k}", who, "a", "sms", f"Y{rng.randint(1, 3)}", at, at + rng.randint(0, 4),
                                rng.choice(("pending", "confirmed", "expired"))))  # fmt: skip
    if kind == 3:
        dialogue = rng.choice(("unsubscribe.listing", "unsubscribe.all", "spam.number"))
        return Put(Dialogue(rng.choice(PEOPLE), dialogue, {"n": n}, at, at + 3))
    if kind == 4:
        return Delete(Dialogue, (rng.choice(PEOPLE), rng.choice(("unsubscribe.listing", "unsubscribe.all", "spam.number"))))
    if kind == 5:
        return Put(SpamReport(f"r{k}", who, number, "text", at, rng.choice(("received", "handled"))))
    if kind == 8:
        return Put(JobRun(rng.choice(("billing", "reminders")), f"2026-{rng.randint(10, 12)}", at))
    if kind == 9:
        return Delete(JobRun, (rng.choice(("billing", "reminders")), f"2026-{rng.randint(10, 12)}"))
    if kind == 10:  # as the order prune deletes them: with the order as read (its key does not name its msisdn)
        order = PendingOrder(f"o{k}", who, "a", "sms", "Y1", at, at, "expired")
        return Delete(PendingOrder, (order.id,), order)
    if kind == 6:
        return Put(Block(f"b{k % 5}", NUMBERS[k % 5 % len(NUMBERS)], rng.choice(("", who)), at, rng.choice((None, at + 1))))
    return Put(Survey(f"v{k}", who, "sms:10086", "", at, at + rng.randint(1, 4),
                      rng.choice(("sent", "reason", "rated", "expired")), reprompted=rng.random() < 0.5))  # fmt: skip


def queries(rng: random.Random) -> list[tuple[type, dict]]:
    """The shapes the handlers ask (and a few more), with random values."""
    who, number, now = rng.choice(PEOPLE), rng.choice(NUMBERS), float(rng.randint(0, 6))
    return [
        (Subscriber, {"msisdn": who}),
        (Subscription, {"msisdn": who, "status": "active", "order_by": "ordered_at"}),
        (Subscription, {"msisdn": who, "service_id": "a", "status": "active", "limit": 1}),
        (Subscription, {"msisdn": who, "id__in": ["s1", "s2", "s9"]}),
        (Subscription, {"msisdn": who, "cancelled_at": None}),
        (PendingOrder, {"msisdn": who, "status": "pending", "order_by": "created_at"}),
        (PendingOrder, {"msisdn": who, "status": "pending", "expires_at__gt": now, "order_by": "-created_at", "limit": 1}),
        (PendingOrder, {"msisdn": who, "expires_at__gt": now - 2, "order_by": "-created_at"}),
        (Dialogue, {"msisdn": who, "kind__in": ["unsubscribe.listing", "unsubscribe.all"]}),
        (Dialogue, {"msisdn": who, "kind": "spam.number"}),
        (SpamReport, {"reporter": who, "created_at__gte": now}),
        (SpamReport, {"reported": number, "status": "received"}),
        (Block, {"reported": number, "reporter": "", "lifted_at": None}),
        (Block, {"reported": number, "reporter": who, "lifted_at": None}),
        (Survey, {"msisdn": who, "status__in": ["sent", "reason"]}),
        (Survey, {"msisdn": who, "order_by": "-created_at", "limit": 5}),
        (Survey, {"msisdn": who, "reprompted": True, "created_at__lte": now}),
        (Survey, {"status": "sent"}),  # no partition column: straight to the store
        (JobRun, {"job": "billing", "ran_at__gt": now}),
        (JobRun, {"job": "billing", "order_by": "period"}),
        (JobRun, {"job": "reminders", "period": "2026-11"}),
    ]


def comparable(records: list, ordered: bool) -> list:
    return [repr(r) for r in records] if ordered else sorted(repr(r) for r in records)


@pytest.mark.parametrize(("max_partitions", "narrow_from", "max_rows"),
                         [(6, 64, 10**6), (1000, 64, 10**6), (6, 0, 10**6), (1000, 0, 10**6), (1000, 64, 25)])  # fmt: skip
async def test_every_query_matches_the_store_after_random_commits(
    store: SqliteStore, max_partitions: int, narrow_from: int, max_rows: int
) -> None:
    """max_partitions 6: partitions are forgotten and read again; 1000: they stay, and every effect is applied to
    them in memory. narrow_from 0: every partition is also kept by value (_Narrowed), not only large ones. max_rows
    25: forgotten by the rows they hold in all."""
    rng = random.Random(7)
    cache = RecordCache(store, max_partitions=max_partitions, narrow_from=narrow_from, max_rows=max_rows)
    for n in range(400):
        effects = [random_effect(rng, n) for _ in range(rng.randint(1, 3))]
        await store.apply(effects)
        cache.committed(effects)
        for record_type, query in queries(rng):
            filters = dict(query)
            order_by, limit = filters.pop("order_by", None), filters.pop("limit", None)
            expected = await store.find(record_type, order_by=order_by, limit=limit, **filters)
            got = await cache.find(record_type, order_by=order_by, limit=limit, **filters)
            # Ties in order_by (equal times) come out in the store's order too; without order_by any order is right.
            assert comparable(got, order_by is not None) == comparable(expected, order_by is not None), (n, record_type, query)
        for record_type, column, filters in distinct_queries(rng):
            from_records = {getattr(r, column) for r in await store.find(record_type, **filters)}
            assert await store.distinct(record_type, column, **filters) == from_records, (n, column, filters)
            assert await cache.distinct(record_type, column, **filters) == from_records, (n, column, filters)
        assert cache.rows_held == sum(map(len, cache._partitions.values())) <= max_rows
    assert cache.hits > 0 and cache.loads > 0  # both paths ran (with 6 partitions of 9 kinds, loads may be more)


def distinct_queries(rng: random.Random) -> list[tuple[type, str, dict]]:
    who, number, now = rng.choice(PEOPLE), rng.choice(NUMBERS), float(rng.randint(0, 6))
    return [
        (SpamReport, "reporter", {"reported": number, "status": "received", "created_at__gte": now}),
        (SpamReport, "reported", {"reporter": who}),
        (Block, "reporter", {"reported": number, "lifted_at": None}),
        (Survey, "msisdn", {"status": "sent"}),  # no partition column: straight to the store
    ]


async def test_a_record_changed_by_its_reader_is_not_changed_in_the_cache(store: SqliteStore) -> None:
    cache = RecordCache(store)
    survey = Survey("v1", PEOPLE[0], "sms:10086", "", 1.0, 5.0, "sent")
    await store.apply([Put(survey)])
    (read,) = await cache.find(Survey, msisdn=PEOPLE[0])
    read.status = "rated"  # as a handler does before returning Put(read); it is not committed
    assert [s.status for s in await cache.find(Survey, msisdn=PEOPLE[0])] == ["sent"]


async def test_effects_not_committed_are_not_seen(store: SqliteStore) -> None:
    """Only what callers report as committed changes the cache: an outcome never committed leaves no trace."""
    cache = RecordCache(store)
    assert await cache.find(Subscriber, msisdn=PEOPLE[0]) == []
    effect = Put(Subscriber(PEOPLE[0], "en"))
    assert await cache.find(Subscriber, msisdn=PEOPLE[0]) == []  # built, not committed
    await store.apply([effect])
    cache.committed([effect])
    assert await cache.find(Subscriber, msisdn=PEOPLE[0]) == [Subscriber(PEOPLE[0], "en")]


async def test_effects_in_flight_are_read_as_if_committed_and_forgotten_if_their_commit_fails(
    store: SqliteStore, tmp_path
) -> None:
    """`issued` effects (an MO that hands its serial keys on before its commit is done, gateway/mo.py): every
    partitioned query answers as if they were committed, partitions read from the store meanwhile included;
    once a commit fails, what it touched is answered as the store holds it again."""
    rng = random.Random(11)
    cache = RecordCache(store, max_partitions=4)  # small: partitions are read again while effects are in flight
    shadow = SqliteStore(str(tmp_path / "shadow.db"))  # the state with every issued effect that commits
    await shadow.open()
    in_flight: list[tuple[int, object, list]] = []
    try:
        for n in range(300):
            effects = [random_effect(rng, n) for _ in range(rng.randint(1, 3))]
            failing = rng.random() < 0.1
            if failing:  # a commit the store refuses (subscribers.language is NOT NULL): nothing of it stands
                effects.append(Put(Subscriber(PEOPLE[0], None)))
            else:
                await shadow.apply(effects)
            if failing:
                await cache.find(Subscriber, msisdn=PEOPLE[0])  # in memory: the refused Put is applied to it
            token, commit = cache.issued(effects), store.apply(effects)
            if failing:  # seen until its commit fails (queries are asked once it has), earlier ones maybe in flight
                with pytest.raises(sqlite3.IntegrityError):
                    await commit
                cache.settled(token, False)
                assert await cache.find(Subscriber, msisdn=PEOPLE[0]) == await shadow.find(Subscriber, msisdn=PEOPLE[0])
            else:
                in_flight.append((token, commit, effects))
            while in_flight and rng.random() < 0.5:  # commits settle in issue order, some later than others
                token, commit, _ = in_flight.pop(0)
                try:
                    await commit
                except Exception:
                    cache.settled(token, False)
                else:
                    cache.settled(token, True)
            for record_type, query in queries(rng):
                filters = dict(query)
                if not any(column in filters for column in ("msisdn", "reporter", "reported")):
                    continue  # answered by the store, which has only what is committed
                order_by, limit = filters.pop("order_by", None), filters.pop("limit", None)
                expected = await shadow.find(record_type, order_by=order_by, limit=limit, **filters)
                got = await cache.find(record_type, order_by=order_by, limit=limit, **filters)
                assert comparable(got, order_by is not None) == comparable(expected, order_by is not None), (n, record_type, query)
        assert cache.loads > 20
    finally:
        for _token, commit, _ in in_flight:
            await commit  # only refused ones fail, and none is left in flight
        await shadow.close()


def test_a_partition_read_by_value_stays_exact_when_a_row_is_stored_in_place() -> None:
    """`_Narrowed.holding` after a row is stored again under its key without leaving its place (not a Put's
    pop-then-append): the row is found under its new value only, and the rows keep the partition's order."""
    rows = _Narrowed({"a": ("a", "active"), "b": ("b", "cancelled"), "c": ("c", "active")})
    assert [r[0] for r in rows.holding(1, "active")] == ["a", "c"]
    rows["a"] = ("a", "cancelled")
    assert [r[0] for r in rows.holding(1, "active")] == ["c"]
    assert [r[0] for r in rows.holding(1, "cancelled")] == ["a", "b"]
    rows.pop("b")
    rows["b"] = ("b", "active")
    assert [r[0] for r in rows.holding(1, "active")] == ["c", "b"]
    assert list(rows.holding(1, "expired")) == []
    assert rows.pop("zz", None) is None
    with pytest.raises(KeyError):
        rows.pop("zz")


async def test_the_rows_held_stay_within_max_rows_as_busy_subscribers_partitions_grow(store: SqliteStore) -> None:
    """Records are kept for ever, so a subscriber's partition grows with every order and survey: the partition
    count stayed far below its limit while a soak of 5,000 busy subscribers grew the gateway ~5 MB a minute."""
    cache = RecordCache(store, max_rows=300)
    people = [f"86138{i:08d}" for i in range(20)]
    for n in range(60):  # every subscriber orders and is surveyed again and again: 20 partitions, 2,400 rows
        effects = [Put(Survey(f"s{n}-{i}", who, "hotline", "", float(n), float(n + 1), "rated", rating=1))
                   for i, who in enumerate(people)]  # fmt: skip
        await store.apply(effects)
        cache.committed(effects)
        for who in people[n % 3 :: 3]:
            assert len(await cache.find(Survey, msisdn=who)) == n + 1
        assert cache.rows_held == sum(map(len, cache._partitions.values())) <= 300
    assert len(cache._partitions) < len(people)  # forgotten by their rows, not their count


async def test_the_rows_held_stay_counted_when_a_delete_forgets_whole_partitions(store: SqliteStore) -> None:
    """A Delete whose key does not name its partition forgets every partition of that kind: `rows_held += _apply()`
    read the count before _apply lowered it, and the count stayed too high."""
    cache = RecordCache(store)
    surveys = [Put(Survey(f"v{i}", "8613800000001", "hotline", "", float(i), float(i + 1), "sent")) for i in range(10)]
    await store.apply(surveys)
    cache.committed(surveys)
    assert len(await cache.find(Survey, msisdn="8613800000001")) == 10 and cache.rows_held == 10
    await store.apply([Delete(Survey, ("v0",))])
    cache.committed([Delete(Survey, ("v0",))])
    assert cache.rows_held == sum(map(len, cache._partitions.values())) == 0


async def test_the_orders_pruned_leave_their_subscribers_partitions_and_no_one_elses(tmp_path) -> None:
    """The order prune (confirmation.delete_past_use) deletes orders by id, which does not name the subscriber whose
    partition holds them: each Delete forgot every subscriber's orders, looking through every partition loaded, and
    each prune held the loop for 3-5 s once 26,000 subscribers had been seen. Only the pruned orders' subscribers'
    partitions change; every other one stays loaded (a hit, not read again)."""
    bench = await service_bench(tmp_path)
    try:
        now = bench.clock.now()
        people = [f"86138{i:08d}" for i in range(50)]
        ended, live = now - 2 * bench.ctx.settings.confirmation_validity, now + 60
        orders = [PendingOrder(f"o{i}-{n}", who, "sina-news", "sms", f"Y{n}", ended - 60, expires_at, status)
                  for i, who in enumerate(people)
                  for n, (expires_at, status) in enumerate(((ended, "expired"), (ended, "confirmed"), (live, "pending")))]  # fmt: skip
        await bench.store.apply([Put(o) for o in orders])
        cache = RecordCache(bench.store)
        for who in people:
            await cache.find(Subscriber, msisdn=who)
            assert len(await cache.find(PendingOrder, msisdn=who)) == 3
        loads = cache.loads
        pruned = await confirmation.delete_past_use(replace(bench.ctx, store=cache), people[:2], now)
        await bench.store.apply(pruned.effects)
        cache.committed(pruned.effects)
        for who in people:
            assert [o.id for o in await cache.find(PendingOrder, msisdn=who)] == [o.id for o in await bench.store.find(PendingOrder, msisdn=who)]
            assert await cache.find(Subscriber, msisdn=who) == []
        assert [o.status for o in await cache.find(PendingOrder, msisdn=people[0])] == ["pending"]
        assert cache.loads == loads  # none forgotten: every partition answered from memory
        assert cache.rows_held == sum(map(len, cache._partitions.values()))
    finally:
        await bench.close()


@pytest.mark.parametrize("record_type", [SpamReport, Block])
async def test_the_records_of_a_much_reported_number_are_read_while_the_loop_serves_others(store, record_type) -> None:
    """A number reported by 130,000 subscribers: its reports and blocks (one per reporter) were read on the event
    loop at the first report about it after a start, or a lift, or at each once they no longer fit in max_rows,
    and every bind stalled for 0.2-1.5 s."""
    spammer = "8613912345678"
    if record_type is SpamReport:
        records = [SpamReport(f"r{i:05d}", f"86139{i:08d}", spammer, "spam", 1.0 + i, "handled") for i in range(3000)]
    else:
        records = [Block(f"b{i:05d}", spammer, f"86139{i:08d}", 1.0 + i) for i in range(3000)]
    await store.apply([Put(r) for r in records])
    cache = RecordCache(store)
    reading = asyncio.ensure_future(cache.find(record_type, reported=spammer))
    turns = 0
    while not reading.done():  # what else the loop runs meanwhile
        turns += 1
        await asyncio.sleep(0)
    assert turns > 1
    assert sorted(r.id for r in await reading) == sorted(r.id for r in records)
    assert len(await cache.find(record_type, reported=spammer)) == 3000
    assert (cache.loads, cache.hits) == (1, 1)  # kept: the second answered from memory


class ReadThenWait(SqliteStore):
    """Its `scan` reads, says so (`read`), and hands its rows back only when told (`go_on`)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.read, self.go_on = asyncio.Event(), asyncio.Event()

    async def scan(self, *args, **kwargs):
        rows = await super().scan(*args, **kwargs)
        self.read.set()
        await self.go_on.wait()
        return rows


@pytest.mark.parametrize("handed_on", [True, False], ids=["issued, then settled", "committed"])
async def test_a_report_whose_commit_settles_while_its_numbers_reports_are_read_is_in_what_is_read(
    tmp_path, monkeypatch, handed_on
) -> None:
    """The previous report's effects are in flight (its key handed on) as the next report reads the number's
    reports in a thread; that commit settles after the read and before the rows are made: the report was neither in
    what was read nor in flight any more, one reporter fewer was counted, and the block at the threshold missed."""
    monkeypatch.setattr(gateway.store.cache, "BIG", 2)  # a partition of 3 rows is read in a thread
    store = ReadThenWait(str(tmp_path / "gw.db"))
    await store.open()
    try:
        spammer = "8613912345678"
        await store.apply([Put(SpamReport(f"r{i}", f"8613900000{i:03d}", spammer, "spam", 1.0 + i, "received")) for i in range(3)])
        cache = RecordCache(store)
        latest = SpamReport("r3", "8613900000003", spammer, "spam", 4.0, "received")
        if handed_on:  # its commit issued, the number's key handed on (gateway/mo.py _hand_on)
            token = cache.issued([Put(latest)])
        reading = asyncio.ensure_future(cache.find(SpamReport, reported=spammer))
        await store.read.wait()  # read without it
        await store.apply([Put(latest)])
        if handed_on:
            cache.settled(token, True)
        else:  # (not in flight when the read began: it makes the read out of date, read again)
            cache.committed([Put(latest)])
        store.go_on.set()
        assert sorted(r.id for r in await reading) == ["r0", "r1", "r2", "r3"]
        assert sorted(r.id for r in await cache.find(SpamReport, reported=spammer)) == ["r0", "r1", "r2", "r3"]
    finally:
        await store.close()
