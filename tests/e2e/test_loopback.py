"""bench/loopback_server.py, the fleet's null server: the fleet's chatter completes against it, checked, with no
failures -- in the event loop of the test, and as the process bench/dialogues.py starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from simulator.esme import Esme, ShortMessage
from simulator.fleet import Fleet
from simulator.metrics import Recorder
from simulator.testing import make_scenario, run_fleet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from loopback_server import LoopbackServer


def chatter_only(port: int, **load) -> object:
    return make_scenario(
        target={"port": port},
        fleet={"count": 60, "binds": 2, "sp_receivers": []},
        behaviours={name: {"weight": 0} for name in ("query", "order", "spam", "spammer", "help")} | {"chatter": {"weight": 1}},
        load={"duration": 0, "count": 300, "concurrency": 8, "timeout": 2.0, "drain": 5.0, **load},
    )  # fmt: skip


async def test_fleet_chatter_completes_against_the_loopback_server() -> None:
    server = await LoopbackServer.start("127.0.0.1", 0)
    try:
        recorder = Recorder()
        fleet = Fleet(chatter_only(server.port), recorder=recorder)
        summary = await fleet.run()
    finally:
        await server.stop()
    assert summary["dialogues"]["failed"] == 0, summary["failures"][:3]
    assert summary["outcomes"] == {"chatter": {"delivered": recorder.completed}} and recorder.completed >= 300
    assert summary["unsolicited"] == {}  # nothing arrived that no dialogue waited for
    stats = server.stats
    assert stats["binds"] == 2 and stats["dropped"] == 0
    assert stats["submit_sm"] == stats["delivered"] == stats["deliver_sm_resp"] >= 300


async def test_binds_by_address_range_and_what_nobody_covers_is_dropped() -> None:
    server = await LoopbackServer.start("127.0.0.1", 0)
    got: dict[str, list[ShortMessage]] = {"a": [], "b": []}
    esmes = []
    try:
        for name, pattern in (("a", r"86138000000\d{2}"), ("b", r"8613800000100")):
            esme = await Esme.connect("127.0.0.1", server.port, on_message=got[name].append)
            await esme.bind("trx", "x", "y", address_range=pattern)
            esmes.append(esme)
        sender = await Esme.connect("127.0.0.1", server.port)
        await sender.bind("tx", "x", "y", address_range=r"\d+")  # a transmitter receives nothing
        esmes.append(sender)
        long_text = "长" * 100  # two parts, reassembled by the receiver: the deliver_sm keep the UDH
        statuses = [
            (await sender.submit("8613900000001", "8613800000042", "hello")).command_status,
            (await sender.submit("8613900000001", "8613800000100", long_text)).command_status,
            (await sender.submit("8613900000001", "10086", "0000")).command_status,  # nobody covers it
        ]
        assert statuses == [0, 0, 0]
        await esmes[1].enquire_link()
        for _ in range(100):
            if got["a"] and got["b"]:
                break
            await esmes[0].enquire_link()
        assert [(m.source, m.destination, m.text) for m in got["a"]] == [("8613900000001", "8613800000042", "hello")]
        assert [(m.destination, m.text, m.parts) for m in got["b"]] == [("8613800000100", long_text, 2)]
        assert server.stats == {
            "connections": 3, "binds": 3, "submit_sm": 4, "delivered": 3, "dropped": 1, "deliver_sm_resp": 3,
        }  # fmt: skip
    finally:
        for esme in esmes:
            await esme.unbind()
        await server.stop()


def test_the_server_process_reports_ready_and_its_counters() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "loopback_server.py"), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY"
        run = run_fleet(chatter_only(int(ready[1]), count=120))
        run.assert_ok()
        assert run.outcomes == {"chatter": {"delivered": run.completed}} and run.completed >= 120
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    stats = json.loads(out.split("STATS ", 1)[1])
    assert stats["submit_sm"] == stats["delivered"] >= 120 and stats["dropped"] == 0
    assert proc.returncode == 0
