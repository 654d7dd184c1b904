"""The SMPP session state machine, both ends, against SMPP 3.4 section 2.

An SMSC session and an ESME session are wired to each other through
data_to_send()/receive_data(); the "applications" on top are the test code.
"""

from __future__ import annotations

import gc
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import decode_pdu, encode_pdu, split_frames
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.pdu import (
    PDU_CLASSES,
    RESPONSE_OF,
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MultiDest,
    Outbind,
    Pdu,
    QuerySm,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    response_to,
)
from gateway.smpp.session import (
    LATE_ANSWER_TIMEOUTS,
    LateResponse,
    LocalProtocolError,
    Received,
    Rejected,
    Session,
    Side,
    State,
    WindowFull,
)

C = CommandId
S = CommandStatus
OPEN, TX, RX, TRX, UNBOUND, CLOSED = State.OPEN, State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX, State.UNBOUND, State.CLOSED
BIND_FOR = {TX: BindTransmitter, RX: BindReceiver, TRX: BindTransceiver}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def answers(session: Session) -> list[Pdu]:
    buffer = bytearray(session.data_to_send())
    frames = split_frames(buffer)
    assert not buffer
    return [decode_pdu(frame) for frame in frames]


def transfer(src: Session, dst: Session) -> list:
    return dst.receive_data(src.data_to_send())


def bind_pair(state: State = TRX, clock: FakeClock | None = None, **session_args) -> tuple[Session, Session]:
    """An ESME and an SMSC session bound to each other in `state`."""
    clock = clock or FakeClock()
    esme = Session(Side.ESME, clock=clock, **session_args)
    smsc = Session(Side.SMSC, clock=clock, **session_args)
    bind = esme.send(BIND_FOR[state](system_id="esme", password="pw"))
    [received] = transfer(esme, smsc)
    smsc.send(response_to(received.pdu, system_id="smsc"))
    [reply] = transfer(smsc, esme)
    assert reply.request is bind
    assert esme.state is state and smsc.state is state
    return esme, smsc


def session_in(side: Side, state: State, clock: FakeClock | None = None) -> Session:
    """A session of `side` driven into `state` through the protocol."""
    session = Session(side, clock=clock or FakeClock())
    if state is OPEN:
        return session
    bind_state = TRX if state in (UNBOUND, CLOSED) else state
    bind = BIND_FOR[bind_state](system_id="x")
    if side is Side.SMSC:
        bind.sequence_number = 1
        session.receive_data(encode_pdu(bind))
        session.send(response_to(bind))
    else:
        session.send(bind)
        session.receive_data(encode_pdu(response_to(bind)))
    assert session.state is bind_state
    if state is UNBOUND:
        session.receive_data(encode_pdu(Unbind(sequence_number=2)))
    elif state is CLOSED:
        session.close()
    session.data_to_send()
    assert session.state is state
    return session


# --------------------------------------------------------------------------
# Binding


def test_a_second_bind_in_the_same_read_is_refused_as_already_bound():
    """Each frame of a read was checked against the state before any was answered: both binds of one write
    were handed on, and the gateway accepted both."""
    smsc = Session(Side.SMSC)
    first, second = BindTransceiver(system_id="a", sequence_number=1), BindTransmitter(system_id="a", sequence_number=2)
    assert smsc.receive_data(encode_pdu(first) + encode_pdu(second)) == [Received(first)]
    assert smsc.resume() == []  # the second waits for the first's answer
    smsc.send(response_to(first))
    assert smsc.state is TRX
    [refused] = smsc.resume()
    assert (refused.status, refused.sequence_number) == (S.ESME_RALYBND, 2)


def test_what_follows_a_bind_in_the_same_read_is_read_once_the_bind_is_answered():
    """A submit_sm written with its bind was checked while the bind awaited its answer (ESME_RINVBNDSTS); one that
    came a moment later, in another read, was taken: the answer depended on how TCP cut the stream."""
    smsc = Session(Side.SMSC)
    bind, submit = BindTransceiver(system_id="a", sequence_number=1), SubmitSm(sequence_number=2, short_message=b"hi")
    assert smsc.receive_data(encode_pdu(bind) + encode_pdu(submit) + encode_pdu(submit)[:10]) == [Received(bind)]
    smsc.send(response_to(bind))
    assert [event.pdu for event in smsc.resume()] == [submit]
    assert smsc.resume() == []
    assert [event.pdu.sequence_number for event in smsc.receive_data(encode_pdu(submit)[10:])] == [2]


def test_what_comes_in_a_later_read_while_a_bind_awaits_its_answer_waits_too():
    smsc = Session(Side.SMSC)
    bind, submit = BindTransceiver(system_id="a", sequence_number=1), SubmitSm(sequence_number=2, short_message=b"hi")
    assert smsc.receive_data(encode_pdu(bind)) == [Received(bind)]
    assert smsc.receive_data(encode_pdu(submit)) == []  # the application has not answered the bind yet
    smsc.send(response_to(bind))
    assert [event.pdu for event in smsc.resume()] == [submit]


def test_a_refused_bind_leaves_what_followed_it_refused_as_before_any_bind():
    smsc = Session(Side.SMSC)
    bind, submit = BindTransceiver(system_id="a", password="wrong", sequence_number=1), SubmitSm(sequence_number=2)
    assert smsc.receive_data(encode_pdu(bind) + encode_pdu(submit)) == [Received(bind)]
    smsc.send(response_to(bind, S.ESME_RINVPASWD))
    [refused] = smsc.resume()
    assert (refused.status, refused.sequence_number) == (S.ESME_RINVBNDSTS, 2)


def test_a_refused_bind_leaves_the_session_open_for_another():
    smsc = Session(Side.SMSC)
    [event] = smsc.receive_data(encode_pdu(BindTransceiver(system_id="a", password="wrong", sequence_number=1)))
    smsc.send(response_to(event.pdu, S.ESME_RINVPASWD))
    assert smsc.state is OPEN
    [event] = smsc.receive_data(encode_pdu(BindTransceiver(system_id="a", password="right", sequence_number=2)))
    assert event == Received(event.pdu)
    smsc.send(response_to(event.pdu))
    assert smsc.state is TRX


@pytest.mark.parametrize("state", [TX, RX, TRX])
def test_bind_flow_both_sides(state):
    esme = Session(Side.ESME)
    smsc = Session(Side.SMSC)
    bind = esme.send(BIND_FOR[state](system_id="acct", password="secret", system_type="VAS", addr_ton=1, addr_npi=1))
    assert bind.sequence_number == 1
    assert esme.outstanding[1].request is bind
    assert esme.state is OPEN  # bound only once the response says so

    [event] = transfer(esme, smsc)
    assert isinstance(event, Received) and event.request is None
    assert event.pdu == bind
    assert smsc.state is State.BINDING  # the application decides; meanwhile another bind is refused

    smsc.send(response_to(event.pdu, system_id="smsc", tlvs={0x0210: 0x34}))
    assert smsc.state is state

    [reply] = transfer(smsc, esme)
    assert isinstance(reply, Received)
    assert reply.pdu.command_id == bind.command_id | 0x80000000
    assert reply.pdu.system_id == "smsc"
    assert reply.pdu.tlvs == {0x0210: 0x34}
    assert reply.request is bind
    assert esme.state is state
    assert esme.outstanding == {}
    assert esme.is_bound and smsc.is_bound


@pytest.mark.parametrize("state", [TX, RX, TRX])
def test_bind_refused_leaves_both_open_and_esme_may_retry(state):
    esme = Session(Side.ESME)
    smsc = Session(Side.SMSC)
    esme.send(BIND_FOR[state](system_id="acct", password="wrong"))
    [event] = transfer(esme, smsc)
    smsc.send(response_to(event.pdu, S.ESME_RINVPASWD))
    assert smsc.state is OPEN
    [reply] = transfer(smsc, esme)
    assert reply.pdu.command_status == S.ESME_RINVPASWD
    assert esme.state is OPEN and not esme.is_bound
    esme.send(BIND_FOR[state](system_id="acct", password="right"))
    [event] = transfer(esme, smsc)
    smsc.send(response_to(event.pdu))
    transfer(smsc, esme)
    assert esme.state is state and smsc.state is state


def test_requests_without_response_take_no_window_slot():
    """outbind and alert_notification have no response PDU: they must not sit in the
    window until they 'expire'."""
    clock = FakeClock(0.0)
    smsc = Session(Side.SMSC, clock=clock, window=1)
    smsc.send(Outbind(system_id="smsc"))
    assert smsc.outstanding == {} and smsc.can_send_request
    esme, smsc = bind_pair(RX, clock=clock, window=1)
    alert = smsc.send(AlertNotification(source_addr="1", esme_addr="2"))
    assert alert.sequence_number != 0
    assert smsc.outstanding == {}
    assert smsc.expired_requests(now=1e9) == []
    smsc.send(DeliverSm())  # the single slot is still free
    [event] = transfer(smsc, esme)[:1]
    assert event == Received(alert)


def test_outbind_then_bind():
    smsc = Session(Side.SMSC)
    esme = Session(Side.ESME)
    smsc.send(Outbind(system_id="smsc", password="pw"))
    assert smsc.outstanding == {}  # outbind has no response
    [event] = transfer(smsc, esme)
    assert isinstance(event, Received) and event.pdu.system_id == "smsc"
    esme.send(BindReceiver(system_id="esme"))
    [event] = transfer(esme, smsc)
    smsc.send(response_to(event.pdu))
    transfer(smsc, esme)
    assert esme.state is RX and smsc.state is RX


@pytest.mark.parametrize("state", [TX, RX, TRX])
@pytest.mark.parametrize("second", [BindTransmitter, BindReceiver, BindTransceiver])
def test_second_bind_gets_ralybnd(state, second):
    esme, smsc = bind_pair(state)
    [event] = smsc.receive_data(encode_pdu(second(sequence_number=50, system_id="again")))
    assert isinstance(event, Rejected)
    assert (event.status, event.command_id, event.sequence_number) == (S.ESME_RALYBND, second.command_id, 50)
    [answer] = answers(smsc)
    assert answer == RESPONSE_OF[second.command_id](sequence_number=50, command_status=S.ESME_RALYBND)
    assert smsc.state is state
    with pytest.raises(LocalProtocolError):
        esme.send(second(system_id="again"))


# --------------------------------------------------------------------------
# What may be sent in which state (SMPP 3.4 table 2-1)

ANY_BOUND = {TX, RX, TRX}
# request -> (direction, states in which it is allowed)
TABLE_2_1: dict[int, list[tuple[str, set[State]]]] = {
    C.BIND_TRANSMITTER: [("esme->smsc", {OPEN})],
    C.BIND_RECEIVER: [("esme->smsc", {OPEN})],
    C.BIND_TRANSCEIVER: [("esme->smsc", {OPEN})],
    C.OUTBIND: [("smsc->esme", {OPEN})],
    C.UNBIND: [("esme->smsc", ANY_BOUND), ("smsc->esme", ANY_BOUND)],
    C.SUBMIT_SM: [("esme->smsc", {TX, TRX})],
    C.SUBMIT_MULTI: [("esme->smsc", {TX, TRX})],
    C.DATA_SM: [("esme->smsc", {TX, TRX}), ("smsc->esme", {RX, TRX})],
    C.QUERY_SM: [("esme->smsc", {TX, TRX})],
    C.CANCEL_SM: [("esme->smsc", {TX, TRX})],
    C.REPLACE_SM: [("esme->smsc", {TX, TRX})],
    C.DELIVER_SM: [("smsc->esme", {RX, TRX})],
    C.ALERT_NOTIFICATION: [("smsc->esme", {RX, TRX})],
    # enquire_link: either side, in every state except closed (after unbind too, while the link lasts)
    C.ENQUIRE_LINK: [("esme->smsc", {OPEN, TX, RX, TRX, UNBOUND}), ("smsc->esme", {OPEN, TX, RX, TRX, UNBOUND})],
}
REQUESTS = sorted(TABLE_2_1)


def minimal_request(command_id: int, **header) -> Pdu:
    """The simplest valid request of a kind (submit_multi needs at least one destination)."""
    pdu = PDU_CLASSES[command_id](**header)
    if command_id == C.SUBMIT_MULTI:
        pdu.dest_addresses = [MultiDest(destination_addr="1")]
    return pdu
RECEIVER = {"esme->smsc": Side.SMSC, "smsc->esme": Side.ESME}


def allowed(command_id: int, receiver: Side, state: State) -> bool:
    return any(RECEIVER[direction] is receiver and state in states for direction, states in TABLE_2_1[command_id])


@pytest.mark.parametrize("state", [OPEN, TX, RX, TRX, UNBOUND])
@pytest.mark.parametrize("side", [Side.SMSC, Side.ESME])
@pytest.mark.parametrize("command_id", REQUESTS)
def test_receiving_each_request_in_each_state(command_id, side, state):
    session = session_in(side, state)
    request = minimal_request(command_id, sequence_number=321)
    events = session.receive_data(encode_pdu(request))
    replies = answers(session)
    if allowed(command_id, side, state):
        if command_id == C.ENQUIRE_LINK:
            assert events == []  # answered by the session itself
            assert replies == [response_to(request)]
        elif command_id == C.UNBIND:
            assert events == [Received(request)]
            assert replies == [response_to(request)]
            assert session.state is UNBOUND
        else:
            assert events == [Received(request)]
            assert replies == []  # the application answers
            assert session.state is (State.BINDING if command_id in BIND_FOR_IDS else state)
        return
    status = S.ESME_RALYBND if command_id in BIND_FOR_IDS and state in ANY_BOUND else S.ESME_RINVBNDSTS
    assert [(e.status, e.command_id, e.sequence_number) for e in events] == [(status, command_id, 321)]
    own = RESPONSE_OF.get(command_id)
    expected = own(sequence_number=321, command_status=status) if own else GenericNack(sequence_number=321, command_status=status)
    assert replies == [expected]
    assert session.state is state


BIND_FOR_IDS = {C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER}


@pytest.mark.parametrize("state", [OPEN, TX, RX, TRX, UNBOUND])
@pytest.mark.parametrize("side", [Side.SMSC, Side.ESME])
@pytest.mark.parametrize("command_id", REQUESTS)
def test_sending_each_request_in_each_state(command_id, side, state):
    session = session_in(side, state)
    peer = Side.ESME if side is Side.SMSC else Side.SMSC
    request = minimal_request(command_id)
    if allowed(command_id, peer, state):
        session.send(request)
        assert request.sequence_number != 0
        [wire] = split_frames(bytearray(session.data_to_send()))
        assert decode_pdu(wire) == request
        if command_id in RESPONSE_OF:
            assert session.outstanding[request.sequence_number].request is request
        else:  # outbind, alert_notification: no response will come, so no window slot is taken
            assert session.outstanding == {}
    else:
        with pytest.raises(LocalProtocolError):
            session.send(request)
        assert session.data_to_send() == b""
        assert session.outstanding == {}


def test_submit_sm_before_bind_gets_invbndsts():
    smsc = Session(Side.SMSC)
    [event] = smsc.receive_data(encode_pdu(SubmitSm(sequence_number=9, source_addr="1", destination_addr="2")))
    assert isinstance(event, Rejected) and event.status == S.ESME_RINVBNDSTS
    assert answers(smsc) == [SubmitSmResp(sequence_number=9, command_status=S.ESME_RINVBNDSTS)]
    assert smsc.state is OPEN
    esme = Session(Side.ESME)
    with pytest.raises(LocalProtocolError):
        esme.send(SubmitSm(destination_addr="2"))


def test_submit_sm_on_receiver_bind_gets_invbndsts():
    esme, smsc = bind_pair(RX)
    with pytest.raises(LocalProtocolError):
        esme.send(SubmitSm(destination_addr="2"))
    [event] = smsc.receive_data(encode_pdu(SubmitSm(sequence_number=77, destination_addr="2")))
    assert (event.status, event.sequence_number) == (S.ESME_RINVBNDSTS, 77)
    assert answers(smsc) == [SubmitSmResp(sequence_number=77, command_status=S.ESME_RINVBNDSTS)]
    assert smsc.state is RX


def test_smsc_cannot_deliver_to_a_transmitter():
    esme, smsc = bind_pair(TX)
    for pdu in (DeliverSm(destination_addr="1"), DataSm(destination_addr="1"), AlertNotification()):
        with pytest.raises(LocalProtocolError):
            smsc.send(pdu)
    assert smsc.outstanding == {} and smsc.data_to_send() == b""
    # An ESME bound as transmitter refuses one that arrives anyway.
    [event] = esme.receive_data(encode_pdu(DeliverSm(sequence_number=3)))
    assert event.status == S.ESME_RINVBNDSTS
    assert [(a.command_id, a.command_status, a.sequence_number) for a in answers(esme)] == [
        (C.DELIVER_SM_RESP, S.ESME_RINVBNDSTS, 3)
    ]


@pytest.mark.parametrize("state", [RX, TRX])
def test_smsc_delivers_to_receiver_and_transceiver(state):
    esme, smsc = bind_pair(state)
    deliver = smsc.send(DeliverSm(source_addr="1", destination_addr="2", short_message=b"mo"))
    [event] = transfer(smsc, esme)
    assert event == Received(deliver)
    esme.send(response_to(event.pdu))
    [reply] = transfer(esme, smsc)
    assert reply.request is deliver and reply.pdu.command_id == C.DELIVER_SM_RESP


# --------------------------------------------------------------------------
# enquire_link and unbind


@pytest.mark.parametrize("state", [OPEN, TX, RX, TRX, UNBOUND])
@pytest.mark.parametrize("side", [Side.SMSC, Side.ESME])
def test_enquire_link_answered_in_every_state_but_closed(side, state):
    session = session_in(side, state)
    assert session.receive_data(encode_pdu(EnquireLink(sequence_number=0x7FFFFFFF))) == []
    [answer] = answers(session)
    assert (answer.command_id, answer.command_status, answer.sequence_number) == (C.ENQUIRE_LINK_RESP, 0, 0x7FFFFFFF)
    assert session.state is state


@pytest.mark.parametrize("side", [Side.SMSC, Side.ESME])
def test_closed_session_answers_nothing_and_sends_nothing(side):
    session = session_in(side, CLOSED)
    assert session.receive_data(encode_pdu(EnquireLink(sequence_number=1))) == []
    assert session.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        session.send(EnquireLink())
    with pytest.raises(LocalProtocolError):
        session.send(response_to(EnquireLink(sequence_number=1)))


def test_enquire_link_round_trip_between_sessions():
    esme, smsc = bind_pair(TRX)
    link = smsc.send(EnquireLink())
    assert transfer(smsc, esme) == []
    [reply] = transfer(esme, smsc)
    assert reply.request is link and reply.pdu.command_id == C.ENQUIRE_LINK_RESP
    assert smsc.outstanding == {}


@pytest.mark.parametrize("state", [TX, RX, TRX])
def test_esme_unbinds(state):
    esme, smsc = bind_pair(state)
    unbind = esme.send(Unbind())
    [event] = transfer(esme, smsc)
    assert event == Received(unbind)
    assert smsc.state is UNBOUND
    [reply] = transfer(smsc, esme)  # unbind_resp was queued by the session itself
    assert reply.request is unbind and reply.pdu.command_id == C.UNBIND_RESP
    assert reply.pdu.sequence_number == unbind.sequence_number
    assert esme.state is UNBOUND
    # Nothing but enquire_link is accepted after unbind.
    [event] = smsc.receive_data(encode_pdu(SubmitSm(sequence_number=99)))
    assert event.status == S.ESME_RINVBNDSTS


def test_unbind_is_answered_after_the_requests_before_it():
    """A submit_sm answered later (after a commit) comes out before the unbind_resp, which the session holds."""
    clock = FakeClock()
    esme, smsc = bind_pair(TRX, clock)
    first, second = esme.send(SubmitSm()), esme.send(SubmitSm())
    unbind = esme.send(Unbind())
    events = transfer(esme, smsc)
    assert [e.pdu for e in events] == [first, second, unbind]
    assert smsc.state is UNBOUND and not smsc.finished and smsc.data_to_send() == b""
    smsc.send_raw(encode_pdu(SubmitSmResp(sequence_number=second.sequence_number, message_id="2")))
    assert not smsc.finished
    smsc.send(response_to(first, message_id="1"))
    assert smsc.finished and not smsc.unbind_overdue(clock.now + 3600)
    replies = transfer(smsc, esme)
    assert [(r.request, r.pdu.command_id) for r in replies] == [
        (second, C.SUBMIT_SM_RESP), (first, C.SUBMIT_SM_RESP), (unbind, C.UNBIND_RESP)
    ]  # fmt: skip


def test_an_unbind_held_for_answers_that_never_come_is_overdue_after_the_response_timeout():
    clock = FakeClock()
    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    esme.send(SubmitSm())
    unbind = esme.send(Unbind())
    transfer(esme, smsc)
    clock.now += 4.9
    assert not smsc.unbind_overdue() and not smsc.finished
    clock.now += 0.1
    assert smsc.unbind_overdue()
    smsc.answer_unbind()
    assert smsc.finished and not smsc.unbind_overdue()
    [reply] = transfer(smsc, esme)
    assert reply.request is unbind and esme.state is UNBOUND


def test_an_unbind_waits_for_the_answers_to_our_requests_but_not_for_our_own_unbind():
    """A deliver_sm that crossed the peer's unbind holds the unbind_resp until it is answered (or expires);
    an unbind of ours that crossed it does not (each side would wait for the other's answer)."""
    clock = FakeClock()
    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    deliver = smsc.send(DeliverSm())
    smsc.data_to_send()  # on the wire
    unbind = esme.send(Unbind())
    transfer(esme, smsc)
    assert not smsc.finished and smsc.data_to_send() == b""
    smsc.receive_data(encode_pdu(DeliverSmResp(sequence_number=deliver.sequence_number)))
    assert smsc.finished and smsc.data_to_send() == encode_pdu(UnbindResp(sequence_number=unbind.sequence_number))

    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    smsc.send(DeliverSm())
    smsc.data_to_send()
    esme.send(Unbind())
    transfer(esme, smsc)
    clock.now += 5.0
    assert [r.command_id for r in smsc.expired_requests()] == [C.DELIVER_SM] and smsc.finished

    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    smsc.send(Unbind())
    smsc.data_to_send()
    esme.send(Unbind())
    transfer(esme, smsc)
    assert smsc.finished


def test_after_a_framing_error_the_requests_before_it_are_answered_then_the_session_closes():
    clock = FakeClock()
    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    first = esme.send(SubmitSm())
    untrusted_length = (4).to_bytes(4, "big") + int(C.SUBMIT_SM).to_bytes(4, "big") + bytes(4) + (99).to_bytes(4, "big")
    events = smsc.receive_data(esme.data_to_send() + untrusted_length)
    assert [type(e) for e in events] == [Received, Rejected]
    assert smsc.receive_data(encode_pdu(EnquireLink(sequence_number=7))) == []  # nothing after it is read
    assert smsc.state is TRX and not smsc.finished
    assert not smsc.enquire_link_due(clock.now + 3600)  # nor does a keep-alive go out: its answer could not be read
    clock.now += 4.9
    assert not smsc.answers_overdue()
    clock.now += 0.1
    assert smsc.answers_overdue()  # the application closes the link then
    smsc.send(response_to(first, message_id="1"))
    assert smsc.state is CLOSED and smsc.finished
    assert [(p.command_id, p.sequence_number) for p in answers(smsc)] == [
        (C.GENERIC_NACK, 99), (C.SUBMIT_SM_RESP, first.sequence_number)
    ]  # fmt: skip


def test_after_the_peers_end_of_input_its_requests_are_answered_its_unbind_last_then_the_session_closes():
    """A client that half-closes (shutdown(SHUT_WR)) after its PDUs reads on: its unbind is answered once its own
    requests are, without waiting for a deliver_sm it can no longer answer; no request of ours goes out meanwhile."""
    clock = FakeClock()
    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    smsc.send(DeliverSm())
    transfer(smsc, esme)  # unanswered: the client sends its FIN after its unbind
    submit = esme.send(SubmitSm())
    esme.send(Unbind())
    transfer(esme, smsc)
    smsc.receive_eof()
    assert not smsc.finished and not smsc.enquire_link_due(clock.now + 3600)
    clock.now += 5.0
    assert smsc.answers_overdue()  # the application closes the link then
    smsc.send(response_to(submit, message_id="1"))
    assert smsc.finished
    assert [p.command_id for p in answers(smsc)] == [C.SUBMIT_SM_RESP, C.UNBIND_RESP]


def test_no_request_goes_to_a_peer_that_ended_its_input_while_answers_are_owed_to_it():
    """Without an unbind of its own to answer, the session stayed open to requests at the peer's EOF: an enquire_link
    fell due and a deliver_sm could be sent, whose answer cannot come."""
    clock = FakeClock()
    esme, smsc = bind_pair(TRX, clock, response_timeout=5.0)
    esme.send(SubmitSm())
    transfer(esme, smsc)
    smsc.receive_eof()
    assert not smsc.enquire_link_due(clock.now + 3600)
    with pytest.raises(LocalProtocolError):
        smsc.send(DeliverSm())


def test_a_session_whose_peer_ends_its_input_with_nothing_to_answer_closes_at_once():
    _esme, smsc = bind_pair(TRX)
    smsc.receive_eof()
    assert smsc.state is CLOSED and smsc.finished


def test_a_session_closed_by_a_framing_error_is_freed_at_once_with_what_it_read():
    """The error, kept with its traceback, made a cycle with the frame that read it: the session and what it read (a
    70,000-octet PDU's start, from a client never bound) stayed until the collector ran, seldom in the gateway (gctune):
    4000 such connections, each closed at once, still held 220 MB."""
    session = Session(Side.SMSC)
    session.receive_data((70_000).to_bytes(4, "big") + int(C.SUBMIT_SM).to_bytes(4, "big") + bytes(8) + bytes(60_000))
    assert session.state is CLOSED
    gone = weakref.ref(session)
    gc.disable()  # (freed by reference counting alone, not by a collection that happened to run)
    try:
        del session
        assert gone() is None
    finally:
        gc.enable()


def test_requests_the_session_answers_itself_do_not_hold_the_unbind():
    esme, smsc = bind_pair(TX)
    smsc.receive_data(encode_pdu(DeliverSm(sequence_number=50)))  # not allowed from an ESME: refused at once
    esme.send(EnquireLink())
    esme.send(Unbind())
    transfer(esme, smsc)
    assert smsc.finished
    assert [p.command_id for p in answers(smsc)] == [C.DELIVER_SM_RESP, C.ENQUIRE_LINK_RESP, C.UNBIND_RESP]


def test_smsc_unbinds():
    esme, smsc = bind_pair(TRX)
    unbind = smsc.send(Unbind())
    [event] = transfer(smsc, esme)
    assert event == Received(unbind) and esme.state is UNBOUND
    [reply] = transfer(esme, smsc)
    assert reply.request is unbind and smsc.state is UNBOUND


# --------------------------------------------------------------------------
# Window and response matching


def test_window_full_and_a_response_frees_a_slot():
    esme, smsc = bind_pair(TX, window=3)
    sent = [esme.send(SubmitSm(destination_addr=str(i))) for i in range(3)]
    assert not esme.can_send_request
    data_before = esme.data_to_send()
    with pytest.raises(WindowFull):
        esme.send(SubmitSm(destination_addr="overflow"))
    assert issubclass(WindowFull, LocalProtocolError)
    assert esme.data_to_send() == b""  # nothing queued for the refused request
    assert len(esme.outstanding) == 3

    smsc_events = smsc.receive_data(data_before)
    smsc.send(response_to(smsc_events[1].pdu, message_id="m1"))
    [reply] = transfer(smsc, esme)
    assert reply.request is sent[1]
    assert esme.can_send_request
    fourth = esme.send(SubmitSm(destination_addr="fits now"))
    assert fourth.sequence_number == sent[-1].sequence_number + 1  # the refused one consumed none
    with pytest.raises(WindowFull):
        esme.send(SubmitSm(destination_addr="full again"))


def test_window_does_not_block_link_management():
    esme, smsc = bind_pair(TRX, window=1)
    esme.send(SubmitSm())
    esme.send(EnquireLink())  # keep-alive still possible with a full window
    esme.send(Unbind())
    assert len(esme.outstanding) == 3


def test_responses_matched_to_their_requests_in_any_order():
    esme, smsc = bind_pair(TRX)
    sent = [esme.send(SubmitSm(destination_addr=str(i), short_message=bytes([i]))) for i in range(5)]
    received = transfer(esme, smsc)
    assert [e.pdu for e in received] == sent
    for event in reversed(received):
        smsc.send(response_to(event.pdu, message_id=f"id-{event.pdu.destination_addr}"))
    replies = transfer(smsc, esme)
    assert [r.request for r in replies] == list(reversed(sent))
    for reply in replies:
        assert reply.pdu.message_id == f"id-{reply.request.destination_addr}"
        assert reply.pdu.sequence_number == reply.request.sequence_number
    assert esme.outstanding == {}


def test_generic_nack_is_matched_to_the_request():
    esme, smsc = bind_pair(TRX)
    query = esme.send(QuerySm(message_id="x"))
    [reply] = esme.receive_data(encode_pdu(GenericNack(sequence_number=query.sequence_number, command_status=S.ESME_RSYSERR)))
    assert reply.request is query and reply.pdu.command_status == S.ESME_RSYSERR
    assert esme.outstanding == {}


def test_response_to_nothing_is_ignored_without_answer():
    esme, smsc = bind_pair(TRX)
    [event] = esme.receive_data(encode_pdu(SubmitSmResp(sequence_number=12345, message_id="?")))
    assert isinstance(event, Rejected) and event.status == 0 and event.sequence_number == 12345
    assert esme.data_to_send() == b""
    # A duplicate response after the real one is ignored as well.
    submit = esme.send(SubmitSm())
    resp = encode_pdu(SubmitSmResp(sequence_number=submit.sequence_number, message_id="a"))
    [first] = esme.receive_data(resp)
    [second] = esme.receive_data(resp)
    assert first.request is submit and isinstance(second, Rejected)


def test_a_response_of_another_type_does_not_answer_the_request():
    _esme, smsc = bind_pair(TRX)
    deliver = smsc.send(DeliverSm(destination_addr="8613800000001", short_message=b"hi"))
    smsc.data_to_send()  # the deliver_sm went out
    for wrong in (SubmitSmResp(sequence_number=deliver.sequence_number, message_id="x"),
                  EnquireLinkResp(sequence_number=deliver.sequence_number)):  # fmt: skip
        [event] = smsc.receive_data(encode_pdu(wrong))
        assert isinstance(event, Rejected) and event.status == 0 and "does not answer deliver_sm" in event.reason
        assert smsc.data_to_send() == b""  # no answer to a response
        assert deliver.sequence_number in smsc.outstanding  # so it still times out and goes again
    [answer] = smsc.receive_data(encode_pdu(DeliverSmResp(sequence_number=deliver.sequence_number)))
    assert answer.request is deliver and smsc.outstanding == {}


def test_explicit_sequence_number_is_kept():
    esme, smsc = bind_pair(TRX)
    submit = esme.send(SubmitSm(sequence_number=4242))
    assert submit.sequence_number == 4242 and 4242 in esme.outstanding


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(1, 8),
    ops=st.lists(st.one_of(st.just("send"), st.integers(0, 50)), max_size=60),
)
def test_window_invariant_under_random_traffic(window, ops):
    """Random sends and out-of-order answers: the window is never exceeded and every
    response finds exactly the request with its sequence number."""
    esme, smsc = bind_pair(TRX, window=window)
    pending: list[Pdu] = []  # requests the SMSC has seen and not answered
    sent = 0
    for op in ops:
        if op == "send":
            if esme.can_send_request:
                esme.send(SubmitSm(short_message=sent.to_bytes(2, "big")))
                sent += 1
            else:
                with pytest.raises(WindowFull):
                    esme.send(SubmitSm())
            pending += [e.pdu for e in transfer(esme, smsc)]
        elif pending:
            request = pending.pop(op % len(pending))
            smsc.send(response_to(request, message_id=request.short_message.hex()))
            [reply] = transfer(smsc, esme)
            assert reply.request.sequence_number == request.sequence_number
            assert reply.request.short_message == request.short_message
        assert len(esme.outstanding) <= window
        assert len(esme.outstanding) == len(pending)


# --------------------------------------------------------------------------
# Timers, with a fake clock


def test_expired_requests():
    clock = FakeClock(100.0)
    esme, smsc = bind_pair(TRX, clock=clock, response_timeout=10.0)
    first = esme.send(SubmitSm(destination_addr="1"))
    clock.now = 105.0
    second = esme.send(SubmitSm(destination_addr="2"))
    clock.now = 109.9
    assert esme.expired_requests() == []
    clock.now = 110.0
    assert esme.expired_requests() == [first]
    assert list(esme.outstanding) == [second.sequence_number]
    assert esme.expired_requests() == []  # returned once only
    assert esme.expired_requests(now=115.0) == [second]
    assert esme.outstanding == {}
    # A late response is told apart, once; then it is one to nothing outstanding.
    [event] = esme.receive_data(encode_pdu(response_to(first)))
    assert event == LateResponse(response_to(first), first)
    [event] = esme.receive_data(encode_pdu(response_to(first)))
    assert isinstance(event, Rejected) and event.status == 0


def test_a_deliver_sm_the_peer_has_not_read_does_not_time_out_until_it_reads_again():
    """While the peer is not reading, only enquire_link and unbind expire (link_only): it cannot answer a deliver_sm
    still unread behind them. Once it reads, the deliver_sm's response_timeout counts from then (restart_timers), and
    its answer is one in time, not a late one after a second copy."""
    clock = FakeClock(100.0)
    esme, smsc = bind_pair(TRX, clock=clock, response_timeout=10.0)
    mt = smsc.send(DeliverSm(destination_addr="1"))
    probe = smsc.send(EnquireLink())
    clock.now = 130.0
    assert smsc.expired_requests(link_only=True) == [probe]
    assert list(smsc.outstanding) == [mt.sequence_number]
    smsc.restart_timers()  # it reads again at 130
    clock.now = 139.9
    assert smsc.expired_requests() == []
    [delivered] = transfer(smsc, esme)
    esme.send(response_to(delivered.pdu))
    assert Received(response_to(mt), mt) in transfer(esme, smsc)  # (after the enquire_link_resp, late)
    assert smsc.expired_requests(now=1e9) == [] and smsc.outstanding == {}


def test_requests_given_up_on_take_their_late_answer_for_ten_response_timeouts_however_many_there_are():
    """Only the last `window` of them were kept: a peer stalled past two response_timeouts had its answers to the
    first ones ignored (each MT sent again). Kept by age instead, then forgotten."""
    clock = FakeClock(100.0)
    esme, _smsc = bind_pair(TRX, clock=clock, response_timeout=1.0, window=2)
    given_up = []
    for _ in range(3):  # a window times out, the next one goes out and times out too, and the next
        sent = [esme.send(SubmitSm()), esme.send(SubmitSm())]
        clock.now += 1
        assert esme.expired_requests() == sent
        given_up += sent
    events = esme.receive_data(b"".join(encode_pdu(response_to(r)) for r in given_up))
    assert events == [LateResponse(response_to(r), r) for r in given_up]

    first, second = esme.send(SubmitSm()), esme.send(SubmitSm())
    clock.now += 1
    assert esme.expired_requests() == [first, second]
    forgotten_at = clock.now + LATE_ANSWER_TIMEOUTS * 1.0
    clock.now = forgotten_at - 0.01
    assert esme.receive_data(encode_pdu(response_to(first))) == [LateResponse(response_to(first), first)]
    clock.now = forgotten_at
    [event] = esme.receive_data(encode_pdu(response_to(second)))
    assert isinstance(event, Rejected) and event.status == 0
    assert len(esme.given_up) == 0  # (what no late answer can take any more is not held)


def test_enquire_link_due():
    clock = FakeClock(0.0)
    esme, smsc = bind_pair(TRX, clock=clock, enquire_link_interval=30.0)
    clock.now = 29.9
    assert not esme.enquire_link_due()
    clock.now = 30.0
    assert esme.enquire_link_due()
    # One enquire_link per interval, while the peer says nothing.
    esme.send(EnquireLink())
    esme.data_to_send()
    assert not esme.enquire_link_due()
    assert esme.enquire_link_due(now=60.0)
    # What the peer sends postpones it.
    clock.now = 50.0
    esme.receive_data(encode_pdu(DeliverSm(sequence_number=5)))
    assert not esme.enquire_link_due(now=79.9)
    assert esme.enquire_link_due(now=80.0)
    # What we send does not: a dead peer's link takes it for minutes.
    clock.now = 70.0
    esme.send(SubmitSm(source_addr="1", destination_addr="2"))
    esme.data_to_send()
    assert esme.enquire_link_due(now=80.0)


def test_enquire_link_not_due_when_unbound_or_disabled():
    clock = FakeClock(0.0)
    assert not Session(Side.ESME, clock=clock).enquire_link_due(now=1e9)
    esme, _ = bind_pair(TRX, clock=clock, enquire_link_interval=0)
    assert not esme.enquire_link_due(now=1e9)


def test_is_idle():
    clock = FakeClock(0.0)
    smsc = Session(Side.SMSC, clock=clock, idle_timeout=60.0)
    clock.now = 59.9
    assert not smsc.is_idle()
    clock.now = 60.0
    assert smsc.is_idle()
    smsc.receive_data(encode_pdu(EnquireLink(sequence_number=1))[:5])  # any bytes count
    assert not smsc.is_idle()
    assert smsc.is_idle(now=120.0)
    # Sending does not count: only the peer's silence matters.
    smsc.data_to_send()
    assert smsc.is_idle(now=120.0)
    assert not Session(Side.SMSC, clock=clock).is_idle(now=1e9)  # idle_timeout 0 = never


# --------------------------------------------------------------------------
# Sequence numbers


def test_sequence_numbers_start_at_one_and_increase():
    esme, _ = bind_pair(TRX)
    # The bind used 1.
    assert [esme.send(EnquireLink()).sequence_number for _ in range(3)] == [2, 3, 4]


def test_sequence_numbers_wrap_at_0x7fffffff():
    session = Session(Side.ESME)
    session._sequence = 0x7FFFFFFD  # as if 2**31 - 3 requests had been sent
    assert [session.next_sequence() for _ in range(4)] == [0x7FFFFFFE, 0x7FFFFFFF, 1, 2]


def test_sequence_wrap_through_send():
    esme, smsc = bind_pair(TRX)
    esme._sequence = 0x7FFFFFFE
    a = esme.send(SubmitSm())
    b = esme.send(SubmitSm())
    assert (a.sequence_number, b.sequence_number) == (0x7FFFFFFF, 1)
    received = transfer(esme, smsc)
    assert [e.pdu.sequence_number for e in received] == [0x7FFFFFFF, 1]
    for event in received:
        smsc.send(response_to(event.pdu, message_id="m"))
    assert [r.request for r in transfer(smsc, esme)] == [a, b]


@settings(max_examples=30, deadline=None)
@given(start=st.integers(0, 0x7FFFFFFF), count=st.integers(1, 50))
def test_sequence_numbers_stay_in_range(start, count):
    session = Session(Side.SMSC)
    session._sequence = start
    for _ in range(count):
        seq = session.next_sequence()
        assert 1 <= seq <= 0x7FFFFFFF
