"""The gateway as production runs it: `python -m gateway serve --log-json` in its own process.

For tests that send it signals (SIGKILL, SIGTERM), read its JSON log lines, or restart it on the
same database; tests/conftest.py's `start_gateway` fixture starts them and kills any left.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from gateway.config import DEFAULT_CONFIG
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[1]
# `python -m gateway` on the default asyncio event loop: as where uvloop is not installed (`smsgw serve` runs on it
# when it is)
WITHOUT_UVLOOP = "import runpy, sys; sys.modules['uvloop'] = None; runpy.run_module('gateway', run_name='__main__', alter_sys=True)"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick for port 0), for a gateway that will not log its own."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def config_file(directory: Path, **gateway: object) -> Path:
    """config/default.toml with these [gateway] settings, written as `directory`/site.toml for a GatewayProcess
    (timeouts of seconds, not minutes). Edited as text: the rest of the file, its comments too, stays as shipped."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    for key, value in gateway.items():
        # [gateway] is the file's first table: a key's first line is its own.
        text, found = re.subn(rf"^{key} = .*$", f"{key} = {json.dumps(value)}", text, count=1, flags=re.MULTILINE)
        assert found, f"no {key} in {DEFAULT_CONFIG}"
    path = directory / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def tls_config_file(directory: Path, cert: Path, key: Path, **gateway: object) -> Path:
    """config_file with the TLS port on (a port of the kernel's pick: the `smsgw ready` line gives it)."""
    path = config_file(directory, **gateway)
    path.write_text(path.read_text(encoding="utf-8").replace(
        '[tls]\nenabled = false\nport = 2776\ncertfile = ""\nkeyfile = ""\n',
        f'[tls]\nenabled = true\nport = 0\ncertfile = "{cert}"\nkeyfile = "{key}"\n',
    ), encoding="utf-8")  # fmt: skip
    return path


def modes_apply() -> list[str]:
    """A command prefix under which file modes bind the command as they bind any user: root's CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH dropped (util-linux's setpriv; the test is skipped without it). Nothing for a user but root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the gateway as root without CAP_DAC_OVERRIDE")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"]


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


class GatewayProcess:
    def __init__(
        self, db: Path, config: Path | None = None, host: str | None = "127.0.0.1", log_level: str = "info",
        open_files: tuple[int, int] | None = None, file_modes_apply: bool = False, cwd: Path | None = None,
        uvloop: bool = True, hangup_ignored: bool = False, smpp_port: int = 0,
    ) -> None:  # fmt: skip
        """host None: no --host, the config's smpp_host and http_host count. Above info the gateway does not log
        'smsgw ready' with its ports: they are picked here, and it is ready once its HTTP port listens.
        open_files: its (soft, hard) limit on open files, as a service manager would set it. file_modes_apply: a
        file's mode binds it even when the tests run as root (`modes_apply`). cwd: started from that directory as
        an installed `smsgw` is, its code found on sys.path (ROOT on PYTHONPATH), never in the directory (-P).
        uvloop False: on the default asyncio event loop. hangup_ignored: started as under nohup (SIGHUP ignored);
        else with SIGHUP at its default whatever the tests run under (a suite run under nohup passed its SIG_IGN on,
        and the gateway, rightly, kept ignoring it). smpp_port: the SMPP port to listen on (a restart's: the one its
        clients reconnect to), else one of the kernel's pick."""
        announces_ports = log_level in ("debug", "info")
        ports = (smpp_port, 0) if announces_ports else (smpp_port or free_port(), free_port())
        limits = [] if open_files is None else ["prlimit", f"--nofile={open_files[0]}:{open_files[1]}"]  # (util-linux)
        env = None
        if cwd is not None:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
        self.proc = subprocess.Popen(
            [*limits, *(modes_apply() if file_modes_apply else []), sys.executable, *(["-P"] if cwd is not None else []), *(["-m", "gateway"] if uvloop else ["-c", WITHOUT_UVLOOP]), "serve", "--db", str(db), *(["--host", host] if host is not None else []),
             "--smpp-port", str(ports[0]), "--http-port", str(ports[1]), "--log-json", "--log-level", log_level,
             *(["--config", str(config)] if config is not None else [])],
            cwd=ROOT if cwd is None else cwd, env=env, stderr=subprocess.PIPE, text=True,
            # (one C call between fork and exec: no lock another thread could hold)
            preexec_fn=partial(signal.signal, signal.SIGHUP, signal.SIG_IGN if hangup_ignored else signal.SIG_DFL),  # noqa: PLW1509
        )  # fmt: skip
        self.log: list[str] = []
        if announces_ports:
            ready = self._wait_for("smsgw ready")
            self.smpp_port, self.http_port = ready["smpp_port"], ready["http_port"]
            self.tls_port = ready["tls_port"]  # None without [tls]
        else:
            self.smpp_port, self.http_port = ports
        self._drain = threading.Thread(target=self._keep_reading, daemon=True)
        self._drain.start()
        if not announces_ports:
            assert eventually(lambda: self.proc.poll() is not None or listens(self.http_port), timeout=30)
            assert self.proc.poll() is None, "gateway exited before it was ready:\n" + "".join(self.log)

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
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        """Its exit status once it exited (subprocess.TimeoutExpired if not within `timeout`), with every line it wrote
        in self.log: the process can be gone before the thread reading its log has read its last lines."""
        status = self.proc.wait(timeout)
        self._drain.join(10)  # the last lines it wrote are in self.log once the pipe's end is read
        return status
