"""The live progress display of a fleet run.

    async with Progress(recorder):
        await fleet.run()

On a terminal it is a rich table redrawn once per `interval` (elapsed,
dialogues ended / ok / failed, in flight, rate and MO per second over the
last whole second, p50 / p99 latency so far, the latest failures in red);
without one (CI, pipes, `force_plain=True`) it writes one plain line per
interval, then the latest failures, and a final `done` line with the run's
averages when it stops:

    t=12s dialogues=3400 ok=3398 failed=2 in_flight=14 rate=283/s mo=566/s p50=3.1ms p99=12.4ms

It costs the fleet next to nothing: one `recorder.snapshot()` per interval
from a task on the fleet's loop; rich's own refresh thread is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import IO, Any, Self

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .metrics import Recorder, Snapshot

__all__ = ["Progress", "format_line"]

FAILURES_PER_TICK = 5  # plain mode: failures listed per interval; the rest are counted
FAILURES_SHOWN = 3  # rich mode: the latest failures under the table


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


def _ms(value: float | None) -> str:
    """A latency; `-` before anything was timed (0.0 would read as instant replies), as the summary shows it."""
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def format_line(snap: Snapshot, *, final: bool = False, decimals: int = 0) -> str:
    """One plain progress line; `final` shows the run's average rates instead of the last second's.

    `decimals`: of the elapsed time (1 when the interval is under a second); with none, the time is the run's whole
    seconds, the end of the second whose rates the line shows.
    """
    ended = snap.completed + snap.failed
    if final:
        elapsed = max(snap.elapsed, 1e-9)
        rate, mo_rate = ended / elapsed, snap.mo / elapsed
        head = f"done t={snap.elapsed:.1f}s"
    else:
        rate, mo_rate = snap.rate, snap.mo_rate
        head = f"t={snap.elapsed:.{decimals}f}s" if decimals else f"t={snap.whole_seconds}s"
    return (
        f"{head} dialogues={ended} ok={snap.completed} failed={snap.failed}{f' faults={snap.faults}' if snap.faults else ''} "
        f"in_flight={snap.in_flight} "
        f"rate={_rate(rate)}/s mo={_rate(mo_rate)}/s p50={_ms(snap.p50_ms)}ms p99={_ms(snap.p99_ms)}ms"
    )


def _is_terminal(stream: IO[str]) -> bool:
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """Live progress of a run fed into `recorder`; an async context manager, or `start()` / `await stop()`.

    `stream`: where it writes (default stderr, keeping stdout for results).
    `force_plain`: True for plain lines, False for the rich display even off
    a terminal, None to decide by whether `stream` is a terminal. `console`:
    a rich Console to draw on (its file is the stream).
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        interval: float = 1.0,
        stream: IO[str] | None = None,
        force_plain: bool | None = None,
        console: Console | None = None,
        title: str = "smsgw fleet",
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.recorder = recorder
        self.interval = interval
        self.title = title
        if console is not None:
            self.stream: IO[str] = console.file
        else:
            self.stream = stream if stream is not None else sys.stderr
        self.plain = (not _is_terminal(self.stream) and console is None) if force_plain is None else force_plain
        self.console = console
        if not self.plain and console is None:
            self.console = _Console(file=self.stream, force_terminal=True if force_plain is False else None)
        self.last: Snapshot | None = None
        self._live: Live | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures_seen = 0  # of recorder.failures already listed (plain mode)
        self._failed_seen = 0  # of the failures (recorder.failed + faults) already counted (plain mode)
        self._broken = False  # the stream went away (a closed pipe): the run goes on without a display

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Begin showing progress (call from the fleet's running event loop)."""
        if self._task is not None:
            return
        if not self.plain:
            assert self.console is not None
            self._live = Live(
                self.renderable(self.recorder.snapshot()), console=self.console, auto_refresh=False,
                redirect_stdout=self.stream is sys.stdout, redirect_stderr=self.stream is sys.stderr,
            )  # fmt: skip
            try:
                self._live.start(refresh=True)
            except (OSError, ValueError):
                self._broken = True
                with contextlib.suppress(Exception):
                    self._live.stop()
                self._live = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet-progress")

    async def stop(self) -> None:
        """Stop updating and show the final figures (a `done` line, or the table marked finished)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # unlike `await task`, lets a cancellation of the caller through
        snap = self.recorder.snapshot()
        self.last = snap
        if self.plain:
            self._write_failures(snap)
            self._write(format_line(snap, final=True))
        elif self._live is not None:
            live, self._live = self._live, None
            try:
                if not self._broken:
                    live.update(self.renderable(snap, final=True), refresh=True)
            except (OSError, ValueError):
                self._broken = True
            finally:
                with contextlib.suppress(OSError, ValueError):
                    live.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while not self._broken:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + self.interval, loop.time())  # never a burst after a stall
            try:
                self.update()
            except Exception as exc:  # noqa: BLE001 - a display bug must not end the run
                self._write(f"progress display stopped: {exc!r}")
                self._broken = True

    # ------------------------------------------------------------ drawing
    def update(self) -> None:
        """Read one snapshot and show it (called once per interval while running)."""
        snap = self.recorder.snapshot()
        self.last = snap
        if self._broken:
            return
        if self.plain:
            self._write(format_line(snap, decimals=0 if self.interval >= 1 else 1))
            self._write_failures(snap)
        elif self._live is not None:
            try:
                self._live.update(self.renderable(snap), refresh=True)
            except (OSError, ValueError):
                self._broken = True

    def _write(self, line: str) -> None:
        if self._broken:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except AttributeError:
            pass  # a stream without flush
        except (OSError, ValueError):  # closed pipe or file
            self._broken = True

    def _write_failures(self, snap: Snapshot) -> None:
        """List the failures since the last interval (at most FAILURES_PER_TICK), count the rest."""
        failures = self.recorder.failures  # the first MAX_FAILURES_KEPT only
        new = failures[self._failures_seen :]
        listed = new[:FAILURES_PER_TICK]
        for f in listed:
            self._write(f"  FAILED {f.kind} {f.msisdn} at {f.step} after {f.at:.1f}s: {f.error}")
        unlisted = snap.failed + snap.faults - self._failed_seen - len(listed)
        if unlisted > 0:
            self._write(f"  ... and {unlisted} more failed (transcripts in the report)")
        self._failures_seen = len(failures)
        self._failed_seen = snap.failed + snap.faults

    def renderable(self, snap: Snapshot, *, final: bool = False) -> Group:
        """The rich display for one snapshot: the figures' table and the latest failures."""
        ended = snap.completed + snap.failed
        if final:
            elapsed = max(snap.elapsed, 1e-9)
            rate, mo_rate = ended / elapsed, snap.mo / elapsed
        else:
            rate, mo_rate = snap.rate, snap.mo_rate
        state = "[bold green]finished[/] · rates are the run's averages" if final else "[cyan]running[/] · rates over the last second"
        table = Table(
            title=f"[bold]{self.title}[/] · {state}", title_justify="left", title_style="", header_style="bold",
            box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True, expand=False,
        )  # fmt: skip
        for name in ("elapsed", "started", "ok", "failed", "in flight", "rate/s", "MO/s", "p50 ms", "p99 ms"):
            table.add_column(name, justify="right", no_wrap=True)
        failures = snap.failed + snap.faults
        failed_style = "bold white on red" if failures else "green"
        failed = f"{snap.failed:,}" + (f" +{snap.faults:,} faults" if snap.faults else "")  # faults: outside dialogues
        table.add_row(
            _clock(snap.elapsed if final else snap.whole_seconds), f"{snap.started:,}", f"[green]{snap.completed:,}[/]",
            Text(failed, style=failed_style), f"{snap.in_flight:,}",
            f"{_rate(rate)}", f"{_rate(mo_rate)}", _ms(snap.p50_ms), _ms(snap.p99_ms),
        )  # fmt: skip
        parts: list[Any] = [table]
        if failures:
            latest = self.recorder.failures[-FAILURES_SHOWN:]
            for f in latest:
                line = Text()
                line.append("  ✗ ", style="bold red")
                line.append(f"{f.kind} ", style="bold")
                line.append(f"{f.msisdn} at {f.step} ({f.at:.1f}s): ", style="dim")
                line.append(f.error, style="red")
                line.no_wrap, line.overflow = True, "ellipsis"
                parts.append(line)
            if failures > len(latest):
                parts.append(Text(f"  {failures - len(latest):,} more failed; transcripts in the report", style="dim"))
        return Group(*parts)


class _Console(Console):
    """Our own console: a closed pipe ends the display, not the process (rich's default exits)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(32, "the progress display's stream was closed")


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
