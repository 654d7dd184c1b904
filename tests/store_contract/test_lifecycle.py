"""Opening, closing, and what a store says about itself: can_commit, database_gone, its schema."""

from __future__ import annotations

import pytest
import structlog.testing

from gateway.store.base import Store, StoreOpenError

from .stores import StoreKind, mo


async def test_a_store_that_commits_says_so(store: Store) -> None:
    """Store.can_commit: "False from a transaction that failed for no fault of its writes [...] until one commits";
    database_gone: "The database's path does not name the file the store opened". Through the interface only the
    store that commits can be seen: both turn by faults outside it (tests/unit/test_store_sqlite.py for SQLite)."""
    assert (store.can_commit, store.database_gone) == (True, False)
    await store.accept(mo("a"))
    assert (store.can_commit, store.database_gone) == (True, False)


async def test_a_database_that_cannot_be_opened_raises_store_open_error(store_kind: StoreKind, tmp_path) -> None:
    """StoreOpenError: "The database could not be opened, configured, migrated or (at start) read: the start is
    refused with it"."""
    with pytest.raises(StoreOpenError):
        await store_kind.unopenable(tmp_path).open()


async def test_log_schema_and_schema_change_say_what_open_did_once(open_store) -> None:
    """log_schema: "Log what `open` did to the schema (the database created, or its schema moved forward, one way):
    once"; schema_change: "The same, for the one line of a start refused after `open` ("" when it changed nothing)"."""
    store = await open_store()
    assert store.schema_change() != ""
    with structlog.testing.capture_logs() as logs:
        store.log_schema()
    assert len(logs) == 1
    await store.close()
    store = await open_store()
    assert store.schema_change() == ""
    with structlog.testing.capture_logs() as logs:
        store.log_schema()
    assert logs == []


async def test_close_commits_everything_issued_before_it(open_store) -> None:
    """Store.close: "Commit everything still queued, then stop"."""
    store = await open_store()
    futures = [store.accept(mo(f"m{i}")) for i in range(500)]
    await store.close()
    assert all(f.done() and f.result() == (f"m{i}", False) for i, f in enumerate(futures))
    store = await open_store()
    assert [m.id for m in await store.unprocessed_mos()] == [f"m{i}" for i in range(500)]
