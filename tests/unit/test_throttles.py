"""Throttle: one subscriber's pause after its receiver's ESME_RTHROTTLED / ESME_RMSGQFUL (gateway/throttles.py)."""

from __future__ import annotations

from gateway.throttles import FIRST_PAUSE, LONGEST_PAUSE, Throttle


def test_the_pause_doubles_at_each_refusal_of_the_mt_tried_again_up_to_the_longest() -> None:
    throttle = Throttle("carrier")
    pauses = [throttle.refused("m1")]
    for _ in range(6):
        throttle.trying = "m1"
        pauses.append(throttle.refused("m1"))
    assert pauses == [FIRST_PAUSE, 0.2, 0.4, 0.8, LONGEST_PAUSE, LONGEST_PAUSE, LONGEST_PAUSE]
    assert throttle.trying is None


def test_a_refusal_of_another_mt_sent_beside_begins_no_pause_of_its_own() -> None:
    """Sent in the same window as the one that began the pause, or while the oldest is tried again: refused too, it
    joins the MTs held, and the pause under way (or the answer awaited) stands."""
    throttle = Throttle("carrier")
    assert throttle.refused("m1") == FIRST_PAUSE
    assert throttle.refused("m2") is None
    throttle.trying = "m1"
    assert throttle.refused("m3") is None and throttle.trying == "m1"
    assert throttle.refused("m1") == 2 * FIRST_PAUSE
