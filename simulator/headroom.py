"""Whether the fleet itself kept up: a load generator that cannot keep up measures its own queueing.

    headroom = Headroom(lambda: fleet_in_flight)
    headroom.start()                    # as the load begins; it goes on through the drain
    headroom.started_late(0.004)        # the open loop started a dialogue 4 ms after it was due
    headroom.load_finished()            # the drain follows: no more in-flight samples
    headroom.stop(); headroom.summary()

- The event loop's lag: a timer every `TICK` s, and how late it fires. A
  reply that arrives is read, and timed, only when the loop comes to it: with
  a lag of the order of the target's latency, the latencies the fleet reports
  are its own queueing, not the target's.
- The open loop's schedule lag: how long after its due time each dialogue
  started. A scheduler behind its schedule offers less than the rate asked.
- The same tick samples the dialogues in flight during the load (not the
  drain, which only waits for the last of them): their mean is the
  concurrency the load really had (a closed loop may hold fewer than asked).
  These are the dialogues the load started, those `--concurrency` and
  `max_in_flight` bound, not the reactions to what arrives unasked (a survey
  answered, a spam text reported): README's "The figures" says how this
  differs from the live progress's `in_flight`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .metrics import histogram, micros, percentiles_ms

__all__ = ["TICK", "Headroom"]

TICK = 0.02  # seconds between the loop-lag timer's firings (and in-flight samples)


class Headroom:
    def __init__(self, in_flight: Callable[[], int], *, tick: float = TICK) -> None:
        self.in_flight = in_flight
        self.tick = tick
        self.loop_lag = histogram()
        self.schedule_lag = histogram()
        self._in_flight_sum = 0
        self._samples = 0
        self._loading = False  # in-flight samples are taken while the load lasts
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """A load begins (a later phase's too): its dialogues in flight are sampled until load_finished()."""
        self._loading = True
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + self.tick, self._fire, loop.time() + self.tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def load_finished(self) -> None:
        """The load stopped starting dialogues: the loop's lag is still measured through the drain, not what is
        in flight (a drain waiting for a late answer would halve a closed loop's mean)."""
        self._loading = False

    def _fire(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.loop_lag.record_value(micros(max(0.0, now - due)))
        if self._loading:
            self._in_flight_sum += self.in_flight()
            self._samples += 1
        # From now, not from `due`: after a stall the timer measures the next lag, it does not fire a burst.
        self._timer = loop.call_at(now + self.tick, self._fire, now + self.tick)

    def started_late(self, seconds: float) -> None:
        """The open loop started a dialogue `seconds` after its due time."""
        self.schedule_lag.record_value(micros(max(0.0, seconds)))

    def summary(self) -> dict[str, Any]:
        """{loop_lag_ms, schedule_lag_ms: {p50, p90, p99, p99.9, max, mean} or None (not measured: a closed
        loop has no schedule), in_flight_mean}."""
        return {
            "loop_lag_ms": percentiles_ms(self.loop_lag) if self.loop_lag.get_total_count() else None,
            "schedule_lag_ms": percentiles_ms(self.schedule_lag) if self.schedule_lag.get_total_count() else None,
            "in_flight_mean": round(self._in_flight_sum / self._samples, 1) if self._samples else None,
        }
