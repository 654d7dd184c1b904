"""SME acknowledgements sent to a short code (SMPP 3.4 5.2.12: esm_class message type 0x08, an SME delivery
acknowledgement, and 0x10, a manual/user acknowledgement): a report on a message the handset received, not a text.

An SP may ask for one (registered_delivery bits 3-2, passed on to the handset: 5.2.17); the handset sends it to the
SP's service code. The code's handler took it for the subscriber's text: the SP code answered the "instruction not
recognised" reply (2 SMS), 10086 its help text, and an acknowledgement reading `TT` would have started an order.
To an SP's code, one answering no content of the SP that asked for it is refused: any handset pushed any text into
any SP's application by marking it an acknowledgement.
A delivery receipt (0x04) or an intermediate notification (0x20) is the SMSC's to send: refused, to a code too.
"""

from __future__ import annotations

import pytest

from gateway.acknowledgements import ANSWERED_WITHIN
from gateway.clock import SimulatedClock
from gateway.store.records import MessageStatus, SpamReport
from tests.e2e.test_amend import multi_resp, submit_multi
from tests.polling import eventually
from tests.services_support import at
from tests.smpp_handset import (
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RTHROTTLED,
    RawLink,
    answer,
    cancel_sm,
    is_receipt,
    receipt_fields,
    replace_sm,
    text,
    texts_from,
)

A, B = "8613800000001", "8613800000002"
ESME_RINVESMCLASS = 0x43
OPERATOR, SPAM_CODE, ECHO, SINA, TENCENT = "10086", "10086999", "10086000", "1066916", "1066888"
RECEIPT, SME_DELIVERY_ACK, MANUAL_USER_ACK, INTERMEDIATE_NOTIFICATION = 0x04, 0x08, 0x10, 0x20  # esm_class message types
ACKNOWLEDGEMENTS = pytest.mark.parametrize("esm_class", [SME_DELIVERY_ACK, MANUAL_USER_ACK], ids=["sme_ack", "user_ack"])
BOTH_ASKED = 0x0C  # registered_delivery bits 3-2: an SME delivery (0x04) and a manual/user (0x08) acknowledgement asked


@pytest.fixture
def gw(make_gateway):
    return make_gateway(clock=SimulatedClock(at(2026, 11, 10)))


@pytest.fixture
def phone(gw, handset):
    return handset(A, gw=gw, address_range=A)


def acknowledge(phone, code: str, words: str, esm_class: int, sp=None):
    """An acknowledgement to `code` that asks for its receipt: the receipt says it was taken, and comes after what its
    handling sent (a reply to it would come before). To an SP's code, once `sp`'s bind took it: what it got."""
    assert phone.submit(code, words, esm_class=esm_class, registered_delivery=1).status == ESME_ROK
    got = None if sp is None else sp.expect(predicate=lambda p: p.source_addr == phone.number.encode())
    assert receipt_fields(phone.expect(predicate=is_receipt))["stat"] == "DELIVRD"
    return got


def ask(phone, to: str, words: str, source: str | None = None) -> str:
    """A plain text to `to`: the next whole text from `source` (default: `to`). An acknowledgement sent before it
    and answered would be answered first."""
    assert phone.submit(to, words).status == ESME_ROK
    return texts_from(phone, source or to)[0]


def subscribe(phone, keyword: str = "TT", service: str = "头条新闻") -> None:
    """To one of the SP's services (default its news), as a subscriber does: its keyword to its code, then Y to 10086."""
    assert service in ask(phone, SINA, keyword, source=OPERATOR)
    assert ask(phone, OPERATOR, "Y").startswith("您已定制")


def content(sp, phone, count: int = 1, asked: int = BOTH_ASKED, code: str = SINA) -> list[bytes]:
    """The ids of `count` texts of the SP from its `code` to the subscriber (who must subscribe first) asking for
    acknowledgements (`asked`: registered_delivery), each received by the handset."""
    ids = []
    for n in range(count):
        words = f"今日头条 {n}"
        resp = sp.submit(phone.number, words, source_addr=code, registered_delivery=asked)
        assert resp.status == ESME_ROK
        got = phone.expect(predicate=lambda p, words=words: p.source_addr == code.encode() and text(p) == words)
        assert got.registered_delivery & 0x0C == asked & 0x0C  # the request passed on
        ids.append(resp.message_id)
    return ids


def from_a(pdu) -> bool:
    """What the SP's bind gets from subscriber A (notices, acknowledgements), not a receipt of its own content."""
    return pdu.source_addr == A.encode() and not is_receipt(pdu)


def asking_acknowledgements(gw, handset, phone, count: int, bind: str = "trx"):
    """The SP's bind (`bind`), once the subscriber subscribed and got `count` of its texts asking for both
    acknowledgements. On a bind that takes the SP's notices, the subscriber's ORDER is taken."""
    sina = handset(SINA, system_id="sina", bind=bind, gw=gw)
    subscribe(phone)
    if bind != "tx":
        assert text(sina.expect(predicate=lambda p: p.source_addr == phone.number.encode())).startswith("event=ORDER ")
    content(sina, phone, count)
    return sina


def nothing_else_from(phone, code: str) -> None:
    """No other text from `code` came before the last one taken (every MT to the subscriber comes on its bind, in the
    order made: an answer to an acknowledgement, made before, came before)."""
    assert [p for p in phone.inbox if p.source_addr == code.encode() and not is_receipt(p)] == []


@ACKNOWLEDGEMENTS
def test_an_acknowledgement_to_10086_is_no_command(phone, esm_class):
    """`EN` would switch the subscriber to English, `0000` list their subscriptions; `0` gets the help text."""
    acknowledge(phone, OPERATOR, "EN", esm_class)
    acknowledge(phone, OPERATOR, "0000", esm_class)
    assert ask(phone, OPERATOR, "0").startswith("中国移动10086：")  # still Chinese, and the first answer since
    nothing_else_from(phone, OPERATOR)


@ACKNOWLEDGEMENTS
def test_an_acknowledgement_to_the_spam_code_files_no_report(gw, phone, esm_class):
    acknowledge(phone, SPAM_CODE, "13700000001*恭喜您中奖了", esm_class)
    assert ask(phone, SPAM_CODE, "0").startswith("垃圾短信举报：")  # its usage, not "您的举报已受理"
    nothing_else_from(phone, SPAM_CODE)
    assert gw.call(gw.gateway.store.find(SpamReport, reporter=A)) == []


@ACKNOWLEDGEMENTS
def test_an_acknowledgement_to_a_handler_is_not_echoed(phone, esm_class):
    acknowledge(phone, ECHO, "ack", esm_class)
    assert ask(phone, ECHO, "hello") == "hello"
    nothing_else_from(phone, ECHO)


@ACKNOWLEDGEMENTS
def test_an_acknowledgement_to_an_sp_service_code_orders_nothing_and_is_not_answered(gw, handset, phone, esm_class):
    """Empty, as handsets send them: it got the "instruction not recognised" reply; reading `TT` it would have been
    an order of the SP's news (10086 asking to confirm it). (Subscribed to its weather: the SP's content asks.)"""
    sina = handset(SINA, system_id="sina", gw=gw)
    subscribe(phone, "TQ", "天气预报")
    assert text(sina.expect(predicate=lambda p: p.source_addr == A.encode())).startswith("event=ORDER ")
    content(sina, phone, 2)
    assert text(acknowledge(phone, SINA, "", esm_class, sp=sina)) == ""
    assert text(acknowledge(phone, SINA, "TT", esm_class, sp=sina)) == "TT"  # the SP's to read, no order
    assert "头条新闻" in ask(phone, SINA, "TT", source=OPERATOR)  # the first confirmation asked for since: the news's
    assert ask(phone, SINA, "hello").startswith(f"您发送到{SINA}的指令无法识别")
    nothing_else_from(phone, OPERATOR)
    nothing_else_from(phone, SINA)


@ACKNOWLEDGEMENTS
def test_a_handsets_acknowledgement_of_an_sps_content_reaches_the_sp_as_one(gw, handset, phone, esm_class):
    """The SP asks for it (registered_delivery bits 3-2, passed on to the handset); the handset sends it back to the
    service code. It reached the code's handler, never the SP, and earned the subscriber 2 SMS of junk."""
    sina = asking_acknowledgements(gw, handset, phone, 1)
    ack = acknowledge(phone, SINA, "已阅", esm_class, sp=sina)  # its receipt: DELIVRD once the SP took it
    assert (ack.destination_addr.decode(), ack.esm_class, text(ack)) == (SINA, esm_class, "已阅")
    assert ask(phone, SINA, "hello").startswith(f"您发送到{SINA}的指令无法识别")  # the next text to the code: answered
    nothing_else_from(phone, SINA)


@ACKNOWLEDGEMENTS
def test_an_acknowledgement_answering_no_content_of_the_sp_asking_for_one_is_refused(gw, handset, phone, esm_class):
    """From a handset the SP never sent anything, any text marked an acknowledgement reached the SP as the subscriber's,
    queued ahead of its later notices. Refused, as after the SP's content that asked for none (its receipt only): the
    SP gets nothing of them, and the code's handler does not take them for the subscriber's text."""
    sina = handset(SINA, system_id="sina", gw=gw)
    assert phone.submit(SINA, "BUY CHEAP WATCHES www.x.cn", esm_class=esm_class).status == ESME_RINVESMCLASS
    subscribe(phone)
    content(sina, phone, asked=0x01)
    assert phone.submit(SINA, "TD", esm_class=esm_class).status == ESME_RINVESMCLASS
    assert ask(phone, SINA, "hello").startswith(f"您发送到{SINA}的指令无法识别")  # the first answer from the code since
    nothing_else_from(phone, SINA)
    content(sina, phone)  # one asking: its acknowledgement is the next the SP gets from the subscriber after the ORDER
    assert phone.submit(SINA, "已阅", esm_class=esm_class).status == ESME_ROK
    assert [text(p) for p in sina.expect_many(2, predicate=from_a)][1] == "已阅"


@ACKNOWLEDGEMENTS
def test_one_acknowledgement_of_each_kind_asked_answers_a_content(gw, handset, phone, esm_class):
    """SMPP's acknowledgements answer one message each: a second of one kind for it is refused, even sent in one write
    with the first (not stored yet then); the other kind, asked for too, is taken once."""
    sina = asking_acknowledgements(gw, handset, phone, 1)
    other_kind = SME_DELIVERY_ACK + MANUAL_USER_ACK - esm_class
    acks = [phone.make("submit_sm", SINA, f"ack {n}", esm_class=esm_class) for n in range(2)]
    assert [phone.response(sequence).status for sequence in phone.send_together(*acks)] == [ESME_ROK, ESME_RINVESMCLASS]
    assert phone.submit(SINA, "other", esm_class=other_kind).status == ESME_ROK
    assert phone.submit(SINA, "again", esm_class=other_kind).status == ESME_RINVESMCLASS
    got = sina.expect_many(2, predicate=from_a)
    assert [(p.esm_class, text(p)) for p in got] == [(esm_class, "ack 0"), (other_kind, "other")]


def test_an_acknowledgement_in_a_submit_multi_or_a_data_sm_answers_content_as_a_submit_sms_does(gw, handset, phone):
    sina = asking_acknowledgements(gw, handset, phone, 1)
    assert phone.data_sm(SINA, "", esm_class=MANUAL_USER_ACK).status == ESME_ROK
    assert phone.data_sm(SINA, "", esm_class=MANUAL_USER_ACK).status == ESME_RINVESMCLASS
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(submit_multi(2, A, [SINA], b"ack", esm_class=SME_DELIVERY_ACK))
        assert answer(esme, 2)[0] == ESME_ROK
        esme.send(submit_multi(3, A, [SINA], b"ack again", esm_class=SME_DELIVERY_ACK))
        status, body = answer(esme, 3)
        assert (status, multi_resp(body)[1]) == (ESME_RINVESMCLASS, [(SINA, ESME_RINVESMCLASS)])
    assert [(p.esm_class, text(p)) for p in sina.expect_many(2, predicate=from_a)] == [(MANUAL_USER_ACK, ""), (SME_DELIVERY_ACK, "ack")]


def test_an_acknowledgement_of_a_kind_not_asked_for_is_refused(gw, handset, phone):
    sina = handset(SINA, system_id="sina", gw=gw)
    subscribe(phone)
    content(sina, phone, asked=0x04)  # an SME delivery acknowledgement only
    assert phone.submit(SINA, "read", esm_class=MANUAL_USER_ACK).status == ESME_RINVESMCLASS
    assert phone.submit(SINA, "got", esm_class=SME_DELIVERY_ACK).status == ESME_ROK


def test_content_and_its_acknowledgements_are_known_after_a_restart(make_gateway, handset, tmp_path):
    """Read from the store: content delivered before a restart is acknowledged after it, once per kind."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db, clock=SimulatedClock(at(2026, 11, 10)))
    phone = handset(A, gw=first, address_range=A)
    asking_acknowledgements(first, handset, phone, 1, bind="tx")
    assert phone.submit(SINA, "got", esm_class=SME_DELIVERY_ACK).status == ESME_ROK
    first.stop()
    second = make_gateway(db_path=db, clock=SimulatedClock(at(2026, 11, 10, 11)))
    phone = handset(A, gw=second, address_range=A)
    assert phone.submit(SINA, "got again", esm_class=SME_DELIVERY_ACK).status == ESME_RINVESMCLASS
    assert phone.submit(SINA, "read", esm_class=MANUAL_USER_ACK).status == ESME_ROK
    sina = handset(SINA, system_id="sina", bind="rx", gw=second)
    assert [text(p) for p in sina.expect_many(3, predicate=from_a)][1:] == ["got", "read"]  # after the ORDER


def test_content_delivered_over_a_day_before_is_acknowledged_no_more(make_gateway, handset):
    clock = SimulatedClock(at(2026, 11, 10))
    gw = make_gateway(clock=clock)
    phone = handset(A, gw=gw, address_range=A)
    (sent,) = content(asking_acknowledgements(gw, handset, phone, 0), phone)
    assert eventually(lambda: gw.call(gw.gateway.store.get(sent.decode())).status is MessageStatus.DELIVERED)
    clock.advance(ANSWERED_WITHIN - 60)
    assert phone.submit(SINA, "got", esm_class=SME_DELIVERY_ACK).status == ESME_ROK  # nearly a day after: still
    clock.advance(120)
    assert phone.submit(SINA, "read", esm_class=MANUAL_USER_ACK).status == ESME_RINVESMCLASS


def test_an_acknowledgement_waits_for_the_sp_to_bind(gw, handset, phone):
    """As the SP's notices do: stored, and delivered to its bind once there is one (its receipt then)."""
    asking_acknowledgements(gw, handset, phone, 1, bind="tx").close()  # (a transmitter takes no notice)
    assert phone.submit(SINA, "", esm_class=SME_DELIVERY_ACK, registered_delivery=1).status == ESME_ROK
    assert phone.submit(ECHO, "after it").status == ESME_ROK
    assert texts_from(phone, ECHO) == ["after it"]
    nothing_else_from(phone, SINA)  # no reply to it meanwhile
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    order, ack = sina_rx.expect_many(2, predicate=lambda p: p.source_addr == A.encode())
    assert text(order).startswith("event=ORDER ")  # made before it
    assert (ack.esm_class, text(ack)) == (SME_DELIVERY_ACK, "")
    assert receipt_fields(phone.expect(predicate=is_receipt))["stat"] == "DELIVRD"


def acknowledgements_together(phone, count: int) -> list[int]:
    """The statuses of `count` acknowledgements to the SP's code sent in one write, as a pipelining handset does (each
    asks for its receipt: DELIVRD once the SP took it)."""
    acks = [phone.make("submit_sm", SINA, f"ack {n}", esm_class=SME_DELIVERY_ACK, registered_delivery=1) for n in range(count)]
    return [phone.response(sequence).status for sequence in phone.send_together(*acks)]


def acknowledgements_reaching(sp, count: int) -> list[str]:
    """The texts of the next `count` acknowledgements from subscriber A the SP's bind gets, in arrival order."""
    pdus = sp.expect_many(count, predicate=lambda p: p.source_addr == A.encode() and p.esm_class == SME_DELIVERY_ACK)
    return [text(p) for p in pdus]


def test_acknowledgements_waiting_for_an_sp_are_bounded_per_subscriber(make_gateway, handset):
    """Counted against no queue, 2,000 pipelined from one handset were accepted in 0.2 s (max_queued_per_subscriber
    5), stored for an SP off line. As many as max_queued_per_subscriber wait per sending subscriber; beyond, the
    handset is told ESME_RMSGQFUL, as a sender to a full queue is. Another subscriber's are not concerned, and those
    the SP took leave room."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 3})
    phone = handset(A, gw=gw, address_range=A)
    sina_tx = asking_acknowledgements(gw, handset, phone, 6, bind="tx")
    assert acknowledgements_together(phone, 5) == [ESME_ROK] * 3 + [ESME_RMSGQFUL] * 2
    other = handset(B, gw=gw, address_range=B)
    subscribe(other)
    content(sina_tx, other)
    assert other.submit(SINA, "", esm_class=MANUAL_USER_ACK).status == ESME_ROK
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert acknowledgements_reaching(sina_rx, 3) == ["ack 0", "ack 1", "ack 2"]
    assert [receipt_fields(phone.expect(predicate=is_receipt))["stat"] for _ in range(3)] == ["DELIVRD"] * 3
    assert acknowledgements_together(phone, 1) == [ESME_ROK]  # those the SP took wait no longer


def test_acknowledgements_waiting_for_an_sp_count_after_a_restart(make_gateway, handset, tmp_path):
    """As the MTs waiting for a subscriber do (counted from the store at start); they are not lost."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db, clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 3})
    phone = handset(A, gw=first, address_range=A)
    asking_acknowledgements(first, handset, phone, 4, bind="tx")
    assert acknowledgements_together(phone, 3) == [ESME_ROK] * 3
    first.stop()
    second = make_gateway(db_path=db, clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 3})
    assert acknowledgements_together(handset(A, gw=second, address_range=A), 1) == [ESME_RMSGQFUL]
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=second)
    assert acknowledgements_reaching(sina_rx, 3) == ["ack 0", "ack 1", "ack 2"]


def test_a_subscribers_notices_follow_their_acknowledgements_to_the_sp_not_refused(make_gateway, handset):
    """A handset's acknowledgements queue with its SP notices (one line, one at a time): the ORDER made after the
    most that may wait comes next to the SP, not behind thousands; the limit is on acknowledgements, not notices."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 2})
    phone = handset(A, gw=gw, address_range=A)
    asking_acknowledgements(gw, handset, phone, 3, bind="tx")  # (its ORDER of the news waits too, made before)
    assert acknowledgements_together(phone, 3) == [ESME_ROK, ESME_ROK, ESME_RMSGQFUL]
    subscribe(phone, "TQ", "天气预报")
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    notices = [text(p) for p in sina_rx.expect_many(4, predicate=lambda p: p.source_addr == A.encode())]
    assert notices[1:3] == ["ack 0", "ack 1"]
    assert notices[0].startswith("event=ORDER ") and notices[3].startswith("event=ORDER ")


def test_a_replace_sm_of_an_acknowledgement_leaves_it_waiting_and_counted_not_scheduled(make_gateway, handset):
    """Its submit_sm's schedule_delivery_time is ignored, and so is a replace_sm's: scheduled, an acknowledgement counted
    against no limit (a handset replaced each accepted one with a schedule a day on and sent more, round after round,
    all of them coming to the SP together once due)."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 2})
    phone = handset(A, gw=gw, address_range=A)
    asking_acknowledgements(gw, handset, phone, 3, bind="tx")
    acks = [phone.make("submit_sm", SINA, f"ack {n}", esm_class=SME_DELIVERY_ACK) for n in range(2)]
    ids = [phone.response(sequence).message_id.decode() for sequence in phone.send_together(*acks)]
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        for n, message_id in enumerate(ids):
            esme.send(replace_sm(n + 2, A, message_id, f"later {n}".encode(), schedule="000001000000000R"))
            assert answer(esme, n + 2)[0] == ESME_ROK
    assert acknowledgements_together(phone, 1) == [ESME_RMSGQFUL]  # both still wait, counted
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert acknowledgements_reaching(sina_rx, 2) == ["later 0", "later 1"]  # at once, as replaced


@pytest.mark.parametrize("esm_class", [RECEIPT, INTERMEDIATE_NOTIFICATION], ids=["receipt", "intermediate"])
@pytest.mark.parametrize("code", [OPERATOR, SINA])
def test_a_report_only_the_smsc_sends_is_refused_to_a_short_code(phone, code, esm_class):
    assert phone.submit(code, "0", esm_class=esm_class).status == ESME_RINVESMCLASS
    assert ask(phone, OPERATOR, "0").startswith("中国移动10086：")
    nothing_else_from(phone, code)


@pytest.mark.parametrize("by_id", [True, False], ids=["by_message_id", "by_addresses"])
def test_an_acknowledgement_cancelled_before_the_sp_took_it_answers_nothing_and_frees_its_content(gw, handset, phone, by_id):
    """A handset's cancel_sm of its own acknowledgement still waiting for the SP left the content counted as
    acknowledged: the acknowledgement it sent instead was refused ESME_RINVESMCLASS, and the SP got neither. One by
    addresses (no message_id: SMPP 3.4 4.9, every undelivered message from source_addr to destination_addr) found no
    acknowledgement, ESME_RCANCELFAIL."""
    asking_acknowledgements(gw, handset, phone, 1, bind="tx").close()
    cancelled = phone.submit(SINA, "oops", esm_class=SME_DELIVERY_ACK).message_id.decode()
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(cancel_sm(2, A, cancelled) if by_id else cancel_sm(2, A, dest=SINA))
        assert answer(esme, 2) == (ESME_ROK, b"")
    assert phone.submit(SINA, "read", esm_class=SME_DELIVERY_ACK).status == ESME_ROK
    assert phone.submit(SINA, "again", esm_class=SME_DELIVERY_ACK).status == ESME_RINVESMCLASS  # answered now
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert acknowledgements_reaching(sina_rx, 1) == ["read"]


def test_acknowledgements_answering_nothing_are_throttled_as_any_submission(make_gateway, handset):
    """The content check came before the account's throughput: 2,000 acknowledgements answering nothing, pipelined,
    were each refused ESME_RINVESMCLASS within 0.46 s, none ESME_RTHROTTLED, each a read of the store on the loop. A
    client over its throughput is told ESME_RTHROTTLED whatever it sends; what it is charged (3 a second) is read."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), accounts=[{"system_id": "handset", "throughput": 3}])
    phone = handset(A, gw=gw, address_range=A)
    acks = [phone.make("submit_sm", SINA, f"ack {n}", esm_class=SME_DELIVERY_ACK) for n in range(20)]
    statuses = [phone.response(sequence).status for sequence in phone.send_together(*acks)]
    assert statuses[:3] == [ESME_RINVESMCLASS] * 3  # the account's burst: checked, and answering nothing
    assert statuses[3:].count(ESME_RTHROTTLED) >= 14, statuses  # (one more may be charged as the bucket fills)


def test_a_submit_multi_of_acknowledgements_to_several_sps_is_bounded_as_one_at_a_time(make_gateway, handset):
    """Each destination was checked against the acknowledgements waiting before any was counted: one submit_multi to
    every SP's code put one more per extra code over max_queued_per_subscriber."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 2})
    phone = handset(A, gw=gw, address_range=A)
    asking_acknowledgements(gw, handset, phone, 1, bind="tx")
    assert "精品图铃" in ask(phone, TENCENT, "TL", source=OPERATOR)
    assert ask(phone, OPERATOR, "Y").startswith("您已定制")
    content(handset(TENCENT, system_id="tencent", bind="tx", gw=gw), phone, code=TENCENT)
    assert phone.submit(SINA, "read", esm_class=MANUAL_USER_ACK).status == ESME_ROK  # one waits: room for one more
    with RawLink(gw.smpp_port) as esme:
        esme.bind("handset", command="bind_transmitter")
        esme.send(submit_multi(2, A, [SINA, TENCENT], b"ack", esm_class=SME_DELIVERY_ACK))
        status, body = answer(esme, 2)
    assert (status, multi_resp(body)[1]) == (ESME_ROK, [(TENCENT, ESME_RMSGQFUL)])
