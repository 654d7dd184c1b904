"""Benchmark target (a): the Python ceiling for an SMPP server on this machine.

A minimal asyncio.Protocol server (uvloop when installed) that does only what
any server built on our codec must do per message: split the stream into
frames with `split_frames`, FULLY decode every PDU with `decode_pdu`, and
answer each submit_sm with a real `SubmitSmResp` encoded by `encode_pdu`
(binds get their bind resp, enquire_link / unbind theirs); one write per
read. No session state machine, no store, no routing, no logging.

    .venv/bin/python bench/null_server.py --port 2775 [--host 127.0.0.1]

Prints "READY <port>" on stdout once listening; stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.smpp.codec import PduError, decode_pdu, encode_pdu, split_frames  # noqa: E402
from gateway.smpp.constants import CommandId  # noqa: E402
from gateway.smpp.pdu import GenericNack, SubmitSmResp, response_to  # noqa: E402

C = CommandId
_BINDS = frozenset({C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER})
_SIMPLE = frozenset({C.ENQUIRE_LINK, C.UNBIND})


class NullSmsc(asyncio.Protocol):
    counter = 0  # message ids, shared by all connections

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out: list[bytes] = []
        close = False
        try:
            frames = split_frames(self.buffer)
        except PduError:
            self.transport.close()
            return
        for frame in frames:
            try:
                pdu = decode_pdu(frame)
            except PduError as exc:
                out.append(encode_pdu(GenericNack(sequence_number=exc.sequence_number, command_status=exc.status)))
                continue
            command_id = pdu.command_id
            if command_id == C.SUBMIT_SM:
                NullSmsc.counter += 1
                out.append(encode_pdu(SubmitSmResp(sequence_number=pdu.sequence_number, message_id=f"{NullSmsc.counter:019x}")))
            elif command_id in _BINDS:
                out.append(encode_pdu(response_to(pdu, 0, system_id="nullsmsc")))
            elif command_id in _SIMPLE:
                out.append(encode_pdu(response_to(pdu)))
                close = close or command_id == C.UNBIND
            # responses (e.g. enquire_link_resp) and anything else: ignored
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(NullSmsc, host, port, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
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
