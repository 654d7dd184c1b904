"""SIGKILL in the middle of a load of MO and MT: nothing acknowledged is lost or handled twice.

The gateway runs as a real process (`python -m gateway serve`); smpplib
handsets pipeline messages at it; the test kills it with SIGKILL once part
of the load is acknowledged, restarts it on the same database, retransmits
every message (acknowledged or not, as a client that lost its connection
would) and then checks what the handsets received and what the store holds.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts

from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
ECHO = "10086000"
A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
N = 240  # messages: even i -> MO to the echo short code, odd i -> P2P to B


class Handset:
    """An smpplib transceiver whose reader thread records every submit_sm_resp and deliver_sm."""

    def __init__(self, port: int, system_id: str) -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=30, allow_unknown_opt_params=True)
        self.client.connect()
        self.client.bind_transceiver(system_id=system_id, password=system_id)
        self.lock = threading.Lock()  # smpplib answers deliver_sm from the reader thread
        self.changed = threading.Condition()
        self.acks: dict[int, str] = {}  # sequence -> message_id
        self.received: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, source: str, dest: str, text: str, reference: int, **fields: object) -> int:
        pdu = smpplib.smpp.make_pdu(
            "submit_sm", client=self.client, source_addr_ton=1, source_addr_npi=1, source_addr=source,
            dest_addr_ton=1, dest_addr_npi=1, destination_addr=dest, short_message=text.encode(),
            user_message_reference=reference, **fields,
        )  # fmt: skip
        with self.lock:
            self.client.send_pdu(pdu)
        return pdu.sequence

    def _read(self) -> None:
        try:
            while True:
                pdu = self.client.read_pdu()
                with self.changed:
                    if pdu.command == "submit_sm_resp" and pdu.status == 0:
                        self.acks[pdu.sequence] = pdu.message_id.decode()
                    elif pdu.command == "deliver_sm":
                        self.received.append(pdu.short_message.decode())
                        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.client)
                        resp.sequence = pdu.sequence
                        with self.lock:
                            self.client.send_pdu(resp)
                    self.changed.notify_all()
        except (smpplib.exceptions.ConnectionError, OSError, AttributeError):
            with self.changed:
                self.changed.notify_all()

    def wait_until(self, condition, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:
            pass


def text_of(i: int) -> str:
    return f"mo-{i}" if i % 2 == 0 else f"p2p-{i}"


def send_all(a: Handset, numbers: range = range(N)) -> dict[int, int]:
    """Pipeline these messages; returns sequence -> message number."""
    sequences = {}
    for i in numbers:
        try:
            sequences[a.send(A, ECHO if i % 2 == 0 else B, text_of(i), reference=i + 1)] = i
        except (smpplib.exceptions.ConnectionError, OSError):
            break
    return sequences


@pytest.mark.slow
def test_sigkill_during_load_loses_nothing_and_handles_nothing_twice(tmp_path: Path, start_gateway) -> None:
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    a, b = Handset(gateway.smpp_port, "handset"), Handset(gateway.smpp_port, "handset2")

    # Pipeline the first half, kill the gateway once a sixth of the load is acknowledged (while
    # the rest of that half is in flight), then the client goes on sending into the dead link.
    first_sequences = send_all(a, range(N // 2))
    assert a.wait_until(lambda: len(a.acks) >= N // 6, 30)
    gateway.kill()
    first_sequences |= send_all(a, range(N // 2, N))
    acked_before = {first_sequences[seq]: mid for seq, mid in a.acks.items() if seq in first_sequences}
    # What was delivered before the kill counts: a recognised retransmission is not delivered again.
    received_before = set(a.received) | set(b.received)
    a.close()
    b.close()
    print(f"acknowledged before the kill: {len(acked_before)}/{N}, delivered before: {len(received_before)}")
    assert N // 6 <= len(acked_before) <= N // 2, "the kill must land in the middle of the load"

    # Restart on the same database; the client retransmits everything with the same references.
    gateway = start_gateway(db)
    a, b = Handset(gateway.smpp_port, "handset"), Handset(gateway.smpp_port, "handset2")
    second_sequences = send_all(a)
    assert len(second_sequences) == N
    mo_texts = {text_of(i) for i in range(0, N, 2)}
    p2p_texts = {text_of(i) for i in range(1, N, 2)}
    assert a.wait_until(lambda: len(a.acks) == N and mo_texts <= received_before | set(a.received), 60), (
        f"acks {len(a.acks)}/{N}, echo replies missing: {sorted(mo_texts - received_before - set(a.received))[:10]}"
    )
    assert b.wait_until(lambda: p2p_texts <= received_before | set(b.received), 60), (
        f"P2P missing: {sorted(p2p_texts - received_before - set(b.received))[:10]}"
    )

    # Every message acknowledged before the kill is recognised, with the same id.
    acked_after = {second_sequences[seq]: mid for seq, mid in a.acks.items()}
    for i, message_id in acked_before.items():
        assert acked_after[i] == message_id, f"message {i} got a new id after the restart"

    a.close()
    b.close()
    assert gateway.terminate() == 0

    with sqlite3.connect(db) as conn:
        mos = conn.execute("SELECT id, short_message, status FROM messages WHERE direction = 'mo'").fetchall()
        replies = conn.execute("SELECT origin_id, status FROM messages WHERE direction = 'mt' AND origin_id IS NOT NULL AND esm_class = 0").fetchall()
        p2p = conn.execute("SELECT short_message, status FROM messages WHERE direction = 'mt' AND account = 'handset'").fetchall()
    # Each MO stored once, handled once: exactly one echo reply stored per MO.
    assert sorted(bytes(m[1]).decode() for m in mos) == sorted(mo_texts)
    assert all(m[2] == "processed" for m in mos)
    reply_count: dict[str, int] = {}
    for origin_id, _status in replies:
        reply_count[origin_id] = reply_count.get(origin_id, 0) + 1
    assert {m[0]: reply_count.get(m[0], 0) for m in mos} == {m[0]: 1 for m in mos}
    # Each P2P message stored once and delivered.
    assert sorted(bytes(m[0]).decode() for m in p2p) == sorted(p2p_texts)
    assert {m[1] for m in p2p} == {"delivered"}


class Receiver(Handset):
    """A handset that only receives: records who each deliver_sm was for, in arrival order."""

    def __init__(self, port: int, system_id: str, *, reading: threading.Event | None = None) -> None:
        self.delivered_to: list[tuple[str, str]] = []  # (destination, text)
        self.reading = reading  # if given, nothing is read (or answered) until it is set
        super().__init__(port, system_id)

    def _read(self) -> None:
        if self.reading is not None:
            self.reading.wait()
        try:
            while True:
                pdu = self.client.read_pdu()
                if pdu.command != "deliver_sm":
                    continue
                resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.client)
                resp.sequence = pdu.sequence
                with self.lock:
                    self.client.send_pdu(resp)
                with self.changed:
                    self.delivered_to.append((pdu.destination_addr.decode(), pdu.short_message.decode()))
                    self.changed.notify_all()
        except (smpplib.exceptions.ConnectionError, OSError, AttributeError):
            with self.changed:
                self.changed.notify_all()


@pytest.mark.slow
def test_a_backlog_bigger_than_one_read_goes_out_in_full_after_a_restart(tmp_path: Path, start_gateway) -> None:
    """More MTs waiting than the gateway ever reads at once (it used to load only the first 10,000 at start)."""
    backlog, destinations = 10_500, 21  # 500 per subscriber: under the per-subscriber queue limit
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    a = Handset(gateway.smpp_port, "handset")
    for i in range(backlog):
        a.send(A, f"86137{i % destinations:08d}", f"backlog-{i}", reference=i + 1)
    assert a.wait_until(lambda: len(a.acks) == backlog, 120), f"acknowledged {len(a.acks)}/{backlog}"
    assert a.received == []  # handset2 is not bound: everything waits
    a.close()
    gateway.kill()

    gateway = start_gateway(db)
    b = Receiver(gateway.smpp_port, "handset2")
    assert b.wait_until(lambda: len(b.delivered_to) >= backlog, 120), f"delivered {len(b.delivered_to)}/{backlog}"
    b.close()
    assert gateway.terminate() == 0

    assert sorted(text for _, text in b.delivered_to) == sorted(f"backlog-{i}" for i in range(backlog))  # each once
    for destination in range(destinations):  # and each subscriber's in the order they were sent
        number = f"86137{destination:08d}"
        got = [int(text.split("-")[1]) for to, text in b.delivered_to if to == number]
        assert got == list(range(destination, backlog, destinations))
    with sqlite3.connect(db) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM messages WHERE direction = 'mt' GROUP BY status").fetchall()
    assert statuses == [("delivered", backlog)]


def test_an_mt_accepted_while_the_backlog_goes_out_waits_behind_the_older_ones(tmp_path: Path, start_gateway) -> None:
    """Per subscriber, MTs go out in the order they were accepted, also when older ones are read back from the store."""
    per_subscriber, destinations = 900, 3  # 2,700 waiting: more than the gateway hands a bind before it acknowledges
    backlog = per_subscriber * destinations
    gateway = start_gateway(tmp_path / "gw.db")
    a = Handset(gateway.smpp_port, "handset")
    for i in range(backlog):
        a.send(A, f"86137{i % destinations:08d}", f"old-{i}", reference=i + 1)
    assert a.wait_until(lambda: len(a.acks) == backlog, 120), f"acknowledged {len(a.acks)}/{backlog}"

    answering = threading.Event()
    b = Receiver(gateway.smpp_port, "handset2", reading=answering)  # the backlog starts going out; nothing answered yet
    last = f"86137{destinations - 1:08d}"  # the subscriber whose waiting MTs are read back last
    sequence = a.send(A, last, "new", reference=backlog + 1)
    assert a.wait_until(lambda: sequence in a.acks, 30)
    answering.set()
    assert b.wait_until(lambda: len(b.delivered_to) >= backlog + 1, 120), f"delivered {len(b.delivered_to)}/{backlog + 1}"
    a.close()
    b.close()
    assert gateway.terminate() == 0

    for destination in range(destinations):
        number = f"86137{destination:08d}"
        got = [text for to, text in b.delivered_to if to == number]
        expected = [f"old-{i}" for i in range(destination, backlog, destinations)] + (["new"] if number == last else [])
        assert got == expected, f"{number}: 'new' went out at {got.index('new') if 'new' in got else None} of {len(got)}"


def test_mts_replaced_by_acknowledged_submissions_do_not_go_out_after_a_sigkill(tmp_path: Path, start_gateway) -> None:
    """submit_sm with replace_if_present_flag 1, killed as soon as the last is acknowledged: an answer is a promise
    that what it replaced will not go out. Answered at its own commit, the cancellations committed after it, about
    half the replaced MTs were delivered after the restart beside their replacements (each with a DELIVRD receipt)."""
    count = 200
    subscribers = [f"86137{i:08d}" for i in range(count)]  # account handset2: not bound, everything waits
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    a = Handset(gateway.smpp_port, "handset")
    for i, to in enumerate(subscribers):
        a.send(A, to, "old", reference=i + 1)
    assert a.wait_until(lambda: len(a.acks) == count, 30), f"acknowledged {len(a.acks)}/{count}"
    replacements = [a.send(A, to, "new", reference=count + i + 1, replace_if_present_flag=1) for i, to in enumerate(subscribers)]
    assert a.wait_until(lambda: all(sequence in a.acks for sequence in replacements), 30)
    gateway.kill()
    a.close()

    gateway = start_gateway(db)
    b = Receiver(gateway.smpp_port, "handset2")
    # A subscriber's MTs go out in the order they were accepted: one replaced, had it survived, came before its "new".
    assert b.wait_until(lambda: [text for _, text in b.delivered_to].count("new") >= count, 30), f"{len(b.delivered_to)}"
    b.close()
    assert gateway.terminate() == 0
    assert sorted(b.delivered_to) == [(to, "new") for to in subscribers], "a replaced MT went out (or one twice)"
    with sqlite3.connect(db) as conn:
        statuses = conn.execute("SELECT CAST(short_message AS TEXT), status, count(*) FROM messages "
                                "WHERE direction = 'mt' AND esm_class = 0 GROUP BY 1, 2").fetchall()  # fmt: skip
    assert sorted(statuses) == [("new", "delivered", count), ("old", "deleted", count)]


def stranded_replacements(db: Path) -> list[str]:
    """The subscribers whose replacement ("new") is stored while what it replaces ("old") still waits to go out."""
    with sqlite3.connect(db) as conn:
        return [to for (to,) in conn.execute(
            "SELECT new.dest_addr FROM messages AS new JOIN messages AS old ON old.dest_addr = new.dest_addr"
            " WHERE CAST(new.short_message AS TEXT) = 'new' AND CAST(old.short_message AS TEXT) = 'old'"
            " AND old.status = 'enroute' AND new.esm_class = 0 AND old.esm_class = 0")]  # fmt: skip


def killed_while_replacing(db: Path, start_gateway, subscribers: list[str]) -> list[str]:
    """Each subscriber sent an "old" MT (acknowledged), then a "new" one with replace_if_present_flag 1 on one of 4
    binds (each bind's stream held back by its answers, the 4 keep the writer's batches full of replacements), the
    gateway killed while those stream in: the subscribers whose "new" is stored and their "old" not cancelled yet."""
    count = len(subscribers)
    gateway = start_gateway(db)
    binds = [Handset(gateway.smpp_port, "handset") for _ in range(4)]
    a = binds[0]
    for i, to in enumerate(subscribers):
        a.send(A, to, "old", reference=i + 1)
    assert a.wait_until(lambda: len(a.acks) == count, 30), f"acknowledged {len(a.acks)}/{count}"
    for i, to in enumerate(subscribers):
        binds[i % len(binds)].send(A, to, "new", reference=count + i + 1, replace_if_present_flag=1)

    def a_quarter_stored() -> bool:  # the stream in full flow: batches of replacements committing one behind another
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM messages WHERE CAST(short_message AS TEXT) = 'new'").fetchone()[0] >= count // 4

    assert eventually(a_quarter_stored, timeout=30, interval=0.001)
    gateway.kill()
    for handset in binds:
        handset.close()
    return stranded_replacements(db)


def test_mts_replaced_by_submissions_stored_but_unanswered_at_a_sigkill_do_not_go_out(tmp_path: Path, start_gateway) -> None:
    """submit_sm with replace_if_present_flag 1, killed while the replacements stream in: some are committed, the
    cancellations of what they replace not yet, and they are never answered. The client sends them again after the
    restart; each stored one is recognised as a copy (its first id). The flag was not stored: the copy replaced
    nothing, and the old MT went out before the new one. Now the replacement is stored with the MT and completed at
    the start, before anything goes out."""
    count = 400
    subscribers = [f"86137{i:08d}" for i in range(count)]  # account handset2: not bound, everything waits
    # The kill lands in that moment for about half the replacements, but may come (seldom, on 4 binds) just after a
    # batch of cancellations with none behind it was handed to the writer process: then again, on a new database.
    for attempt in range(5):
        db = tmp_path / f"gw-{attempt}.db"
        stranded = killed_while_replacing(db, start_gateway, subscribers)
        if stranded:
            break
    print(f"replacements stored but not completed at the kill: {len(stranded)}/{count}, attempt {attempt + 1}")
    assert stranded, "the kill must land between a replacement's commit and its cancellations' (none was there)"

    gateway = start_gateway(db)
    a = Handset(gateway.smpp_port, "handset")
    resent = [a.send(A, to, "new", reference=count + i + 1, replace_if_present_flag=1) for i, to in enumerate(subscribers)]
    assert a.wait_until(lambda: all(sequence in a.acks for sequence in resent), 30), f"acknowledged {len(a.acks)}"
    b = Receiver(gateway.smpp_port, "handset2")
    # A subscriber's MTs go out in the order they were accepted: an old one left to go out comes before its "new".
    assert b.wait_until(lambda: [text for _, text in b.delivered_to].count("new") >= count, 30), f"{len(b.delivered_to)}"
    a.close()
    b.close()
    assert gateway.terminate() == 0
    went_out = sorted(to for to, text in b.delivered_to if text == "old")
    assert went_out == [], f"{len(went_out)} replaced MTs went out, of {len(stranded)} stranded at the kill"
    assert sorted(b.delivered_to) == [(to, "new") for to in subscribers]
    with sqlite3.connect(db) as conn:  # every replacement done: the next start has none to complete
        assert conn.execute("SELECT count(*) FROM messages WHERE replacing IS NOT NULL").fetchone() == (0,)
