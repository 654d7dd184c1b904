"""The SQLite writer runs in a child process: what happens when that process is hit from outside."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from gateway.store.records import Direction, Message, MessageStatus
from gateway.store.sqlite import SqliteStore
from gateway.store.writer import WriterCannotStart, WriterProcess
from gateway.store.writer_child import PROBE


def mo(id: str, text: bytes = b"0000") -> Message:
    return Message(id=id, direction=Direction.MO, status=MessageStatus.ACCEPTED, account="esme1",
                   source_addr="8613800000001", dest_addr="10086", short_message=text)  # fmt: skip


def stored_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM messages ORDER BY seq")]


@pytest.fixture
async def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


async def test_writes_go_on_after_the_writer_process_is_killed_between_batches(store: SqliteStore) -> None:
    assert await store.accept(mo("before")) == ("before", False)
    first = store.writer.pid
    os.kill(first, signal.SIGKILL)
    assert await store.writer.wait() == -signal.SIGKILL
    # Nothing of this batch reached the dead child: a new one takes it, and the caller only sees the commit.
    assert await store.accept(mo("after")) == ("after", False)
    assert store.writer.pid not in (None, first)
    assert stored_ids(Path(store.path)) == ["before", "after"]


async def test_the_writer_process_ignores_ctrl_c_so_the_gateway_can_drain(store: SqliteStore) -> None:
    # A Ctrl-C in a terminal, or the terminal's closing (SIGHUP), signals the whole process group, the writer included.
    pid = store.writer.pid
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGHUP)
    futures = [store.accept(mo(f"m{i}")) for i in range(200)]
    await asyncio.gather(*futures)
    assert store.writer.pid == pid
    assert len(stored_ids(Path(store.path))) == 200


async def test_the_writer_process_exits_when_the_store_closes(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "gw.db"))
    await s.open()
    pid = s.writer.pid
    await s.close()  # returns once the child has exited and been reaped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_failed_transaction_is_rolled_back_and_reported_with_its_sqlite_class(tmp_path: Path) -> None:
    writer = WriterProcess(str(tmp_path / "gw.db"))
    await writer.start()
    try:
        insert = "INSERT INTO job_runs (job, period, ran_at) VALUES (?, ?, ?)"
        assert await writer.commit([(insert, ("billing", "2026-11", 1.0), ())]) == (2, [])  # one run, the COMMIT
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await writer.commit([(insert, ("billing", "2026-12", 2.0), ()), (insert, ("billing", "2026-11", 3.0), ())])
        await writer.commit([(insert, ("billing", "2026-12", 4.0), ())])  # the failed one left nothing behind
    finally:
        await writer.close()
    with sqlite3.connect(tmp_path / "gw.db") as conn:
        assert conn.execute("SELECT period, ran_at FROM job_runs ORDER BY period").fetchall() == [("2026-11", 1.0), ("2026-12", 4.0)]


async def test_an_unopenable_database_is_reported_by_the_writer(tmp_path: Path) -> None:
    writer = WriterProcess(str(tmp_path / "no-such-dir" / "gw.db"))
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await writer.start()


async def test_the_wal_is_checkpointed_in_the_background_not_by_the_commits(store: SqliteStore) -> None:
    db = Path(store.path)
    # Few rows of large texts: the commits take ~0.06 s, not ~0.3 s (up to 1 s and more on a loaded machine), so the
    # background checkpoint (every Checkpointer.INTERVAL) is unlikely to copy pages while they go on.
    await asyncio.gather(*(store.accept(mo(f"m{i}", b"x" * 4000)) for i in range(1500)))
    wal_bytes = Path(f"{db}-wal").stat().st_size
    assert wal_bytes > 1000 * 4096, "enough WAL pages that SQLite's own autocheckpoint would have run in a commit"
    db_bytes_after_commits = db.stat().st_size
    # No event says "checkpointed": watch the database file take the pages, within a bound.
    deadline = asyncio.get_running_loop().time() + 15
    while db.stat().st_size == db_bytes_after_commits:
        assert asyncio.get_running_loop().time() < deadline, "the background checkpoint never ran"
        await asyncio.sleep(0.05)
    assert db_bytes_after_commits < 100 * 1024, "no commit copied the WAL into the database file itself"
    assert len(stored_ids(db)) == 1500


async def test_a_writer_killed_during_a_batch_with_no_successor_able_to_start_fails_it_as_such(tmp_path: Path) -> None:
    """Plain WriterDied: the store wrote that batch's writes again one by one, each trying to start a writer."""
    home = tmp_path / "data"
    home.mkdir()
    writer = WriterProcess(str(home / "gw.db"))
    await writer.start()
    insert = "INSERT INTO job_runs (job, period, ran_at) VALUES (?, ?, ?)"
    holder = sqlite3.connect(home / "gw.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the batch waits for the lock in the writer process
    try:
        batch = asyncio.create_task(writer.commit([(insert, ("billing", "2026-11", 1.0), ())]))
        for _ in range(5):
            await asyncio.sleep(0)  # handed to the writer process, its answer awaited
        assert not batch.done()
        home.rename(tmp_path / "moved")  # no successor can open the database
        os.kill(writer.pid, signal.SIGKILL)
        with pytest.raises(WriterCannotStart, match="no writer process could start again"):
            await batch
    finally:
        holder.rollback()
        holder.close()
        await writer.close()


async def test_a_writer_process_started_after_its_database_was_deleted_creates_none(tmp_path: Path) -> None:
    """The successor of a killed writer process created an empty database at the path, migrated it and committed into
    it, the gateway's reads still on the deleted file."""
    db = tmp_path / "gw.db"
    writer = WriterProcess(str(db))
    await writer.start()
    try:
        db.unlink()
        os.kill(writer.pid, signal.SIGKILL)
        assert await writer.wait() == -signal.SIGKILL
        with pytest.raises(WriterCannotStart, match="unable to open database file"):
            await writer.commit([(PROBE, (), ())])
    finally:
        await writer.close()
    assert not db.exists()

