"""A simulated clock set back (QA re-running a day without a fresh database): what was recorded at a later time
does not exist for a text the gateway receives earlier (handlers/base.py, "Records from a later time").

Before, the newest prompt was the one stamped latest, so a `1` meant for the listing just sent confirmed an order
sent "later" or cancelled everything; spam reports three days apart counted as one day's; a reporter was over the
daily limit on a day with no reports; a two-step spam report promised 1530 minutes; and a subscription ordered in
a month already billed was never charged once the clock passed the old billing run again.
"""

from __future__ import annotations

import pytest

from gateway.clock import SimulatedClock
from gateway.store.records import Block, Charge, JobRun, SpamReport, Survey
from tests.e2e.test_billing import subscribe as order_and_confirm
from tests.e2e.test_confirmation import OPERATOR, REQUEST, SINA, subscriptions
from tests.e2e.test_confirmation import ask as ask_from_sp_code
from tests.e2e.test_mo_retry import Failing
from tests.e2e.test_spam_report import ACK, REPORTERS, SPAM_CODE, SPAMMER, phone
from tests.e2e.test_spam_report import ask as ask_spam
from tests.e2e.test_unsubscribe import ask, statuses, subscribe
from tests.polling import eventually
from tests.services_support import at
from tests.smpp_handset import ESME_ROK, texts_from

A = "8613800000001"
RATING = "10086700"


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(at(2026, 12, 10, 10), freeze=True)


def test_a_serial_answers_the_listing_just_sent_not_a_confirmation_stamped_later(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    [weather] = subscribe(gw, A, "sina-weather")
    a = handset(A, address_range=A, gw=gw)
    assert REQUEST.search(ask_from_sp_code(a, "TT", to=SINA))  # a confirmation from 10086, sent at 10:00
    clock.set(at(2026, 12, 10, 9))
    assert "1." in ask(a, "0000")[0]  # the listing, sent at 09:00: 1 is sina-weather
    assert "成功退订" in ask(a, "1")[0]
    assert statuses(gw, [weather]) == ["cancelled"]
    assert [s.service_id for s in subscriptions(gw, A) if s.status == "active"] == []  # the order not confirmed


def test_an_order_on_a_clock_set_back_gets_a_code_of_its_own(make_gateway, handset, clock):
    """Both confirmations said Y1 once the clock was past the first again (its order had been left out of the
    codes in use)."""
    gw = make_gateway(clock=clock)
    a = handset(A, address_range=A, gw=gw)
    assert REQUEST.search(ask_from_sp_code(a, "TT", to=SINA))["code"] == "Y1"  # at 10:00
    clock.set(at(2026, 12, 10, 9))
    assert REQUEST.search(ask_from_sp_code(a, "TQ", to=SINA))["code"] == "Y2"


def test_a_serial_answers_the_listing_just_sent_not_an_unsubscribe_all_question_stamped_later(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    subs = subscribe(gw, A, "sina-news", "sina-weather", "tencent-ringtones")
    a = handset(A, address_range=A, gw=gw)
    assert "是" in ask(a, "00000")[0]  # the yes/no question, at 10:00
    clock.set(at(2026, 12, 10, 9))
    ask(a, "0000")
    assert "成功退订" in ask(a, "1")[0]
    assert sorted(statuses(gw, subs)) == ["active", "active", "cancelled"]  # serial 1 only, not "yes" to all


def test_reports_days_apart_on_a_clock_set_back_do_not_reach_the_threshold_together(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)  # threshold 5 distinct reporters in 24 h
    for number in REPORTERS[:4]:
        assert ACK.match(ask_spam(phone(handset, number, gw), f"{SPAMMER[2:]}*中奖了"))
    clock.set(at(2026, 12, 7, 10))  # three days before them
    assert ACK.match(ask_spam(phone(handset, REPORTERS[4], gw), f"{SPAMMER[2:]}*中奖了"))
    assert gw.call(gw.gateway.store.find(Block, reported=SPAMMER, reporter="")) == []


def test_a_reporters_daily_limit_counts_that_day_only_on_a_clock_set_back(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, services={"spam_reports_per_day": 2})
    reporter = phone(handset, REPORTERS[0], gw)
    for n in (1, 2):
        assert ACK.match(ask_spam(reporter, f"1390000000{n}*中奖了"))
    clock.set(at(2026, 12, 9, 10))  # the day before: nothing filed yet
    assert ACK.match(ask_spam(reporter, "13900000003*中奖了"))


def test_a_forwarded_text_on_a_clock_set_back_asks_for_its_number_afresh(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    reporter = phone(handset, REPORTERS[0], gw)
    assert "30分钟" in ask_spam(reporter, "恭喜您中奖了请点击链接领取")
    clock.set(at(2026, 12, 9, 9))
    assert "30分钟" in ask_spam(reporter, "另一条垃圾短信内容请点击")  # not "仍在等待…1530分钟"
    clock.set(at(2026, 12, 9, 9, 10))
    assert ACK.match(ask_spam(reporter, "13900000001"))  # completes the text forwarded at 09:00
    [filed] = gw.call(gw.gateway.store.find(SpamReport, reporter=REPORTERS[0]))
    assert filed.text == "另一条垃圾短信内容请点击"


def test_an_order_in_a_month_billed_before_the_clock_was_set_back_is_charged_when_billing_comes(make_gateway, handset):
    """The clock set back from 5 December to 10 November, an order, then the clock moved past the old run (6
    December): the old run counted again and December was never charged."""
    clock = SimulatedClock(at(2026, 12, 5, 9))
    gw = make_gateway(clock=clock, gateway={"job_check_interval": 0.2})
    assert eventually(lambda: gw.call(gw.gateway.store.find(JobRun, job="billing", period="2026-12")))  # at start
    clock.set(at(2026, 11, 10, 9))
    a = handset(A, address_range=A, gw=gw)
    assert "当月免信息费" in order_and_confirm(a, "TT")
    clock.set(at(2026, 12, 6, 9))  # past the run recorded at 5 December 09:00
    [subscription] = subscriptions(gw, A)
    assert eventually(lambda: gw.call(gw.gateway.store.find(Charge, msisdn=A)), 10), "December never charged"
    charges = gw.call(gw.gateway.store.find(Charge, msisdn=A))
    assert [(c.subscription_id, c.period) for c in charges] == [(subscription.id, "2026-12")]


def test_a_rating_sent_before_a_survey_on_a_clock_set_back_does_not_rate_it(make_gateway, handset, clock):
    gw = make_gateway(clock=clock)
    a = handset(A, address_range=A, gw=gw)
    gw.call(gw.gateway.services.request_survey(A, "hotline", "007"))  # at 10:00
    assert texts_from(a, RATING)[0].startswith("【满意100】")
    clock.set(at(2026, 12, 10, 9))
    assert a.submit(RATING, "1").status == ESME_ROK
    assert texts_from(a, RATING)[0].startswith("您好，您目前没有待评价的服务")
    [survey] = gw.call(gw.gateway.store.find(Survey, msisdn=A))
    assert survey.status == "sent"


def test_a_survey_on_a_clock_set_back_leaves_the_one_sent_later_open(make_gateway, handset, clock):
    """A survey sent at 10:00, the clock set back to 09:00, another requested: the 10:00 one, not there yet at 09:00,
    was marked superseded then, so once the clock passed 10:00 again the subscriber's 1 rated the 09:00 one and agent
    007's figures lost the rating (the clock-step review)."""
    gw = make_gateway(clock=clock)
    a = handset(A, address_range=A, gw=gw)
    gw.call(gw.gateway.services.request_survey(A, "hotline", "007"))  # at 10:00
    clock.set(at(2026, 12, 10, 9))
    gw.call(gw.gateway.services.request_survey(A, "online", "008"))
    assert [t[:7] for t in texts_from(a, RATING, 2)] == ["【满意100】"] * 2
    clock.set(at(2026, 12, 10, 10, 1))
    assert a.submit(RATING, "1").status == ESME_ROK
    texts_from(a, RATING)
    found = gw.call(gw.gateway.store.find(Survey, msisdn=A, order_by="created_at"))
    assert [(s.agent, s.status, s.rating) for s in found] == [("008", "sent", None), ("007", "rated", 1)]


# ----------------------------------------------- forward time: a text handled after a retry (review of 2c3492a)
# The first version judged "later" by the text's received_at: a text retried after its prompt was sent again
# (re-stamped) or after others filed theirs no longer saw them.


class FailingOnce(Failing):
    """Failing, passing on what else the wrapped handler has (serial_keys, hands_keys_on)."""

    def __getattr__(self, name: str):
        return getattr(self.handler, name)


# The retry must come after the prompt is sent again, a whole exchange of the test's (submission, reply): 0.3 s was
# too short on a loaded machine (a pause of 0.5 s there, and the retried text was handled first, failing the test).
RETRY_AFTER_THE_PROMPT_AGAIN = [2.0]


def fail_once(gw, code: str) -> FailingOnce:
    short_code = gw.gateway.mo.short_codes[code]
    short_code.handler = FailingOnce(short_code.handler, times=1)
    return short_code.handler


def yes_failing_once(make_gateway, handset, clock):
    """(gateway, handset) once A ordered news and answered `Y`, whose first try failed: it is tried again 2 s later."""
    gw = make_gateway(clock=clock, gateway={"mo_retry_backoff": RETRY_AFTER_THE_PROMPT_AGAIN})
    a = handset(A, address_range=A, gw=gw)
    assert REQUEST.search(ask_from_sp_code(a, "TT", to=SINA))
    failing = fail_once(gw, OPERATOR)
    clock.advance(60)
    assert a.submit(OPERATOR, "Y").status == ESME_ROK
    assert failing.called.wait(5)
    clock.advance(5)
    return gw, a


def test_a_confirmation_retried_after_its_order_was_asked_again_confirms_it(make_gateway, handset, clock):
    gw, a = yes_failing_once(make_gateway, handset, clock)
    assert REQUEST.search(ask_from_sp_code(a, "TT", to=SINA))  # no answer came: ordered again, the order re-stamped
    assert texts_from(a, OPERATOR)[0].startswith("您已定制试用新浪的头条新闻业务")  # the retried Y
    assert [s.service_id for s in subscriptions(gw, A)] == ["sina-news"]


def test_a_confirmation_retried_after_a_web_order_does_not_confirm_that_order(make_gateway, handset, clock):
    """The retried `Y`, received before the web order existed, confirmed it: an order the subscriber never saw, billed
    (SPEC 3.2). It answers the confirmation it was received after, confirmed meanwhile by the `Y` sent again."""
    gw, a = yes_failing_once(make_gateway, handset, clock)
    assert ask_from_sp_code(a, "Y").startswith("您已定制试用新浪的头条新闻业务")  # sent again: this one confirms
    clock.advance(5)
    gw.call(gw.gateway.services.request_order(A, "tencent-ringtones", "web"))
    assert REQUEST.search(texts_from(a, OPERATOR)[0])
    assert texts_from(a, OPERATOR)[0].startswith("您已定制新浪的头条新闻业务（信息费30元/月），无需再次定制")  # the retried Y
    assert [s.service_id for s in subscriptions(gw, A)] == ["sina-news"]


def test_a_serial_retried_after_the_listing_was_sent_again_unsubscribes(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, gateway={"mo_retry_backoff": RETRY_AFTER_THE_PROMPT_AGAIN})
    subs = subscribe(gw, A, "sina-news")
    a = handset(A, address_range=A, gw=gw)
    ask(a, "0000")
    failing = fail_once(gw, OPERATOR)
    clock.advance(30)
    assert a.submit(OPERATOR, "1").status == ESME_ROK
    assert failing.called.wait(5)
    clock.advance(5)
    assert "1." in ask(a, "0000")[0]  # the same listing, re-stamped
    assert "成功退订" in texts_from(a, OPERATOR)[0]
    assert statuses(gw, subs) == ["cancelled"]


def test_five_reporters_block_the_number_though_the_first_report_was_retried_after_the_others(make_gateway, handset, clock):
    gw = make_gateway(clock=clock, gateway={"mo_retry_backoff": [0.3]})
    failing = fail_once(gw, SPAM_CODE)
    phones = [phone(handset, number, gw) for number in REPORTERS]
    assert phones[0].submit(SPAM_CODE, f"{SPAMMER[2:]}*中奖了").status == ESME_ROK  # fails first
    assert failing.called.wait(5)
    for reporter in phones[1:]:
        clock.advance(60)
        assert ACK.match(ask_spam(reporter, f"{SPAMMER[2:]}*中奖了"))
    assert ACK.match(texts_from(phones[0], SPAM_CODE)[0])  # the retry: the fifth distinct reporter counted
    [block] = gw.call(gw.gateway.store.find(Block, reported=SPAMMER, reporter=""))
    assert block.reason.startswith("5 distinct reporters")
