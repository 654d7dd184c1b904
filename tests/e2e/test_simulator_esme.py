"""The simulator's SMPP client (simulator/esme.py) and dialogues (simulator/dialogues.py) against the real gateway."""

from __future__ import annotations

import asyncio
import struct
from typing import Self

import pytest

from gateway.app import GatewayController
from simulator.dialogues import (
    Plan,
    order_confirm,
    query_unsubscribe,
    rating,
    run_dialogue,
    spam_report,
)
from simulator.esme import (
    BindError,
    BindLost,
    ConnectionClosed,
    Esme,
    NotSent,
    NotSentInTime,
    ResponseTimeout,
    ShortMessage,
)
from simulator.handset import THROTTLED, Handset, Resend, Switchboard

A, B, C = "8613800000001", "8613800000002", "8613900000003"
ECHO = "10086000"
LONG = "长短信：" + "一二三四五六七八九十" * 12  # 124 UCS2 characters: two parts each way


async def connect(gw: GatewayController, **options) -> tuple[Esme, asyncio.Queue[ShortMessage]]:
    received: asyncio.Queue[ShortMessage] = asyncio.Queue()
    esme = await Esme.connect("127.0.0.1", gw.smpp_port, on_message=received.put_nowait, **options)
    return esme, received


async def test_bind_submit_and_receive_the_echo(gateway) -> None:
    esme, received = await connect(gateway)
    resp = await esme.bind("trx", "handset", "handset", address_range=r"86138\d{8}")
    assert resp.system_id == "smsgw" and esme.is_bound

    resp = await esme.submit(A, ECHO, "hello 1")
    assert resp.command_status == 0 and resp.message_id
    echo = await asyncio.wait_for(received.get(), 5)
    assert (echo.source, echo.destination, echo.text, echo.parts) == (ECHO, A, "hello 1", 1)

    parts = await esme.submit_parts(A, ECHO, LONG)  # segmented (UDH, UCS2), reassembled by the gateway
    assert len(parts) == 2 and all(p.command_status == 0 for p in parts)
    echo = await asyncio.wait_for(received.get(), 5)
    assert (echo.text, echo.parts, echo.data_coding) == (LONG, 2, 8)

    assert (await esme.enquire_link()).command_status == 0
    await esme.unbind()
    assert esme.is_closed and esme.stats.submit_ok == 3 and esme.stats.deliver_sm == 3


async def test_window_queues_requests_beyond_it_and_tx_rx_binds(gateway) -> None:
    tx, _ = await connect(gateway, window=2)
    rx, received = await connect(gateway)
    await rx.bind("rx", "handset", "handset")
    await tx.bind("tx", "handset", "handset")
    responses = await asyncio.gather(*(tx.submit(A, ECHO, f"m{i}") for i in range(20)))
    assert [r.command_status for r in responses] == [0] * 20
    texts = {(await asyncio.wait_for(received.get(), 5)).text for _ in range(20)}
    assert texts == {f"m{i}" for i in range(20)}
    await tx.unbind()
    await rx.unbind()


async def test_answers_the_gateways_enquire_link(make_gateway) -> None:
    gw = make_gateway(gateway={"enquire_link_interval": 0.5, "response_timeout": 1})
    esme, received = await connect(gw)
    await esme.bind("trx", "handset", "handset")
    await asyncio.sleep(3)  # several enquire_links: unanswered, the gateway would have closed the link after 1 s
    assert esme.is_bound
    assert (await esme.submit(A, ECHO, "still here")).command_status == 0
    assert (await asyncio.wait_for(received.get(), 5)).text == "still here"
    await esme.unbind()


async def test_refused_bind(gateway) -> None:
    esme, _ = await connect(gateway)
    with pytest.raises(BindError) as refused:
        await esme.bind("trx", "handset", "wrong")
    assert refused.value.status == 0x0E  # ESME_RINVPASWD
    esme.close()


async def test_one_dialogue_of_each_kind(make_gateway) -> None:
    gw = make_gateway(services={"survey_sample_rate": 1.0})
    plan = Plan.from_config(gw.gateway.config)
    board = Switchboard()
    esme = await Esme.connect("127.0.0.1", gw.smpp_port, on_message=board)
    await esme.bind("trx", "handset", "handset", address_range=r"8613[89]\d{8}")
    # A orders and unsubscribes: it ignores the surveys those 10086 dialogues are sampled for.
    a = board.add(Handset(A, esme, ignore=[plan.rating]))
    b, c = board.add(Handset(B, esme)), board.add(Handset(C, esme))

    results = [
        await order_confirm(a, plan, "TT"),
        await query_unsubscribe(a, plan),
        await query_unsubscribe(a, plan),
        await spam_report(b, plan, "8613012345678", "【中奖通知】恭喜您获得iPhone一部，请点击 http://x.cn 领取"),
        await rating(c, plan),
    ]
    for r in results:
        assert r.ok, f"{r.kind} failed at {r.step}: {r.error}\n{r.transcript}"
        assert not r.unexpected
    assert [(r.kind, r.outcome, r.mo) for r in results] == [
        ("order", "ordered", 2), ("query", "unsubscribed", 2), ("query", "none", 1), ("spam", "reported", 1), ("rating", "rated", 2),
    ]  # fmt: skip
    assert [name for name, _ in results[4].steps] == ["help->help", "help->survey", "1->thanks"]
    assert all(0 < latency < 5 for r in results for _, latency in r.steps)
    assert a.subscriptions == [] and results[3].data["report_id"]
    await asyncio.sleep(0.2)
    assert a.ignored[plan.rating] == 1  # one survey: a sampled survey never displaces an open one
    assert not any(h.inbox for h in (a, b, c)) and not board.unrouted
    await esme.unbind()


async def test_an_order_is_confirmed_with_a_confirm_word_the_target_takes(make_gateway) -> None:
    """A target whose confirm words are OK and YES: order_confirm answered with the built-in Y, which that target
    takes for "anything else" and so declines the order, and the dialogue failed 'expected
    confirmation.ordered_this_month ...'. The plan's confirm word is the target's (Y where it takes Y)."""
    gw = make_gateway(services={"confirm_words": ["OK", "YES"]})
    plan = Plan.from_config(gw.gateway.config)
    board = Switchboard()
    esme = await Esme.connect("127.0.0.1", gw.smpp_port, on_message=board)
    await esme.bind("trx", "handset", "handset", address_range=A)
    result = await order_confirm(board.add(Handset(A, esme)), plan, "TT")
    assert result.ok, f"{result.step}: {result.error}"
    assert [name for name, _ in result.steps] == ["TT->confirmation", "OK->ordered"]
    assert Plan.from_config().confirm_word == "Y"  # the built-in config's
    await esme.unbind()


async def test_a_wrong_reply_fails_the_dialogue_with_its_transcript(gateway) -> None:
    plan = Plan.from_config(gateway.gateway.config)
    board = Switchboard()
    esme = await Esme.connect("127.0.0.1", gateway.smpp_port, on_message=board)
    await esme.bind("trx", "handset", "handset")
    a = board.add(Handset(A, esme))
    a.subscriptions.append("sina-news")  # the subscriber believes it holds a service the gateway does not know of
    result = await query_unsubscribe(a, plan, timeout=2)
    assert (result.ok, result.step) == (False, "0000->listing") and "'no subscriptions', but" in result.error
    assert [(d, peer) for _, d, peer, _ in result.transcript] == [(">", "10086"), ("<", "10086")]
    # Survey sampling is off by default: the rating dialogue times out waiting for the survey.
    result = await rating(board.add(Handset(C, esme)), plan, timeout=0.5)
    assert (result.ok, result.step) == (False, "help->survey") and "within 0.5 s" in result.error
    await esme.unbind()


async def test_a_long_message_in_parts_of_different_codings_reads_whole(gateway) -> None:
    """The gateway passes a subscriber's parts on as they came: a GSM part and a UCS2 part of one message were
    joined and decoded in the last part's coding ('Hello 世界' read as '䡥汬漠世界')."""
    esme, received = await connect(gateway)
    await esme.bind("trx", "handset", "handset", address_range=B)
    sender, _ = await connect(gateway)
    await sender.bind("tx", "handset", "handset")
    parts = ((b"Hello ", 0), ("世界".encode("utf-16-be"), 8))
    for seqnum, (body, coding) in enumerate(parts, 1):
        udh = bytes((5, 0, 3, 77, 2, seqnum))
        resp = await sender.submit(A, B, udh + body, data_coding=coding, esm_class=0x40)
        assert resp.command_status == 0
    message = await asyncio.wait_for(received.get(), 5)
    assert (message.text, message.parts) == ("Hello 世界", 2)
    await sender.unbind()
    await esme.unbind()


async def test_parts_with_an_8_bit_and_a_16_bit_reference_of_one_number_read_as_two_texts(gateway) -> None:
    """Before, the simulator took them for one text's parts (a part of the other text 'sent again')."""
    esme, received = await connect(gateway)
    await esme.bind("trx", "handset", "handset", address_range=B)
    sender, _ = await connect(gateway)
    await sender.bind("tx", "handset", "handset")
    udh8, udh16 = (lambda n: bytes((5, 0, 3, 5, 2, n))), (lambda n: bytes((6, 8, 4, 0, 5, 2, n)))
    for part in (udh8(1) + b"Hello ", udh16(1) + b"Good ", udh8(2) + b"world", udh16(2) + b"bye"):
        assert (await sender.submit(A, B, part, data_coding=0, esm_class=0x40)).command_status == 0
    texts = [(await asyncio.wait_for(received.get(), 5)).text for _ in range(2)]
    assert sorted(texts) == ["Good bye", "Hello world"]
    await sender.unbind()
    await esme.unbind()


async def test_a_handset_whose_bind_was_lost_fails_each_later_wait_at_once_with_the_loss() -> None:
    """The wait under way when the bind went fails with its loss (Handset.cut_off); the next one (the dialogue's next
    step, or its next dialogue) must too, not end at its timeout as nothing having arrived."""
    handset = Handset(A, esme=None)
    waiting = asyncio.ensure_future(handset.expect(ECHO, timeout=5))
    await asyncio.sleep(0)  # (it waits)
    handset.cut_off(BindLost("the bind rx #1 as 'handset' was lost"))
    for wait in (waiting, handset.expect(ECHO, timeout=5)):
        with pytest.raises(BindLost, match="rx #1"):
            await asyncio.wait_for(wait, 1)


def _frame(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body


async def test_a_request_made_as_the_target_unbinds_fails_as_a_closed_connection() -> None:
    """An SMSC that delivers a text and unbinds in one write: the dialogue the text woke sent its next MO before the
    connection was gone, and the session's LocalProtocolError ('cannot send submit_sm in state unbound') made it
    the simulator's own internal error, not the target's unbind."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    tried: asyncio.Future[asyncio.Future] = asyncio.get_running_loop().create_future()

    def on_message(message: ShortMessage) -> None:  # (in the read that carries the unbind too)
        tried.set_result(asyncio.ensure_future(esme.submit(A, ECHO, "next")))

    async with server:
        esme = await Esme.connect("127.0.0.1", server.sockets[0].getsockname()[1], on_message=on_message)
        binding = asyncio.ensure_future(esme.bind("trx", "handset", "handset"))
        reader, writer = await accepted
        bind = await reader.readexactly(struct.unpack(">I", await reader.readexactly(4))[0] - 4)
        writer.write(_frame(0x80000009, struct.unpack(">I", bind[8:12])[0], b"smsc\0"))
        await binding
        deliver = b"\0" + b"\1\1" + ECHO.encode() + b"\0" + b"\1\1" + A.encode() + b"\0" + bytes(3) + b"\0\0" + bytes(4) + b"\x02hi"
        writer.write(_frame(0x00000005, 1, deliver) + _frame(0x00000006, 2))
        with pytest.raises(ConnectionClosed, match="unbound by the server"):
            await asyncio.wait_for(await tried, 5)
        writer.close()


class RawSmsc:
    """An SMSC on a loopback port, driven by the test: it answers each bind (bound()) and reads each submit_sm
    (submit_sm()); what else it sends is written by the test."""

    async def __aenter__(self) -> Self:
        self.connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.server = await asyncio.start_server(lambda r, w: self.connections.put_nowait((r, w)), "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def bound(self, **options: object) -> tuple[Esme, asyncio.StreamReader, asyncio.StreamWriter]:
        """A transceiver of the simulator (Esme `options`) connected and bound here, and this end of its connection."""
        esme = await Esme.connect("127.0.0.1", self.server.sockets[0].getsockname()[1], **options)
        binding = asyncio.ensure_future(esme.bind("trx", "handset", "handset"))
        reader, writer = await self.connections.get()
        bind = await reader.readexactly(struct.unpack(">I", await reader.readexactly(4))[0] - 4)
        writer.write(_frame(0x80000009, struct.unpack(">I", bind[8:12])[0], b"smsc\0"))
        await binding
        return esme, reader, writer

    @staticmethod
    async def submit_sm(reader: asyncio.StreamReader) -> int:
        """The next PDU read, a submit_sm: its sequence number."""
        body = await reader.readexactly(struct.unpack(">I", await reader.readexactly(4))[0] - 4)
        assert struct.unpack(">I", body[:4])[0] == 0x00000004, body
        return struct.unpack(">I", body[8:12])[0]


async def test_a_request_queued_behind_a_full_window_times_out_from_when_it_was_made() -> None:
    """An SMSC answering nothing, a window of 1, a response timeout of 1 s: the MO sent and the MO held back in the
    queue both fail about 1 s after they were made, the second as never sent. Before, a request in the queue had no
    timeout: it waited until the window freed (here: never) and then a whole response timeout more."""
    async with RawSmsc() as smsc:
        esme, reader, writer = await smsc.bound(window=1, response_timeout=1.0)
        sent, held = (asyncio.ensure_future(esme.submit(A, ECHO, text)) for text in ("sent", "held back"))
        await smsc.submit_sm(reader)
        outcomes = await asyncio.wait_for(asyncio.gather(sent, held, return_exceptions=True), 5)
        assert type(outcomes[0]) is ResponseTimeout and str(outcomes[0]) == "no response to submit_sm #2 within 1 s", outcomes
        assert isinstance(outcomes[1], NotSentInTime) and str(outcomes[1]).startswith("submit_sm not sent within "), outcomes
        assert esme.stats.queued == 1 and esme.stats.not_sent_in_time == 1 and esme.stats.submitted == 1
        esme.close()
        writer.close()


async def test_with_resend_an_mo_that_found_its_bind_unbound_goes_on_the_bind_the_handset_is_given_again() -> None:
    """An SMSC unbinds the handset's bind with an MO of it unanswered (the client answers the unbind after it: the
    connection stays open meanwhile, unbound): an MO sent then never left. With a Resend (a fleet's --rebind) it waits
    and goes on the bind the handset is given once bound again, within the step's timeout, counted in `unsent`.
    Before, it failed at once as not answered ('unbound by the server') and its subscriber retired: at 1,750
    dialogues/s a fleet's every subscriber did so in the moment between a stopping gateway's unbind and the close."""
    async with RawSmsc() as smsc:
        old, old_r, old_w = await smsc.bound()
        handset = Handset(A, old)
        in_flight = asyncio.ensure_future(old.submit(A, ECHO, "in flight"))
        held = await smsc.submit_sm(old_r)  # (left unanswered: the unbind is answered after it)
        old_w.write(_frame(0x00000006, 7))
        await asyncio.wait_for(old.ended, 5)
        assert old.is_bound is False and old.is_closed is False
        with pytest.raises(ConnectionClosed, match="unbound by the server"):  # without a Resend, as ever
            await handset.send(ECHO, "no resend")
        resend = Resend(within=5)
        sending = asyncio.ensure_future(handset.send(ECHO, "after the rebind", resend))
        await asyncio.sleep(0.3)  # (a resend's first back-off: it waits for a bind)
        assert not sending.done() and resend.unsent == 0
        new, new_r, new_w = await smsc.bound()
        handset.rebound(new)  # (as the fleet gives its handsets the bind bound again)
        sequence = await asyncio.wait_for(smsc.submit_sm(new_r), 5)
        new_w.write(_frame(0x80000004, sequence, b"id1\0"))
        resp, _at, _answered_at = await asyncio.wait_for(sending, 5)
        assert resp.command_status == 0 and resend.unsent == 1 and resend.resent == 0
        old_w.write(_frame(0x80000004, held, b"id0\0"))
        assert (await in_flight).command_status == 0
        await asyncio.wait_for(old.closed, 5)  # (its unbind answered once nothing it sent was owed: closed)
        new.close()
        old_w.close()
        new_w.close()


async def test_with_resend_an_mo_waits_for_its_bind_as_long_as_the_step_timeout_and_goes_as_soon_as_it_is_back() -> None:
    """The handset's bind unbound by the SMSC (a restart) and bound again 3.5 s later (a fleet's second rebind try, the
    target down 2 s), the step's timeout 5 s: the MO that found it unbound goes on the new bind at once. Before, the
    resend's back-off doubled while the bind was down (0.2 + 0.4 + 0.8 + 1.6 s) and gave up at 3.0 s, as the next 2 s
    wait would have passed the timeout ('its bind not bound again within 5 s'): a soak run's every MO held back by a
    restart slower than 1.5 s failed (29 dialogues in one run)."""
    async with RawSmsc() as smsc:
        old, _old_r, old_w = await smsc.bound()
        old_w.write(_frame(0x00000006, 7))  # unbind
        await asyncio.wait_for(old.ended, 5)
        handset, resend = Handset(A, old), Resend(within=5)
        sending = asyncio.ensure_future(handset.send(ECHO, "after the restart", resend))
        await asyncio.sleep(3.5)  # (the target down, the fleet's rebind tries refused)
        assert not sending.done(), sending
        new, new_r, new_w = await smsc.bound()
        handset.rebound(new)
        sequence = await asyncio.wait_for(smsc.submit_sm(new_r), 1)  # (not at the back-off's next turn, 5 s in)
        new_w.write(_frame(0x80000004, sequence, b"id1\0"))
        resp, _at, _answered_at = await asyncio.wait_for(sending, 5)
        assert resp.command_status == 0 and resend.unsent == 1
        new.close()
        old.close()
        old_w.close()
        new_w.close()


async def test_with_resend_an_mo_throttled_and_then_its_bind_lost_fails_saying_so_not_as_still_throttled() -> None:
    """An MO answered ESME_RTHROTTLED by a stopping SMSC, which then unbinds and is not back within the step's timeout:
    the dialogue fails saying its bind was lost and not bound again. Before, it said 'still after sending it again for
    1 s', when nothing had been sent again."""
    async with RawSmsc() as smsc:
        esme, reader, writer = await smsc.bound()
        handset = Handset(A, esme)
        dialogue = asyncio.ensure_future(
            run_dialogue("help", handset, Plan.from_config(), 1.0, lambda run: run.send(ECHO, "help"), resend=Resend(within=1))
        )
        sequence = await smsc.submit_sm(reader)
        writer.write(struct.pack(">IIII", 17, 0x80000004, 0x58, sequence) + b"\0" + _frame(0x00000006, 7))  # (throttled; unbind)
        result = await asyncio.wait_for(dialogue, 5)
        assert result.error == "MO refused with ESME_RTHROTTLED, then its bind lost and not bound again within 1 s", result
        esme.close()
        writer.close()


def answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, statuses: list[int]) -> tuple[list[int], asyncio.Task]:
    """Answer each submit_sm read with the next of `statuses` (ESME_RTHROTTLED once they run out), until cancelled:
    the part each was, as they come (its UDH's sequence number; 1 for a short text), and the task answering."""
    parts: list[int] = []

    async def answer() -> None:
        while True:
            body = await reader.readexactly(struct.unpack(">I", await reader.readexactly(4))[0] - 4)
            udh = body.find(b"\x05\x00\x03")
            parts.append(body[udh + 5] if udh >= 0 else 1)
            status = statuses.pop(0) if statuses else THROTTLED
            writer.write(struct.pack(">IIII", 17, 0x80000004, status, struct.unpack(">I", body[8:12])[0]) + b"\0")

    return parts, asyncio.ensure_future(answer())


async def test_with_resend_the_last_back_off_is_cut_to_the_step_timeout() -> None:
    """An MO the target keeps answering ESME_RTHROTTLED: sent again after 0.2 and 0.4 s, and once more at the step's
    timeout (0.7 s), the last wait cut to the 0.1 s left: it fails then, not a whole back-off (0.8 s) after it."""
    async with RawSmsc() as smsc:
        esme, reader, writer = await smsc.bound()
        parts, answers = answering(reader, writer, [])
        start = asyncio.get_running_loop().time()
        resp, _at, _answered_at = await Handset(A, esme).send(ECHO, "throttled", Resend(within=0.7))
        assert resp.command_status == THROTTLED and asyncio.get_running_loop().time() - start < 1.0
        assert len(parts) == 4
        answers.cancel()
        esme.close()
        writer.close()


async def test_with_resend_a_long_text_with_a_part_refused_otherwise_is_not_sent_again() -> None:
    """A part throttled and another refused for good (ESME_RINVDSTADR): sending it again changes nothing, and would
    send the accepted ones twice; the text fails with the refusal at once."""
    async with RawSmsc() as smsc:
        esme, reader, writer = await smsc.bound()
        parts, answers = answering(reader, writer, [THROTTLED, 0x0B])
        resp, _at, _answered_at = await Handset(A, esme).send(ECHO, LONG, Resend(within=2))
        assert resp.command_status == THROTTLED  # (a long text's answer: its first part's)
        await asyncio.sleep(0.4)  # (the first back-off, and more: nothing is sent again)
        assert parts == [1, 2]
        answers.cancel()
        esme.close()
        writer.close()


async def test_with_resend_the_parts_after_one_throttled_again_wait_for_it() -> None:
    """Both parts of a long text throttled; sent again, the first is throttled again: the second waits until the first
    is accepted, or the target gets the parts out of order (the second before the first)."""
    async with RawSmsc() as smsc:
        esme, reader, writer = await smsc.bound()
        parts, answers = answering(reader, writer, [THROTTLED, THROTTLED, THROTTLED, 0, 0])
        resp, _at, _answered_at = await Handset(A, esme).send(ECHO, LONG, Resend(within=5))
        assert resp.command_status == 0 and parts == [1, 2, 1, 1, 2]
        answers.cancel()
        esme.close()
        writer.close()


async def test_with_resend_an_mo_whose_bind_is_not_bound_again_fails_as_not_sent() -> None:
    """An MO that found its bind unbound and no bind given back within the step's timeout fails as not sent, saying
    so (a fleet's dialogue then says its bind was lost), not with an error of the simulator's own."""
    async with RawSmsc() as smsc:
        esme, _reader, writer = await smsc.bound()
        writer.write(_frame(0x00000006, 7))  # unbind
        await asyncio.wait_for(esme.ended, 5)
        with pytest.raises(NotSent, match="not bound again within 0.3 s"):
            await Handset(A, esme).send(ECHO, "after the unbind", Resend(within=0.3))
        esme.close()
        writer.close()
