"""A bind the target drops while the fleet runs (its unbind, here sent by a proxy in front of the gateway as an SMSC
would): the fleet names it, fails what depended on it saying so, retires its subscribers, and ends early once no
subscriber's bind is left (README "Handset simulator")."""

from __future__ import annotations

import asyncio
import re
from html import escape

import pytest

from gateway.smpp.codec import encode_pdu
from gateway.smpp.constants import CommandId
from gateway.smpp.pdu import DeliverSmResp, Unbind
from simulator.fleet import BINDS_LOST
from simulator.report import render_html
from simulator.testing import make_scenario, run_fleet_async
from tests.smpp_proxy import ProxyServer, command_of, pdus

KINDS = ("query", "order", "spam", "chatter", "spammer", "help")
RECEIVING = (CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER)


class Unbinder(ProxyServer):
    """An SMPP proxy in front of the gateway that, instead of the `after`-th deliver_sm to the fleet, sends an unbind
    of its own on the bind it was for (`every`: on every bind that receives), as an SMSC dropping its binds does;
    the client's answer stays here, and its close closes the gateway's side. `account`: only its binds (an SP's).
    `swallow`: an account whose first text the proxy acknowledges to the gateway itself, so it never arrives, or,
    with `rewrite` (old, new: bytes of one length), passes on with `old` replaced, as a gateway writing it wrong."""

    def __init__(self, upstream: int, after: int, every: bool, account: str | None = None, swallow: str | None = None,
                 rewrite: tuple[bytes, bytes] | None = None) -> None:  # fmt: skip
        super().__init__(upstream)
        self.after, self.every, self.account, self.swallow, self.rewrite = after, every, account, swallow, rewrite
        self.delivered = 0
        self.receivers: list[asyncio.StreamWriter] = []
        self.swallowing: list[asyncio.StreamWriter] = []

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip

        async def to_client() -> None:
            async for pdu in pdus(up_r):
                if command_of(pdu) == CommandId.DELIVER_SM and client_w in self.swallowing:
                    self.swallowing.remove(client_w)
                    if self.rewrite is None:
                        up_w.write(encode_pdu(DeliverSmResp(sequence_number=int.from_bytes(pdu[12:16]), message_id="")))
                        continue
                    pdu = pdu.replace(*self.rewrite)
                if command_of(pdu) == CommandId.DELIVER_SM and client_w in self.receivers:
                    self.delivered += 1
                    if self.delivered == self.after:  # this text never comes: its bind is dropped instead
                        for receiver in self.receivers if self.every else [client_w]:
                            receiver.write(encode_pdu(Unbind(sequence_number=0x7FFFFFF0)))
                        continue
                client_w.write(pdu)

        async def to_gateway() -> None:
            async for pdu in pdus(client_r):
                if command_of(pdu) in RECEIVING and self.account in (None, system_id(pdu)):
                    self.receivers.append(client_w)
                if command_of(pdu) in RECEIVING and system_id(pdu) == self.swallow:
                    self.swallowing.append(client_w)
                if command_of(pdu) != CommandId.UNBIND_RESP:
                    up_w.write(pdu)

        await asyncio.gather(to_client(), to_gateway())


def system_id(bind: bytes) -> str:
    return bind[16:].split(b"\0", 1)[0].decode()


class TransmitterUnbinder(ProxyServer):
    """An SMPP proxy in front of the gateway that holds the `after`-th deliver_sm to the fleet (a reply a dialogue
    waits for) while it unbinds every transmitter, and passes it on once the fleet answered those unbinds (their loss
    seen): the receivers stay bound."""

    def __init__(self, upstream: int, after: int) -> None:
        super().__init__(upstream)
        self.after, self.delivered = after, 0
        self.transmitters: list[asyncio.StreamWriter] = []
        self.unbinds_answered = asyncio.Semaphore(0)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip

        async def to_client() -> None:
            async for pdu in pdus(up_r):
                if command_of(pdu) == CommandId.DELIVER_SM:
                    self.delivered += 1
                    if self.delivered == self.after:
                        for transmitter in self.transmitters:
                            transmitter.write(encode_pdu(Unbind(sequence_number=0x7FFFFFF0)))
                        for _ in self.transmitters:
                            await self.unbinds_answered.acquire()
                client_w.write(pdu)

        async def to_gateway() -> None:
            async for pdu in pdus(client_r):
                if command_of(pdu) == CommandId.BIND_TRANSMITTER:
                    self.transmitters.append(client_w)
                if command_of(pdu) == CommandId.UNBIND_RESP:
                    self.unbinds_answered.release()
                else:
                    up_w.write(pdu)

        await asyncio.gather(to_client(), to_gateway())


@pytest.mark.parametrize(("mode", "every", "kind"), [("tx+rx", False, "chatter"), ("tx+rx", True, "chatter"),
                                                     ("tx+rx", False, "help"), ("trx", True, "help")])  # fmt: skip
async def test_a_bind_the_target_drops_is_named_and_fails_what_waited_on_it(make_gateway, mode: str, every: bool, kind: str) -> None:
    """Chats between 40 subscribers on two binds (tx+rx pairs or transceivers), or help texts from 10086; after 10
    texts delivered, the SMSC unbinds the bind the next was for, or every bind that receives. Before, the fleet did not
    notice: the dialogue whose text never came failed as "received nothing within 3 s" (blaming the delivery), the
    subscribers of the lost bind went on starting dialogues, and a fleet left with no receiver ran until its count or
    duration ("count reached"); no report said a bind was lost."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 2, "mode": mode, "sp_receivers": []},
                             behaviours={k: {"weight": int(k == kind)} for k in KINDS} | {"chatter": {"weight": int(kind == "chatter"), "long": 0}},
                             load={"duration": 0, "count": 60, "concurrency": 2, "timeout": 3})  # fmt: skip
    async with Unbinder(gw.smpp_port, after=11, every=every) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    fleet = run.summary["fleet"]
    lost = fleet["lost_binds"]
    receiver = "trx" if mode == "trx" else "rx"
    assert len(lost) == (2 if every else 1), lost
    assert all(re.fullmatch(rf"{receiver} #[12] as 'handset'", b["bind"]) and b["reason"] == "unbound by the server"
               for b in lost), lost  # fmt: skip
    faults = [f for f in run.failures if f["kind"] == "bind"]
    assert [f["step"] for f in faults] == ["bind lost"] * len(lost)
    assert re.fullmatch(r"the target dropped the bind \S+ #\d as 'handset' \d+\.\d s into the run: unbound by the server", faults[0]["error"])
    # The dialogue whose text was dropped fails at once, saying why; no failure blames the delivery.
    chats = [f for f in run.failures if f["kind"] == kind]
    # (or, on a transceiver, an MO the dialogue sent as the unbind came: not sent, or not answered, on the bind lost)
    assert chats and all(f["error"].startswith(f"BindLost: the bind {receiver} #")
                         or f["error"] == "MO not answered: unbound by the server" for f in chats), chats  # fmt: skip
    assert not any("nothing" in f["error"] for f in run.failures)
    assert fleet["stats"]["retired_bind_lost"] > 0 and fleet["retired_subscribers"] >= (40 if every else 20)
    if every:  # nothing can arrive any more: the run ends at once, saying why
        assert fleet["stopped"] == BINDS_LOST
        assert f"the run ended early: {BINDS_LOST}" in run.misses()
        assert run.completed + run.failed < 60
    else:  # the other block's subscribers chat on among themselves
        assert fleet["stopped"] == "count reached" and run.completed + run.failed == 60
        assert all(f["msisdn"] != "" for f in chats)
    assert f"binds lost: {len(lost)}: {lost[0]['bind']} at " in str(run)
    page = render_html(run.summary)
    assert "<h3" in page and f"<td><code>{escape(lost[0]['bind'])}</code></td><td>unbound by the server</td>" in page


ONLY = {kind: {"weight": 0} for kind in KINDS}


async def test_a_lost_sp_receiver_leaves_its_sp_notices_unchecked_not_missing(make_gateway) -> None:
    """Sina's receiver dropped after its 2nd notice: the notices the fleet then waited for never came, and the end
    check blamed each on the gateway (sp_notice faults) instead of saying it could not check them. Tencent's receiver
    stayed bound: its notices are checked (they all came), where the loss of Sina's left every SP's unchecked."""
    fleet, failures = await _sp_receiver_lost(make_gateway)
    assert [b["bind"] for b in fleet["lost_binds"]] == ["rx as 'sina' (fleet.sp_receivers[0])"], fleet["lost_binds"]
    assert fleet["sp_notices_unchecked"] == {"sina": "its receiver's bind was lost"}, fleet["sp_notices_unchecked"]
    assert fleet["sp_notices"].get("ORDER tencent-ringtones", 0) > 0, fleet["sp_notices"]
    assert not [f for f in failures if f["kind"] == "sp_notice"], [f["error"] for f in failures]


async def test_a_notice_missing_on_a_bound_sp_receiver_fails_the_run_though_another_receiver_was_lost(make_gateway) -> None:
    """Sina's receiver dropped, and one of Tencent's notices never reached Tencent's (the proxy took it): that one is
    the gateway's to answer for, and the run says so."""
    fleet, failures = await _sp_receiver_lost(make_gateway, swallow="tencent")
    assert fleet["sp_notices_unchecked"] == {"sina": "its receiver's bind was lost"}, fleet["sp_notices_unchecked"]
    errors = [f["error"] for f in failures if f["kind"] == "sp_notice"]
    assert len(errors) == 1 and "ORDER tencent-ringtones: 1 owed" in errors[0] and "sina" not in errors[0], errors


async def test_a_notice_about_no_service_of_the_catalogue_fails_the_run_though_an_sp_receiver_was_lost(make_gateway) -> None:
    """Sina's receiver dropped, and a notice to Tencent's named a service no SP has (the gateway writing its id wrong):
    the run passed, only the services of the SPs still bound being checked."""
    rewrite = (b"service=tencent-ringtones", b"service=tencent-ringtoneZ")
    _fleet, failures = await _sp_receiver_lost(make_gateway, swallow="tencent", rewrite=rewrite)
    errors = [f["error"] for f in failures if f["kind"] == "sp_notice"]
    assert len(errors) == 1 and "tencent-ringtoneZ: 1 received that no dialogue of the run owed" in errors[0], errors


async def _sp_receiver_lost(make_gateway, swallow: str | None = None, rewrite: tuple[bytes, bytes] | None = None,
                            ) -> tuple[dict, list[dict]]:  # fmt: skip
    """A fleet of 40 ordering each catalogue service once, behind a proxy that drops Sina's receiver after its 2nd
    notice (and takes `swallow`'s first, or rewrites it)."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 2}, behaviours=ONLY | {"order": {"weight": 1}},
                             load={"duration": 0, "count": 40, "concurrency": 4, "timeout": 3})  # fmt: skip
    async with Unbinder(gw.smpp_port, after=2, every=False, account="sina", swallow=swallow, rewrite=rewrite) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    return run.summary["fleet"], run.failures


async def test_with_spammers_running_a_fleet_left_with_no_subscriber_bind_ends_saying_so(make_gateway) -> None:
    """Spammers have binds of their own: every subscriber's receiver dropped, the run went on and ended as "every
    subscriber retired" (its spammers' binds counted as blocks of subscribers still served), not BINDS_LOST."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 2, "mode": "tx+rx", "sp_receivers": []},
                             behaviours=ONLY | {"chatter": {"weight": 3, "long": 0}, "spammer": {"weight": 1, "victims": 3}},
                             spammers={"count": 2}, load={"duration": 20, "count": 0, "concurrency": 2, "timeout": 3})  # fmt: skip
    async with Unbinder(gw.smpp_port, after=11, every=True) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.summary["fleet"]["stopped"] == BINDS_LOST, run.summary["fleet"]["stopped"]


async def test_lost_transmitters_leave_the_replies_on_the_live_receivers_to_arrive(make_gateway) -> None:
    """The subscribers' transmitters dropped while a reply to an MO was on its way to a receiver still bound: the
    dialogue waiting for it failed at once as if its receiver had gone (BindLost), and the reply came to nobody."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 2, "mode": "tx+rx", "sp_receivers": []},
                             behaviours=ONLY | {"help": {"weight": 1}},
                             load={"duration": 0, "count": 40, "concurrency": 4, "timeout": 3})  # fmt: skip
    async with TransmitterUnbinder(gw.smpp_port, after=5) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert sorted(b["bind"] for b in run.summary["fleet"]["lost_binds"]) == ["tx #1 as 'handset'", "tx #2 as 'handset'"]
    assert run.summary["fleet"]["stopped"] == BINDS_LOST, run.outcomes
    # (an MO sent on a transmitter as it went fails unanswered: MO not answered)
    assert not [f for f in run.failures if f["kind"] == "help" and "BindLost" in f["error"]], run.failures
