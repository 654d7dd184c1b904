"""Numbers, keywords and texts are configurable (SPEC section 3): a gateway configured with other
keywords answers them, no longer the defaults, and its replies name the configured ones."""

from __future__ import annotations

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import SpamReport, Subscription, Survey
from tests.services_support import at
from tests.smpp_handset import ESME_ROK, texts_from

A = "8613800000001"
OPERATOR, RATING, SINA, SPAM_REPORT = "10086", "10086700", "1066916", "10086999"
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


@pytest.mark.parametrize(("language", "hotline", "call", "example"), [
    ("zh", "感谢您使用中国移动150热线服务。", "如有疑问请拨打150。", "例如7912345678*短信内容"),
    ("en", "thank you for using China Mobile 150 hotline service.", "please call 150.", "e.g. 7912345678*text"),
], ids=["zh", "en"])  # fmt: skip
def test_the_built_in_texts_name_the_configured_operator_and_a_number_of_the_configured_plan(
    make_gateway, handset, language, hotline, call, example
) -> None:
    """The survey and a closed survey named 10086 and the spam-report texts the example 13912345678 whatever the
    config: under operator 150 and country code 44 a subscriber was told to call a number the network does not have
    and to report spam as a number it refuses ("not a valid mobile number")."""
    uk = {"country_code": "44", "national_number_length": 10, "mobile_prefixes": ["7"]}
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)), gateway=uk, services={"operator": "150", "language": language},
                      accounts=[{"system_id": name, "numbers": [prefix]} for name, prefix in
                                (("handset", "4477"), ("handset2", "4478"), ("carrier", "4479"))])  # fmt: skip
    uk_phone = "447700900001"
    phone = handset(uk_phone, gw=gw, system_id="handset", address_range=uk_phone)
    gw.call(gw.gateway.services.request_survey(uk_phone, "hotline"))
    assert hotline in texts_from(phone, RATING)[0]
    ask(phone, "?", to=RATING, source=RATING)  # not a rating: asked again
    assert call in ask(phone, "?", to=RATING, source=RATING)
    assert example in ask(phone, "HELP", to=SPAM_REPORT, source=SPAM_REPORT)
    assert example in ask(phone, "12345*spam", to=SPAM_REPORT, source=SPAM_REPORT)  # not a number: the example again
    number = example.split("*")[0][-10:]
    assert number in ask(phone, f"{number}*spam", to=SPAM_REPORT, source=SPAM_REPORT)  # the example is taken: reported
    assert gw.call(gw.gateway.store.find(SpamReport, reported="44" + number))


def test_the_built_in_texts_under_the_built_in_config_are_worded_as_before(make_gateway, handset) -> None:
    """{operator} and {example_number} render the numbers the texts wrote before under config/default.toml."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 10)))
    phone = handset(A, gw=gw, address_range=A)
    gw.call(gw.gateway.services.request_survey(A, "hotline"))
    assert "感谢您使用中国移动10086热线服务。" in texts_from(phone, RATING)[0]
    ask(phone, "?", to=RATING, source=RATING)
    assert ask(phone, "?", to=RATING, source=RATING).endswith("感谢您的支持，如有疑问请拨打10086。")
    assert ask(phone, "帮助", to=SPAM_REPORT, source=SPAM_REPORT) == (
        "垃圾短信举报：请将垃圾短信内容连同发送号码按“号码*短信内容”的格式发送到10086999，例如13912345678*短信内容；"
        "也可直接转发垃圾短信，再按提示回复发送号码。"
    )
