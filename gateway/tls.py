"""The SMPP-over-TLS listener: its context, built from [tls] before anything listens, and the handshake of each
connection to it (`TlsHandshake`).

A passphrase-protected key cannot be used: the gateway starts unattended (systemd, docker) and has nowhere
to ask for one. Without a password callback OpenSSL asks on the terminal itself, inside the event loop (a
gateway on a terminal hung at "Enter PEM pass phrase:"), or fails with "[Errno 22] Invalid argument" naming
no cause. (A passphrase in the config file, next to the key it protects, would protect nothing.)
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
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


class TlsHandshake(asyncio.Protocol):
    """A connection to the TLS port, until its TLS handshake is done: then its SmppConnection's (whose bind_timeout
    began when the connection opened: the handshake counts in it).

    Not create_server(ssl=...): asyncio did that handshake itself and dropped a connection whose handshake failed
    or was not done within bind_timeout without a line, at any log level (a plain SMPP client given the TLS port,
    one that never sent its ClientHello), where the plain port logs one that never binds. Here each is a line
    (`TLS handshake failed` with its reason, or `not bound within bind_timeout; closing`), under the per-host
    budget of the lines about refused PDUs (SmppConnection.may_log). Nor start_tls on this connection's transport:
    uvloop starts reading once connection_made has returned, paused or not, and a ClientHello already there came
    here, not to the handshake, which waited for it until bind_timeout. So the accepted socket is taken (a
    duplicate of its descriptor) before anything is read, this transport dropped, and connect_accepted_socket does
    the handshake, whose failure it raises."""

    def __init__(self, gateway: Gateway, context: ssl.SSLContext) -> None:
        self.gateway = gateway
        self.context = context
        self.peer = self.host = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.host = peer[0] if peer else "?"  # (whose lines are counted together, as SmppConnection's are)
        try:
            sock: socket.socket | None = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        except OSError as exc:  # (no descriptor left for the duplicate: at the open-file limit)
            sock = None
            self._failed(str(exc))
        transport.abort()  # (it closes its own descriptor, without a shutdown: the connection stays open on ours)
        if sock is not None:
            self.gateway.spawn(self._handshake(sock))

    async def _handshake(self, sock: socket.socket) -> None:
        gateway = self.gateway
        bind_timeout = gateway.config.gateway.bind_timeout
        try:  # (on success the SmppConnection has the connection: nothing more to do here)
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: SmppConnection(gateway), sock, ssl=self.context, ssl_handshake_timeout=bind_timeout or None)
        except ConnectionAbortedError as exc:  # the handshake's timeout (asyncio's 60 s for bind_timeout 0)
            if not bind_timeout:
                self._failed(str(exc))
            elif gateway.complaints.allow((self.host, "-"), NOT_BOUND):
                log.warning(NOT_BOUND, peer=self.peer, seconds=bind_timeout, reason="TLS handshake not done")
        except ssl.SSLError as exc:
            self._failed(_NOT_TLS.get(exc.reason or "") or (exc.reason or str(exc)).lower().replace("_", " "))
        except ConnectionResetError:  # (a port check: connected, then closed)
            self._failed("closed by the peer", info=True)
        except OSError as exc:
            self._failed(str(exc) or type(exc).__name__)

    def _failed(self, reason: str, info: bool = False) -> None:
        """The handshake failed (the connection is closed): a line, as the budget allows."""
        if self.gateway.complaints.allow((self.host, "-"), "TLS handshake failed"):
            (log.info if info else log.warning)("TLS handshake failed", peer=self.peer, reason=reason)
