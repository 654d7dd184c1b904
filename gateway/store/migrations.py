"""Versioned schema of the SQLite store.

The schema version lives in `PRAGMA user_version`. MIGRATIONS[i] takes a
database from version i to version i + 1; `migrate()` applies the missing
steps in order when the store opens, each in its own transaction together with
the version bump, so a crash mid-migration leaves the previous version intact.

Never edit a step that has shipped: append a new one.
"""

from __future__ import annotations

import re
import sqlite3

# Each step is a sequence of SQL statements run in one transaction.
Migration = tuple[str, ...]

MIGRATIONS: list[Migration] = [
    # 1: the messages table and its indexes.
    (
        """
        CREATE TABLE messages (
            -- rowid alias: insertion order, the tie-break when submitted_at is equal
            seq                 INTEGER PRIMARY KEY,
            id                  TEXT    NOT NULL UNIQUE,
            direction           TEXT    NOT NULL,  -- Direction value: 'mo' | 'mt'
            status              TEXT    NOT NULL,  -- MessageStatus value
            account             TEXT    NOT NULL,
            source_addr         TEXT    NOT NULL,
            dest_addr           TEXT    NOT NULL,
            short_message       BLOB    NOT NULL,
            data_coding         INTEGER NOT NULL,
            esm_class           INTEGER NOT NULL,
            registered_delivery INTEGER NOT NULL,
            service_type        TEXT    NOT NULL,
            source_addr_ton     INTEGER NOT NULL,
            source_addr_npi     INTEGER NOT NULL,
            dest_addr_ton       INTEGER NOT NULL,
            dest_addr_npi       INTEGER NOT NULL,
            tlvs                BLOB    NOT NULL,
            submitted_at        REAL    NOT NULL,
            expires_at          REAL    NOT NULL,
            attempts            INTEGER NOT NULL,
            next_attempt_at     REAL    NOT NULL,
            done_at             REAL,
            error               INTEGER NOT NULL,
            origin_id           TEXT,
            dedup_key           TEXT,
            extra               TEXT    NOT NULL,  -- JSON object
            -- store clock when the row was written: the dedup window runs from here
            accepted_at         REAL    NOT NULL
        )
        """,
        # unprocessed_mos: equality on status+direction, then the
        # index order (submitted_at, then the implicit rowid = seq) is the
        # ORDER BY, so no sort step.
        "CREATE INDEX messages_by_state ON messages (status, direction, submitted_at)",
        # Durable guard behind the in-memory dedup map: one row holds a key at a time.
        "CREATE UNIQUE INDEX messages_dedup_key ON messages (dedup_key) WHERE dedup_key IS NOT NULL",
        # open() loads the keys still inside the dedup window without scanning
        # every keyed row ever written.
        "CREATE INDEX messages_dedup_recent ON messages (accepted_at) WHERE dedup_key IS NOT NULL",
    ),
    # 2: the short-code services' records (records.TABLES). dict columns hold JSON.
    (
        "CREATE TABLE subscribers (msisdn TEXT PRIMARY KEY, language TEXT NOT NULL)",
        """
        CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY, msisdn TEXT NOT NULL, service_id TEXT NOT NULL, status TEXT NOT NULL,
            ordered_at REAL NOT NULL, channel TEXT NOT NULL, confirmation TEXT NOT NULL,
            trial_until REAL NOT NULL, cancelled_at REAL, cancel_channel TEXT
        )
        """,
        "CREATE INDEX subscriptions_by_msisdn ON subscriptions (msisdn, status)",
        "CREATE INDEX subscriptions_by_status ON subscriptions (status, ordered_at)",
        """
        CREATE TABLE subscription_events (
            id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, msisdn TEXT NOT NULL, at REAL NOT NULL,
            event TEXT NOT NULL, channel TEXT NOT NULL, detail TEXT NOT NULL
        )
        """,
        "CREATE INDEX subscription_events_by_subscription ON subscription_events (subscription_id, at)",
        """
        CREATE TABLE pending_orders (
            id TEXT PRIMARY KEY, msisdn TEXT NOT NULL, service_id TEXT NOT NULL, channel TEXT NOT NULL,
            reply_code TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, status TEXT NOT NULL
        )
        """,
        "CREATE INDEX pending_orders_by_msisdn ON pending_orders (msisdn, status)",
        """
        CREATE TABLE dialogues (
            msisdn TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
            created_at REAL NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (msisdn, kind)
        )
        """,
        """
        CREATE TABLE spam_reports (
            id TEXT PRIMARY KEY, reporter TEXT NOT NULL, reported TEXT NOT NULL, text TEXT NOT NULL,
            created_at REAL NOT NULL, status TEXT NOT NULL
        )
        """,
        "CREATE INDEX spam_reports_by_reported ON spam_reports (reported, created_at)",
        "CREATE INDEX spam_reports_by_reporter ON spam_reports (reporter, created_at)",
        """
        CREATE TABLE blocks (
            id TEXT PRIMARY KEY, reported TEXT NOT NULL, reporter TEXT NOT NULL, created_at REAL NOT NULL,
            lifted_at REAL, reason TEXT NOT NULL
        )
        """,
        "CREATE INDEX blocks_by_reported ON blocks (reported, reporter)",
        """
        CREATE TABLE surveys (
            id TEXT PRIMARY KEY, msisdn TEXT NOT NULL, channel TEXT NOT NULL, agent TEXT NOT NULL,
            created_at REAL NOT NULL, expires_at REAL NOT NULL, status TEXT NOT NULL, rating INTEGER,
            reason TEXT NOT NULL, reprompted INTEGER NOT NULL, rated_at REAL
        )
        """,
        "CREATE INDEX surveys_by_msisdn ON surveys (msisdn, status)",
        "CREATE INDEX surveys_by_channel ON surveys (channel, status)",
        """
        CREATE TABLE charges (
            id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, msisdn TEXT NOT NULL, service_id TEXT NOT NULL,
            period TEXT NOT NULL, amount INTEGER NOT NULL, created_at REAL NOT NULL, refund INTEGER NOT NULL,
            refund_reason TEXT NOT NULL, disputed_at REAL, UNIQUE (subscription_id, period)
        )
        """,
        "CREATE INDEX charges_by_msisdn ON charges (msisdn, period)",
        "CREATE TABLE job_runs (job TEXT NOT NULL, period TEXT NOT NULL, ran_at REAL NOT NULL, PRIMARY KEY (job, period))",
    ),
    # 3: MTs waiting for delivery are read from the store when a bind that can
    # take them appears, and when they expire, instead of being held in memory.
    # Partial indexes: only undelivered MTs are in them, so they stay as small
    # as the backlog. (Queries must spell out the same literal WHERE terms.)
    (
        # SqliteStore.waiting_mts: one account's (receipts, SP notices) or a
        # number range's, in (dest_addr, seq) order for keyset paging.
        (
            "CREATE INDEX messages_waiting ON messages (json_extract(extra, '$.to_account'), dest_addr)"
            " WHERE status = 'enroute' AND direction = 'mt'"
        ),
        # SqliteStore.expired_mts
        "CREATE INDEX messages_enroute_expiry ON messages (expires_at) WHERE status = 'enroute' AND direction = 'mt'",
    ),
    # 4: MTs with a schedule_delivery_time still ahead wait as 'scheduled', out of the
    # indexes above; the sweep releases them when due (SqliteStore.due_scheduled), and
    # cancel_sm / replace_if_present_flag find them by subscriber (undelivered_from).
    (
        "CREATE INDEX messages_scheduled_due ON messages (next_attempt_at) WHERE status = 'scheduled'",
        "CREATE INDEX messages_scheduled_to ON messages (dest_addr) WHERE status = 'scheduled'",
    ),
    # 5: a submission's protocol_id and priority_flag, for the deliver_sm of an MT that waits (store and
    # forward, a restart). Rows written before were delivered with 0 and 0: that is what they keep.
    (
        "ALTER TABLE messages ADD COLUMN protocol_id INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN priority_flag INTEGER NOT NULL DEFAULT 0",
    ),
    # 6: confirmations that lapsed unanswered are marked expired by the scheduled jobs, which read the ones still
    # pending past their validity (handlers/confirmation.lapsed_orders) without scanning every order ever made.
    # Partial, as small as the orders waiting; and, unlike one on (status, expires_at), never the planner's pick
    # over pending_orders_by_msisdn for a subscriber's orders (whose order the record cache follows, cache.py).
    ("CREATE INDEX pending_orders_lapsing ON pending_orders (expires_at) WHERE status = 'pending'",),
    # 7: the number of the last batch the writer process committed, written in the batch's own transaction. When
    # the process dies before answering, its successor reads it: the batch in flight committed or it did not
    # (writer.WriterProcess.commit). One row, so each batch costs one small UPDATE.
    (
        "CREATE TABLE writer_progress (id INTEGER PRIMARY KEY CHECK (id = 0), batch INTEGER NOT NULL)",
        "INSERT INTO writer_progress (id, batch) VALUES (0, 0)",
    ),
    # 8: as step 6, for surveys (handlers/rating.lapsed_surveys): the ones still open (sent, or waiting for a reason)
    # past their validity, read without scanning every survey ever sent. surveys_by_msisdn and surveys_by_channel
    # cannot give them by expires_at; partial for the reasons of step 6 (the record cache follows surveys_by_msisdn).
    # OR, not IN: SQLite takes it for a query's `status = ?` (one per open status), never for `status IN (?, ?)`.
    ("CREATE INDEX surveys_lapsing ON surveys (expires_at) WHERE status = 'sent' OR status = 'reason'",),
    # 9: messages past [gateway] message_retention are deleted a batch at a time (gateway/retention.py), read oldest
    # first by when they ended (SqliteStore.prunable). done_at is set exactly when a message reaches a final state, so
    # the index holds only ended messages (an MT waiting or an MO not handled never enters it) and the read is
    # index-only: an MT delivered days after an older one ended does not hold the older one up, as reading by
    # submitted_at would (messages_by_state), every batch re-reading the MTs submitted before the cut that ended after it.
    ("CREATE INDEX messages_ended ON messages (done_at) WHERE done_at IS NOT NULL",),
    # 10: orders nothing answers about any more (answered or expired, their validity over for one more validity period)
    # are deleted a batch at a time (handlers/confirmation.orders_past_use), read by when their validity ended without
    # scanning every order ever made. Partial, for the reasons of step 6: the orders a subscriber's reads want are
    # never `status != 'pending'` alone, so pending_orders_by_msisdn stays the planner's pick for them.
    ("CREATE INDEX pending_orders_ended ON pending_orders (expires_at) WHERE status != 'pending'",),
    # 11: as step 10, for dialogues expired long enough (handlers/unsubscribe.dialogues_past_use). No query of a
    # subscriber's dialogues names expires_at: the primary key stays the planner's pick for them.
    ("CREATE INDEX dialogues_ending ON dialogues (expires_at)",),
    # 12: the fee an order's confirmation stated (fen a month, handlers/confirmation._confirm: a confirmation quoting
    # a fee the catalogue no longer has subscribes nobody, it is asked again). NULL in the orders written before: their
    # fee is unknown, taken as the catalogue's.
    ("ALTER TABLE pending_orders ADD COLUMN fee INTEGER",),
    # 13: the id (8 hex digits, ids.ShortIds) a message submitted on a bind of SMPP 3.3 was given: its 19-character
    # id is too long for SMPP 3.3. NULL for every other message. query_sm, cancel_sm and replace_sm name a message by
    # it; partial, as small as the messages that have one. Not unique: a submit_multi's destinations share theirs,
    # and after ffffffff the aliases start again at 00000001 (reads take the newest holder: SqliteStore.submitted_as).
    (
        "ALTER TABLE messages ADD COLUMN short_id TEXT",
        "CREATE INDEX messages_short_id ON messages (short_id) WHERE short_id IS NOT NULL",
    ),
    # 14: the fee a subscription's confirmation stated (fen a month, handlers/confirmation._confirm): billing charges no
    # more than it (handlers/billing.monthly_fee), and a dispute of a charge above it is refunded double. NULL in the
    # subscriptions made before: their fee is unknown, taken as the catalogue's of the day.
    ("ALTER TABLE subscriptions ADD COLUMN fee INTEGER",),
    # 15: the SMPP 3.3 alias given last (step 13) as it stood when retention last deleted messages, written in the
    # deletes' transaction (SqliteStore.prune): a start goes on from it when the rows holding it and those before it
    # are gone (SqliteStore.last_short_id), instead of giving those aliases out again. One row; NULL until then.
    (
        "CREATE TABLE short_id_kept (id INTEGER PRIMARY KEY CHECK (id = 0), short_id TEXT)",
        "INSERT INTO short_id_kept (id, short_id) VALUES (0, NULL)",
    ),
    # 16: a subscriber's SME acknowledgement to an SP's service code is accepted only in answer to the SP's content
    # asking for one (registered_delivery bits 3-2) and not acknowledged yet (SqliteStore.unacknowledged_content): that
    # content is read by subscriber and code, and the acknowledgements answering it by origin_id (the content's id).
    # Partial: as small as the messages asking for an acknowledgement, and those that are one (esm_class 0x08, 0x10).
    (
        (
            "CREATE INDEX messages_asking_acknowledgement ON messages (dest_addr, source_addr, done_at)"
            " WHERE direction = 'mt' AND (registered_delivery & 12) != 0"
        ),
        "CREATE INDEX messages_acknowledging ON messages (origin_id) WHERE (esm_class & 24) != 0",
    ),
    # 17: which acknowledgements a content has (`acknowledged`: the registered_delivery bits 0x04, 0x08 of the kinds
    # stored and not cancelled; written with them, SqliteStore `_ACKNOWLEDGED`; filled from those stored before), so
    # the content an acknowledgement may answer is read from an index of only that content, one per kind, by status:
    # 16's index held every message asking for one, answered or not, and each acknowledgement read all of that content
    # delivered within the day (20,000: 15 ms, on the loop). 16's indexes are read no more. (Not triggers: building
    # NEW for every row written cost ~2.5 us an insert and as much a status update, in the writer.)
    (
        "ALTER TABLE messages ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 0",
        (
            "UPDATE messages SET acknowledged = 4 * EXISTS (SELECT 1 FROM messages AS ack INDEXED BY"
            " messages_acknowledging WHERE ack.origin_id = messages.id AND (ack.esm_class & 24) != 0"
            " AND ack.esm_class & 8 AND ack.direction = 'mt' AND ack.status != 'deleted')"
            " + 8 * EXISTS (SELECT 1 FROM messages AS ack INDEXED BY messages_acknowledging WHERE ack.origin_id ="
            " messages.id AND (ack.esm_class & 24) != 0 AND ack.esm_class & 16 AND ack.direction = 'mt'"
            " AND ack.status != 'deleted')"
            " WHERE id IN (SELECT origin_id FROM messages INDEXED BY messages_acknowledging WHERE (esm_class & 24) != 0)"
        ),
        "DROP INDEX messages_asking_acknowledgement",
        "DROP INDEX messages_acknowledging",
        (
            "CREATE INDEX messages_asking_sme_acknowledgement ON messages (dest_addr, source_addr, status, done_at)"
            " WHERE direction = 'mt' AND (registered_delivery & 4) != 0 AND (acknowledged & 4) = 0"
        ),
        (
            "CREATE INDEX messages_asking_user_acknowledgement ON messages (dest_addr, source_addr, status, done_at)"
            " WHERE direction = 'mt' AND (registered_delivery & 8) != 0 AND (acknowledged & 8) = 0"
        ),
    ),
    # 18: an MT submitted with replace_if_present_flag 1 is stored with `replacing` 1, in its own INSERT's transaction,
    # until the cancellations of the MTs it replaces are committed (SqliteStore.accept, replaced). Killed between the
    # two, the start completes what is left (SqliteStore.replacements_pending); before, the replaced MTs went out beside
    # it, and the client's retransmission, a copy, replaced nothing. NULL for every other MT; partial, as small as the
    # replacements in flight.
    (
        "ALTER TABLE messages ADD COLUMN replacing INTEGER",
        "CREATE INDEX messages_replacing ON messages (seq) WHERE replacing IS NOT NULL",
    ),
    # 19: when an order's confirmation was first sent (handlers/confirmation.py): ordered again, it is sent again
    # (created_at), and a text received before then (a retry) still answers it, but no order made after it was
    # received. NULL in the orders written before: taken as created_at.
    ("ALTER TABLE pending_orders ADD COLUMN first_asked_at REAL",),
]

SCHEMA_VERSION = len(MIGRATIONS)


def _tables_created(steps: list[Migration]) -> frozenset[str]:
    return frozenset(re.findall(r"CREATE TABLE (\w+)", " ".join(s for step in steps for s in step)))


# The tables a file at version v must hold: what steps 1..v created (no step drops one).
TABLES_AT_VERSION = [_tables_created(MIGRATIONS[:version]) for version in range(SCHEMA_VERSION + 1)]


class SchemaVersionError(RuntimeError):
    """The database is not one this gateway may use: written by a newer gateway, or another application's."""


def check_ours(conn: sqlite3.Connection) -> int:
    """The file's schema version, if this gateway may open it: a new file, or one of ours not newer than this gateway.

    Before anything changes the file (journal mode WAL, the first migration): another application's database given
    by mistake (`--db crm.db`) got our tables and WAL, and was served from. Step 1 creates our tables together with
    version 1 in one transaction, so version 0 with any table (even one named like ours: `messages` is a common
    name) is someone else's. user_version is a generic SQLite header field other applications set too (Android's
    SQLiteOpenHelper, ORMs), so a version of ours counts only with the tables that version has; tables of the
    operator's own beside them are left alone."""
    version = user_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"schema version {version} is newer than this gateway's {SCHEMA_VERSION}")
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    tables = [name for name in tables if not name.startswith("sqlite_")]
    # Views, triggers and indexes count too: a file holding only a view of another application's is not empty.
    others = [f"{kind} {name}" for kind, name in conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type != 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]  # fmt: skip
    if version == 0 and (tables or others):
        found = ([f"tables {', '.join(tables)}"] if tables else []) + others
        raise SchemaVersionError(f"another application's database ({', '.join(found)}, no smsgw schema version); "
                                 "smsgw needs a file of its own")  # fmt: skip
    missing = sorted(TABLES_AT_VERSION[version].difference(tables))
    if missing:
        raise SchemaVersionError(f"another application's database (tables {', '.join(tables) or 'none'}, schema "
                                 f"version {version} without smsgw's tables {', '.join(missing)}); smsgw needs a file "
                                 "of its own")  # fmt: skip
    return version


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing migration steps; return the resulting version.

    Each step runs in its own explicit BEGIN IMMEDIATE ... COMMIT, which works
    whatever the connection's isolation_level.
    """
    version = check_ours(conn)
    while version < SCHEMA_VERSION:
        _apply_step(conn, version)
        version = user_version(conn)
    return version


def _apply_step(conn: sqlite3.Connection, version: int) -> None:
    # IMMEDIATE takes the write lock before we re-read the version, so two
    # processes opening the same new file cannot both run the same step.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if user_version(conn) == version:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            # PRAGMA takes no bound parameters; version is our own int.
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
