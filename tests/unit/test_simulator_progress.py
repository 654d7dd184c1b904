"""The live progress display: plain lines off a terminal, a rich table on one, one snapshot per interval."""

from __future__ import annotations

import asyncio
import io
import re
import time

import pytest
from rich.console import Console

from simulator.dialogues import DialogueResult
from simulator.metrics import Recorder, Snapshot
from simulator.progress import Progress, format_line

LINE = re.compile(
    r"t=\d+\.\ds dialogues=(\d+) ok=(\d+) failed=(\d+) in_flight=(\d+) rate=[\d.]+/s mo=[\d.]+/s p50=[\d.]+ms p99=[\d.]+ms"
)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Broken(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def finished(recorder: Recorder, ok: bool = True) -> None:
    now = time.monotonic()
    recorder.dialogue_started(at=now)
    result = DialogueResult("rating", "8613800000009", ok, "rated" if ok else "failed", steps=[("s", 0.004)], mo=2,
                            started_at=now, ended_at=now)  # fmt: skip
    if not ok:
        result.step, result.error = "1->thanks", "expected <survey.thanks> & 谢谢"
    recorder.record(result)


async def drive(recorder: Recorder, progress: Progress, *, seconds: float, fail_every: int = 0) -> None:
    async with progress:
        deadline, i = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            i += 1
            finished(recorder, ok=not (fail_every and i % fail_every == 0))
            await asyncio.sleep(0.002)


def test_format_line() -> None:
    snap = Snapshot(elapsed=12.3, started=3405, completed=3398, failed=2, mo=6800, rate=283.0, mo_rate=566.0,
                    p50_ms=3.14, p99_ms=12.44, in_flight=5)  # fmt: skip
    assert format_line(snap) == "t=12s dialogues=3400 ok=3398 failed=2 in_flight=5 rate=283/s mo=566/s p50=3.1ms p99=12.4ms"
    assert format_line(snap, final=True) == (
        "done t=12.3s dialogues=3400 ok=3398 failed=2 in_flight=5 rate=276/s mo=553/s p50=3.1ms p99=12.4ms"
    )
    slow = Snapshot(elapsed=2.0, started=3, completed=3, failed=0, mo=3, rate=1.0, mo_rate=1.0, p50_ms=150.0,
                    p99_ms=1200.0, in_flight=0)  # fmt: skip
    assert format_line(slow, final=True).endswith("rate=1.5/s mo=1.5/s p50=150ms p99=1200ms")


def test_a_line_shows_the_rates_of_the_second_its_time_names() -> None:
    """The display's timer fires a little early (asyncio's timers, and it starts before the load resets the run's
    clock): at 2.999 s the line said t=3s with the rates of second 1, the second before last, and one second's
    rate showed twice in a row."""
    recorder = Recorder(started=100.0)
    for second, count in ((1, 5), (2, 7)):
        for _ in range(count):
            recorder.dialogue_started(at=100.5 + second)
            recorder.mo_accepted(2, at=100.5 + second)
            recorder.record(DialogueResult("rating", "8613800000009", True, "rated", steps=[("s", 0.004)], mo=2,
                                           started_at=100.5 + second, ended_at=100.6 + second))  # fmt: skip
    for at, shown in ((102.999, "t=3s"), (103.0, "t=3s"), (103.6, "t=3s"), (103.96, "t=4s")):
        recorder.finish(at=at)
        snap = recorder.snapshot()
        rates = (7.0, 14.0) if shown == "t=3s" else (0.0, 0.0)  # second 2; then second 3, when nothing ended
        assert (snap.rate, snap.mo_rate) == rates and format_line(snap).startswith(f"{shown} dialogues=12 "), at
        out = io.StringIO()
        Console(file=out, width=200).print(Progress(recorder, console=Console(file=out)).renderable(snap))
        assert f" 0:0{shown[2]} " in out.getvalue(), out.getvalue()  # the live table's elapsed time too


def test_a_latency_nothing_has_timed_yet_shows_as_absent_not_0_ms() -> None:
    """Before the first reply (or against a target that never answers) the line said p50=0.0ms p99=0.0ms."""
    snap = Recorder().snapshot()
    assert (snap.p50_ms, snap.p99_ms) == (None, None)
    assert format_line(snap).endswith("p50=-ms p99=-ms")


async def test_plain_lines_when_not_a_terminal() -> None:
    recorder, out = Recorder(), io.StringIO()
    progress = Progress(recorder, interval=0.05, stream=out)
    assert progress.plain  # a StringIO is no terminal
    calls = 0
    snapshot = recorder.snapshot

    def counted() -> Snapshot:
        nonlocal calls
        calls += 1
        return snapshot()

    recorder.snapshot = counted  # type: ignore[method-assign]
    started = time.monotonic()
    await drive(recorder, progress, seconds=0.4, fail_every=40)
    ran = time.monotonic() - started
    lines = out.getvalue().splitlines()
    periodic = [m for m in map(LINE.fullmatch, lines) if m]
    assert len(periodic) >= 4, lines
    ended = [int(m[1]) for m in periodic]
    assert ended == sorted(ended) and all(int(m[1]) == int(m[2]) + int(m[3]) for m in periodic)
    assert lines[-1].startswith("done t=") and f"dialogues={recorder.completed + recorder.failed} " in lines[-1]
    assert f"failed={recorder.failed} " in lines[-1] and recorder.failed >= 2
    failures = [line for line in lines if line.startswith("  FAILED")]
    assert failures and failures[0] == (
        f"  FAILED rating 8613800000009 at 1->thanks after {recorder.failures[0].at:.1f}s: expected <survey.thanks> & 谢谢"
    )
    assert len(failures) + sum(int(re.search(r"and (\d+) more", line)[1]) for line in lines if "more failed" in line) == recorder.failed
    assert calls <= ran / 0.05 + 2  # one snapshot per interval, one at the end


async def test_plain_lists_a_few_failures_per_interval_and_counts_the_rest() -> None:
    recorder, out = Recorder(), io.StringIO()
    async with Progress(recorder, interval=10, stream=out):
        for _ in range(8):
            finished(recorder, ok=False)
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("  FAILED") for line in lines) == 5
    assert "  ... and 3 more failed (transcripts in the report)" in lines
    assert lines[-1].startswith("done t=") and "failed=8 " in lines[-1]


async def test_rich_table_on_a_terminal() -> None:
    recorder, out = Recorder(), io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system="truecolor")
    progress = Progress(recorder, interval=0.05, console=console)
    assert not progress.plain
    await drive(recorder, progress, seconds=0.3, fail_every=25)
    screen = out.getvalue()
    assert "\x1b[" in screen  # drawn with terminal control codes
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "running" in plain and "finished" in plain
    for column in ("elapsed", "started", "ok", "failed", "in flight", "rate/s", "MO/s", "p50", "p99"):
        assert column in plain
    assert f"{recorder.completed:,}" in plain and "expected <survey.thanks> & 谢谢" in plain
    assert "\x1b[1;37;41m" in screen  # failures highlighted


def test_terminal_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.delenv("TERM", raising=False)
    assert not Progress(recorder, stream=TTY()).plain
    assert Progress(recorder, stream=TTY(), force_plain=True).plain
    assert not Progress(recorder, stream=io.StringIO(), force_plain=False).plain
    monkeypatch.setenv("TERM", "dumb")
    assert Progress(recorder, stream=TTY()).plain
    with pytest.raises(ValueError):
        Progress(recorder, interval=0)


async def test_a_closed_stream_does_not_stop_the_run() -> None:
    recorder = Recorder()
    await drive(recorder, Progress(recorder, interval=0.02, stream=Broken()), seconds=0.1)
    await drive(recorder, Progress(recorder, interval=0.02, stream=Broken(), force_plain=False), seconds=0.1)
    assert recorder.completed > 0
