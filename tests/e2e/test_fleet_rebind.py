"""The fleet across the gateway's restart (README "Handset simulator"): with --rebind (fleet.rebind) every bind the
gateway's SIGTERM drain unbinds is bound again once it is back on the same port and database, the subscribers carry
on, and the loss is no fault; without it, the run ends early as it always did (BINDS_LOST)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandId
from gateway.smpp.pdu import BindTransceiver, SubmitSm, Unbind
from simulator import fleet as fleet_module
from simulator import testing
from simulator.behaviours import AWAY, IDLE
from simulator.cli import verdicts
from simulator.esme import run as run_loop
from simulator.fleet import BINDS_LOST, Fleet, FleetError
from simulator.handset import Handset
from simulator.metrics import Recorder
from simulator.report import build_report, render_html
from simulator.testing import FleetRun, make_scenario, run_fleet_async
from tests.gateway_process import config_file
from tests.polling import eventually
from tests.smpp_proxy import ProxyServer, command_of, pdus

smsgw_fleet = testing.smsgw_fleet  # the fixture
ONLY = {kind: {"weight": 0} for kind in ("query", "order", "spam", "chatter", "spammer", "help")}
# An open loop at 25 dialogues/s, run until the test stops it (the stopping gateway's ESME_RTHROTTLED are sent again:
# test_with_rebind_an_mo_the_target_throttles_is_sent_again_not_failed).
GENTLE = {"mode": "open", "rate": 25, "duration": 0, "count": 100_000, "timeout": 10}


class FleetThread(threading.Thread):
    """A fleet run on its own event loop in a thread, so that the test can stop and restart the gateway meanwhile."""

    def __init__(self, scenario) -> None:
        super().__init__(daemon=True)
        self.scenario, self.recorder = scenario, Recorder()
        self.fleet: Fleet | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.summary: dict | None = None
        self.bound = threading.Event()

    def run(self) -> None:
        async def main() -> dict:
            self.loop = asyncio.get_running_loop()
            self.fleet = Fleet(self.scenario, recorder=self.recorder)
            await self.fleet.connect()
            self.bound.set()
            try:
                await self.fleet.load()
                await self.fleet.drain()
                await self.fleet.settle()
            finally:
                await self.fleet.close()
            return self.fleet.summary()

        self.summary = run_loop(main())

    def stop_load(self) -> None:
        assert self.loop is not None and self.fleet is not None
        self.loop.call_soon_threadsafe(self.fleet.stop)

    def result(self) -> FleetRun:
        self.join(60)
        assert self.summary is not None, "the fleet run did not end"
        data = build_report(self.summary, self.scenario.to_dict(), started_at=time.time(), misses=verdicts(self.summary))
        return FleetRun(data, self.scenario)


@pytest.mark.parametrize("mode", ["trx", "tx+rx"])
def test_with_rebind_the_fleet_binds_again_after_the_gateways_restart_and_its_dialogues_go_on(
    tmp_path: Path, start_gateway, mode: str
) -> None:
    """Help texts and chats between 40 subscribers on two binds (and the two SP receivers); the gateway stopped with
    SIGTERM mid-run and started again on its port and database. Before, every bind it unbound was a fault and retired
    its subscribers, and the run ended early (BINDS_LOST): a soak test across a restart could not be run."""
    db = tmp_path / "gw.db"
    gateway = start_gateway(db)
    port = gateway.smpp_port
    scenario = make_scenario(target={"port": port}, fleet={"count": 40, "binds": 2, "mode": mode, "rebind": True},
                             behaviours=ONLY | {"help": {"weight": 1}, "chatter": {"weight": 1, "long": 0}}, load=GENTLE)  # fmt: skip
    fleet_run, fleet = _running(scenario, 20)
    binds = 4 + (2 if mode == "tx+rx" else 0)  # the subscribers' and the 2 SP receivers
    gateway.terminate()
    assert eventually(lambda: len(fleet.lost_binds) == binds, timeout=10), fleet.lost_binds
    start_gateway(db, smpp_port=port)
    run = _after_the_rebind(fleet_run, 40)

    summary = run.summary["fleet"]
    lost = summary["lost_binds"]
    assert len(lost) == binds and all(b["reason"] == "unbound by the server" and b["rebound_at_s"] > b["at_s"] for b in lost), lost
    assert summary["stopped"] == "stopped" and summary["retired_subscribers"] <= run.failed, summary  # (stop_load)
    # The subscribers away while their binds were down are back, each idle at the end unless a failure retired it
    assert [p.state for p in fleet.phones if p.state != "retired"] == ["idle"] * (40 - summary["retired_subscribers"])
    # The SP receivers are bound again: their notices are checked (not "its receiver's bind was lost")
    assert summary["sp_notices_unchecked"] == {}, summary["sp_notices_unchecked"]
    assert not [f for f in run.failures if f["kind"] == "bind"], run.failures
    # What was in flight as the gateway stopped may fail (an MO unanswered, sent as its bind went); nothing else: one
    # the stopping gateway refused ESME_RTHROTTLED is sent again once the bind is back
    assert all(f["error"].startswith("MO not answered") for f in run.failures), run.failures
    assert run.misses(max_failures=len(run.failures)) == [], run.misses()
    assert f"binds lost: {binds}: " in str(run) and ", rebound at " in str(run)
    assert "<th class=num>rebound at (s)</th>" in render_html(run.summary)


@pytest.mark.parametrize("rebind", [False, True])
def test_a_gateway_stopped_for_good_ends_the_run_early_unless_rebind_waits_for_it(tmp_path: Path, start_gateway, rebind: bool) -> None:
    """Without --rebind the old behaviour is kept: each bind the stopping gateway unbinds is a fault, never rebound,
    and the run ends early (BINDS_LOST). With it, the run goes on to its end waiting for the gateway, and each bind
    not bound again by then is that fault, once."""
    gateway = start_gateway(tmp_path / "gw.db")
    load = GENTLE | ({"duration": 3, "count": 0, "timeout": 2} if rebind else {})
    scenario = make_scenario(target={"port": gateway.smpp_port}, fleet={"count": 40, "binds": 2, "rebind": rebind},
                             behaviours=ONLY | {"help": {"weight": 1}}, load=load)  # fmt: skip
    fleet_run = FleetThread(scenario)
    fleet_run.start()
    assert eventually(lambda: fleet_run.recorder.completed >= 20, timeout=30), "no dialogues before the stop"
    gateway.terminate()
    run = fleet_run.result()
    summary = run.summary["fleet"]
    assert summary["stopped"] == ("duration reached" if rebind else BINDS_LOST), summary["stopped"]
    assert len(summary["lost_binds"]) == 4 and all(b["rebound_at_s"] is None for b in summary["lost_binds"])
    faults = [f["error"] for f in run.failures if f["kind"] == "bind"]
    # (with --rebind, naming why its last try failed: the gateway still down)
    again = f"; not bound again by the end of the run (its last try: cannot connect to 127.0.0.1:{gateway.smpp_port}: "
    assert len(faults) == 4 and all((again in f) == rebind for f in faults), faults
    assert ", rebound at " not in str(run)


def test_with_rebind_a_bind_the_restarted_gateway_refuses_is_a_fault_naming_the_refusal(tmp_path: Path, start_gateway) -> None:
    """The gateway restarted with the subscribers' account's password changed: each try to bind again is refused
    ESME_RINVPASWD. Before, the run ended with faults that only said 'not bound again by the end of the run', and
    stdout did not say that any try had failed: the refusal was in the debug log alone."""
    db = tmp_path / "gw.db"
    gateway = start_gateway(db, config_file(tmp_path))
    (tmp_path / "changed").mkdir()
    changed = config_file(tmp_path / "changed")
    changed.write_text(changed.read_text(encoding="utf-8").replace('password = "handset"\n', 'password = "changed"\n', 1),
                       encoding="utf-8")  # fmt: skip
    port = gateway.smpp_port
    scenario = make_scenario(target={"port": port}, fleet={"count": 40, "binds": 2, "rebind": True, "sp_receivers": []},
                             behaviours=ONLY | {"help": {"weight": 1}}, load=GENTLE | {"timeout": 2})  # fmt: skip
    fleet_run = FleetThread(scenario)
    fleet_run.start()
    assert eventually(lambda: fleet_run.recorder.completed >= 20, timeout=30), "no dialogues before the restart"
    fleet = fleet_run.fleet
    assert fleet is not None
    gateway.terminate()
    assert eventually(lambda: len(fleet.lost_binds) == 2, timeout=10), fleet.lost_binds
    start_gateway(db, changed, smpp_port=port)
    refused = "bind trx as 'handset' refused: ESME_RINVPASWD"
    assert eventually(lambda: all(refused in (b["last_rebind_error"] or "") for b in fleet.lost_binds), timeout=20), fleet.lost_binds
    fleet_run.stop_load()
    run = fleet_run.result()

    faults = [f["error"] for f in run.failures if f["kind"] == "bind"]
    assert len(faults) == 2 and all(f.endswith(f"; not bound again by the end of the run (its last try: {refused})") for f in faults), faults
    tries = run.summary["fleet"]["stats"]["rebind_tries_failed"]
    assert tries >= 2 and f"tries to bind again that failed (--rebind): {tries}" in str(run)


def test_with_rebind_an_mo_the_target_throttles_is_sent_again_not_failed(smsgw_fleet, tmp_path: Path) -> None:
    """The subscribers' account throttled to 10 segments/s under 8 dialogues at once (help texts, and chats half of
    them long: a part refused is sent again alone): with --rebind each MO answered ESME_RTHROTTLED is sent again after
    a back-off, as SMPP clients do, and goes. Before, each failed its dialogue and retired its subscriber, as without
    --rebind (test_fleet_checks.py): the stopping gateway's refusals retired every subscriber of a run flat out."""
    scenario = make_scenario(fleet={"count": 30, "binds": 1, "rebind": True, "sp_receivers": []},
                             behaviours=ONLY | {"help": {"weight": 1}, "chatter": {"weight": 1, "long": 0.5}},
                             load={"duration": 0, "count": 40, "concurrency": 8, "timeout": 10})  # fmt: skip
    run = smsgw_fleet(scenario, config={"accounts": [{"system_id": "handset", "throughput": 10}]}, report=tmp_path / "report")
    resent = run.summary["fleet"]["stats"].get("mo_resent_after_throttled", 0)
    assert run.failed == 0 and run.summary["mo_refused"] == {}, run.failures[:3]
    assert resent > 0 and run.summary["fleet"]["retired_subscribers"] == 0
    assert run.outcomes["help"]["help"] + run.outcomes["chatter"]["delivered"] == 40, run.outcomes
    assert f"MO sent again after ESME_RTHROTTLED (--rebind): {resent}" in str(run)
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["fleet"]["stats"]["mo_resent_after_throttled"] == resent


class SlowUnbinder(ProxyServer):
    """An SMPP proxy in front of the gateway that, as the first bind's `after`-th submit_sm passes, sends that client
    an unbind and holds what the gateway answers it for `hold` seconds: the client answers the unbind only after that
    submit_sm, so its bind stays open, unbound, that long (a busy bind of a stopping SMSC, drawn out). Its answer
    stays here; its close closes the gateway's side. The rebind (a new connection) is passed through."""

    def __init__(self, upstream: int, after: int, hold: float) -> None:
        super().__init__(upstream)
        self.after, self.hold = after, hold
        self.first: asyncio.StreamWriter | None = None
        self.submitted = 0
        self.holding = False

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip

        async def to_client() -> None:
            async for pdu in pdus(up_r):
                if self.holding and client_w is self.first:
                    self.holding = False
                    await asyncio.sleep(self.hold)
                client_w.write(pdu)

        async def to_gateway() -> None:
            async for pdu in pdus(client_r):
                if self.first is None and command_of(pdu) == CommandId.BIND_TRANSCEIVER:
                    self.first = client_w
                if command_of(pdu) == CommandId.UNBIND_RESP:
                    continue
                up_w.write(pdu)
                if command_of(pdu) == CommandId.SUBMIT_SM and client_w is self.first:
                    self.submitted += 1
                    if self.submitted == self.after:
                        client_w.write(encode_pdu(Unbind(sequence_number=0x7FFFFFF0)))
                        self.holding = True

        await asyncio.gather(to_client(), to_gateway())


async def test_with_rebind_no_dialogue_starts_on_a_bind_the_target_unbound_before_it_closes(make_gateway) -> None:
    """Help texts from 40 subscribers on two transceivers, 25 a second; the target unbinds the first one while an MO on
    it is unanswered, for 1 s (SlowUnbinder). Before, its block was away only once the connection closed: the fleet
    went on starting dialogues on it, each MO refused at once ('MO not answered: unbound by the server') and its
    subscriber retired (a gateway's stop at 1,750 dialogues/s retired all 200). Now the block is away from the unbind
    (so no MO finds the bind unbound: none is sent after the rebind for it), bound again through the proxy at once."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 2, "rebind": True, "sp_receivers": []},
                             behaviours=ONLY | {"help": {"weight": 1}},
                             load={"mode": "open", "rate": 25, "duration": 0, "count": 100, "timeout": 5})  # fmt: skip
    async with SlowUnbinder(gw.smpp_port, after=20, hold=1.0) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    summary = run.summary["fleet"]
    lost = summary["lost_binds"]
    assert len(lost) == 1 and lost[0]["reason"] == "unbound by the server" and lost[0]["rebound_at_s"] is not None, lost
    assert run.failed == 0 and summary["retired_subscribers"] == 0, run.failures[:3]
    assert run.outcomes["help"]["help"] == 100, run.outcomes
    assert "mo_sent_after_rebind" not in summary["stats"], summary["stats"]


class Redeliverer(ProxyServer):
    """An SMPP proxy in front of the gateway that, once the first client has answered the `after`-th reply from 10086
    delivered to it, closes both sides of its connection (as a gateway killed with -9 would) and delivers that reply
    again to the next client as it binds (the fleet's rebind): the gateway's redelivery of a text whose answer it had
    not committed (README). The copy's answer stays here."""

    COPY = 0x7FFFFF00  # the copy's sequence number

    def __init__(self, upstream: int, after: int) -> None:
        super().__init__(upstream)
        self.after, self.replies = after, 0
        self.first: asyncio.StreamWriter | None = None
        self.copy: bytes | None = None

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip
        if self.first is None:
            self.first = client_w
        first, held = client_w is self.first, None

        async def to_client() -> None:
            nonlocal held
            async for pdu in pdus(up_r):
                if not first and command_of(pdu) == CommandId.BIND_TRANSCEIVER_RESP and self.copy is not None:
                    client_w.write(pdu + self.copy)  # in one write: read at once (two may be read apart, acted on between)
                    continue
                client_w.write(pdu)
                if first and held is None and command_of(pdu) == CommandId.DELIVER_SM:
                    message = decode_pdu(pdu)
                    if message.source_addr == "10086" and not message.esm_class & 0x04:  # (a reply, not a receipt)
                        self.replies += 1
                        if self.replies == self.after:
                            held = message.sequence_number
                            self.copy = pdu[:12] + struct.pack(">I", self.COPY) + pdu[16:]

        async def to_gateway() -> None:
            async for pdu in pdus(client_r):
                sequence = struct.unpack(">I", pdu[12:16])[0]
                if command_of(pdu) == CommandId.DELIVER_SM_RESP and sequence == self.COPY:
                    continue
                up_w.write(pdu)
                if first and command_of(pdu) == CommandId.DELIVER_SM_RESP and sequence == held:
                    await up_w.drain()
                    client_w.close()
                    up_w.close()

        await asyncio.gather(to_client(), to_gateway())


async def test_with_rebind_a_text_the_target_delivers_again_after_the_bind_was_lost_is_its_redelivery_not_a_fault(
    make_gateway,
) -> None:
    """Help texts from 20 subscribers on a transceiver; the target's connection is gone right after a reply was
    delivered and answered, and that reply comes again on the bind bound again (Redeliverer), as smsgw redelivers a
    text whose answer it had not committed when killed with -9 (README). Before, it failed the run ('FAILED delivery
    at text delivered twice'); now it is counted as redelivered_after_rebind."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 20, "binds": 1, "rebind": True, "sp_receivers": []},
                             behaviours=ONLY | {"help": {"weight": 1}},
                             load={"mode": "open", "rate": 20, "duration": 0, "count": 40, "timeout": 3})  # fmt: skip
    async with Redeliverer(gw.smpp_port, after=5) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    summary = run.summary["fleet"]
    assert proxy.copy is not None and len(summary["lost_binds"]) == 1 and summary["lost_binds"][0]["rebound_at_s"], summary
    assert [f for f in run.failures if f["kind"] == "delivery"] == [], run.failures
    assert summary["stats"]["redelivered_after_rebind"] == 1, summary["stats"]
    assert "delivered again after their bind was lost and bound again (--rebind): 1 " in str(run)


def _running(scenario, dialogues: int) -> tuple[FleetThread, Fleet]:
    """A fleet run of `scenario` begun in a thread, once `dialogues` have ended; and its Fleet."""
    fleet_run = FleetThread(scenario)
    fleet_run.start()
    recorder = fleet_run.recorder
    assert eventually(lambda: recorder.completed >= dialogues, timeout=30), "no dialogues before the restart"
    assert fleet_run.fleet is not None
    return fleet_run, fleet_run.fleet


def _after_the_rebind(fleet_run: FleetThread, dialogues: int) -> FleetRun:
    """Once every bind lost is bound again and `dialogues` more have ended, the load stopped: the run's result."""
    fleet, recorder = fleet_run.fleet, fleet_run.recorder
    assert eventually(lambda: all(b["rebound_at_s"] is not None for b in fleet.lost_binds), timeout=30), fleet.lost_binds
    after = recorder.completed
    assert eventually(lambda: recorder.completed >= after + dialogues, timeout=30), "no dialogues passed after the rebind"
    fleet_run.stop_load()
    return fleet_run.result()


def _hold_the_drain(port: int) -> socket.socket:
    """A transceiver of an account the fleet does not use (handset2) with a deliver_sm to it (10086000's echo)
    read and left unanswered: a stopping gateway's drain waits for its answer, refusing MOs ESME_RTHROTTLED meanwhile,
    until drain_timeout; then it unbinds every bind."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)

    def read() -> int:
        head = raw.recv(16, socket.MSG_WAITALL)
        length, command_id = struct.unpack(">II", head[:8])
        if length > 16:
            raw.recv(length - 16, socket.MSG_WAITALL)
        return command_id

    raw.sendall(encode_pdu(BindTransceiver(sequence_number=1, system_id="handset2", password="handset2")))
    assert read() == CommandId.BIND_TRANSCEIVER_RESP
    raw.sendall(encode_pdu(SubmitSm(sequence_number=2, source_addr="8613700000001", destination_addr="10086000",
                                    short_message=b"hold")))  # fmt: skip
    while read() != CommandId.DELIVER_SM:
        pass
    return raw


def test_with_rebind_a_run_flat_out_goes_on_across_the_gateways_restart_without_a_failure(tmp_path: Path, start_gateway) -> None:
    """200 subscribers on 4 transceivers, 40 dialogues at once flat out (help texts and chats); the gateway stopped with
    SIGTERM, its drain held open 2 s (drain_timeout) by a deliver_sm unanswered on another account's bind, so that it
    refuses MOs ESME_RTHROTTLED meanwhile and then unbinds the fleet's busy binds; started again on its port and
    database. Before, each refusal and each MO that found its bind unbound failed its dialogue and retired its
    subscriber (one run in four: all 200, the run cut short). Now they are sent again once the binds are back."""
    db, config = tmp_path / "gw.db", config_file(tmp_path, drain_timeout=2)
    gateway = start_gateway(db, config)
    port = gateway.smpp_port
    scenario = make_scenario(target={"port": port}, fleet={"count": 200, "binds": 4, "rebind": True, "sp_receivers": []},
                             behaviours=ONLY | {"help": {"weight": 1}, "chatter": {"weight": 1, "long": 0}},
                             load={"duration": 0, "count": 1_000_000, "concurrency": 40, "timeout": 10})  # fmt: skip
    fleet_run, fleet = _running(scenario, 500)
    with _hold_the_drain(port):
        gateway.proc.send_signal(signal.SIGTERM)
        assert eventually(lambda: len(fleet.lost_binds) == 4, timeout=10), fleet.lost_binds
    assert gateway.wait(30) == 0
    start_gateway(db, config, smpp_port=port)
    run = _after_the_rebind(fleet_run, 500)

    summary = run.summary["fleet"]
    assert all(b["reason"] == "unbound by the server" for b in summary["lost_binds"]), summary["lost_binds"]
    assert summary["stopped"] == "stopped" and summary["retired_subscribers"] == 0, summary
    assert run.failed == 0, run.failures[:3]
    # (How many MOs the stop refused depends on when it came: the dialogues in flight wait for replies the drain does
    # not send, so there may be none; the resend itself is proven with a throttled account, above.)


# White-box, the fleet's own bookkeeping of a rebind: what the runs above cannot time (a back-off of seconds, a wake-up
# that otherwise comes at the step's deadline, a block with two binds lost) without runs of minutes.
async def test_a_lost_bind_is_tried_again_after_a_back_off_doubling_from_half_a_second_to_5_s(monkeypatch) -> None:
    """Tries refused five times wait 0.5, 1, 2, 4 and 5 s: without the doubling (or from 5 s) a target back after a
    second's restart got its binds back seconds later, every MO waiting on them meanwhile."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: object) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(fleet_module.asyncio, "sleep", sleep)
    tries = iter([FleetError("target", "refused")] * 5 + [None])

    async def again() -> str:
        error = next(tries)
        if error is not None:
            raise error
        return "bound"

    fleet = SimpleNamespace(stats=Counter(), _bound_at=time.monotonic(), _replace=lambda bind, esme: None,
                            _watch=lambda bind: None, _back=lambda members: None)  # fmt: skip
    await Fleet._rebind(fleet, SimpleNamespace(again=again, members=[], name="trx-0"), {})
    assert slept == [0.5, 1.0, 2.0, 4.0, 5.0] and fleet.stats["rebind_tries_failed"] == 5


async def test_a_bind_bound_again_wakes_the_mos_waiting_for_it_at_once() -> None:
    """Its handsets are given the new bind through Handset.rebound: set as a plain attribute, the MOs waiting for it
    went only at their step's deadline (failed as not bound again)."""
    old, new = SimpleNamespace(is_bound=False), SimpleNamespace(is_bound=True)
    handset = Handset("8613800000001", old)
    waiting = asyncio.get_running_loop().create_future()
    handset._rebound = waiting  # (as _bound_again leaves it)
    fleet = SimpleNamespace(binds=[old], spammer_binds=[], sp_binds=[])
    Fleet._replace(fleet, SimpleNamespace(esme=old, members=[handset]), new)
    assert handset.esme is new and fleet.binds == [new] and waiting.done()


def test_a_block_with_two_binds_lost_is_back_only_once_both_are() -> None:
    """A spammer's numbers on two binds, both lost: bound again one, it is still away (its texts on the other would
    fail); back once both are."""

    class Spammer:  # (hashable, as the fleet's spammers)
        state = IDLE

    spammer = Spammer()
    fleet = SimpleNamespace(_down=Counter(), _away=set(), idle=set(), idle_spammers={spammer}, _freed=None)
    members = [spammer]
    Fleet._send_away(fleet, members)  # its first bind lost
    Fleet._send_away(fleet, members)  # and its second
    Fleet._back(fleet, members)  # the first bound again
    assert spammer.state == AWAY and spammer in fleet._away
    Fleet._back(fleet, members)  # the second too
    assert spammer.state == IDLE and spammer in fleet.idle_spammers and not fleet._away
