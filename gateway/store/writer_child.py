"""The SQLite writer process itself (see writer.py for why and for the protocol).

Started by `WriterProcess` as `python -m gateway.store.writer_child DB`. It
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
from typing import Any, BinaryIO

from .migrations import SchemaVersionError, migrate

FRAME_LENGTH = struct.Struct(">I")
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



def _connect(path: str) -> sqlite3.Connection:
    # isolation_level IMMEDIATE: sqlite3 issues BEGIN IMMEDIATE before a batch's
    # first statement, so a transaction holds the write lock from its start.
    conn = sqlite3.connect(path, isolation_level="IMMEDIATE")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":  # e.g. ":memory:" -- the parent's reader would not see the data
        raise sqlite3.OperationalError(f"WAL mode unavailable (journal_mode={mode})")
    # NORMAL survives a process kill (see sqlite.py's module docstring).
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _send(out: BinaryIO, value: Any) -> None:
    body = marshal.dumps(value)
    out.write(FRAME_LENGTH.pack(len(body)) + body)
    out.flush()


def _read_frame(inp: BinaryIO) -> Any | None:
    header = inp.read(FRAME_LENGTH.size)
    if len(header) < FRAME_LENGTH.size:
        return None  # stdin closed: the parent closed us or died
    return marshal.loads(inp.read(FRAME_LENGTH.unpack(header)[0]))


def _run_batch(conn: sqlite3.Connection, runs: Runs) -> tuple[bool, str, str]:
    try:
        for sql, rows in runs:
            conn.executemany(sql, rows)
        conn.commit()
    except Exception as exc:
        if conn.in_transaction:
            try:
                conn.rollback()
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. after a failed COMMIT)
        return False, type(exc).__name__, str(exc)
    return True, "", ""


def main(path: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the protocol
    try:
        conn = _connect(path)
        migrate(conn)
    except (sqlite3.Error, OSError, SchemaVersionError) as exc:
        _send(out, (type(exc).__name__, type(exc).__name__, str(exc)))
        return 1
    _send(out, ("ready",))
    while (runs := _read_frame(inp)) is not None:
        _send(out, _run_batch(conn, runs))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
