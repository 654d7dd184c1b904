"""A second `smsgw serve` on a database another gateway uses refuses to start (both would deliver every waiting MT).

The gateways run as real processes; the lock is the kernel's, so a gateway killed with SIGKILL leaves
nothing behind that stops the next start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.gateway_process import ROOT


def serve(db: Path) -> subprocess.CompletedProcess:
    """A second gateway on `db`: it must exit by itself (the test fails on a timeout if it runs)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--db", str(db), "--host", "127.0.0.1",
         "--smpp-port", "0", "--http-port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_a_second_gateway_on_the_same_database_refuses_to_start(tmp_path: Path, start_gateway) -> None:
    db = tmp_path / "gw.db"
    first = start_gateway(db)

    second = serve(db)
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"smsgw: cannot start: {db} is in use by another smsgw (pid {first.proc.pid}); lock file {db}.lock"
    )
    assert first.proc.poll() is None, "the refused start must leave the running gateway alone"
    assert first.terminate() == 0


def test_a_symlink_to_a_database_in_use_names_the_same_database(tmp_path: Path, start_gateway) -> None:
    db = tmp_path / "gw.db"
    first = start_gateway(db)
    link = tmp_path / "link.db"
    link.symlink_to(db)
    second = serve(link)
    assert second.returncode == 1 and f"lock file {db}.lock" in second.stderr, second.stderr
    assert first.terminate() == 0


def test_the_database_is_free_again_after_the_gateway_using_it_was_killed(tmp_path: Path, start_gateway) -> None:
    db = tmp_path / "gw.db"
    start_gateway(db).kill()  # SIGKILL: no chance to release anything itself
    again = start_gateway(db)
    assert again.terminate() == 0


def test_a_hard_link_to_a_database_in_use_is_refused(tmp_path: Path, start_gateway) -> None:
    """A hard link in another directory has its own `<name>.lock`: the second gateway started on it and both served
    the one file. The database file itself is locked too, under every name it has."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    db, link = tmp_path / "a" / "gw.db", tmp_path / "b" / "gw.db"
    first = start_gateway(db)
    link.hardlink_to(db)
    second = serve(link)
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"smsgw: cannot start: {link} is in use by another smsgw (pid {first.proc.pid}); it uses the same file under "
        f"another name, {db} (a hard link)"
    )
    assert first.proc.poll() is None
    assert first.terminate() == 0
    assert start_gateway(link).terminate() == 0, "with the first gateway gone, the file is free under any name"


def test_a_database_in_use_whose_lock_file_was_removed_is_refused_naming_what_happened(
    tmp_path: Path, start_gateway
) -> None:
    """A cleanup script removed `<database>.lock`: the second start was still refused (the file itself is locked), but
    told it was 'in use by another smsgw under another name (a hard link to the same file)', which it was not."""
    db = tmp_path / "gw.db"
    first = start_gateway(db)
    (tmp_path / "gw.db.lock").unlink()
    second = serve(db)
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"smsgw: cannot start: {db} is in use by another smsgw (pid {first.proc.pid}); its lock file {db}.lock was "
        "removed while it ran"
    )
    assert first.proc.poll() is None
    assert first.terminate() == 0
