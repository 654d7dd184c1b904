"""A Put is an upsert by the record's key; inserting a message whose id exists fails."""

from __future__ import annotations

import pytest

from gateway.store.base import Store
from gateway.store.effects import Put
from gateway.store.records import Charge, Subscriber

from .stores import mo, mt


async def test_a_put_is_an_upsert_by_the_records_key(store: Store) -> None:
    """base.py: "A `Put` is an upsert by the record's key (effects.TABLES)"."""
    await store.apply([Put(Subscriber("8613800000001", "zh")), Put(Subscriber("8613800000002", "zh"))])
    await store.apply([Put(Subscriber("8613800000001", "en"))])
    assert await store.find(Subscriber, order_by="msisdn") == [Subscriber("8613800000001", "en"), Subscriber("8613800000002", "zh")]


async def test_a_put_replaces_a_row_clashing_on_another_unique_constraint(store: Store) -> None:
    """base.py: "a row clashing on another unique constraint (charges: subscription_id, period) is replaced too"."""
    november = Charge("c1", "sub-1", "8613800000001", "news", "2026-11", 500, 1.0)
    december = Charge("c2", "sub-1", "8613800000001", "news", "2026-12", 500, 2.0)
    await store.apply([Put(november), Put(december)])
    again = Charge("c3", "sub-1", "8613800000001", "news", "2026-11", 300, 3.0)
    await store.apply([Put(again)])
    assert await store.find(Charge, subscription_id="sub-1", order_by="period") == [again, december]


async def test_inserting_a_message_id_that_exists_fails(store: Store) -> None:
    """base.py: "Inserting a message id that exists fails" (and the message stored first stands)."""
    first = mt("x")
    await store.accept(first)
    with pytest.raises(Exception):  # noqa: B017 (each store raises its database's own error)
        await store.accept(mo("x"))
    with pytest.raises(Exception):  # noqa: B017
        await store.apply([], [mt("x", short_message=b"other")])
    assert await store.get("x") == first
