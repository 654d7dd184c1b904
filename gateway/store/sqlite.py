"""SQLite implementation of the Store: one batching writer, one reader.

Writes: every write method builds an `_Op` (the SQL rows it needs plus the
future handed to the caller, or the caller's callback) and queues it. A single
writer task takes everything queued (up to batch_max ops), has the writer
process (writer.py) run it in ONE transaction and commit, then resolves the
futures (and runs the callbacks). One commit per row caps near 4.7k rows/s on
our hardware; batching is what gets us tens of thousands. Batches start at
least `commit_spacing` apart: a write arriving after a quiet spell goes at
once, one arriving hard on the last batch's heels waits out the rest of the
spacing for company (see SqliteStore.__init__). A batch's rows are
grouped into as few `executemany` runs as issue order allows (see
`writer_child.plan`, which runs in the writer process).

Duplicates: a client that retransmits a message (same dedup_key, see
gateway/messages.py) within the dedup window gets the first one's id and
nothing is stored again. While the first one is uncommitted, the copy waits
for its commit (`_uncommitted`); once it is committed, the UNIQUE index on
dedup_key is what recognises a copy: its INSERT skips the row
(writer_child.SKIP_DUPLICATE_KEY) and the holder's id is read back. So the
memory kept per key is only for writes in flight, whatever the window and
the rate (a map of every key in the window grew by ~360 bytes per message:
gigabytes per hour at load-test rates).

Reads use a second, plain sqlite3 connection on the event loop thread (an
indexed lookup costs less there than a hop to another thread): WAL lets it
read committed data while the writer holds its transaction open.

Durability: we promise an acknowledged write survives `kill -9` of this
process, not a power cut. In WAL mode COMMIT appends the transaction to the
-wal file with write(2) before returning; from then on the data sits in the
kernel's page cache, which outlives the process, and the next opener replays
the WAL. That is why synchronous=NORMAL is enough: FULL would add an fsync per
commit, which only matters if the OS itself dies (then NORMAL may lose the
last few commits, but never corrupts the file).
`test_acknowledged_writes_survive_process_kill` checks the promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, Union

from ..ids import ID_DIGITS, is_short_id, later_short_id, short_ids_after
from ..logs import get_logger
from ..smpp.constants import EsmClass
from .base import StoreOpenError, WriteSkipped
from .effects import Effect
from .lock import CompanionsSetAside, DatabaseInUse, DatabaseLock
from .migrations import SchemaVersionError
from .records import (
    ACKNOWLEDGEMENT,
    FINAL_STATUSES,
    Direction,
    Message,
    MessageStatus,
    UnreadableMo,
    acknowledgement_kind,
    acknowledging,
    submission_of,
)
from .rows import effect_sql, from_row, select_sql
from .writer import WriterCannotStart, WriterDied, WriterProcess
from .writer_child import PROBE, READ_ONLY, SKIP_DUPLICATE_KEY, Step, connect

R = TypeVar("R")
log = get_logger("store")


class DatabaseGone(sqlite3.OperationalError):
    """The database's path does not name the file the store opened: what it commits would be lost, or go into another
    file, and no connection may open the path. A file moved back ends it; one deleted or replaced, only a restart."""


@dataclass(slots=True)
class StoreStats:
    batches: int = 0  # transactions attempted by the writer
    ops: int = 0  # write calls they carried
    executes: int = 0  # statements the writer process ran (executemany runs plus the COMMIT)
    failed_batches: int = 0


# --- rows ---------------------------------------------------------------------


# Message fields in table order; `_row()` and `_message()` follow it.
_FIELDS = (
    "id", "direction", "status", "account", "source_addr", "dest_addr", "short_message",
    "data_coding", "esm_class", "protocol_id", "priority_flag", "registered_delivery", "service_type",
    "source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi", "tlvs",
    "submitted_at", "expires_at", "attempts", "next_attempt_at", "done_at", "error",
    "origin_id", "dedup_key", "extra", "short_id",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_FIELDS)} FROM messages"
# Undelivered MTs, through the partial indexes of migration 3 (INDEXED BY: the
# planner, without statistics, prefers messages_by_state and sorts).
_ENROUTE_MT = f"status = '{MessageStatus.ENROUTE.value}' AND direction = '{Direction.MT.value}'"
_WAITING = (
    f"SELECT seq, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_waiting WHERE {_ENROUTE_MT}"
    " AND json_extract(extra, '$.to_account') IS ? AND (dest_addr, seq) > (?, ?) AND dest_addr < ?"
    " ORDER BY dest_addr, seq LIMIT ?"
)
_EXPIRED = (
    f"SELECT seq, expires_at, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_enroute_expiry"
    f" WHERE {_ENROUTE_MT} AND expires_at <= ? AND (expires_at, seq) > (?, ?) ORDER BY expires_at, seq LIMIT ?"
)
_DEST_AT = 1 + _FIELDS.index("dest_addr")  # in a _WAITING row, after seq
_STATUS_AT, _DEST_ADDR_AT = _FIELDS.index("status"), _FIELDS.index("dest_addr")  # in a message's fields
_ENROUTE_VALUE = MessageStatus.ENROUTE.value
_DELETED_VALUE = MessageStatus.DELETED.value
_SYSTEM_ERROR = 0x08  # ESME_RSYSERR: the err an MT given up for its row (_mt_or_given_up) is stored with
_SCHEDULED = f"status = '{MessageStatus.SCHEDULED.value}'"
# cancel_sm by addresses: the MTs one sender sent a subscriber, or a subscriber's acknowledgements to an SP's service
# code (addressed to the SP account ?4: the index's first column; NULL for any other)
_UNDELIVERED_FROM = (
    f"SELECT seq, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_waiting WHERE {_ENROUTE_MT}"
    " AND json_extract(extra, '$.to_account') IS ?4 AND dest_addr = ?1 AND account = ?2 AND source_addr = ?3"
    f" UNION ALL SELECT seq, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_scheduled_to WHERE {_SCHEDULED}"
    " AND dest_addr = ?1 AND account = ?2 AND source_addr = ?3 ORDER BY seq"
)
# An SP's content to a subscriber from one of its codes asking for an acknowledgement of one kind that none of that
# kind answers yet (`acknowledged`: `_ACKNOWLEDGED`; one its handset cancelled answers nothing), in the order of that
# kind's index (migration 17), so the first row read is the answer: delivered since ?4, the one delivered first; else
# waiting, the one sent first (sorted: as many as wait for the subscriber, max_queued_per_subscriber). Content
# answered, or ended otherwise, is in no range read (16's query read all content delivered within the day, answered
# or not: with 20,000, 15 ms an acknowledgement, on the loop).
_ASKING = (
    "SELECT id FROM messages {indexed_by} WHERE dest_addr = ?1 AND source_addr = ?2 AND direction = 'mt'"
    " AND (registered_delivery & {bit}) != 0 AND (acknowledged & {bit}) = 0 AND {range} AND account = ?3"
)
_DELIVERED_CONTENT = f"status = '{MessageStatus.DELIVERED.value}' AND done_at >= ?4 ORDER BY done_at, seq"
_WAITING_CONTENT = f"status = '{MessageStatus.ENROUTE.value}' AND done_at IS NULL ORDER BY seq"


def _answerable(indexed_by: str, bit: int) -> tuple[str, str]:
    """The reads of the content an acknowledgement asked for by registered_delivery `bit` answers: delivered, waiting."""
    delivered, waiting = (_ASKING.format(indexed_by=indexed_by, bit=bit, range=read) for read in (_DELIVERED_CONTENT, _WAITING_CONTENT))
    return delivered, waiting


# By the acknowledgement's kind (its esm_class message type).
_UNACKNOWLEDGED = {
    int(EsmClass.SME_DELIVERY_ACK): _answerable("INDEXED BY messages_asking_sme_acknowledgement", 0x04),
    int(EsmClass.MANUAL_USER_ACK): _answerable("INDEXED BY messages_asking_user_acknowledgement", 0x08),
}
# An acknowledgement stored (?2, its id: none if skipped as a copy) answers the content it names by kind (?1: the
# registered_delivery bit asking for it); one cancelled (?1, its id) no longer does. In the write's transaction.
_ACKNOWLEDGED = "UPDATE messages SET acknowledged = acknowledged | ?1 WHERE id = (SELECT origin_id FROM messages WHERE id = ?2)"
_ACKNOWLEDGEMENT_CANCELLED = (
    "UPDATE messages SET acknowledged = acknowledged & ~((SELECT esm_class & 24 FROM messages WHERE id = ?1) >> 1)"
    " WHERE id = (SELECT origin_id FROM messages WHERE id = ?1 AND direction = 'mt' AND (esm_class & 24) != 0)"
)
# What a block or an unsubscription stops: to one subscriber, a few rows of the waiting index, sorted; to anyone (a
# network-wide block: rare), every enroute MT, through the partial index.
_ENROUTE_FROM_TO = (
    f"SELECT seq, expires_at, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_waiting WHERE {_ENROUTE_MT}"
    " AND json_extract(extra, '$.to_account') IS NULL AND dest_addr = ? AND source_addr = ?"
    " AND (expires_at, seq) > (?, ?) ORDER BY expires_at, seq LIMIT ?"
)
_ENROUTE_FROM = (
    f"SELECT seq, expires_at, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_enroute_expiry"
    f" WHERE {_ENROUTE_MT} AND source_addr = ? AND (expires_at, seq) > (?, ?) ORDER BY expires_at, seq LIMIT ?"
)
_DUE_SCHEDULED = (
    f"SELECT seq, next_attempt_at, {', '.join(_FIELDS)} FROM messages INDEXED BY messages_scheduled_due"
    f" WHERE {_SCHEDULED} AND next_attempt_at <= ? AND (next_attempt_at, seq) > (?, ?) ORDER BY next_attempt_at, seq LIMIT ?"
)
# Ended messages, oldest end first, by the index of migration 9 alone (seq is in it: no row is read). Keyset paged:
# a row the prune keeps (`_PRUNE`) is not read again by the same pass.
_ENDED = (
    "SELECT done_at, seq FROM messages INDEXED BY messages_ended WHERE done_at IS NOT NULL AND done_at <= ?"
    " AND (done_at, seq) > (?, ?) ORDER BY done_at, seq LIMIT ?"
)
def _with_cursors(rows: list[tuple]) -> list[tuple[tuple[float, int], Message]]:
    """Rows of a read paged by (a time, seq), read as `seq, the time, the message's fields`: each message with its
    cursor, the last one's asking for the next page."""
    return [((row[1], row[0]), _message(row[2:])) for row in rows]


def _with_addresses(rows: list[tuple]) -> list[tuple[tuple[str, int], Message]]:
    """Rows of a read paged by (dest_addr, seq) (`_WAITING`), read as `seq, the message's fields`: as `_with_cursors`."""
    return [((row[_DEST_AT], row[0]), _message(row[1:])) for row in rows]


@dataclass(frozen=True, slots=True)
class _Paging:
    """How a paged read of MTs is laid out: its rows as a page (`_with_cursors`), and, for the rows one at a time (a
    page some row of which does not read back), where a row's message fields start and its cursor."""

    page: Callable[[list[tuple]], list[tuple[Any, Message]]]
    fields_at: int
    cursor: Callable[[tuple], Any]


_TIMED = _Paging(_with_cursors, 2, lambda row: (row[1], row[0]))
_ADDRESSED = _Paging(_with_addresses, 1, lambda row: (row[_DEST_AT], row[0]))


_WAITING_COUNTS = (
    f"SELECT account, source_addr, dest_addr, count(*) FROM messages WHERE {_ENROUTE_MT} GROUP BY account, source_addr, dest_addr"
)
# Undelivered MTs addressed to an account (receipts, SP notices), by that account and an SP notice's service code
# (NULL: a receipt), through the index of SqliteStore.waiting_mts: what waits for accounts no longer configured.
_ADDRESSED_COUNTS = (
    "SELECT json_extract(extra, '$.to_account'), CASE WHEN esm_class & ? THEN NULL ELSE dest_addr END, count(*)"
    f" FROM messages INDEXED BY messages_waiting WHERE {_ENROUTE_MT} AND json_extract(extra, '$.to_account') IS NOT NULL"
    " GROUP BY 1, 2"
)
# Undelivered SME acknowledgements to SPs' service codes (messages.acknowledging_subscriber), by their subscriber.
_ACKNOWLEDGEMENT_COUNTS = (
    "SELECT source_addr, count(*) FROM messages INDEXED BY messages_waiting"
    f" WHERE {_ENROUTE_MT} AND json_extract(extra, '$.to_account') IS NOT NULL AND esm_class & ? GROUP BY source_addr"
)
_READDRESS_NOTICES = (
    "UPDATE messages INDEXED BY messages_waiting SET extra = json_set(extra, '$.to_account', ?)"
    f" WHERE {_ENROUTE_MT} AND json_extract(extra, '$.to_account') = ? AND dest_addr = ? AND NOT esm_class & ?"
)
_DELIVERY_RECEIPT = int(EsmClass.DELIVERY_RECEIPT)
_INSERT = (
    f"INSERT INTO messages ({', '.join(_FIELDS)}, accepted_at) "
    f"VALUES ({', '.join('?' * (len(_FIELDS) + 1))})"
)


# Enum .value is a Python-level property (3.11); _row runs for every stored message.
_DB_VALUE: dict[Direction | MessageStatus, str] = {member: member.value for member in (*Direction, *MessageStatus)}
_PROCESSED_STATUS = MessageStatus.PROCESSED  # per MO handled at once (EnumType.__getattr__ reads the class's members)


# json.dumps(extra, separators=(",", ":")) from one encoder (json.dumps with an option makes one per call).
_EXTRA_JSON = json.JSONEncoder(separators=(",", ":")).encode


def _row(m: Message, accepted_at: float) -> tuple:
    # Spelled out rather than getattr-looped: this runs once per stored row.
    return (
        m.id, _DB_VALUE[m.direction], _DB_VALUE[m.status], m.account, m.source_addr, m.dest_addr,
        m.short_message, m.data_coding, m.esm_class, m.protocol_id, m.priority_flag, m.registered_delivery, m.service_type,
        m.source_addr_ton, m.source_addr_npi, m.dest_addr_ton, m.dest_addr_npi, m.tlvs,
        m.submitted_at, m.expires_at, m.attempts, m.next_attempt_at, m.done_at, m.error,
        m.origin_id, m.dedup_key, _EXTRA_JSON(m.extra) if m.extra else "{}", m.short_id,
        accepted_at,
    )  # fmt: skip


def _insert_step(m: Message, accepted_at: float) -> Step:
    if m.dedup_key is None:
        return _INSERT, _row(m, accepted_at), (m.id,)
    return _INSERT_KEYED, _row(m, accepted_at), (m.id, m.dedup_key)  # a copy of a stored message is skipped


# What routing, the sweep and the count of a subscriber's queue read of a message before any deliver_sm is made of it
# (Router, Delivery), with the type each must have. Damaged outside the gateway into another (SQLite keeps text in a
# REAL column, bytes in a TEXT one), the row failed there, not where a deliver_sm is made (Server._send_deliver):
# a bind's backlog read stopped at it, the sweep failed at every turn, and it never ended.
_ROUTED = {"account": str, "source_addr": str, "dest_addr": str, "expires_at": float, "attempts": int, "error": int}
_ROUTED_TYPES = tuple(_ROUTED.values())


def _message(row: Sequence[Any]) -> Message:
    values = dict(zip(_FIELDS, row))
    if (
        values["account"].__class__, values["source_addr"].__class__, values["dest_addr"].__class__,
        values["expires_at"].__class__, values["attempts"].__class__, values["error"].__class__,
    ) != _ROUTED_TYPES:  # (~100 ns)
        raise TypeError(_mistyped(values))
    values["direction"] = Direction(values["direction"])
    values["status"] = MessageStatus(values["status"])
    extra = values["extra"] = json.loads(values["extra"])
    if extra.__class__ is not dict:  # JSON, but no object (`"x"`, `[1]`: damage SQLite's JSON index lets in); ~40 ns
        raise TypeError(f"extra is a JSON {type(extra).__name__}, not an object")
    return Message(**values)


def _acknowledging(row: Sequence[Any]) -> Any:
    """The source_addr of a row that does not read back if _ACKNOWLEDGEMENT_COUNTS counts it (an SME acknowledgement
    to an SP, for its subscriber): what Delivery counted it as at start; None for any other row."""
    values = dict(zip(_FIELDS, row))
    esm_class, extra = values["esm_class"], values["extra"]
    if not (esm_class.__class__ is int and acknowledgement_kind(esm_class) and extra.__class__ is str):  # (JSON: read only then)
        return None
    with contextlib.suppress(ValueError):
        extra = json.loads(extra)
        if extra.__class__ is dict:
            return acknowledging(esm_class, extra.get("to_account"), values["source_addr"])
    return None


def _mistyped(values: dict[str, Any]) -> str:
    """What of a message's `_ROUTED` fields has the wrong type."""
    return ", ".join(f"{name} is {type(values[name]).__name__}, not {kind.__name__}" for name, kind in _ROUTED.items()
                     if values[name].__class__ is not kind)  # fmt: skip


def _about_row(row: Sequence[Any]) -> dict[str, str]:
    """What a line about a stored message that does not read back names it by (`msisdn`: its subscriber's number,
    the destination of an MT, the source of an MO)."""
    values = dict(zip(_FIELDS, row))
    subscriber = values["source_addr"] if values["direction"] == Direction.MO.value else values["dest_addr"]
    return {"message_id": str(values["id"]), "account": str(values["account"]), "msisdn": str(subscriber)}


def _readable(rows: list[tuple]) -> list[Message]:
    """Rows of messages (whole: the fields alone) as Messages, but for any that does not read back (damaged outside
    the gateway: logged, `_unreadable`), read one at a time only then."""
    try:
        return [_message(row) for row in rows]
    except Exception:  # noqa: BLE001  (whatever a damaged value raises: _unreadable names it)
        return _each_readable(rows)


def _each_readable(rows: list[tuple]) -> list[Message]:
    """`_readable`, one row at a time."""
    readable = []
    for row in rows:
        try:
            readable.append(_message(row))
        except Exception as error:  # noqa: BLE001
            _unreadable(row, error)
    return readable


def _unreadable(row: Sequence[Any], error: Exception) -> None:
    """Log that a stored message's row does not read back (damaged outside the gateway), and why."""
    log.error("stored message unreadable", **_about_row(row), reason=f"{type(error).__name__}: {error}")


def _message_or_unreadable(row: Sequence[Any]) -> Message | UnreadableMo:
    """An MO's row as a Message, or, damaged so that it does not read as one, what of it can be read and why not (one
    row so kept every start from reading the others: the gateway did not start)."""
    try:
        return _message(row)
    except Exception as error:  # noqa: BLE001  (whatever a damaged value raises: it is named in `reason`)
        values = dict(zip(_FIELDS, row))
        about = {key: str(values[key]) for key in ("id", "account", "source_addr", "dest_addr")}
        return UnreadableMo(**about, reason=f"{type(error).__name__}: {error}")


# --- write statements -----------------------------------------------------------

_INSERT_KEYED = _INSERT + SKIP_DUPLICATE_KEY  # a message with a dedup_key: a copy of a stored one is skipped
_KEY_HOLDER = "SELECT id FROM messages WHERE dedup_key = ?"
_RECENT_KEY_HOLDER = "SELECT 1 FROM messages WHERE dedup_key = ? AND accepted_at > ?"  # (older keys are released)

_PROCESSED = f"UPDATE messages SET status = '{MessageStatus.PROCESSED.value}', done_at = ? WHERE id = ?"
_GIVEN_UP = f"UPDATE messages SET status = '{MessageStatus.FAILED.value}', done_at = ?, error = ? WHERE id = ?"
# error = 0: an attempt refused before this one left its status there (mark_retry), and the MT's receipt says err:000.
_DELIVERED = f"UPDATE messages SET status = '{MessageStatus.DELIVERED.value}', done_at = ?, error = 0 WHERE id = ?"
_RETRY = "UPDATE messages SET attempts = ?, next_attempt_at = ?, error = ? WHERE id = ?"
_REPLACE = (
    "UPDATE messages SET short_message = ?, registered_delivery = ?, expires_at = ?, next_attempt_at = ?, status = ?"
    " WHERE id = ?"
)
# The largest id MessageIds made of each table that holds them (last_id_made): 19 hex digits (then a submit_multi
# destination's "/n"), read down from the end of the id index below "g"; ids of other shapes ("sub-1", "SUB-1", a
# UUID an import wrote) are passed over, not taken for the last.
_MADE_BY_MESSAGE_IDS = "[0-9a-f]" * ID_DIGITS + "*"
_LAST_ID_MADE = "SELECT max(last) FROM (" + " UNION ALL ".join(
    f"SELECT * FROM (SELECT id AS last FROM {table} WHERE id < 'g' AND id GLOB '{_MADE_BY_MESSAGE_IDS}' "
    "ORDER BY id DESC LIMIT 1)"
    for table in ("messages", "subscriptions", "subscription_events", "pending_orders", "spam_reports", "blocks", "surveys",
                  "charges")
) + ")"  # fmt: skip

# The furthest on of the SMPP 3.3 aliases held in a range of them (last_short_id).
_LAST_SHORT_ID_BETWEEN = "SELECT max(short_id) FROM messages INDEXED BY messages_short_id WHERE short_id > ? AND short_id <= ?"
# The alias given last as it stood when retention last deleted messages (migration 15; last_short_id).
_SHORT_ID_KEPT = "SELECT short_id FROM short_id_kept WHERE id = 0"
_KEEP_SHORT_ID = "UPDATE short_id_kept SET short_id = ? WHERE id = 0"
# A submission (its destinations `<id>/<n>` too, as `submitted_as` reads them) given an SMPP 3.3 alias after it was
# stored: not over one a copy gave it meanwhile.
_GIVE_SHORT_ID = "UPDATE messages SET short_id = ? WHERE (id = ? OR (id > ? AND id < ?)) AND short_id IS NULL"
_RELEASE_SCHEDULED = (
    f"UPDATE messages SET status = '{MessageStatus.ENROUTE.value}' WHERE id = ? AND status = '{MessageStatus.SCHEDULED.value}'"
)
_FINAL = "UPDATE messages SET status = ?, done_at = ?, error = ? WHERE id = ?"
# An MT submitted with replace_if_present_flag 1 (migration 18): marked in its INSERT's transaction, unmarked once the
# cancellations of what it replaces are committed; the start reads those still marked (replacements_pending).
_REPLACING = "UPDATE messages SET replacing = 1 WHERE id = ?"
_REPLACED = "UPDATE messages SET replacing = NULL WHERE id = ?"
_REPLACEMENTS_PENDING = f"{_SELECT} INDEXED BY messages_replacing WHERE replacing IS NOT NULL ORDER BY seq"
# The UNIQUE index on dedup_key must only refuse a key still inside the dedup
# window, so a row that left the window gives its key up before the key can be
# reused. Once per batch (that inserts keys) for every such row, through the
# partial index on accepted_at: a range scan over the rows that left the window
# since the previous batch, instead of an index lookup per inserted row.
_RELEASE_EXPIRED_KEYS = "UPDATE messages SET dedup_key = NULL WHERE dedup_key IS NOT NULL AND accepted_at <= ?"
# A key whose previous holder is still uncommitted (it can only have left the
# window that quickly with a tiny window or a clock that jumped): the batch-wide
# release may run before that holder's INSERT, so release it row by row, in issue order.
_RELEASE_KEY = "UPDATE messages SET dedup_key = NULL WHERE dedup_key = ? AND accepted_at <= ?"


# A message past retention, deleted only if it is still what `prunable` read it as: ended by the cut (a final status:
# an MO not handled, an MT not delivered stay whatever their done_at), and its dedup key, if it still has one, out of
# the dedup window (a client's retransmission arriving within it must still be recognised: the row is the guard).
_FINAL_STATUSES = ", ".join(sorted(f"'{status.value}'" for status in FINAL_STATUSES))
_PRUNE = (
    f"DELETE FROM messages WHERE seq = ? AND done_at <= ? AND status IN ({_FINAL_STATUSES})"
    " AND (dedup_key IS NULL OR accepted_at <= ?)"
)

# Who hears about a write: the future handed to the caller, or the caller's
# callback, called as callback(result, None) or callback(None, error).
Callback = Callable[[Any, Union[BaseException, None]], None]
_Waiter = Union[asyncio.Future, Callback]


@dataclass(slots=True, eq=False)
class _Op:
    """One write call: its rows, who waits for it and what they are told."""

    steps: list[Step]  # (sql, parameters, tokens): see writer_child.Step
    waiter: _Waiter
    result: Any = None
    # Lists created on first use: most ops have neither, and accept() is the hot path.
    dedup_keys: list[str] | None = None  # keys this op inserts
    followers: list[_Waiter] | None = None  # copies of the message this op inserts, awaiting its commit
    # accept_held: written alone instead if the held message is a copy of a stored one after all (its INSERT
    # breaks the dedup key's UNIQUE index): then nothing of its handling may stand.
    if_copy: Step | None = None
    after: Sequence[asyncio.Future] = ()  # earlier writes this one was decided on: written only if they were


def _not_stored(write: asyncio.Future) -> bool:
    return write.done() and not write.cancelled() and write.exception() is not None


def _succeed(waiter: _Waiter, value: Any, callbacks: list[tuple[Callback, Any, BaseException | None]]) -> None:
    """Resolve a future now; a callback joins `callbacks`, run later (see `_run_callbacks`)."""
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():  # the caller may have cancelled it; the write still stands
            waiter.set_result(value)
    else:
        callbacks.append((waiter, value, None))


def _fail(waiter: _Waiter, exc: BaseException, callbacks: list[tuple[Callback, Any, BaseException | None]]) -> None:
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():
            if isinstance(exc, asyncio.CancelledError):
                waiter.cancel()
            else:
                waiter.set_exception(exc)
    else:
        callbacks.append((waiter, None, exc))


def _settle(batch: list[_Op]) -> list[tuple[Callback, Any, BaseException | None]]:
    """Resolve a committed batch's futures, and those of duplicates waiting on it; return the callbacks due."""
    callbacks: list[tuple[Callback, Any, BaseException | None]] = []
    for op in batch:
        _succeed(op.waiter, op.result, callbacks)
        if op.followers is not None:
            copy = (op.result[0], True)  # the id stored for the key (the op's own, or the holder's if it was a copy too)
            for waiter in op.followers:
                _succeed(waiter, copy, callbacks)
            op.followers = None
    return callbacks


def _database_locked(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED after the busy timeout: no write can go through now, whichever it is."""
    return isinstance(exc, sqlite3.OperationalError) and ("database is locked" in str(exc) or "busy" in str(exc))


def _no_write_commits(exc: BaseException) -> bool:
    """No write of the batch would commit alone either: the database locked by another process or not writable (read
    only to this process) or gone from its path, no writer process able to start."""
    if isinstance(exc, (WriterCannotStart, DatabaseGone)) or _database_locked(exc):
        return True
    return isinstance(exc, sqlite3.OperationalError) and READ_ONLY in str(exc)


def _disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL: the filesystem the database is on had no room for the transaction's pages."""
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def _cannot_commit(exc: BaseException) -> bool:
    """A failure that is no write's fault: the database locked by another process, not writable or gone, the disk
    full or failing, the writer process gone. Until a commit goes through again, none will."""
    if isinstance(exc, WriterDied) or _no_write_commits(exc) or _disk_full(exc):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk I/O error" in str(exc)


# While the store cannot commit, a PROBE goes every PROBE_INTERVAL seconds (after its own busy waits) that the writer
# has nothing else to write, so `can_commit` turns true again when the cause is gone even if nothing else writes.
PROBE_INTERVAL = 1.0

# After the disk was full, a commit counts as the store committing again only once the database's filesystem has this
# much room (`_has_room`). A transaction that needs few pages, the probe or a small batch, commits on a disk still full:
# its WAL frames go into space a failed transaction left in the -wal file, and the next batch needing new space fails
# again (/ready and the log flapped once a second). 4 MiB, a thousand pages, holds a full batch's frames several times
# over, yet a test filesystem of a few tens of MB recovers once freed.
ROOM_TO_COMMIT = 4 * 1024 * 1024


def _has_room(directory: str) -> bool:
    """Has the filesystem holding `directory` ROOM_TO_COMMIT bytes this process may use? (Root may use the blocks a
    filesystem reserves; anyone else only the rest.) A directory that cannot be looked at is no reason to wait."""
    try:
        fs = os.statvfs(directory)
    except OSError:
        return True
    return (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) * fs.f_frsize >= ROOM_TO_COMMIT


def _run_callbacks(loop: asyncio.AbstractEventLoop, callbacks: list[tuple[Callback, Any, BaseException | None]]) -> None:
    for callback, result, error in callbacks:
        try:
            callback(result, error)
        except Exception as exc:  # one caller's bug must not cost the others their answer
            loop.call_exception_handler({"message": "store write callback failed", "exception": exc, "callback": callback})


# --- the store ------------------------------------------------------------------


class SqliteStore:
    """Store on one SQLite file. Write methods must be called from the event loop thread."""

    def __init__(
        self,
        path: str,
        *,
        # 500, not 1000: when one batch can take every message the clients have outstanding, the loop
        # waits while the writer commits them all, then the writer waits while the loop takes the
        # next ones. Capped lower, the two overlap: bench/run.py b1 (10 binds x window 100) went from
        # ~67k to ~77k msgs/s. The full path (b2), whose queue never drops below a full batch, pays
        # ~3% for the extra batches (each ends in a write per connection). bench/perf-log.md, session 9.
        batch_max: int = 500,
        # Seconds from one batch's start to the next one's at least. Under a steady moderate load (the
        # dialogue mix at half its maximum, ~3,200 MOs/s) the writer idles most of the time, and each MO
        # went out in a batch of its own or two: ~1,000 commits a second, each costing the loop a round
        # trip to the writer process and the writer a COMMIT and the pages every commit rewrites. At
        # 2 ms the same load makes ~500 commits a second: server CPU per MO -9%, p50 unchanged (~3.6 ms),
        # and nothing waits when writes are sparse (the first after a spell longer than the spacing goes
        # at once) or when the writer is the bottleneck (a batch then takes longer than the spacing).
        # bench/perf-log.md, session 12. 0 turns it off.
        commit_spacing: float = 0.002,
        dedup_window: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if commit_spacing < 0:
            raise ValueError("commit_spacing must not be negative")
        self.path = path
        self.stats = StoreStats()
        self._batch_max = batch_max
        self._commit_spacing = commit_spacing
        self._last_batch_at = float("-inf")  # loop time the writer last took a batch
        self._dedup_window = dedup_window
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._lock = DatabaseLock(path)  # one gateway per database file (see lock.py)
        self._writer = WriterProcess(path, on_exit=self._writer_exited)
        # Reads run on the event loop thread itself: an indexed lookup takes ~16 µs
        # there, against ~67 µs of CPU for a round trip to another thread or process,
        # and a handler makes several per MO. WAL keeps them off the writer's way.
        self._reader: sqlite3.Connection | None = None
        # Ops issued and not yet taken by the writer, in issue order. A plain
        # list (not an asyncio.Queue): the writer takes a whole batch at once,
        # and put/get per op was a noticeable share of an accept's cost.
        self._pending: list[_Op] = []
        self._wakeup: asyncio.Future[None] | None = None  # set while the writer waits for work
        self._stopping = False  # close() was called: write what is pending, then stop
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        # False from a transaction that failed for no fault of its writes (`_cannot_commit`) until the next
        # commit (`_commits_again`): the gateway is not ready (GET /ready) meanwhile.
        self.can_commit = True
        # Since can_commit turned false, a commit failed as the disk was full: only with room again (`_has_room`)
        # does a commit make it true.
        self._disk_was_full = False
        self._probe: asyncio.TimerHandle | None = None
        # The path does not name the file opened (`_check_database`): the store cannot commit meanwhile.
        self.database_gone = False
        self._watch: asyncio.TimerHandle | None = None  # `_look_at_database`, once a second
        # dedup_key -> (the op that inserts it, when), until that op is committed:
        # a copy arriving meanwhile must wait for the commit (see the module docstring).
        self._uncommitted: dict[str, tuple[_Op, float]] = {}
        # Futures of held messages stored as copies after all, their handling dropped (`after` must not stand on them).
        self._handling_dropped: weakref.WeakSet[asyncio.Future] = weakref.WeakSet()
        # Told the id of an MT given up for its row (`_mt_or_given_up`) once that commits, its destination (as its row
        # has it) if it was enroute, and the subscriber whose acknowledgement to an SP it was (`_acknowledging`): it has
        # ended (Delivery.given_up). Ids of those whose give-up is on its way, to give up once.
        self.mt_given_up: Callable[[str, Any, Any], None] = lambda message_id, dest_addr, acknowledging: None
        self._giving_up: set[str] = set()

    @property
    def writer(self) -> WriterProcess:
        """The process that runs the write transactions (its pid is in the logs and `ps`)."""
        return self._writer

    # --- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        if self._loop is not None:
            raise RuntimeError("store already opened")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            self._lock.acquire()
        except (DatabaseInUse, CompanionsSetAside) as exc:
            raise StoreOpenError(str(exc)) from None
        except OSError as exc:
            raise StoreOpenError(f"cannot open SQLite store at {self.path!r}: {exc}") from exc
        if self._lock.taken_back:
            log.warning("the database file is back at its path: the -wal and -shm set aside from it at a stop are put "
                        "back beside it", database=self.path, renamed=self._lock.taken_back)  # fmt: skip
        if self._lock.not_used:
            log.warning("files set aside beside the database at a stop are not used: set aside by an earlier smsgw "
                        "(their names do not say which file they are of), or an -shm without its -wal (an index "
                        "SQLite rebuilds); move them elsewhere", database=self.path, not_used=self._lock.not_used)  # fmt: skip
        try:
            await self._writer.start()  # opens the file in WAL mode and migrates it
            self._reader = _connect_reader(self.path)
        except (sqlite3.Error, OSError, SchemaVersionError) as exc:
            await self._close_connections(refused=True)  # (no lock file left beside a file refused)
            raise StoreOpenError(f"cannot open SQLite store at {self.path!r}: {exc}") from exc
        self._lock.note_companions()  # (its -wal and -shm exist once the writer has opened it)
        self._writer_task = asyncio.create_task(self._run_writer(), name=f"sqlite-writer:{self.path}")
        self._watch = self._loop.call_later(PROBE_INTERVAL, self._look_at_database)
        if self._writer.cannot_write_at_start is not None:  # locked by another process: not ready until a probe commits
            self._commits_failing(sqlite3.OperationalError(self._writer.cannot_write_at_start))

    def log_schema(self) -> None:
        """A new database, or one whose schema its opening moved forward (one way: an older release refuses it from
        now on), is said once (by the gateway once it is ready; a start refused after the store opened says it in
        its one line: `schema_change`); else nothing in the log told when an upgrade happened, or that a mistyped
        --db made an empty database."""
        found, version, seconds = self._writer.schema
        if found == 0 and version:
            log.info("database created", database=self.path, schema_version=version)
        elif found < version:
            log.info("database schema upgraded", database=self.path, from_version=found, to_version=version,
                     seconds=round(seconds, 3))  # fmt: skip

    def schema_change(self) -> str:
        """What opening the database did to it, for a start refused after it ("" if nothing, or it did not open)."""
        found, version, _seconds = self._writer.schema
        if not version or found == version:
            return ""
        return f"{self.path} was created" if found == 0 else f"{self.path} was upgraded from schema {found} to {version}"

    async def close(self) -> None:
        """Commit everything issued before this call, then close both connections."""
        if self._closed:
            return
        self._closed = True  # from here on write methods raise
        for timer in (self._probe, self._watch):
            if timer is not None:
                timer.cancel()
        try:
            if self._writer_task is not None:
                self._stopping = True  # the writer stops once every op already issued is written
                self._wake_writer()
                await self._writer_task
        finally:
            await self._close_connections()

    async def _close_connections(self, refused: bool = False) -> None:
        """`refused`: the database was, at the start (DatabaseLock.release)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self._writer.close()
        if self._lock.moved():
            self.database_gone = True  # (for the stop's last line: what was not committed is in the file gone)
            aside = self._lock.set_aside_companions()
            if aside:
                log.error("the database file was gone at the stop: its -wal and -shm files, which hold its last "
                          "commits, were renamed aside; moved back to its path (mv), the file gets them back at the "
                          "next start, which refuses to start while another file or none is there",
                          database=self.path, renamed=aside)  # fmt: skip
        self._lock.release(refused)  # only once the writer process has exited: it has nothing left to write

    # --- writes -------------------------------------------------------------

    def accept(self, message: Message, replacing: bool = False) -> asyncio.Future[tuple[str, bool]]:
        now = self._begin_write()
        assert self._loop is not None
        fut: asyncio.Future[tuple[str, bool]] = self._loop.create_future()
        self._accept(message, fut, now, replacing)
        return fut

    def accept_then(self, message: Message, then: Callback, replacing: bool = False) -> None:
        """`accept` for the submit_sm hot path: then((id, duplicate), None) after the commit, or then(None, error).

        No future and no event-loop round trip per message: the callbacks of a
        committed batch run together, in one loop callback, in issue order.
        """
        self._accept(message, then, self._begin_write(), replacing)

    def _accept(self, message: Message, waiter: _Waiter, now: float, replacing: bool) -> None:
        key = message.dedup_key
        if key is not None and key in self._uncommitted and self._duplicate_of(key, now, waiter):  # (seldom in flight)
            return
        op = _Op([], waiter, (message.id, False))  # steps, waiter, result: positional (keywords cost a dict each call)
        self._add_insert(op, message, now)
        if message.origin_id is not None and (kind := acknowledgement_kind(message.esm_class)):  # (most: None)
            op.steps.append((_ACKNOWLEDGED, (kind >> 1, message.id), (message.id, message.origin_id)))
        if replacing:  # (a copy's INSERT is skipped: this then marks no row)
            op.steps.append((_REPLACING, (message.id,), (message.id,)))
        self._enqueue(op)

    def replaced(self, message_id: str) -> asyncio.Future[None]:
        self._begin_write()
        op = self._new_op()
        op.steps.append((_REPLACED, (message_id,), (message_id,)))
        return self._enqueue(op)

    def hold(self, message: Message, may_be_stored: bool = True) -> _Op | None:
        """Reserve a new message for `accept_held`, which may then carry its handling in the same transaction.

        From here on a copy of it (same dedup_key) waits for that commit and gets its id. None when a
        copy may already be stored or on its way (its key is held by a stored row or an uncommitted write):
        then `accept` it, and the dedup rules decide. A held message must be passed to `accept_held`.
        `may_be_stored` False: the caller knows no stored message holds the key (no read to find out)."""
        now = self._begin_write()
        key = message.dedup_key
        if key is not None and (key in self._uncommitted or may_be_stored and self._holder_of(key) is not None):
            return None
        op = self._new_op(result=(message.id, False))
        if key is not None:
            self._uncommitted[key] = (op, now)
            op.dedup_keys = [key]
        return op

    def accept_held(
        self, held: _Op, message: Message, done_at: float | None = None,
        replies: Sequence[Message] = (), effects: Sequence[Effect] = (), *, after: Sequence[asyncio.Future] = (),
    ) -> asyncio.Future[tuple[str, bool]]:  # fmt: skip
        """In one transaction: store the held message, `processed` at done_at with its handler's effects and
        replies; or, without done_at, `accepted` (to be handled later). Resolves to (id, False) once committed, or
        (stored id, True) for a copy of a stored message (`hold` was told none could exist): then only that."""
        now = self._begin_write()
        if done_at is not None:
            message.status = _PROCESSED_STATUS
            message.done_at = done_at
        step = _insert_step(message, now)  # its key is held already (`hold`)
        if step[0] == _INSERT_KEYED:
            # Its INSERT fails on a stored copy (`hold` may have been told none can exist, wrongly), rather
            # than skipping the row and committing the handling with it: see `_write_batch`.
            held.steps.append((_INSERT, step[1], step[2]))
            held.if_copy = step
        else:
            held.steps.append(step)
        held.steps.extend(map(effect_sql, effects))
        for reply in replies:
            self._add_insert(held, reply, now)
        held.after = after
        return self._enqueue(held)

    def complete_mo(
        self, mo_ids: Sequence[str], replies: Sequence[Message], done_at: float, effects: Sequence[Effect] = (),
        *, failed: bool = False, error: int = 0, after: Sequence[asyncio.Future] = (),
    ) -> asyncio.Future[None]:
        now = self._begin_write()
        op = self._new_op()
        op.after = after
        if failed:
            op.steps.extend((_GIVEN_UP, (done_at, error, mo_id), (mo_id,)) for mo_id in mo_ids)
        else:
            op.steps.extend((_PROCESSED, (done_at, mo_id), (mo_id,)) for mo_id in mo_ids)
        op.steps.extend(map(effect_sql, effects))
        for reply in replies:
            self._add_insert(op, reply, now)
        return self._enqueue(op)

    def apply(
        self, effects: Sequence[Effect], messages: Sequence[Message] = (), *, after: Sequence[asyncio.Future] = ()
    ) -> asyncio.Future[None]:
        """In one transaction: apply the effects and store the messages (MTs a service sends)."""
        now = self._begin_write()
        op = self._new_op()
        op.after = after
        op.steps.extend(map(effect_sql, effects))
        for message in messages:
            self._add_insert(op, message, now)
        return self._enqueue(op)

    def mark_delivered(
        self, message_id: str, done_at: float, receipt: Message | None, *, then: Callback | None = None
    ) -> asyncio.Future[None] | None:
        now = self._begin_write()
        op = self._new_op(then=then)
        op.steps.append((_DELIVERED, (done_at, message_id), (message_id,)))
        if receipt is not None:
            self._add_insert(op, receipt, now)
        waiter = self._enqueue(op)
        return waiter if then is None else None

    def mark_retry(
        self, message_id: str, attempts: int, next_attempt_at: float, error: int, *, then: Callback | None = None
    ) -> asyncio.Future[None] | None:
        self._begin_write()
        op = self._new_op(then=then)
        op.steps.append((_RETRY, (attempts, next_attempt_at, error, message_id), (message_id,)))
        waiter = self._enqueue(op)
        return waiter if then is None else None

    def replace_mts(self, messages: Sequence[Message]) -> asyncio.Future[None]:
        self._begin_write()
        op = self._new_op()
        op.steps.extend((_REPLACE, (m.short_message, m.registered_delivery, m.expires_at, m.next_attempt_at,
                                    _DB_VALUE[m.status], m.id), (m.id,)) for m in messages)  # fmt: skip
        return self._enqueue(op)

    def give_short_id(self, submission_id: str, short_id: str, then: Callback) -> None:
        self._begin_write()
        op = self._new_op(then=then)
        values = (short_id, submission_id, submission_id + "/", submission_id + "0")  # ('/' then '0' in ASCII)
        op.steps.append((_GIVE_SHORT_ID, values, (submission_id,)))
        self._enqueue(op)

    def release_scheduled(self, message_ids: Sequence[str]) -> asyncio.Future[None]:
        self._begin_write()
        op = self._new_op()
        op.steps.extend((_RELEASE_SCHEDULED, (message_id,), (message_id,)) for message_id in message_ids)
        return self._enqueue(op)

    def mark_final(
        self, message_id: str, status: str, done_at: float, error: int, receipt: Message | None,
        *, then: Callback | None = None,
    ) -> asyncio.Future[None] | None:
        status_value = MessageStatus(status).value  # reject a typo now, not in the batch
        now = self._begin_write()
        op = self._new_op(then=then)
        op.steps.append((_FINAL, (status_value, done_at, error, message_id), (message_id,)))
        if status_value == _DELETED_VALUE:  # cancelled: an acknowledgement answers its content no more
            op.steps.append((_ACKNOWLEDGEMENT_CANCELLED, (message_id,), (message_id,)))
        if receipt is not None:
            self._add_insert(op, receipt, now)
        waiter = self._enqueue(op)
        return waiter if then is None else None

    def prune(self, seqs: Sequence[int], ended_by: float, short_id: str | None = None) -> asyncio.Future[None]:
        """Delete these messages (`prunable`'s seqs) in one transaction, each only if it ended by `ended_by` and its
        dedup key, if any, is out of the window; and keep `short_id` (Store.prune)."""
        now = self._begin_write()
        op = self._new_op()
        if short_id is not None:  # in their transaction: they may delete the rows holding it and every one before it
            op.steps.append((_KEEP_SHORT_ID, (short_id,), ()))
        # No tokens: an ended message is never written again, so nothing else in the batch needs ordering against it.
        op.steps.extend((_PRUNE, (seq, ended_by, now - self._dedup_window), ()) for seq in seqs)
        return self._enqueue(op)

    def readdress_notices(self, to_account: str, service_code: str, sp: str) -> asyncio.Future[None]:
        """Address the undelivered SP notices to `to_account` on `service_code` to the SP account `sp` instead."""
        self._begin_write()
        op = self._new_op()
        op.steps.append((_READDRESS_NOTICES, (sp, to_account, service_code, _DELIVERY_RECEIPT), ()))
        return self._enqueue(op)

    def _begin_write(self) -> float:
        """Check a write may be issued now; return the store clock."""
        if self._closed:
            raise RuntimeError("store is closed")
        if self._loop is None:
            raise RuntimeError("store is not open")
        # Futures, the queue and the dedup map belong to the loop thread. (Not
        # asyncio.get_running_loop(): on 3.11 it makes a getpid() system call,
        # and this runs for every write.)
        if threading.get_ident() != self._loop_thread:
            raise RuntimeError("SqliteStore writes must be issued from its event loop thread")
        return self._clock()

    def _new_op(self, result: Any = None, then: Callback | None = None) -> _Op:
        """An op reporting to `then` if given (then(result, None) or then(None, error), with its batch's other
        callbacks, in issue order), else to a new future (one loop callback per op: the delivery path avoids it)."""
        assert self._loop is not None
        return _Op(steps=[], waiter=then if then is not None else self._loop.create_future(), result=result)

    def _add_insert(self, op: _Op, message: Message, now: float) -> None:
        key = message.dedup_key
        if key is None:
            op.steps.append(_insert_step(message, now))
            return
        if key in self._uncommitted:  # its holder left the window before it was even committed
            op.steps.append((_RELEASE_KEY, (key, now - self._dedup_window), (key,)))
        op.steps.append(_insert_step(message, now))
        self._uncommitted[key] = (op, now)
        if op.dedup_keys is None:
            op.dedup_keys = [key]
        else:
            op.dedup_keys.append(key)

    def _enqueue(self, op: _Op) -> asyncio.Future:
        self._pending.append(op)
        if self._wakeup is not None:
            self._wake_writer()
        return op.waiter  # type: ignore[return-value]  # a future, for every method but accept_then

    def _wake_writer(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # --- dedup --------------------------------------------------------------

    def _duplicate_of(self, key: str, now: float, waiter: _Waiter) -> bool:
        """If a message with `key` is still being committed inside the window: `waiter` follows it (True)."""
        in_flight = self._uncommitted.get(key)
        if in_flight is None:
            return False  # committed or never seen: the UNIQUE index decides (SKIP_DUPLICATE_KEY)
        original, accepted_at = in_flight
        if accepted_at <= now - self._dedup_window:
            return False
        # Acknowledging the copy before the original is committed could ack a message that is then lost.
        if original.followers is None:
            original.followers = []
        original.followers.append(waiter)
        return True

    def _settled_keys(self, ops: list[_Op]) -> None:
        """These ops are committed (the UNIQUE index has their keys now) or failed (nothing holds them)."""
        uncommitted = self._uncommitted
        for op in ops:
            for key in op.dedup_keys or ():
                in_flight = uncommitted.get(key)
                if in_flight is not None and in_flight[0] is op:
                    del uncommitted[key]

    # --- the writer task ----------------------------------------------------

    async def _run_writer(self) -> None:
        while True:
            batch, stop = await self._next_batch()
            if batch:
                await self._write_batch(batch)
            if stop:
                return

    async def _next_batch(self) -> tuple[list[_Op], bool]:
        """Wait for work and out the commit spacing, then take what is pending (up to batch_max). True: stop after this batch."""
        assert self._loop is not None
        while not self._pending:
            if self._stopping:
                return [], True
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        early = self._last_batch_at + self._commit_spacing - self._loop.time()
        if early > 0 and not self._stopping:
            await asyncio.sleep(early)  # more writes join this batch meanwhile
        self._last_batch_at = self._loop.time()
        if len(self._pending) <= self._batch_max:
            batch, self._pending = self._pending, []
        else:
            batch = self._pending[: self._batch_max]
            del self._pending[: self._batch_max]
        return batch, self._stopping and not self._pending

    async def _write_batch(self, batch: list[_Op], again: bool = False) -> None:
        """Commit the batch; `again`: it already waited out a lock held by another process once."""
        if any(op.after for op in batch):
            batch = self._skip_failed_dependents(batch)
            if not batch:
                return
        self.stats.batches += 1
        self.stats.ops += len(batch)
        try:
            skipped = await self._commit(batch)
        except asyncio.CancelledError as cancelled:  # the loop is being torn down without close()
            self._fail_ops(batch, cancelled)
            raise
        except Exception as exc:
            self.stats.failed_batches += 1
            locked = _database_locked(exc)
            if _cannot_commit(exc) and (again or not locked):  # (a first lock is waited out once more, below)
                self._commits_failing(exc)
            if locked and not again:
                # Another process holds the database past the writer's busy timeout: no write of the
                # batch is at fault. Once more, whole (a short lock passes, as with a backup); writing
                # each op alone would wait the busy timeout once per op, minutes for a full window.
                await self._write_batch(batch, again=True)
            elif len(batch) == 1 and batch[0].if_copy is not None and self._is_stored_copy(batch[0], exc):
                # A held message that is a copy of a stored one: stored as any copy's accept (skipped, answered
                # with the stored one's id), its handling dropped. (Any other failure of its transaction, e.g.
                # an effect of its handling breaking a constraint, fails it below: nothing of it is stored.)
                op = batch[0]
                op.steps, op.if_copy = [op.if_copy], None
                if isinstance(op.waiter, asyncio.Future):
                    self._handling_dropped.add(op.waiter)  # what was decided on its handling must not stand
                await self._write_batch(batch)
            elif len(batch) == 1 or _no_write_commits(exc):
                self._fail_ops(batch, exc)
            else:
                # One bad write must not fail the others that shared its
                # transaction: write them again one per transaction, so only
                # the culprit's caller sees the error.
                for op in batch:
                    await self._write_batch([op])
        else:
            if not self.can_commit and not self.database_gone:  # (a batch committed as the file went: it has not)
                self._commits_again()
            if skipped:
                self._answer_copies(batch, set(skipped))
            self._settled_keys(batch)
            self._schedule_callbacks(_settle(batch))

    def _commits_failing(self, exc: Exception) -> None:
        """No commit can go through now: not ready until one does; probe until then."""
        if self.can_commit:
            self.can_commit = False
            log.error("store cannot commit", database=self.path, error=repr(exc))
        self._disk_was_full = self._disk_was_full or _disk_full(exc)
        self._probe_later()

    def _commits_again(self) -> None:
        """A transaction committed while the store could not: ready again, unless the disk was full and still is
        (then the probes go on)."""
        if self._disk_was_full and not _has_room(os.path.dirname(os.path.abspath(self.path))):
            self._probe_later()
            return
        self.can_commit = True
        self._disk_was_full = False
        log.warning("store commits again", database=self.path)

    def _probe_later(self) -> None:
        if self._probe is None and not self._closed:
            assert self._loop is not None
            self._probe = self._loop.call_later(PROBE_INTERVAL, self._send_probe)

    def _send_probe(self) -> None:
        """A probe, if the writer has nothing else to write: the batch it writes tells as much. Queued behind one, a
        probe took the writer its two busy waits (10 s on a database locked by another process) before the next
        write, every other batch: an MO to a short code, whose handling failed, was stored alone only after it (40 s)."""
        self._probe = None
        if self.can_commit or self._closed:
            return
        if self._wakeup is None or self._pending:  # writing a batch, or about to
            self._probe_later()
        else:
            self._write_nothing()

    def _check_database(self) -> None:
        """Raise DatabaseGone while the path does not name the file this store opened (deleted, moved away, replaced)."""
        self.database_gone = self._lock.moved()
        if self.database_gone:
            gone = DatabaseGone(f"the database file {self.path} was deleted, moved or replaced while smsgw ran: nothing "
                                "is committed until that file is back at that name, which a deleted or replaced one "
                                "never is; restart smsgw")  # fmt: skip
            self._commits_failing(gone)  # (at once, whoever found it: a scan's job then fails as the store cannot commit)
            raise gone

    def _look_at_database(self) -> None:
        """Once a second, whether the path still names the database: each batch asks too, this tells with none coming
        (and /ready with it)."""
        with contextlib.suppress(DatabaseGone):  # (it made the store unable to commit: its probes find out when it is back)
            self._check_database()
        assert self._loop is not None
        self._watch = self._loop.call_later(PROBE_INTERVAL, self._look_at_database)

    def _writer_exited(self) -> None:
        """The writer process died between batches (killed from outside): its successor starts now, not with the
        next write, which may be a while coming."""
        if not self._closed:
            self._write_nothing()

    def _write_nothing(self) -> None:
        """A transaction that changes nothing: its outcome is can_commit's (and a writer process gone is replaced
        for it)."""
        op = self._new_op(then=lambda result, error: None)
        op.steps.append((PROBE, (), ()))
        self._enqueue(op)

    def _answer_copies(self, batch: list[_Op], skipped: set[str]) -> None:
        """Accepts whose message the writer skipped as a copy of a stored one: they answer with the holder's id."""
        for op in batch:
            if op.dedup_keys and op.result is not None and op.result[0] in skipped:
                op.result = (self._holder_of(op.dedup_keys[0]), True)

    def _skip_failed_dependents(self, batch: list[_Op]) -> list[_Op]:
        """Fail the ops decided on a write that failed (`after`), without writing them; the rest of the batch."""
        kept = []
        for op in batch:
            failed = next((f for f in op.after if _not_stored(f) or f in self._handling_dropped), None)
            if failed is None:
                kept.append(op)
                continue
            why = failed.exception() if _not_stored(failed) else "it was a copy of a stored message"
            self._fail_ops([op], WriteSkipped(f"an earlier write it was decided on did not stand: {why}"))
        return kept

    def _fail_ops(self, ops: list[_Op], exc: BaseException) -> None:
        """These ops are not written: their keys are free again, their callers and the copies following them fail."""
        self._settled_keys(ops)
        callbacks: list[tuple[Callback, Any, BaseException | None]] = []
        for op in ops:
            _fail(op.waiter, exc, callbacks)
            for waiter in op.followers or ():
                _fail(waiter, exc, callbacks)
        self._schedule_callbacks(callbacks)

    def _is_stored_copy(self, op: _Op, exc: Exception) -> bool:
        """Did this op's INSERT of a held message fail because a stored message holds its dedup key?"""
        return isinstance(exc, sqlite3.IntegrityError) and self._holder_of(op.dedup_keys[0]) is not None

    def is_copy(self, dedup_key: str) -> bool:
        since = self._clock() - self._dedup_window
        in_flight = self._uncommitted.get(dedup_key)
        if in_flight is not None:
            return in_flight[1] > since  # as _duplicate_of decides
        return self._reader.execute(_RECENT_KEY_HOLDER, (dedup_key, since)).fetchone() is not None  # type: ignore[union-attr]

    def _holder_of(self, key: str) -> str | None:
        """The id of the stored message holding this dedup key, if any."""
        row = self._reader.execute(_KEY_HOLDER, (key,)).fetchone()  # type: ignore[union-attr]
        return row[0] if row is not None else None

    def _schedule_callbacks(self, callbacks: list[tuple[Callback, Any, BaseException | None]]) -> None:
        # One loop callback for the whole batch, not one per write, and not
        # inline: the writer goes on to its next batch first.
        if callbacks:
            assert self._loop is not None
            self._loop.call_soon(_run_callbacks, self._loop, callbacks)

    async def _commit(self, batch: list[_Op]) -> list[str]:
        steps = [step for op in batch for step in op.steps]
        if any(op.dedup_keys for op in batch):
            steps.insert(0, (_RELEASE_EXPIRED_KEYS, (self._clock() - self._dedup_window,), ()))
        # Not into a file gone from the path (nor into another one put there, by a writer process started anew).
        self._check_database()
        # The writer groups the steps into executemany runs (writer_child.plan):
        # that is CPU the event loop's core does not spend.
        statements, skipped = await self._writer.commit(steps)  # rolled back by the writer if it raises
        try:  # committed into the file opened: it stands (answered RSYSERR, it was served again once moved back)
            self._check_database()
        except DatabaseGone:  # gone meanwhile (the store cannot commit now): the next batches fail
            pass
        else:
            self._lock.note_companions()  # its -wal as this commit left it (set aside at the stop if the file goes)
        self.stats.executes += statements
        return skipped

    # --- reads --------------------------------------------------------------

    async def get(self, message_id: str) -> Message | None:
        rows = await self._read(f"{_SELECT} WHERE id = ?", (message_id,))
        if rows:
            readable = _readable(rows)
            return readable[0] if readable else None  # (one that does not read back: as if it were not stored)
        named = await self._short_named(message_id) if is_short_id(message_id) else None
        return named[0] if named else None

    async def submitted_as(self, message_id: str) -> list[Message]:
        # '/' then '0' in ASCII: `id > 'X/' AND id < 'X0'` is every `X/<n>`, read from the id index.
        rows = await self._read(f"{_SELECT} WHERE id = ? OR (id > ? AND id < ?) ORDER BY seq",
                                (message_id, message_id + "/", message_id + "0"))  # fmt: skip
        if not rows and is_short_id(message_id):
            return await self._short_named(message_id)
        return _readable(rows)

    async def _short_named(self, short_id: str) -> list[Message]:
        """The messages of the newest submission given this SMPP 3.3 alias (a submit_multi's destinations share it;
        after the aliases came round again, an older one the store still keeps may hold it too)."""
        rows = await self._read(f"{_SELECT} INDEXED BY messages_short_id WHERE short_id = ? ORDER BY seq", (short_id,))
        named = _readable(rows)
        newest = submission_of(named[-1]) if named else None
        return [m for m in named if submission_of(m) == newest]

    async def last_id_made(self) -> str | None:
        [(last,)] = await self._read(_LAST_ID_MADE, ())
        return last

    async def last_short_id(self) -> str | None:
        # Once, at start: of the alias given last that the messages hold and the one kept when retention last deleted
        # some (`prune`), the later.
        [(kept,)] = await self._read(_SHORT_ID_KEPT, ())
        return later_short_id(kept, await self._last_short_id_held())

    async def _last_short_id_held(self) -> str | None:
        # Every alias in the index is read (by seq, not by value: after a wrap the largest is not the last).
        rows = await self._read("SELECT short_id FROM messages INDEXED BY messages_short_id WHERE short_id IS NOT NULL"
                                " ORDER BY seq DESC LIMIT 1", ())  # fmt: skip
        if not rows:
            return None
        # An alias given after it to an older row (a copy on a bind of SMPP 3.3 of a submission first sent on 3.4,
        # give_short_id) is not on the newest row, and aliases taken but never held (a copy's, a failed commit's)
        # leave gaps: the last one given is the one held furthest on in the half of their round after it.
        for above, up_to in short_ids_after(rows[0][0]):
            [(furthest,)] = await self._read(_LAST_SHORT_ID_BETWEEN, (above, up_to))
            if furthest is not None:
                return furthest
        return rows[0][0]

    def unacknowledged_content(
        self, account: str, code: str, subscriber: str, kind: int, delivered_since: float, claimed: Container[str]
    ) -> str | None:  # fmt: skip
        reader = self._reader
        assert reader is not None
        delivered, waiting = _UNACKNOWLEDGED[kind]
        for query, arguments in ((delivered, (subscriber, code, account, delivered_since)), (waiting, (subscriber, code, account))):
            # Read a row at a time, in the index's order: past those on their way to the store only (`claimed`).
            answered = next((content for (content,) in reader.execute(query, arguments) if content not in claimed), None)
            if answered is not None:
                return answered
        return None

    def short_id_of(self, message_id: str) -> str | None:
        row = self._reader.execute("SELECT short_id FROM messages WHERE id = ?", (message_id,)).fetchone()  # type: ignore[union-attr]
        return row[0] if row is not None else None

    async def replacements_pending(self) -> list[Message]:
        return _readable(await self._read(_REPLACEMENTS_PENDING, ()))

    async def unprocessed_mos(self) -> list[Message]:
        rows = await self._read(
            f"{_SELECT} WHERE status = ? AND direction = ? ORDER BY submitted_at, seq",
            (MessageStatus.ACCEPTED.value, Direction.MO.value),
        )
        return [_message_or_unreadable(r) for r in rows]

    async def waiting_mts(
        self, to_account: str | None, after: tuple[str, int], below: str, limit: int
    ) -> list[tuple[tuple[str, int], Message]]:
        return await self._mt_page(_WAITING, lambda after, n: (to_account, *after, below, n), after, limit, _ADDRESSED)

    async def expired_mts(self, now: float, after: tuple[float, int], limit: int) -> list[tuple[tuple[float, int], Message]]:
        return await self._mt_page(_EXPIRED, lambda after, n: (now, *after, n), after, limit, _TIMED)

    async def undelivered_from(
        self, account: str, source_addr: str, dest_addr: str, to_account: str | None = None
    ) -> list[Message]:  # fmt: skip
        rows = await self._read(_UNDELIVERED_FROM, (dest_addr, account, source_addr, to_account))
        try:
            return [_message(row[1:]) for row in rows]
        except Exception:  # noqa: BLE001  (a row damaged outside the gateway: the others are read one at a time)
            return [message for row in rows if (message := self._mt_or_given_up(row[1:])) is not None]

    async def enroute_mts_from(
        self, source_addr: str, dest_addr: str | None, after: tuple[float, int], limit: int
    ) -> list[tuple[tuple[float, int], Message]]:
        if dest_addr is None:
            return await self._mt_page(_ENROUTE_FROM, lambda after, n: (source_addr, *after, n), after, limit, _TIMED)
        return await self._mt_page(_ENROUTE_FROM_TO, lambda after, n: (dest_addr, source_addr, *after, n), after, limit, _TIMED)

    async def due_scheduled(self, now: float, after: tuple[float, int], limit: int) -> list[tuple[tuple[float, int], Message]]:
        return await self._mt_page(_DUE_SCHEDULED, lambda after, n: (now, *after, n), after, limit, _TIMED)

    async def _mt_page(
        self, sql: str, params: Callable[[Any, int], tuple], after: Any, limit: int, paging: _Paging
    ) -> list[tuple[Any, Message]]:
        """A page of a paged read of undelivered MTs (`sql` with `params(cursor, limit)`): up to `limit` MTs after
        `after`, each with its cursor; fewer only at the end. A row that does not read back (damaged outside the
        gateway) is given up (`_mt_or_given_up`), and rows after the page are read in its place: it stopped the
        read of every row after it (a bind's backlog, the sweep, each time). The rows are read one at a time only
        then: a page that reads back costs no more than before."""
        rows = await self._read(sql, params(after, limit))
        try:
            return paging.page(rows)
        except Exception:  # noqa: BLE001  (whatever a damaged value raises: _mt_or_given_up names it)
            return await self._mt_page_without_unreadable(sql, params, rows, limit, paging)

    async def _mt_page_without_unreadable(
        self, sql: str, params: Callable[[Any, int], tuple], rows: list[tuple], limit: int, paging: _Paging
    ) -> list[tuple[Any, Message]]:
        """`_mt_page` for `rows` some of which do not read back: one at a time, read on to fill the page."""
        page: list[tuple[Any, Message]] = []
        asked = limit  # of the read that gave `rows`
        while True:
            for row in rows:
                message = self._mt_or_given_up(row[paging.fields_at:])
                if message is not None:
                    page.append((paging.cursor(row), message))
            if len(rows) < asked or len(page) >= limit:  # the end, or the page full
                return page
            asked = limit - len(page)
            rows = await self._read(sql, params(paging.cursor(rows[-1]), asked))

    def _mt_or_given_up(self, row: Sequence[Any]) -> Message | None:
        """An undelivered MT's row as a Message; or, damaged outside the gateway so that it does not read back, None,
        the MT given up: stored undeliverable (err 8, ESME_RSYSERR's, as one no deliver_sm can carry), with no
        receipt (what its row says cannot be trusted), so that no read meets it again."""
        try:
            return _message(row)
        except Exception as error:  # noqa: BLE001  (whatever a damaged value raises: it is named in `reason`)
            message_id = str(row[0])
            if message_id in self._giving_up:  # another read met it before its give-up committed
                return None
            _unreadable(row, error)
        given_up = partial(self._given_up, message_id, row[_STATUS_AT] == _ENROUTE_VALUE, row[_DEST_ADDR_AT], _acknowledging(row))
        with contextlib.suppress(Exception):  # (the store closed or failing: the next read gives it up)
            self.mark_final(message_id, MessageStatus.UNDELIVERABLE.value, self._clock(), _SYSTEM_ERROR, None,
                            then=given_up)  # fmt: skip
            self._giving_up.add(message_id)
        return None

    def _given_up(
        self, message_id: str, enroute: bool, dest_addr: Any, acknowledging: Any, _result: None, error: BaseException | None,
    ) -> None:  # fmt: skip
        """An MT's give-up (`_mt_or_given_up`) committed, or failed (then the next read that meets it gives it up):
        delivery is told it ended, and, if it was enroute, its destination: it counted against its subscriber's queue
        (Delivery.restore) and counts no longer."""
        self._giving_up.discard(message_id)
        if error is None:
            self.mt_given_up(message_id, dest_addr if enroute else None, acknowledging)

    async def prunable(self, ended_by: float, after: tuple[float, int], limit: int) -> list[tuple[float, int]]:
        return await self._read(_ENDED, (ended_by, *after, limit))  # rows are (done_at, seq) tuples already

    async def waiting_counts(self) -> dict[tuple[str, str, str], int]:
        return {(account, source, dest): count for account, source, dest, count in await self._read(_WAITING_COUNTS, ())}

    async def acknowledgement_counts(self) -> dict[str, int]:
        return dict(await self._read(_ACKNOWLEDGEMENT_COUNTS, (ACKNOWLEDGEMENT,)))

    async def addressed_counts(self) -> dict[tuple[str, str | None], int]:
        rows = await self._read(_ADDRESSED_COUNTS, (_DELIVERY_RECEIPT,))
        return {(account, code): count for account, code, count in rows}

    async def find(self, record_type: type[R], *, order_by: str | None = None, limit: int | None = None, **filters: Any) -> list[R]:
        sql, params = select_sql(record_type, filters, order_by, limit)
        return [from_row(record_type, row) for row in await self._read(sql, tuple(params))]

    async def scan(self, record_type: type[R], *, order_by: str | None = None, **filters: Any) -> list[R]:
        if self._reader is None:
            raise RuntimeError("store is not open")
        sql, params = select_sql(record_type, filters, order_by, None)
        self._check_database()  # a connection opened on another file at the path could wreck it (its WAL is ours)

        def read() -> list[R]:  # (100,000 subscriptions: ~1.5 s of the loop's time if read on it)
            reader = _connect_reader(self.path)
            try:
                return [from_row(record_type, row) for row in reader.execute(sql, tuple(params))]
            finally:
                reader.close()

        return await asyncio.to_thread(read)

    async def distinct(self, record_type: type, column: str, **filters: Any) -> set[Any]:
        sql, params = select_sql(record_type, filters, None, None, distinct=column)
        return {row[0] for row in await self._read(sql, tuple(params))}

    async def _read(self, sql: str, params: tuple) -> list[Any]:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader.execute(sql, params).fetchall()


def _connect_reader(path: str) -> sqlite3.Connection:
    """The read connection: autocommit (each SELECT sees the latest commit), read-only, WAL."""
    conn = connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":  # e.g. ":memory:" — this connection would not see the writer's data
            raise sqlite3.OperationalError(f"WAL mode unavailable (journal_mode={mode})")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn
