"""What a submission tells the recipient's handset to do with it reaches its deliver_sm as submitted: protocol_id
(SMPP 3.4 section 5.2.13, GSM 03.40's TP-PID) and priority_flag (5.2.14), also when the MT waited in the store."""

from __future__ import annotations

import pytest

from tests.smpp_handset import ESME_ROK, text

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
# (protocol_id, priority_flag): a silent (Type 0) SMS, a Replace Short Message Type 1, a SIM data download.
SUBMITTED = [(0x40, 0), (0x41, 1), (0x7F, 3)]
EXPECTED = [(pid, priority, f"pid {pid:#x}") for pid, priority in SUBMITTED]


def submit_each(a) -> None:
    for pid, priority in SUBMITTED:
        assert a.submit(B, f"pid {pid:#x}", protocol_id=pid, priority_flag=priority).status == ESME_ROK


def as_received(deliver_sms: list) -> list[tuple[int, int, str]]:
    return [(p.protocol_id, p.priority_flag, text(p)) for p in deliver_sms]


def test_protocol_id_and_priority_flag_reach_a_bound_recipient(handset) -> None:
    a, b = handset(A), handset(B)
    for (pid, priority), expected in zip(SUBMITTED, EXPECTED):
        assert a.submit(B, f"pid {pid:#x}", protocol_id=pid, priority_flag=priority).status == ESME_ROK
        assert as_received([b.expect()]) == [expected]


def test_they_are_kept_while_the_mt_waits_for_its_recipient(handset) -> None:
    a = handset(A)
    submit_each(a)
    b = handset(B)
    assert as_received(b.expect_many(3)) == EXPECTED


def test_they_survive_a_restart(make_gateway, handset, tmp_path) -> None:
    db = tmp_path / "restart.db"
    first = make_gateway(db_path=db)
    a = handset(A, gw=first)
    submit_each(a)
    a.close()
    first.stop()
    b = handset(B, gw=make_gateway(db_path=db))
    assert as_received(b.expect_many(3)) == EXPECTED


def test_a_data_sm_has_neither_and_its_mt_goes_with_zeros(handset) -> None:
    a, b = handset(A), handset(B)
    assert a.data_sm(B, "via data_sm").status == ESME_ROK
    assert as_received([b.expect()]) == [(0, 0, "via data_sm")]


@pytest.mark.parametrize("asked", [0x04, 0x08, 0x0C])
def test_the_sme_acknowledgement_the_sender_asks_for_reaches_the_recipient(handset, asked) -> None:
    """SMPP 3.4 5.2.17, registered_delivery bits 3-2: the deliver_sm went with 0, so the handset never knew the
    sender wanted an SME acknowledgement. The SMSC receipt bits (1-0) stay with the gateway."""
    a, b = handset(A), handset(B)
    assert a.submit(B, "ack me", registered_delivery=asked | 0x01).status == ESME_ROK
    assert b.expect().registered_delivery == asked
