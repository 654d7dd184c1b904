"""The SQLite writer process itself (see writer.py for why and for the protocol).

Started by `WriterProcess` as `python -m gateway.store.writer_child DB OPEN_MODE` (see `main`). It
imports nothing beyond the standard library and the migrations, so it is up in
a few tens of milliseconds.
"""

from __future__ import annotations

import marshal
import os
import signal
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, BinaryIO
from urllib.parse import quote

from .migrations import SchemaVersionError, check_ours, migrate, user_version

FRAME_LENGTH = struct.Struct(">I")
# One row of one statement: (sql, parameters, tokens). The tokens name the
# message ids / dedup keys the row touches; `plan` uses them to keep rows that
# touch the same thing in issue order.
Step = tuple[str, tuple, tuple[str, ...]]
# Runs of (sql, rows) executed in order inside one transaction.
Runs = list[tuple[str, list[tuple]]]


def _as_is(value: Any) -> Any:
    return value


# sqlite3 (CPython 3.11) runs its adaptation protocol for every parameter that
# is not exactly int, float, str or bytearray. For None and bytes nothing is
# registered, so it asks its PrepareProtocol type for __adapt__, a failed type
# attribute lookup that formats an AttributeError message each time: four per
# stored message (short_message, tlvs and the NULL columns), in the writer
# process. Registered adapters are found first. They return the
# value unchanged, so what is stored does not change. (Process-wide, but an
# identity adapter changes nothing for any other sqlite3 user either.)
sqlite3.register_adapter(type(None), _as_is)
sqlite3.register_adapter(bytes, _as_is)



def connect(path: str, open_mode: str = "rw", **options: Any) -> sqlite3.Connection:
    """A connection to the database at `path`, opened in SQLite's URI mode `open_mode`. "rw": no file there is an
    error, where a plain sqlite3.connect creates an empty database in its place (the file deleted or moved while the
    gateway ran); "rwc" creates one."""
    where = quote(os.fsencode(path))  # ("//" before an absolute path: the URI's authority is empty)
    return sqlite3.connect(f"file:{'//' if where.startswith('/') else ''}{where}?mode={open_mode}", uri=True, **options)


def _connect(path: str, open_mode: str) -> sqlite3.Connection:
    # isolation_level IMMEDIATE: sqlite3 issues BEGIN IMMEDIATE before a batch's
    # first statement, so a transaction holds the write lock from its start.
    conn = connect(path, open_mode, isolation_level="IMMEDIATE")
    try:
        check_ours(conn)  # before WAL changes the file
    except BaseException:
        conn.close()
        raise
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":  # e.g. ":memory:" -- the parent's reader would not see the data
        raise sqlite3.OperationalError(f"WAL mode unavailable (journal_mode={mode})")
    # NORMAL survives a process kill (see sqlite.py's module docstring).
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    # Checkpoints are the Checkpointer's job, off the commit path (see there).
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


class Checkpointer:
    """Copies the WAL back into the database file from its own thread and connection.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL
    pages: copying the pages and two fsyncs made every such commit take 15-40 ms
    here, and every MO waiting on it waited that long (bench/dialogues.py's
    open-loop p99 went from ~96 to ~33 ms without it). A PASSIVE checkpoint
    from another connection needs no write lock, so commits go on meanwhile.

    The WAL only starts again from its beginning once a checkpoint has copied
    all of it, and a checkpoint copies only what was committed when it began:
    under a steady stream of commits the background one never quite finishes
    and the WAL would grow without end. So once the WAL holds more than
    `wal_limit` bytes, a round chases the commits made while it copied: it
    checkpoints again at once, each pass copying only what the previous one
    let through, until a pass finds no more than `chase_left` bytes were added
    meanwhile. Only then does the writer checkpoint once between two
    transactions (`catch_up`), copying that little remainder; the next
    transaction restarts the WAL. (If CHASE_PASSES passes cannot get there,
    the commits outrun the copying, and the writer copies what is left all
    the same.)

    Even a small catch-up pauses the writer for its two fsyncs (WAL before
    copying, database after). The database's fsync flushes every page the
    background passes copied since the file was last synced, and a pass only
    syncs the database when it copied the whole WAL, which under load none
    does: so the writer's catch-up flushed the whole chase, 30-45 ms, and the
    MOs waiting on it made the open loop's worst seconds. The round therefore
    syncs the database itself, from this thread, once the chase has caught up,
    and copies what came meanwhile: the writer's catch-up has a few frames to
    flush and takes 6-14 ms (bench/perf-log.md, session 12). Under load the WAL takes
    60-120 MB a second (every small commit rewrites whole pages), so the limit
    is high enough that this happens every few seconds, not every second; the
    file stays near the limit plus a second of traffic. Measurements:
    bench/perf-log.md, "Session 3".
    """

    INTERVAL = 1.0  # seconds between background rounds
    WAL_LIMIT = 512 * 1024 * 1024
    CHASE_LEFT = 1024 * 1024  # at most this much added during the last pass is left to the writer
    CHASE_PASSES = 8

    def __init__(
        self, path: str, *, interval: float = INTERVAL, wal_limit: int = WAL_LIMIT, chase_left: int = CHASE_LEFT
    ) -> None:
        self._conn = connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        self._interval = interval
        self._frame_limit = wal_limit // page_size
        self._left_limit = chase_left // page_size
        self._backfilled = 0  # frames the last background pass left copied
        self._behind = False  # set by the background thread, cleared by catch_up
        self._db_fd = os.open(path, os.O_RDONLY)  # to sync the database file from this thread (any descriptor will do)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._round()

    def _round(self) -> None:
        seen = None
        for _ in range(self.CHASE_PASSES):
            try:
                _busy, wal_frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                return  # busy or locked this time: the next round copies it
            if copied < wal_frames or wal_frames <= self._frame_limit:
                return  # a reader still needs older pages, or the WAL is small enough for now
            if seen is not None and wal_frames - seen <= self._left_limit:
                break
            seen = wal_frames
        # Caught up to within chase_left -- or the commits outran every pass: then the writer copies
        # the rest itself, one long pause rather than a WAL that grows without end. First the database
        # file is synced here, so the writer's fsync has only its own few pages to flush.
        try:
            os.fdatasync(self._db_fd)
            copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[2]  # (busy, frames, copied)
        except (OSError, sqlite3.Error):
            return  # the next round chases again
        self._backfilled = copied
        self._behind = True

    def catch_up(self, writer: sqlite3.Connection) -> int | None:
        """Between transactions: copy what the background chase left, so the next transaction restarts the WAL.

        Returns the number of WAL frames this copied (None: nothing to do, or busy)."""
        if not self._behind:
            return None
        self._behind = False
        try:
            _busy, wal_frames, _copied = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return None  # busy: a later round chases again
        return wal_frames - self._backfilled

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()
        os.close(self._db_fd)


def frame(body: bytes) -> bytes:
    """A marshalled value as it crosses the pipe: its length, then itself."""
    return FRAME_LENGTH.pack(len(body)) + body


def _send(out: BinaryIO, value: Any) -> None:
    out.write(frame(marshal.dumps(value)))
    out.flush()


def _read_frame(inp: BinaryIO) -> Any | None:
    header = inp.read(FRAME_LENGTH.size)
    if len(header) < FRAME_LENGTH.size:
        return None  # stdin closed: the parent closed us or died
    return marshal.loads(inp.read(FRAME_LENGTH.unpack(header)[0]))


def plan(steps: Iterable[Step]) -> Runs:
    """Group a batch's steps into (sql, rows) runs for executemany, keeping issue order.

    Rows are collected per statement, the groups executed in order of first
    appearance. A row may join an earlier group only if no later group already
    touched one of its tokens (else it would run before something issued
    earlier); when that happens the groups so far are emitted and new ones
    started. Typical traffic (accepts, plus updates of other messages) stays
    at one executemany per statement kind per batch.
    """
    runs: list[tuple[str, list[tuple]]] = []
    groups: dict[str, int] = {}  # sql -> index into pending
    pending: list[tuple[str, list[tuple]]] = []
    last_group: dict[str, int] = {}  # token -> index of the last group that touched it
    for sql, params, tokens in steps:
        g = groups.get(sql)
        if g is not None and _touched_after(last_group, tokens, g):
            runs.extend(pending)
            groups, pending, last_group = {}, [], {}
            g = None
        if g is None:
            g = groups[sql] = len(pending)
            pending.append((sql, []))
        pending[g][1].append(params)
        for t in tokens:
            last_group[t] = g
    runs.extend(pending)
    return runs


def _touched_after(last_group: dict[str, int], tokens: tuple[str, ...], g: int) -> bool:
    for t in tokens:  # a plain loop: any(<genexpr>) costs a generator per row
        if last_group.get(t, -1) > g:
            return True
    return False


# A message INSERT ending in this stores nothing when another row holds its
# dedup_key (the client's retransmission of a message already stored). The
# first parameter of such an INSERT's rows is the message id: the child tells
# the parent which ids it skipped, and the parent answers them as duplicates.
SKIP_DUPLICATE_KEY = " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING"
_ID_CHUNK = 500  # ids per lookup (SQLite's bound-parameter limit is higher; this keeps statements cacheable)


# A transaction that takes the write lock (sqlite3 opens it with BEGIN IMMEDIATE before an UPDATE) and changes
# nothing: whether a write would go through now. The store sends one every second while it cannot commit (sqlite.py);
# the child runs one at its start (`_check_writable`).
PROBE = "UPDATE messages SET status = status WHERE 0"
# SQLite's message for SQLITE_READONLY, whatever its extended code: the file, its -wal or -shm, or their directory not
# writable by this process, or the file opened while it was not (SQLite then opens it read-only, saying nothing).
READ_ONLY = "attempt to write a readonly database"


# Written in every batch's transaction: after a death, the successor knows whether the batch in flight committed.
_PROGRESS = "UPDATE writer_progress SET batch = ?"
LAST_COMMITTED = "SELECT batch FROM writer_progress"


def _run_batch(conn: sqlite3.Connection, number: int, steps: list[Step]) -> tuple[bool, str, str, int, list[str]]:
    """Run the steps in one transaction, which also records `number` as the last batch committed.

    (True, "", "", statements run, ids of rows skipped as duplicates) or (False, error class, message, 0, []).
    """
    runs = plan(steps)
    skipped: list[str] = []
    try:
        for sql, rows in runs:
            if conn.executemany(sql, rows).rowcount < len(rows) and sql.endswith(SKIP_DUPLICATE_KEY):
                skipped += not_stored(conn, [row[0] for row in rows])
        conn.execute(_PROGRESS, (number,))
        conn.commit()
    except Exception as exc:
        if conn.in_transaction:
            try:
                conn.rollback()
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after a failed COMMIT)
        return False, type(exc).__name__, str(exc), 0, []
    return True, "", "", len(runs) + 1, skipped  # the runs and the COMMIT


def _check_writable(conn: sqlite3.Connection) -> str | None:
    """Refuse a connection that cannot write: SQLite opens a file it may not write read-only without a word, and
    every commit would fail. A lock another process holds is not waited for here (the store waits it out at its
    commits): the probe's error is returned, and the store starts unable to commit (not ready) until a probe of its
    own commits. (Said nothing, /ready was 200 until the first batch had waited the lock out twice, 10 s.)"""
    busy_timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute(PROBE)
        conn.commit()
    except sqlite3.OperationalError as exc:
        conn.rollback()
        if READ_ONLY in str(exc):
            raise sqlite3.OperationalError(f"{exc} (the database file, its -wal or -shm file, or their directory, "
                                           "cannot be written by this process)") from None  # fmt: skip
        return str(exc)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout:d}")
    return None


def not_stored(conn: sqlite3.Connection, ids: list[str]) -> list[str]:
    """Which of these message ids have no row (inside the transaction that just tried to insert them, or after it)."""
    stored: set[str] = set()
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        stored.update(row[0] for row in conn.execute(f"SELECT id FROM messages WHERE id IN ({marks})", chunk))
    return [i for i in ids if i not in stored]


# For tests only: the path of a file holding a marker. The first batch committed with the marker in a statement or
# in a text parameter removes the file and kills this process with SIGKILL before it answers, as a kill from outside
# (the OOM killer, an operator) landing right after the COMMIT would. The next writer process finds no file.
KILL_SWITCH = "SMSGW_TEST_KILL_WRITER_AFTER_COMMIT"


def _kill_if_armed(switch: str, steps: list[Step]) -> None:
    try:
        with open(switch, "rb") as f:
            marker = f.read()
    except FileNotFoundError:
        return
    text = marker.decode()
    for sql, params, _tokens in steps:
        if text in sql or any(marker in p if isinstance(p, bytes) else isinstance(p, str) and text in p for p in params):
            os.unlink(switch)
            os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_start_if_armed(switch: str) -> None:
    """Tests only: `<switch>.at-start` kills the next process to start before it says it is ready (a successor
    killed too, the OOM killer striking twice)."""
    try:
        os.unlink(switch + ".at-start")
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _moved(conn: sqlite3.Connection | None, found: int | None) -> str:
    """For the error of a start that failed in the middle of a migration: the steps it had committed (one way: an
    older release refuses the file from then on), else ""."""
    if conn is None or found is None:
        return ""
    try:
        now = user_version(conn)
    except sqlite3.Error:
        return ""
    return f" (its schema had moved from version {found} to {now} first)" if now != found else ""


def main(path: str, open_mode: str) -> int:
    """`open_mode`: "rwc" for the store's first writer process, which may create the database; "rw" for its
    successors."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # (the gateway stops on each: see writer.py)
        signal.signal(sig, signal.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the protocol
    conn, found = None, None
    try:
        conn = _connect(path, open_mode)
        began, found = time.monotonic(), user_version(conn)
        version = migrate(conn)
        schema = (found, version, time.monotonic() - began)
        cannot_write = _check_writable(conn)
    except (sqlite3.Error, OSError, SchemaVersionError) as exc:
        _send(out, (type(exc).__name__, type(exc).__name__, str(exc) + _moved(conn, found)))
        return 1
    checkpointer = Checkpointer(path)
    kill_switch = os.environ.get(KILL_SWITCH)  # tests only (see _kill_if_armed); unset, it costs one test per batch
    if kill_switch is not None:
        _kill_at_start_if_armed(kill_switch)
    _send(out, ("ready", conn.execute(LAST_COMMITTED).fetchone()[0], cannot_write, schema))
    while (request := _read_frame(inp)) is not None:
        number, steps = request
        reply = _run_batch(conn, number, steps)
        if kill_switch is not None and reply[0]:
            _kill_if_armed(kill_switch, steps)
        _send(out, reply)
        checkpointer.catch_up(conn)
    checkpointer.stop()
    conn.close()  # the last connection to close checkpoints what is left
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
