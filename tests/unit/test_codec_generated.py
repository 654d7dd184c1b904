"""The generated per-PDU decoders and encoders (codegen.py) against the table-driven reference in codec.py.

Same frames in -> same PDU out, or the same PduError (status and message);
same PDU in -> same bytes out, or the same exception (type and message).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp import codec, codegen
from gateway.smpp.codec import HEADER, PduError, encode_pdu
from gateway.smpp.pdu import CSTR, PDU_CLASSES, SM, U8, DataSmResp, DeliverSmResp, Pdu, SubmitSmResp

from .test_codec_fuzz import mutated_pdus, random_bodies
from .test_codec_roundtrip import cases

DIFF = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def reference_decode(frame: bytes) -> Pdu:
    """decode_pdu as it was before code generation: the table-driven loop for every PDU."""
    if len(frame) < 16:
        raise PduError(codec.S.ESME_RINVCMDLEN, "PDU shorter than its header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError(codec.S.ESME_RINVCMDLEN, f"command_length {length} != {len(frame)}", command_id, sequence)
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        raise PduError(codec.S.ESME_RINVCMDID, f"unknown command_id 0x{command_id:08X}", command_id, sequence)
    try:
        values = codec._decode_fields(cls, frame, command_id, status)
    except PduError as exc:
        exc.command_id, exc.sequence_number = command_id, sequence
        raise
    return cls(sequence_number=sequence, command_status=status, **values)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except PduError as exc:
        return ("pdu_error", exc.status, str(exc), exc.command_id, exc.sequence_number)
    except Exception as exc:  # noqa: BLE001 - the type and message are what we compare
        return ("error", type(exc), str(exc))


frames = st.one_of(cases(max_list=3).map(lambda case: encode_pdu(case.pdu())), mutated_pdus(), random_bodies(), st.binary(max_size=60))


@DIFF
@given(frame=frames)
def test_generated_decoder_matches_the_table_driven_one(frame):
    assert outcome(codec.decode_pdu, frame) == outcome(reference_decode, frame)


@DIFF
@given(case=cases(max_list=3))
def test_generated_encoder_matches_the_table_driven_one(case):
    pdu = case.pdu()
    assert outcome(codec._ENCODERS[type(pdu)], pdu) == outcome(codec._encode_fields, pdu)


@st.composite
def pdus_with_a_bad_field(draw) -> Pdu:
    """A valid PDU with one or two fields out of their SMPP range (too long, > 255, wrong type)."""
    pdu = draw(cases(max_list=2)).pdu()
    candidates = [(name, kind, size) for name, kind, size, _err in pdu.FIELDS if kind in (CSTR, U8, SM)]
    if not candidates:
        return pdu
    for name, kind, size in draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=2, unique=True)):
        if kind == CSTR:
            bad = draw(st.sampled_from(["x" * size, "\u4e2d", None]))
        elif kind == U8:
            bad = draw(st.sampled_from([256, -1, None, "1"]))
        else:
            bad = draw(st.sampled_from([b"x" * (size + 1), "text", None]))
        pdu = replace(pdu, **{name: bad})
    return pdu


def builtin_wording(result: tuple) -> tuple:
    # A 1-octet field out of range: bytes() says "bytes must be in range(0, 256)" where
    # bytearray.append said "byte must ...". Same ValueError; only CPython's wording differs.
    if result[0] == "error" and result[2].endswith("must be in range(0, 256)"):
        return ("error", result[1], "must be in range(0, 256)")
    # A field of the wrong type (str where bytes belong): both refuse with TypeError, worded by
    # whichever builtin met it first (b"".join vs bytearray +=). Our own messages stay compared.
    if result[0] == "error" and result[1] is TypeError:
        return ("error", TypeError, "wrong type")
    return result


@DIFF
@given(pdu=pdus_with_a_bad_field())
def test_generated_encoder_refuses_what_the_table_driven_one_refuses(pdu):
    generated = outcome(codec._ENCODERS[type(pdu)], pdu)
    reference = outcome(codec._encode_fields, pdu)
    assert builtin_wording(generated) == builtin_wording(reference)


@pytest.mark.parametrize("cls", list(PDU_CLASSES.values()), ids=lambda cls: cls.__name__)
def test_every_pdu_class_has_generated_code(cls):
    assert codec._DECODERS[cls.command_id].__name__ == f"decode_{codegen.function_name(cls)}"
    assert codec._ENCODERS[cls].__name__ == f"encode_{codegen.function_name(cls)}"


def test_generated_source_can_be_printed(capsys):
    assert codegen.main(["submit_sm"]) == 0
    printed = capsys.readouterr().out
    assert "def decode_submit_sm(" in printed and "def encode_submit_sm(" in printed


@settings(max_examples=200, deadline=None)
@given(
    cls=st.sampled_from([SubmitSmResp, DataSmResp, DeliverSmResp]),
    sequence=st.integers(0, 0xFFFFFFFF),
    status=st.one_of(st.just(0), st.integers(0, 0x4FF)),
    message_id=st.one_of(st.just(""), st.text(st.characters(max_codepoint=255), max_size=66)),
)
def test_message_id_response_fast_path_matches_encode_pdu(cls, sequence, status, message_id):
    pdu = cls(sequence_number=sequence, command_status=status, message_id=message_id)
    assert outcome(codec.encode_message_id_resp, cls.command_id, sequence, message_id, status) == outcome(encode_pdu, pdu)
