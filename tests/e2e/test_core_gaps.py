"""Promises of the README the other end-to-end tests leave out.

- SIGTERM (README, "SMPP 3.4 answers"): the gateway stops listening, refuses new
  submissions, sends no new deliver_sm, lets binds answer what is in flight (up to
  drain_timeout), unbinds them (taking what arrives before their unbind_resp) and
  commits everything. The
  gateway runs as a real process (tests.gateway_process.GatewayProcess); after it
  exits, the store file is read with sqlite3, and a restart on it must deliver nothing
  twice and lose nothing that was acknowledged.
- Routing of MT: "the bind that last carried MO from X if it is still bound and can receive".
- "the store failed to commit: ESME_RSYSERR (nothing was acknowledged)", caused for real:
  an SQLite trigger that aborts the INSERT, another process holding the database's
  write lock for longer than the writer's busy timeout, and a database the gateway may not
  write (run as root without CAP_DAC_OVERRIDE, so that file modes bind it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from smpplib import exceptions as smpp_exceptions

from tests.gateway_process import (
    ROOT,
    GatewayProcess,
    children_of,
    config_file,
    modes_apply,
)
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    Handset,
    RawLink,
    encoded,
    is_receipt,
    receipt_fields,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
ECHO = "10086000"
DRAIN_TIMEOUT = 5.0  # config/default.toml [gateway] drain_timeout, which GatewayProcess runs with


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def phones() -> Iterator[Callable[..., Handset]]:
    """phones(port, number, system_id, mode="trx"): a bound Handset, closed at teardown."""
    opened: list[Handset] = []

    def make(port: int, number: str, system_id: str, mode: str = "trx") -> Handset:
        phone = Handset(port, number)
        opened.append(phone)
        phone.bind(mode, system_id)
        return phone

    yield make
    for phone in opened:
        try:
            phone.close()
        except (OSError, smpp_exceptions.ConnectionError):
            pass  # the gateway already closed it


def stored_mts(db: Path) -> dict[str, tuple[str, str]]:
    """id -> (text, status) of every MT in the store file except receipts (read after the gateway exited)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, short_message, status FROM messages WHERE direction = 'mt' AND esm_class & 4 = 0"
        ).fetchall()
    return {row[0]: (bytes(row[1]).decode(), row[2]) for row in rows}


def stored_receipts(db: Path) -> list[tuple[str, str]]:
    """(id of the message reported on, status) of every receipt in the store file, sorted."""
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT origin_id, status FROM messages WHERE direction = 'mt' AND esm_class & 4 = 4"))


def wait_until_refused(port: int, timeout: float = 10.0) -> None:
    """The gateway stops listening: a new connection to its SMPP port is refused (polled; no event tells)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                pass
        except ConnectionRefusedError:
            return
        except (ConnectionResetError, TimeoutError):
            pass  # caught in the listener's backlog as it closed (reset, or its SYN left unanswered): ask again
        time.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections {timeout}s after SIGTERM")


def no_unbind_within(phone: Handset, seconds: float) -> None:
    with pytest.raises(AssertionError, match="no unbind"):
        phone.expect_request("unbind", timeout=seconds)


def submit_all(sender: Handset, dest: str, texts: list[str], **fields) -> dict[str, str]:
    """Submit each text; all must be acknowledged. Returns message id -> text."""
    acked = {}
    for body in texts:
        resp = sender.submit(dest, body, **fields)
        assert resp.status == ESME_ROK, f"{body!r} refused with 0x{resp.status:02x}"
        acked[resp.message_id.decode()] = body
    return acked


def receipt_ids(pdus) -> list[str]:
    return [receipt_fields(p)["id"] for p in pdus if is_receipt(p)]


def restart_and_check_nothing_comes_twice(
    db: Path, start_gateway, phones, *, for_b: list[str], receipts_for_a: Sequence[str] = ()
) -> None:
    """Restart on the same store: B gets exactly `for_b` (what it had not answered) and A exactly the
    receipts `receipts_for_a`, then nothing more.

    Per subscriber, an MT accepted after the restart goes out after the older ones still waiting
    (README, "Routing of MT"): anything redelivered to B would arrive before a marker sent now;
    a short listen afterwards catches anything else."""
    gateway = start_gateway(db)
    b = phones(gateway.smpp_port, B, "handset2")
    a = phones(gateway.smpp_port, A, "handset")
    marker = submit_all(a, B, ["marker after restart"])
    got = [text(p) for p in b.expect_many(len(for_b) + 1, timeout=15)]
    assert got[-1] == "marker after restart", f"got {got}"
    assert sorted(got[:-1]) == sorted(for_b), f"B got before the marker: {got[:-1]}"
    assert sorted(receipt_ids(a.expect_many(len(receipts_for_a), timeout=15))) == sorted(receipts_for_a)
    b.expect_none(0.5)
    a.expect_none(0.1)
    a.close()
    b.close()
    assert gateway.terminate() == 0
    assert stored_mts(db)[next(iter(marker))][1] == "delivered"


# --------------------------------------------------------------------- SIGTERM drain


def in_flight(db: Path, start_gateway, phones, texts: list[str], **fields) -> tuple[GatewayProcess, Handset, Handset, dict, list]:
    """A gateway process; A sends `texts` to B, whose handset holds every deliver_sm unanswered (in flight).
    (gateway, a, b, {message_id: text} acknowledged, the deliver_sm held)."""
    gateway = start_gateway(db)
    a = phones(gateway.smpp_port, A, "handset")
    b = phones(gateway.smpp_port, B, "handset2")
    b.answering = False  # deliver_sm stay unanswered, in flight, until answer_held()
    acked = submit_all(a, B, texts, **fields)
    held = b.expect_many(len(texts), timeout=10)
    return gateway, a, b, acked, held


def test_sigterm_waits_for_in_flight_deliveries_then_unbinds_and_commits_them(tmp_path: Path, start_gateway, phones) -> None:
    db = tmp_path / "gw.db"
    texts = [f"in flight {i}" for i in range(5)]
    gateway, a, b, acked, held = in_flight(db, start_gateway, phones, texts, registered_delivery=1)
    assert sorted(text(p) for p in held) == sorted(acked.values())
    assert len(b.unanswered) == 5

    sent_at = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    wait_until_refused(gateway.smpp_port, timeout=DRAIN_TIMEOUT - 3)  # it stops listening at once ...
    # ... but keeps the binds while their deliver_sm are unanswered (well inside drain_timeout).
    no_unbind_within(b, 1.0)
    no_unbind_within(a, 0.1)
    assert gateway.proc.poll() is None, "the gateway exited with deliver_sm still in flight"
    # A new submission on a bind that is still there is refused with a status every ESME retries later.
    assert a.submit(B, "after SIGTERM").status == ESME_RTHROTTLED
    assert time.monotonic() - sent_at < DRAIN_TIMEOUT - 2, "too slow to test inside drain_timeout"

    b.answer_held()  # the answers the drain waited for
    # Then every bind is unbound (Handset answers the unbind). The receipts those answers cause are
    # not sent: no new deliver_sm once the gateway stops (they wait in the store for the restart).
    a.expect_request("unbind", timeout=DRAIN_TIMEOUT)
    b.expect_request("unbind", timeout=DRAIN_TIMEOUT)
    assert gateway.wait(30) == 0
    assert any('"smsgw stopped"' in line for line in gateway.log)
    assert not a.inbox, "deliver_sm started after SIGTERM"

    # Everything answered before the unbind is committed as delivered, and a receipt stored for each.
    assert stored_mts(db) == {message_id: (body, "delivered") for message_id, body in acked.items()}
    assert [origin for origin, _ in stored_receipts(db)] == sorted(acked)
    # Nothing comes twice after a restart; a receipt that had not gone out before the unbind comes now.
    restart_and_check_nothing_comes_twice(db, start_gateway, phones, for_b=[], receipts_for_a=sorted(acked))
    assert stored_receipts(db) == [(message_id, "delivered") for message_id in sorted(acked)]


def test_sighup_stops_the_gateway_as_sigterm_does(tmp_path: Path, start_gateway, phones) -> None:
    """SIGHUP (the terminal the gateway runs on closed, or kill -HUP) killed it at once: no drain, no line, exit status
    129, and the deliver_sm in flight went out again at the next start. A terminal's hangup reaches the whole process
    group: the writer process too."""
    db = tmp_path / "gw.db"
    gateway, a, b, acked, _held = in_flight(db, start_gateway, phones, ["in flight"])
    for pid in (gateway.proc.pid, *children_of(gateway.proc.pid)):
        os.kill(pid, signal.SIGHUP)
    no_unbind_within(b, 1.0)  # it waits for the answer in flight, as for SIGTERM
    assert gateway.proc.poll() is None, "the gateway exited with a deliver_sm still in flight"
    b.answer_held()
    a.expect_request("unbind", timeout=DRAIN_TIMEOUT)  # then both binds are unbound (Handset answers the unbind)
    b.expect_request("unbind", timeout=DRAIN_TIMEOUT)
    assert gateway.wait(30) == 0
    events = [json.loads(line)["event"] for line in gateway.log]
    assert "smsgw stopping: new submissions refused, draining" in events and events[-1] == "smsgw stopped"
    assert stored_mts(db) == {message_id: (body, "delivered") for message_id, body in acked.items()}


def test_sighup_is_left_ignored_for_a_gateway_started_under_nohup(tmp_path: Path, start_gateway, phones) -> None:
    """Started under nohup (SIGHUP ignored), the terminal's closing is not for the gateway: it keeps serving."""
    gateway = start_gateway(tmp_path / "gw.db", hangup_ignored=True)
    a = phones(gateway.smpp_port, A, "handset")
    os.kill(gateway.proc.pid, signal.SIGHUP)
    assert a.submit(B, "still here").status == ESME_ROK  # (a stop would refuse it: ESME_RTHROTTLED)
    assert gateway.proc.poll() is None and "smsgw stopping" not in "".join(gateway.log)


def test_sigterm_exits_only_once_the_answers_it_drained_are_committed(tmp_path: Path, start_gateway, phones) -> None:
    """SIGTERM "... commits everything": here the commits are held up by another process holding the
    database's write lock (for less than the writer's 5 s busy timeout) while the binds drain."""
    db = tmp_path / "gw.db"
    gateway, a, b, acked, _held = in_flight(db, start_gateway, phones, [f"slow commit {i}" for i in range(4)])

    gateway.proc.send_signal(signal.SIGTERM)
    wait_until_refused(gateway.smpp_port, timeout=DRAIN_TIMEOUT - 3)
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        # One answer first, so its commit is with the writer process (waiting for the lock) while
        # the others are still queued in the gateway: nothing reports that hand-over, hence the pause.
        first, *rest = b.unanswered
        b.unanswered = [first]
        b.answer_held()
        time.sleep(0.3)
        b.unanswered = rest
        b.answer_held()
        b.expect_request("unbind", timeout=DRAIN_TIMEOUT)  # nothing in flight any more: the binds go
        a.expect_request("unbind", timeout=DRAIN_TIMEOUT)
        with pytest.raises(subprocess.TimeoutExpired):
            gateway.proc.wait(1.0)  # still committing
    finally:
        holder.rollback()
        holder.close()
    assert gateway.wait(30) == 0
    assert stored_mts(db) == {message_id: (body, "delivered") for message_id, body in acked.items()}
    restart_and_check_nothing_comes_twice(db, start_gateway, phones, for_b=[])


def test_sigterm_gives_up_on_unanswered_deliveries_after_drain_timeout_and_they_go_out_after_a_restart(
    tmp_path: Path, start_gateway, phones
) -> None:
    db = tmp_path / "gw.db"
    gateway, a, b, acked, _held = in_flight(db, start_gateway, phones, [f"never answered {i}" for i in range(4)])

    sent_at = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    wait_until_refused(gateway.smpp_port, timeout=DRAIN_TIMEOUT - 3)
    # Only once drain_timeout has run out (and before response_timeout, 10 s, would have ended the
    # deliveries by itself): every bind is unbound and the gateway exits once they answered.
    a.expect_request("unbind", timeout=DRAIN_TIMEOUT + 3)
    b.expect_request("unbind", timeout=1)  # answered, its deliver_sm still not
    assert gateway.wait(30) == 0
    waited = time.monotonic() - sent_at
    assert DRAIN_TIMEOUT - 0.5 <= waited <= DRAIN_TIMEOUT + 3, f"exited {waited:.1f}s after SIGTERM"

    # No deliver_sm_resp came: none is delivered, none is lost.
    assert stored_mts(db) == {message_id: (body, "enroute") for message_id, body in acked.items()}
    restart_and_check_nothing_comes_twice(db, start_gateway, phones, for_b=list(acked.values()))
    assert {status for _, status in stored_mts(db).values()} == {"delivered"}


def test_sigterm_takes_the_answers_that_come_after_its_unbind(tmp_path: Path, start_gateway, phones) -> None:
    """A client answers what is in flight before it answers the unbind (it reads in order): those answers
    count, and what they answered is not sent again after a restart."""
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    a = phones(gateway.smpp_port, A, "handset")
    with RawLink(gateway.smpp_port) as b:  # reads and answers only when told, unbind included
        b.bind("handset2", command="bind_receiver")
        acked = submit_all(a, B, [f"answered late {i}" for i in range(3)])
        held = [b.read() for _ in acked]
        assert {pdu.command for pdu in held} == {"deliver_sm"}

        gateway.proc.send_signal(signal.SIGTERM)
        unbind = b.read(timeout=DRAIN_TIMEOUT + 3)  # in flight all along: unbound once drain_timeout ran out
        assert unbind.command == "unbind"
        b.send(b"".join(encoded("deliver_sm_resp", pdu.sequence) for pdu in held))
        b.send(encoded("unbind_resp", unbind.sequence))
        assert b.is_closed(timeout=5)
    a.expect_request("unbind", timeout=1)
    assert gateway.wait(30) == 0

    assert stored_mts(db) == {message_id: (body, "delivered") for message_id, body in acked.items()}
    restart_and_check_nothing_comes_twice(db, start_gateway, phones, for_b=[])


# --------------------------------------------------------------------------- routing


def mts_arrive_on(receiver: Handset, others: list[Handset], sender: Handset, dest: str, label: str, count: int = 4) -> None:
    """`count` MTs sent to `dest` back to back all arrive on `receiver`, none on `others`.

    Sent before any is read, so each deliver_sm is still unanswered (load 1) when the next is
    routed: least-loaded choice between equal binds would spread them."""
    bodies = [f"{label} {i}" for i in range(count)]
    submit_all(sender, dest, bodies)
    assert sorted(text(p) for p in receiver.expect_many(count)) == sorted(bodies), label
    for other in others:
        other.expect_none(0.2)


def test_an_mt_goes_to_the_bind_that_last_carried_mo_from_its_subscriber(gateway, handset) -> None:
    bind1, bind2 = handset(A), handset(A)  # two transceiver binds of account handset, no address_range
    sender = handset(B)

    assert bind2.submit(B, "MO from A on bind 2").status == ESME_ROK
    assert text(sender.expect()) == "MO from A on bind 2"
    mts_arrive_on(bind2, [bind1], sender, A, "to A after its MO on bind 2")
    mts_arrive_on(bind2, [bind1], sender, A, "again")  # it stays there

    assert bind1.submit(B, "MO from A on bind 1").status == ESME_ROK  # now bind 1 carried the last one
    assert text(sender.expect()) == "MO from A on bind 1"
    mts_arrive_on(bind1, [bind2], sender, A, "to A after its MO on bind 1")

    assert bind2.submit(B, "MO from A on bind 2 again").status == ESME_ROK
    assert text(sender.expect()) == "MO from A on bind 2 again"
    bind2.close()  # unbinds
    mts_arrive_on(bind1, [], sender, A, "to A once bind 2 is gone")


def test_the_last_mo_bind_comes_before_a_bind_whose_address_range_matches(gateway, handset) -> None:
    ranged = handset(A, address_range=A)  # would be preferred for A without the MO
    carrier = handset(A)
    sender = handset(B)
    mts_arrive_on(ranged, [carrier], sender, A, "before any MO")
    assert carrier.submit(B, "MO from A").status == ESME_ROK
    assert text(sender.expect()) == "MO from A"
    mts_arrive_on(carrier, [ranged], sender, A, "after the MO")


def test_the_bind_of_the_last_mo_is_remembered_for_the_subscribers_noted_last(gateway, handset) -> None:
    """A carrier bind up for months kept the bind of every subscriber's last MO for as long as it stayed bound
    (millions of entries): beyond the limit the one noted longest ago is forgotten, and MTs to it go to the bind
    serving it by its account's numbers, as before any MO."""
    gateway.gateway.router.affinity_limit = 3  # (AFFINITY_LIMIT in service)
    a2, a3 = "8613800000002", "8613800000003"  # account handset, as A
    ranged, ranged2 = handset(A, address_range=A), handset(a2, address_range=a2)  # each preferred without an MO
    carrier = handset(A)
    sender = handset(B)
    for source in (A, a2, a3):
        assert carrier.submit(B, f"MO from {source}", source_addr=source).status == ESME_ROK
        assert text(sender.expect()) == f"MO from {source}"
    # B's own MTs are MOs from B: the fourth subscriber noted, and A, noted longest ago, is forgotten
    mts_arrive_on(ranged, [carrier], sender, A, "to A, whose MO was noted longest ago")
    mts_arrive_on(carrier, [ranged2], sender, a2, "to a2, one of the last three noted")


def test_a_subscriber_texting_again_on_the_same_bind_is_noted_last_again(gateway, handset) -> None:
    """A, texting again on the bind of its last MO, was still forgotten first: by its first MO, not its last."""
    gateway.gateway.router.affinity_limit = 3
    a2, a3 = "8613800000002", "8613800000003"
    ranged, ranged2 = handset(A, address_range=A), handset(a2, address_range=a2)
    carrier = handset(A)
    sender = handset(B)
    for source in (A, a2, A, a3):  # A noted again after a2: a2 is the one noted longest ago
        assert carrier.submit(B, f"MO from {source}", source_addr=source).status == ESME_ROK
        assert text(sender.expect()) == f"MO from {source}"
    mts_arrive_on(ranged2, [carrier], sender, a2, "to a2, whose MO was noted longest ago")
    mts_arrive_on(carrier, [ranged], sender, A, "to A, whose last MO came after a2's")


def test_the_last_mo_bind_does_not_take_mts_its_address_range_leaves_out(gateway, handset) -> None:
    """It never read the subscriber's waiting MTs (its range left them out): newer ones would overtake them."""
    y, other = "8613700000142", "8613700000141"  # account handset2
    ranged = handset(y, address_range=other)
    sender = handset(A, bind="tx")
    assert sender.submit(y, "old").status == ESME_ROK
    ranged.expect_none(0.3)  # waits in the store: no bind takes y's MTs
    assert ranged.submit(A, "MO from y").status == ESME_ROK
    assert sender.submit(y, "new").status == ESME_ROK
    ranged.expect_none(0.3)
    receiver = handset(y)
    assert [text(p) for p in receiver.expect_many(2)] == ["old", "new"]


def test_an_mo_on_a_transmitter_bind_does_not_take_the_subscribers_mts(gateway, handset) -> None:
    receiving1, receiving2 = handset(A), handset(A)
    transmitter = handset(A, bind="tx")  # cannot receive
    sender = handset(B)
    assert receiving1.submit(B, "MO on a transceiver").status == ESME_ROK
    assert text(sender.expect()) == "MO on a transceiver"
    assert transmitter.submit(B, "MO on a transmitter").status == ESME_ROK
    assert text(sender.expect()) == "MO on a transmitter"
    # Not to the transmitter (it cannot take them): to a receiving bind of the account, which then
    # shares them as usual (no affinity any more to keep them on receiving1).
    bodies = [f"after the tx MO {i}" for i in range(4)]
    submit_all(sender, A, bodies)
    got1 = [text(p) for p in receiving1.expect_many(2)]
    got2 = [text(p) for p in receiving2.expect_many(2)]
    assert sorted(got1 + got2) == sorted(bodies)


# ------------------------------------------------------------------ failed commits

REFUSED = "refused by the store"


def refuse_inserts(db: Path, condition: str) -> None:
    """Another connection adds a trigger that aborts every INSERT into messages matching `condition`."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            f"CREATE TRIGGER test_refuse BEFORE INSERT ON messages WHEN {condition}"
            " BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
        )


def allow_inserts(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER test_refuse")


def rows_with_text(db: Path, body: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, direction, status FROM messages WHERE short_message = ?", (body.encode(),)
        ).fetchall()


def test_a_failed_commit_is_answered_esme_rsyserr_and_only_that_message_is_lost(make_gateway, handset, tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    refuse_inserts(db, f"NEW.short_message = CAST('{REFUSED}' AS BLOB)")

    # Pipelined, so the refused one may share its transaction with the others: they must not fail with it.
    # Its retransmission (same user_message_reference) in the same burst fails with it too.
    bodies = ["before it", REFUSED, "between", REFUSED, "after it"]
    sequences = [
        a.send(a.make("submit_sm", B, body, user_message_reference=100 + (1 if body == REFUSED else i)))
        for i, body in enumerate(bodies)
    ]
    answers = [a.response(sequence) for sequence in sequences]
    for body, resp in zip(bodies, answers):
        if body == REFUSED:
            assert resp.status == ESME_RSYSERR and not resp.message_id, body
        else:
            assert resp.status == ESME_ROK and resp.message_id, body
    assert sorted(text(p) for p in b.expect_many(3)) == sorted(["before it", "between", "after it"])
    b.expect_none(0.5)  # the refused one is not delivered
    assert rows_with_text(db, REFUSED) == []

    # An MO to a short code: refused the same way, and its service never answers it.
    resp = a.submit(ECHO, REFUSED)
    assert resp.status == ESME_RSYSERR and not resp.message_id
    a.expect_none(0.5)
    assert rows_with_text(db, REFUSED) == []

    # Once the store takes writes again, the client's retransmission (same reference) is a new
    # message, stored and delivered, not answered as a copy of the one that failed.
    allow_inserts(db)
    resp = a.submit(B, REFUSED, user_message_reference=101)
    assert resp.status == ESME_ROK and resp.message_id
    assert text(b.expect()) == REFUSED
    resp = a.submit(ECHO, REFUSED)
    assert resp.status == ESME_ROK
    assert text(a.expect()) == REFUSED
    # The MT, the MO and its echo reply, each stored once. (A delivery is committed just after its
    # deliver_sm_resp, which nothing reports back to the handset: the file is polled for it.)
    expected = [("mo", "processed"), ("mt", "delivered"), ("mt", "delivered")]
    assert eventually(lambda: sorted((d, s) for _, d, s in rows_with_text(db, REFUSED)) == expected), (
        rows_with_text(db, REFUSED)
    )


def test_a_database_locked_by_another_process_fails_the_commit_with_esme_rsyserr(make_gateway, handset, tmp_path: Path) -> None:
    """Another process holds the write lock longer than the writer's busy_timeout (5 s)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert a.submit(B, "before the lock").status == ESME_ROK
    assert text(b.expect()) == "before the lock"
    # Its delivery is committed before the lock is taken, so the writer is idle: the next write is
    # the only one that waits for the lock.
    assert eventually(lambda: [s for _, _, s in rows_with_text(db, "before the lock")] == ["delivered"])

    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a backup tool or an sqlite3 shell may take it
        started = time.monotonic()
        resp = a.request(a.make("submit_sm", B, "while locked", user_message_reference=7), timeout=30)
        assert resp.status == ESME_RSYSERR and not resp.message_id
        assert time.monotonic() - started >= 9.0, "answered before the writer waited out the lock twice"
        # A window of them fails batch by batch (each waiting the lock out twice), not message by message.
        started = time.monotonic()
        sent = [a.send(a.make("submit_sm", B, f"also while locked {i}")) for i in range(8)]
        assert {a.response(seq, timeout=60).status for seq in sent} == {ESME_RSYSERR}
        assert time.monotonic() - started < 35, "the batch was split and each message waited out the lock alone"
    finally:
        holder.rollback()
        holder.close()
    b.expect_none(0.5)
    assert rows_with_text(db, "while locked") == []

    resp = a.submit(B, "while locked", user_message_reference=7)  # sent again once the lock is gone
    assert resp.status == ESME_ROK and resp.message_id
    assert text(b.expect()) == "while locked"
    assert len(rows_with_text(db, "while locked")) == 1


def test_an_mo_to_a_short_code_while_the_store_cannot_commit_is_answered_within_20_s_and_handled_once_it_can(
    make_gateway, handset, tmp_path: Path
) -> None:
    """An MO to a short code is held unstored until its handling commits; when that commit failed, the MO was written
    alone. While the store cannot commit, that second write waited the lock out twice more to fail the same: the MO
    was answered ESME_RSYSERR after 30 to 40 s, where any other submission is after 20 s at most (its own batch's
    two 5 s waits, behind another batch's two)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    a = handset(A, gw=gw)
    assert eventually(lambda: job_runs(db) > 0)  # the jobs' first writes are done: nothing else comes to write
    stats = gw.gateway.store.stats
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        batches = stats.batches
        before = a.send(a.make("submit_sm", B, "the batch before it"))
        assert eventually(lambda: stats.batches > batches)  # its batch waits the lock out: the MO goes in the next
        started = time.monotonic()
        resp = a.request(a.make("submit_sm", ECHO, "while locked"), timeout=60)
        assert resp.status == ESME_RSYSERR and not resp.message_id
        assert time.monotonic() - started < 25, "the MO was written alone after its handling failed to commit"
        assert a.response(before, timeout=30).status == ESME_RSYSERR
    finally:
        holder.rollback()
        holder.close()
    a.expect_none(0.5)  # no reply to it
    assert rows_with_text(db, "while locked") == []

    assert a.submit(ECHO, "while locked").status == ESME_ROK  # sent again once the lock is gone: handled as any MO
    assert text(a.expect()) == "while locked"
    assert eventually(lambda: sorted((d, s) for _, d, s in rows_with_text(db, "while locked")) == [
        ("mo", "processed"), ("mt", "delivered")])


def job_runs(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT count(*) FROM job_runs").fetchone()[0]


def readiness(gw) -> tuple[int, dict]:
    """GET /ready: (HTTP status, JSON body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.http_port}/ready", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_mt_acknowledged_while_the_store_cannot_commit_is_marked_delivered_once_it_can_and_not_sent_again(
    make_gateway, handset, tmp_path: Path
) -> None:
    """Its `delivered` failed to commit and was dropped: the MT stayed enroute, the sender got no receipt, and
    the subscriber got it a second time at the next bind."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert eventually(lambda: job_runs(db) > 0)  # the jobs' first writes are done (see the test below)
    b.answering = False
    sent = a.submit(B, "acknowledged while locked", registered_delivery=1)
    assert text(b.expect()) == "acknowledged while locked"
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        b.answer_held()  # ESME_ROK, while `delivered` cannot be committed
        assert eventually(lambda: readiness(gw)[0] == 503, timeout=30)
    finally:
        holder.rollback()
        holder.close()
    receipt = receipt_fields(a.expect(predicate=is_receipt, timeout=15))
    assert (receipt["id"], receipt["stat"]) == (sent.message_id.decode(), "DELIVRD")
    assert rows_with_text(db, "acknowledged while locked")[0][2] == "delivered"
    b.close()
    handset(B, gw=gw).expect_none(0.5)


def test_a_writer_process_killed_is_replaced_at_once_and_ready_says_so_while_none_can_start(make_gateway, handset, tmp_path: Path) -> None:
    """A killed writer process was replaced only at the next write, and if none could start (the database's
    directory gone), every submission failed ESME_RSYSERR while /ready said 200 "ok"."""
    home = tmp_path / "data"
    home.mkdir()
    gw = make_gateway(db_path=home / "gw.db")
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert eventually(lambda: job_runs(home / "gw.db") > 0)  # the jobs' first writes are done: nothing writes now
    writer = gw.gateway.store.writer
    first = writer.pid
    os.kill(first, signal.SIGKILL)
    assert eventually(lambda: writer.pid not in (None, first))  # nothing written meanwhile
    assert a.submit(B, "writer replaced").status == ESME_ROK  # (written once the successor is ready)
    assert text(b.expect()) == "writer replaced"
    assert readiness(gw)[0] == 200
    home.rename(tmp_path / "moved")  # no new writer process can open the database now (nor is one started: it is gone)
    os.kill(writer.pid, signal.SIGKILL)
    assert eventually(lambda: readiness(gw) == (503, {"ready": False, "store": "database file gone", "binds": 2, "mt_waiting": 0}))
    assert a.request(a.make("submit_sm", B, "no writer"), timeout=30).status == ESME_RSYSERR
    (tmp_path / "moved").rename(home)
    assert eventually(lambda: readiness(gw)[0] == 200, timeout=15)  # found by the store's own probes
    assert a.submit(B, "writer back").status == ESME_ROK
    assert text(b.expect()) == "writer back"


def logged(gw: GatewayProcess, event: str) -> list[dict]:
    return [record for record in map(json.loads, list(gw.log)) if record.get("event") == event]


@pytest.mark.parametrize("lock_ends_during_the_stop", [True, False])
def test_sigterm_while_the_store_cannot_commit_waits_for_a_delivery_answered_meanwhile(
    handset, tmp_path: Path, lock_ends_during_the_stop: bool
) -> None:
    """The stop gave up a delivered MT's final status that the store could not commit yet, said "smsgw stopped"
    and exited 0; the next start sent the MT again. Now the stop writes it again up to drain_timeout; if it still
    cannot, an error line says so and the exit status is 1 (the MT does go out again)."""
    db = tmp_path / "gw.db"
    gw = GatewayProcess(db, config=config_file(tmp_path, drain_timeout=12 if lock_ends_during_the_stop else 1))
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert eventually(lambda: job_runs(db) > 0)  # the jobs' first writes are done (they would wait on the lock too)
    b.answering = False
    assert a.submit(B, "answered while locked").status == ESME_ROK
    assert text(b.expect()) == "answered while locked"
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        b.answer_held()  # ESME_ROK, while `delivered` cannot be committed
        assert eventually(lambda: logged(gw, "final status not committed; writing it again until it is"), timeout=30)
        gw.proc.send_signal(signal.SIGTERM)
        assert eventually(lambda: logged(gw, "smsgw stopping: new submissions refused, draining"))
        if lock_ends_during_the_stop:
            holder.rollback()
        status = gw.terminate()
    finally:
        holder.rollback()
        holder.close()
    a.close()
    b.close()
    again = GatewayProcess(db)
    try:
        b = handset(B, gw=again)
        if lock_ends_during_the_stop:
            assert status == 0 and logged(gw, "smsgw stopped")
            assert rows_with_text(db, "answered while locked")[0][2] == "delivered"
            b.expect_none(0.5)  # not sent again
        else:
            [error] = logged(gw, "smsgw stopped with final statuses not committed: those MTs go out again at the next start")
            assert status == 1 and error["count"] == 1 and error["level"] == "error"
            assert text(b.expect()) == "answered while locked"  # as that line says
    finally:
        again.terminate()


def test_sigterm_while_an_expiry_cannot_be_committed_is_no_error(handset, tmp_path: Path) -> None:
    """Only a delivery answered goes out again when its final status is not committed by the stop's end; an MT
    that expired meanwhile is simply expired again at the next start (the stop had said it went out again, exit 1)."""
    db = tmp_path / "gw.db"
    gw = GatewayProcess(db, config=config_file(tmp_path, drain_timeout=1))
    a = handset(A, gw=gw)
    assert eventually(lambda: job_runs(db) > 0)
    assert a.submit(B, "expires while locked", validity_period="000000000002000R").status == ESME_ROK  # B not bound
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        assert eventually(lambda: logged(gw, "final status not committed; writing it again until it is"), timeout=30)
        a.close()
        status = gw.terminate()
    finally:
        holder.rollback()
        holder.close()
    assert status == 0 and logged(gw, "smsgw stopped")
    assert not logged(gw, "smsgw stopped with final statuses not committed: those MTs go out again at the next start")


def test_ready_is_503_while_the_store_cannot_commit_and_200_again_once_it_can(make_gateway, handset, tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db)
    a = handset(A, gw=gw)
    assert readiness(gw) == (200, {"ready": True, "store": "ok", "binds": 1, "mt_waiting": 0})
    # The scheduled jobs' first run writes too (billing records its month): let it be done before the lock,
    # so that nothing but the gateway's own retries can find out the lock is gone. (No event says it: polled.)
    assert eventually(lambda: job_runs(db) > 0)

    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")  # longer than the writer waits (twice its 5 s busy timeout)
        assert a.request(a.make("submit_sm", B, "while locked"), timeout=30).status == ESME_RSYSERR
        assert readiness(gw) == (503, {"ready": False, "store": "cannot commit", "binds": 1, "mt_waiting": 0})
    finally:
        holder.rollback()
        holder.close()
    # Nothing is sent meanwhile: the gateway finds out by itself that it can commit again.
    assert eventually(lambda: readiness(gw)[0] == 200, timeout=15)
    assert readiness(gw)[1]["store"] == "ok"


def test_a_gateway_started_on_a_database_another_process_keeps_locked_is_not_ready_until_the_lock_ends(
    start_gateway, handset, tmp_path: Path
) -> None:
    """The writer process's start check found the database locked and said nothing: /ready was 200 "ok" and the
    first submission got ESME_RSYSERR 10 s later (two 5 s waits for the lock)."""
    db = tmp_path / "gw.db"
    assert start_gateway(db).terminate() == 0
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")  # (an operator's sqlite3 shell, a backup tool)
        gw = start_gateway(db)
        assert readiness(gw) == (503, {"ready": False, "store": "cannot commit", "binds": 0, "mt_waiting": 0})
    finally:
        holder.rollback()
        holder.close()
    assert eventually(lambda: readiness(gw)[0] == 200, timeout=15)  # found by the store's own probes
    a = handset(A, gw=gw)
    assert a.submit(B, "lock gone").status == ESME_ROK
    [error] = logged(gw, "store cannot commit")
    assert "database is locked" in error["error"]
    assert eventually(lambda: logged(gw, "store commits again"), 5)  # (written as that submission commits: see below)
    [again] = logged(gw, "store commits again")
    assert error["database"] == again["database"] == str(db)  # as `database created` and `smsgw ready` name it


def test_ready_counts_the_binds_not_the_connections_that_never_bound(make_gateway, handset) -> None:
    """/ready's "binds" is what a load balancer or operator reads as the clients served: a connection that never
    sent a bind (a port probe, a client stuck before its bind) counted as one."""
    gw = make_gateway()
    handset(A, gw=gw)
    with RawLink(gw.smpp_port):  # connected, never bound
        assert eventually(lambda: len(gw.gateway.connections) == 2)
        assert readiness(gw) == (200, {"ready": True, "store": "ok", "binds": 1, "mt_waiting": 0})


def test_a_database_that_cannot_be_written_is_not_ready_until_it_can_be_again(start_gateway, handset, tmp_path: Path) -> None:
    """SQLite opens a file its process may not write read-only, saying nothing: a writer process started after the
    database was made read-only (chmod 444, the one before killed) failed every write as "attempt to write a readonly
    database", each taken as its own write's fault: every submission ESME_RSYSERR while /ready said 200 "ok", and
    chmod 644 changed nothing, the writer's connection staying read-only. Now a writer process that cannot write
    refuses to run, and one starts once the file can be written again."""
    db = tmp_path / "gw.db"
    gw = start_gateway(db, file_modes_apply=True)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    assert eventually(lambda: job_runs(db) > 0)  # the jobs' first writes are done: nothing writes now
    db.chmod(0o444)
    [writer] = children_of(gw.proc.pid)
    os.kill(writer, signal.SIGKILL)  # (the OOM killer, an operator): its successor would open the file read-only
    assert eventually(lambda: readiness(gw) == (503, {"ready": False, "store": "cannot commit", "binds": 2, "mt_waiting": 0}))
    assert a.request(a.make("submit_sm", B, "read-only"), timeout=30).status == ESME_RSYSERR
    db.chmod(0o644)
    assert eventually(lambda: readiness(gw)[0] == 200)  # found by the store's own probes
    assert a.submit(B, "writable again").status == ESME_ROK
    assert text(b.expect()) == "writable again"
    assert len(logged(gw, "store cannot commit")) == 1
    assert len(logged(gw, "SQLite writer process cannot be restarted")) == 1
    # The status of the writer killed, not of the successors that could not start meanwhile: it said None.
    assert eventually(lambda: logged(gw, "SQLite writer process restarted"), 5)
    [restarted] = logged(gw, "SQLite writer process restarted")
    assert restarted["exit_status"] == -signal.SIGKILL


def test_a_writer_process_that_cannot_start_at_the_open_file_limit_says_so(start_gateway, handset, tmp_path: Path) -> None:
    """The writer process killed while the connections held every descriptor: its successor could not start, and the
    line said `OSError(-1, 'Unknown error -1')` (uvloop's spawn), nothing of the limit; the operator's one clue a
    warning about connections logged seconds before, if at all (the connection-limits review)."""
    gw = start_gateway(tmp_path / "gw.db", open_files=(100, 100))
    a = handset(A, gw=gw)
    held = lambda: len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
    links = []
    try:
        while held() < 100 - 2 and len(links) < 100:  # the limit, but for a descriptor or two
            links.append(socket.create_connection(("127.0.0.1", gw.smpp_port)))
        assert eventually(lambda: held() >= 100 - 2, 5)
        [writer] = children_of(gw.proc.pid)
        os.kill(writer, signal.SIGKILL)
        assert a.request(a.make("submit_sm", B, "at the limit"), timeout=30).status == ESME_RSYSERR
        assert eventually(lambda: logged(gw, "SQLite writer process cannot be restarted"), 10)
    finally:
        for link in links:
            link.close()
    [line] = logged(gw, "SQLite writer process cannot be restarted")
    assert line["hint"] == "the open-file limit is reached: raise `ulimit -n`", line
    assert eventually(lambda: a.submit(B, "below it again").status == ESME_ROK, 15)
    # (the line is written before that submission commits, but the thread reading the gateway's pipe may not have
    # appended it to gw.log yet: the final CI of session 37 failed once so)
    assert eventually(lambda: logged(gw, "SQLite writer process restarted"), 5)
    [restarted] = logged(gw, "SQLite writer process restarted")
    assert restarted["exit_status"] == -signal.SIGKILL  # (the writer killed: it said None, the spawn having failed)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path`, unmounted at the end (skips the test where mounting is not permitted)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"needs a small filesystem of its own, and mount is not permitted here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(filler: Path) -> None:
    """Write zeros into `filler` until its filesystem has no room left."""
    with filler.open("wb") as out, contextlib.suppress(OSError):  # ENOSPC
        while True:
            out.write(bytes(1 << 20))
            out.flush()


def test_a_full_disk_is_not_ready_until_there_is_room_again(start_gateway, handset, tmp_path: Path) -> None:
    """A transaction that needs few pages (the store's probe, a small batch) commits on a full disk, into -wal space
    a failed one left: /ready said 200 "ok" on a disk still full, the next submission got ESME_RSYSERR, and under
    traffic the log flapped between "store cannot commit" and "store commits again" once a second. Now, once the
    disk was full, the store commits again only once its filesystem has room."""
    with small_filesystem(tmp_path / "small", "16m") as small:
        gw = start_gateway(small / "gw.db")
        try:
            a = handset(A, gw=gw)
            assert eventually(lambda: job_runs(small / "gw.db") > 0)  # the jobs' first writes are done
            fill(small / "filler")
            with (small / "filler").open("r+b") as filler:  # a little room: the batches that fill it leave -wal space
                filler.truncate(filler.seek(0, os.SEEK_END) - 256 * 1024)
            statuses: set[int] = set()
            for burst in range(200):
                sent = a.send_together(*(a.make("submit_sm", f"86137{burst:04d}{n:04d}", "x" * 140) for n in range(20)))
                statuses |= {a.response(seq, timeout=30).status for seq in sent}
                if ESME_RSYSERR in statuses:
                    break
            assert ESME_RSYSERR in statuses
            assert readiness(gw)[1]["store"] == "cannot commit"
            # Probes go every second meanwhile, and commit: still not ready.
            assert not eventually(lambda: readiness(gw)[0] != 503, timeout=3.0, interval=0.1)
            (small / "filler").unlink()
            assert eventually(lambda: readiness(gw)[0] == 200)
            assert readiness(gw)[1]["store"] == "ok"
            assert a.submit(B, "room again").status == ESME_ROK
            a.close()
            assert gw.terminate() == 0
        finally:
            if gw.proc.poll() is None:
                gw.proc.kill()  # (before the unmount)
                gw.proc.wait(10)
    assert len(logged(gw, "store cannot commit")) == 1
    assert len(logged(gw, "store commits again")) == 1


def test_a_database_whose_wal_cannot_be_written_refuses_the_start(start_gateway, tmp_path: Path) -> None:
    """It started ('smsgw ready', /ready 200) and answered every submission ESME_RSYSERR."""
    db = tmp_path / "gw.db"
    assert start_gateway(db).terminate() == 0
    # A process that read the database and died leaves its -wal and -shm behind.
    read_and_die = "import os, sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT 1 FROM messages'); os._exit(0)"
    subprocess.run([sys.executable, "-c", read_and_die, str(db)], check=True)
    for left in (tmp_path / "gw.db-wal", tmp_path / "gw.db-shm"):
        left.chmod(0o444)
    refused = subprocess.run(
        [*modes_apply(), sys.executable, "-m", "gateway", "serve", "--db", str(db), "--host", "127.0.0.1",
         "--smpp-port", "0", "--http-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"smsgw: cannot start: cannot open SQLite store at {str(db)!r}: attempt to write a readonly database"
        " (the database file, its -wal or -shm file, or their directory, cannot be written by this process)"
    )


STOPPED_WITH_THE_FILE_GONE = ("smsgw stopped with final statuses not committed: those MTs go out again at the next "
                              "start on the database file gone, once it is moved back to its path")  # fmt: skip
SET_ASIDE = ("the database file was gone at the stop: its -wal and -shm files, which hold its last commits, were renamed "
             "aside; moved back to its path (mv), the file gets them back at the next start, which refuses to start "
             "while another file or none is there")  # fmt: skip


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_while_the_gateway_runs_is_not_written_to(
    start_gateway, handset, tmp_path: Path, how: str
) -> None:
    """The writer went on committing into the file it had open: submissions after an `rm` got ESME_ROK, /ready said
    200 and the stop exited 0, and all of it was lost with the deleted file (a copy moved over it the same: the
    gateway wrote into the file that was no longer there). Now the store cannot commit, for good: the gateway must be
    restarted, and an answered delivery it could not commit makes the stop's exit status 1."""
    db = tmp_path / "gw.db"
    gw = start_gateway(db, config_file(tmp_path, drain_timeout=1))
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "before").status == ESME_ROK
    assert text(b.expect()) == "before"
    if how == "deleted":
        db.unlink()
    else:
        replacement = db.read_bytes()  # a copy of it (what was checkpointed), moved over it
        (tmp_path / "copy.db").write_bytes(replacement)
        (tmp_path / "copy.db").replace(db)
    expected = (503, {"ready": False, "store": "database file gone", "binds": 2, "mt_waiting": 1})  # ("before")
    assert eventually(lambda: readiness(gw) == expected)  # nothing written meanwhile: found by the store itself
    assert eventually(lambda: logged(gw, "store cannot commit"))  # (the line may be read after /ready answers)
    [error] = logged(gw, "store cannot commit")
    assert str(db) in error["error"] and "restart smsgw" in error["error"]
    assert a.request(a.make("submit_sm", B, "after"), timeout=30).status == ESME_RSYSERR
    b.answer_held()  # "before" delivered: that cannot be committed
    assert eventually(lambda: logged(gw, "final status not committed; writing it again until it is"))
    a.close()
    b.close()
    assert gw.terminate() == 1
    assert logged(gw, STOPPED_WITH_THE_FILE_GONE)
    if how == "deleted":
        assert not db.exists(), "a connection of the gateway created a database in its place"
    else:
        assert db.read_bytes() == replacement, "the file put in its place was written to"
    # The gone file's -wal and -shm (SQLite cannot fold them into a file gone) are set aside, not left at the path: a
    # restart paired them with the file put there, and served the gone file's messages instead of the restored ones.
    [aside] = logged(gw, SET_ASIDE)
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert not [r for r in logged(gw, "scheduled job failed") if "exception" in r]  # the store said why, once
    assert sorted(Path(name).name.split(".of-")[0] for name in aside["renamed"]) == ["gw.db-shm", "gw.db-wal"]


@pytest.mark.parametrize("back", ["moved", "copied"])
def test_a_database_moved_away_while_the_gateway_ran_gets_its_last_commits_back_once_moved_back(
    start_gateway, handset, tmp_path: Path, back: str
) -> None:
    """The stop set the file's -wal and -shm aside, and they held every commit since its last checkpoint (the file
    itself had no tables yet): moved back, the restart opened it without them, logged `database created`, and the MT
    acknowledged before, its delivery answered, was gone (its stop's line said it would go out again). Now the start
    puts them back beside the file moved back, and the MT goes out; a copy of it at its path (a file it cannot tell
    from another database) is refused, naming them, and they are left as they were."""
    db, moved = tmp_path / "gw.db", tmp_path / "moved.db"
    config = config_file(tmp_path, drain_timeout=1)
    gw = start_gateway(db, config)
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "acknowledged").status == ESME_ROK
    assert text(b.expect()) == "acknowledged"
    db.rename(moved)
    assert eventually(lambda: readiness(gw)[1]["store"] == "database file gone")
    b.answer_held()  # (cannot be committed: the MT goes out again at the next start)
    assert eventually(lambda: logged(gw, "final status not committed; writing it again until it is"))
    a.close()
    b.close()
    assert gw.terminate() == 1
    assert logged(gw, STOPPED_WITH_THE_FILE_GONE)
    [aside] = logged(gw, SET_ASIDE)
    if back == "moved":
        moved.rename(db)
        gw = start_gateway(db, config)
        [put_back] = logged(gw, "the database file is back at its path: the -wal and -shm set aside from it at a stop "
                                "are put back beside it")  # fmt: skip
        assert sorted(put_back["renamed"]) == sorted(aside["renamed"])
        assert not logged(gw, "database created")
        assert text(handset(B, gw=gw).expect()) == "acknowledged"
        assert gw.terminate() == 0
        return
    shutil.copyfile(moved, db)
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--db", str(db), "--host", "127.0.0.1",
         "--smpp-port", "0", "--http-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("smsgw: cannot start: ")
    assert all(name in refused.stderr for name in aside["renamed"])
    assert f"if the file at {db} is the one gone copied back, rename them to {db}-wal and {db}-shm" in refused.stderr
    assert all(Path(name).exists() for name in aside["renamed"]) and not Path(f"{db}-wal").exists()


def test_files_an_earlier_smsgw_set_aside_beside_a_database_moved_back_do_not_stop_the_start(
    start_gateway, handset, tmp_path: Path
) -> None:
    """Set aside by the version before the names said which file they are of, its start went on without them; after
    the upgrade every start was refused ("the file there now is another one"), on the file moved back and used since
    too. They are left where they are, named in a warning line."""
    db = tmp_path / "gw.db"
    sqlite3.connect(db).close()  # (a file at its path, which their names cannot be checked against)
    earlier = [f"{db}{suffix}.of-the-file-gone-20261206T120000-4242" for suffix in ("-wal", "-shm")]
    for name in earlier:
        Path(name).write_bytes(b"an earlier smsgw's")
    gw = start_gateway(db, config_file(tmp_path))
    [not_used] = logged(gw, "files set aside beside the database at a stop are not used: set aside by an earlier smsgw "
                            "(their names do not say which file they are of), or an -shm without its -wal (an index "
                            "SQLite rebuilds); move them elsewhere")  # fmt: skip
    assert sorted(not_used["not_used"]) == sorted(earlier)
    b = handset(B, gw=gw)
    assert handset(A, gw=gw).submit(B, "served").status == ESME_ROK
    assert text(b.expect()) == "served"
    assert gw.terminate() == 0
    assert all(Path(name).read_bytes() == b"an earlier smsgw's" for name in earlier)


def test_a_database_path_through_a_file_refuses_the_start_naming_the_file_in_the_way(tmp_path: Path) -> None:
    """`--db <a file>/gw.db` read "smsgw: cannot start: [Errno 17] File exists: '<the file>'": neither the database nor
    what was wrong with its path."""
    in_the_way = tmp_path / "notes"
    in_the_way.write_text("not a directory")
    db = in_the_way / "gw.db"
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--db", str(db), "--host", "127.0.0.1", "--smpp-port", "0",
         "--http-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (f"smsgw: cannot start: cannot make the directory of the database {str(db)!r}: "
                              f"{str(in_the_way)!r} is a file, not a directory\n")  # fmt: skip
    assert in_the_way.read_text() == "not a directory"
