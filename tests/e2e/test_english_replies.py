"""English replies name only the confirm, decline and language words GSM 03.38 can carry, so they go out as GSM
7-bit: before, every English confirmation, "which one" list, 00000 question and help text named 是, 否 or 中文 and
went out as UCS2, in 1.5-2.5 times the SMS parts, telling English speakers to reply "是". Every configured word is
still accepted, and Chinese replies still name them all. Smpplib handsets over TCP against a real gateway."""

from __future__ import annotations

import re

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import SpamReport, Subscription
from tests.services_support import at
from tests.smpp_handset import ESME_ROK, reassemble, split_udh, text, texts_from

A, B = "8613800000001", "8613900000002"
OPERATOR, SINA, SPAM_REPORT = "10086", "1066916", "10086999"
GSM, UCS2 = 0, 8
CJK = re.compile(r"[\u2e80-\u9fff\uff00-\uffef]")


@pytest.fixture
def gw(make_gateway):
    return make_gateway(clock=SimulatedClock(at(2026, 11, 5)))


def phone(handset, gw, number: str):
    return handset(number, gw=gw, address_range=number)


def ask(phone, message: str, to: str = OPERATOR) -> tuple[str, set[int]]:
    """Text `message` to `to`; the reply from 10086 and the data_coding its parts came in."""
    assert phone.submit(to, message).status == ESME_ROK
    first = phone.expect(5.0, lambda pdu: pdu.source_addr == OPERATOR.encode())
    concat, _ = split_udh(first)
    if concat is None:
        return text(first), {first.data_coding}
    parts = [first, *phone.expect_many(concat.total - 1, 5.0, lambda pdu: pdu.source_addr == OPERATOR.encode())]
    return reassemble(parts), {part.data_coding for part in parts}


def in_english(phone) -> None:
    assert ask(phone, "EN")[0] == "Your messages will now be in English."


def test_english_replies_name_only_gsm_words_and_go_as_gsm(gw, handset) -> None:
    a = phone(handset, gw, A)
    in_english(a)
    help_text, codings = ask(a, "HELP")
    assert codings == {GSM} and not CJK.search(help_text)
    assert "Text ZH for Chinese." in help_text
    request, codings = ask(a, "TT", SINA)
    assert codings == {GSM} and not CJK.search(request)
    assert "Reply Y, YES or 1 to confirm" in request
    assert "You have ordered a trial of" in ask(a, "是")[0]  # shown or not, every confirm word confirms
    question, codings = ask(a, "00000")
    assert codings == {GSM} and not CJK.search(question)
    assert "reply Y, YES or 1 within 2 h; reply N or NO to keep them." in question
    assert ask(a, "否")[0] == "Nothing was changed: your subscriptions are kept."
    assert [s.status for s in gw.call(gw.gateway.store.find(Subscription, msisdn=A))] == ["active"]


def test_english_which_one_list_names_only_gsm_decline_words(gw, handset) -> None:
    a = phone(handset, gw, A)
    in_english(a)
    ask(a, "TT", SINA)
    ask(a, "TQ", SINA)
    choose, codings = ask(a, "Y")
    assert codings == {GSM} and not CJK.search(choose)
    assert "; reply with the code of what you want to order (e.g. " in choose and "reply N or NO to order nothing." in choose


def test_chinese_replies_still_name_every_word(gw, handset) -> None:
    b = phone(handset, gw, B)
    help_text, codings = ask(b, "HELP")
    assert codings == {UCS2} and "发送EN切换为英文短信" in help_text
    request, codings = ask(b, "TT", SINA)
    assert codings == {UCS2} and "请回复“是”、“Y”、“YES”或“1”" in request
    assert "您已定制试用" in ask(b, "Y")[0]
    assert "回复“是”、“Y”、“YES”或“1”，回复“否”、“N”或“NO”则不退订" in ask(b, "00000")[0]


def test_a_word_list_without_a_gsm_word_is_shown_whole(make_gateway, handset) -> None:
    """An English text must still name a word to send: it names the configured ones, and goes out as UCS2."""
    gw = make_gateway(clock=SimulatedClock(at(2026, 11, 5)), services={"confirm_words": ["是", "确认"], "chinese_words": ["中文"]})
    a = phone(handset, gw, A)
    in_english(a)
    help_text, codings = ask(a, "HELP")
    assert codings == {UCS2} and "Text 中文 for Chinese." in help_text
    request, codings = ask(a, "TT", SINA)
    assert codings == {UCS2} and "Reply 是 or 确认 to confirm" in request


def test_an_english_reply_quoting_a_forwarded_text_goes_as_gsm(gw, handset) -> None:
    """The quote of the text still waiting for its sender's number is cut with "...": before, with "…", which
    GSM 03.38 cannot carry, the reply went out as UCS2 in 4 parts instead of 2."""
    a = phone(handset, gw, A)
    in_english(a)
    for forwarded in ("Win a free prize now, call us today", "what?"):
        assert a.submit(SPAM_REPORT, forwarded).status == ESME_ROK
    a.expect(5.0, lambda pdu: pdu.source_addr == SPAM_REPORT.encode())  # the question for the first one's number
    parts = a.expect_many(2, 5.0, lambda pdu: pdu.source_addr == SPAM_REPORT.encode())
    assert {part.data_coding for part in parts} == {GSM}
    assert '("Win a free priz...") still waits for its sender\'s number' in reassemble(parts)


def report(phone, message: str) -> str:
    """Text `message` to 10086999; its reply."""
    assert phone.submit(SPAM_REPORT, message).status == ESME_ROK
    return texts_from(phone, SPAM_REPORT, 1)[0]


def test_the_spammers_number_answered_with_an_english_label_completes_the_report(gw, handset) -> None:
    """`Number: 13700000001` or `Mobile number: 13700000001.` got "That is not a mobile number", where
    `号码：13700000001。` completed the report."""
    a = phone(handset, gw, A)
    in_english(a)
    assert "reply within 30 min with the mobile number that sent it" in report(a, "You have won a prize, call us")
    ack = report(a, "Mobile number: 13700000001.")
    assert ack.startswith("Your report has been accepted") and "13700000001 can no longer send you messages" in ack
    [stored] = gw.call(gw.gateway.store.find(SpamReport, reporter=A))
    assert (stored.reported, stored.text) == ("8613700000001", "You have won a prize, call us")


def test_english_spam_marking_words_with_stars_is_a_forwarded_text(gw, handset) -> None:
    """`WINNER*Claim…` got '"WINNER" is not a valid mobile number' and `*FREE*…` '"" is not…': the part before the
    first star was taken for a number however little it looked like one."""
    a = phone(handset, gw, A)
    in_english(a)
    for n, forwarded in enumerate(("WINNER*Claim your 1000 prize now at example.com", "*FREE* ringtones, text GO"), 1):
        assert report(a, forwarded).startswith("We received the text you forwarded.")
        assert report(a, f"1370000000{n}").startswith("Your report has been accepted")
        [stored] = gw.call(gw.gateway.store.find(SpamReport, reported=f"861370000000{n}"))
        assert stored.text == forwarded
    assert report(a, "1380013800O*WIN").startswith('Report not accepted: "1380013800O" is not a valid mobile number.')


def test_a_wrong_code_for_the_one_order_waiting_reads_as_english(gw, handset) -> None:
    """With one order waiting, a wrong code got "1 orders are waiting for your confirmation: …; Reply with the code
    of the one you want (e.g. Y1); reply N or NO to order none of them."."""
    a = phone(handset, gw, A)
    in_english(a)
    ask(a, "TT", SINA)
    listed, _ = ask(a, "Y7")
    assert listed == ("No order waiting for confirmation has the code Y7. Waiting for your confirmation: Y1 for Headline "
                      "News from Sina (30 yuan/month); reply with the code of what you want to order (e.g. Y1); reply N "
                      "or NO to order nothing.")


def test_what_follows_a_list_of_services_goes_on_in_lower_case(gw, handset) -> None:
    """The list's items end with "; ": "…(5 yuan/month); Text the keyword to 1066916…" read as a new sentence."""
    a = phone(handset, gw, A)
    in_english(a)
    assert a.submit(SINA, "TX").status == ESME_ROK
    [offered] = texts_from(a, SINA, 1)
    assert re.search(r"\(\d+ yuan/month\); text the keyword to 1066916, then confirm", offered), offered
