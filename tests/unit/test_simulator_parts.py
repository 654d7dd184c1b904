"""The fleet's parts of long texts received (simulator.esme.SharedParts): a text the fleet sent with a part refused
is told apart when its incomplete set is given up at the receiver, for two reassembly timeouts at most."""

from __future__ import annotations

import time

from gateway.smpp.segment import concat_info, segment_text
from simulator.esme import SharedParts

A, B = "8613800000001", "8613800000002"


def _given_up_after_first_part(parts: SharedParts, text: str, reference: int, now: float) -> None:
    """The first part of `text` (A to B) arrives at `now`; its others never do."""
    first = segment_text(text, reference=reference)[0]
    concat, body = concat_info(first.esm_class, first.short_message, first.tlvs)
    assert concat is not None
    parts.reassembler.add((A, B, concat.scheme), concat, (body, first.data_coding), now)


def _sent_in_part(parts: SharedParts, text: str, reference: int) -> None:
    first = segment_text(text, reference=reference)[0]
    parts.sent_in_part(A, B, first.short_message, first.esm_class, first.tlvs)


def test_a_text_sent_with_a_part_refused_is_told_apart_until_two_timeouts_have_passed() -> None:
    told: list[bool] = []
    parts = SharedParts(reassembly_timeout=1.0, on_given_up=lambda _s, _d, _seq, unsent: told.append(unsent))
    long_text = "x" * 400
    now = time.monotonic()
    _sent_in_part(parts, long_text, reference=7)
    _given_up_after_first_part(parts, long_text, 7, now)
    parts.expire(now + 1.5)
    assert told == [True]  # the sender knew it incomplete

    _sent_in_part(parts, long_text, reference=9)
    sent = time.monotonic()
    parts.expire(sent + 1.9)  # not two timeouts since it was sent: still known as sent in part
    _given_up_after_first_part(parts, long_text, 9, sent + 0.5)
    parts.expire(sent + 1.9)
    assert told == [True, True]

    _sent_in_part(parts, long_text, reference=8)  # refused in every part: nothing of it arrives
    parts.expire(time.monotonic() + 2.5)  # two timeouts later it is forgotten
    _given_up_after_first_part(parts, long_text, 8, now + 3)  # the reference comes round again, for a text whole when sent
    parts.expire(now + 10)
    assert told == [True, True, False]


def test_a_text_in_part_a_dialogue_was_told_of_is_not_given_up_again() -> None:
    """A receiver that gave up waiting is told which parts of the newest incomplete text came, once; that text, given
    up later, is no second failure (on_given_up not told of it), while another one still is."""
    given_up: list[list[int]] = []
    parts = SharedParts(reassembly_timeout=1.0, on_given_up=lambda _s, _d, seqnums, _unsent: given_up.append(seqnums))
    now = time.monotonic()
    _given_up_after_first_part(parts, "x" * 400, reference=3, now=now)
    _given_up_after_first_part(parts, "y" * 700, reference=4, now=now + 0.1)  # 5 parts
    assert parts.arrived_in_part(B, A) == ""  # (from B to A: none)
    assert parts.arrived_in_part(A, B) == "part(s) 1 of 5 arrived, part(s) 2, 3, 4, 5 missing"  # reference 4, the newest
    parts.expire(now + 2)
    assert given_up == [[1]]  # reference 3's alone

