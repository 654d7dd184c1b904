"""A database written by an older gateway is upgraded in place when SqliteStore opens it.

Each older schema is built the way `migrate()` builds it (one `_apply_step` per
version, so the file holds exactly what that gateway's store created), filled with
rows as that gateway wrote them (plain SQL, no current-code row helpers), then opened
with the current SqliteStore: the version becomes SCHEMA_VERSION, every row is still
there and readable through the store's API, and the partial indexes the store's
queries name with INDEXED BY exist (a query naming a missing index fails to prepare).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.store import migrations
from gateway.store import sqlite as sqlite_store
from gateway.store.effects import Put
from gateway.store.migrations import MIGRATIONS, SCHEMA_VERSION, TABLES_AT_VERSION
from gateway.store.records import (
    Charge,
    Direction,
    Message,
    MessageStatus,
    Subscriber,
    Subscription,
)
from gateway.store.sqlite import SqliteStore

NOW = 2_000_000_000.0  # the store's clock after the upgrade
WINDOW = 3600.0
SUBSCRIBER = "8613800000001"
OTHER = "8613800000002"
ELSEWHERE = "8613700000001"  # outside the 86138 range read below
OLD_VERSIONS = list(range(1, SCHEMA_VERSION))  # 1, 2, 3 (and any later one a new step leaves behind)

# The messages columns as migration 1 created them (migration 5 adds protocol_id and priority_flag: 0 in old rows).
_MESSAGE_COLUMNS = (
    "id", "direction", "status", "account", "source_addr", "dest_addr", "short_message",
    "data_coding", "esm_class", "registered_delivery", "service_type",
    "source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi", "tlvs",
    "submitted_at", "expires_at", "attempts", "next_attempt_at", "done_at", "error",
    "origin_id", "dedup_key", "extra", "accepted_at",
)  # fmt: skip


class FixedClock:
    def __call__(self) -> float:
        return NOW


def build_old_database(path: Path, version: int) -> None:
    """An empty database at `version`, by the mechanism migrate() uses, in WAL mode as the writer sets it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        for step in range(version):
            migrations._apply_step(conn, step)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    finally:
        conn.close()


def mt(id: str, dest: str, status: MessageStatus = MessageStatus.ENROUTE, **kw) -> Message:
    fields = dict(account="handset2", source_addr=ELSEWHERE, dest_addr=dest, short_message=f"text of {id}".encode(),
                  submitted_at=NOW - 600, expires_at=NOW + 86_400, next_attempt_at=NOW - 600)  # fmt: skip
    fields.update(kw)
    return Message(id=id, direction=Direction.MT, status=status, **fields)


def mo(id: str, status: MessageStatus, **kw) -> Message:
    fields = dict(account="handset", source_addr=SUBSCRIBER, dest_addr="10086", short_message=f"text of {id}".encode(),
                  submitted_at=NOW - 900, expires_at=NOW + 86_400)  # fmt: skip
    fields.update(kw)
    return Message(id=id, direction=Direction.MO, status=status, **fields)


def old_messages() -> list[Message]:
    """Messages in every status an older gateway left behind, most of them MTs still undelivered."""
    return [
        mo("mo-new", MessageStatus.ACCEPTED, submitted_at=NOW - 950, dedup_key="handset:ref:7"),
        mo("mo-done", MessageStatus.PROCESSED, done_at=NOW - 899),
        # Waiting for subscribers of the 86138 range: in (dest_addr, arrival) order.
        mt("wait-2a", OTHER, submitted_at=NOW - 500, data_coding=8, esm_class=0x40, registered_delivery=1,
           tlvs=b"\x02\x0a\x00\x02\x12\x34", attempts=2, error=0x45, extra={"parts": [1, 2]}),
        mt("wait-1a", SUBSCRIBER, submitted_at=NOW - 400, service_type="USSD", source_addr_ton=1, dest_addr_ton=1),
        mt("wait-1b", SUBSCRIBER, submitted_at=NOW - 300, origin_id="mo-done"),
        mt("wait-elsewhere", ELSEWHERE, account="handset", source_addr=SUBSCRIBER),
        # A notice for an SP account's binds, not for the subscriber's.
        mt("notice", SUBSCRIBER, account="", source_addr="1066916", extra={"to_account": "sina"}),
        # Undelivered and out of validity: the sweep's expiry read finds them.
        mt("stale-1", OTHER, expires_at=NOW - 100),
        mt("stale-2", ELSEWHERE, expires_at=NOW - 50),
        # Scheduled: one due, one not yet.
        mt("sched-due", SUBSCRIBER, MessageStatus.SCHEDULED, account="handset", source_addr=OTHER, next_attempt_at=NOW - 10),
        mt("sched-later", ELSEWHERE, MessageStatus.SCHEDULED, next_attempt_at=NOW + 3600),
        # Finished.
        mt("done-delivered", SUBSCRIBER, MessageStatus.DELIVERED, done_at=NOW - 200),
        mt("done-expired", OTHER, MessageStatus.EXPIRED, done_at=NOW - 200, expires_at=NOW - 300),
        mt("done-undeliverable", OTHER, MessageStatus.UNDELIVERABLE, done_at=NOW - 200, error=0x0B),
        mt("done-deleted", ELSEWHERE, MessageStatus.DELETED, done_at=NOW - 200),
    ]


def write_messages(path: Path, messages: list[Message], accepted_at: float) -> None:
    marks = ", ".join("?" * len(_MESSAGE_COLUMNS))
    with sqlite3.connect(path) as conn:
        for m in messages:
            values = {name: getattr(m, name) for name in _MESSAGE_COLUMNS[:-1]}
            values["direction"], values["status"] = m.direction.value, m.status.value
            values["extra"] = json.dumps(m.extra)
            values["accepted_at"] = accepted_at
            conn.execute(f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) VALUES ({marks})",
                         tuple(values[name] for name in _MESSAGE_COLUMNS))  # fmt: skip
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == len(messages)


SUBSCRIBER_RECORD = Subscriber(SUBSCRIBER, "en")
SUBSCRIPTION = Subscription(
    id="sub-1", msisdn=SUBSCRIBER, service_id="sina-news", status="active", ordered_at=NOW - 86_400 * 40,
    channel="sms", confirmation="mo-confirm", trial_until=NOW - 86_400 * 10,
)  # fmt: skip
CANCELLED = Subscription(
    id="sub-2", msisdn=SUBSCRIBER, service_id="qq-weather", status="cancelled", ordered_at=NOW - 86_400 * 90,
    channel="web", confirmation="", trial_until=NOW - 86_400 * 60, cancelled_at=NOW - 86_400, cancel_channel="sms",
)  # fmt: skip
CHARGE = Charge(id="chg-1", subscription_id="sub-1", msisdn=SUBSCRIBER, service_id="sina-news", period="2033-04",
                amount=300, created_at=NOW - 86_400 * 5)  # fmt: skip


def write_service_records(path: Path) -> None:
    """Service records as version 2's tables hold them (no record helpers of the current code)."""
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO subscribers (msisdn, language) VALUES (?, ?)", (SUBSCRIBER, "en"))
        for s in (SUBSCRIPTION, CANCELLED):
            conn.execute(
                "INSERT INTO subscriptions (id, msisdn, service_id, status, ordered_at, channel, confirmation,"
                " trial_until, cancelled_at, cancel_channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.id, s.msisdn, s.service_id, s.status, s.ordered_at, s.channel, s.confirmation, s.trial_until,
                 s.cancelled_at, s.cancel_channel),
            )  # fmt: skip
        conn.execute(
            "INSERT INTO charges (id, subscription_id, msisdn, service_id, period, amount, created_at, refund,"
            " refund_reason, disputed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', NULL)",
            (CHARGE.id, CHARGE.subscription_id, CHARGE.msisdn, CHARGE.service_id, CHARGE.period, CHARGE.amount,
             CHARGE.created_at),
        )  # fmt: skip


def indexes_named_by_the_store() -> set[str]:
    """Every index a query of gateway/store/sqlite.py forces with INDEXED BY."""
    names = set(re.findall(r"INDEXED BY (\w+)", inspect.getsource(sqlite_store)))
    assert names, "the store names its partial indexes with INDEXED BY"
    return names


def schema_of(path: Path) -> tuple[int, dict[str, tuple[str, str]]]:
    """The file's user_version, and name -> (type, SQL) of every table and index in it."""
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rows = conn.execute("SELECT name, type, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    return version, {name: (kind, sql) for name, kind, sql in rows}


def fresh_schema(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """What a database created by the current gateway from nothing holds."""
    path = tmp_path / "fresh.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrations.migrate(conn)
    finally:
        conn.close()
    return schema_of(path)[1]


@pytest.fixture(params=OLD_VERSIONS, ids=lambda v: f"from-v{v}")
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, int]:
    version = request.param
    path = tmp_path / f"v{version}.db"
    build_old_database(path, version)
    write_messages(path, old_messages(), accepted_at=NOW - 1000)
    if version >= 2:
        write_service_records(path)
    return path, version


def test_there_are_older_versions_to_upgrade_from() -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 4
    assert OLD_VERSIONS[:3] == [1, 2, 3]


async def test_an_old_database_is_upgraded_and_keeps_every_message_readable(old_db: tuple[Path, int], tmp_path: Path) -> None:
    path, version = old_db
    before_version, before = schema_of(path)
    assert before_version == version
    missing_before = indexes_named_by_the_store() - set(before)
    # Up to version 3 the upgrade must add some of the store's indexes; version 4 has them all, and lacks
    # the columns of migration 5; version 5 lacks the index of migration 6, version 6 the writer_progress table of
    # migration 7, version 7 the index of migration 8 (compared with a fresh schema below).
    assert missing_before or version >= 4, f"version {version} lacks some of the store's indexes: the upgrade must add them"

    store = SqliteStore(str(path), dedup_window=WINDOW, clock=FixedClock())
    await store.open()
    try:
        after_version, after = schema_of(path)
        assert after_version == SCHEMA_VERSION
        assert after == fresh_schema(tmp_path), "the upgraded schema differs from a fresh one"
        for name in indexes_named_by_the_store():
            assert after.get(name, ("missing",))[0] == "index", f"index {name} missing after the upgrade from v{version}"

        # Every row, every field, through get().
        for message in old_messages():
            assert await store.get(message.id) == message, message.id

        # The MO the old gateway had not handled yet is replayed.
        assert [m.id for m in await store.unprocessed_mos()] == ["mo-new"]

        # Undelivered MTs (messages_waiting): per number range in (dest, arrival) order, and per account.
        page = await store.waiting_mts(None, ("86138", 0), "86139", 100)
        assert [m.id for _, m in page] == ["wait-1a", "wait-1b", "wait-2a", "stale-1"]
        first = await store.waiting_mts(None, ("86138", 0), "86139", 2)
        rest = await store.waiting_mts(None, first[-1][0], "86139", 100)
        assert [m.id for _, m in first + rest] == ["wait-1a", "wait-1b", "wait-2a", "stale-1"]
        assert [m.id for _, m in await store.waiting_mts(None, ("86137", 0), "86138", 100)] == ["wait-elsewhere", "stale-2"]
        assert [m.id for _, m in await store.waiting_mts("sina", ("", 0), "\U0010ffff", 100)] == ["notice"]
        assert by_destination(await store.waiting_counts()) == {SUBSCRIBER: 3, OTHER: 2, ELSEWHERE: 2}

        # Expiry (messages_enroute_expiry), paged by its cursor.
        expired = await store.expired_mts(NOW, (0.0, 0), 1)
        expired += await store.expired_mts(NOW, expired[-1][0], 10)
        assert [m.id for _, m in expired] == ["stale-1", "stale-2"]

        # Scheduled (messages_scheduled_due, built over rows written before the index existed).
        assert [m.id for _, m in await store.due_scheduled(NOW, (0.0, 0), 100)] == ["sched-due"]
        assert [m.id for _, m in await store.due_scheduled(NOW + 7200, (0.0, 0), 100)] == ["sched-due", "sched-later"]

        # cancel_sm by addresses (messages_waiting UNION messages_scheduled_to).
        assert [m.id for m in await store.undelivered_from("handset2", ELSEWHERE, SUBSCRIBER)] == ["wait-1a", "wait-1b"]
        assert [m.id for m in await store.undelivered_from("handset", OTHER, SUBSCRIBER)] == ["sched-due"]

        # Service records written at version 2 or 3 (version 1 had no such tables).
        if version >= 2:
            assert await store.find(Subscriber, msisdn=SUBSCRIBER) == [SUBSCRIBER_RECORD]
            assert await store.find(Subscription, msisdn=SUBSCRIBER, order_by="id") == [SUBSCRIPTION, CANCELLED]
            assert await store.find(Subscription, status="active") == [SUBSCRIPTION]
            assert await store.find(Charge, subscription_id="sub-1") == [CHARGE]
            assert SUBSCRIPTION.fee is None  # made before subscriptions kept their fee: billed at the catalogue's
            priced = replace(SUBSCRIPTION, id="sub-3", fee=3000)  # in the column migration 14 added
            await store.apply([Put(priced)])
            assert await store.find(Subscription, id="sub-3") == [priced]
        else:
            assert await store.find(Subscription, msisdn=SUBSCRIBER) == []

        # The upgraded file takes writes, and its dedup index still recognises a retransmission
        # of the old MO, inside the window.
        copy = mo("mo-copy", MessageStatus.ACCEPTED, dedup_key="handset:ref:7")
        assert await store.accept(copy) == ("mo-new", True)
        await store.mark_delivered("wait-1a", done_at=NOW, receipt=None)
        await store.release_scheduled(["sched-due"])
        assert by_destination(await store.waiting_counts()) == {SUBSCRIBER: 3, OTHER: 2, ELSEWHERE: 2}  # -wait-1a, +sched-due
        assert [m.id for _, m in await store.waiting_mts(None, (SUBSCRIBER, 0), SUBSCRIBER + "0", 100)] == [
            "wait-1b", "sched-due",
        ]  # fmt: skip
        silent = mt("silent", OTHER, protocol_id=0x40, priority_flag=3)  # in the columns migration 5 added
        await store.accept(silent)
        assert await store.get("silent") == silent
    finally:
        await store.close()


async def test_an_upgraded_database_opens_again_unchanged(old_db: tuple[Path, int]) -> None:
    path, _version = old_db
    for _ in range(2):
        store = SqliteStore(str(path), dedup_window=WINDOW, clock=FixedClock())
        await store.open()
        try:
            assert schema_of(path)[0] == SCHEMA_VERSION
            assert [await store.get(m.id) for m in old_messages()] == old_messages()
        finally:
            await store.close()


async def test_a_database_upgraded_from_schema_14_goes_on_from_its_last_short_id_once_retention_deleted_it(
    tmp_path: Path,
) -> None:
    """Schema 15 keeps the SMPP 3.3 alias given last (short_id_kept) when retention deletes the rows holding it; a
    file of schema 14 has none kept, and the aliases its messages hold count as before."""
    path = tmp_path / "v14.db"
    build_old_database(path, 14)
    delivered = [mt(f"alias-{n}", SUBSCRIBER, MessageStatus.DELIVERED, done_at=NOW - 200) for n in (7, 8)]
    write_messages(path, delivered, accepted_at=NOW - 1000)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE messages SET short_id = '0000000' || substr(id, 7)")  # alias-7: 00000007
    for _ in range(2):  # the upgrade, then a start after retention deleted them
        store = SqliteStore(str(path), dedup_window=WINDOW, clock=FixedClock())
        await store.open()
        try:
            assert await store.last_short_id() == "00000008"
            ended = await store.prunable(NOW, (float("-inf"), 0), 10)
            await store.prune([seq for _done_at, seq in ended], NOW, await store.last_short_id())  # as the gateway's ShortIds
            assert await store.get("alias-8") is None
        finally:
            await store.close()


@pytest.mark.parametrize("version", OLD_VERSIONS, ids=lambda v: f"v{v}")
def test_each_step_applies_alone_from_the_previous_version(tmp_path: Path, version: int) -> None:
    """migrate() from a database left at `version` applies only the missing steps (no 'already exists')."""
    path = tmp_path / "db"
    build_old_database(path, version)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrations.migrate(conn) == SCHEMA_VERSION
        assert migrations.migrate(conn) == SCHEMA_VERSION  # nothing left to do
    finally:
        conn.close()
    assert schema_of(path)[1] == fresh_schema(tmp_path)


async def test_acknowledgements_stored_before_schema_17_still_answer_their_content(tmp_path: Path) -> None:
    """Schema 17 keeps which kinds answer a message (`acknowledged`), filled from the acknowledgements stored before:
    one of each kind answers a message once, whatever version stored it; one cancelled (deleted) answers none."""
    path = tmp_path / "v16.db"
    build_old_database(path, 16)
    asked = [mt(f"asked-{n}", SUBSCRIBER, MessageStatus.DELIVERED, account="sina", source_addr="1066916",
                registered_delivery=0x0C, done_at=NOW - 200 + n) for n in range(2)]  # fmt: skip
    acknowledging = {"account": "handset", "source_addr": SUBSCRIBER, "extra": {"to_account": "sina"}}
    acknowledgements = [
        mt("sme-ack", "1066916", esm_class=0x08, origin_id="asked-0", **acknowledging),
        mt("user-ack", "1066916", esm_class=0x10, origin_id="asked-0", **acknowledging),
        mt("user-ack-cancelled", "1066916", MessageStatus.DELETED, esm_class=0x10, origin_id="asked-1", **acknowledging),
    ]
    write_messages(path, asked + acknowledgements, accepted_at=NOW - 1000)
    store = SqliteStore(str(path), dedup_window=WINDOW, clock=FixedClock())
    await store.open()
    try:
        answering = [store.unacknowledged_content("sina", "1066916", SUBSCRIBER, kind, NOW - 86_400, ()) for kind in (0x08, 0x10)]
        assert answering == ["asked-1", "asked-1"]
    finally:
        await store.close()


def by_destination(counts: dict[tuple[str, str, str], int]) -> dict[str, int]:
    """waiting_counts summed by dest_addr (each key: account, source_addr, dest_addr)."""
    total: dict[str, int] = {}
    for (_account, _source, dest), count in counts.items():
        total[dest] = total.get(dest, 0) + count
    return total


def test_the_readme_names_the_schema_version_and_every_table_staff_read() -> None:
    """'What the database holds' is what staff answer questions from: a migration that adds a table or moves the
    version leaves it to be brought up to date."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What the database holds", 1)[1].split("\n## ", 1)[0]
    assert f"`PRAGMA user_version`, {SCHEMA_VERSION} now" in section.replace("\n", " ").replace("  ", " ")
    assert [t for t in sorted(TABLES_AT_VERSION[SCHEMA_VERSION]) if f"`{t}`" not in section] == []
