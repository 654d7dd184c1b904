"""SPEC 2 and 4 cases the main messaging tests leave out: receipt on failure only, query_sm of an
expired message, the smsc role, long GSM text, a link whose enquire_link goes unanswered."""

from __future__ import annotations

import gc
import weakref

from gateway.clock import SimulatedClock
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_ROK,
    RawLink,
    encode,
    is_receipt,
    reassemble,
    receipt_fields,
    split_udh,
    text,
)

A = "8613800000001"  # handset
B = "8613700000001"  # handset2
C = "8613700000003"  # handset2
CARRIER_SUBSCRIBER = "8613000000001"  # carrier (role smsc)
ECHO = "10086000"
MESSAGE_STATE_EXPIRED = 3


def test_receipt_on_failure_only_is_not_sent_for_a_delivered_message(gateway, handset):
    a, b = handset(A), handset(B)
    assert a.submit(B, "no news is good news", registered_delivery=2).status == ESME_ROK
    assert text(b.expect()) == "no news is good news"
    # A message A sends afterwards arrives; a receipt, had one been sent, would have come first.
    assert a.submit(B, "second").status == ESME_ROK
    assert text(b.expect()) == "second"
    a.expect_none(0.5, predicate=is_receipt)


def test_receipt_on_failure_only_is_sent_when_the_message_expires(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a = handset(A, gw=gw)
    resp = a.submit(B, "nobody home", registered_delivery=2, validity_period="000000000010000R")
    clock.advance(60)
    fields = receipt_fields(a.expect(predicate=is_receipt))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
    queried = a.query(resp.message_id)
    assert (queried.status, queried.message_state) == (ESME_ROK, MESSAGE_STATE_EXPIRED)
    assert queried.final_date  # set once the message is final


def test_an_mt_queued_behind_a_full_window_expires_when_its_validity_ends(make_gateway, handset):
    """It expired only when the window would have sent it, response_timeout later: query_sm said ENROUTE and the
    receipt came late meanwhile."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"window": 1, "response_timeout": 60})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "first").status == ESME_ROK
    assert text(b.expect()) == "first"  # unanswered: the window is full
    resp = a.submit(B, "valid for 10 s", registered_delivery=1, validity_period="000000000010000R")
    clock.advance(60)
    fields = receipt_fields(a.expect(predicate=is_receipt))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
    assert a.query(resp.message_id).message_state == MESSAGE_STATE_EXPIRED
    b.answer_held()
    b.expect_none(0.5)  # and it never goes out


def test_an_mt_waiting_behind_a_backlog_read_expires_when_its_validity_ends(make_gateway, handset):
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, gateway={"window": 1, "response_timeout": 60})
    delivery = gw.gateway.delivery
    delivery.PAGE, delivery.ROOM = 2, 2  # a backlog of a few pages stalls the read as 1,500 MTs do by default
    a = handset(A, gw=gw)
    for i in range(6):  # B is off line: a backlog in the store
        assert a.submit(B, f"backlog {i}").status == ESME_ROK
    b = handset(B, gw=gw)
    b.answering = False  # the read stalls for room on B's bind
    b.expect()
    resp = a.submit(B, "valid for 10 s", registered_delivery=1, validity_period="000000000010000R")
    assert eventually(lambda: any(resp.message_id.decode() in (m.id for m in read.behind) for read in delivery._reads.values()))
    clock.advance(60)
    fields = receipt_fields(a.expect(predicate=is_receipt))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
    assert a.query(resp.message_id).message_state == MESSAGE_STATE_EXPIRED



def test_an_mt_to_a_subscriber_with_nothing_waiting_goes_out_during_their_account_s_backlog_read(make_gateway, handset):
    """Every new MT of an account waited for the end of its backlog read (at each bind that appeared, and again for
    each one appearing meanwhile): p50 of an echo 1.3 ms -> 0.6-8 s with 20,000 MTs parked for subscribers off line.
    Only a subscriber whose older MTs the read has yet to hand out has something to wait for."""
    gw = make_gateway()
    delivery = gw.gateway.delivery
    delivery.PAGE, delivery.ROOM = 2, 1  # the read waits for room once a page is out: every bind of the account is full
    a = handset(A, gw=gw)
    c = handset(C, address_range=C, gw=gw)  # bound, nothing waiting for C
    c.answering = False
    assert a.submit(C, "unanswered").status == ESME_ROK
    assert text(c.expect()) == "unanswered"  # C's bind is full (ROOM)
    assert eventually(lambda: not delivery._pulls)  # C's own backlog read is over
    for i in range(6):  # B is off line: a backlog in the store
        assert a.submit(B, f"backlog {i}").status == ESME_ROK
    b = handset(B, address_range=B, gw=gw)
    b.answering = False
    assert [text(pdu) for pdu in b.expect_many(2)] == ["backlog 0", "backlog 1"]  # a page; the read waits for room
    assert a.submit(B, "new for B").status == ESME_ROK
    assert a.submit(C, "new for C").status == ESME_ROK
    assert text(c.expect()) == "new for C"  # not held behind B's backlog...
    assert "handset2" in delivery._pulls  # ...still being read (it cannot go on: no bind of the account has room)
    b.answering = c.answering = True
    b.answer_held()
    c.answer_held()
    assert [text(pdu) for pdu in b.expect_many(5)] == [f"backlog {i}" for i in range(2, 6)] + ["new for B"]

def test_a_carrier_smsc_account_exchanges_messages_with_handsets(gateway, handset):
    carrier, b = handset(CARRIER_SUBSCRIBER), handset(B)
    assert carrier.submit(B, "from the carrier's network").status == ESME_ROK
    delivered = b.expect()
    assert (delivered.source_addr, text(delivered)) == (CARRIER_SUBSCRIBER.encode(), "from the carrier's network")
    assert b.submit(CARRIER_SUBSCRIBER, "and back").status == ESME_ROK
    assert text(carrier.expect()) == "and back"


def test_long_gsm_text_to_a_short_code_comes_back_in_parts(gateway, handset):
    a = handset(A, address_range=A)
    long_text = "GSM 03.38 {with} [extension] characters ~ and signs. " * 5  # > 160 septets
    assert a.submit(ECHO, b"", data_coding=0, message_payload=encode(long_text, 0)).status == ESME_ROK
    first = a.expect()
    concat, _ = split_udh(first)
    assert concat is not None and first.data_coding == 0
    rest = a.expect_many(concat.total - 1)
    assert reassemble([first, *rest]) == long_text


def test_a_link_whose_enquire_link_goes_unanswered_is_closed(make_gateway):
    gw = make_gateway(gateway={"enquire_link_interval": 0.2, "response_timeout": 0.5})
    with RawLink(gw.smpp_port) as link:
        link.bind()
        # The gateway's enquire_link arrives; this client never answers it.
        assert link.read().command == "enquire_link"
        assert link.is_closed(timeout=5)


def test_a_closed_bind_that_carried_an_mo_is_freed(gateway, handset):
    """The router kept it as the subscriber's last MO bind until an MT to that subscriber came: one dead
    connection (~3 KB) per subscriber who texted and hung up, 20,000 binds grew the gateway by 45 MB."""
    b = handset(B)
    a = handset(A)
    assert a.submit(B, "texted once, then gone").status == ESME_ROK
    assert text(b.expect()) == "texted once, then gone"
    [connection] = [c for c in gateway.gateway.connections if c.account is not None and c.account.system_id == "handset"]
    gone = weakref.ref(connection)
    del connection
    a.close()
    assert eventually(lambda: all(c is not gone() for c in gateway.gateway.connections))
    assert b.submit(B, "the next batch").status == ESME_ROK  # the store keeps its last batch's callbacks
    assert text(b.expect()) == "the next batch"

    async def collected() -> bool:
        gc.collect()
        return gone() is None

    assert gateway.call(collected())
    c = handset(A)  # the subscriber's next bind gets MTs as any bind of the account does
    assert b.submit(A, "back again").status == ESME_ROK
    assert text(c.expect()) == "back again"


def test_a_bind_whose_tick_fails_does_not_stop_the_store_and_forward_sweep(make_gateway, handset):
    """The once-a-second tick ran every bind's timeouts, then the sweep, in one try block: a bind whose tick raised
    (each second, as a fault would) stopped the sweep for the whole gateway, and an MT never expired."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock)
    a = handset(A, gw=gw)
    handset(CARRIER_SUBSCRIBER, gw=gw)  # a second bind, the one that fails
    carrier = next(c for c in gw.gateway.connections if c.system_id == "carrier")

    def fault() -> None:
        raise RuntimeError("injected fault in one bind's tick")

    carrier.tick = fault
    resp = a.submit(B, "nobody home", registered_delivery=1, validity_period="000000000010000R")
    clock.advance(60)
    fields = receipt_fields(a.expect(predicate=is_receipt, timeout=5))
    assert (fields["id"].encode(), fields["stat"]) == (resp.message_id, "EXPIRED")
