"""Fleet scenarios: a TOML file read into `Scenario`, checked key by key.

A scenario says what to drive (the target server, its credentials and TLS,
the gateway config that describes its short codes and reply texts), with
whom (a range of subscriber MSISDNs over N binds; spammers on another
account), how hard (closed loop with C dialogues in flight, or open loop at R
dialogues/s with a ramp-up; for a duration or a count) and what the handsets
do (behaviours with weights, and how they react to what arrives unasked).
`simulator/scenarios/default.toml` documents every key.

    scenario = load_scenario("simulator/scenarios/default.toml")
    scenario = scenario.override(port=2775, duration=5, concurrency=16)

Any mistake is a `ScenarioError` naming the file and the key:
`simulator/scenarios/x.toml: load.mode: expected "closed" or "open"; got "fast"`.
Unknown keys are mistakes too (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, got, read_toml
from gateway.numbers import ascii_digits
from gateway.smpp.pdu import BindTransceiver

__all__ = [
    "DEFAULT_SCENARIO",
    "FLAGS",
    "Account",
    "Behaviours",
    "Scenario",
    "ScenarioError",
    "check_flags",
    "load_scenario",
    "parse_scenario",
]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = SCENARIOS / "default.toml"
# A bind's C-octet strings and the octets SMPP allows each (its NUL excluded), as the codec encodes them: Latin-1.
BIND_OCTETS = {name: size - 1 for name, _kind, size, _status in BindTransceiver.FIELDS
               if name in ("system_id", "password", "system_type")}  # fmt: skip
# What Scenario.override takes: the command line's flags that set the scenario, and a few keys no flag sets.
FLAGS = ("host", "port", "system_id", "password", "tls", "ca", "verify", "target_config", "duration", "count", "rate",
         "concurrency", "ramp_up", "binds", "subscribers", "start", "mode", "window", "rebind", "timeout", "seed", "drain")  # fmt: skip


_WHOLE_NUMBERS = frozenset({"port", "count", "concurrency", "binds", "subscribers", "seed", "window"})  # of FLAGS
_NUMBERS = _WHOLE_NUMBERS | {"duration", "rate", "ramp_up", "timeout", "drain"}


class ScenarioError(ValueError):
    """A scenario file (or a command-line override) that cannot be run: names the file and the key."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path, self.key, self.problem = str(path), key, problem


# --------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Account:
    system_id: str
    password: str = ""


@dataclass(frozen=True)
class Target:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "handset"
    password: str = "handset"
    system_type: str = ""
    tls: bool = False
    ca: str = ""  # CA file (PEM) that signed the server's certificate; "" = the system's CAs
    verify: bool = True  # false: accept any certificate (a test server's self-signed one)
    check_hostname: bool = True  # the certificate must name `host` (only with verify)
    config: str = ""  # the target's gateway config (short codes, reply texts, catalogue, thresholds); "" = built-in


@dataclass(frozen=True)
class FleetSpec:
    start: str = "8613800000000"  # first subscriber MSISDN (international form)
    count: int = 2000  # subscribers: start, start+1, ...
    binds: int = 4  # transceiver binds, or tx+rx pairs
    mode: str = "trx"  # "trx" | "tx+rx"
    window: int = 100  # outstanding requests per bind
    rebind: bool = False  # a bind the target drops is bound again (with back-off); false: its subscribers retire
    # SP accounts bound as receivers: their order-relation notices are counted against the fleet's orders
    sp_receivers: tuple[Account, ...] = (Account("sina", "sina"), Account("tencent", "tencent"))


@dataclass(frozen=True)
class Load:
    mode: str = "closed"  # "closed" | "open"
    concurrency: int = 32  # closed loop: dialogues in flight
    rate: float = 100.0  # open loop: dialogues started per second
    ramp_up: float = 0.0  # open loop: seconds from 0 to `rate`, linearly
    max_in_flight: int = 2000  # open loop: beyond this many dialogues in flight new ones are not started
    duration: float = 10.0  # seconds of load; 0 = run `count` dialogues
    count: int = 0  # dialogues to start; 0 = run for `duration`
    timeout: float = 5.0  # seconds each step waits for its reply
    drain: float = 30.0  # after the load: seconds given to dialogues and reactions still running
    seed: int = 1  # the random choices (behaviours, handsets, variants) repeat with it, one dialogue at a time


@dataclass(frozen=True)
class QueryBehaviour:
    weight: float = 3.0
    unsubscribe: float = 0.8  # share of listings answered with serial numbers (the rest: just looked)
    max_serials: int = 2  # serials in one answer, 1..max_serials ("1,3")


@dataclass(frozen=True)
class OrderBehaviour:
    weight: float = 3.0
    confirm: float = 6.0
    decline: float = 2.0
    ignore: float = 1.0  # never answer the confirmation: later listings must not show the service
    keywords: tuple[str, ...] = ()  # catalogue keywords ordered; () = every catalogue service


@dataclass(frozen=True)
class SpamBehaviour:
    weight: float = 1.0
    with_number: float = 3.0  # `<number>*<text>`
    two_step: float = 1.0  # the bare forwarded text, then the number when asked
    reported_start: str = "8613100000000"  # reported numbers are drawn from here (never a fleet number)
    reported_count: int = 1000000


@dataclass(frozen=True)
class ChatterBehaviour:
    weight: float = 1.0
    long: float = 0.1  # share of texts long enough to need two SMS


@dataclass(frozen=True)
class SpammerBehaviour:
    weight: float = 0.5
    victims: int = 8  # subscribers messaged per round


@dataclass(frozen=True)
class HelpBehaviour:
    weight: float = 0.5


@dataclass(frozen=True)
class Behaviours:
    query: QueryBehaviour = QueryBehaviour()
    order: OrderBehaviour = OrderBehaviour()
    spam: SpamBehaviour = SpamBehaviour()
    chatter: ChatterBehaviour = ChatterBehaviour()
    spammer: SpammerBehaviour = SpammerBehaviour()
    help: HelpBehaviour = HelpBehaviour()

    def weights(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name).weight for f in fields(self)}


@dataclass(frozen=True)
class Spammers:
    system_id: str = "carrier"
    password: str = "carrier"
    start: str = "8613000000000"
    count: int = 10
    binds: int = 1


@dataclass(frozen=True)
class SurveyReaction:
    valid: float = 6.0
    invalid: float = 1.0
    late: float = 1.0
    ignore: float = 2.0
    late_max_wait: float = 30.0  # a late answer waits out the survey's validity only when it is this short


@dataclass(frozen=True)
class SpamReaction:
    report: float = 3.0
    two_step: float = 1.0
    ignore: float = 1.0


@dataclass(frozen=True)
class Reactions:
    survey: SurveyReaction = SurveyReaction()
    spam: SpamReaction = SpamReaction()


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    description: str = "Every short-code dialogue, subscriber chatter and spammers, closed loop"
    target: Target = Target()
    fleet: FleetSpec = FleetSpec()
    load: Load = Load()
    behaviours: Behaviours = Behaviours()
    spammers: Spammers = Spammers()
    reactions: Reactions = Reactions()
    source: str = field(default="<scenario>", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The scenario as the report shows it (JSON-able; the report masks passwords)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        out["file"] = self.source
        return out

    def override(self, **flags: Any) -> Scenario:
        """The scenario with command-line values: host, port, system_id, password, tls, ca, verify, target_config,
        duration, count, rate (-> open loop), concurrency (-> closed loop), ramp_up, binds, subscribers, start,
        timeout, seed, mode (bind mode), window, rebind, drain. None means "keep the scenario's". Checked like the file; a
        flag it does not take is a TypeError."""
        check_flags(flags, FLAGS)
        flags = {k: v for k, v in flags.items() if v is not None}
        for name in _NUMBERS.intersection(flags):  # as the command line reads them: count=5.5 ran 5, duration=True 1 s
            kind = int if name in _WHOLE_NUMBERS else (int, float)
            if isinstance(flags[name], bool) or not isinstance(flags[name], kind):
                raise ScenarioError("command line", name, f"expected {_NAMES[int if kind is int else float]}; got {flags[name]!r}")
        target, fleet, load = self.target, self.fleet, self.load
        target_keys = {"host": "host", "port": "port", "system_id": "system_id", "password": "password", "tls": "tls",
                       "ca": "ca", "verify": "verify", "target_config": "config"}  # fmt: skip
        target = dataclasses.replace(target, **{target_keys[k]: v for k, v in flags.items() if k in target_keys})
        fleet_keys = {"binds": "binds", "subscribers": "count", "start": "start", "mode": "mode", "window": "window",
                      "rebind": "rebind"}  # fmt: skip
        fleet = dataclasses.replace(fleet, **{fleet_keys[k]: v for k, v in flags.items() if k in fleet_keys})
        changes: dict[str, Any] = {k: flags[k] for k in ("ramp_up", "timeout", "seed", "drain") if k in flags}
        if "duration" in flags:
            changes.update(duration=float(flags["duration"]), count=0)
        if "count" in flags:
            changes.update(count=int(flags["count"]), duration=0.0)
        if "rate" in flags:
            changes.update(mode="open", rate=float(flags["rate"]))
        if "concurrency" in flags:  # a closed loop: the scenario's open-loop ramp-up no longer applies (nor shows)
            changes.update(mode="closed", concurrency=int(flags["concurrency"]), ramp_up=flags.get("ramp_up", 0.0))
        load = dataclasses.replace(load, **changes)
        if flags.get("ramp_up") and load.mode == "closed":  # (a closed loop starts its `concurrency` at once)
            how = "concurrency given" if "concurrency" in flags else f"load.mode = \"closed\" in {self.source}"
            raise ScenarioError("command line", "ramp_up", f"applies to an open loop only (rate), and the load is a "
                                                           f"closed loop ({how}), which would ignore it")  # fmt: skip
        scenario = dataclasses.replace(self, target=target, fleet=fleet, load=load)
        _check(scenario, "command line")
        return scenario


def check_flags(given: Iterable[str], known: Iterable[str]) -> None:
    """A flag none of `known` is a TypeError naming it: dropped, a misspelt `durration=1` ran the default 10 s."""
    known = sorted(known)
    for flag in given:
        if flag not in known:
            near = difflib.get_close_matches(flag, known, n=1)
            meant = f"did you mean {near[0]}? " if near else ""
            raise TypeError(f"unknown flag {flag!r}; {meant}expected one of {known}")


# -------------------------------------------------------------------- loading
def load_scenario(path: Path | str | None = None) -> Scenario:
    """The scenario in `path` (default: simulator/scenarios/default.toml); raises ScenarioError."""
    path = Path(path) if path is not None else DEFAULT_SCENARIO
    try:
        raw = read_toml(path)  # as a gateway config is read: not found, a directory, not UTF-8, not TOML...
    except ConfigError as exc:
        raise ScenarioError(path, "-", exc.problem) from None
    return parse_scenario(raw, path)


def parse_scenario(raw: dict[str, Any], path: Path | str = "<scenario>") -> Scenario:
    """A scenario from a parsed TOML table; relative file names (target.ca, target.config) are resolved
    against the scenario file's directory."""
    scenario = _table(Scenario, {k: v for k, v in raw.items()}, "", path)
    scenario = dataclasses.replace(scenario, source=str(path))
    base = Path(path).parent if not str(path).startswith("<") else Path.cwd()
    target = scenario.target
    resolved = {}
    for key in ("ca", "config"):
        value = getattr(target, key)
        if value and not Path(value).is_absolute():
            candidate = base / value
            resolved[key] = str(candidate if candidate.exists() or not Path(value).exists() else Path(value))
    if resolved:
        scenario = dataclasses.replace(scenario, target=dataclasses.replace(target, **resolved))
    _check(scenario, path)
    return scenario


def _table(cls: type, table: Any, where: str, path: Path | str) -> Any:
    if not isinstance(table, dict):
        raise ScenarioError(path, where or "-", "expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in known:
            raise ScenarioError(path, name, f"unknown key; expected one of {sorted(known)}")
        values[key] = _value(value, hints[key], name, path)
    for f in fields(cls):
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ScenarioError(path, f"{where}.{f.name}" if where else f.name, "missing: it has no default")
    return cls(**values)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _value(value: Any, hint: Any, name: str, path: Path | str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _table(hint, value, name, path)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ScenarioError(path, name, f"expected a list; got {value!r}")
        return tuple(_value(v, item, f"{name}[{i}]", path) for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise ScenarioError(path, name, f"expected {_NAMES.get(hint, hint)}; {got(value, name)}")


# ------------------------------------------------------------------- checking
def _check(s: Scenario, path: Path | str) -> None:
    def fail(key: str, problem: str) -> None:
        raise ScenarioError(path, key, problem)

    _finite(s, "", fail)
    t, f, load, b = s.target, s.fleet, s.load, s.behaviours
    if not t.host:
        fail("target.host", "empty")
    if not 0 < t.port < 65536:
        fail("target.port", f"expected 1..65535; got {t.port}")
    _bind_account(t, "target", fail)
    _bind_octets(t.system_type, "system_type", "target.system_type", fail)
    if t.ca and not Path(t.ca).is_file():
        fail("target.ca", f"no such file: {t.ca}")
    if t.config and not Path(t.config).is_file():
        fail("target.config", f"no such file: {t.config}")

    _msisdn(f.start, "fleet.start", fail)
    if f.count < 1:
        fail("fleet.count", "at least 1 subscriber")
    if not 1 <= f.binds <= 1000:
        fail("fleet.binds", f"expected 1..1000; got {f.binds}")
    if f.binds > f.count:
        fail("fleet.binds", f"{f.binds} binds for {f.count} subscribers: at most one bind per subscriber")
    if f.mode not in ("trx", "tx+rx"):
        fail("fleet.mode", f'expected "trx" or "tx+rx"; got {f.mode!r}')
    if not 1 <= f.window <= 10000:
        fail("fleet.window", f"expected 1..10000; got {f.window}")
    if not isinstance(f.rebind, bool):  # (the file's value is read as one: a flag's from Python is checked here)
        fail("fleet.rebind", f"expected true or false; got {f.rebind!r}")
    if len(str(int(f.start) + f.count - 1)) != len(f.start):
        fail("fleet.count", f"{f.count} subscribers from {f.start} run past the number length")
    for i, account in enumerate(f.sp_receivers):
        _bind_account(account, f"fleet.sp_receivers[{i}]", fail)

    if load.mode not in ("closed", "open"):
        fail("load.mode", f'expected "closed" or "open"; got {load.mode!r}')
    if load.concurrency < 1:
        fail("load.concurrency", "at least 1")
    if load.rate <= 0:
        fail("load.rate", "expected dialogues per second > 0")
    if load.ramp_up < 0:
        fail("load.ramp_up", "expected seconds >= 0")
    if load.ramp_up and load.mode == "closed":  # (as Scenario.override refuses --ramp-up with one)
        fail("load.ramp_up", 'applies to an open loop only (load.mode = "open", rate), and the load is a closed loop, '
                             "which would ignore it")
    if load.max_in_flight < 1:
        fail("load.max_in_flight", "at least 1")
    if load.duration < 0:
        fail("load.duration", "expected seconds >= 0")
    if load.count < 0:
        fail("load.count", "expected a count >= 0")
    if (load.duration > 0) == (load.count > 0):
        fail("load.duration", "set exactly one of load.duration (seconds) and load.count (dialogues); the other = 0")
    if load.timeout <= 0:
        fail("load.timeout", "expected seconds > 0")
    if load.drain < 0:
        fail("load.drain", "expected seconds >= 0")

    weights = b.weights()
    for name, weight in weights.items():
        if weight < 0:
            fail(f"behaviours.{name}.weight", "expected a weight >= 0")
    if not any(w > 0 for w in weights.values()):
        fail("behaviours", "every weight is 0: nothing to do")
    _variants(b.order, "behaviours.order", ("confirm", "decline", "ignore"), fail)
    _variants(b.spam, "behaviours.spam", ("with_number", "two_step"), fail)
    if b.query.weight > 0 and not 0 <= b.query.unsubscribe <= 1:
        fail("behaviours.query.unsubscribe", "expected a share between 0 and 1")
    if b.query.max_serials < 1:
        fail("behaviours.query.max_serials", "at least 1")
    if not 0 <= b.chatter.long <= 1:
        fail("behaviours.chatter.long", "expected a share between 0 and 1")
    if b.chatter.weight > 0 and f.count < 2:
        fail("behaviours.chatter.weight", "chatter needs at least 2 subscribers (fleet.count)")
    _msisdn(b.spam.reported_start, "behaviours.spam.reported_start", fail)
    if b.spam.reported_count < 1:
        fail("behaviours.spam.reported_count", "at least 1")
    if _overlap((b.spam.reported_start, b.spam.reported_count), (f.start, f.count)):
        fail("behaviours.spam.reported_start", "the reported numbers overlap the fleet's subscribers")

    sp = s.spammers
    if b.spammer.weight > 0:
        _msisdn(sp.start, "spammers.start", fail)
        if sp.count < 1:
            fail("spammers.count", "behaviours.spammer needs at least 1 spammer")
        if not 1 <= sp.binds <= sp.count:
            fail("spammers.binds", f"expected 1..{sp.count} (spammers.count)")
        _bind_account(sp, "spammers", fail)
        if _overlap((sp.start, sp.count), (f.start, f.count)):
            fail("spammers.start", "the spammers' numbers overlap the fleet's subscribers")
        if _overlap((sp.start, sp.count), (b.spam.reported_start, b.spam.reported_count)):
            fail("spammers.start", "the spammers' numbers overlap behaviours.spam's reported numbers")
        if b.spammer.victims < 1:
            fail("behaviours.spammer.victims", "at least 1 (a round texts at most every subscriber)")

    _variants(s.reactions.survey, "reactions.survey", ("valid", "invalid", "late", "ignore"), fail, always=True)
    if s.reactions.survey.late_max_wait < 0:
        fail("reactions.survey.late_max_wait", "expected seconds >= 0")
    _variants(s.reactions.spam, "reactions.spam", ("report", "two_step", "ignore"), fail, always=True)


def _finite(table: Any, where: str, fail) -> None:
    """Every number of the scenario is finite: nan compares false with every bound below, inf passes the lower ones."""
    for f in fields(table):
        value, name = getattr(table, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            _finite(value, name, fail)
        elif isinstance(value, float) and not math.isfinite(value):
            fail(name, f"expected a finite number; got {value}")


def _variants(table: Any, where: str, names: tuple[str, ...], fail, *, always: bool = False) -> None:
    values = {n: getattr(table, n) for n in names}
    for n, v in values.items():
        if v < 0:
            fail(f"{where}.{n}", "expected a weight >= 0")
    if (always or table.weight > 0) and not any(v > 0 for v in values.values()):
        fail(where, f"every weight of {', '.join(names)} is 0")


def _bind_account(account: Any, where: str, fail) -> None:
    """An account's system_id (not empty) and password as its bind will carry them."""
    if not account.system_id:
        fail(f"{where}.system_id", "empty")
    _bind_octets(account.system_id, "system_id", f"{where}.system_id", fail)
    _bind_octets(account.password, "password", f"{where}.password", fail)


def _bind_octets(value: str, bind_field: str, key: str, fail) -> None:
    """A bind's C-octet string as the codec encodes it: Latin-1, no NUL (it ends the string), within SMPP's octets.
    A password is not shown."""
    shown = "it" if bind_field == "password" else repr(value)
    try:
        octets = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        lacks = "some of its characters" if bind_field == "password" else repr(value[exc.start])
        fail(key, f"{shown} cannot be sent: a bind carries it in Latin-1, which lacks {lacks}")
    if b"\0" in octets:
        fail(key, f"{shown} has a NUL, which ends an SMPP C-octet string")
    limit = BIND_OCTETS[bind_field]
    if len(octets) > limit:
        fail(key, f"{shown} is {len(octets)} octets; SMPP allows at most {limit} in a bind's {bind_field}")


def _msisdn(value: str, key: str, fail) -> None:
    if not ascii_digits(value) or not 5 <= len(value) <= 15:
        fail(key, f"expected an MSISDN in international form (digits, e.g. 8613800000000); got {value!r}")


def _overlap(a: tuple[str, int], b: tuple[str, int]) -> bool:
    if len(a[0]) != len(b[0]):
        return False
    a0, b0 = int(a[0]), int(b[0])
    return a0 < b0 + b[1] and b0 < a0 + a[1]
