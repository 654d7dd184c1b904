"""gateway/ids.MessageIds: ids never repeat and keep their order across restarts, also after the host clock was
stepped back (README "Time")."""

from __future__ import annotations

import pytest

from gateway.ids import MessageIds, later_short_id


def test_a_start_after_the_clock_was_stepped_back_begins_after_the_largest_id_held() -> None:
    now = MessageIds().next()
    later = f"{int(now[:11], 16) + 3_600_000:011x}00000007/2"  # a run an hour "ahead", a submit_multi's 2nd destination
    ids = MessageIds()
    ids.continue_after(later)
    assert [ids.next(), ids.next()] == [f"{int(later[:11], 16) + 1:011x}{n:08x}" for n in (1, 2)]


@pytest.mark.parametrize(
    "last",
    [None, "00000002", "zzzzzzzzzzz00000001", "fffffffffff00000001"],
    ids=["an empty store", "an SMPP 3.3 alias", "not one of ours", "the last start 11 hex digits hold"],
)
def test_a_start_keeps_its_own_time_unless_a_later_run_of_ours_is_held(last: str | None) -> None:
    """After the last start 11 hex digits hold (the year 2527), the next was 12 digits long: a 20-character id that
    sorts before the 19-character ones, so the start after it took the same prefix again and its ids were taken."""
    ids = MessageIds()
    own = ids.next()
    ids.continue_after(last)
    following = ids.next()
    assert (len(following), following[:11], following > own) == (19, own[:11], True)


def test_a_start_in_the_same_millisecond_as_the_last_run_moves_on_past_it() -> None:
    """continue_after: a start in the very millisecond of the run whose ids the store holds (a restart that quick, a
    clock stepped back onto it) made that run's ids again, every submission ESME_RSYSERR (the id taken); it starts
    after that run's."""
    ids = MessageIds()
    last_run = ids.next()  # the store holds an id of a run that began in this very millisecond
    ids.continue_after(last_run)
    following = ids.next()
    assert following > last_run and following[:11] != last_run[:11]


@pytest.mark.parametrize(
    ("one", "other", "later"),
    [("00000001", "00000002", "00000002"), ("00000002", "00000001", "00000002"), ("fffffffe", "00000001", "00000001"),
     ("00000001", "fffffffe", "00000001"), (None, "00000003", "00000003"), ("00000003", None, "00000003"),
     (None, None, None)],
)  # fmt: skip
def test_of_two_short_ids_the_later_is_the_one_given_after_the_other_across_the_wrap(
    one: str | None, other: str | None, later: str | None
) -> None:
    """As SqliteStore.last_short_id chooses between the alias the messages hold last and the one retention kept."""
    assert later_short_id(one, other) == later
