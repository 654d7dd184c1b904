"""Binding over SMPP 3.4 (SPEC sections 2 and 4): who may bind, how, and what a bind allows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest
import structlog
from smpplib import smpp
from smpplib.client import SimpleSequenceGenerator

from gateway.config import DEFAULT_CONFIG
from gateway.server import NOT_BOUND
from tests.e2e.test_stop import TlsByHand
from tests.gateway_process import ROOT, free_port, tls_config_file
from tests.polling import eventually
from tests.smpp_handset import (
    ESME_RALYBND,
    ESME_RBINDFAIL,
    ESME_RINVBNDSTS,
    ESME_RINVCMDLEN,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_ROK,
    Handset,
    RawLink,
    encoded,
    frame,
    text,
)

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2
ECHO = "10086000"
SUBMIT_SM = 0x00000004


@pytest.mark.parametrize("mode", ["tx", "rx", "trx"])
def test_bind_with_good_credentials(handset, mode):
    phone = handset(A, bind=None)
    resp = phone.bind(mode, "handset", "handset")
    assert resp.command == {"tx": "bind_transmitter_resp", "rx": "bind_receiver_resp", "trx": "bind_transceiver_resp"}[mode]
    assert resp.status == ESME_ROK
    assert resp.system_id == b"smsgw"


@pytest.mark.parametrize(("version", "stated"), [(0x34, 0x34), (0x33, None)])
def test_the_bind_response_states_the_smsc_version_to_an_esme_of_smpp_3_4(gateway, version, stated):
    """SMPP 3.4 5.3.2.25: sc_interface_version is returned in the bind response; no bind_*_resp carried it, and a
    carrier's version negotiation check failed. An SMPP 3.3 ESME has no optional parameters: it gets none."""
    bind = smpp.make_pdu("bind_transceiver", client=SimpleSequenceGenerator(), system_id="handset", password="handset")
    bind.interface_version = version  # (smpplib sets 0x34 over any keyword)
    with RawLink(gateway.smpp_port) as link:
        [resp] = link.exchange(bind.generate())
        assert (resp.command, resp.status, resp.system_id) == ("bind_transceiver_resp", ESME_ROK, b"smsgw")
        assert resp.sc_interface_version == stated


def test_bind_with_wrong_password_is_refused(handset):
    assert handset(bind=None).bind_status("trx", "handset", "wrong") == ESME_RINVPASWD


def test_bind_with_unknown_system_id_is_refused(handset):
    assert handset(bind=None).bind_status("trx", "nobody", "nobody") == ESME_RINVSYSID


def test_binds_beyond_max_binds_are_refused(make_gateway, handset):
    gw = make_gateway(accounts=[{"system_id": "handset2", "max_binds": 2}])
    statuses = [handset(bind=None, gw=gw).bind_status("trx", "handset2") for _ in range(3)]
    assert statuses == [ESME_ROK, ESME_ROK, ESME_RBINDFAIL]
    assert handset(bind=None, gw=gw).bind_status("trx", "handset") == ESME_ROK  # other accounts are not affected


def test_a_bind_refused_is_logged_with_its_reason_and_never_the_password(make_gateway, handset):
    """'bind refused' gave only its status (ESME_RBINDFAIL for max_binds reached), where every other refusal line has
    a reason."""
    gw = make_gateway(accounts=[{"system_id": "handset2", "max_binds": 1}])
    handset(B, gw=gw)
    with structlog.testing.capture_logs() as logs:
        assert handset(bind=None, gw=gw).bind_status("trx", "handset2") == ESME_RBINDFAIL
        assert handset(bind=None, gw=gw).bind_status("trx", "handset", "s3cret-guess") == ESME_RINVPASWD
        assert handset(bind=None, gw=gw).bind_status("trx", "nobody", "nobody") == ESME_RINVSYSID
    refused = [line for line in logs if line["event"] == "bind refused"]
    assert [(line["system_id"], line["status"], line["reason"]) for line in refused] == [
        ("handset2", "ESME_RBINDFAIL", "max_binds 1 reached"),
        ("handset", "ESME_RINVPASWD", "wrong password"),
        ("nobody", "ESME_RINVSYSID", "no such system_id"),
    ]
    assert "s3cret-guess" not in repr(refused)


def test_a_second_bind_in_the_same_write_is_refused_and_the_connection_counts_once(make_gateway, handset):
    """Both binds of one read were accepted: the connection counted twice against max_binds and stayed in the
    router after it closed, where MTs for the account's subscribers were queued on it and never delivered."""
    gw = make_gateway(accounts=[{"system_id": "handset2", "max_binds": 1}])
    with RawLink(gw.smpp_port) as link:
        first, second = (encoded("bind_transceiver", n, system_id="handset2", password="handset2") for n in (1, 2))
        link.send(first + second)
        assert sorted((r.sequence, r.status) for r in (link.read(), link.read())) == [(1, ESME_ROK), (2, ESME_RALYBND)]
    assert gw.gateway is not None
    assert eventually(lambda: gw.gateway.accounts.get("handset2").binds == 0)  # the close is seen
    b = handset(B, gw=gw)  # max_binds 1: refused if the closed connection still counted
    assert handset(A, gw=gw).submit(B, "after").status == ESME_ROK
    assert text(b.expect()) == "after"  # not queued on the closed connection


def test_submissions_written_with_their_bind_are_taken_as_bound(gateway, handset):
    """A bind and the submit_sm behind it in one write: the submissions were checked while the bind awaited its
    answer and refused ESME_RINVBNDSTS; written a moment apart, they were taken. The same bytes, the same answers."""
    b = handset(B)
    with RawLink(gateway.smpp_port) as link:
        submits = [encoded("submit_sm", n, source_addr=A, destination_addr=B, short_message=b"pipelined %d" % n)
                   for n in range(2, 5)]  # fmt: skip
        link.send(encoded("bind_transceiver", 1, system_id="handset", password="handset") + b"".join(submits))
        assert [(r.command, r.sequence, r.status) for r in (link.read() for _ in range(4))] == [
            ("bind_transceiver_resp", 1, ESME_ROK), *(("submit_sm_resp", n, ESME_ROK) for n in range(2, 5))]  # fmt: skip
    assert sorted(text(pdu) for pdu in b.expect_many(3)) == [f"pipelined {n}" for n in range(2, 5)]


@pytest.mark.parametrize("before", [b"", encoded("bind_transceiver", 1, system_id="handset", password="guess")],
                         ids=["no bind", "a bind refused"])
def test_a_peer_not_bound_gets_no_pdu_longer_than_a_bind_buffered(gateway, before):
    """Any connection, without credentials, had the gateway buffer a PDU up to 70,000 octets long: 4000 of them
    sending all but the end of one took 280 MB, for bind_timeout, again and again. Before a bind is accepted a
    command_length over 1024 (the longest bind is 98) is answered as one over 70,000 is, at once."""
    with RawLink(gateway.smpp_port) as link:
        link.send(before + frame(SUBMIT_SM, 7, length=70_000) + b"x" * 2000)
        if before:
            assert link.read().status == ESME_RINVPASWD
        nack = link.read()
        assert (nack.command, nack.status, nack.sequence) == ("generic_nack", ESME_RINVCMDLEN, 7)
        assert link.is_closed()



def test_the_longest_bind_smpp_allows_is_taken_before_a_bind(make_gateway):
    """Every field of a bind at its SMPP 3.4 maximum (system_id 16 octets with its NUL, password 9, system_type 13,
    address_range 41, then the header and three of one octet: 98) is within what is read before a bind."""
    system_id, password = "s" * 15, "p" * 8
    gw = make_gateway(accounts=[{"system_id": system_id, "password": password, "role": "smsc", "numbers": ["86136"],
                                 "max_binds": 1, "throughput": 100}])  # fmt: skip
    address_range = "^861360[0-9]{7}$|^861361[0-9]{7}$|^86136"  # 40 characters
    bind = encoded("bind_transceiver", 1, system_id=system_id, password=password, system_type="t" * 12,
                   address_range=address_range)  # fmt: skip
    assert len(bind) == 98 and bind.endswith(address_range.encode() + b"\0")  # (smpplib cuts a longer field short)
    with RawLink(gw.smpp_port) as link:
        [resp] = link.exchange(bind)
        assert (resp.command, resp.status) == ("bind_transceiver_resp", ESME_ROK)

def test_a_long_submission_written_with_its_bind_is_taken(gateway, handset):
    """What follows a bind in the same write is read once the bind is answered, its length too: bound, a PDU up to
    70,000 octets is taken."""
    b = handset(B)
    long_text = encoded("data_sm", 2, source_addr=A, destination_addr=B, data_coding=0, message_payload=b"y" * 5000)
    with RawLink(gateway.smpp_port) as link:
        link.send(encoded("bind_transceiver", 1, system_id="handset", password="handset") + long_text)
        assert [(r.command, r.sequence, r.status) for r in (link.read(), link.read())] == [
            ("bind_transceiver_resp", 1, ESME_ROK), ("data_sm_resp", 2, ESME_ROK)]  # fmt: skip
    assert text(b.expect()) == "y" * 5000


def test_an_enquire_link_written_with_its_bind_is_answered_at_once(gateway):
    """Read behind the bind and answered by the session alone, its answer waited for the next tick (0.5 s)."""
    for _ in range(5):
        with RawLink(gateway.smpp_port) as link:
            link.send(encoded("bind_transceiver", 1, system_id="handset", password="handset") + encoded("enquire_link", 2))
            assert [(r.command, r.sequence) for r in (link.read(), link.read(timeout=0.1))] == [
                ("bind_transceiver_resp", 1), ("enquire_link_resp", 2)]  # fmt: skip


def test_a_connection_that_never_binds_is_closed_after_bind_timeout_whatever_it_sends(make_gateway):
    """SMPP 3.4 7.2 session_init_timer. Nothing closed a connection that never bound but sent an enquire_link now
    and then (answered while unbound, and it reset idle_timeout): 1,100 of them took every file descriptor, and
    every account's new binds and /ready were refused."""
    gw = make_gateway(gateway={"bind_timeout": 1})
    with RawLink(gw.smpp_port) as silent, RawLink(gw.smpp_port) as chatty, RawLink(gw.smpp_port) as bound:
        bound.bind("handset")
        sequence = 0
        while True:  # an enquire_link a quarter of a second, until the gateway closes the link
            sequence += 1
            try:
                chatty.send(encoded("enquire_link", sequence))
                resp = chatty.read()
            except (ConnectionResetError, BrokenPipeError):  # closed while this one was on its way
                resp = None
            if resp is None:
                break
            assert resp.command == "enquire_link_resp" and sequence < 40, "still open after 10 s"
            silent.is_closed(timeout=0.25)
        assert silent.is_closed(timeout=2)  # (closed at the same tick, or the one before)
        assert [r.command for r in bound.exchange(encoded("enquire_link", 2))] == ["enquire_link_resp"]  # bound: kept


def test_submit_before_bind_is_refused(gateway):
    with RawLink(gateway.smpp_port) as link:
        [resp] = link.exchange(encoded("submit_sm", 7, source_addr=A, destination_addr=ECHO, short_message=b"hi"))
        assert (resp.command, resp.status, resp.sequence) == ("submit_sm_resp", ESME_RINVBNDSTS, 7)
        link.bind()  # the link is still usable: the refusal did not end it
        [resp] = link.exchange(encoded("submit_sm", 8, source_addr=A, destination_addr=ECHO, short_message=b"hi"))
        assert (resp.command, resp.status, resp.sequence) == ("submit_sm_resp", ESME_ROK, 8)


def test_submit_on_receiver_bind_is_refused(handset):
    phone = handset(A, bind="rx")
    resp = phone.request(phone.make("submit_sm", ECHO, "hi"))  # smpplib itself would not send it
    assert (resp.command, resp.status) == ("submit_sm_resp", ESME_RINVBNDSTS)


def test_second_bind_on_bound_link_is_refused(handset):
    phone = handset(A, bind="trx")
    again = smpp.make_pdu("bind_transmitter", client=phone.client, system_id="handset", password="handset")
    resp = phone.request(again)
    assert (resp.command, resp.status) == ("bind_transmitter_resp", ESME_RALYBND)
    assert phone.submit(ECHO, "still bound").status == ESME_ROK


def test_every_port_queues_1024_connections_before_they_are_accepted(make_gateway, tls_files) -> None:
    """The listen backlog was asyncio's 100: a reconnect storm (a carrier's binds coming back after a restart)
    overflowed it, each connection past it waiting 1 s or more for its SYN to be sent again (the connection-limits
    review: 14 overflows in 2,000 connects made one after the other)."""
    cert, key = tls_files
    gw = make_gateway(tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    for port in (gw.smpp_port, gw.gateway.tls_port, gw.http_port):
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
        assert listening.stdout.split()[2] == "1024", listening.stdout  # Send-Q of a listening socket: its backlog


def test_bind_and_message_over_tls(make_gateway, handset, tls_files):
    cert, key = tls_files
    gw = make_gateway(tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # smpplib does not pass a server name; the chain is still verified
    phone = handset(A, gw=gw, tls=context)
    assert phone.submit(ECHO, "over TLS").status == ESME_ROK
    assert text(phone.expect()) == "over TLS"


def test_a_tls_client_that_half_closes_is_let_go_without_a_warning(make_gateway, handset, tls_files, caplog):
    """A plain TCP client that half-closes gets its answers (test_protocol); over TLS asyncio ends the session at the
    FIN whatever the gateway asks, and logs a warning each time it is asked to keep the link open."""
    cert, key = tls_files
    gw = make_gateway(tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    phone = handset(A, gw=gw, tls=context)
    assert eventually(lambda: len(gw.gateway.connections) == 1)
    phone.client._socket.shutdown(socket.SHUT_WR)
    assert eventually(lambda: not gw.gateway.connections)
    assert not [record for record in caplog.records if record.name == "asyncio"]


def test_a_restart_takes_the_tls_port_again_while_connections_the_gateway_closed_are_in_time_wait(make_gateway, tls_files):
    """Bound without SO_REUSEADDR, the TLS port could not be taken again within a minute of the gateway closing a
    connection on it (its end in TIME_WAIT): the restart failed, address already in use."""
    cert, key = tls_files
    tls = {"enabled": True, "port": free_port(), "certfile": str(cert), "keyfile": str(key)}
    gw = make_gateway(tls=tls)
    with socket.create_connection(("127.0.0.1", tls["port"]), timeout=5) as plain:
        plain.sendall(bytes(16))  # not TLS: the gateway closes the connection first
        while plain.recv(4096):
            pass
    gw.stop()
    assert make_gateway(tls=tls).gateway.tls_port == tls["port"]


def test_a_connection_to_the_tls_port_that_never_starts_tls_is_closed_after_bind_timeout(make_gateway, tls_files):
    """bind_timeout began once the TLS handshake was done: a connection that never sent its ClientHello was held for
    asyncio's handshake timeout, 60 s, however short bind_timeout was."""
    cert, key = tls_files
    gw = make_gateway(gateway={"bind_timeout": 1}, tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    with RawLink(gw.gateway.tls_port) as silent:
        assert silent.is_closed(timeout=5)


def test_bind_timeout_on_the_tls_port_counts_from_the_connection_not_from_its_first_octets(make_gateway, tls_files):
    """The handshake began its own bind_timeout once the client's first octets came: a client that waited 1.9 s, then
    did its handshake and never bound, was held 3.9 s under a bind_timeout of 2 (60 s for 30 by default)."""
    cert, key = tls_files
    gw = make_gateway(gateway={"bind_timeout": 2}, tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    opened = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.gateway.tls_port)) as raw:
        time.sleep(1.9)  # (the slow client itself: nothing to await)
        with context.wrap_socket(raw) as tls:
            tls.settimeout(5)
            with contextlib.suppress(ConnectionResetError, ssl.SSLError):
                assert tls.recv(1) == b""  # closed by the gateway, no bind having come
    assert time.monotonic() - opened < 3.2


def test_with_bind_timeout_0_a_tls_handshake_cut_by_asyncios_own_timeout_is_logged_as_failed(
    make_gateway, tls_files, monkeypatch
):
    """bind_timeout = 0 (never) leaves a handshake asyncio's own timeout (60 s): a handshake not done by then failed,
    and is logged so, not as `not bound within bind_timeout` with seconds 0. (The in-process gateway runs asyncio's
    event loop, which reads its timeout at each connection: 1 s here.)"""
    monkeypatch.setattr(asyncio.constants, "SSL_HANDSHAKE_TIMEOUT", 1.0)
    cert, key = tls_files
    gw = make_gateway(gateway={"bind_timeout": 0}, tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    with structlog.testing.capture_logs() as logs:
        late = TlsByHand(gw.gateway.tls_port)
        try:
            late.hello()  # its Finished never sent
            assert late.is_closed()
        finally:
            late.close()
        ended = lambda: [(e["event"], e.get("reason")) for e in logs if e["event"] in ("TLS handshake failed", NOT_BOUND)]
        assert eventually(ended)
    assert ended() == [("TLS handshake failed", "SSL handshake is taking longer than 1.0 seconds: aborting the connection")]


def client_hello(version: int) -> bytes:
    """A ClientHello of TLS `version` (0x0301: TLS 1.0) and nothing later, built by hand: a client of this machine's
    OpenSSL may have no TLS 1.0 to offer (its security level), and the gateway's answer is what is tested."""
    hello = struct.pack(">H32sBH4sBB", version, bytes(32), 0, 4, b"\x00\x2f\xc0\x13", 1, 0)  # (AES128-SHA; no extensions)
    handshake = struct.pack(">B", 1) + len(hello).to_bytes(3, "big") + hello
    return struct.pack(">BHH", 0x16, version, len(handshake)) + handshake


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_a_connection_to_the_tls_port_whose_handshake_fails_or_never_comes_is_logged(
    start_gateway, tls_files, tmp_path, uvloop
):
    """A plain SMPP client (or an HTTP one) given the TLS port, or a connection that never began TLS, was closed without
    a line at any log level (asyncio did the TLS port's handshakes itself and dropped those that failed or were not
    done within bind_timeout), where the plain port logs a connection that never binds. A client that sent its
    ClientHello and closed without an alert (an asyncio client that does not trust the certificate) gets a line too,
    as does a TLS 1.0 one (`unsupported protocol`); a port check (connect, then close or reset) none, as on the plain
    port (it got 5 info lines, then a warning every 10 s). As production runs it: `smsgw serve`, on either event loop."""
    cert, key = tls_files
    gateway = start_gateway(tmp_path / "gw.db", tls_config_file(tmp_path, cert, key, bind_timeout=1), uvloop=uvloop)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # smpplib does not pass a server name; the chain is still verified
    try:
        for reset in (False, True, True):  # port checks
            with socket.create_connection(("127.0.0.1", gateway.tls_port)) as check:
                if reset:  # (SO_LINGER 0: closed with a reset)
                    check.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with RawLink(gateway.tls_port) as hello:  # its ClientHello, then closed
            outgoing = ssl.MemoryBIO()
            with pytest.raises(ssl.SSLWantReadError):
                context.wrap_bio(ssl.MemoryBIO(), outgoing).do_handshake()
            hello.send(outgoing.read())
            peers = [f"127.0.0.1:{hello.sock.getsockname()[1]}"]
        with contextlib.ExitStack() as opened:
            links = [opened.enter_context(RawLink(gateway.tls_port)) for _ in range(4)]
            plain, _silent, http, tls_1_0 = links
            plain.send(encoded("bind_transceiver", 1, system_id="handset", password="handset"))
            http.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            tls_1_0.send(client_hello(0x0301))
            assert all(link.is_closed() for link in links)
            peers += [f"127.0.0.1:{link.sock.getsockname()[1]}" for link in links]
        with Handset(gateway.tls_port, A, ssl_context=context) as phone:  # a TLS client binds as before
            phone.bind("trx", address_range=A)
    finally:
        assert gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.log]
    failed = [r for r in records if r["event"].startswith("TLS handshake failed")]
    assert sorted((r["peer"], r["level"], r["reason"]) for r in failed) == sorted([
        (peers[0], "warning", "closed by the peer during the handshake"),
        (peers[1], "warning", "not TLS: a plain SMPP client on the TLS port?"),
        (peers[3], "warning", "not TLS: an HTTP request"),
        (peers[4], "warning", "unsupported protocol")])  # fmt: skip
    unbound = [r for r in records if r["event"] == "not bound within bind_timeout; closing"]
    assert [(r["peer"], r["level"], r["reason"], r["seconds"]) for r in unbound] == [
        (peers[2], "warning", "TLS handshake not done", 1)]  # fmt: skip


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_connections_to_the_tls_port_in_their_handshake_hold_one_descriptor_each_and_are_counted(
    start_gateway, tls_files, tmp_path, uvloop
):
    """Each connection to the TLS port was taken from a transport of its own (a duplicate of its descriptor): on the
    default event loop two descriptors each, until the first was closed, so a burst of connections was refused at
    half the limit on open files (`TLS handshake failed` `[Errno 24] Too many open files`); and connections in their
    handshake were not counted toward `connections near the open-file limit`."""
    cert, key = tls_files
    gateway = start_gateway(tmp_path / "gw.db", tls_config_file(tmp_path, cert, key), open_files=(100, 100), uvloop=uvloop)
    held = lambda: len(os.listdir(f"/proc/{gateway.proc.pid}/fd"))
    before = held()
    links = [socket.create_connection(("127.0.0.1", gateway.tls_port)) for _ in range(70)]  # 70 + before < 100 < 140
    try:
        assert eventually(lambda: held() >= before + 70, 10), f"{held() - before} of 70 held"
        for link in links:  # none closed (nothing to read either: the gateway waits for the ClientHello)
            with pytest.raises(BlockingIOError):
                link.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        warning = "connections near the open-file limit: new ones are refused at it, without a word (raise `ulimit -n`)"
        warned = lambda: [r for r in map(json.loads, list(gateway.log)) if r["event"] == warning]
        assert eventually(warned, 10)  # (the gateway's output is read as it comes)
        [line] = warned()
        assert line["allowed"] == 36 and line["connections"] == 36
    finally:
        for link in links:
            link.close()
    assert gateway.terminate() == 0
    assert not [line for line in gateway.log if "TLS handshake failed" in line]  # (EMFILE; nor closed unused)


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_the_tls_port_accepts_again_once_a_burst_past_the_open_file_limit_has_gone(
    start_gateway, tls_files, tmp_path, uvloop
):
    """An accept that failed for want of a descriptor (EMFILE) must wait and try again, as the event loops do for the
    plain port: ended, it left the TLS port listening, every connection to it queued and never answered."""
    cert, key = tls_files
    gateway = start_gateway(tmp_path / "gw.db", tls_config_file(tmp_path, cert, key), open_files=(60, 60), uvloop=uvloop)
    held = lambda: len(os.listdir(f"/proc/{gateway.proc.pid}/fd"))
    links = [socket.create_connection(("127.0.0.1", gateway.tls_port)) for _ in range(90)]  # 30 left in the backlog
    try:
        assert eventually(lambda: held() >= 60, 10), f"{held()} of 60 descriptors held"  # the next accept fails
    finally:
        for link in links:
            link.close()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=5)
    with context.wrap_socket(raw) as tls:  # answered once the accepts go on (the closed ones let go)
        assert tls.version()
    assert gateway.terminate() == 0


def test_tls_files_named_relative_to_the_config_are_found_beside_it_from_any_working_directory(
    start_gateway, tls_files, tmp_path
) -> None:
    """certfile = "cert.pem" was read from the working directory, unlike the reply texts beside the config: a config
    that worked from its own directory failed from any other (`tls.certfile: no such file: 'cert.pem'`). The gateway
    process runs in the repository; the config and its certificate are in another directory."""
    cert, _key = tls_files
    assert cert.parent == tmp_path != ROOT and not (ROOT / "cert.pem").exists()
    config = tmp_path / "site.toml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
        '[tls]\nenabled = false\nport = 2776\ncertfile = ""\nkeyfile = ""\n',
        '[tls]\nenabled = true\nport = 0\ncertfile = "cert.pem"\nkeyfile = "key.pem"\n',
    ), encoding="utf-8")  # fmt: skip
    assert 'certfile = "cert.pem"' in config.read_text(encoding="utf-8")
    gateway = start_gateway(tmp_path / "gw.db", config)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # smpplib does not pass a server name; the chain is still verified
    with Handset(gateway.tls_port, A, ssl_context=context) as phone:
        phone.bind("trx", address_range=A)
        assert phone.submit(ECHO, "over TLS").status == ESME_ROK
        assert text(phone.expect()) == "over TLS"
