"""The fleet's checks catch a gateway that behaves wrongly (found by a review: each of these ran PASS): texts
delivered twice or long texts in part, replies flagged as delivery receipts or with UDHI and no UDH, a reply
or a chat delivered to another subscriber too, spam reports' acks giving each report the same id or none, SP notices to the
wrong SP or about the wrong subscriber, a first order without its free trial, a 0000 listing naming the wrong SP or
reply window, a survey naming the wrong service, and wrong refusals listed as "refused (as expected)"; and spam a
correct gateway withholds once its sender is blocked is excused as soon as the fleet knows, not waited for. The gateway
misbehaves by its config, or behind a small SMPP proxy in the test's event loop; the fleet is the real one."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.clock import SimulatedClock
from gateway.config import DEFAULT_CONFIG
from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandId, CommandStatus, EsmClass
from gateway.smpp.pdu import DeliverSm, EnquireLink, SubmitSmResp
from gateway.smpp.segment import parse_udh
from gateway.smpp.text import decode
from simulator import testing
from simulator.testing import (
    FleetController,
    FleetRun,
    gateway_config,
    make_scenario,
    run_fleet_async,
)
from tests.smpp_proxy import ProxyServer, command_of, pdus

smsgw_fleet = testing.smsgw_fleet  # the fixture

DELIVER_SM, DELIVER_SM_RESP = 0x00000005, 0x80000005
BIND_RESPS = (CommandId.BIND_RECEIVER_RESP, CommandId.BIND_TRANSMITTER_RESP, CommandId.BIND_TRANSCEIVER_RESP)
KINDS = ("query", "order", "spam", "chatter", "spammer", "help")
NO_SP = {"sp_receivers": []}


def only(**weights: float) -> dict[str, dict[str, float]]:
    return {kind: {"weight": weights.get(kind, 0)} for kind in KINDS}


def target_config(directory: Path, texts: dict[str, str] = {}, config: dict[str, str] = {}) -> Path:  # noqa: B006
    """The built-in config and texts copied to `directory`, with each whole line `texts` names in messages.zh.toml
    and each passage `config` names in the config file replaced. Returns the config file."""
    directory.mkdir()
    for language in ("zh", "en"):
        shutil.copy(DEFAULT_CONFIG.parent / f"messages.{language}.toml", directory / f"messages.{language}.toml")
    messages = directory / "messages.zh.toml"
    lines = messages.read_text(encoding="utf-8").split("\n")
    for old, new in texts.items():
        assert lines.count(old) == 1, old
        lines[lines.index(old)] = new
    messages.write_text("\n".join(lines), encoding="utf-8")
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    for old, new in config.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (directory / "config.toml").write_text(text, encoding="utf-8")
    return directory / "config.toml"


def shipped(prefix: str) -> str:
    """The line of the shipped messages.zh.toml that begins with `prefix`."""
    lines = (DEFAULT_CONFIG.parent / "messages.zh.toml").read_text(encoding="utf-8").split("\n")
    return next(line for line in lines if line.startswith(prefix))


# ------------------------------------------------------------------ a proxy
class Proxy(ProxyServer):
    """An SMPP proxy in front of the gateway: what the client sends goes through, unless `answer(pdu)` gives the
    response to send it back instead (or a future of it: sent once done); each deliver_sm to the client goes through
    `change(pdu) -> [pdus]`, and `after_bind(bind_resp) -> [pdus]` follow a bind's answer; any other PDU to the client
    is held `hold(pdu)` seconds. A PDU added (a copy) gets a sequence number of the proxy's, and the client's answer to
    it stays here. `pace`: seconds the proxy waits after each write of deliver_sm (one, and what `change` made of it)
    before the next, so the client reads each write alone and acts on it first (as a loaded machine may have it do)."""

    def __init__(self, upstream: int, change: Callable[[bytes], list[bytes]] = lambda pdu: [pdu],
                 answer: Callable[[bytes], bytes | asyncio.Future[bytes] | None] = lambda pdu: None,
                 after_bind: Callable[[bytes], list[bytes]] = lambda pdu: [],
                 hold: Callable[[bytes], float] = lambda pdu: 0.0, pace: float = 0.0) -> None:  # fmt: skip
        super().__init__(upstream)
        self.change, self.answer, self.after_bind, self.hold, self.pace = change, answer, after_bind, hold, pace

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip
        ours: set[int] = set()
        sequence = [0x70000000]

        def renumbered(out: bytes) -> bytes:
            """`out`, an added PDU, with a sequence number of the proxy's (its answer stays here)."""
            sequence[0] += 1
            ours.add(sequence[0])
            return out[:12] + struct.pack(">I", sequence[0]) + out[16:]

        async def deliver(data: bytes) -> None:
            client_w.write(data)
            if self.pace:
                await asyncio.sleep(self.pace)

        async def to_client() -> None:
            async for pdu in pdus(up_r):
                if command_of(pdu) != DELIVER_SM:
                    held = self.hold(pdu)
                    if held:
                        asyncio.get_running_loop().call_later(held, client_w.write, pdu)
                    else:
                        client_w.write(pdu)
                    if command_of(pdu) in BIND_RESPS:
                        for out in self.after_bind(pdu):
                            client_w.write(renumbered(out))
                    continue
                # In one write, so read at once: written one by one, the client could read the first alone (it did
                # on a loaded machine) and act on it (send its next MO) before the copies came.
                first, *added = self.change(pdu) or [b""]
                await deliver(first + b"".join(map(renumbered, added)))

        async def to_gateway() -> None:
            async for pdu in pdus(client_r):
                number = struct.unpack(">I", pdu[12:16])[0]
                if command_of(pdu) == DELIVER_SM_RESP and number in ours:
                    ours.discard(number)
                    continue
                response = self.answer(pdu)
                if response is None:
                    up_w.write(pdu)
                elif isinstance(response, asyncio.Future):
                    response.add_done_callback(lambda answered: client_w.write(answered.result()))
                else:
                    client_w.write(response)

        await asyncio.gather(to_client(), to_gateway())


class AnswerWithTheText(ProxyServer):
    """An SMSC that answers each submit_sm in the same write as the next text it delivers (the client reads both at
    once), after which the client's event loop (the test's: the proxy shares it) is held busy `busy` seconds, from
    just after that read until before anything the read woke runs. `held`: how many times."""

    def __init__(self, upstream: int, busy: float) -> None:
        super().__init__(upstream)
        self.busy = busy
        self.held = 0

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:  # fmt: skip
        async def to_client() -> None:
            answers: list[bytes] = []
            async for pdu in pdus(up_r):
                if command_of(pdu) == CommandId.SUBMIT_SM_RESP:
                    answers.append(pdu)
                elif command_of(pdu) == DELIVER_SM and answers:
                    client_w.write(b"".join(answers) + pdu)
                    answers.clear()
                    self._hold_after_the_read()
                else:
                    client_w.write(pdu)

        async def to_gateway() -> None:
            async for pdu in pdus(client_r):
                up_w.write(pdu)

        await asyncio.gather(to_client(), to_gateway())

    def _hold_after_the_read(self) -> None:
        """What was just written is in the client's socket (loopback), so its read runs in the loop's next iteration,
        after the first callback here and before the second, queued then: the second holds the loop after the read,
        ahead of the callbacks the read queued (the MO's answer reaching the dialogue)."""
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._hold)

    def _hold(self) -> None:
        self.held += 1
        time.sleep(self.busy)  # the loop is busy elsewhere (this is no wait for an event)


def leak_first(*passages: str, source: str = "10086") -> Callable[[bytes], list[bytes]]:
    """A Proxy's change: the first text from `source` (10086; "" for any fleet subscriber) holding each of `passages`
    (all its parts) goes to the subscriber next door as well (the last bit of the number flipped)."""
    left, leaking = list(passages), set()  # (destination, reference) of a text whose parts go next door

    def leak(frame: bytes) -> list[bytes]:
        pdu = decode_pdu(frame)
        concat, body = parse_udh(pdu.esm_class, pdu.short_message)  # type: ignore[attr-defined]
        text = decode(body, pdu.data_coding)  # type: ignore[attr-defined]
        key = (pdu.destination_addr, concat.reference if concat else None)  # type: ignore[attr-defined]
        sent_by = pdu.source_addr == source if source else pdu.source_addr.startswith("86138")  # type: ignore[attr-defined]
        found = next((p for p in left if p in text and sent_by), None)
        if found is not None and (concat is None or concat.seqnum == 1):
            left.remove(found)
            leaking.add(key)
        if key not in leaking:
            return [frame]
        if concat is None or concat.seqnum == concat.total:
            leaking.discard(key)
        pdu.destination_addr = str(int(pdu.destination_addr) ^ 1)  # type: ignore[attr-defined]
        return [frame, encode_pdu(pdu)]

    return leak


# ----------------------------------------------------------- delivered twice
async def test_texts_delivered_twice_and_long_texts_in_part_fail_the_run(make_gateway) -> None:
    """A proxy delivers every deliver_sm twice. Before, the copies were 'arrived unasked: other' and the copy of a
    long text's part began a text that never completed: the run passed."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 1, **NO_SP}, behaviours=only(chatter=1, help=1) | {
        "chatter": {"weight": 1, "long": 0.5}}, load={"duration": 0, "count": 60, "concurrency": 4, "timeout": 2})  # fmt: skip
    direct = await run_fleet_async(scenario, target=("127.0.0.1", gw.smpp_port))
    direct.assert_ok()  # the control: the gateway itself delivers each text once, whole
    async with Proxy(gw.smpp_port, lambda pdu: [pdu, pdu]) as proxy:
        run = await run_fleet_async(scenario.override(start="8613800100000"), target=("127.0.0.1", proxy.port))
    steps = run.summary["failures_by_step"]["delivery"]
    stats = run.summary["fleet"]["stats"]
    assert steps["text delivered twice"] == stats["delivered_twice"] > 0
    assert steps["long text arrived in part"] == stats["arrived_in_part"] > 0
    assert run.exit_code() == 1 and "other" not in run.summary["unsolicited"]
    failure = next(f for f in run.failures if f["step"] == "text delivered twice")
    assert "arrived again, with no MO of the subscriber since" in failure["error"]
    # Every dialogue itself went well: only the copies fail the run.
    assert run.summary["failures_by_step"].keys() == {"delivery"}


@pytest.mark.parametrize("pace", [0.0, 0.02])
async def test_a_copy_is_no_dialogues_reply_even_from_the_number_it_waits_for(make_gateway, pace: float) -> None:
    """A proxy delivers every deliver_sm twice; each help dialogue brings a survey, answered with nonsense. The copy
    of the re-prompt comes from 10086700, whose next reply the rating dialogue waits for after its next answer: it took
    the copy for that reply and failed ("expected rating.invalid from 10086700, got '抱歉，未能识别您的回复...'"), as a
    fleet stopped past the gateway's response_timeout failed its dialogues on the retries it had brought on itself. A
    copy is told before a dialogue takes a text now: only the copies fail the run. The proxy writes a text and its copy
    at once: written one after the other, the fleet read the first alone about once a read in four on a loaded machine,
    and now and then sent its next MO before the copy came (which after an MO is a text like any other: README); the
    paced run has it so every time."""
    gw = make_gateway(services={"survey_sample_rate": 1.0})
    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=only(help=1),
                             reactions={"survey": {"valid": 0, "invalid": 1, "late": 0, "ignore": 0}},
                             load={"duration": 0, "count": 10, "concurrency": 2})  # fmt: skip
    async with Proxy(gw.smpp_port, lambda pdu: [pdu, pdu], pace=pace) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    failed = [(f["step"], f["error"], f["transcript"]) for f in run.failures if f["kind"] != "delivery"]
    assert run.summary["failures_by_step"].keys() == {"delivery"}, (run.summary["failures_by_step"], failed)
    assert "failed" not in run.outcomes["rating"] and {"invalid", "reprompted"} & set(run.outcomes["rating"]), run.outcomes
    assert run.summary["failures_by_step"]["delivery"]["text delivered twice"] > sum(run.outcomes["rating"].values())


async def stall_until_the_gateway_gives_a_delivery_up(gw) -> None:
    """The fleet's machine stalls (1.5 s: the gateway looks at its deliver_sm twice a second) whenever the gateway
    has a deliver_sm on its way to the fleet, until one goes unanswered past its response_timeout. (A stall at a set
    time came, on a loaded machine, when nothing was on its way.) Reads the gateway's state from its own thread:
    a set changing size while copied is looked at again."""

    def connections() -> list:
        while True:
            try:
                return list(gw.gateway.connections)
            except RuntimeError:
                continue

    while not any(c.timed_out for c in connections()):  # (emptied again by the late answer: stalls may repeat)
        if any(c.inflight for c in connections()):
            time.sleep(1.5)  # noqa: ASYNC251 (the stall itself)
        await asyncio.sleep(0.001)


async def test_a_retry_after_the_fleet_answered_late_is_the_targets_right(make_gateway) -> None:
    """The fleet's event loop stalls longer than the gateway's response_timeout: the gateway delivers again what
    the fleet answered late (SMPP allows it). That is reported as such, not as the gateway's copies."""
    gw = make_gateway(gateway={"response_timeout": 0.3, "retry_backoff": [0.05]})
    scenario = make_scenario(fleet={"count": 40, "binds": 1, **NO_SP}, behaviours=only(chatter=1, help=1),
                             load={"duration": 5, "concurrency": 4, "timeout": 6})  # fmt: skip
    stalls = asyncio.create_task(stall_until_the_gateway_gives_a_delivery_up(gw))
    run = await run_fleet_async(scenario, target=("127.0.0.1", gw.smpp_port), expect=gw.gateway.config)
    stalls.cancel()
    stats = run.summary["fleet"]["stats"]
    assert stats.get("redelivered_after_late_answer", 0) > 0, stats
    assert "delivery" not in run.summary["failures_by_step"]
    assert any("the fleet answered deliver_sm late" in s for s in run.summary["fleet"]["unasked_samples"])
    assert f"delivered again after the fleet answered late: {stats['redelivered_after_late_answer']}" in str(run)


# ------------------------------------------------------- what is no text
async def ten_dialogues_flagged(make_gateway, esm_flag: int, **weights: float) -> tuple[FleetRun, str]:
    """10 dialogues of these kinds (2 at a time, each reply due within 1 s, among 20 subscribers) through a proxy that
    sets `esm_flag` in the esm_class of every deliver_sm. Returns the run and its first delivery failure's error."""
    gw = make_gateway()

    def flagged(frame: bytes) -> list[bytes]:
        pdu = decode_pdu(frame)
        pdu.esm_class |= esm_flag  # type: ignore[attr-defined]
        return [encode_pdu(pdu)]

    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=only(**weights),
                             load={"duration": 0, "count": 10, "concurrency": 2, "timeout": 1})  # fmt: skip
    async with Proxy(gw.smpp_port, flagged) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    return run, next((f["error"] for f in run.failures if f["kind"] == "delivery"), "")


async def test_replies_flagged_as_delivery_receipts_fail(make_gateway) -> None:
    """A proxy flags every reply as an SMSC delivery receipt (esm_class message type 0001), which the fleet never asks
    for (registered_delivery 0). Before, the dialogues took them for their replies (from the right sender) and the
    run passed; the receipts are no replies now, so the help dialogues get none either."""
    run, error = await ten_dialogues_flagged(make_gateway, EsmClass.DELIVERY_RECEIPT, help=1)
    assert run.summary["failures_by_step"] == {"delivery": {"receipt never requested": 10}, "help": {"help->help": 10}}
    assert "from 10086 (esm_class 0x44: not a text but a delivery receipt" in error, error


async def test_a_receipt_besides_each_reply_is_a_fault_not_a_dialogue(make_gateway) -> None:
    """A proxy sends a delivery receipt besides every reply (a foreign SMSC sending one per MO). Before, each receipt
    was counted as a dialogue started and failed: 10 help dialogues read "20 dialogues ... 10 ok, 10 failed", twice the
    rate started. Now they are faults of their own, which fail the run and count toward max_failures."""
    gw = make_gateway()

    def with_receipt(frame: bytes) -> list[bytes]:  # one per text, after its first part
        pdu = decode_pdu(frame)
        concat, _body = parse_udh(pdu.esm_class, pdu.short_message)  # type: ignore[attr-defined]
        if concat is not None and concat.seqnum > 1:
            return [frame]
        pdu.esm_class, pdu.data_coding = EsmClass.DELIVERY_RECEIPT, 0  # type: ignore[attr-defined]
        pdu.short_message = b"id:1 sub:001 dlvrd:001 stat:DELIVRD err:000 text:"  # type: ignore[attr-defined]
        return [frame, encode_pdu(pdu)]

    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=only(help=1),
                             load={"duration": 0, "count": 10, "concurrency": 2, "timeout": 1})  # fmt: skip
    async with Proxy(gw.smpp_port, with_receipt) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.summary["dialogues"] == {"started": 10, "completed": 10, "failed": 0, "reactions": 0}
    assert run.faults == 10 and run.summary["failures_by_step"] == {"delivery": {"receipt never requested": 10}}
    assert "delivery" not in run.outcomes and sum(second["started"] for second in run.summary["timeline"]) == 10
    assert run.misses() == ["10 faults found outside dialogues (tolerated: 0)"]
    assert run.misses(max_failures=10) == [] and run.exit_code(max_failures=9) == 1
    assert "faults found outside dialogues: 10" in str(run)


async def test_udhi_without_a_user_data_header_fails(make_gateway) -> None:
    """A proxy sets UDHI on every reply, and the single-part ones have no UDH (a handset takes their first octet for
    the UDH's length). Before, the fleet read them as the gateway's lenient parse_udh does (the octets whole, a UDH
    that does not add up ignored) and the run passed."""
    run, error = await ten_dialogues_flagged(make_gateway, EsmClass.UDHI, query=1)
    assert run.summary["failures_by_step"] == {"delivery": {"UDHI without a valid UDH": 10}, "query": {"0000->none": 10}}
    assert "from 10086 (esm_class 0x40: UDHI set, but no User Data Header that adds up begins it)" in error, error


# ---------------------------------------------------------------- SP notices
ORDER_AND_QUERY = only(order=1, query=1) | {"order": {"weight": 1, "confirm": 1, "decline": 0, "ignore": 0}}


def test_sp_notices_to_another_sps_account_fail(smsgw_fleet, tmp_path: Path) -> None:
    """The gateway's catalogue gives Sina's services to the tencent account: every notice of them went to the
    tencent bind. Before, notices were counted over all SP binds together and the run passed."""
    config = target_config(tmp_path / "target", config={
        'sp = "sina"                     # the SP account notified': 'sp = "tencent"                  # the SP account notified',
        'id = "sina-weather"\nsp = "sina"': 'id = "sina-weather"\nsp = "tencent"',
        'service_codes = ["1066916"]': 'service_codes = ["1066917"]',
        'service_codes = ["1066888"]': 'service_codes = ["1066888", "1066916"]'})  # fmt: skip
    scenario = make_scenario(fleet={"count": 40, "binds": 1}, behaviours=ORDER_AND_QUERY,
                             load={"duration": 0, "count": 60, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, config=gateway_config(config), expect=gateway_config())
    assert run.summary["failures_by_step"] == {"sp_notice": {"wrong account": 1}}
    error = run.failures[0]["error"]
    assert re.search(r"\d+ about sina-news to 'tencent', whose SP is 'sina'", error), error


async def test_sp_notices_about_another_subscriber_fail(make_gateway) -> None:
    """A proxy names the fleet's first subscriber in every SP notice: as many notices per service as the fleet
    owed, about the wrong subscribers. Before, only the totals per service were compared and the run passed."""
    gw = make_gateway()
    first = "8613800000000"

    def misname(pdu: bytes) -> list[bytes]:
        return [re.sub(rb"msisdn=\d{13}", b"msisdn=" + first.encode(), pdu)]  # the same length: the PDU's holds

    scenario = make_scenario(fleet={"count": 40, "binds": 1, "start": first}, behaviours=ORDER_AND_QUERY,
                             load={"duration": 0, "count": 60, "concurrency": 4})  # fmt: skip
    async with Proxy(gw.smpp_port, misname) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.summary["failures_by_step"] == {"sp_notice": {"end": 1}}
    error = run.failures[0]["error"]
    assert "owed by the fleet's dialogues not received" in error and "received that no dialogue of the run owed" in error
    assert f"about {first}" in error


@pytest.mark.parametrize("rebind", [False, True], ids=["no-rebind", "rebind"])
async def test_an_sp_notice_delivered_again_is_a_copy_not_a_notice_nobody_owed(make_gateway, rebind: bool) -> None:
    """A proxy delivers every SP notice twice, its notice id the same (as the gateway's retry of a notice the SP
    answered late). Before, the copies were counted as notices no dialogue owed ("ORDER sina-news: 3 received that no
    dialogue of the run owed"), as with a fleet stopped past the gateway's response_timeout, whose copies README
    excuses. A notice's id is read now: a second one is a copy, judged as copies are (here, with the fleet answering
    in time, the gateway's fault: "text delivered twice"; with --rebind too, no bind having been lost since the
    first)."""
    gw = make_gateway()

    def notices_twice(pdu: bytes) -> list[bytes]:
        return [pdu, pdu] if b"event=" in pdu else [pdu]

    scenario = make_scenario(fleet={"count": 40, "binds": 1, "rebind": rebind}, behaviours=ORDER_AND_QUERY,
                             load={"duration": 0, "count": 60, "concurrency": 4})  # fmt: skip
    async with Proxy(gw.smpp_port, notices_twice) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    notices = sum(run.summary["fleet"]["sp_notices"].values())
    assert notices > 0 and run.summary["failures_by_step"] == {"delivery": {"text delivered twice": notices}}, run.summary["failures_by_step"]
    assert all(re.match(r"'event=\w+ service=\S+ .* notice=\w+' from \d+ arrived again", f["error"]) for f in run.failures), run.failures[0]


# ---------------------------------------------------------- before the load
async def test_a_text_right_after_a_bind_is_answered_reaches_its_subscriber(make_gateway) -> None:
    """The SMSC (a proxy here) sends each bind's first subscriber a welcome text right after answering the bind.
    Before, the fleet knew its subscribers by number only once every bind was up: the welcomes were "(no such
    subscriber here)", counted unrouted."""
    gw = make_gateway()
    first, count = 8613800200000, 20
    welcomed: list[str] = []

    def welcome(_bind_resp: bytes) -> list[bytes]:
        number = str(first + 10 * len(welcomed))  # the first of each of the 2 blocks, in the order of the answers
        welcomed.append(number)
        return [encode_pdu(DeliverSm(source_addr="ForeignNet", destination_addr=number, short_message=b"Welcome"))]

    scenario = make_scenario(fleet={"count": count, "binds": 2, "start": str(first), **NO_SP}, behaviours=only(help=1),
                             load={"duration": 0, "count": 2, "concurrency": 1})  # fmt: skip
    async with Proxy(gw.smpp_port, after_bind=welcome) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    run.assert_ok()
    assert len(welcomed) == 2 and run.summary["unsolicited"] == {"other": 2}, run.summary["unsolicited"]
    assert sorted(run.summary["fleet"]["unasked_samples"]) == [f"to {n} (idle) from ForeignNet: Welcome" for n in sorted(welcomed)]


# ------------------------------------------------------------ misdelivered
async def test_a_reply_delivered_to_another_subscriber_too_fails(make_gateway) -> None:
    """A proxy delivers the first order confirmation request and the first 0000 listing to their subscriber and to the
    subscriber next door, who sent nothing (one dialogue at a time: that one is idle). Before, a valid reply that no
    dialogue waited for was counted as "other" and the run passed. Surveys (sent after every 10086 dialogue here)
    still arrive unasked, as they may."""
    surveys = {"services": {"survey_sample_rate": 1.0}}
    gw = make_gateway(**surveys)
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=ORDER_AND_QUERY,
                             load={"duration": 0, "count": 30, "concurrency": 1, "timeout": 2})  # fmt: skip
    async with Proxy(gw.smpp_port, leak_first("您正在定制", "您已定制以下")) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port), expect=gw.gateway.config)
    assert run.summary["failures_by_step"] == {"delivery": {"answer nobody asked for": 2}}
    assert run.summary["fleet"]["stats"]["answers_unasked"] == 2 and run.summary["unsolicited"]["survey"] > 0
    errors = sorted(f["error"] for f in run.failures)
    assert "is confirmation.request, only ever an answer to the subscriber's own MO" in errors[0], errors
    assert "is unsubscribe.listing, only ever an answer" in errors[1], errors


async def test_a_chat_delivered_to_another_subscriber_too_fails(make_gateway) -> None:
    """A proxy delivers the first chat between two subscribers to its recipient and to the subscriber next door, whom
    its sender never texted. Before, that one counted as "other" among the texts nobody asked for, and the run
    passed (its recipient got the chat: the dialogue was ok)."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=only(chatter=1),
                             load={"duration": 0, "count": 10, "concurrency": 1, "timeout": 2})  # fmt: skip
    async with Proxy(gw.smpp_port, leak_first("", source="")) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port), expect=gw.gateway.config)
    assert run.summary["failures_by_step"] == {"delivery": {"another subscriber's text": 1}}, run.summary["failures_by_step"]
    assert "other" not in run.summary["unsolicited"] and run.exit_code() == 1
    [failure] = run.failures
    assert re.fullmatch(r"a text from 86138\d{8} to 86138\d{8}, which the fleet never sent it: .+", failure["error"]), failure


# -------------------------------------------------------------- report ids
@pytest.mark.parametrize(("report_id", "error"), [
    ("0", "report id '0' again: an earlier report was given it"),
    ("{{report_id}}", "report id '{report_id}': a placeholder of the template, unfilled"),
])  # fmt: skip
def test_acks_that_give_no_report_an_id_of_its_own_fail(smsgw_fleet, tmp_path: Path, report_id: str, error: str) -> None:
    """The spam report's ack gives every report the id 0, or the template's placeholder itself. Before, any id of
    one word passed."""
    ack = shipped("ack = ")
    config = target_config(tmp_path / "target", texts={ack: ack.replace("{report_id}", report_id)})
    scenario = make_scenario(fleet={"count": 40, "binds": 1, **NO_SP}, behaviours=only(spam=1),
                             load={"duration": 0, "count": 20, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, config=gateway_config(config), expect=gateway_config())
    unique = report_id == "0"  # the first report's id is its own
    assert run.outcomes["spam"]["failed"] == 20 - unique and run.failed == 20 - unique
    assert all(error in f["error"] for f in run.failures), run.failures[0]["error"]


# -------------------------------------------------------------------- orders
def test_a_first_order_confirmed_without_the_free_trial_fails(smsgw_fleet, tmp_path: Path) -> None:
    """The gateway answers first orders with the repeat-order notice (no free trial, charged from next month).
    Before, any of the three success notices passed."""
    again = shipped("ordered_again = ").split(" = ", 1)[1]
    config = target_config(tmp_path / "target", texts={shipped("ordered_this_month = "): f"ordered_this_month = {again}",
                                                      shipped("ordered_next_month = "): f"ordered_next_month = {again}"})  # fmt: skip
    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=only(order=1) | {"order": ORDER_AND_QUERY["order"]},
                             load={"duration": 0, "count": 20, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, config=gateway_config(config), expect=gateway_config())
    assert run.summary["failures_by_step"] == {"order": {"confirm->ordered": 20}}
    assert ("expected confirmation.ordered_this_month or confirmation.ordered_next_month or confirmation.expired or "
            "confirmation.nothing_pending from 10086") in run.failures[0]["error"]  # (the last two: had it lapsed)


# ----------------------------------------------------------- listing, survey
def test_a_listing_naming_another_sp_fails(smsgw_fleet, tmp_path: Path) -> None:
    """Every line of the 0000 listing names 移动梦网 as the SP. Before, {sp_name} took anything."""
    item = shipped("listing_item = ")
    config = target_config(tmp_path / "target", texts={item: item.replace("{sp_name}", "移动梦网")})
    run = _listing_run(smsgw_fleet, config)
    assert "'移动梦网'" in run.failures[0]["error"]


def test_a_listing_stating_another_reply_window_fails(smsgw_fleet, tmp_path: Path) -> None:
    """The listing's foot says replies are valid for 24 hours; the target's listing_window is 2 hours. Before,
    {window} took anything."""
    foot = shipped("listing_foot = ")
    config = target_config(tmp_path / "target", texts={foot: foot.replace("{window}", "24小时")})
    run = _listing_run(smsgw_fleet, config)
    assert "listing says to reply within '24小时', the target's listing_window is '2小时'" in run.failures[0]["error"]


def _listing_run(smsgw_fleet, config: Path):
    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=ORDER_AND_QUERY,
                             load={"duration": 0, "count": 60, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, config=gateway_config(config), expect=gateway_config())
    assert run.failed > 0 and run.summary["failures_by_step"] == {"query": {"0000->listing": run.failed}}
    return run


def test_a_survey_naming_another_service_fails(smsgw_fleet, tmp_path: Path) -> None:
    """Surveys after a 10086 dialogue name another service than '10086短信服务'. Before, {service} took anything."""
    config = target_config(tmp_path / "target", texts={shipped("channel.sms = "): 'channel.sms = "{code}营业厅服务"'})
    surveys = {"services": {"survey_sample_rate": 1.0}}
    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=only(help=1),
                             reactions={"survey": {"valid": 1, "invalid": 0, "late": 0, "ignore": 0}},
                             load={"duration": 0, "count": 20, "concurrency": 4})  # fmt: skip
    run = smsgw_fleet(scenario, config=gateway_config(config, **surveys), expect=gateway_config(**surveys))
    assert run.failed > 0 and run.summary["failures_by_step"] == {"rating": {"survey": run.failed}}
    assert "service='10086营业厅服务', expected '10086短信服务'" in run.failures[0]["error"]


@pytest.mark.parametrize("after", [3, 4])
async def test_a_copy_of_one_of_the_last_4_texts_since_the_subscribers_last_mo_is_a_copy(make_gateway, after: int) -> None:
    """`after` spammer rounds to 6 subscribers who ignore the spam (no MO of theirs between the texts); a proxy delivers
    each subscriber's first spam text again right after the `after`th. The fleet remembers the last 4 arrivals
    (behaviours.RECENT) to call a text a copy: the copy's own judge (Fleet._copy) and its delivery (Phone.deliver) must
    agree. Before, with 3 remembered, a copy after the third passed unnoticed; later the delivery looked 4 back and the
    judge 3 (after its own arrival was remembered): a copy after the fourth was kept from its dialogue, yet not counted,
    and the run passed."""
    gw = make_gateway()
    seen: dict[str, list[bytes]] = {}

    def copy_the_first(frame: bytes) -> list[bytes]:
        pdu = decode_pdu(frame)
        if pdu.source_addr not in SPAMMERS:  # type: ignore[attr-defined]
            return [frame]
        texts = seen.setdefault(pdu.destination_addr, [])  # type: ignore[attr-defined]
        texts.append(frame)
        return [frame, texts[0]] if len(texts) == after else [frame]

    scenario = make_scenario(fleet={"count": 6, "binds": 1, **NO_SP}, behaviours=only(spammer=1) | {"spammer": {"weight": 1, "victims": 6}},
                             spammers={"count": after}, reactions={"spam": {"report": 0, "two_step": 0, "ignore": 1}},
                             load={"duration": 0, "count": after, "concurrency": 1, "timeout": 3})  # fmt: skip
    async with Proxy(gw.smpp_port, change=copy_the_first) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.failed == 0 and run.outcomes["spammer"] == {"sent": after}, run.outcomes
    assert run.summary["failures_by_step"] == {"delivery": {"text delivered twice": 6}}, run.summary["failures_by_step"]


# ------------------------------------------------------------------ refusals
def test_refusals_that_failed_a_spammer_round_are_not_listed_as_expected(smsgw_fleet) -> None:
    """The spammers' account is throttled: their texts are refused with ESME_RTHROTTLED, which no report
    explains, and the rounds fail. Before, those refusals were also listed as "refused (as expected)"."""
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=only(spammer=1, help=1) | {
        "spammer": {"weight": 1, "victims": 6}}, spammers={"count": 2}, load={"duration": 0, "count": 20, "concurrency": 2})  # fmt: skip
    run = smsgw_fleet(scenario, config={"accounts": [{"system_id": "carrier", "throughput": 1}]})
    assert run.summary["failures_by_step"]["spammer"] == {"spam": run.outcomes["spammer"]["failed"]}
    assert "ESME_RTHROTTLED, expected ESME_ROK" in next(f for f in run.failures if f["kind"] == "spammer")["error"]
    assert "ESME_RTHROTTLED" not in run.summary["mo_refused_expected"]
    assert run.summary["mo_refused"]["ESME_RTHROTTLED"] >= run.outcomes["spammer"]["failed"]


SPAMMER = "8613000000000"  # the first of [spammers]
SPAMMERS = {SPAMMER, "8613000000001", "8613000000002", "8613000000003"}


def spammer_rounds(count: int, **reactions: float) -> object:
    """`count` rounds of one spammer to 6 of 30 subscribers (threshold 5), one at a time; the victims react to the
    spam as `reactions` say (default: each reports it)."""
    return make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=only(spammer=1) | {"spammer": {"weight": 1, "victims": 6}},
                         spammers={"count": 1}, reactions={"spam": {"report": 1, "two_step": 0, "ignore": 0, **reactions}},
                         load={"duration": 0, "count": count, "concurrency": 1, "timeout": 8})  # fmt: skip


def lose_the_first_text_from(source: str) -> Callable[[bytes], list[bytes]]:
    """A Proxy's change: the first deliver_sm from `source` is lost on its way (the gateway tries it again after its
    response_timeout, 10 s)."""
    lost: list[bytes] = []

    def lose(frame: bytes) -> list[bytes]:
        if not lost and decode_pdu(frame).source_addr == source:  # type: ignore[attr-defined]
            lost.append(frame)
            return []
        return [frame]

    return lose


async def test_spam_withheld_once_the_spammer_is_blocked_is_excused_at_once(make_gateway) -> None:
    """A round's text to one victim is lost on its way; the other 5 victims report the spammer, which blocks it, so
    the gateway rightly refuses the lost text's retry: it never comes. Before, the round waited the whole step timeout
    (8 s) for it before excusing it, and a closed loop's load (its steady window) lasted that long: the smoke
    scenario's rate came out ~120/s, failing --min-rate 300, in 6 runs of 8."""
    gw = make_gateway()
    async with Proxy(gw.smpp_port, change=lose_the_first_text_from(SPAMMER)) as proxy:
        run = await run_fleet_async(spammer_rounds(1), target=("127.0.0.1", proxy.port))
    run.assert_ok()
    assert run.outcomes["spammer"] == {"sent": 1, "blocked": 1} and run.outcomes["spam"]["reported"] == 5, run.outcomes
    assert run.summary["load_s"] < 4, run.summary["load_s"]


async def test_reporters_never_told_their_report_was_handled_fail_the_run(make_gateway) -> None:
    """A proxy drops every "report handled" notice: the spammer is blocked, but none of its reporters hears of it
    (SPEC 3.3: every reporter is told). Before, the notices were only counted, and the run passed."""
    gw = make_gateway()
    handled = "已被处理".encode("utf-16-be")

    def untold(pdu: bytes) -> list[bytes]:
        return [] if handled in pdu else [pdu]

    async with Proxy(gw.smpp_port, change=untold) as proxy:
        run = await run_fleet_async(spammer_rounds(1), target=("127.0.0.1", proxy.port))
    assert run.failed == 0 and run.summary["failures_by_step"] == {"spammer": {"report handled": 1}}, run.summary["failures_by_step"]
    assert re.match(r"blocked network-wide \(0x400\), yet 6 of the 6 victims whose report of it was acknowledged were never "
                    r"told it was handled \(spam.handled\): \['86138", run.failures[0]["error"]), run.failures[0]["error"]
    assert run.failures[0]["msisdn"] == SPAMMER and "spam_handled" not in run.summary["unsolicited"]


def test_reporters_of_a_spammer_never_blocked_are_not_expected_to_be_told_it_was_handled(smsgw_fleet) -> None:
    """The threshold is 10: the 6 victims' reports are acknowledged, the spammer is never blocked, and no reporter is
    told "report handled" (SPEC 3.3: that comes with a block). The end check of those notices is for spammers seen
    refused 0x400 only: a correct gateway passes."""
    run = smsgw_fleet(spammer_rounds(1), config={"services": {"spam_block_threshold": 10}})
    run.assert_ok()
    assert run.outcomes["spammer"] == {"sent": 1} and run.outcomes["spam"]["reported"] == 6, run.outcomes
    assert "spam_handled" not in run.summary["unsolicited"]


async def test_reports_further_apart_than_the_block_window_are_not_expected_to_block_the_spammer(make_gateway) -> None:
    """Threshold 2 within a spam_block_window of 1 s: a round every 3 s to one victim, who reports the spammer, so no two
    reports are ever filed within the window and a correct gateway never blocks it. Before, the fleet expected a block
    once 2 victims' reports were acknowledged, whenever they were filed: the next round (and the last check) failed,
    "answered wrongly", ESME_ROK where only 0x400 was expected."""
    gw = make_gateway(services={"spam_block_threshold": 2, "spam_block_window": 1.0})
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=only(spammer=1) | {"spammer": {"weight": 1, "victims": 1}},
                             spammers={"count": 1}, reactions={"spam": {"report": 1, "two_step": 0, "ignore": 0}},
                             load={"mode": "open", "rate": 1 / 3, "duration": 0, "count": 4, "timeout": 3})  # fmt: skip
    run = await run_fleet_async(scenario, target=("127.0.0.1", gw.smpp_port), expect=gw.gateway.config)
    run.assert_ok()
    assert run.outcomes["spammer"] == {"sent": 4} and run.outcomes["spam"]["reported"] >= 3, run.outcomes
    assert not run.summary["fleet"]["spammers"][SPAMMER]["blocked_expected"]


def test_the_block_window_is_measured_on_the_targets_clock(tmp_path: Path) -> None:
    """Threshold 2 within a spam_block_window of 10 s on the gateway's clock, which runs far faster than this machine's
    (a SimulatedClock advanced 11 s every 20 ms): a round every 2 s to one victim, each reporting the spammer, so on the
    gateway's clock no two reports are within 10 s and it never blocks the spammer, rightly. Before, the fleet timed the
    reports on its own clock (2 s apart): it expected a block and failed the next round, "ESME_ROK, expected
    SMSGW_RSENDERBLOCKED" (found by this session's regression review)."""
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=only(spammer=1) | {"spammer": {"weight": 1, "victims": 1}},
                             spammers={"count": 1}, reactions={"spam": {"report": 1, "two_step": 0, "ignore": 0}},
                             load={"mode": "open", "rate": 0.5, "duration": 0, "count": 4, "timeout": 3})  # fmt: skip
    settings = {"services": {"spam_block_threshold": 2, "spam_block_window": 10.0}}
    run = run_on_a_fast_clock(tmp_path, settings, scenario, advance=11, every=0.02)
    run.assert_ok()
    assert run.outcomes["spammer"] == {"sent": 4} and run.outcomes["spam"]["reported"] >= 3, run.outcomes


def run_on_a_fast_clock(tmp_path: Path, settings: dict, scenario: object, advance: float, every: float) -> FleetRun:
    """`scenario` against a gateway (the built-in config with `settings`) whose SimulatedClock is advanced `advance`
    seconds `every` seconds while the fleet runs (as a QA script moving the target's time on would)."""
    clock = SimulatedClock()
    stop = threading.Event()

    def run_fast() -> None:
        while not stop.wait(every):
            clock.advance(advance)

    with FleetController(settings, db_path=tmp_path / "gateway.db", clock=clock) as controller:
        fast = threading.Thread(target=run_fast)
        fast.start()
        try:
            return controller.run(scenario)
        finally:
            stop.set()
            fast.join()


def test_confirmations_lapse_on_the_targets_clock(tmp_path: Path) -> None:
    """Two subscribers order and never answer, 12 orders in 3 s; the confirmation_validity is 30 s on the gateway's
    clock, advanced 40 s every 0.5 s, so an order left waiting lapses there within the next order or two and the
    gateway gives the lowest reply code, Y1, again. Before, the fleet timed the lapse on its own clock (30 s away): it
    expected Y2 and failed the order, "reply_code='Y1', expected 'Y2'"."""
    scenario = make_scenario(fleet={"count": 2, "binds": 1, **NO_SP},
                             behaviours=only(order=1) | {"order": {"weight": 1, "confirm": 0, "decline": 0, "ignore": 1}},
                             load={"mode": "open", "rate": 4, "duration": 0, "count": 12, "timeout": 3})  # fmt: skip
    run = run_on_a_fast_clock(tmp_path, {"services": {"confirmation_validity": 30.0}}, scenario, advance=40, every=0.5)
    run.assert_ok()
    assert run.outcomes["order"] == {"ignored": 12}, run.outcomes


async def test_an_answer_after_the_confirmation_lapsed_on_the_targets_clock_may_be_told_so(make_gateway) -> None:
    """The gateway's clock is set on 31 s (its confirmation_validity is 30 s) as each part of a confirmation goes to
    the subscriber (a proxy): every confirm or decline comes after the confirmation's end on the gateway's clock, which
    rightly answers that it expired, or past one more validity that nothing waits. Before, the fleet expected the
    order made or declined and failed the run, "expected confirmation.declined from 10086, got '您目前没有待确认的…'"."""
    clock = SimulatedClock()
    gw = make_gateway(clock=clock, services={"confirmation_validity": 30.0})

    def lapse_each_confirmation(frame: bytes) -> list[bytes]:
        pdu = decode_pdu(frame)
        if pdu.command_id == DELIVER_SM:
            _concat, body = parse_udh(pdu.esm_class, pdu.short_message)  # type: ignore[attr-defined]
            if "您正在定制" in decode(body, pdu.data_coding):  # type: ignore[attr-defined]  # a confirmation's first part
                clock.advance(31)
        return [frame]

    scenario = make_scenario(fleet={"count": 2, "binds": 1, **NO_SP},
                             behaviours=only(order=1) | {"order": {"weight": 1, "confirm": 1, "decline": 1, "ignore": 0}},
                             load={"duration": 0, "count": 6, "concurrency": 1, "timeout": 3})  # fmt: skip
    async with Proxy(gw.smpp_port, change=lapse_each_confirmation) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port), expect=gw.gateway.config, clock=clock.now)
    run.assert_ok()
    assert run.outcomes["order"] == {"lapsed": 6}, run.outcomes


def test_surveys_are_timed_on_the_targets_clock(tmp_path: Path) -> None:
    """Each help dialogue brings a survey valid 5 s on the gateway's clock, advanced 40 s every 20 ms; the subscribers
    answer it at once (valid or nonsense), or late. On the gateway's clock a survey often ends while a text of its
    dialogue goes (told late, or a re-prompt or reason question not sent), and a late answer comes past one more
    validity period ("unsolicited"). Before, the fleet timed the validity on its own clock: it waited 5.5 s to answer
    late and failed a correct gateway, "late->late expected rating.late from 10086700, got '您好，您目前没有待评价的服务。…'"."""
    scenario = make_scenario(fleet={"count": 4, "binds": 1, **NO_SP}, behaviours=only(help=1),
                             reactions={"survey": {"valid": 1, "invalid": 1, "late": 1, "ignore": 0, "late_max_wait": 10}},
                             load={"mode": "open", "rate": 4, "duration": 0, "count": 12, "timeout": 3})  # fmt: skip
    settings = {"services": {"survey_validity": 5.0, "survey_sample_rate": 1.0}}
    run = run_on_a_fast_clock(tmp_path, settings, scenario, advance=40, every=0.02)
    run.assert_ok()
    assert run.outcomes["help"] == {"help": 12} and sum(run.outcomes["rating"].values()) >= 6, run.outcomes


MIDNIGHT = datetime(2026, 12, 10, tzinfo=timezone(timedelta(hours=8))).timestamp()  # the operator's (UTC+8)
BEFORE_MIDNIGHT = 4.0


def run_across_midnight(tmp_path: Path, scenario: object) -> FleetRun:
    """`scenario` against a gateway allowing one spam report a day (spam_reports_per_day 1), its clock set BEFORE_MIDNIGHT
    seconds before the operator's midnight as the run begins (a SimulatedClock: it moves on with real time). The first
    day's reports take a fraction of it on an idle machine: the rest is a loaded one's margin."""
    clock = SimulatedClock()
    with FleetController({"services": {"spam_reports_per_day": 1}}, db_path=tmp_path / "gateway.db", clock=clock) as controller:
        clock.set(MIDNIGHT - BEFORE_MIDNIGHT)
        return controller.run(scenario)


def test_subscribers_report_spam_again_once_the_operators_day_turns(tmp_path: Path) -> None:
    """3 subscribers, one report a day each: each reports once, then once more after midnight, as the gateway takes
    it. Before, the fleet counted their reports for the whole run: after the first 3 none of them was picked to report
    again, and the spam behaviour silently stopped."""
    run = run_across_midnight(tmp_path, make_scenario(fleet={"count": 3, "binds": 1, **NO_SP}, behaviours=only(spam=1),
                                                      load={"duration": 7, "concurrency": 1, "timeout": 2}))  # fmt: skip
    run.assert_ok()
    spam = run.outcomes["spam"]
    assert spam.get("reported", 0) + spam.get("reported_two_step", 0) == 6 and "rate_limited" not in spam, spam


def test_spam_after_midnight_is_reported_by_subscribers_who_used_up_the_day_before(tmp_path: Path) -> None:
    """3 subscribers, one report a day each, 2 spammers, a round every 6 s to all 3, each reporting the spam: round 1
    (before midnight) uses up their day; after midnight they report the other spammer, and the gateway takes it.
    Before, the fleet expected those reports refused as over the limit: the run failed, a correct gateway."""
    scenario = make_scenario(fleet={"count": 3, "binds": 1, **NO_SP}, behaviours=only(spammer=1) | {"spammer": {"weight": 1, "victims": 3}},
                             spammers={"count": 2}, reactions={"spam": {"report": 1, "two_step": 0, "ignore": 0}},
                             load={"mode": "open", "rate": 1 / 6, "duration": 0, "count": 3, "timeout": 2})  # fmt: skip
    run = run_across_midnight(tmp_path, scenario)
    run.assert_ok()
    assert run.outcomes["spam"] == {"reported": 6}, run.outcomes


def test_mo_refused_by_a_throttled_target_are_counted_by_status(smsgw_fleet, tmp_path: Path) -> None:
    """The subscribers' account is throttled: their MOs are refused with ESME_RTHROTTLED and the dialogues fail.
    Before, the refusals showed only in the failures' texts (the first 200 kept): `mo_refused` was empty and the
    report said "none refused"."""
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, behaviours=only(help=1),
                             load={"duration": 0, "count": 30, "concurrency": 6})  # fmt: skip
    run = smsgw_fleet(scenario, config={"accounts": [{"system_id": "handset", "throughput": 2}]}, report=tmp_path / "report")
    failed = run.outcomes["help"]["failed"]
    assert failed > 0 and run.summary["failures_by_step"] == {"help": {"help->10086": failed}}
    assert run.summary["mo_refused"] == {"ESME_RTHROTTLED": failed} and run.summary["mo_refused_expected"] == {}
    assert f"MO refused, failing their dialogues: ESME_RTHROTTLED {failed}" in str(run)
    assert "refused (as expected)" not in str(run)
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    refused = html.split("MO refused by the server", 1)[1].split("Arrived unasked", 1)[0]
    assert "none refused" not in refused and "ESME_RTHROTTLED" in refused, refused


async def test_a_reply_that_comes_before_the_mo_is_answered_is_timed_to_the_answer(make_gateway) -> None:
    """The SMSC (a proxy here) answers every submit_sm 0.5 s late and delivers what it brings at once: the help text,
    the chat, the spam, the spam report's ack arrive before the MO's submit_sm_resp. Before, the latency left out the
    wait for that answer (README: it runs from the MO's submit_sm, so it includes it): p99 3 ms."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 30, "binds": 1, **NO_SP}, spammers={"count": 2},
                             behaviours=only(help=1, chatter=1) | {"spammer": {"weight": 1, "victims": 3}},
                             load={"duration": 0, "count": 12, "concurrency": 6})  # fmt: skip
    async with Proxy(gw.smpp_port, hold=lambda pdu: 0.5 if command_of(pdu) == CommandId.SUBMIT_SM_RESP else 0.0) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.failed == 0 and run.faults == 0, str(run)
    by_kind = run.summary["latency_ms_by_kind"]
    assert {"help", "chatter", "spammer", "spam"} <= set(by_kind), by_kind  # spam: the victims' reports (reactions)
    assert all(500 <= latency["p50"] < 1500 for latency in by_kind.values()), by_kind


async def test_a_reply_read_with_the_mo_answer_is_timed_to_that_read_not_to_the_busy_fleet(make_gateway) -> None:
    """The SMSC (a proxy here) answers each MO in the same write as the text it delivers, and the fleet's event loop
    is then busy 0.5 s before the dialogue resumes. Before, the MO's answer was stamped when the dialogue resumed, so
    every step took the fleet's own loop delay as the target's (chatter p50 0.87 -> 1.45 ms against
    bench/loopback_server.py); here 0.5 s each."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 10, "binds": 1, **NO_SP},
                             behaviours=only(chatter=1) | {"chatter": {"weight": 1, "long": 0.0}},
                             load={"duration": 0, "count": 4, "concurrency": 1})  # fmt: skip
    async with AnswerWithTheText(gw.smpp_port, busy=0.5) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.failed == 0 and run.faults == 0 and proxy.held == 4, (str(run), proxy.held)
    assert run.summary["latency_ms_by_kind"]["chatter"]["max"] < 250, run.summary["latency_ms_by_kind"]


async def test_mo_queued_behind_a_full_window_count_the_wait_against_their_response_timeout(make_gateway) -> None:
    """The SMSC (a proxy here) answers every submit_sm 1.5 s late: with a window of 2 on one bind it takes 1.3 MO/s,
    and the load offers 8/s. The MO the window held back wait for room in it, and that wait counts against their
    response timeout (5 s): those not answered within it fail saying so, and the rate missed says why. Before, a wait
    in the queue had no limit: every dialogue ended ok in the drain, counted by its start at the rate offered (a
    target answering in 4 s at half the rate offered passed --min-rate 95 at --rate 100 with a p99 of 15 s)."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 1, "window": 2, **NO_SP}, behaviours=only(help=1),
                             load={"mode": "open", "rate": 8, "duration": 2, "timeout": 1})  # fmt: skip
    async with Proxy(gw.smpp_port, hold=lambda pdu: 1.5 if command_of(pdu) == CommandId.SUBMIT_SM_RESP else 0.0) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.completed > 0 and run.failed > 0, str(run)
    errors = {failure["error"] for failure in run.failures}
    assert all(re.fullmatch(r"MO not answered: (no response to submit_sm #\d+ within 5 s of its submission, [\d.]+ s of "
                            r"them in the queue for room in the full window of 2|submit_sm not sent within [\d.]+ s: "
                            r"the window of 2 requests stayed full, .*)", error) for error in errors), errors  # fmt: skip
    assert run.summary["fleet"]["stats"]["submit_sm_waited_for_window"] > 0, run.summary["fleet"]["stats"]
    assert run.summary["throughput"]["ok_per_s"] < 6, run.summary["throughput"]
    assert any(miss.startswith(f"{run.summary['throughput']['ok_per_s']} dialogues/s ended ok in the steady state, "
                               "below --min-rate 6: the target answered MO more slowly than the load offered them, ")
               and "waited for room in a full window (2 unanswered per bind, 1 binds)" in miss
               for miss in run.misses(min_rate=6)), run.misses(min_rate=6)  # fmt: skip


async def test_dialogues_cut_at_the_drain_with_their_mo_never_sent_are_not_said_to_wait_for_a_reply(make_gateway) -> None:
    """An SMSC (a proxy here) that never answers submit_sm, a window of 2, a drain of 1 s shorter than the response
    timeout: at the drain's end 2 dialogues wait for the answer to their MO and the rest for room in the window.
    Before, all were said to have 'still waited for a reply', though their MO had never left."""
    gw = make_gateway()
    scenario = make_scenario(fleet={"count": 40, "binds": 1, "window": 2, **NO_SP}, behaviours=only(help=1),
                             load={"mode": "open", "rate": 8, "duration": 1, "drain": 1})  # fmt: skip
    never: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    async with Proxy(gw.smpp_port, answer=lambda pdu: never if command_of(pdu) == CommandId.SUBMIT_SM else None) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.summary["fleet"]["stats"]["cancelled_at_drain"] == 8, run.summary["fleet"]["stats"]
    assert ("8 dialogues still waited when the drain after the load ended (load.drain): 6 for an MO never sent (it "
            "waited for room in the full window of 2 unanswered submit_sm), 2 for the answer to their MO, so they were "
            "never checked") in run.misses(), run.misses()  # fmt: skip


@pytest.mark.parametrize(("kind", "step", "error"), [
    ("chatter", "chat->peer", r"\d+ received the text from \d+ in part within 1 s: "),
    ("help", "help->help", "a long text from 10086 arrived in part within 1 s: "),
])  # fmt: skip
async def test_a_long_text_a_dialogue_waits_for_arriving_in_part_fails_it_once_naming_the_parts(
        make_gateway, kind: str, step: str, error: str) -> None:  # fmt: skip
    """The SMSC (a proxy here) drops part 2 of every long text it delivers: the chat, the two-part help text. Before,
    each failed twice, using --max-failures twice: the dialogue ("received nothing within 5 s", though part 1 had
    arrived), then the delivery ("long text arrived in part")."""
    gw = make_gateway()

    def drop_second_part(frame: bytes) -> list[bytes]:
        pdu = decode_pdu(frame)
        concat, _body = parse_udh(pdu.esm_class, pdu.short_message)  # type: ignore[attr-defined]
        return [] if concat is not None and concat.seqnum == 2 else [frame]

    behaviours = only(**{kind: 1}) | {"chatter": {"weight": float(kind == "chatter"), "long": 1.0}}
    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=behaviours,
                             load={"duration": 0, "count": 4, "concurrency": 2, "timeout": 1})  # fmt: skip
    async with Proxy(gw.smpp_port, change=drop_second_part) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.summary["failures_by_step"] == {kind: {step: 4}} and run.faults == 0, run.summary["failures_by_step"]
    parts = r"part\(s\) 1 of 2 arrived, part\(s\) 2 missing"
    assert all(re.fullmatch(error + parts, f["error"]) for f in run.failures), run.failures[0]
    assert "arrived_in_part" not in run.summary["fleet"]["stats"]


@pytest.mark.parametrize("lost", ["refused", "unanswered"])
async def test_a_long_mo_refused_or_unanswered_in_part_fails_its_dialogue_only(make_gateway, lost) -> None:
    """The SMSC (a proxy here) refuses the second part of every long MO with ESME_RMSGQFUL, or never answers it, and
    delivers the first. Before, each refusal failed twice: the dialogue (MO refused), then the delivery ("long text
    arrived in part: part(s) 1 only"), blaming the target for a text the fleet knew it had sent in part."""
    gw = make_gateway()

    def lose_second_part(frame: bytes) -> bytes | None:
        pdu = decode_pdu(frame)
        if pdu.command_id != CommandId.SUBMIT_SM:
            return None
        concat, _body = parse_udh(pdu.esm_class, pdu.short_message)  # type: ignore[attr-defined]
        if concat is None or concat.seqnum != 2:
            return None
        if lost == "unanswered":
            return b""  # (nothing sent back)
        return encode_pdu(SubmitSmResp(sequence_number=pdu.sequence_number, command_status=CommandStatus.ESME_RMSGQFUL))

    count = 10 if lost == "refused" else 2  # (each unanswered part waits for the fleet's response timeout, 5 s)
    scenario = make_scenario(fleet={"count": 20, "binds": 1, **NO_SP}, behaviours=only(chatter=1) | {
        "chatter": {"weight": 1, "long": 1.0}}, load={"duration": 0, "count": count, "concurrency": 2, "timeout": 1})  # fmt: skip
    async with Proxy(gw.smpp_port, answer=lose_second_part) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port))
    assert run.summary["failures_by_step"] == {"chatter": {"chat->subscriber": count}}, run.summary["failures_by_step"]
    error = {"refused": "MO refused with ESME_RMSGQFUL", "unanswered": "MO not answered: no response to submit_sm #"}[lost]
    assert all(f["error"].startswith(error) for f in run.failures)
    stats = run.summary["fleet"]["stats"]
    assert run.faults == 0 and stats["in_part_after_refusal"] == count and "arrived_in_part" not in stats
    assert f"long texts arrived in part after a part of their MO was refused or unanswered: {count}" in str(run)


async def test_a_round_waits_for_the_reports_begun_before_its_answers_to_end(make_gateway) -> None:
    """As above, with two-step reports: a proxy lets the victim's forwarded text through, then answers round 2's text
    to them 0x401 (allowed: that report had begun), and accepts the report's number itself, 0.5 s later, never to be
    acknowledged. The report then waits its step timeout from after the round's answer came: it ends unacknowledged
    0.5 s after the round's own step timeout. Before, the round stopped waiting then and passed (a report still under
    way left it unjudged); it now waits for the reports begun before its answers to end (each ends by its steps'
    timeouts), and fails."""
    gw = make_gateway(services={"spam_block_threshold": 10})
    victim = "8613800000000"  # the fleet's first subscriber: one of every round's 6 victims
    forwarded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reports: list[int] = []
    texts_to_victim: list[int] = []

    async def answer_later(sequence_number: int, after: asyncio.Future[None] | None, **fields: object) -> bytes:
        await (after if after is not None else asyncio.sleep(0.5))
        return encode_pdu(SubmitSmResp(sequence_number=sequence_number, **fields))

    def target(frame: bytes) -> asyncio.Future[bytes] | None:
        pdu = decode_pdu(frame)
        if pdu.command_id != CommandId.SUBMIT_SM:
            return None
        if pdu.source_addr == victim:  # type: ignore[attr-defined]  # its report: the text forwarded, the number kept
            reports.append(pdu.sequence_number)
            if len(reports) == 1:
                forwarded.set_result(None)
                return None
            return asyncio.ensure_future(answer_later(pdu.sequence_number, None, message_id="report"))
        if (pdu.source_addr, pdu.destination_addr) != (SPAMMER, victim):  # type: ignore[attr-defined]
            return None
        texts_to_victim.append(pdu.sequence_number)
        if len(texts_to_victim) == 1:
            return None  # round 1's: delivered, and reported
        return asyncio.ensure_future(answer_later(pdu.sequence_number, forwarded,
                                                  command_status=CommandStatus.SMSGW_RBLOCKEDBYRECIPIENT))  # fmt: skip

    await assert_round_2_fails_unconfirmed(gw, target, victim, "two_step", "number->ack")


async def assert_round_2_fails_unconfirmed(gw, target: Callable[[bytes], object], victim: str, variant: str, step: str) -> None:
    """Two rounds of the spammer to the fleet's 6 subscribers, who report it (`variant` of [reactions.spam]), through a
    proxy answering as `target` does: `victim`'s report must fail at `step`, and round 2, its 0x401 to `victim` never
    confirmed by that report's ack."""
    scenario = make_scenario(fleet={"count": 6, "binds": 1, **NO_SP}, behaviours=only(spammer=1) | {"spammer": {"weight": 1, "victims": 6}},
                             spammers={"count": 1}, reactions={"spam": {"report": 0, "two_step": 0, "ignore": 0, variant: 1}},
                             load={"duration": 0, "count": 2, "concurrency": 1, "timeout": 3})  # fmt: skip
    async with Proxy(gw.smpp_port, answer=target) as proxy:
        run = await run_fleet_async(scenario, target=("127.0.0.1", proxy.port), expect=gw.gateway.config)
    failures = run.summary["failures_by_step"]
    assert failures == {"spam": {step: 1}, "spammer": {"spam": 1}}, failures
    failure = next(f for f in run.failures if f["kind"] == "spammer")
    assert (f"refused SMSGW_RBLOCKEDBYRECIPIENT (0x401) to ['{victim}'], whose report of the spammer was never "
            "acknowledged") in failure["error"], failure["error"]  # fmt: skip


async def test_a_refusal_as_blocked_by_the_recipient_whose_report_then_fails_fails_the_round(make_gateway) -> None:
    """Round 1's 6 victims report the spammer (threshold 10: no block); a proxy accepts one victim's report itself (no
    ack ever comes: that report dialogue fails at its timeout) and answers round 2's text to them 0x401. Allowed then
    (that report had begun), the refusal must be confirmed by the report's ack, which never comes: the round fails
    once the report has ended unacknowledged (spam_report tells the spammer it ended: Spammer.report_ended), not left
    unjudged. The refusal goes only once the fleet has answered an enquire_link sent right behind the report's answer,
    the report waiting for its ack by then (before the round waited for the reports begun before it to end, the
    round's step timeout could otherwise end first and leave it unjudged: the test before)."""
    gw = make_gateway(services={"spam_block_threshold": 10})
    victim = "8613800000000"  # the fleet's first subscriber: one of every round's 6 victims
    probe = 0x7FFFFFF0  # the sequence number of the enquire_link behind the report's answer
    the_report_waits_for_its_ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    texts_to_victim: list[int] = []

    async def refusal(sequence_number: int) -> bytes:
        await the_report_waits_for_its_ack
        return encode_pdu(SubmitSmResp(sequence_number=sequence_number, command_status=CommandStatus.SMSGW_RBLOCKEDBYRECIPIENT))

    def target(frame: bytes) -> bytes | asyncio.Future[bytes] | None:
        pdu = decode_pdu(frame)
        if (pdu.command_id, pdu.sequence_number) == (CommandId.ENQUIRE_LINK_RESP, probe):
            the_report_waits_for_its_ack.set_result(None)
            return b""  # (the proxy's own)
        if pdu.command_id != CommandId.SUBMIT_SM:
            return None
        if pdu.source_addr == victim:  # type: ignore[attr-defined]  # its report: accepted, never acknowledged
            answer = SubmitSmResp(sequence_number=pdu.sequence_number, message_id="report")
            return encode_pdu(answer) + encode_pdu(EnquireLink(sequence_number=probe))
        if (pdu.source_addr, pdu.destination_addr) != (SPAMMER, victim):  # type: ignore[attr-defined]
            return None
        texts_to_victim.append(pdu.sequence_number)
        if len(texts_to_victim) == 1:
            return None  # round 1's: delivered, and reported
        return asyncio.ensure_future(refusal(pdu.sequence_number))

    await assert_round_2_fails_unconfirmed(gw, target, victim, "report", "report->ack")
