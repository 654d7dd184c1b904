"""A receiver's flow control: a deliver_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL (README "Delivery")."""

from __future__ import annotations

import time

import pytest

from gateway.clock import SimulatedClock
from gateway.flow_control import FlowControl
from tests.smpp_handset import (
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RTHROTTLED,
    is_receipt,
    receipt_fields,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
C1, C2 = "8613000000001", "8613000000002"  # account carrier
MESSAGE_STATE_EXPIRED = 3


@pytest.mark.parametrize("refusal", [ESME_RTHROTTLED, ESME_RMSGQFUL])
def test_an_mt_the_receiver_throttles_goes_again_after_a_pause_not_after_its_retry(make_gateway, handset, refusal):
    """Taken as a failed attempt, it waited out retry_backoff (here an hour; 2 s, 10 s, ... by default), the bind
    meanwhile sending the MTs behind it a whole window at a time: a carrier taking 100 a second got 400 of 1,000 MTs
    in 160 s, 3,000 refused."""
    gw = make_gateway(gateway={"retry_backoff": [3600]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(refusal)
    submitted_at = time.monotonic()
    resp = a.submit(B, "not now", registered_delivery=1)
    assert [text(b.expect()) for _ in range(2)] == ["not now"] * 2  # refused, then acknowledged
    assert time.monotonic() - submitted_at >= FlowControl.FIRST_PAUSE  # the bind paused between them
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, "DELIVRD", "000")
    assert gw.call(gw.gateway.store.get(resp.message_id.decode())).attempts == 0  # no failed attempt counted
    b.expect_none(0.3)


def test_mts_throttled_together_go_again_in_the_order_they_were_accepted(make_gateway, handset):
    """Refusals answered out of order: each MT goes back ahead of those queued behind it, after the older ones given
    back before it."""
    gw = make_gateway(gateway={"window": 4, "retry_backoff": [0.2]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(1, 6):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    in_flight = {text(pdu): pdu for pdu in b.expect_many(4)}  # m5 waits in the bind's queue: the window is full
    b.answering = True
    for name in ("m2", "m4", "m1", "m3"):
        b.answer(in_flight[name], ESME_RTHROTTLED)
    assert [text(pdu) for pdu in b.expect_many(5)] == ["m1", "m2", "m3", "m4", "m5"]
    b.expect_none(0.3)


def test_a_receiver_refusing_one_subscribers_mts_for_flow_control_does_not_hold_up_the_others(make_gateway, handset):
    """The bind's one deliver_sm after a pause went to the head of its queue, the refused MT: sent again and again
    while the MTs to every other subscriber waited behind it."""
    gw = make_gateway(gateway={"window": 1})
    a = handset(A, gw=gw)
    for n in range(1, 4):
        for to in (C1, C2):
            assert a.submit(to, f"{to[-1]}.{n}").status == ESME_ROK
    carrier = handset(bind=None, gw=gw)

    def queue_full_for_c1(pdu) -> int:
        carrier.inbox.append(pdu)
        return ESME_RMSGQFUL if pdu.destination_addr == C1.encode() else ESME_ROK

    carrier.client.set_message_received_handler(queue_full_for_c1)
    carrier.bind("rx", "carrier")
    got = carrier.expect_many(3, timeout=10, predicate=lambda pdu: pdu.destination_addr == C2.encode())
    assert [text(pdu) for pdu in got] == ["2.1", "2.2", "2.3"]


def test_an_mt_the_receiver_throttles_until_its_validity_ends_expires_with_that_refusal(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    resp = a.submit(B, "for 10 s", registered_delivery=1, validity_period="000000000010000R")
    b.answer(b.expect(), ESME_RTHROTTLED)
    sent_again = b.expect()
    clock.advance(60)
    b.answer(sent_again, ESME_RTHROTTLED)  # back in the bind's queue, out of validity
    receipt = receipt_fields(a.expect(timeout=10, predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, "EXPIRED", "088")
    queried = a.query(resp.message_id)
    assert (queried.message_state, queried.error_code) == (MESSAGE_STATE_EXPIRED, ESME_RTHROTTLED)
    b.expect_none(0.5)


def test_after_a_throttled_answer_the_bind_sends_one_deliver_sm_and_opens_its_window_as_they_are_accepted(
    make_gateway, handset
):
    """A whole window sent again at each pause was refused again: 3,000 deliver_sm refused for 400 MTs delivered."""
    gw = make_gateway()
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "m1").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)
    for n in range(2, 5):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    sent_again = b.expect()
    assert text(sent_again) == "m1"
    b.expect_none(0.3)  # the others wait for its answer
    b.answering = True
    b.answer(sent_again)
    assert [text(pdu) for pdu in b.expect_many(3)] == ["m2", "m3", "m4"]
