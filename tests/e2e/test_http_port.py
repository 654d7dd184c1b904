"""The HTTP port as any host on the network meets it: what one connection may make the gateway hold, and how long."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.e2e.test_logging import logged
from tests.gateway_process import config_file
from tests.polling import eventually

REQUEST = b"GET /health HTTP/1.1\r\nHost: x\r\n"
CROWDED = "connections near the open-file limit: new ones are refused at it, without a word (raise `ulimit -n`)"


def closed_by_gateway(link: socket.socket, within: float = 10) -> bool:
    """Whether the gateway closes `link` within `within` seconds (what it answers meanwhile is read and dropped)."""
    link.settimeout(within)
    try:
        while link.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def answer_to(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as link:
        link.sendall(request)
        return link.recv(65536)


def test_a_connection_without_a_whole_request_is_closed_after_http_idle_timeout(tmp_path: Path, start_gateway) -> None:
    """400 connections each sending a request line and 120 headers of 8,000 octets, never the blank line, took the
    gateway from 53 to 803 MB, held for as long as they stayed open; silent ones were never closed either. Now a
    connection's request line and headers must be whole http_idle_timeout after it opened or was last answered (not
    much later, nor before)."""
    gateway = start_gateway(tmp_path / "gw.db", config_file(tmp_path, http_idle_timeout=1))
    silent = socket.create_connection(("127.0.0.1", gateway.http_port))
    opened = time.monotonic()
    assert not closed_by_gateway(silent, within=0.5)
    partial = socket.create_connection(("127.0.0.1", gateway.http_port))
    partial.sendall(REQUEST + b"X-Slow: ")
    answered = socket.create_connection(("127.0.0.1", gateway.http_port))
    answered.sendall(REQUEST + b"\r\n")
    try:
        assert answered.recv(65536).startswith(b"HTTP/1.1 200 OK")  # (kept alive: HTTP/1.1)
        assert closed_by_gateway(silent, within=2) and time.monotonic() - opened < 2.5
        assert closed_by_gateway(partial) and closed_by_gateway(answered)
    finally:
        for link in (silent, partial, answered):
            link.close()
    assert gateway.terminate() == 0


def test_a_request_over_the_header_limits_is_refused(tmp_path: Path, start_gateway) -> None:
    """aiohttp's defaults let a request carry 128 headers of 8,190 octets: 1 MiB held for each connection."""
    gateway = start_gateway(tmp_path / "gw.db")
    try:
        for headers in (b"X: %s\r\n" % (b"v" * 4097), b"".join(b"X-%d: v\r\n" % n for n in range(32))):
            assert answer_to(gateway.http_port, REQUEST + headers + b"\r\n").startswith(b"HTTP/1.0 400 Bad Request")
        within = b"".join(b"X-%d: %s\r\n" % (n, b"v" * 4000) for n in range(31))  # 32 headers with Host
        assert answer_to(gateway.http_port, REQUEST + within + b"\r\n").startswith(b"HTTP/1.1 200 OK")
    finally:
        assert gateway.terminate() == 0


def test_http_connections_count_toward_the_open_file_limit(tmp_path: Path, start_gateway) -> None:
    """Only SMPP connections were counted: with room for 1,036 connections, 1,100 idle HTTP ones made every bind fail
    (the accept of its connection did), and 'connections near the open-file limit' was never logged."""
    gateway = start_gateway(tmp_path / "gw.db", open_files=(100, 100))  # room for 36 connections
    links = [socket.create_connection(("127.0.0.1", gateway.http_port)) for _ in range(40)]
    try:
        assert eventually(lambda: logged(gateway, CROWDED), 10)
        [line] = logged(gateway, CROWDED)
        assert line["allowed"] == 36 and line["connections"] >= 36
    finally:
        for link in links:
            link.close()
    assert gateway.terminate() == 0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_what_malformed_requests_held_is_freed_once_they_are_answered(tmp_path: Path, start_gateway) -> None:
    """A malformed request's handler, parser, exception and the request's bytes hold each other in cycles only the
    collector frees, which the gateway's collector thresholds make rare: each request of 120 headers of 8,000 octets
    (refused 400 at its 33rd) left ~0.9 MB behind for good. Those of 150 such requests are freed in seconds."""
    gateway = start_gateway(tmp_path / "gw.db")
    try:
        before = rss_mb(gateway.proc.pid)
        headers = b"".join(b"X-%d: %s\r\n" % (n, b"v" * 8000) for n in range(120))
        links = [socket.create_connection(("127.0.0.1", gateway.http_port), timeout=10) for _ in range(150)]
        for link in links:
            link.sendall(REQUEST + headers)
        for link in links:
            assert link.recv(65536).startswith(b"HTTP/1.0 400 Bad Request")
            link.close()
        assert eventually(lambda: rss_mb(gateway.proc.pid) < before + 40, 10), (before, rss_mb(gateway.proc.pid))
    finally:
        assert gateway.terminate() == 0
