"""The SMPP link itself (SPEC section 4): keep-alive, idle timeout, unbind, malformed PDUs."""

from __future__ import annotations

import select
import socket
import struct

import pytest
from smpplib import smpp

from tests.smpp_handset import (
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVSRCADR,
    ESME_ROK,
    RawLink,
    encoded,
    frame,
    is_receipt,
    receipt_fields,
    text,
)

A = "8613800000001"  # account handset
B = "8613800000002"
SUBSCRIBER = "8613000000007"  # the carrier's
DELIVERED = 2  # message_state (SMPP 3.4 5.2.28)
ECHO = "10086000"
SUBMIT_SM = 0x00000004
ENQUIRE_LINK = 0x00000015


def test_enquire_link_from_the_client_is_answered(handset):
    phone = handset(A)
    ping = smpp.make_pdu("enquire_link", client=phone.client)
    resp = phone.request(ping)
    assert (resp.command, resp.status, resp.sequence) == ("enquire_link_resp", ESME_ROK, ping.sequence)


def test_gateway_checks_a_quiet_link_with_enquire_link(make_gateway, handset):
    gw = make_gateway(gateway={"enquire_link_interval": 0.3})
    phone = handset(A, gw=gw)
    phone.expect_request("enquire_link", timeout=3)
    assert phone.submit(ECHO, "still here").status == ESME_ROK  # answered, so the link stays up
    assert text(phone.expect()) == "still here"


def test_idle_bind_is_unbound_by_the_gateway(make_gateway, handset):
    gw = make_gateway(gateway={"idle_timeout": 0.5, "enquire_link_interval": 0})
    phone = handset(A, gw=gw)
    phone.expect_request("unbind", timeout=5)  # answered with unbind_resp by the handset
    phone.expect_closed(timeout=5)


def test_a_peer_that_ignores_the_gateways_unbind_is_disconnected(make_gateway):
    gw = make_gateway(gateway={"idle_timeout": 0.5, "response_timeout": 0.5, "enquire_link_interval": 0})
    with RawLink(gw.smpp_port) as link:
        link.bind()
        unbind = link.read(timeout=5)  # and never answered
        assert unbind.command == "unbind"
        later = []
        while len(later) < 10 and (pdu := link.read(timeout=5)) is not None:
            later.append(pdu.command)
        assert later == []  # closed after the response timeout, without sending unbind again


def test_no_deliver_sm_goes_out_on_a_link_the_gateway_is_unbinding(make_gateway, handset):
    """Idle, the receiver was sent an unbind; an MT for it that came before its unbind_resp went out on that link
    all the same. Its answer came after the unbind_resp, which closed the link: it was lost, and the MT delivered
    again at the next bind. Now it waits for that bind, and arrives once."""
    gw = make_gateway(gateway={"idle_timeout": 0.5, "enquire_link_interval": 0})
    with RawLink(gw.smpp_port) as link:
        link.bind("handset", command="bind_receiver")
        unbind = link.read(timeout=5)
        assert unbind.command == "unbind"
        sender = handset("8613800000009", gw=gw, address_range="8613800000009")
        assert sender.submit(B, "after the unbind").status == ESME_ROK
        link.send(encoded("unbind_resp", unbind.sequence))
        closing = link.read(timeout=5)
        assert closing is None, f"{closing.command} went out on the link being unbound"
    again = handset(B, gw=gw, address_range=B)
    assert text(again.expect()) == "after the unbind"
    again.expect_none(0.5)


@pytest.mark.parametrize("answer", ["unbind_resp", "generic_nack"])
def test_a_submission_crossing_the_gateways_unbind_is_answered_before_the_link_closes(make_gateway, answer):
    """The answer to the gateway's unbind closed the link while the submit_sm written just before it was being
    committed: stored, never acknowledged, and stored again when the client sent it again on its next bind."""
    gw = make_gateway(gateway={"idle_timeout": 0.5, "enquire_link_interval": 0})
    with RawLink(gw.smpp_port) as link:
        link.bind()
        unbind = link.read(timeout=5)
        assert unbind.command == "unbind"
        answer_to_it = (encoded("unbind_resp", unbind.sequence) if answer == "unbind_resp"
                        else frame(0x80000000, unbind.sequence, status=ESME_RINVCMDID))  # fmt: skip
        link.send(encoded("submit_sm", 7, source_addr=A, destination_addr=B, short_message=b"crossing") + answer_to_it)
        resp = link.read(timeout=5)
        assert resp is not None and (resp.command, resp.sequence, resp.status) == ("submit_sm_resp", 7, ESME_ROK)
        assert link.is_closed()


def test_an_mo_crossing_the_gateways_unbind_does_not_bring_its_reply_to_that_link(make_gateway):
    """The MO made the link being unbound its subscriber's way back: the reply waited there, not sent, until the
    link closed (response_timeout), though the subscriber's other bind could take it at once."""
    gw = make_gateway(gateway={"idle_timeout": 1, "enquire_link_interval": 0, "response_timeout": 5})
    with RawLink(gw.smpp_port) as idle, RawLink(gw.smpp_port) as busy:
        idle.bind()
        busy.bind()
        for sequence in range(10, 60):  # busy keeps talking, idle says nothing until the gateway unbinds it
            busy.send(encoded("enquire_link", sequence))
            assert busy.read().command == "enquire_link_resp"
            if select.select([idle.sock], [], [], 0.2)[0]:
                break
        assert idle.read().command == "unbind"
        idle.send(encoded("submit_sm", 2, source_addr=A, destination_addr=ECHO, short_message=b"crossing"))
        assert idle.read().command == "submit_sm_resp"
        reply = busy.read(timeout=3)
        assert (reply.command, reply.short_message) == ("deliver_sm", b"crossing")


def test_a_generic_nack_to_the_gateways_unbind_closes_the_link(make_gateway):
    """With enquire_link_interval 0, the link stayed bound for good: nothing else would ever end it."""
    gw = make_gateway(gateway={"idle_timeout": 0.5, "enquire_link_interval": 0})
    with RawLink(gw.smpp_port) as link:
        link.bind()
        unbind = link.read(timeout=5)
        assert unbind.command == "unbind"
        link.send(frame(0x80000000, unbind.sequence, status=ESME_RINVCMDID))
        assert link.is_closed()


def test_unbind_is_answered_and_the_connection_closed(handset):
    phone = handset(A)
    resp = phone.unbind()
    assert (resp.command, resp.status) == ("unbind_resp", ESME_ROK)
    phone.expect_closed(timeout=5)


def test_requests_sent_just_before_unbind_are_answered_before_the_unbind_resp(handset, gateway):
    """The submit_sm_resp comes after the message's commit, the unbind_resp at once: without waiting for the
    first, the close after unbind_resp cut it off and the client, unanswered, sent the message again."""
    to_b = [encoded("submit_sm", seq, source_addr=A, destination_addr=B, short_message=f"before unbind {seq}".encode())
            for seq in (2, 3)]  # fmt: skip
    with RawLink(gateway.smpp_port) as link:
        link.bind()
        link.send(b"".join(to_b) + encoded("unbind", 4))
        answers = []
        while (pdu := link.read(timeout=5)) is not None:
            answers.append((pdu.command, pdu.sequence, pdu.status))
    assert sorted(answers[:2]) == [("submit_sm_resp", 2, ESME_ROK), ("submit_sm_resp", 3, ESME_ROK)]
    assert answers[2:] == [("unbind_resp", 4, ESME_ROK)]
    b = handset(B)
    assert sorted(text(b.expect()) for _ in to_b) == ["before unbind 2", "before unbind 3"]


@pytest.mark.parametrize("unbinds", [False, True], ids=["submit_sm", "submit_sm and unbind"])
def test_a_client_that_half_closes_after_its_requests_still_gets_their_answers(handset, unbinds):
    """A client that shuts down its sending side (shutdown(SHUT_WR)) once its PDUs are written reads on. The gateway
    closed the link at its FIN: the submit_sm_resp, which waits for the commit, never came, though the message was
    committed and delivered (the client, unanswered, sends it again)."""
    a = handset(A)
    requests = [a.make("submit_sm", B, "before the FIN")] + ([smpp.make_pdu("unbind", client=a.client)] if unbinds else [])
    a.send_together(*requests)
    a.client._socket.shutdown(socket.SHUT_WR)
    answers = [a.response(pdu.sequence) for pdu in requests]
    assert [(pdu.command, pdu.status) for pdu in answers] == [("submit_sm_resp", ESME_ROK), ("unbind_resp", ESME_ROK)][
        : len(requests)
    ]
    a.expect_closed(timeout=5)
    assert text(handset(B).expect()) == "before the FIN"


def test_an_unbind_held_behind_an_unanswered_deliver_sm_is_answered_when_the_client_half_closes(handset, gateway):
    """The carrier unbinds while a deliver_sm waits for its answer, then half-closes: it can no longer answer the
    deliver_sm, so nothing holds its unbind: it must get its unbind_resp, not a link closed without one."""
    a = handset(A)
    with RawLink(gateway.smpp_port) as carrier:
        carrier.bind("carrier", command="bind_receiver")
        a.submit(SUBSCRIBER, "never answered", registered_delivery=1)
        assert carrier.read().command == "deliver_sm"
        carrier.send(encoded("unbind", 2))  # held: the deliver_sm is unanswered
        carrier.sock.shutdown(socket.SHUT_WR)
        assert (carrier.read(timeout=2).command, carrier.is_closed()) == ("unbind_resp", True)


def test_a_deliver_sm_answered_after_the_peers_unbind_counts_and_is_not_sent_again(handset, gateway):
    """The carrier unbinds while a deliver_sm is on its way to it, and answers that deliver_sm while it waits
    for its unbind_resp. The gateway answered the unbind at once and closed: the answer was lost and the MT,
    which the carrier had acknowledged, went out again on its next bind (a duplicate SMS)."""
    a = handset(A)
    with RawLink(gateway.smpp_port) as carrier:
        carrier.bind("carrier", command="bind_receiver")
        message_id = a.submit(SUBSCRIBER, "crossing the unbind", registered_delivery=1).message_id
        deliver = carrier.read()
        assert deliver.command == "deliver_sm"
        carrier.send(encoded("unbind", 2))  # the gateway has not seen an answer yet: as if it crossed the deliver_sm
        carrier.send(encoded("deliver_sm_resp", deliver.sequence))
        assert (carrier.read().command, carrier.is_closed()) == ("unbind_resp", True)
    assert receipt_fields(a.expect(predicate=is_receipt))["stat"] == "DELIVRD"
    assert a.query(message_id).message_state == DELIVERED
    handset(SUBSCRIBER, bind="rx").expect_none(within=0.5)  # the carrier's next bind: no second copy


DELIVER_SM_RESP, GENERIC_NACK = 0x80000005, 0x80000000


@pytest.mark.parametrize("body", [b"x" * 65 + b"\0", b"x" * 100 + b"\0", b"no terminating NUL"], ids=["66", "101", "no NUL"])
def test_a_deliver_sm_resp_with_an_unreadable_message_id_still_counts_as_delivered(handset, gateway, body):
    """SMPP 3.4 4.6.2: deliver_sm_resp's message_id is unused. One of 65 octets or more, or without its NUL, got a
    generic_nack (an answer to an answer) and the deliver_sm was sent again: the handset had it twice."""
    a = handset(A)
    with RawLink(gateway.smpp_port) as carrier:
        carrier.bind("carrier", command="bind_receiver")
        a.submit(SUBSCRIBER, "once", registered_delivery=1)
        deliver = carrier.read()
        carrier.send(frame(DELIVER_SM_RESP, deliver.sequence, body))
        assert receipt_fields(a.expect(predicate=is_receipt))["stat"] == "DELIVRD"
        with pytest.raises(AssertionError, match="no PDU"):
            carrier.read(timeout=0.5)  # neither a generic_nack nor the deliver_sm again


def test_a_generic_nack_with_status_0_to_a_deliver_sm_is_no_delivery(make_gateway, handset):
    """SMPP 3.4 4.3.1: generic_nack is a negative acknowledgement, the PDU not processed. With command_status 0 it
    was taken as the deliver_sm_resp, the MT marked DELIVRD and never sent again."""
    gw = make_gateway(gateway={"retry_backoff": [0.1]})
    a = handset(A, gw=gw)
    with RawLink(gw.smpp_port) as carrier:
        carrier.bind("carrier", command="bind_receiver")
        a.submit(SUBSCRIBER, "not taken", registered_delivery=1)
        first = carrier.read()
        carrier.send(frame(GENERIC_NACK, first.sequence))
        again = carrier.read()
        assert (again.command, again.short_message) == ("deliver_sm", b"not taken")
        carrier.send(encoded("deliver_sm_resp", again.sequence))
    assert receipt_fields(a.expect(predicate=is_receipt))["stat"] == "DELIVRD"


def test_a_deliver_sm_left_unanswered_after_the_peers_unbind_goes_to_the_next_bind(make_gateway, handset):
    """The unbind_resp waits for the deliver_sm in flight no longer than response_timeout: then the link closes
    and the MT, unanswered, is delivered on the next bind (not lost)."""
    gw = make_gateway(gateway={"response_timeout": 0.5, "enquire_link_interval": 0})
    a = handset(A, gw=gw)
    with RawLink(gw.smpp_port) as carrier:
        carrier.bind("carrier", command="bind_receiver")
        a.submit(SUBSCRIBER, "unanswered at the unbind")
        assert carrier.read().command == "deliver_sm"
        carrier.send(encoded("unbind", 2))
        assert (carrier.read().command, carrier.is_closed()) == ("unbind_resp", True)
    assert text(handset(SUBSCRIBER, bind="rx", gw=gw).expect()) == "unanswered at the unbind"


def test_what_waits_behind_a_deliver_sm_in_flight_at_the_peers_unbind_goes_on_at_once_in_order(make_gateway, handset):
    """While the unbind_resp waited for the deliver_sm in flight, the MTs queued behind it on that bind stayed there,
    out of the router's reach: a newer MT to the same subscriber went out on another bind ahead of them, and a
    cancel_sm of one that had not gone out was refused (it was delivered later)."""
    gw = make_gateway(gateway={"window": 1, "enquire_link_interval": 0})
    a = handset(A, gw=gw)
    with RawLink(gw.smpp_port) as carrier:
        carrier.bind("carrier", command="bind_receiver")
        a.submit(SUBSCRIBER, "first")
        first = carrier.read()
        assert first.command == "deliver_sm"
        queued = a.submit(SUBSCRIBER, "second").message_id  # behind it: the window is 1
        other = handset(SUBSCRIBER, bind="rx", gw=gw)  # the carrier's second bind
        carrier.send(encoded("unbind", 2))
        assert text(other.expect()) == "second"  # at once, ahead of anything newer
        assert a.submit(SUBSCRIBER, "third").status == ESME_ROK
        assert text(other.expect()) == "third"
        carrier.send(encoded("deliver_sm_resp", first.sequence))
        assert carrier.read().command == "unbind_resp"
    assert a.query(queued).message_state == DELIVERED


def test_a_client_that_stops_reading_is_held_back_and_loses_no_answer(gateway):
    """A client that sends and never reads: the gateway stops reading it (TCP then holds the client back)
    instead of piling up its answers in memory (40 MB of them for 48 MB sent, before); once the client
    reads, every request it got through is answered, in order."""
    burst = b"".join(frame(ENQUIRE_LINK, sequence) for sequence in range(2, 10_002))  # 160 kB
    with RawLink(gateway.smpp_port) as link:
        link.bind()
        link.sock.setblocking(False)
        sent, held_back = 0, False
        while sent < 24_000_000 and not held_back:
            if not select.select([], [link.sock], [], 1.0)[1]:
                held_back = True  # a second without room to send
                continue
            start = sent % len(burst)
            sent += link.sock.send(burst[start:] if start else burst)

        async def answers_waiting_in_the_gateway() -> list[int]:
            return [c.transport.get_write_buffer_size() for c in gateway.gateway.connections]

        waiting = gateway.call(answers_waiting_in_the_gateway())
        assert held_back, f"the gateway read all {sent:,} bytes while the client read nothing"
        assert max(waiting) < 1_000_000
        requests = sent // 16
        expected = [(ENQUIRE_LINK | 0x80000000, 2 + n % 10_000) for n in range(requests)]
        link.sock.setblocking(True)
        link.sock.settimeout(10)
        received = bytearray()
        while len(received) < 16 * requests:
            received += link.sock.recv(1 << 20)
        answers = [(command, sequence) for _, command, _, sequence in struct.iter_unpack(">LLLL", received)]
        assert answers == expected


def test_unknown_command_id_gets_generic_nack(gateway):
    with RawLink(gateway.smpp_port) as link:
        link.bind()
        [nack] = link.exchange(frame(0x00000999, 42))
        assert (nack.command, nack.status, nack.sequence) == ("generic_nack", ESME_RINVCMDID, 42)
        [resp] = link.exchange(encoded("enquire_link", 43))  # the link is still usable
        assert (resp.command, resp.status, resp.sequence) == ("enquire_link_resp", ESME_ROK, 43)


@pytest.mark.parametrize(
    "body",
    [
        b"\x00"  # service_type
        + b"\x01\x01" + b"8" * 30 + b"\x00"  # source_addr: no NUL within its 21 octets
        + b"\x01\x01" + ECHO.encode() + b"\x00"
        + b"\x00\x00\x00" + b"\x00" + b"\x00" + b"\x00\x00\x00\x00"
        + b"\x02hi",
        b"\x00" + b"\x01\x01" + b"8" * 21,  # its 21 octets, no NUL, and the PDU ends there
    ],
    ids=["longer", "21 octets ending the PDU"],
)  # fmt: skip
def test_source_addr_without_terminator_is_refused(gateway, body: bytes):
    """A source_addr that fills its 21 octets without a NUL is too long whether or not the PDU goes on: one that
    ended the PDU was answered ESME_RINVCMDLEN, as a PDU cut short inside it, which sends its client looking for a
    framing fault instead of at the address."""
    with RawLink(gateway.smpp_port) as link:
        link.bind()
        [resp] = link.exchange(frame(SUBMIT_SM, 9, body))
        assert (resp.command, resp.status, resp.sequence) == ("submit_sm_resp", ESME_RINVSRCADR, 9)


def test_requests_before_a_framing_error_are_answered_before_the_link_closes(gateway, handset):
    """Valid submit_sm and, in the same write, a length that cannot be trusted: the generic_nack closed the
    link at once, the submit_sm_resp for the stored messages were never sent, and the client sent them again.
    Nor does a deliver_sm go out on the link meanwhile (for B: this bind's account covers B): its answer
    could not be read, and B would get it again at the next bind."""
    valid = [encoded("submit_sm", seq, source_addr=A, destination_addr=B, short_message=f"pay {seq} yuan".encode())
             for seq in (51, 52)]  # fmt: skip
    with RawLink(gateway.smpp_port) as link:
        link.bind()
        link.send(b"".join(valid) + frame(SUBMIT_SM, 53, length=4))
        answers = []
        while (pdu := link.read(timeout=5)) is not None:
            answers.append((pdu.command, pdu.sequence, pdu.status))
    assert answers[0] == ("generic_nack", 53, ESME_RINVCMDLEN)
    assert sorted(answers[1:]) == [("submit_sm_resp", 51, ESME_ROK), ("submit_sm_resp", 52, ESME_ROK)]
    b = handset(B)
    assert sorted(text(b.expect()) for _ in valid) == ["pay 51 yuan", "pay 52 yuan"]
    b.expect_none(0.3)


def test_command_length_below_header_size_ends_the_connection(gateway, handset):
    with RawLink(gateway.smpp_port) as link:
        link.bind()
        [nack] = link.exchange(frame(SUBMIT_SM, 5, length=8))
        assert (nack.command, nack.status) == ("generic_nack", ESME_RINVCMDLEN)
        assert link.is_closed(timeout=5)
    phone = handset(A)  # the gateway itself is fine
    assert phone.submit(ECHO, "after the garbage").status == ESME_ROK
    assert text(phone.expect()) == "after the garbage"
