"""Rows/s of SqliteStore.accept(): issued concurrently (batched) vs. awaited one at a time.

    python bench/store_bench.py [--count 20000] [--repeat 3] [--dedup]

Each run uses a fresh database file in a temporary directory and includes the
commit (WAL, synchronous=NORMAL), i.e. what an acknowledged MO costs. The best
of --repeat runs is printed (the machine is shared; the best run is the least
disturbed one). For reference, the last line is plain sqlite3 doing the same
inserts in transactions of 1000 rows with no asyncio at all: the ceiling the
store's concurrent figure is chasing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.store.migrations import MIGRATIONS  # noqa: E402
from gateway.store.records import Direction, Message, MessageStatus  # noqa: E402
from gateway.store.sqlite import _INSERT, SqliteStore, _row  # noqa: E402


def make_messages(count: int, dedup: bool) -> list[Message]:
    now = time.time()
    return [
        Message(
            id=f"m{i:08d}",
            direction=Direction.MO,
            status=MessageStatus.ACCEPTED,
            account="esme1",
            source_addr="2547%08d" % i,
            dest_addr="22333",
            short_message=b"BALANCE please, with a body of typical length",
            submitted_at=now,
            expires_at=now + 86400,
            dedup_key=f"esme1:{i}" if dedup else None,
        )
        for i in range(count)
    ]


async def concurrent(store: SqliteStore, messages: list[Message]) -> None:
    await asyncio.gather(*[store.accept(m) for m in messages])


async def sequential(store: SqliteStore, messages: list[Message]) -> None:
    for m in messages:
        await store.accept(m)


Mode = Callable[[SqliteStore, list[Message]], Awaitable[None]]


async def time_store(mode: Mode, messages: list[Message]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(os.path.join(tmp, "bench.db"))
        await store.open()
        try:
            start = time.perf_counter()
            await mode(store, messages)
            elapsed = time.perf_counter() - start
        finally:
            await store.close()
    s = store.stats
    return elapsed, f"{s.batches} batches, {s.ops / s.batches:.0f} ops/batch, {s.executes} statements"


def time_raw_sqlite(messages: list[Message]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "raw.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        start = time.perf_counter()
        for i in range(0, len(messages), 1000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, [_row(m, start) for m in messages[i : i + 1000]])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return elapsed, "no asyncio, 1000 rows per transaction"


def report(name: str, count: int, runs: list[tuple[float, str]]) -> None:
    elapsed, detail = min(runs)
    print(f"{name:<12} {count} rows in {elapsed:6.2f} s = {count / elapsed:8,.0f} rows/s  ({detail})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dedup", action="store_true", help="give every message a dedup_key")
    args = parser.parse_args()
    messages = make_messages(args.count, args.dedup)
    for name, mode in (("concurrent", concurrent), ("sequential", sequential)):
        report(name, args.count, [await time_store(mode, messages) for _ in range(args.repeat)])
    report("raw sqlite3", args.count, [time_raw_sqlite(messages) for _ in range(args.repeat)])


if __name__ == "__main__":
    asyncio.run(main())
