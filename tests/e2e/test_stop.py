"""Gateway.stop while a short code is still handling an MO (README, "SMPP 3.4 answers": on SIGTERM ...).

The handling of acknowledged MOs gets drain_timeout like everything else in flight; one still going then is
not waited for: it is stored `accepted`, and the next start handles it.
"""

from __future__ import annotations

import asyncio
import threading
import time

from gateway.store.records import MessageStatus
from tests.smpp_handset import ESME_ROK, encode, texts_from

A = "8613800000001"
ECHO = "10086000"  # replies with the text it received
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
