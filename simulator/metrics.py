"""What a fleet run measured: dialogues by kind and outcome, latencies, a per-second timeline, failures.

The fleet feeds a `Recorder`; the live progress display reads `snapshot()`;
the JSON and HTML reports are built from `summary()`, whose shape is the
report format (documented in `summary`'s docstring and README):

Latencies are MO -> reply times of every dialogue step, kept in HDR
histograms (microsecond resolution, 3 significant digits) so percentiles
stay exact to 0.1 % at any volume with constant memory.

An MO (a subscriber's text, one however many parts carry it) counts when
the target accepts it (`mo_accepted`, as its submit_sm_resp arrives, every
part's), not when its dialogue ends: a target that answers late still took
its MO at the rate it took them.

The rate a load test is judged by is the steady state's (`steady_from`, the
end of the open loop's ramp-up, to the end of the load): the dialogues
started in that window that ended ok, per second of it. Counting by start
rather than by end leaves out both the ramp and the first latency period,
when dialogues have started but none could have ended yet; a dialogue
started in the window is counted when it ends, during the drain too.
Reactions (a survey answered, a spam text reported) are dialogues too, but
not the load's: they come on top of the rate offered, so the steady state's
figures leave them out. A fault found outside any dialogue (a receipt never
requested, a text delivered twice or in part, SP notices that do not match)
is no dialogue at all (`fault`): a failure, with its transcript, counted
apart from the dialogues and their rates. A failure at the step
INTERNAL_ERROR is the simulator's own code that raised, not the target's
doing: counted as such too (`internal_errors`), so that a report tells "the
SMSC misbehaved" from "the simulator broke".
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from .dialogues import DialogueResult

LOWEST_US, HIGHEST_US, DIGITS = 1, 120_000_000, 3  # 1 µs .. 120 s
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
MAX_FAILURES_KEPT = 200  # with transcripts; beyond that only counted
# The step of a dialogue (or fault) that failed because the simulator's own code raised (simulator/fleet.py
# Fleet._guarded): a bug of the simulator, reported apart from the target's failures.
INTERNAL_ERROR = "internal error"
INTERNAL_ERRORS_KEPT = 5  # distinct messages kept (the first ones); beyond that only counted
OPEN_SECONDS = 3  # seconds behind the newest that may still receive results (a dialogue ends after its reply)
# A live display's timer firing this much before a whole second of the run is at it: asyncio's timers fire up to a
# millisecond early, and the display's starts before the load resets `Recorder.started`.
EARLY = 0.05


def histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def micros(seconds: float) -> int:
    """A duration as a histogram records it: whole microseconds, within what the histograms hold."""
    return max(LOWEST_US, min(HIGHEST_US, round(seconds * 1e6)))


def percentiles_ms(recorded: HdrHistogram) -> dict[str, float | None]:
    """p50 .. p99.9, max, mean in ms; None each when nothing was timed (0.0 would read as an instant reply)."""
    if recorded.get_total_count() == 0:
        return {f"p{p:g}": None for p in PERCENTILES} | {"max": None, "mean": None}
    values = {f"p{p:g}": recorded.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    return values | {"max": recorded.get_max_value() / 1000, "mean": round(recorded.get_mean_value() / 1000, 3)}


@dataclass(slots=True)
class Failure:
    kind: str
    msisdn: str
    step: str
    error: str
    at: float  # seconds since the run started
    transcript: list[tuple[float, str, str, str]]  # (seconds since run start, ">" sent / "<" received, peer, text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "msisdn": self.msisdn, "step": self.step, "error": self.error, "at": round(self.at, 3),
            "transcript": [{"t": round(t, 3), "dir": d, "peer": p, "text": x} for t, d, p, x in self.transcript],
        }  # fmt: skip


@dataclass(slots=True)
class _Second:
    """One second of the timeline. Its histogram (~145 KiB) lives only while the second can still
    receive results; then it is reduced to the two percentiles the timeline shows."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    mo: int = 0
    latency: HdrHistogram | None = field(default_factory=histogram)
    p50_ms: float | None = None
    p99_ms: float | None = None

    def close(self) -> None:
        if self.latency is not None:
            if self.latency.get_total_count():
                self.p50_ms = self.latency.get_value_at_percentile(50) / 1000
                self.p99_ms = self.latency.get_value_at_percentile(99) / 1000
            self.latency = None

    def record(self, micros: int) -> None:
        if self.latency is None:  # a result for a second already closed: too late for its percentiles
            return
        self.latency.record_value(micros)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """For the live display: totals so far and the last whole second, the one ending at `whole_seconds`."""

    elapsed: float
    started: int
    completed: int
    failed: int
    mo: int
    rate: float  # dialogues completed in the last whole second
    mo_rate: float
    p50_ms: float | None  # None: nothing timed yet
    p99_ms: float | None
    in_flight: int
    faults: int = 0  # failed checks outside any dialogue (in none of started, failed, in_flight)

    @property
    def whole_seconds(self) -> int:
        return _whole_seconds(self.elapsed)


def _whole_seconds(elapsed: float) -> int:
    """The run's whole seconds at `elapsed`, one EARLY before its end counted in."""
    return int(elapsed + EARLY)


class Recorder:
    def __init__(self, *, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started
        self.latency = histogram()
        self.latency_by_kind: dict[str, HdrHistogram] = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (kind, outcome)
        self.failures_by_step: Counter[tuple[str, str]] = Counter()  # (kind, step)
        self.failures: list[Failure] = []
        self.failed = 0
        self.faults = 0  # failed checks outside any dialogue: failures, yet no dialogue started or ended
        self.internal_errors = 0  # of the failures (dialogues' and faults'), those of the simulator's own code
        self.internal_messages: list[str] = []  # the first INTERNAL_ERRORS_KEPT distinct ones
        self.started_count = 0
        self.reactions = 0  # of the dialogues started, those reacting to what arrived unasked
        self.completed = 0
        self.mo = 0
        self.mo_refused: Counter[str] = Counter()  # command_status name -> MOs the target refused with it, every one
        self.mo_refused_expected: Counter[str] = Counter()  # ... of them those a check called for (`refused`)
        self.unsolicited: Counter[str] = Counter()  # what arrived unasked: survey, reminder, notice, spam, other
        self.seconds: dict[int, _Second] = {}
        self._first_open = 0  # seconds before this one are closed (percentiles kept, histogram dropped)
        self.ended: float | None = None
        # When the load stopped starting dialogues, and what had ended by then: the throughput is measured over
        # the load, not the drain that waits for the last replies (a survey answered late, say).
        self.load_ended: float | None = None
        self._ended_by_load_end = (0, 0)  # (dialogues, MO)
        self.steady_from: float | None = None  # when the steady state begins (None: at `started`)
        self.steady_started = 0  # dialogues started in the steady window
        self.steady_ok = 0  # ... of which ended ok (so far)

    # ------------------------------------------------------------ feeding
    def dialogue_started(self, at: float | None = None, *, reaction: bool = False) -> None:
        at = time.monotonic() if at is None else at
        self.started_count += 1
        self._second(at).started += 1
        if reaction:
            self.reactions += 1
        elif self._steady(at):
            self.steady_started += 1

    def _steady(self, at: float) -> bool:
        """`at` lies in the steady window: after the ramp-up, before the load stopped starting dialogues."""
        start = self.started if self.steady_from is None else self.steady_from
        return start <= at and (self.load_ended is None or at < self.load_ended)

    def record(self, result: DialogueResult, *, reaction: bool = False) -> None:
        """A dialogue ended (ok or not); its steps' latencies join the histograms. Its MOs were counted as the
        target accepted them (`mo_accepted`)."""
        second = self._second(result.ended_at or None)
        for status_name in result.refused:
            self.refused(status_name)
        by_kind = self.latency_by_kind.get(result.kind)
        if by_kind is None:
            by_kind = self.latency_by_kind[result.kind] = histogram()
        for _step, seconds in result.steps:
            us = micros(seconds)
            self.latency.record_value(us)
            by_kind.record_value(us)
            second.record(us)
        self.outcomes[(result.kind, result.outcome)] += 1
        if result.ok:
            self.completed += 1
            second.completed += 1
            if not reaction and self._steady(result.started_at):
                self.steady_ok += 1
            return
        self.failed += 1
        second.failed += 1
        self._keep(result)

    def fault(self, result: DialogueResult) -> None:
        """A check outside any dialogue failed (what arrived unasked, the end checks): a failure like a dialogue's,
        kept with its transcript, but no dialogue: neither started nor ended, in no rate, no outcome, no timeline."""
        self.faults += 1
        self._keep(result)

    def _keep(self, result: DialogueResult) -> None:
        """A failure by its step, and the first MAX_FAILURES_KEPT with their transcripts; the simulator's own errors
        counted apart too, with their first few messages (the target's failures may crowd them out of `failures`)."""
        self.failures_by_step[(result.kind, result.step)] += 1
        if result.step == INTERNAL_ERROR:
            self.internal_errors += 1
            message = f"{result.kind}: {result.error}"
            if len(self.internal_messages) < INTERNAL_ERRORS_KEPT and message not in self.internal_messages:
                self.internal_messages.append(message)
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(
                Failure(result.kind, result.msisdn, result.step, result.error, result.ended_at - self.started,
                        [(t - self.started, d, p, x) for t, d, p, x in result.transcript])  # fmt: skip
            )

    def mo_accepted(self, count: int = 1, at: float | None = None) -> None:
        """The target accepted an MO (its submit_sm_resp, ESME_ROK, arrived): counted in that second."""
        self.mo += count
        self._second(at).mo += count

    def refused(self, status_name: str, *, expected: bool = False) -> None:
        """The target refused an MO (a text in parts once): `expected` when a check called for it (a spammer's text
        refused as its victims' reports require); else it failed its dialogue (`record` counts those)."""
        self.mo_refused[status_name] += 1
        if expected:
            self.mo_refused_expected[status_name] += 1

    def arrived_unasked(self, what: str) -> None:
        self.unsolicited[what] += 1

    def load_finished(self, at: float | None = None) -> None:
        """No more dialogues start (the drain follows): the throughput counts what ended by now, over this long."""
        self.load_ended = time.monotonic() if at is None else at
        self._ended_by_load_end = (self.completed + self.failed, self.mo)

    def finish(self, at: float | None = None) -> None:
        self.ended = time.monotonic() if at is None else at

    def _second(self, at: float | None) -> _Second:
        index = int(((time.monotonic() if at is None else at) - self.started))
        second = self.seconds.get(index)
        if second is None:
            second = self.seconds[index] = _Second()
            self._close_before(index - OPEN_SECONDS)
        return second

    def _close_before(self, index: int) -> None:
        while self._first_open < index:
            old = self.seconds.get(self._first_open)
            if old is not None:
                old.close()
            self._first_open += 1

    # ------------------------------------------------------------ reading
    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def snapshot(self) -> Snapshot:
        elapsed = self.elapsed
        last = self.seconds.get(_whole_seconds(elapsed) - 1) or _Second(latency=None)
        return Snapshot(
            elapsed=elapsed, started=self.started_count, completed=self.completed, failed=self.failed,
            faults=self.faults, mo=self.mo, rate=float(last.completed + last.failed), mo_rate=float(last.mo),
            p50_ms=self.latency.get_value_at_percentile(50) / 1000 if self.latency.get_total_count() else None,
            p99_ms=self.latency.get_value_at_percentile(99) / 1000 if self.latency.get_total_count() else None,
            in_flight=self.started_count - self.completed - self.failed,
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The report's data (JSON-able):

        - `duration_s` (load and drain), `load_s`; `dialogues`: {started, completed, failed, reactions: how many
          of those started reacted to what arrived unasked}
        - `throughput`: the steady state's {`ok_per_s`: dialogues the load started in it that ended ok,
          `started_per_s`} per second of it (reactions left out) (`steady_from_s` after the start, `steady_s` long; both rates None when the load ended
          before it began); over the whole load (`load_finished`, else the whole run), ramp-up included:
          `ended_per_s_whole_load` (every dialogue that ended then, ok or failed) and `mo_per_s` (MO accepted)
        - `latency_ms`: {p50, p90, p99, p99.9, max, mean} over every step (each None when nothing was timed), and
          `latency_ms_by_kind`
        - `faults`: checks outside any dialogue that failed (a receipt never requested, a text delivered twice...),
          no dialogues: in none of the above
        - `internal_errors`: {count, first}: of the failed dialogues and faults, those failed because the
          simulator's own code raised (step INTERNAL_ERROR), and the first few distinct messages ("kind: error")
        - `outcomes`: {kind: {outcome: count}} of the dialogues; `failures_by_step`: {kind: {step: count}}, the
          faults' too
        - `failures`: dialogues' and faults' together, up to 200, each {kind, msisdn, step, error, at, transcript: [{t, dir, peer, text}]}
        - `mo_refused`: {status: count} of every MO the target refused; `mo_refused_expected`: those of them a check
          called for (the rest failed their dialogues); `unsolicited`: {what: count}
        - `timeline`: one entry per second {t, started, completed, failed, mo, p50_ms, p99_ms}
        """
        duration = max(self.elapsed, 1e-9)
        if self.load_ended is not None:
            load_s = max(self.load_ended - self.started, 1e-9)
            dialogues, mo = self._ended_by_load_end
        else:
            load_s, dialogues, mo = duration, self.completed + self.failed, self.mo
        steady_start = self.started if self.steady_from is None else self.steady_from
        steady_from, steady_s = steady_start - self.started, self.started + load_s - steady_start
        outcomes: dict[str, dict[str, int]] = {}
        for (kind, outcome), count in sorted(self.outcomes.items()):
            outcomes.setdefault(kind, {})[outcome] = count
        by_step: dict[str, dict[str, int]] = {}
        for (kind, step), count in sorted(self.failures_by_step.items()):
            by_step.setdefault(kind, {})[step] = count
        last = max(self.seconds, default=-1)
        if self.ended is not None:
            self._close_before(last + 1)
        timeline = []
        for t in range(last + 1):
            s = self.seconds.get(t) or _Second(latency=None)
            p50, p99 = s.p50_ms, s.p99_ms
            if s.latency is not None and s.latency.get_total_count():  # still open: read without closing
                p50 = s.latency.get_value_at_percentile(50) / 1000
                p99 = s.latency.get_value_at_percentile(99) / 1000
            timeline.append({
                "t": t, "started": s.started, "completed": s.completed, "failed": s.failed, "mo": s.mo,
                "p50_ms": p50, "p99_ms": p99,
            })  # fmt: skip
        return {
            "duration_s": round(duration, 3),
            "load_s": round(load_s, 3),
            "dialogues": {"started": self.started_count, "completed": self.completed, "failed": self.failed,
                          "reactions": self.reactions},
            "faults": self.faults,
            "internal_errors": {"count": self.internal_errors, "first": list(self.internal_messages)},
            "throughput": {
                "ok_per_s": round(self.steady_ok / steady_s, 2) if steady_s > 0 else None,
                "started_per_s": round(self.steady_started / steady_s, 2) if steady_s > 0 else None,
                "steady_from_s": round(steady_from, 3),
                "steady_s": round(max(steady_s, 0.0), 3),
                "ended_per_s_whole_load": round(dialogues / load_s, 2),
                "mo_per_s": round(mo / load_s, 2),
            },
            "latency_ms": percentiles_ms(self.latency),
            "latency_ms_by_kind": {k: percentiles_ms(h) for k, h in sorted(self.latency_by_kind.items())},
            "outcomes": outcomes,
            "failures_by_step": by_step,
            "failures": [f.as_dict() for f in self.failures],
            "mo_refused": dict(self.mo_refused),
            "mo_refused_expected": dict(self.mo_refused_expected),
            "unsolicited": dict(self.unsolicited),
            "timeline": timeline,
        }
