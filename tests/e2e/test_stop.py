"""Gateway.stop while a short code is still handling an MO (README, "SMPP 3.4 answers": on SIGTERM ...).

The handling of acknowledged MOs gets drain_timeout like everything else in flight; one still going then is
not waited for: it is stored `accepted`, and the next start handles it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import ssl
import struct
import threading
import time

import pytest
import structlog

from gateway.store.records import MessageStatus
from tests.e2e.test_amend import submit_multi
from tests.gateway_process import config_file, tls_config_file
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_RBINDFAIL,
    ESME_ROK,
    Handset,
    RawLink,
    answer,
    cancel_sm,
    encode,
    encoded,
    frame,
    replace_sm,
    text,
    texts_from,
)

A = "8613800000001"
B, OFFLINE = "8613700000001", "8613700000009"  # account handset2; no bind serves OFFLINE
ECHO = "10086000"  # replies with the text it received
ESME_RSYSERR, ESME_RTHROTTLED = 0x08, 0x58
UNBIND_RESP = 0x80000006
BIND_TRANSCEIVER_RESP = 0x80000009
LONG = "stuck " + "in two parts " * 16  # a long MO: its parts are stored and acknowledged, then it is handled


class Stuck:
    """Wraps a short code's handler: a text starting "stuck" is never done (a handler waiting on something that hangs)."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.started = threading.Event()

    async def handle(self, inbound, ctx):
        if inbound.text.startswith("stuck"):
            self.started.set()
            await asyncio.get_running_loop().create_future()  # never resolved
        return await self.handler.handle(inbound, ctx)


def test_stop_gives_mo_handling_drain_timeout_and_the_next_start_handles_what_was_left(make_gateway, handset, tmp_path):
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"drain_timeout": 1.0, "response_timeout": 1.0})
    short_code = gw.gateway.mo.short_codes[ECHO]
    stuck = short_code.handler = Stuck(short_code.handler)
    a = handset(A, gw=gw)
    data = encode(LONG, 0)
    chunks = [data[:134], data[134:]]
    acked = []
    for n, chunk in enumerate(chunks, 1):
        resp = a.submit(ECHO, chunk, sar_msg_ref_num=7, sar_total_segments=len(chunks), sar_segment_seqnum=n)
        assert resp.status == ESME_ROK
        acked.append(resp.message_id.decode())
    assert stuck.started.wait(5)

    began = time.monotonic()
    gw.stop()  # drain_timeout, then response_timeout for the unbind_resp (the test is not reading `a` meanwhile)
    assert time.monotonic() - began < 1.0 + 1.0 + 2, "stop waited for a handler that never finishes"

    again = make_gateway(db_path=db)
    b = handset(A, gw=again)
    assert texts_from(b, ECHO) == [LONG]  # handled at this start, its reply delivered
    assert [again.call(again.gateway.store.get(i)).status for i in acked] == [MessageStatus.PROCESSED] * 2


def test_the_mos_left_at_the_end_of_the_drain_are_named_in_its_line(make_gateway):
    """'MOs still being handled at the end of drain_timeout; the next start handles them' named none of them: staff
    could not tell whose texts were answered late. It counts them and names the first 20, with their msisdns, and
    their accounts."""
    gw = make_gateway(gateway={"drain_timeout": 0.5, "response_timeout": 1.0})
    short_code = gw.gateway.mo.short_codes[ECHO]
    stuck = short_code.handler = Stuck(short_code.handler)
    senders = [f"86138000001{n:02d}" for n in range(22)]
    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(b"".join(encoded("submit_sm", n, source_addr=sender, destination_addr=ECHO, short_message=b"stuck")
                           for n, sender in enumerate(senders, 2)))  # fmt: skip
        assert stuck.started.wait(5)
        assert eventually(lambda: len(gw.gateway.mo.in_hand()) == 22)
        with structlog.testing.capture_logs() as logs:
            gw.stop()
    [line] = [line for line in logs if line["event"].startswith("MOs still being handled")]
    assert (line["count"], line["accounts"], line["msisdns"]) == (22, ["handset"], senders[:20])
    assert len(set(line["message_ids"])) == 20


def test_the_line_about_mos_left_at_the_end_of_the_drain_counts_those_queued_behind_a_subscribers_mo(make_gateway, handset):
    """A's long MO is being handled (stuck) when A's next MO is committed: it waits for A's turn, not handled yet,
    and the next start handles it too. The line counts and names both, not only the one being handled."""
    gw = make_gateway(gateway={"drain_timeout": 0.5, "response_timeout": 1.0})
    short_code = gw.gateway.mo.short_codes[ECHO]
    stuck = short_code.handler = Stuck(short_code.handler)
    a = handset(A, gw=gw)
    data = encode(LONG, 0)
    for n, chunk in enumerate((data[:134], data[134:]), 1):
        assert a.submit(ECHO, chunk, sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=n).status == ESME_ROK
    assert stuck.started.wait(5)
    queued = a.submit(ECHO, "after it")  # answered once committed, queued for A's turn (in the same step)
    assert queued.status == ESME_ROK
    with structlog.testing.capture_logs() as logs:
        gw.stop()
    [line] = [line for line in logs if line["event"].startswith("MOs still being handled")]
    assert (line["count"], line["msisdns"]) == (2, [A, A])
    assert queued.message_id.decode() in line["message_ids"]


def test_stop_closes_a_link_broken_by_a_framing_error_while_an_answer_is_owed(make_gateway):
    """The gateway's unbind at stop was refused on such a link (no request goes out on it): stop raised
    half-way, with the store left open."""
    gw = make_gateway(gateway={"drain_timeout": 0.5, "response_timeout": 30})
    short_code = gw.gateway.mo.short_codes[ECHO]
    stuck = short_code.handler = Stuck(short_code.handler)
    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=ECHO, short_message=b"stuck")
                  + frame(0x00000015, 3, length=8))  # fmt: skip
        assert link.read().command == "generic_nack"
        assert stuck.started.wait(5)
        [connection] = gw.gateway.connections
        assert connection.session.halted and connection.session.owes_answers
        gw.stop()
        assert link.is_closed(timeout=5)


def test_an_mo_whose_commit_waits_for_a_locked_database_at_stop_is_not_answered_as_failed(make_gateway, handset, tmp_path):
    """The MO to a short code is held until its handling commits. If that commit still waits for the database at
    the end of the drain (another process holds its write lock), the store's close writes it all the same: so the
    submitter must not be told it failed (ESME_RSYSERR: "nothing was acknowledged"), or it would send it again."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"drain_timeout": 1.0, "response_timeout": 1.0})
    warm = handset(A, gw=gw)
    assert warm.submit(ECHO, "warm-up").status == ESME_ROK and texts_from(warm, ECHO) == ["warm-up"]
    warm.close()
    holder = sqlite3.connect(db, timeout=10, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a backup or maintenance script takes it
    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(encoded("submit_sm", 3, source_addr=A, destination_addr=ECHO, short_message=b"order PLAN1"))
        stopping = threading.Thread(target=gw.stop)
        stopping.start()
        answers = []
        while (pdu := link.read(timeout=10)) is not None and pdu.command != "unbind":  # after the drain
            answers.append((pdu.command, pdu.status))
        holder.execute("COMMIT")  # released: the store's close writes what waited
        holder.close()
        link.send(frame(UNBIND_RESP, pdu.sequence))
        while (pdu := link.read(timeout=10)) is not None:
            answers.append((pdu.command, pdu.status))
    stopping.join(30)
    assert ("submit_sm_resp", ESME_RSYSERR) not in answers, answers

    again = make_gateway(db_path=db)
    b = handset(A, gw=again)
    assert texts_from(b, ECHO) == ["order PLAN1"]  # handled once, its reply delivered after the restart


def test_an_mo_held_back_behind_one_whose_handling_never_ends_is_refused_at_stop_not_stored_unanswered(
    make_gateway, handset, tmp_path
):
    """A's first text is handled before it is stored and its handler hangs; A's second waits to be written after
    it. At stop the second is answered ESME_RTHROTTLED with nothing stored (it used to be written as the first
    was cancelled, with the link already going: stored, never answered, so handled twice once A sent it again)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"drain_timeout": 1.0, "response_timeout": 1.0})
    short_code = gw.gateway.mo.short_codes[ECHO]
    stuck = short_code.handler = Stuck(short_code.handler)
    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(encoded("submit_sm", 3, source_addr=A, destination_addr=ECHO, short_message=b"stuck first"))
        assert stuck.started.wait(5)
        link.send(encoded("submit_sm", 4, source_addr=A, destination_addr=ECHO, short_message=b"second"))
        assert eventually(lambda: gw.gateway.mo._unstored.get(A))  # held back behind the first
        stopping = threading.Thread(target=gw.stop)
        stopping.start()
        answers = {}
        while (pdu := link.read(timeout=10)) is not None:
            if pdu.command == "unbind":
                link.send(frame(UNBIND_RESP, pdu.sequence))
            else:
                answers[pdu.sequence] = (pdu.command, pdu.status)
    stopping.join(30)
    assert answers.get(4) == ("submit_sm_resp", ESME_RTHROTTLED), answers

    again = make_gateway(db_path=db)
    b = handset(A, gw=again)
    b.expect_none(0.5)  # neither was stored: nothing is handled at this start


def test_a_cancel_sm_or_replace_sm_refused_at_stop_is_logged_as_their_other_refusals_are(make_gateway, handset):
    """Refused while the gateway stops (ESME_RTHROTTLED), a cancel_sm or replace_sm was one info line 'refused: the
    gateway is stopping' without the message_id sent, naming the sender as msisdn (not logged at all at --log-level
    warning, where a submit_sm refused then is). Now 'cancel_sm refused' and 'replace_sm refused' as at other times."""
    gw = make_gateway(gateway={"drain_timeout": 5.0, "response_timeout": 1.0})
    busy = handset(B, gw=gw, address_range=B)  # its deliver_sm left unanswered keeps the drain going
    busy.answering = False
    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"in flight"))
        link.send(encoded("submit_sm", 3, source_addr=A, destination_addr=OFFLINE, short_message=b"waits"))
        assert answer(link, 2)[0] == ESME_ROK
        status, body = answer(link, 3)
        assert status == ESME_ROK
        message_id = body.rstrip(b"\0").decode()
        busy.expect()
        with structlog.testing.capture_logs() as logs:
            stopping = threading.Thread(target=gw.stop)
            stopping.start()
            assert eventually(lambda: all(c._draining for c in gw.gateway.connections))
            link.send(cancel_sm(4, A, message_id, OFFLINE) + replace_sm(5, A, message_id, b"changed"))
            assert [answer(link, 4)[0], answer(link, 5)[0]] == [ESME_RTHROTTLED, ESME_RTHROTTLED]
            busy.answer_held()
            stopping.join(30)
    lines = [line for line in logs if line["event"] in ("cancel_sm refused", "replace_sm refused")]
    assert [(line["event"], line["log_level"], line["message_id"], line["account"], line["msisdn"], line["source"],
             line["status"], line["reason"]) for line in lines] == [
        (f"{command} refused", "warning", message_id, "handset", OFFLINE, A, "ESME_RTHROTTLED", "the gateway is stopping")
        for command in ("cancel_sm", "replace_sm")
    ]  # fmt: skip
    assert lines[0]["dest"] == OFFLINE


def test_a_submit_multi_refused_at_stop_is_answered_esme_rthrottled_and_logged_for_each_destination(
    make_gateway, handset, tmp_path
):
    """README: a submission while the gateway stops is refused ESME_RTHROTTLED, nothing stored (send it again later);
    a submit_multi's are a `submission rejected` line for each destination, its distribution list named by dl_name,
    as every refused submission's are (coverage review: no test ran it)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"drain_timeout": 5.0, "response_timeout": 1.0})
    busy = handset(B, gw=gw, address_range=B)  # its deliver_sm left unanswered keeps the drain going
    busy.answering = False
    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"in flight"))
        assert answer(link, 2)[0] == ESME_ROK
        busy.expect()
        with structlog.testing.capture_logs() as logs:
            stopping = threading.Thread(target=gw.stop)
            stopping.start()
            assert eventually(lambda: all(c._draining for c in gw.gateway.connections))
            link.send(submit_multi(3, A, [B, OFFLINE, "dl:friends"], b"not now"))
            assert answer(link, 3)[0] == ESME_RTHROTTLED
            busy.answer_held()
            stopping.join(30)
    lines = [line for line in logs if line["event"] == "submission rejected"]
    assert [(line["log_level"], line["account"], line["source"], line.get("dest"), line.get("dl_name"), line["status"],
             line["reason"]) for line in lines] == [
        ("warning", "handset", A, B, None, "ESME_RTHROTTLED", "the gateway is stopping"),
        ("warning", "handset", A, OFFLINE, None, "ESME_RTHROTTLED", "the gateway is stopping"),
        ("warning", "handset", A, None, "friends", "ESME_RTHROTTLED", "the gateway is stopping"),
    ]  # fmt: skip
    handset(B, gw=make_gateway(db_path=db)).expect_none(0.5)  # nothing stored: B and OFFLINE (handset2) get nothing


def test_a_cancel_sm_or_replace_sm_refused_at_stop_is_answered_when_the_store_cannot_be_read(make_gateway, handset):
    """The line about the refusal reads the store (the MT's subscriber): a read that failed ended the task before the
    answer, and the client's cancel_sm and replace_sm were never answered."""
    gw = make_gateway(gateway={"drain_timeout": 5.0, "response_timeout": 1.0})
    busy = handset(B, gw=gw, address_range=B)
    busy.answering = False

    async def unreadable(_message_id: str) -> list:
        raise sqlite3.OperationalError("disk I/O error")

    with RawLink(gw.smpp_port) as link:
        link.bind()
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=B, short_message=b"in flight"))
        assert answer(link, 2)[0] == ESME_ROK
        busy.expect()
        gw.gateway.store.submitted_as = unreadable
        stopping = threading.Thread(target=gw.stop)
        stopping.start()
        assert eventually(lambda: all(c._draining for c in gw.gateway.connections))
        link.send(cancel_sm(4, A, "1a2b3c", OFFLINE) + replace_sm(5, A, "1a2b3c", b"changed"))
        assert [answer(link, 4)[0], answer(link, 5)[0]] == [ESME_RTHROTTLED, ESME_RTHROTTLED]
        busy.answer_held()
        stopping.join(30)


class TlsByHand:
    """A TLS 1.3 client whose handshake goes step by step (ssl.MemoryBIO): `hello` sends its ClientHello and takes the
    gateway's answer, its own Finished held back until `finish`."""

    def __init__(self, port: int) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_3  # (the client's Finished is its handshake's last message)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)

    def hello(self) -> None:
        while not self._handshake_done():
            self.sock.sendall(self.outgoing.read())
            self._receive()

    def finish(self) -> None:
        self.sock.sendall(self.outgoing.read())

    def exchange(self, pdu: bytes) -> tuple[int, int]:
        """Send a PDU and read the answer: (command_id, command_status)."""
        self.tls.write(pdu)
        self.sock.sendall(self.outgoing.read())
        data = b""
        while len(data) < 16:
            try:
                data += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._receive()
        return struct.unpack(">LLLL", data[:16])[1:3]

    def is_closed(self) -> bool:
        """True once the gateway ends the TLS session (close_notify) or the connection (within the socket's timeout)."""
        try:
            while data := self.sock.recv(65536):
                self.incoming.write(data)
                try:
                    if not self.tls.read(65536):  # (the gateway's close_notify)
                        return True
                except ssl.SSLWantReadError:
                    pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()

    def _handshake_done(self) -> bool:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the gateway closed the connection"
        self.incoming.write(data)


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_a_tls_connection_whose_handshake_is_done_during_the_stop_is_refused_as_a_plain_one_is(
    start_gateway, tls_files, tmp_path, uvloop
):
    """A connection to the TLS port accepted before SIGTERM, its handshake done during the drain, was not drained:
    its bind and its submit_sm got ESME_ROK, where a bind on a plain link already open gets ESME_RBINDFAIL (README:
    on SIGTERM ...). As production runs it: `smsgw serve`, on either event loop."""
    cert, key = tls_files
    gateway = start_gateway(tmp_path / "gw.db", tls_config_file(tmp_path, cert, key, drain_timeout=10), uvloop=uvloop)
    a, b = Handset(gateway.smpp_port, A), Handset(gateway.smpp_port, B)
    late = TlsByHand(gateway.tls_port)
    try:
        a.bind("trx", "handset")
        b.bind("trx", "handset2")
        a.answering = False
        assert b.submit(A, "held").status == ESME_ROK
        assert text(a.expect()) == "held"  # unanswered: the drain waits for its answer
        late.hello()  # accepted: the gateway answered the ClientHello, and waits for the client's Finished
        gateway.proc.send_signal(signal.SIGTERM)
        assert eventually(lambda: any("smsgw stopping" in line for line in gateway.log), 10)
        late.finish()
        bind = encoded("bind_transceiver", 1, system_id="handset2", password="handset2")
        assert late.exchange(bind) == (BIND_TRANSCEIVER_RESP, ESME_RBINDFAIL)
        a.answer_held()  # the drain ends: the late connection, never bound, is closed
        assert late.is_closed()
    finally:
        late.close()
        a.close()
        b.close()
    assert gateway.wait(30) == 0


def test_a_tls_handshake_still_going_when_the_binds_are_unbound_is_closed(make_gateway, tls_files):
    """The stop left it open: nothing closed a connection whose handshake had not come to an end. It is closed as the
    binds are unbound, not only when the event loop ends (a bind slow to answer its unbind holds the stop for
    response_timeout meanwhile)."""
    cert, key = tls_files
    gw = make_gateway(gateway={"response_timeout": 8},
                      tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})  # fmt: skip
    slow = RawLink(gw.smpp_port)
    late = TlsByHand(gw.gateway.tls_port)
    stopping = threading.Thread(target=gw.stop)
    try:
        slow.bind()
        late.hello()  # its Finished never sent
        stopping.start()
        unbind = slow.read()
        assert unbind.command == "unbind"
        assert late.is_closed()  # (within 5 s: the stop waits up to 8 for the unbind_resp)
        slow.send(encoded("unbind_resp", unbind.sequence))
    finally:
        stopping.join(30)
        late.close()
        slow.close()


def test_an_http_request_whose_body_never_comes_whole_does_not_hold_the_stop_past_its_bound(tmp_path, start_gateway):
    """A POST whose Content-Length says 100 with 2 octets of its body sent held the stop ~10 s more (aiohttp reads
    what is left of a body for up to 10 s before it closes, and the stop waited up to 60 s for it): past
    drain_timeout + response_timeout, the bound README's `docker run --stop-timeout` is sized by."""
    gateway = start_gateway(tmp_path / "gw.db", config_file(tmp_path, drain_timeout=1, response_timeout=1))
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10) as client:
        client.sendall(b"POST /ready HTTP/1.1\r\nHost: smsgw\r\nContent-Length: 100\r\n\r\nab")
        assert client.makefile("rb").readline().startswith(b"HTTP/1.1 405 ")  # answered: the rest is waited for
        began = time.monotonic()
        assert gateway.terminate() == 0
        assert time.monotonic() - began < 1 + 1 + 2  # drain_timeout + response_timeout, with a margin
