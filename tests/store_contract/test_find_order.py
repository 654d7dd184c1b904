"""`find`'s order where `order_by` leaves it open: ties, NULLs, no order_by at all."""

from __future__ import annotations

from gateway.store.base import Store
from gateway.store.effects import Put
from gateway.store.records import Survey

WHO = "8613800000001"


def survey(id: str, created_at: float, rated_at: float | None = None, status: str = "sent") -> Survey:
    return Survey(id, WHO, "hotline", "", created_at, created_at + 60, status, rated_at=rated_at)


async def ids(store: Store, order_by: str | None = None) -> list[str]:
    return [s.id for s in await store.find(Survey, msisdn=WHO, status="sent", order_by=order_by)]


async def test_find_leaves_ties_in_insertion_order_a_put_moving_its_row_last(store: Store) -> None:
    """base.py: "`find` leaves ties (and every row, `order_by` absent) in the order SQLite's plan reads them: by the
    index it uses, then insertion order, a Put moving its row last (REPLACE gives it a new rowid)". RecordCache
    answers in the same order. (Every row but the last two has the same key in the index read, surveys_by_msisdn
    (msisdn, status): insertion order alone; those two come before them, by status.)"""
    await store.apply([Put(survey(id, 5.0)) for id in ("c", "a", "d", "b")])
    await store.apply([Put(survey("early", 1.0))])
    assert await ids(store) == ["c", "a", "d", "b", "early"]
    assert await ids(store, "created_at") == ["early", "c", "a", "d", "b"]
    assert await ids(store, "-created_at") == ["c", "a", "d", "b", "early"]
    await store.apply([Put(survey("a", 5.0))])  # stored again, unchanged: last of its ties now
    assert await ids(store) == ["c", "d", "b", "early", "a"]
    assert await ids(store, "created_at") == ["early", "c", "d", "b", "a"]
    assert await ids(store, "-created_at") == ["c", "d", "b", "a", "early"]
    await store.apply([Put(survey("rated", 5.0, status="rated")), Put(survey("expired", 5.0, status="expired"))])
    every = [s.id for s in await store.find(Survey, msisdn=WHO, order_by="created_at")]
    assert every == ["early", "expired", "rated", "c", "d", "b", "a"]


async def test_find_puts_nulls_first_ascending_and_last_descending(store: Store) -> None:
    """base.py: "NULLs first ascending, last descending"."""
    await store.apply([Put(survey("rated-late", 1.0, 9.0)), Put(survey("unrated", 1.0)), Put(survey("rated", 1.0, 3.0))])
    assert await ids(store, "rated_at") == ["unrated", "rated", "rated-late"]
    assert await ids(store, "-rated_at") == ["rated-late", "rated", "unrated"]
