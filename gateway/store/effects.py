"""What a handler asks the store to change, as data.

The store applies a handler's effects in the same transaction that marks
its MO processed and stores its replies, so a crash either keeps all of it
or none (and the MO is handled again at start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Put:
    """Insert or replace one record (a dataclass from records.TABLES).

    `row`: the record as the store wrote it (rows.effect_sql sets it), which the record cache keeps then rather
    than make the row again; None until then. (Not frozen, for that: records are not hashable, nor was a Put.)"""

    record: Any
    row: tuple | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the record of this type with this key (values in the table's key order).

    `record`: the record as its handler read it, when its key does not say which subscriber it is about (a
    PendingOrder's id): the record cache then changes that subscriber's records only, rather than forget every
    subscriber's (gateway/store/cache.py). The store deletes by the key alone."""

    record_type: type
    key: tuple
    record: Any = None


Effect = Put | Delete
