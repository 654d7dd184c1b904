"""Round-trip properties of the SMPP 3.4 codec, checked against the specification.

The field layouts and TLV definitions below are written out independently from
SMPP v3.4 Issue 1.2 (section 4 for the PDU bodies, 5.3.2 for the optional
parameters), not derived from the codec's own tables. A tiny reference encoder
built from them produces wire bytes that the codec must decode to the expected
PDU and re-encode byte for byte.

The strategies here are reused by test_codec_fuzz.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import PduError, decode_pdu, encode_pdu
from gateway.smpp.constants import CommandId, CommandStatus, Tag
from gateway.smpp.pdu import (
    BODYLESS_ON_ERROR,
    PDU_CLASSES,
    BindTransmitter,
    DeliverSm,
    EnquireLink,
    GenericNack,
    MultiDest,
    Pdu,
    QuerySmResp,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    UnsuccessSme,
)
from gateway.smpp import tlv as tlv_module

# --------------------------------------------------------------------------
# The specification, written out by hand.
# Field kinds: C-Octet String (size = max octets including the NUL), 1-octet
# integer, sm_length+short_message, submit_multi dest list, unsuccess_sme list.
CSTR, U8, SM, DESTS, UNSUCC = "cstr", "u8", "sm", "dests", "unsucc"

Spec = tuple[tuple[str, str, int], ...]

_BIND: Spec = (  # 4.1.1
    ("system_id", CSTR, 16),
    ("password", CSTR, 9),
    ("system_type", CSTR, 13),
    ("interface_version", U8, 1),
    ("addr_ton", U8, 1),
    ("addr_npi", U8, 1),
    ("address_range", CSTR, 41),
)
_BIND_RESP: Spec = (("system_id", CSTR, 16),)  # 4.1.2 (sc_interface_version is a TLV)
_MESSAGE_ID_RESP: Spec = (("message_id", CSTR, 65),)  # 4.4.2, 4.6.2, 4.7.2
_SUBMIT_SM: Spec = (  # 4.4.1 (deliver_sm 4.6.1 has the same layout)
    ("service_type", CSTR, 6),
    ("source_addr_ton", U8, 1),
    ("source_addr_npi", U8, 1),
    ("source_addr", CSTR, 21),
    ("dest_addr_ton", U8, 1),
    ("dest_addr_npi", U8, 1),
    ("destination_addr", CSTR, 21),
    ("esm_class", U8, 1),
    ("protocol_id", U8, 1),
    ("priority_flag", U8, 1),
    ("schedule_delivery_time", CSTR, 17),
    ("validity_period", CSTR, 17),
    ("registered_delivery", U8, 1),
    ("replace_if_present_flag", U8, 1),
    ("data_coding", U8, 1),
    ("sm_default_msg_id", U8, 1),
    ("short_message", SM, 254),
)

SPEC_FIELDS: dict[str, Spec] = {
    "bind_transmitter": _BIND,
    "bind_receiver": _BIND,
    "bind_transceiver": _BIND,
    "bind_transmitter_resp": _BIND_RESP,
    "bind_receiver_resp": _BIND_RESP,
    "bind_transceiver_resp": _BIND_RESP,
    "outbind": (("system_id", CSTR, 16), ("password", CSTR, 9)),  # 4.1.7
    "unbind": (),
    "unbind_resp": (),
    "enquire_link": (),
    "enquire_link_resp": (),
    "generic_nack": (),
    "submit_sm": _SUBMIT_SM,
    "submit_sm_resp": _MESSAGE_ID_RESP,
    "deliver_sm": _SUBMIT_SM,
    "deliver_sm_resp": _MESSAGE_ID_RESP,
    "data_sm": (  # 4.7.1: addresses are up to 65 octets here
        ("service_type", CSTR, 6),
        ("source_addr_ton", U8, 1),
        ("source_addr_npi", U8, 1),
        ("source_addr", CSTR, 65),
        ("dest_addr_ton", U8, 1),
        ("dest_addr_npi", U8, 1),
        ("destination_addr", CSTR, 65),
        ("esm_class", U8, 1),
        ("registered_delivery", U8, 1),
        ("data_coding", U8, 1),
    ),
    "data_sm_resp": _MESSAGE_ID_RESP,
    "query_sm": (  # 4.8.1
        ("message_id", CSTR, 65),
        ("source_addr_ton", U8, 1),
        ("source_addr_npi", U8, 1),
        ("source_addr", CSTR, 21),
    ),
    "query_sm_resp": (  # 4.8.2
        ("message_id", CSTR, 65),
        ("final_date", CSTR, 17),
        ("message_state", U8, 1),
        ("error_code", U8, 1),
    ),
    "cancel_sm": (  # 4.9.1
        ("service_type", CSTR, 6),
        ("message_id", CSTR, 65),
        ("source_addr_ton", U8, 1),
        ("source_addr_npi", U8, 1),
        ("source_addr", CSTR, 21),
        ("dest_addr_ton", U8, 1),
        ("dest_addr_npi", U8, 1),
        ("destination_addr", CSTR, 21),
    ),
    "cancel_sm_resp": (),
    "replace_sm": (  # 4.10.1
        ("message_id", CSTR, 65),
        ("source_addr_ton", U8, 1),
        ("source_addr_npi", U8, 1),
        ("source_addr", CSTR, 21),
        ("schedule_delivery_time", CSTR, 17),
        ("validity_period", CSTR, 17),
        ("registered_delivery", U8, 1),
        ("sm_default_msg_id", U8, 1),
        ("short_message", SM, 254),
    ),
    "replace_sm_resp": (),
    "submit_multi": (  # 4.5.1
        ("service_type", CSTR, 6),
        ("source_addr_ton", U8, 1),
        ("source_addr_npi", U8, 1),
        ("source_addr", CSTR, 21),
        ("dest_addresses", DESTS, 254),
        ("esm_class", U8, 1),
        ("protocol_id", U8, 1),
        ("priority_flag", U8, 1),
        ("schedule_delivery_time", CSTR, 17),
        ("validity_period", CSTR, 17),
        ("registered_delivery", U8, 1),
        ("replace_if_present_flag", U8, 1),
        ("data_coding", U8, 1),
        ("sm_default_msg_id", U8, 1),
        ("short_message", SM, 254),
    ),
    "submit_multi_resp": (("message_id", CSTR, 65), ("unsuccess_smes", UNSUCC, 255)),  # 4.5.2
    "alert_notification": (  # 4.12.1
        ("source_addr_ton", U8, 1),
        ("source_addr_npi", U8, 1),
        ("source_addr", CSTR, 65),
        ("esme_addr_ton", U8, 1),
        ("esme_addr_npi", U8, 1),
        ("esme_addr", CSTR, 65),
    ),
}

COMMAND_IDS: dict[str, int] = {  # 5.1.2.1
    "generic_nack": 0x80000000,
    "bind_receiver": 0x00000001,
    "bind_receiver_resp": 0x80000001,
    "bind_transmitter": 0x00000002,
    "bind_transmitter_resp": 0x80000002,
    "query_sm": 0x00000003,
    "query_sm_resp": 0x80000003,
    "submit_sm": 0x00000004,
    "submit_sm_resp": 0x80000004,
    "deliver_sm": 0x00000005,
    "deliver_sm_resp": 0x80000005,
    "unbind": 0x00000006,
    "unbind_resp": 0x80000006,
    "replace_sm": 0x00000007,
    "replace_sm_resp": 0x80000007,
    "cancel_sm": 0x00000008,
    "cancel_sm_resp": 0x80000008,
    "bind_transceiver": 0x00000009,
    "bind_transceiver_resp": 0x80000009,
    "outbind": 0x0000000B,
    "enquire_link": 0x00000015,
    "enquire_link_resp": 0x80000015,
    "submit_multi": 0x00000021,
    "submit_multi_resp": 0x80000021,
    "alert_notification": 0x00000102,
    "data_sm": 0x00000103,
    "data_sm_resp": 0x80000103,
}

# Optional parameters, section 5.3.2: name -> (tag, kind, min length, max length).
# "int" values are unsigned big-endian integers of exactly that length. Two
# parameters the spec calls fixed-size octet strings (ussd_service_op, 1 octet;
# its_session_info, 2 octets) are carried as integers by the codec; any value of
# the right length round-trips either way.
TINT, TCSTR, TOCT = "int", "cstr", "octets"
STANDARD_TLVS: dict[str, tuple[int, str, int, int]] = {
    "dest_addr_subunit": (0x0005, TINT, 1, 1),
    "dest_network_type": (0x0006, TINT, 1, 1),
    "dest_bearer_type": (0x0007, TINT, 1, 1),
    "dest_telematics_id": (0x0008, TINT, 2, 2),
    "source_addr_subunit": (0x000D, TINT, 1, 1),
    "source_network_type": (0x000E, TINT, 1, 1),
    "source_bearer_type": (0x000F, TINT, 1, 1),
    "source_telematics_id": (0x0010, TINT, 1, 1),
    "qos_time_to_live": (0x0017, TINT, 4, 4),
    "payload_type": (0x0019, TINT, 1, 1),
    "additional_status_info_text": (0x001D, TCSTR, 1, 256),
    "receipted_message_id": (0x001E, TCSTR, 1, 65),
    "ms_msg_wait_facilities": (0x0030, TINT, 1, 1),
    "privacy_indicator": (0x0201, TINT, 1, 1),
    "source_subaddress": (0x0202, TOCT, 2, 23),
    "dest_subaddress": (0x0203, TOCT, 2, 23),
    "user_message_reference": (0x0204, TINT, 2, 2),
    "user_response_code": (0x0205, TINT, 1, 1),
    "source_port": (0x020A, TINT, 2, 2),
    "destination_port": (0x020B, TINT, 2, 2),
    "sar_msg_ref_num": (0x020C, TINT, 2, 2),
    "language_indicator": (0x020D, TINT, 1, 1),
    "sar_total_segments": (0x020E, TINT, 1, 1),
    "sar_segment_seqnum": (0x020F, TINT, 1, 1),
    "sc_interface_version": (0x0210, TINT, 1, 1),
    "callback_num_pres_ind": (0x0302, TINT, 1, 1),
    "callback_num_atag": (0x0303, TOCT, 0, 65),
    "number_of_messages": (0x0304, TINT, 1, 1),
    "callback_num": (0x0381, TOCT, 4, 19),
    "dpf_result": (0x0420, TINT, 1, 1),
    "set_dpf": (0x0421, TINT, 1, 1),
    "ms_availability_status": (0x0422, TINT, 1, 1),
    "network_error_code": (0x0423, TOCT, 3, 3),
    "message_payload": (0x0424, TOCT, 0, 65535),
    "delivery_failure_reason": (0x0425, TINT, 1, 1),
    "more_messages_to_send": (0x0426, TINT, 1, 1),
    "message_state": (0x0427, TINT, 1, 1),
    "ussd_service_op": (0x0501, TINT, 1, 1),
    "display_time": (0x1201, TINT, 1, 1),
    "sms_signal": (0x1203, TINT, 2, 2),
    "ms_validity": (0x1204, TINT, 1, 1),
    "alert_on_message_delivery": (0x130C, TOCT, 0, 0),
    "its_reply_type": (0x1380, TINT, 1, 1),
    "its_session_info": (0x1383, TINT, 2, 2),
}
TLV_BY_TAG = {tag: (name, kind, lo, hi) for name, (tag, kind, lo, hi) in STANDARD_TLVS.items()}

CLASS_BY_NAME: dict[str, type[Pdu]] = {cls().name: cls for cls in PDU_CLASSES.values()}
ALL_NAMES = sorted(SPEC_FIELDS)
# Their one field that, left empty, lets the body go (SMPP 3.4 4.1.2, 4.1.4, 4.1.6, 4.4.2, 4.6.2, 4.7.2, 4.8.2).
RESPONSES_WITHOUT_BODY_ON_ERROR = {
    "submit_sm_resp": "message_id", "deliver_sm_resp": "message_id", "data_sm_resp": "message_id",
    "query_sm_resp": "message_id", "bind_transmitter_resp": "system_id", "bind_receiver_resp": "system_id",
    "bind_transceiver_resp": "system_id",
}  # fmt: skip

# --------------------------------------------------------------------------
# Strategies

LATIN1_NO_NUL = st.characters(min_codepoint=1, max_codepoint=255)


def cstrings(size: int) -> st.SearchStrategy[str]:
    """Latin-1 text without NUL that fits a C-Octet String of `size` octets (NUL included)."""
    return st.text(LATIN1_NO_NUL, max_size=size - 1)


octet = st.integers(0, 255)
addr21 = cstrings(21)


@st.composite
def multi_dests(draw) -> MultiDest:
    if draw(st.booleans()):
        return MultiDest(
            dest_flag=1,
            dest_addr_ton=draw(octet),
            dest_addr_npi=draw(octet),
            destination_addr=draw(addr21),
        )
    return MultiDest(dest_flag=2, dl_name=draw(addr21))


unsuccess_smes = st.builds(
    UnsuccessSme,
    dest_addr_ton=octet,
    dest_addr_npi=octet,
    destination_addr=addr21,
    error_status_code=st.integers(0, 0xFFFFFFFF),
)


def field_strategy(kind: str, size: int, max_list: int = 6) -> st.SearchStrategy:
    if kind == CSTR:
        return cstrings(size)
    if kind == U8:
        return octet
    if kind == SM:
        return st.binary(max_size=size)
    if kind == DESTS:
        return st.lists(multi_dests(), min_size=1, max_size=max_list)
    if kind == UNSUCC:
        return st.lists(unsuccess_smes, max_size=max_list)
    raise AssertionError(kind)


def tlv_value(kind: str, lo: int, hi: int, max_octets: int = 300) -> st.SearchStrategy:
    if kind == TINT:
        return st.integers(0, 256**lo - 1)
    if kind == TCSTR:
        return st.text(LATIN1_NO_NUL, max_size=hi - 1)
    return st.binary(min_size=lo, max_size=min(hi, max_octets))


@st.composite
def standard_tlvs(draw, max_size: int = 5) -> list[tuple[int, object]]:
    names = draw(st.lists(st.sampled_from(sorted(STANDARD_TLVS)), unique=True, max_size=max_size))
    out = []
    for name in names:
        tag, kind, lo, hi = STANDARD_TLVS[name]
        out.append((tag, draw(tlv_value(kind, lo, hi))))
    return out


vendor_tlvs = st.lists(
    st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=40)),
    unique_by=lambda item: item[0],
    max_size=3,
)


@st.composite
def tlv_lists(draw) -> list[tuple[int, object]]:
    """Standard and vendor TLVs, unique tags, in random wire order."""
    items = draw(standard_tlvs()) + draw(vendor_tlvs)
    return draw(st.permutations(items)) if items else []


@dataclass
class Case:
    """A PDU as field values, from which both the Pdu object and reference bytes are built."""

    name: str
    sequence_number: int
    command_status: int
    values: dict
    tlvs: list[tuple[int, object]]

    @property
    def cls(self) -> type[Pdu]:
        return CLASS_BY_NAME[self.name]

    @property
    def is_response(self) -> bool:
        return bool(COMMAND_IDS[self.name] & 0x80000000)

    @property
    def bodyless(self) -> bool:
        """The documented exception: an error response of these kinds with nothing to say has no body."""
        return (
            self.name in RESPONSES_WITHOUT_BODY_ON_ERROR
            and self.command_status != 0
            and not self.values[RESPONSES_WITHOUT_BODY_ON_ERROR[self.name]]
            and not self.tlvs
        )

    def pdu(self) -> Pdu:
        return self.cls(
            sequence_number=self.sequence_number,
            command_status=self.command_status,
            tlvs=dict(self.tlvs),
            **self.values,
        )

    def expected_decoded(self) -> Pdu:
        if self.bodyless:
            return self.cls(sequence_number=self.sequence_number, command_status=self.command_status)
        return self.pdu()

    def reference_bytes(self) -> bytes:
        body = b"" if self.bodyless else ref_body(SPEC_FIELDS[self.name], self.values) + ref_tlvs(self.tlvs)
        return struct.pack(">IIII", 16 + len(body), COMMAND_IDS[self.name], self.command_status, self.sequence_number) + body


statuses = st.one_of(st.just(0), st.sampled_from(list(CommandStatus)), st.integers(0, 0xFFFFFFFF))


@st.composite
def cases(draw, name: str | None = None, with_tlvs: bool = True, max_list: int = 6) -> Case:
    if name is None:
        name = draw(st.sampled_from(ALL_NAMES))
    values = {fname: draw(field_strategy(kind, size, max_list)) for fname, kind, size in SPEC_FIELDS[name]}
    is_response = bool(COMMAND_IDS[name] & 0x80000000)
    return Case(
        name=name,
        sequence_number=draw(st.integers(0, 0xFFFFFFFF)),
        command_status=draw(statuses) if is_response else 0,
        values=values,
        tlvs=draw(tlv_lists()) if with_tlvs else [],
    )


def pdus(name: str | None = None) -> st.SearchStrategy[Pdu]:
    return cases(name).map(Case.pdu)


# --------------------------------------------------------------------------
# Reference encoder, straight from the spec's layouts.


def _c(text: str) -> bytes:
    return text.encode("latin-1") + b"\0"


def ref_body(spec: Spec, values: dict) -> bytes:
    out = b""
    for name, kind, _size in spec:
        value = values[name]
        if kind == CSTR:
            out += _c(value)
        elif kind == U8:
            out += bytes([value])
        elif kind == SM:
            out += bytes([len(value)]) + value
        elif kind == DESTS:
            out += bytes([len(value)])
            for d in value:
                if d.dest_flag == 1:
                    out += bytes([1, d.dest_addr_ton, d.dest_addr_npi]) + _c(d.destination_addr)
                else:
                    out += bytes([2]) + _c(d.dl_name)
        elif kind == UNSUCC:
            out += bytes([len(value)])
            for u in value:
                out += bytes([u.dest_addr_ton, u.dest_addr_npi]) + _c(u.destination_addr)
                out += struct.pack(">I", u.error_status_code)
    return out


def ref_tlv_value(tag: int, value: object) -> bytes:
    if tag in TLV_BY_TAG:
        _name, kind, lo, _hi = TLV_BY_TAG[tag]
        if kind == TINT:
            return value.to_bytes(lo, "big")
        if kind == TCSTR and isinstance(value, str):
            return _c(value)
    return bytes(value)


def ref_tlvs(tlvs: list[tuple[int, object]]) -> bytes:
    out = b""
    for tag, value in tlvs:
        raw = ref_tlv_value(tag, value)
        out += struct.pack(">HH", tag, len(raw)) + raw
    return out


# --------------------------------------------------------------------------
# The codec's tables agree with the specification.


def test_every_spec_pdu_has_a_class():
    assert sorted(CLASS_BY_NAME) == ALL_NAMES
    for name, cid in COMMAND_IDS.items():
        assert PDU_CLASSES[cid] is CLASS_BY_NAME[name]
        assert CommandId[name.upper()] == cid


@pytest.mark.parametrize("name", ALL_NAMES)
def test_field_layout_matches_spec(name):
    cls = CLASS_BY_NAME[name]
    ours = [(fname, size) for fname, _kind, size, _err in cls.FIELDS]
    spec = [(fname, size) for fname, _kind, size in SPEC_FIELDS[name]]
    # submit_multi: number_of_dests is 1..254 (the codec stores the byte's bound, 255)
    if name == "submit_multi":
        spec = [(f, 255 if f == "dest_addresses" else s) for f, s in spec]
    assert ours == spec
    dataclass_fields = {f.name for f in fields(cls)} - {"sequence_number", "command_status", "tlvs"}
    assert dataclass_fields == {fname for fname, _k, _s in SPEC_FIELDS[name]}


def test_tlv_table_matches_spec():
    for name, (tag, kind, lo, hi) in STANDARD_TLVS.items():
        assert Tag[name.upper()] == tag
        ckind, clo, chi = tlv_module.SPEC[tag]
        assert (clo, chi) == (lo, hi), name
        expected_kind = {TINT: tlv_module.INT, TCSTR: tlv_module.CSTR, TOCT: tlv_module.OCTETS}[kind]
        assert ckind == expected_kind, name
    assert set(tlv_module.SPEC) == set(TLV_BY_TAG)


# --------------------------------------------------------------------------
# Properties

ROUNDTRIP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", ALL_NAMES)
@ROUNDTRIP
@given(data=st.data())
def test_decode_encode_roundtrip(name, data):
    case = data.draw(cases(name))
    pdu = case.pdu()
    wire = encode_pdu(pdu)
    decoded = decode_pdu(wire)
    if case.bodyless:
        # The one documented exception: no body at all, the fields come back as defaults.
        assert len(wire) == 16
        assert decoded == case.cls(sequence_number=case.sequence_number, command_status=case.command_status)
    else:
        assert decoded == pdu
        assert list(decoded.tlvs) == list(pdu.tlvs)  # wire order preserved
    assert type(decoded) is case.cls


@pytest.mark.parametrize("name", ALL_NAMES)
@ROUNDTRIP
@given(data=st.data())
def test_reference_encoding_decodes_and_reencodes_byte_exact(name, data):
    case = data.draw(cases(name))
    wire = case.reference_bytes()
    decoded = decode_pdu(wire)
    assert decoded == case.expected_decoded()
    assert encode_pdu(decoded) == wire
    assert encode_pdu(case.pdu()) == wire


@ROUNDTRIP
@given(case=cases())
def test_header_fields_survive(case):
    wire = encode_pdu(case.pdu())
    length, command_id, status, sequence = struct.unpack(">IIII", wire[:16])
    assert (length, command_id, status, sequence) == (
        len(wire),
        COMMAND_IDS[case.name],
        case.command_status,
        case.sequence_number,
    )


def test_bodyless_responses_are_the_documented_four():
    assert {CommandId(cid).name.lower(): field for cid, field in BODYLESS_ON_ERROR.items()} == RESPONSES_WITHOUT_BODY_ON_ERROR


@pytest.mark.parametrize("name", sorted(RESPONSES_WITHOUT_BODY_ON_ERROR))
@settings(max_examples=20, deadline=None)
@given(status=st.integers(1, 0xFFFFFFFF), seq=st.integers(0, 0xFFFFFFFF))
def test_error_responses_without_body(name, status, seq):
    """submit_sm_resp & co: 'the body is not returned if command_status is non-zero'."""
    cls = CLASS_BY_NAME[name]
    wire = encode_pdu(cls(sequence_number=seq, command_status=status))
    assert wire == struct.pack(">IIII", 16, COMMAND_IDS[name], status, seq)
    assert decode_pdu(wire) == cls(sequence_number=seq, command_status=status)
    # A non-empty message_id (system_id) or a TLV keeps the body.
    with_id = cls(sequence_number=seq, command_status=status, **{RESPONSES_WITHOUT_BODY_ON_ERROR[name]: "x"})
    assert decode_pdu(encode_pdu(with_id)) == with_id
    with_tlv = cls(sequence_number=seq, command_status=status, tlvs={Tag.ADDITIONAL_STATUS_INFO_TEXT: "why"})
    assert decode_pdu(encode_pdu(with_tlv)) == with_tlv
    # With status 0 the body is always there, even if message_id is empty.
    ok = cls(sequence_number=seq)
    assert len(encode_pdu(ok)) > 16


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if COMMAND_IDS[n] & 0x80000000])
def test_any_response_header_only_decodes_to_defaults(name):
    """Peers commonly omit the body of error responses; every response class accepts that."""
    wire = struct.pack(">IIII", 16, COMMAND_IDS[name], CommandStatus.ESME_RSYSERR, 42)
    assert decode_pdu(wire) == CLASS_BY_NAME[name](sequence_number=42, command_status=CommandStatus.ESME_RSYSERR)


# --------------------------------------------------------------------------
# Golden vectors, worked out by hand from the spec.


def test_golden_enquire_link():
    wire = bytes.fromhex("00000010 00000015 00000000 00000001")
    assert decode_pdu(wire) == EnquireLink(sequence_number=1)
    assert encode_pdu(EnquireLink(sequence_number=1)) == wire


def test_golden_generic_nack():
    wire = bytes.fromhex("00000010 80000000 00000003 0000007b")
    assert decode_pdu(wire) == GenericNack(sequence_number=123, command_status=CommandStatus.ESME_RINVCMDID)
    assert encode_pdu(decode_pdu(wire)) == wire


def test_golden_bind_transmitter():
    body = b"SMPP3TEST\0secret08\0SUBMIT1\0\x34\x01\x01\0"
    wire = struct.pack(">IIII", 16 + len(body), 2, 0, 1) + body
    assert len(wire) == 0x2F
    pdu = BindTransmitter(
        sequence_number=1,
        system_id="SMPP3TEST",
        password="secret08",
        system_type="SUBMIT1",
        interface_version=0x34,
        addr_ton=1,
        addr_npi=1,
    )
    assert decode_pdu(wire) == pdu
    assert encode_pdu(pdu) == wire


def test_golden_submit_sm_with_tlvs():
    body = (
        b"CMT\0"  # service_type
        b"\x05\x00" b"Shop\0"  # source ton (alphanumeric), npi, source_addr
        b"\x01\x01" b"447700900123\0"  # dest ton, npi, destination_addr
        b"\x40\x00\x01"  # esm_class (UDHI), protocol_id, priority_flag
        b"\0" b"000001000000000R\0"  # schedule_delivery_time, validity_period (relative)
        b"\x01\x00\x08\x00"  # registered_delivery, replace_if_present, data_coding UCS2, sm_default_msg_id
        b"\x04\x00h\x00i"  # sm_length, short_message
        b"\x02\x04\x00\x02\x12\x34"  # user_message_reference = 0x1234
        b"\x00\x1e\x00\x04ab1\0"  # receipted_message_id = "ab1"
        b"\x04\x24\x00\x03\x01\x02\x03"  # message_payload
        b"\x14\x00\x00\x01\xff"  # vendor TLV 0x1400
    )
    wire = struct.pack(">IIII", 16 + len(body), 4, 0, 0x7FFFFFFF) + body
    pdu = decode_pdu(wire)
    assert pdu == SubmitSm(
        sequence_number=0x7FFFFFFF,
        service_type="CMT",
        source_addr_ton=5,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        esm_class=0x40,
        priority_flag=1,
        validity_period="000001000000000R",
        registered_delivery=1,
        data_coding=8,
        short_message=b"\x00h\x00i",
        tlvs={
            Tag.USER_MESSAGE_REFERENCE: 0x1234,
            Tag.RECEIPTED_MESSAGE_ID: "ab1",
            Tag.MESSAGE_PAYLOAD: b"\x01\x02\x03",
            0x1400: b"\xff",
        },
    )
    assert encode_pdu(pdu) == wire


def test_golden_submit_multi_and_resp():
    body = (
        b"\0\x01\x01" b"123\0"  # service_type, source ton/npi/addr
        b"\x02"  # number_of_dests
        b"\x01\x01\x01" b"456\0"  # SME address
        b"\x02" b"friends\0"  # distribution list
        b"\0\0\0" b"\0\0" b"\0\0\0\0" b"\x02hi"
    )
    wire = struct.pack(">IIII", 16 + len(body), 0x21, 0, 9) + body
    pdu = decode_pdu(wire)
    assert isinstance(pdu, SubmitMulti)
    assert pdu.dest_addresses == [
        MultiDest(dest_flag=1, dest_addr_ton=1, dest_addr_npi=1, destination_addr="456"),
        MultiDest(dest_flag=2, dl_name="friends"),
    ]
    assert pdu.short_message == b"hi"
    assert encode_pdu(pdu) == wire

    resp_body = b"m1\0" b"\x01" b"\x01\x01" b"456\0" b"\x00\x00\x00\x0b"
    resp_wire = struct.pack(">IIII", 16 + len(resp_body), 0x80000021, 0, 9) + resp_body
    resp = decode_pdu(resp_wire)
    assert resp == SubmitMultiResp(
        sequence_number=9,
        message_id="m1",
        unsuccess_smes=[UnsuccessSme(dest_addr_ton=1, dest_addr_npi=1, destination_addr="456", error_status_code=0x0B)],
    )
    assert encode_pdu(resp) == resp_wire


def test_golden_query_sm_resp():
    body = b"abc\0" b"\0" b"\x02" b"\x00"
    wire = struct.pack(">IIII", 16 + len(body), 0x80000003, 0, 5) + body
    assert decode_pdu(wire) == QuerySmResp(sequence_number=5, message_id="abc", message_state=2)
    assert encode_pdu(decode_pdu(wire)) == wire


# --------------------------------------------------------------------------
# Boundaries


@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_submit_multi_254_destinations_both_kinds(data):
    dests = data.draw(st.lists(multi_dests(), min_size=254, max_size=254))
    dests[0] = MultiDest(dest_flag=1, destination_addr="1" * 20)
    dests[1] = MultiDest(dest_flag=2, dl_name="d" * 20)
    case = Case("submit_multi", 1, 0, {**data.draw(cases("submit_multi")).values, "dest_addresses": dests}, [])
    assert decode_pdu(case.reference_bytes()) == case.pdu()
    assert encode_pdu(case.pdu()) == case.reference_bytes()


def test_submit_multi_resp_255_unsuccess():
    smes = [UnsuccessSme(dest_addr_ton=i % 7, destination_addr=str(i), error_status_code=i) for i in range(255)]
    pdu = SubmitMultiResp(sequence_number=2, message_id="x", unsuccess_smes=smes)
    assert decode_pdu(encode_pdu(pdu)) == pdu


def test_maximum_sizes():
    pdu = SubmitSm(
        sequence_number=1,
        service_type="a" * 5,
        source_addr="\xff" * 20,
        destination_addr="b" * 20,
        schedule_delivery_time="c" * 16,
        validity_period="d" * 16,
        short_message=bytes(range(254)),
        tlvs={Tag.MESSAGE_PAYLOAD: b"\xaa" * 65535, Tag.ADDITIONAL_STATUS_INFO_TEXT: "e" * 255},
    )
    assert decode_pdu(encode_pdu(pdu)) == pdu


@pytest.mark.parametrize(
    "pdu",
    [
        SubmitSm(source_addr="1" * 21),
        SubmitSm(service_type="CMTXYZ"),
        SubmitSm(short_message=b"x" * 255),
        BindTransmitter(system_id="s" * 16),
        BindTransmitter(password="p" * 9),
        DeliverSm(validity_period="v" * 17),
        SubmitSmResp(message_id="m" * 65),
    ],
)
def test_encode_refuses_fields_too_long(pdu):
    with pytest.raises(ValueError):
        encode_pdu(pdu)


@settings(max_examples=40, deadline=None)
@given(
    tag=st.sampled_from([Tag.RECEIPTED_MESSAGE_ID, Tag.ADDITIONAL_STATUS_INFO_TEXT]),
    raw=st.binary(min_size=1, max_size=64).filter(lambda b: not (b.endswith(b"\0") and b"\0" not in b[:-1])),
)
def test_cstring_tlv_without_proper_nul_passes_through_raw(tag, raw):
    """A C-string TLV that is not NUL-terminated (or has inner NULs) stays raw bytes and re-encodes unchanged."""
    wire_tlv = struct.pack(">HH", tag, len(raw)) + raw
    wire = struct.pack(">IIII", 16 + len(wire_tlv), 0x80000015, 0, 1) + wire_tlv
    decoded = decode_pdu(wire)
    assert decoded.tlvs == {tag: raw}
    assert encode_pdu(decoded) == wire


@pytest.mark.parametrize("name", sorted(STANDARD_TLVS))
def test_each_standard_tlv_alone(name):
    tag, kind, lo, hi = STANDARD_TLVS[name]
    value = {TINT: (1 << (8 * lo)) - 1, TCSTR: "x" * (hi - 1), TOCT: b"\x5a" * hi}[kind]
    pdu = DeliverSm(sequence_number=3, tlvs={tag: value})
    wire = encode_pdu(pdu)
    assert wire.endswith(struct.pack(">HH", tag, hi if kind != TINT else lo) + ref_tlv_value(tag, value))
    assert decode_pdu(wire) == pdu


def test_decode_errors_are_pdu_errors_with_status():
    with pytest.raises(PduError) as info:
        decode_pdu(b"\x00\x00\x00\x10")
    assert info.value.status == CommandStatus.ESME_RINVCMDLEN


# --------------------------------------------------------------------------
# A tag that comes more than once in one PDU.

# SMPP 3.4 5.3.2.36-38: a TDMA handset may be sent several callback numbers.
REPEATABLE_STANDARD = {"callback_num", "callback_num_pres_ind", "callback_num_atag"}


def submit_sm_with(tlvs: list[tuple[int, object]]) -> bytes:
    body = encode_pdu(SubmitSm(sequence_number=9, short_message=b"hi"))[16:] + ref_tlvs(tlvs)
    return struct.pack(">IIII", 16 + len(body), CommandId.SUBMIT_SM, 0, 9) + body


def test_a_vendor_tag_sent_twice_keeps_both_values_in_order_byte_for_byte():
    wire = submit_sm_with([(0x1400, b"\x01\x02"), (0x1400, b"\x03"), (0x1401, b"\xaa")])
    decoded = decode_pdu(wire)
    assert decoded.tlvs == {0x1400: [b"\x01\x02", b"\x03"], 0x1401: b"\xaa"}
    assert encode_pdu(decoded) == wire


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0x1400, 0x1401, 0x3FFF, 0x0600]), st.binary(max_size=8)), max_size=8))
def test_repeated_unknown_tags_lose_no_value(sent):
    """Every value of every unknown tag comes out again, each tag's in the order sent. (The tags are written out
    in the order each first appeared: SMPP lets TLVs come in any order, only a tag's own values are a list.)"""
    firsts = list(dict.fromkeys(tag for tag, _ in sent))
    grouped = sorted(sent, key=lambda item: firsts.index(item[0]))  # stable: a tag's values keep their order
    assert encode_pdu(decode_pdu(submit_sm_with(sent))) == submit_sm_with(grouped)


def test_callback_numbers_may_repeat():
    sent = [(0x0381, b"\x01\x015551234"), (0x0302, 1), (0x0381, b"\x01\x015559876"), (0x0302, 3)]
    decoded = decode_pdu(submit_sm_with(sent))
    assert decoded.tlvs == {0x0381: [b"\x01\x015551234", b"\x01\x015559876"], 0x0302: [1, 3]}
    assert encode_pdu(decoded) == submit_sm_with([sent[0], sent[2], sent[1], sent[3]])


@pytest.mark.parametrize("name", sorted(set(STANDARD_TLVS) - REPEATABLE_STANDARD))
def test_a_standard_tag_twice_is_refused(name):
    """Which of two user_message_references (sar_msg_ref_num, message_payload, ...) was meant cannot be told: the
    PDU is refused rather than one value dropped unseen."""
    tag, kind, _lo, hi = STANDARD_TLVS[name]
    value = {TINT: 1, TCSTR: "x" * (hi - 1), TOCT: b"\x5a" * hi}[kind]
    with pytest.raises(PduError) as info:
        decode_pdu(submit_sm_with([(tag, value), (0x1400, b"v"), (tag, value)]))
    assert info.value.status == CommandStatus.ESME_RINVOPTPARSTREAM
    assert f"0x{tag:04X}" in str(info.value)


@pytest.mark.parametrize("tags", [[0x1401], [0x1401, 0x1400], list(range(0x1400, 0x1400 + 200))], ids=["one", "two", "distinct"])
def test_a_request_with_more_tlvs_than_the_most_read_is_refused(tags):
    """16,000 empty TLVs in a 64 KB submit_sm took ~18 ms of the event loop each (every other bind waited): the
    most a PDU carries is read, one more is refused, whether a tag repeats or each is another."""
    most = tlv_module.MAX_TLVS
    sent = [(tags[n % len(tags)], b"") for n in range(most)]
    read = decode_pdu(submit_sm_with(sent)).tlvs
    assert sum(len(values) if isinstance(values, list) else 1 for values in read.values()) == most
    with pytest.raises(PduError) as info:
        decode_pdu(submit_sm_with([*sent, (tags[most % len(tags)], b"")]))
    assert info.value.status == CommandStatus.ESME_RINVOPTPARSTREAM


def test_a_response_with_more_tlvs_than_the_most_read_is_taken_without_them():
    """As with a tag twice: refusing it (generic_nack) would leave its deliver_sm unanswered, to be sent again."""
    body = b"\x00" + ref_tlvs([(0x1401, b"")] * (tlv_module.MAX_TLVS + 1))
    decoded = decode_pdu(struct.pack(">IIII", 16 + len(body), CommandId.DELIVER_SM_RESP, 0, 7) + body)
    assert (decoded.sequence_number, decoded.tlvs) == (7, {})


@pytest.mark.parametrize("command_id", [CommandId.DELIVER_SM_RESP, CommandId.SUBMIT_SM_RESP, CommandId.DATA_SM_RESP])
def test_a_response_with_a_standard_tag_twice_is_taken_with_its_last_value(command_id):
    """Refusing an answer (generic_nack) leaves its request unanswered: the gateway sent the deliver_sm again
    at each response_timeout, and the handset got the same text over and over."""
    body = b"\x00" + ref_tlvs([(0x001D, b"first\x00"), (0x001D, b"second\x00")])  # message_id "", then TLVs
    decoded = decode_pdu(struct.pack(">IIII", 16 + len(body), command_id, 0, 7) + body)
    assert (decoded.sequence_number, decoded.tlvs) == (7, {0x001D: "second"})


@pytest.mark.parametrize("command_id", [CommandId.DELIVER_SM_RESP, CommandId.DATA_SM_RESP])
@pytest.mark.parametrize(
    "tlvs", [b"\x04\x23\x00\x02\x03\x00", b"\x14\x00"], ids=["network_error_code-of-2-octets", "2-stray-octets"]
)
def test_a_response_whose_tlvs_cannot_be_read_is_taken_without_them(command_id, tlvs):
    """As with a tag twice: a generic_nack to it left its deliver_sm unanswered, sent again and again."""
    body = b"\x00" + tlvs
    decoded = decode_pdu(struct.pack(">IIII", 16 + len(body), command_id, 0, 7) + body)
    assert (decoded.command_id, decoded.command_status, decoded.sequence_number, decoded.tlvs) == (command_id, 0, 7, {})


@pytest.mark.parametrize("command_id", [CommandId.DELIVER_SM_RESP, CommandId.SUBMIT_SM_RESP, CommandId.DATA_SM_RESP,
                                        CommandId.QUERY_SM_RESP, CommandId.BIND_TRANSCEIVER_RESP])  # fmt: skip
@pytest.mark.parametrize("field, rest", [(b"x" * 100 + b"\x00", "x" * 100), (b"no NUL", "no NUL")], ids=["long", "unterminated"])
def test_a_response_whose_first_c_string_is_too_long_or_unterminated_is_taken_with_what_it_says(command_id, field, rest):
    """deliver_sm_resp's message_id is unused (SMPP 3.4 4.6.2): one of 65 octets or more got a generic_nack, and the
    deliver_sm went out again. A response is taken as the peer wrote it (query_sm_resp, its body stopping after the
    id: the defaults for the rest, from the table-driven decoder)."""
    decoded = decode_pdu(struct.pack(">IIII", 16 + len(field), command_id, 0, 7) + field)
    first = next(name for name, *_ in type(decoded).FIELDS)
    assert (decoded.sequence_number, getattr(decoded, first)) == (7, rest)
