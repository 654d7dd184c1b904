"""Ids are the caller's and compare as byte strings."""

from __future__ import annotations

import pytest

from gateway.store.base import Store
from gateway.store.effects import Put
from gateway.store.records import (
    Block,
    Charge,
    PendingOrder,
    SpamReport,
    Subscriber,
    Subscription,
    SubscriptionEvent,
    Survey,
)

from .stores import mt

# In byte order; a linguistic collation would put "_" first, "a" before "B", and "é" beside "e".
BYTE_ORDER = ["8613800000001", "B", "Z", "_", "a", "b", "é"]


async def test_ids_compare_as_byte_strings(store: Store) -> None:
    """base.py: "Ids are the caller's (gateway/ids.py) and compare as byte strings (C collation)"."""
    await store.apply([Put(Subscriber(msisdn, "en")) for msisdn in ("é", "b", "_", "a", "Z", "8613800000001", "B")])
    assert [s.msisdn for s in await store.find(Subscriber, order_by="msisdn")] == BYTE_ORDER
    assert [s.msisdn for s in await store.find(Subscriber, msisdn__gt="Z", msisdn__lt="b")] == ["_", "a"]


async def test_a_submit_multis_destinations_are_the_ids_between_id_slash_and_id_zero(store: Store) -> None:
    """base.py: "a submit_multi's destinations are `<id>/<n>` (ranges `'<id>/' < x < '<id>0'`)": submitted_as finds
    them in order of arrival, and no other id that begins alike."""
    submission = "1a24a2e9016000000001"
    for id in (f"{submission}.", submission, f"{submission}-2", f"{submission}/2", f"{submission}/10", f"{submission}0",
               f"{submission}/3", f"{submission}a", f"{submission}_/2"):  # fmt: skip
        await store.accept(mt(id))
    found = [m.id for m in await store.submitted_as(submission)]
    assert found == [submission, f"{submission}/2", f"{submission}/10", f"{submission}/3"]  # ("/10" < "/2" as bytes)


async def test_the_last_id_made_is_the_largest_hex_id_of_a_message_or_a_service_record(store: Store) -> None:
    """base.py: last_id_made is "the largest id of those ids.MessageIds makes (19 hex digits, or a submit_multi destination's) that the
    store holds": a subscription's counts too (retention deletes the messages made with it), ids of other shapes
    do not."""
    assert await store.last_id_made() is None
    for id in ("1a24a2e9016000000002", "1a24a2e9016000000002/2", "1a24a2e9015ffffffff9", "1a24a2e9016000000001"):
        await store.accept(mt(id))
    assert await store.last_id_made() == "1a24a2e9016000000002/2"
    await store.apply([Put(Subscription(id, "8613800000001", "sina-news", "active", 0.0, "sms", "", 0.0))
                       for id in ("1a24a2e9017000000001", "sub-1", "SUB-1", "charge-1", "f47ac10b-58cc-4372-a567", "86138000001")])
    assert await store.last_id_made() == "1a24a2e9017000000001"


MADE = "1a24a2e9017000000001"  # an id MessageIds made


@pytest.mark.parametrize(
    "record",
    [
        SubscriptionEvent(MADE, "s", "8613800000001", 0.0, "ordered", "sms"),
        PendingOrder(MADE, "8613800000001", "sina-news", "sms", "Y", 0.0, 1.0, "pending"),
        SpamReport(MADE, "8613800000001", "8613900000009", "spam", 0.0, "received"),
        Block(MADE, "8613900000009", "", 0.0),
        Survey(MADE, "8613800000001", "hotline", "A1", 0.0, 1.0, "sent"),
        Charge(MADE, "s", "8613800000001", "sina-news", "2026-12", 300, 0.0),
    ],
    ids=["a subscription event", "a pending order", "a spam report", "a block", "a survey", "a charge"],
)
async def test_the_last_id_made_may_be_any_service_records(store: Store, record) -> None:
    """Every table whose ids MessageIds makes is read: one left out, a start after a clock stepped back took ids
    before the last run's (a lifted block's id, which the guards compare MTs against, among them)."""
    await store.apply([Put(record)])
    assert await store.last_id_made() == MADE
