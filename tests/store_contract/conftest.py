"""The `store` fixture: every test of the suite runs once per entry of stores.STORES."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.store.base import Store

from .stores import STORES, StoreKind


@pytest.fixture(params=STORES, ids=lambda kind: kind.name)
def store_kind(request: pytest.FixtureRequest) -> StoreKind:
    return request.param


@pytest.fixture
async def open_store(store_kind: StoreKind, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    """open_store(**options): the test's database opened (again: a restart), closed at teardown if still open."""
    opened: list[Store] = []

    async def open_it(**options) -> Store:
        store = store_kind.make(tmp_path, **options)
        await store.open()
        opened.append(store)
        return store

    yield open_it
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: Callable[..., Awaitable[Store]]) -> Store:
    """The test's database, opened; closed at teardown."""
    return await open_store()
