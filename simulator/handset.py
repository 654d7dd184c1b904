"""Simulated subscribers on shared ESME binds.

A `Handset` is one MSISDN: it sends MO through an `Esme` and waits for the
texts addressed to it, by the number they come from. Many handsets share a
bind; a `Switchboard` (the binds' `on_message`) hands each text to the
handset it is addressed to.

    board = Switchboard()
    esme = await Esme.connect(host, port, on_message=board)
    await esme.bind("trx", "handset", "handset", address_range=r"86138\\d{8}")
    phone = board.add(Handset("8613800000001", esme))
    await phone.send("10086", "0000")
    listing = await phone.expect("10086", timeout=5)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable

from gateway.smpp.pdu import Pdu

from .esme import Esme, ShortMessage

__all__ = ["Handset", "NoReply", "Switchboard"]


class NoReply(Exception):
    """Nothing from the expected numbers arrived in time."""


class Handset:
    def __init__(self, msisdn: str, esme: Esme, *, ignore: Iterable[str] = ()) -> None:
        """ignore: numbers whose texts are counted in `ignored` and dropped (e.g. surveys this subscriber never answers)."""
        self.msisdn = msisdn
        self.esme = esme
        self.inbox: list[ShortMessage] = []  # arrived, not yet taken by expect()
        self.ignore = set(ignore)
        self.ignored: Counter[str] = Counter()
        self.subscriptions: list[str] = []  # service ids this subscriber believes it holds (dialogues keep it)
        self.transcript: list[tuple[float, str, str, str]] = []  # (time.monotonic(), ">" sent / "<" received, peer, text)
        self._waiter: tuple[frozenset[str], asyncio.Future[ShortMessage]] | None = None
        self.lost: Exception | None = None  # the bind its texts arrive on is gone: see cut_off()

    def __repr__(self) -> str:
        return f"Handset({self.msisdn})"

    async def send(self, to: str, text: str, **fields: object) -> tuple[Pdu, float, float]:
        """Text `to`; returns the submit_sm_resp, the time (time.monotonic()) just before the submission and the time
        the submit_sm_resp arrived (Esme.submit_answered)."""
        at = time.monotonic()
        self.transcript.append((at, ">", to, text))
        resp, answered_at = await self.esme.submit_answered(self.msisdn, to, text, **fields)
        return resp, at, answered_at

    async def expect(self, *sources: str, timeout: float = 5.0) -> ShortMessage:
        """The next text from one of `sources` (any number when none given), waiting up to `timeout` seconds.

        Texts from other numbers stay in the inbox.
        """
        wanted = frozenset(sources)
        for i, message in enumerate(self.inbox):
            if not wanted or message.source in wanted:
                return self.inbox.pop(i)
        if self.lost is not None:
            raise self.lost
        if self._waiter is not None:
            raise RuntimeError(f"{self}: expect() is already waiting")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ShortMessage] = loop.create_future()
        self._waiter = (wanted, future)
        timer = loop.call_later(timeout, _time_out, future, sources or ("anyone",), timeout)
        try:
            return await future
        finally:
            timer.cancel()
            self._waiter = None

    def cut_off(self, error: Exception) -> None:
        """The bind its texts arrive on is gone: what expect() waits for now, and every later expect() that finds
        nothing in the inbox, fails with `error` at once (not as nothing within its timeout)."""
        self.lost = error
        waiter = self._waiter
        if waiter is not None and not waiter[1].done():
            waiter[1].set_exception(error)

    def arrived_in_part(self, source: str) -> str:
        """For a dialogue that gave up waiting for a text from `source`: the parts of a long one that arrived and those
        missing, or "" (simulator.esme.SharedParts.arrived_in_part)."""
        return self.esme.parts.arrived_in_part(source, self.msisdn)

    def take_inbox(self) -> list[ShortMessage]:
        """Everything that arrived and no expect() took (texts nobody was waiting for)."""
        taken, self.inbox = self.inbox, []
        return taken

    def deliver(self, message: ShortMessage) -> None:
        """A text for this subscriber arrived (called by the Switchboard)."""
        if message.source in self.ignore:
            self.ignored[message.source] += 1
            return
        self.transcript.append((message.received_at, "<", message.source, message.text))
        waiter = self._waiter
        if waiter is not None and (not waiter[0] or message.source in waiter[0]) and not waiter[1].done():
            waiter[1].set_result(message)
        else:
            self.inbox.append(message)


def _time_out(future: asyncio.Future[ShortMessage], sources: tuple[str, ...], timeout: float) -> None:
    if not future.done():
        future.set_exception(NoReply(f"nothing from {'/'.join(sources)} within {timeout:g} s"))


class Switchboard:
    """Pass as the binds' `on_message`: each text goes to the handset it is addressed to."""

    def __init__(self) -> None:
        self.handsets: dict[str, Handset] = {}
        self.unrouted: list[ShortMessage] = []  # addressed to no handset here (kept: a QA tool shows them)
        self.receipts = 0

    def add(self, handset: Handset) -> Handset:
        self.handsets[handset.msisdn] = handset
        return handset

    def __call__(self, message: ShortMessage) -> None:
        handset = self.handsets.get(message.destination)
        if message.is_receipt:
            self.receipts += 1
        if handset is None:
            self.unrouted.append(message)
        else:
            handset.deliver(message)
