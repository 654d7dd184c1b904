"""The README's `docker run` gives the gateway's stop the time it can take: `docker stop` sends SIGKILL 10 s after
SIGTERM by default, and a stop waits up to drain_timeout + response_timeout (15 s with the built-in config) for a
peer that answers neither its deliver_sm nor its unbind; the drain was cut short."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_docker_run_gives_the_stop_its_drain_and_unbind_time() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    runs = re.findall(r"docker run [^`]*", readme)
    assert runs
    settings = load_config().gateway
    for run in runs:
        stop_timeout = re.search(r"--stop-timeout (\d+)", run)
        assert stop_timeout, f"no --stop-timeout in {run!r}: docker stop's default is 10 s"
        assert int(stop_timeout[1]) > settings.drain_timeout + settings.response_timeout


def test_the_images_healthcheck_passes_while_the_gateway_is_ready_and_fails_once_it_stops(gateway) -> None:
    """The Dockerfile's HEALTHCHECK, run as Docker runs it (python:3.11-slim has no curl) against /ready: status 0
    while the gateway takes traffic, 1 once its HTTP port no longer answers."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [command] = re.findall(r"^HEALTHCHECK .*?CMD (\[.*\])$", dockerfile.replace("\\\n", ""), re.MULTILINE)
    argv = json.loads(command)
    assert argv[0] == "python" and ":8775/ready" in argv[-1], argv
    probe = [sys.executable, *argv[1:-1], argv[-1].replace(":8775/", f":{gateway.http_port}/")]
    assert subprocess.run(probe, check=False, capture_output=True, timeout=30).returncode == 0
    gateway.stop()
    assert subprocess.run(probe, check=False, capture_output=True, timeout=30).returncode == 1
