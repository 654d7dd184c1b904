"""The one storage interface the gateway talks to.

SQLite is the embedded default (`sqlite.py`); a PostgreSQL implementation for
several nodes will implement the same methods.

Every write returns an awaitable that resolves only after the write is
committed: the gateway acknowledges an MO with ESME_ROK only then. Writes are
batched by the implementation, so callers may issue thousands concurrently;
they are committed in the order they were issued.

A write decided on the uncommitted effects of earlier writes names them in
`after` (gateway/mo.py hands a serial key on before its holder's commit is
done): it is committed only if they are, and fails with `WriteSkipped`
otherwise.

What the gateway relies on beyond the signatures, as SqliteStore does it (a
second implementation must do the same, or the caller named must change):
- Committed means it survives the process's `kill -9` (not a power cut: WAL
  with synchronous=NORMAL); on PostgreSQL, synchronous_commit on.
- A failed write fails alone: a batch whose transaction fails is retried op
  by op, so only the culprit's future fails (its error), and a failed future
  means nothing of that write stands, unless the writer died with the commit
  in flight (WriterDied: told apart by `writer_progress`). Writes of one
  process are committed in issue order: one writer, not a pool.
- A `Put` is an upsert by the record's key (effects.TABLES), SQLite's INSERT
  OR REPLACE: a row clashing on another unique constraint (charges:
  subscription_id, period) is replaced too. Inserting a message id that
  exists fails.
- `find` leaves ties (and every row, `order_by` absent) in the order SQLite's
  plan reads them: by the index it uses, then insertion order, a Put moving
  its row last (REPLACE gives it a new rowid); NULLs first ascending, last
  descending. RecordCache answers in the same order, and handlers sort on
  columns that tie: another store must match it, or they must break ties.
- Times are float epoch seconds from the gateway's clock (a SimulatedClock in
  tests), never the database's own now(): kept exact (float8, not a
  timestamp type), as cursors compare (expires_at, seq) for equality.
- Ids are the caller's (gateway/ids.py) and compare as byte strings (C
  collation): MessageIds sort in the order they were given out, and a
  submit_multi's destinations are `<id>/<n>` (ranges `'<id>/' < x < '<id>0'`).
- `is_copy`, `hold` and `short_id_of` answer synchronously on the event loop
  (an SQLite read is ~16 us); a store across a network must answer them from
  memory or the intake must await them.
- RecordCache reads a partition while no effect of it can commit (SQLite reads
  do not yield); an awaiting read must take the in-flight effects first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Any, Protocol, TypeVar

from .effects import Effect
from .records import Message, UnreadableMo

R = TypeVar("R")
# How a write reports to a callback instead of a future: callback(result, None) once committed, or
# callback(None, error); called from the event loop, never from inside the write call.
WriteCallback = Callable[[Any, BaseException | None], None]


class WriteSkipped(Exception):
    """Not written: an earlier write it was decided on (`after`) failed."""


class StoreOpenError(RuntimeError):
    """The database could not be opened, configured, migrated or (at start) read: the start is refused with it."""


class Store(Protocol):
    # False from a transaction that failed for no fault of its writes (the database locked by another process, the
    # disk full or failing, the writer process gone) until one commits (after a disk full, one with room left on the
    # filesystem): the gateway is not ready meanwhile.
    can_commit: bool
    # The database's path does not name the file the store opened (deleted, moved away, replaced): it cannot commit
    # (can_commit False) meanwhile; a file deleted or replaced never comes back, a restart is needed.
    database_gone: bool
    # Told the id of an MT the store gave up for its row, which does not read back (damaged outside the gateway), once
    # that commits, its destination if it was enroute (None if scheduled), and the subscriber whose acknowledgement to
    # an SP it was (None: no such, as acknowledgement_counts tells): Delivery.given_up, which counted it as waiting.
    mt_given_up: Callable[[str, Any, Any], None]

    async def open(self) -> None:
        """Create or migrate the schema and start the writer."""

    async def close(self) -> None:
        """Commit everything still queued, then stop."""

    def log_schema(self) -> None:
        """Log what `open` did to the schema (the database created, or its schema moved forward, one way): once, by
        the gateway once it is ready."""

    def schema_change(self) -> str:
        """The same, for the one line of a start refused after `open` ("" when it changed nothing)."""

    # --- writes (each resolves after its commit) ------------------------
    def accept(self, message: Message, replacing: bool = False) -> Awaitable[tuple[str, bool]]:
        """Store a newly submitted message (MO, or MT from a subscriber or SP).

        Returns (id, duplicate). When `message.dedup_key` equals the key of a
        message accepted within the dedup window, nothing is written and the
        earlier message's id is returned with duplicate=True. `replacing`: an MT
        submitted with replace_if_present_flag 1, stored as one whose replacement
        is not done (`replacements_pending`) until `replaced`.
        """

    def is_copy(self, dedup_key: str) -> bool:
        """Whether a submission with this dedup_key would be a copy (`accept` would answer the earlier message's
        id): a message holding it is stored, or on its way, within the dedup window."""

    def accept_then(
        self, message: Message, then: Callable[[tuple[str, bool] | None, BaseException | None], None], replacing: bool = False,
    ) -> None:  # fmt: skip
        """`accept`, reporting to a callback instead: then((id, duplicate), None) once committed, or then(None, error).

        For the submit_sm path, where a future per message costs more than the
        rest of the bookkeeping: the callback is never called from inside this
        call, and the callbacks of writes committed together run in issue order.
        """

    def replaced(self, message_id: str) -> Awaitable[None]:
        """The MTs an MT accepted `replacing` replaces are cancelled (committed): it is no longer pending."""

    def hold(self, message: Message, may_be_stored: bool = True) -> object | None:
        """Reserve a new message so that `accept_held` can store it together with its handling.

        Returns an opaque reservation, or None when a copy of the message (same dedup_key) may already
        be stored or on its way: `accept` it instead. Once held, copies wait for its commit and get its
        id; a reservation must be passed to `accept_held`. `may_be_stored` False: the caller knows no
        stored message holds its dedup_key (a bind's new sequence number), so the store need not look.
        """

    def accept_held(
        self, held: object, message: Message, done_at: float | None = None,
        replies: Sequence[Message] = (), effects: Sequence[Effect] = (), *, after: Sequence[Awaitable] = (),
    ) -> Awaitable[tuple[str, bool]]:  # fmt: skip
        """In one transaction: store the held message, `processed` at done_at together with its handler's
        effects and replies, or (done_at None) `accepted`, to be handled later. Resolves to (id, False); or, should
        the message prove a copy of a stored one after all, to (that one's id, True), nothing of its handling stored."""

    def complete_mo(
        self, mo_ids: Sequence[str], replies: Sequence[Message], done_at: float, effects: Sequence[Effect] = (),
        *, failed: bool = False, error: int = 0, after: Sequence[Awaitable] = (),
    ) -> Awaitable[None]:
        """In one transaction: mark these MOs processed (`failed`: given up, with `error` for query_sm, as their
        receipts say it), apply their handler's effects, insert its replies."""

    def apply(
        self, effects: Sequence[Effect], messages: Sequence[Message] = (), *, after: Sequence[Awaitable] = ()
    ) -> Awaitable[None]:
        """In one transaction: apply effects and store messages (for work not triggered by an MO)."""

    def mark_delivered(
        self, message_id: str, done_at: float, receipt: Message | None,
        *, then: WriteCallback | None = None,
    ) -> Awaitable[None] | None:
        """In one transaction: the MT was acknowledged (its error, from an attempt refused before, is cleared: it is
        delivered, err:000); insert its delivery receipt MT if one is due.

        With `then`, reports to it as `accept_then` does (then(None, None) once committed, or then(None, error))
        and returns None: no future per delivered MT."""

    def mark_retry(
        self, message_id: str, attempts: int, next_attempt_at: float, error: int, *, then: WriteCallback | None = None
    ) -> Awaitable[None] | None:
        """A delivery attempt failed or timed out: try again at next_attempt_at. With `then`, reports to it as
        `mark_delivered` does and returns None (a future nobody awaits fails unseen: asyncio's "Future exception was
        never retrieved", naming no message)."""

    def replace_mts(self, messages: Sequence[Message]) -> Awaitable[None]:
        """replace_sm, in one transaction: store each MT's new short_message, registered_delivery, expires_at, and its
        schedule (next_attempt_at, status scheduled or enroute)."""

    def give_short_id(self, submission_id: str, short_id: str, then: WriteCallback) -> None:
        """The submission `submission_id` (a message, or every destination of a submit_multi: `submitted_as`) holds no
        SMPP 3.3 alias (it came on a bind of SMPP 3.4) and a copy of it came on a bind of SMPP 3.3: give it
        `short_id`, unless a copy gave it one meanwhile. Reports as `accept_then` does (then(None, None) once
        committed); `short_id_of` reads the alias it holds from then on."""

    def release_scheduled(self, message_ids: Sequence[str]) -> Awaitable[None]:
        """These scheduled MTs are due: enroute from now on (unless they were deleted meanwhile)."""

    def mark_final(
        self, message_id: str, status: str, done_at: float, error: int, receipt: Message | None,
        *, then: WriteCallback | None = None,
    ) -> Awaitable[None] | None:
        """The MT will not be delivered (expired / undeliverable / deleted); insert its receipt if one is due.
        `then` as for mark_delivered."""

    def readdress_notices(self, to_account: str, service_code: str, sp: str) -> Awaitable[None]:
        """Address the undelivered SP notices to `to_account` on `service_code` to the SP account `sp` instead."""

    def prune(self, seqs: Sequence[int], ended_by: float, short_id: str | None = None) -> Awaitable[None]:
        """Delete these messages (seqs from `prunable`) in one transaction: each only if it is still final, ended by
        `ended_by`, and holds no dedup key inside the dedup window. Gone for good: `get` finds none of them. In the
        same transaction `short_id`, the SMPP 3.3 alias given last (ids.ShortIds.last), is kept: `last_short_id`
        goes on from it when the rows holding it and the ones before it are gone. (Read from the store for each batch,
        it was a scan of every alias held, on the loop: 260 ms a batch with 1M aliases.)"""

    # --- reads -----------------------------------------------------------
    async def get(self, message_id: str) -> Message | None:
        """The message of this id; none of it, one of 8 characters at most (`ids.is_short_id`) is an SMPP 3.3 alias:
        the first message given it."""

    async def submitted_as(self, message_id: str) -> list[Message]:
        """What was submitted as `message_id`: that message, and for a submit_multi its other destinations
        (`<id>/2`, `<id>/3`, ...), in order of arrival; each found on its own (retention may have deleted some).
        None of that id, one of 8 characters at most is an SMPP 3.3 alias: the messages of the newest submission
        given it."""

    async def last_id_made(self) -> str | None:
        """The largest id of those `ids.MessageIds` makes (19 hex digits, or a submit_multi destination's) that the
        store holds, as byte strings compare: of a message or a service record (a subscription, a block...: kept for
        ever, while retention deletes messages). Read at start: MessageIds starts its ids after it."""

    async def last_short_id(self) -> str | None:
        """The SMPP 3.3 alias given last of those the store holds or held: `prune` deleting the messages holding it
        does not set it back (read at start: `ids.ShortIds` goes on from it, and gives none out again)."""

    def unacknowledged_content(
        self, account: str, code: str, subscriber: str, kind: int, delivered_since: float, claimed: Container[str]
    ) -> str | None:  # fmt: skip
        """The id of an MT `account` sent from `code` to `subscriber` asking for an SME acknowledgement of `kind`
        (esm_class message type 0x08 or 0x10: registered_delivery 0x04 or 0x08 asked for it), delivered since
        `delivered_since` (the one delivered first) or else still waiting (the one sent first), that no stored
        acknowledgement of that kind answers (an MT whose origin_id is its id, not cancelled) and that is not in
        `claimed` (answered by one on its way to the store). None: no such content."""

    def short_id_of(self, message_id: str) -> str | None:
        """The SMPP 3.3 alias of a stored message (None: it has none): what a copy of it is answered on a 3.3 bind."""

    async def undelivered_from(
        self, account: str, source_addr: str, dest_addr: str, to_account: str | None = None
    ) -> list[Message]:  # fmt: skip
        """cancel_sm by addresses: the undelivered MTs (scheduled ones too) `account` sent from source_addr
        to the subscriber dest_addr, in order of arrival; with `to_account`, those addressed to that account instead
        (a subscriber's SME acknowledgements to an SP's service code dest_addr, for the SP account)."""

    async def enroute_mts_from(
        self, source_addr: str, dest_addr: str | None, after: tuple[float, int], limit: int
    ) -> list[tuple[tuple[float, int], Message]]:
        """Undelivered MTs (status enroute) from source_addr, to the subscriber dest_addr (None: to anyone), by
        (expires_at, seq) after the cursor, with their cursors: what a block or an unsubscription stops."""

    async def due_scheduled(self, now: float, after: tuple[float, int], limit: int) -> list[tuple[tuple[float, int], Message]]:
        """Scheduled MTs whose time has come (next_attempt_at <= now), oldest first, paged like expired_mts."""

    async def replacements_pending(self) -> list[Message]:
        """The MTs accepted `replacing` and not `replaced` yet (the gateway was killed in between), in order of
        arrival: the start cancels what they replace before anything goes out."""

    async def unprocessed_mos(self) -> list[Message | UnreadableMo]:
        """MOs acknowledged but not yet handled (after a crash), oldest first; a row that does not read back as a
        Message, as an UnreadableMo in its place."""

    async def waiting_mts(
        self, to_account: str | None, after: tuple[str, int], below: str, limit: int
    ) -> list[tuple[tuple[str, int], Message]]:
        """Undelivered MTs (status enroute) for one receiver, a page at a time.

        `to_account` None: the MTs addressed to a number (no `to_account` in
        their extra) whose dest_addr lies in (after[0], below); else those
        addressed to that account. Ordered by (dest_addr, seq) and starting
        after the cursor `after`; each comes with its own cursor, so the last
        one's cursor asks for the next page.
        """

    async def expired_mts(self, now: float, after: tuple[float, int], limit: int) -> list[tuple[tuple[float, int], Message]]:
        """Undelivered MTs whose validity ended by `now`, by (expires_at, seq) after the cursor, with their cursors."""

    async def prunable(self, ended_by: float, after: tuple[float, int], limit: int) -> list[tuple[float, int]]:
        """Up to `limit` messages that reached a final state by `ended_by`, as (done_at, seq) cursors, the earliest
        ended first, after the cursor `after`: what `prune` may delete."""

    async def waiting_counts(self) -> dict[tuple[str, str, str], int]:
        """How many undelivered MTs wait, by (account that sent them, source_addr, dest_addr): the per-subscriber
        queue limit counts them, and those a block or an unsubscription stops are ended at start."""

    async def acknowledgement_counts(self) -> dict[str, int]:
        """How many undelivered SME acknowledgements to SPs' service codes wait (messages.acknowledging_subscriber),
        by the subscriber who sent them: the limit on those counts them."""

    async def addressed_counts(self) -> dict[tuple[str, str | None], int]:
        """How many undelivered MTs wait for an account by name (receipts, SP notices), by (that account, the
        service code of an SP notice or None for a receipt)."""

    async def find(self, record_type: type[R], *, order_by: str | None = None, limit: int | None = None, **filters: Any) -> list[R]:
        """Service records (records.TABLES) matching `field=value`, `field__gte=…` (gt, lte, lt, ne) and `field__in=[…]`."""

    async def scan(self, record_type: type[R], *, order_by: str | None = None, **filters: Any) -> list[R]:
        """`find` for a read of very many records (a month's billing of every subscription): the loop goes on serving
        the binds while it runs (SQLite: in a thread, on a connection of its own)."""

    async def distinct(self, record_type: type, column: str, **filters: Any) -> set[Any]:
        """The distinct values of `column` among the records `find` would return for `filters` (none built)."""
