"""Commit latency of the store under a steady load, without and while a retention backlog is deleted.

    .venv/bin/python bench/retention_bench.py [--backlog 400000] [--rate 2000] [--seconds 8]

Fills a fresh SQLite store (a temporary directory, removed at the end) with `--backlog` messages that ended ten days
ago, then measures, each for `--seconds`, the time from `accept` to its commit of messages accepted at `--rate` a
second: with nothing else to do, while gateway/retention.py deletes the backlog (BATCH rows a transaction, PAUSE
between), and afterwards. Prints p50 / p99 / p99.9 / max and the rate the backlog went at.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import retention
from gateway.retention import Retention
from gateway.store.records import Direction, Message, MessageStatus
from gateway.store.sqlite import SqliteStore

WEEK = 7 * 86400.0


class FixedClock:
    def __init__(self) -> None:
        self.at = time.time()

    def now(self) -> float:
        return self.at


def ended(i: int, at: float) -> Message:
    return Message(id=f"m{i:012d}", direction=Direction.MT, status=MessageStatus.DELIVERED, account="handset",
                   source_addr="8613800000001", dest_addr=f"86138{i % 100000:08d}", short_message=b"x" * 140,
                   submitted_at=at, expires_at=at + 172800, next_attempt_at=at, done_at=at)  # fmt: skip


async def fill(store: SqliteStore, count: int, at: float) -> None:
    for base in range(0, count, 5000):
        await asyncio.gather(*(store.accept(ended(i, at)) for i in range(base, min(count, base + 5000))))


async def load(store: SqliteStore, clock: FixedClock, first: int, rate: float, seconds: float) -> str:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def one(i: int) -> None:
        started = loop.time()
        await store.accept(ended(first + i, clock.now()))
        latencies.append(loop.time() - started)

    tasks, end, i = [], loop.time() + seconds, 0
    while loop.time() < end:
        tasks.append(asyncio.ensure_future(one(i)))
        i += 1
        await asyncio.sleep(1 / rate)  # an open loop: the pace of arrivals, not something to wait for
    await asyncio.gather(*tasks)
    latencies.sort()

    def ms(share: float) -> float:
        return latencies[int(share * (len(latencies) - 1))] * 1000

    return f"{len(latencies)} commits: p50 {ms(0.5):.2f} ms, p99 {ms(0.99):.2f}, p99.9 {ms(0.999):.2f}, max {ms(1):.2f}"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        clock = FixedClock()
        store = SqliteStore(str(Path(directory) / "bench.db"), clock=clock.now)
        await store.open()
        try:
            await fill(store, args.backlog, clock.now() - 10 * 86400)
            print(f"backlog: {args.backlog} messages ended 10 days ago")
            print("no prune:   ", await load(store, clock, 10**9, args.rate, args.seconds))
            started = time.monotonic()
            pruning = asyncio.ensure_future(Retention(store, clock, WEEK).prune())
            print("prune runs: ", await load(store, clock, 2 * 10**9, args.rate, args.seconds),
                  f"(BATCH {retention.BATCH}, PAUSE {retention.PAUSE} s)")  # fmt: skip
            deleted = await pruning
            took = time.monotonic() - started
            print(f"deleted {deleted} in {took:.1f} s: {deleted / took:.0f} a second")
            print("after:      ", await load(store, clock, 3 * 10**9, args.rate, args.seconds))
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=400_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    asyncio.run(main(parser.parse_args()))
