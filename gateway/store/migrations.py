"""Versioned schema of the SQLite store.

The schema version lives in `PRAGMA user_version`. MIGRATIONS[i] takes a
database from version i to version i + 1; `migrate()` applies the missing
steps in order when the store opens, each in its own transaction together with
the version bump, so a crash mid-migration leaves the previous version intact.

Never edit a step that has shipped: append a new one.
"""

from __future__ import annotations

import aiosqlite

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
        # unprocessed_mos / pending_mts: equality on status+direction, then the
        # index order (submitted_at, then the implicit rowid = seq) is the
        # ORDER BY, so no sort step.
        "CREATE INDEX messages_by_state ON messages (status, direction, submitted_at)",
        # Durable guard behind the in-memory dedup map: one row holds a key at a time.
        "CREATE UNIQUE INDEX messages_dedup_key ON messages (dedup_key) WHERE dedup_key IS NOT NULL",
        # open() loads the keys still inside the dedup window without scanning
        # every keyed row ever written.
        "CREATE INDEX messages_dedup_recent ON messages (accepted_at) WHERE dedup_key IS NOT NULL",
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer gateway than this one."""


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply the missing migration steps; return the resulting version.

    Each step runs in its own explicit BEGIN IMMEDIATE ... COMMIT, which works
    whatever the connection's isolation_level.
    """
    version = await _user_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"schema version {version} is newer than this gateway's {SCHEMA_VERSION}")
    while version < SCHEMA_VERSION:
        await _apply_step(conn, version)
        version = await _user_version(conn)
    return version


async def _apply_step(conn: aiosqlite.Connection, version: int) -> None:
    # IMMEDIATE takes the write lock before we re-read the version, so two
    # processes opening the same new file cannot both run the same step.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        if await _user_version(conn) == version:
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
            # PRAGMA takes no bound parameters; version is our own int.
            await conn.execute(f"PRAGMA user_version = {version + 1:d}")
        await conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        raise


async def _user_version(conn: aiosqlite.Connection) -> int:
    rows = await conn.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])
