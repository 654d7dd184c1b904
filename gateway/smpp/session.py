"""The SMPP session as a pure state machine (no sockets, no asyncio).

Feed it bytes with `receive_data`; it returns what the application must act
on and answers on its own what the protocol alone decides (enquire_link,
unbind, PDUs not allowed in the current state, malformed PDUs). Queue PDUs
with `send`; take the bytes to write with `data_to_send`; close the link once
`finished`. A peer's unbind is answered after every request that came
before it (a submit_sm is answered once its message is committed) and after
the answers to our own requests in flight (a deliver_sm that crossed the
unbind on the wire), so that the close after unbind_resp cuts no response
off in either direction; after our unbind (answered with unbind_resp, or refused
with generic_nack: the link ends either way) the link is finished once every
request the peer sent before its answer is answered too. The same class
serves both ends: the gateway (Side.SMSC) and clients such as the handset
simulator (Side.ESME).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from .codec import (
    MAX_PDU_LENGTH,
    FramingError,
    PduError,
    decode_pdu,
    encode_pdu,
    split_frames,
)
from .constants import RESPONSE_BIT, CommandId, CommandStatus
from .pdu import RESPONSE_OF, EnquireLinkResp, GenericNack, Pdu, UnbindResp

C = CommandId
S = CommandStatus
T = TypeVar("T")


class Side(Enum):
    SMSC = "smsc"
    ESME = "esme"

    # Enum.__hash__ is Python code (hash of the name); members are singletons
    # compared by identity, so the identity hash is equivalent and C-fast.
    __hash__ = object.__hash__


class State(Enum):
    OPEN = "open"
    BINDING = "binding"  # (SMSC) a bind received, its answer not sent yet: bound once it is ESME_ROK, else open again
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"
    CLOSED = "closed"

    # Looked up in RECEIVABLE for every PDU: see Side.__hash__.
    __hash__ = object.__hash__


BOUND = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})
BIND_REQUESTS = frozenset({C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER})
BOUND_STATE_OF = {
    C.BIND_TRANSMITTER: State.BOUND_TX,
    C.BIND_RECEIVER: State.BOUND_RX,
    C.BIND_TRANSCEIVER: State.BOUND_TRX,
    C.BIND_TRANSMITTER_RESP: State.BOUND_TX,
    C.BIND_RECEIVER_RESP: State.BOUND_RX,
    C.BIND_TRANSCEIVER_RESP: State.BOUND_TRX,
}

_ESME_TX = frozenset({C.SUBMIT_SM, C.SUBMIT_MULTI, C.DATA_SM, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM})
_SMSC_RX = frozenset({C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION})
_LINK = frozenset({C.ENQUIRE_LINK, C.UNBIND})

# Requests each side may receive, by state (SMPP 3.4 table 2-1). A side may
# send a request exactly when the other side may receive it.
RECEIVABLE: dict[Side, dict[State, frozenset[int]]] = {
    Side.SMSC: {
        State.OPEN: BIND_REQUESTS | {C.ENQUIRE_LINK},
        State.BINDING: frozenset({C.ENQUIRE_LINK}),
        State.BOUND_TX: _ESME_TX | _LINK,
        State.BOUND_RX: _LINK,
        State.BOUND_TRX: _ESME_TX | _LINK,
        State.UNBOUND: frozenset({C.ENQUIRE_LINK}),
    },
    Side.ESME: {
        State.OPEN: frozenset({C.OUTBIND, C.ENQUIRE_LINK}),
        State.BOUND_TX: _LINK,
        State.BOUND_RX: _SMSC_RX | _LINK,
        State.BOUND_TRX: _SMSC_RX | _LINK,
        State.UNBOUND: frozenset({C.ENQUIRE_LINK}),
    },
}
_PEER = {Side.SMSC: Side.ESME, Side.ESME: Side.SMSC}
_GENERIC_NACK = int(C.GENERIC_NACK)  # answers any request
_NOTHING: frozenset[int] = frozenset()
# Members read on every PDU, bound once: `State.CLOSED` or `C.UNBIND` goes
# through EnumType.__getattr__ (CPython 3.11), ~150 ns per read.
_OPEN, _BINDING, _UNBOUND, _CLOSED = State.OPEN, State.BINDING, State.UNBOUND, State.CLOSED
_ENQUIRE_LINK, _UNBIND, _UNBIND_RESP = int(C.ENQUIRE_LINK), int(C.UNBIND), int(C.UNBIND_RESP)
# Our own requests a peer's unbind_resp does not wait for: an unbind of ours that crossed the peer's would
# otherwise wait for the peer, which waits for us, until response_timeout; an enquire_link carries nothing.
_LINK_REQUESTS = frozenset({_ENQUIRE_LINK, _UNBIND})
# The longest PDU the gateway reads from a peer not bound yet, where MAX_PDU_LENGTH let any connection, without
# credentials, have it buffer 70,000 octets. The longest bind is 98 octets (system_id 16, password 9, system_type 13,
# address_range 41, three of one octet); nothing else a peer may send then is longer (an unknown command is nacked
# from its header). 1 KiB leaves a bind whose field overruns its size the field's own status, not a closed link.
MAX_PDU_LENGTH_BEFORE_BIND = 1024


@dataclass(slots=True)
class Received:
    """A request for the application, or a response together with the request it answers."""

    pdu: Pdu
    request: Pdu | None = None


@dataclass(slots=True)
class Rejected:
    """An incoming PDU the session answered with an error by itself, or (status 0) a response it ignored:
    one to no outstanding request, or not of its request's type."""

    status: int
    reason: str
    command_id: int
    sequence_number: int
    frame: bytes = b""  # the PDU, when it could not be decoded (codec.fields_before_fault reads what it can)
    pdu: Pdu | None = None  # the PDU, decoded but not allowed in the session's state (a submit_sm on a bind_receiver)


@dataclass(slots=True)
class LateResponse:
    """A response to a request the session gave up on (`expired_requests`) that came after all: the
    application may still take it (a deliver_sm answered late need not be sent again)."""

    pdu: Pdu
    request: Pdu


Event = Received | Rejected | LateResponse


# How many response_timeouts a request given up on (`expired_requests`) still takes its late answer: 100 s by default,
# longer than a silent peer keeps its bind (asked with an enquire_link after enquire_link_interval of silence, 30 s, and
# closed response_timeout later).
LATE_ANSWER_TIMEOUTS = 10


class GivenUp(Generic[T]):
    """Requests given up on (timed out), by sequence number, each kept `keep` seconds for an answer that comes late: by
    age, not by count. (The last `window` of them were kept: a peer that stalled past two response_timeouts had more
    than that time out, the deliver_sm sent as the first ones freed the window, and the answers to the first ones were
    ignored, each of those MTs sent again.) Bounded all the same: each place in the window has a request time out at
    most once a response_timeout, so no more than `window` x (LATE_ANSWER_TIMEOUTS + 1) are kept."""

    __slots__ = ("_kept", "keep")

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self._kept: dict[int, tuple[float, T]] = {}  # sequence -> (kept until, what), oldest first

    def add(self, sequence: int, value: T, now: float) -> None:
        self._forget(now)
        self._kept[sequence] = (now + self.keep, value)

    def pop(self, sequence: int, now: float) -> T | None:
        """What was given up on under `sequence`, once, if it is still kept at `now`."""
        self._forget(now)
        kept = self._kept.pop(sequence, None)
        return None if kept is None else kept[1]

    def __len__(self) -> int:
        return len(self._kept)

    def _forget(self, now: float) -> None:
        kept = self._kept
        while kept:
            oldest = next(iter(kept))
            if kept[oldest][0] > now:
                return
            del kept[oldest]


class LocalProtocolError(RuntimeError):
    """The application tried to send something the protocol forbids now."""


class WindowFull(LocalProtocolError):
    """As many requests are outstanding as the window allows."""


@dataclass(slots=True)
class Outstanding:
    request: Pdu
    sent_at: float


class Session:
    def __init__(
        self,
        side: Side,
        *,
        window: int = 100,
        response_timeout: float = 30.0,
        enquire_link_interval: float = 30.0,
        idle_timeout: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.side = side
        self.state = State.OPEN
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.idle_timeout = idle_timeout  # 0 = never
        self.clock = clock
        self.outstanding: dict[int, Outstanding] = {}
        self.given_up: GivenUp[Pdu] = GivenUp(LATE_ANSWER_TIMEOUTS * response_timeout)  # by expired_requests
        self.last_received_at = clock()
        self._enquired_at = -math.inf  # when our last enquire_link went out (enquire_link_due)
        self._buffer = bytearray()
        self.held: list[bytes] | None = None  # frames read behind a bind whose answer the application has yet to send: `resume`
        self._outbox: list[bytes] = []
        self._sequence = 0
        self._owed = 0  # requests received that the application has yet to answer
        self._held_unbind: tuple[int, float] | None = None  # (sequence, received at): the peer's unbind, until then
        self._broken_at: float | None = None  # a framing error: nothing more is read; closed once answers are sent
        self.halted = False  # no more requests go out: closed, or a framing error (its answers could not be read)
        self._receivable = RECEIVABLE[side]
        self._sendable = RECEIVABLE[_PEER[side]]
        # (A client keeps MAX_PDU_LENGTH: the SMSC it chose to connect to is no stranger.)
        self._max_length_before_bind = MAX_PDU_LENGTH_BEFORE_BIND if side is Side.SMSC else MAX_PDU_LENGTH

    # ------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> list[Event]:
        if self.state is _CLOSED or self._broken_at is not None:
            return []
        self.last_received_at = self.clock()
        self._buffer += data
        framing_error: FramingError | None = None
        frames: list[bytes] = self.held or []
        self.held = None
        state = self.state
        max_length = self._max_length_before_bind if state is _OPEN or state is _BINDING else MAX_PDU_LENGTH
        try:
            frames += split_frames(self._buffer, max_length)
        except FramingError as exc:
            # Without its traceback: that holds this frame, which holds it (a cycle only the collector frees, and
            # seldom: gctune), and `data` and the session's buffer with it, long after the connection closed.
            framing_error = exc.with_traceback(None)
            frames += exc.frames
        events: list[Event] = []
        for i, frame in enumerate(frames):
            if self.state is _BINDING:
                # What follows a bind is read once the application has answered it (`resume`): else a submit_sm
                # in the same read as its bind was refused ESME_RINVBNDSTS, one read a moment later taken. Its
                # command_length is judged then too (a bad header stays in the buffer): bound, a long one is fine.
                self.held = frames[i:]
                return events
            try:
                pdu = decode_pdu(frame)
            except PduError as exc:
                events.append(self._reject_malformed(exc, frame))
                continue
            event = self._receive_pdu(pdu)
            if event is not None:
                events.append(event)
        if framing_error is not None and self.state is _BINDING:
            self.held = []
            return events
        if framing_error is not None:
            # A length we cannot trust: answer once and give up on the stream. The requests before it are
            # answered first (their messages may be stored already): then the link closes (`send_raw`).
            exc = framing_error
            self._outbox.append(encode_pdu(GenericNack(sequence_number=exc.sequence_number, command_status=exc.status)))
            self.halted = True
            if self._owed:
                self._broken_at = self.clock()
            else:
                self.state = State.CLOSED
            events.append(Rejected(exc.status, str(exc), exc.command_id, exc.sequence_number))
        return events

    def resume(self) -> list[Event]:
        """The events of what came behind a bind (receive_data held it), once the application has answered the bind;
        none while it has not, or when nothing is held."""
        if self.held is None or self.state is _BINDING:
            return []
        return self.receive_data(b"")

    def _receive_pdu(self, pdu: Pdu) -> Event | None:
        command_id = pdu.command_id
        if command_id & RESPONSE_BIT:
            pending = self.outstanding.get(pdu.sequence_number)
            if pending is None:
                late = self.given_up.pop(pdu.sequence_number, self.last_received_at)
                if late is not None and (command_id == late.command_id | RESPONSE_BIT or command_id == _GENERIC_NACK):
                    return LateResponse(pdu, late)
                return Rejected(0, "response to no outstanding request (ignored)", command_id, pdu.sequence_number)
            if command_id != pending.request.command_id | RESPONSE_BIT and command_id != _GENERIC_NACK:
                # Not its answer (3.2: a response carries its request's command_id): the request stays
                # outstanding, so it times out and is sent again rather than being taken as answered.
                return Rejected(0, f"{pdu.name} does not answer {pending.request.name} (ignored)", command_id, pdu.sequence_number)
            del self.outstanding[pdu.sequence_number]
            if not pdu.command_status and command_id in BOUND_STATE_OF and self.state is _OPEN:
                self.state = BOUND_STATE_OF[command_id]
            elif command_id == _UNBIND_RESP or pending.request.command_id == _UNBIND:  # (or refused: generic_nack)
                self.state = _UNBOUND
            if self._held_unbind is not None:
                self._answer_unbind_when_nothing_is_pending()
            return Received(pdu, pending.request)
        allowed = self._receivable.get(self.state, _NOTHING)
        if command_id not in allowed:
            if command_id in BIND_REQUESTS and (self.state in BOUND or self.state is _BINDING):
                status = S.ESME_RALYBND
            else:
                status = S.ESME_RINVBNDSTS
            self._respond_error(pdu, status)
            return Rejected(status, f"{pdu.name} not allowed in state {self.state.value}", command_id, pdu.sequence_number, pdu=pdu)
        if command_id == _ENQUIRE_LINK:
            self._outbox.append(encode_pdu(EnquireLinkResp(sequence_number=pdu.sequence_number)))
            return None
        if command_id == _UNBIND:
            self.state = _UNBOUND
            self._held_unbind = (pdu.sequence_number, self.clock())
            self._answer_unbind_when_nothing_is_pending()
        elif command_id in RESPONSE_OF:
            self._owed += 1
            if command_id in BIND_REQUESTS:
                # At once, not when it is answered: a second bind in the same read is checked before the first is
                # answered, and was accepted too (the connection counted and routed to twice, uncounted once).
                self.state = _BINDING
        return Received(pdu)

    def _reject_malformed(self, exc: PduError, frame: bytes) -> Rejected:
        self._outbox.append(encode_pdu(_error_response(exc.command_id, exc.sequence_number, exc.status)))
        return Rejected(exc.status, str(exc), exc.command_id, exc.sequence_number, frame)

    def _respond_error(self, request: Pdu, status: int) -> None:
        self._outbox.append(encode_pdu(_error_response(request.command_id, request.sequence_number, status)))

    # ----------------------------------------------------------- output
    def next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def send(self, pdu: Pdu, waiting_since: float | None = None) -> Pdu:
        """Queue `pdu`. Requests get the next sequence number (unless set) and join the window; a request's
        response_timeout counts from `waiting_since` when given (the caller held it back meanwhile: its wait for
        room in the window), else from now."""
        command_id = pdu.command_id
        if self.state is _CLOSED:
            raise LocalProtocolError("session is closed")
        if command_id & RESPONSE_BIT:
            if command_id in BOUND_STATE_OF and (self.state is _BINDING or self.state is _OPEN):
                self.state = _OPEN if pdu.command_status else BOUND_STATE_OF[command_id]  # refused: it may bind again
            self.send_raw(encode_pdu(pdu))
            return pdu
        if self.halted:
            raise LocalProtocolError("no request goes out after a framing error: its answer could not be read")
        allowed = self._sendable.get(self.state, _NOTHING)
        if command_id not in allowed and not (self.side is Side.ESME and self.state is State.OPEN and command_id in BIND_REQUESTS):
            raise LocalProtocolError(f"cannot send {pdu.name} in state {self.state.value}")
        if len(self.outstanding) >= self.window and command_id != _UNBIND and command_id != _ENQUIRE_LINK:
            raise WindowFull(f"{len(self.outstanding)} requests outstanding")
        if not pdu.sequence_number:
            pdu.sequence_number = self.next_sequence()
        frame = encode_pdu(pdu)  # first: one that cannot be encoded (a field too long) takes no room in the window
        if command_id in RESPONSE_OF:  # outbind and alert_notification get no response
            self.outstanding[pdu.sequence_number] = Outstanding(pdu, self.clock() if waiting_since is None else waiting_since)
            if command_id == _ENQUIRE_LINK:
                self._enquired_at = self.clock()
        self._outbox.append(frame)
        return pdu

    def send_raw(self, frame: bytes) -> None:
        """Queue a response already encoded (built on a hot path)."""
        self._outbox.append(frame)
        owed = self._owed
        if owed:
            self._owed = owed - 1
            if owed == 1 and self._held_unbind is not None:
                self._answer_unbind_when_nothing_is_pending()
            elif owed == 1 and self._broken_at is not None:
                self.state = State.CLOSED

    def _answer_unbind_when_nothing_is_pending(self) -> None:
        # The peer still reads until its unbind_resp (it is bound until then): an answer to a deliver_sm it
        # sends after its unbind is not lost, where closing at once would have it sent again on the next bind.
        if not self._owed and not any(item.request.command_id not in _LINK_REQUESTS for item in self.outstanding.values()):
            self.answer_unbind()

    def answer_unbind(self) -> None:
        """Send the unbind_resp held back for requests still unanswered either way: at once when the last of
        them is answered (or, ours, given up on: `expired_requests`), or when the application gives up on the
        peer's (`unbind_overdue`)."""
        if self._held_unbind is not None:
            self._outbox.append(encode_pdu(UnbindResp(sequence_number=self._held_unbind[0])))
            self._held_unbind = None
            self._owed = 0  # (given up on, when overdue: the link closes without them; the client sends them again)

    def data_to_send(self) -> bytes:
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    @property
    def can_send_request(self) -> bool:
        return len(self.outstanding) < self.window

    @property
    def owes_answers(self) -> bool:
        """Requests received that the application has yet to answer (a submit_sm whose message is not committed)."""
        return self._owed > 0

    @property
    def is_bound(self) -> bool:
        return self.state in BOUND

    @property
    def finished(self) -> bool:
        """Nothing more to say on this link: closed, or unbound with every response sent (also those to requests
        that crossed our unbind: a submit_sm committing when the peer's unbind_resp came)."""
        return self.state is _CLOSED or (self.state is _UNBOUND and self._held_unbind is None and not self._owed)

    def close(self) -> None:
        self.state = State.CLOSED
        self.halted = True

    def receive_eof(self) -> None:
        """The peer half-closed the link (shutdown(SHUT_WR) after its last PDU): it sends nothing more, and may still
        read. As after a framing error, the requests it sent are answered (its unbind last, if it sent one), then the
        link closes (`answers_overdue` bounds the wait); no request of ours goes out, and none outstanding is waited
        for: its answer cannot come."""
        if self.state is _CLOSED or self._broken_at is not None:
            return
        self.halted = True
        self.outstanding.clear()
        if self._held_unbind is not None:
            self._answer_unbind_when_nothing_is_pending()
        if self._owed:
            self._broken_at = self.clock()
        else:
            self.state = State.CLOSED

    # ------------------------------------------------------------ timers
    def expired_requests(self, now: float | None = None, link_only: bool = False) -> list[Pdu]:
        """Remove and return requests whose response did not come within response_timeout. A response that
        comes later all the same is a LateResponse (for LATE_ANSWER_TIMEOUTS response_timeouts: GivenUp).
        `link_only`: only enquire_link and unbind expire, for a peer that has stopped reading (the others wait for
        it, `restart_timers`): it cannot answer what it has not read (given up on, each went out again behind its
        copy still unread)."""
        now = self.clock() if now is None else now
        limit = now - self.response_timeout
        late = [seq for seq, item in self.outstanding.items()
                if item.sent_at <= limit and (not link_only or item.request.command_id in _LINK_REQUESTS)]  # fmt: skip
        requests = [self.outstanding.pop(seq).request for seq in late]
        for request in requests:
            self.given_up.add(request.sequence_number, request, now)
        if requests and self._held_unbind is not None:
            self._answer_unbind_when_nothing_is_pending()
        return requests

    def restart_timers(self, now: float | None = None) -> None:
        """The response_timeout of every request outstanding counts from `now`: the peer reads again, and what
        waited unread for it (our requests behind its unread answers) reaches it only now."""
        now = self.clock() if now is None else now
        for item in self.outstanding.values():
            item.sent_at = now

    def answers_overdue(self, now: float | None = None) -> bool:
        """After a framing error or the peer's end of input (`receive_eof`), the answers to the requests before it
        have waited response_timeout."""
        return self._broken_at is not None and self._waited_out(self._broken_at, now)

    def unbind_overdue(self, now: float | None = None) -> bool:
        """The peer's unbind has waited response_timeout for the answers to the requests before it (ours expire
        before: they went out before it)."""
        return self._held_unbind is not None and self._waited_out(self._held_unbind[1], now)

    def _waited_out(self, since: float, now: float | None) -> bool:
        return (self.clock() if now is None else now) - since >= self.response_timeout

    def enquire_link_due(self, now: float | None = None) -> bool:
        """enquire_link_interval has passed with nothing heard from the peer, nor an enquire_link of ours sent. What
        we send does not count: a peer whose end went dead (its host gone, its link half open) takes our deliver_sm
        into the TCP buffers for minutes, and only an answer, or its absence, says whether anyone is there."""
        now = self.clock() if now is None else now
        return (
            self.state in BOUND
            and not self.halted
            and self.enquire_link_interval > 0
            and now - max(self.last_received_at, self._enquired_at) >= self.enquire_link_interval
        )

    def is_idle(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return self.idle_timeout > 0 and now - self.last_received_at >= self.idle_timeout


def _error_response(command_id: int, sequence_number: int, status: int) -> Pdu:
    cls = RESPONSE_OF.get(command_id) if not command_id & RESPONSE_BIT else None
    if cls is None or status in (S.ESME_RINVCMDID, S.ESME_RINVCMDLEN):
        return GenericNack(sequence_number=sequence_number, command_status=status)
    return cls(sequence_number=sequence_number, command_status=status)
