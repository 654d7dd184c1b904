"""Fixtures: a real gateway on ephemeral ports, and handsets that connect to it.

    def test_something(gateway, handset):
        a = handset("8613800000001", bind="trx")
        ...

    def test_with_settings(make_gateway, handset):
        gw = make_gateway(gateway={"retry_backoff": [0.2]}, accounts=[{"system_id": "handset", "throughput": 5}])
        a = handset("8613800000001", gw=gw)
"""

from __future__ import annotations

import copy
import ssl
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import GatewayController
from gateway.clock import Clock
from gateway.config import DEFAULT_CONFIG, Config, parse_config
from tests.smpp_handset import Handset


def default_config_dict() -> dict[str, Any]:
    with open(DEFAULT_CONFIG, "rb") as f:
        return tomllib.load(f)


def config_with(**overrides: Any) -> Config:
    """The default configuration (config/default.toml) with overrides merged in.

    A table (`gateway={...}`, `tls={...}`) is updated key by key.
    `accounts` and `short_codes` entries update the entry with the same
    system_id / code, or are added when there is none. Any other list
    replaces the default one.
    """
    raw = default_config_dict()
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
    return parse_config(raw, "<test config>")


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayController]]:
    """Start a gateway: make_gateway(clock=None, db_path=None, **config_overrides). Stopped at teardown."""
    started: list[GatewayController] = []

    def make(*, clock: Clock | None = None, db_path: Path | str | None = None, **overrides: Any) -> GatewayController:
        options: dict[str, Any] = {"db_path": db_path or tmp_path / f"gw{len(started)}.db"}
        if clock is not None:
            options["clock"] = clock
        controller = GatewayController(config_with(**overrides), **options)
        started.append(controller)
        return controller.start()

    yield make
    for controller in reversed(started):
        if controller._thread is not None and controller._thread.is_alive():  # a test may have stopped it
            controller.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., GatewayController]) -> GatewayController:
    """A gateway with the default configuration and its own SQLite file."""
    return make_gateway()


@pytest.fixture
def handset(make_gateway: Callable[..., GatewayController], request: pytest.FixtureRequest) -> Iterator[Callable[..., Handset]]:
    """handset(number, bind="trx"|"tx"|"rx"|None, system_id=<account covering number>, gw=<gateway fixture>, ...).

    Connects to `gw` (by default the `gateway` fixture; over TLS to its TLS
    port when `tls` is an SSLContext) and binds unless bind=None. Every
    handset it made is closed at teardown, before any gateway stops.
    """
    opened: list[Handset] = []

    def make(
        number: str = "",
        *,
        bind: str | None = "trx",
        system_id: str | None = None,
        password: str | None = None,
        address_range: str = "",
        gw: GatewayController | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Handset:
        gw = gw or request.getfixturevalue("gateway")
        if tls is None:
            phone = Handset(gw.smpp_port, number)
        else:
            assert gw.gateway is not None and gw.gateway.tls_port, "this gateway does not listen for TLS"
            phone = Handset(gw.gateway.tls_port, number, ssl_context=tls)
        opened.append(phone)
        if bind is not None:
            phone.bind(bind, system_id or account_for(number), password, address_range)
        return phone

    yield make
    for phone in opened:
        phone.close()


def account_for(number: str) -> str:
    """The demo account (config/default.toml) whose ranges cover this subscriber."""
    digits = number.lstrip("+")
    if len(digits) == 11:
        digits = "86" + digits
    if digits.startswith("86137"):
        return "handset2"
    if digits.startswith(("86138", "86139")):
        return "handset"
    if digits.startswith(("86130", "86131", "86132", "86150")):
        return "carrier"
    raise ValueError(f"no demo account covers {number!r}; pass system_id=")
