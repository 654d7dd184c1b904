"""The gateway runs the code it was installed with, whatever directory it is started from.

An installed `smsgw` started from a directory holding a package named `gateway` of its own (an operator's project, a
deploy directory, another checkout of smsgw): its SQLite writer process, started with `python -m`, found that package
first on sys.path, so the gateway could not start ("SQLite writer process exited with status 1") or wrote with
another copy's code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.smpp_handset import ESME_ROK, Handset, text

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2


def decoy_package(directory: Path) -> Path:
    """`directory`/gateway: a package whose writer child, run in place of smsgw's, exits at once."""
    store = directory / "gateway" / "store"
    store.mkdir(parents=True)
    (directory / "gateway" / "__init__.py").write_text("")
    (store / "__init__.py").write_text("")
    (store / "writer_child.py").write_text('raise SystemExit("the decoy writer_child ran")\n')
    return directory


def test_a_gateway_started_beside_another_gateway_package_runs_its_own_writer(tmp_path: Path, start_gateway) -> None:
    cwd = decoy_package(tmp_path / "deploy")
    db = tmp_path / "gw.db"
    gateway = start_gateway(db, cwd=cwd)
    with Handset(gateway.smpp_port, A) as a, Handset(gateway.smpp_port, B) as b:
        a.bind("tx", "handset")
        b.bind("rx", "handset2")
        resp = a.submit(B, "from the installed code")
        assert resp.status == ESME_ROK  # acknowledged once committed
        assert text(b.expect()) == "from the installed code"
    assert gateway.terminate() == 0
    with sqlite3.connect(db) as stored:
        ids = [row[0] for row in stored.execute("SELECT id FROM messages")]
    assert resp.message_id.decode() in ids
    assert not any("decoy" in line for line in gateway.log)
