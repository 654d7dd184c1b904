"""Receipt text of a part of a long message; throttling of messages larger than one second's allowance."""

from __future__ import annotations

from gateway.accounts import TokenBucket
from gateway.receipts import receipt_text
from gateway.smpp.constants import MessageState
from gateway.smpp.segment import segment_text
from gateway.store.records import Direction, Message, MessageStatus


def test_receipt_text_of_a_long_message_part_has_no_udh_bytes() -> None:
    part = segment_text("Hello from part one. " * 10)[0]
    assert part.esm_class & 0x40
    message = Message(
        id="m1", direction=Direction.MT, status=MessageStatus.ENROUTE, account="handset",
        source_addr="8613800000001", dest_addr="8613700000001", short_message=part.short_message,
        data_coding=part.data_coding, esm_class=part.esm_class, submitted_at=0.0,
    )  # fmt: skip
    assert receipt_text(message, MessageState.DELIVERED, 60.0, 0).endswith("text:Hello from part one.")


def test_a_message_costing_more_than_one_seconds_allowance_passes_on_a_full_bucket() -> None:
    bucket = TokenBucket(rate=2)
    assert bucket.take(3)  # full bucket: passes, and leaves a debt
    assert not bucket.take(1)  # the debt must be paid off first


def test_a_full_bucket_passes_its_rate_and_no_more() -> None:
    bucket = TokenBucket(rate=5)
    assert [bucket.take(1) for _ in range(7)].count(True) == 5
