"""10086700 ratings (SPEC 3.4): the handler, request_survey and aggregates on a real store with a frozen clock."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.store.effects import Put
from gateway.store.records import Subscriber, Survey
from gateway.templates import Templates
from handlers import rating
from handlers.base import Inbound
from handlers.rating import RatingHandler, parse_rating
from tests.services_support import CHINA, ServiceBench, at, service_bench

A = "8613800000001"
B = "8613800000002"
RATING = "10086700"
DAY = 86400
TEMPLATES = Templates.load(Path(__file__).resolve().parents[2] / "config", "zh")


@pytest.fixture
async def bench(tmp_path: Path):
    bench = await service_bench(tmp_path, start=at(2026, 11, 21))
    yield bench
    await bench.close()


async def survey(bench: ServiceBench, channel: str = "hotline", agent: str | None = None, msisdn: str = A) -> str:
    """Send a survey; returns its text."""
    outcome = await bench.commit(await rating.request_survey(bench.ctx, msisdn, channel, agent, bench.clock.now()))
    [reply] = outcome.replies
    assert (reply.to, reply.source) == (msisdn, RATING)
    return reply.text


async def answer(bench: ServiceBench, text: str, msisdn: str = A) -> str:
    outcome = await bench.send(RatingHandler(), msisdn, text, RATING)
    [reply] = outcome.replies
    assert (reply.to, reply.source) == (msisdn, RATING)
    return reply.text


async def surveys(bench: ServiceBench, msisdn: str = A) -> list[Survey]:
    return await bench.store.find(Survey, msisdn=msisdn, order_by="created_at")


def texts(key: str, language: str = "zh", **values) -> str:
    return TEMPLATES.render(f"rating.{key}", language, **values)


@pytest.mark.parametrize(
    "text, expected",
    [("1", (1, "")), ("５", (5, "")), (" 3 ", (3, "")), ("2。", (2, "")), ("非常满意", (1, "")), ("满意！", (2, "")),
     ("一般", (3, "")), ("不满意", (4, "")), ("非常不满意", (5, "")), ("Very  Satisfied!", (1, "")),
     ("neutral", (3, "")), ("DISSATISFIED", (4, "")), ("5 排队太久", (5, "排队太久")), ("４，态度不好，ＡＢ", (4, "态度不好，ＡＢ")),
     ("1，", (1, "")), ("1非常满意", (1, "")), ("5 非常不满意", (5, "")), ("４　不满意。", (4, "")),
     ("5 very dissatisfied", (5, "")), ("3NEUTRAL", (3, "")), ("不满意，排队太久", (4, "排队太久")),
     ("5非常不满意：排队太久！", (5, "排队太久！")), ("Not satisfied, slow", (4, "slow")), ("1 非常满意 很好", (1, "很好")),
     ("5 满意度太低", (5, "满意度太低")), ("满意……", (2, "")), ("5…", (5, "")), ("非常满意‥", (1, "")),  # input methods' ellipsis
     ("4……排队太久", (4, "排队太久")), ("1 非常不满意", None), ("5 不满意", None), ("满意度太低", None), ("2？", None), ("6", None), ("0", None), ("12", None), ("1,3", None), ("好的", None), ("", None), ("满意满意", None)],
)  # fmt: skip
def test_parse_rating(text: str, expected) -> None:
    assert parse_rating(text) == expected


async def test_survey_record_and_text(bench: ServiceBench) -> None:
    text = await survey(bench, "store:BJ001", "1024")
    assert "营业厅服务（服务工号1024）" in text
    for option in ("1非常满意", "2满意", "3一般", "4不满意", "5非常不满意", "24小时内回复有效"):
        assert option in text
    [s] = await surveys(bench)
    assert (s.channel, s.agent, s.status, s.rating, s.reprompted) == ("store:BJ001", "1024", "sent", None, False)
    assert (s.created_at, s.expires_at) == (at(2026, 11, 21), at(2026, 11, 22))


@pytest.mark.parametrize(
    ("channel", "zh", "en"),
    [("web", "中国移动网站服务。", "China Mobile website service."), ("api", "中国移动服务。", "China Mobile service."),
     ("ussd", "中国移动USSD菜单服务。", "China Mobile USSD menu service.")],
)  # fmt: skip
async def test_a_survey_names_the_products_own_channels_in_words(bench: ServiceBench, channel, zh, en) -> None:
    """The channel's name went into the text as given: 感谢您使用中国移动web服务, ...api服务, ...ussd服务."""
    assert zh in await survey(bench, channel)
    await bench.store.apply([Put(Subscriber(B, "en"))])
    assert en in await survey(bench, channel, msisdn=B)


async def test_survey_in_english_names_the_channel(bench: ServiceBench) -> None:
    await bench.store.apply([Put(Subscriber(A, "en"))])
    text = await survey(bench, "sms:10086")
    assert "10086 SMS service" in text and "1 very satisfied" in text and "5 very dissatisfied" in text
    assert "Replies are accepted for 24 h." in text
    assert "Thank you for your rating!" in await answer(bench, "satisfied")
    assert (await surveys(bench))[0].rating == 2


@pytest.mark.parametrize(("validity", "zh", "en"), [(600, "10分钟", "10 min"), (5400, "90分钟", "90 min"),
                                                    (3600, "1小时", "1 h"), (7200, "2小时", "2 h")])  # fmt: skip
async def test_a_survey_names_its_validity_in_minutes_unless_it_is_whole_hours(tmp_path: Path, validity, zh, en) -> None:
    """A survey valid for 10 minutes said 0.166667小时 (a QA config's 10 s: 0.00277778小时)."""
    config = load_config()
    config = replace(config, services=replace(config.services, survey_validity=validity))
    bench = await service_bench(tmp_path, config, start=at(2026, 11, 21))
    try:
        assert f"{zh}内回复有效" in await survey(bench)
        bench.clock.advance(validity)
        assert await answer(bench, "1") == texts("late", validity=zh)
        await bench.store.apply([Put(Subscriber(A, "en"))])
        assert f"Replies are accepted for {en}." in await survey(bench)
    finally:
        await bench.close()


async def test_rating_is_recorded_once(bench: ServiceBench) -> None:
    await survey(bench)
    bench.clock.advance(600)
    assert await answer(bench, "1") == texts("thanks")
    [s] = await surveys(bench)
    assert (s.status, s.rating, s.rated_at) == ("rated", 1, at(2026, 11, 21, 10, 10))
    assert await answer(bench, "5") == texts("already_rated")
    assert (await surveys(bench))[0].rating == 1
    assert bench.sent[-2].completed and not bench.sent[-1].effects


async def test_dissatisfied_asks_for_a_reason(bench: ServiceBench) -> None:
    await survey(bench)
    assert await answer(bench, "不满意") == texts("ask_reason")
    [s] = await surveys(bench)
    assert (s.status, s.rating) == ("reason", 4)
    assert not bench.sent[-1].completed
    assert await answer(bench, " 等了四十分钟，才办完 ") == texts("thanks_reason")
    [s] = await surveys(bench)
    assert (s.status, s.rating, s.reason) == ("rated", 4, "等了四十分钟，才办完")
    assert await answer(bench, "5") == texts("already_rated")


async def test_digit_with_text_is_rating_and_reason_at_once(bench: ServiceBench) -> None:
    await survey(bench)
    assert await answer(bench, "5 排队太久") == texts("thanks_reason")
    [s] = await surveys(bench)
    assert (s.status, s.rating, s.reason) == ("rated", 5, "排队太久")


async def test_invalid_reply_is_reprompted_once_then_closed(bench: ServiceBench) -> None:
    await survey(bench)
    assert await answer(bench, "好的") == texts("reprompt")
    [s] = await surveys(bench)
    assert (s.status, s.reprompted) == ("sent", True)
    assert await answer(bench, "7") == texts("invalid")
    [s] = await surveys(bench)
    assert (s.status, s.rating) == ("invalid", None)
    assert await answer(bench, "1") == texts("unsolicited", code=RATING)
    assert (await surveys(bench))[0].rating is None


async def test_a_valid_reply_after_the_reprompt_counts(bench: ServiceBench) -> None:
    await survey(bench)
    await answer(bench, "?")
    assert await answer(bench, "３") == texts("thanks")
    [s] = await surveys(bench)
    assert (s.status, s.rating, s.reprompted) == ("rated", 3, True)


async def test_late_rating_is_not_recorded(bench: ServiceBench) -> None:
    await survey(bench)
    bench.clock.advance(DAY - 1)
    assert await answer(bench, "?") == texts("reprompt")  # still in time
    bench.clock.advance(1)
    assert await answer(bench, "1") == texts("late", validity="24小时")
    [s] = await surveys(bench)
    assert (s.status, s.rating) == ("expired", None)
    assert await answer(bench, "1") == texts("late", validity="24小时")
    bench.clock.advance(DAY)
    assert await answer(bench, "1") == texts("unsolicited", code=RATING)


async def test_reason_step_expires_with_the_survey(bench: ServiceBench) -> None:
    await survey(bench)
    bench.clock.advance(DAY - 60)
    assert await answer(bench, "5") == texts("ask_reason")
    bench.clock.advance(60)
    assert await answer(bench, "太慢") == texts("reason_late", validity="24小时")
    [s] = await surveys(bench)
    assert (s.status, s.rating, s.reason) == ("rated", 5, "")


@pytest.mark.parametrize("first", ["1", "5"])  # a survey never answered, one awaiting its reason
async def test_a_reply_past_the_late_period_is_unsolicited_like_the_next_one(bench: ServiceBench, first: str) -> None:
    await survey(bench)
    if first == "5":
        assert await answer(bench, first) == texts("ask_reason")
    bench.clock.advance(2 * DAY)  # expired one day ago: the late period is over
    assert await answer(bench, "1") == texts("unsolicited", code=RATING)
    assert await answer(bench, "1") == texts("unsolicited", code=RATING)
    [s] = await surveys(bench)
    assert (s.status, s.rating) == (("expired", None) if first == "1" else ("rated", 5))


async def test_unsolicited_rating(bench: ServiceBench) -> None:
    assert await answer(bench, "1") == texts("unsolicited", code=RATING)
    assert await surveys(bench) == []


async def test_a_new_survey_supersedes_the_open_one(bench: ServiceBench) -> None:
    await survey(bench, "store:1", "7")
    bench.clock.advance(60)
    await survey(bench, "hotline", "8")
    await answer(bench, "2")
    old, new = await surveys(bench)
    assert (old.status, old.rating) == ("superseded", None)
    assert (new.status, new.rating, new.agent) == ("rated", 2, "8")


async def test_a_new_survey_keeps_the_rating_awaiting_its_reason(bench: ServiceBench) -> None:
    await survey(bench)
    await answer(bench, "4")
    await survey(bench, "online")
    old, new = await surveys(bench)
    assert (old.status, old.rating, new.status) == ("rated", 4, "sent")


async def handled_late(bench: ServiceBench, text: str, received_at: float) -> str:
    """A reply received at `received_at` and handled now (a retry after a failed attempt, a replay at start)."""
    inbound = Inbound(A, RATING, text, received_at, message_ids=(bench.ctx.new_id(),))
    outcome = await bench.commit(await RatingHandler().handle(inbound, bench.ctx))
    [reply] = outcome.replies
    return reply.text


async def test_a_reply_handled_late_does_not_answer_a_survey_sent_after_it(bench: ServiceBench) -> None:
    received = bench.clock.now()
    bench.clock.advance(1)
    await survey(bench, "hotline", "88")  # sent while the reply's first handling failed
    bench.clock.advance(2)
    assert await handled_late(bench, "1", received) == texts("unsolicited", code=RATING)
    [s] = await surveys(bench)
    assert (s.status, s.rating) == ("sent", None)


async def test_a_reason_handled_late_reaches_the_survey_that_asked_for_it(bench: ServiceBench) -> None:
    await survey(bench, "store:BJ001", "1024")
    assert await answer(bench, "5") == texts("ask_reason")
    reason_received = bench.clock.now()
    bench.clock.advance(1)
    await survey(bench, "hotline", "88")  # closes the first: its rating stands, no reason awaited any more
    bench.clock.advance(2)
    assert await handled_late(bench, "3号窗口态度差", reason_received) == texts("thanks_reason")
    first, second = await surveys(bench)
    assert (first.status, first.rating, first.reason) == ("rated", 5, "3号窗口态度差")
    assert (second.status, second.rating, second.reprompted) == ("sent", None, False)


async def test_a_rating_handled_late_answers_the_survey_it_was_sent_for(bench: ServiceBench) -> None:
    await survey(bench, "store:BJ001", "1024")
    received = bench.clock.now()
    bench.clock.advance(1)
    await survey(bench, "hotline", "88")  # supersedes the first
    bench.clock.advance(2)
    assert await handled_late(bench, "不知道", received) == texts("reprompt")  # the next rating answers the newer one
    first, second = await surveys(bench)
    assert (first.status, first.reprompted, second.reprompted) == ("superseded", False, False)  # nothing reopened
    assert await handled_late(bench, "4", received) == texts("thanks")  # no reason asked: the newer survey is open
    first, second = await surveys(bench)
    assert (first.status, first.rating, first.agent) == ("rated", 4, "1024")
    assert (second.status, second.rating, second.reprompted) == ("sent", None, False)
    assert await answer(bench, "2") == texts("thanks")
    assert [(s.agent, s.rating) for s in await surveys(bench)] == [("1024", 4), ("88", 2)]


# ------------------------------------------------------------- aggregates
KNOWN = [  # (day of November 2026, channel, agent, rating or None)
    (21, "store:BJ001", "A1", 1), (21, "store:BJ001", "A1", 2), (22, "store:BJ001", "A1", 5),
    (21, "store:BJ002", "A2", 4), (21, "hotline", "H7", 3), (22, "hotline", "H7", 4), (22, "hotline", "H8", 1),
    (22, "hotline", "H8", None), (23, "online", "", 2), (23, "online", "", None),
]  # fmt: skip


async def put_known(bench: ServiceBench, known: list[tuple[int, str, str, int | None]] = KNOWN) -> None:
    records = [
        Survey(f"s{i:02d}", f"86138000000{i:02d}", channel, agent, at(2026, 11, day), at(2026, 11, day) + DAY,
               "sent" if score is None else "rated", score, rated_at=None if score is None else at(2026, 11, day, 11))
        for i, (day, channel, agent, score) in enumerate(known)
    ]  # fmt: skip
    await bench.commit(rating.Outcome().put(*records))


async def test_an_agent_is_named_as_written_but_for_its_width_and_the_spaces_around_it(bench: ServiceBench) -> None:
    """Full NFKC made 12 `ﬃ` (accepted before) 36 characters, refused, and merged `①` with `1`: only width and the
    white space around are folded, by request_survey and by the aggregates' filter alike."""
    assert [rating.checked_agent(agent) for agent in ("ﬃ" * 12, "①", "\u3000Ａ１ ")] == ["ﬃ" * 12, "①", "A1"]
    await put_known(bench, [(21, "hotline", "A1", 1), (22, "hotline", "①", 5), (22, "hotline", "1", 4)])
    assert (await rating.aggregates(bench.ctx, agent="Ａ1　"))["overall"]["distribution"] == dist(1, 0, 0, 0, 0)
    assert list((await rating.aggregates(bench.ctx))["by_agent"]) == ["1", "A1", "①"]


def test_every_full_width_ascii_character_and_the_ideographic_space_inside_an_id_are_folded() -> None:
    """All of U+FF01-FF5E, the last (`～`) too, and U+3000 between two characters, not only around them: `Ａ　１` is
    agent `A 1`, not refused as unprintable."""
    assert rating.checked_agent("\uff01\uff5e\uff21") == "!~A"  # the first, the last and `Ａ`
    assert rating.checked_agent("Ａ\u3000１") == "A 1"


def dist(*counts: int) -> dict[str, int]:
    return dict(zip("12345", counts))


async def test_aggregates_per_channel_and_agent(bench: ServiceBench) -> None:
    await put_known(bench)
    result = await rating.aggregates(bench.ctx)
    assert (result["surveys"], result["response_rate"]) == (10, 0.8)
    assert result["overall"] == {"count": 8, "mean": 2.75, "satisfied": 4, "satisfied_share": 0.5,
                                 "distribution": dist(2, 2, 1, 2, 1)}  # fmt: skip
    channels = result["by_channel"]
    assert list(channels) == ["hotline", "online", "store:BJ001", "store:BJ002"]
    assert channels["store:BJ001"] == {"count": 3, "mean": 2.6667, "satisfied": 2, "satisfied_share": 0.6667,
                                       "distribution": dist(1, 1, 0, 0, 1), "surveys": 3, "response_rate": 1.0}  # fmt: skip
    assert channels["hotline"] == {"count": 3, "mean": 2.6667, "satisfied": 1, "satisfied_share": 0.3333,
                                   "distribution": dist(1, 0, 1, 1, 0), "surveys": 4, "response_rate": 0.75}  # fmt: skip
    assert channels["online"]["count"] == 1 and channels["online"]["mean"] == 2
    assert (channels["online"]["surveys"], channels["online"]["response_rate"]) == (2, 0.5)
    agents = result["by_agent"]
    assert list(agents) == ["A1", "A2", "H7", "H8"]  # ratings without an agent are in no agent's figures
    assert agents["H7"] == {"count": 2, "mean": 3.5, "satisfied": 0, "satisfied_share": 0.0, "distribution": dist(0, 0, 1, 1, 0),
                            "surveys": 2, "response_rate": 1.0}  # fmt: skip
    assert agents["H8"] == {"count": 1, "mean": 1.0, "satisfied": 1, "satisfied_share": 1.0, "distribution": dist(1, 0, 0, 0, 0),
                            "surveys": 2, "response_rate": 0.5}  # fmt: skip
    assert "over_time" not in result


async def test_a_groups_response_rate_has_the_overall_ones_four_decimals(bench: ServiceBench) -> None:
    """1 survey of 3 answered at a store: the operator must read 0.3333 for the store and its agent as for the whole,
    not 0.33 beside 0.3333 for one and the same share."""
    await put_known(bench, [(21, "store:BJ001", "A1", 2), (21, "store:BJ001", "A1", None), (22, "store:BJ001", "A1", None)])
    result = await rating.aggregates(bench.ctx)
    store, agent = result["by_channel"]["store:BJ001"], result["by_agent"]["A1"]
    assert (result["response_rate"], store["response_rate"], agent["response_rate"]) == (0.3333, 0.3333, 0.3333)


async def test_aggregates_filters_and_days(bench: ServiceBench) -> None:
    await put_known(bench)
    stores = await rating.aggregates(bench.ctx, channel="store", bucket="day")
    assert stores["overall"]["distribution"] == dist(1, 1, 0, 1, 1)
    assert list(stores["by_channel"]) == ["store:BJ001", "store:BJ002"]
    assert [(p["period"], p["count"], p["mean"]) for p in stores["over_time"]] == [("2026-11-21", 3, 2.3333), ("2026-11-22", 1, 5.0)]
    one_day = await rating.aggregates(bench.ctx, since=at(2026, 11, 22, 0), until=at(2026, 11, 23, 0), bucket="day")
    assert (one_day["surveys"], one_day["overall"]["count"]) == (4, 3)
    assert [p["period"] for p in one_day["over_time"]] == ["2026-11-22"]
    agent = await rating.aggregates(bench.ctx, agent="H7", bucket="month")
    assert agent["overall"]["mean"] == 3.5 and agent["over_time"][0]["period"] == "2026-11"
    empty = await rating.aggregates(bench.ctx, channel="hotline:none")
    assert empty["overall"] == {"count": 0, "mean": None, "satisfied": 0, "satisfied_share": None,
                                "distribution": dist(0, 0, 0, 0, 0)}  # fmt: skip
    with pytest.raises(ValueError):
        await rating.aggregates(bench.ctx, bucket="hour")


async def test_aggregates_take_a_datetime_and_agent_empty_for_surveys_sent_with_none(bench: ServiceBench) -> None:
    await put_known(bench)
    since, until = dt.datetime(2026, 11, 22, tzinfo=CHINA), dt.datetime(2026, 11, 23, tzinfo=dt.UTC) - dt.timedelta(hours=8)
    one_day = await rating.aggregates(bench.ctx, since=since, until=until)
    assert (one_day["surveys"], one_day["overall"]["count"]) == (4, 3)  # as with epoch seconds
    assert one_day["filters"]["since"] == at(2026, 11, 22, 0)
    no_agent = await rating.aggregates(bench.ctx, agent="")
    assert (no_agent["surveys"], list(no_agent["by_channel"])) == (2, ["online"])


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        ({"since": dt.datetime(2026, 11, 22)}, "since"),  # naive: whose midnight?
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-23"}, "until"),
        ({"until": float("nan")}, "until"),
        ({"until": 2**63}, "until"),  # an OverflowError from the store's query
        ({"since": 1_764_000_000_000}, "since"),  # milliseconds: it matched nothing
        ({"since": True}, "since"),
        ({"since": -1}, "since"),  # before 1970: no survey, ever
        ({"channel": "hot line"}, "channel"),  # a name request_survey refuses: no survey has it
        ({"channel": 123}, "channel"),
        ({"agent": 123}, "agent"),
        ({"agent": " "}, "agent"),
    ],
)
async def test_aggregates_refuse_a_filter_no_survey_can_match(bench: ServiceBench, filters: dict, named: str) -> None:
    """Each answered zero surveys (or raised a TypeError from inside), as if there had been none."""
    await put_known(bench)
    with pytest.raises(ValueError, match=f"^{named} "):
        await rating.aggregates(bench.ctx, **filters)


async def test_aggregates_of_ratings_given_by_text(bench: ServiceBench) -> None:
    for channel, agent, reply in [("store:9", "A", "1"), ("store:9", "A", "满意"), ("store:9", "B", "5 太慢"), ("hotline", "C", "?")]:
        await survey(bench, channel, agent)
        await answer(bench, reply)
    result = await rating.aggregates(bench.ctx)
    assert result["surveys"] == 4 and result["by_agent"]["A"]["distribution"] == dist(1, 1, 0, 0, 0)
    assert result["by_channel"]["store:9"] == {"count": 3, "mean": 2.6667, "satisfied": 2, "satisfied_share": 0.6667,
                                               "distribution": dist(1, 1, 0, 0, 1), "surveys": 3, "response_rate": 1.0}  # fmt: skip
    assert result["by_channel"]["hotline"]["count"] == 0  # asked again ("?"): sent, not rated


async def test_aggregates_list_the_agents_whose_surveys_went_unanswered(bench: ServiceBench) -> None:
    """SPEC 3.4 asks for figures per agent: one whose surveys expired, went invalid or were superseded is there, with
    the surveys sent and count 0, not missing."""
    await survey(bench, "hotline", "RATED")
    await answer(bench, "2")
    await survey(bench, "hotline", "INVALID", B)
    await answer(bench, "?", B)
    await answer(bench, "??", B)
    await survey(bench, "store:1", "SUPERSEDED")
    await survey(bench, "store:1", "EXPIRED")
    bench.clock.advance(DAY)
    await bench.commit(await rating.expire_lapsed(bench.ctx, [A], bench.clock.now()))
    assert sorted((s.agent, s.status) for s in await surveys(bench)) == [("EXPIRED", "expired"), ("RATED", "rated"),
                                                                         ("SUPERSEDED", "superseded")]  # fmt: skip
    result = await rating.aggregates(bench.ctx)

    def figures(groups: dict) -> dict:
        return {name: (g["surveys"], g["count"], g["response_rate"], g["mean"]) for name, g in groups.items()}

    assert figures(result["by_agent"]) == {"EXPIRED": (1, 0, 0.0, None), "INVALID": (1, 0, 0.0, None),
                                           "RATED": (1, 1, 1.0, 2.0), "SUPERSEDED": (1, 0, 0.0, None)}  # fmt: skip
    assert figures(result["by_channel"]) == {"hotline": (2, 1, 0.5, 2.0), "store:1": (2, 0, 0.0, None)}
    assert (result["surveys"], result["response_rate"]) == (4, 0.25)  # as before
    days = await rating.aggregates(bench.ctx, bucket="day")
    assert [(p["period"], p["surveys"], p["count"]) for p in days["over_time"]] == [("2026-11-21", 4, 1)]
