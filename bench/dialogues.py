"""Dialogue benchmark: the fleet's dialogue mix through the gateway, the fleet's own ceiling, and plain MO.

    flock /tmp/smsgw-bench.lock .venv/bin/python bench/dialogues.py [--seconds 10] [--warmup 2]
        [--subscribers 2000] [--binds 4] [--concurrency auto|N] [--mix query=3,order=3,...] [--scenario FILE]
        [--open-fraction 0.5] [--ceiling-concurrency 32] [--skip-plain] [--skip-ceiling]
        [--profile] [--profile-fleet] [--pin] [--json bench/results/dialogues.json]

One load engine: the handset simulator's fleet (`simulator.fleet.Fleet`), which checks every dialogue.

1. Plain MO: bench/run.py's target b1 (its own functions, same defaults).
2. The gateway (`python -m gateway serve`, fresh SQLite db, 127.0.0.1, log level warning) with a
   temporary config: config/default.toml with services.survey_sample_rate = 1.0 (every completed 10086
   dialogue is followed by a survey, so ratings occur) and spam thresholds / per-reporter limits high
   enough that the mix never blocks its own numbers. The fleet runs the scenario's behaviours by weight
   (default: simulator/scenarios/default.toml -- query, order, spam report, chatter, spammer rounds,
   help -- plus the reactions: surveys answered, spam reported):
   - closed loop: `--concurrency` dialogues in flight at full speed for --seconds after --warmup
     -> dialogues/s, MO/s (submit_sm accepted), MO -> reply latency p50/p99. `auto` (the default) looks
     for the maximum rate: 32 in flight, then twice as many until two steps in a row fall short of the
     best dialogues/s so far by 5% or more (at most 1024), each step on a fresh gateway and database;
     the fastest step is the closed loop reported, and the open loop runs on another fresh gateway.
     A fixed number of dialogues in flight measures a rate bound by the round trip (commit, reply, the
     handset's answer), not the gateway's maximum: 32 gave ~70% of it (bench/perf-log.md, session 11);
   - open loop at --open-fraction (0.5) of that dialogues/s -> p50/p99 latency there.
3. The fleet's ceiling: the same fleet, chatter only (A texts B, B must receive it), closed loop at
   --ceiling-concurrency against bench/loopback_server.py (answers every submit_sm and delivers it back
   to the bind that covers its destination; nothing else) -> dialogues/s, MO/s, the fleet's CPU per
   dialogue. Nothing is pinned unless --pin (servers and their children on core 0, this process,
   the fleet, on core 1): the gateway's SQLite writer is a child process that should have a core.
Targets: issue 3 -- dialogue-mix MO/s >= 50% of the plain MO figure; p99 MO -> reply < 20 ms at half the
maximum rate; issue 4 -- the fleet's ceiling >= 2x the gateway's rate at the default mix (MO/s and
dialogues/s). Every dialogue is checked; any failure fails the run (exit 1).
Results: bench/results/dialogues.json; server logs: bench/results/dialogues.log, loopback.log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import run as core  # bench/run.py: server start/stop, b1, profiling, machine info
from driver import (
    _machine_busy_seconds,
    _proc_cpu_seconds,
    _proc_rss_mb,
    _self_cpu_seconds,
)

from gateway.config import Config, load_config
from simulator.esme import run as run_loop
from simulator.fleet import Fleet
from simulator.metrics import Recorder
from simulator.scenario import DEFAULT_SCENARIO, Behaviours, Load, Scenario
from simulator.testing import make_scenario

RESULTS = core.RESULTS
TARGET_RATIO = 0.5  # issue 3: mix MO/s >= 50% of plain MO/s
TARGET_P99_MS = 20.0  # issue 3: p99 at half the maximum rate
TARGET_CEILING = 2.0  # issue 4: the fleet's ceiling >= 2x the gateway's rate at the mix
# --concurrency auto: 32, 64, ... until two steps in a row add less than 5% to the best dialogues/s (one is noise here)
SWEEP_START, SWEEP_MAX, SWEEP_GAIN, SWEEP_PATIENCE = 32, 1024, 1.05, 2
BEHAVIOURS = tuple(Behaviours().weights())  # query, order, spam, chatter, spammer, help
# Texts that arrived for nobody's dialogue and that no reaction explains (simulator.fleet's unasked kinds):
# each one is a failure here, as in issue 3's benchmark.
UNEXPECTED = ("other", "unrouted", "sp_other", "to_spammer")

# Keys of config/default.toml's [services] table changed for the benchmark.
BENCH_SERVICES = {
    "survey_sample_rate": "1.0",  # every completed 10086 dialogue is followed by a survey: ratings occur
    "spam_block_threshold": "1000000",  # the mix never blocks a number network-wide ...
    "spam_reports_per_day": "1000000",  # ... nor runs a reporter into the daily limit
}


def _r(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


# ------------------------------------------------------------------- scenarios
def bench_scenario(args: argparse.Namespace, port: int, *, ceiling: bool = False) -> Scenario:
    """The scenario file with the command line's fleet and weights; for the ceiling chatter only (no SP
    receivers: a loopback server sends no notices)."""
    weights = {name: {"weight": 1.0 if name == "chatter" else 0.0} for name in BEHAVIOURS} if ceiling else (
        {name: {"weight": args.mix.get(name, 0.0)} for name in BEHAVIOURS} if args.mix else {})  # fmt: skip
    fleet: dict[str, Any] = {"count": args.subscribers, "binds": args.binds, "window": args.window}
    if ceiling:
        fleet["sp_receivers"] = []
    return make_scenario(
        args.scenario, target={"host": "127.0.0.1", "port": port}, fleet=fleet, behaviours=weights,
        load={"timeout": args.timeout, "seed": args.seed, "duration": args.seconds, "count": 0},
        spammers={"count": args.spammers},
    )  # fmt: skip


def _sweep() -> Iterator[int]:
    concurrency = SWEEP_START
    while concurrency <= SWEEP_MAX:
        yield concurrency
        concurrency *= 2


def closed(scenario: Scenario, seconds: float, concurrency: int) -> Load:
    return dataclasses.replace(scenario.load, mode="closed", concurrency=concurrency, duration=seconds, count=0)


def opened(scenario: Scenario, seconds: float, rate: float) -> Load:
    return dataclasses.replace(scenario.load, mode="open", rate=rate, ramp_up=0.0, duration=seconds, count=0)


def bench_config(directory: Path) -> Path:
    """config/default.toml with BENCH_SERVICES set in [services]; checked by loading it."""
    text = (ROOT / "config" / "default.toml").read_text()
    for key, value in BENCH_SERVICES.items():
        text, n = re.subn(rf"^{key}\s*=\s*[^#\n]*", f"{key} = {value} ", text, flags=re.MULTILINE)
        if n != 1:
            raise SystemExit(f"config/default.toml: expected one '{key} =' line, found {n}")
    path = directory / "dialogues.toml"
    path.write_text(text)
    services = load_config(path).services
    assert services.survey_sample_rate == 1.0 and services.spam_block_threshold >= 1000000
    return path


# ---------------------------------------------------------------------- phases
class Run:
    """One fleet against one server: its phases (a fresh Recorder each), and every recorder kept for the
    failure counts (warm-ups included: every dialogue is checked, measured or not)."""

    def __init__(self, fleet: Fleet, server_pid: int | None) -> None:
        self.fleet = fleet
        self.server_pid = server_pid
        self.recorders: list[Recorder] = []

    def counters(self) -> dict[str, Any]:
        fleet, pid = self.fleet, self.server_pid
        senders = [*fleet.binds, *fleet.spammer_binds]
        return {
            "t": time.monotonic(),
            "mo": sum(e.stats.submit_ok for e in senders),  # submit_sm accepted (each part of a long text)
            "mt": sum(e.stats.messages for e in fleet.binds),  # whole texts received by subscribers
            "cpu": _self_cpu_seconds(),  # this process: the fleet
            "server": _proc_cpu_seconds(pid) if pid else None,
            "machine": _machine_busy_seconds(),
            "rss": _proc_rss_mb(pid) if pid else None,
        }

    async def phase(self, load: Load) -> tuple[dict[str, Any], dict[str, Any], Recorder]:
        """Run `load` with a fresh recorder; the counters before and after it."""
        recorder = Recorder()
        self.recorders.append(recorder)
        before = self.counters()
        await self.fleet.load(load, recorder=recorder)
        return before, self.counters(), recorder


def phase_report(name: str, before: dict, after: dict, recorder: Recorder, dialogues: int) -> dict[str, Any]:
    """Figures of one phase: `dialogues` ended inside it (read when it ended), rates over its interval, the
    latency of every step of the dialogues it recorded, CPU of the fleet / server / machine meanwhile."""
    interval = after["t"] - before["t"]
    summary = recorder.summary()
    lat = summary["latency_ms"]
    mo, mt = after["mo"] - before["mo"], after["mt"] - before["mt"]
    fleet_cpu = after["cpu"] - before["cpu"]
    out: dict[str, Any] = {
        "name": name,
        "interval_s": round(interval, 3),
        "dialogues": dialogues,
        "dialogues_per_s": round(dialogues / interval, 1),
        "mo_per_s": round(mo / interval, 1),
        "mt_texts_per_s": round(mt / interval, 1),
        "by_kind": {kind: sum(n for o, n in outcomes.items() if o != "failed") for kind, outcomes in summary["outcomes"].items()},
        "by_outcome": summary["outcomes"],
        "latency": {
            "count": recorder.latency.get_total_count(), "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"],
            "p999_ms": lat["p99.9"], "max_ms": lat["max"], "mean_ms": lat["mean"],
        },
        "latency_by_kind": {k: {"p50_ms": v["p50"], "p99_ms": v["p99"]} for k, v in summary["latency_ms_by_kind"].items()},
        # Does the rate hold over the run; is the tail spread over it or a few seconds' stalls?
        "completed_per_second": [s["completed"] for s in summary.get("timeline", [])],
        "p99_ms_per_second": [s["p99_ms"] for s in summary.get("timeline", [])],
        "simulator_cpu_pct": round(100.0 * fleet_cpu / interval, 1),
        "fleet_cpu_us_per_dialogue": round(1e6 * fleet_cpu / dialogues, 1) if dialogues else None,
        "fleet_cpu_us_per_mo": round(1e6 * fleet_cpu / mo, 1) if mo else None,
        "dialogues_per_fleet_cpu_s": round(dialogues / fleet_cpu, 1) if fleet_cpu > 0 else None,
        "mo_per_fleet_cpu_s": round(mo / fleet_cpu, 1) if fleet_cpu > 0 else None,
    }  # fmt: skip
    if before["server"] is not None and after["server"] is not None:
        server_cpu = after["server"] - before["server"]
        out["server_cpu_pct"] = round(100.0 * server_cpu / interval, 1)
        if mo:  # the firm figure once the fleet is the limit: what each MO of the mix costs the gateway
            out["server_cpu_us_per_mo"] = round(1e6 * server_cpu / mo, 1)
        if server_cpu > 0:
            out["mo_per_server_cpu_s"] = round(mo / server_cpu, 1)
            out["dialogues_per_server_cpu_s"] = round(dialogues / server_cpu, 1)
    if before["machine"] is not None and after["machine"] is not None:
        machine = 100.0 * (after["machine"] - before["machine"]) / interval
        out["machine_cpu_pct"] = round(machine, 1)
        if "server_cpu_pct" in out:  # everything else running on the machine meanwhile
            out["other_load_pct"] = round(max(0.0, machine - out["server_cpu_pct"] - out["simulator_cpu_pct"]), 1)
    if before["rss"] is not None:
        out["server_rss_mb"] = (before["rss"], after["rss"])
    return out


def checked(run: Run) -> dict[str, Any]:
    """Every dialogue of every phase: failures by kind, step and reason (transcripts of the first), texts that
    arrived for no dialogue, the fleet's own counters, the SP notices against the orders and unsubscriptions."""
    fleet = run.fleet
    by_kind: Counter = Counter()
    by_step: Counter = Counter()
    reasons: Counter = Counter()
    samples: list[dict] = []
    totals: Counter = Counter()
    unasked: Counter = Counter()
    for recorder in run.recorders:
        for (kind, outcome), n in recorder.outcomes.items():
            totals[f"{kind}:{outcome}"] += n
            if outcome == "failed":
                by_kind[kind] += n
        for (kind, step), n in recorder.failures_by_step.items():
            by_step[f"{kind} | {step}"] += n
        for failure in recorder.failures:
            reasons[f"{failure.kind} | {failure.step} | {re.sub(r'[0-9]{5,}', 'N', failure.error)[:160]}"] += 1
            if len(samples) < 20:
                samples.append(failure.as_dict())
        unasked.update(recorder.unsolicited)
    unexpected = sum(unasked[k] for k in UNEXPECTED)
    if unexpected:
        by_kind["unexpected"] += unexpected
        by_step["unexpected | -"] += unexpected
        reasons[f"unexpected | - | texts nobody was waiting for, e.g. {(fleet.unasked_samples or ['?'])[0][:120]}"] += unexpected
    summary = fleet.summary()["fleet"]
    if summary["stopped"] not in ("load done", "duration reached", "count reached"):  # stalled, or every subscriber retired
        by_kind["run"] += 1
        reasons[f"run | - | the fleet stopped early: {summary['stopped']}"] += 1
    return {
        "failures_total": sum(by_kind.values()),
        "failures_by_kind": dict(by_kind.most_common()),
        "failures_by_step": dict(by_step.most_common()),
        "failures": dict(reasons.most_common()),
        "failure_samples": samples,
        "totals": dict(sorted(totals.items())),
        "unsolicited": dict(sorted(unasked.items())),
        "unasked_samples": fleet.unasked_samples[:10],
        "retired_subscribers": summary["retired_subscribers"],
        "fleet_stats": summary["stats"],
        "fleet_stopped": summary["stopped"],
        "checks": {
            "sp_notices": summary["sp_notices"],
            "sp_notices_expected": {f"{e} {s}": n for (e, s), n in sorted(fleet.notices_expected.items()) if n},
            "surveys_ignored": fleet.stats["survey_ignored"],
        },
    }


def esme_stats(fleet: Fleet) -> dict[str, Any]:
    binds = [*fleet.binds, *fleet.spammer_binds, *(esme for _sp, esme in fleet.sp_binds)]
    failed: Counter = Counter()
    for e in binds:
        failed.update(e.stats.submit_failed)
    return {
        "submitted": sum(e.stats.submitted for e in binds),
        "accepted": sum(e.stats.submit_ok for e in binds),
        "refused": dict(failed),
        "deliver_sm": sum(e.stats.deliver_sm for e in binds),
        "texts": sum(e.stats.messages for e in binds),
        "response_timeouts": sum(e.stats.timeouts for e in binds),
        "rejected_by_session": sum(e.stats.rejected for e in binds),
        "writes": sum(e.stats.writes for e in binds),
        "connections_lost": [e.close_reason for e in binds if e.is_closed],
    }


# ---------------------------------------------------------------- the fleet runs
@dataclasses.dataclass(frozen=True)
class MixPlan:
    """What one gateway of the mix runs: a closed loop at `concurrency` dialogues in flight, then (open_after) an
    open loop at --open-rate, else at --open-fraction of `max_rate` (default: this closed loop's dialogues/s)."""

    concurrency: int
    open_after: bool = True
    max_rate: float | None = None


async def gateway_mix(args: argparse.Namespace, scenario: Scenario, config: Config, server_pid: int, plan: MixPlan) -> dict[str, Any]:
    """One gateway's share of the mix (`plan`); every dialogue checked."""
    fleet = Fleet(scenario, config=config)
    run = Run(fleet, server_pid)
    report: dict[str, Any] = {}
    profiler = None
    await fleet.connect()
    try:
        target = None
        if args.warmup > 0:
            await run.phase(closed(scenario, args.warmup, plan.concurrency))
        if args.profile and args.profile_phase == "closed":
            profiler = core.start_profiler("dialogues", server_pid, args.seconds, native=args.profile == "native")
        before, after, recorder = await run.phase(closed(scenario, args.seconds, plan.concurrency))
        dialogues = recorder.completed + recorder.failed
        report["closed_loop"] = loop = phase_report(f"closed loop C={plan.concurrency}", before, after, recorder, dialogues)
        # What the fleet started itself (the rest are reactions: surveys answered, spam reported).
        initiated = fleet._started / max(1, recorder.started_count)
        if profiler is not None:
            entry: dict = {}
            core.finish_profiler(profiler, entry)
            profiler = None
            report["profile"] = entry.get("profile", {})
            report["profile_file"] = entry.get("profile_file")
            if entry.get("profile_file"):
                report["profile_breakdown"] = profile_breakdown(ROOT / entry["profile_file"])
        if plan.open_after:
            print_phase(loop)
            target = args.open_rate or (plan.max_rate or loop["dialogues_per_s"] or 0) * args.open_fraction
        if target:
            load = opened(scenario, args.seconds, target * initiated)  # reactions come on top of the offered rate
            if args.warmup > 0:
                await run.phase(dataclasses.replace(load, duration=args.warmup))  # warm-up: the closed loop's aftermath (WAL checkpoints) settles
            if args.profile and args.profile_phase == "open":
                profiler = core.start_profiler("dialogues", server_pid, args.seconds, native=args.profile == "native")
            before, after, recorder = await run.phase(load)
            dialogues = recorder.completed + recorder.failed
            await fleet.drain()  # the open loop's last dialogues end: their latency counts
            report["open_loop"] = {
                "target_dialogues_per_s": round(target, 1), "offered_starts_per_s": round(load.rate, 1),
                **phase_report(f"open loop at {target:.0f} dialogues/s", before, after, recorder, dialogues),
            }  # fmt: skip
            if profiler is not None:
                entry = {}
                core.finish_profiler(profiler, entry)
                profiler = None
                report["profile"] = entry.get("profile", {})
                report["profile_file"] = entry.get("profile_file")
            print_phase(report["open_loop"])
        else:
            await fleet.drain()
        await fleet.settle()
        report["esme"] = esme_stats(fleet)  # before unbinding: a closed bind here is one the server closed
    finally:
        if profiler is not None:
            core.finish_profiler(profiler, {})
        await fleet.close()
    report.update(checked(run))
    return report


def run_mix(args: argparse.Namespace, pin: bool, workdir: Path) -> dict:
    """The mix: at a fixed --concurrency on one gateway; with `auto`, each step of the search for the maximum
    rate on a fresh gateway (state left by one step would slow the next), then the open loop on another, after
    a closed loop at the best step's concurrency (the state the open loop meets, and the share of its
    dialogues that the fleet starts, as with a fixed --concurrency)."""
    if args.concurrency:
        return run_dialogues(args, pin, workdir, MixPlan(args.concurrency))
    steps: list[dict] = []
    best: dict | None = None
    short = 0  # steps in a row that did not raise the best by SWEEP_GAIN
    for concurrency in _sweep():
        entry = run_dialogues(args, pin, workdir, MixPlan(concurrency, open_after=False))
        steps.append(entry)
        if "closed_loop" not in entry or entry.get("failures_total"):
            break  # reported with the rest below: no search goes on past a broken step
        rate = entry["closed_loop"]["dialogues_per_s"]
        print_step(entry["closed_loop"])
        short = 0 if best is None or rate >= best["closed_loop"]["dialogues_per_s"] * SWEEP_GAIN else short + 1
        if best is None or rate > best["closed_loop"]["dialogues_per_s"]:
            best = entry
        if short >= SWEEP_PATIENCE:
            break
    if best is None:
        return steps[-1]
    loop = best["closed_loop"]
    final = best
    if (args.open_rate or args.open_fraction > 0) and loop["dialogues_per_s"]:
        final = run_dialogues(args, pin, workdir, MixPlan(best["plan"]["concurrency"], max_rate=loop["dialogues_per_s"]))
        steps.append(final)
    else:
        print_phase(loop)
    merged = dict(final)
    merged["closed_loop"] = loop
    merged["closed_loop_sweep"] = [e["closed_loop"] for e in steps if "closed_loop" in e]  # the last: before the open loop
    merged["options"] = {**final.get("options", {}), "concurrency": f"auto: {loop['name']}"}
    merged["runs"] = [{"plan": e.get("plan"), "failures_total": e.get("failures_total"), "stored": e.get("stored"),
                       "server_warnings": e.get("server_warnings", 0), "error": e.get("error")} for e in steps]  # fmt: skip
    # A failure anywhere fails the run.
    merged["failures_total"] = sum(e.get("failures_total") or 0 for e in steps) + sum("error" in e for e in steps)
    for key in ("failures_by_kind", "failures_by_step", "failures"):
        merged[key] = dict(sum((Counter(e.get(key) or {}) for e in steps), Counter()).most_common())
    merged["failure_samples"] = [f for e in steps for f in e.get("failure_samples") or []][:20]
    return merged


async def fleet_ceiling(args: argparse.Namespace, scenario: Scenario, server_pid: int) -> dict[str, Any]:
    """Chatter only against the loopback server, closed loop at --ceiling-concurrency: the fleet's own speed."""
    fleet = Fleet(scenario)
    run = Run(fleet, server_pid)
    report: dict[str, Any] = {}
    profiler = None
    await fleet.connect()
    try:
        if args.warmup > 0:
            await run.phase(closed(scenario, args.warmup, args.ceiling_concurrency))  # warm-up
        if args.profile_fleet:
            profiler = core.start_profiler("fleet", os.getpid(), args.seconds, native=args.profile_fleet == "native")
            if profiler is not None and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 1:
                try:  # py-spy beside the loopback server, not on the fleet's core
                    os.sched_setaffinity(profiler[0].pid, {core.SERVER_CORE})
                except OSError:
                    pass
        before, after, recorder = await run.phase(closed(scenario, args.seconds, args.ceiling_concurrency))
        report["closed_loop"] = phase_report(f"chatter, closed loop C={args.ceiling_concurrency}", before, after, recorder,
                                             recorder.completed + recorder.failed)  # fmt: skip
        if profiler is not None:
            core.finish_profiler(profiler, {})
            profiler = None
            path = RESULTS / "profile-fleet.txt"
            if path.exists():
                report["profile_file"] = str(path.relative_to(ROOT))
                report["profile_breakdown"] = fleet_profile_breakdown(path)
        print_phase(report["closed_loop"])
        await fleet.drain()
        await fleet.settle()
        report["esme"] = esme_stats(fleet)
    finally:
        if profiler is not None:
            core.finish_profiler(profiler, {})
        await fleet.close()
    report.update(checked(run))
    return report


def run_dialogues(args: argparse.Namespace, pin: bool, workdir: Path, plan: MixPlan) -> dict:
    """A gateway with the bench config (fresh database), the fleet's mix against it as `plan` says."""
    rundir = Path(tempfile.mkdtemp(prefix="dialogues-", dir=workdir))
    config_path = bench_config(rundir)
    port = core.free_port()
    db = rundir / "dialogues.db"
    argv = [
        core.python(), "-m", "gateway", "serve", "--config", str(config_path), "--db", str(db),
        "--smpp-port", str(port), "--http-port", str(core.free_port()), "--host", "127.0.0.1", "--log-level", "warning",
    ]  # fmt: skip
    scenario = bench_scenario(args, port)
    proc, log_path = core.start_server("dialogues", argv, pin, cwd=ROOT)
    entry: dict = {"server": " ".join(argv), "config_changes": BENCH_SERVICES, "log": str(log_path.relative_to(ROOT)),
                   "options": options(args, scenario, plan.concurrency), "plan": dataclasses.asdict(plan)}  # fmt: skip
    try:
        entry["ready_after_s"] = round(core.wait_ready(proc, port, log_path), 3)
        entry.update(run_loop(gateway_mix(args, scenario, load_config(config_path), proc.pid, plan)))
    finally:
        entry["stopped"] = core.stop_server(proc)
    entry["stored"] = core.count_rows(db)
    shutil.rmtree(rundir, ignore_errors=True)
    warnings = [line for line in log_path.read_text(errors="replace").splitlines() if "warning" in line or "error" in line]
    if warnings:
        entry["server_warnings"] = len(warnings)
        entry["server_warning_sample"] = warnings[:5]
    return entry


def run_ceiling(args: argparse.Namespace, pin: bool) -> dict:
    """bench/loopback_server.py on the server core, the fleet (chatter only) here."""
    port = core.free_port()
    argv = [core.python(), str(BENCH / "loopback_server.py"), "--host", "127.0.0.1", "--port", str(port)]
    scenario = bench_scenario(args, port, ceiling=True)
    proc, log_path = core.start_server("loopback", argv, pin, cwd=ROOT)
    entry: dict = {"server": " ".join(argv), "log": str(log_path.relative_to(ROOT)),
                   "options": options(args, scenario, args.ceiling_concurrency)}  # fmt: skip
    try:
        entry["ready_after_s"] = round(core.wait_ready(proc, port, log_path), 3)
        entry.update(run_loop(fleet_ceiling(args, scenario, proc.pid)))
    finally:
        entry["stopped"] = core.stop_server(proc)
    stats = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith("STATS ")]
    if stats:
        entry["server_counters"] = json.loads(stats[-1][6:])
    return entry


def options(args: argparse.Namespace, scenario: Scenario, concurrency: int) -> dict[str, Any]:
    return {
        "scenario": scenario.source, "subscribers": scenario.fleet.count, "binds": scenario.fleet.binds,
        "window": scenario.fleet.window, "concurrency": concurrency, "seconds": args.seconds, "warmup": args.warmup,
        "timeout": scenario.load.timeout, "seed": scenario.load.seed, "open_fraction": args.open_fraction,
        "weights": {k: v for k, v in scenario.behaviours.weights().items() if v},
    }  # fmt: skip


# ---------------------------------------------------------------- profiles
# Where a py-spy sample of the fleet was, by the file of its innermost frame.
_FLEET_AREAS = (
    ("asyncio/runners.py", "event loop in C (uvloop: socket reads/writes, callbacks' dispatch)"),
    ("simulator/esme.py", "SMPP client: window, futures, reassembly (simulator/esme.py)"),
    ("gateway/smpp/", "codec, session, segments, text (gateway/smpp/)"),
    ("simulator/metrics.py", "recording: histograms, timeline (simulator/metrics.py)"),
    ("hdrh/", "recording: HdrHistogram (hdrh)"),
    ("simulator/fleet.py", "fleet: picking behaviours and subscribers, arrivals (simulator/fleet.py)"),
    ("simulator/", "dialogues: behaviours, handsets, checks (simulator/)"),
    ("asyncio/", "asyncio in Python: tasks, futures, wait_for, timers"),
    ("", "other Python"),
)


def fleet_profile_breakdown(path: Path) -> dict:
    """py-spy raw stacks of this process (the fleet) -> its main thread by area, innermost and inclusive frames."""
    areas: Counter = Counter()
    self_top: Counter = Counter()
    inclusive: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("Thread._bootstrap"):
            continue
        n = int(count)
        where = frames[-1].rpartition("(")[2]
        areas[next(name for marker, name in _FLEET_AREAS if marker in where)] += n
        self_top[_short(frames[-1])] += n
        for frame in {_short(f) for f in frames}:
            if "simulator/" in frame or "gateway/" in frame:
                inclusive[frame] += n
    total = sum(areas.values())
    pct = lambda n: round(100.0 * n / total, 1)
    return {
        "samples": total,
        "by_area_pct": {k: pct(v) for k, v in areas.most_common()} if total else {},
        "self_top_pct": [(f, pct(n)) for f, n in self_top.most_common(20)] if total else [],
        "inclusive_top_pct": [(f, pct(n)) for f, n in inclusive.most_common(20)] if total else [],
    }


# Where a py-spy sample of the gateway was, by the file of its innermost frame (main thread).
_AREAS = (
    ("asyncio/runners.py", "event loop in C (uvloop: socket I/O, thread wake-ups, polling; idle waits too)"),
    ("gateway/store/writer", "store: handing batches to the writer process and back"),
    ("gateway/store/", "store: SQL building, rows <-> records, the record cache (gateway/store/)"),
    ("handlers/", "service handlers (handlers/)"),
    ("gateway/smpp/", "SMPP codec, session, text, segments (gateway/smpp/)"),
    ("gateway/", "gateway plumbing: server, intake, mo, delivery, outbox, services (gateway/)"),
    ("", "other Python: asyncio, dataclasses, logging, ..."),
)


def profile_breakdown(path: Path) -> dict:
    """py-spy raw stacks of the gateway process -> the main thread's time by area.

    (The SQLite writer is a child process that py-spy does not follow; the
    server CPU figures, which sum the process tree, include it.)
    """
    main: Counter = Counter()
    frames_self: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("Thread._bootstrap"):
            continue  # another thread of the gateway (none does service work)
        where = frames[-1].rpartition("(")[2]
        main[next(name for marker, name in _AREAS if marker in where)] += int(count)
        frames_self[core._short_frame(frames[-1])] += int(count)
    total = sum(main.values())
    return {
        "main_thread_samples": total,
        "main_thread_by_area_pct": {k: round(100.0 * v / total, 1) for k, v in main.most_common()} if total else {},
        "main_thread_self_top_pct": [(f, round(100.0 * n / total, 1)) for f, n in frames_self.most_common(20)] if total else [],
    }


def _short(frame: str) -> str:
    """core._short_frame, which also shortens simulator/ paths."""
    name, _, where = frame.partition(" (")
    i = where.find("/simulator/")
    return f"{name} ({where[i + 1:].rsplit(':', 1)[0]})" if i >= 0 else core._short_frame(frame)


# ------------------------------------------------------------------ verdicts
def verdicts(plain: dict | None, dialogues: dict, ceiling: dict | None) -> list[dict]:
    mix = dialogues.get("closed_loop", {})
    half = dialogues.get("open_loop", {})
    top = (ceiling or {}).get("closed_loop", {})
    b1 = core.figure(plain) if plain else None
    b1_cpu = core.figure_per_cpu(plain) if plain else None

    def ratio(a, b):
        return a / b if a and b else None

    mo_ratio = ratio(mix.get("mo_per_s"), b1)
    mo_cpu_ratio = ratio(mix.get("mo_per_server_cpu_s"), b1_cpu)
    p99 = (half.get("latency") or {}).get("p99_ms")
    failures = dialogues.get("failures_total")
    checks = [
        {"issue": 3, "target": "dialogue-mix MO/s >= 50% of plain MO/s (b1)", "value": _r(mo_ratio, 3), "need": f">= {TARGET_RATIO}",
         "per_cpu_second": _r(mo_cpu_ratio, 3), "verdict": _verdict(mo_ratio, lambda v: v >= TARGET_RATIO)},
        {"issue": 3, "target": "p99 MO->reply < 20 ms at half the maximum rate", "value": p99, "need": f"< {TARGET_P99_MS} ms",
         "verdict": _verdict(p99, lambda v: v < TARGET_P99_MS)},
        {"issue": 3, "target": "every mix dialogue checked and passed", "value": failures, "need": "0 failures",
         "verdict": _verdict(failures, lambda v: v == 0)},
    ]  # fmt: skip
    if ceiling is not None:
        # Like with like: MO/s the fleet sustains at its ceiling vs MO/s the gateway sustains in the mix, and the
        # same for dialogues/s; per CPU-second: the fleet's figure per second of its own CPU against the
        # gateway's per second of the gateway's CPU (each process alone on its core).
        for unit, key, cpu_fleet, cpu_gateway in (
            ("MO/s", "mo_per_s", "mo_per_fleet_cpu_s", "mo_per_server_cpu_s"),
            ("dialogues/s", "dialogues_per_s", "dialogues_per_fleet_cpu_s", "dialogues_per_server_cpu_s"),
        ):
            value = ratio(top.get(key), mix.get(key))
            checks.append({
                "issue": 4, "target": f"fleet ceiling {unit} >= 2x the gateway's mix {unit}", "value": _r(value, 2),
                "need": f">= {TARGET_CEILING}", "per_cpu_second": _r(ratio(top.get(cpu_fleet), mix.get(cpu_gateway)), 2),
                "verdict": _verdict(value, lambda v: v >= TARGET_CEILING),
            })  # fmt: skip
        checks.append({"issue": 4, "target": "every ceiling (chatter) dialogue passed", "value": ceiling.get("failures_total"),
                       "need": "0 failures", "verdict": _verdict(ceiling.get("failures_total"), lambda v: v == 0)})  # fmt: skip
    return checks


def _verdict(value, ok) -> str:
    return "n/a" if value is None else ("PASS" if ok(value) else "MISS")


# ------------------------------------------------------------------- printing
def print_step(r: dict) -> None:
    """One line per step of the search for the maximum rate."""
    lat = r["latency"]
    print(f"  {r['name']}: {r['dialogues_per_s']} dialogues/s, {r['mo_per_s']} MO/s, p50 {lat['p50_ms']} ms,"
          f" p99 {lat['p99_ms']} ms, server CPU {r.get('server_cpu_pct', 0):.0f}% = {r.get('server_cpu_us_per_mo')} us per MO",
          flush=True)


def print_phase(r: dict) -> None:
    lat = r["latency"]
    cpu = f"fleet CPU {r['simulator_cpu_pct']:.0f}% ({r['fleet_cpu_us_per_dialogue']} us per dialogue)"
    if "server_cpu_pct" in r:
        cpu += f", server CPU {r['server_cpu_pct']:.0f}%"
    if "server_cpu_us_per_mo" in r:
        cpu += f" = {r['server_cpu_us_per_mo']} us per MO"
    if "other_load_pct" in r:
        cpu += f", other load {r['other_load_pct']:.0f}%"
    print(f"\n  {r['name']}: {r['dialogues_per_s']} dialogues/s, {r['mo_per_s']} MO/s, {r['mt_texts_per_s']} texts received/s"
          f" ({r['dialogues']} dialogues in {r['interval_s']} s; {cpu})")
    print(f"    MO->reply latency ms: p50 {lat['p50_ms']}  p90 {lat['p90_ms']}  p99 {lat['p99_ms']}  max {lat['max_ms']}"
          f"  ({lat['count']} replies)")
    if r.get("other_load_pct", 0) > 25:
        print(f"    note: other processes used ~{r['other_load_pct']:.0f}% of a core meanwhile; figures are disturbed")
    for kind, outcomes in r["by_outcome"].items():
        by_kind = r["latency_by_kind"].get(kind, {})
        print(f"      {kind:<8} p50 {by_kind.get('p50_ms', '-'):>7} p99 {by_kind.get('p99_ms', '-'):>7} ms  "
              + ", ".join(f"{o} {n}" for o, n in outcomes.items()))


def print_failures(title: str, run: dict) -> None:
    print(f"\n  {title} failures: {run.get('failures_total')} by kind {run.get('failures_by_kind')}"
          + (f"; retired subscribers {run['retired_subscribers']}" if run.get("retired_subscribers") else ""))
    for reason, n in list((run.get("failures") or {}).items())[:10]:
        print(f"    {n:>6}  {reason}")
    for sample in (run.get("failure_samples") or [])[:1]:
        print(f"    e.g. {sample['kind']} {sample['msisdn']} at {sample['step']}: {sample['error']}")
        for t in sample["transcript"][:12]:
            print(f"         {t['t']:+.4f}s {t['dir']} {t['peer']}: {t['text'][:120]}")
    if run.get("fleet_stopped") not in (None, "load done", "duration reached"):
        print(f"    the fleet stopped early: {run['fleet_stopped']}")


def print_summary(plain: dict | None, dialogues: dict, ceiling: dict | None, checks: list[dict]) -> None:
    mix, half = dialogues.get("closed_loop", {}), dialogues.get("open_loop", {})
    top = (ceiling or {}).get("closed_loop", {})
    print("\n=== dialogue benchmark ===")
    rows = []
    if plain and core.figure(plain) is not None:
        d = plain["driver"]
        rows.append(("plain MO (b1: accept+commit+park)", f"{core.figure(plain):.0f} MO/s", "", "",
                     f"server CPU {d.get('server_cpu_pct') or 0:.0f}%, {core.figure_per_cpu(plain) or 0:.0f} MO per server CPU-s"))  # fmt: skip
    elif plain:
        rows.append(("plain MO (b1)", plain.get("error") or plain.get("skipped") or "-", "", "", ""))
    if mix:
        lat = mix["latency"]
        rows.append((f"gateway, fleet mix, {mix['name']}",
                     f"{mix['dialogues_per_s']} dlg/s = {mix['mo_per_s']} MO/s", f"p50 {lat['p50_ms']} ms", f"p99 {lat['p99_ms']} ms",
                     (f"server CPU {mix.get('server_cpu_pct', 0):.0f}% ({mix.get('server_cpu_us_per_mo', 0)} us/MO): "
                      f"{mix.get('dialogues_per_server_cpu_s', 0):.0f} dlg, "
                      f"{mix.get('mo_per_server_cpu_s', 0):.0f} MO per server CPU-s; fleet CPU {mix['simulator_cpu_pct']:.0f}%")))  # fmt: skip
    elif dialogues.get("error"):
        rows.append(("gateway, fleet mix", f"ERROR {dialogues['error'][:60]}", "", "", ""))
    if half:
        lat = half["latency"]
        rows.append((f"gateway, open loop at {half['target_dialogues_per_s']} dlg/s",
                     f"{half['dialogues_per_s']} dlg/s = {half['mo_per_s']} MO/s", f"p50 {lat['p50_ms']} ms", f"p99 {lat['p99_ms']} ms",
                     f"server CPU {half.get('server_cpu_pct', 0):.0f}%"))  # fmt: skip
    if top:
        lat = top["latency"]
        rows.append((f"fleet ceiling: chatter vs loopback (C={ceiling['options']['concurrency']})",
                     f"{top['dialogues_per_s']} dlg/s = {top['mo_per_s']} MO/s", f"p50 {lat['p50_ms']} ms", f"p99 {lat['p99_ms']} ms",
                     (f"fleet CPU {top['simulator_cpu_pct']:.0f}%: {top['fleet_cpu_us_per_dialogue']} us/dialogue, "
                      f"{top['dialogues_per_fleet_cpu_s']:.0f} dlg per fleet CPU-s; server CPU {top.get('server_cpu_pct', 0):.0f}%")))  # fmt: skip
    elif ceiling and ceiling.get("error"):
        rows.append(("fleet ceiling", f"ERROR {ceiling['error'][:60]}", "", "", ""))
    for row in rows:
        print(f"  {row[0]:<52} {row[1]:<30} {row[2]:<15} {row[3]:<15} {row[4]}")
    if mix.get("fleet_cpu_us_per_dialogue") and top.get("fleet_cpu_us_per_dialogue"):
        print(f"\n  the fleet's CPU per dialogue: {top['fleet_cpu_us_per_dialogue']} us for chatter at its ceiling,"
              f" {mix['fleet_cpu_us_per_dialogue']} us in the gateway's mix (the mix's dialogues send and check more):"
              f" on one core the fleet could run ~{mix['dialogues_per_fleet_cpu_s']:.0f} mix dialogues/s")
    print_failures("mix", dialogues)
    c = dialogues.get("checks", {})
    if c:
        print(f"  SP notices {c.get('sp_notices')} for the orders/unsubscriptions that went through {c.get('sp_notices_expected')};"
              f" surveys left unanswered (reactions.survey.ignore): {c.get('surveys_ignored')}")
    if dialogues.get("stored"):
        print(f"  stored messages by status (after stop): {dialogues['stored']}")
    if ceiling:
        print_failures("ceiling", ceiling)
        if ceiling.get("server_counters"):
            print(f"  loopback server: {ceiling['server_counters']}")
    breakdown = dialogues.get("profile_breakdown") or {}
    if breakdown:
        print(f"\n  gateway profile during the closed loop ({dialogues.get('profile_file')}; more in the JSON)")
        print(f"  main thread by area ({breakdown['main_thread_samples']} samples):")
        for area, pct in breakdown["main_thread_by_area_pct"].items():
            print(f"    {pct:5.1f}%  {area}")
        print("  main thread, innermost frames:")
        for fn, pct in breakdown["main_thread_self_top_pct"][:12]:
            print(f"    {pct:5.1f}%  {fn}")
    breakdown = (ceiling or {}).get("profile_breakdown") or {}
    if breakdown:
        print(f"\n  fleet profile at its ceiling ({ceiling.get('profile_file')}; {breakdown['samples']} samples)")
        for area, pct in breakdown["by_area_pct"].items():
            print(f"    {pct:5.1f}%  {area}")
        print("  innermost frames:")
        for fn, pct in breakdown["self_top_pct"][:14]:
            print(f"    {pct:5.1f}%  {fn}")
        print("  inclusive (simulator/, gateway/):")
        for fn, pct in breakdown["inclusive_top_pct"][:14]:
            print(f"    {pct:5.1f}%  {fn}")
    for issue in (3, 4):
        mine = [c for c in checks if c["issue"] == issue]
        if mine:
            print(f"\n=== targets (issue {issue}) ===")
        for c in mine:
            extra = f"   (per CPU-second: {c['per_cpu_second']})" if c.get("per_cpu_second") else ""
            print(f"  {c['verdict']:<4} {c['target']:<64} {c['value']} (need {c['need']}){extra}")


# ------------------------------------------------------------------------ CLI
def parse_mix(text: str) -> dict[str, float]:
    """`query=3,order=3,chatter=1`: the fleet behaviours' weights; behaviours not named get 0."""
    mix = {k: 0.0 for k in BEHAVIOURS}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in mix:
            hint = " (ratings come from the surveys 10086 dialogues bring: reactions.survey)" if name == "rating" else ""
            raise argparse.ArgumentTypeError(f"unknown behaviour {name!r}; choose from {', '.join(BEHAVIOURS)}{hint}")
        mix[name] = float(weight or 1)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("the mix is empty")
    return mix


def _concurrency(text: str) -> int:
    """`auto` -> 0 (look for the maximum rate), otherwise dialogues in flight."""
    if text == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of dialogues in flight > 0, not {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Dialogue benchmark: the fleet's mix through the gateway, the fleet's ceiling, "
                                            "plain MO (see bench/README.md)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=10.0, help="measured interval of each loop and of b1 (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up before measuring (default 2; open loop at most 1)")
    p.add_argument("--subscribers", type=int, default=2000, help="simulated subscribers (default 2000)")
    p.add_argument("--binds", type=int, default=4, help="transceiver binds they share (default 4)")
    p.add_argument("--window", type=int, default=100, help="outstanding submit_sm per bind (default 100)")
    p.add_argument("--concurrency", type=_concurrency, default=0, metavar="auto|N",
                   help="closed loop through the gateway: dialogues in flight, or 'auto' (default): the maximum rate, "
                        "doubling from 32 until dialogues/s stop rising")
    p.add_argument("--mix", type=parse_mix, default=None,
                   help=f"behaviour weights, e.g. query=3,order=3,spam=1 (default: the scenario's; one of {', '.join(BEHAVIOURS)})")
    p.add_argument("--scenario", default=None, help=f"the fleet's scenario (default {DEFAULT_SCENARIO.relative_to(ROOT)})")
    p.add_argument("--open-fraction", type=float, default=0.5, help="open loop rate as a share of the closed-loop maximum (default 0.5)")
    p.add_argument("--open-rate", type=float, default=0.0,
                   help="open loop at this many dialogues/s instead of --open-fraction of the maximum (comparing trees)")
    p.add_argument("--ceiling-concurrency", type=int, default=32,
                   help="the fleet's ceiling: chatter dialogues in flight against the loopback server (default 32)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a dialogue waits for each reply (default 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spammers", type=int, default=1000,
                   help="spammer numbers (default 1000). The bench's thresholds are out of reach, so no number is ever"
                        " blocked and each collects open reports; with the scenario's 10 a number held ~2,000 after 30 s"
                        " and the figures fell with the run's length. In service a number is blocked at"
                        " spam_block_threshold distinct reporters")
    p.add_argument("--skip-plain", action="store_true", help="do not run b1 (the plain MO figure)")
    p.add_argument("--skip-ceiling", action="store_true", help="do not measure the fleet's ceiling against the loopback server")
    p.add_argument("--pin", action="store_true", help="pin the servers (and their children) to core 0 and this process to core 1")
    p.add_argument("--profile", nargs="?", const="python", choices=["python", "native"],
                   help="py-spy the gateway during the closed loop and print its hot spots; 'native' also sees C code"
                        " (SQLite, the event loop) but pauses the gateway to sample it (lower figures)")
    p.add_argument("--profile-phase", choices=["closed", "open"], default="closed",
                   help="which loop --profile samples: the closed loop at full speed (default) or the open loop")
    p.add_argument("--profile-fleet", nargs="?", const="python", choices=["python", "native"],
                   help="py-spy this process (the fleet) at its ceiling and print where its time goes")
    p.add_argument("--json", default=str(RESULTS / "dialogues.json"), help="where to write the results")
    args = p.parse_args(argv)
    for name in ("seconds", "subscribers", "binds", "window", "ceiling_concurrency", "timeout", "spammers"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.warmup < 0 or args.open_fraction < 0 or args.open_rate < 0:
        p.error("--warmup, --open-fraction and --open-rate must be >= 0")
    if args.profile and args.profile_phase == "closed" and not args.concurrency:
        p.error("--profile of the closed loop needs a fixed --concurrency (one loop to sample, not a sweep)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, core._terminate)
    pin = args.pin and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {core.DRIVER_CORE})
    weights = args.mix or make_scenario(args.scenario).behaviours.weights()
    mix = ",".join(f"{k}={v:g}" for k, v in weights.items() if v)
    print(f"smsgw dialogue benchmark: {args.seconds:g} s measured after {args.warmup:g} s warm-up; fleet of {args.subscribers}"
          f" subscribers on {args.binds} binds; gateway closed loop C={args.concurrency or 'auto'}, then open loop at {args.open_fraction:g}"
          f" of its rate; mix {mix}; fleet ceiling: chatter C={args.ceiling_concurrency} against the loopback server;"
          f" {'servers on core 0, this process (the fleet) on core 1' if pin else 'no CPU pinning'}", flush=True)
    machine = core.machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="smsgw-dialogues-"))
    plain: dict | None = None
    dialogues: dict = {}
    ceiling: dict | None = None
    interrupted = False
    started = time.monotonic()
    try:
        if not args.skip_plain:
            print(f"\n{core.TITLES['b1']}", flush=True)
            core_args = core.parse_args(["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--only", "b1"])
            plain = core.run_and_report("b1", core_args, pin, workdir)
        print("\n(d)  gateway: the fleet's dialogue mix over the full path", flush=True)
        dialogues = _guarded(lambda: run_mix(args, pin, workdir))
        if not args.skip_ceiling:
            print("\n(e)  the fleet's ceiling: chatter against bench/loopback_server.py", flush=True)
            ceiling = _guarded(lambda: run_ceiling(args, pin))
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted; stopping servers", file=sys.stderr)
    finally:
        core.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    checks = verdicts(plain, dialogues, ceiling)
    print_summary(plain, dialogues, ceiling, checks)
    mix_, half = dialogues.get("closed_loop", {}), dialogues.get("open_loop", {})
    top = (ceiling or {}).get("closed_loop", {})
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "pinned": pin,
        "interrupted": interrupted,
        "run_seconds": round(time.monotonic() - started, 1),
        "figures": {
            "plain_mo_per_s": core.figure(plain) if plain else None,
            "plain_mo_per_server_cpu_s": core.figure_per_cpu(plain) if plain else None,
            "dialogues_per_s": mix_.get("dialogues_per_s"),
            "mix_mo_per_s": mix_.get("mo_per_s"),
            "mix_mo_per_server_cpu_s": mix_.get("mo_per_server_cpu_s"),
            "mix_dialogues_per_server_cpu_s": mix_.get("dialogues_per_server_cpu_s"),
            "mix_server_cpu_us_per_mo": mix_.get("server_cpu_us_per_mo"),
            "max_rate_latency_ms": {k: mix_.get("latency", {}).get(k) for k in ("p50_ms", "p99_ms")},
            "half_rate_latency_ms": {k: half.get("latency", {}).get(k) for k in ("p50_ms", "p99_ms")},
            "mix_fleet_cpu_us_per_dialogue": mix_.get("fleet_cpu_us_per_dialogue"),
            "fleet_ceiling_dialogues_per_s": top.get("dialogues_per_s"),
            "fleet_ceiling_mo_per_s": top.get("mo_per_s"),
            "fleet_ceiling_cpu_pct": top.get("simulator_cpu_pct"),
            "fleet_ceiling_cpu_us_per_dialogue": top.get("fleet_cpu_us_per_dialogue"),
            "fleet_ceiling_dialogues_per_fleet_cpu_s": top.get("dialogues_per_fleet_cpu_s"),
            "failures_by_kind": dialogues.get("failures_by_kind"),
            "ceiling_failures_by_kind": (ceiling or {}).get("failures_by_kind"),
        },
        "checks": checks,
        "plain": plain,
        "dialogues": dialogues,
        "ceiling": ceiling,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False))
    print(f"\nwritten {out}")
    if interrupted:
        return 130
    runs = [dialogues] + ([ceiling] if ceiling is not None else [])
    return 0 if all("error" not in r and r.get("failures_total") == 0 for r in runs) else 1


def _guarded(step) -> dict:
    try:
        return step()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - report it with what we have
        error = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  ERROR: {error['error']}")
        return error


if __name__ == "__main__":
    sys.exit(main())
