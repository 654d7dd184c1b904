"""The writer's WAL checkpoints under a steady stream of commits (gateway/store/writer_child.Checkpointer).

Real SQLite on a real file: the test commits small transactions one after
the other, as the writer process does under load, and calls `catch_up`
between them, while the Checkpointer's thread works in the background.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from gateway.store.writer_child import Checkpointer, _connect

PAGE = 4096
WAL_LIMIT_FRAMES = 2048
CHASE_LEFT_FRAMES = 32


def writer_on_new_db(path: Path) -> sqlite3.Connection:
    """The writer process's connection (WAL, autocheckpoint off) on a new database with one table."""
    writer = _connect(str(path), "rwc")
    writer.execute("CREATE TABLE t (x BLOB)")
    writer.commit()
    return writer


def commit_rows(writer: sqlite3.Connection, rows: int) -> None:
    writer.executemany("INSERT INTO t VALUES (?)", [(os.urandom(900),)] * rows)
    writer.commit()


def wal_frames(path: Path) -> int:
    """Frames in the WAL now (its size without the 32-byte header, over frame header + page)."""
    return max(0, (path.with_name(path.name + "-wal").stat().st_size - 32)) // (24 + PAGE)


def test_under_steady_commits_the_wal_restarts_and_the_writer_only_copies_what_the_chase_left(tmp_path: Path) -> None:
    path = tmp_path / "ck.db"
    writer = writer_on_new_db(path)
    checkpointer = Checkpointer(str(path), interval=0.05, wal_limit=WAL_LIMIT_FRAMES * PAGE, chase_left=CHASE_LEFT_FRAMES * PAGE)
    copied_by_writer: list[int] = []
    wal_after_restart: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while len(copied_by_writer) < 3:
            assert time.monotonic() < deadline, f"the writer caught up only {len(copied_by_writer)} times in 30 s"
            commit_rows(writer, 8)
            copied = checkpointer.catch_up(writer)
            time.sleep(0.0002)  # the writer process between two batches: waiting on its pipe, GIL released
            if copied is not None:
                copied_by_writer.append(copied)
                commit_rows(writer, 8)  # the first transaction after a complete checkpoint starts the WAL again
                wal_after_restart.append(
                    writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]  # frames in the WAL's current run
                )
        wal_file_frames = wal_frames(path)
    finally:
        checkpointer.stop()
        writer.close()
    # Each catch-up ran between two transactions, while nothing could commit: it must only have
    # had the chase's remainder to copy, not the second of traffic since the round began.
    assert max(copied_by_writer) <= 8 * CHASE_LEFT_FRAMES, copied_by_writer
    assert max(wal_after_restart) < CHASE_LEFT_FRAMES, wal_after_restart
    assert wal_file_frames < 3 * WAL_LIMIT_FRAMES, "the WAL file kept growing"


def test_a_small_wal_is_left_to_the_background(tmp_path: Path) -> None:
    path = tmp_path / "ck.db"
    writer = writer_on_new_db(path)
    commit_rows(writer, 64)
    checkpointer = Checkpointer(str(path), interval=3600, wal_limit=WAL_LIMIT_FRAMES * PAGE)
    try:
        checkpointer._round()  # what the thread does once an interval
        assert checkpointer.catch_up(writer) is None
        with sqlite3.connect(path) as reader:
            assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 64
    finally:
        checkpointer.stop()
        writer.close()
