"""One SMPP connection: asyncio.Protocol around the sans-IO Session.

Bytes in -> session events -> intake / delivery; whatever the session and
the gateway queue during one read goes out in one write.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .accounts import Account
from .log_budget import LogBudgets
from .logs import get_logger
from .messages import (
    UNSENDABLE,
    account_of,
    deliver_sm_for,
    may_be_stored,
    receipted,
    subscriber_of,
    subscriber_submitting,
)
from .router import AddressRange, Receiver, compile_address_range, leaves_out_every
from .send_queue import unread
from .smpp.codec import fields_before_fault
from .smpp.constants import CommandId, CommandStatus, Tag
from .smpp.pdu import (
    DataSm,
    EnquireLink,
    Pdu,
    SubmitMulti,
    SubmitSm,
    Unbind,
    response_to,
)
from .smpp.session import (
    BIND_REQUESTS,
    GivenUp,
    LateResponse,
    Received,
    Rejected,
    Session,
    Side,
    State,
)
from .store.records import Message
from .throttles import FLOW_CONTROL

if TYPE_CHECKING:
    from .app import Gateway

log = get_logger("smpp")
C = CommandId
S = CommandStatus
_RECEIVING_BINDS = frozenset({C.BIND_RECEIVER, C.BIND_TRANSCEIVER})
# Refused while the gateway stops (`drain`): whatever would store or change a message.
_REFUSED_WHILE_DRAINING = frozenset({C.SUBMIT_SM, C.DATA_SM, C.SUBMIT_MULTI, C.CANCEL_SM, C.REPLACE_SM})
_SUBMISSIONS = frozenset({C.SUBMIT_SM, C.DATA_SM, C.SUBMIT_MULTI})
_ASKING_MOST = 256  # a client's query_sm, cancel_sm and replace_sm in hand at once: then it is not read (_ask)
_FLOOD_MOST = 65536  # octets of answers at the stop that may wait for a client reading nothing: then it is not read
_STOPPING = "the gateway is stopping"  # why they are refused
_DELIVERY_ANSWERS = frozenset({C.DELIVER_SM_RESP, C.DATA_SM_RESP, C.GENERIC_NACK})
# Read for every PDU: bound once (an enum member read from its class costs ~150 ns in CPython 3.11).
_SUBMIT_SM, _DATA_SM = int(C.SUBMIT_SM), int(C.DATA_SM)
_CLOSED, _UNBOUND, _BINDING = State.CLOSED, State.UNBOUND, State.BINDING
_GENERIC_NACK = int(C.GENERIC_NACK)
_NACKED = int(S.ESME_RSYSERR)  # what a generic_nack with status 0 to a deliver_sm counts as (a temporary failure)
NOT_BOUND = "not bound within bind_timeout; closing"  # (also a TLS handshake not done by then: tls.TlsHandshake)


def _delivery_status(answer: Pdu) -> int:
    """The outcome of a deliver_sm its answer says: a generic_nack is no delivery (SMPP 3.4 4.3.1: not processed),
    whatever its status says: tried again."""
    status = answer.command_status
    return _NACKED if not status and answer.command_id == _GENERIC_NACK else status


_LEAVES_OUT = "address_range leaves out every number of the account: no MT to its subscribers comes here"  # (_on_bind)
_BOUND = "bound"  # a bind accepted: its line's event, and its kind in the log budgets (`_log_bind`)
# The kinds of complaints whose count lines are no warning (LogBudgets.level_of). Binds are no misbehaviour: their
# count is an info line (a load test's 10 binds from one host warned).
COMPLAINT_LEVELS = {_BOUND: logging.INFO}


def log_complaints(complaints: LogBudgets, final: bool = False) -> None:
    """The `<kind>: more not logged` lines due about refused and ignored PDUs, binds and deliver_sm not answered in
    time (SmppConnection.may_log) and long MOs never completed (MoProcessor._give_up): at most one per kind, host and
    account every interval, and all that is left when `final` (the gateway stops), each at its kind's level (built
    with COMPLAINT_LEVELS: LogBudgets.level_of)."""
    for (host, account), kind, count in complaints.due(final):
        log.log(complaints.level_of(kind), f"{kind}: more not logged", peer=host, account=account, count=count)


class SmppConnection(asyncio.Protocol):
    def __init__(self, gateway: Gateway, opened_at: float | None = None) -> None:
        """`opened_at`: when the connection was accepted (time.monotonic(), as the session's clock), if before now: the
        TLS port's, accepted before its handshake; bind_timeout counts from then."""
        settings = gateway.config.gateway
        self.gateway = gateway
        self.session = Session(
            Side.SMSC,
            window=settings.window,
            response_timeout=settings.response_timeout,
            enquire_link_interval=settings.enquire_link_interval,
            idle_timeout=settings.idle_timeout,
        )
        self.account: Account | None = None
        self._bind_logged = False  # its `bound` line was written, so its `unbound` line is (_log_bind)
        self.can_receive = False
        self.load = 0  # MTs queued or in flight here
        self.address_range: AddressRange | None = None
        self.optional_parameters = True  # False for a bind of SMPP 3.3 (_on_bind)
        self.mo_numbers: set[str] = set()  # see Router.note_mo
        self.stalled = False  # see Router.stalled
        self.holding = False  # see Router.handed
        self.inflight: dict[int, Message] = {}
        # deliver_sm given up on, kept as long as the session keeps their requests
        self.timed_out: GivenUp[Message] = GivenUp(self.session.given_up.keep)
        self.pending: deque[Message] = deque()
        # deliver_sm in flight here at most now: the session's window, narrowed while the receiver throttles and one
        # wider again at each accepted, never below 1 (_narrow_window; gateway/throttles.py)
        self._window = settings.window
        self._sent_before_narrowing: frozenset[int] = frozenset()  # the deliver_sm in flight when it last narrowed
        self.frozen: dict[str, str] = {}  # id -> subscriber of each MT queued here whose replacement commits (freeze)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.session_id = gateway.ids.next()  # unique across restarts: scopes sequence numbers (messages.dedup_key)
        self.highest_submitted = 0  # the highest sequence number of a submission on this bind so far
        self._flush_scheduled = False
        self._unbinding = False
        self._draining = False  # the gateway stops: see drain()
        self._drain_buffered = 0  # what waited for a peer not reading when the stop read it (_read_for_answers)
        self._asking = 0  # its query_sm, cancel_sm and replace_sm in hand (_ask)
        self._flood_held = False  # not read again at the stop: it sent requests, not answers (_hold_back_flood)
        self._released = False  # the gateway is done with it: see _release()
        self._peer_reading = True  # False between pause_writing and resume_writing
        self._stalled_unread = False  # stalled by pause_writing (not by a timeout): resume_writing ends it
        self._probe_due = 0.0  # session.clock() from which it may be probed again (_probe)
        self._unread_since = 0.0  # session.clock() at pause_writing, or when the peer was last seen reading since
        self._unread_buffered = 0  # what waited for the peer then, in the transport and the kernel (_note_reading)
        self._abort_handle: asyncio.TimerHandle | None = None  # see close()
        self._now = gateway.clock.now
        self._guards = gateway.guards
        self._guards_seen = gateway.guards.tightened  # see _pump
        opened = self.session.clock() if opened_at is None else opened_at
        self._bind_by = opened + settings.bind_timeout if settings.bind_timeout else math.inf

    # --------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.host = peer[0] if peer else "?"  # whose complaints are counted together (may_log)
        self.gateway.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        self._release()

    def _release(self) -> None:
        """The gateway is done with this connection (it closes it, or the peer went): off the router and out of
        the gateway's connections (no more MTs, ticks or log lines, /ready no longer counts it), its bind slot
        free, and what was queued or in flight on it back to delivery. At once: the socket itself may take
        until the peer reads what is still to be sent (close()), and a peer that stopped reading held all that
        for ever."""
        if self._released:
            return
        self._released = True
        self.session.close()
        self.gateway.connections.discard(self)
        if self.account is not None:
            self.account.binds -= 1
            self.gateway.router.unbound(self)
            self.gateway.delivery.unbound(self)
            if self._bind_logged:
                log.info("unbound", account=self.account.system_id, peer=self.peer)
        # (Not the frozen ones: Delivery.replace has them in hand, and routes them again once their replacement
        # is committed: routed now, they went out elsewhere with their old text.)
        frozen = self.frozen
        stranded = list(self.inflight.values()) + [message for message in self.pending if message.id not in frozen]
        self.inflight.clear()
        self.pending.clear()
        self.load = 0
        if stranded:
            self.gateway.delivery.requeue(stranded)

    def eof_received(self) -> bool:
        """The peer half-closed the link (shutdown(SHUT_WR) after its last PDUs) and may still read: it gets the answer
        to every request it sent, as before an unbind_resp (a submit_sm's once its message is committed), and then the
        link closes (Session.receive_eof). asyncio closed it at once: the answers still to come were lost, though
        their messages were committed. Over TLS asyncio closes it whatever this returns (a close_notify ends both
        ways), as before."""
        if self.transport is None or self.transport.get_extra_info("ssl_object") is not None:
            return False
        self._stop_receiving()
        self.session.receive_eof()
        self.flush()
        return True

    def pause_writing(self) -> None:
        # The peer has stopped reading what we send. Stop reading its requests until it reads again:
        # TCP then holds it back, where reading on would pile up its answers here without bound.
        # No deliver_sm goes out meanwhile (_pump), and those it has not read do not time out (tick): sent on, and
        # at response_timeout sent again behind the copies still unread, they reached it two or three times each and
        # piled up here (a peer that stopped for 25 s: 305 copies of 150 MTs). The bind is stalled for routing while
        # it does not read, its queued MTs handed to a bind that reads (Router.stalled), as at a timeout; reading again
        # ends that stall (resume_writing): a client that reads its answers in bursts would otherwise get no more MTs
        # for as long as another bind takes them.
        self._peer_reading = False
        self._unread_since = self.session.clock()
        self._unread_buffered = unread(self.transport) if self.transport is not None else 0
        if self.transport is not None:
            if self._draining:  # (the stop reads its answers)
                self._read_for_answers()
            else:
                self.transport.pause_reading()
            log.warning("peer not reading: stopped reading from it until it does", peer=self.peer,
                        account=self.system_id, buffered=self.transport.get_write_buffer_size())
        if self.can_receive:
            if not self.stalled:
                self._stalled_unread = True
            self._stall()

    def resume_writing(self) -> None:
        self._peer_reading = True
        self._read_again()
        if self._stalled_unread:  # (a stall that pause_writing began)
            self._stalled_unread = False
            self._answers_again()
        self.session.restart_timers()  # what waited unread reaches it only now
        self._pump()

    def data_received(self, data: bytes) -> None:
        self._on_events(self.session.receive_data(data))
        while self.session.held is not None and self.session.state is not _BINDING:  # behind a bind, now answered
            self._on_events(self.session.resume())

    def _on_events(self, events: list) -> None:
        for event in events:
            if type(event) is Received:
                self._on_pdu(event.pdu, event.request)
            elif type(event) is LateResponse:
                self._on_late_answer(event.pdu)
            elif event.status:  # answered by the session already: only the log line is limited
                if (event.frame or event.pdu) and event.command_id in _SUBMISSIONS and self.account is not None:
                    self._log_refused_submission_pdu(event)
                elif self.may_log(f"pdu rejected ({S.name_of(event.status)})"):
                    log.warning("pdu rejected", peer=self.peer, account=self.system_id, status=S.name_of(event.status),
                                reason=event.reason, sequence=event.sequence_number)
            elif self.may_log("pdu ignored"):  # a response that answers nothing outstanding
                log.warning("pdu ignored", peer=self.peer, account=self.system_id, reason=event.reason,
                            sequence=event.sequence_number)
        self.flush()

    def may_log(self, kind: str, account: str | None = None) -> bool:
        """Whether a line about a refused PDU of `kind` (its event and status), another misbehaviour of this peer
        (a deliver_sm it did not answer in time) or its bind (_log_bind), is to be written: the first few of each kind from this peer's host
        and account (`account`, else the bound one's) are, the rest are counted (`<kind>: more not logged`,
        `log_complaints`). Not per connection: a peer in a reconnect loop had a fresh budget each time."""
        return self.gateway.complaints.allow((self.host, account or self.system_id), kind)

    def log_refused_submission(self, status: str, reason: str, source: str, dest: str | None, **fields: str) -> None:
        """A submission from `source` to `dest` (None: a distribution list, in `fields`) refused with `status`: logged
        with its reason for the first few of each status from this peer's host and account (may_log), the rest
        counted (`submission rejected (<status>): more not logged`), as refused PDUs are: a client throttled or
        blocked sends tens of thousands a minute, and a line each filled the disk (~1.7 GB a day in a soak). Nothing
        is worked out for a line not written."""
        if self.may_log(f"submission rejected ({status})"):
            self._log_submission_rejected(status, reason, source, dest, **fields)

    def _log_submission_rejected(self, status: str, reason: str, source: str, dest: str | None, **fields: Any) -> None:
        """The `submission rejected` line itself (log_refused_submission)."""
        assert self.account is not None  # (a submission comes on a bind)
        msisdn = subscriber_submitting(self.account.is_sp, source, dest or "", self.gateway.plan)
        if dest is not None:
            fields["dest"] = dest
        log.warning("submission rejected", account=self.system_id, msisdn=msisdn, source=source, status=status,
                    reason=reason, **fields)  # fmt: skip

    def _log_refused_submission_pdu(self, event: Rejected) -> None:
        """A submission the session refused by itself, the codec (a TLV given twice, a destination_addr longer than its
        field) or the bind's state (a submit_sm on a bind_receiver, ESME_RINVBNDSTS), was a `pdu rejected` line naming
        no subscriber: it is a `submission rejected` line as every other, with its command and its addresses (for
        one not decoded, those read before the fault: codec.fields_before_fault, read again only for a line written).
        A submit_multi's destinations, one line each, count as one line against the budget."""
        status = S.name_of(event.status)
        if not self.may_log(f"submission rejected ({status})"):
            return
        pdu = event.pdu if event.pdu is not None else fields_before_fault(event.frame)
        assert isinstance(pdu, (SubmitSm, DataSm, SubmitMulti))  # (event.command_id says so)
        reason, source, sent = event.reason, pdu.source_addr, {"command": pdu.name, "sequence": event.sequence_number}
        if not isinstance(pdu, SubmitMulti):
            self._log_submission_rejected(status, reason, source, pdu.destination_addr or None, **sent)
            return
        if not pdu.dest_addresses:  # (the fault came before them)
            self._log_submission_rejected(status, reason, source, None, **sent)
        for dest in pdu.dest_addresses:
            if dest.dest_flag == 1:
                self._log_submission_rejected(status, reason, source, dest.destination_addr, **sent)
            else:
                self._log_submission_rejected(status, reason, source, None, dl_name=dest.dl_name, **sent)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is None or self.transport.is_closing():
            return
        data = self.session.data_to_send()
        if data:
            self.transport.write(data)
            if self._draining and not self._peer_reading:
                self._hold_back_flood(self.transport)
        state = self.session.state
        if (state is _CLOSED or state is _UNBOUND) and self.session.finished:
            self.close()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    @property
    def system_id(self) -> str:
        return self.account.system_id if self.account is not None else "-"

    def note_submission(self, pdu: SubmitSm | DataSm | SubmitMulti) -> bool:
        """A submission admitted on this bind: True if a stored message may already hold its dedup key
        (messages.may_be_stored); its sequence number counts from now on."""
        if may_be_stored(pdu, self.highest_submitted):
            return True
        self.highest_submitted = pdu.sequence_number
        return False

    # -------------------------------------------------------------- PDUs
    def _on_pdu(self, pdu: Pdu, request: Pdu | None) -> None:
        command_id = pdu.command_id
        if self._draining and (command_id in _REFUSED_WHILE_DRAINING or command_id in BIND_REQUESTS):
            self._refuse_while_draining(pdu)
        elif command_id == _SUBMIT_SM or command_id == _DATA_SM:
            self.gateway.intake.submit(self, pdu)  # type: ignore[arg-type]
        elif command_id in _DELIVERY_ANSWERS:
            self._on_delivery_answer(pdu, request)
        elif command_id in BIND_REQUESTS:
            self._on_bind(pdu)
        elif command_id == C.QUERY_SM:
            self._ask(self.gateway.intake.query(self, pdu))  # type: ignore[arg-type]
        elif command_id == C.SUBMIT_MULTI:
            self.gateway.intake.submit_multi(self, pdu)  # type: ignore[arg-type]
        elif command_id == C.CANCEL_SM:
            self._ask(self.gateway.amendments.cancel(self, pdu))  # type: ignore[arg-type]
        elif command_id == C.REPLACE_SM:
            self._ask(self.gateway.amendments.replace(self, pdu))  # type: ignore[arg-type]
        elif command_id == C.UNBIND:
            # The session answers once the requests before it and the deliver_sm in flight are (or time out), then
            # flush() closes.
            self._stop_receiving()
        elif command_id in (C.UNBIND_RESP, C.ENQUIRE_LINK_RESP):
            pass  # the session changed state; flush() closes an unbound link
        else:
            self.gateway.intake.unsupported(self, pdu)

    def _on_bind(self, pdu: Pdu) -> None:
        gateway = self.gateway
        account, status, reason = gateway.accounts.authenticate(pdu.system_id, pdu.password)  # type: ignore[attr-defined]
        if account is None:
            self._refuse_bind(pdu, status, reason)
            return
        if self.account is None:  # once per connection (the session lets one bind through): uncounted once
            account.binds += 1
        self.account = account
        self.can_receive = pdu.command_id in _RECEIVING_BINDS
        self.address_range = compile_address_range(pdu.address_range, gateway.plan, peer=self.peer,  # type: ignore[attr-defined]
                                                   account=account.system_id)  # fmt: skip
        if self.can_receive and leaves_out_every(self.address_range, account.numbers) and self.may_log(_LEAVES_OUT):
            log.warning(_LEAVES_OUT,
                        address_range=pdu.address_range, numbers=list(account.numbers), peer=self.peer,  # type: ignore[attr-defined]
                        account=account.system_id)  # fmt: skip
        # An ESME of SMPP 3.3 has no optional parameters: none in its bind response (where SMPP 3.4 5.3.2.25
        # states the SMSC's version) nor in the deliver_sm it is sent.
        self.optional_parameters = pdu.interface_version >= 0x34  # type: ignore[attr-defined]
        tlvs = {Tag.SC_INTERFACE_VERSION: 0x34} if self.optional_parameters else {}
        self.session.send(response_to(pdu, S.ESME_ROK, system_id=gateway.config.gateway.system_id, tlvs=tlvs))
        self._log_bind(account)
        gateway.router.bound(self)
        if self.can_receive:
            # MTs waiting on a stalled bind that this one may take come here first, ahead of any newer to them
            for other in gateway.router.stalled_binds():
                other.hand_over()
            gateway.delivery.receiver_ready(self)

    def _log_bind(self, account: Account) -> None:
        """A `bound` line for the first few binds of this host and account (may_log), the rest counted (`bound: more
        not logged`), and the `unbound` line of each bind logged: a client binding and dropping in a loop wrote 5,393
        lines a second (~1.3 MB/s), where its binds refused for a wrong password wrote 6 in all."""
        self._bind_logged = self.may_log(_BOUND)
        if self._bind_logged:
            log.info("bound", account=account.system_id, role=account.role, peer=self.peer,
                     mode=self.session.state.value)  # fmt: skip

    def _refuse_bind(self, pdu: Pdu, status: int, reason: str) -> None:
        """Answer a bind with `status`, logged as a `bind refused` line with its `reason` (the first few, the rest
        counted). Counted under the account it names, if there is one: the count line says whose password is guessed.
        (Not a system_id of none: a client trying made-up ones would get first lines for each.) Each line names it as
        `account` too, as the count line does: staff count a guessed account's refusals by one key (`system_id` is
        what was sent, also a made-up one)."""
        tried = pdu.system_id if self.gateway.accounts.get(pdu.system_id) is not None else None  # type: ignore[attr-defined]
        if self.may_log(f"bind refused ({S.name_of(status)})", tried):  # a password guesser sends ~15,000 a second
            log.warning("bind refused", peer=self.peer, account=tried or self.system_id, system_id=pdu.system_id,  # type: ignore[attr-defined]
                        status=S.name_of(status), reason=reason)  # fmt: skip
        self.session.send(response_to(pdu, status))

    def drain(self) -> None:
        """The gateway stops: refuse new submissions and binds, and send no new deliver_sm. What is queued here
        stays queued (the store keeps it for the next start); answers to what is in flight are still taken."""
        self._draining = True
        self.can_receive = False  # (offer and _pump: what is offered now waits here for connection_lost)
        if not self._peer_reading and self.transport is not None:
            # Held back (pause_writing): its answers to the deliver_sm it has read wait unread here; left there,
            # they were lost with the connection, and those MTs went out again at the next start. What else it sends
            # meanwhile is refused, bounded by the stop's deadlines.
            self._read_for_answers()

    def _refuse_while_draining(self, pdu: Pdu) -> None:
        if pdu.command_id in BIND_REQUESTS:  # a `bind refused` line as any other, naming the account and why
            self._refuse_bind(pdu, S.ESME_RBINDFAIL, _STOPPING)
            return
        # ESME_RTHROTTLED, not ESME_RSYSERR: SMPP clients treat it as temporary and send the message again
        # later, which is right (nothing was stored, and it goes through once this gateway or another takes
        # traffic again); some (older Kannel releases) take ESME_RSYSERR as a final rejection and drop it.
        status = S.ESME_RTHROTTLED
        if pdu.command_id == C.CANCEL_SM or pdu.command_id == C.REPLACE_SM:  # its line names the MT's subscriber
            self.gateway.spawn(self.gateway.amendments.refuse(self, pdu, status, _STOPPING))  # type: ignore[arg-type]
            return
        self._log_refused_while_draining(pdu, S.name_of(status))
        self.session.send(response_to(pdu, status))

    def _ask(self, answer: Coroutine[Any, Any, Any]) -> None:
        """A query_sm, cancel_sm or replace_sm, answered from the store by a task of its own. Past _ASKING_MOST of a
        client's in hand it is not read until one is answered: it could send them far faster than the store answers,
        a task each (a client sending query_sm flat out: 374 MB, 600,000 tasks, regression review 9)."""
        self._asking += 1
        if self._asking == _ASKING_MOST and self.transport is not None:
            self.transport.pause_reading()
        self.gateway.spawn(answer).add_done_callback(self._answered)

    def _answered(self, _task: asyncio.Task) -> None:
        self._asking -= 1
        if self._asking == _ASKING_MOST - 1:
            self._read_again()

    def _read_again(self) -> None:
        """Read the peer again, unless something still holds it back: 256 requests in hand (_ask); its not reading
        what is sent to it (pause_writing), except at the stop, which reads it for its answers (drain) unless it
        sent requests instead (_hold_back_flood). Each place that pauses reading has one reason; this asks them all
        (one resume_reading undoes every pause: a client held back at the stop that sent 300 query_sm was not read
        again when they were answered, and its answers sent behind them were lost: regression review 10)."""
        if self.transport is None or self._asking >= _ASKING_MOST:
            return
        if self._peer_reading or (self._draining and not self._flood_held):
            self.transport.resume_reading()

    def _read_for_answers(self) -> None:
        """The stop reads a client that reads nothing (held back when it began: drain; or since: pause_writing) for its
        answers to the deliver_sm it has read. What waits for it now is what _hold_back_flood counts from: one that
        stopped reading only during the stop had 64 KiB waiting then (asyncio's high-water mark), counted from
        nothing, and its next enquire_link_resp held it back, its answers lost (regression review 11). A client
        that read again meanwhile (resume_writing) starts afresh."""
        assert self.transport is not None
        self._drain_buffered = self.transport.get_write_buffer_size()
        self._flood_held = False
        self._read_again()

    def _hold_back_flood(self, transport: asyncio.WriteTransport) -> None:
        """A client read at the stop though it reads nothing (_read_for_answers) sends requests instead:
        each answer (a refusal, an enquire_link_resp) waits for it here, unread. Once _FLOOD_MOST more wait than did
        then, it is not read again: one sending submit_sm flat out grew the gateway ~2 MB a second until the stop
        ended (regression review 8b: 55 -> 89 MB, 2,156,000 refused). Its answers to what it read came first."""
        if transport.get_write_buffer_size() > self._drain_buffered + _FLOOD_MOST:
            self._flood_held = True
            transport.pause_reading()

    def _log_refused_while_draining(self, pdu: Any, status: str) -> None:
        """As other refusals are: the first few of each kind from this peer's host and account, the rest counted; a
        submission as every refused one (`submission rejected`, with its source and dest), each destination of a
        submit_multi."""
        if pdu.command_id != C.SUBMIT_MULTI:
            self.log_refused_submission(status, _STOPPING, pdu.source_addr, pdu.destination_addr)
            return
        for dest in pdu.dest_addresses:
            if dest.dest_flag == 1:
                self.log_refused_submission(status, _STOPPING, pdu.source_addr, dest.destination_addr)
            else:
                self.log_refused_submission(status, _STOPPING, pdu.source_addr, None, dl_name=dest.dl_name)

    @property
    def busy(self) -> bool:
        """deliver_sm awaiting their answer, or requests of the peer not yet answered (commits in progress)."""
        return bool(self.inflight) or self.session.owes_answers

    def respond(self, pdu: Pdu) -> None:
        """Answer a request, possibly later than the read that brought it (after a commit)."""
        if self._can_answer():
            self.session.send(pdu)
            self._schedule_flush()

    def respond_encoded(self, frame: bytes) -> None:
        """`respond` with a response already encoded (the submit_sm_resp of every message)."""
        if self._can_answer():
            self.session.send_raw(frame)
            self._schedule_flush()

    def _can_answer(self) -> bool:
        # If not, the client will retransmit; the store recognises it.
        return self.session.state is not _CLOSED and self.transport is not None and not self.transport.is_closing()

    # ----------------------------------------------------------- MT side
    def offer(self, message: Message, again: bool = False) -> None:
        self.load += 1
        # can_receive: False once the gateway stops (drain) or either side unbinds (_stop_receiving)
        pending = self.pending
        if self.can_receive and not pending and self._peer_reading and self._can_send and not self.session.halted:
            self._send_deliver(message)
        elif again and pending:  # replaced, retried, handed back: not behind the newer ones to its subscriber
            self._queue_in_order(message)
        else:
            pending.append(message)
        if self.frozen:  # the window may have room that only the frozen subscribers' MTs are kept from
            self._pump()

    def _queue_in_order(self, message: Message) -> None:
        """Queue an MT ahead of the newer ones queued to its subscriber (ids sort in the order MTs were accepted): a
        replace_sm did not send it behind them (README: in order per subscriber). The queue itself is in no order
        (retries, other subscribers' MTs): each queued MT is looked at."""
        dest, message_id = message.dest_addr, message.id
        for i, queued in enumerate(self.pending):
            if queued.dest_addr == dest and queued.id > message_id:
                self.pending.insert(i, message)
                return
        self.pending.append(message)

    def withdraw(self, message_id: str) -> Message | None:
        """cancel_sm / replace_sm: take an MT off this bind's queue if it has not been sent yet (nor is frozen)."""
        if message_id in self.frozen:
            return None
        for i, message in enumerate(self.pending):
            if message.id == message_id:
                del self.pending[i]
                self.load -= 1
                return message
        return None

    def take_queued(self, subscriber: str) -> list[Message]:
        """The MTs queued here to `subscriber`, not yet sent nor frozen, taken off the queue (their receiver throttles
        them: Delivery.throttled)."""
        pending, frozen = self.pending, self.frozen
        taken = [message for message in pending if message.dest_addr == subscriber and message.id not in frozen]
        if taken:
            staying = [message for message in pending if message.dest_addr != subscriber or message.id in frozen]
            pending.clear()
            pending.extend(staying)
            self.load -= len(taken)
        return taken

    def abandon(self, message_id: str) -> bool:
        for sequence, sent in self.inflight.items():
            if sent.id == message_id:
                del self.inflight[sequence]
                self.load -= 1
                break
        else:
            if self.withdraw(message_id) is None:  # (taken off the queue, withdraw counts it off)
                return False
        self._pump()
        return True

    def freeze(self, message_id: str) -> bool:
        """replace_sm: keep an MT queued here, not yet sent, in its place while its replacement commits; neither it
        nor the MTs queued after it to its subscriber go out until `thaw` (the others do). Taken off the queue
        meanwhile, it was overtaken by those when the window opened during the commit."""
        if message_id in self.frozen:
            return False  # (a second replace_sm of it meanwhile)
        for message in self.pending:
            if message.id == message_id:
                self.frozen[message_id] = message.dest_addr
                return True
        return False

    def thaw(self, message_id: str, replacement: Message | None) -> bool:
        """The end of `freeze`: the MT's replacement takes its place (None: it leaves the queue). False if this bind
        no longer has it (it went away meanwhile: the caller routes it again)."""
        if self.frozen.pop(message_id, None) is None or self._released:
            return False
        for i, message in enumerate(self.pending):
            if message.id == message_id:
                if replacement is None:
                    del self.pending[i]
                    self.load -= 1
                else:
                    self.pending[i] = replacement
                break
        self._pump()
        return True

    @property
    def _can_send(self) -> bool:
        """A deliver_sm may go out now: fewer than `_window` requests await their answer (the session's window, or
        fewer while the receiver throttles: gateway/throttles.py)."""
        return len(self.session.outstanding) < self._window

    def _send_deliver(self, message: Message) -> None:
        try:
            pdu = self.session.send(deliver_sm_for(message, self.gateway.plan, optional_parameters=self.optional_parameters))
        except UNSENDABLE as exc:  # a field deliver_sm cannot carry: a row an earlier version let in, or one damaged
            # outside the gateway (or, to SMPP 3.3, a text too long, which the router gives it none of: router.route)
            self.load -= 1
            self.gateway.delivery.cannot_send(message, f"{type(exc).__name__}: {exc}")
            return
        self.inflight[pdu.sequence_number] = message
        self._schedule_flush()

    def _on_delivery_answer(self, pdu: Pdu, request: Pdu | None) -> None:
        if self.stalled and request is not None and request.command_id == C.DELIVER_SM:
            self._answers_again()
        message = self.inflight.pop(pdu.sequence_number, None)
        if message is None:
            self._pump()  # (the answer to a copy taken back, `abandon`: its window slot is free now)
            if request is not None and request.command_id == C.UNBIND:  # a generic_nack to our unbind: the session
                # is unbound all the same, and flush() closes once the requests that crossed it are answered
                log.warning("unbind refused (generic_nack); closing", peer=self.peer, account=self.system_id,
                            status=S.name_of(pdu.command_status))  # fmt: skip
            return
        self.load -= 1
        status = _delivery_status(pdu)
        if not status:  # ESME_ROK
            if self._window < self.session.window:
                self._window += 1
            self.gateway.delivery.delivered(message)
        elif status in FLOW_CONTROL:
            if self.gateway.delivery.throttled(message, status, self) and status == S.ESME_RTHROTTLED:
                self._narrow_window(pdu.sequence_number)
        else:
            self.gateway.delivery.failed(message, status, self)
        self._pump()

    def _narrow_window(self, sequence: int) -> None:
        """The receiver throttled the deliver_sm of `sequence`, the first refused to its subscriber: the window halves,
        never below 1, unless it was sent before the window last narrowed (once a round trip, as TCP's window at a
        loss: those answers tell of the rate it was sent at). Only ESME_RTHROTTLED narrows it, the receiver's rate;
        not ESME_RMSGQFUL, a queue full (often its subscriber's: 10% of them refused for good, at a 200 ms round trip,
        kept it at 9-18 of 100), nor the refusal of an MT tried again (it probes its subscriber)."""
        if sequence in self._sent_before_narrowing:
            return
        self._window = max(self._window // 2, 1)
        self._sent_before_narrowing = frozenset(self.inflight)

    def _on_late_answer(self, pdu: Pdu) -> None:
        if self.stalled:  # (only a deliver_sm is answered late: an unanswered enquire_link or unbind closes the bind)
            self._answers_again()
        message = self.timed_out.pop(pdu.sequence_number, self.session.last_received_at)
        if message is not None:
            if self.may_log("deliver_sm answered late"):
                log.info("deliver_sm answered late", message_id=message.id, account=account_of(message),
                         msisdn=subscriber_of(message), bind_account=self.system_id,
                         status=S.name_of(pdu.command_status),
                         **receipted(message))  # fmt: skip
            self.gateway.delivery.answered_late(message, _delivery_status(pdu), self, self.gateway.connections)

    def _answers_again(self) -> None:
        """Stalled, it answered a deliver_sm (or its peer reads again): a bind like any other (Router.answered), and
        the MTs parked for it meanwhile are read back for it (Delivery.answering)."""
        self.gateway.router.answered(self)
        self.gateway.delivery.answering(self)

    def _pump(self) -> None:
        if not self.pending or not self._peer_reading or not self.can_receive or self.session.state is _UNBOUND or self.session.halted:
            if self.holding and not self.pending:  # the MTs handed here from a stalled bind have gone out
                self.gateway.router.released(self)
            return  # they wait for the peer to read again (resume_writing), hand_over, or connection_lost
        if self._guards.tightened != self._guards_seen:  # a block or an unsubscription since they were queued
            self._ask_guards_again()
        now = self._now()
        kept = set(self.frozen.values()) if self.frozen else None  # subscribers whose MTs wait for a thaw
        skipped: list[Message] = []
        while self.pending and self._can_send:
            message = self.pending.popleft()
            if kept is not None and message.dest_addr in kept:
                skipped.append(message)
            elif message.expires_at > now:
                self._send_deliver(message)
            else:  # its validity ran out while it waited here: dispatching it again ends it (EXPIRED)
                self.load -= 1
                self.gateway.delivery.dispatch(message)
        if skipped:
            self.pending.extendleft(reversed(skipped))

    def _stall(self) -> None:
        """A deliver_sm timed out here, or the peer stopped reading: MTs go to another bind first (Router.stalled).
        As the stall begins, those held for it behind its account's backlog read are parked (Delivery.stalled: none
        is held for it after that); at each timeout, what is queued here moves or is parked (hand_over). (Run at
        each timeout, Delivery.stalled routed every MT held behind the read again: 10,000 held, ~10 ms a call.)"""
        if not self.stalled:
            self.gateway.router.stalled(self)
            self.gateway.delivery.stalled(self)
        self.hand_over()

    def hand_over(self) -> None:
        """This bind is `stalled`: the MTs queued here that a bind still answering would take go back to delivery, which
        offers them there (Router.route), rather than out here one window per response_timeout. In order per
        subscriber: once one of a subscriber's MTs stays (only this bind serves it, or it is frozen), the ones after
        it stay too. Of those, no more than Delivery.FULL (with those in flight) stay queued: the rest go back too, and
        are parked (Delivery._full), as those routed here from now on will be; until it stalled, every MT routed here
        was queued (at 1,000 a second, 10,000 in a response_timeout of 10 s)."""
        if not self.pending:
            return
        router = self.gateway.router
        frozen = set(self.frozen.values())
        staying = set(frozen)  # subscribers some of whose MTs stay here
        room = self.gateway.delivery.FULL - len(self.inflight)
        kept: deque[Message] = deque()
        leaving: list[Message] = []
        takers: dict[str, Receiver] = {}  # subscriber -> the bind their MTs go to (the first one's: all of them)
        for message in self.pending:
            dest = message.dest_addr
            if dest not in staying:
                chosen = takers.get(dest) or router.route(message, tell=False)
                if chosen is not None and not chosen.stalled:
                    leaving.append(message)
                    takers[dest] = chosen
                    continue
                staying.add(dest)
            if len(kept) >= room and dest not in frozen:  # (once one of a subscriber's leaves, the ones after it do)
                leaving.append(message)
                continue
            kept.append(message)
        if leaving:
            self.pending = kept
            self.load -= len(leaving)
            for taker in set(takers.values()):
                router.handed(taker, [dest for dest, chosen in takers.items() if chosen is taker])
            self.gateway.delivery.requeue(leaving)

    def _expire_queued(self) -> None:
        """An MT whose validity ends while it waits here (the window full) expires then, not when the window would
        have sent it: that can be response_timeout later, or never."""
        if not self.pending:
            return
        now = self._now()
        if all(message.expires_at > now for message in self.pending):
            return
        frozen = self.frozen  # (their replacement may bring a new validity: Delivery.replace looks after them)
        expired = [message for message in self.pending if message.expires_at <= now and message.id not in frozen]
        self.pending = deque(message for message in self.pending if message.expires_at > now or message.id in frozen)
        self.load -= len(expired)
        for message in expired:  # dispatching it again ends it (EXPIRED), as _pump does
            self.gateway.delivery.dispatch(message)

    def _ask_guards_again(self) -> None:
        """SPEC 3.1: an unsubscription takes effect at once, for the MTs queued here too (a block the same)."""
        recipients = self._guards.recipients_since(self._guards_seen)  # None: anyone's
        self._guards_seen = self._guards.tightened
        rejected_now = self.gateway.delivery.rejected_now
        frozen = self.frozen  # (Delivery.replace asks about them when their replacement is committed)
        kept = [message for message in self.pending
                if (recipients is not None and message.dest_addr not in recipients) or message.id in frozen
                or not rejected_now(message)]  # fmt: skip
        self.load -= len(self.pending) - len(kept)
        self.pending = deque(kept)

    # ------------------------------------------------------------ timers
    def tick(self) -> None:
        """Called about once a second: response timeouts, keep-alive, idle bind."""
        session = self.session
        timed_out = False
        if not self._peer_reading:
            self._note_reading()
        for request in session.expired_requests(link_only=not self._peer_reading):
            message = self.inflight.pop(request.sequence_number, None)
            if message is not None:
                self.load -= 1
                if self.may_log("deliver_sm timed out"):  # (a bind that answers none: every MT sent to it, ~10 a second)
                    log.warning("deliver_sm timed out", message_id=message.id, account=account_of(message),
                                msisdn=subscriber_of(message), bind_account=self.system_id,
                                **receipted(message))  # fmt: skip
                self.timed_out.add(request.sequence_number, message, session.clock())
                self.gateway.delivery.retry_later(message, bind=self)
                timed_out = True
            elif request.command_id == C.ENQUIRE_LINK or request.command_id == C.UNBIND:
                log.warning(f"{request.name} unanswered; closing", peer=self.peer, account=self.system_id)
                self.close(unanswered=True)
                return
        if timed_out:
            self._stall()
        if not self._peer_reading and self._unread_too_long():
            log.warning("peer not reading; closing", peer=self.peer, account=self.system_id,
                        seconds=round(session.clock() - self._unread_since, 1))  # fmt: skip
            self.close(unanswered=True)  # (its deliver_sm in flight go back to delivery: connection_lost)
            return
        self._pump()
        self._expire_queued()
        self.gateway.delivery.drained()  # (its queue expired or taken back: no answer to tell of it)
        if self.stalled and not self.load:
            self._probe()
        if self.account is None and session.clock() >= self._bind_by:
            if self.may_log(NOT_BOUND):  # (one host can open thousands a second)
                log.warning(NOT_BOUND, peer=self.peer, account=self.system_id,  # ("-", as other lines before a bind)
                            seconds=self.gateway.config.gateway.bind_timeout)  # fmt: skip
            self.close()
            return
        if session.answers_overdue():
            log.warning("requests before a framing error or the end of input unanswered; closing", peer=self.peer,
                        account=self.system_id)  # fmt: skip
            self.close()
            return
        if session.unbind_overdue():
            log.warning("requests before unbind unanswered; answering the unbind", peer=self.peer, account=self.system_id)
            session.answer_unbind()
        elif session.is_idle() and not self._unbinding and session.state is not _UNBOUND:
            log.info("idle timeout; unbinding", peer=self.peer, account=self.system_id)
            self.unbind()
        elif session.enquire_link_due():
            session.send(EnquireLink())
        self.flush()

    def _probe(self) -> None:
        """Stalled, it holds nothing: the MTs parked for it are read back for it (Delivery.probe), as many as its window
        takes now (`_window`: narrowed while its receiver throttles; the rest would queue on it, stalled), so that it
        has a deliver_sm to answer again; not again for response_timeout when it answers none of them, nor while its
        peer does not read (reading again ends a stall that began so)."""
        session = self.session
        now = session.clock()
        if (
            now >= self._probe_due and self._peer_reading and self.can_receive and session.can_send_request
            and self.gateway.delivery.probe(self, self._window)
        ):  # fmt: skip
            self._probe_due = now + session.response_timeout

    def unbind(self) -> None:
        if self.session.is_bound and not self.session.halted:  # halted: no request goes out (a framing error)
            self._stop_receiving()  # (and _unbinding: once; an unbind left unanswered closes the link, tick)
            self.session.send(Unbind())
            self.flush()
        else:
            self.close()

    def _stop_receiving(self) -> None:
        """An unbind, the peer's or ours: no more MTs for this bind (SMPP 3.4 4.1.1.8). What waits here goes back to
        delivery now, in order: held here meanwhile, newer MTs to its subscribers would overtake it on other binds,
        and cancel_sm or replace_sm could not reach it. (One sent after our unbind was answered after the
        unbind_resp that closed the link, and delivered again at the next bind.)"""
        if self.account is not None:
            self.gateway.router.unbound(self)
            self.gateway.delivery.unbound(self)
        self._unbinding = True
        self.can_receive = False  # nor does an MO crossing the unbind make it its subscriber's way back (note_mo)
        if self.pending:
            waiting = list(self.pending)
            self.pending.clear()
            self.load -= len(waiting)
            self.gateway.delivery.requeue(waiting)

    def _note_reading(self) -> None:
        """The peer, still behind (pause_writing), has read some of what waited for it since the last tick (less of
        it waits, send_queue.unread): a slow reader, not a stuck one. Its timers then count from now, its
        enquire_link's too (its answer waits unread here, pause_reading): a client reading a window of long MTs for
        longer than response_timeout was closed as 'not reading' again and again, the same first MTs sent on
        every new bind (8 of 100 MTs, each ~37 times, in regression review 6's run at 300 KB/s)."""
        buffered = unread(self.transport) if self.transport is not None else 0
        read = buffered < self._unread_buffered
        self._unread_buffered = buffered
        if read:
            self._unread_since = self.session.clock()
            self.session.restart_timers(self._unread_since)

    def _unread_too_long(self) -> bool:
        """The peer has read nothing for as long as the gateway's enquire_link, or else its unbind at idle_timeout, would
        take to go unanswered (the interval, then response_timeout), or for response_timeout where it asks neither:
        its deliver_sm in flight do not time out meanwhile (tick), so with the gateway asking nothing
        (enquire_link_interval = 0, idle_timeout = 0) a client that never read again kept them for good, its
        subscribers' MTs held there while the account's other binds sat idle."""
        session = self.session
        asks_after = session.enquire_link_interval or session.idle_timeout
        return session.clock() - self._unread_since >= asks_after + session.response_timeout

    def close(self, unanswered: bool = False) -> None:
        """Done with the peer: released at once (_release), the socket closed once what is left to send is sent.

        Not for ever: what the peer has not read within response_timeout is dropped (abort). At once if the peer
        left a request of ours `unanswered` and has stopped reading too (pause_writing): it is not reading, so
        nothing left would reach it. A peer that reads gets all, its unbind_resp last."""
        transport = self.transport
        if transport is None or self._released:
            return
        self._release()
        if unanswered and not self._peer_reading:
            self._abort()
            return
        transport.close()
        if transport.get_write_buffer_size():  # what transport.close() waits for, without a limit of its own
            self._abort_handle = asyncio.get_running_loop().call_later(self.session.response_timeout, self._abort)

    def _abort(self) -> None:
        transport = self.transport
        if transport is None:
            return
        log.warning("peer not reading; connection dropped with data unsent", peer=self.peer, account=self.system_id,
                    unsent=transport.get_write_buffer_size())  # fmt: skip
        transport.abort()
