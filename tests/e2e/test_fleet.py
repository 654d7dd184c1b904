"""The handset simulator's fleet (simulator/fleet.py) against the real gateway: the default mix checked end to
end, bind modes and the open loop, spammers blocked after enough reports, and the Python API."""

from __future__ import annotations

import dataclasses
import json
import gc
import logging
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from gateway.config import DEFAULT_CONFIG
from gateway.gctune import GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD
from gateway.smpp.text import decode
from gateway.store.records import Block, Subscription
from simulator import behaviours
from simulator.behaviours import REASONS
from simulator.fleet import Fleet, FleetError
from simulator.metrics import Recorder
from simulator.testing import FleetController, gateway_config, make_scenario, run_fleet_async, smsgw_fleet  # noqa: F401
from tests.services_support import catalogue_without

ROOT = Path(__file__).resolve().parents[2]
# Every behaviour and every reaction of the default mix, with the outcomes a short run must show.
EXPECTED = {
    "query": {"unsubscribed", "listed", "none"},
    "order": {"ordered", "declined", "ignored"},
    "spam": {"reported", "reported_two_step"},
    "rating": {"rated", "rated_with_reason", "late"},
    "chatter": {"delivered"},
    "spammer": {"sent", "blocked"},
    "help": {"help"},
}
# Surveys after every completed 10086 dialogue, valid for 3 s, so late answers are quick to give.
SURVEYS = {"services": {"survey_sample_rate": 1.0, "survey_validity": 3}}


def test_default_mix_every_dialogue_kind_checked_and_passed() -> None:
    with FleetController(config=SURVEYS) as controller:
        run = controller.run(subscribers=150, binds=3, duration=4, concurrency=12)
        store = controller.gateway.gateway.store
        blocked = {b.reported for b in controller.gateway.call(store.find(Block, reporter="", lifted_at=None))}
        active = controller.gateway.call(store.find(Subscription, status="active"))
    run.assert_ok()
    assert run.failed == 0 and run.completed > 300
    for kind, outcomes in EXPECTED.items():
        assert outcomes <= set(run.outcomes.get(kind, {})), f"{kind}: {run.outcomes.get(kind)}"
    assert {"reprompted", "invalid"} & set(run.outcomes["rating"])
    summary = run.summary
    assert summary["unsolicited"]["survey"] > 0 and summary["unsolicited"]["spam"] > 0
    assert summary["unsolicited"].get("spam_handled", 0) > 0 and "other" not in summary["unsolicited"]
    assert summary["mo_refused"]["SMSGW_RSENDERBLOCKED"] > 0
    # The spammers the fleet saw refused are the ones the gateway blocked network-wide.
    refused = {n for n, s in summary["fleet"]["spammers"].items() if s["refused_seen"]}
    assert refused and refused <= blocked
    # The SPs heard of every order and unsubscription, and what is left is what the gateway holds active.
    notices = summary["fleet"]["sp_notices"]
    orders = sum(n for k, n in notices.items() if k.startswith("ORDER"))
    cancels = sum(n for k, n in notices.items() if k.startswith("CANCEL"))
    assert orders == run.outcomes["order"]["ordered"] and cancels > 0
    assert orders - cancels == len(active) > 0
    assert summary["latency_ms"]["p50"] > 0 and summary["timeline"]
    assert summary["fleet"]["retired_subscribers"] == 0


def test_a_free_service_is_ordered_and_listed_as_the_target_states_it(smsgw_fleet) -> None:
    """A service of fee 0 is offered and ordered as free (confirmation.request_free, ordered_free) and listed by 0000
    as "免费": the fleet expects those texts of it, and reads the listing's {price}, the price of the paid ones too."""
    free_news = [dict(entry, fee=0) if entry["id"] == "sina-news" else entry for entry in catalogue_without()]
    orders_and_queries = {name: {"weight": 0} for name in ("spam", "chatter", "spammer", "help")} | {
        "order": {"weight": 3, "ignore": 0}, "query": {"weight": 1}}  # fmt: skip
    scenario = make_scenario(fleet={"count": 20, "binds": 1}, behaviours=orders_and_queries,
                             load={"duration": 0, "count": 80, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, config={"catalogue": free_news})
    run.assert_ok()
    assert run.failed == 0 and run.summary["fleet"]["sp_notices"]["ORDER sina-news"] > 0, run.summary["fleet"]["sp_notices"]
    listings = run.outcomes["query"].get("listed", 0) + run.outcomes["query"].get("unsubscribed", 0)
    assert listings > 0, run.outcomes


def test_long_replies_whose_parts_come_on_different_binds_are_read_whole(smsgw_fleet, tmp_path) -> None:
    """2000 subscribers on 3 tx+rx pairs: the receivers' address ranges overlap (a block each, written as a wider
    pattern), the gateway sends each part of the two-part help text to the least loaded receiver that takes it, and
    each bind reassembled only its own parts: dialogues failed with 'nothing from 10086'."""
    scenario = tmp_path / "help.toml"
    behaviours = "".join(f"[behaviours.{kind}]\nweight = 0\n" for kind in ("query", "order", "spam", "chatter", "spammer"))
    scenario.write_text('[fleet]\ncount = 2000\nbinds = 3\nmode = "tx+rx"\nsp_receivers = []\n'
                        '[load]\nconcurrency = 8\nduration = 0\ncount = 40\n' + behaviours + "[behaviours.help]\nweight = 1\n",
                        encoding="utf-8")  # fmt: skip
    run = smsgw_fleet(scenario)
    run.assert_ok()
    assert run.summary["outcomes"]["help"] == {"help": 40}


def test_tx_rx_pairs_open_loop_with_ramp_up(smsgw_fleet) -> None:
    started = time.monotonic()
    run = smsgw_fleet(config={"services": {"survey_sample_rate": 1.0}}, subscribers=60, binds=2, mode="tx+rx",
                      rate=80, ramp_up=1, count=120)  # fmt: skip
    run.assert_ok()
    assert run.summary["fleet"]["binds"] == 4 and run.summary["fleet"]["load"] == "open"
    assert run.summary["dialogues"]["started"] >= 120
    # 120 dialogues at 80/s after a 1 s ramp: 120/80 + 1/2 = 2 s of starting them.
    assert 1.8 < run.summary["duration_s"] and time.monotonic() - started < 15


def spammer_scenario(**load):
    return make_scenario(
        fleet={"count": 30, "binds": 1, "sp_receivers": []},
        behaviours={name: {"weight": 0} for name in ("query", "order", "spam", "chatter", "help")} | {"spammer": {"weight": 1, "victims": 6}},
        spammers={"count": 2},
        reactions={"spam": {"report": 1, "two_step": 1, "ignore": 0}},
        load={"duration": 0, "count": 12, "concurrency": 2, **load},
    )  # fmt: skip


def test_spammers_are_blocked_once_enough_victims_reported_and_refused_after(smsgw_fleet) -> None:
    run = smsgw_fleet(spammer_scenario())
    run.assert_ok()
    spammers = run.summary["fleet"]["spammers"]
    assert set(spammers) == {"8613000000000", "8613000000001"}
    for number, seen in spammers.items():
        assert seen["victims_reported"] >= 5 and seen["blocked_expected"] and seen["refused_seen"], (number, seen)
    assert run.outcomes["spammer"]["blocked"] >= 2 and run.outcomes["spam"]["reported"] > 0
    assert run.summary["mo_refused"]["SMSGW_RSENDERBLOCKED"] >= 12
    # each of them called for by the victims' reports: none failing a dialogue, as the report says
    assert run.summary["mo_refused_expected"] == run.summary["mo_refused"], run.summary["mo_refused_expected"]
    assert "MO refused, failing their dialogues" not in str(run)


def test_a_server_that_never_blocks_spammers_fails_the_check(smsgw_fleet) -> None:
    # The gateway needs 1000 reporters; the fleet expects the default 5.
    run = smsgw_fleet(spammer_scenario(duration=3, count=0), config={"services": {"spam_block_threshold": 1000}}, expect=gateway_config())
    assert run.failed > 0 and run.exit_code() == 1
    failure = next(f for f in run.failures if f["kind"] == "spammer")
    assert failure["step"] == "spam" and "expected SMSGW_RSENDERBLOCKED" in failure["error"]
    assert failure["transcript"] and failure["transcript"][0]["dir"] == ">"
    with pytest.raises(AssertionError, match="dialogues failed"):
        run.assert_ok()


def test_a_spammer_only_run_whose_spammers_all_retired_ends_at_once(smsgw_fleet) -> None:  # noqa: F811
    """Its count (12) could never be reached: it waited 30 s for the load to be called stalled."""
    run = smsgw_fleet(spammer_scenario(), config={"services": {"spam_block_threshold": 1000}}, expect=gateway_config())
    assert run.summary["fleet"]["stopped"] == "every spammer retired after failures"
    assert run.exit_code() == 1
    assert "the run ended early: every spammer retired" in "; ".join(run.misses())


def test_the_fleet_expects_a_reporter_at_the_days_limit_to_be_told_so(smsgw_fleet) -> None:  # noqa: F811
    """With spam_reports_per_day = 1 a victim's second report is refused (spam.rate_limited): the fleet expects
    that from the report that reaches the limit, not one later; else a correct server failed the run."""
    run = smsgw_fleet(spammer_scenario(), config={"services": {"spam_reports_per_day": 1}})
    run.assert_ok()
    assert run.outcomes["spam"].get("rate_limited", 0) > 0, run.outcomes


async def test_fleet_over_tls_and_the_async_api(make_gateway, tls_files) -> None:
    cert, key = tls_files
    gw = make_gateway(tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})
    scenario = make_scenario(target={"tls": True, "ca": str(cert), "check_hostname": False}, spammers={"start": "8613000000100"})
    recorder = Recorder()
    run = await run_fleet_async(scenario, target=("127.0.0.1", gw.gateway.tls_port), recorder=recorder,
                                subscribers=20, binds=1, count=40, concurrency=4)  # fmt: skip
    run.assert_ok()
    assert recorder.completed == run.completed >= 40
    # Without the CA the server's self-signed certificate is refused before any bind.
    unverified = make_scenario(target={"tls": True, "port": gw.gateway.tls_port}, fleet={"count": 4, "binds": 1, "sp_receivers": []})
    with pytest.raises(FleetError) as refused:
        await Fleet(unverified.override(count=1)).run()
    assert refused.value.key == "target.ca" and "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


async def test_the_fleet_keeps_its_collector_quiet_while_connected_and_gives_it_back(start_gateway, tmp_path) -> None:
    """With CPython's default thresholds the fleet's own full collections (25-65 ms) were timed as the target's
    latency. Connected, it collects as a gateway does (gateway/gctune.py); closed, the process has its own back."""
    gateway = start_gateway(tmp_path / "gw.db")  # its own process: only the fleet tunes this one
    before = gc.get_threshold()
    assert before[0] != GEN0_THRESHOLD
    fleet = Fleet(make_scenario(target={"port": gateway.smpp_port}, fleet={"count": 4, "binds": 1, "sp_receivers": []},
                                behaviours={"spammer": {"weight": 0}}))  # fmt: skip
    await fleet.connect()
    try:
        assert gc.get_threshold() == (GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
        await fleet.load(dataclasses.replace(fleet.scenario.load, mode="closed", concurrency=2, count=4, duration=0.0))
        await fleet.drain()
    finally:
        await fleet.close()
    assert gc.get_threshold() == before
    assert fleet.recorder.completed >= 4 and fleet.recorder.failed == 0


def reworded(directory: Path, shipped: str, text: str, **overrides) -> Path:
    """A config directory: the built-in config with `overrides`, its texts with the shipped line `shipped` (a
    whole line of messages.zh.toml) replaced by `text`. Returns the config file."""
    directory.mkdir()
    for language in ("zh", "en"):
        shutil.copy(DEFAULT_CONFIG.parent / f"messages.{language}.toml", directory / f"messages.{language}.toml")
    messages = directory / "messages.zh.toml"
    lines = messages.read_text(encoding="utf-8").split("\n")
    assert lines.count(shipped) == 1, shipped
    messages.write_text("\n".join(text if line == shipped else line for line in lines), encoding="utf-8")
    shutil.copy(DEFAULT_CONFIG, directory / "config.toml")
    return directory / "config.toml"


HELP_ONLY = {name: {"weight": 0} for name in ("query", "order", "spam", "chatter", "spammer")} | {"help": {"weight": 1}}


def help_scenario(**load):
    return make_scenario(fleet={"count": 20, "binds": 1, "sp_receivers": []}, behaviours=HELP_ONLY,
                         load={"duration": 0, "count": 20, "concurrency": 4, **load})  # fmt: skip


def test_a_survey_worded_otherwise_fails_the_run(smsgw_fleet, tmp_path: Path) -> None:
    """The target sends surveys whose wording is none of its config's texts: before, each was counted as
    'arrived unasked: other' and the run passed."""
    shipped = (DEFAULT_CONFIG.parent / "messages.zh.toml").read_text(encoding="utf-8")
    survey = next(line for line in shipped.split("\n") if line.startswith("survey = "))
    config = reworded(tmp_path / "target", survey, 'survey = "【满意100】感谢您使用中国移动{service}。请回复1-5。{validity}内回复有效。"')
    run = smsgw_fleet(help_scenario(), config=gateway_config(config, **SURVEYS), expect=gateway_config(**SURVEYS))
    assert run.exit_code() == 1
    assert run.summary["failures_by_step"]["unasked"] == {"unrecognised text from 10086700": run.faults}
    assert run.faults > 0 and "other" not in run.summary["unsolicited"]
    failure = next(f for f in run.failures if f["kind"] == "unasked")
    assert "none of the target's reply texts: '【满意100】感谢您使用" in failure["error"]
    assert failure["transcript"][0]["peer"] == "10086700"
    dialogues = run.summary["dialogues"]
    assert dialogues["started"] == dialogues["completed"] + dialogues["failed"]


def test_a_help_text_naming_another_keyword_than_the_configured_one_fails(smsgw_fleet, tmp_path: Path) -> None:
    """The target's help text tells subscribers to send 9999 where its config takes 0000: before, {query_keyword}
    matched anything and every help dialogue passed."""
    shipped = (DEFAULT_CONFIG.parent / "messages.zh.toml").read_text(encoding="utf-8")
    help_line = next(line for line in shipped.split("\n") if line.startswith("help = "))
    assert "发送{query_keyword}查询" in help_line
    config = reworded(tmp_path / "target", help_line, help_line.replace("发送{query_keyword}查询", "发送9999查询"))
    run = smsgw_fleet(help_scenario(), config=gateway_config(config), expect=gateway_config())
    assert run.exit_code() == 1 and run.summary["failures_by_step"] == {"help": {"help->help": run.failed}}
    assert "expected common.help from 10086" in run.failures[0]["error"] and "发送9999查询" in run.failures[0]["error"]
    # The same texts with the keyword the config names pass.
    assert smsgw_fleet(help_scenario(), config=gateway_config(config, services={"query_keyword": "9999"}),
                       expect=gateway_config(services={"query_keyword": "9999"})).exit_code() == 0  # fmt: skip


def test_surveys_are_answered_with_the_rating_words_of_the_targets_config(tmp_path: Path) -> None:
    """An English target with rating words of its own, none for 2 and 4: the fleet rated with the built-in Chinese
    words (不满意), which the target rightly re-prompted, and a fifth of its valid answers failed 'expected
    rating.thanks'. Each score's word is now the first the target's config has for it, digits where it has none."""
    words = {"EXCELLENT": 1, "TOP": 1, "MEH": 3, "AWFUL": 5}
    config = {"services": {"language": "en", "survey_sample_rate": 1.0, "rating_words": words}}
    scenario = make_scenario(fleet={"count": 40, "binds": 1, "sp_receivers": []}, behaviours=HELP_ONLY,
                             reactions={"survey": {"valid": 1, "invalid": 0, "late": 0, "ignore": 0}},
                             load={"duration": 0, "count": 150, "concurrency": 8})  # fmt: skip
    with FleetController(config=config, db_path=tmp_path / "gw.db") as controller:
        run = controller.run(scenario)
    run.assert_ok()
    dialogues = run.summary["dialogues"]
    assert dialogues["started"] == dialogues["completed"] + dialogues["failed"] and dialogues["reactions"] > 100, dialogues
    # A rating is a word a fifth of the time (a digit or a full-width digit otherwise, a reason after a 4-5): 150
    # surveys rate with the target's words, never with a second word for a score nor one of another config.
    with closing(sqlite3.connect(tmp_path / "gw.db")) as db:
        mo = db.execute("SELECT short_message, data_coding FROM messages WHERE direction = 'mo' AND dest_addr = ?",
                        (controller.config.services.rating,)).fetchall()  # fmt: skip
    sent = {decode(text, coding) for text, coding in mo}
    reasons = {*REASONS, *(f"{score} {reason}" for score in (4, 5) for reason in REASONS)}
    assert {"EXCELLENT", "MEH", "AWFUL"} & sent, sent
    assert sent - reasons <= {"EXCELLENT", "MEH", "AWFUL", *"12345", *"１２３４５"}, sent


def test_a_failed_sp_notice_check_is_a_fault_within_the_run(smsgw_fleet, tmp_path: Path) -> None:
    """The fleet expects a catalogue service by another id, so the SP notices (service=sina-news) do not match.
    Before, the failure was recorded without being counted as started (started N, completed N, failed 1), and
    after the run's end (beyond duration_s). It is a fault, no dialogue: the dialogues' totals add up without it."""
    expect = tmp_path / "expect.toml"
    shipped = DEFAULT_CONFIG.read_text(encoding="utf-8")
    assert shipped.count('id = "sina-news"') == 1
    expect.write_text(shipped.replace('id = "sina-news"', 'id = "sina-headlines"'), encoding="utf-8")
    only_orders = {name: {"weight": 0} for name in ("query", "spam", "chatter", "spammer", "help")} | {"order": {"weight": 1}}
    scenario = make_scenario(fleet={"count": 20, "binds": 1}, behaviours=only_orders,
                             load={"duration": 0, "count": 20, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, expect=expect)
    assert run.summary["failures_by_step"] == {"sp_notice": {"end": 1}}
    dialogues = run.summary["dialogues"]
    assert dialogues["started"] == dialogues["completed"] + dialogues["failed"] and dialogues["failed"] == 0
    assert run.faults == 1 and run.exit_code() == 1 and run.failures[0]["at"] <= run.summary["duration_s"]


def test_the_simulators_own_errors_fail_the_run_as_internal_errors(smsgw_fleet, tmp_path: Path, monkeypatch, caplog) -> None:  # noqa: F811
    """The simulator's own code raises: after the help dialogue of every subscriber whose number ends in 3 or 7, and
    after every survey answer (a reaction), or before it began for numbers ending in 0 or 5. Before, such a dialogue or reaction just ended: nothing was recorded, the
    subscriber stayed busy, and the run passed (started 108, completed 56, failed 0). Each is now a failed dialogue of
    its kind at the step 'internal error', naming the exception, with its transcript; the subscriber retires; the
    run fails; the report counts them apart; each place's traceback is logged once. One raised before its dialogue
    began shows no transcript, not the subscriber's previous dialogue's (here the help that the survey followed)."""
    real_help, real_survey = behaviours.help_text, behaviours.answer_survey

    async def help_then_raise(phone, env):
        result = await real_help(phone, env)
        if phone.msisdn[-1] in "37":
            raise RuntimeError("help broke")
        return result

    async def survey_then_raise(phone, env, survey, fields, variant, arrived):
        if phone.msisdn[-1] in "05":
            raise KeyError(2)
        await real_survey(phone, env, survey, fields, variant, arrived)
        raise KeyError(2)

    monkeypatch.setattr(behaviours, "help_text", help_then_raise)
    monkeypatch.setattr(behaviours, "answer_survey", survey_then_raise)
    scenario = make_scenario(fleet={"count": 100, "binds": 1, "sp_receivers": []}, behaviours=HELP_ONLY,
                             reactions={"survey": {"valid": 1, "invalid": 0, "late": 0, "ignore": 0}},
                             load={"duration": 0, "count": 60, "concurrency": 5})  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="simulator.fleet"):
        run = smsgw_fleet(scenario, config=SURVEYS, report=str(tmp_path / "report"))
    summary, dialogues = run.summary, run.summary["dialogues"]
    helps, ratings = run.outcomes["help"]["failed"], run.outcomes["rating"]["failed"]
    assert helps > 0 and ratings > 0 and run.outcomes["rating"] == {"failed": ratings} == {"failed": dialogues["reactions"]}
    assert summary["failures_by_step"] == {"help": {"internal error": helps}, "rating": {"internal error": ratings}}
    # Every dialogue started ended, and every subscriber with a failure retired.
    assert dialogues["started"] == dialogues["completed"] + dialogues["failed"] and dialogues["failed"] == helps + ratings
    assert summary["fleet"]["retired_subscribers"] == run.failed and "cancelled_at_drain" not in summary["fleet"]["stats"]
    help_failure = next(f for f in run.failures if f["kind"] == "help")
    assert help_failure["msisdn"][-1] in "37" and help_failure["error"].startswith("RuntimeError: help broke at ")
    assert [line["peer"] for line in help_failure["transcript"]] == ["10086", "10086"]  # the help dialogue so far
    rating_failures = [f for f in run.failures if f["kind"] == "rating"]
    assert all(f["error"].startswith("KeyError: 2 at ") for f in rating_failures)
    before, after = ([f["transcript"] for f in rating_failures if (f["msisdn"][-1] in "05") == began] for began in (True, False))
    assert before and after and before == [[]] * len(before) and {t[0]["peer"] for t in after} == {"10086700"}
    misses = run.misses()
    assert run.exit_code() == 1 and misses == [(f"{run.failed} dialogues failed (tolerated: 0); {run.failed} of them the "
                                                "simulator's own internal errors, not the target's")]  # fmt: skip
    assert summary["internal_errors"]["count"] == run.failed
    assert sorted(m.split(" at ")[0] for m in summary["internal_errors"]["first"]) == [
        "help: RuntimeError: help broke", "rating: KeyError: 2", "rating: KeyError: 2"]  # (each place's first)
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == {"result": "FAIL", "misses": misses}
    assert report["internal_errors"] == summary["internal_errors"]
    assert "internal errors of the simulator itself" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert f"INTERNAL ERRORS of the simulator itself: {run.failed}" in str(run)
    logged = [r for r in caplog.records if r.name == "simulator.fleet"]
    assert len(logged) == 3 and all(r.exc_info for r in logged), [r.getMessage() for r in logged]


def test_an_error_of_the_fleets_own_bookkeeping_after_a_dialogue_is_a_fault(smsgw_fleet, monkeypatch) -> None:  # noqa: F811
    """Past the behaviour, the fleet's own bookkeeping raises as each dialogue ends (Fleet._conclude). Before, that
    was counted in a statistic nobody judged. Each is a fault of the kind 'internal', and the run fails."""

    async def conclude_raises(self, phone, result, *, reaction=False):
        raise ValueError("bookkeeping broke")

    monkeypatch.setattr(Fleet, "_conclude", conclude_raises)
    run = smsgw_fleet(help_scenario(count=5, concurrency=5))
    assert run.faults == 5 and run.summary["failures_by_step"] == {"internal": {"internal error": 5}}
    assert run.failures[0]["error"].startswith("ValueError: bookkeeping broke at e2e/test_fleet.py:")
    assert run.summary["internal_errors"]["count"] == 5 and run.exit_code() == 1


def test_chatter_failures_are_grouped_by_step_not_by_peer(smsgw_fleet) -> None:
    """The handset account throttled to 20 texts/s refuses chat MO with ESME_RTHROTTLED. Before, each failure's
    step named the peer's number ('chat->8613800000021'): one line per subscriber in the result."""
    only_chatter = {name: {"weight": 0} for name in ("query", "order", "spam", "spammer", "help")} | {"chatter": {"weight": 1}}
    scenario = make_scenario(fleet={"count": 100, "binds": 1, "sp_receivers": []}, behaviours=only_chatter,
                             load={"duration": 0, "count": 150, "concurrency": 32})  # fmt: skip
    run = smsgw_fleet(scenario, config={"accounts": [{"system_id": "handset", "throughput": 20}]})
    assert run.failed > 1 and run.summary["failures_by_step"] == {"chatter": {"chat->subscriber": run.failed}}
    assert "ESME_RTHROTTLED" in run.failures[0]["error"]


def test_the_command_lines_verdict_and_report_flags_work_as_keywords(tmp_path: Path) -> None:
    """min_rate, max_p99_ms, report (and any flag the API did not take) were dropped: assert_ok passed a run the
    command line with the same flags failed, and no report was written."""
    report = tmp_path / "report"
    with FleetController() as controller:
        run = controller.run(help_scenario(), min_rate=10_000, max_p99_ms=0.001, report=str(report))
        judged_so_too = controller.run(help_scenario(), start="8613800100000", max_failures=0, max_lag_ms=10_000)
    assert run.failed == 0 and not run.ok and run.exit_code() == 1
    with pytest.raises(AssertionError, match=r"above --max-p99-ms 0.001") as failed:
        run.assert_ok()
    assert "--min-rate 10000" in str(failed.value)
    verdict = json.loads((report / "report.json").read_text(encoding="utf-8"))["verdict"]
    assert verdict["result"] == "FAIL" and verdict["misses"] == run.misses() and len(verdict["misses"]) == 2
    assert (report / "report.html").is_file()
    assert run.exit_code(min_rate=0, max_p99_ms=10_000) == 0  # given here, they judge instead of the run's
    assert judged_so_too.ok and judged_so_too.thresholds == {"max_failures": 0, "max_lag_ms": 10_000.0}


def test_target_config_as_a_keyword_is_what_the_fleet_expects(tmp_path: Path) -> None:
    """FleetController.run expected its gateway's config whatever target_config named (--target-config)."""
    expect = tmp_path / "expect.toml"
    shipped = DEFAULT_CONFIG.read_text(encoding="utf-8")
    assert shipped.count('query_keyword = "0000"') == 1
    expect.write_text(shipped.replace('query_keyword = "0000"', 'query_keyword = "9999"'), encoding="utf-8")
    with FleetController() as controller:
        run = controller.run(help_scenario(), target_config=str(expect))
    assert run.exit_code() == 1 and run.summary["failures_by_step"] == {"help": {"help->help": run.failed}}


@pytest.mark.parametrize(("flags", "error"), [
    ({"durration": 1}, r"unknown flag 'durration'; did you mean duration\?"),
    ({"min_rat": 190}, r"unknown flag 'min_rat'; did you mean min_rate\?"),
    ({"quiet": True}, r"quiet: the Python API shows no progress"),
])  # fmt: skip
def test_a_flag_the_api_does_not_take_is_an_error_naming_it(flags, error: str) -> None:
    """A misspelt durration=1 ran the default 10 s."""
    with FleetController() as controller, pytest.raises(TypeError, match=error):
        controller.run(help_scenario(), **flags)


def test_values_the_command_line_refuses_are_refused_before_the_run() -> None:
    with FleetController() as controller:
        for flags, error in (({"min_rate": float("nan")}, r"min_rate=nan: expected a finite value >= 0"),
                             ({"max_p99_ms": 0}, r"max_p99_ms=0: expected a finite value > 0"),
                             ({"report": str(Path(__file__))}, r"report=.*: is a file, not a directory"),
                             # values the gateway's config refuses (they raised FleetError, no ValueError)
                             ({"start": "13800000001"}, r"fleet.start: expected an MSISDN in international form"),
                             ({"start": "8613700000001"}, r"fleet.start/fleet.count: .* not all numbers of the bind ")):  # fmt: skip
            with pytest.raises(ValueError, match=error):
                controller.run(help_scenario(), **flags)


def test_a_chatter_run_on_another_number_plan_needs_no_reported_numbers_of_it(smsgw_fleet) -> None:  # noqa: F811
    """README's recipe against another SMSC (chatter only: spam reports, spammers and spam reactions off), on a UK
    number plan from 447700900000. Before, it exited 2 naming behaviours.spam.reported_start, numbers of the built-in
    plan (8613100000000) that such a run never reports; a run that reports spam still has them checked."""
    uk = {"gateway": {"country_code": "44", "national_number_length": 10},
          "accounts": [{"system_id": a, "numbers": [n]} for a, n in (("handset", "447700"), ("handset2", "447701"),
                                                                       ("carrier", "447702"))]}  # fmt: skip
    off = {kind: {"weight": 0} for kind in ("query", "order", "spam", "spammer", "help")}
    chatter = make_scenario(fleet={"count": 20, "binds": 1, "start": "447700900000", "sp_receivers": []},
                            behaviours=off | {"chatter": {"weight": 1}}, reactions={"spam": {"report": 0, "two_step": 0}},
                            load={"duration": 0, "count": 20, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(chatter, config=uk)
    run.assert_ok()
    assert run.outcomes == {"chatter": {"delivered": 20}}
    reporting = dataclasses.replace(chatter, behaviours=dataclasses.replace(
        chatter.behaviours, spam=dataclasses.replace(chatter.behaviours.spam, weight=1)))
    with pytest.raises(ValueError, match=r"behaviours.spam.reported_start: expected an MSISDN .* country code 44"):
        smsgw_fleet(reporting, config=uk)


CA = str(Path(__file__))  # a file that exists: only TLS being off is wrong with it


@pytest.mark.parametrize(("flags", "error"), [
    ({"duration": 1, "count": 5}, (r"^count=5: not allowed with duration=1, as the command line's --count is not "
                                   r"with --duration")),
    ({"rate": 10, "concurrency": 5}, r"^concurrency=5: not allowed with rate=10"),
    ({"ca": CA, "insecure": True}, r"^insecure=True: not allowed with ca="),
    ({"insecure": True}, (r"^insecure=True: applies to TLS only, and TLS is off: add tls=True \(or tls = true in "
                          r"the \[target\] of ")),
    ({"ca": CA, "tls": False}, r"^ca='.*test_fleet.py': applies to TLS only, and TLS is off"),
    ({"max_failures": 1.5}, r"^max_failures=1.5: invalid int value"),
    ({"max_failures": 2.0}, r"^max_failures=2.0: invalid int value"),  # as the command line reads "2.0"
    ({"max_failures": True}, r"^max_failures=True: invalid int value"),
])  # fmt: skip
def test_flags_the_command_line_refuses_together_or_without_tls_are_refused(flags, error: str) -> None:
    """The API ran what the command line refuses: count=5 dropped duration=1, concurrency=5 dropped rate=10 (the last
    won), insecure and ca were ignored without TLS (plain SMPP to a TLS port), max_failures=1.5 tolerated 1."""
    with FleetController() as controller, pytest.raises(ValueError, match=error):
        controller.run(help_scenario(), **flags)


def test_ca_and_insecure_apply_when_tls_is_on_by_keyword_or_scenario() -> None:
    tls_on = help_scenario()
    tls_on = dataclasses.replace(tls_on, target=dataclasses.replace(tls_on.target, tls=True))
    with FleetController() as controller:
        for scenario, flags in ((help_scenario(), {"tls": True, "insecure": True}), (tls_on, {"ca": CA})):
            with pytest.raises(FleetError, match=r"target\.(tls|ca)"):  # past the flags: the plain port fails TLS
                controller.run(scenario, timeout=2, **flags)
        assert controller.run(help_scenario(), max_failures="0", insecure=False).ok  # as the command line's text


def test_the_summary_is_the_json_reports_data(tmp_path: Path) -> None:
    """run.summary lacked the report's title, run, scenario and verdict (README: the JSON report's data)."""
    scenario = tmp_path / "s.toml"
    scenario.write_text("[behaviours.spammer]\nweight = 0\n", encoding="utf-8")
    flags = ["--subscribers", "20", "--binds", "1", "--count", "20", "--scenario", str(scenario)]
    with FleetController() as controller:
        run = controller.run(scenario, subscribers=20, binds=1, count=20, max_p99_ms=10_000)
        report = tmp_path / "report"
        done = subprocess.run([sys.executable, "-m", "gateway", "simulate", "--port", str(controller.target[1]), *flags,
                               "--start", "8613800100000", "--quiet", "--report", str(report)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert list(run.summary) == list(data)  # the same keys, in the same order
    assert run.summary["verdict"] == {"result": "PASS", "misses": []} and run.summary["title"] == data["title"]
    assert run.summary["scenario"]["file"] == str(scenario) and run.summary["scenario"]["fleet"]["count"] == 20
    assert run.summary["scenario"]["target"]["password"] == "***" and run.summary["run"]["host"] == data["run"]["host"]
    run.assert_ok()
