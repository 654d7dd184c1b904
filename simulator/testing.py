"""The fleet from Python and pytest: a gateway in the background and a fleet against it, in a few lines.

With pytest (enable the fixture with `pytest_plugins = ["simulator.testing"]` in
your conftest.py, or `from simulator.testing import smsgw_fleet` in the test module):

    def test_orders_hold_up(smsgw_fleet):
        run = smsgw_fleet(count=300, config={"services": {"survey_sample_rate": 1.0}})
        run.assert_ok()                                   # no dialogue failed (else: failures with transcripts)
        assert run.outcomes["order"]["ordered"] > 0

Each call starts a fresh gateway (its own database, ephemeral ports, the
built-in config with `config` overrides merged in) and runs the default
scenario (or `scenario=`: a file, a Scenario) against it with the flags
given (as on the command line: duration, count, rate, concurrency, ramp_up,
binds, subscribers, timeout, seed, ...; min_rate, max_p99_ms, max_failures,
max_lag_ms judge the run, report= writes its reports; a flag it does not
take, misspelt say, is a TypeError). The fleet expects what that gateway
is configured to do; `expect=` (a Config, a file) makes it expect something
else (to prove that a wrong server is caught).

Without pytest, like aiosmtpd's Controller:

    with FleetController(config={"services": {"survey_sample_rate": 1.0}}) as controller:
        run = controller.run(duration=10, rate=200)
    print(run.summary["throughput"])

Against a server already running: `run_fleet(scenario, target=(host, port))`
(blocking), or `await run_fleet_async(...)` inside an event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.app import GatewayController
from gateway.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    load_config,
    parse_config,
    read_toml,
)

from .cli import (
    THRESHOLDS,
    conflict,
    describe,
    flag_name,
    report_directory,
    tls_only,
    verdicts,
)
from .esme import run as run_loop
from .fleet import Fleet
from .metrics import Recorder
from .report import build_report, save_reports
from .scenario import (
    DEFAULT_SCENARIO,
    FLAGS,
    Scenario,
    check_flags,
    load_scenario,
    parse_scenario,
)

__all__ = ["FleetController", "FleetRun", "gateway_config", "make_scenario", "run_fleet", "run_fleet_async", "smsgw_fleet"]


@dataclass
class FleetRun:
    """What a fleet run produced: the summary (the JSON report's data, verdict included) and how to read it."""

    summary: dict[str, Any]
    scenario: Scenario
    thresholds: dict[str, Any] = field(default_factory=dict)  # those the run was given (min_rate=...), as verdicts takes

    @property
    def failed(self) -> int:
        return self.summary["dialogues"]["failed"]

    @property
    def faults(self) -> int:
        """Checks outside any dialogue that failed (a receipt never requested, a copy...): no dialogues."""
        return self.summary["faults"]

    @property
    def completed(self) -> int:
        return self.summary["dialogues"]["completed"]

    @property
    def outcomes(self) -> dict[str, dict[str, int]]:
        """{kind: {outcome: count}}, e.g. outcomes["order"]["ordered"]."""
        return self.summary["outcomes"]

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Failed dialogues and faults with their transcripts (the first 200)."""
        return self.summary["failures"]

    @property
    def ok(self) -> bool:
        return not self.misses()

    def misses(self, **thresholds: Any) -> list[str]:
        """What the run missed, judged by the thresholds it was given, or by these instead (max_failures, min_rate,
        max_p99_ms, max_lag_ms)."""
        return verdicts(self.summary, **{**self.thresholds, **thresholds})

    def exit_code(self, **thresholds: Any) -> int:
        """What `smsgw simulate` would exit with (thresholds: as misses takes them)."""
        return 1 if self.misses(**thresholds) else 0

    def assert_ok(self, **thresholds: Any) -> None:
        """Raise AssertionError describing the run (failures with transcripts) unless it passed."""
        misses = self.misses(**thresholds)
        if misses:
            raise AssertionError("fleet run failed: " + "; ".join(misses) + "\n" + describe(self.summary))

    def __str__(self) -> str:
        return describe(self.summary)


def gateway_config(base: Config | Path | str | None = None, **overrides: Any) -> Config:
    """A gateway config: `base` (default: the built-in config/default.toml) with overrides merged in.

    A table (`services={...}`, `gateway={...}`) is updated key by key; `accounts` and `short_codes`
    entries update the entry with the same system_id / code or are added; other lists replace. A
    mistake the overrides make is a ConfigError naming them, not the file they apply to.
    """
    if isinstance(base, Config):  # (its own overrides kept: it was read from its file with them)
        path, raw = Path(base.source), copy.deepcopy(base.raw)
    else:
        path = DEFAULT_CONFIG if base is None else Path(base)
        raw = read_toml(path)
    keys = {"accounts": "system_id", "short_codes": "code"}
    for section, value in overrides.items():
        if section in keys:
            entries = raw.setdefault(section, [])
            by_key = {entry[keys[section]]: entry for entry in entries}
            for entry in copy.deepcopy(value):
                if entry[keys[section]] in by_key:
                    by_key[entry[keys[section]]].update(entry)
                else:
                    entries.append(entry)
        elif isinstance(value, dict):
            raw.setdefault(section, {}).update(copy.deepcopy(value))
        else:
            raw[section] = copy.deepcopy(value)
    try:
        return parse_config(raw, path)  # the source stays the file: its messages.<lang>.toml apply
    except ConfigError as exc:
        if overrides and (isinstance(base, Config) or _file_is_sound(path)):
            raise ConfigError(f"the overrides of {path}", exc.key, exc.problem) from None
        raise


def _file_is_sound(path: Path) -> bool:
    """Whether the config file alone passes (a mistake found with overrides merged in may be the file's own)."""
    try:
        load_config(path)
    except ConfigError:
        return False
    return True


def make_scenario(base: Path | str | None = None, **tables: Any) -> Scenario:
    """A scenario file (default: the default scenario) with tables changed key by key, checked like a file:

        make_scenario(behaviours={"spammer": {"weight": 2}, "chatter": {"weight": 0}}, spammers={"count": 2})
    """
    path = Path(base) if base is not None else DEFAULT_SCENARIO
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    _merge(raw, copy.deepcopy(tables))
    return parse_scenario(raw, path)


def _merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _scenario(scenario: Scenario | Path | str | None, target: tuple[str, int] | None, flags: dict[str, Any]) -> Scenario:
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    if target is not None:
        flags = {"host": target[0], "port": target[1], **flags}
    return scenario.override(**flags)


def _flags(flags: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """The command line's flags by their names: those of the scenario (Scenario.override), the thresholds the verdict
    judges by, the report directory."""
    if "quiet" in flags:
        raise TypeError("quiet: the Python API shows no progress to quiet; leave the flag out")
    check_flags(flags, (*FLAGS, *THRESHOLDS, "report", "insecure"))
    both = conflict(flags)  # the command line's rule: Scenario.override let the last win (count=5 dropped duration)
    if both is not None:
        raise ValueError(f"{both[0]}={flags[both[0]]!r}: not allowed with {both[1]}={flags[both[1]]!r}, as the "
                         f"command line's {flag_name(both[0])} is not with {flag_name(both[1])}; give one")
    scenario = {k: v for k, v in flags.items() if k not in THRESHOLDS and k not in ("report", "insecure")}
    if flags.get("insecure"):
        scenario["verify"] = False
    thresholds = {}
    for name, read in THRESHOLDS.items():
        if flags.get(name) is not None:
            try:
                thresholds[name] = read(flags[name])
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise ValueError(f"{name}={flags[name]!r}: {exc}") from None
    return scenario, thresholds, flags.get("report")


def _config(expect: Config | Path | str | None, scenario: Scenario) -> Config:
    if isinstance(expect, Config):
        return expect
    return load_config(expect or scenario.target.config or None, tls_files=False)


async def run_fleet_async(
    scenario: Scenario | Path | str | None = None,
    *,
    target: tuple[str, int] | None = None,
    expect: Config | Path | str | None = None,
    recorder: Recorder | None = None,
    clock: Callable[[], float] = time.time,
    **flags: Any,
) -> FleetRun:
    """Run a fleet on the running event loop: `scenario` (default: the default scenario) with `flags` as on the
    command line (duration=5, count=100, rate=..., concurrency=..., subscribers=..., ...) against `target`
    (host, port); it expects what the `expect` config (a Config or file; default: the scenario's
    target.config) says the server does, on the target's `clock` (seconds since the epoch; default: this machine's,
    time.time; a gateway's SimulatedClock's `now`), which tells the day a subscriber's spam reports count on."""
    scenario_flags, thresholds, report = _flags(flags)
    scenario = _scenario(scenario, target, scenario_flags)
    needs_tls = tls_only(flags, scenario.target.tls)
    if needs_tls is not None:  # as on the command line: ignored, the fleet spoke plain SMPP to a TLS port
        raise ValueError(f"{needs_tls}={flags[needs_tls]!r}: applies to TLS only, and TLS is off: add tls=True (or "
                         f"tls = true in the [target] of {scenario.source})")
    problem = report_directory(report) if report is not None else None
    if problem is not None:  # before the run, as on the command line: a typo must not lose the run at its end
        raise ValueError(f"report={report!r}: {problem}")
    fleet = Fleet(scenario, recorder=recorder, config=_config(expect, scenario), clock=clock)
    started_at = time.time()
    summary = await fleet.run()
    data = build_report(summary, scenario.to_dict(), started_at=started_at, misses=verdicts(summary, **thresholds))
    if report is not None:
        save_reports(data, report)
    return FleetRun(data, scenario, thresholds)


def run_fleet(
    scenario: Scenario | Path | str | None = None,
    *,
    target: tuple[str, int] | None = None,
    expect: Config | Path | str | None = None,
    clock: Callable[[], float] = time.time,
    **flags: Any,
) -> FleetRun:
    """`run_fleet_async` on its own event loop (uvloop when installed); blocks until the run ends. Called
    where an event loop is already running (an async test), it runs the fleet in a thread of its own."""
    coro = run_fleet_async(scenario, target=target, expect=expect, clock=clock, **flags)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False  # (run outside the handler: a traceback the fleet logs would show this error as its context)
    else:
        running = True
    if not running:
        return run_loop(coro)
    outcome: list[Any] = []

    def in_thread() -> None:
        try:
            outcome.append(run_loop(coro))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=in_thread, name="smsgw-fleet")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class FleetController:
    """A gateway in a background thread (GatewayController) and fleets against it; a context manager.

    config: a Config, or a dict of overrides of the built-in config (see gateway_config);
    db_path: the gateway's SQLite file (default: a fresh one in a temporary directory).
    """

    def __init__(self, config: Config | dict[str, Any] | None = None, *, db_path: Path | str | None = None,
                 **gateway_options: Any) -> None:  # fmt: skip
        self.config = config if isinstance(config, Config) else gateway_config(**(config or {}))
        self._tmp: tempfile.TemporaryDirectory | None = None
        if db_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="smsgw-fleet-")
            db_path = Path(self._tmp.name) / "gateway.db"
        self.gateway = GatewayController(self.config, db_path=db_path, **gateway_options)

    @property
    def target(self) -> tuple[str, int]:
        return "127.0.0.1", self.gateway.smpp_port

    def start(self) -> FleetController:
        self.gateway.start()
        return self

    def stop(self) -> None:
        self.gateway.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def run(self, scenario: Scenario | Path | str | None = None, *, expect: Config | Path | str | None = None,
            **flags: Any) -> FleetRun:  # fmt: skip
        """A fleet run against this gateway, on its clock (a SimulatedClock it was given: the fleet's days are its); by
        default it expects what the gateway's config says."""
        return run_fleet(scenario, target=self.target, expect=self._expect(expect, flags), clock=self.gateway.clock.now, **flags)

    def _expect(self, expect: Config | Path | str | None, flags: dict[str, Any]) -> Config | Path | str | None:
        """What the fleet expects: `expect`, else the config target_config names (as --target-config does), else
        this gateway's."""
        if expect is not None or flags.get("target_config") is not None:
            return expect
        return self.config

    def __enter__(self) -> FleetController:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


try:
    import pytest
except ImportError:  # the fixture needs pytest; the rest does not
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def smsgw_fleet(tmp_path: Path) -> Iterator[Callable[..., FleetRun]]:
        """smsgw_fleet(scenario=None, *, config=None, expect=None, **flags) -> FleetRun.

        Starts a gateway (the built-in config with `config` overrides, e.g. {"services": {...}}; or a Config)
        on ephemeral ports with a fresh database, runs a fleet against it (the default scenario with `flags`:
        duration, count, rate, concurrency, subscribers, ...), stops the gateway, returns the run. Every
        gateway it started is stopped at teardown."""
        controllers: list[FleetController] = []

        def run(scenario: Scenario | Path | str | None = None, *, config: Config | dict[str, Any] | None = None,
                expect: Config | Path | str | None = None, **flags: Any) -> FleetRun:  # fmt: skip
            controller = FleetController(config, db_path=tmp_path / f"fleet-gateway-{len(controllers)}.db")
            controllers.append(controller)
            controller.start()
            try:
                return controller.run(scenario, expect=expect, **flags)
            finally:
                controller.stop()

        yield run
        for controller in controllers:
            controller.stop()
