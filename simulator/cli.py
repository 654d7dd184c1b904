"""`smsgw simulate`: run a fleet of simulated handsets against an SMPP server and check every dialogue.

    smsgw simulate [--host H] [--port P] [--system-id ID --password PW] [--tls [--ca FILE | --insecure]]
                   [--scenario FILE] [--duration S | --count N] [--rate R | --concurrency C] [--ramp-up S]
                   [--binds N] [--subscribers N] [--rebind] [--report DIR]
                   [--max-failures N] [--min-rate R] [--max-p99-ms MS] [--max-lag-ms MS]

The scenario (default simulator/scenarios/default.toml) says everything;
flags override it. Progress goes to stderr (a live table on a terminal,
plain lines otherwise), the result to stdout, the JSON and HTML reports into
--report. Exit status: 0 when every dialogue passed and every threshold
given here was met; 1 when a dialogue failed (more than --max-failures), a
threshold was missed, or no dialogue ended (nothing was checked); 2 for a
usage, scenario or config mistake, or a target that cannot be reached or
refuses the binds (the message names the file and key to fix); 130 when
interrupted. Ctrl-C (or SIGTERM) while the binds wait for their answers
gives up at once; after that, once stops the load: dialogues in flight end,
then the figures so far are printed and reported (marked INTERRUPTED, no
verdict); again during that drain, it is cut short the same way; a third
time gives up at once (once the drain is over, the figures and the report
are written first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["EXCLUSIVE", "THRESHOLDS", "add_arguments", "conflict", "flag_name", "main", "report_directory", "run_args",
           "tls_only", "verdicts"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_LAG_MS = 50.0  # the simulator's own lag (p99) beyond which its figures are not the target's
# Flags of which one at most may be given: the command line's mutually exclusive groups (add_arguments makes them
# from here), and what the Python API refuses so too (conflict). One names whom to trust, the other trusts anyone;
# how long or how many; open loop or closed.
EXCLUSIVE = (("ca", "insecure"), ("duration", "count"), ("rate", "concurrency"))
TLS_ONLY = ("ca", "insecure")  # flags that adjust TLS: with TLS off, a usage mistake (tls_only)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C and a service manager's stop: the run treats them alike


def flag_name(name: str) -> str:
    """A flag's name on the command line: --max-p99-ms for max_p99_ms."""
    return "--" + name.replace("_", "-")


def _given(value: Any) -> bool:
    """Given, as a flag: None is a flag left out, and so is False (store_true's default, insecure=False)."""
    return value is not None and value is not False


def conflict(flags: dict[str, Any]) -> tuple[str, str] | None:
    """Two flags of one EXCLUSIVE group given together (by their names, as `vars(args)` or the API's keywords):
    (the other, the first of the group), as argparse names them; None when there are none."""
    for names in EXCLUSIVE:
        both = [name for name in names if _given(flags.get(name))]
        if len(both) > 1:
            return both[1], both[0]
    return None


def tls_only(flags: dict[str, Any], tls: bool) -> str | None:
    """A flag given that applies to TLS only while TLS is off (the scenario's target.tls after the flags), or None:
    it was ignored, the fleet spoke plain SMPP to what was meant to be a TLS port, and the error blamed the bind."""
    return None if tls else next((name for name in TLS_ONLY if _given(flags.get(name))), None)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    groups: dict[tuple[str, ...], Any] = {}

    def exclusive(parent: Any, name: str) -> Any:
        """The mutually exclusive group of EXCLUSIVE that flag `name` is in, under `parent`."""
        names = next(names for names in EXCLUSIVE if name in names)
        if names not in groups:
            groups[names] = parent.add_mutually_exclusive_group()
        return groups[names]

    target = p.add_argument_group("target (default: the scenario's [target])")
    target.add_argument("--host", help="SMPP server host")
    target.add_argument("--port", type=int, help="SMPP server port")
    target.add_argument("--system-id", help="account the subscribers bind with")
    target.add_argument("--password")
    target.add_argument("--tls", action="store_true", default=None, help="connect over TLS")
    exclusive(target, "ca").add_argument("--ca", help="CA file (PEM) of the server's certificate")
    exclusive(target, "insecure").add_argument("--insecure", action="store_true",
                                               help="TLS without verifying the server's certificate")
    target.add_argument("--target-config", metavar="FILE",
                        help="the target's gateway config: short codes, reply texts, catalogue, thresholds")
    fleet = p.add_argument_group("fleet and load (default: the scenario's)")
    fleet.add_argument("--scenario", metavar="FILE", help="scenario TOML (default: simulator/scenarios/default.toml)")
    exclusive(fleet, "duration").add_argument("--duration", type=_positive(float), metavar="S", help="seconds of load")
    exclusive(fleet, "count").add_argument("--count", type=_positive(int), metavar="N", help="dialogues to start")
    exclusive(fleet, "rate").add_argument("--rate", type=_positive(float), metavar="R",
                                          help="open loop: dialogues started per second")
    exclusive(fleet, "concurrency").add_argument("--concurrency", type=_positive(int), metavar="C",
                                                 help="closed loop: dialogues in flight")
    fleet.add_argument("--ramp-up", type=_non_negative(float), metavar="S", help="open loop: seconds from 0 to --rate")
    fleet.add_argument("--binds", type=_positive(int), metavar="N", help="binds (or tx+rx pairs) the subscribers share")
    fleet.add_argument("--subscribers", type=_positive(int), metavar="N", help="simulated subscribers")
    fleet.add_argument("--start", metavar="MSISDN", help="first subscriber's number")
    fleet.add_argument("--rebind", action="store_true", default=None,
                       help="bind again (with back-off) a bind the target drops, as across its restart; else its subscribers retire")
    fleet.add_argument("--timeout", type=_positive(float), metavar="S", help="seconds each step waits for its reply")
    fleet.add_argument("--seed", type=int, metavar="N",
                       help="of the random choices: the same seed repeats them at --concurrency 1")
    out = p.add_argument_group("output and verdict")
    out.add_argument("--report", metavar="DIR", help="write report.json and report.html here")
    out.add_argument("--max-failures", type=THRESHOLDS["max_failures"], default=0, metavar="N",
                     help="failed dialogues tolerated (default 0)")
    out.add_argument("--min-rate", type=THRESHOLDS["min_rate"], metavar="R",
                     help="fail below R dialogues/s ended ok, in the steady state (after the ramp-up)")
    out.add_argument("--max-p99-ms", type=THRESHOLDS["max_p99_ms"], metavar="MS",
                     help="fail when p99 latency exceeds MS (or when no reply was timed)")
    out.add_argument("--max-lag-ms", type=THRESHOLDS["max_lag_ms"], default=MAX_LAG_MS, metavar="MS",
                     help="fail when the simulator itself lagged more (p99 of its event loop's lag, or of the open "
                          f"loop's starts behind schedule): its latencies would be its own (default {MAX_LAG_MS:g})")
    out.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def _read(kind: type, value: Any) -> Any:
    """`value` as `kind`, read as the command line reads its text: an int has no fraction, whether "1.5", 1.5 or
    2.0 (int(1.5) was 1), and True is no number."""
    if isinstance(value, bool) or (kind is int and isinstance(value, float)):
        raise ValueError(f"invalid {kind.__name__} value: {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid {kind.__name__} value: {value!r}") from None


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = _read(kind, text)
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"expected a finite value > 0; got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = _read(kind, text)
        if not 0 <= value < math.inf:
            raise argparse.ArgumentTypeError(f"expected a finite value >= 0; got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


# The flags the verdict judges by (verdicts' keywords) and how each is read; the Python API reads its keywords so too.
THRESHOLDS = {"max_failures": _non_negative(int), "min_rate": _non_negative(float), "max_p99_ms": _positive(float),
              "max_lag_ms": _positive(float)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="smsgw simulate", description=__doc__.split("\n\n")[0]))
    return run_args(parser.parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    """Run `smsgw simulate` with parsed arguments; returns the exit status."""
    from gateway.config import ConfigError, load_config

    from .scenario import ScenarioError, load_scenario

    both = conflict(vars(args))  # argparse's groups refuse them; a Namespace made otherwise is checked here
    if both is not None:
        print(f"smsgw simulate: argument {flag_name(both[0])}: not allowed with argument {flag_name(both[1])}",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        scenario = load_scenario(args.scenario).override(
            host=args.host, port=args.port, system_id=args.system_id, password=args.password, tls=args.tls,
            ca=args.ca, verify=False if args.insecure else None, target_config=args.target_config,
            duration=args.duration, count=args.count, rate=args.rate, concurrency=args.concurrency,
            ramp_up=args.ramp_up, binds=args.binds, subscribers=args.subscribers, start=args.start,
            rebind=args.rebind, timeout=args.timeout, seed=args.seed,
        )  # fmt: skip
        config = load_config(scenario.target.config or None, tls_files=False)  # a target: its TLS files are its own
    except (ScenarioError, ConfigError) as exc:
        print(f"smsgw simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    needs_tls = tls_only(vars(args), scenario.target.tls)
    if needs_tls is not None:
        print(f"smsgw simulate: {flag_name(needs_tls)}: applies to TLS only, and TLS is off: add --tls (or tls = "
              f"true in the [target] of {scenario.source})", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    problem = report_directory(args.report) if args.report else None
    if problem is not None:
        print(f"smsgw simulate: --report {args.report}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    started_at = time.time()
    with _stop_handlers_restored():  # _drive holds the stops from the drain's end until the verdict is out
        return _run(args, scenario, config, started_at)


def _run(args: argparse.Namespace, scenario: Any, config: Any, started_at: float) -> int:
    """The run, its result and its report; the exit status."""
    from gateway.config import ConfigError

    from .esme import run
    from .fleet import FleetError

    try:
        summary = run(_drive(scenario, config, quiet=args.quiet))
    except ConfigError as exc:  # the target config's reply texts, read as the fleet is made: nothing ran yet
        print(f"smsgw simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FleetError as exc:
        source = _source(exc.key, args, scenario.source)
        flags_hint = _FLAG_HINTS.get(exc.key) if source == COMMAND_LINE and exc.hint else None
        message = f"{exc.key}: {exc.problem} ({flags_hint})" if flags_hint else str(exc)
        print(f"smsgw simulate: {source}: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("smsgw simulate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    misses = verdicts(summary, max_failures=args.max_failures, min_rate=args.min_rate, max_p99_ms=args.max_p99_ms,
                      max_lag_ms=args.max_lag_ms)  # fmt: skip
    # The reports first: a reader of stdout that stops early (`| head -1`) loses them nothing.
    reports = write_report(summary, args.report, scenario.to_dict(), started_at, misses) if args.report else []
    interrupted = bool((summary.get("fleet") or {}).get("interrupted"))
    try:
        _print_result(summary, reports, misses, interrupted)
    except BrokenPipeError:
        _stdout_closed()
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if misses else EXIT_OK


def _print_result(summary: dict[str, Any], reports: list[Path], misses: list[str], interrupted: bool) -> None:
    """The result on stdout: the figures, the reports written, the verdict."""
    print(describe(summary))
    for path in reports:
        print(f"report: {path}")
    if interrupted:
        print("INTERRUPTED: the figures cover the run up to the signal; no verdict")
        return
    for miss in misses:
        print(f"FAIL {miss}")
    if not misses:
        print("PASS")
    sys.stdout.flush()  # (here, where a reader gone is caught, not at the interpreter's exit)


def _stdout_closed() -> None:
    """The reader of stdout went away (`| head -1`): the rest of the result is dropped quietly, as CLI tools do, and
    the exit status stays the verdict's. Python's last flush of stdout at exit would raise again: it goes nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# The scenario keys a fleet error can name that flags set (the rest come from the scenario file only).
# A refused bind is reported under target.system_id, whether the account or its password was wrong, and one not
# answered at all under target.host/target.port (no SMPP server there); a certificate refused under target.ca, also
# when --tls alone turned TLS on (the system's CAs refused it); a handshake that failed otherwise under
# target.tls/target.port (the server did not answer TLS).
_FLAGS = {"target.host": ("host",), "target.port": ("port",), "target.tls": ("tls",),
          "target.system_id": ("system_id", "password"), "target.ca": ("ca", "tls"), "fleet.start": ("start",),
          "fleet.count": ("subscribers",), "fleet.binds": ("binds",),
          "load.concurrency": ("concurrency", "subscribers")}  # fmt: skip
# A fleet error's hint in flags, for when a flag set the value: its own names scenario keys the user never wrote.
_FLAG_HINTS = {"target.ca": "--ca FILE names the CA that signed the server's certificate; --insecure accepts any",
               "fleet.binds": "lower --binds to what the target allows, or raise its bind limit for the account"}
COMMAND_LINE = "command line"


def _source(key: str, args: argparse.Namespace, scenario_file: str) -> str:
    """Where the value of `key` (or of one of "a/b") came from: the command line when a flag set it, else the file."""
    given = any(getattr(args, flag) is not None for k in key.split("/") if k in _FLAGS for flag in _FLAGS[k])
    return COMMAND_LINE if given else scenario_file


async def _drive(scenario: Any, config: Any, *, quiet: bool) -> dict[str, Any]:
    from .fleet import Fleet
    from .metrics import Recorder

    recorder = Recorder()
    fleet = Fleet(scenario, recorder=recorder, config=config)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    signals = 0
    drained = False

    def interrupted() -> None:  # the first stops the load, the next cuts the drain; a third gives up on the results
        nonlocal signals
        if drained:  # the results are in: the end checks and the unbinds left, then the figures (nothing to cut)
            return
        signals += 1
        if signals > 2 and task is not None:
            task.cancel()
        fleet.interrupt()

    for sig in _stop_signals():
        try:
            loop.add_signal_handler(sig, interrupted)
        except NotImplementedError:  # (an event loop without signal handling)
            pass
    fleet.check_load(scenario.load)  # before binding: a load the fleet cannot run is refused at once
    progress = None
    try:
        await fleet.connect()  # a signal now gives the binds up at once
        progress = None if quiet else _progress(recorder)
        if progress is not None:
            progress.start()
        await fleet.load()
        await fleet.drain()
        drained = True
        await fleet.settle()
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        if progress is not None:
            await progress.stop()
        await fleet.close()
        # Still under our handlers: a press now (the drain over, the figures being summed up) must not lose them.
        summary = fleet.summary()
        for sig in _stop_signals():
            try:
                loop.remove_signal_handler(sig)  # (which puts back Python's defaults: the next would lose them)
            except NotImplementedError:
                pass
        _hold_stops()
    return summary


def _hold_stops() -> None:
    """Ignore Ctrl-C and SIGTERM from here on: the run is over, and what is left (the figures printed, the report
    written) takes a moment that a stop would lose; SIGTERM's default ended the process mid-write, leaving
    report.html cut off and no verdict. run_args puts the handlers back once the report is written."""
    for sig in _stop_signals():
        signal.signal(sig, signal.SIG_IGN)


def _stop_signals() -> tuple[signal.Signals, ...]:
    """STOP_SIGNALS, when this is the main thread: only its handlers see signals, and Python lets no other thread set
    one (ValueError). A run in a worker thread (a QA harness's) leaves signals to the main thread's handlers."""
    return STOP_SIGNALS if threading.current_thread() is threading.main_thread() else ()


@contextlib.contextmanager
def _stop_handlers_restored() -> Iterator[None]:
    """Ctrl-C's and SIGTERM's handlers as they were before, whatever the run made of them (_drive's own during the
    run, then _hold_stops): `smsgw simulate` called in a process that goes on (a test) leaves them as it found them."""
    previous = {sig: signal.getsignal(sig) for sig in _stop_signals()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # (None: a handler not installed from Python, which cannot be put back)
                signal.signal(sig, handler)


def _progress(recorder: Any) -> Any:
    """simulator.progress.Progress(recorder) when the module is there (start() / await stop())."""
    try:
        from .progress import Progress
    except ImportError:
        return None
    return Progress(recorder)


def report_directory(path: str) -> str | None:
    """Create the report directory before the run (a typo must not lose a long run at its end); what is wrong, or None."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "is a file, not a directory (report.json and report.html are written into the directory --report names)"
    except OSError as exc:
        return f"cannot create the directory: {exc.strerror}"
    if not os.access(path, os.W_OK | os.X_OK):
        return "the directory is not writable"
    return None


def write_report(summary: dict[str, Any], directory: str | Path, scenario: dict[str, Any], started_at: float,
                 misses: list[str] | None = None) -> list[Path]:  # fmt: skip
    """report.json and report.html by simulator.report.write_reports (with the verdict: the thresholds missed);
    the JSON alone without that module."""
    try:
        from . import report
    except ImportError:
        report = None  # type: ignore[assignment]
    if report is not None and hasattr(report, "write_reports"):
        return list(report.write_reports(summary, directory, scenario, started_at=started_at, misses=misses))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    path.write_text(json.dumps({**summary, "scenario": scenario}, indent=2, ensure_ascii=False, default=str) + "\n")
    return [path]


def verdicts(summary: dict[str, Any], *, max_failures: int = 0, min_rate: float | None = None,
             max_p99_ms: float | None = None, max_lag_ms: float | None = None) -> list[str]:  # fmt: skip
    """What the run missed: failed dialogues and faults found outside them beyond max_failures, and the thresholds given. The rate judged is the
    steady state's, of dialogues that ended ok; a threshold nothing was measured for is missed, not passed, and
    so is a run that checked nothing (no dialogue ended)."""
    from .fleet import ENDED_EARLY

    misses = []
    dialogues = summary["dialogues"]
    failed = dialogues["failed"]
    if not dialogues["completed"] + failed:
        misses.append(f"no dialogue ended ({dialogues['started']} started), so nothing was checked")
    faults = summary.get("faults", 0)
    if failed + faults > max_failures:
        found = [f"{failed} dialogues failed"] if failed or not faults else []
        found += [f"{faults} faults found outside dialogues"] if faults else []
        internal = (summary.get("internal_errors") or {}).get("count", 0)
        ours = f"; {internal} of them the simulator's own internal errors, not the target's" if internal else ""
        misses.append(f"{' and '.join(found)} (tolerated: {max_failures}){ours}")
    fleet = summary.get("fleet") or {}
    if fleet.get("stats", {}).get("cancelled_at_drain") and not fleet.get("interrupted"):  # (INTERRUPTED: no verdict)
        misses.append(_cut_at_drain(fleet))
    rate = summary["throughput"]["ok_per_s"]
    if min_rate is not None:
        if rate is None:
            misses.append(f"no steady state to judge --min-rate {min_rate:g} by: the load ended within its ramp-up")
        elif rate < min_rate:
            misses.append(f"{rate} dialogues/s ended ok in the steady state, below --min-rate {min_rate:g}{_window_full(fleet)}")
    p99 = summary["latency_ms"]["p99"]
    if max_p99_ms is not None:
        if p99 is None:
            misses.append(f"no latency measured (no reply was timed), so not within --max-p99-ms {max_p99_ms:g}")
        elif p99 > max_p99_ms:
            misses.append(f"p99 latency {p99} ms, above --max-p99-ms {max_p99_ms:g}")
    if max_lag_ms is not None:
        misses += _saturated(summary.get("simulator") or {}, max_lag_ms)
    fleet = summary.get("fleet") or {}
    if fleet.get("stopped") in ENDED_EARLY:
        misses.append(f"the run ended early: {fleet['stopped']}")
    return misses


def _saturated(simulator: dict[str, Any], max_lag_ms: float) -> list[str]:
    """The simulator itself could not keep up: a reply waits its event loop's lag before it is timed, and an open
    loop behind its schedule offers less than its rate. Then the figures are the simulator's, not the target's."""
    misses = []
    loop_lag = (simulator.get("loop_lag_ms") or {}).get("p99")
    if loop_lag is not None and loop_lag > max_lag_ms:
        misses.append(f"the simulator could not keep up: its event loop ran {loop_lag} ms late (p99; --max-lag-ms "
                      f"{max_lag_ms:g}), so its latencies are its own queueing, not only the target's; give one "
                      "simulator fewer dialogues/s (run several)")  # fmt: skip
    schedule_lag = (simulator.get("schedule_lag_ms") or {}).get("p99")
    if schedule_lag is not None and schedule_lag > max_lag_ms:
        misses.append(f"the simulator could not keep up: the open loop started dialogues {schedule_lag} ms after they "
                      f"were due (p99; --max-lag-ms {max_lag_ms:g}), so it offered less than its rate")  # fmt: skip
    return misses


def _cut_at_drain(fleet: dict[str, Any]) -> str:
    """The dialogues the drain's end cancelled: those whose MO was never sent (it waited for room in a full window) told
    apart from those that waited for a reply."""
    stats = fleet["stats"]
    cut, unsent = stats["cancelled_at_drain"], stats.get("cancelled_at_drain_mo_not_sent", 0)
    unanswered = stats.get("cancelled_at_drain_mo_unanswered", 0)
    never_sent = f"{unsent} for an MO never sent (it waited for room in the full window of {fleet.get('window')} unanswered submit_sm)"
    waiting = [never_sent] if unsent else []
    waiting += [f"{unanswered} for the answer to their MO"] if unanswered else []
    waiting += [f"{cut - unsent - unanswered} for a reply"] if cut > unsent + unanswered else []
    return (f"{cut} dialogues still waited when the drain after the load ended (load.drain): {', '.join(waiting)}, so "
            "they were never checked")


def _window_full(fleet: dict[str, Any]) -> str:
    """Why a rate fell short when the target answered MO more slowly than the load offered them: its submit_sm
    waited for room in the binds' windows (each MO's response timeout counts that wait)."""
    stats = fleet.get("stats") or {}
    waited = stats.get("submit_sm_waited_for_window", 0)
    if not waited:
        return ""
    unsent = stats.get("submit_sm_not_sent_in_time", 0)
    never = f", {unsent} of them never sent within the response timeout" if unsent else ""
    return (f": the target answered MO more slowly than the load offered them, {waited} submit_sm waited for room in a "
            f"full window ({fleet.get('window')} unanswered per bind, {fleet.get('binds')} binds){never}")


def describe(summary: dict[str, Any]) -> str:
    """The result for a person: throughput, latency, outcomes by kind, failures with the first transcripts."""
    d, t, lat = summary["dialogues"], summary["throughput"], summary["latency_ms"]
    load_s = summary.get("load_s", summary["duration_s"])
    steady = (f"steady state ({t['steady_s']:.1f} s from {t['steady_from_s']:.1f} s): {_shown(t['ok_per_s'])} "
              f"dialogues/s ended ok, {_shown(t['started_per_s'])}/s started")  # fmt: skip
    reactions = f" ({d['reactions']} of them reactions, not in the steady state's rates)" if d["reactions"] else ""
    lines = [
        f"{d['completed'] + d['failed']} dialogues in {summary['duration_s']:.1f} s (load {load_s:.1f} s):"
        f" {d['completed']} ok, {d['failed']} failed{reactions}; {steady}",
        *([f"faults found outside dialogues: {summary['faults']} (not in the dialogues or their rates; FAILED below)"]
          if summary.get("faults") else []),
        *_describe_internal(summary.get("internal_errors") or {}),
        (f"over the whole load (ramp-up included): {t['ended_per_s_whole_load']} dialogues/s ended (ok or failed),"
         f" {t['mo_per_s']} MO/s accepted"),
        f"latency ms (MO -> reply, every step): p50 {_shown(lat['p50'])}  p90 {_shown(lat['p90'])}  p99 {_shown(lat['p99'])}"
        f"  p99.9 {_shown(lat['p99.9'])}  max {_shown(lat['max'])}",
    ]
    simulator = summary.get("simulator")
    if simulator:
        lines.append(_describe_simulator(simulator, summary.get("fleet") or {}))
    for kind, outcomes in summary["outcomes"].items():
        by_kind = summary["latency_ms_by_kind"].get(kind, {})
        counts = ", ".join(f"{outcome} {n}" for outcome, n in outcomes.items())
        timed = by_kind.get("max") is not None
        lines.append(f"  {kind:<9} {counts}" + (f"   (p50 {by_kind['p50']} p99 {by_kind['p99']} ms)" if timed else ""))
    if summary.get("unsolicited"):
        lines.append("arrived unasked: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["unsolicited"].items())))
    expected, unexpected = _refusals(summary)
    if expected:
        lines.append("refused (as expected): " + ", ".join(f"{k} {v}" for k, v in expected))
    if unexpected:
        lines.append("MO refused, failing their dialogues: " + ", ".join(f"{k} {v}" for k, v in unexpected))
    fleet = summary.get("fleet") or {}
    stats = fleet.get("stats") or {}
    not_started = {k: v for k, v in stats.items() if k.startswith("not_started")}
    if not_started:
        lines.append("dialogues not started: " + ", ".join(f"{k[12:]} {v}" for k, v in not_started.items()))
    if fleet.get("lost_binds"):
        lines.append(_describe_lost_binds(fleet["lost_binds"]))
    if fleet.get("sp_notices_unchecked"):
        lines.append("SP notices not checked: " + "; ".join(f"{sp}'s ({why})" for sp, why in fleet["sp_notices_unchecked"].items()))
    if stats.get("cancelled_at_drain"):  # neither ok nor failed: the drain was cut short (a second Ctrl-C, its deadline)
        unsent = stats.get("cancelled_at_drain_mo_not_sent", 0)
        lines.append(f"dialogues cut short at the drain, not counted above: {stats['cancelled_at_drain']}"
                     + (f" ({unsent} of them with an MO never sent: the window was full)" if unsent else ""))
    if stats.get("submit_sm_waited_for_window"):  # the target answered more slowly than the load offered MO
        unsent = stats.get("submit_sm_not_sent_in_time", 0)
        lines.append(f"submit_sm that waited for room in a full window: {stats['submit_sm_waited_for_window']}"
                     + (f", {unsent} of them never sent within the response timeout" if unsent else ""))
    if stats.get("redelivered_after_late_answer"):  # copies the fleet brought on itself: not the target's fault
        lines.append(f"delivered again after the fleet answered late: {stats['redelivered_after_late_answer']} (the target's "
                     "retries of deliver_sm the fleet answered after its response_timeout; see unasked_samples)")  # fmt: skip
    if stats.get("redelivered_after_rebind"):  # --rebind: the target's redelivery across the loss, documented
        lines.append(f"delivered again after their bind was lost and bound again (--rebind): {stats['redelivered_after_rebind']} "
                     "(the target's redelivery of texts whose answer it had not committed; see unasked_samples)")  # fmt: skip
    if stats.get("mo_resent_after_throttled"):  # --rebind: the target's ESME_RTHROTTLED (as it stopped) was no failure
        lines.append(f"MO sent again after ESME_RTHROTTLED (--rebind): {stats['mo_resent_after_throttled']}")
    if stats.get("mo_sent_after_rebind"):  # --rebind: MOs that found their bind unbound went once it was back
        lines.append(f"MO sent once its bind was bound again (--rebind): {stats['mo_sent_after_rebind']}")
    if stats.get("rebind_tries_failed"):  # --rebind: tries to bind again the target refused or did not answer
        lines.append(f"tries to bind again that failed (--rebind): {stats['rebind_tries_failed']}")
    if stats.get("in_part_after_refusal"):  # the fleet's own MO refused in part: its dialogue failed for it already
        lines.append(f"long texts arrived in part after a part of their MO was refused or unanswered: "
                     f"{stats['in_part_after_refusal']} (the refusal failed the dialogue, not the delivery)")  # fmt: skip
    for kind, steps in summary["failures_by_step"].items():
        for step, n in steps.items():
            lines.append(f"FAILED {kind} at {step}: {n}")
    for failure in summary["failures"][:3]:
        lines.append(f"  e.g. {failure['kind']} {failure['msisdn']} at {failure['step']}: {failure['error']}")
        for entry in failure["transcript"]:
            text = entry["text"].replace("\n", " / ")
            lines.append(f"       {entry['t']:8.3f}s {entry['dir']} {entry['peer']}: {text[:200]}")
    return "\n".join(lines)


def _describe_internal(internal: dict[str, Any]) -> list[str]:
    """The simulator's own errors among the failures: the simulator broke there, the target is not to blame."""
    if not internal.get("count"):
        return []
    head = (f"INTERNAL ERRORS of the simulator itself: {internal['count']} of the failures below (a bug of the simulator, "
            "not the target's doing; tracebacks on stderr)")  # fmt: skip
    return [head, *(f"  {message}" for message in internal.get("first", []))]


def _describe_lost_binds(lost: list[dict[str, Any]]) -> str:
    """The binds the target dropped during the run (Fleet._bind_lost): which, when, why, and when bound again."""
    return f"binds lost: {len(lost)}: " + "; ".join(f"{b['bind']} at {b['at_s']:.1f} s ({b['reason']})" + _rebound(b) for b in lost)


def _rebound(lost: dict[str, Any]) -> str:
    """When a bind lost was bound again (--rebind), or "" (an earlier report's entries have no rebound_at_s)."""
    at = lost.get("rebound_at_s")
    return f", rebound at {at:.1f} s" if at is not None else ""


def _refusals(summary: dict[str, Any]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The MOs the target refused, by status: those a check called for (a spammer's, as the reports require), and the
    rest, each of which failed its dialogue (ESME_RTHROTTLED from an SMSC the load outran, say)."""
    expected = summary.get("mo_refused_expected") or {}
    refused = summary.get("mo_refused") or {}
    unexpected = [(k, v - expected.get(k, 0)) for k, v in sorted(refused.items()) if v > expected.get(k, 0)]
    return sorted(expected.items()), unexpected


def _shown(value: float | None) -> str:
    """A figure, or "-" when nothing was measured (never a 0 that reads as an instant reply)."""
    return "-" if value is None else f"{value}"


def _describe_simulator(simulator: dict[str, Any], fleet: dict[str, Any]) -> str:
    """How the simulator itself kept up: its event loop's lag, the open loop's lag behind schedule, what it held."""
    loop_lag = simulator.get("loop_lag_ms") or {}
    lag = f"p50 {_shown(loop_lag.get('p50'))} p99 {_shown(loop_lag.get('p99'))} max {_shown(loop_lag.get('max'))} ms"
    parts = [f"event-loop lag {lag}"]
    schedule_lag = simulator.get("schedule_lag_ms")
    if schedule_lag:
        parts.append(f"starts behind schedule p99 {_shown(schedule_lag.get('p99'))} max {_shown(schedule_lag.get('max'))} ms")
    in_flight = f"in flight mean {_shown(simulator.get('in_flight_mean'))}"
    if fleet.get("concurrency") is not None:
        in_flight += f" (--concurrency {fleet['concurrency']})"
    return "simulator itself: " + "; ".join([*parts, in_flight])


if __name__ == "__main__":
    sys.exit(main())
