"""The signals `smsgw serve` stops on (drained, logged): SIGHUP killed it at once, with no drain and no line."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from gateway.cli import stop_signals


@pytest.fixture
def sighup() -> Iterator[None]:
    """SIGHUP's disposition in this process, as it was once the test is done."""
    before = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, before)


def test_sighup_stops_the_gateway_as_sigterm_and_ctrl_c_do(sighup: None) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    assert set(stop_signals()) == {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def test_sighup_ignored_when_started_under_nohup(sighup: None) -> None:
    """nohup ignores SIGHUP for the gateway: the terminal's closing is not meant to stop it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    assert set(stop_signals()) == {signal.SIGTERM, signal.SIGINT}
