"""The SMPP-over-TLS listener: its context, built from [tls] before anything listens, and the handshake of each
connection to it (`TlsHandshake`).

A passphrase-protected key cannot be used: the gateway starts unattended (systemd, docker) and has nowhere
to ask for one. Without a password callback OpenSSL asks on the terminal itself, inside the event loop (a
gateway on a terminal hung at "Enter PEM pass phrase:"), or fails with "[Errno 22] Invalid argument" naming
no cause. (A passphrase in the config file, next to the key it protects, would protect nothing.)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import TYPE_CHECKING

from .config import ConfigError, TlsSettings
from .logs import get_logger
from .server import NOT_BOUND, SmppConnection

if TYPE_CHECKING:
    from .app import Gateway

log = get_logger("smpp")
# What OpenSSL calls a first record that is no TLS record at all: the commonest, an SMPP PDU (its first octets, of its
# length, are 0: no record type, no TLS version) or an HTTP request, from a client given the wrong port.
_NOT_TLS = {
    "WRONG_VERSION_NUMBER": "not TLS: a plain SMPP client on the TLS port?",
    "HTTP_REQUEST": "not TLS: an HTTP request",
    "HTTPS_PROXY_REQUEST": "not TLS: an HTTP proxy request",
}

# What OpenSSL says of a key read that is not the certificate's: another key of its type, or one of another type
# (an EC key for an RSA certificate goes to the EC certificate's slot, and there is none).
_ANOTHER_CERTIFICATES = frozenset({"KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"})


class _EncryptedKey(Exception):
    """OpenSSL asked for the key's passphrase."""


def _no_passphrase() -> str:
    raise _EncryptedKey


def server_context(tls: TlsSettings, source: str) -> ssl.SSLContext:
    """The context for the TLS port; a ConfigError naming the file and key if the certificate or key will not do."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile, password=_no_passphrase)
    except _EncryptedKey:
        raise ConfigError(source, "tls.keyfile", f"the key is encrypted (passphrase-protected): {tls.keyfile}; the "
                          "gateway cannot ask for a passphrase, so give it the key without one "
                          "(openssl pkey -in encrypted.pem -out key.pem), readable by the gateway only") from None  # fmt: skip
    except OSError as exc:  # (ssl.SSLError is one)
        raise _which_file(tls, source, exc) from None
    return context


def _which_file(tls: TlsSettings, source: str, exc: OSError) -> ConfigError:
    """Which file would not load, and what it should hold. OpenSSL says "PEM lib" whichever it was (garbage, an
    empty file, the key given as the certificate or the certificate as the key): the certificate is loaded alone
    to tell. (Only once the start has failed: a start that succeeds loads each file once.)"""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_verify_locations(cafile=tls.certfile)
    except ssl.SSLError:
        return ConfigError(source, "tls.certfile", f"expected a PEM certificate (-----BEGIN CERTIFICATE-----): none "
                           f"in {tls.certfile}")  # fmt: skip
    except OSError as cert_exc:
        return ConfigError(source, "tls.certfile", f"cannot read {tls.certfile}: {cert_exc.strerror or cert_exc}")
    if not isinstance(exc, ssl.SSLError):
        return ConfigError(source, "tls.keyfile", f"cannot read {tls.keyfile}: {exc.strerror or exc}")
    found = "the key of another certificate" if exc.reason in _ANOTHER_CERTIFICATES else "no private key"
    return ConfigError(source, "tls.keyfile", f"expected a PEM private key without passphrase, matching the "
                       f"certificate in {tls.certfile}: {tls.keyfile} holds {found}")  # fmt: skip


# Connections the kernel queues before the gateway accepts them (capped by net.core.somaxconn). asyncio's default, 100,
# overflowed under a reconnect storm (binds coming back after a restart): each connection past it waits for its
# SYN to be sent again, 1 s and more.
ACCEPT_BACKLOG = 1024
ACCEPT_RETRY_DELAY = 1.0  # seconds: no descriptor left for a connection (EMFILE), as the event loops wait


class TlsListener:
    """The TLS port: its sockets, bound when it is made and listening from `start_serving`, as an asyncio.Server's
    (the gateway takes its ports before it is ready, and serves once it is); each connection accepted goes to its
    handshake (`TlsHandshake`) as the socket accepted, no transport made for it before.

    Not create_server(ssl=...): asyncio did that handshake itself and dropped a connection whose handshake failed
    or was not done within bind_timeout without a line, at any log level (a plain SMPP client given the TLS port,
    one that never sent its ClientHello), where the plain port logs one that never binds. Nor create_server with
    a protocol that hands its connection to the handshake: uvloop starts reading once connection_made has returned
    (start_tls there missed a ClientHello already come), and taking the socket from that transport took a duplicate
    of its descriptor: two for each connection until asyncio closed the first, a burst of connections refused at
    half the limit on open files."""

    def __init__(self, gateway: Gateway, context: ssl.SSLContext, sockets: list[socket.socket]) -> None:
        self.gateway = gateway
        self.context = context
        self.sockets = sockets
        self.handshakes: set[asyncio.Task] = set()  # connections accepted, their handshake not done yet
        self._accepting: list[asyncio.Task] = []

    @classmethod
    async def bind(cls, gateway: Gateway, context: ssl.SSLContext, host: str | None, port: int) -> TlsListener:
        """Bound to every address `host` resolves to ("" or None: every interface), as create_server binds: with
        SO_REUSEADDR, an IPv6 socket IPv6 only."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)  # fmt: skip
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _name, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:  # (create_server's words)
                    raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: "
                                  f"{(exc.strerror or str(exc)).lower()}") from None  # fmt: skip
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(gateway, context, sockets)

    async def start_serving(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            sock.listen(ACCEPT_BACKLOG)
            sock.setblocking(False)
            self._accepting.append(loop.create_task(self._accept(sock)))

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    sock, _address = await loop.sock_accept(listening)
                except ConnectionAbortedError:  # (reset before it was accepted)
                    continue
                except OSError:  # no descriptor left (the limit on open files): the backlog waits, as the loops do
                    await asyncio.sleep(ACCEPT_RETRY_DELAY)
                    continue
                task = loop.create_task(TlsHandshake(self.gateway, self.context, sock).run())
                self.handshakes.add(task)
                task.add_done_callback(self.handshakes.discard)
                self.gateway.count_open(self.gateway.connections_open)
        finally:  # (`close`: once the loop no longer watches it, not under its watch)
            listening.close()

    def close(self) -> None:
        """Stop listening (the connections accepted go on with their handshakes: `cancel_handshakes`)."""
        for task in self._accepting:
            task.cancel()
        if not self._accepting:  # (never listening: a start that failed)
            for sock in self.sockets:
                sock.close()
        self.sockets = []  # (as an asyncio.Server's once closed)

    def cancel_handshakes(self) -> None:
        """Close the connections whose handshake is not done (the gateway stops: it is unbinding its binds)."""
        for task in self.handshakes:
            task.cancel()


class TlsHandshake:
    """A connection to the TLS port, until its TLS handshake is done: then its SmppConnection's (whose bind_timeout
    began when the connection opened: the handshake counts in it). connect_accepted_socket does the handshake and
    raises its failure: each is a line (`TLS handshake failed` with its reason, or `not bound within bind_timeout;
    closing`), under the per-host budget of the lines about refused PDUs (SmppConnection.may_log). Not a connection
    closed before it sent anything (a port check: the plain port logs nothing of it either, and 5 info lines then a
    warning every 10 s told of each check a load balancer made)."""

    def __init__(self, gateway: Gateway, context: ssl.SSLContext, sock: socket.socket) -> None:
        self.gateway = gateway
        self.context = context
        self.sock = sock
        self.accepted_at = time.monotonic()  # (the SmppConnection's clock: its bind_timeout counts from here)
        try:
            peer = sock.getpeername()
        except OSError:  # (already reset)
            peer = None
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.host = peer[0] if peer else "?"  # (whose lines are counted together, as SmppConnection's are)

    async def run(self) -> None:
        gateway = self.gateway
        bind_timeout = gateway.config.gateway.bind_timeout
        try:  # (on success the SmppConnection has the connection: nothing more to do here; else it is closed)
            async with asyncio.timeout(bind_timeout or None):
                if not await self._sends_anything():  # a port check: not logged, as on the plain port
                    self.sock.close()
                    return
                await asyncio.get_running_loop().connect_accepted_socket(
                    lambda: SmppConnection(gateway, self.accepted_at), self.sock, ssl=self.context,
                    ssl_handshake_timeout=bind_timeout or None)  # fmt: skip
        except (TimeoutError, ConnectionAbortedError) as exc:  # bind_timeout (or asyncio's 60 s for bind_timeout 0)
            if not bind_timeout:
                self._failed(str(exc))
            elif gateway.complaints.allow((self.host, "-"), NOT_BOUND):
                log.warning(NOT_BOUND, peer=self.peer, account="-", seconds=bind_timeout, reason="TLS handshake not done")
        except ssl.SSLError as exc:
            self._failed(_NOT_TLS.get(exc.reason or "") or (exc.reason or str(exc)).lower().replace("_", " "))
        except ConnectionResetError:  # (without an alert: an asyncio client that does not trust the certificate)
            self._failed("closed by the peer during the handshake")
        except OSError as exc:
            self._failed(str(exc) or type(exc).__name__)

    async def _sends_anything(self) -> bool:
        """Whether the peer sends anything before it closes: a TCP port check (a load balancer's: connect, close or
        reset) sends nothing, and is no handshake that failed. Its first octets are left for the handshake."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        try:
            loop.add_reader(self.sock, lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(self.sock)
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:  # (reset)
            return False
        except BaseException:  # (bind_timeout, or the gateway stops: cancelled)
            self.sock.close()
            raise

    def _failed(self, reason: str) -> None:
        """The handshake failed (the connection is closed): a line, as the budget allows."""
        if self.gateway.complaints.allow((self.host, "-"), "TLS handshake failed"):
            log.warning("TLS handshake failed", peer=self.peer, account="-", reason=reason)
