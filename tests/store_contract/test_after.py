"""`after`: a write decided on uncommitted writes is committed only if they are, else fails with WriteSkipped."""

from __future__ import annotations

import pytest

from gateway.store.base import Store, WriteSkipped
from gateway.store.effects import Put
from gateway.store.records import Subscriber

from .stores import mo, mt


async def test_a_write_named_after_one_that_failed_fails_with_write_skipped(store: Store) -> None:
    """base.py: "A write decided on the uncommitted effects of earlier writes names them in `after` [...]: it is
    committed only if they are, and fails with `WriteSkipped` otherwise", whether it shared the failing one's batch
    or came later."""
    bad = store.complete_mo([], [mt("r0")], 5.0, [Put(Subscriber("8613800000001", None))])  # NOT NULL: fails
    same_batch = store.complete_mo([], [mt("r1")], 5.0, after=[bad])
    unrelated = store.complete_mo([], [mt("r2")], 5.0)
    with pytest.raises(Exception) as failed:  # (each store raises its database's own error)
        await bad
    assert not isinstance(failed.value, WriteSkipped)
    with pytest.raises(WriteSkipped):
        await same_batch
    await unrelated
    later = store.complete_mo([], [mt("r3")], 5.0, after=[bad, unrelated])
    with pytest.raises(WriteSkipped):
        await later
    on_good = store.complete_mo([], [mt("r4")], 5.0, after=[unrelated])
    await on_good
    assert [m is not None for m in [await store.get(f"r{i}") for i in range(5)]] == [False, False, True, False, True]


async def test_a_write_named_after_a_held_copy_fails_with_write_skipped(store: Store) -> None:
    """accept_held: "should the message prove a copy of a stored one after all, [it resolves] to (that one's id,
    True), nothing of its handling stored": what was decided on that handling must not stand either."""
    assert await store.accept(mo("a", dedup_key="k1")) == ("a", False)
    held = store.hold(mo("b", dedup_key="k1"), may_be_stored=False)
    copy = store.accept_held(held, mo("b", dedup_key="k1"), 5.0, [mt("r1")])
    decided_on_it = store.complete_mo([], [mt("r2")], 5.0, after=[copy])
    assert await copy == ("a", True)
    with pytest.raises(WriteSkipped):
        await decided_on_it
    assert await store.get("r1") is None and await store.get("r2") is None
