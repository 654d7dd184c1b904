"""Differential tests against smpplib, an independent SMPP 3.4 implementation.

Both directions, for every PDU type smpplib implements:
  * smpplib builds the PDU (`make_pdu(...).generate()`), our codec decodes it and
    every field and TLV must match; re-encoding must give smpplib's bytes back;
  * our codec encodes, smpplib parses (`parse_pdu`, as its Client does) and
    every field and TLV must match.

smpplib departs from the specification in a few places. Each departure is
listed below, and only the affected field/TLV is left out (or compared the way
smpplib represents it); the rest of the PDU is still checked.
"""

from __future__ import annotations

import logging

import pytest
import smpplib.command
import smpplib.consts
import smpplib.smpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import PduError, decode_pdu, encode_pdu
from gateway.smpp.constants import CommandStatus
from gateway.smpp.pdu import BODYLESS_ON_ERROR

from .test_codec_roundtrip import (
    COMMAND_IDS,
    CSTR,
    SM,
    SPEC_FIELDS,
    STANDARD_TLVS,
    TCSTR,
    TLV_BY_TAG,
    TOCT,
    U8,
    Case,
    cases,
    tlv_value,
)

# PDU types smpplib 2.2 implements. It has no outbind, cancel_sm(_resp),
# replace_sm(_resp), submit_multi(_resp): its factory raises for those.
SUPPORTED = [
    "bind_transmitter", "bind_transmitter_resp",
    "bind_receiver", "bind_receiver_resp",
    "bind_transceiver", "bind_transceiver_resp",
    "unbind", "unbind_resp",
    "enquire_link", "enquire_link_resp",
    "generic_nack",
    "submit_sm", "submit_sm_resp",
    "deliver_sm", "deliver_sm_resp",
    "data_sm", "data_sm_resp",
    "query_sm", "query_sm_resp",
    "alert_notification",
]  # fmt: skip
UNSUPPORTED = ["outbind", "cancel_sm", "cancel_sm_resp", "replace_sm", "replace_sm_resp", "submit_multi", "submit_multi_resp"]

# TLVs smpplib knows for each PDU type (names as in smpplib/consts.OPTIONAL_PARAMS,
# which are the spec's names).
_BIND_RESP_TLVS = ["sc_interface_version"]
TLVS: dict[str, list[str]] = {
    "bind_transmitter_resp": _BIND_RESP_TLVS,
    "bind_receiver_resp": _BIND_RESP_TLVS,
    "bind_transceiver_resp": _BIND_RESP_TLVS,
    "submit_sm": [
        "user_message_reference", "source_port", "destination_port", "dest_addr_subunit",
        "sar_msg_ref_num", "sar_total_segments", "sar_segment_seqnum", "more_messages_to_send",
        "payload_type", "message_payload", "privacy_indicator", "callback_num",
        "callback_num_pres_ind", "source_subaddress", "dest_subaddress", "user_response_code",
        "display_time", "sms_signal", "ms_validity", "ms_msg_wait_facilities",
        "number_of_messages", "language_indicator", "its_reply_type", "its_session_info",
        "ussd_service_op",
    ],
    "deliver_sm": [
        "user_message_reference", "source_port", "destination_port", "sar_msg_ref_num",
        "sar_total_segments", "sar_segment_seqnum", "user_response_code", "privacy_indicator",
        "payload_type", "message_payload", "callback_num", "source_subaddress",
        "dest_subaddress", "language_indicator", "its_session_info", "network_error_code",
        "message_state", "receipted_message_id", "source_network_type", "dest_network_type",
        "more_messages_to_send",
    ],
    "data_sm": [
        "source_port", "source_addr_subunit", "source_network_type", "source_bearer_type",
        "destination_port", "dest_addr_subunit", "dest_network_type", "dest_bearer_type",
        "dest_telematics_id", "sar_msg_ref_num", "sar_total_segments", "sar_segment_seqnum",
        "more_messages_to_send", "qos_time_to_live", "payload_type", "message_payload",
        "receipted_message_id", "message_state", "network_error_code", "user_message_reference",
        "privacy_indicator", "callback_num", "callback_num_pres_ind", "callback_num_atag",
        "source_subaddress", "dest_subaddress", "user_response_code", "display_time",
        "sms_signal", "ms_validity", "ms_msg_wait_facilities", "number_of_messages",
        "language_indicator", "its_reply_type", "its_session_info",
    ],
    "data_sm_resp": ["additional_status_info_text", "dpf_result"],
    "alert_notification": ["ms_availability_status"],
}  # fmt: skip

# ---- smpplib quirks (departures from SMPP 3.4), each excluded individually ----
# TLVs smpplib declares with the wrong size or type; they are left out of the PDUs
# built for these tests:
QUIRK_TLVS: dict[str, dict[str, str]] = {
    "submit_sm": {
        "source_addr_subunit": "smpplib: 2 octets; spec 5.3.2.2: 1 octet",
        "alert_on_message_delivery": "smpplib type 'flag' is neither generated nor parsed",
    },
    "data_sm": {
        "source_telematics_id": "smpplib: 2 octets; spec 5.3.2.10: 1 octet",
        "alert_on_message_delivery": "smpplib type 'flag' is neither generated nor parsed",
    },
    "data_sm_resp": {
        "delivery_failure_reason": "smpplib: C-string; spec 5.3.2.33: 1-octet integer",
        "network_error_code": "smpplib: C-string; spec 5.3.2.31: 3-octet string, no NUL",
    },
}
# Octet-string TLVs smpplib treats as C-strings (it appends a NUL when building
# and drops the last octet when parsing). Compared the way smpplib represents them.
CSTRING_OCTET_TLVS = {"source_subaddress", "dest_subaddress", "callback_num_atag"}
# smpplib limits these mandatory C-strings to 21 octets; the spec allows 65
# (data_sm 4.7.1, alert_notification 4.12.1). smpplib-built PDUs use its limit.
QUIRK_CSTR_LIMIT = {
    ("data_sm", "source_addr"): 21,
    ("data_sm", "destination_addr"): 21,
    ("alert_notification", "source_addr"): 21,
    ("alert_notification", "esme_addr"): 21,
}
# Other smpplib behaviours worked around below:
#  * bind_*: smpplib always sends interface_version 0x34, whatever it is given.
#  * query_sm: smpplib refuses to build one with an empty message_id.
#  * submit_sm/deliver_sm: smpplib refuses short_message together with message_payload.
#  * C-string TLVs: smpplib encodes them with str.encode() (UTF-8), omits empty ones,
#    and emits max+1 octets for a value of exactly max characters: ASCII, 1..max-1.
#  * *_resp with an error status: smpplib sends a NUL message_id body; we send none
#    (spec 4.4.2: "the body is not returned if command_status is non-zero").

# smpplib logs a warning for every vendor TLV it skips; keep the test output clean.
logging.getLogger("smpplib").setLevel(logging.ERROR)

TAG = {name: tag for name, (tag, _k, _lo, _hi) in STANDARD_TLVS.items()}


class StubClient:
    """What smpplib's PDUs want from a client: a sequence counter."""

    sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def smpplib_params(name: str) -> dict:
    return smpplib.command.factory(name, client=StubClient()).params


def smpplib_optional(name: str) -> set[str]:
    obj = smpplib.command.factory(name, client=StubClient())
    return {f for f in obj.params if obj.field_is_optional(f)}


# --------------------------------------------------------------------------
# Sanity of the tables above against the installed smpplib.


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_smpplib_does_not_implement(name):
    with pytest.raises(smpplib.exceptions.UnknownCommandError):
        smpplib.smpp.make_pdu(name, client=StubClient())


@pytest.mark.parametrize("name", SUPPORTED)
def test_tables_match_installed_smpplib(name):
    optional = smpplib_optional(name)
    assert set(TLVS.get(name, [])) | set(QUIRK_TLVS.get(name, {})) == optional
    params = smpplib_params(name)
    for fname, kind, size in SPEC_FIELDS[name]:
        assert fname in params, fname
        if kind == CSTR:
            assert params[fname].max == QUIRK_CSTR_LIMIT.get((name, fname), size), fname
    for tname in optional:
        assert smpplib.consts.OPTIONAL_PARAMS[tname] == TAG[tname]


# --------------------------------------------------------------------------
# smpplib -> ours

ascii_no_nul = st.characters(min_codepoint=1, max_codepoint=127)


def smpplib_tlv_value(tname: str) -> st.SearchStrategy:
    _tag, kind, lo, hi = STANDARD_TLVS[tname]
    if tname in CSTRING_OCTET_TLVS:
        return st.text(ascii_no_nul, min_size=max(1, lo - 1), max_size=hi - 1)
    if kind == TCSTR:
        return st.text(ascii_no_nul, min_size=1, max_size=hi - 1)
    if kind == TOCT:
        return st.binary(min_size=max(1, lo), max_size=min(hi, 260))
    return tlv_value(kind, lo, hi)


def ours_from_smpplib_tlv(tname: str, value):
    """The value our codec must decode for a TLV smpplib was given `value` for."""
    if tname in CSTRING_OCTET_TLVS:
        return value.encode("ascii") + b"\0"
    return value


@st.composite
def smpplib_inputs(draw, name: str):
    fields = {}
    for fname, kind, size in SPEC_FIELDS[name]:
        size = QUIRK_CSTR_LIMIT.get((name, fname), size)
        if kind == CSTR:
            min_size = 1 if (name, fname) == ("query_sm", "message_id") else 0
            fields[fname] = draw(st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=min_size, max_size=size - 1))
        elif kind == U8:
            fields[fname] = draw(st.integers(0, 255))
        elif kind == SM:
            fields[fname] = draw(st.binary(max_size=254))
    if name.startswith("bind_") and not name.endswith("_resp"):
        fields["interface_version"] = 0x34
    chosen = draw(st.lists(st.sampled_from(TLVS[name]), unique=True, max_size=6)) if name in TLVS else []
    tlvs = {tname: draw(smpplib_tlv_value(tname)) for tname in chosen}
    if tlvs.get("message_payload") and fields.get("short_message"):
        fields["short_message"] = b""
    is_response = bool(COMMAND_IDS[name] & 0x80000000)
    status = draw(st.one_of(st.just(0), st.sampled_from(list(CommandStatus)))) if is_response else 0
    sequence = draw(st.integers(1, 0x7FFFFFFF))
    return fields, tlvs, status, sequence


DIFF = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", SUPPORTED)
@DIFF
@given(data=st.data())
def test_smpplib_built_pdus_decode(name, data):
    fields, tlvs, status, sequence = data.draw(smpplib_inputs(name))
    pdu = smpplib.smpp.make_pdu(name, client=StubClient(), status=status, **fields, **tlvs)
    pdu.sequence = sequence
    wire = pdu.generate()

    ours = decode_pdu(wire)
    assert ours.command_id == COMMAND_IDS[name]
    assert ours.command_status == status
    assert ours.sequence_number == sequence
    for fname, _kind, _size in SPEC_FIELDS[name]:
        assert getattr(ours, fname) == fields[fname], fname
    assert ours.tlvs == {TAG[t]: ours_from_smpplib_tlv(t, v) for t, v in tlvs.items()}

    emptied = BODYLESS_ON_ERROR.get(COMMAND_IDS[name])  # the field whose emptiness lets an error response's body go
    bodyless_case = status and emptied is not None and not fields[emptied] and not tlvs
    if not bodyless_case:
        # Byte-exact, except for the body-on-error quirk noted at the top.
        assert encode_pdu(ours) == wire
    else:
        assert decode_pdu(encode_pdu(ours)) == type(ours)(sequence_number=sequence, command_status=status)


# --------------------------------------------------------------------------
# ours -> smpplib


@st.composite
def our_cases_for_smpplib(draw, name: str) -> Case:
    case = draw(cases(name, with_tlvs=False))
    names = TLVS.get(name, [])
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=6)) if names else []
    tlvs = []
    for tname in chosen:
        _tag, kind, lo, hi = STANDARD_TLVS[tname]
        value = draw(tlv_value(kind, lo, hi))
        tlvs.append((TAG[tname], value))
    # Vendor TLVs: smpplib skips them when allow_unknown_opt_params is set, which
    # checks that our TLV framing lets a standard parser step over them.
    vendor = draw(st.lists(st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=20)), unique_by=lambda t: t[0], max_size=2))
    case.tlvs = draw(st.permutations(tlvs + vendor)) if tlvs or vendor else []
    return case


@pytest.mark.parametrize("name", SUPPORTED)
@DIFF
@given(data=st.data())
def test_our_pdus_parse_in_smpplib(name, data):
    case = data.draw(our_cases_for_smpplib(name))
    ours = case.pdu()
    wire = encode_pdu(ours)

    theirs = smpplib.smpp.parse_pdu(wire, client=StubClient(), allow_unknown_opt_params=True)
    assert theirs.command == name
    assert theirs.status == case.command_status
    assert theirs.sequence == case.sequence_number
    assert theirs.length == len(wire)

    for fname, kind, _size in SPEC_FIELDS[name]:
        got = getattr(theirs, fname)
        want = getattr(ours, fname)
        if case.bodyless:
            assert got is None, fname
        elif kind == CSTR:
            assert got == want.encode("latin-1"), fname
        elif kind == U8:
            assert got == want, fname
        elif kind == SM:
            # smpplib quirk: it stops parsing when the body is used up, so an empty
            # short_message at the very end of the PDU stays None instead of b"".
            assert (b"" if got is None and not want else got) == want
            assert theirs.sm_length == len(want)

    sent = {TLV_BY_TAG[tag][0]: value for tag, value in case.tlvs if tag in TLV_BY_TAG}
    for tname in smpplib_optional(name) - set(QUIRK_TLVS.get(name, {})):
        got = getattr(theirs, tname)
        if tname not in sent:
            assert got is None, tname
            continue
        value = sent[tname]
        kind = STANDARD_TLVS[tname][1]
        if tname in CSTRING_OCTET_TLVS:
            assert got == value[:-1], tname  # smpplib drops the last octet (its "NUL")
        elif kind == TCSTR:
            assert got == value.encode("latin-1"), tname
        else:
            assert got == value, tname


def test_smpplib_submit_sm_with_ussd_and_sar_concrete():
    """A USSD submit_sm and an SAR segment, checked value by value."""
    pdu = smpplib.smpp.make_pdu(
        "submit_sm",
        client=StubClient(),
        service_type="USSD",
        source_addr="*123#",
        destination_addr="447700900123",
        data_coding=0x0F,
        short_message=b"Balance: 5.00",
        ussd_service_op=2,
        user_message_reference=0xBEEF,
        sar_msg_ref_num=0x1234,
        sar_total_segments=3,
        sar_segment_seqnum=2,
    )
    pdu.sequence = 41
    ours = decode_pdu(pdu.generate())
    assert ours.service_type == "USSD"
    assert ours.source_addr == "*123#"
    assert ours.destination_addr == "447700900123"
    assert ours.data_coding == 0x0F
    assert ours.short_message == b"Balance: 5.00"
    assert ours.tlvs == {0x0204: 0xBEEF, 0x020C: 0x1234, 0x020E: 3, 0x020F: 2, 0x0501: 2}


def test_delivery_receipt_deliver_sm_to_smpplib():
    from gateway.smpp.pdu import DeliverSm

    receipt = b"id:abc123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:hi"
    ours = DeliverSm(
        sequence_number=7,
        source_addr="447700900123",
        destination_addr="1234",
        esm_class=0x04,
        short_message=receipt,
        tlvs={0x001E: "abc123", 0x0427: 2, 0x0423: b"\x03\x00\x01"},
    )
    theirs = smpplib.smpp.parse_pdu(encode_pdu(ours), client=StubClient())
    assert theirs.esm_class == 0x04
    assert theirs.short_message == receipt
    assert theirs.receipted_message_id == b"abc123"
    assert theirs.message_state == 2
    assert theirs.network_error_code == b"\x03\x00\x01"


# --------------------------------------------------------------------------
# A tag that comes more than once.


def _with_tlvs(wire: bytes, tlvs: bytes) -> bytes:
    """`wire` with TLVs appended and its command_length set again."""
    return (len(wire) + len(tlvs)).to_bytes(4, "big") + wire[4:] + tlvs


def _tlv(tag: int, value: bytes) -> bytes:
    return tag.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


def test_repeated_vendor_tlvs_after_smpplib_fields_decode_and_reencode():
    """smpplib cannot send a tag twice; its submit_sm with repeated vendor TLVs appended: its fields and TLVs
    decode as it meant them, the vendor values all come through in order, and the bytes re-encode unchanged."""
    pdu = smpplib.smpp.make_pdu("submit_sm", client=StubClient(), source_addr="8613800000001",
                                destination_addr="8613700000001", short_message=b"hi", user_message_reference=7)  # fmt: skip
    pdu.sequence = 5
    wire = _with_tlvs(pdu.generate(), _tlv(0x1400, b"\x01\x02") + _tlv(0x1400, b"\x03") + _tlv(0x1401, b"\xaa"))
    ours = decode_pdu(wire)
    assert (ours.source_addr, ours.destination_addr, ours.short_message) == ("8613800000001", "8613700000001", b"hi")
    assert ours.tlvs == {0x0204: 7, 0x1400: [b"\x01\x02", b"\x03"], 0x1401: b"\xaa"}
    assert encode_pdu(ours) == wire


def test_smpplib_steps_over_our_repeated_vendor_tlvs():
    from gateway.smpp.pdu import DeliverSm

    ours = DeliverSm(sequence_number=8, source_addr="8613800000001", destination_addr="8613700000001",
                     short_message=b"hi", tlvs={0x1400: [b"\x01\x02", b"\x03"], 0x0204: 7, 0x020A: 1234})  # fmt: skip
    theirs = smpplib.smpp.parse_pdu(encode_pdu(ours), client=StubClient(), allow_unknown_opt_params=True)
    assert (theirs.short_message, theirs.user_message_reference, theirs.source_port) == (b"hi", 7, 1234)


def test_a_repeated_standard_tlv_smpplib_would_take_the_last_of_is_refused():
    """smpplib keeps the last of two user_message_references without a word; we refuse the PDU (see tlv.py)."""
    pdu = smpplib.smpp.make_pdu("submit_sm", client=StubClient(), destination_addr="8613700000001", short_message=b"hi",
                                user_message_reference=7)  # fmt: skip
    pdu.sequence = 6
    wire = _with_tlvs(pdu.generate(), _tlv(0x0204, (9).to_bytes(2, "big")))
    assert smpplib.smpp.parse_pdu(wire, client=StubClient()).user_message_reference == 9
    with pytest.raises(PduError) as info:
        decode_pdu(wire)
    assert info.value.status == CommandStatus.ESME_RINVOPTPARSTREAM
