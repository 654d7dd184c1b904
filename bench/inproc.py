"""The gateway's CPU cost per message, in process: no sockets, no driver process, comparable between runs.

    .venv/bin/python bench/inproc.py b1|b2 [--messages 100000] [--warmup 20000] [--root DIR]
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p .venv/bin/python bench/inproc.py b1 --callgrind --messages 4000 --warmup 3000

Why: on a shared 2-core machine bench/run.py's figures move by +-25% from one
run to the next with the other load, even per server CPU-second. This runs the
same traffic as run.py's b1/b2 (10 binds of `handset` keeping 100 submit_sm
outstanding to 100 000 subscribers of 86137; for b2 also 10 binds of
`handset2` answering every deliver_sm) against a real Gateway (real SQLite
store, uvloop) in this process, through SmppConnection.data_received and a fake
transport, and reports CPU microseconds per message: the main thread, the
other threads, the SQLite writer process, and the time inside garbage collections.

Under valgrind (`--callgrind`) it marks the measured interval with
`callgrind_control -d` dumps: the dump named "measured" holds the instructions
executed for exactly --messages messages (all threads of this process), which
does not depend on the machine's load at all. Divide its `summary:` by
--messages. The SQLite writer is a child process that valgrind does not follow,
so since the writer moved there (a9dce47) the count is the event loop's work
alone: compare it with the `b1 main`/`b2 main` column of bench/perf-log.md,
not with the older all-threads one.

`--root DIR` measures another checkout (e.g. `git archive <rev> | tar -x -C DIR`)
with this same harness, for before/after comparisons.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time

import checkout  # first: puts the --root checkout on sys.path before anything imports gateway
from driver import process_tree, stat_cpu_seconds

HEADER = struct.Struct(">IIII")
DELIVER_SM_RESP = struct.Struct(">IIIIB")  # header + empty message_id
SUBMIT_SM_RESP_ID, DELIVER_SM_ID = 0x80000004, 0x00000005
BODY = b"Hello from the benchmark driver, 40 chars"
BINDS, WINDOW, DEST_SPREAD = 10, 100, 100_000


def thread_cpu_seconds() -> dict[int, float]:
    return {int(tid): stat_cpu_seconds(f"/proc/self/task/{tid}/stat") or 0.0 for tid in os.listdir("/proc/self/task")}


def children_cpu_seconds() -> float:
    """CPU of this process's live children: the gateway's SQLite writer process."""
    return sum(stat_cpu_seconds(f"/proc/{pid}/stat") or 0.0 for pid in process_tree(os.getpid())[1:])


def process_cpu_seconds() -> float:
    """This process's CPU plus its live children's (the writer process does the SQLite work)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + children_cpu_seconds()


@dataclasses.dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far: the whole process with its children, each thread, the writer process; and the wall clock."""

    total: float
    threads: dict[int, float]
    writer: float
    wall: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        return cls(process_cpu_seconds(), thread_cpu_seconds(), children_cpu_seconds(), time.perf_counter())

    def until(self, later: CpuSnapshot) -> CpuSpent:
        main_tid = os.getpid()
        main = later.threads.get(main_tid, 0.0) - self.threads.get(main_tid, 0.0)
        others = sum(v - self.threads.get(tid, 0.0) for tid, v in later.threads.items() if tid != main_tid)
        return CpuSpent(later.total - self.total, main, others, later.writer - self.writer, later.wall - self.wall)


@dataclasses.dataclass(frozen=True)
class CpuSpent:
    """CPU seconds spent between two snapshots, and the wall time between them."""

    total: float
    main_thread: float
    other_threads: float
    writer: float
    wall: float


class GcTimer:
    """Process CPU spent inside garbage collections (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.collections[info["generation"]] += 1


class Counts:
    sent = accepted = delivered = errors = next_dest = 0
    limit = 0


class FakeTransport:
    """What SmppConnection writes goes straight to the client object."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.closing = False

    def write(self, data: bytes) -> None:
        self.client.on_data(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0  # everything written was handed to the client at once

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 0)


class Client:
    """One bind: a sender keeps WINDOW submit_sm outstanding, a receiver answers deliver_sm."""

    def __init__(self, gateway, codec, index: int, system_id: str, sender: bool, counts: Counts) -> None:
        from gateway.server import SmppConnection
        from gateway.smpp.pdu import BindTransceiver, SubmitSm

        self.counts = counts
        self.sender = sender
        self.outstanding = 0
        self.sequence = 1
        self.conn = SmppConnection(gateway)
        self.conn.connection_made(FakeTransport(self))
        self.conn.data_received(codec.encode_pdu(BindTransceiver(sequence_number=1, system_id=system_id, password=system_id)))
        if sender:
            source = str(8613800000000 + index)
            self.template = bytearray(codec.encode_pdu(SubmitSm(
                sequence_number=1, source_addr_ton=1, source_addr_npi=1, source_addr=source,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr="8613700000000", short_message=BODY,
            )))  # fmt: skip
            # header, service_type NUL, ton, npi, source NUL, ton, npi, then the destination's last 8 digits
            self.suffix_at = 16 + 1 + 2 + len(source) + 1 + 2 + 13 - 8

    def refill(self) -> None:
        counts = self.counts
        n = min(WINDOW - self.outstanding, counts.limit - counts.sent)
        if n <= 0:
            return
        out = bytearray()
        template, at = self.template, self.suffix_at
        for _ in range(n):
            self.sequence += 1
            struct.pack_into(">I", template, 12, self.sequence)
            template[at : at + 8] = b"%08d" % (counts.next_dest % DEST_SPREAD)
            counts.next_dest += 1
            out += template
        counts.sent += n
        self.outstanding += n
        self.conn.data_received(bytes(out))

    def on_data(self, data: bytes) -> None:
        counts = self.counts
        replies = []
        pos = 0
        while pos < len(data):
            length, command_id, status, sequence = HEADER.unpack_from(data, pos)
            if command_id == SUBMIT_SM_RESP_ID:
                self.outstanding -= 1
                counts.accepted += 1
                counts.errors += bool(status)
            elif command_id == DELIVER_SM_ID:
                replies.append(DELIVER_SM_RESP.pack(17, DELIVER_SM_ID | 0x80000000, 0, sequence, 0))
                counts.delivered += 1
            pos += length
        # Answer on the next loop iteration, as a peer across a socket would.
        loop = asyncio.get_running_loop()
        if replies:
            loop.call_soon(self.conn.data_received, b"".join(replies))
        if self.sender and self.outstanding <= WINDOW // 2:
            loop.call_soon(self.refill)


async def run(args: argparse.Namespace, gc_timer: GcTimer) -> None:
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.smpp import codec

    try:
        from gateway.gctune import tune_for_serving
    except ImportError:  # a tree from before gctune: the collector as it was
        tune_for_serving = None

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(os.path.join(args.root, "config", "default.toml"))
        gateway = Gateway(config, db_path=os.path.join(tmp, "gw.db"), smpp_port=0, http_port=0, host="127.0.0.1")
        await gateway.start()
        if tune_for_serving is not None:
            tune_for_serving()  # as `smsgw serve` does
        counts = Counts()
        deliver = args.target == "b2"
        receivers = [Client(gateway, codec, i, "handset2", False, counts) for i in range(BINDS)] if deliver else []  # noqa: F841  (kept referenced: they answer deliver_sm)
        senders = [Client(gateway, codec, i, "handset", True, counts) for i in range(BINDS)]

        async def send_until(limit: int) -> None:
            counts.limit = limit
            for client in senders:
                client.refill()
            while counts.accepted < limit or (deliver and counts.delivered < counts.accepted):
                await asyncio.sleep(0.005)

        await send_until(args.warmup)
        if args.callgrind:
            subprocess.run(["callgrind_control", "-d", "warm", str(os.getpid())], capture_output=True, check=False)
        accepted0, delivered0 = counts.accepted, counts.delivered
        before = CpuSnapshot.take()
        gc0, collections0 = gc_timer.seconds, list(gc_timer.collections)
        await send_until(args.warmup + args.messages)
        if args.callgrind:
            subprocess.run(["callgrind_control", "-d", "measured", str(os.getpid())], capture_output=True, check=False)
        spent = before.until(CpuSnapshot.take())
        n = counts.accepted - accepted0
        us = lambda seconds: seconds / n * 1e6  # noqa: E731
        print(f"{args.target}: {n} messages, {us(spent.total):.1f} us CPU/msg = {n / spent.total:.0f} msgs per CPU-second"
              f" (wall {n / spent.wall:.0f}/s); main thread {us(spent.main_thread):.1f} us/msg,"
              f" other threads {us(spent.other_threads):.1f} us/msg, writer process {us(spent.writer):.1f} us/msg;"
              f" in gc {us(gc_timer.seconds - gc0):.1f} us/msg ({[b - a for a, b in zip(collections0, gc_timer.collections)]} collections);"
              f" errors {counts.errors}, delivered {counts.delivered - delivered0}; store {gateway.store.stats}")
        await gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["b1", "b2"])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="the checkout to measure (default: this one)")
    parser.add_argument("--callgrind", action="store_true", help="mark the measured interval for callgrind (see above)")
    args = parser.parse_args(argv)
    assert os.path.abspath(args.root) == checkout.ROOT
    gc_timer = GcTimer()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args, gc_timer))
    else:
        uvloop.run(run(args, gc_timer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
