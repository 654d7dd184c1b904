"""The fleet's null server: the least an SMSC can do for subscriber-to-subscriber dialogues to complete.

An asyncio.Protocol server (uvloop when installed) on our sans-IO codec
(`split_frames`, `decode_pdu`, `encode_message_id_resp`), no persistence, no
services, no logging per message:

* binds (transmitter, receiver, transceiver) are answered OK whatever the
  credentials; each bind's `address_range` (a regular expression, as the
  gateway reads it) says which destinations it receives;
* each submit_sm is answered at once with a submit_sm_resp carrying a message
  id, and the same message goes out as a deliver_sm to the receiving bind
  (receiver or transceiver) whose address_range covers its destination -- the
  first such bind still bound -- or is dropped when none does (short codes,
  numbers nobody bound for). The deliver_sm carries the submit_sm's body
  unchanged (the two PDUs share their layout: addresses, esm_class with UDHI,
  data_coding, short_message, TLVs), so concatenated texts arrive as sent;
* enquire_link and unbind are answered (unbind then closes); deliver_sm_resp
  and other responses are taken and ignored; a request of any other kind gets
  generic_nack ESME_RINVCMDID, a request before a bind ESME_RINVBNDSTS.

Writes are batched: what one read produces for its own connection goes out in
one write at the end of the read; deliveries to other connections are written
once per event-loop iteration.

Against it the fleet's `chatter` behaviour (subscriber A texts subscriber B,
B must receive it) runs at the fleet's own speed: bench/dialogues.py measures
the fleet's ceiling this way, the fleet pinned to one core and this server to
the other.

    .venv/bin/python bench/loopback_server.py --port 2775 [--host 127.0.0.1]

Prints "READY <port>" on stdout once listening (--port 0: any free port);
stops on SIGTERM / SIGINT and then prints one line of counters
("STATS {...}": submit_sm, delivered, dropped, binds). From Python:
`server = await LoopbackServer.start("127.0.0.1", 0)`, `server.port`,
`server.stats`, `await server.stop()`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from struct import Struct

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.smpp.codec import (
    PduError,
    decode_pdu,
    encode_message_id_resp,
    encode_pdu,
    split_frames,
)
from gateway.smpp.constants import RESPONSE_BIT, CommandId, CommandStatus
from gateway.smpp.pdu import GenericNack, response_to

__all__ = ["LoopbackServer", "LoopbackSmsc", "Router", "serve"]

C, S = CommandId, CommandStatus
HEADER = Struct(">IIII")
_BINDS = {C.BIND_TRANSMITTER: "tx", C.BIND_RECEIVER: "rx", C.BIND_TRANSCEIVER: "trx"}
_SUBMIT_SM, _DELIVER_SM, _SUBMIT_SM_RESP = C.SUBMIT_SM, C.DELIVER_SM, C.SUBMIT_SM_RESP
_ENQUIRE_LINK, _UNBIND = C.ENQUIRE_LINK, C.UNBIND


class Router:
    """Receiving binds by address_range; destination -> bind, cached until the binds change."""

    def __init__(self) -> None:
        self.binds: list[tuple[re.Pattern[str] | None, LoopbackSmsc]] = []
        self._cache: dict[str, LoopbackSmsc | None] = {}
        self.stats = {"connections": 0, "binds": 0, "submit_sm": 0, "delivered": 0, "dropped": 0, "deliver_sm_resp": 0}

    def add(self, conn: LoopbackSmsc, address_range: str) -> None:
        try:
            pattern = re.compile(address_range) if address_range else None
        except re.error:
            pattern = re.compile(re.escape(address_range))  # not a pattern: the literal number
        self.binds.append((pattern, conn))
        self._cache.clear()

    def remove(self, conn: LoopbackSmsc) -> None:
        before = len(self.binds)
        self.binds = [(p, c) for p, c in self.binds if c is not conn]
        if len(self.binds) != before:
            self._cache.clear()

    def find(self, destination: str) -> LoopbackSmsc | None:
        try:
            return self._cache[destination]
        except KeyError:
            pass
        found = next((c for p, c in self.binds if p is not None and p.fullmatch(destination)), None)
        if len(self._cache) > 1_000_000:
            self._cache.clear()
        self._cache[destination] = found
        return found


class LoopbackSmsc(asyncio.Protocol):
    message_ids = 0  # shared by all connections

    def __init__(self, router: Router) -> None:
        self.router = router
        self.stats = router.stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.mode = ""  # "" before a bind, then "tx" | "rx" | "trx"
        self.sequence = 0
        self.pending: list[bytes] = []  # deliver_sm from other connections, written on the next loop iteration
        self.flush_scheduled = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats["connections"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.router.remove(self)
        self.transport = None
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            frames = split_frames(self.buffer)
        except PduError as exc:  # a length that cannot be trusted: answer what came before, then give up
            frames = getattr(exc, "frames", [])
            self._handle(frames)
            if self.transport is not None:
                self.transport.write(encode_pdu(GenericNack(sequence_number=exc.sequence_number, command_status=exc.status)))
                self.transport.close()
            return
        self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        out = self.pending  # this read's answers join the deliveries already waiting: one write
        router, stats = self.router, self.stats
        close = False
        for frame in frames:
            command_id, sequence = HEADER.unpack_from(frame)[1::2]
            if command_id == _SUBMIT_SM and self.mode in ("tx", "trx"):
                try:
                    pdu = decode_pdu(frame)
                except PduError as exc:
                    out.append(encode_message_id_resp(_SUBMIT_SM_RESP, sequence, "", exc.status))
                    continue
                LoopbackSmsc.message_ids += 1
                stats["submit_sm"] += 1
                out.append(encode_message_id_resp(_SUBMIT_SM_RESP, sequence, f"{LoopbackSmsc.message_ids:x}"))
                target = router.find(pdu.destination_addr)  # type: ignore[attr-defined]
                if target is None or target.transport is None:
                    stats["dropped"] += 1
                else:
                    stats["delivered"] += 1
                    target.deliver(frame)
            elif command_id & RESPONSE_BIT:
                if command_id == C.DELIVER_SM_RESP:
                    stats["deliver_sm_resp"] += 1
            elif command_id == _ENQUIRE_LINK:
                out.append(HEADER.pack(16, C.ENQUIRE_LINK_RESP, 0, sequence))
            elif command_id in _BINDS:
                try:
                    pdu = decode_pdu(frame)
                except PduError as exc:
                    out.append(encode_pdu(GenericNack(sequence_number=sequence, command_status=exc.status)))
                    continue
                if self.mode:
                    out.append(encode_pdu(response_to(pdu, S.ESME_RALYBND)))
                    continue
                self.mode = _BINDS[command_id]
                if self.mode != "tx":
                    router.add(self, pdu.address_range)  # type: ignore[attr-defined]
                stats["binds"] += 1
                out.append(encode_pdu(response_to(pdu, 0, system_id="loopback")))
            elif command_id == _UNBIND:
                out.append(HEADER.pack(16, C.UNBIND_RESP, 0, sequence))
                router.remove(self)
                close = True
            elif command_id == _SUBMIT_SM:  # before a bind, or on a receiver
                out.append(encode_message_id_resp(_SUBMIT_SM_RESP, sequence, "", S.ESME_RINVBNDSTS))
            elif not self.mode:
                out.append(encode_pdu(GenericNack(sequence_number=sequence, command_status=S.ESME_RINVBNDSTS)))
            else:
                out.append(encode_pdu(GenericNack(sequence_number=sequence, command_status=S.ESME_RINVCMDID)))
        self._flush()
        if close and self.transport is not None:
            self.transport.close()

    def deliver(self, frame: bytes) -> None:
        """The submit_sm `frame` as a deliver_sm to this bind (same body, this connection's sequence number)."""
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        self.pending.append(HEADER.pack(len(frame), _DELIVER_SM, 0, self.sequence) + frame[16:])
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.pending:
            if self.transport is not None:
                self.transport.write(b"".join(self.pending))
            self.pending.clear()


class LoopbackServer:
    """The server in the running event loop (tests, in-process runs)."""

    def __init__(self, server: asyncio.base_events.Server, router: Router) -> None:
        self.server = server
        self.router = router

    @classmethod
    async def start(cls, host: str = "127.0.0.1", port: int = 0) -> LoopbackServer:
        router = Router()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: LoopbackSmsc(router), host, port, reuse_address=True)
        return cls(server, router)

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.router.stats)

    async def stop(self) -> None:
        self.server.close()
        for _, conn in list(self.router.binds):
            if conn.transport is not None:
                conn.transport.close()
        await self.server.wait_closed()


async def serve(host: str, port: int) -> None:
    server = await LoopbackServer.start(host, port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.port}", flush=True)
    await stop.wait()
    server.server.close()
    print(f"STATS {json.dumps(server.stats)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775, help="0: any free port (printed as READY <port>)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
