"""The gateway's CPU per dialogue MO, in process: the short-code services without sockets or a fleet.

    .venv/bin/python bench/inproc_dialogues.py [--mos 20000] [--warmup 6000] [--subscribers 2000]
        [--concurrency 32] [--root DIR] [--callgrind]
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p .venv/bin/python bench/inproc_dialogues.py \
        --callgrind --mos 2400 --warmup 1200

Why: bench/dialogues.py runs the fleet (a separate process that checks every
dialogue) against `smsgw serve`; on the shared 2-core machine its figures move
by +-25%, and once the gateway is fast the fleet is the limit. This drives a
real Gateway (config/default.toml, real SQLite store, uvloop) through
SmppConnection.data_received and bench/inproc.py's fake transport, with the
services configured as bench/dialogues.py configures them (every completed
10086 dialogue followed by a survey; spam thresholds out of reach).

The load: --concurrency subscribers at a time each run one CYCLE of dialogues
(below), a step at a time: a step's MO goes out once every text the previous
step expects has arrived (its source and a phrase of it are checked), so each
MO meets the state the one before left. A subscriber that finished its cycle
makes way for the next of --subscribers (fresh ones, as the fleet's are). SP
binds (sina, tencent) take the order-relation notices.

Reported: CPU microseconds per dialogue MO -- the main thread without the
harness's own work (encoding MOs, decoding replies and checking them, timed
around its callbacks), the other threads, the SQLite writer process, and the share in
garbage collections -- and deliver_sm per MO. `--root DIR` measures another
checkout with this harness (before/after). Under callgrind the dump named
"measured" holds the instructions of exactly --mos MOs (harness included).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque

import checkout  # first: puts the --root checkout on sys.path before anything imports gateway
from inproc import (
    DELIVER_SM_ID,
    DELIVER_SM_RESP,
    HEADER,
    SUBMIT_SM_RESP_ID,
    CpuSnapshot,
    FakeTransport,
    GcTimer,
)

OPERATOR, RATING, SPAM, SINA = "10086", "10086700", "10086999", "1066916"
SURVEY = (RATING, "满意100")

# One subscriber's dialogues: (short code, text, texts expected back as (source, a phrase of the text)).
# Orders, confirmations, listings, unsubscriptions, spam reports (both forms), help, and the survey
# each completed 10086 dialogue brings, answered (a 5 with its reason, a 1, a 2).
CYCLE: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (SINA, "TT", ((OPERATOR, "确认定制请回复"),)),
    (OPERATOR, "Y", ((OPERATOR, "新浪的头条新闻业务,信息费30元/月,由中国移动代收"), SURVEY)),  # a trial, or a repeat order
    (RATING, "5", ((RATING, "请直接回复您不满意的原因"),)),
    (RATING, "排队太久了", ((RATING, "已收到您的宝贵意见"),)),
    (OPERATOR, "0000", ((OPERATOR, "您已定制以下1项业务"),)),
    (OPERATOR, "1", ((OPERATOR, "您已成功退订新浪公司提供的头条新闻"), SURVEY)),
    (RATING, "1", ((RATING, "感谢您的评价！"),)),
    (SPAM, "{reported}*恭喜您获得本期大奖请点击领取", ((SPAM, "您的举报已受理"),)),
    (SPAM, "恭喜您中奖了请点击链接领取", ((SPAM, "回复发送该垃圾短信的手机号码"),)),
    (SPAM, "{reported2}", ((SPAM, "您的举报已受理"),)),
    (OPERATOR, "帮助", ((OPERATOR, "发送0000查询"), SURVEY)),
    (RATING, "2", ((RATING, "感谢您的评价！"),)),
)
FIRST_SUBSCRIBER = 8613800000000
BINDS, SP_ACCOUNTS = 4, ("sina", "tencent")


class HarnessClock:
    """Thread CPU the harness itself spends (encoding, decoding, checking), to leave out of the gateway's."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> None:
        self._t0 = time.thread_time()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.thread_time() - self._t0


@dataclasses.dataclass
class Subscriber:
    msisdn: str
    index: int
    step: int = 0
    expected: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class Harness:
    def __init__(self, gateway, codec, args: argparse.Namespace) -> None:
        from gateway.smpp.pdu import SubmitSm
        from gateway.smpp.segment import parse_udh
        from gateway.smpp.text import decode

        self.parse_udh, self.decode = parse_udh, decode
        self.gateway = gateway
        self.codec = codec
        self.args = args
        self.SubmitSm = SubmitSm
        self.clock = HarnessClock()
        self.binds = [Bind(self, gateway, codec, "handset") for _ in range(BINDS)]
        self.sp_binds = [Bind(self, gateway, codec, account) for account in SP_ACCOUNTS]
        self.waiting = deque(Subscriber(str(FIRST_SUBSCRIBER + i), i) for i in range(args.subscribers))
        self.by_msisdn = {s.msisdn: s for s in self.waiting}
        self.parts: dict[tuple, dict[int, bytes]] = {}
        self.sent = self.steps_done = self.accepted = self.refused = self.delivered = self.sp_notices = 0
        self.limit = 0
        self.active = 0
        self.failures: Counter = Counter()
        self.failure_samples: list[str] = []
        self.sequence = 1
        self.done_event: asyncio.Event | None = None

    # ------------------------------------------------------------ sending
    def run_until(self, limit: int) -> asyncio.Event:
        """Start subscribers until --concurrency are active; the event is set once `limit` steps are done."""
        self.limit = limit
        self.done_event = asyncio.Event()
        while self.active < self.args.concurrency and self.waiting:
            self.active += 1
            self._next_step(self.waiting.popleft())
        return self.done_event

    def _next_step(self, sub: Subscriber) -> None:
        if self.sent >= self.limit:
            self.active -= 1
            self.waiting.appendleft(sub)  # resumes where it stopped in the next phase
            return
        code, text, expected = CYCLE[sub.step]
        if "{" in text:
            base = 8613100000000 + sub.index * 2  # numbers nobody else reports: no threshold ever near
            text = text.format(reported=str(base)[2:], reported2=str(base + 1)[2:])
        sub.expected = list(expected)
        self.sent += 1
        bind = self.binds[sub.index % BINDS]
        self.sequence += 1
        ascii_text = text.isascii()
        pdu = self.SubmitSm(
            sequence_number=self.sequence, source_addr_ton=1, source_addr_npi=1, source_addr=sub.msisdn,
            dest_addr_ton=0, dest_addr_npi=0, destination_addr=code, data_coding=0 if ascii_text else 8,
            short_message=text.encode("ascii" if ascii_text else "utf-16-be"),
        )  # fmt: skip
        # On the next loop iteration, as from a peer across a socket (and outside the harness's timed work).
        asyncio.get_running_loop().call_soon(bind.conn.data_received, self.codec.encode_pdu(pdu))

    def _step_done(self, sub: Subscriber) -> None:
        self.steps_done += 1
        sub.step += 1
        if sub.step == len(CYCLE):  # make way for a fresh subscriber
            sub.step = 0
            sub.index += self.args.subscribers  # another reported number next time round
            self.waiting.append(sub)
            sub = self.waiting.popleft()
        self._next_step(sub)
        if self.steps_done >= self.limit and self.done_event is not None:
            self.done_event.set()

    # ---------------------------------------------------------- receiving
    def received(self, data: bytes) -> None:
        """The deliver_sm PDUs of one write from the gateway (their resps are already on their way)."""
        with self.clock:
            pos = 0
            while pos < len(data):
                length, command_id, _status, _sequence = HEADER.unpack_from(data, pos)
                if command_id == DELIVER_SM_ID:
                    pdu = self.codec.decode_pdu(data[pos : pos + length])
                    self.deliver(pdu.source_addr, pdu.destination_addr, pdu.esm_class, pdu.data_coding, pdu.short_message)
                pos += length

    def deliver(self, source: str, dest: str, esm_class: int, data_coding: int, body: bytes) -> None:
        self.delivered += 1
        sub = self.by_msisdn.get(dest)
        if sub is None:
            self.sp_notices += 1
            return
        concat, body = self.parse_udh(esm_class, body)
        if concat is not None:
            key = (dest, source, concat.reference)
            got = self.parts.setdefault(key, {})
            got[concat.seqnum] = body
            if len(got) < concat.total:
                return
            del self.parts[key]
            body = b"".join(got[i] for i in sorted(got))
        text = self.decode(body, data_coding)
        for i, (want_source, phrase) in enumerate(sub.expected):
            if want_source == source:
                del sub.expected[i]
                if phrase not in text:
                    self._fail(f"step {sub.step} {CYCLE[sub.step][1]!r}: from {source} expected {phrase!r}", text)
                break
        else:
            self._fail(f"step {sub.step} {CYCLE[sub.step][1]!r}: unexpected text from {source}", text)
            return
        if not sub.expected:
            self._step_done(sub)

    def _fail(self, what: str, text: str) -> None:
        self.failures[what] += 1
        if len(self.failure_samples) < 5:
            self.failure_samples.append(f"{what}; got {text[:80]!r}")


class Bind:
    """One transceiver bind of the harness; answers every deliver_sm."""

    def __init__(self, harness: Harness, gateway, codec, system_id: str) -> None:
        from gateway.server import SmppConnection
        from gateway.smpp.pdu import BindTransceiver

        self.harness = harness
        self.codec = codec
        self.conn = SmppConnection(gateway)
        self.conn.connection_made(FakeTransport(self))
        self.conn.data_received(codec.encode_pdu(BindTransceiver(sequence_number=1, system_id=system_id, password=system_id)))

    def on_data(self, data: bytes) -> None:
        harness = self.harness
        with harness.clock:
            answers = []
            pos = 0
            while pos < len(data):
                length, command_id, status, sequence = HEADER.unpack_from(data, pos)
                if command_id == SUBMIT_SM_RESP_ID:
                    harness.accepted += 1
                    if status:
                        harness.refused += 1
                        harness._fail(f"submit_sm refused with status {status:#x}", "")
                elif command_id == DELIVER_SM_ID:
                    answers.append(DELIVER_SM_RESP.pack(17, DELIVER_SM_ID | 0x80000000, 0, sequence, 0))
                pos += length
            if answers:  # on the next loop iteration, as a peer across a socket would
                loop = asyncio.get_running_loop()
                loop.call_soon(self.conn.data_received, b"".join(answers))
                loop.call_soon(harness.received, data)


async def run(args: argparse.Namespace, gc_timer: GcTimer) -> int:
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.logs import configure_logging
    from gateway.smpp import codec

    configure_logging("warning")  # as bench/dialogues.py serves it

    try:
        from gateway.gctune import tune_for_serving
    except ImportError:
        tune_for_serving = None

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(os.path.join(args.root, "config", "default.toml"))
        # As bench/dialogues.py's BENCH_SERVICES: surveys after every 10086 dialogue, no blocking, no daily limit.
        services = dataclasses.replace(config.services, survey_sample_rate=1.0, spam_block_threshold=1_000_000,
                                       spam_reports_per_day=1_000_000)  # fmt: skip
        config = dataclasses.replace(config, services=services)
        gateway = Gateway(config, db_path=os.path.join(tmp, "gw.db"), smpp_port=0, http_port=0, host="127.0.0.1")
        await gateway.start()
        if tune_for_serving is not None:
            tune_for_serving()
        harness = Harness(gateway, codec, args)

        async def steps(limit: int) -> None:
            try:
                await asyncio.wait_for(harness.run_until(limit).wait(), args.timeout)
            except TimeoutError:
                stuck = [(s.msisdn, s.step, s.expected) for s in harness.by_msisdn.values() if s.expected][:5]
                raise SystemExit(f"stalled at {harness.steps_done}/{limit} steps; waiting e.g. {stuck}; "
                                 f"failures {dict(harness.failures)} {harness.failure_samples}") from None

        await steps(args.warmup)
        if args.callgrind:
            subprocess.run(["callgrind_control", "-d", "warm", str(os.getpid())], capture_output=True, check=False)
        mos0, delivered0, notices0, harness0 = harness.accepted, harness.delivered, harness.sp_notices, harness.clock.seconds
        before = CpuSnapshot.take()
        gc0, collections0 = gc_timer.seconds, list(gc_timer.collections)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        await steps(args.warmup + args.mos)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.profile).print_stats(45)
        if args.callgrind:
            subprocess.run(["callgrind_control", "-d", "measured", str(os.getpid())], capture_output=True, check=False)
        spent = before.until(CpuSnapshot.take())
        n = harness.accepted - mos0
        own = harness.clock.seconds - harness0
        us = lambda seconds: seconds / n * 1e6  # noqa: E731
        gateway_cpu = spent.total - own
        print(f"dialogue MOs: {n} ({n / len(CYCLE):.0f} cycles of {len(CYCLE)}), gateway {us(gateway_cpu):.1f} us CPU/MO"
              f" = {n / gateway_cpu:.0f} MO per gateway CPU-second (wall {n / spent.wall:.0f} MO/s);"
              f" main thread {us(spent.main_thread - own):.1f} us/MO without the harness's {us(own):.1f};"
              f" other threads {us(spent.other_threads):.1f} us/MO; writer process {us(spent.writer):.1f} us/MO; in gc {us(gc_timer.seconds - gc0):.1f} us/MO"
              f" ({[b - a for a, b in zip(collections0, gc_timer.collections)]} collections);"
              f" deliver_sm {(harness.delivered - delivered0) / n:.2f}/MO (SP notices {harness.sp_notices - notices0});"
              f" store {gateway.store.stats}"
              + (f"; record cache loads {records.loads}, hits {records.hits}" if (records := getattr(gateway, "records", None)) else ""))
        failed = sum(harness.failures.values())
        if failed:
            print(f"FAILURES {failed}: {dict(harness.failures)}")
            for sample in harness.failure_samples:
                print(f"  e.g. {sample}")
        await gateway.stop()
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mos", type=int, default=20_000, help="dialogue MOs measured (default 20000)")
    parser.add_argument("--warmup", type=int, default=6_000, help="MOs before measuring (default 6000)")
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32, help="subscribers in a dialogue at a time (default 32)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a phase may take before it counts as stalled")
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="the checkout to measure (default: this one)")
    parser.add_argument("--callgrind", action="store_true", help="mark the measured interval for callgrind")
    parser.add_argument("--profile", nargs="?", const="tottime", choices=["tottime", "cumulative", "ncalls"],
                        help="cProfile the measured interval (main thread; figures then include its overhead)")
    args = parser.parse_args(argv)
    assert os.path.abspath(args.root) == checkout.ROOT
    gc_timer = GcTimer()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(args, gc_timer))
    return uvloop.run(run(args, gc_timer))


if __name__ == "__main__":
    sys.exit(main())
