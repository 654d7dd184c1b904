"""Fixtures of the end-to-end tests that run the gateway as a process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess


@pytest.fixture
def start_gateway() -> Iterator[Callable[[Path], GatewayProcess]]:
    """Start gateway processes; any still running at teardown (a failed assertion) is killed. Each one's last log
    lines are printed at teardown: pytest shows them when the test failed."""
    started: list[GatewayProcess] = []

    def start(db: Path, config: Path | None = None) -> GatewayProcess:
        started.append(GatewayProcess(db, config))
        return started[-1]

    yield start
    for n, gateway in enumerate(started, 1):
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)
        print(f"--- gateway process {n} of {len(started)} (exit {gateway.proc.returncode}), its last log lines:")
        print("".join(gateway.log[-40:]), end="")
