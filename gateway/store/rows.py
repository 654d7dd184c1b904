"""Service records <-> table rows, and the SQL for effects and simple queries.

Kept apart from the SQLite writer so a PostgreSQL store can reuse the
mapping (its placeholders differ: see `placeholder`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from functools import cache
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
    return tuple(_to_column(getattr(record, name), annotation) for name, annotation in columns(type(record)))


def from_row(record_type: type, row: Sequence[Any]) -> Any:
    values = {name: _from_column(value, annotation) for (name, annotation), value in zip(columns(record_type), row)}
    return record_type(**values)


def _to_column(value: Any, annotation: str) -> Any:
    if annotation == "dict":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if annotation == "bool":
        return int(value)
    return value


def _from_column(value: Any, annotation: str) -> Any:
    if annotation == "dict":
        return json.loads(value)
    if annotation == "bool":
        return bool(value)
    return value


def effect_sql(effect: Effect, placeholder: str = "?") -> tuple[str, tuple, tuple[str, ...]]:
    """(sql, parameters, tokens) for one effect; tokens name the row it touches (issue order)."""
    if isinstance(effect, Put):
        record_type = type(effect.record)
        table, key = table_of(record_type)
        names = [name for name, _ in columns(record_type)]
        sql = f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) VALUES ({', '.join([placeholder] * len(names))})"
        key_values = tuple(getattr(effect.record, k) for k in key)
        return sql, to_row(effect.record), (f"{table}:{key_values!r}",)
    if isinstance(effect, Delete):
        table, key = table_of(effect.record_type)
        sql = f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = {placeholder}' for k in key)}"
        return sql, tuple(effect.key), (f"{table}:{tuple(effect.key)!r}",)
    raise TypeError(f"unknown effect {effect!r}")


def select_sql(
    record_type: type, filters: dict[str, Any], order_by: str | None, limit: int | None, placeholder: str = "?"
) -> tuple[str, list[Any]]:
    """SELECT for `find`: equality filters, `name__gte/gt/lte/lt/ne=value`, `name__in=[...]`."""
    table, _ = table_of(record_type)
    known = {name for name, _ in columns(record_type)}
    names = [name for name, _ in columns(record_type)]
    where: list[str] = []
    params: list[Any] = []
    for spec, value in filters.items():
        name, _, op = spec.partition("__")
        if name not in known:
            raise ValueError(f"{record_type.__name__} has no field {name!r}")
        if op == "in":
            values = list(value)
            if not values:
                where.append("0")
                continue
            where.append(f"{name} IN ({', '.join([placeholder] * len(values))})")
            params.extend(values)
        elif op == "" and value is None:
            where.append(f"{name} IS NULL")
        elif op == "":
            where.append(f"{name} = {placeholder}")
            params.append(value)
        elif op in _OPERATORS:
            where.append(f"{name} {_OPERATORS[op]} {placeholder}")
            params.append(value)
        else:
            raise ValueError(f"unknown filter {spec!r}")
    sql = f"SELECT {', '.join(names)} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if order_by:
        descending = order_by.startswith("-")
        column = order_by.lstrip("-")
        if column not in known:
            raise ValueError(f"{record_type.__name__} has no field {column!r}")
        sql += f" ORDER BY {column}{' DESC' if descending else ''}"
    if limit is not None:
        sql += f" LIMIT {int(limit):d}"
    return sql, params
