"""The stores the contract suite runs against: one entry per Store implementation (gateway/store/base.py).

A new Store joins the suite with one more `StoreKind` in `STORES`: `make` builds an unopened store on a database of
the test's own, named by a directory (the same directory: the same database, as a restart finds it); `unopenable`
one whose `open` must fail with StoreOpenError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.store.base import Store
from gateway.store.records import Direction, Message, MessageStatus
from gateway.store.sqlite import SqliteStore


@dataclass(frozen=True)
class StoreKind:
    name: str
    make: Callable[..., Store]  # (directory, **SqliteStore's keyword options: dedup_window, clock) -> Store
    unopenable: Callable[[Path], Store]


STORES = [
    StoreKind(
        "sqlite",
        make=lambda where, **options: SqliteStore(str(where / "gw.db"), **options),
        unopenable=lambda where: SqliteStore(str(where / "no-such-directory" / "gw.db")),
    ),
]


def store_kind(name: str) -> StoreKind:
    """The entry of this name (a child process builds its store by it)."""
    return next(kind for kind in STORES if kind.name == name)


def mo(id: str, **fields) -> Message:
    """An MO as the intake accepts it."""
    fields = {"account": "esme1", "source_addr": "8613800000001", "dest_addr": "10086", "short_message": b"hi", **fields}
    return Message(id=id, direction=Direction.MO, status=MessageStatus.ACCEPTED, **fields)


def mt(id: str, **fields) -> Message:
    """An MT waiting for delivery."""
    fields = {"account": "esme1", "source_addr": "10086", "dest_addr": "8613800000001", "short_message": b"reply", **fields}
    return Message(id=id, direction=Direction.MT, status=MessageStatus.ENROUTE, **fields)
