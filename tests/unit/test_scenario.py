"""Fleet scenarios (simulator/scenario.py): the default file, validation naming file and key, command-line
overrides; the fleet's numbering (address_range per bind) and the CLI's verdicts."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import tomllib
from pathlib import Path

import pytest

from simulator.cli import verdicts
from simulator.numbering import MAX_ADDRESS_RANGE, address_range, blocks, exact_range
from simulator.pool import Pool
from simulator.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_default_file_holds_the_built_in_defaults_and_documents_every_key() -> None:
    scenario = load_scenario()
    assert scenario == parse_scenario({}, DEFAULT_SCENARIO)  # the file says what the defaults are
    assert scenario.load.mode == "closed" and scenario.fleet.mode == "trx"
    assert scenario.behaviours.weights() == {"query": 3, "order": 3, "spam": 1, "chatter": 1, "spammer": 0.5, "help": 0.5}
    json.dumps(scenario.to_dict())  # the report embeds it

    with open(DEFAULT_SCENARIO, "rb") as f:
        raw = tomllib.load(f)

    import typing

    def walk(cls: type, table: dict, where: str) -> None:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name == "source":
                continue
            assert field.name in table, f"{where}{field.name} is not documented in default.toml"
            if dataclasses.is_dataclass(hints[field.name]):
                walk(hints[field.name], table[field.name], f"{where}{field.name}.")

    walk(Scenario, raw, "")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[load]\nmode = "fast"\n', "load.mode", 'expected "closed" or "open"'),
        ("[fleet]\nbindz = 3\n", "fleet.bindz", "unknown key"),
        ("colour = 1\n", "colour", "unknown key"),
        ('[fleet]\ncount = "many"\n', "fleet.count", "expected an integer"),
        ("[target]\ntls = 1\n", "target.tls", "expected true or false"),
        ('[fleet]\nrebind = "yes"\n', "fleet.rebind", "expected true or false"),
        ("[load]\ncount = 10\n", "load.duration", "exactly one of load.duration"),
        ("[load]\nduration = 0\n", "load.duration", "exactly one of load.duration"),
        ("[behaviours.order]\nconfirm = 0\ndecline = 0\nignore = 0\n", "behaviours.order", "every weight"),
        ("[behaviours.spam]\nweight = -1\n", "behaviours.spam.weight", ">= 0"),
        ('[fleet]\nstart = "8613000000005"\n', "spammers.start", "overlap the fleet"),
        ('[fleet]\nmode = "rx"\n', "fleet.mode", '"trx" or "tx+rx"'),
        ('[load]\nmode = "open"\nrate = inf\n', "load.rate", "expected a finite number; got inf"),
        ('[load]\nmode = "open"\nrate = 0\n', "load.rate", "expected dialogues per second > 0"),
        ("[load]\nduration = nan\n", "load.duration", "expected a finite number; got nan"),
        ("[behaviours.query]\nweight = nan\n", "behaviours.query.weight", "expected a finite number; got nan"),
        ("[reactions.survey]\nlate_max_wait = -inf\n", "reactions.survey.late_max_wait", "expected a finite number"),
        ("[fleet]\nbinds = 3\ncount = 2\n", "fleet.binds", "at most one bind per subscriber"),
        ('[fleet]\nstart = "99999999999999"\ncount = 5\n', "fleet.count", "past the number length"),
        ('[target]\nca = "no-such-ca.pem"\n', "target.ca", "no such file"),
        ("[target]\nport = 70000\n", "target.port", "1..65535"),
        ('[target]\npassword = "far-too-long"\n', "target.password", "at most 8"),
        ("[reactions.survey]\nvalid = 0\ninvalid = 0\nlate = 0\nignore = 0\n", "reactions.survey", "every weight"),
        ("[fleet]\nsp_receivers = [{ system_id = 3 }]\n", "fleet.sp_receivers[0].system_id", "expected a string"),
        ('[behaviours.query]\nweight = 0\n[behaviours.order]\nweight = 0\n[behaviours.spam]\nweight = 0\n'
         '[behaviours.chatter]\nweight = 0\n[behaviours.spammer]\nweight = 0\n[behaviours.help]\nweight = 0\n',
         "behaviours", "nothing to do"),
        # Refusals no test ran (coverage review): each a run that could not have done what the file says.
        ("fleet = 3\n", "fleet", "expected a table"),
        ("[fleet]\nsp_receivers = 3\n", "fleet.sp_receivers", "expected a list; got 3"),
        ('[target]\nhost = ""\n', "target.host", "empty"),
        ('[target]\nsystem_id = ""\n', "target.system_id", "empty"),
        ('[target]\nconfig = "no-such-config.toml"\n', "target.config", "no such file"),
        ("[fleet]\ncount = 0\n", "fleet.count", "at least 1 subscriber"),
        ("[fleet]\nbinds = 0\n", "fleet.binds", "expected 1..1000; got 0"),
        ("[fleet]\nwindow = 0\n", "fleet.window", "expected 1..10000; got 0"),
        ("[load]\nconcurrency = 0\n", "load.concurrency", "at least 1"),
        ("[load]\nramp_up = -1\n", "load.ramp_up", "expected seconds >= 0"),
        ("[load]\nmax_in_flight = 0\n", "load.max_in_flight", "at least 1"),
        ("[load]\nduration = -1\n", "load.duration", "expected seconds >= 0"),
        ("[load]\ncount = -1\n", "load.count", "expected a count >= 0"),
        ("[load]\ntimeout = 0\n", "load.timeout", "expected seconds > 0"),
        ("[load]\ndrain = -1\n", "load.drain", "expected seconds >= 0"),
        ("[behaviours.order]\ndecline = -1\n", "behaviours.order.decline", "expected a weight >= 0"),
        ("[behaviours.query]\nunsubscribe = 1.5\n", "behaviours.query.unsubscribe", "a share between 0 and 1"),
        ("[behaviours.query]\nmax_serials = 0\n", "behaviours.query.max_serials", "at least 1"),
        ("[behaviours.chatter]\nlong = 2\n", "behaviours.chatter.long", "a share between 0 and 1"),
        ("[fleet]\ncount = 1\nbinds = 1\n", "behaviours.chatter.weight", "chatter needs at least 2 subscribers"),
        ("[behaviours.spam]\nreported_count = 0\n", "behaviours.spam.reported_count", "at least 1"),
        ('[behaviours.spam]\nreported_start = "8613800000100"\n', "behaviours.spam.reported_start",
         "the reported numbers overlap the fleet's subscribers"),
        ("[spammers]\ncount = 0\n", "spammers.count", "behaviours.spammer needs at least 1 spammer"),
        ("[spammers]\nbinds = 11\n", "spammers.binds", "expected 1..10 (spammers.count)"),
        ('[spammers]\nstart = "8613100000005"\n', "spammers.start",
         "the spammers' numbers overlap behaviours.spam's reported numbers"),
        ("[behaviours.spammer]\nvictims = 0\n", "behaviours.spammer.victims", "at least 1"),
        ("[reactions.survey]\nlate_max_wait = -1\n", "reactions.survey.late_max_wait", "expected seconds >= 0"),
    ],
)  # fmt: skip
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert (error.value.path, error.value.key) == (str(path), key)
    assert problem in error.value.problem
    assert str(error.value).startswith(f"{path}: {key}: ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ScenarioError, match="is a directory; expected a TOML file"):
        load_scenario(tmp_path)
    with pytest.raises(ScenarioError, match=r"s\.toml: -: not valid TOML"):
        load_scenario(write(tmp_path, "[load\n"))


def test_relative_files_are_found_beside_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not really a certificate")
    scenario = load_scenario(write(tmp_path, '[target]\ntls = true\nca = "ca.pem"\n'))
    assert scenario.target.ca == str(tmp_path / "ca.pem") and scenario.target.tls


def test_command_line_overrides() -> None:
    base = load_scenario()
    opened = base.override(rate=250, ramp_up=5, count=1000, port=2776, host="smsc.example", subscribers=500, binds=2)
    assert (opened.load.mode, opened.load.rate, opened.load.ramp_up) == ("open", 250.0, 5.0)
    assert (opened.load.count, opened.load.duration) == (1000, 0.0)
    assert (opened.target.host, opened.target.port, opened.fleet.count, opened.fleet.binds) == ("smsc.example", 2776, 500, 2)
    closed = opened.override(concurrency=8, duration=30)
    assert (closed.load.mode, closed.load.concurrency, closed.load.duration, closed.load.count) == ("closed", 8, 30.0, 0)
    assert closed.load.ramp_up == 0.0  # the open loop's: a closed loop would ignore it (its report showed it)
    assert base.override() == base and base.override(port=None) == base
    assert base.override(tls=True, verify=False).target.verify is False
    with pytest.raises(ScenarioError, match=r"command line: fleet.binds: 4 binds for 2 subscribers"):
        base.override(subscribers=2)
    with pytest.raises(ScenarioError, match=r"command line: target.port"):
        base.override(port=0)
    with pytest.raises(ScenarioError, match=r"command line: load.timeout: expected a finite number; got nan"):
        base.override(timeout=float("nan"))
    with pytest.raises(ScenarioError, match=r"command line: load.rate: expected a finite number; got inf"):
        base.override(rate=float("inf"))
    with pytest.raises(TypeError, match=r"unknown flag 'durration'; did you mean duration\?"):  # it was dropped
        base.override(durration=1)
    for name, value in (("count", 5.5), ("concurrency", 2.5), ("binds", 2.0), ("port", 4109.5), ("seed", 1.5), ("window", True)):
        with pytest.raises(ScenarioError, match=rf"command line: {name}: expected an integer; got {value!r}"):
            base.override(**{name: value})  # as --count 5.5 is refused: 5.5 ran 5, 1.5 was kept as a seed
    for name in ("duration", "rate", "ramp_up", "timeout", "drain"):
        with pytest.raises(ScenarioError, match=rf"command line: {name}: expected a number; got True"):
            base.override(**{name: True})  # duration=True ran 1 s, ramp_up=True was kept as True
    with pytest.raises(ScenarioError, match=r"command line: fleet.rebind: expected true or false; got 'yes'"):
        base.override(rebind="yes")
    assert base.override(rebind=True).fleet.rebind and not base.override(rebind=None).fleet.rebind


def test_subscribers_split_into_blocks_with_an_exact_address_range_each() -> None:
    assert blocks("8613800000000", 10, 3) == [(8613800000000, 8613800000003), (8613800000004, 8613800000006),
                                               (8613800000007, 8613800000009)]  # fmt: skip
    assert address_range(8613800000000, 8613800000999) == r"8613800000\d{3}"
    assert address_range(8613800000005, 8613800000005) == "8613800000005"
    rng = random.Random(7)
    for _ in range(400):
        width = rng.choice([1, 2, 3, 4, 5])
        lo = 8613800000000 + rng.randrange(10**width)
        hi = lo + rng.randrange(10**width)
        exact, bound = re.compile(exact_range(lo, hi)), re.compile(address_range(lo, hi))
        assert len(bound.pattern) <= MAX_ADDRESS_RANGE
        for n in range(lo - 40, hi + 41, max(1, (hi - lo) // 300)):
            assert bool(exact.fullmatch(str(n))) == (lo <= n <= hi), (lo, hi, exact.pattern, n)
            if lo <= n <= hi:
                assert bound.fullmatch(str(n)), (lo, hi, bound.pattern, n)
    # Too many pieces for 40 characters: the common prefix covers the block (a superset).
    assert address_range(8613800012345, 8613800987654) == r"8613800\d{6}"


def test_idle_pool_takes_at_random_and_removes_in_constant_time() -> None:
    pool, rng = Pool(), random.Random(1)
    items = [object() for _ in range(10)]
    for item in items:
        pool.add(item)
    pool.add(items[0])
    assert len(pool) == 10
    assert pool.remove(items[3]) and not pool.remove(items[3]) and len(pool) == 9
    taken = {id(pool.take(rng)) for _ in range(9)}
    assert len(taken) == 9 and id(items[3]) not in taken and pool.take(rng) is None
    pool.add(items[5])
    assert pool.take(rng, lambda item: False) is None and len(pool) == 1


def test_verdicts() -> None:
    summary = {"dialogues": {"started": 300, "completed": 298, "failed": 2}, "throughput": {"ok_per_s": 150.0},
               "latency_ms": {"p99": 40.0}}  # fmt: skip
    assert verdicts(summary) == ["2 dialogues failed (tolerated: 0)"]
    assert verdicts(summary, max_failures=2) == []
    assert verdicts(summary, max_failures=1) == ["2 dialogues failed (tolerated: 1)"]  # one beyond it fails the run
    assert verdicts(summary, max_failures=5, min_rate=200, max_p99_ms=30) == [
        "150.0 dialogues/s ended ok in the steady state, below --min-rate 200", "p99 latency 40.0 ms, above --max-p99-ms 30",
    ]  # fmt: skip
    # A rate just below --min-rate fails (rounded, 199.5 passed as 200); one exactly at it passes.
    assert verdicts(summary | {"throughput": {"ok_per_s": 199.5}}, max_failures=2, min_rate=200) == [
        "199.5 dialogues/s ended ok in the steady state, below --min-rate 200"]
    assert verdicts(summary | {"throughput": {"ok_per_s": 200.0}}, max_failures=2, min_rate=200) == []
    # A run that checked nothing (FleetRun.ok, assert_ok and the exit status all ask this) is no pass.
    nothing = {"dialogues": {"started": 3, "completed": 0, "failed": 0}, "throughput": {"ok_per_s": None},
               "latency_ms": {"p99": None}}  # fmt: skip
    assert verdicts(nothing) == ["no dialogue ended (3 started), so nothing was checked"]


def test_a_fleet_refuses_keywords_the_target_does_not_offer() -> None:
    from simulator.fleet import Fleet, FleetError

    scenario = parse_scenario({"behaviours": {"order": {"keywords": ["XX"]}}}, DEFAULT_SCENARIO)
    with pytest.raises(FleetError) as refused:
        Fleet(scenario)
    assert refused.value.key == "behaviours.order.keywords" and "TT" in refused.value.problem
    assert Fleet(parse_scenario({"behaviours": {"order": {"keywords": ["tq"]}}}, DEFAULT_SCENARIO)).env.order_services[0].id == "sina-weather"


def test_a_fleet_refuses_numbers_outside_the_targets_number_plan() -> None:
    """A national-form start (13801400000) passes the digits-and-length check, binds address ranges no MT is ever
    sent to, and every dialogue "failed". International form is the target config's country code and number length."""
    from simulator.fleet import Fleet, FleetError
    from simulator.testing import gateway_config

    with pytest.raises(FleetError) as refused:
        Fleet(parse_scenario({"fleet": {"start": "13801400000"}}, DEFAULT_SCENARIO))
    assert refused.value.key == "fleet.start"
    assert "international form" in refused.value.problem and "country code 86, then 11 digits" in refused.value.problem
    assert "got '13801400000' (national form of 8613801400000?)" in refused.value.problem
    with pytest.raises(FleetError) as refused:
        Fleet(parse_scenario({"spammers": {"start": "13000000000"}}, DEFAULT_SCENARIO))
    assert refused.value.key == "spammers.start"

    uk = gateway_config(gateway={"country_code": "44", "national_number_length": 10},
                        accounts=[{"system_id": name, "numbers": [prefix]} for name, prefix in
                                  (("handset", "4477"), ("handset2", "4478"), ("carrier", "4479"))])  # fmt: skip
    uk_numbers = {"fleet": {"start": "447700900000"}, "spammers": {"start": "447900000000"},
                  "behaviours": {"spam": {"reported_start": "447800000000"}}}  # fmt: skip
    assert Fleet(parse_scenario(uk_numbers, DEFAULT_SCENARIO), config=uk).scenario.fleet.start == "447700900000"
    with pytest.raises(FleetError) as refused:
        Fleet(load_scenario(), config=uk)
    assert refused.value.key == "fleet.start" and "country code 44, then 10 digits" in refused.value.problem


def test_a_fleet_takes_a_start_number_that_only_begins_with_a_codes_digits() -> None:
    """With country code 33, spam-report code 33700 is 3333700... in international form: 33700000001 is a subscriber
    (the gateway takes MO from it), and the fleet refused it as a service's number."""
    from simulator.fleet import Fleet
    from simulator.testing import gateway_config

    fr = gateway_config(gateway={"country_code": "33", "national_number_length": 9}, services={"spam_report": "33700"},
                        accounts=[{"system_id": name, "numbers": [prefix]} for name, prefix in
                                  (("handset", "337"), ("handset2", "336"), ("carrier", "335"))])  # fmt: skip
    numbers = {"fleet": {"start": "33700000001"}, "spammers": {"start": "33500000000"},
               "behaviours": {"spam": {"reported_start": "33600000000"}}}  # fmt: skip
    assert Fleet(parse_scenario(numbers, DEFAULT_SCENARIO), config=fr).scenario.fleet.start == "33700000001"


def test_a_fleet_refuses_a_start_number_that_is_a_service_number() -> None:
    """8610669160000 has a subscriber number's form but is SP code 1066916 with an extension: the gateway refuses every
    MO from it (ESME_RINVSRCADR), and the fleet used to start anyway, every dialogue failing."""
    from simulator.fleet import Fleet, FleetError

    for key, overrides in [("fleet.start", {"fleet": {"start": "8610669160000"}}),
                           ("behaviours.spam.reported_start", {"behaviours": {"spam": {"reported_start": "8610086123456"}}})]:  # fmt: skip
        with pytest.raises(FleetError) as refused:
            Fleet(parse_scenario(overrides, DEFAULT_SCENARIO))
        assert refused.value.key == key and "is a service's number" in refused.value.problem


@pytest.mark.parametrize("path", sorted(DEFAULT_SCENARIO.parent.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem and scenario.source == str(path)


def test_a_fleet_refuses_to_report_numbers_that_are_no_mobile_numbers_of_the_target() -> None:
    """The gateway refuses a spam report of a number outside its mobile_prefixes: every spam dialogue would fail."""
    from simulator.fleet import Fleet, FleetError

    for key, overrides, outside in [
        ("behaviours.spam.reported_start", {"behaviours": {"spam": {"reported_start": "8612000000000"}}}, "8612000000000"),
        ("spammers.start", {"spammers": {"start": "8619999999995", "count": 10}}, "8620000000000"),
    ]:  # fmt: skip
        with pytest.raises(FleetError) as refused:
            Fleet(parse_scenario(overrides, DEFAULT_SCENARIO))
        assert refused.value.key == key and f"{outside} is not (gateway.mobile_prefixes" in refused.value.problem
