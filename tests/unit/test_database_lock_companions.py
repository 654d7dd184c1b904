"""A database gone from its path while the gateway ran (deleted, moved away, a restore moved over it): at the stop its
own -wal and -shm are renamed aside (gateway/store/lock.py), so that a file put there opens as it is; nothing else is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store.lock import DatabaseLock


def database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # its rows stay in the -wal
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    return conn


def test_the_gone_files_own_wal_and_shm_are_renamed_aside(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    conn = database(db)
    lock = DatabaseLock(str(db))
    lock.acquire()
    lock.note_companions()
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
    conn = database(db)
    lock = DatabaseLock(str(db))
    lock.acquire()
    lock.note_companions()
    db.unlink()
    with open(f"{db}-wal", "ab") as wal:  # (the restore's content, in the same file)
        wal.write(b"\0" * 4096)
    aside = lock.set_aside_companions()
    assert [Path(name).name.split(".of-")[0] for name in aside] == ["gw.db-shm"] and Path(f"{db}-wal").exists()
    lock.release()
    conn.close()


def test_a_name_set_aside_before_is_not_overwritten(tmp_path: Path) -> None:
    """The same pid (1, in a container) at another stop: the rename replaced the first stop's -wal without a word."""
    db = tmp_path / "gw.db"
    names = []
    for _ in range(2):
        conn = database(db)
        lock = DatabaseLock(str(db))
        lock.acquire()
        lock.note_companions()
        db.unlink()
        names += lock.set_aside_companions()
        lock.release()
        conn.close()
    assert len(set(names)) == 4 and all(Path(name).exists() for name in names)
