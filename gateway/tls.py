"""The SMPP-over-TLS listener's context, built from [tls] before anything listens.

A passphrase-protected key cannot be used: the gateway starts unattended (systemd, docker) and has nowhere
to ask for one. Without a password callback OpenSSL asks on the terminal itself, inside the event loop (a
gateway on a terminal hung at "Enter PEM pass phrase:"), or fails with "[Errno 22] Invalid argument" naming
no cause. (A passphrase in the config file, next to the key it protects, would protect nothing.)
"""

from __future__ import annotations

import ssl

from .config import ConfigError, TlsSettings


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
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(source, "tls.certfile", f"cannot load {tls.certfile} with {tls.keyfile}: {exc}") from None
    return context
