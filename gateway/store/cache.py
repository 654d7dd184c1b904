"""The service records of subscribers in use, in memory, in step with what is committed.

A handler reads state through `find` several times per MO (the language, the
open prompts, subscriptions, surveys, reports); an indexed SQLite read costs
~16 us on the event loop thread, ~4 of them per MO. This keeps records by
*partition*: every record of one type with one value of its partition column
(one subscriber's surveys, the reports one number received). The first query
on a partition reads all of it from the store; later queries on it are
answered here, and every committed effect on a loaded partition is applied
here (`committed`), so a loaded partition holds what the store holds.

Why that stays exact:
- Handlers never write. Effects reach the store only in commits whose callers
  hand them to `committed` once the commit is done (MoProcessor, Services),
  in commit order; a failed commit is not handed on, and the store does not
  hold it either.
- An MO that hands its serial keys on before its commit is done (gateway/mo.py)
  hands its effects over as it issues the commit instead (`issued`): the next
  holder of its keys must read them. Until the commit settles they stay in
  flight: a partition read from the store meanwhile gets them on top of what
  the store holds, and if the commit fails (`settled`) the partitions they
  touched are forgotten (read again next time). Whoever decided on them
  names that commit in its own (`Store` `after`) and fails with it.
- A record never moves between partitions: msisdn, reporter and reported are
  fixed when it is created. A Delete reaches the partition holding its record
  through its key (a Dialogue's msisdn) or the record it carries (a
  PendingOrder's: its key is its id); one with neither forgets every
  partition of that type.
- A partition loaded while an effect on it is in flight gets that effect when
  it commits (Put is an upsert, Delete a removal: applying one the load
  already saw changes nothing). One that sees an effect while its load is
  still running is not kept (answered once, read again next time).

Queries without an equality on a partition column go to the store. Rows are
kept as the store keeps them (to_row) and become fresh records on every read,
so a handler changing a record it read changes nothing here. Rows keep the
store's insertion order (a Put moves its row to the end, as INSERT OR REPLACE
gives it a new rowid) and come out in the order of the index SQLite reads the
partition by, so order_by ties come out as they do from SQLite. Without
order_by the order is the store's business (callers must not rely on it).
Beyond `max_partitions`, or `max_rows` rows in all, the least recently used
are forgotten (read again on next use): records are kept for ever (a
subscriber's cancelled subscriptions, rated surveys, the reports a number
received), so the partitions of subscribers who stay busy grow, and a soak of
5,000 subscribers grew the cache ~3.5 MB a minute with the partition count
far below its limit.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar

from .base import Store
from .effects import Delete, Effect, Put
from .records import Block, Dialogue, JobRun, PendingOrder, SpamReport, Subscriber, Subscription, Survey
from .rows import columns, from_row, table_of, to_row

R = TypeVar("R")

# record type -> {partition column: the columns after it in the index SQLite reads that partition by}.
# A query naming a partition column is answered here. Rows come out in that index's order (then
# insertion order, as SQLite's rowid), which is the order SQLite returns them in without ORDER BY,
# and the order of ties with it (its sorter is stable over the rows as the index gives them).
PARTITIONS: dict[type, dict[str, tuple[str, ...]]] = {
    Subscriber: {"msisdn": ()},  # primary key
    Subscription: {"msisdn": ("status",)},  # subscriptions_by_msisdn
    PendingOrder: {"msisdn": ("status",)},  # pending_orders_by_msisdn
    Dialogue: {"msisdn": ("kind",)},  # primary key (msisdn, kind)
    Survey: {"msisdn": ("status",)},  # surveys_by_msisdn
    SpamReport: {"reporter": ("created_at",), "reported": ("created_at",)},  # spam_reports_by_reporter / _by_reported
    Block: {"reported": ("reporter",)},  # blocks_by_reported
    JobRun: {"job": ("period",)},  # primary key (job, period): a run per month, read at every confirmation
}

# Partitions with no bound on their size: the reports a number received, and the blocks on it (one per reporter):
# a spammer's number may have hundreds of thousands. They are read in a thread (Store.scan), their rows built there
# too: read on the loop, one report about such a number held every bind for 0.2-1.5 s (and at every report once
# such a partition no longer fits in max_rows).
_UNBOUNDED = {("SpamReport", "reported"), ("Block", "reported")}
BIG = 2000  # rows of such a partition read on the loop (a few ms); one with more is read whole in a thread

# (record type's name, partition column, its value): strings only, so the collector stops tracking a key at
# its first collection (partitions are kept for as long as the gateway runs; a key holding the type stayed
# tracked, and every generation-1 collection scanned it again).
_Key = tuple[str, str, str]
_Rows = dict[Any, tuple]  # primary key (_Layout.primary_key) -> row, in the store's insertion order
MAX_ROWS = 250_000  # rows held in all (~0.7 KB each with their partitions, as a soak measured: ~170 MB)
NARROW_FROM = 64  # rows in a partition from which a query is answered from its rows by value (_Narrowed)


class _Narrowed(dict):
    """A large partition (_Rows) that also keeps its rows by the value of one column.

    A query with an equality on the column after the partition's in its index reads only the rows holding
    that value (`holding`): a number reported by thousands holds a block per reporter, and each new report
    asks for its reporter's. Small partitions stay plain dicts (scanning them costs less than keeping this
    in step). The rows by value are built at the first such query and then kept in step: every change to
    a partition is a `pop` and then a store at the end (a Put: a new rowid), so each value's rows stay in
    the partition's order. Any other store drops them (built again when asked).
    """

    __slots__ = ("by_value", "column")

    def __init__(self, rows: _Rows) -> None:
        super().__init__(rows)
        self.column = -1  # the row index `by_value` is keyed by (-1: not built)
        self.by_value: dict[Any, dict[Any, tuple]] = {}

    def holding(self, column: int, value: str) -> Iterable[tuple]:
        """The rows whose `column` equals `value`, in the partition's order."""
        if self.column != column:
            self.column, self.by_value = column, {}
            for pk, row in self.items():
                self.by_value.setdefault(row[column], {})[pk] = row
        rows = self.by_value.get(value)
        return rows.values() if rows else ()

    def __setitem__(self, pk: Any, row: tuple) -> None:
        if self.column >= 0:
            if pk in self:  # stays where it is in the partition: its place among equal values is not simply last
                self.column = -1
            else:
                self.by_value.setdefault(row[self.column], {})[pk] = row
        super().__setitem__(pk, row)

    def pop(self, pk: Any, *default: Any) -> Any:
        if pk not in self:
            return super().pop(pk, *default)  # the default, or KeyError as a dict gives
        row = super().pop(pk)
        if self.column >= 0:
            same = self.by_value.get(row[self.column])
            if same is not None:
                same.pop(pk, None)
                if not same:
                    del self.by_value[row[self.column]]
        return row



class _Layout:
    """Where a type's columns sit in its rows."""

    def __init__(self, record_type: type) -> None:
        names = [name for name, _ in columns(record_type)]
        self.index = {name: i for i, name in enumerate(names)}
        _, key = table_of(record_type)
        self.key = tuple(self.index[k] for k in key)
        self.key_names = key
        # partition column -> sort key giving the order of the index SQLite reads it by (None: one row at most)
        self.scan = {
            column: itemgetter(*(self.index[name] for name in after)) if after else None
            for column, after in PARTITIONS[record_type].items()
        }
        # partition column -> the column after it in that index (an equality on it narrows the rows: _Narrowed.holding)
        self.next_column = {column: after[0] for column, after in PARTITIONS[record_type].items() if after}
        # row -> its key in its partition: the value of a one-column primary key itself, not a 1-tuple (one tuple
        # less per record for the collector to scan: most records have an id), else the tuple of the values.
        self.primary_key: Callable[[tuple], Any] = itemgetter(*self.key)

    def key_of(self, values: tuple) -> Any:
        """The key `primary_key` gives the row whose primary key columns hold `values`."""
        return values[0] if len(values) == 1 else values


_LAYOUTS = {record_type: _Layout(record_type) for record_type in PARTITIONS}
_TYPES = {record_type.__name__: record_type for record_type in PARTITIONS}


class RecordCache:
    """`find` as the store answers it, from memory for the partitions in use; the rest of the Store as is."""

    def __init__(
        self, store: Store, max_partitions: int = 200_000, narrow_from: int = NARROW_FROM, max_rows: int = MAX_ROWS,
    ) -> None:  # fmt: skip
        self.store = store
        self.max_partitions = max_partitions
        self.max_rows = max_rows
        self.rows_held = 0  # in the partitions kept
        self.narrow_from = narrow_from
        self._partitions: OrderedDict[_Key, _Rows] = OrderedDict()
        self._loading: dict[_Key, bool] = {}  # partition being read -> an effect on it arrived meanwhile
        # `issued` effects whose commit has not settled, in issue order, with the partitions they touch
        self._in_flight: dict[int, tuple[list[Effect], set[_Key]]] = {}
        self._issues = 0
        self.loads = self.hits = 0

    async def find(self, record_type: type[R], *, order_by: str | None = None, limit: int | None = None, **filters: Any) -> list[R]:
        column = _partition_column(record_type, filters)
        if column is None:
            return await self.store.find(record_type, order_by=order_by, limit=limit, **filters)
        key = (record_type.__name__, column, filters[column])
        rows = self._in_memory(key)
        if rows is None:
            rows = await self._load(key)
        if not rows:
            return []
        layout = _LAYOUTS[record_type]
        candidates: Iterable[tuple] = rows.values()
        narrowing = layout.next_column.get(column)
        if narrowing is not None and len(rows) >= self.narrow_from and isinstance(value := filters.get(narrowing), str):
            narrowed = rows if type(rows) is _Narrowed else self._narrowed(key, rows)
            candidates = narrowed.holding(layout.index[narrowing], value)
        selected = _select(candidates, _tests(record_type, tuple(filters), column), filters)
        scan = layout.scan[column]
        if scan is not None and len(selected) > 1:  # index order; rows with equal index values stay in insertion order
            selected.sort(key=scan)
        if order_by:
            i = layout.index[order_by.lstrip("-")]
            # SQLite puts NULL first ascending, last descending; sorted() is stable, as ties from SQLite come in rowid order.
            selected.sort(key=lambda row: (row[i] is not None, row[i]), reverse=order_by.startswith("-"))
        if limit is not None:
            selected = selected[: max(0, int(limit))]
        records = []
        for row in selected:  # (a loop: a comprehension made record_type a closure cell, read all through find)
            records.append(from_row(record_type, row))
        return records

    async def distinct(self, record_type: type, column: str, **filters: Any) -> set[Any]:
        partition = _partition_column(record_type, filters)
        if partition is None:
            return await self.store.distinct(record_type, column, **filters)
        key = (record_type.__name__, partition, filters[partition])
        rows = self._in_memory(key)
        if rows is None:
            rows = await self._load(key)
        i = _LAYOUTS[record_type].index[column]
        return {row[i] for row in _select(rows.values(), _tests(record_type, tuple(filters), partition), filters)}

    def committed(self, effects: Iterable[Effect]) -> None:
        """Effects the store has committed: apply them to the partitions in memory."""
        added = self._apply(effects, self._touch)  # (not `+=`: _apply may forget partitions, which counts them off)
        self.rows_held += added
        self._shed()

    def issued(self, effects: Iterable[Effect]) -> int:
        """Effects whose commit is issued, not yet settled: applied now. Returns the token for `settled`."""
        self._issues += 1
        effects = list(effects)
        touched: set[_Key] = set()

        def touch(key: _Key) -> _Rows | None:
            touched.add(key)
            return self._touch(key)

        added = self._apply(effects, touch)
        self.rows_held += added
        self._in_flight[self._issues] = (effects, touched)
        self._shed()
        return self._issues

    def settled(self, token: int, committed: bool) -> None:
        """The commit of `issued` effects is done; if it failed, the partitions they touched are read again."""
        effects, _touched = self._in_flight.pop(token)
        if not committed:
            self._apply(effects, self._forget)

    async def _read(self, key: _Key) -> _Rows:
        """Partition `key` as the store holds it, with the effects in flight on top (`_with_in_flight`)."""
        name, column, value = key
        if (name, column) not in _UNBOUNDED:
            return await self._read_now(key)
        record_type = _TYPES[name]
        # Most numbers are reported a few times: read on the loop, as any partition (a thread, and its connection,
        # for each cost the dialogue mix 44% more instructions, bench/inproc_dialogues.py --callgrind).
        first = await self.store.find(record_type, order_by="rowid", limit=BIG + 1, **{column: value})
        if len(first) <= BIG:
            return self._with_in_flight(key, _rows(record_type, first))
        # Those in flight as the read begins go on top too: one may commit, and leave _in_flight, before the read
        # is done, without being in what it read (the next report about a number read without the one before it).
        before = self._in_flight_on(key)
        records = await self.store.scan(record_type, order_by="rowid", **{column: value})
        return self._with_in_flight(key, await asyncio.to_thread(_rows, record_type, records), before)

    async def _read_now(self, key: _Key) -> _Rows:
        """`_read` on the loop: SqliteStore's reads do not yield, so nothing commits between the read and the
        effects in flight put on top."""
        name, column, value = key
        record_type = _TYPES[name]
        return self._with_in_flight(key, _rows(record_type, await self.store.find(record_type, order_by="rowid", **{column: value})))

    def _with_in_flight(self, key: _Key, rows: _Rows, earlier: Iterable[list[Effect]] = ()) -> _Rows:
        """Partition `key` as read from the store (`rows`, changed in place), with the effects in flight on top
        (issue order), after `earlier` ones (in flight when a read that yields began): those not committed yet, and
        any committed already (applying one again changes nothing). Only those touching `key`: a first contact reads
        several partitions while a burst of reports may have a hundred commits in flight."""
        for effects in (*earlier, *self._in_flight_on(key)):
            self._apply(effects, lambda k: rows if k == key else None)
        return rows

    def _in_flight_on(self, key: _Key) -> list[list[Effect]]:
        on_key = []
        for effects, touched in self._in_flight.values():  # (a loop: a comprehension made `key` a closure cell)
            if key in touched:
                on_key.append(effects)
        return on_key

    def _forget(self, key: _Key) -> None:
        rows = self._partitions.pop(key, None)
        if rows is not None:
            self.rows_held -= len(rows)
        self._touch(key)

    def _shed(self) -> None:
        """Forget the least recently used partitions beyond max_partitions or max_rows."""
        partitions = self._partitions
        while partitions and (len(partitions) > self.max_partitions or self.rows_held > self.max_rows):
            self.rows_held -= len(partitions.popitem(last=False)[1])

    def _apply(self, effects: Iterable[Effect], partition: Callable[[_Key], _Rows | None]) -> int:
        """Apply effects to the partitions `partition(key)` gives (None: not there); returns the rows it added
        to them (less those it removed)."""
        added = 0
        unplaced: set[tuple[str, str]] = set()
        for effect in effects:
            if type(effect) is Put:
                record = effect.record
                partitioned_by = PARTITIONS.get(type(record))
                if partitioned_by is None:
                    continue
                row = pk = None
                for column in partitioned_by:
                    rows = partition((type(record).__name__, column, getattr(record, column)))
                    if rows is not None:
                        if row is None:  # as the store wrote it, if it did (a Put keeps that: effect_sql)
                            row = effect.row if effect.row is not None else to_row(record)
                            pk = _LAYOUTS[type(record)].primary_key(row)
                        if rows.pop(pk, None) is None:  # else to the end: a new rowid
                            added += 1
                        rows[pk] = row
            elif type(effect) is Delete:
                added -= self._delete(effect, partition, unplaced)
        for name, column in unplaced:  # once for all the effects: a commit may delete hundreds
            self._forget_all(name, column)
        return added

    # ------------------------------------------------------------ helpers
    def _in_memory(self, key: _Key) -> _Rows | None:
        """Partition `key` if it is loaded (a hit: now the most recently used), else None (`_load` it). Not a coroutine
        that loads it: most finds are hits, and each would create and run one (~5 finds per dialogue MO)."""
        rows = self._partitions.get(key)
        if rows is not None:
            self.hits += 1
            self._partitions.move_to_end(key)
        return rows

    def _narrowed(self, key: _Key, rows: _Rows) -> _Narrowed:
        """`rows` as a _Narrowed, kept as partition `key` in its place if they are that partition."""
        narrowed = _Narrowed(rows)
        if self._partitions.get(key) is rows:
            self._partitions[key] = narrowed
        return narrowed

    def _touch(self, key: _Key) -> _Rows | None:
        """The loaded partition `key` (None if not loaded); a load in progress learns it is out of date."""
        if key in self._loading:
            self._loading[key] = True
        return self._partitions.get(key)

    def _delete(self, effect: Delete, partition: Callable[[_Key], _Rows | None], unplaced: set[tuple[str, str]]) -> int:
        """Returns the rows it removed from the partitions `partition` gives. The partition holding the record is
        named by its key (a Dialogue's msisdn) or by the record the Delete carries (a PendingOrder's msisdn: a
        record never moves between partitions); without either, (type, column) goes into `unplaced`, whose
        partitions `_apply` forgets once. Forgetting them at each Delete (a list of every partition loaded each
        time) held the loop 3-5 s per order prune once 26,000 subscribers had been seen, and no order stayed
        loaded."""
        partitioned_by = PARTITIONS.get(effect.record_type)
        if partitioned_by is None:
            return 0
        removed = 0
        layout = _LAYOUTS[effect.record_type]
        name = effect.record_type.__name__
        values = tuple(effect.key)
        pk = layout.key_of(values)
        for column in partitioned_by:
            if column in layout.key_names:
                value = values[layout.key_names.index(column)]
            elif effect.record is not None:
                value = getattr(effect.record, column)
            else:
                unplaced.add((name, column))
                continue
            rows = partition((name, column, value))
            if rows is not None and rows.pop(pk, None) is not None:
                removed += 1
        return removed

    def _forget_all(self, name: str, column: str) -> None:
        """Forget every partition of type `name` by `column`, loaded or being read."""
        for key in [k for k in (*self._partitions, *self._loading) if k[0] == name and k[1] == column]:
            self._forget(key)

    async def _load(self, key: _Key) -> _Rows:
        if key in self._loading:  # read concurrently by another caller: answer this one from the store
            return await self._read(key)
        self._loading[key] = False
        try:
            rows = await self._read(key)
        finally:
            stale = self._loading.pop(key)
        if stale and (key[0], key[1]) in _UNBOUNDED:
            # Changed while the thread read it: a commit that settled meanwhile may be neither in what was read nor
            # in flight any more. Read again as of now, on the loop (rare: one number's reports are serialised).
            rows = await self._read_now(key)
        self.loads += 1
        if not stale:
            self._partitions[key] = rows
            self.rows_held += len(rows)
            self._shed()
        return rows


def _the_stores(name: str) -> property:
    """Store member `name` as the store has it at the time: a method bound to it, or an attribute (can_commit)."""
    return property(lambda cache: getattr(cache.store, name), doc=f"The store's own Store.{name}.")


# The rest of the Store interface goes to the store: each member of the Store protocol the cache does not answer itself.
# Named one by one, not by a __getattr__: a class with one gets no specialised attribute reads (every `self.x` of the
# cache went through the slower generic lookup: 3.5% of a dialogue MO's instructions, bench/inproc_dialogues.py).
for _name in sorted({*Store.__annotations__, *(name for name, value in vars(Store).items() if callable(value))}):
    if not _name.startswith("_") and _name not in vars(RecordCache):
        setattr(RecordCache, _name, _the_stores(_name))


def _rows(record_type: type, records: Iterable[Any]) -> _Rows:
    primary_key = _LAYOUTS[record_type].primary_key
    rows = {}
    for row in map(to_row, records):  # (a loop: a comprehension made `layout` a closure cell)
        rows[primary_key(row)] = row
    return rows


def _partition_column(record_type: type, filters: dict[str, Any]) -> str | None:
    for column in PARTITIONS.get(record_type, ()):
        if isinstance(filters.get(column), str):
            return column
    return None


@lru_cache(maxsize=256)
def _tests(record_type: type, specs: tuple[str, ...], partition: str) -> tuple[tuple[int, Callable[[Any, Any], bool], str], ...]:
    """(column index, test, filter name) for each filter but the partition's own, once per query shape."""
    index = _LAYOUTS[record_type].index
    tests = []
    for spec in specs:
        if spec == partition:
            continue
        name, _, op = spec.partition("__")
        if name not in index:
            raise ValueError(f"{record_type.__name__} has no field {name!r}")
        if op not in _TESTS:
            raise ValueError(f"unknown filter {spec!r}")
        tests.append((index[name], _TESTS[op], spec))
    return tuple(tests)


def _select(rows: Iterable[tuple], tests: tuple[tuple[int, Callable[[Any, Any], bool], str], ...], filters: dict[str, Any]) -> list[tuple]:
    """The rows matching `filters` as SQLite's WHERE would (NULL matches only `name=None`)."""
    if not tests:  # the partition's own filter alone: every row
        return list(rows)
    # A plain loop: a comprehension reading `filters` made it a closure cell, and the call cost twice as much.
    checks = []
    for i, test, spec in tests:
        checks.append((i, test, filters[spec]))
    selected = []
    for row in rows:
        for i, test, value in checks:
            if not test(row[i], value):
                break
        else:
            selected.append(row)
    return selected


def _eq(v: Any, value: Any) -> bool:
    return v == value if value is not None else v is None


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "": _eq,
    "in": lambda v, values: v is not None and v in values,
    # a comparison with NULL is never true in SQL
    "gte": lambda v, value: v is not None and value is not None and v >= value,
    "gt": lambda v, value: v is not None and value is not None and v > value,
    "lte": lambda v, value: v is not None and value is not None and v <= value,
    "lt": lambda v, value: v is not None and value is not None and v < value,
    "ne": lambda v, value: v is not None and value is not None and v != value,
}
