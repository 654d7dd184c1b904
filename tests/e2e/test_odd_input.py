"""Texts a subscriber should not send but can, end to end: every one gets a reply that makes sense, never the
apology a handler's failure brings (common.unavailable), and does not hold up other subscribers.

A real gateway over TCP, smpplib handsets; long texts go as one message_payload (as a phone's concatenated SMS
reach the handlers whole), in GSM 03.38 septets unpacked (data_coding 0) or UCS2.
"""

from __future__ import annotations

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import Subscription, Survey
from tests.e2e.test_service_branches import (
    HELP,
    OPERATOR,
    RATING,
    SINA,
    SINA_NEWS,
    SPAM_CODE,
    A,
    ask,
    stored,
    subscribe,
    zh,
)
from tests.services_support import at
from tests.smpp_handset import ESME_ROK, texts_from

ECHO = "10086000"
APOLOGY = "暂时无法处理"  # common.unavailable: a handler raised


@pytest.fixture
def gw(make_gateway):
    # A day of the month whose orders are free for the rest of it (subscribe's notice says 当月免信息费: from the 21st
    # on it says 下月底前免信息费, and these tests failed on the calendar's last days), and no reminder day.
    return make_gateway(clock=SimulatedClock(at(2026, 11, 10)), services={"survey_sample_rate": 0.0})


@pytest.fixture
def phone(gw, handset):
    return handset(A, gw=gw, address_range=A)


def ask_long(phone, to: str, body: str, count: int = 1, timeout: float = 30.0) -> list[str]:
    """`body` as one message_payload (GSM 03.38 if it can be, else UCS2); the next `count` whole texts from `to`."""
    try:
        payload, coding = body.encode("ascii"), 0
    except UnicodeEncodeError:
        payload, coding = body.encode("utf-16-be"), 8
    assert phone.submit(to, b"", message_payload=payload, data_coding=coding).status == ESME_ROK
    return texts_from(phone, to, count, timeout)


def test_a_run_of_digits_to_10086_gets_the_help_text(phone) -> None:
    """More than 4,300 digits could not be read as a serial (Python's limit on int()), the handler raised, and the
    subscriber got the apology after every retry."""
    assert ask_long(phone, OPERATOR, "1" * 5000) == [HELP]
    assert ask(phone, OPERATOR, "13800000002") == [HELP]  # a phone number is no serial either


def test_a_reply_naming_what_the_subscriber_sent_names_only_its_start(gw, phone) -> None:
    """The 'not a number' reply quoted all 20,000 digits before the star: 300 SMS, more than a text may have, so the MO failed with
    the apology; serials 1 to 4,000 after a listing of one: the valid 1 was lost with it."""
    [reply] = ask_long(phone, SPAM_CODE, "9" * 20000 + "*spam")
    assert reply == zh("spam.not_a_number", number="9" * 20 + "…", short_code=SPAM_CODE)
    subscribe(phone, "TT", SINA, SINA_NEWS)
    ask(phone, OPERATOR, "0000")
    replies = ask_long(phone, OPERATOR, ",".join(map(str, range(1, 4001))), count=2)
    assert replies[1] == zh("unsubscribe.out_of_range", serials=",".join(map(str, range(2, 12))) + "…", count=1)
    assert {s.status for s in stored(gw, Subscription, msisdn=A)} == {"cancelled"}


def test_texts_that_take_long_to_match_do_not_hold_up_the_gateway(phone, handset, gw) -> None:
    """A digit and thousands of spaces to 10086999, or a letter, tens of thousands of dots and a letter to 10086,
    were matched by patterns that backtracked: the event loop stood still for tens of seconds (every bind, the
    HTTP port). Here each must be answered within the handset's 5 s, and another subscriber's text too."""
    other = handset("8613800000002", gw=gw, address_range="8613800000002")
    for to, body in ((SPAM_CODE, "1" + " " * 5000 + "x"), (OPERATOR, "a" + "." * 60000 + "b"), (SINA, "a" + "." * 60000 + "b")):
        sent = phone.send(phone.make("submit_sm", to, b"", message_payload=body.encode("ascii"), data_coding=0))
        assert ask(other, ECHO, "still there?") == ["still there?"]
        assert phone.response(sequence=sent).status == ESME_ROK
        [reply] = texts_from(phone, to, 1)
        assert APOLOGY not in reply


def test_nothing_readable_is_taken_for_nothing(gw, phone) -> None:
    """A NUL, a zero-width space or undecodable octets (U+FFFD) were taken as content: stored as a survey's reason,
    which then refused the real one, or as a forwarded spam text waiting for its sender's number."""
    for invisible in ("\x00", "\u200b", "\ufffd"):
        assert ask(phone, SPAM_CODE, invisible) == [zh("spam.usage", short_code=SPAM_CODE)]
    gw.call(gw.gateway.services.request_survey(A, "hotline"))
    texts_from(phone, RATING, 1)
    assert ask(phone, RATING, "5") == [zh("rating.ask_reason")]
    assert ask(phone, RATING, "\u200b") == [zh("rating.ask_reason")]
    assert ask(phone, RATING, "排队太久") == [zh("rating.thanks_reason")]
    [survey] = stored(gw, Survey, msisdn=A)
    assert (survey.rating, survey.reason) == (5, "排队太久")


@pytest.mark.parametrize(("data_coding", "text", "encoding"),
                         [(0x18, "你好", "utf-16-be"), (0x19, "你好", "utf-16-be"), (0x0E, "안녕하세요", "euc_kr"),
                          (0x05, "こんにちは", "shift_jis"), (0x0A, "こんにちは", "iso2022_jp"),
                          (0x48, "你好", "utf-16-be"), (0x59, "你好", "utf-16-be"), (0x40, "@home £5", "gsm"),
                          (0x0F, "是，你好", "gbk")])  # fmt: skip
def test_the_services_read_every_alphabet_a_handset_may_send(phone, data_coding, text, encoding) -> None:
    """GSM 03.38's general coding group with a message class (0x18: UCS2, class 0), the same marked for automatic
    deletion (0x40-0x5F), SMPP's East Asian codings and CMPP's GB (0x0F, as China's gateways carry it into SMPP)
    were read as Latin-1: the echo sent back '\\x4f\\x60\\x59\\x7d' for 你好."""
    if encoding == "gsm":  # GSM 03.38, one character per octet: @ is 0x00, £ 0x01
        octets = text.replace("@", "\x00").replace("£", "\x01").encode("ascii")
    else:
        octets = text.encode(encoding)
    assert phone.submit(ECHO, octets, data_coding=data_coding).status == ESME_ROK
    [echoed] = texts_from(phone, ECHO, 1)
    assert echoed == text
