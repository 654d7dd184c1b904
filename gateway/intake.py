"""What a submit_sm / data_sm means, and its answer (SPEC section 2).

From a handset or smsc account: MO from the subscriber in source_addr. To
a short code it goes to that code's handler; to another subscriber it is
delivered like any MT (the gateway is a small SMSC). An SME acknowledgement
(esm_class 0x08, 0x10) to an SP's service code answers the SP's content: it
is an MT to the SP account's binds, as the SP's notices are (refused if it
answers no content of the SP asking for it: acknowledgements.py); to any other
code it is an MO its handler never sees (mo.py `_serving`). From an SP account: MT
from one of its service codes to a subscriber. Nothing is acknowledged
before it is committed.

A submit_multi is a submit_sm per destination, each checked on its own: the
destinations refused (and distribution lists: none are configured) are listed
in submit_multi_resp's unsuccess_sme with their status, the others are
committed before the answer (which lists the refused ones also when it is an
error: none was accepted). Its message_id is the first destination's id;
the n-th accepted destination's is `<that id>/<n>` (`amend.multi_part_id`),
and the receipts of all of them carry the message_id the ESME was given.

An ESME bound with SMPP 3.3 takes message ids of 8 characters at most: it is
given each submission's alias (`ids.ShortIds`, `Message.short_id`; one for
all the destinations of a submit_multi), which its receipts, query_sm,
cancel_sm and replace_sm name too. The message keeps its own id as its key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import fields
from functools import partial
from typing import TYPE_CHECKING, Any

from .accounts import Account
from .acknowledgements import Acknowledgements
from .amend import Amendments, multi_part_id, submission_id
from .clock import Clock
from .config import GatewaySettings
from .delivery import Delivery
from .field_rules import check_addresses, check_submission
from .guards import Guards
from .ids import MessageIds, ShortIds
from .logs import get_logger
from .messages import (
    body_of,
    dedup_key,
    deliver_sm_length_over,
    is_acknowledgement,
    message_from_submission,
    schedule,
    segments_of,
    subscriber_of,
    subscriber_submitting,
)
from .mo import MoProcessor
from .numbers import NumberPlan
from .receipts import query_error_code
from .refusal import Rejection, time_field, validity_end
from .router import Router
from .smpp.codec import MAX_PDU_LENGTH, encode_message_id_resp
from .smpp.constants import CommandId, CommandStatus, MessageState, Tag
from .smpp.pdu import (
    DataSm,
    MultiDest,
    Pdu,
    QuerySm,
    QuerySmResp,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    UnsuccessSme,
    response_to,
)
from .smpp.times import format_smpp_time
from .store.base import Store
from .store.records import Direction, Message, MessageStatus

if TYPE_CHECKING:
    from handlers.base import Catalogue

    from .server import SmppConnection

log = get_logger("intake")
S = CommandStatus
# Plain ints: compared and passed on for every message.
_SUBMIT_SM, _SUBMIT_SM_RESP, _DATA_SM_RESP = int(CommandId.SUBMIT_SM), int(CommandId.SUBMIT_SM_RESP), int(CommandId.DATA_SM_RESP)
_QOS_TIME_TO_LIVE = int(Tag.QOS_TIME_TO_LIVE)
_MO, _MT = Direction.MO, Direction.MT  # read from the class, an enum member costs ~150 ns (CPython 3.11)

_QUERY_STATE = {
    MessageStatus.ACCEPTED: MessageState.ENROUTE,  # not handled yet (ACCEPTED is "read by customer service", final)
    MessageStatus.PROCESSED: MessageState.DELIVERED,
    MessageStatus.FAILED: MessageState.UNDELIVERABLE,
    MessageStatus.SCHEDULED: MessageState.ENROUTE,  # SMPP 3.4 has no SCHEDULED message_state
    MessageStatus.ENROUTE: MessageState.ENROUTE,
    MessageStatus.DELIVERED: MessageState.DELIVERED,
    MessageStatus.EXPIRED: MessageState.EXPIRED,
    MessageStatus.UNDELIVERABLE: MessageState.UNDELIVERABLE,
    MessageStatus.DELETED: MessageState.DELETED,
    MessageStatus.REJECTED: MessageState.REJECTED,
}
# What a submit_multi shares with each submit_sm it stands for: everything but the destination.
_SHARED_WITH_SUBMIT_SM = tuple(
    f.name for f in fields(SubmitSm) if f.name not in ("dest_addr_ton", "dest_addr_npi", "destination_addr")
)


class Intake:
    def __init__(
        self,
        *,
        settings: GatewaySettings,
        plan: NumberPlan,
        store: Store,
        router: Router,
        delivery: Delivery,
        mo: MoProcessor,
        guards: Guards,
        clock: Clock,
        ids: MessageIds,
        short_ids: ShortIds,
        amendments: Amendments,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        catalogue: Catalogue,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.store = store
        self.router = router
        self.delivery = delivery
        self.mo = mo
        self.guards = guards
        self.clock = clock
        self.ids = ids
        self.short_ids = short_ids
        self.amendments = amendments
        self.spawn = spawn
        self.catalogue = catalogue
        self.acknowledgements = Acknowledgements(store, clock)

    # ------------------------------------------------------------ submit
    def submit(self, conn: SmppConnection, pdu: SubmitSm | DataSm) -> None:
        resp_id = _SUBMIT_SM_RESP if pdu.command_id == _SUBMIT_SM else _DATA_SM_RESP
        account = conn.account
        # A resend (on any bind, by its user_message_reference) is answered its original's id whatever the
        # subscriber's queue or the throughput hold now, as submit_multi's copies are: its original fills them.
        # (Unlike them, charged to the throughput when there is room: nothing on the air, but no read to tell.)
        stored_before = conn.note_submission(pdu)
        try:
            message = self._admit(account, conn.session_id, pdu, may_be_copy=stored_before)
        except Rejection as rejected:
            conn.log_refused_submission(S.name_of(rejected.status), rejected.reason, pdu.source_addr, pdu.destination_addr)
            conn.respond_encoded(encode_message_id_resp(resp_id, pdu.sequence_number, "", rejected.status))
            return
        if not conn.optional_parameters:  # a bind of SMPP 3.3: its ids are 8 characters at most
            message.short_id = self.short_ids.next()
        if not account.is_sp:
            self.router.note_mo(message.source_addr, conn)
        if message.direction is _MO:
            self.mo.submit(message, partial(self._answer, conn, pdu.sequence_number, resp_id, message), stored_before)
            return
        replacing = resp_id == _SUBMIT_SM_RESP and pdu.replace_if_present_flag == 1  # (a data_sm has no such flag)
        if replacing:
            committed = partial(self._replacing, conn, pdu.sequence_number, message)
        else:
            committed = partial(self._committed, conn, pdu.sequence_number, resp_id, message)
        if message.origin_id is not None:  # an acknowledgement to an SP: it answers the content it claimed
            committed = partial(self._acknowledgement_settled, committed, message)
        self.delivery.count(message)  # now: a pipelining client's next PDU is read before the commit settles
        self.store.accept_then(message, committed, replacing)

    def _admit(
        self, account: Account, session: str, pdu: SubmitSm | DataSm, copies: list[bool] | None = None,
        may_be_copy: bool = False,
    ) -> Message:  # fmt: skip
        """The message a submission stands for, or Rejection. With `copies` (a submission that may repeat one
        accepted before), whether it is a copy of one is appended: a copy is not checked against the guards, its
        subscriber's queue or the throughput (it is answered the stored one's id, and puts nothing on the air).
        `may_be_copy` (a submit_sm that may repeat one): one of those refusing it asks whether it is a copy, which
        is then not refused (the store answers the stored one's id)."""
        check_submission(pdu)
        plan = self.plan
        source = plan.normalise(pdu.source_addr)
        dest = plan.normalise(pdu.destination_addr)
        if not account.may_send_from(source):
            allowed = account.service_codes if account.is_sp else account.numbers
            raise Rejection(S.ESME_RINVSRCADR, f"source_addr {pdu.source_addr!r} is not one of {list(allowed)}")
        # An MO is from a subscriber (`86138hello` is none, nor a code with an extension, `8610086123456`, that an
        # smsc account's prefix `86` covers): plan.is_msisdn inlined but for the country code, which the account's
        # prefixes hold (the call was 2% of this path's cost in bench/inproc.py b1).
        if not account.is_sp and not (len(source) == plan.msisdn_length and source.isascii() and source.isdigit()
                                         and not (source.startswith(plan.code_starts) and plan.extends_code(source))):  # fmt: skip
            raise Rejection(S.ESME_RINVSRCADR, f"source_addr {pdu.source_addr!r} is not a subscriber number")
        if not dest.isdigit():
            raise Rejection(S.ESME_RINVDSTADR, f"destination_addr {pdu.destination_addr!r} is not a number")
        now = self.clock.now()
        # (Read by command, not by getattr with a default: a data_sm has neither field; getattr costs ~5 plain reads.)
        if pdu.command_id != _SUBMIT_SM:
            validity, wanted_at = _time_to_live_end(pdu, now), ""
        else:  # (most have no validity_period: no call, validity_end("") being None)
            validity = validity_end(pdu.validity_period, now) if pdu.validity_period else None
            wanted_at = pdu.schedule_delivery_time
        to_short_code = not account.is_sp and self.mo.is_short_code(dest)
        to_sp = self._acknowledged_sp(pdu.esm_class, dest) if to_short_code and pdu.esm_class else None  # (most: 0)
        scheduled_at = None
        if wanted_at:
            if to_short_code:  # it answers at once; a malformed time is refused all the same (as validity_period is)
                time_field(wanted_at, now, S.ESME_RINVSCHED)
            else:
                scheduled_at = self._scheduled_at(wanted_at, now, validity)
        # Without a validity_period, the default counts from when the MT may go out: a newsletter scheduled for
        # Monday on Friday is not refused for ending before it starts.
        expires_at = validity if validity is not None else (scheduled_at or now) + self.settings.default_validity
        if not to_short_code and not plan.is_msisdn(dest):
            raise Rejection(S.ESME_RINVDSTADR, self._no_recipient(account, dest))
        copy = copies is not None and self._is_copy(account, session, pdu, source, dest)
        answered = None  # the SP's content an acknowledgement to it answers
        if not copy:
            # Before the queue's room: a blocked sender told ESME_RMSGQFUL would only try again later.
            refusal = self.guards.check(account, source, dest)
            if refusal is None and not to_short_code:
                queued = self.delivery.queued.get(dest, 0)
                if queued >= self.settings.max_queued_per_subscriber:
                    refusal = S.ESME_RMSGQFUL, f"{queued} messages already wait for {dest}"
            elif refusal is None and to_sp is not None:
                refusal = self._acknowledgements_full(source)
            if refusal is None and not account.bucket.take(segments_of(pdu)):
                refusal = S.ESME_RTHROTTLED, account.throughput_exceeded
            # Charged to the throughput first: the content it answers is a read of the store, on the loop; a client
            # over its throughput is told so whatever it sends (not ESME_RINVESMCLASS, thousands a second, read each).
            if refusal is None and to_sp is not None:
                answered, refusal = self._answered_content(to_sp, source, dest, pdu.esm_class)
            # A submit_sm that may repeat one (`may_be_copy`) is looked up only now: most of an SP's carry a
            # user_message_reference, and a read for each accepted one cost ~30% of the loop's time per message.
            if refusal is not None and not (may_be_copy and self._is_copy(account, session, pdu, source, dest)):
                raise Rejection(*refusal)
        message = message_from_submission(
            pdu,
            message_id=self.ids.next(),
            direction=_MO if to_short_code and to_sp is None else _MT,
            account=account.system_id,
            session=session,
            source=source,
            dest=dest,
            now=now,
            expires_at=expires_at,
        )
        if to_sp is not None:
            message.extra = {"to_account": to_sp}
        if message.direction is _MT:
            over = deliver_sm_length_over(message, plan)
            if over is not None:
                raise Rejection(S.ESME_RINVMSGLEN, f"its deliver_sm would be {over} octets, over the {MAX_PDU_LENGTH} "
                                                   "this gateway sends (and reads)")  # fmt: skip
        if scheduled_at is not None:
            schedule(message, scheduled_at, now)
        if copies is not None:
            copies.append(copy)
        if answered is not None:
            message.origin_id = answered
            self.acknowledgements.claim(message)
        return message

    def _acknowledged_sp(self, esm_class: int, dest: str) -> str | None:
        """The SP account an MO to short code `dest` goes to: an SME acknowledgement to an SP's service code, which
        acknowledges the SP's content (that asked for it: registered_delivery bits 3-2, SMPP 3.4 5.2.17; checked by
        `_answered_content`). None for any other: its handler's (an acknowledgement to any other code is handled by none: mo.py `_serving`)."""
        return self.catalogue.sp_of(dest) if is_acknowledgement(esm_class) else None

    def _answered_content(
        self, sp: str, subscriber: str, code: str, esm_class: int
    ) -> tuple[str | None, tuple[int, str] | None]:  # fmt: skip
        """(the id of the SP's content an acknowledgement answers, None), or (None, why it is refused): it answers no
        content of the SP (acknowledgements.py). ESME_RINVESMCLASS: an acknowledgement is no message type to send
        there now; taken for the subscriber's text, the code's handler would act on what the handset's software marked
        a report (one reading `TT` would order)."""
        answered = self.acknowledgements.answered(sp, code, subscriber, esm_class)
        if answered is None:
            return None, (S.ESME_RINVESMCLASS, self.acknowledgements.unanswered(sp, code, subscriber, esm_class))
        return answered, None

    def _acknowledgements_full(self, subscriber: str) -> tuple[int, str] | None:
        """ESME_RMSGQFUL for one more SME acknowledgement to an SP from `subscriber`, who has max_queued_per_subscriber
        waiting for SPs already (README, Acknowledgements): those of a handset with an SP off line filled the store,
        and queued ahead of that subscriber's later notices to the SP. None: there is room."""
        waiting = self.delivery.acknowledgements.get(subscriber, 0)
        if waiting < self.settings.max_queued_per_subscriber:
            return None
        return S.ESME_RMSGQFUL, f"{waiting} acknowledgements from {subscriber} already wait for SPs"

    def _is_copy(self, account: Account, session: str, pdu: SubmitSm | DataSm, source: str, dest: str) -> bool:
        return self.store.is_copy(dedup_key(account.system_id, session, pdu, source, dest, body_of(pdu)))

    def _no_recipient(self, account: Account, dest: str) -> str:
        """Why `account` may not send to `dest`, a number that is no subscriber's. An SP's MT is content for
        subscribers (SPEC 2): to it a short code is no destination either, not "neither" of two it may use."""
        if not account.is_sp:
            return f"destination_addr {dest} is neither a subscriber nor a short code"
        what = "a short code" if self.mo.is_short_code(dest) else "not a subscriber number"
        return f"destination_addr {dest} is {what}; an SP may send only to subscribers"

    @staticmethod
    def _scheduled_at(schedule_delivery_time: str, now: float, validity: float | None) -> float | None:
        """When an MT with this schedule_delivery_time may go out: None if now (the time has passed)."""
        at = time_field(schedule_delivery_time, now, S.ESME_RINVSCHED)
        assert at is not None  # the field is not empty
        if validity is not None and at >= validity:
            raise Rejection(S.ESME_RINVSCHED, f"schedule_delivery_time {schedule_delivery_time!r} is not before the validity ends")
        return at if at > now else None

    def _committed(
        self, conn: SmppConnection, sequence: int, resp_id: int, message: Message,
        result: tuple[str, bool] | None, error: BaseException | None,
    ) -> None:  # fmt: skip
        """An MT's commit settled: answer it, then deliver it if it is new."""
        if self._answer(conn, sequence, resp_id, message, result, error):
            self.delivery.admit(message, counted=True)
        else:
            self.delivery.uncount(message)

    def _answer(
        self, conn: SmppConnection, sequence: int, resp_id: int, message: Message,
        result: tuple[str, bool] | None, error: BaseException | None,
    ) -> bool:  # fmt: skip
        """Answer a submission whose commit settled. True: a new message is stored (not a copy, not failed)."""
        if error is not None and isinstance(error, Rejection):  # not written (the gateway stops): the client sends it again
            log.info("submission refused", account=message.account, msisdn=_submitter(message, conn.account.is_sp),
                     status=S.name_of(error.status), reason=error.reason)  # fmt: skip
            conn.respond_encoded(encode_message_id_resp(resp_id, sequence, "", error.status))
            return False
        if error is not None:
            _write_failed(conn, message, error)
            conn.respond_encoded(encode_message_id_resp(resp_id, sequence, "", S.ESME_RSYSERR))
            return False
        message_id, duplicate = result
        if message.short_id is not None and duplicate:  # a copy on a bind of SMPP 3.3
            self._copy_short_id(message_id, message.short_id, partial(self._answer_copy, conn, sequence, resp_id, message))
        else:
            given = message_id if message.short_id is None else message.short_id
            conn.respond_encoded(encode_message_id_resp(resp_id, sequence, given))
        return not duplicate or _is_new(message, message_id, duplicate)  # (a new one, as nearly all: no call)

    def _answer_copy(
        self, conn: SmppConnection, sequence: int, resp_id: int, message: Message, alias: str | None, error: BaseException | None,
    ) -> None:  # fmt: skip
        if error is not None:
            _write_failed(conn, message, error)
            conn.respond_encoded(encode_message_id_resp(resp_id, sequence, "", S.ESME_RSYSERR))
        else:
            conn.respond_encoded(encode_message_id_resp(resp_id, sequence, alias))

    def _copy_short_id(
        self, stored_id: str, short_id: str | None, then: Callable[[str | None, BaseException | None], None]
    ) -> None:  # fmt: skip
        """What a copy submitted on a bind of SMPP 3.3 is answered, told `then`: the SMPP 3.3 alias of the submission
        it copies. One first sent on a bind of SMPP 3.4 has none: it is given `short_id` (a new one if None), and
        `then` told once that is committed (or the error): from then on query_sm, cancel_sm, replace_sm and its
        receipts name it by that alias. (A copy on another bind of SMPP 3.3 may have given it one meanwhile: then
        that one.)"""
        alias = self.store.short_id_of(stored_id)
        if alias is not None:
            then(alias, None)
            return

        def given(_result: None, error: BaseException | None) -> None:
            then(None if error is not None else self.store.short_id_of(stored_id), error)

        self.store.give_short_id(submission_id(stored_id), short_id or self.short_ids.next(), given)

    def _acknowledgement_settled(
        self, committed: Callable[[tuple[str, bool] | None, BaseException | None], None], message: Message,
        result: tuple[str, bool] | None, error: BaseException | None,
    ) -> None:  # fmt: skip
        """An acknowledgement to an SP is committed (the store tells the content it answers acknowledged), or not."""
        self.acknowledgements.settled(message)
        committed(result, error)

    def _replacing(
        self, conn: SmppConnection, sequence: int, message: Message, result: tuple[str, bool] | None,
        error: BaseException | None,
    ) -> None:  # fmt: skip
        """replace_if_present_flag = 1, its commit settled: a new MT goes out now, as any (nothing behind it overtakes
        it), and is answered once the cancellations of the ones it replaces are committed too (answered at its own
        commit, a kill -9 right after the answer left them to go out after the restart). A copy or a failure: as any."""
        if error is not None or result is None or result[1]:
            self._committed(conn, sequence, _SUBMIT_SM_RESP, message, result, error)
            return
        self.delivery.answer_pending(message.id)
        self.delivery.admit(message, counted=True)
        self.spawn(self._answer_replacing(conn, sequence, message, result))

    async def _answer_replacing(self, conn: SmppConnection, sequence: int, message: Message, result: tuple[str, bool]) -> None:
        try:
            await self.amendments.replace_present(message)
            self._answer(conn, sequence, _SUBMIT_SM_RESP, message, result, None)
        finally:
            self.delivery.answered(message.id)

    # ------------------------------------------------------- submit_multi
    def submit_multi(self, conn: SmppConnection, pdu: SubmitMulti) -> None:
        """Admit each destination and issue the writes now, in arrival order with the PDUs around it (a submit_sm
        read after it must not be stored or handled first); answer once they are committed."""
        account = conn.account
        admitted: list[Message] = []
        named: list[MultiDest] = []  # the destination each of admitted was, as the client wrote it
        copies: list[bool] = []  # resent: whether each of admitted is a copy of a destination stored when first sent
        refused: list[UnsuccessSme] = []
        refusals: list[Callable[..., None]] = []  # their lines, written once the answer's message_id is known
        listed: set[str] = set()
        resent = conn.note_submission(pdu)  # its sequence number is in its destinations' dedup keys
        for dest in pdu.dest_addresses:
            if dest.dest_flag != 1:
                refusals.append(partial(conn.log_refused_submission, S.name_of(S.ESME_RINVDLNAME), "distribution lists "
                                        "are not kept here: name each number", pdu.source_addr, None, dl_name=dest.dl_name))  # fmt: skip
                refused.append(UnsuccessSme(destination_addr=dest.dl_name, error_status_code=S.ESME_RINVDLNAME))
                continue
            number = self.plan.normalise(dest.destination_addr)
            if number in listed:  # named again (perhaps written another way): one copy, as to a single submit_sm
                continue
            try:
                # A resend's copies are not charged to the throughput, nor refused for a queue their originals fill:
                # they took what the destinations refused ESME_RTHROTTLED the first time needed, at every resend.
                message = self._admit(account, conn.session_id, _submit_sm_to(pdu, dest), copies if resent else None)
            except Rejection as rejected:
                refusals.append(partial(conn.log_refused_submission, S.name_of(rejected.status), rejected.reason,
                                        pdu.source_addr, dest.destination_addr))  # fmt: skip
                refused.append(_unsuccess(dest, rejected.status))
                continue
            listed.add(number)  # (only now: a refused form, a bad TON, must not cost the number its copy)
            if message.direction is _MT:  # now: the next destination's check sees it (acknowledgements to other SPs)
                self.delivery.count(message)
            admitted.append(message)
            named.append(dest)
        # The destinations stored now are numbered from the first of them, and the answer names it: a resend's
        # copies keep the id they were answered with; numbered from a copy, the new ones went under an id the
        # client was never given, and their receipts named it.
        stored = [message for message, copy in zip(admitted, copies) if not copy] if resent else admitted
        for n, message in enumerate(stored[1:], 2):
            message.id = multi_part_id(stored[0].id, n)
            message.extra = {**message.extra, "submit_multi": stored[0].id}
        if stored and not conn.optional_parameters:  # a bind of SMPP 3.3: one alias names them all, as stored[0].id does
            short_id = self.short_ids.next()
            for message in stored:
                message.short_id = short_id
        if admitted and not account.is_sp:
            self.router.note_mo(admitted[0].source_addr, conn)
        # An MO goes to its short code's handler once committed (its handling may answer before this does).
        replacing = pdu.replace_if_present_flag == 1
        accepts = [self.mo.accept(m) if m.direction is _MO else self.store.accept(m, replacing) for m in admitted]
        self.spawn(self._answer_multi(conn, pdu, admitted, named, accepts, refused, refusals))

    async def _answer_multi(
        self, conn: SmppConnection, pdu: SubmitMulti, admitted: list[Message], named: list[MultiDest],
        accepts: list[Awaitable[tuple[str, bool]]], refused: list[UnsuccessSme], refusals: list[Callable[..., None]],
    ) -> None:  # fmt: skip
        """Answer once the destinations admitted are committed; the lines about those refused name the message_id
        answered (none if every destination was refused)."""
        outcomes = await asyncio.gather(*accepts, return_exceptions=True)
        for message in admitted:
            if message.origin_id is not None:  # an acknowledgement to an SP (as `submit`'s: _acknowledgement_settled)
                self.acknowledgements.settled(message)
        committed: list[tuple[Message, str, bool]] = []
        for message, dest, outcome in zip(admitted, named, outcomes):
            if isinstance(outcome, BaseException):
                _write_failed(conn, message, outcome)
                refused.append(_unsuccess(dest, S.ESME_RSYSERR))  # as written, as every other refusal
            else:
                committed.append((message, *outcome))
        new = {message.id for message, message_id, duplicate in committed if _is_new(message, message_id, duplicate)}
        if committed:  # the id of the first destination stored now, else of the first stored before (all copies)
            status, message_id = S.ESME_ROK, next((i for _m, i, copy in committed if not copy), committed[0][1])
        else:  # refused everywhere: for their one reason if they share it (ESME_RTHROTTLED: slow down)
            statuses = {sme.error_status_code for sme in refused}
            status, message_id = statuses.pop() if len(statuses) == 1 else S.ESME_RSUBMITFAIL, ""
        for line in refusals:
            line(**({"message_id": message_id} if message_id else {}))
        given = message_id
        if message_id and not conn.optional_parameters:  # a bind of SMPP 3.3: the alias of the destinations stored
            first = next((m for m, _i, copy in committed if not copy), None)
            given, error = await self._copy_alias(message_id) if first is None else (first.short_id, None)
            if error is not None:  # the alias given to the copies' submission not committed
                _write_failed(conn, committed[0][0], error)
                status, given = S.ESME_RSYSERR, ""
        answer = SubmitMultiResp(sequence_number=pdu.sequence_number, command_status=status, message_id=given,
                                 unsuccess_smes=refused)  # fmt: skip
        if pdu.replace_if_present_flag == 1:  # as `submit` with the flag (_replacing)
            await self._answer_replacing_multi(conn, answer, self._deliver_multi(admitted, new, answer_pending=True))
        else:
            conn.respond(answer)
            self._deliver_multi(admitted, new)

    def _deliver_multi(self, admitted: list[Message], new: set[str], answer_pending: bool = False) -> list[Message]:
        """The MTs of a submit_multi's destinations stored now join delivery (a copy, or one whose commit failed, is
        uncounted): those MTs. `answer_pending`: their receipts wait for the answer (Delivery.answer_pending)."""
        delivered = []
        for message in admitted:
            if message.direction is not _MT:
                continue
            if message.id in new:
                if answer_pending:
                    self.delivery.answer_pending(message.id)
                self.delivery.admit(message, counted=True)
                delivered.append(message)
            else:  # a copy, or its commit failed
                self.delivery.uncount(message)
        return delivered

    async def _answer_replacing_multi(self, conn: SmppConnection, answer: SubmitMultiResp, mts: list[Message]) -> None:
        """A submit_multi with replace_if_present_flag 1, its new MTs out: answered once what each replaces at its
        destination is cancelled (committed), then their receipts may follow."""
        try:
            await asyncio.gather(*map(self.amendments.replace_present, mts))
            conn.respond(answer)
        finally:
            for message in mts:
                self.delivery.answered(message.id)

    async def _copy_alias(self, stored_id: str) -> tuple[str | None, BaseException | None]:
        """`_copy_short_id` for a submit_multi all of whose destinations are copies: (the alias, None) or (None, the
        error its write failed with)."""
        alias: asyncio.Future[tuple[str | None, BaseException | None]] = asyncio.get_running_loop().create_future()
        self._copy_short_id(stored_id, None, lambda given, error: alias.set_result((given, error)))
        return await alias

    # ------------------------------------------------------------- query
    async def query(self, conn: SmppConnection, pdu: QuerySm) -> None:
        try:
            check_addresses(pdu)
        except Rejection as refused:
            self._refuse_query(conn, pdu, refused.status, refused.reason)
            return
        message = await self.store.get(pdu.message_id)  # (an SMPP 3.3 alias names the first message given it)
        if message is None or message.source_addr != self.plan.normalise(pdu.source_addr) or message.account != conn.account.system_id:
            # Another account's message is as good as none: the line names nothing of it (its subscriber, or that it
            # exists), as the answer tells nothing.
            own = message if message is not None and message.account == conn.account.system_id else None
            reason = "not submitted from that source_addr" if own is not None else "no message of this account has this id"
            self._refuse_query(conn, pdu, S.ESME_RQUERYFAIL, reason, own)
            return
        conn.respond(
            QuerySmResp(
                sequence_number=pdu.sequence_number,
                message_id=pdu.message_id,  # the message's id, or the SMPP 3.3 alias it was named by
                final_date=format_smpp_time(message.done_at) if message.done_at and message.is_final else "",
                message_state=_QUERY_STATE[message.status],
                error_code=query_error_code(message.error),
            )
        )

    def _refuse_query(self, conn: SmppConnection, pdu: QuerySm, status: int, reason: str, own: Message | None = None) -> None:
        """Answer a query_sm `status`, logged naming the subscriber of `own` (the account's message it named), or
        the one its source_addr names."""
        if conn.may_log(f"query_sm refused ({S.name_of(status)})"):
            msisdn = subscriber_of(own) if own is not None else subscriber_submitting(conn.account.is_sp, pdu.source_addr, "", self.plan)
            log.warning("query_sm refused", message_id=pdu.message_id, account=conn.account.system_id, msisdn=msisdn,
                        source=pdu.source_addr, status=S.name_of(status), reason=reason)  # fmt: skip
        conn.respond(QuerySmResp(sequence_number=pdu.sequence_number, command_status=status))

    def unsupported(self, conn: SmppConnection, pdu: Pdu) -> None:
        """A request the session let through that the gateway does not serve (none, with its tables as they are)."""
        log.warning("operation not supported", account=conn.account.system_id, command=pdu.name)
        conn.respond(response_to(pdu, S.ESME_RINVCMDID))


def _time_to_live_end(pdu: DataSm, now: float) -> float | None:
    """When a data_sm expires: it has no validity_period, its qos_time_to_live TLV is its validity, in seconds
    from submission (SMPP 3.4 section 5.3.2.27). None if not given (the default applies); 0 counts as not given,
    as a relative validity_period of zero does."""
    seconds = pdu.tlvs.get(_QOS_TIME_TO_LIVE) if pdu.tlvs else None
    return now + seconds if seconds else None


def _submitter(message: Message, from_sp: bool) -> str:
    return subscriber_submitting(from_sp, message.source_addr, message.dest_addr)


def _write_failed(conn: SmppConnection, message: Message, error: BaseException) -> None:
    """A submission answered ESME_RSYSERR: logged for the first few from this peer's host and account
    (SmppConnection.may_log), the rest counted, as refused PDUs are (while the store cannot commit, every one fails,
    and the store says why itself: `store cannot commit`). Its msisdn is the one every line about the message names
    (subscriber_of): a handset's MT's addressee, not its sender."""
    if conn.may_log("store write failed"):
        log.error("store write failed", message_id=message.id, account=message.account, msisdn=subscriber_of(message),
                  error="cancelled" if isinstance(error, asyncio.CancelledError) else repr(error))  # fmt: skip


def _is_new(message: Message, message_id: str, duplicate: bool) -> bool:
    """Whether a committed submission is a new message; a copy is logged under the msisdn the lines about the message
    it copies name (subscriber_of), as its cancel_sm and `mt final` lines do."""
    if duplicate:
        log.info("retransmission recognised", message_id=message_id, account=message.account,
                 msisdn=subscriber_of(message))  # fmt: skip
    return not duplicate


def _submit_sm_to(pdu: SubmitMulti, dest: MultiDest) -> SubmitSm:
    """The submit_sm a submit_multi stands for at one SME destination (same sequence number, for dedup)."""
    one = SubmitSm(dest_addr_ton=dest.dest_addr_ton, dest_addr_npi=dest.dest_addr_npi, destination_addr=dest.destination_addr)
    for name in _SHARED_WITH_SUBMIT_SM:
        setattr(one, name, getattr(pdu, name))
    return one


def _unsuccess(dest: MultiDest, status: int) -> UnsuccessSme:
    return UnsuccessSme(dest_addr_ton=dest.dest_addr_ton, dest_addr_npi=dest.dest_addr_npi,
                        destination_addr=dest.destination_addr, error_status_code=status)  # fmt: skip
