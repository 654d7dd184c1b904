"""Numbers, keywords and texts are configurable (SPEC section 3): a gateway configured with other
keywords answers them, no longer the defaults, and its replies name the configured ones."""

from __future__ import annotations

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import Subscription, Survey
from tests.services_support import at
from tests.smpp_handset import ESME_ROK, texts_from

A = "8613800000001"
OPERATOR, RATING, SINA = "10086", "10086700", "1066916"
KEYWORDS = {
    "query_keyword": "CX", "unsubscribe_all_keyword": "TDQB", "help_words": ["BZ"], "english_words": ["YW"],
    "chinese_words": ["ZW"], "confirm_words": ["QR"], "decline_words": ["BQR"], "rating_words": {"HAO": 1, "CHA": 5},
}  # fmt: skip


@pytest.fixture
def gw(make_gateway):
    return make_gateway(clock=SimulatedClock(at(2026, 11, 10)), services=KEYWORDS)


def ask(phone, message: str, to: str = OPERATOR, source: str = OPERATOR) -> str:
    assert phone.submit(to, message).status == ESME_ROK
    return texts_from(phone, source)[0]


def test_the_configured_keywords_are_answered_and_named(gw, handset) -> None:
    phone = handset(A, gw=gw, address_range=A)
    help_text = ask(phone, "BZ")
    assert "发送CX查询并退订" in help_text and "发送YW切换为英文短信" in help_text
    assert ask(phone, "0000") == help_text  # the default keyword is nothing special here
    request = ask(phone, "TT", to=SINA)
    assert "确认定制请回复“QR”" in request
    assert "您已定制试用新浪的头条新闻业务" in ask(phone, "QR")
    assert ask(phone, "Y") == help_text  # "Y" confirms nothing here
    listing = ask(phone, "CX")
    assert "1.新浪提供的头条新闻" in listing and "回复TDQB退订全部" in listing
    assert "回复“QR”，回复“BQR”则不退订" in ask(phone, "TDQB")
    assert ask(phone, "YW") == "Your messages will now be in English."
    assert ask(phone, "ZW") == "已为您切换为中文短信。"
    [subscription] = gw.call(gw.gateway.store.find(Subscription, msisdn=A))
    assert subscription.status == "active"


def test_configured_rating_words_rate(gw, handset) -> None:
    phone = handset(A, gw=gw, address_range=A)
    gw.call(gw.gateway.services.request_survey(A, "hotline"))
    texts_from(phone, RATING)
    assert ask(phone, "HAO", to=RATING, source=RATING).startswith("感谢您的评价")
    [survey] = gw.call(gw.gateway.store.find(Survey, msisdn=A))
    assert survey.rating == 1
