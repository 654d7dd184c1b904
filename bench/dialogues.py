"""Dialogue benchmark: the short-code dialogue mix over the full path, next to the plain MO figure.

    flock /tmp/smsgw-bench.lock .venv/bin/python bench/dialogues.py [--seconds 10] [--warmup 2]
        [--subscribers 2000] [--binds 4] [--concurrency 32] [--mix query=1,order=1,spam=1,rating=1]
        [--open-fraction 0.5] [--skip-plain] [--profile] [--no-pin] [--json bench/results/dialogues.json]

1. The plain MO figure: bench/run.py's target b1 (its own functions, same defaults).
2. The gateway (`python -m gateway serve`, fresh SQLite db, 127.0.0.1, log level warning) with a
   temporary config: config/default.toml with services.survey_sample_rate = 1.0 (every completed 10086
   dialogue is followed by a survey, which is how the rating dialogue gets one) and spam thresholds /
   per-reporter limits high enough that the mix never blocks its own numbers.
3. Simulated subscribers (simulator/) on a few transceiver binds of account `handset`, each bind with an
   address_range covering its subscribers, plus a receiver bind of the SP `sina` that takes the
   order-relation notices. The mix: 0000 query/unsubscribe, order TT + confirm, spam reports, ratings.
   - closed loop: `--concurrency` dialogues in flight at full speed for --seconds after --warmup
     -> dialogues/s, MO/s (submit_sm accepted), MO -> reply latency p50/p99;
   - open loop at --open-fraction (0.5) of that dialogues/s -> p50/p99 latency there.
   Every dialogue is checked (simulator/dialogues.py); failures are counted by kind and step, and the
   SP notices are counted against the orders and unsubscriptions that succeeded.
Targets (issue 3): dialogue-mix MO/s >= 50% of the plain MO figure; p99 MO -> reply < 20 ms at half the
maximum rate. Results: bench/results/dialogues.json; the gateway's log: bench/results/dialogues.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import run as core  # noqa: E402  bench/run.py: server start/stop, b1, profiling, machine info
from driver import _machine_busy_seconds, _proc_cpu_seconds, _proc_rss_mb, _self_cpu_seconds  # noqa: E402

from gateway.config import load_config  # noqa: E402
from simulator.dialogues import KINDS, DialogueResult, Plan, order_confirm, query_unsubscribe, rating, spam_report  # noqa: E402
from simulator.esme import Esme, ShortMessage  # noqa: E402
from simulator.esme import run as run_loop  # noqa: E402
from simulator.handset import Handset, Switchboard  # noqa: E402

RESULTS = core.RESULTS
SPAM_TEXT = "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取"
REPORTED_BASE = 8613000000000  # reported numbers: account carrier's range, never a sender in the mix
TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0

# Keys of config/default.toml's [services] table changed for the benchmark.
BENCH_SERVICES = {
    "survey_sample_rate": "1.0",  # every completed 10086 dialogue is followed by a survey
    "spam_block_threshold": "1000000",  # the mix never blocks a number network-wide ...
    "spam_reports_per_day": "1000000",  # ... nor runs a reporter into the daily limit
}


# ------------------------------------------------------------------ latencies
class Latencies:
    """MO -> reply latencies: an HDR histogram (microseconds) when the `hdrhistogram` package is installed, else a list."""

    def __init__(self) -> None:
        try:
            from hdrh.histogram import HdrHistogram
        except ImportError:
            self._hdr = None
            self._values: list[float] = []
        else:
            self._hdr = HdrHistogram(1, 120_000_000, 3)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    @property
    def kind(self) -> str:
        return "hdrhistogram" if self._hdr is not None else "sorted list"

    def record(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        if self._hdr is not None:
            self._hdr.record_value(max(1, int(seconds * 1e6)))
        else:
            self._values.append(seconds)

    def ms(self, percentile: float) -> float | None:
        if not self.count:
            return None
        if self._hdr is not None:
            return self._hdr.get_value_at_percentile(percentile) / 1000.0
        values = sorted(self._values)  # nearest rank
        return values[min(len(values), max(1, math.ceil(percentile / 100.0 * len(values)))) - 1] * 1000.0

    def summary(self) -> dict:
        return {
            "count": self.count,
            "p50_ms": _r(self.ms(50)), "p90_ms": _r(self.ms(90)), "p99_ms": _r(self.ms(99)), "p999_ms": _r(self.ms(99.9)),
            "max_ms": _r(self.max * 1000.0) if self.count else None,
            "mean_ms": _r(self.total / self.count * 1000.0) if self.count else None,
        }  # fmt: skip


def _r(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


# ---------------------------------------------------------------------- phases
@dataclass
class Phase:
    """One measured interval: what completed inside it, and the counters at its edges."""

    name: str
    t0: float = 0.0
    t1: float = 0.0
    dialogues: Counter = field(default_factory=Counter)  # ok, by kind
    outcomes: Counter = field(default_factory=Counter)  # ok, by kind:outcome
    latency: Latencies = field(default_factory=Latencies)
    by_step: dict[str, Latencies] = field(default_factory=dict)
    mo_accepted: int = 0
    mt_received: int = 0
    started: int = 0  # dialogues started inside the interval (open loop: the offered load)
    cpu: dict = field(default_factory=dict)

    def add(self, result: DialogueResult) -> None:
        if not (result.ok and self.t0 <= result.ended_at <= self.t1):
            return
        self.dialogues[result.kind] += 1
        self.outcomes[f"{result.kind}:{result.outcome}"] += 1
        for step, seconds in result.steps:
            self.latency.record(seconds)
            hist = self.by_step.get(f"{result.kind} {step}")
            if hist is None:
                hist = self.by_step[f"{result.kind} {step}"] = Latencies()
            hist.record(seconds)

    @property
    def interval(self) -> float:
        return self.t1 - self.t0

    def report(self) -> dict:
        total = sum(self.dialogues.values())
        out = {
            "interval_s": round(self.interval, 3),
            "dialogues": total,
            "dialogues_per_s": round(total / self.interval, 1) if self.interval else None,
            "mo_per_s": round(self.mo_accepted / self.interval, 1) if self.interval else None,
            "mt_texts_per_s": round(self.mt_received / self.interval, 1) if self.interval else None,
            "by_kind": dict(sorted(self.dialogues.items())),
            "by_outcome": dict(sorted(self.outcomes.items())),
            "latency": self.latency.summary(),
            "latency_by_step": {k: v.summary() for k, v in sorted(self.by_step.items())},
            "histogram": self.latency.kind,
            **self.cpu,
        }
        if self.started:
            out["started_per_s"] = round(self.started / self.interval, 1)
        return out


# ---------------------------------------------------------------------- the mix
@dataclass
class MixOptions:
    host: str = "127.0.0.1"
    port: int = 2775
    seconds: float = 10.0
    warmup: float = 2.0
    subscribers: int = 2000
    binds: int = 4
    window: int = 100
    concurrency: int = 32
    mix: dict[str, float] = field(default_factory=lambda: {k: 1.0 for k in KINDS})
    open_fraction: float = 0.5
    timeout: float = 5.0
    seed: int = 1
    server_pid: int | None = None
    config: str = ""
    profile: str | None = None  # None, "python" or "native"


class Mix:
    """Simulated subscribers over a few binds, and the dialogue mix they run."""

    def __init__(self, options: MixOptions, plan: Plan) -> None:
        self.o = options
        self.plan = plan
        self.rng = random.Random(options.seed)
        self.board = Switchboard()
        self.binds: list[Esme] = []
        self.sp: Esme | None = None
        self.sp_notices: Counter = Counter()
        self.sp_unparsed: list[str] = []
        self.idle: dict[str, deque[Handset]] = {"unsubscribed": deque(), "subscribed": deque(), "spam": deque(), "rating": deque()}
        self.freed = asyncio.Event()
        self.kinds = [k for k in KINDS if options.mix.get(k, 0) > 0]
        self.weights = [options.mix[k] for k in self.kinds]
        self.failures: Counter = Counter()  # "kind | step | reason"
        self.failure_samples: list[dict] = []
        self.unexpected: list[str] = []
        self.totals: Counter = Counter()  # every dialogue, warm-up included: kind:outcome
        self.retired = 0
        self.no_idle = Counter()  # open loop: a dialogue due with no idle subscriber for it
        self.phase: Phase | None = None
        self.in_flight: set[asyncio.Task] = set()

    # -------------------------------------------------------------- set-up
    async def connect(self) -> None:
        o = self.o
        # The SP first, so no order-relation notice waits in the store for it.
        self.sp = await Esme.connect(o.host, o.port, on_message=self._sp_notice)
        await self.sp.bind("rx", "sina", "sina", system_type="bench")
        per_bind = -(-o.subscribers // o.binds)
        if per_bind > 100_000:
            raise SystemExit("at most 100000 subscribers per bind")
        for k in range(o.binds):
            esme = await Esme.connect(o.host, o.port, on_message=self.board, window=o.window, response_timeout=o.timeout * 2)
            await esme.bind("trx", "handset", "handset", system_type="bench", address_range=f"861381{k:02d}\\d{{5}}")
            self.binds.append(esme)
        personas = _spread({"sub": o.mix.get("query", 0) + o.mix.get("order", 0), "spam": o.mix.get("spam", 0),
                            "rating": o.mix.get("rating", 0)}, o.subscribers)  # fmt: skip
        for i, persona in enumerate(personas):
            k, j = i % o.binds, i // o.binds
            # Subscribers who order and unsubscribe never answer the surveys those 10086 dialogues bring.
            ignore = [self.plan.rating] if persona == "sub" else []
            handset = self.board.add(Handset(f"861381{k:02d}{j:05d}", self.binds[k], ignore=ignore))
            self.idle["unsubscribed" if persona == "sub" else persona].append(handset)

    def _sp_notice(self, message: ShortMessage) -> None:
        m = re.match(r"event=(\w+) ", message.text)
        if m and message.source in self.board.handsets:
            self.sp_notices[m.group(1)] += 1
        else:
            self.sp_unparsed.append(message.text)

    async def close(self) -> None:
        await asyncio.gather(*(e.unbind() for e in [*self.binds, *([self.sp] if self.sp else [])]), return_exceptions=True)

    # ----------------------------------------------------------- dialogues
    def _take(self, kind: str) -> tuple[str, Handset] | None:
        idle = self.idle
        if kind == "query":
            pool = idle["subscribed"] or idle["unsubscribed"]
        elif kind == "order":
            pool = idle["unsubscribed"]
            if not pool and idle["subscribed"]:
                kind, pool = "query", idle["subscribed"]  # everyone holds the service: unsubscribe one instead
        else:
            pool = idle[kind]
        return (kind, pool.popleft()) if pool else None

    def _release(self, handset: Handset, result: DialogueResult) -> None:
        if not result.ok:
            self.retired += 1  # its state is unknown now: it sits out the rest of the run
            return
        if result.kind in ("query", "order"):
            self.idle["subscribed" if handset.subscriptions else "unsubscribed"].append(handset)
        else:
            self.idle[result.kind].append(handset)
        self.freed.set()

    async def one(self, kind: str, handset: Handset) -> DialogueResult:
        plan, timeout = self.plan, self.o.timeout
        if kind == "query":
            result = await query_unsubscribe(handset, plan, timeout=timeout)
        elif kind == "order":
            result = await order_confirm(handset, plan, "TT", timeout=timeout)
        elif kind == "spam":
            reported = str(REPORTED_BASE + self.rng.randrange(10**8))
            result = await spam_report(handset, plan, reported, SPAM_TEXT, timeout=timeout)
        else:
            result = await rating(handset, plan, "1", timeout=timeout)
        self._record(result)
        self._release(handset, result)
        return result

    def _record(self, result: DialogueResult) -> None:
        self.totals[f"{result.kind}:{result.outcome}"] += 1
        for text in result.unexpected:
            self.unexpected.append(f"to {result.msisdn} before a {result.kind} dialogue: {text}")
        if not result.ok:
            reason = re.sub(r"\d{5,}", "N", result.error)[:160]
            self.failures[f"{result.kind} | {result.step} | {reason}"] += 1
            if len(self.failure_samples) < 20:
                self.failure_samples.append({
                    "kind": result.kind, "msisdn": result.msisdn, "step": result.step, "error": result.error,
                    "transcript": [f"{t - result.started_at:+.4f}s {d} {peer}: {text}" for t, d, peer, text in result.transcript],
                })  # fmt: skip
        if self.phase is not None:
            self.phase.add(result)

    def _choose(self) -> str:
        return self.rng.choices(self.kinds, self.weights)[0]

    # ---------------------------------------------------------------- loops
    async def closed_loop(self, seconds: float, warmup: float, concurrency: int) -> Phase:
        loop = asyncio.get_running_loop()
        stop_at = time.monotonic() + warmup + seconds

        async def worker() -> None:
            while time.monotonic() < stop_at:
                taken = self._take(self._choose())
                if taken is None:  # every subscriber for this kind is busy: wait for one to come back
                    self.freed.clear()
                    try:
                        await asyncio.wait_for(self.freed.wait(), 1.0)
                    except asyncio.TimeoutError:
                        pass
                    continue
                await self.one(*taken)

        workers = [loop.create_task(worker()) for _ in range(concurrency)]
        phase = await self._measure("closed loop", seconds, warmup)
        await asyncio.gather(*workers)
        return phase

    async def open_loop(self, rate: float, seconds: float, warmup: float) -> Phase:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        stop_at = start + warmup + seconds
        measure = loop.create_task(self._measure(f"open loop at {rate:.0f} dialogues/s", seconds, warmup))
        interval = 1.0 / rate
        due = start
        while due < stop_at:
            now = time.monotonic()
            while due <= now and due < stop_at:
                kind = self._choose()
                taken = self._take(kind)
                if taken is None:
                    self.no_idle[kind] += 1
                else:
                    task = loop.create_task(self.one(*taken))
                    self.in_flight.add(task)
                    task.add_done_callback(self.in_flight.discard)
                    if self.phase is not None and self.phase.t0 <= now:
                        self.phase.started += 1
                due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        phase = await measure
        if self.in_flight:
            await asyncio.wait(list(self.in_flight), timeout=self.o.timeout * 3)
        return phase

    async def _measure(self, name: str, seconds: float, warmup: float) -> Phase:
        phase = Phase(name)
        phase.t0 = phase.t1 = float("inf")  # nothing counts during the warm-up
        self.phase = phase
        await asyncio.sleep(warmup)
        pid = self.o.server_pid
        mo0, mt0 = self._mo(), self._mt()
        cpu0, srv0, all0 = _self_cpu_seconds(), _proc_cpu_seconds(pid) if pid else None, _machine_busy_seconds()
        rss0 = _proc_rss_mb(pid) if pid else None
        phase.t0 = time.monotonic()
        phase.t1 = phase.t0 + seconds
        await asyncio.sleep(seconds)
        phase.t1 = time.monotonic()
        mo1, mt1 = self._mo(), self._mt()
        cpu1, srv1, all1 = _self_cpu_seconds(), _proc_cpu_seconds(pid) if pid else None, _machine_busy_seconds()
        phase.mo_accepted, phase.mt_received = mo1 - mo0, mt1 - mt0
        interval = phase.interval
        phase.cpu = {"simulator_cpu_pct": round(100.0 * (cpu1 - cpu0) / interval, 1)}
        if srv0 is not None and srv1 is not None:
            phase.cpu["server_cpu_pct"] = round(100.0 * (srv1 - srv0) / interval, 1)
            if srv1 > srv0:
                phase.cpu["mo_per_server_cpu_s"] = round(phase.mo_accepted / (srv1 - srv0), 1)
        if all0 is not None and all1 is not None:
            machine = 100.0 * (all1 - all0) / interval
            phase.cpu["machine_cpu_pct"] = round(machine, 1)
            if "server_cpu_pct" in phase.cpu:  # everything else running on the machine meanwhile
                phase.cpu["other_load_pct"] = round(max(0.0, machine - phase.cpu["server_cpu_pct"] - phase.cpu["simulator_cpu_pct"]), 1)
        if rss0 is not None:
            phase.cpu["server_rss_mb"] = (rss0, _proc_rss_mb(pid))
        return phase

    def _mo(self) -> int:
        return sum(e.stats.submit_ok for e in self.binds)

    def _mt(self) -> int:
        return sum(e.stats.messages for e in self.binds)

    # ------------------------------------------------------------ the end
    async def settle(self, timeout: float = 5.0) -> dict:
        """After the loops: SP notices must match the orders / unsubscriptions that went through; nothing else may arrive."""
        expected = {"ORDER": self.totals["order:ordered"], "CANCEL": self.totals["query:unsubscribed"]}
        until = time.monotonic() + timeout
        while time.monotonic() < until and any(self.sp_notices[k] < v for k, v in expected.items()):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything late (a stray reply) lands now
        for handset in self.board.handsets.values():
            for m in handset.take_inbox():
                self.unexpected.append(f"to {handset.msisdn} after its last dialogue: {m.source}: {m.text}")
        for m in self.board.unrouted:
            self.unexpected.append(f"to {m.destination} (no such handset): {m.source}: {m.text}")
        got = {k: self.sp_notices[k] for k in expected}
        if got != expected:
            self.failures[f"sp_notice | end | notices {got}, successful dialogues {expected}"] += 1
        if self.sp_unparsed:
            self.failures[f"sp_notice | end | {len(self.sp_unparsed)} unparsed, e.g. {self.sp_unparsed[0][:80]!r}"] += 1
        if self.unexpected:
            self.failures[f"unexpected | - | texts nobody was waiting for, e.g. {self.unexpected[0][:120]}"] += len(self.unexpected)
        surveys_ignored = sum(h.ignored[self.plan.rating] for h in self.board.handsets.values())
        return {"sp_notices": got, "sp_notices_expected": expected, "surveys_ignored": surveys_ignored,
                "unexpected_sample": self.unexpected[:10]}  # fmt: skip

    def esme_stats(self) -> dict:
        failed: Counter = Counter()
        for e in self.binds:
            failed.update(e.stats.submit_failed)
        return {
            "submitted": sum(e.stats.submitted for e in self.binds),
            "accepted": sum(e.stats.submit_ok for e in self.binds),
            "refused": dict(failed),
            "deliver_sm": sum(e.stats.deliver_sm for e in self.binds),
            "texts": sum(e.stats.messages for e in self.binds),
            "response_timeouts": sum(e.stats.timeouts for e in self.binds),
            "rejected_by_session": sum(e.stats.rejected for e in self.binds),
            "writes": sum(e.stats.writes for e in self.binds),
            "connections_lost": [e.close_reason for e in self.binds if e.is_closed],
        }


def _spread(weights: dict[str, float], n: int) -> list[str]:
    """n personas in proportion to weights, interleaved (each bind gets its share of each)."""
    names = [k for k, w in weights.items() if w > 0]
    total = sum(weights[k] for k in names)
    assigned = Counter()
    out = []
    for i in range(n):
        pick = max(names, key=lambda k: weights[k] / total * (i + 1) - assigned[k])
        assigned[pick] += 1
        out.append(pick)
    return out


async def run_mix(options: MixOptions, plan: Plan) -> dict:
    """Closed loop at full speed, then open loop at open_fraction of its dialogues/s; returns the report."""
    mix = Mix(options, plan)
    report: dict = {}
    profiler = None
    try:
        await mix.connect()
        if options.profile and options.server_pid:
            profiler = core.start_profiler("dialogues", options.server_pid, options.warmup + options.seconds,
                                           native=options.profile == "native")
        closed = await mix.closed_loop(options.seconds, options.warmup, options.concurrency)
        mix.phase = None
        report["closed_loop"] = closed.report()
        if profiler is not None:
            entry: dict = {}
            core.finish_profiler(profiler, entry)
            profiler = None
            report["profile"] = entry.get("profile", {})
            report["profile_file"] = entry.get("profile_file")
            if entry.get("profile_file"):
                report["profile_breakdown"] = profile_breakdown(ROOT / entry["profile_file"])
        _print_phase(closed)
        max_rate = report["closed_loop"]["dialogues_per_s"] or 0
        if max_rate > 0 and options.open_fraction > 0:
            rate = max_rate * options.open_fraction
            opened = await mix.open_loop(rate, options.seconds, min(options.warmup, 1.0))
            report["open_loop"] = {"target_dialogues_per_s": round(rate, 1), **opened.report()}
            _print_phase(opened)
        mix.phase = None
        report["checks"] = await mix.settle()
        report["esme"] = mix.esme_stats()  # before unbinding: a closed bind here is one the server closed
    finally:
        if profiler is not None:
            core.finish_profiler(profiler, {})
        await mix.close()
    report["totals"] = dict(sorted(mix.totals.items()))
    report["failures"] = dict(mix.failures.most_common())
    report["failures_total"] = sum(mix.failures.values())
    report["failures_by_kind"] = _by_kind(mix.failures)
    report["failure_samples"] = mix.failure_samples
    report["retired_subscribers"] = mix.retired
    report["no_idle_subscriber"] = dict(mix.no_idle)
    return report


# Where a py-spy sample of the gateway was, by the file of its innermost frame (main thread).
_AREAS = (
    ("asyncio/runners.py", "event loop in C (uvloop: socket I/O, thread wake-ups, polling; idle waits too)"),
    ("gateway/store/", "store: SQL building, rows <-> records (gateway/store/)"),
    ("aiosqlite/", "aiosqlite: handing each statement to its thread and back"),
    ("handlers/", "service handlers (handlers/)"),
    ("gateway/smpp/", "SMPP codec, session, text, segments (gateway/smpp/)"),
    ("gateway/", "gateway plumbing: server, intake, mo, delivery, outbox, services (gateway/)"),
    ("", "other Python: asyncio, dataclasses, logging, ..."),
)


def profile_breakdown(path: Path) -> dict:
    """py-spy raw stacks of the gateway -> the main thread's time by area, and how busy the SQLite threads were.

    (py-spy without --native cannot tell an idle wait from work done in C: the SQLite threads' wait for the
    next statement is taken out by its line; the event loop's own wait stays in its area.)
    """
    main: Counter = Counter()
    frames_self: Counter = Counter()
    sqlite = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("Thread._bootstrap"):
            idle = _is_aiosqlite_wait(frames[-1])
            sqlite["waiting for a statement" if idle else "executing SQL"] += int(count)
            continue
        where = frames[-1].rpartition("(")[2]
        main[next(name for marker, name in _AREAS if marker in where)] += int(count)
        frames_self[core._short_frame(frames[-1])] += int(count)
    total = sum(main.values())
    return {
        "main_thread_samples": total,
        "main_thread_by_area_pct": {k: round(100.0 * v / total, 1) for k, v in main.most_common()} if total else {},
        "sqlite_threads_samples": dict(sqlite),
        "main_thread_self_top_pct": [(f, round(100.0 * n / total, 1)) for f, n in frames_self.most_common(20)] if total else [],
    }


def _is_aiosqlite_wait(frame: str) -> bool:
    """The SQLite worker thread blocked in tx.get() for its next statement (aiosqlite/core.py, `future, function = tx.get()`)."""
    if not frame.startswith("_connection_worker_thread (") or "aiosqlite/core.py:" not in frame:
        return False
    return _AIOSQLITE_WAIT_LINE is not None and frame.rstrip(")").endswith(f":{_AIOSQLITE_WAIT_LINE}")


def _aiosqlite_wait_line() -> int | None:
    try:
        import inspect

        import aiosqlite.core

        lines, start = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    except (ImportError, OSError, AttributeError):
        return None
    return next((start + i for i, text in enumerate(lines) if "tx.get()" in text), None)


_AIOSQLITE_WAIT_LINE = _aiosqlite_wait_line()


def _by_kind(failures: Counter) -> dict[str, int]:
    out: Counter = Counter()
    for key, n in failures.items():
        out[key.split(" | ", 1)[0]] += n
    return dict(out)


def _print_phase(phase: Phase) -> None:
    r = phase.report()
    lat = r["latency"]
    cpu = f"simulator CPU {r['simulator_cpu_pct']:.0f}%"
    if "server_cpu_pct" in r:
        cpu += f", server CPU {r['server_cpu_pct']:.0f}%"
    if "other_load_pct" in r:
        cpu += f", other load {r['other_load_pct']:.0f}%"
    print(f"\n  {phase.name}: {r['dialogues_per_s']} dialogues/s, {r['mo_per_s']} MO/s, {r['mt_texts_per_s']} reply texts/s"
          f" ({r['dialogues']} dialogues in {r['interval_s']} s; {cpu})")
    print(f"    MO->reply latency ms: p50 {lat['p50_ms']}  p90 {lat['p90_ms']}  p99 {lat['p99_ms']}  max {lat['max_ms']}"
          f"  ({lat['count']} replies)")
    if r.get("other_load_pct", 0) > 25:
        print(f"    note: other processes used ~{r['other_load_pct']:.0f}% of a core meanwhile; figures are disturbed")
    print(f"    by outcome: {r['by_outcome']}")
    for step, s in r["latency_by_step"].items():
        print(f"      {step:<34} n={s['count']:<7} p50 {s['p50_ms']:>8} p99 {s['p99_ms']:>8} ms")


# ------------------------------------------------------------------------ the run
def bench_config(directory: Path) -> Path:
    """config/default.toml with BENCH_SERVICES set in [services]; checked by loading it."""
    text = (ROOT / "config" / "default.toml").read_text()
    for key, value in BENCH_SERVICES.items():
        text, n = re.subn(rf"^{key}\s*=\s*[^#\n]*", f"{key} = {value} ", text, flags=re.M)
        if n != 1:
            raise SystemExit(f"config/default.toml: expected one '{key} =' line, found {n}")
    path = directory / "dialogues.toml"
    path.write_text(text)
    services = load_config(path).services
    assert services.survey_sample_rate == 1.0 and services.spam_block_threshold >= 1000000
    return path


def run_dialogues(args: argparse.Namespace, pin: bool, workdir: Path) -> dict:
    rundir = Path(tempfile.mkdtemp(prefix="dialogues-", dir=workdir))
    config = bench_config(rundir)
    port = core.free_port()
    db = rundir / "dialogues.db"
    argv = [
        core.python(), "-m", "gateway", "serve", "--config", str(config), "--db", str(db),
        "--smpp-port", str(port), "--http-port", str(core.free_port()), "--host", "127.0.0.1", "--log-level", "warning",
    ]  # fmt: skip
    proc, log_path = core.start_server("dialogues", argv, pin, cwd=ROOT)
    entry: dict = {"server": " ".join(argv), "config_changes": BENCH_SERVICES, "log": str(log_path.relative_to(ROOT))}
    try:
        entry["ready_after_s"] = round(core.wait_ready(proc, port, log_path), 3)
        options = MixOptions(
            port=port, seconds=args.seconds, warmup=args.warmup, subscribers=args.subscribers, binds=args.binds,
            window=args.window, concurrency=args.concurrency, mix=args.mix, open_fraction=args.open_fraction,
            timeout=args.timeout, seed=args.seed, server_pid=proc.pid, config=str(config), profile=args.profile,
        )  # fmt: skip
        entry["options"] = {k: v for k, v in asdict(options).items() if k not in ("server_pid", "config")}
        entry.update(run_loop(run_mix(options, Plan.from_config(config))))
    finally:
        entry["stopped"] = core.stop_server(proc)
    entry["stored"] = core.count_rows(db)
    shutil.rmtree(rundir, ignore_errors=True)
    warnings = [line for line in log_path.read_text(errors="replace").splitlines() if "warning" in line or "error" in line]
    if warnings:
        entry["server_warnings"] = len(warnings)
        entry["server_warning_sample"] = warnings[:5]
    return entry


def verdicts(plain: dict | None, dialogues: dict) -> list[dict]:
    closed = dialogues.get("closed_loop", {})
    opened = dialogues.get("open_loop", {})
    b1 = core.figure(plain) if plain else None
    b1_cpu = core.figure_per_cpu(plain) if plain else None
    mo = closed.get("mo_per_s")
    ratio = mo / b1 if mo and b1 else None
    cpu_ratio = closed.get("mo_per_server_cpu_s") / b1_cpu if closed.get("mo_per_server_cpu_s") and b1_cpu else None
    p99 = (opened.get("latency") or {}).get("p99_ms")
    failures = dialogues.get("failures_total")
    checks = [
        {"target": "dialogue-mix MO/s >= 50% of plain MO/s (b1)", "value": _r(ratio, 3), "need": f">= {TARGET_RATIO}",
         "per_server_cpu_second": _r(cpu_ratio, 3), "verdict": _verdict(ratio, lambda v: v >= TARGET_RATIO)},
        {"target": "p99 MO->reply < 20 ms at half the maximum rate", "value": p99, "need": f"< {TARGET_P99_MS} ms",
         "verdict": _verdict(p99, lambda v: v < TARGET_P99_MS)},
        {"target": "every dialogue checked and passed", "value": failures, "need": "0 failures",
         "verdict": _verdict(failures, lambda v: v == 0)},
    ]  # fmt: skip
    return checks


def _verdict(value, ok) -> str:
    return "n/a" if value is None else ("PASS" if ok(value) else "MISS")


def print_summary(plain: dict | None, dialogues: dict, checks: list[dict]) -> None:
    closed, opened = dialogues.get("closed_loop", {}), dialogues.get("open_loop", {})
    print("\n=== dialogue benchmark ===")
    rows = []
    if plain and core.figure(plain) is not None:
        d = plain["driver"]
        rows.append(("plain MO (b1: accept+commit+park)", f"{core.figure(plain):.0f} MO/s", "", "",
                     f"server CPU {d.get('server_cpu_pct') or 0:.0f}%, {core.figure_per_cpu(plain) or 0:.0f} per server CPU-s"))  # fmt: skip
    elif plain:
        rows.append(("plain MO (b1)", plain.get("error") or plain.get("skipped") or "-", "", "", ""))
    if closed:
        lat = closed["latency"]
        rows.append((f"dialogue mix, closed loop (C={dialogues['options']['concurrency']})",
                     f"{closed['dialogues_per_s']} dlg/s = {closed['mo_per_s']} MO/s", f"p50 {lat['p50_ms']} ms", f"p99 {lat['p99_ms']} ms",
                     f"server CPU {closed.get('server_cpu_pct', 0):.0f}%, {closed.get('mo_per_server_cpu_s', 0):.0f} MO per server CPU-s"))  # fmt: skip
    if opened:
        lat = opened["latency"]
        rows.append((f"open loop at {opened['target_dialogues_per_s']} dlg/s",
                     f"{opened['dialogues_per_s']} dlg/s = {opened['mo_per_s']} MO/s", f"p50 {lat['p50_ms']} ms", f"p99 {lat['p99_ms']} ms",
                     f"server CPU {opened.get('server_cpu_pct', 0):.0f}%"))  # fmt: skip
    for row in rows:
        print(f"  {row[0]:<44} {row[1]:<30} {row[2]:<16} {row[3]:<16} {row[4]}")
    print(f"\n  failures: {dialogues.get('failures_total')} by kind {dialogues.get('failures_by_kind')}")
    for reason, n in list((dialogues.get("failures") or {}).items())[:10]:
        print(f"    {n:>6}  {reason}")
    for sample in (dialogues.get("failure_samples") or [])[:1]:
        print(f"    e.g. {sample['kind']} {sample['msisdn']} at {sample['step']}: {sample['error']}")
        for line in sample["transcript"]:
            print(f"         {line[:150]}")
    checks_ = dialogues.get("checks", {})
    print(f"  SP notices {checks_.get('sp_notices')} for successful orders/unsubscriptions {checks_.get('sp_notices_expected')};"
          f" surveys received and left unanswered by order/query subscribers: {checks_.get('surveys_ignored')}")
    if dialogues.get("stored"):
        print(f"  stored messages by status (after stop): {dialogues['stored']}")
    breakdown = dialogues.get("profile_breakdown") or {}
    if breakdown:
        print(f"\n  gateway profile during the closed loop ({dialogues.get('profile_file')}; more in the JSON)")
        print(f"  main thread by area ({breakdown['main_thread_samples']} samples):")
        for area, pct in breakdown["main_thread_by_area_pct"].items():
            print(f"    {pct:5.1f}%  {area}")
        print("  main thread, innermost frames:")
        for fn, pct in breakdown["main_thread_self_top_pct"][:12]:
            print(f"    {pct:5.1f}%  {fn}")
        print(f"  SQLite threads (samples): {breakdown['sqlite_threads_samples']}")
    print("\n=== targets (issue 3) ===")
    for c in checks:
        extra = f"   (per server CPU-second: {c['per_server_cpu_second']})" if c.get("per_server_cpu_second") else ""
        print(f"  {c['verdict']:<4} {c['target']:<48} {c['value']} (need {c['need']}){extra}")


def parse_mix(text: str) -> dict[str, float]:
    mix = {k: 0.0 for k in KINDS}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in mix:
            raise argparse.ArgumentTypeError(f"unknown dialogue {name!r}; choose from {', '.join(KINDS)}")
        mix[name] = float(weight or 1)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("the mix is empty")
    return mix


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Dialogue-mix benchmark (see bench/README.md)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured interval of each loop and of b1 (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up before measuring (default 2; open loop at most 1)")
    p.add_argument("--subscribers", type=int, default=2000, help="simulated subscribers (default 2000)")
    p.add_argument("--binds", type=int, default=4, help="transceiver binds they share (default 4)")
    p.add_argument("--window", type=int, default=100, help="outstanding submit_sm per bind (default 100)")
    p.add_argument("--concurrency", type=int, default=32, help="closed loop: dialogues in flight (default 32)")
    p.add_argument("--mix", type=parse_mix, default=parse_mix("query=1,order=1,spam=1,rating=1"),
                   help="dialogue weights (default query=1,order=1,spam=1,rating=1)")
    p.add_argument("--open-fraction", type=float, default=0.5, help="open loop rate as a share of the closed-loop maximum (default 0.5)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a dialogue waits for each reply (default 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-plain", action="store_true", help="do not run b1 (the plain MO figure)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers to core 0 and this process to core 1")
    p.add_argument("--profile", nargs="?", const="python", choices=["python", "native"],
                   help="py-spy the gateway during the closed loop and print its hot spots; 'native' also sees C code"
                        " (SQLite, the event loop) but pauses the gateway to sample it (lower figures)")
    p.add_argument("--json", default=str(RESULTS / "dialogues.json"), help="where to write the results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, core._terminate)
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {core.DRIVER_CORE})
    mix = ",".join(f"{k}={v:g}" for k, v in args.mix.items() if v)
    print(f"smsgw dialogue benchmark: {args.seconds:g} s measured after {args.warmup:g} s warm-up; {args.subscribers} subscribers"
          f" on {args.binds} binds; closed loop C={args.concurrency}, then open loop at {args.open_fraction:g} of its rate;"
          f" mix {mix}; {'servers on core 0, this process on core 1' if pin else 'no CPU pinning'}", flush=True)
    machine = core.machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="smsgw-dialogues-"))
    plain: dict | None = None
    dialogues: dict = {}
    interrupted = False
    started = time.monotonic()
    try:
        if not args.skip_plain:
            print(f"\n{core.TITLES['b1']}", flush=True)
            core_args = core.parse_args(["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--only", "b1"])
            plain = core.run_and_report("b1", core_args, pin, workdir)
        print("\n(d)  gateway: the dialogue mix over the full path", flush=True)
        try:
            dialogues = run_dialogues(args, pin, workdir)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - report it with what we have
            dialogues = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  ERROR: {dialogues['error']}")
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; stopping servers", file=sys.stderr)
    finally:
        core.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    checks = verdicts(plain, dialogues)
    print_summary(plain, dialogues, checks)
    closed, opened = dialogues.get("closed_loop", {}), dialogues.get("open_loop", {})
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "pinned": pin,
        "interrupted": interrupted,
        "run_seconds": round(time.monotonic() - started, 1),
        "figures": {
            "plain_mo_per_s": core.figure(plain) if plain else None,
            "plain_mo_per_server_cpu_s": core.figure_per_cpu(plain) if plain else None,
            "dialogues_per_s": closed.get("dialogues_per_s"),
            "mix_mo_per_s": closed.get("mo_per_s"),
            "mix_mo_per_server_cpu_s": closed.get("mo_per_server_cpu_s"),
            "max_rate_latency_ms": {k: closed.get("latency", {}).get(k) for k in ("p50_ms", "p99_ms")},
            "half_rate_latency_ms": {k: opened.get("latency", {}).get(k) for k in ("p50_ms", "p99_ms")},
            "failures_by_kind": dialogues.get("failures_by_kind"),
        },
        "checks": checks,
        "plain": plain,
        "dialogues": dialogues,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False))
    print(f"\nwritten {out}")
    if interrupted:
        return 130
    return 0 if "error" not in dialogues and dialogues.get("failures_total") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
