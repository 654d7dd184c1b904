"""cancel_sm and replace_sm: an ESME takes back or rewrites an MT it sent that is not yet delivered.

Who may: the account that submitted the MT, naming the source_addr it used
(normalised, so `+86138…` and `138…` are one number). What: an MT still
undelivered and not on its way out: parked, waiting for a retry, or queued
on a bind; one whose deliver_sm awaits its answer can no longer be changed.
A message of a submit_multi answers for every destination it was sent to.

- cancel_sm with a message_id ends that MT as DELETED (`stat:DELETED`
  receipt when one was asked for); with an empty message_id, every
  undelivered MT submitted before it from source_addr to destination_addr
  (and of service_type, if given). ESME_ROK if at least one was cancelled,
  else ESME_RCANCELFAIL.
- replace_sm sets the MT's short_message (or message_payload),
  registered_delivery and, if given, validity_period and
  schedule_delivery_time (a time ahead makes it wait, as for submit_sm; one
  past lets it go now; ignored for an SME acknowledgement to an SP, as its
  submit_sm's is: waiting scheduled, it would count against no limit). sm_default_msg_id is ignored, as for submit_sm (there
  are no canned messages). Its fields are refused as submit_sm's are
  (field_rules.py): the MT stays one that could have been submitted. The
  SMS its new text fills beyond the old one's (at each destination) are
  charged to the account's throughput, as a submission's are: past it,
  ESME_RTHROTTLED and the MT as it was (`_charged`). A
  submit_multi's destinations are replaced in one commit, each taken back
  as read (Delivery.replace). ESME_ROK if at least one was replaced, else
  ESME_RREPLACEFAIL.
- One pipelined behind another of the same MT (or a submit_sm replacing it)
  waits for that one's commit, then acts on the MT as that one left it, in
  the order they came.
- submit_sm with replace_if_present_flag 1 cancels, once it is committed,
  the MTs it replaces: undelivered, from the same account and source_addr to
  the same subscriber, with the same service_type. It is answered once those
  cancellations are committed too (Intake._replacing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .delivery import Delivery
from .field_rules import check_addresses, check_replacement
from .ids import MessageIds
from .logs import get_logger
from .messages import (
    addressed_account,
    deliver_sm_length_over,
    schedule,
    segments_stored,
    subscriber_of,
    subscriber_submitting,
)
from .numbers import NumberPlan
from .refusal import Rejection, time_field, validity_end
from .smpp.codec import MAX_PDU_LENGTH
from .smpp.constants import CommandStatus, Tag
from .smpp.pdu import CancelSm, ReplaceSm, response_to
from .store.base import Store
from .store.records import Message, MessageStatus

if TYPE_CHECKING:
    from handlers.base import Catalogue

    from .accounts import Account
    from .server import SmppConnection

log = get_logger("amend")
S = CommandStatus


def multi_part_id(first_id: str, n: int) -> str:
    """The id of the n-th destination (n >= 2) of a submit_multi whose first destination's id is first_id."""
    return f"{first_id}/{n}"


def submission_id(message_id: str) -> str:
    """The id of the submission the message of this id is part of: its own, or for `<first id>/<n>`, the first's."""
    return message_id.partition("/")[0]


class Amendments:
    def __init__(
        self, *, store: Store, delivery: Delivery, plan: NumberPlan, clock: Clock, ids: MessageIds, catalogue: Catalogue
    ) -> None:  # fmt: skip
        self.store = store
        self.delivery = delivery
        self.plan = plan
        self.clock = clock
        self.ids = ids
        self.catalogue = catalogue
        self._under_way: dict[str, asyncio.Future[None]] = {}  # MT id -> its cancellation or replacement, committing

    def cancel(self, conn: SmppConnection, pdu: CancelSm) -> Coroutine[Any, Any, None]:
        """The cancel_sm's work, to run as a task. Without a message_id, it cancels what was submitted before it (ids
        sort in the order they were given out: `arrived`, given out now), the submissions before it on the bind whose
        commit is still on its way included (a pipelining client's submit_sm just before it): it reads the store once
        they are committed, as a submit_sm with replace_if_present_flag 1 does once it is."""
        return self._cancel(conn, pdu, "" if pdu.message_id else self.ids.next())

    async def _cancel(self, conn: SmppConnection, pdu: CancelSm, arrived: str) -> None:
        try:
            check_addresses(pdu)
        except Rejection as refused:
            await self.refuse(conn, pdu, refused.status, refused.reason)
            return
        account = conn.account.system_id
        source = self.plan.normalise(pdu.source_addr)
        cancelled: list[str] = []
        failure: BaseException | None = None  # the store could not read or commit (the cancellation, or what came before it)
        if pdu.message_id:
            candidates, failure = await _read(self._settled(partial(self._submitted, account, source, pdu.message_id)))
            if pdu.destination_addr:  # 4.9.1: "used for verification purposes, and must match" the submission's
                dest = self.plan.normalise(pdu.destination_addr)
                candidates = [m for m in candidates if m.dest_addr == dest]
        else:
            try:  # committed after the writes issued before it (in issue order)
                await self.store.apply([])
            except Exception as error:  # noqa: BLE001  (logged below) the store cannot commit: nor could the cancellation
                candidates, failure = [], error
            else:
                dest = self.plan.normalise(pdu.destination_addr)
                # (to an SP's service code: a subscriber's acknowledgements, which go to the SP account: Intake)
                undelivered = partial(self.store.undelivered_from, account, source, dest, self.catalogue.sp_of(dest))
                candidates, failure = await _read(self._settled(undelivered))
                candidates = [m for m in candidates if m.id < arrived]
                if pdu.service_type:
                    candidates = [m for m in candidates if m.service_type == pdu.service_type]
        if failure is None:  # answered once committed: a query_sm right after sees it
            cancelled, failure = await self._cancel_all(candidates)
        # One whose cancellation failed to commit (a submit_multi's destination) is as it was: the client is told, and
        # cancels it by sending the cancel_sm again (the others are no longer undelivered).
        status = S.ESME_RSYSERR if failure is not None else S.ESME_ROK if cancelled else S.ESME_RCANCELFAIL
        if status == S.ESME_ROK or conn.may_log(f"cancel_sm refused ({S.name_of(status)})"):
            fields = self._fields(conn, pdu, status, candidates)
            if status == S.ESME_ROK:
                log.info("cancel_sm", cancelled=cancelled, found=len(candidates), **fields)
            elif failure is not None:
                log.warning("cancel_sm refused", reason=f"the store failed: {failure!r}", cancelled=cancelled, **fields)
            else:
                log.warning("cancel_sm refused", reason=_not_amended(candidates, "cancel"), **fields)
        conn.respond(response_to(pdu, status))

    async def replace(self, conn: SmppConnection, pdu: ReplaceSm) -> None:
        account = conn.account.system_id
        source = self.plan.normalise(pdu.source_addr)
        now = self.clock.now()
        candidates, failure = await _read(self._settled(partial(self._submitted, account, source, pdu.message_id)))
        try:
            check_replacement(pdu)
            expires_at = validity_end(pdu.validity_period, now)
            scheduled_at = time_field(pdu.schedule_delivery_time, now, S.ESME_RINVSCHED)
        except Rejection as refused:
            if conn.may_log(f"replace_sm refused ({S.name_of(refused.status)})"):
                log.warning("replace_sm refused", reason=refused.reason, **self._fields(conn, pdu, refused.status, candidates))
            conn.respond(response_to(pdu, refused.status))
            return
        payload = pdu.tlvs.get(Tag.MESSAGE_PAYLOAD) if pdu.tlvs else None
        body = pdu.short_message or (payload if isinstance(payload, bytes) else b"")
        replaced: list[str] = []
        status = S.ESME_RSYSERR if failure is not None else S.ESME_RREPLACEFAIL
        changes = []
        for stored in candidates:
            replacement = dataclasses.replace(stored, short_message=body, registered_delivery=pdu.registered_delivery)
            if expires_at is not None:
                replacement.expires_at = expires_at
            if scheduled_at is not None and addressed_account(stored) is None:  # (an acknowledgement to an SP: none)
                schedule(replacement, scheduled_at, now)
            if replacement.status is MessageStatus.SCHEDULED and replacement.next_attempt_at >= replacement.expires_at:
                status = S.ESME_RINVSCHED  # it would expire before its time
            elif deliver_sm_length_over(replacement, self.plan) is not None:
                status = S.ESME_RINVMSGLEN  # with the TLVs it keeps, no deliver_sm could carry the new text
            else:
                changes.append((stored, replacement))
        if changes and not _charged(conn.account, changes):
            status, changes = S.ESME_RTHROTTLED, []  # as they were
        try:  # every destination of a submit_multi in one commit, taken back as read (Delivery.replace)
            with self._amending(stored.id for stored, _replacement in changes):
                replaced = await self.delivery.replace(changes)
        except Exception as error:  # noqa: BLE001  (logged below) the store could not commit: as they were
            status, failure = S.ESME_RSYSERR, error
        if replaced and failure is None:
            status = S.ESME_ROK
        if status == S.ESME_ROK or conn.may_log(f"replace_sm refused ({S.name_of(status)})"):
            fields = self._fields(conn, pdu, status, candidates)
            if status == S.ESME_ROK:
                log.info("replace_sm", replaced=replaced, **fields)
            elif status == S.ESME_RINVSCHED:
                log.warning("replace_sm refused", reason="it would expire before its new schedule_delivery_time", **fields)
            elif status == S.ESME_RINVMSGLEN:
                log.warning("replace_sm refused", reason=f"its deliver_sm would be over {MAX_PDU_LENGTH} octets", **fields)
            elif status == S.ESME_RTHROTTLED:
                log.warning("replace_sm refused", reason=conn.account.throughput_exceeded, **fields)
            elif failure is not None:
                log.warning("replace_sm refused", reason=f"the store failed: {failure!r}", replaced=replaced, **fields)
            else:
                log.warning("replace_sm refused", reason=_not_amended(candidates, "replace"), **fields)
        conn.respond(response_to(pdu, status))

    async def replace_present(self, message: Message) -> None:
        """submit_sm with replace_if_present_flag 1, committed: the MTs still undelivered that the same
        account sent before it from the same source_addr to the same subscriber with the same
        service_type are cancelled (SMPP 3.4 section 5.2.18), then the MT is no longer stored as
        replacing (Store.replaced). Returns once that is committed (its answer waits for it), or has
        failed: logged, those not cancelled go out (those still waiting at the next start are cancelled then)."""
        older, failure = await _read(self._settled(partial(self.store.undelivered_from, message.account, message.source_addr,
                                                           message.dest_addr)))  # fmt: skip
        replaced, failure = await self._cancel_all([
            m for m in older
            if m.id != message.id and m.service_type == message.service_type and m.submitted_at <= message.submitted_at
        ]) if failure is None else ([], failure)  # fmt: skip
        if failure is None:
            failure = await _committed(self.store.replaced(message.id))
        fields = {"message_id": message.id, "account": message.account, "msisdn": subscriber_of(message), "replaced": replaced}
        if failure is not None:
            log.warning("replace if present failed", reason=f"the store failed: {failure!r}", **fields)
        elif replaced:
            log.info("replaced if present", **fields)

    async def complete_replacements(self) -> int:
        """At the start, before anything goes out: the replacements (replace_if_present_flag 1) whose MT was committed
        and the cancellations of what it replaces not (killed in between) are done now. How many there were."""
        pending = await self.store.replacements_pending()
        await asyncio.gather(*map(self.replace_present, pending))
        return len(pending)

    async def refuse(self, conn: SmppConnection, pdu: CancelSm | ReplaceSm, status: int, reason: str) -> None:
        """A cancel_sm or replace_sm refused before it is looked at (the gateway is stopping, or a cancel_sm's TON or
        NPI is refused): logged and counted as the other refusals of its kind, naming the MT's subscriber if it is
        found (read only for a line written)."""
        event = f"{pdu.name} refused"
        if conn.may_log(f"{event} ({S.name_of(status)})"):
            source = self.plan.normalise(pdu.source_addr)
            found, _error = await _read(self._submitted(conn.account.system_id, source, pdu.message_id)) if pdu.message_id else ([], None)
            log.warning(event, reason=reason, **self._fields(conn, pdu, status, found))  # (answered whatever the read did)
        conn.respond(response_to(pdu, status))

    def _fields(self, conn: SmppConnection, pdu: CancelSm | ReplaceSm, status: int, found: list[Message]) -> dict[str, Any]:
        """The fields of the line about a cancel_sm or replace_sm (which has no destination_addr) answered `status`."""
        dest = getattr(pdu, "destination_addr", None)
        fields = {"account": conn.account.system_id, "message_id": pdu.message_id or None, "source": pdu.source_addr}
        if dest is not None:
            fields["dest"] = dest or None
        fields["status"] = S.name_of(status)
        fields["msisdn"] = self._subscriber(conn, pdu.source_addr, dest or "", found)
        return fields

    def _subscriber(self, conn: SmppConnection, source: str, dest: str, found: list[Message]) -> str:
        """The msisdn the log line about a cancel_sm or replace_sm names: as the lines about the message did, if found."""
        if found:
            return subscriber_of(found[0])
        return subscriber_submitting(conn.account.is_sp, source, dest, self.plan)

    async def _cancel_all(self, messages: list[Message]) -> tuple[list[str], BaseException | None]:
        """Cancel those of `messages` still undelivered: the ids of those whose cancellation is committed, and the
        store's error if one failed to commit (that MT is still undelivered, and goes out)."""
        settling = {m.id: settled for m in messages if (settled := self.delivery.cancel(m)) is not None}
        with self._amending(settling):
            outcomes = await asyncio.gather(*settling.values(), return_exceptions=True)
        cancelled = [message_id for message_id, outcome in zip(settling, outcomes, strict=True) if outcome is None]
        return cancelled, next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)

    async def _settled(self, read: Callable[[], Awaitable[list[Message]]]) -> list[Message]:
        """What `read` finds once no cancellation or replacement of it is still committing (read again after each): an
        amendment pipelined behind another of the same MT acts on what that one made of it, in the order they came.
        (Held while a replacement committed, the MT was taken for one gone out: a cancel_sm right behind a replace_sm
        was refused, and the MT went out.) The store's reads never wait: what is found is taken back before anything
        else runs."""
        while True:
            found = await read()
            under_way = {committing for m in found if (committing := self._under_way.get(m.id)) is not None}
            if not under_way:
                return found
            await asyncio.wait(under_way)

    @contextlib.contextmanager
    def _amending(self, message_ids: Iterable[str]) -> Iterator[None]:
        """While the cancellation or replacement of these MTs commits: the next amendment of one waits (`_settled`)."""
        committed = asyncio.get_running_loop().create_future()
        amended = list(message_ids)
        for message_id in amended:
            self._under_way[message_id] = committed
        try:
            yield
        finally:
            committed.set_result(None)
            for message_id in amended:
                if self._under_way.get(message_id) is committed:
                    del self._under_way[message_id]

    async def _submitted(self, account: str, source: str, message_id: str) -> list[Message]:
        """What `account` submitted from `source` as message_id: one message, or one per destination of a submit_multi."""
        # Every destination read on its own: retention may have deleted the first (delivered a week ago) and not
        # another still waiting, which reading X, X/2, ... up to the first gap missed (cancel_sm then failed, or
        # left the later ones to go out).
        return [m for m in await self.store.submitted_as(message_id) if m.account == account and m.source_addr == source]


async def _read(reading: Awaitable[list[Message]]) -> tuple[list[Message], BaseException | None]:
    """What a read of the store found, or its error: a cancel_sm or replace_sm whose read fails is answered
    ESME_RSYSERR (it went unanswered: the error ended its task)."""
    try:
        return await reading, None
    except Exception as error:  # noqa: BLE001  (the caller logs it and answers)
        return [], error


async def _committed(writing: Awaitable[None]) -> BaseException | None:
    """The error a write failed with, None once it is committed."""
    try:
        await writing
    except Exception as error:  # noqa: BLE001  (the caller logs it)
        return error
    return None


def _charged(account: Account, changes: list[tuple[Message, Message]]) -> bool:
    """Whether the account's throughput takes what a replace_sm adds on the air, charged if it does: at each
    destination not yet ended, the SMS its new text fills beyond the old one's (a shorter text gives none back).
    Uncharged, ten 1-SMS MTs replaced by texts of 255 SMS went out as 2,550 SMS on an allowance of 10 a second."""
    added = sum(max(0, segments_stored(new) - segments_stored(old)) for old, new in changes if not old.is_final)
    return added == 0 or account.bucket.take(added)


def _not_amended(found: list[Message], what: str) -> str:
    """Why a cancel_sm or replace_sm changed nothing, for its log line."""
    if not found:
        return "no such message from this account and source_addr (or to that destination_addr)"
    return f"too late to {what}: it has gone out (its deliver_sm awaits an answer) or ended"
