"""Writes of one process are committed in issue order."""

from __future__ import annotations

from gateway.store.base import Store
from gateway.store.records import MessageStatus

from .stores import mo, mt


async def test_writes_are_committed_in_issue_order(store: Store) -> None:
    """base.py: "they are committed in the order they were issued" and "Writes of one process are committed in issue
    order: one writer, not a pool". Grouping by statement would run both INSERTs before the UPDATE, so "x" would end
    with attempts=7; issue order has the UPDATE find nothing."""
    store.accept(mo("z"))
    store.mark_retry("x", attempts=7, next_attempt_at=5.0, error=8)
    store.accept(mt("x"))
    store.mark_retry("z", attempts=1, next_attempt_at=9.0, error=0)
    await store.mark_delivered("x", done_at=10.0, receipt=None)
    x = await store.get("x")
    assert (x.status, x.attempts, x.error, x.done_at) == (MessageStatus.DELIVERED, 0, 0, 10.0)
    assert (await store.get("z")).attempts == 1
