"""The SQLite writer process dies right after a COMMIT, before its answer reaches the gateway (the OOM killer, an
operator's kill): what the transaction committed stands, and is answered and delivered once.

The writer's test-only kill switch (gateway/store/writer_child.KILL_SWITCH) kills it at exactly that point: after it
commits the first batch that carries a marker, before it writes its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.store.writer_child import KILL_SWITCH
from tests.smpp_handset import ESME_ROK, is_receipt, receipt_fields, text

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2


@pytest.fixture
def kill_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """arm(marker): the writer process kills itself after committing the next batch carrying `marker`. Request it
    before the gateway: the writer process takes the setting from the environment it starts with."""
    switch = tmp_path / "kill-writer"
    monkeypatch.setenv(KILL_SWITCH, str(switch))

    def arm(marker: str) -> Path:
        switch.write_text(marker)
        return switch

    return arm


def test_a_submission_committed_as_the_writer_died_is_acknowledged_and_delivered_once(kill_switch, gateway, handset) -> None:
    a, b = handset(A), handset(B)
    writer = gateway.gateway.store.writer.pid
    switch = kill_switch("committed as the writer died")
    resp = a.submit(B, "committed as the writer died", registered_delivery=1)
    assert not switch.exists() and gateway.gateway.store.writer.pid != writer, "the writer did not die after the commit"
    # Before: ESME_RSYSERR ("nothing was acknowledged"), the message delivered only on B's next bind, and the
    # client's resend a second copy, with a receipt for an id the client was never given.
    assert resp.status == ESME_ROK
    message_id = resp.message_id.decode()
    assert text(b.expect()) == "committed as the writer died"
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (message_id, "DELIVRD")
    b.expect_none(within=1.0)
    a.expect_none(within=0.1)


def test_a_delivery_committed_as_the_writer_died_sends_its_receipt_at_once(kill_switch, gateway, handset) -> None:
    a, b = handset(A), handset(B)
    b.answering = False  # B's deliver_sm_resp waits until the switch is armed
    message_id = a.submit(B, "hello", registered_delivery=1).message_id.decode()
    b.expect()
    switch = kill_switch("status = 'delivered'")  # the MT's final status, committed with its receipt
    b.answer_held()
    # Before: the final status was written again every second, failing for ever on the receipt already stored;
    # the receipt went out only when A bound again.
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (message_id, "DELIVRD")
    assert not switch.exists(), "the writer did not die after the commit"
    b.answering = True
    b.expect_none(within=1.0)  # delivered once: not sent again
    a.expect_none(within=0.1)


def test_a_submission_committed_as_the_writer_died_stands_when_its_successor_dies_too(kill_switch, gateway, handset) -> None:
    """The successor told whether the batch in doubt committed; killed too before it said (the OOM killer striking
    twice), the batch was taken as not committed: ESME_RSYSERR, yet stored, and delivered only on B's next bind."""
    a, b = handset(A), handset(B)
    switch = kill_switch("committed twice over")
    successor = Path(f"{switch}.at-start")
    successor.write_text("")  # the next writer process dies as it starts
    resp = a.submit(B, "committed twice over", registered_delivery=1)
    assert not switch.exists() and not successor.exists(), "the writers did not die"
    assert resp.status == ESME_ROK
    assert text(b.expect()) == "committed twice over"
    receipt = receipt_fields(a.expect(predicate=is_receipt))
    assert (receipt["id"], receipt["stat"]) == (resp.message_id.decode(), "DELIVRD")
    b.expect_none(within=1.0)


def test_a_resend_recognised_as_a_copy_as_the_writer_died_gets_the_first_ones_id(kill_switch, gateway, handset) -> None:
    a, b = handset(A), handset(B)
    first = a.submit(B, "sent twice", user_message_reference=7)
    assert first.status == ESME_ROK
    assert text(b.expect()) == "sent twice"
    switch = kill_switch("sent twice")
    again = a.submit(B, "sent twice", user_message_reference=7)  # the client's resend: the same message
    assert not switch.exists(), "the writer did not die after the commit"
    # The transaction skipped the copy's row; the answer it never sent said so. (Before the fix the batch counted
    # as failed: ESME_RSYSERR.)
    assert (again.status, again.message_id) == (ESME_ROK, first.message_id)
    b.expect_none(within=1.0)
