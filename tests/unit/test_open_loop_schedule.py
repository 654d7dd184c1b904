"""The open loop's schedule (simulator/fleet.py _schedule): what is due when, and when it is over. README: "the first
dialogue starts at once, so `--rate R --duration D` starts R x D"."""

from __future__ import annotations

import pytest

from simulator.fleet import _schedule
from simulator.scenario import Load


def started(load: Load, wakes: list[float]) -> tuple[int, float]:
    """What the open loop starts waking at `wakes` (seconds into the load), as it does: everything due at each wake,
    until the schedule is over; (how many, when it was over)."""
    count = 0
    for t in wakes:
        due, over = _schedule(t, load)
        count = max(count, due)
        if over:
            return count, t
    raise AssertionError(f"not over after {wakes}")


@pytest.mark.parametrize("late", [0.0, 0.0002, 0.0012, 0.05, 3.0])
def test_a_wake_up_past_the_end_starts_what_was_due_before_it(late: float) -> None:
    """The last dialogue of 1000/s for 2 s is due 1 ms before the end: the loop, waking after the end, stopped
    without it (1999 started about half the time, the missing one counted nowhere)."""
    load = Load(mode="open", rate=1000.0, duration=2.0)
    assert started(load, [0.0, 1.0, 1.9985, 2.0 + late]) == (2000, 2.0 + late)


def test_the_schedule_is_over_at_its_end_not_before() -> None:
    load = Load(mode="open", rate=1000.0, duration=2.0)
    assert _schedule(0.0, load) == (1, False)  # the first at once
    assert _schedule(1.9995, load) == (2000, False)  # the last is due: started, then the loop sleeps to the end
    assert _schedule(2.0, load) == (2000, True)  # the one due at the end is not the load's


@pytest.mark.parametrize(("rate", "duration", "ramp_up", "total"), [
    (1000.0, 2.0, 0.0, 2000), (150.0, 3.0, 0.0, 450), (3.0, 1.5, 0.0, 5),  # R x D = 4.5: due at 0, 1/3, ... 4/3
    (2.2, 60.0, 0.0, 132),  # 2.2 x 60 is 132.00000000000003 in floats: the 133rd is due at the end, not before
    (0.1, 30.0, 0.0, 3), (150.0, 10.0, 3.0, 1275),  # R x (D - ramp_up / 2) with a ramp-up
    (100.0, 2.0, 4.0, 50),  # ended within its ramp-up: R x D^2 / (2 ramp_up), the first at once
    (3000.0, 1.0, 0.0, 3000),  # the last due 0.33 ms before the end: a dialogue is due at the end only within 1 ns of it
])  # fmt: skip
def test_a_load_starts_what_falls_due_within_its_duration(rate: float, duration: float, ramp_up: float, total: int) -> None:
    load = Load(mode="open", rate=rate, duration=duration, ramp_up=ramp_up)
    assert started(load, [duration / 2, duration + 0.01]) == (total, duration + 0.01)


def test_a_load_of_a_count_is_never_over_by_its_schedule() -> None:
    load = Load(mode="open", rate=1000.0, duration=0, count=10)
    assert _schedule(3600.0, load) == (3_600_001, False)  # the count ends it (Fleet._done_starting)
