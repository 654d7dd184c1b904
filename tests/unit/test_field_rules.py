"""The one-expression test every submission takes agrees with the field-by-field checks that name the fault."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field_rules import _find_fault, check_submission
from gateway.refusal import Rejection
from gateway.smpp.pdu import DataSm, SubmitSm

octets = st.integers(0, 255)


def field(allowed: tuple[int, ...], near_misses: tuple[int, ...]) -> st.SearchStrategy[int]:
    """Mostly values the field allows (so that one bad field among good ones is drawn often), sometimes a value
    just outside its table, sometimes any octet."""
    good = st.sampled_from(allowed)
    return st.one_of(good, good, good, good, good, good, st.sampled_from(near_misses), octets)



def refused(check, pdu) -> int | None:
    try:
        check(pdu)
    except Rejection as rejected:
        return rejected.status
    return None


@settings(max_examples=500, deadline=None)
@given(
    data_sm=st.booleans(),
    source_ton=field((0, 1, 5, 6), (7, 8, 255)), source_npi=field((0, 1, 9, 18), (2, 5, 7, 19, 255)),
    dest_ton=field((0, 1, 6), (7, 8, 255)), dest_npi=field((0, 1, 14), (2, 5, 7, 19, 255)),
    esm_class=field((0x00, 0x03, 0x08, 0x40, 0xD0), (0x04, 0x0C, 0x14, 0x3C, 0x44)),
    registered_delivery=field((0, 1, 2, 0x1C), (3, 0x20, 0x23, 0xFF)),
    priority=field((0, 3), (4, 9)), replace=field((0, 1), (2,)),
    tlvs=st.sampled_from([{}, {}, {}, {0x0204: 7}, {0x001E: b"x\0"}, {0x0424: b"payload"}]),
    short=st.sampled_from([b"", b"hi"]),
)  # fmt: skip
def test_fast_path_and_named_checks_agree(data_sm, source_ton, source_npi, dest_ton, dest_npi, esm_class,
                                          registered_delivery, priority, replace, tlvs, short):  # fmt: skip
    common = {"source_addr_ton": source_ton, "source_addr_npi": source_npi, "dest_addr_ton": dest_ton,
              "dest_addr_npi": dest_npi, "esm_class": esm_class, "registered_delivery": registered_delivery,
              "tlvs": dict(tlvs)}  # fmt: skip
    if data_sm:
        pdu = DataSm(**common)
    else:
        pdu = SubmitSm(**common, priority_flag=priority, replace_if_present_flag=replace, short_message=short)
    assert refused(check_submission, pdu) == refused(_find_fault, pdu)


BASELINE = {"source_addr_ton": 1, "source_addr_npi": 1, "dest_addr_ton": 1, "dest_addr_npi": 1, "esm_class": 0,
            "registered_delivery": 1}  # fmt: skip
SUBMIT_SM_ONLY = {"priority_flag": 0, "replace_if_present_flag": 0}


@pytest.mark.parametrize("pdu_class", [SubmitSm, DataSm])
def test_every_value_of_each_field_among_good_ones(pdu_class):
    """Each field in turn takes all 256 values, the others allowed ones: the two checks agree on every PDU."""
    baseline = BASELINE | (SUBMIT_SM_ONLY if pdu_class is SubmitSm else {})
    for name in baseline:
        for value in range(256):
            pdu = pdu_class(**(baseline | {name: value}))
            assert refused(check_submission, pdu) == refused(_find_fault, pdu), (pdu_class.__name__, name, value)
    for tlvs in ({0x0204: 7}, {0x001E: b"x\0"}, {0x0427: 2}, {0x0423: b"\3\0\1"}, {0x0424: b"payload"}):
        pdu = pdu_class(**baseline, tlvs=dict(tlvs))
        assert refused(check_submission, pdu) == refused(_find_fault, pdu), (pdu_class.__name__, tlvs)


@pytest.mark.parametrize("esm_class", [0x00, 0x03, 0x08, 0x10, 0x40, 0x80, 0xC3])
def test_what_an_esme_may_submit_passes(esm_class):
    check_submission(SubmitSm(esm_class=esm_class, source_addr_ton=5, source_addr_npi=0, dest_addr_ton=1, dest_addr_npi=1,
                              registered_delivery=0x1D, priority_flag=3, replace_if_present_flag=1))  # fmt: skip
