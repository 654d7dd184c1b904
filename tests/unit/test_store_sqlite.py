"""SqliteStore against real SQLite files (no mocks)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.ids import ShortIds
from gateway.store.effects import Put
from gateway.store.migrations import SCHEMA_VERSION
from gateway.store.records import Direction, Message, MessageStatus, Subscriber
from gateway.store.sqlite import SqliteStore, StoreOpenError
from gateway.store.writer_child import plan

WINDOW = 3600.0


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mo(id: str, **kw) -> Message:
    fields = dict(account="esme1", source_addr="254700000001", dest_addr="22333", short_message=b"hi")
    fields.update(kw)
    return Message(id=id, direction=Direction.MO, status=MessageStatus.ACCEPTED, **fields)


def mt(id: str, **kw) -> Message:
    fields = dict(account="esme1", source_addr="22333", dest_addr="254700000001", short_message=b"reply")
    fields.update(kw)
    return Message(id=id, direction=Direction.MT, status=MessageStatus.ENROUTE, **fields)


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gw.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(db: Path, clock: FakeClock):
    s = SqliteStore(str(db), dedup_window=WINDOW, clock=clock)
    await s.open()
    yield s
    await s.close()


# --- round trip -------------------------------------------------------------------


async def test_accept_and_get_round_trip_every_field(store: SqliteStore) -> None:
    message = Message(
        id="msg-1",
        direction=Direction.MT,
        status=MessageStatus.ENROUTE,
        account="sp-7",
        source_addr="22333",
        dest_addr="254711222333",
        short_message=b"\x05\x00\x03\x01\x02\x01caf\xc3\xa9\x00\xff",
        data_coding=8,
        esm_class=0x40,
        registered_delivery=1,
        service_type="USSD",
        source_addr_ton=3,
        source_addr_npi=9,
        dest_addr_ton=1,
        dest_addr_npi=1,
        tlvs=b"\x02\x0a\x00\x02\x12\x34",
        submitted_at=1700000000.25,
        expires_at=1700086400.5,
        attempts=3,
        next_attempt_at=1700000060.75,
        done_at=1700000100.125,
        error=0x45,
        origin_id="mo-9",
        dedup_key="sp-7:abc",
        extra={"receipt_to": "esme2", "parts": [1, 2]},
    )
    assert await store.accept(message) == ("msg-1", False)
    assert await store.get("msg-1") == message


async def test_get_unknown_id_returns_none(store: SqliteStore) -> None:
    assert await store.get("nope") is None


async def test_an_smpp_3_3_short_id_names_the_newest_submission_given_it_and_the_ids_go_on_from_the_last_given(
    store: SqliteStore,
) -> None:
    """After ffffffff the short ids start again at 00000001 (ids.ShortIds): a message kept that long still holds
    its own; the newer submission is the one it names, and the next start goes on from the last given, not from
    the largest (ffffffff: it gave 00000001 out again)."""
    old, last, new = "1a24a2e9016000000001", "1a24a2e9016000000002", "1a24a362a95000000001"
    await store.accept(mt(old, short_id="00000001"))
    await store.accept(mt(last, short_id="ffffffff"))
    await store.accept(mt(new, short_id="00000001"))
    await store.accept(mt(f"{new}/2", short_id="00000001", extra={"submit_multi": new}))  # a submit_multi's
    assert [m.id for m in await store.submitted_as("00000001")] == [new, f"{new}/2"]
    assert (await store.get("00000001")).id == new
    assert (await store.get(last)).short_id == "ffffffff"  # (its own id still names it)
    assert await store.get("00000002") is None
    assert (store.short_id_of(old), store.short_id_of("1a24a2e9016000000009")) == ("00000001", None)
    ids = ShortIds()
    ids.continue_after(await store.last_short_id())
    assert ids.next() == "00000002"
    ids.continue_after("fffffffe")
    assert [ids.next(), ids.next()] == ["ffffffff", "00000001"]


async def test_the_short_ids_go_on_from_one_a_copy_gave_to_an_older_row_beyond_a_gap_and_the_wrap(
    store: SqliteStore,
) -> None:
    """A 3.3 copy of a submission first sent on 3.4 gives that older row an alias after the newest row's, and an
    alias a copy took is never held: the next start skipped only those held right after the newest row's."""
    await store.accept(mt("1a24a2e9016000000001", short_id="00000002"))  # older row, its alias given last (wrapped)
    await store.accept(mt("1a24a2e9016000000002", short_id="fffffffe"))  # newest row; ffffffff, 00000001 never held
    assert await store.last_short_id() == "00000002"


async def test_the_short_ids_go_on_from_the_round_begun_again_not_from_the_end_of_the_one_before(
    store: SqliteStore,
) -> None:
    """The round came round again after the newest row's alias: older rows hold both ffffffff and 00000002 (copies
    gave them later). The last given is 00000002: going on from ffffffff (read first) gave 00000002 out again."""
    await store.accept(mt("1a24a2e9016000000001", short_id="ffffffff"))
    await store.accept(mt("1a24a2e9016000000002", short_id="00000002"))
    await store.accept(mt("1a24a2e9016000000003", short_id="fffffffd"))  # newest row
    assert await store.last_short_id() == "00000002"


async def test_the_short_ids_go_on_from_the_last_one_given_after_retention_deleted_the_rows_holding_it(
    store: SqliteStore, clock: FakeClock
) -> None:
    """The aliases went on from the last one the messages held: with the rows holding the last ones deleted past
    retention, the next start gave them out again. The one given last (ids.ShortIds.last) is kept with the deletes;
    here an older MT still waiting holds the round's end (fffffff0): the one kept is later, across the wrap."""
    await store.accept(mt("1a24a2e9016000000001", short_id="fffffff0"))  # waits, kept
    for n, alias in enumerate(("00000004", "00000005"), 2):
        await store.accept(mt(f"1a24a2e901600000000{n}", short_id=alias))
        await store.mark_delivered(f"1a24a2e901600000000{n}", done_at=clock.now, receipt=None)
    clock.now += 10
    ended = await store.prunable(clock.now, (float("-inf"), 0), 10)
    await store.prune([seq for _done_at, seq in ended], clock.now, "00000005")
    assert (len(ended), await store.get("00000005")) == (2, None)
    assert await store.last_short_id() == "00000005"


async def test_a_second_alias_given_to_a_submission_leaves_it_the_first(store: SqliteStore) -> None:
    """Two copies on binds of SMPP 3.3 (each found it had no alias) give it one each: the first committed stays,
    the alias its ESME was answered, and the second copy is answered that one (read after its write commits)."""
    submission = "1a24a2e9016000000001"
    await store.accept(mt(submission))
    loop = asyncio.get_running_loop()
    written = [loop.create_future(), loop.create_future()]
    store.give_short_id(submission, "00000005", lambda _, error: written[0].set_result(error))
    store.give_short_id(submission, "00000006", lambda _, error: written[1].set_result(error))
    assert await asyncio.gather(*written) == [None, None]
    assert store.short_id_of(submission) == "00000005"
    assert (await store.get("00000005")).id == submission and await store.get("00000006") is None


# --- dedup --------------------------------------------------------------------------


async def test_duplicate_within_window_returns_first_id_and_writes_once(
    store: SqliteStore, db: Path, clock: FakeClock
) -> None:
    assert await store.accept(mo("a", dedup_key="k1")) == ("a", False)
    clock.now += WINDOW - 1
    assert await store.accept(mo("b", dedup_key="k1")) == ("a", True)
    assert await store.get("b") is None
    assert count_rows(db) == 1


async def test_a_held_message_is_stored_with_its_handling_and_copies_follow_it(store: SqliteStore, db: Path) -> None:
    held = store.hold(mo("a", dedup_key="k1"))
    assert held is not None
    assert store.hold(mo("b", dedup_key="k1")) is None  # a copy while the first is held
    copy = store.accept(mo("b", dedup_key="k1"))
    stored = store.accept_held(held, mo("a", dedup_key="k1"), 5.0, [mt("r1")])
    assert await stored == ("a", False) and await copy == ("a", True)
    assert (await store.get("a")).status is MessageStatus.PROCESSED and await store.get("r1") is not None
    assert store.hold(mo("c", dedup_key="k1")) is None  # a copy of a stored one: found by a read
    assert count_rows(db) == 2


async def test_a_held_copy_of_a_stored_message_stores_nothing_of_its_handling(store: SqliteStore, db: Path) -> None:
    """`hold` told (wrongly) that no stored message can hold the key: the INSERT fails on the UNIQUE index,
    and the copy is stored as any copy is, without the replies and effects of its handling."""
    assert await store.accept(mo("a", dedup_key="k1")) == ("a", False)
    held = store.hold(mo("b", dedup_key="k1"), may_be_stored=False)
    assert held is not None
    others = [store.accept(mo(f"o{i}")) for i in range(3)]  # in the same batch: they must not fail with it
    stored = store.accept_held(held, mo("b", dedup_key="k1"), 5.0, [mt("r1")])
    assert await stored == ("a", True)
    assert [await o for o in others] == [(f"o{i}", False) for i in range(3)]
    assert await store.get("b") is None and await store.get("r1") is None
    assert count_rows(db) == 4


async def test_a_held_message_whose_handling_breaks_a_constraint_is_not_stored(store: SqliteStore, db: Path) -> None:
    """Only a stored copy turns a failed INSERT of a held message into a copy's accept: any other failure of its
    transaction fails it whole, rather than storing it `processed` without the handling that failed."""
    held = store.hold(mo("a", dedup_key="k1"))
    assert held is not None
    bad = Put(Subscriber("8613800000001", None))  # subscribers.language is NOT NULL
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        await store.accept_held(held, mo("a", dedup_key="k1"), 5.0, [mt("r1")], [bad])
    assert await store.get("a") is None and await store.get("r1") is None
    assert count_rows(db) == 0
    assert await store.accept(mo("a2", dedup_key="k1")) == ("a2", False)  # its key is free again


async def test_duplicate_of_uncommitted_message_resolves_after_its_commit(store: SqliteStore) -> None:
    first = store.accept(mo("a", dedup_key="k1"))
    copy = store.accept(mo("b", dedup_key="k1"))
    assert not copy.done()  # the original is only queued
    assert await copy == ("a", True)
    assert first.done() and first.result() == ("a", False)
    assert await store.get("a") is not None


async def test_duplicate_after_window_is_accepted_as_new(store: SqliteStore, db: Path, clock: FakeClock) -> None:
    assert await store.accept(mo("a", dedup_key="k1")) == ("a", False)
    clock.now += WINDOW
    assert await store.accept(mo("b", dedup_key="k1")) == ("b", False)
    assert count_rows(db) == 2
    # The key moved to the new row (the UNIQUE index allows one holder).
    assert (await store.get("a")).dedup_key is None
    assert (await store.get("b")).dedup_key == "k1"
    # ... and dedups against the new row from now on.
    assert await store.accept(mo("c", dedup_key="k1")) == ("b", True)


async def test_messages_without_dedup_key_are_never_deduplicated(store: SqliteStore, db: Path) -> None:
    assert await store.accept(mo("a")) == ("a", False)
    assert await store.accept(mo("b")) == ("b", False)
    assert count_rows(db) == 2


async def test_dedup_keys_are_reloaded_at_open(db: Path, clock: FakeClock) -> None:
    s = SqliteStore(str(db), dedup_window=WINDOW, clock=clock)
    await s.open()
    await s.accept(mo("a", dedup_key="old"))
    clock.now += 10
    await s.accept(mo("b", dedup_key="new"))
    await s.close()

    clock.now += WINDOW - 5  # "old" has left the window, "new" has not
    s = SqliteStore(str(db), dedup_window=WINDOW, clock=clock)
    await s.open()
    try:
        assert await s.accept(mo("c", dedup_key="new")) == ("b", True)
        assert await s.accept(mo("d", dedup_key="old")) == ("d", False)
    finally:
        await s.close()


async def test_key_reused_while_its_first_holder_is_uncommitted(db: Path, clock: FakeClock) -> None:
    # With no window every accept is new, even with the key's first holder
    # still queued in the same batch: that holder must give the key up first.
    s = SqliteStore(str(db), dedup_window=0.0, clock=clock)
    await s.open()
    try:
        first, second = s.accept(mo("a", dedup_key="k1")), s.accept(mo("b", dedup_key="k1"))
        assert await asyncio.gather(first, second) == [("a", False), ("b", False)]
        assert s.stats.batches == 1
        assert (await s.get("a")).dedup_key is None
        assert (await s.get("b")).dedup_key == "k1"
    finally:
        await s.close()


async def test_expired_keys_are_released_once_per_batch(store: SqliteStore, db: Path, clock: FakeClock) -> None:
    await asyncio.gather(*[store.accept(mo(f"m{i}", dedup_key=f"k{i}")) for i in range(50)])
    clock.now += WINDOW
    executes = store.stats.executes
    # All 50 keys left the window: one statement releases them, one inserts the reuses, one commits.
    await asyncio.gather(*[store.accept(mo(f"n{i}", dedup_key=f"k{i}")) for i in range(50)])
    assert store.stats.executes - executes == 3
    with sqlite3.connect(db) as conn:
        holders = dict(conn.execute("SELECT dedup_key, id FROM messages WHERE dedup_key IS NOT NULL"))
    assert holders == {f"k{i}": f"n{i}" for i in range(50)}


async def test_nothing_is_kept_in_memory_per_key_once_committed(store: SqliteStore, clock: FakeClock) -> None:
    # Memory must not grow with the window times the rate: the UNIQUE index remembers the keys.
    await asyncio.gather(*[store.accept(mo(f"m{i}", dedup_key=f"k{i}")) for i in range(1000)])
    assert store._uncommitted == {}
    clock.now += WINDOW - 1
    assert await store.accept(mo("copy", dedup_key="k999")) == ("m999", True)


async def test_copies_of_committed_messages_in_a_batch_of_new_ones(store: SqliteStore, db: Path) -> None:
    await store.accept(mo("a", dedup_key="k1"))
    await store.accept(mo("b", dedup_key="k2"))
    results = await asyncio.gather(
        store.accept(mo("new-1", dedup_key="k3")),
        store.accept(mo("copy-of-a", dedup_key="k1")),
        store.accept(mo("new-2")),
        store.accept(mo("copy-of-b", dedup_key="k2")),
        store.accept(mo("copy-of-copy", dedup_key="k1")),  # follows copy-of-a, which turns out to be a copy
    )
    assert results == [("new-1", False), ("a", True), ("new-2", False), ("b", True), ("a", True)]
    assert store.stats.failed_batches == 0  # the copies are skipped, not an error that splits the batch
    assert count_rows(db) == 4


# --- accept_then (callbacks instead of futures) -------------------------------------------


async def test_accept_then_reports_after_the_commit(store: SqliteStore, db: Path) -> None:
    heard: list[tuple] = []

    def a_is_stored() -> bool:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM messages WHERE id = 'a'").fetchone()[0] == 1

    store.accept_then(mo("a", dedup_key="k1"), lambda result, error: heard.append((result, error, a_is_stored())))
    store.accept_then(mo("b", dedup_key="k1"), lambda result, error: heard.append((result, error, a_is_stored())))
    assert heard == []  # never from inside the call
    await store.accept(mo("c"))  # committed with or after both
    await asyncio.sleep(0)
    assert heard == [(("a", False), None, True), (("a", True), None, True)]  # the copy waited for the original's commit
    store.accept_then(mo("d", dedup_key="k1"), lambda result, error: heard.append((result, error)))
    assert len(heard) == 2
    await store.accept(mo("e"))
    await asyncio.sleep(0)
    assert heard[-1] == (("a", True), None)


async def test_accept_then_reports_a_failed_write_and_a_failing_callback_harms_nobody(store: SqliteStore) -> None:
    heard: list[tuple] = []
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))

    def broken(result, error):
        raise RuntimeError("caller bug")

    store.accept_then(mo("a"), broken)
    store.accept_then(mo("a"), lambda result, error: heard.append((result, type(error))))  # same id: fails
    store.accept_then(mo("b"), lambda result, error: heard.append((result, error)))
    await store.accept(mo("c"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert (None, sqlite3.IntegrityError) in heard and (("b", False), None) in heard
    assert [str(c["exception"]) for c in loop_errors] == ["caller bug"]


# --- batching and ordering ---------------------------------------------------------------


async def test_concurrent_accepts_all_commit_in_grouped_batches(store: SqliteStore, db: Path) -> None:
    futures = [store.accept(mo(f"m{i}", dedup_key=f"k{i}" if i % 2 else None)) for i in range(2000)]
    results = await asyncio.gather(*futures)
    assert results == [(f"m{i}", False) for i in range(2000)]
    assert count_rows(db) == 2000
    assert store.stats.ops == 2000
    assert store.stats.ops / store.stats.batches > 10


async def test_batch_max_bounds_batch_size(db: Path) -> None:
    s = SqliteStore(str(db), batch_max=100)
    await s.open()
    try:
        await asyncio.gather(*[s.accept(mo(f"m{i}")) for i in range(1000)])
        assert s.stats.batches >= 10
    finally:
        await s.close()


SPACING = 0.5


async def test_a_write_after_a_quiet_spell_commits_at_once_and_those_close_behind_it_wait_out_the_spacing_together(
    db: Path,
) -> None:
    s = SqliteStore(str(db), commit_spacing=SPACING)
    await s.open()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await s.accept(mo("first"))
        assert loop.time() - started < SPACING / 2  # nothing written for a while: no waiting
        batches = s.stats.batches
        second = s.accept(mo("second"))
        for _ in range(20):  # without the spacing the writer takes `second` alone within these turns of the loop
            await asyncio.sleep(0)
        third = s.accept(mo("third"))
        assert await asyncio.gather(second, third) == [("second", False), ("third", False)]
        assert s.stats.batches == batches + 1
        assert loop.time() - started >= SPACING * 0.9  # timer granularity
        assert count_rows(db) == 3
    finally:
        await s.close()


def test_commit_spacing_cannot_be_negative(db: Path) -> None:
    with pytest.raises(ValueError, match="commit_spacing"):
        SqliteStore(str(db), commit_spacing=-0.001)


def test_plan_groups_independent_rows_into_one_run_per_statement() -> None:
    steps = [("INS", (i,), (f"m{i}",)) for i in range(100)]
    steps += [("UPD", (i,), (f"old{i}",)) for i in range(100)]
    steps += [("INS", (i,), (f"n{i}",)) for i in range(100)]
    runs = plan(steps)
    assert [(sql, len(rows)) for sql, rows in runs] == [("INS", 200), ("UPD", 100)]


# --- MO / MT life cycle ----------------------------------------------------------------


async def test_complete_mo_marks_processed_and_inserts_replies(store: SqliteStore) -> None:
    await store.accept(mo("mo1"))
    await store.accept(mo("mo2"))
    replies = [mt("r1", origin_id="mo1"), mt("r2", origin_id="mo1")]
    await store.complete_mo(["mo1", "mo2"], replies, done_at=50.0)
    for mo_id in ("mo1", "mo2"):
        m = await store.get(mo_id)
        assert (m.status, m.done_at) == (MessageStatus.PROCESSED, 50.0)
    assert await waiting_ids(store) == ["r1", "r2"]
    assert await store.unprocessed_mos() == []


async def test_mark_delivered_with_receipt(store: SqliteStore) -> None:
    await store.accept(mt("x", registered_delivery=1))
    receipt = mt("rcpt", origin_id="x", esm_class=0x04, short_message=b"id:x stat:DELIVRD")
    await store.mark_delivered("x", done_at=20.0, receipt=receipt)
    x = await store.get("x")
    assert (x.status, x.done_at, x.is_final) == (MessageStatus.DELIVERED, 20.0, True)
    assert await store.get("rcpt") == receipt


async def test_mark_retry(store: SqliteStore) -> None:
    await store.accept(mt("x"))
    await store.mark_retry("x", attempts=2, next_attempt_at=99.5, error=0x58)
    x = await store.get("x")
    assert (x.status, x.attempts, x.next_attempt_at, x.error) == (MessageStatus.ENROUTE, 2, 99.5, 0x58)


async def test_mark_final_with_and_without_receipt(store: SqliteStore) -> None:
    await store.accept(mt("x"))
    await store.accept(mt("y"))
    receipt = mt("rcpt", origin_id="x", esm_class=0x04)
    await store.mark_final("x", "expired", done_at=30.0, error=0, receipt=receipt)
    await store.mark_final("y", MessageStatus.UNDELIVERABLE, done_at=31.0, error=0x0B, receipt=None)
    x, y = await store.get("x"), await store.get("y")
    assert (x.status, x.done_at) == (MessageStatus.EXPIRED, 30.0)
    assert (y.status, y.done_at, y.error) == (MessageStatus.UNDELIVERABLE, 31.0, 0x0B)
    assert await store.get("rcpt") == receipt
    assert await waiting_ids(store) == ["rcpt"]


async def test_final_statuses_report_to_a_callback_after_the_commit(store: SqliteStore, db: Path) -> None:
    await store.accept(mt("x", registered_delivery=1))
    await store.accept(mt("y"))
    heard: list[tuple] = []

    def status_now(message_id: str) -> str:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()[0]

    receipt = mt("rcpt", origin_id="x", esm_class=0x04)
    assert store.mark_delivered("x", 20.0, receipt, then=lambda r, e: heard.append(("x", r, e, status_now("x")))) is None
    assert store.mark_final("y", "expired", 21.0, 0, None, then=lambda r, e: heard.append(("y", r, e, status_now("y")))) is None
    # The receipt's id is taken: that write fails, and only its callback hears of it.
    store.mark_delivered("x", 22.0, mt("rcpt"), then=lambda r, e: heard.append(("again", r, type(e))))
    assert heard == []  # never from inside the call
    await store.apply([])  # committed after all three
    await asyncio.sleep(0)
    assert heard == [("x", None, None, "delivered"), ("y", None, None, "expired"), ("again", None, sqlite3.IntegrityError)]
    assert (await store.get("x")).done_at == 20.0  # the failed write changed nothing


async def test_mark_final_rejects_unknown_status(store: SqliteStore) -> None:
    with pytest.raises(ValueError):
        store.mark_final("x", "lost", done_at=1.0, error=0, receipt=None)


async def test_unprocessed_mos_oldest_first_insertion_order_on_ties(store: SqliteStore) -> None:
    await store.accept(mo("late", submitted_at=30.0))
    await store.accept(mo("tie-1", submitted_at=20.0))
    await store.accept(mo("early", submitted_at=10.0))
    await store.accept(mo("tie-2", submitted_at=20.0))
    await store.accept(mo("done", submitted_at=5.0))
    await store.accept(mt("an-mt", submitted_at=1.0))
    await store.complete_mo(["done"], [], done_at=40.0)
    assert [m.id for m in await store.unprocessed_mos()] == ["early", "tie-1", "tie-2", "late"]


async def waiting_ids(store: SqliteStore, to_account: str | None = None, low: str = "", below: str = "9") -> list[str]:
    return [m.id for _, m in await store.waiting_mts(to_account, (low, 0), below, 1000)]


async def test_waiting_mts_by_number_range_then_order_of_arrival_paged_by_cursor(store: SqliteStore) -> None:
    await store.accept(mt("b2", dest_addr="8613800000002"))
    await store.accept(mt("a1", dest_addr="8613800000001"))
    await store.accept(mt("b1", dest_addr="8613800000002", submitted_at=-5.0))  # later in, later out
    await store.accept(mt("other-range", dest_addr="8613900000001"))
    await store.accept(mt("for-sp", dest_addr="8613800000001", extra={"to_account": "sp1"}))
    await store.accept(mt("gone", dest_addr="8613800000001"))
    await store.accept(mo("an-mo", source_addr="8613800000003", dest_addr="8613800000003"))
    await store.mark_delivered("gone", done_at=4.0, receipt=None)

    assert await waiting_ids(store, None, "86138", "86139") == ["a1", "b2", "b1"]
    assert await waiting_ids(store, "sp1") == ["for-sp"]
    first = await store.waiting_mts(None, ("86138", 0), "86139", 2)
    assert [m.id for _, m in first] == ["a1", "b2"]
    rest = await store.waiting_mts(None, first[-1][0], "86139", 2)
    assert [m.id for _, m in rest] == ["b1"]
    assert by_destination(await store.waiting_counts()) == {"8613800000001": 2, "8613800000002": 2, "8613900000001": 1}


async def test_expired_mts_by_expiry_paged_by_cursor(store: SqliteStore) -> None:
    await store.accept(mt("late", expires_at=300.0))
    await store.accept(mt("early", expires_at=100.0))
    await store.accept(mt("early-too", expires_at=100.0))
    await store.accept(mt("delivered", expires_at=50.0))
    await store.mark_delivered("delivered", done_at=4.0, receipt=None)

    assert [m.id for _, m in await store.expired_mts(99.0, (0.0, 0), 10)] == []
    page = await store.expired_mts(300.0, (0.0, 0), 2)
    assert [m.id for _, m in page] == ["early", "early-too"]
    assert [m.id for _, m in await store.expired_mts(300.0, page[-1][0], 2)] == ["late"]


# --- lifecycle -----------------------------------------------------------------------------


async def test_writes_after_close_raise(db: Path) -> None:
    """(That close commits what was issued before it: tests/store_contract/test_lifecycle.py.)"""
    s = SqliteStore(str(db))
    await s.open()
    await s.close()
    with pytest.raises(RuntimeError):
        s.accept(mo("late"))
    with pytest.raises(RuntimeError):
        s.mark_retry("m1", 1, 1.0, 0)


async def test_write_before_open_or_off_loop_raises(store: SqliteStore, db: Path) -> None:
    with pytest.raises(RuntimeError):
        SqliteStore(str(db)).accept(mo("a"))
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            store.accept(mo("a"))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)


async def test_schema_is_versioned(store: SqliteStore, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"messages_by_state", "messages_dedup_key"} <= indexes


async def test_reopen_keeps_data_and_schema(db: Path) -> None:
    s = SqliteStore(str(db))
    await s.open()
    await s.accept(mo("a"))
    await s.close()
    s = SqliteStore(str(db))
    await s.open()
    try:
        assert (await s.get("a")).id == "a"
    finally:
        await s.close()


async def test_open_error_names_the_path(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "gw.db"
    with pytest.raises(StoreOpenError, match="no/such/dir/gw.db"):
        await SqliteStore(str(missing_dir)).open()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreOpenError, match="garbage.db"):
        await SqliteStore(str(garbage)).open()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_write_after_the_database_file_was_deleted_or_replaced_fails_and_the_store_cannot_commit(
    store: SqliteStore, db: Path, how: str
) -> None:
    """It was committed into the file the writer had open, gone from the path, and acknowledged."""
    if how == "deleted":
        db.unlink()
    else:
        (db.parent / "copy.db").write_bytes(db.read_bytes())
        (db.parent / "copy.db").replace(db)
    with pytest.raises(sqlite3.OperationalError, match=f"the database file {db} was deleted, moved or replaced"):
        await store.accept(mo("after"))  # (before the once-a-second look at the path: the batch's own)
    assert not store.can_commit and store.database_gone


async def test_a_batch_committed_as_the_file_goes_stands_and_the_store_stays_unable_to_commit(
    store: SqliteStore, db: Path
) -> None:
    """The file moved away while the writer committed (the only window, hence the writer's commit wrapped): the batch
    is in that file, so it is acknowledged; and the store said "commits again" right after "cannot commit", /ready
    200 for up to a second, though the file was still gone."""
    commit = store._writer.commit

    async def as_the_file_goes(steps):
        db.rename(db.parent / "moved.db")
        return await commit(steps)

    store._writer.commit = as_the_file_goes
    assert await store.accept(mo("as the file goes"))  # committed: answered as such
    store._writer.commit = commit
    assert not store.can_commit and store.database_gone


async def test_no_read_creates_a_database_where_the_file_was_deleted(store: SqliteStore, db: Path) -> None:
    """A scan (a connection of its own per call) created an empty database at the path: 'no such table'."""
    db.unlink()
    with pytest.raises(sqlite3.OperationalError, match="was deleted, moved or replaced"):
        await store.scan(Subscriber)
    assert not db.exists()


async def test_newer_schema_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreOpenError, match="newer"):
        await SqliteStore(str(db)).open()


async def test_stored_copy_does_not_alias_the_callers_message(store: SqliteStore) -> None:
    # Storing a copy does not alias the caller's object (extra is serialised).
    m = mo("a", extra={"k": 1})
    await store.accept(m)
    m.extra["k"] = 2
    assert (await store.get("a")).extra == {"k": 1}
    assert await store.get("a") == replace(m, extra={"k": 1})


def by_destination(counts: dict[tuple[str, str, str], int]) -> dict[str, int]:
    """waiting_counts summed by dest_addr (each key: account, source_addr, dest_addr)."""
    total: dict[str, int] = {}
    for (_account, _source, dest), count in counts.items():
        total[dest] = total.get(dest, 0) + count
    return total


# --- the content an SME acknowledgement answers ------------------------------------

SP_CODE, SME_DELIVERY_ACK, MANUAL_USER_ACK = "1066916", 0x08, 0x10


def content(id: str, subscriber: str, delivered_at: float, **kw) -> Message:
    """An SP's MT asking for both acknowledgements (registered_delivery 0x0C), delivered at `delivered_at`."""
    asked = mt(id, account="sina", source_addr=SP_CODE, dest_addr=subscriber, registered_delivery=0x0C, **kw)
    return replace(asked, status=MessageStatus.DELIVERED, done_at=delivered_at)


def acknowledgement(id: str, answering: Message, esm_class: int = SME_DELIVERY_ACK) -> Message:
    return mt(id, account="esme1", source_addr=answering.dest_addr, dest_addr=SP_CODE, esm_class=esm_class,
              origin_id=answering.id, extra={"to_account": "sina"})  # fmt: skip


def steps_to_answer(store: SqliteStore, subscriber: str, now: float) -> tuple[str | None, int]:
    """What an SME delivery acknowledgement from `subscriber` answers, and the SQLite VM steps its read took."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._reader.set_progress_handler(step, 1)  # type: ignore[union-attr]
    try:
        return store.unacknowledged_content("sina", SP_CODE, subscriber, SME_DELIVERY_ACK, now - 86_400, set()), steps
    finally:
        store._reader.set_progress_handler(None, 1)  # type: ignore[union-attr]


async def test_the_content_an_acknowledgement_answers_is_read_past_none_acknowledged_before(
    store: SqliteStore, clock: FakeClock
) -> None:  # fmt: skip
    """Each acknowledgement read all the content delivered to its subscriber within the day, answered or not, on the
    loop (20,000: 15 ms each). With 300 answered before, the read takes the steps it takes with 1."""
    for subscriber, answered in (("254700000001", 1), ("254700000002", 300)):
        for n in range(answered):
            done = content(f"{subscriber}-done-{n}", subscriber, clock.now - 3600 + n)
            await store.accept(done)
            await store.accept(acknowledgement(f"{subscriber}-ack-{n}", done))
        await store.accept(content(f"{subscriber}-next", subscriber, clock.now - 60))
    few_answered, steps_few = steps_to_answer(store, "254700000001", clock.now)
    many_answered, steps_many = steps_to_answer(store, "254700000002", clock.now)
    assert (few_answered, many_answered) == ("254700000001-next", "254700000002-next")
    assert steps_many <= steps_few + 20, (steps_few, steps_many)


async def test_an_acknowledgement_answers_its_kind_until_cancelled(
    store: SqliteStore, clock: FakeClock
) -> None:  # fmt: skip
    subscriber = "254700000001"
    asked = content("asked", subscriber, clock.now - 60)
    await store.accept(asked)
    await store.accept(acknowledgement("user-ack", asked, MANUAL_USER_ACK))
    assert steps_to_answer(store, subscriber, clock.now)[0] == "asked"  # a manual/user one answers it, not an SME one
    await store.accept(acknowledgement("sme-ack", asked))
    assert steps_to_answer(store, subscriber, clock.now)[0] is None
    await store.mark_final("sme-ack", MessageStatus.DELETED.value, clock.now, 0, None)  # cancel_sm
    assert steps_to_answer(store, subscriber, clock.now)[0] == "asked"
    await store.accept(acknowledgement("sme-ack-again", asked))
    assert steps_to_answer(store, subscriber, clock.now)[0] is None
