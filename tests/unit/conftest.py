"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.sqlite import SqliteStore


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A SqliteStore on a fresh file (with its writer process), closed after the test."""
    store = SqliteStore(str(tmp_path / "gw.db"))
    await store.open()
    yield store
    await store.close()
