"""The load driver: ONE pipelining SMPP client, used unchanged against every benchmark target.

N binds (bind_transceiver) each keep a window of W submit_sm outstanding and
refill it as submit_sm_resp arrive. It is built to out-run the servers it
measures:

* each bind encodes its submit_sm once (with our codec) and afterwards only
  patches the sequence number (`struct.pack_into`) and the destination digits
  into a preallocated buffer, so a whole refill is one slice and one write;
* responses are parsed by header only (command_length / command_id /
  command_status / sequence_number); the body of a submit_sm_resp (message
  id) is never looked at. Only the first deliver_sm per receiving bind is
  decoded fully, as a sanity check of what the gateway delivers.

It counts accepted messages (submit_sm_resp with ESME_ROK) over a measured
interval that starts after a warm-up, plus every non-OK status by name.

`--deliver` adds receiving binds (another account, bind_transceiver) that
answer every deliver_sm with a deliver_sm_resp and count them: the full path
MO from handset A -> gateway -> deliver_sm to handset B -> acknowledged. After
sending stops the driver waits (bounded) until every accepted message has been
delivered, and reports whether it caught up.

    .venv/bin/python bench/driver.py --port 2775 [--binds 10] [--window 100] [--seconds 10] [--deliver]

From Python: `run_driver(DriverConfig(port=...))` -> `DriverResult`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

if "checkout" not in sys.modules:  # the in-process harnesses chose the checkout already (bench/checkout.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.smpp.codec import decode_pdu, encode_pdu  # noqa: E402
from gateway.smpp.constants import CommandId, CommandStatus  # noqa: E402
from gateway.smpp.pdu import BindTransceiver, SubmitSm, Unbind  # noqa: E402

C = CommandId
HEADER = struct.Struct(">IIII")
_unpack_header = HEADER.unpack_from
_pack_seq = struct.Struct(">I").pack_into
_SIMPLE_RESP = struct.Struct(">IIII")  # header-only responses
_MSGID_RESP = struct.Struct(">IIIIB")  # header + empty message_id (deliver_sm_resp)

SUBMIT_SM_RESP = int(C.SUBMIT_SM_RESP)
DELIVER_SM = int(C.DELIVER_SM)
DELIVER_SM_RESP = int(C.DELIVER_SM_RESP)
ENQUIRE_LINK = int(C.ENQUIRE_LINK)
ENQUIRE_LINK_RESP = int(C.ENQUIRE_LINK_RESP)
UNBIND = int(C.UNBIND)
UNBIND_RESP = int(C.UNBIND_RESP)
BIND_TRANSCEIVER_RESP = int(C.BIND_TRANSCEIVER_RESP)
GENERIC_NACK = int(C.GENERIC_NACK)
DATA_SM = int(C.DATA_SM)
DATA_SM_RESP = int(C.DATA_SM_RESP)

BODY = b"Benchmark MO: hello from handset A, a body of typical length 0123456789"
DEST_SUFFIX_DIGITS = 8  # the varying tail of the 13-digit destination (86137 + 8 digits)
MAX_SEQUENCE = 0x7FFFFFFF


@dataclass
class DriverConfig:
    host: str = "127.0.0.1"
    port: int = 2775
    binds: int = 10
    window: int = 100
    seconds: float = 10.0
    warmup: float = 2.0
    system_id: str = "handset"
    password: str = "handset"
    source_base: int = 8613800000000  # bind i sends from source_base + i
    dest_base: int = 8613700000000  # message k goes to dest_base + (k % dest_spread)
    dest_spread: int = 100000
    deliver: bool = False
    refill_min: int = 1  # refill a bind's window once at least this many slots are free (1 = on every response)
    rx_binds: int = 10
    rx_system_id: str = "handset2"
    rx_password: str = "handset2"
    bind_timeout: float = 10.0
    drain_timeout: float = 10.0  # after sending stops: wait this long for outstanding submit_sm_resp
    catchup_timeout: float = 30.0  # --deliver: wait this long for delivered to reach accepted
    server_pid: int | None = None  # measure this process's CPU over the interval too (Linux /proc)


@dataclass
class DriverResult:
    accepted: int = 0  # submit_sm_resp ESME_ROK inside the measured interval
    accepted_per_s: float = 0.0
    delivered: int = 0  # deliver_sm received (and answered) inside the measured interval
    delivered_per_s: float = 0.0
    interval: float = 0.0  # measured seconds (wall clock)
    errors: dict[str, int] = field(default_factory=dict)  # non-OK statuses inside the interval, by name
    total_submitted: int = 0
    total_accepted: int = 0
    total_delivered: int = 0
    total_errors: dict[str, int] = field(default_factory=dict)
    outstanding_after_drain: int = 0
    caught_up: bool | None = None  # --deliver: delivered reached accepted after sending stopped
    catchup_seconds: float | None = None
    reads_per_100_msgs: float = 0.0  # socket reads the driver handled per 100 accepted in the interval
    writes_per_100_msgs: float = 0.0
    timeline: list[int] = field(default_factory=list)  # accepted per ~1 s slice of the interval
    driver_cpu_pct: float = 0.0  # this process, user+sys over the interval (100 = one core)
    server_cpu_pct: float | None = None
    accepted_per_server_cpu_s: float | None = None  # accepted / CPU seconds the server used: robust to other load
    server_rss_mb: tuple[float, float] | None = None  # server resident memory at the start and end of the interval
    machine_cpu_pct: float | None = None  # every process on the machine (200 = both cores of two); the rest is other load
    binds_bound: int = 0
    rx_binds_bound: int = 0
    connections_lost: int = 0
    sample_deliver: dict | None = None
    problems: list[str] = field(default_factory=list)


class _Bench:
    """Counters shared by all binds of one run."""

    def __init__(self, config: DriverConfig) -> None:
        self.config = config
        self.sending = False
        self.accepted = 0
        self.delivered = 0
        self.submitted = 0
        self.errors: dict[int, int] = {}
        self.dest_counter = 0
        self.lost = 0
        self.reads = 0  # data_received calls
        self.writes = 0  # transport.write calls
        self.problems: list[str] = []
        self.sample_deliver: dict | None = None
        self.suffixes = [b"%0*d" % (DEST_SUFFIX_DIGITS, i) for i in range(config.dest_spread)] if config.dest_spread <= 1_000_000 else None

    def note_error(self, status: int) -> None:
        self.errors[status] = self.errors.get(status, 0) + 1


class _Bind(asyncio.Protocol):
    def __init__(self, bench: _Bench, index: int, system_id: str, password: str, sender: bool) -> None:
        self.bench = bench
        self.index = index
        self.sender = sender
        self.system_id = system_id
        self.password = password
        self.window = bench.config.window
        self.refill_at = self.window - max(1, min(bench.config.refill_min, self.window))
        self.transport: asyncio.Transport | None = None
        self.rest = b""
        self.seq = 1  # 1 is the bind
        self.outstanding = 0
        self.bound: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unbinding = False
        self.sampled = False
        if sender:
            self._prepare_template()

    def _prepare_template(self) -> None:
        cfg = self.bench.config
        source = str(cfg.source_base + self.index)
        dest = str(cfg.dest_base)
        template = encode_pdu(
            SubmitSm(
                sequence_number=1,
                source_addr_ton=1, source_addr_npi=1, source_addr=source,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr=dest,
                data_coding=0, short_message=BODY,
            )
        )  # fmt: skip
        # header, service_type "\0", ton, npi, source "\0", ton, npi -> destination_addr
        dest_offset = 16 + 1 + 2 + len(source) + 1 + 2
        assert template[dest_offset : dest_offset + len(dest)] == dest.encode()
        self.length = len(template)
        self.suffix_offset = dest_offset + len(dest) - DEST_SUFFIX_DIGITS
        self.dest_prefix = cfg.dest_base // 10**DEST_SUFFIX_DIGITS
        self.tx = bytearray(template * self.window)

    # ------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        bind = BindTransceiver(sequence_number=1, system_id=self.system_id, password=self.password, system_type="bench")
        transport.write(encode_pdu(bind))  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.unbinding:
            self.bench.lost += 1
            self.bench.problems.append(f"{self.system_id} bind {self.index}: connection lost ({exc or 'closed by server'})")
        if not self.bound.done():
            self.bound.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.bench.reads += 1
        if self.rest:
            data = self.rest + data
        n = len(data)
        pos = 0
        accepted = 0
        delivered = 0
        replies: list[bytes] | None = None
        bench = self.bench
        while n - pos >= 16:
            length, command_id, status, seq = _unpack_header(data, pos)
            end = pos + length
            if end > n:
                break
            if length < 16:
                bench.problems.append(f"bind {self.index}: command_length {length}; closing")
                self.transport.close()
                return
            if command_id == SUBMIT_SM_RESP:
                self.outstanding -= 1
                if status:
                    bench.note_error(status)
                else:
                    accepted += 1
            elif command_id == DELIVER_SM or command_id == DATA_SM:
                if replies is None:
                    replies = []
                resp = DELIVER_SM_RESP if command_id == DELIVER_SM else DATA_SM_RESP
                replies.append(_MSGID_RESP.pack(17, resp, 0, seq, 0))
                delivered += 1
                if not self.sampled:
                    self._sample(data[pos:end])
            elif command_id == ENQUIRE_LINK:
                if replies is None:
                    replies = []
                replies.append(_SIMPLE_RESP.pack(16, ENQUIRE_LINK_RESP, 0, seq))
            elif command_id == BIND_TRANSCEIVER_RESP:
                if not self.bound.done():
                    if status:
                        bench.problems.append(f"{self.system_id} bind {self.index}: {CommandStatus.name_of(status)}")
                    self.bound.set_result(not status)
            elif command_id == GENERIC_NACK:
                bench.note_error(status or GENERIC_NACK)
                if seq > 1:
                    self.outstanding -= 1
            elif command_id == UNBIND:
                if replies is None:
                    replies = []
                replies.append(_SIMPLE_RESP.pack(16, UNBIND_RESP, 0, seq))
                self.unbinding = True
            elif command_id == UNBIND_RESP:
                self.unbinding = True
                if self.transport is not None:
                    self.transport.close()
            pos = end
        self.rest = data[pos:] if pos < n else b""
        if accepted:
            bench.accepted += accepted
        if delivered:
            bench.delivered += delivered
        transport = self.transport
        if transport is None:
            return
        if self.sender and bench.sending and self.outstanding <= self.refill_at:
            bench.writes += 1
            batch = self._submits(self.window - self.outstanding)
            if replies:
                replies.append(batch)
                transport.write(b"".join(replies))
            else:
                transport.write(batch)
        elif replies:
            bench.writes += 1
            transport.write(b"".join(replies))

    def _sample(self, frame: bytes) -> None:
        self.sampled = True
        pdu = decode_pdu(frame)
        if self.bench.sample_deliver is None:
            self.bench.sample_deliver = {
                "source_addr": pdu.source_addr,  # type: ignore[attr-defined]
                "destination_addr": pdu.destination_addr,  # type: ignore[attr-defined]
                "short_message_ok": pdu.short_message == BODY,  # type: ignore[attr-defined]
            }

    # --------------------------------------------------------------- sending
    def _submits(self, count: int) -> bytearray:
        """`count` submit_sm back to back: patch seq + destination into the preallocated buffer."""
        bench = self.bench
        tx = self.tx
        length = self.length
        suffix_at = self.suffix_offset
        suffix_end = suffix_at + DEST_SUFFIX_DIGITS
        suffixes = bench.suffixes
        spread = bench.config.dest_spread
        seq = self.seq
        if seq + count >= MAX_SEQUENCE:
            seq = 1
        k = bench.dest_counter
        off = 0
        for _ in range(count):
            seq += 1
            _pack_seq(tx, off + 12, seq)
            if suffixes is not None:
                tx[off + suffix_at : off + suffix_end] = suffixes[k % spread]
            else:
                tx[off + suffix_at : off + suffix_end] = b"%0*d" % (DEST_SUFFIX_DIGITS, k % spread)
            k += 1
            off += length
        bench.dest_counter = k
        bench.submitted += count
        self.seq = seq
        self.outstanding += count
        return tx[:off]  # a copy: the buffer is reused for the next refill

    def start_sending(self) -> None:
        if self.transport is not None and self.outstanding < self.window:
            self.transport.write(self._submits(self.window - self.outstanding))

    def unbind(self) -> None:
        if self.transport is None:
            return
        self.unbinding = True
        self.seq = self.seq % (MAX_SEQUENCE - 1) + 1
        self.transport.write(encode_pdu(Unbind(sequence_number=self.seq)))


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the gateway's SQLite writer is a child process)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            pass
        i += 1
    return pids


def _proc_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of `pid` and its live descendants; None if `pid` is gone."""
    total = None
    for p in process_tree(pid):
        seconds = stat_cpu_seconds(f"/proc/{p}/stat")
        if seconds is not None:
            total = (total or 0.0) + seconds
    return total


def stat_cpu_seconds(stat_path: str) -> float | None:
    """User + system CPU seconds from a /proc stat file (a process's or a thread's); None if it is gone."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _proc_rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` and its live descendants, in MB."""
    total = None
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total = round((total or 0.0) + int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError, IndexError):
            pass
    return total


def _machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    guest = sum(ticks[8:10])  # already counted in user / nice
    return (sum(ticks) - idle - guest) / os.sysconf("SC_CLK_TCK")


def _self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _named(errors: dict[int, int]) -> dict[str, int]:
    return {("GENERIC_NACK" if code == GENERIC_NACK else CommandStatus.name_of(code)): n for code, n in sorted(errors.items())}


async def drive(config: DriverConfig) -> DriverResult:
    """One measured run against config.host:config.port. Always closes its connections."""
    loop = asyncio.get_running_loop()
    bench = _Bench(config)
    result = DriverResult()
    senders: list[_Bind] = []
    receivers: list[_Bind] = []

    async def connect(index: int, system_id: str, password: str, sender: bool) -> _Bind | None:
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Bind(bench, index, system_id, password, sender), config.host, config.port),
                config.bind_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            bench.problems.append(f"{system_id} bind {index}: cannot connect: {exc!r}")
            return None
        return proto

    try:
        if config.deliver:
            # Receivers first, so no MT is parked before somebody can take it.
            receivers = [b for b in await asyncio.gather(*(connect(i, config.rx_system_id, config.rx_password, False) for i in range(config.rx_binds))) if b]
        senders = [b for b in await asyncio.gather(*(connect(i, config.system_id, config.password, True) for i in range(config.binds))) if b]
        everyone = senders + receivers
        try:
            await asyncio.wait_for(asyncio.gather(*(b.bound for b in everyone)), config.bind_timeout)
        except asyncio.TimeoutError:
            bench.problems.append("timed out waiting for bind responses")
        senders = [b for b in senders if b.bound.done() and b.bound.result()]
        receivers = [b for b in receivers if b.bound.done() and b.bound.result()]
        result.binds_bound, result.rx_binds_bound = len(senders), len(receivers)
        if not senders or (config.deliver and not receivers):
            bench.problems.append("not enough binds bound; nothing measured")
            return result

        bench.sending = True
        for b in senders:
            b.start_sending()
        await asyncio.sleep(config.warmup)

        t0, cpu0 = loop.time(), _self_cpu_seconds()
        srv0 = _proc_cpu_seconds(config.server_pid) if config.server_pid else None
        all0 = _machine_busy_seconds()
        rss0 = _proc_rss_mb(config.server_pid) if config.server_pid else None
        ok0, dlv0, err0 = bench.accepted, bench.delivered, dict(bench.errors)
        io0 = bench.reads, bench.writes
        deadline = t0 + config.seconds
        last = ok0
        while (now := loop.time()) < deadline:
            await asyncio.sleep(min(1.0, deadline - now))
            result.timeline.append(bench.accepted - last)
            last = bench.accepted
        t1, cpu1 = loop.time(), _self_cpu_seconds()
        srv1 = _proc_cpu_seconds(config.server_pid) if config.server_pid else None
        all1 = _machine_busy_seconds()
        rss1 = _proc_rss_mb(config.server_pid) if config.server_pid else None
        if rss0 is not None and rss1 is not None:
            result.server_rss_mb = (rss0, rss1)
        ok1, dlv1, err1 = bench.accepted, bench.delivered, dict(bench.errors)
        io1 = bench.reads, bench.writes
        bench.sending = False

        interval = t1 - t0
        result.interval = interval
        result.accepted, result.delivered = ok1 - ok0, dlv1 - dlv0
        result.accepted_per_s = result.accepted / interval
        result.delivered_per_s = result.delivered / interval
        result.errors = _named({k: v - err0.get(k, 0) for k, v in err1.items() if v - err0.get(k, 0)})
        result.driver_cpu_pct = 100.0 * (cpu1 - cpu0) / interval
        if result.accepted:
            result.reads_per_100_msgs = round(100.0 * (io1[0] - io0[0]) / result.accepted, 1)
            result.writes_per_100_msgs = round(100.0 * (io1[1] - io0[1]) / result.accepted, 1)
        if srv0 is not None and srv1 is not None:
            result.server_cpu_pct = 100.0 * (srv1 - srv0) / interval
            if srv1 > srv0:
                result.accepted_per_server_cpu_s = result.accepted / (srv1 - srv0)
        if all0 is not None and all1 is not None:
            result.machine_cpu_pct = 100.0 * (all1 - all0) / interval

        # Let the windows drain, then (--deliver) let delivery catch up with acceptance.
        stop_at = loop.time()
        drain_until = stop_at + config.drain_timeout
        while any(b.outstanding > 0 and b.transport is not None for b in senders) and loop.time() < drain_until:
            await asyncio.sleep(0.02)
        result.outstanding_after_drain = sum(b.outstanding for b in senders)
        if config.deliver:
            catchup_until = loop.time() + config.catchup_timeout
            while bench.delivered < bench.accepted and loop.time() < catchup_until:
                await asyncio.sleep(0.02)
            result.caught_up = bench.delivered >= bench.accepted
            result.catchup_seconds = round(loop.time() - stop_at, 3)
            if not result.caught_up:
                bench.problems.append(f"delivery did not catch up: {bench.delivered} delivered of {bench.accepted} accepted")
    finally:
        bench.sending = False
        await _close_all(senders + receivers)
        result.total_submitted = bench.submitted
        result.total_accepted = bench.accepted
        result.total_delivered = bench.delivered
        result.total_errors = _named(bench.errors)
        result.connections_lost = bench.lost
        result.sample_deliver = bench.sample_deliver
        result.problems = bench.problems
    return result


async def _close_all(binds: list[_Bind], timeout: float = 3.0) -> None:
    for b in binds:
        b.unbind()
    pending = [b.closed for b in binds if b.transport is not None]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for b in binds:
        if b.transport is not None:
            b.transport.abort()


def run_driver(config: DriverConfig) -> DriverResult:
    """Run `drive` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(drive(config))
    return uvloop.run(drive(config))


def format_result(r: DriverResult, deliver: bool) -> str:
    lines = [f"accepted  {r.accepted_per_s:10.0f} msg/s  ({r.accepted} in {r.interval:.2f} s; per-second {r.timeline})"]
    if deliver:
        lines.append(f"delivered {r.delivered_per_s:10.0f} msg/s  ({r.delivered}; caught up: {r.caught_up} after {r.catchup_seconds} s;"
                     f" totals accepted {r.total_accepted} delivered {r.total_delivered})")
    if r.errors:
        lines.append(f"non-OK in interval: {r.errors}")
    cpu = f"driver CPU {r.driver_cpu_pct:.0f}%"
    if r.server_cpu_pct is not None:
        cpu += f", server CPU {r.server_cpu_pct:.0f}%"
        if r.accepted_per_server_cpu_s:
            cpu += f" ({r.accepted_per_server_cpu_s:.0f} accepted per server CPU-second)"
    if r.server_rss_mb is not None:
        cpu += f", server RSS {r.server_rss_mb[0]:.0f} -> {r.server_rss_mb[1]:.0f} MB"
    if r.machine_cpu_pct is not None:
        cpu += f", whole machine {r.machine_cpu_pct:.0f}%"
    lines.append(cpu + f"; binds {r.binds_bound}" + (f" + {r.rx_binds_bound} receiving" if deliver else "")
                 + f"; driver reads/writes per 100 msgs {r.reads_per_100_msgs:g}/{r.writes_per_100_msgs:g}")
    lines.extend(f"problem: {p}" for p in r.problems)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = DriverConfig()
    p = argparse.ArgumentParser(description="Pipelining SMPP load driver (see module docstring).")
    p.add_argument("--host", default=defaults.host)
    p.add_argument("--port", type=int, default=defaults.port)
    p.add_argument("--binds", type=int, default=defaults.binds)
    p.add_argument("--window", type=int, default=defaults.window)
    p.add_argument("--seconds", type=float, default=defaults.seconds)
    p.add_argument("--warmup", type=float, default=defaults.warmup)
    p.add_argument("--system-id", default=defaults.system_id)
    p.add_argument("--password", default=defaults.password)
    p.add_argument("--dest-spread", type=int, default=defaults.dest_spread)
    p.add_argument("--refill-min", type=int, default=defaults.refill_min,
                   help="refill a window once this many submit_sm_resp came back (default 1: on every read)")
    p.add_argument("--deliver", action="store_true", help="also bind receivers and count/answer deliver_sm")
    p.add_argument("--rx-binds", type=int, default=defaults.rx_binds)
    p.add_argument("--rx-system-id", default=defaults.rx_system_id)
    p.add_argument("--rx-password", default=defaults.rx_password)
    p.add_argument("--catchup-timeout", type=float, default=defaults.catchup_timeout)
    p.add_argument("--server-pid", type=int, help="also report this process's CPU use over the interval")
    p.add_argument("--cpu", type=int, help="pin the driver to this CPU core")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    config = DriverConfig(
        host=a.host, port=a.port, binds=a.binds, window=a.window, seconds=a.seconds, warmup=a.warmup,
        system_id=a.system_id, password=a.password, dest_spread=a.dest_spread, deliver=a.deliver,
        rx_binds=a.rx_binds, rx_system_id=a.rx_system_id, rx_password=a.rx_password,
        catchup_timeout=a.catchup_timeout, server_pid=a.server_pid, refill_min=a.refill_min,
    )  # fmt: skip
    started = time.monotonic()
    result = run_driver(config)
    if a.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(format_result(result, a.deliver))
        print(f"(run took {time.monotonic() - started:.1f} s)")
    return 0 if result.accepted and not result.problems else 1


if __name__ == "__main__":
    sys.exit(main())
