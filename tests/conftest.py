"""Fixtures: a real gateway on ephemeral ports, and handsets that connect to it.

    def test_something(gateway, handset):
        a = handset("8613800000001", bind="trx")
        ...

    def test_with_settings(make_gateway, handset):
        gw = make_gateway(gateway={"retry_backoff": [0.2]}, accounts=[{"system_id": "handset", "throughput": 5}])
        a = handset("8613800000001", gw=gw)
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import GatewayController
from gateway.clock import Clock
from gateway.config import Config
from simulator.testing import gateway_config
from tests.gateway_process import GatewayProcess
from tests.smpp_handset import Handset


def config_with(**overrides: Any) -> Config:
    """The default configuration (config/default.toml) with overrides merged in (see gateway_config)."""
    return gateway_config(**overrides)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (skips the test without openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayController]]:
    """Start a gateway: make_gateway(clock=None, db_path=None, base=None, **config_overrides), `base` a Config the
    overrides apply to (default: the built-in one). Stopped at teardown."""
    started: list[GatewayController] = []

    def make(
        *, clock: Clock | None = None, db_path: Path | str | None = None, base: Config | None = None, **overrides: Any
    ) -> GatewayController:
        options: dict[str, Any] = {"db_path": db_path or tmp_path / f"gw{len(started)}.db"}
        if clock is not None:
            options["clock"] = clock
        controller = GatewayController(gateway_config(base, **overrides), **options)
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


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateway processes; any still running at teardown (a failed assertion) is killed. Each one's last log
    lines are printed at teardown: pytest shows them when the test failed."""
    started: list[GatewayProcess] = []

    def start(db: Path, config: Path | None = None, **options: Any) -> GatewayProcess:
        started.append(GatewayProcess(db, config, **options))
        return started[-1]

    yield start
    for n, gateway in enumerate(started, 1):
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)
        print(f"--- gateway process {n} of {len(started)} (exit {gateway.proc.returncode}), its last log lines:")
        print("".join(gateway.log[-40:]), end="")
