"""An MO whose handling fails, seen from a handset (gateway/mo.py, `[gateway] mo_retry_backoff`).

It stays stored `accepted` and is tried again after each delay of the schedule while the subscriber's
later MOs go on; after the last try it is given up: stored `failed`, the subscriber told, never tried
again, not even after a restart. A restart before that tries it again from the start (one whose row was
damaged meanwhile is given up there).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable

import pytest
import structlog

from gateway.store.effects import Put
from gateway.store.records import MessageStatus, Subscriber
from handlers.base import Outcome, Reply
from handlers.echo import EchoHandler
from tests.polling import eventually
from tests.smpp_handset import ESME_ROK, is_receipt, receipt_fields, text

A = "8613800000001"
ECHO = "10086000"  # replies with the text it received
SORRY_ZH = "抱歉，10086000暂时无法处理您发送的短信，请稍后重新发送。"


def status_of(gw, message_id) -> MessageStatus:
    return gw.call(gw.gateway.store.get(message_id.decode() if isinstance(message_id, bytes) else message_id)).status


def stored_status(db, message_id: bytes) -> str:
    """A message's status as its row in the SQLite file says, read from outside the gateway."""
    with contextlib.closing(sqlite3.connect(db)) as outside:
        [(status,)] = outside.execute("SELECT status FROM messages WHERE id = ?", (message_id.decode(),))
    return status


class Failing:
    """Wraps a short code's handler: its first `times` calls for a text fail (raising, with `bad_effect` an effect
    the store cannot commit, or with `bad_reply` a reply no SMS can be built from); then it is the handler it wraps.
    Counts every call."""

    def __init__(self, handler, times: int, bad_effect: bool = False, bad_reply: bool = False) -> None:
        self.handler = handler
        self.times = times
        self.bad_effect = bad_effect
        self.bad_reply = bad_reply
        self.calls = 0
        self.called = threading.Event()
        self.on_call: dict[int, Callable[[], object]] = {}  # call number -> run first, on the gateway's loop

    async def handle(self, inbound, ctx):
        self.calls += 1
        self.called.set()
        if self.calls in self.on_call:
            self.on_call[self.calls]()
        if self.calls <= self.times:
            if self.bad_effect:  # NOT NULL constraint failed: subscribers.language
                return Outcome(effects=[Put(Subscriber(inbound.subscriber, None))])
            if self.bad_reply:  # a handler's bug: no text to segment (TypeError); its effect must not be committed
                return Outcome([Reply(inbound.subscriber, None, inbound.short_code)], [Put(Subscriber(inbound.subscriber, "en"))])
            raise RuntimeError("handler bug")
        return await self.handler.handle(inbound, ctx)


def failing(gw, times: int, code: str = ECHO, **options) -> Failing:
    short_code = gw.gateway.mo.short_codes[code]
    short_code.handler = Failing(short_code.handler, times, **options)
    return short_code.handler


def test_an_mo_whose_handler_fails_once_is_handled_by_the_next_try(make_gateway, handset):
    gw = make_gateway(gateway={"mo_retry_backoff": [0.3]})
    handler = failing(gw, times=1)
    a = handset(A, gw=gw)
    # In one write: "next" must be handled before the retry of "kept", 0.3 s after its failure, and a client's pause
    # between two submissions (a loaded machine: 0.5 s did it) let the retry come first.
    sent = a.send_together(a.make("submit_sm", ECHO, "kept"), a.make("submit_sm", ECHO, "next"))
    kept, after = (a.response(sequence) for sequence in sent)
    assert kept.status == ESME_ROK  # stored before it is answered, though not handled
    assert after.status == ESME_ROK
    assert text(a.expect()) == "next"  # the subscriber's later MOs do not wait for it
    assert text(a.expect()) == "kept"  # no restart needed
    assert status_of(gw, kept.message_id) == MessageStatus.PROCESSED
    assert handler.calls == 3


def test_an_mo_whose_handling_cannot_be_committed_is_tried_again(make_gateway, handset):
    """The handler returns; the transaction with what it decided fails: nothing of it is stored, and the MO is tried
    again like one whose handler raised."""
    gw = make_gateway(gateway={"mo_retry_backoff": [0.2, 0.2]})
    handler = failing(gw, times=2, bad_effect=True)
    a = handset(A, gw=gw)
    resp = a.submit(ECHO, "once the store takes it")
    assert resp.status == ESME_ROK
    assert text(a.expect()) == "once the store takes it"
    assert handler.calls == 3
    assert status_of(gw, resp.message_id) == MessageStatus.PROCESSED


def test_an_mo_whose_reply_cannot_be_built_is_tried_again_and_handled_once(make_gateway, handset):
    """A handler's reply that cannot be built into SMS (a fault other than too long a text) fails that try as a raising
    handler does: an error line with its traceback, nothing of the try committed (not the handler's effect either), the
    MO tried again and answered once; an MO left to raise there would never be answered nor given up (coverage
    review: no test ran it)."""
    gw = make_gateway(gateway={"mo_retry_backoff": [0.3]})
    handler = failing(gw, times=1, bad_reply=True)
    a = handset(A, gw=gw)
    with structlog.testing.capture_logs() as logs:
        kept = a.submit(ECHO, "kept")
        assert kept.status == ESME_ROK
        assert text(a.expect()) == "kept"
    a.expect_none(0.5)  # once
    assert handler.calls == 2
    assert status_of(gw, kept.message_id) == MessageStatus.PROCESSED
    assert gw.call(gw.gateway.store.find(Subscriber, msisdn=A)) == []  # the failed try's effect not committed
    [failed] = [line for line in logs if line["event"] == "MO reply cannot be built"]
    assert (failed["log_level"], failed["msisdn"], failed["short_code"], failed["attempt"]) == ("error", A, ECHO, 1)
    assert "exc_info" in failed


def test_an_mo_that_keeps_failing_is_given_up_and_its_subscriber_told(make_gateway, handset, tmp_path):
    """Given up, it is UNDELIVERABLE with the system error the README promises: its receipt `stat:UNDELIV err:008`
    and query_sm's error_code 8 (an err:000 or 0 would tell the client nothing went wrong but the delivery)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"mo_retry_backoff": [0.1, 0.2]})
    handler = failing(gw, times=3)  # every try of the first text
    a = handset(A, gw=gw)
    resp = a.submit(ECHO, "poison", registered_delivery=1)
    assert resp.status == ESME_ROK
    receipt, sorry = a.expect_many(2)
    assert is_receipt(receipt) and receipt.receipted_message_id == resp.message_id
    assert (receipt_fields(receipt)["stat"], receipt_fields(receipt)["err"], receipt.message_state) == ("UNDELIV", "008", 5)
    assert text(sorry) == SORRY_ZH and sorry.source_addr == ECHO.encode()
    assert handler.calls == 3  # the first try and one after each delay
    assert status_of(gw, resp.message_id) == MessageStatus.FAILED
    answer = a.query(resp.message_id)
    assert (answer.status, answer.message_state, answer.error_code) == (ESME_ROK, 5, 8)  # UNDELIVERABLE, system error
    assert a.submit(ECHO, "after it").status == ESME_ROK
    assert text(a.expect()) == "after it"  # the short code goes on with other texts
    a.close()
    gw.stop()

    again = make_gateway(db_path=db)
    replays = failing(again, times=0)
    a = handset(A, gw=again)
    assert a.submit(ECHO, "new").status == ESME_ROK
    assert text(a.expect()) == "new"
    assert replays.calls == 1  # "poison" was not handled again


def test_the_subscriber_is_told_in_their_language(make_gateway, handset):
    gw = make_gateway(gateway={"mo_retry_backoff": []})
    a = handset(A, gw=gw)
    assert a.submit("10086", "EN").status == ESME_ROK  # the operator's short code: English from now on
    a.expect()
    failing(gw, times=1)
    assert a.submit(ECHO, "poison").status == ESME_ROK
    assert text(a.expect()) == "Sorry, 10086000 could not handle your message just now. Please send it again later."


def test_an_mo_still_failing_at_a_stop_is_tried_again_at_the_next_start(make_gateway, handset, tmp_path):
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"mo_retry_backoff": [3600]})
    failing(gw, times=1)
    a = handset(A, gw=gw)
    kept = a.submit(ECHO, "kept")
    assert kept.status == ESME_ROK
    assert a.submit(ECHO, "next").status == ESME_ROK
    assert text(a.expect()) == "next"
    assert status_of(gw, kept.message_id) == MessageStatus.ACCEPTED
    a.close()
    gw.stop()  # its next try was an hour away

    again = make_gateway(db_path=db)
    a = handset(A, gw=again)
    assert text(a.expect()) == "kept"
    assert status_of(again, kept.message_id) == MessageStatus.PROCESSED


def left_for_a_short_code_taken_out(make_gateway, handset, db):
    """An MO to short code 95555 left `accepted` (its first try failed, the next an hour away) by a gateway stopped
    since; the next gateway on `db`, without 95555, has it to replay. Its submit_sm_resp."""
    gw = make_gateway(db_path=db, gateway={"mo_retry_backoff": [3600]}, short_codes=[{"code": "95555", "handler": "echo"}])
    failing(gw, times=1, code="95555")
    a = handset(A, gw=gw)
    kept = a.submit("95555", "kept", registered_delivery=1)
    assert kept.status == ESME_ROK
    gw.call(gw.gateway.mo.drain())
    assert status_of(gw, kept.message_id) == MessageStatus.ACCEPTED  # its next try an hour away
    a.close()
    gw.stop()
    return kept


def test_an_mo_left_for_a_short_code_the_next_config_no_longer_has_is_given_up_at_start(make_gateway, handset, tmp_path):
    """It raised in the replay at every start (KeyError), stayed `accepted` for good, and its subscriber was never
    told; it is now given up at the first start without the code, as after its last try."""
    db = tmp_path / "gw.db"
    kept = left_for_a_short_code_taken_out(make_gateway, handset, db)
    again = make_gateway(db_path=db)  # 95555 taken out of the config
    a = handset(A, gw=again)
    first, second = a.expect(), a.expect()
    receipt, sorry = (first, second) if is_receipt(first) else (second, first)
    assert (receipt_fields(receipt)["stat"], text(sorry)) == ("UNDELIV", SORRY_ZH.replace(ECHO, "95555"))
    assert status_of(again, kept.message_id) == MessageStatus.FAILED


def test_an_mo_whose_giving_up_cannot_be_committed_is_given_up_once_the_store_commits_again(make_gateway, handset, tmp_path):
    """The transaction giving the MO up failed (another process held the write lock past the writer's busy timeout,
    as a full disk fails it): the MO stayed `accepted` for good, its subscriber never told, until a restart. It is
    tried once more after the last delay, and given up then."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"mo_retry_backoff": [0.3]})
    handler = failing(gw, times=1000)
    a = handset(A, gw=gw)
    holder = sqlite3.connect(db, isolation_level=None, timeout=10, check_same_thread=False)
    # Taken as the last try starts, so the transaction waiting for it is the giving up (not some other write the
    # writer happens to have in flight); a third try is what comes after a giving up that failed.
    handler.on_call[2] = lambda: holder.execute("BEGIN IMMEDIATE")
    try:
        resp = a.submit(ECHO, "poison", registered_delivery=1)
        assert resp.status == ESME_ROK
        assert eventually(lambda: handler.calls >= 3, timeout=30), "the giving up never failed, or was not tried again"
    finally:
        holder.rollback()
        holder.close()
    receipt, sorry = a.expect_many(2, timeout=30)
    assert is_receipt(receipt) and receipt.receipted_message_id == resp.message_id
    assert text(sorry) == SORRY_ZH
    assert status_of(gw, resp.message_id) == MessageStatus.FAILED
    assert handler.calls == 3  # the first try, the one after the delay, and the one after the give-up failed


def test_an_mo_for_a_code_no_longer_configured_whose_giving_up_fails_at_start_is_given_up_later(
    make_gateway, handset, tmp_path
):
    """Its one more try raised (KeyError: the short code's serial keys looked up), and it stayed `accepted`."""
    db = tmp_path / "gw.db"
    kept = left_for_a_short_code_taken_out(make_gateway, handset, db)
    holder = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the giving up at start waits it out, and fails
        again = make_gateway(db_path=db, gateway={"mo_retry_backoff": [0.5]})  # 95555 taken out of the config
        assert eventually(lambda: not again.gateway.store.can_commit, timeout=30)
    finally:
        holder.rollback()
        holder.close()
    a = handset(A, gw=again)
    first, second = a.expect_many(2, timeout=30)
    receipt, sorry = (first, second) if is_receipt(first) else (second, first)
    assert (receipt_fields(receipt)["stat"], text(sorry)) == ("UNDELIV", SORRY_ZH.replace(ECHO, "95555"))
    assert status_of(again, kept.message_id) == MessageStatus.FAILED


def left_accepted(make_gateway, handset, db, *texts: str) -> list:
    """MOs from A to ECHO left `accepted` (each one's first try failed, the next an hour away) by a gateway on `db`
    stopped since: their submit_sm_resps."""
    gw = make_gateway(db_path=db, gateway={"mo_retry_backoff": [3600]})
    failing(gw, times=len(texts))
    a = handset(A, gw=gw)
    sent = [a.submit(ECHO, words) for words in texts]
    assert {resp.status for resp in sent} == {ESME_ROK}
    gw.call(gw.gateway.mo.drain())
    assert {status_of(gw, resp.message_id) for resp in sent} == {MessageStatus.ACCEPTED}
    a.close()
    gw.stop()
    return sent


def test_an_mo_whose_handling_fails_again_when_replayed_at_a_start_is_tried_again_and_the_start_goes_on(
    make_gateway, handset, tmp_path, monkeypatch
):
    """The replay at the start of an MO left `accepted` fails (its handler raises again): the start goes on (binds
    taken, the subscriber's new texts answered), a `handler failed` error line names the MO, and it is tried again
    after the first delay of the schedule and handled once (coverage review: no test ran a replay that failed)."""
    db = tmp_path / "gw.db"
    [kept] = left_accepted(make_gateway, handset, db, "kept")
    calls = []
    handle = EchoHandler.handle

    async def failing_first(self, inbound, ctx):
        calls.append(inbound.text)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        return await handle(self, inbound, ctx)

    monkeypatch.setattr(EchoHandler, "handle", failing_first)
    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db, gateway={"mo_retry_backoff": [0.5]})
        a = handset(A, gw=again)
        assert a.submit(ECHO, "new").status == ESME_ROK
        assert sorted(text(sms) for sms in a.expect_many(2)) == ["kept", "new"]
    a.expect_none(0.7)  # once
    assert sorted(calls) == ["kept", "kept", "new"]
    assert status_of(again, kept.message_id) == MessageStatus.PROCESSED
    [failed] = [line for line in logs if line["event"] == "handler failed"]
    assert (failed["log_level"], failed["message_id"], failed["attempt"]) == ("error", kept.message_id.decode(), 1)


@pytest.mark.parametrize(
    ("column", "damage"),
    [("tlvs", b"\x04\x24"), ("extra", "{oops")], ids=["tlvs", "extra"],  # TLVs cut short; extra no JSON: no Message reads
)
def test_an_mo_whose_stored_row_cannot_be_handled_is_given_up_and_the_start_replays_the_others(
    make_gateway, handset, tmp_path, column, damage
):
    """Two MOs left `accepted`; one's row damaged while the gateway was down. The start goes on: the other is replayed
    and answered, and an error line names the one not replayed, which is given up (`failed`, no reply), so that the
    next start does not try it again (gateway/mo.py). Before, it stayed `accepted`, an error at every start, and one
    whose `extra` was no JSON kept the gateway from starting at all (README: no MO can)."""
    db = tmp_path / "gw.db"
    damaged, kept = left_accepted(make_gateway, handset, db, "damaged", "kept")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as outside:
        outside.execute(f"UPDATE messages SET {column} = ? WHERE id = ?", (damage, damaged.message_id.decode()))

    with structlog.testing.capture_logs() as logs:
        again = make_gateway(db_path=db)
        a = handset(A, gw=again)
        assert text(a.expect()) == "kept"
    a.expect_none(0.5)
    assert status_of(again, kept.message_id) == MessageStatus.PROCESSED
    assert stored_status(db, damaged.message_id) == MessageStatus.FAILED.value  # (its row does not read as a Message)
    [not_replayed] = [line for line in logs if line["event"] == "MO not replayed"]
    assert (not_replayed["log_level"], not_replayed["message_id"]) == ("error", damaged.message_id.decode())
    a.close()
    again.stop()
    with structlog.testing.capture_logs() as logs:
        make_gateway(db_path=db)
    assert [line for line in logs if line["event"] == "MO not replayed"] == []  # given up: not tried again
    assert [line["mo_replayed"] for line in logs if line["event"] == "smsgw ready"] == [0]
