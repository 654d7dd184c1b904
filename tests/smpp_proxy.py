"""A listening SMPP proxy for tests that put themselves between the simulator (or any client) and the gateway, as a
misbehaving SMSC would: the server's lifecycle, a connection to the gateway for each client, and PDU framing; what
it does to the PDUs is each subclass's `_relay`."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Self


class ProxyServer:
    def __init__(self, upstream: int) -> None:
        self.upstream = upstream  # the gateway's SMPP port
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            await self._relay(client_r, client_w, up_r, up_w)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            client_w.close()
            up_w.close()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip
        """Pass one client's PDUs to the gateway and back, as the subclass changes them, until either side closes."""
        raise NotImplementedError


async def pdus(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Each whole PDU the stream carries, as its bytes."""
    while True:
        head = await reader.readexactly(16)
        yield head + await reader.readexactly(struct.unpack(">I", head[:4])[0] - 16)


def command_of(pdu: bytes) -> int:
    return struct.unpack(">I", pdu[4:8])[0]
