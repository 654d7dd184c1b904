"""MT delivery against a model: a hypothesis state machine drives one gateway (simulated clock) through binds with
address ranges, unbinds, refused and withheld answers, late answers, clock advances and restarts, and checks what
the handsets get against README "How messages flow" (Routing, Delivery, Receipts):

- a deliver_sm goes only to a bind that can receive and whose address_range does not leave its subscriber out;
- every MT a bind serves is delivered: a temporary refusal or no answer within response_timeout is retried, a
  permanent refusal ends it undeliverable; one nobody serves waits in the store, across a restart too, until a bind
  appears or its validity ends (expired);
- none goes out again once it ended (delivered, undeliverable, expired), a late answer changes nothing;
- the sender gets exactly the receipt it asked for (stat:DELIVRD / UNDELIV / EXPIRED), and query_sm says the same.

Each rule ends once the gateway has done what the rule set off (`settle`: every MT a bind serves has ended, every
receipt due has come), and every deliver_sm is answered as soon as it is read, so the model never races the
gateway. Retries and response timeouts run in real seconds (short ones, below); validity on the simulated clock.

In CI the examples are derandomized: the same ones every run (about 50 s here). To explore, with random seeds:

    SMSGW_MODEL_EXAMPLES=200 SMSGW_MODEL_STEPS=40 pytest -p no:cacheprovider tests/e2e/test_delivery_model.py
"""

from __future__ import annotations

import os
import re
import select
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gateway.app import GatewayController
from gateway.clock import SimulatedClock
from tests.smpp_handset import (
    ESME_RINVDSTADR,
    ESME_ROK,
    Handset,
    describe,
    is_receipt,
    receipt_fields,
    text,
)

ESME_RX_T_APPN = 0x64  # temporary: retried
WITHHOLD = "withhold"  # no answer: the gateway gives up after response_timeout and retries
FINAL_STATE = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5}  # stat: in the receipt -> message_state in query_sm
SHORT_VALIDITY = "000000000500000R"  # 5 minutes; without one, default_validity (2 days)
SETTINGS = {"response_timeout": 1.0, "retry_backoff": [0.2, 0.4], "drain_timeout": 0.5, "message_retention": 0,
            "enquire_link_interval": 600, "idle_timeout": 0}  # (a bind not read between two rules keeps its bind)
SETTLE_TIMEOUT = 10.0  # what a rule set off is done by then (an MT withheld twice: ~4 s), or it never will be
# At an example's end: listening this long for a copy nothing should send, past the time a wrong retry would take
# (response_timeout and the longest back-off).
QUIET = SETTINGS["response_timeout"] + max(SETTINGS["retry_backoff"]) + 0.1

EXPLORE = int(os.environ.get("SMSGW_MODEL_EXAMPLES", "0"))
RUNS = settings(
    max_examples=EXPLORE or 12, stateful_step_count=int(os.environ.get("SMSGW_MODEL_STEPS", "20")),
    derandomize=not EXPLORE, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False, phases=list(Phase) if EXPLORE else [Phase.generate],
)  # fmt: skip
# (In CI a failure is reported as found, its steps as generated: shrinking replays it again and again, each replay
# that fails waiting SETTLE_TIMEOUT, for many minutes.)


def canonical(number: str) -> str:
    """README "Numbers": 13800138000, +86 138 0013 8000 and 0086-13800138000 are 8613800138000."""
    digits = re.sub(r"\D", "", number)
    if digits.startswith("0086"):
        return digits[2:]
    return "86" + digits if len(digits) == 11 else digits


def admits(address_range: str, number: str) -> bool:
    """README "Routing": no range takes every number; one number, in any form, that number; otherwise a regular
    expression matching anywhere in the number."""
    if not address_range:
        return True
    if re.fullmatch(r"[\d\s+-]+", address_range):
        return canonical(address_range) == number
    return re.search(address_range, number) is not None


@dataclass
class Mt:
    token: str  # its text, unique
    dest: str
    registered: bool
    expires_at: float  # on the simulated clock
    message_id: str = ""
    outcome: str | None = None  # once it ended, as its receipt says it: DELIVRD, UNDELIV, EXPIRED
    receipts: list[str] = field(default_factory=list)


@dataclass
class Bind:
    phone: Handset
    kind: str
    address_range: str
    plan: deque = field(default_factory=deque)  # how to answer the next deliver_sm: a status or WITHHOLD; then ROK
    held: list = field(default_factory=list)  # deliver_sm withheld

    def serves(self, number: str) -> bool:
        return self.kind != "tx" and admits(self.address_range, number)


class DeliveryModel(RuleBasedStateMachine):
    gw: GatewayController
    clock: SimulatedClock
    examples = 0

    def __init__(self) -> None:
        super().__init__()
        DeliveryModel.examples += 1
        self.prefix = f"86138{DeliveryModel.examples:04d}"  # each example its own subscribers: the gateway is shared
        self.subscribers = [f"{self.prefix}000{n}" for n in range(3)]
        self.mts: dict[str, Mt] = {}
        self.binds: list[Bind] = []
        self.sender = self._bind_sender()
        self.restarted = False

    # ------------------------------------------------------------------ rules
    @precondition(lambda self: len(self.binds) < 4)
    @rule(kind=st.sampled_from(["trx", "rx", "tx"]), n=st.integers(0, 2),
          form=st.sampled_from(["none", "number", "national", "international", "prefix", "two", "unanchored", "either"]),
          plan=st.lists(st.sampled_from([ESME_RX_T_APPN, ESME_RINVDSTADR, WITHHOLD]), min_size=1, max_size=2))  # fmt: skip
    def bind(self, kind: str, n: int, form: str, plan: list[int | str]) -> None:
        """A bind of the subscribers' account; it answers its first one or two deliver_sm as `plan` says (a refusal,
        or none), the rest ESME_ROK."""
        number, other = self.subscribers[n], self.subscribers[(n + 1) % 3]
        address_range = {
            "none": "", "number": number, "national": number[2:], "international": f"+86 {number[2:5]} {number[5:]}",
            "prefix": f"^{self.prefix}", "two": f"^{self.prefix}000[{n}{(n + 1) % 3}]$",
            "unanchored": f"{number[2:-1]}[{n}]", "either": f"^({number}|{other})$",
        }[form]  # fmt: skip
        phone = Handset(self.gw.smpp_port)
        phone.answering = False  # every deliver_sm is answered here, as the plan says
        phone.bind(kind, "handset", address_range=address_range)
        self.binds.append(Bind(phone, kind, address_range, deque(plan)))
        self.settle()

    @precondition(lambda self: self.binds)
    @rule(pick=st.integers(0, 3), abruptly=st.booleans())
    def drop(self, pick: int, abruptly: bool) -> None:
        bind = self.binds.pop(pick % len(self.binds))
        if abruptly:
            bind.phone.client._socket.close()  # no unbind: the connection is just gone
            bind.phone.client._socket = None
        else:
            bind.phone.close()
            assert not bind.phone.inbox, f"sent while it unbound: {[describe(p) for p in bind.phone.inbox]}"
        self.settle()

    @precondition(lambda self: len(self.mts) < 20)
    @rule(n=st.integers(0, 2), registered=st.booleans(), short=st.booleans(), burst=st.integers(1, 3))
    def submit(self, n: int, registered: bool, short: bool, burst: int) -> None:
        for _ in range(burst):
            mt = Mt(f"mt {len(self.mts) + 1} of {self.prefix}", self.subscribers[n], registered,
                    self.clock.now() + (300 if short else 172800))  # fmt: skip
            self.mts[mt.token] = mt  # before the submit_sm_resp is read: its deliver_sm may come first
            resp = self.sender.submit(mt.dest, mt.token, registered_delivery=int(registered),
                                      validity_period=SHORT_VALIDITY if short else None)  # fmt: skip
            assert resp.status == ESME_ROK, f"{mt.token} refused: {resp.status:#x}"
            mt.message_id = resp.message_id.decode()
        self.settle()

    @precondition(lambda self: any(b.held for b in self.binds))
    @rule(status=st.sampled_from([ESME_ROK, ESME_RX_T_APPN, ESME_RINVDSTADR]))
    def answer_late(self, status: int) -> None:
        """The deliver_sm withheld are answered now, after their MT went out again and ended: nothing changes."""
        for bind in self.binds:
            for pdu in bind.held:
                bind.phone.answer(pdu, status)
            bind.held.clear()
        self.settle()

    @precondition(lambda self: any(mt.outcome is None for mt in self.mts.values()))
    @rule(seconds=st.sampled_from([600, 3 * 86400]))
    def advance_clock(self, seconds: int) -> None:
        """Past the validity of the MTs waiting (none is on its way: the last rule settled): they expire."""
        self.clock.advance(seconds)
        for mt in self.mts.values():
            if mt.outcome is None and mt.expires_at <= self.clock.now():
                mt.outcome = "EXPIRED"
        self.settle()

    @precondition(lambda self: not self.restarted and self.mts)
    @rule()
    def restart(self) -> None:
        """Stopped with its binds bound; what waits goes out once binds appear again, nothing that ended does."""
        self.restarted = True  # (one an example: it takes a second)
        assert self.gw.stop(), "final statuses not committed at the stop"
        for phone in [self.sender, *(b.phone for b in self.binds)]:
            phone.client._socket.close()
            phone.client._socket = None
        self.binds.clear()
        self.gw.start()
        self.sender = self._bind_sender()
        self.settle()

    def teardown(self) -> None:
        """Every MT ends: a bind for all of them appears, then what query_sm says of each is what the model says."""
        try:
            self.bind("rx", 0, "none", [])
            self._listen(QUIET)  # a copy sent after the last one awaited
            for mt in self.mts.values():
                assert mt.outcome is not None, f"{mt.token} to {mt.dest} never ended"
                state = self.sender.query(mt.message_id).message_state
                assert state == FINAL_STATE[mt.outcome], f"{mt.token}: query_sm says {state}, the model {mt.outcome}"
                assert mt.receipts == ([mt.outcome] if mt.registered else []), f"{mt.token}: receipts {mt.receipts}"
        finally:
            for phone in [self.sender, *(b.phone for b in self.binds)]:
                phone.close()

    # ---------------------------------------------------------- the gateway's side
    def settle(self) -> None:
        """Read and answer what the binds get until every MT a bind serves has ended and every receipt due has come."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            due = [mt.token for mt in self.mts.values() if mt.outcome is None and any(b.serves(mt.dest) for b in self.binds)]
            receipts = [mt.token for mt in self.mts.values() if mt.registered and mt.outcome and not mt.receipts]
            if not due and not receipts:
                return
            assert time.monotonic() < deadline, f"after {SETTLE_TIMEOUT}s not delivered: {due}, no receipt: {receipts}"
            self._read(deadline)

    def _listen(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(deadline)

    def _read(self, deadline: float) -> None:
        """One PDU from whichever connection has one, waiting until `deadline` at most."""
        phones = [self.sender, *(b.phone for b in self.binds)]
        ready, _, _ = select.select([p.client._socket for p in phones], [], [], max(deadline - time.monotonic(), 0))
        for phone in phones:
            if phone.client._socket in ready:
                phone.read()
        self._check_receipts()
        for bind in self.binds:
            self._check_inbox(bind)

    def _check_inbox(self, bind: Bind) -> None:
        while bind.phone.inbox:
            pdu = bind.phone.inbox.popleft()
            if not pdu.destination_addr.startswith(self.prefix.encode()):  # left by an example that failed
                bind.phone.answer(pdu)
                continue
            mt = self.mts.get(text(pdu))
            assert mt is not None, f"a deliver_sm nobody sent: {text(pdu)!r} to {pdu.destination_addr}"
            assert pdu.destination_addr.decode() == mt.dest, f"{mt.token} to {mt.dest} went to {pdu.destination_addr}"
            assert bind.serves(mt.dest), f"{mt.token} to {mt.dest} went to a {bind.kind} bind of {bind.address_range!r}"
            assert mt.outcome is None, f"{mt.token} went out again after it ended {mt.outcome}"
            answer = bind.plan.popleft() if bind.plan else ESME_ROK
            if answer == WITHHOLD:
                bind.held.append(pdu)
                continue
            bind.phone.answer(pdu, answer)
            mt.outcome = {ESME_ROK: "DELIVRD", ESME_RINVDSTADR: "UNDELIV"}.get(answer)

    def _check_receipts(self) -> None:
        by_id = {mt.message_id: mt for mt in self.mts.values()}
        while self.sender.inbox:
            pdu = self.sender.inbox.popleft()
            assert is_receipt(pdu), f"the sender got a deliver_sm that is not a receipt: {text(pdu)!r}"
            fields = receipt_fields(pdu)
            mt = by_id.get(fields["id"])
            if mt is None:  # left by an example that failed
                continue
            assert mt.registered, f"{mt.token}: a receipt not asked for"
            assert mt.outcome == fields["stat"], f"{mt.token}: receipt stat:{fields['stat']}, the model {mt.outcome}"
            mt.receipts.append(fields["stat"])

    def _bind_sender(self) -> Handset:
        """The SP-like sender, on another account (its receipts come here, answered ESME_ROK as they come)."""
        sender = Handset(self.gw.smpp_port, f"86137{DeliveryModel.examples:04d}0000")
        sender.bind("trx", "handset2")
        return sender


@pytest.mark.timeout(0 if EXPLORE else 120)  # (exploring runs ~4 s an example: pyproject's 120 s would cut it short)
def test_delivery_keeps_to_the_model(make_gateway):
    """One gateway for every example (a start takes a second); each example has subscribers of its own."""
    DeliveryModel.clock = SimulatedClock(datetime(2026, 11, 10, 1, 0, tzinfo=UTC).timestamp())
    DeliveryModel.gw = make_gateway(clock=DeliveryModel.clock, gateway=SETTINGS)
    run_state_machine_as_test(DeliveryModel, settings=RUNS)
