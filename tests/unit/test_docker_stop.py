"""The README's `docker run` gives the gateway's stop the time it can take: `docker stop` sends SIGKILL 10 s after
SIGTERM by default, and a stop waits up to drain_timeout + response_timeout (15 s with the built-in config) for a
peer that answers neither its deliver_sm nor its unbind; the drain was cut short."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_docker_run_gives_the_stop_its_drain_and_unbind_time() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [run] = re.findall(r"docker run [^`]*", readme)
    stop_timeout = re.search(r"--stop-timeout (\d+)", run)
    assert stop_timeout, f"no --stop-timeout in {run!r}: docker stop's default is 10 s"
    settings = load_config().gateway
    assert int(stop_timeout[1]) > settings.drain_timeout + settings.response_timeout
