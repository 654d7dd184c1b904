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
from dataclasses import dataclass

from gateway.smpp.constants import CommandStatus
from gateway.smpp.pdu import Pdu, SubmitSm

from .esme import Esme, NotSent, ShortMessage, answer_of

__all__ = ["Handset", "NoReply", "Resend", "Switchboard"]

THROTTLED = CommandStatus.ESME_RTHROTTLED
THROTTLED_BACKOFF = (0.2, 2.0)  # seconds before an MO answered ESME_RTHROTTLED is sent again, doubling up to the most


@dataclass(slots=True)
class Resend:
    """Whether an MO answered ESME_RTHROTTLED is sent again (a fleet's with --rebind: the stopping target refuses MO so
    until it unbinds), as SMPP clients do since nothing of it was stored: after THROTTLED_BACKOFF's first delay,
    doubling, while `within` seconds (a step's timeout) from its first submission allow; then it stays refused. So is
    one that never left (NotSent: the target had unbound its bind), once the handset's bind is bound again.
    `resent`: submissions sent again; `unsent`: those sent on a bind bound again; over the handsets sharing it."""

    within: float
    resent: int = 0
    unsent: int = 0


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
        self._rebound: asyncio.Future[None] | None = None  # set when its bind is bound again: see rebound()

    def __repr__(self) -> str:
        return f"Handset({self.msisdn})"

    async def send(self, to: str, text: str, resend: Resend | None = None, **fields: object) -> tuple[Pdu, float, float]:
        """Text `to`; returns the submit_sm_resp, the time (time.monotonic()) just before the submission and the time
        the submit_sm_resp arrived (Esme.submit_answered). With `resend`, parts answered ESME_RTHROTTLED, and a text
        that never left (NotSent: its bind unbound by the target), are sent again (_resend_throttled): the times are
        then those of the last submission; never sent by then, it raises NotSent."""
        at = time.monotonic()
        self.transcript.append((at, ">", to, text))
        esme = self.esme
        pdus = esme.submissions(self.msisdn, to, text, **fields)
        responses: list[Pdu | None]
        unsent: NotSent | None = None
        try:
            responses, answered_at = await esme.submit_pdus(pdus)  # type: ignore[assignment]
        except NotSent as exc:
            if resend is None:
                raise
            responses, answered_at, unsent = [None] * len(pdus), at, exc
        if resend is not None and _held_back(responses):
            at, answered_at = await self._resend_throttled(pdus, responses, (at, answered_at), resend)
            if _never_left(responses):
                raise NotSent(f"{unsent}; its bind not bound again within {resend.within:g} s")
        return answer_of(responses), at, answered_at  # type: ignore[arg-type]

    async def _resend_throttled(self, pdus: list[SubmitSm], responses: list[Pdu | None], times: tuple[float, float],
                                resend: Resend) -> tuple[float, float]:  # fmt: skip
        """Send the parts answered ESME_RTHROTTLED, or never sent (None), again (`responses` updated in place), each
        alone and in order (those before it were accepted), after a back-off doubling from THROTTLED_BACKOFF's first
        delay, until none is, one is refused otherwise, or the next try would come `resend.within` after the first
        submission (the last delay cut to what is left). On the handset's bind of the moment: one lost or unbound
        meanwhile is waited for, up to then (a fleet binds it again, --rebind, and gives the handset the new one:
        rebound), and what waits goes as soon as it is back, not at the back-off's next turn; a part sent on a bind
        lost before it is answered fails as any MO unanswered (EsmeError). `times`: when the first submission went
        and its answer came; returns those of the last."""
        delay, most = THROTTLED_BACKOFF
        at, answered_at = times
        deadline = at + resend.within
        while _held_back(responses) and time.monotonic() < deadline:
            if self.esme.is_bound:
                await asyncio.sleep(min(delay, deadline - time.monotonic()))
                delay = min(2 * delay, most)
            esme = self.esme
            if not esme.is_bound:  # lost (or being unbound): sent once the fleet binds it again (rebound)
                if not await self._bound_again(deadline):
                    break
                esme = self.esme
            for i, resp in enumerate(responses):
                if resp is not None and resp.command_status != THROTTLED:
                    continue
                at = time.monotonic()
                try:
                    (responses[i],), answered_at = await esme.submit_pdus([pdus[i]])
                except NotSent:  # unbound meanwhile: it and the parts after it wait for the bind again
                    break
                if resp is None:
                    resend.unsent += 1
                else:
                    resend.resent += 1
                if responses[i].command_status:  # throttled again (or refused): the parts after it wait
                    break
        return at, answered_at

    async def _bound_again(self, deadline: float) -> bool:
        """Wait for the handset's bind to be bound again (rebound()), until `deadline` (time.monotonic()); whether it is.
        One future for every MO of the handset waiting (a spammer sends to its victims at once), made only then."""
        if self._rebound is None:
            self._rebound = asyncio.get_running_loop().create_future()
        await asyncio.wait([self._rebound], timeout=max(0.0, deadline - time.monotonic()))
        return self.esme.is_bound

    def rebound(self, esme: Esme) -> None:
        """Its bind was bound again (a fleet's --rebind): it sends on `esme` from now on, and what waits to be sent
        again (_resend_throttled) goes at once."""
        self.esme = esme
        waiting, self._rebound = self._rebound, None
        if waiting is not None:
            waiting.set_result(None)

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


def _held_back(responses: list[Pdu | None]) -> bool:
    """Some part of a text was answered ESME_RTHROTTLED or never left (None), and none refused otherwise: it may go
    if sent again."""
    statuses = {r.command_status if r is not None else None for r in responses}
    return (THROTTLED in statuses or None in statuses) and statuses <= {0, THROTTLED, None}


def _never_left(responses: list[Pdu | None]) -> bool:
    """A part of the text still never sent, and none before it refused: the text fails as not sent (NotSent)."""
    for resp in responses:
        if resp is None or resp.command_status:
            return resp is None
    return False


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
