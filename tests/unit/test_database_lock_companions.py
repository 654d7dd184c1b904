"""A database gone from its path while the gateway ran (deleted, moved away, a restore moved over it): at the stop its
own -wal and -shm are renamed aside (gateway/store/lock.py), so that a file put there opens as it is; nothing else is.
The next start puts them back beside that file moved back, and refuses any other file, or none."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store.lock import CompanionsSetAside, DatabaseLock


def database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # its rows stay in the -wal
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    return conn


def held(db: Path) -> tuple[sqlite3.Connection, DatabaseLock]:
    """A database with its row in its -wal, held by a gateway's lock that has seen its -wal and -shm."""
    conn = database(db)
    lock = DatabaseLock(str(db))
    lock.acquire()
    lock.note_companions()
    return conn, lock


def test_the_gone_files_own_wal_and_shm_are_renamed_aside(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    conn, lock = held(db)
    db.rename(tmp_path / "moved.db")
    aside = lock.set_aside_companions()
    assert sorted(Path(name).name.split(".of-")[0] for name in aside) == ["gw.db-shm", "gw.db-wal"]
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    lock.release()
    conn.close()


def test_a_wal_a_restore_copied_onto_the_gateways_is_left_to_the_restored_file(tmp_path: Path) -> None:
    """`cp backup/gw.db backup/gw.db-wal live/` writes into the files there (their inodes stay): the -wal is the
    restored file's now, and renamed aside the restore lost its last transactions."""
    db = tmp_path / "gw.db"
    conn, lock = held(db)
    db.unlink()
    with open(f"{db}-wal", "ab") as wal:  # (the restore's content, in the same file)
        wal.write(b"\0" * 4096)
    aside = lock.set_aside_companions()
    assert [Path(name).name.split(".of-")[0] for name in aside] == ["gw.db-shm"] and Path(f"{db}-wal").exists()
    lock.release()
    conn.close()


def test_a_name_set_aside_before_is_not_overwritten(tmp_path: Path) -> None:
    """The same pid (1, in a container) at another stop, the same file, within the same second: the rename replaced the
    first stop's -wal without a word."""
    db = tmp_path / "gw.db"
    conn, lock = held(db)
    db.rename(tmp_path / "moved.db")
    gone = (tmp_path / "moved.db").stat()
    now = time.time()
    taken = [  # (this second's name and the next's: the stop may fall in either)
        Path(f"{db}{suffix}.of-the-file-gone-{time.strftime('%Y%m%dT%H%M%S', time.localtime(second))}-{os.getpid()}"
             f".file-{gone.st_dev}-{gone.st_ino}-{gone.st_mtime_ns}")
        for suffix in ("-wal", "-shm") for second in (now, now + 1)
    ]  # fmt: skip
    for name in taken:
        name.write_bytes(b"an earlier stop's")
    aside = lock.set_aside_companions()
    lock.release()
    conn.close()
    assert len(aside) == 2 and not set(map(Path, aside)) & set(taken)
    assert all(name.read_bytes() == b"an earlier stop's" for name in taken)


def stopped_with_the_file_gone(db: Path) -> list[str]:
    """A database whose row is in its -wal only, moved away while a gateway held it: the names set aside at its stop."""
    conn, lock = held(db)
    db.rename(db.with_name("moved.db"))
    aside = lock.set_aside_companions()
    lock.release()
    conn.close()
    assert len(aside) == 2
    return aside


def rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT a FROM t").fetchall()
    finally:
        conn.close()


def test_the_file_moved_back_gets_its_wal_and_shm_back_at_the_start(tmp_path: Path) -> None:
    """Its row is only in the -wal set aside: without it the file opened empty (no table)."""
    db = tmp_path / "gw.db"
    aside = stopped_with_the_file_gone(db)
    db.with_name("moved.db").rename(db)
    lock = DatabaseLock(str(db))
    lock.acquire()
    assert sorted(lock.taken_back) == sorted(aside) and not any(Path(name).exists() for name in aside)
    assert rows(db) == [(1,)]
    lock.release()


def test_an_empty_wal_a_reader_left_beside_the_file_moved_back_is_replaced(tmp_path: Path) -> None:
    """`sqlite3 -readonly gw.db` to look at the file moved back leaves an empty -wal and an -shm: nothing in them."""
    db = tmp_path / "gw.db"
    stopped_with_the_file_gone(db)
    db.with_name("moved.db").rename(db)
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    reader.execute("PRAGMA user_version").fetchone()
    reader.close()
    assert Path(f"{db}-wal").stat().st_size == 0 and Path(f"{db}-shm").exists()
    lock = DatabaseLock(str(db))
    lock.acquire()
    assert len(lock.taken_back) == 2 and rows(db) == [(1,)]
    lock.release()


def test_the_file_moved_back_after_it_was_written_elsewhere_is_refused(tmp_path: Path) -> None:
    """The same inode, but written since it was set aside from (its time moved on): its -wal set aside would replay
    frames over pages written since. Only the operator knows which is right; nothing is renamed."""
    db = tmp_path / "gw.db"
    aside = stopped_with_the_file_gone(db)
    moved = db.with_name("moved.db")
    written = moved.stat().st_mtime_ns + 1_000_000_000
    os.utime(moved, ns=(written, written))
    moved.rename(db)
    lock = DatabaseLock(str(db))
    with pytest.raises(CompanionsSetAside, match="and the file there now is another one"):
        lock.acquire()
    assert all(Path(name).exists() for name in aside) and not Path(f"{db}-wal").exists()


def test_with_no_file_at_its_path_the_start_is_refused_and_creates_none(tmp_path: Path) -> None:
    """The file moved away and not back: the start created a new database there, empty (`database created`)."""
    db = tmp_path / "gw.db"
    aside = stopped_with_the_file_gone(db)
    lock = DatabaseLock(str(db))
    with pytest.raises(CompanionsSetAside, match=f"and no file is there: move that file back to {db}"):
        lock.acquire()
    assert not db.exists() and all(Path(name).exists() for name in aside)


def test_beside_a_wal_with_commits_of_its_own_the_start_is_refused(tmp_path: Path) -> None:
    """Moved back beside a -wal that holds frames (of whatever wrote there since): which is right, only the operator
    knows."""
    db = tmp_path / "gw.db"
    aside = stopped_with_the_file_gone(db)
    db.with_name("moved.db").rename(db)
    Path(f"{db}-wal").write_bytes(b"\0" * 4096)
    lock = DatabaseLock(str(db))
    with pytest.raises(CompanionsSetAside, match=f"and {db}-wal is there too"):
        lock.acquire()
    assert all(Path(name).exists() for name in aside) and Path(f"{db}-wal").stat().st_size == 4096


def test_files_an_earlier_smsgw_set_aside_are_not_used(tmp_path: Path) -> None:
    """Its names do not say which file they are of, and its start went on without them: the file may have been moved
    back and written since (they would replay old frames). Every start after the upgrade was refused."""
    db = tmp_path / "gw.db"
    aside = stopped_with_the_file_gone(db)
    earlier = [Path(name.split(".file-")[0]) for name in aside]  # (its names: "<database>-wal.of-the-file-gone-<time>-<pid>")
    for name, named_before in zip(aside, earlier):
        Path(name).rename(named_before)
    db.with_name("moved.db").rename(db)
    lock = DatabaseLock(str(db))
    lock.acquire()
    assert lock.taken_back == [] and sorted(lock.not_used) == sorted(map(str, earlier))
    assert all(name.exists() for name in earlier) and not Path(f"{db}-wal").exists()
    lock.release()


def test_an_shm_set_aside_without_its_wal_is_not_used(tmp_path: Path) -> None:
    """A restore copied a database and its -wal onto the gateway's while it ran: the -wal stayed (the restored file's),
    the -shm alone was set aside. It is only an index of a -wal, rebuilt at the first open: the start on the restored
    file was refused over it."""
    db = tmp_path / "gw.db"
    conn, lock = held(db)
    db.rename(tmp_path / "moved.db")
    restored = database(tmp_path / "backup.db")
    restored.close()
    (tmp_path / "backup.db").rename(db)  # (another file, without a -wal of its own: the gone file's is left there)
    with open(f"{db}-wal", "ab") as wal:  # (the restore's content, in the same file)
        wal.write(b"\0" * 4096)
    aside = lock.set_aside_companions()
    lock.release()
    conn.close()
    assert [Path(name).name.split(".of-")[0] for name in aside] == ["gw.db-shm"]
    Path(f"{db}-wal").unlink()  # (not SQLite's: a restore's of its own would be)
    lock = DatabaseLock(str(db))
    lock.acquire()
    assert lock.taken_back == [] and lock.not_used == aside and Path(aside[0]).exists()
    lock.release()
    assert rows(db) == [(1,)]


READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
print("open", flush=True)
sys.stdin.read()
conn.close()
"""


def test_the_file_moved_back_open_in_another_process_is_refused_and_nothing_renamed(tmp_path: Path) -> None:
    """An operator's sqlite3 session on the file moved back has the -wal and -shm it created open: renamed over, its
    view split, and its close (the last connection, it thought) unlinked the gateway's -wal with its commits."""
    db = tmp_path / "gw.db"
    aside = stopped_with_the_file_gone(db)
    db.with_name("moved.db").rename(db)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert reader.stdout.readline() == "open\n"  # (POSIX locks are per process: another one must hold it)
        wal = Path(f"{db}-wal").stat()
        lock = DatabaseLock(str(db))
        with pytest.raises(CompanionsSetAside, match=rf"{db} is open in another process \(pid {reader.pid}\)"):
            lock.acquire()
        assert all(Path(name).exists() for name in aside)
        assert (Path(f"{db}-wal").stat().st_ino, Path(f"{db}-wal").stat().st_size) == (wal.st_ino, wal.st_size)
    finally:
        reader.communicate("", timeout=30)
    lock = DatabaseLock(str(db))
    lock.acquire()  # closed: they go back
    assert len(lock.taken_back) == 2 and rows(db) == [(1,)]
    lock.release()
