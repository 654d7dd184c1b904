"""10086700 satisfaction ratings end to end (SPEC 3.4): smpplib handsets over TCP against a real gateway."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.app import GatewayController
from gateway.clock import SimulatedClock
from gateway.store.records import Dialogue, Survey
from gateway.templates import Templates
from handlers import rating
from tests.e2e.test_mo_retry import Failing
from tests.polling import eventually
from tests.services_support import CHINA, at
from tests.smpp_handset import ESME_ROK, Handset, texts_from

A = "8613800000001"
B = "8613900000002"
C = "8613700000003"
RATING = "10086700"
OPERATOR = "10086"
TEMPLATES = Templates.load(Path(__file__).resolve().parents[2] / "config", "zh")


def zh(key: str, **values) -> str:
    return TEMPLATES.render(f"rating.{key}", "zh", **values)


def from_code(code: str):
    return lambda pdu: pdu.source_addr == code.encode()


def receive(handset: Handset, code: str) -> str:
    """The next text from `code`, reassembled when it comes in parts."""
    return texts_from(handset, code)[0]


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(at(2026, 11, 21))


@pytest.fixture
def gw(make_gateway, clock) -> GatewayController:
    return make_gateway(clock=clock)


def phone(handset, gw: GatewayController, number: str = A) -> Handset:
    return handset(number, gw=gw, address_range=number)


def send_survey(gw: GatewayController, handset: Handset, channel: str = "hotline", agent: str | None = None) -> str:
    """A service event through the Python API; returns the survey text the handset receives from 10086700."""
    gw.call(gw.gateway.services.request_survey(handset.number, channel, agent))
    return receive(handset, RATING)


def reply(handset: Handset, words: str) -> str:
    """Text 10086700; returns its answer."""
    assert handset.submit(RATING, words).status == ESME_ROK
    return receive(handset, RATING)


def surveys(gw: GatewayController, msisdn: str = A) -> list[Survey]:
    return gw.call(gw.gateway.store.find(Survey, msisdn=msisdn, order_by="created_at"))


def test_survey_is_sent_from_the_rating_code_and_rated_with_1(gw, handset) -> None:
    a = phone(handset, gw)
    survey = send_survey(gw, a, "store:BJ001", "1024")
    assert "营业厅服务（服务工号1024）" in survey and "24小时内回复有效" in survey
    assert [option in survey for option in ("1非常满意", "2满意", "3一般", "4不满意", "5非常不满意")] == [True] * 5
    [s] = surveys(gw)
    assert (s.channel, s.agent, s.status, s.expires_at - s.created_at) == ("store:BJ001", "1024", "sent", 86400)
    assert reply(a, "1") == zh("thanks")
    [s] = surveys(gw)
    assert (s.status, s.rating) == ("rated", 1) and s.created_at <= s.rated_at < s.expires_at


@pytest.mark.parametrize("form", ["13800000001", "+8613800000001"])
def test_a_survey_requested_for_another_form_of_the_number_reaches_the_subscriber(gw, handset, form) -> None:
    a = phone(handset, gw)
    gw.call(gw.gateway.services.request_survey(form, "hotline", "007"))
    assert "服务工号007" in receive(a, RATING)
    assert reply(a, "1") == zh("thanks")
    assert [(s.msisdn, s.status, s.rating) for s in surveys(gw)] == [(A, "rated", 1)]


def test_a_survey_for_what_is_no_subscriber_number_is_refused(gw) -> None:
    for junk in ("10086", "abc", "", "010-12345678", "85291234567"):
        with pytest.raises(ValueError, match="is not a subscriber number"):
            gw.call(gw.gateway.services.request_survey(junk, "hotline"))
    with pytest.raises(ValueError, match="expected None or a name"):
        gw.call(gw.gateway.services.request_survey(A, "hotline", " "))  # the survey read "（服务工号 ）"
    assert gw.call(gw.gateway.store.find(Survey)) == []


def test_a_survey_with_a_channel_or_agent_that_is_no_name_is_refused(gw) -> None:
    """None reached the store as an AttributeError; "" was sent as "thank you for using China Mobile's service"."""
    for channel, agent in (
        (None, None), ("", None), ("store 1", None), ("store:" + "1" * 59, None), ("hotline", 7), ("hotline", "0\n07"),
        ("hotline", "7" * 33),
    ):  # fmt: skip
        with pytest.raises(ValueError, match="channel|agent"):
            gw.call(gw.gateway.services.request_survey(A, channel, agent))
    assert gw.call(gw.gateway.store.find(Survey)) == []
    store = "store:" + "1" * 58
    gw.call(gw.gateway.services.request_survey(A, store, "7" * 32))  # the limits, 64 and 32 characters
    assert [(s.channel, s.agent) for s in gw.call(gw.gateway.store.find(Survey))] == [(store, "7" * 32)]


def test_an_agent_id_written_with_full_width_characters_or_spaces_is_one_agent(gw, handset) -> None:
    """`Ａ１`, ` A1` and `A1` were three agents in the aggregates (one agent's bonus figures split three ways), and the
    survey named the agent as written, spaces and all."""
    for i, agent in enumerate(["Ａ１", " A1", "A1\n"]):
        subscriber = phone(handset, gw, f"86138000071{i:02d}")
        assert "（服务工号A1）" in send_survey(gw, subscriber, agent=agent)
        reply(subscriber, "1")
    result = gw.call(rating.aggregates(gw.gateway.service_context, agent=" Ａ1 "))
    assert (list(result["by_agent"]), result["by_agent"]["A1"]["count"]) == (["A1"], 3)


@pytest.mark.parametrize("words, score, answer, status", [("非常满意", 1, "thanks", "rated"), ("５", 5, "ask_reason", "reason")])
def test_chinese_words_and_full_width_digits(gw, handset, words, score, answer, status) -> None:
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, words) == zh(answer)
    [s] = surveys(gw)
    assert (s.rating, s.status) == (score, status)


def test_dissatisfied_gives_a_reason(gw, handset) -> None:
    a = phone(handset, gw)
    send_survey(gw, a, "online")
    assert reply(a, "4") == zh("ask_reason")
    assert reply(a, "网页总是打不开，办理失败两次") == zh("thanks_reason")
    [s] = surveys(gw)
    assert (s.status, s.rating, s.reason) == ("rated", 4, "网页总是打不开，办理失败两次")


def test_invalid_reply_is_reprompted_once_then_the_survey_closes(gw, handset) -> None:
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, "还行吧") == zh("reprompt")
    assert surveys(gw)[0].reprompted
    assert reply(a, "10") == zh("invalid")
    [s] = surveys(gw)
    assert (s.status, s.rating) == ("invalid", None)


def test_late_rating_after_expiry(gw, handset, clock) -> None:
    a = phone(handset, gw)
    send_survey(gw, a)
    clock.advance(86400 + 60)
    assert reply(a, "1") == zh("late", validity="24小时")
    [s] = surveys(gw)
    assert (s.status, s.rating) == ("expired", None)


def test_a_rating_days_after_expiry_is_unsolicited_every_time(gw, handset, clock) -> None:
    a = phone(handset, gw)
    send_survey(gw, a)
    clock.advance(10 * 86400)
    assert reply(a, "1") == zh("unsolicited", code=RATING)
    assert reply(a, "1") == zh("unsolicited", code=RATING)
    [s] = surveys(gw)
    assert (s.status, s.rating) == ("expired", None)


def statuses(gw: GatewayController, *msisdns: str) -> dict[str, tuple]:
    """Each subscriber's latest survey: (status, rating, reason)."""
    return {m: (s.status, s.rating, s.reason) for m in msisdns for s in surveys(gw, m)[-1:]}


def closing_gateway(make_gateway, clock: SimulatedClock) -> GatewayController:
    """A gateway whose scheduled jobs (closing lapsed surveys among them) run every 0.2 s."""
    return make_gateway(clock=clock, gateway={"job_check_interval": 0.2})


def test_a_survey_nobody_answers_is_closed_by_the_gateway_and_nobody_is_told(make_gateway, handset, clock) -> None:
    """They stayed sent (or reason) in the store for ever: only the subscriber's next reply or survey rewrote them."""
    gw = closing_gateway(make_gateway, clock)
    a, b = phone(handset, gw), phone(handset, gw, B)
    send_survey(gw, a)
    send_survey(gw, b)
    assert reply(b, "4") == zh("ask_reason")  # and the reason never comes
    clock.advance(3600)
    c = phone(handset, gw, C)
    send_survey(gw, c)
    clock.advance(23 * 3600 + 1)  # A's and B's 24 h are over, C's are not
    assert eventually(lambda: statuses(gw, A, B, C) == {
        A: ("expired", None, ""), B: ("rated", 4, ""), C: ("sent", None, "")})  # fmt: skip
    for subscriber in (a, b, c):
        subscriber.expect_none(0.2, from_code(RATING))
    assert reply(c, "1") == zh("thanks")  # the one still open is answered as ever


def test_a_survey_that_lapsed_while_the_gateway_was_down_is_closed_at_start(make_gateway, handset, clock) -> None:
    gw = make_gateway(clock=clock)
    send_survey(gw, phone(handset, gw))
    gw.stop()
    clock.advance(25 * 3600)
    gw = make_gateway(clock=clock, db_path=gw.gateway.db_path)
    assert eventually(lambda: statuses(gw, A) == {A: ("expired", None, "")})


def test_a_late_rating_after_the_gateway_closed_the_survey_is_told_it_is_late(make_gateway, handset, clock) -> None:
    gw = closing_gateway(make_gateway, clock)
    a = phone(handset, gw)
    send_survey(gw, a)
    clock.advance(86400 + 60)
    assert eventually(lambda: statuses(gw, A) == {A: ("expired", None, "")})
    assert reply(a, "1") == zh("late", validity="24小时")
    assert reply(a, "2") == zh("late", validity="24小时")
    clock.advance(86400)  # past one more validity period
    assert reply(a, "1") == zh("unsolicited", code=RATING)
    assert statuses(gw, A) == {A: ("expired", None, "")}


def test_a_late_reason_after_the_gateway_closed_the_survey_is_told_so_and_the_rating_stands(make_gateway, handset, clock) -> None:
    gw = closing_gateway(make_gateway, clock)
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, "5") == zh("ask_reason")
    clock.advance(86400 + 60)
    assert eventually(lambda: statuses(gw, A) == {A: ("rated", 5, "")})
    assert reply(a, "排队太久，问题也没解决") == zh("reason_late", validity="24小时")
    # Every late reason, as every late rating is late (a survey the gateway closed is not told from one a reply did)
    assert reply(a, "态度也不好") == zh("reason_late", validity="24小时")
    clock.advance(86400)  # past one more validity period
    assert reply(a, "排队太久") == zh("unsolicited", code=RATING)
    assert statuses(gw, A) == {A: ("rated", 5, "")}


@pytest.mark.parametrize("rating, text, answer, stored", [
    ("", "2", "thanks", ("rated", 2, "")),
    ("4", "排队太久", "thanks_reason", ("rated", 4, "排队太久")),
])  # fmt: skip
def test_a_reply_received_in_time_and_handled_after_the_gateway_closed_the_survey_still_counts(
    make_gateway, handset, clock, rating, text, answer, stored
) -> None:
    """The reply's first try fails (injected once into 10086700's handler); the survey lapses and the gateway closes
    it before the retry: the retry answers it as it stood, as the reply was received within the validity."""
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 3600, "mo_retry_backoff": [2.0]})
    a = phone(handset, gw)
    send_survey(gw, a)
    if rating:
        assert reply(a, rating) == zh("ask_reason")
    code = gw.gateway.mo.short_codes[RATING]
    code.handler = failing = Failing(code.handler, times=1)
    clock.advance(86400 - 1)
    assert a.submit(RATING, text).status == ESME_ROK
    assert failing.called.wait(5)
    clock.advance(2)
    assert gw.call(gw.gateway.services.expire_surveys()) == 1
    assert failing.calls == 1, "the retry came before the survey was closed"
    assert receive(a, RATING) == zh(answer)
    assert statuses(gw, A) == {A: stored}


def test_a_second_rating_code_names_the_code_surveys_come_from(make_gateway, handset) -> None:
    """A [[short_codes]] rating code besides services.rating told subscribers that surveys came from it ("When you
    receive a satisfaction survey from 10012..."), while they come from 10086700."""
    a = phone(handset, make_gateway(short_codes=[{"code": "10012", "handler": "rating"}]))
    assert a.submit("10012", "1").status == ESME_ROK
    assert receive(a, "10012") == zh("unsolicited", code=RATING)


def test_unsolicited_rating(gw, handset) -> None:
    a = phone(handset, gw)
    assert reply(a, "1") == zh("unsolicited", code=RATING)
    assert surveys(gw) == []


def test_second_rating_is_refused(gw, handset) -> None:
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, "2") == zh("thanks")
    assert reply(a, "5") == zh("already_rated")
    [s] = surveys(gw)
    assert (s.status, s.rating) == ("rated", 2)


def test_aggregates_of_ratings_texted_by_two_subscribers(gw, handset) -> None:
    a, b = phone(handset, gw), phone(handset, gw, B)
    send_survey(gw, a, "hotline", "Q1")  # never answered: superseded by the next
    for who, channel, agent, words in [(a, "store:1", "S1", "1"), (b, "store:1", "S1", "不满意"), (a, "hotline", "H1", "3"),
                                       (b, "hotline", "H1", "满意"), (a, "hotline", "H2", "5 等太久")]:  # fmt: skip
        send_survey(gw, who, channel, agent)
        reply(who, words)
    result = gw.call(rating.aggregates(gw.gateway.service_context))
    dist = lambda *counts: dict(zip("12345", counts))  # noqa: E731
    assert result["overall"]["count"] == 5 and result["overall"]["mean"] == 3.0
    assert (result["surveys"], result["response_rate"]) == (6, 0.8333)
    assert result["by_channel"]["store:1"] == {"count": 2, "mean": 2.5, "satisfied": 1, "satisfied_share": 0.5,
                                               "distribution": dist(1, 0, 0, 1, 0), "surveys": 2, "response_rate": 1.0}  # fmt: skip
    assert result["by_channel"]["hotline"] == {"count": 3, "mean": 3.3333, "satisfied": 1, "satisfied_share": 0.3333,
                                               "distribution": dist(0, 1, 1, 0, 1), "surveys": 4, "response_rate": 0.75}  # fmt: skip
    assert {agent: (s["surveys"], s["count"], s["mean"]) for agent, s in result["by_agent"].items()} == {
        "S1": (2, 2, 2.5), "H1": (2, 2, 2.5), "H2": (1, 1, 5.0), "Q1": (1, 0, None)}


def test_aggregates_since_a_datetime_count_the_texted_ratings(gw, handset) -> None:
    """A supervisor's datetime was compared as text with the epoch seconds stored: zero surveys, silently."""
    a = phone(handset, gw)
    send_survey(gw, a, "hotline", "H1")
    reply(a, "2")
    ctx = gw.gateway.service_context
    result = gw.call(rating.aggregates(ctx, since=dt.datetime(2026, 11, 21, tzinfo=CHINA), until=dt.datetime(2026, 11, 22, tzinfo=CHINA)))
    assert (result["surveys"], result["overall"]["count"], result["by_agent"]["H1"]["mean"]) == (1, 1, 2.0)
    with pytest.raises(ValueError, match="^since "):
        gw.call(rating.aggregates(ctx, since="yesterday"))


def test_a_sampled_10086_dialogue_is_followed_by_a_survey(make_gateway, handset) -> None:
    gw = make_gateway(services={"survey_sample_rate": 1.0})
    a = phone(handset, gw)
    assert a.submit(OPERATOR, "帮助").status == ESME_ROK
    assert receive(a, OPERATOR) == TEMPLATES.render("common.help", "zh")
    survey = receive(a, RATING)
    assert "10086短信服务" in survey
    [s] = surveys(gw)
    assert (s.channel, s.agent, s.status) == ("sms:10086", "", "sent")
    assert reply(a, "1") == zh("thanks")


def restart_with_a_mark_left(make_gateway, handset, db: Path, others: int = 0, clock=None) -> GatewayController:
    """A's 10086 dialogue answered, its survey's commit refused (a kill -9 before it, as the gateway sees it: the mark
    that it is due stays), then a start on that store (on `clock`, if given); `others`: marks left for as many other
    subscribers first."""
    gw = make_gateway(db_path=db, services={"survey_sample_rate": 1.0})
    store = sqlite3.connect(db, isolation_level=None)
    store.execute("CREATE TRIGGER refuse BEFORE INSERT ON surveys BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    now = time.time()
    store.executemany("INSERT INTO dialogues VALUES (?, 'survey.sampled', '{\"short_code\": \"10086\"}', ?, ?)",
                      [(f"86139{n:08d}", now, now + 3600) for n in range(others)])  # fmt: skip
    a = phone(handset, gw)
    assert a.submit(OPERATOR, "帮助").status == ESME_ROK
    assert receive(a, OPERATOR) == TEMPLATES.render("common.help", "zh")
    a.expect_none(0.5, from_code(RATING))  # its commit refused
    a.close()
    gw.stop()
    store.execute("DROP TRIGGER refuse")
    store.close()
    return make_gateway(db_path=db, services={"survey_sample_rate": 1.0}, clock=clock)


def test_a_sampled_survey_whose_decision_a_stop_cut_short_is_sent_at_the_next_start(make_gateway, handset, tmp_path) -> None:
    """The dialogue's last MO was committed, then the survey (decided and committed after it) was not: a kill -9
    in between, here a commit that fails. Acknowledged and answered, the MO is not handled again (a client's
    retransmission gets the stored answer), and the survey was lost for good."""
    again = restart_with_a_mark_left(make_gateway, handset, tmp_path / "gw.db")
    a = phone(handset, again)
    assert "10086短信服务" in receive(a, RATING)
    assert [(s.channel, s.status) for s in surveys(again)] == [("sms:10086", "sent")]
    a.expect_none(0.3, from_code(RATING))  # once


def test_a_survey_mark_left_by_a_stop_sends_nothing_at_a_start_after_the_surveys_validity(make_gateway, handset, tmp_path) -> None:
    """A start a day and a minute after the dialogue (survey_validity, 24 h): the survey due then would have lapsed
    by now, so none goes out and the mark is removed; A was asked to rate a 10086 dialogue of the day before."""
    later = SimulatedClock(time.time() + 86400 + 60)
    again = restart_with_a_mark_left(make_gateway, handset, tmp_path / "gw.db", clock=later)
    a = phone(handset, again)
    assert eventually(lambda: not again.call(again.gateway.store.find(Dialogue, kind="survey.sampled")))
    assert surveys(again) == []
    a.expect_none(0.3, from_code(RATING))


def test_a_survey_mark_left_by_a_stop_does_not_survey_again_a_subscriber_whose_newer_dialogue_was_surveyed(make_gateway, handset, tmp_path) -> None:
    """The start read every mark left, then decided them one by one: by A's turn, A had finished a newer dialogue
    and rated its survey (its mark replaced, then removed), and the mark read at the start sent A a second survey.
    The marks of 1,000 others come first (one reading of the store each, and a commit)."""
    again = restart_with_a_mark_left(make_gateway, handset, tmp_path / "gw.db", others=1000)
    a = phone(handset, again)
    assert a.submit(OPERATOR, "帮助").status == ESME_ROK  # a newer dialogue, while the start decides the others
    receive(a, OPERATOR)
    receive(a, RATING)
    assert reply(a, "1") == zh("thanks")
    assert eventually(lambda: not again.call(again.gateway.store.find(Dialogue, kind="survey.sampled")), timeout=30)
    assert [s.status for s in surveys(again)] == ["rated"]
    a.expect_none(0.3, from_code(RATING))


def test_no_sampled_survey_while_10086_still_waits_for_an_answer(make_gateway, handset) -> None:
    """Y1 confirmed one of two orders and a survey asked for "1..5" while Y2 still waited; so after `0000` while a
    confirmation waited, and after help while the unsubscribe-all question did. The survey follows the last answer."""
    gw = make_gateway(services={"survey_sample_rate": 1.0})
    a = phone(handset, gw)
    for keyword, code in (("TT", "1066916"), ("TL", "1066888")):
        assert a.submit(code, keyword).status == ESME_ROK
        assert "Y" in receive(a, OPERATOR)
    for text in ("Y1", "0000", "帮助"):
        assert a.submit(OPERATOR, text).status == ESME_ROK
        receive(a, OPERATOR)
    assert a.submit(OPERATOR, "00000").status == ESME_ROK  # cancel all (one so far) ...
    receive(a, OPERATOR)
    assert a.submit(OPERATOR, "帮助").status == ESME_ROK  # ... still unanswered; Y2 too
    receive(a, OPERATOR)
    a.expect_none(0.5, from_code(RATING))
    assert surveys(gw) == []
    for text in ("否", "Y2"):  # no to cancel-all; then the last question answered: now the survey
        assert a.submit(OPERATOR, text).status == ESME_ROK
        receive(a, OPERATOR)
    assert "10086短信服务" in receive(a, RATING)
    assert [s.channel for s in surveys(gw)] == ["sms:10086"]


def test_no_survey_when_sampling_is_off(gw, handset) -> None:
    a = phone(handset, gw)
    assert a.submit(OPERATOR, "HELP").status == ESME_ROK
    receive(a, OPERATOR)
    a.expect_none(0.5, from_code(RATING))
    assert surveys(gw) == []


def restart(make_gateway, gw: GatewayController, clock: SimulatedClock) -> GatewayController:
    gw.stop()
    return make_gateway(clock=clock, db_path=gw.gateway.db_path)


def test_restart_between_survey_and_rating(make_gateway, handset, clock) -> None:
    gw = make_gateway(clock=clock)
    send_survey(gw, phone(handset, gw))
    gw = restart(make_gateway, gw, clock)
    assert reply(phone(handset, gw), "２") == zh("thanks")
    [s] = surveys(gw)
    assert (s.status, s.rating) == ("rated", 2)


def test_restart_between_rating_and_reason(make_gateway, handset, clock) -> None:
    gw = make_gateway(clock=clock)
    a = phone(handset, gw)
    send_survey(gw, a, "hotline", "H9")
    assert reply(a, "非常不满意") == zh("ask_reason")
    gw = restart(make_gateway, gw, clock)
    assert reply(phone(handset, gw), "问题没有解决") == zh("thanks_reason")
    [s] = surveys(gw)
    assert (s.status, s.rating, s.reason, s.agent) == ("rated", 5, "问题没有解决", "H9")


def test_a_sampled_survey_does_not_displace_one_being_answered(make_gateway, handset) -> None:
    """A store visit's survey is open; a 10086 dialogue sampled for a survey must not replace it."""
    gw = make_gateway(services={"survey_sample_rate": 1.0})
    a = phone(handset, gw)
    send_survey(gw, a, channel="store:0101")
    assert a.submit(OPERATOR, "帮助").status == ESME_ROK
    assert receive(a, OPERATOR) == TEMPLATES.render("common.help", "zh")
    a.expect_none(0.5, from_code(RATING))
    assert [(s.channel, s.status) for s in surveys(gw)] == [("store:0101", "sent")]


@pytest.mark.parametrize(
    "words, score, answer, status",
    [("1非常满意", 1, "thanks", "rated"), ("1 非常满意", 1, "thanks", "rated"), ("３，一般。", 3, "thanks", "rated"),
     ("4 不满意", 4, "ask_reason", "reason"), ("5非常不满意", 5, "ask_reason", "reason"),
     ("5 非常不满意", 5, "ask_reason", "reason"), ("5 Very Dissatisfied!", 5, "ask_reason", "reason")],
)  # fmt: skip
def test_an_option_copied_from_the_survey_is_its_rating(gw, handset, words, score, answer, status) -> None:
    """`1非常满意` was re-prompted (and `5非常不满意` next closed the survey as invalid); `4 不满意` was stored with the
    label as its reason, skipping the reason question; `1 非常满意` got the reply to a complaint."""
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, words) == zh(answer)
    [s] = surveys(gw)
    assert (s.rating, s.status, s.reason, s.reprompted) == (score, status, "", False)
    if status == "reason":
        assert reply(a, "排队四十分钟") == zh("thanks_reason")
        assert (surveys(gw)[0].status, surveys(gw)[0].reason) == ("rated", "排队四十分钟")


@pytest.mark.parametrize("words", ["不满意，排队太久", "4不满意，排队太久", "4 不满意 排队太久"])
def test_a_rating_word_and_the_reason_in_one_reply(gw, handset, words) -> None:
    """`不满意，排队太久` was re-prompted though `4 排队太久` was taken; `4 不满意 ...` kept the label in the reason."""
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, words) == zh("thanks_reason")
    [s] = surveys(gw)
    assert (s.status, s.rating, s.reason) == ("rated", 4, "排队太久")


def test_a_digit_with_another_options_label_is_asked_again(gw, handset) -> None:
    """`1 非常不满意` says two things: it is not taken as either, the subscriber is asked again."""
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, "1 非常不满意") == zh("reprompt")
    [s] = surveys(gw)
    assert (s.status, s.rating, s.reprompted) == ("sent", None, True)
    assert reply(a, "5") == zh("ask_reason")


def test_a_satisfied_rating_with_words_after_it_gets_the_plain_thanks(gw, handset) -> None:
    """It got thanks_reason, the promise to look into a complaint."""
    a = phone(handset, gw)
    send_survey(gw, a)
    assert reply(a, "2 办得挺快") == zh("thanks")
    [s] = surveys(gw)
    assert (s.status, s.rating, s.reason) == ("rated", 2, "办得挺快")
