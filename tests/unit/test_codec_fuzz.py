"""Fuzzing the codec through the session, as the gateway meets a byte stream.

Random bytes, random bodies behind plausible headers, and valid PDUs mutated in
targeted ways (flipped/inserted/deleted octets, truncation, corrupted
command_length, sm_length and TLV lengths, removed NULs) are fed to a fresh
`Session(Side.SMSC)` in random chunkings. Nothing may raise, and the session
must answer exactly as an independent framing model says: every PDU with a
readable header gets exactly one answer carrying its sequence number, the
answer does not depend on how the stream was cut, and an impossible
command_length closes the session after one generic_nack.

Then targeted malformed PDUs with the exact command_status SMPP 3.4 requires.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import MAX_PDU_LENGTH, PduError, decode_pdu, encode_pdu, fields_before_fault, split_frames
from gateway.smpp.constants import CommandId, CommandStatus
from gateway.smpp.pdu import PDU_CLASSES, RESPONSE_OF, BindTransmitter, EnquireLink, Pdu, SubmitSm, response_to
from gateway.smpp.session import MAX_PDU_LENGTH_BEFORE_BIND, Received, Rejected, Session, Side, State

from .test_codec_roundtrip import COMMAND_IDS, SM, SPEC_FIELDS, Case, cases

C = CommandId
S = CommandStatus
HEADER = struct.Struct(">IIII")
BINDS = {C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER}


# --------------------------------------------------------------------------
# Helpers


def raw_pdu(command_id: int, body: bytes = b"", sequence: int = 1, status: int = 0, length: int | None = None) -> bytes:
    return HEADER.pack(16 + len(body) if length is None else length, command_id, status, sequence) + body


def answers_of(session: Session) -> list[Pdu]:
    """Decode everything the session wants to write (it must itself be well-formed)."""
    buffer = bytearray(session.data_to_send())
    frames = split_frames(buffer)
    assert not buffer, "session wrote a partial PDU"
    return [decode_pdu(frame) for frame in frames]


def feed(stream: bytes, cuts: list[int]) -> tuple[Session, list, list[Pdu]]:
    """The stream cut at `cuts` into an SMSC session whose application refuses every bind as it comes (the session
    reads what follows a bind once it is answered: `resume`)."""
    session = Session(Side.SMSC)
    events: list = []

    def take(new: list) -> None:
        while new:
            events.extend(new)
            for event in new:
                if isinstance(event, Received) and event.pdu.command_id in BINDS:
                    session.send(response_to(event.pdu, S.ESME_RBINDFAIL))
            new = session.resume()

    start = 0
    for cut in [*cuts, len(stream)]:
        take(session.receive_data(stream[start:cut]))
        start = cut
    return session, events, answers_of(session)


def event_key(event) -> tuple:
    if isinstance(event, Rejected):
        return ("rejected", event.status, event.command_id, event.sequence_number)
    assert isinstance(event, Received)
    return ("received", event.pdu, event.request)


def answer_key(pdu: Pdu) -> tuple:
    assert pdu.tlvs == {}
    return (pdu.command_id, pdu.command_status, pdu.sequence_number)


def expected_for_frame(frame: bytes) -> tuple[list[tuple], list[tuple]]:
    """What an SMSC session in state OPEN must answer for one complete frame (with `feed`'s application, which
    refuses each bind), and the event it reports."""
    _length, command_id, _status, sequence = HEADER.unpack_from(frame)
    try:
        pdu = decode_pdu(frame)
    except PduError as exc:
        assert exc.sequence_number == sequence and exc.command_id == command_id
        assert exc.status != 0
        own_response = RESPONSE_OF.get(command_id) if not command_id & 0x80000000 else None
        if own_response is None or exc.status in (S.ESME_RINVCMDID, S.ESME_RINVCMDLEN):
            answer = (C.GENERIC_NACK, exc.status, sequence)
        else:
            answer = (own_response.command_id, exc.status, sequence)
        return [answer], [("rejected", exc.status, command_id, sequence)]
    if pdu.is_response:  # nothing is outstanding: ignored, reported with status 0
        return [], [("rejected", 0, command_id, sequence)]
    if command_id in BINDS:  # the application answers binds: here, refused
        return [(RESPONSE_OF[command_id].command_id, S.ESME_RBINDFAIL, sequence)], [("received", pdu, None)]
    if command_id == C.ENQUIRE_LINK:
        return [(C.ENQUIRE_LINK_RESP, 0, sequence)], []
    own_response = RESPONSE_OF.get(command_id)
    answer_id = own_response.command_id if own_response else C.GENERIC_NACK
    return [(answer_id, S.ESME_RINVBNDSTS, sequence)], [("rejected", S.ESME_RINVBNDSTS, command_id, sequence)]


def model(stream: bytes) -> tuple[list[tuple], list[tuple], bool]:
    """Independent framing: (answers, events, broken) for a whole stream."""
    answers: list[tuple] = []
    events: list[tuple] = []
    pos = 0
    while len(stream) - pos >= 16:
        length, command_id, _status, sequence = HEADER.unpack_from(stream, pos)
        if length < 16 or length > MAX_PDU_LENGTH_BEFORE_BIND:  # (feed's session never binds)
            # The stream cannot be resynchronised: one generic_nack, nothing more is read, and the session
            # closes once the requests before it are answered (at once when none waits for the application).
            answers.append((C.GENERIC_NACK, S.ESME_RINVCMDLEN, sequence))
            events.append(("rejected", S.ESME_RINVCMDLEN, command_id, sequence))
            return answers, events, True
        if len(stream) - pos < length:
            break
        frame_answers, frame_events = expected_for_frame(stream[pos : pos + length])
        answers += frame_answers
        events += frame_events
        pos += length
    return answers, events, False


def check_stream(stream: bytes, cuts: list[int]) -> None:
    expected_answers, expected_events, broken = model(stream)
    session, events, answers = feed(stream, cuts)
    assert [event_key(e) for e in events] == expected_events
    assert [answer_key(a) for a in answers] == expected_answers
    assert (session.state is State.CLOSED) == broken  # (binds are answered as they come)
    assert session.halted == broken
    if broken:
        assert session.receive_data(raw_pdu(C.ENQUIRE_LINK, sequence=5)) == []
        assert session.data_to_send() == b""


# --------------------------------------------------------------------------
# Strategies


@st.composite
def chunkings(draw, length: int) -> list[int]:
    if length < 2:
        return []
    how = draw(st.sampled_from(["whole", "bytes", "random"]))
    if how == "whole":
        return []
    if how == "bytes":
        return list(range(1, length))
    return sorted(draw(st.sets(st.integers(1, length - 1), max_size=12)))


def _sm_length_offset(pdu: Pdu) -> int | None:
    if not any(kind == SM for _n, kind, _s in SPEC_FIELDS[pdu.name]):
        return None
    return len(encode_pdu(replace(pdu, short_message=b"", tlvs={}))) - 1


def _tlv_offsets(pdu: Pdu, wire: bytes) -> list[int]:
    if not pdu.tlvs:
        return []
    pos = len(encode_pdu(replace(pdu, tlvs={}))) if pdu.FIELDS else 16
    offsets = []
    while pos + 4 <= len(wire):
        offsets.append(pos)
        pos += 4 + int.from_bytes(wire[pos + 2 : pos + 4], "big")
    return offsets


@st.composite
def mutated_pdus(draw) -> bytes:
    case: Case = draw(cases(max_list=3))
    pdu = case.pdu()
    wire = bytearray(encode_pdu(pdu))

    structural = draw(st.sampled_from(["none", "sm_length", "tlv_length", "remove_nul", "command_id"]))
    if structural == "sm_length" and (offset := _sm_length_offset(pdu)) is not None and offset < len(wire):
        wire[offset] = draw(st.integers(0, 255))
    elif structural == "tlv_length" and (offsets := _tlv_offsets(pdu, bytes(wire))):
        at = draw(st.sampled_from(offsets))
        wire[at + 2 : at + 4] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    elif structural == "remove_nul" and (nuls := [i for i in range(16, len(wire)) if wire[i] == 0]):
        del wire[draw(st.sampled_from(nuls))]
    elif structural == "command_id":
        wire[4:8] = draw(st.one_of(st.sampled_from(list(COMMAND_IDS.values())), st.integers(0, 0xFFFFFFFF))).to_bytes(4, "big")

    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and wire:
            i = draw(st.integers(0, len(wire) - 1))
            wire[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            wire.insert(draw(st.integers(0, len(wire))), draw(st.integers(0, 255)))
        elif op == "delete" and wire:
            del wire[draw(st.integers(0, len(wire) - 1))]
        elif op == "truncate" and wire:
            del wire[draw(st.integers(0, len(wire) - 1)) :]

    length_fix = draw(st.sampled_from(["actual", "actual", "keep", "random", "small", "nearby"]))
    if len(wire) >= 4:
        if length_fix == "actual":
            wire[0:4] = len(wire).to_bytes(4, "big")
        elif length_fix == "random":
            wire[0:4] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "big")
        elif length_fix == "small":
            wire[0:4] = draw(st.integers(0, 15)).to_bytes(4, "big")
        elif length_fix == "nearby":
            wire[0:4] = max(0, len(wire) + draw(st.integers(-8, 8))).to_bytes(4, "big")
    return bytes(wire)


@st.composite
def random_bodies(draw) -> bytes:
    """A well-framed header (known or random command_id) in front of random body bytes."""
    command_id = draw(st.one_of(st.sampled_from(list(COMMAND_IDS.values())), st.integers(0, 0xFFFFFFFF)))
    body = draw(st.binary(max_size=80))
    return raw_pdu(command_id, body, sequence=draw(st.integers(0, 0xFFFFFFFF)), status=draw(st.integers(0, 3)))


valid_pdus = cases(max_list=3).map(lambda case: encode_pdu(case.pdu()))
stream_items = st.one_of(valid_pdus, mutated_pdus(), mutated_pdus(), random_bodies(), st.binary(max_size=40))

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------
# Properties


@FUZZ
@given(data=st.data())
def test_streams_of_mutated_pdus(data):
    stream = b"".join(data.draw(st.lists(stream_items, min_size=1, max_size=4)))
    check_stream(stream, data.draw(chunkings(len(stream))))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_bytes(data):
    stream = data.draw(st.binary(max_size=300))
    check_stream(stream, data.draw(chunkings(len(stream))))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_bodies_behind_valid_headers(data):
    stream = b"".join(data.draw(st.lists(random_bodies(), min_size=1, max_size=5)))
    check_stream(stream, data.draw(chunkings(len(stream))))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_chunking_does_not_change_anything(data):
    stream = b"".join(data.draw(st.lists(stream_items, min_size=1, max_size=4)))
    whole = feed(stream, [])
    cut = feed(stream, data.draw(chunkings(len(stream))))
    assert [event_key(e) for e in cut[1]] == [event_key(e) for e in whole[1]]
    assert [answer_key(a) for a in cut[2]] == [answer_key(a) for a in whole[2]]
    assert cut[0].state == whole[0].state


@settings(max_examples=60, deadline=None)
@given(case=cases(max_list=3))
def test_one_byte_at_a_time_decodes_the_same(case):
    wire = encode_pdu(case.pdu())
    whole = feed(wire, [])
    trickle = feed(wire, list(range(1, len(wire))))
    assert [event_key(e) for e in trickle[1]] == [event_key(e) for e in whole[1]]
    assert [answer_key(a) for a in trickle[2]] == [answer_key(a) for a in whole[2]]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_decode_raises_only_pdu_error(data):
    frame = data.draw(st.one_of(mutated_pdus(), random_bodies(), st.binary(max_size=60)))
    try:
        decode_pdu(frame)
    except PduError as exc:
        assert exc.status in set(CommandStatus) - {S.ESME_ROK}
        fields_before_fault(frame)  # what its log line names (server.py) is read without raising


def test_the_fields_before_a_fault_are_read_and_the_rest_left_at_their_defaults():
    too_long = raw_pdu(C.SUBMIT_SM, submit_body(source=b"8613800000001", dest=b"8" * 22), sequence=7)
    with pytest.raises(PduError):
        decode_pdu(too_long)
    pdu = fields_before_fault(too_long)
    assert isinstance(pdu, SubmitSm)
    assert (pdu.sequence_number, pdu.source_addr, pdu.destination_addr, pdu.short_message) == (7, "8613800000001", "", b"")


# --------------------------------------------------------------------------
# Targeted malformed PDUs with exact statuses


def submit_body(
    *,
    service_type: bytes = b"",
    source: bytes = b"1234",
    dest: bytes = b"5678",
    sm: bytes = b"hello",
    sm_length: int | None = None,
    tlvs: bytes = b"",
) -> bytes:
    return (
        service_type + b"\0"
        + b"\x01\x01" + source + b"\0"
        + b"\x01\x01" + dest + b"\0"
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\0" + b"\0"  # schedule_delivery_time, validity_period
        + b"\x00\x00\x00\x00"  # registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
        + bytes([len(sm) if sm_length is None else sm_length]) + sm
        + tlvs
    )  # fmt: skip


def bind_body(system_id: bytes = b"esme", password: bytes = b"pw", system_type: bytes = b"") -> bytes:
    return system_id + b"\0" + password + b"\0" + system_type + b"\0" + b"\x34\x00\x00" + b"\0"


def bound_smsc() -> Session:
    """An SMSC session bound as transceiver, so submit_sm is legal when well-formed."""
    session = Session(Side.SMSC)
    [event] = session.receive_data(encode_pdu(BindTransmitter(sequence_number=1, system_id="esme")))
    session.send(RESPONSE_OF[C.BIND_TRANSMITTER](sequence_number=1, system_id="smsc"))
    session.data_to_send()
    assert session.state is State.BOUND_TX
    return session


def only_answer(session: Session, data: bytes) -> tuple[list, Pdu]:
    events = session.receive_data(data)
    [answer] = answers_of(session)
    return events, answer


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (submit_body(source=b"1" * 21), S.ESME_RINVSRCADR),
        (submit_body(source=b"1" * 40), S.ESME_RINVSRCADR),
        (submit_body(dest=b"2" * 21), S.ESME_RINVDSTADR),
        (submit_body(service_type=b"CMTXYZ"), S.ESME_RINVSERTYP),
        (submit_body(sm=b"abc", sm_length=10), S.ESME_RINVMSGLEN),
        (submit_body(sm=b"", sm_length=255), S.ESME_RINVMSGLEN),
        (submit_body(sm=b"x" * 255, sm_length=255), S.ESME_RINVMSGLEN),  # all there, but over 254 (5.2.21)
        (submit_body(tlvs=b"\x02\x04\x00\x05\x00\x01"), S.ESME_RINVOPTPARSTREAM),  # length 5, 2 octets left
        (submit_body(tlvs=b"\x02\x04\x00"), S.ESME_RINVOPTPARSTREAM),  # truncated TLV header
        (submit_body(tlvs=b"\x14\x00\xff\xff\x00"), S.ESME_RINVOPTPARSTREAM),  # vendor TLV runs past too
        (submit_body(tlvs=b"\x02\x04\x00\x01\x07"), S.ESME_RINVPARLEN),  # user_message_reference is 2 octets
        (submit_body(tlvs=b"\x02\x0e\x00\x02\x00\x03"), S.ESME_RINVPARLEN),  # sar_total_segments is 1 octet
        (submit_body(tlvs=b"\x04\x27\x00\x00"), S.ESME_RINVPARLEN),  # message_state is 1 octet
        (submit_body(tlvs=b"\x04\x23\x00\x02\x01\x02"), S.ESME_RINVPARLEN),  # network_error_code is 3 octets
        (submit_body(tlvs=b"\x00\x1e\x00\x00"), S.ESME_RINVPARLEN),  # receipted_message_id needs its NUL
    ],
)
def test_submit_sm_malformed_exact_status(body, status):
    session = bound_smsc()
    events, answer = only_answer(session, raw_pdu(C.SUBMIT_SM, body, sequence=0x1234))
    assert answer == RESPONSE_OF[C.SUBMIT_SM](sequence_number=0x1234, command_status=status)
    assert [event_key(e) for e in events] == [("rejected", status, C.SUBMIT_SM, 0x1234)]
    assert session.state is State.BOUND_TX


def test_submit_sm_boundaries_are_accepted():
    session = bound_smsc()
    body = submit_body(service_type=b"CMTXY", source=b"1" * 20, dest=b"2" * 20, sm=b"x" * 254)
    [event] = session.receive_data(raw_pdu(C.SUBMIT_SM, body, sequence=9))
    assert isinstance(event, Received)
    assert event.pdu.source_addr == "1" * 20
    assert event.pdu.destination_addr == "2" * 20
    assert event.pdu.short_message == b"x" * 254
    assert session.data_to_send() == b""


@pytest.mark.parametrize("bind", sorted(BINDS))
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (bind_body(system_id=b"S" * 16), S.ESME_RINVSYSID),
        (bind_body(system_id=b"S" * 30), S.ESME_RINVSYSID),
        (bind_body(password=b"P" * 9), S.ESME_RINVPASWD),
        (bind_body(system_type=b"T" * 13), S.ESME_RINVSYSTYP),
    ],
)
def test_bind_malformed_exact_status(bind, body, status):
    session = Session(Side.SMSC)
    events, answer = only_answer(session, raw_pdu(bind, body, sequence=77))
    assert answer == RESPONSE_OF[bind](sequence_number=77, command_status=status)
    assert answer.command_id == bind | 0x80000000
    assert [event_key(e) for e in events] == [("rejected", status, bind, 77)]
    assert session.state is State.OPEN


@pytest.mark.parametrize("bind", sorted(BINDS))
def test_bind_longest_fields_are_accepted(bind):
    session = Session(Side.SMSC)
    [event] = session.receive_data(raw_pdu(bind, bind_body(b"S" * 15, b"P" * 8, b"T" * 12), sequence=3))
    assert isinstance(event, Received)
    assert (event.pdu.system_id, event.pdu.password, event.pdu.system_type) == ("S" * 15, "P" * 8, "T" * 12)


@pytest.mark.parametrize("command_id", [0x00000099, 0x0000000A, 0x00000010, 0x80000099, 0x80000102, 0xFFFFFFFF])
def test_unknown_command_id_gets_generic_nack(command_id):
    session = Session(Side.SMSC)
    events, answer = only_answer(session, raw_pdu(command_id, b"\x01\x02\x03", sequence=0x0BADF00D))
    assert answer_key(answer) == (C.GENERIC_NACK, S.ESME_RINVCMDID, 0x0BADF00D)
    assert [event_key(e) for e in events] == [("rejected", S.ESME_RINVCMDID, command_id, 0x0BADF00D)]
    # The stream is still in sync: the next PDU is handled normally.
    session.receive_data(encode_pdu(EnquireLink(sequence_number=8)))
    assert [answer_key(a) for a in answers_of(session)] == [(C.ENQUIRE_LINK_RESP, 0, 8)]
    assert session.state is State.OPEN


@pytest.mark.parametrize("length", [0, 1, 8, 15, MAX_PDU_LENGTH + 1, 0xFFFFFFFF])
def test_impossible_command_length_nacks_and_closes(length):
    session = Session(Side.SMSC)
    events, answer = only_answer(session, raw_pdu(C.SUBMIT_SM, b"", sequence=4242, length=length))
    assert answer_key(answer) == (C.GENERIC_NACK, S.ESME_RINVCMDLEN, 4242)
    assert [event_key(e) for e in events] == [("rejected", S.ESME_RINVCMDLEN, C.SUBMIT_SM, 4242)]
    assert session.state is State.CLOSED
    assert session.receive_data(encode_pdu(EnquireLink(sequence_number=1))) == []
    assert session.data_to_send() == b""


def test_impossible_command_length_one_byte_at_a_time():
    stream = raw_pdu(C.SUBMIT_SM, b"", sequence=4242, length=8)
    session, events, answers = feed(stream, list(range(1, len(stream))))
    assert [answer_key(a) for a in answers] == [(C.GENERIC_NACK, S.ESME_RINVCMDLEN, 4242)]
    assert session.state is State.CLOSED


def test_pdus_before_a_bad_command_length_are_still_answered():
    stream = encode_pdu(EnquireLink(sequence_number=1)) + raw_pdu(C.UNBIND, sequence=2, length=3)
    session, events, answers = feed(stream, [])
    assert [answer_key(a) for a in answers] == [(C.ENQUIRE_LINK_RESP, 0, 1), (C.GENERIC_NACK, S.ESME_RINVCMDLEN, 2)]
    assert session.state is State.CLOSED


def test_command_length_too_short_for_the_mandatory_fields():
    """A command_length that ends the PDU inside its mandatory fields is an invalid
    command_length: generic_nack ESME_RINVCMDLEN (SMPP 3.4, 4.3), same sequence number;
    the framing itself is intact so the session stays open."""
    wire = encode_pdu(SubmitSm(sequence_number=5, source_addr="123", destination_addr="456", short_message=b"hi"))
    session = bound_smsc()
    events, answer = only_answer(session, raw_pdu(C.SUBMIT_SM, wire[16:30], sequence=5))
    assert answer_key(answer) == (C.GENERIC_NACK, S.ESME_RINVCMDLEN, 5)
    assert session.state is State.BOUND_TX
    session.receive_data(wire)
    assert answers_of(session) == []  # the next, complete submit_sm goes to the application


def test_pdu_split_one_byte_at_a_time_decodes_the_same():
    pdu = SubmitSm(
        sequence_number=31,
        source_addr="1234",
        destination_addr="5678",
        short_message=b"split me",
        tlvs={0x0204: 7, 0x1401: b"vendor"},
    )
    session = bound_smsc()
    events = []
    for byte in encode_pdu(pdu):
        events += session.receive_data(bytes([byte]))
    assert [event_key(e) for e in events] == [("received", pdu, None)]


@pytest.mark.parametrize("cls", sorted(PDU_CLASSES.values(), key=lambda c: c.command_id))
def test_every_pdu_truncated_body_gets_at_most_one_answer(cls):
    """Every PDU cut after each body octet gets the model's answer (one for a request,
    none for a response that merely lacks optional body parts) with its sequence number."""
    pdu = cls(sequence_number=600)
    wire = encode_pdu(pdu)
    for cut in range(16, len(wire)):
        expected_answers, expected_events, closed = model(raw_pdu(cls.command_id, wire[16:cut], sequence=600))
        assert not closed
        session, events, answers = feed(raw_pdu(cls.command_id, wire[16:cut], sequence=600), [])
        assert [answer_key(a) for a in answers] == expected_answers
        assert all(a.sequence_number == 600 for a in answers)
        assert len(answers) <= 1
