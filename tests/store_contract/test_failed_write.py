"""A failed write fails alone, and nothing of it stands."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.base import Store, WriteSkipped

from .stores import mo, mt


async def test_a_failed_write_fails_alone(store: Store) -> None:
    """base.py: "A failed write fails alone: a batch whose transaction fails is retried op by op, so only the
    culprit's future fails (its error)". The writes are issued together, so that they can share a transaction."""
    good = store.accept(mo("a", dedup_key="k1"))
    copy = store.accept(mo("b", dedup_key="k1"))  # waits on "a"
    clash = store.accept(mo("a"))  # same id as "a": this write cannot succeed
    others = [store.accept(mo(f"o{i}")) for i in range(3)]
    results = await asyncio.gather(good, copy, clash, *others, return_exceptions=True)
    assert results[:2] == [("a", False), ("a", True)]
    assert isinstance(results[2], Exception) and not isinstance(results[2], WriteSkipped)
    assert results[3:] == [(f"o{i}", False) for i in range(3)]
    assert [m.id for m in await store.unprocessed_mos()] == ["a", "o0", "o1", "o2"]
    # The store keeps working, and the committed message still holds its key.
    assert await store.accept(mo("c", dedup_key="k1")) == ("a", True)


async def test_a_failed_future_means_nothing_of_that_write_stands(store: Store) -> None:
    """base.py: "a failed future means nothing of that write stands": complete_mo is one transaction."""
    await store.accept(mo("mo1"))
    await store.accept(mt("taken"))
    bad_replies = [mt("r1"), mt("taken")]  # second reply clashes with an existing id
    with pytest.raises(Exception):  # noqa: B017 (each store raises its database's own error)
        await store.complete_mo(["mo1"], bad_replies, done_at=50.0)
    assert [m.id for m in await store.unprocessed_mos()] == ["mo1"]
    assert await store.get("r1") is None
