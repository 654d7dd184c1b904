"""How much of what the gateway sent a peer it has not read yet: what waits in asyncio's transport, and what the
kernel still holds for it (sent and not yet taken by the peer's own socket: on Linux, the TIOCOUTQ ioctl).

asyncio's buffer alone does not tell a slow reader from a stuck one: the kernel's send buffer (megabytes on a fast
link) takes the first of a window of long MTs, and a client reading 300 KB/s leaves asyncio's buffer unchanged
for seconds while it reads them."""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios

_TIOCOUTQ = getattr(termios, "TIOCOUTQ", None)  # (Linux; elsewhere only asyncio's buffer is counted)
_INT = struct.Struct("i")


def unread(transport: asyncio.BaseTransport) -> int:
    """Bytes sent to the peer that it has not taken yet: the transport's buffer (over TLS, the TLS layer's, not the
    one under it) and the kernel's queue."""
    queued = transport.get_write_buffer_size()  # type: ignore[attr-defined]
    sock = transport.get_extra_info("socket")
    if _TIOCOUTQ is None or sock is None:
        return queued
    try:
        return queued + _INT.unpack(fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):  # (a closed socket's descriptor is -1: no caller meets one today, ticks come first)
        return queued
