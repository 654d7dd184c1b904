"""A receiver's flow control: a deliver_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL (README "Delivery")."""

from __future__ import annotations

import os
import signal
import time

import pytest

from gateway.clock import SimulatedClock
from gateway.delivery import Delivery
from gateway.throttles import FIRST_PAUSE, LONGEST_PAUSE
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    Handset,
    RawLink,
    answer,
    cancel_sm,
    is_receipt,
    receipt_fields,
    replace_sm,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
C1, C2, C3, C4 = (f"861300000000{n}" for n in range(1, 5))  # account carrier
MESSAGE_STATE_EXPIRED = 3


@pytest.mark.parametrize("refusal", [ESME_RTHROTTLED, ESME_RMSGQFUL])
def test_an_mt_the_receiver_throttles_goes_again_after_a_pause_not_after_its_retry(make_gateway, handset, refusal):
    """Taken as a failed attempt, it waited out retry_backoff (here an hour; 2 s, 10 s, ... by default) while the bind
    went on sending the MTs behind it: a carrier taking 100 a second got 400 of 1,000 MTs in 160 s, 3,000 refused."""
    gw = make_gateway(gateway={"retry_backoff": [3600]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answers.append(refusal)
    submitted_at = time.monotonic()
    resp = a.submit(B, "not now", registered_delivery=1)
    assert [text(b.expect()) for _ in range(2)] == ["not now"] * 2  # refused, then acknowledged
    assert time.monotonic() - submitted_at >= FIRST_PAUSE
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, "DELIVRD", "000")
    assert gw.call(gw.gateway.store.get(resp.message_id.decode())).attempts == 0  # no failed attempt counted
    b.expect_none(0.3)


def test_a_subscribers_mts_queued_behind_one_the_receiver_throttles_do_not_overtake_it(make_gateway, handset):
    """As a failed attempt it waited for its retry while the MTs queued behind it to the same subscriber went out."""
    gw = make_gateway(gateway={"window": 1, "retry_backoff": [0.2]})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(1, 4):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)  # m1; m2 and m3 wait in the bind's queue (window 1)
    b.answering = True
    assert [text(pdu) for pdu in b.expect_many(3)] == ["m1", "m2", "m3"]
    b.expect_none(0.3)


def test_the_mts_of_a_subscriber_refused_for_good_stay_out_of_the_way_and_go_out_once_a_pause(make_gateway, handset):
    """The others go at once; the refused subscriber's MTs cost one deliver_sm per pause (0.1 s doubling to
    LONGEST_PAUSE), not each its own retry (here every 0.2 s), nor a bind's whole queue held behind them."""
    gw = make_gateway(gateway={"window": 2, "retry_backoff": [0.2]})
    a = handset(A, gw=gw)
    for n in range(1, 21):
        assert a.submit(C1, f"1.{n}").status == ESME_ROK
    for n in range(1, 4):
        assert a.submit(C2, f"2.{n}").status == ESME_ROK
    carrier = handset(bind=None, gw=gw)

    def queue_full_for_c1(pdu) -> int:
        carrier.inbox.append(pdu)
        return ESME_RMSGQFUL if pdu.destination_addr == C1.encode() else ESME_ROK

    carrier.client.set_message_received_handler(queue_full_for_c1)
    carrier.bind("rx", "carrier")
    bound_at = time.monotonic()
    others = carrier.expect_many(3, timeout=5, predicate=lambda pdu: pdu.destination_addr == C2.encode())
    assert [text(pdu) for pdu in others] == ["2.1", "2.2", "2.3"]
    carrier.expect_none(3.0 - (time.monotonic() - bound_at), predicate=lambda pdu: pdu.destination_addr != C1.encode())
    refused = [text(pdu) for pdu in carrier.inbox if pdu.destination_addr == C1.encode()]
    # Sent at once, the window's first two; then, alone, the oldest after each pause: 0.1, 0.2, 0.4, 0.8, 1.0 s...
    assert len(refused) <= 2 + 7, refused
    assert set(refused[2:]) == {"1.1"}, refused


def test_an_mt_the_receiver_throttles_until_its_validity_ends_expires_with_that_refusal(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    resp = a.submit(B, "for 10 s", registered_delivery=1, validity_period="000000000010000R")
    b.answer(b.expect(), ESME_RTHROTTLED)  # held out of the bind for a pause
    clock.advance(60)
    receipt = receipt_fields(a.expect(timeout=10, predicate=is_receipt))
    assert (receipt["id"].encode(), receipt["stat"], receipt["err"]) == (resp.message_id, "EXPIRED", "088")
    queried = a.query(resp.message_id)
    assert (queried.message_state, queried.error_code) == (MESSAGE_STATE_EXPIRED, ESME_RTHROTTLED)
    b.expect_none(LONGEST_PAUSE + 0.5)


def test_after_a_throttled_answer_the_bind_has_fewer_deliver_sm_in_flight_until_some_are_accepted(make_gateway, handset):
    """Its window halves at each refusal and widens by one at each acceptance: the receiver sent a window's worth
    each time one was refused, and refused it (3,000 deliver_sm refused for 400 MTs delivered)."""
    gw = make_gateway(gateway={"window": 4})
    a = handset(A, gw=gw)
    carrier = handset(bind=None, gw=gw)
    carrier.bind("rx", "carrier")
    carrier.answering = False
    for n, to in enumerate((C1, C2, C3, C4, C1, C2), start=1):
        assert a.submit(to, f"m{n}").status == ESME_ROK
    in_flight = {text(pdu): pdu for pdu in carrier.expect_many(4)}  # m5, m6 wait in the bind's queue
    carrier.answer(in_flight["m1"], ESME_RTHROTTLED)  # window 2, three in flight: C1's m5 held with m1
    carrier.expect_none(0.3)
    carrier.answer(in_flight["m2"])  # window 3, two in flight: m6 goes
    assert text(carrier.expect()) == "m6"
    carrier.expect_none(0.3)  # m1, sent again after its pause, waits in the bind's queue; m5 waits for m1's answer


S = [f"86130000001{n:02}" for n in range(8)]  # account carrier


def bind_carrier_unanswering(handset, gw) -> Handset:
    carrier = handset(bind=None, gw=gw)
    carrier.bind("rx", "carrier")
    carrier.answering = False
    return carrier


def submit_to(a: Handset, subscribers: list[str]) -> None:
    for to in subscribers:
        assert a.submit(to, f"to {to}").status == ESME_ROK


def expect_in_flight(carrier: Handset, count: int) -> None:
    """Exactly `count` more deliver_sm come, and no more: the bind's window is full."""
    carrier.expect_many(count)
    carrier.expect_none(0.3)


@pytest.mark.parametrize(("refusal", "window_after"), [(ESME_RTHROTTLED, 2), (ESME_RMSGQFUL, 4)])
def test_a_subscribers_queue_full_leaves_the_bind_its_window_and_a_throttled_answer_halves_it(
    make_gateway, handset, refusal, window_after
):
    """ESME_RMSGQFUL, commonly the subscriber's queue full, halved it too: a carrier refusing 10% of its subscribers
    for good, at a 200 ms round trip, kept it at 9-18 of 100, the others' MTs seconds late."""
    gw = make_gateway(gateway={"window": 4})
    a = handset(A, gw=gw)
    carrier = bind_carrier_unanswering(handset, gw)
    submit_to(a, S[:1])
    carrier.answer(carrier.expect(), refusal)
    carrier.expect(predicate=lambda pdu: pdu.destination_addr == S[0].encode())  # tried again after the pause, unanswered
    submit_to(a, S[1:])
    expect_in_flight(carrier, window_after - 1)


def test_an_mt_tried_again_and_throttled_again_does_not_narrow_the_bind_s_window(make_gateway, handset):
    """It probes its subscriber, held out of the bind: each trial of a subscriber refused for good halved it again."""
    gw = make_gateway(gateway={"window": 4})
    a = handset(A, gw=gw)
    carrier = bind_carrier_unanswering(handset, gw)
    submit_to(a, S[:1])
    carrier.answer(carrier.expect(), ESME_RTHROTTLED)  # window 2
    carrier.answer(carrier.expect(), ESME_RTHROTTLED)  # tried again after the pause: still 2
    carrier.expect()  # tried again after a longer pause, unanswered: one of 2 in flight
    submit_to(a, S[1:])
    expect_in_flight(carrier, 1)


def test_throttled_answers_to_deliver_sm_sent_together_halve_the_bind_s_window_once(make_gateway, handset):
    """Once a round trip, as TCP's window at a loss: each refusal of a window sent at the rate it had halved it again."""
    gw = make_gateway(gateway={"window": 4})
    a = handset(A, gw=gw)
    carrier = bind_carrier_unanswering(handset, gw)
    submit_to(a, S)
    in_flight = carrier.expect_many(4)  # the other four wait in the bind's queue
    carrier.answer(in_flight[0], ESME_RTHROTTLED)  # window 2: three in flight
    carrier.answer(in_flight[1], ESME_RTHROTTLED)  # sent before it narrowed: still 2
    carrier.expect_none(0.3)
    carrier.answer(in_flight[2])  # window 3, one in flight
    expect_in_flight(carrier, 2)


def test_an_mt_accepted_while_its_subscriber_is_throttled_waits_for_the_one_refused(make_gateway, handset):
    gw = make_gateway()
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "m1").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)
    assert a.submit(B, "m2").status == ESME_ROK  # held with m1, not sent ahead of it
    tried_again = b.expect()
    assert text(tried_again) == "m1"
    b.expect_none(0.3)  # m2 waits for m1's answer
    b.answer(tried_again)
    assert text(b.expect()) == "m2"


def test_mts_held_for_a_receiver_that_goes_meanwhile_reach_the_next_bind_in_order(make_gateway, handset):
    """The one tried again after the pause found no bind and waited in the store; the next held went in its place, and
    so on one a LONGEST_PAUSE: a bind that came meanwhile got the one tried then first, the older ones read back from
    the store after it (one MT out of order per subscriber: 100 of 1,000)."""
    gw = make_gateway()
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(1, 6):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    b.expect_many(5)
    b.answer_held(ESME_RTHROTTLED)
    b.unbind()
    time.sleep(LONGEST_PAUSE * 1.5)  # (the pauses run on the gateway's timers: nothing to await from here)
    again = handset(B, gw=gw)
    assert [text(pdu) for pdu in again.expect_many(5)] == ["m1", "m2", "m3", "m4", "m5"]


def test_mts_held_for_a_bind_that_throttles_follow_the_one_another_bind_accepted_there_in_order(make_gateway, handset):
    """The one tried again after the pause goes to another bind serving the subscriber; accepted there, the held ones
    followed it to whichever bind was least busy, the throttling one too: refused again there, half of them went out
    behind newer ones (regression review: 965 of 2,000 out of order at a bind taking all, beside one taking 50 a
    second; 0 on main)."""
    gw = make_gateway()
    a = handset(A, gw=gw)
    throttling = handset(C1, system_id="carrier", bind="rx", gw=gw)
    throttling.answering = False
    texts = [f"m{n}" for n in range(1, 7)]
    for mt in texts:
        assert a.submit(C1, mt).status == ESME_ROK
    throttling.expect_many(len(texts))  # all in flight (window 100)
    taking = handset(C1, system_id="carrier", bind="rx", gw=gw)
    throttling.answer_held(ESME_RTHROTTLED)  # all held; after the pause m1 goes to `taking`, which accepts it
    assert [text(pdu) for pdu in taking.expect_many(len(texts), timeout=5)] == texts
    taking.expect_none(0.3)


def test_an_mt_replaced_while_held_goes_out_once_with_its_new_text_and_the_others_after_it_in_order(
    make_gateway, handset
):  # fmt: skip
    """Taken out of its wait by the replace_sm, its id stayed in the throttle's; held again, it was there twice, and the
    acceptance that lifted the throttle failed on it (TypeError): the bind's connection closed, the other MTs stuck."""
    gw = make_gateway()
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "m1").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)
    replaced = a.submit(B, "m2").message_id.decode()  # held with m1
    assert a.submit(B, "m3").status == ESME_ROK
    tried_again = b.expect()
    assert text(tried_again) == "m1"
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(replace_sm(2, A, replaced, b"m2 replaced"))
        assert answer(esme, 2) == (ESME_ROK, b"")
    b.answering = True
    b.answer(tried_again)
    assert [text(pdu) for pdu in b.expect_many(2)] == ["m2 replaced", "m3"]
    b.expect_none(0.5)


def test_a_held_mt_whose_cancel_sm_could_not_be_committed_is_held_again_and_goes_after_the_one_refused(
    make_gateway, handset, tmp_path
):  # fmt: skip
    """Taken out of its wait, it waits again as it was (Delivery._wait_again): held with its subscriber's MTs, no timer
    of its own to wait out."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db")
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "m1").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)
    kept = a.submit(B, "m2").message_id.decode()  # held with m1
    tried_again = b.expect()
    home.rename(tmp_path / "moved")
    os.kill(gw.gateway.store.writer.pid, signal.SIGKILL)
    assert eventually(lambda: not gw.gateway.store.can_commit)
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(cancel_sm(2, A, kept))
        assert answer(esme, 2)[0] == ESME_RSYSERR
    b.expect_none(0.5)  # held still: m1 is not answered
    (tmp_path / "moved").rename(home)
    assert eventually(lambda: gw.gateway.store.can_commit, timeout=10)
    b.answering = True
    b.answer(tried_again)
    assert text(b.expect()) == "m2"
    b.expect_none(0.3)

# `gateway serve` runs on uvloop (make_gateway's gateway on asyncio's own loop), whose TimerHandle.cancel() raises
# NotImplementedError for a handle it never scheduled: the held MTs' handle was one (gateway/throttles.py, HOLDING).
def bound(port: int, number: str, system_id: str) -> Handset:
    phone = Handset(port, number)
    phone.bind("trx", system_id)
    return phone


def test_under_uvloop_an_mt_held_for_its_receivers_flow_control_can_be_cancelled_and_expires(tmp_path, start_gateway):
    """The cancel_sm got no answer (its task ended on the error); the sweep failed at every tick, the MT never
    expired."""
    gateway = start_gateway(tmp_path / "gw.db")
    with bound(gateway.smpp_port, A, "handset") as a, bound(gateway.smpp_port, B, "handset2") as b:
        b.answering = False
        assert a.submit(B, "m1").status == ESME_ROK
        b.answer(b.expect(), ESME_RTHROTTLED)
        cancelled = a.submit(B, "m2", registered_delivery=1).message_id.decode()  # held with m1
        expiring = a.submit(B, "m3", registered_delivery=1, validity_period="000000000002000R").message_id.decode()
        tried_again = b.expect()  # m1 alone after the pause; m2 and m3 wait for its answer
        assert text(tried_again) == "m1"
        with RawLink(gateway.smpp_port) as esme:
            esme.bind("handset", command="bind_transmitter")
            esme.send(cancel_sm(2, A, cancelled))
            assert answer(esme, 2) == (ESME_ROK, b"")
        receipts = [receipt_fields(a.expect(timeout=10, predicate=is_receipt)) for _ in range(2)]
        assert sorted((r["id"], r["stat"]) for r in receipts) == [(cancelled, "DELETED"), (expiring, "EXPIRED")]
        b.answer(tried_again)
        b.expect_none(0.5)


def test_under_uvloop_a_gateway_stopped_with_mts_held_exits_cleanly_and_sends_them_in_order_once_restarted(
    tmp_path, start_gateway
):  # fmt: skip
    """SIGTERM with MTs held: the stop failed cancelling their handle, exit status 1 and a traceback."""
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    with bound(gateway.smpp_port, A, "handset") as a, bound(gateway.smpp_port, B, "handset2") as b:
        b.answering = False
        for n in range(1, 4):
            assert a.submit(B, f"m{n}").status == ESME_ROK
        b.expect_many(3)
        b.answer_held(ESME_RTHROTTLED)  # m1 begins the pause, m2 and m3 are held with it
        assert text(b.expect()) == "m1"  # tried again alone; m2 and m3 held until its answer (or LONGEST_PAUSE)
        gateway.proc.send_signal(signal.SIGTERM)
    # (both unbound now: the drain ends at once, and the stop finds m2 and m3 still held)
    assert gateway.wait(30) == 0
    gateway = start_gateway(db)
    with bound(gateway.smpp_port, B, "handset2") as b:
        assert [text(pdu) for pdu in b.expect_many(3)] == ["m1", "m2", "m3"]
        b.expect_none(0.5)


def test_a_throttle_holds_few_mts_in_memory_and_the_rest_go_from_the_store_in_order_once_it_lifts(make_gateway, handset):
    """Every MT offered to a throttled subscriber was held in memory: a receiver refusing everything with 200,000 MTs
    waiting grew the gateway from 55 to 284 MB in seconds. Past Delivery.HELD_PER_THROTTLE (made 3) they wait in the
    store, and are read back (a page of 2 at a time) once one to the subscriber is accepted."""
    gw = make_gateway(gateway={"window": 1})
    delivery = gw.gateway.delivery
    delivery.HELD_PER_THROTTLE, delivery.PAGE = 3, 2
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(1, 11):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)  # m1; m2..m10 wait in the bind's queue (window 1): m2, m3 held, the rest parked
    for n in range(11, 14):
        assert a.submit(B, f"m{n}").status == ESME_ROK  # parked behind them
    assert len(delivery._held) <= 3
    tried_again = b.expect()
    assert text(tried_again) == "m1"
    assert len(delivery._held) <= 3
    b.answering = True
    b.answer(tried_again)
    assert [text(pdu) for pdu in b.expect_many(12)] == [f"m{n}" for n in range(2, 14)]
    b.expect_none(0.5)
    assert not delivery._throttles


def test_the_mt_tried_again_counts_in_what_its_throttle_holds_so_refused_again_it_holds_no_more(make_gateway, handset):
    """Delivery.HELD_PER_THROTTLE made 3: m1 refused, m2 and m3 held with it (nothing parked). m1 tried again, m4 came
    while it was out and was held too (the throttle held 2): refused again, m1 was held back beside them, 4 in all.
    Now m4 is parked, and goes from the store after the others once the receiver takes them."""
    gw = make_gateway(gateway={"window": 1})
    delivery = gw.gateway.delivery
    delivery.HELD_PER_THROTTLE = 3
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(1, 4):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)  # m1; m2 and m3 wait in the bind's queue (window 1): held with it
    tried_again = b.expect()
    assert text(tried_again) == "m1"
    assert a.submit(B, "m4").status == ESME_ROK
    b.answer(tried_again, ESME_RTHROTTLED)
    assert eventually(lambda: delivery._throttles[B].pause == 2 * FIRST_PAUSE)  # the refusal taken in
    assert len(delivery._throttles[B].held) == 3
    b.answering = True
    assert [text(pdu) for pdu in b.expect_many(4, timeout=LONGEST_PAUSE + 5)] == ["m1", "m2", "m3", "m4"]
    b.expect_none(0.5)
    assert not delivery._throttles


def test_the_mts_of_a_subscriber_refused_for_good_beyond_what_a_throttle_holds_keep_out_of_the_others_way(
    make_gateway, handset
):  # fmt: skip
    """Parked, they cost the backlog read no room: it reads on, and the account's other subscribers' MTs go. When the
    receiver takes that subscriber's again, every one goes once, in order."""
    gw = make_gateway(gateway={"window": 2})
    delivery = gw.gateway.delivery
    delivery.HELD_PER_THROTTLE, delivery.PAGE, delivery.ROOM = 3, 2, 2
    a = handset(A, gw=gw)
    to_c1: set[str] = set()
    for n in range(1, 21):
        submitted = a.submit(C1, f"1.{n}")
        assert submitted.status == ESME_ROK
        to_c1.add(submitted.message_id.decode())
        assert a.submit(C2, f"2.{n}").status == ESME_ROK
    carrier = handset(bind=None, gw=gw)
    refusing = [True]

    def refuse_c1(pdu) -> int:
        carrier.inbox.append(pdu)
        return ESME_RTHROTTLED if refusing[0] and pdu.destination_addr == C1.encode() else ESME_ROK

    carrier.client.set_message_received_handler(refuse_c1)
    carrier.bind("rx", "carrier")
    to_c2 = carrier.expect_many(20, predicate=lambda pdu: pdu.destination_addr == C2.encode())
    assert [text(pdu) for pdu in to_c2] == [f"2.{n}" for n in range(1, 21)]
    assert eventually(lambda: not delivery._pulls)  # the backlog read is over
    # C1's in hand: what its throttle holds, and those refused beside them (the bind's window). Not all of `_held`: C2's
    # answered MTs are in hand too until their final status commits, on a busy machine a few of them still.
    assert len(to_c1 & delivery._held) <= 3 + 2
    refusing[0] = False
    carrier.inbox.clear()  # (the refused ones)
    assert [text(pdu) for pdu in carrier.expect_many(20, timeout=LONGEST_PAUSE + 5)] == [f"1.{n}" for n in range(1, 21)]
    carrier.expect_none(0.5)


def test_an_mt_accepted_while_a_throttle_s_parked_mts_are_read_back_goes_after_them(make_gateway, handset):
    """While the read waits for room on the bind, the subscriber's new MT is parked too, behind the ones it reads."""
    _delivery, a, b = reading_back(make_gateway, handset)
    assert a.submit(B, "m7").status == ESME_ROK
    b.answering = True
    b.answer_held()
    assert [text(pdu) for pdu in b.expect_many(6)] == ["m2", "m3", "m4", "m5", "m6", "m7"]
    b.expect_none(0.5)


def test_receipts_a_receiver_throttles_are_parked_beyond_what_it_holds_and_go_in_order_once_it_lifts(make_gateway, handset):
    """Receipts are addressed to their account (`to_account`), a part of the store of their own: all were held in
    memory (an SP whose bind throttles the receipts of its 200,000 MTs). Past Delivery.HELD_PER_THROTTLE (made 2)
    they wait in the store too, and are read back from it."""
    gw = make_gateway(gateway={"window": 1})
    delivery = gw.gateway.delivery
    delivery.HELD_PER_THROTTLE, delivery.PAGE = 2, 2
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    a.answering = False
    ids = [a.submit(B, f"m{n}", registered_delivery=1).message_id for n in range(1, 7)]
    b.expect_many(6)  # (acknowledged: a receipt each for A, one in flight at a time)
    a.answer(a.expect(predicate=is_receipt), ESME_RTHROTTLED)  # the first: it and the second held, the rest parked
    tried_again = a.expect(timeout=LONGEST_PAUSE + 1, predicate=is_receipt)
    # The receipts in hand: not all of `_held`, where B's answered MTs are too until their DELIVERED status commits.
    assert len(delivery._held - {message_id.decode() for message_id in ids}) <= 2
    a.answering = True
    a.answer(tried_again)
    receipts = [tried_again, *a.expect_many(5, predicate=is_receipt)]
    assert [receipt_fields(pdu)["id"].encode() for pdu in receipts] == ids
    a.expect_none(0.5)


def test_an_mt_accepted_after_a_refusal_during_the_read_back_goes_after_the_ones_still_in_the_store(make_gateway, handset):
    """Refused again while its parked MTs are read back, the throttle pauses again with some of them still in the store:
    the subscriber's next MT is parked behind them, not held (held, it would go ahead of them at the next lift)."""
    delivery, a, b = reading_back(make_gateway, handset)
    second = b.expect()
    assert text(second) == "m2"
    b.answer(second, ESME_RTHROTTLED)  # a pause again: m3 taken off the bind's queue, m4..m6 still in the store
    assert eventually(lambda: not delivery._throttles[B].reading and delivery._throttles[B].read_back is None)
    assert a.submit(B, "m7").status == ESME_ROK
    b.answering = True
    assert [text(pdu) for pdu in b.expect_many(6, timeout=LONGEST_PAUSE + 5)] == ["m2", "m3", "m4", "m5", "m6", "m7"]
    b.expect_none(0.5)


def reading_back(make_gateway, handset) -> tuple[Delivery, Handset, Handset]:
    """B's throttle lifted with MTs parked (Delivery.HELD_PER_THROTTLE made 2): m1 refused, m2 held with it, m3..m6
    parked; m1 tried again and accepted, m2 goes, and the read back hands out m3 and waits for room on B's bind (window
    1, PAGE 2, ROOM 1). B answers nothing (`answering` False). Returned: the gateway's Delivery, A, B."""
    gw = make_gateway(gateway={"window": 1})
    delivery = gw.gateway.delivery
    delivery.HELD_PER_THROTTLE, delivery.PAGE, delivery.ROOM = 2, 2, 1
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    for n in range(1, 7):
        assert a.submit(B, f"m{n}").status == ESME_ROK
    b.answer(b.expect(), ESME_RTHROTTLED)
    b.answer(b.expect())
    assert eventually(lambda: B in delivery._throttles and delivery._throttles[B].reading and delivery._room_waiters)
    return delivery, a, b
