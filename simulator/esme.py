"""An asyncio SMPP 3.4 client (ESME) around the sans-IO `Session`.

The base of the handset simulator: one `Esme` is one TCP connection, bound as
transceiver, transmitter or receiver. It

* pipelines requests: up to `window` are outstanding, more wait in a queue
  (FIFO) until responses free the window; each request is a future resolved
  with its response PDU (a non-OK `command_status` is a result, not an error);
* answers every deliver_sm / data_sm at once (ESME_ROK unless `answer` says
  otherwise), reassembles concatenated texts (UDH 8/16-bit, sar_* TLVs,
  message_payload) and hands each whole text to `on_message`;
* answers the server's enquire_link (the Session does) and sends its own after
  `enquire_link_interval` of silence; fails requests unanswered after
  `response_timeout` with `ResponseTimeout`, counted from the request, not from
  its sending: the wait in the queue for room in the window is part of it (one
  not sent by then fails with `NotSentInTime`, a ResponseTimeout);
* writes at most once per event-loop iteration (requests queued in the same
  iteration share one write).

    esme = await Esme.connect("127.0.0.1", 2775, on_message=print)
    await esme.bind("trx", "handset", "handset", address_range=r"86138\\d{8}")
    resp = await esme.submit("8613800000001", "10086000", "你好")
    assert resp.command_status == 0
    await esme.unbind()

Use uvloop for speed (`run()` below picks it when installed).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from ssl import SSLError
from typing import Any, TypeVar

from gateway.smpp.constants import CommandId, CommandStatus, EsmClass, Tag
from gateway.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    EnquireLink,
    Pdu,
    SubmitSm,
    Unbind,
    response_to,
)
from gateway.smpp.segment import ConcatScheme, Reassembler, concat_info, segment_text
from gateway.smpp.session import (
    LateResponse,
    LocalProtocolError,
    Received,
    Rejected,
    Session,
    Side,
    State,
)
from gateway.smpp.text import decode, decode_parts

__all__ = [
    "BindError",
    "BindLost",
    "ConnectionClosed",
    "Esme",
    "EsmeError",
    "EsmeStats",
    "NotSent",
    "NotSentInTime",
    "ResponseTimeout",
    "ShortMessage",
    "answer_of",
    "run",
]

C = CommandId
BIND_CLASSES: dict[str, type[Pdu]] = {"trx": BindTransceiver, "tx": BindTransmitter, "rx": BindReceiver}
_UNWINDOWED = frozenset({C.UNBIND, C.ENQUIRE_LINK})  # the Session lets these past a full window
_INBOUND_MESSAGES = frozenset({C.DELIVER_SM, C.DATA_SM})
_MESSAGE_TYPE = int(EsmClass.MESSAGE_TYPE_MASK)
_UDHI = int(EsmClass.UDHI)
T = TypeVar("T")


class EsmeError(Exception):
    """Base of this module's errors."""


class BindError(EsmeError):
    def __init__(self, status: int, mode: str, system_id: str) -> None:
        super().__init__(f"bind {mode} as {system_id!r} refused: {CommandStatus.name_of(status)}")
        self.status = status


class ConnectionClosed(EsmeError):
    """The connection ended before the request was answered."""


class NotSent(ConnectionClosed):
    """The request never left: its bind had ended (the target's unbind received, the connection closed) before it
    could be sent, so nothing of it reached the target and it may go on another bind (Handset.send with a Resend)."""


class BindLost(EsmeError):
    """The bind a text was to arrive on is gone (the target dropped it): what was awaited on it never comes."""


class HandshakeFailed(EsmeError):
    """The TCP connection was made, but the TLS handshake over it did not complete: the peer waited, closed or
    reset it (an ssl.SSLError, the peer's answer refused, is raised as it is)."""


class ResponseTimeout(EsmeError):
    """No response within response_timeout."""


class NotSentInTime(ResponseTimeout):
    """The request waited response_timeout in the queue for room in the window, and never left: the window stayed
    full of requests the target had not answered yet. Nothing of it reached the target."""


@dataclass(slots=True)
class ShortMessage:
    """A whole text received (deliver_sm or data_sm, its parts put back together)."""

    source: str
    destination: str
    text: str
    data_coding: int
    esm_class: int  # of the last part, UDHI bit included
    parts: int
    received_at: float  # time.monotonic() when the last part arrived
    pdus: tuple[Pdu, ...] = ()
    udh_invalid: bool = False  # UDHI set, yet no User Data Header that adds up begins it: `text` is all its octets

    @property
    def is_receipt(self) -> bool:
        return self.esm_class & EsmClass.MESSAGE_TYPE_MASK == EsmClass.DELIVERY_RECEIPT

    @property
    def is_report(self) -> bool:
        """Not a text but a report on one: a delivery receipt, an SME acknowledgement, an intermediate notification
        (or a conversation abort): esm_class's message type is not the default (SMPP 3.4 5.2.12)."""
        return bool(self.esm_class & _MESSAGE_TYPE)


@dataclass(slots=True)
class EsmeStats:
    requests: int = 0  # requests sent (binds, submits, enquire_links, unbind)
    submitted: int = 0  # submit_sm sent
    submit_ok: int = 0  # submit_sm_resp with ESME_ROK
    submit_failed: dict[str, int] = field(default_factory=dict)  # other statuses (generic_nack too), by name
    deliver_sm: int = 0  # deliver_sm / data_sm received (and answered)
    messages: int = 0  # whole texts handed to on_message
    rejected: int = 0  # PDUs the Session refused by itself (wrong state, malformed)
    timeouts: int = 0  # requests unanswered within response_timeout (those never sent included)
    queued: int = 0  # requests that waited in the queue for room in the window
    not_sent_in_time: int = 0  # ... of them still there after response_timeout: failed with NotSentInTime
    writes: int = 0


class SharedParts:
    """The parts of long texts received so far (and, with keep_pdus, their PDUs), by sender, recipient and
    reference: one per connection, or one for several."""

    def __init__(self, reassembly_timeout: float = 60.0,
                 on_given_up: Callable[[str, str, list[int], bool], None] | None = None) -> None:  # fmt: skip
        """on_given_up(source, destination, seqnums held, unsent): told of each text given up with parts missing (its
        first part came reassembly_timeout ago): only part of it arrived. `unsent`: a text these connections sent
        with a part refused or unanswered (`sent_in_part`): the sender knew it incomplete, the receiver was right. A
        text its receiver was told of already (`arrived_in_part`: a dialogue failed for it) is not given up again."""
        self.reassembler: Reassembler = Reassembler(timeout=reassembly_timeout)
        self.pdus: dict[tuple[tuple[str, str, ConcatScheme], int], list[Pdu]] = {}  # by reassembler key, reference
        self.on_given_up = on_given_up
        # (source, destination, reference) -> when sent: see sent_in_part. Kept two reassembly timeouts at most: a
        # text refused in every part never arrives, and a reference comes round again.
        self.unsent: dict[tuple[str, str, int], float] = {}
        self.told: dict[tuple[str, str, int], float] = {}  # (source, destination, reference) -> when: arrived_in_part

    def sent_in_part(self, source: str, destination: str, short_message: bytes, esm_class: int, tlvs: dict[int, bytes]) -> None:
        """A long text sent here had a part refused or unanswered: the parts accepted may arrive, and their set
        never completes. Its first part (short_message, esm_class, TLVs) names it by its reference."""
        concat, _body = concat_info(esm_class, short_message, tlvs)
        if concat is not None:
            self.unsent[(source, destination, concat.reference)] = time.monotonic()

    def arrived_in_part(self, source: str, destination: str) -> str:
        """For a receiver that gave up waiting for a text from `source` (its dialogue fails): the parts of the newest
        one still incomplete that arrived and those missing ("part(s) 1 of 2 arrived, part(s) 2 missing"), or "" when
        none did. Told once: given up later, that text is no second failure (on_given_up is not told of it)."""
        for scheme in ConcatScheme:
            for reference, total, held in reversed(self.reassembler.incomplete((source, destination, scheme))):
                if (source, destination, reference) not in self.told:
                    self.told[(source, destination, reference)] = time.monotonic()
                    missing = sorted(set(range(1, total + 1)) - set(held))
                    return f"part(s) {', '.join(map(str, held))} of {total} arrived, part(s) {', '.join(map(str, missing))} missing"
        return ""

    def expire(self, now: float) -> int:
        """Give up the texts whose first part came more than reassembly_timeout before `now` (math.inf: every
        text still incomplete); returns how many."""
        expired = self.reassembler.expire(now)
        for key, reference, bodies in expired:
            self.pdus.pop((key, reference), None)
            source, destination, _scheme = key  # type: ignore[misc]
            unsent = self.unsent.pop((source, destination, reference), None) is not None
            told = self.told.pop((source, destination, reference), None) is not None
            if self.on_given_up is not None and not told:
                self.on_given_up(source, destination, sorted(bodies), unsent)
        stale = now - 2 * self.reassembler.timeout
        for texts in (self.unsent, self.told):
            for text in [text for text, at in texts.items() if at < stale]:
                del texts[text]
        return len(expired)


class Esme(asyncio.Protocol):
    """One SMPP client connection. Create with `await Esme.connect(...)`."""

    def __init__(
        self,
        *,
        on_message: Callable[[ShortMessage], None] | None = None,
        answer: Callable[[Pdu], int] | None = None,
        window: int = 100,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        reassembly_timeout: float = 60.0,
        keep_pdus: bool = False,
        parts: SharedParts | None = None,
    ) -> None:
        """on_message: called with every whole text received (receipts too; see ShortMessage.is_receipt).
        answer: the command_status to answer each deliver_sm / data_sm with (default ESME_ROK).
        keep_pdus: keep the PDUs of each text in ShortMessage.pdus (for transcripts and tests).
        parts: where the parts of long texts wait, shared by several connections (a fleet's binds): an SMSC may
        send the parts of one text on different binds of an account, as the gateway does to the least loaded.
        """
        self.on_message = on_message
        self.answer = answer
        self.keep_pdus = keep_pdus
        self.session = Session(
            Side.ESME, window=window, response_timeout=response_timeout, enquire_link_interval=enquire_link_interval
        )
        self.stats = EsmeStats()
        parts = parts if parts is not None else SharedParts(reassembly_timeout)
        self.parts = parts
        self.reassembler = parts.reassembler
        self._partial_pdus = parts.pdus
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._futures: dict[int, asyncio.Future[Pdu]] = {}
        self._answered: dict[asyncio.Future[Pdu], float] = {}  # submit_answered's futures -> when their answer came
        self._queue: deque[tuple[Pdu, asyncio.Future[Pdu], float]] = deque()  # (request, its future, when made)
        self._waited: dict[int, float] = {}  # sequence number -> seconds a request sent from the queue waited there
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._reference = 0
        self.closed: asyncio.Future[None] = self._loop.create_future()
        # done once nothing more can be sent here: the target's unbind arrived (the connection closes once what we
        # sent before it is answered) or the connection closed
        self.ended: asyncio.Future[None] = self._loop.create_future()
        self.close_reason = ""

    # ------------------------------------------------------------ connecting
    @classmethod
    async def connect(
        cls, host: str, port: int, *, ssl: Any = None, timeout: float = 10.0, **options: Any
    ) -> Esme:
        """Open the TCP connection (not bound yet); options go to __init__. With `ssl`, a handshake that does not
        complete over a TCP connection made (no answer within `timeout`, the connection closed or reset) raises
        HandshakeFailed."""
        loop = asyncio.get_running_loop()
        made: list[Esme] = []

        def protocol() -> Esme:  # (asyncio makes it once the TCP connection is made, before the TLS handshake)
            made.append(cls(**options))
            return made[0]

        try:
            _, esme = await asyncio.wait_for(loop.create_connection(protocol, host, port, ssl=ssl), timeout)
        except (OSError, TimeoutError) as exc:
            if ssl is None or not made or isinstance(exc, SSLError):
                raise
            reason = f"no answer to the handshake within {timeout:g} s" if isinstance(exc, TimeoutError) else exc
            raise HandshakeFailed(str(reason) or type(exc).__name__) from exc  # (EOF: an empty ConnectionResetError)
        return esme

    async def bind(
        self,
        mode: str = "trx",
        system_id: str = "",
        password: str = "",
        *,
        address_range: str = "",
        system_type: str = "",
        addr_ton: int = 0,
        addr_npi: int = 0,
        timeout: float = 10.0,
    ) -> Pdu:
        """bind_transceiver ("trx"), bind_transmitter ("tx") or bind_receiver ("rx"); raises BindError if refused."""
        pdu = BIND_CLASSES[mode](
            system_id=system_id, password=password, system_type=system_type,
            addr_ton=addr_ton, addr_npi=addr_npi, address_range=address_range,
        )  # fmt: skip
        resp = await asyncio.wait_for(self.request(pdu), timeout)
        if resp.command_status:
            raise BindError(resp.command_status, mode, system_id)
        return resp

    @property
    def is_bound(self) -> bool:
        return self.session.is_bound and self._transport is not None

    @property
    def is_closed(self) -> bool:
        return self.closed.done()

    # -------------------------------------------------------------- requests
    def request(self, pdu: Pdu) -> asyncio.Future[Pdu]:
        """Send any request; the future resolves with its response (or fails: ConnectionClosed, ResponseTimeout,
        LocalProtocolError when the protocol forbids the request in the current state).

        Beyond the window the request waits in a queue; enquire_link and unbind never wait. Its response_timeout
        runs from now, its wait in the queue included.
        """
        future: asyncio.Future[Pdu] = self._loop.create_future()
        if self._transport is None:
            future.set_exception(NotSent(self.close_reason or "not connected"))
        elif (self._queue or not self.session.can_send_request) and pdu.command_id not in _UNWINDOWED:
            self._queue.append((pdu, future, time.monotonic()))
            self.stats.queued += 1
        else:
            self._send(pdu, future)
        return future

    async def submit(
        self,
        source: str,
        destination: str,
        text: str | bytes,
        *,
        data_coding: int | None = None,
        scheme: ConcatScheme = ConcatScheme.UDH8,
        **fields: Any,
    ) -> Pdu:
        """submit_sm from `source` to `destination`; returns the submit_sm_resp (or generic_nack).

        str text is encoded with `data_coding` (default: GSM 03.38 when it can carry the text, else
        UCS2) and split into parts when it needs more than one SMS (concatenated per `scheme`). With
        several parts all are pipelined and the first non-OK response is returned, else the last
        one; `submit_parts` returns them all. bytes go as one short_message as given. Any other
        submit_sm field can be passed (`registered_delivery=1`, `tlvs={...}`, ...).
        """
        responses = await self.submit_parts(source, destination, text, data_coding=data_coding, scheme=scheme, **fields)
        return answer_of(responses)

    async def submit_answered(self, source: str, destination: str, text: str | bytes, **options: Any) -> tuple[Pdu, float]:
        """Like `submit` (the same options), with when its answer arrived (time.monotonic() as it was read; of a long text's parts, the
        latest): a step timed to it is not timed to when its caller resumed, later on a busy loop (a fleet's), as a
        text's ShortMessage.received_at is its arrival."""
        responses, answered_at = await self.submit_pdus(self.submissions(source, destination, text, **options))
        return answer_of(responses), answered_at

    async def submit_parts(self, source: str, destination: str, text: str | bytes, **options: Any) -> list[Pdu]:
        """Like `submit` (the same options), returning the response of every part in order."""
        responses, _answered_at = await self.submit_pdus(self.submissions(source, destination, text, **options))
        return responses

    def submissions(
        self, source: str, destination: str, text: str | bytes, data_coding: int | None = None,
        scheme: ConcatScheme = ConcatScheme.UDH8, **fields: Any,
    ) -> list[SubmitSm]:  # fmt: skip
        """The submit_sm of each part of `text` (see `submit`), not sent yet (`submit_pdus`)."""
        tlvs = dict(fields.pop("tlvs", {}))
        esm_class = fields.pop("esm_class", 0)
        if isinstance(text, bytes):
            parts = [(text, esm_class, data_coding or 0, tlvs)]
        else:
            self._reference = (self._reference + 1) & 0xFFFF
            parts = [
                (p.short_message, esm_class | p.esm_class, p.data_coding, {**tlvs, **p.tlvs})
                for p in segment_text(text, data_coding=data_coding, reference=self._reference, scheme=scheme)
            ]
        return [
            SubmitSm(
                source_addr=source, destination_addr=destination, short_message=body,
                esm_class=esm, data_coding=coding, tlvs=part_tlvs, **fields,
            )  # fmt: skip
            for body, esm, coding, part_tlvs in parts
        ]

    async def submit_pdus(self, pdus: list[SubmitSm]) -> tuple[list[Pdu], float]:
        """Send the parts of a text (`submissions`; or some of them again, on this bind or another), pipelined: the
        response of each in order, and when the last arrived (`submit_answered`). A long text with a part refused or
        unanswered is noted as sent in part (SharedParts.sent_in_part). Raises NotSent when no part left (the bind
        had ended)."""
        answered = self._answered
        futures = []
        for pdu in pdus:
            pdu.sequence_number = 0  # (a part sent again takes a number of its bind's)
            futures.append(self.request(pdu))
            answered[futures[-1]] = 0.0
        responses: list[Pdu] = []
        try:
            responses = list(await asyncio.gather(*futures))
        except NotSent as exc:  # NotSent says no part left; a part after one that did: sent in part, unanswered
            if not (futures[0].done() and isinstance(futures[0].exception(), NotSent)):
                raise ConnectionClosed(str(exc)) from exc
            raise
        finally:  # none: a part unanswered (ResponseTimeout, the connection closed)
            if len(pdus) > 1 and (not responses or any(r.command_status for r in responses)):
                first = pdus[0]
                self.parts.sent_in_part(first.source_addr, first.destination_addr, first.short_message, first.esm_class,
                                        first.tlvs)  # fmt: skip
            # each submission takes its own stamps, answered or not: none is left behind
            answered_at = max([answered.pop(future) for future in futures])
        return responses, answered_at

    async def enquire_link(self, timeout: float = 10.0) -> Pdu:
        return await asyncio.wait_for(self.request(EnquireLink()), timeout)

    async def unbind(self, timeout: float = 5.0) -> None:
        """Unbind (if bound) and close the connection; never raises for a peer that is gone."""
        if self.session.is_bound and self._transport is not None:
            self.close_reason = self.close_reason or "unbound by this client"
            try:
                await asyncio.wait_for(self.request(Unbind()), timeout)
            except (EsmeError, LocalProtocolError, asyncio.TimeoutError):
                pass
        self.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except asyncio.TimeoutError:
            if self._transport is not None:
                self._transport.abort()

    def close(self) -> None:
        """Close the connection (after writing what is queued) without unbinding."""
        if self._transport is not None:
            self._flush()
            self._transport.close()

    # ------------------------------------------------------------- protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._timer = self._loop.call_later(1.0, self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.session.close()
        self.close_reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed")
        if self._timer is not None:
            self._timer.cancel()
        error = ConnectionClosed(self.close_reason)
        for future in self._futures.values():
            if not future.done():
                future.set_exception(error)
        unsent = NotSent(self.close_reason)  # (those queued never left)
        for _, future, _at in self._queue:
            if not future.done():
                future.set_exception(unsent)
        self._futures.clear()
        self._queue.clear()
        self._waited.clear()
        self._end()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        released = False
        for event in self.session.receive_data(data):
            if type(event) is Received:
                if event.request is not None:
                    self._on_response(event.pdu)
                    released = True
                else:
                    self._on_request(event.pdu)
            else:
                self._on_rejected(event)
        if released and self._queue:
            self._release()
        self._flush()
        if self.session.finished and self._transport is not None:
            self.close_reason = self.ended_reason()
            self._transport.close()

    def _on_response(self, pdu: Pdu) -> None:
        command_id = pdu.command_id
        future = self._futures.pop(pdu.sequence_number, None)
        if self._waited:
            self._waited.pop(pdu.sequence_number, None)
        if command_id == C.SUBMIT_SM_RESP or command_id == C.GENERIC_NACK:
            if pdu.command_status:
                name = CommandStatus.name_of(pdu.command_status)
                if command_id == C.GENERIC_NACK:
                    name = f"generic_nack:{name}"
                failed = self.stats.submit_failed
                failed[name] = failed.get(name, 0) + 1
            elif command_id == C.SUBMIT_SM_RESP:
                self.stats.submit_ok += 1
            if future in self._answered:
                self._answered[future] = time.monotonic()
        if future is not None and not future.done():
            future.set_result(pdu)

    def _on_request(self, pdu: Pdu) -> None:
        if pdu.command_id in _INBOUND_MESSAGES:
            self.stats.deliver_sm += 1
            status = self.answer(pdu) if self.answer is not None else 0
            self.session.send(response_to(pdu, status))
            if not status:
                self._on_message_pdu(pdu)
        elif pdu.command_id == C.UNBIND:  # (answered by the Session once what we sent before it is)
            self._end()
        # enquire_link was answered by the Session; outbind/alert_notification need nothing.

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def _on_rejected(self, event: Rejected | LateResponse) -> None:
        self.stats.rejected += 1

    def _on_message_pdu(self, pdu: Pdu) -> None:
        short_message: bytes = getattr(pdu, "short_message", b"")
        concat, body = concat_info(pdu.esm_class, short_message, pdu.tlvs)  # type: ignore[attr-defined]
        # With UDHI set, a UDH read leaves a shorter body; one that does not add up gives every octet back (parse_udh)
        whole = short_message or pdu.tlvs.get(Tag.MESSAGE_PAYLOAD, b"")
        udh_invalid = bool(pdu.esm_class & _UDHI) and len(body) == len(whole)  # type: ignore[attr-defined, arg-type]
        source, destination = pdu.source_addr, pdu.destination_addr  # type: ignore[attr-defined]
        now = time.monotonic()
        pdus: tuple[Pdu, ...] = (pdu,) if self.keep_pdus else ()
        if concat is None or concat.total == 1:
            parts, text = 1, decode(body, pdu.data_coding)  # type: ignore[attr-defined]
        else:
            key = (source, destination, concat.scheme)  # an 8-bit and a 16-bit reference 5 are two texts
            if self.keep_pdus:
                self._partial_pdus.setdefault((key, concat.reference), []).append(pdu)
            coded = self.reassembler.add(key, concat, (body, pdu.data_coding), now)  # type: ignore[attr-defined]
            if coded is None:
                return
            parts, text = concat.total, decode_parts(coded)  # each part in its own data_coding
            if self.keep_pdus:
                pdus = tuple(self._partial_pdus.pop((key, concat.reference), ()))
        message = ShortMessage(source, destination, text, pdu.data_coding,  # type: ignore[attr-defined]
                               pdu.esm_class, parts, now, pdus, udh_invalid)  # type: ignore[attr-defined]  # fmt: skip
        self.stats.messages += 1
        if self.on_message is not None:
            self.on_message(message)

    # --------------------------------------------------------------- output
    def _send(self, pdu: Pdu, future: asyncio.Future[Pdu], queued_at: float | None = None) -> None:
        """Send a request now; `queued_at`: when it was made, had it to wait for room in the window (its
        response_timeout runs from then)."""
        try:
            self.session.send(pdu, queued_at)
        except LocalProtocolError as exc:
            future.set_exception(self._refused_locally(exc))
            return
        self.stats.requests += 1
        if pdu.command_id == C.SUBMIT_SM:
            self.stats.submitted += 1
        self._futures[pdu.sequence_number] = future
        if queued_at is not None:
            self._waited[pdu.sequence_number] = time.monotonic() - queued_at
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _refused_locally(self, exc: LocalProtocolError) -> Exception:
        """What a request the session would not send fails with: NotSent (a ConnectionClosed) once the session ended
        (the target's unbind received, the connection not closed yet: a dialogue woken by a text in the same read as
        the unbind sends its next MO then), as if it came a moment later; else the LocalProtocolError (a request out
        of place)."""
        state = self.session.state
        if state is State.UNBOUND or state is State.CLOSED:
            return NotSent(self.ended_reason())
        return exc

    def ended_reason(self) -> str:
        """Why the session ended: the close reason, else (UNBOUND with no unbind of ours: unbind() names itself
        first) the server's unbind."""
        state = self.session.state
        return self.close_reason or ("unbound by the server" if state is State.UNBOUND else f"session {state.value}")

    def _release(self) -> None:
        """Move queued requests into the window as far as it has room."""
        queue, session = self._queue, self.session
        while queue and session.can_send_request:
            pdu, future, queued_at = queue.popleft()
            if not future.done():  # the caller may have given up (cancelled) meanwhile
                self._send(pdu, future, queued_at)

    def queued(self) -> list[Pdu]:
        """The requests waiting in the queue for room in the window: never sent."""
        return [pdu for pdu, future, _at in self._queue if not future.done()]

    def unanswered(self) -> list[Pdu]:
        """The requests sent and not answered yet (nor timed out)."""
        return [item.request for item in self.session.outstanding.values()]

    def _expire_queued(self, now: float) -> None:
        """Fail the requests that waited response_timeout in the queue (NotSentInTime): the window stayed full."""
        queue, limit = self._queue, now - self.session.response_timeout
        while queue and queue[0][2] <= limit:
            pdu, future, queued_at = queue.popleft()
            if future.done():
                continue
            self.stats.timeouts += 1
            self.stats.not_sent_in_time += 1
            future.set_exception(NotSentInTime(
                f"{pdu.name} not sent within {now - queued_at:.1f} s: the window of {self.session.window} requests "
                "stayed full, the target answering them more slowly than they were made"))  # fmt: skip

    def _timed_out(self, request: Pdu) -> ResponseTimeout:
        """What a request sent and not answered in time fails with: how long it waited, in the queue first if so."""
        waited = self._waited.pop(request.sequence_number, None)
        timeout = self.session.response_timeout
        if waited is None:
            return ResponseTimeout(f"no response to {request.name} #{request.sequence_number} within {timeout:g} s")
        return ResponseTimeout(f"no response to {request.name} #{request.sequence_number} within {timeout:g} s of its "
                               f"submission, {waited:.1f} s of them in the queue for room in the full window of "
                               f"{self.session.window}")  # fmt: skip

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.session.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)
            self.stats.writes += 1

    def _tick(self) -> None:
        """About once a second: response timeouts, keep-alive, stale partial texts."""
        session = self.session
        now = time.monotonic()
        for request in session.expired_requests(now):
            self.stats.timeouts += 1
            future = self._futures.pop(request.sequence_number, None)
            error = self._timed_out(request)
            if future is not None and not future.done():
                future.set_exception(error)
            if request.command_id == C.ENQUIRE_LINK and self._transport is not None:
                self.close_reason = "enquire_link unanswered"
                self._transport.abort()
                return
        if self._queue:
            self._expire_queued(now)
            self._release()
        if session.enquire_link_due(now):
            self.request(EnquireLink()).add_done_callback(_retrieve)
        self.parts.expire(now)
        self._flush()
        if self._transport is not None:
            self._timer = self._loop.call_later(1.0, self._tick)


def answer_of(responses: list[Pdu]) -> Pdu:
    """A text's answer from those of its parts: the first refusal, else the last."""
    return next((r for r in responses if r.command_status), responses[-1])


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a fire-and-forget request's outcome as seen (no "exception never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


def run(main: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh event loop: uvloop when installed, else asyncio's."""
    coro = main() if callable(main) else main
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]
