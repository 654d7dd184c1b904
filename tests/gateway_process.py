"""The gateway as production runs it: `python -m gateway serve --log-json` in its own process.

For tests that send it signals (SIGKILL, SIGTERM), read its JSON log lines, or restart it on the
same database; tests/e2e/conftest.py's `start_gateway` fixture starts them and kills any left.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


class GatewayProcess:
    def __init__(self, db: Path, config: Path | None = None, host: str | None = "127.0.0.1") -> None:
        """host None: no --host, the config's smpp_host and http_host count."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--db", str(db), *(["--host", host] if host is not None else []),
             "--smpp-port", "0", "--http-port", "0", "--log-json", "--log-level", "info",
             *(["--config", str(config)] if config is not None else [])],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.log: list[str] = []
        ready = self._wait_for("smsgw ready")
        self.smpp_port, self.http_port = ready["smpp_port"], ready["http_port"]
        self._drain = threading.Thread(target=self._keep_reading, daemon=True)
        self._drain.start()

    def _wait_for(self, event: str) -> dict:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # blocks until the gateway writes its next line
            self.log.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                return record
        raise AssertionError("gateway exited before it was ready:\n" + "".join(self.log))

    def _keep_reading(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def kill(self) -> None:
        """SIGKILL the gateway; its SQLite writer process must then exit by itself (its stdin closes)."""
        writers = [os.pidfd_open(pid) for pid in children_of(self.proc.pid)]
        assert writers, "the gateway runs its SQLite writer in a child process"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for pidfd in writers:
            readable, _, _ = select.select([pidfd], [], [], 10)  # a pidfd turns readable when its process exits
            os.close(pidfd)
            assert readable, "the writer process outlived the gateway it wrote for"

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)
