"""Fixtures of the end-to-end tests that run the gateway as a process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess


@pytest.fixture
def start_gateway() -> Iterator[Callable[[Path], GatewayProcess]]:
    """Start gateway processes; any still running at teardown (a failed assertion) is killed."""
    started: list[GatewayProcess] = []

    def start(db: Path) -> GatewayProcess:
        started.append(GatewayProcess(db))
        return started[-1]

    yield start
    for gateway in started:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)
