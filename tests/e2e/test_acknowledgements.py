"""SME acknowledgements sent to a short code (SMPP 3.4 5.2.12: esm_class message type 0x08, an SME delivery
acknowledgement, and 0x10, a manual/user acknowledgement): a report on a message the handset received, not a text.

An SP may ask for one (registered_delivery bits 3-2, passed on to the handset: 5.2.17); the handset sends it to the
SP's service code. The code's handler took it for the subscriber's text: the SP code answered the "instruction not
recognised" reply (2 SMS), 10086 its help text, and an acknowledgement reading `TT` would have started an order.
A delivery receipt (0x04) or an intermediate notification (0x20) is the SMSC's to send: refused, to a code too.
"""

from __future__ import annotations

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import SpamReport
from tests.services_support import at
from tests.smpp_handset import (
    ESME_RMSGQFUL,
    ESME_ROK,
    is_receipt,
    receipt_fields,
    text,
    texts_from,
)

A, B = "8613800000001", "8613800000002"
ESME_RINVESMCLASS = 0x43
OPERATOR, SPAM_CODE, ECHO, SINA = "10086", "10086999", "10086000", "1066916"
RECEIPT, SME_DELIVERY_ACK, MANUAL_USER_ACK, INTERMEDIATE_NOTIFICATION = 0x04, 0x08, 0x10, 0x20  # esm_class message types
ACKNOWLEDGEMENTS = pytest.mark.parametrize("esm_class", [SME_DELIVERY_ACK, MANUAL_USER_ACK], ids=["sme_ack", "user_ack"])


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


def subscribe(phone) -> None:
    """To the SP's news, as a subscriber does: TT to its code, then Y to 10086."""
    assert "头条新闻" in ask(phone, SINA, "TT", source=OPERATOR)
    assert ask(phone, OPERATOR, "Y").startswith("您已定制")


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
    an order of the SP's news (10086 asking to confirm it)."""
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert text(acknowledge(phone, SINA, "", esm_class, sp=sina_rx)) == ""
    assert text(acknowledge(phone, SINA, "TT", esm_class, sp=sina_rx)) == "TT"  # the SP's to read, no order
    assert "天气预报" in ask(phone, SINA, "TQ", source=OPERATOR)  # the first confirmation asked for: the weather's
    assert ask(phone, SINA, "hello").startswith(f"您发送到{SINA}的指令无法识别")
    nothing_else_from(phone, OPERATOR)
    nothing_else_from(phone, SINA)


@ACKNOWLEDGEMENTS
def test_a_handsets_acknowledgement_of_an_sps_content_reaches_the_sp_as_one(gw, handset, phone, esm_class):
    """The SP asks for it (registered_delivery bits 3-2, passed on to the handset); the handset sends it back to the
    service code. It reached the code's handler, never the SP, and earned the subscriber 2 SMS of junk."""
    sina = handset(SINA, system_id="sina", gw=gw)
    subscribe(phone)
    assert text(sina.expect(predicate=lambda p: p.source_addr == A.encode())).startswith("event=ORDER ")  # its notice
    assert sina.submit(A, "今日头条：…", source_addr=SINA, registered_delivery=0x0C).status == ESME_ROK
    content = phone.expect(predicate=lambda p: p.source_addr == SINA.encode())
    assert content.registered_delivery & 0x0C == 0x0C  # both acknowledgements asked for
    ack = acknowledge(phone, SINA, "已阅", esm_class, sp=sina)  # its receipt: DELIVRD once the SP took it
    assert (ack.destination_addr.decode(), ack.esm_class, text(ack)) == (SINA, esm_class, "已阅")
    assert ask(phone, SINA, "hello").startswith(f"您发送到{SINA}的指令无法识别")  # the next text to the code: answered
    nothing_else_from(phone, SINA)


def test_an_acknowledgement_waits_for_the_sp_to_bind(gw, handset, phone):
    """As the SP's notices do: stored, and delivered to its bind once there is one (its receipt then)."""
    assert phone.submit(SINA, "", esm_class=SME_DELIVERY_ACK, registered_delivery=1).status == ESME_ROK
    assert phone.submit(ECHO, "after it").status == ESME_ROK
    assert texts_from(phone, ECHO) == ["after it"]
    nothing_else_from(phone, SINA)  # no reply to it meanwhile
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    ack = sina_rx.expect(predicate=lambda p: p.source_addr == A.encode())
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
    gw = make_gateway(gateway={"max_queued_per_subscriber": 3})
    phone = handset(A, gw=gw, address_range=A)
    assert acknowledgements_together(phone, 5) == [ESME_ROK] * 3 + [ESME_RMSGQFUL] * 2
    assert handset(B, gw=gw, address_range=B).submit(SINA, "", esm_class=MANUAL_USER_ACK).status == ESME_ROK
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert acknowledgements_reaching(sina_rx, 3) == ["ack 0", "ack 1", "ack 2"]
    assert [receipt_fields(phone.expect(predicate=is_receipt))["stat"] for _ in range(3)] == ["DELIVRD"] * 3
    assert acknowledgements_together(phone, 1) == [ESME_ROK]  # those the SP took wait no longer


def test_acknowledgements_waiting_for_an_sp_count_after_a_restart(make_gateway, handset, tmp_path):
    """As the MTs waiting for a subscriber do (counted from the store at start); they are not lost."""
    db = tmp_path / "gw.db"
    first = make_gateway(db_path=db, gateway={"max_queued_per_subscriber": 3})
    assert acknowledgements_together(handset(A, gw=first, address_range=A), 3) == [ESME_ROK] * 3
    first.stop()
    second = make_gateway(db_path=db, gateway={"max_queued_per_subscriber": 3})
    assert acknowledgements_together(handset(A, gw=second, address_range=A), 1) == [ESME_RMSGQFUL]
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=second)
    assert acknowledgements_reaching(sina_rx, 3) == ["ack 0", "ack 1", "ack 2"]


def test_a_subscribers_notices_follow_their_acknowledgements_to_the_sp_not_refused(make_gateway, handset):
    """A handset's acknowledgements queue with its SP notices (one line, one at a time): the ORDER made after the
    most that may wait comes next to the SP, not behind thousands; the limit is on acknowledgements, not notices."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway={"max_queued_per_subscriber": 2})
    phone = handset(A, gw=gw, address_range=A)
    assert acknowledgements_together(phone, 3) == [ESME_ROK, ESME_ROK, ESME_RMSGQFUL]
    subscribe(phone)
    sina_rx = handset(SINA, system_id="sina", bind="rx", gw=gw)
    assert acknowledgements_reaching(sina_rx, 2) == ["ack 0", "ack 1"]
    assert text(sina_rx.expect(predicate=lambda p: p.source_addr == A.encode())).startswith("event=ORDER ")


@pytest.mark.parametrize("esm_class", [RECEIPT, INTERMEDIATE_NOTIFICATION], ids=["receipt", "intermediate"])
@pytest.mark.parametrize("code", [OPERATOR, SINA])
def test_a_report_only_the_smsc_sends_is_refused_to_a_short_code(phone, code, esm_class):
    assert phone.submit(code, "0", esm_class=esm_class).status == ESME_RINVESMCLASS
    assert ask(phone, OPERATOR, "0").startswith("中国移动10086：")
    nothing_else_from(phone, code)
