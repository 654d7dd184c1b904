"""Service records <-> table rows, and the SQL for effects and simple queries.

Kept apart from the SQLite writer so a PostgreSQL store can reuse the
mapping (its placeholders differ: see `placeholder`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import cache, lru_cache
from operator import attrgetter
from typing import Any

from .effects import Delete, Effect, Put
from .records import TABLES

_OPERATORS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "ne": "!="}


@cache
def columns(record_type: type) -> tuple[tuple[str, str], ...]:
    """(name, annotation) of each field, in table order."""
    return tuple((f.name, str(f.type)) for f in fields(record_type))


def table_of(record_type: type) -> tuple[str, tuple[str, ...]]:
    try:
        return TABLES[record_type]
    except KeyError:
        raise TypeError(f"{record_type.__name__} is not a stored record") from None


def to_row(record: Any) -> tuple:
    return _row_writer(type(record))(record)


def from_row(record_type: type, row: Sequence[Any]) -> Any:
    return _row_reader(record_type)(row)


@cache
def _row_writer(record_type: type) -> Callable[[Any], tuple]:
    """record -> row for this type; plain attribute reads, then only the columns that need it converted (dict, bool)."""
    cols = columns(record_type)
    getter = attrgetter(*(name for name, _ in cols))
    converted = [(i, _TO_COLUMN[annotation]) for i, (_, annotation) in enumerate(cols) if annotation in _TO_COLUMN]
    if len(cols) == 1:
        single = getter
        getter = lambda r: (single(r),)  # noqa: E731
    if not converted:
        return getter

    def write(record: Any) -> tuple:
        row = list(getter(record))
        for i, convert in converted:
            row[i] = convert(row[i])
        return tuple(row)

    return write


@cache
def _row_reader(record_type: type) -> Callable[[Sequence[Any]], Any]:
    """row -> record for this type; positional construction, converting only the columns that need it."""
    cols = columns(record_type)
    converted = [(i, _FROM_COLUMN[annotation]) for i, (_, annotation) in enumerate(cols) if annotation in _FROM_COLUMN]
    if not converted:
        return lambda row: record_type(*row)

    def read(row: Sequence[Any]) -> Any:
        values = list(row)
        for i, convert in converted:
            values[i] = convert(values[i])
        return record_type(*values)

    return read


# Columns stored in another form than the field's: dict as JSON text, bool as 0/1. The text is json.dumps's with
# these options, from one encoder: json.dumps with any option makes a JSONEncoder per call, its cost most of a dump.
_TO_COLUMN: dict[str, Callable[[Any], Any]] = {
    "dict": json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode,
    "bool": int,
}
_FROM_COLUMN: dict[str, Callable[[Any], Any]] = {"dict": json.loads, "bool": bool}


def effect_sql(effect: Effect, placeholder: str = "?") -> tuple[str, tuple, tuple[str, ...]]:
    """(sql, parameters, tokens) for one effect; tokens name the row it touches (issue order). A Put keeps the row
    written (`Put.row`, for the record cache)."""
    if isinstance(effect, Put):
        sql, table, key_of = _put_sql(type(effect.record), placeholder)
        effect.row = row = to_row(effect.record)
        return sql, row, (f"{table}:{key_of(effect.record)!r}",)
    if isinstance(effect, Delete):
        sql, table = _delete_sql(effect.record_type, placeholder)
        return sql, tuple(effect.key), (f"{table}:{tuple(effect.key)!r}",)
    raise TypeError(f"unknown effect {effect!r}")


@cache
def _delete_sql(record_type: type, placeholder: str) -> tuple[str, str]:
    """(DELETE text, table) for a type: built once, as _put_sql."""
    table, key = table_of(record_type)
    return f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = {placeholder}' for k in key)}", table


@cache
def _put_sql(record_type: type, placeholder: str) -> tuple[str, str, Callable[[Any], tuple]]:
    """(INSERT OR REPLACE text, table, record -> its key values) for a type: built once, a Put is per effect."""
    table, key = table_of(record_type)
    names = [name for name, _ in columns(record_type)]
    sql = f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) VALUES ({', '.join([placeholder] * len(names))})"
    getter = attrgetter(*key)
    return sql, table, (lambda record: (getter(record),)) if len(key) == 1 else getter


def select_sql(
    record_type: type,
    filters: dict[str, Any],
    order_by: str | None,
    limit: int | None,
    placeholder: str = "?",
    distinct: str | None = None,
) -> tuple[str, list[Any]]:
    """SELECT for `find` (or, with `distinct`, for `distinct`): equality filters, `name__gte/gt/lte/lt/ne=value`,
    `name__in=[...]`.

    The SQL text depends only on the query's shape (filter names, list lengths, NULLs), so it is
    built once per shape and reused: handlers run the same few queries for every MO.
    """
    shape: list[tuple[str, Any]] = []
    params: list[Any] = []
    for spec, value in filters.items():  # (one loop for both: a generator for the shape cost as much again)
        if spec.endswith("__in"):
            shape.append((spec, len(value)))
            params.extend(value)
        else:
            shape.append((spec, value is None))
            if value is not None or "__" in spec:
                params.append(value)
    return _select_text(record_type, tuple(shape), order_by, limit, placeholder, distinct), params


@lru_cache(maxsize=1024)
def _select_text(
    record_type: type,
    shape: tuple[tuple[str, Any], ...],
    order_by: str | None,
    limit: int | None,
    placeholder: str,
    distinct: str | None,
) -> str:
    table, _ = table_of(record_type)
    known = {name for name, _ in columns(record_type)}
    names = [name for name, _ in columns(record_type)]
    where: list[str] = []
    for spec, detail in shape:
        name, _, op = spec.partition("__")
        if name not in known:
            raise ValueError(f"{record_type.__name__} has no field {name!r}")
        if op == "in":
            where.append(f"{name} IN ({', '.join([placeholder] * detail)})" if detail else "0")
        elif op == "" and detail is True:
            where.append(f"{name} IS NULL")
        elif op == "":
            where.append(f"{name} = {placeholder}")
        elif op in _OPERATORS:
            where.append(f"{name} {_OPERATORS[op]} {placeholder}")
        else:
            raise ValueError(f"unknown filter {spec!r}")
    if distinct is not None and distinct not in known:
        raise ValueError(f"{record_type.__name__} has no field {distinct!r}")
    sql = f"SELECT DISTINCT {distinct} FROM {table}" if distinct else f"SELECT {', '.join(names)} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if order_by:
        column = order_by.lstrip("-")
        if column not in known and column != "rowid":  # rowid: insertion order (the cache loads partitions so)
            raise ValueError(f"{record_type.__name__} has no field {column!r}")
        sql += f" ORDER BY {column}{' DESC' if order_by.startswith('-') else ''}"
    if limit is not None:
        sql += f" LIMIT {int(limit):d}"
    return sql
