"""The fleet: simulated subscribers over SMPP binds, driving a scenario's load and checking every dialogue.

    fleet = Fleet(load_scenario().override(port=2775, duration=10))
    summary = await fleet.run()          # connect, load, drain, unbind; the Recorder's summary + "fleet"

`Fleet.run()` binds (the subscribers' binds, each with an `address_range`
covering its block of MSISDNs so MT comes back on it, or tx+rx pairs; the
spammers' binds on their own account; SP receivers), runs the load, lets
what is in flight end, checks the SP notices, unbinds. A bind the target drops
retires what it served, or with `fleet.rebind` is bound again (_rebind). Closed loop: C
workers, each starting a dialogue when its last one ended. Open loop:
dialogues start at the target rate (linear ramp-up), never more than
`max_in_flight` at once. Each dialogue picks its behaviour by weight and an
idle subscriber that suits it; what arrives unasked becomes a reaction
(simulator/behaviours.py) queued on its subscriber. Sends are pipelined per
bind (the Esme window); nothing sleeps per message.

Results go to a `Recorder` (simulator/metrics.py): every dialogue and
reaction, every text that arrived unasked, refused spam. `summary()` is the
recorder's summary plus a "fleet" entry (binds, subscribers, retired ones,
dialogues not started, spammers, SP notices).

An exception the simulator's own code raises in a dialogue or a reaction
(`_guarded`) fails that dialogue at the step INTERNAL_ERROR, with the
exception and the transcript so far, and retires its subscriber as any
failure does; its traceback is logged once per place it was raised.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import ssl
import time
import traceback
from bisect import bisect
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from typing import Any

from gateway.config import Config, load_config
from gateway.gctune import restore_defaults, tune_for_serving
from gateway.smpp.constants import CommandId

from . import behaviours as b
from .behaviours import (
    AWAY,
    BIND_LOST,
    BUSY,
    IDLE,
    RETIRED,
    Env,
    Phone,
    PostOffice,
    Rules,
    Spammer,
)
from .dialogues import DialogueResult, Plan
from .esme import (
    BindError,
    BindLost,
    Esme,
    EsmeError,
    HandshakeFailed,
    ResponseTimeout,
    SharedParts,
    ShortMessage,
)
from .handset import Handset, Resend
from .headroom import Headroom
from .metrics import INTERNAL_ERROR, Recorder
from .numbering import address_range, blocks, first_outside
from .pool import Pool
from .scenario import Load, Scenario
from .texts import UNPROMPTED

__all__ = ["Fleet", "FleetError", "FleetValueError"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds for a TCP connection (and TLS handshake) to the target
REBIND_BACKOFF = (0.5, 5.0)  # --rebind: seconds before the second try to bind again, doubling up to the most
SP_NOTICE = re.compile(r"event=(\w+) service=(\S+)(?:.* msisdn=\+?(\d+))?")
NOTICE_ID = re.compile(r" notice=(\S+)")  # the same in every copy of a notice (a retry), no other notice's (README)
SP_NOTICES_KEPT = 4096  # SP notices' ids remembered to tell a copy (a retry comes response_timeout + retry_backoff later)
DRAIN_POLL = 0.1  # seconds between the drain's looks at an interruption
DELIVERY_FAULTS_KEPT = 200  # delivery faults kept with their details (beyond: counted)
# Delivery faults, judged at the end (Fleet._check_deliveries): by kind, the stat that counts them and the step they fail
DELIVERY_FAULTS = {
    "twice": ("delivered_twice", "text delivered twice"),
    "in part": ("arrived_in_part", "long text arrived in part"),
    "answer": ("answers_unasked", "answer nobody asked for"),
}


# Why a load stopped before its duration or count (summary["fleet"]["stopped"]): the run failed
ALL_RETIRED = "every subscriber retired after failures"
SPAMMERS_RETIRED = "every spammer retired after failures"  # (in a scenario of spammers only)
STALLED = "stalled: no subscriber could run any behaviour"
BINDS_LOST = "the target dropped the binds: no subscriber's bind left to send or receive on"
ENDED_EARLY = (ALL_RETIRED, SPAMMERS_RETIRED, STALLED, BINDS_LOST)


class FleetError(Exception):
    """The fleet cannot run: the target refused the binds or cannot be reached; names the scenario key, and what to
    change as `hint` in scenario keys (the command line words it in flags when a flag set the value)."""

    def __init__(self, key: str, problem: str, hint: str = "", *, cause: str = "") -> None:
        """cause: what happened, without the blame `problem` adds (a bind not answered: "... did not answer as an
        SMPP server"), for when another key turns out to be to blame (_fewer_binds_taken)."""
        super().__init__(f"{key}: {problem}" + (f" ({hint})" if hint else ""))
        self.key, self.problem, self.hint, self.cause = key, problem, hint, cause or problem


class FleetValueError(FleetError, ValueError):
    """A scenario value the target's config refuses (numbers not the bind account's, more binds than its max_binds,
    keywords not in its catalogue, more dialogues in flight than subscribers): a ValueError from the Python API, as the
    values the scenario itself refuses are (README)."""


@dataclass(eq=False, slots=True)
class _Bind:
    """A bind of the fleet, watched once all are up (_watch): the connection now, its name, the subscribers or
    spammers it serves (one list per block, shared by its binds), whether texts arrive on it, and how to open and bind
    it again as it was (--rebind)."""

    esme: Esme
    name: str
    members: list[Any]
    receives: bool
    again: Callable[[], Awaitable[Esme]]


# ---------------------------------------------------------------------- fleet
class Fleet:
    def __init__(
        self,
        scenario: Scenario,
        *,
        recorder: Recorder | None = None,
        config: Config | None = None,
        plan: Plan | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """config: the target's gateway config (default: scenario.target.config, else the built-in one);
        plan: what the target's replies look like (default: from config); clock: the target's clock, seconds since the
        epoch (default: this machine's), which tells the operator's day a subscriber's spam reports count on."""
        self.scenario = scenario
        self.config = config if config is not None else load_config(scenario.target.config or None, tls_files=False)
        self.plan = plan if plan is not None else Plan.from_config(self.config)
        self.rules = Rules.from_config(self.config)
        self.numbers = self.config.number_plan()  # how the target writes numbers: arrivals are read in its canonical form
        self.recorder = recorder if recorder is not None else Recorder()
        self.rng = random.Random(scenario.load.seed)
        self.post = PostOffice()
        # --rebind: an MO the target answers ESME_RTHROTTLED (as it stops) is sent again within the step's timeout
        resend = Resend(scenario.load.timeout) if scenario.fleet.rebind else None
        self._response_timeout = max(2 * scenario.load.timeout, 5.0)  # for the binds too
        self.env = Env(self.plan, self.rules, scenario, self.rng, self.post, scenario.load.timeout, self._event,
                       self._mo_accepted, resend, clock=clock, response_timeout=self._response_timeout)  # fmt: skip
        self.phones: list[Phone] = []
        self.by_number: dict[str, Phone] = {}
        self.spammers: list[Spammer] = []
        self.spammer_by_number: dict[str, Spammer] = {}
        self.binds: list[Esme] = []
        self._opened: list[Esme] = []  # every connection of the run (binds lost and bound again too): their queues
        # A long text's parts may come on several of the fleet's binds; one given up incomplete arrived in part.
        self._parts = SharedParts(on_given_up=self._arrived_in_part)
        self.spammer_binds: list[Esme] = []
        self.sp_binds: list[tuple[str, Esme]] = []  # (SP account, its receiver bind): fleet.sp_receivers
        # Every bind once all are up; one the target drops while the run goes on is told at once (_bind_lost)
        self._watched: list[_Bind] = []
        # the binds the target dropped: name, seconds into the run, why, when bound again (--rebind; None: not)
        self.lost_binds: list[dict[str, Any]] = []
        self._blocks_left: set[int] = set()  # subscriber blocks (the ids of their phones) with no bind lost
        # --rebind: the blocks (ids of their member lists) with binds lost and not bound again, how many each; their
        # members not retired, away meanwhile (picked for nothing new, no one's peer or victim); the rebinds running
        self._down: Counter[int] = Counter()
        self._away: set[Phone | Spammer] = set()
        self._rebinds: set[asyncio.Task] = set()
        self._bound_at = 0.0  # time.monotonic() when every bind was up
        self._closing = False  # the fleet's own unbinds (close()): no bind of it is lost then
        self.idle = Pool()
        self.idle_spammers = Pool()
        self.tasks: set[asyncio.Task] = set()
        self.stats: Counter[str] = Counter()
        self.notices_expected: Counter[tuple[str, str]] = Counter()  # (event, service id) for bound SPs
        self.notices_received: Counter[tuple[str, str]] = Counter()
        # (event, service id, msisdn): notices owed by the fleet's orders and unsubscriptions, less those received
        # (negative: received, never owed); entries at 0 are dropped, so it holds what is in flight
        self._notices_owed: Counter[tuple[str, str, str]] = Counter()
        self.notices_misrouted: Counter[tuple[str, str, str]] = Counter()  # (service id, account it came to, its SP's)
        # The reporters told a number's reports were handled (spam.handled), by the number as the notices name it
        self._told_handled: dict[str, set[str]] = {}
        # The last SP_NOTICES_KEPT notices' ids (hashed), each with how many binds were lost when it came (_sp_notice_copy)
        self._notice_ids: dict[int, int] = {}
        # Texts delivered twice, in part, or answering no MO of their subscriber (DELIVERY_FAULTS): (kind, msisdn, source,
        # text, time.monotonic()), judged at the end (settle) when the fleet knows whether it answered the target late
        self._delivery_faults: list[tuple[str, str, str, str, float]] = []
        self.unasked_samples: list[str] = []
        self._errors_logged: set[tuple[str, int]] = set()  # (file, line) of the internal errors whose traceback was logged
        self.stop_reason = ""
        self._stopping = False
        self.interrupted = False
        self._drain_cut = False
        self._started = 0  # fleet-initiated dialogues started
        self._in_flight = 0
        self._freed: asyncio.Event | None = None
        self._stopped: asyncio.Future[None] | None = None  # done when the load stops starting dialogues
        self._binding: asyncio.Future[list[Any]] | None = None  # connect()'s binds while they are awaited
        self._until = 0.0
        self._load = scenario.load
        self._collector_tuned = False
        self._last_start = 0.0
        self.headroom: Headroom | None = None  # whether the fleet itself kept up (simulator/headroom.py)
        names = [n for n, w in scenario.behaviours.weights().items() if w > 0]
        self._names = names
        self._cumulative = list(accumulate(scenario.behaviours.weights()[n] for n in names))
        self._pickers: dict[str, Callable[[], Callable[[], Awaitable[DialogueResult]] | None]] = {
            "query": self._pick_query, "order": self._pick_order, "spam": self._pick_spam,
            "chatter": self._pick_chatter, "spammer": self._pick_spammer, "help": self._pick_help,
        }  # fmt: skip
        receivers = {a.system_id for a in scenario.fleet.sp_receivers}
        self._sp_services = {sid for sid, sp in self.rules.notified_sps.items() if sp in receivers}
        # The catalogue's SPs whose notices the run does not check, and why (summary: fleet.sp_notices_unchecked); with
        # no receiver at all (sp_receivers = [], a run against another SMSC) none is checked, as asked.
        unbound = sorted(set(self.rules.notified_sps.values()) - receivers) if receivers else []
        self.sp_notices_unchecked = dict.fromkeys(unbound, "not among fleet.sp_receivers")
        self._reported_numbers = self._reported_range()
        self._check_numbers()
        self._check_binds()
        self._check_sp_receivers()
        if scenario.behaviours.order.weight > 0 and not self.env.order_services:
            raise FleetValueError("behaviours.order.keywords", f"none of {list(scenario.behaviours.order.keywords)} is in the "
                             f"target's catalogue ({', '.join(s.keyword for s in self.plan.services.values()) or 'empty'})")  # fmt: skip

    def _check_numbers(self) -> None:
        """The scenario's numbers are in international form as the target's number plan has it (its country code, then
        a national number of its length), and no short code or service code's (with an extension): the gateway sends MT
        to that form, never to a national one, and takes no MO from a service's number."""
        s, plan = self.scenario, self.numbers
        # Each range only when it is used: the reported numbers by spam reports (not the reactions: those report the
        # sender), the spammers' when they run. A chatter-only run against another number plan needs neither.
        numbers = {"fleet.start": s.fleet.start}
        if s.behaviours.spam.weight > 0:
            numbers["behaviours.spam.reported_start"] = s.behaviours.spam.reported_start
        if s.behaviours.spammer.weight > 0:
            numbers["spammers.start"] = s.spammers.start
        for key, number in numbers.items():
            if plan.extends_code(number):
                raise FleetValueError(key, f"{number!r} is a service's number (a short code or service code of the target's "
                                      "config, with an extension), not a subscriber's: the gateway refuses MO from it")  # fmt: skip
            if not plan.is_msisdn(number):
                canonical = plan.normalise(number)
                hint = f" (national form of {canonical}?)" if plan.is_msisdn(canonical) else ""
                raise FleetValueError(key, f"expected an MSISDN in international form, as the target's gateway.country_code and "
                                      f"gateway.national_number_length have it: country code {plan.country_code}, then "
                                      f"{plan.national_length} digits; got {number!r}{hint}")  # fmt: skip
        # What the fleet reports as spam must be mobile numbers, or the target refuses the reports ("not a valid
        # mobile number") and the spam and spammer dialogues fail.
        reported = []
        if s.behaviours.spam.weight > 0:
            reported.append(("behaviours.spam.reported_start", s.behaviours.spam.reported_start, s.behaviours.spam.reported_count))
        if s.behaviours.spammer.weight > 0:
            reported.append(("spammers.start", s.spammers.start, s.spammers.count))
        for key, start, count in reported:
            outside = first_outside(int(start), int(start) + count - 1, plan.mobile_starts)
            if outside is not None:
                raise FleetValueError(key, f"{start}..{int(start) + count - 1} ({count} numbers) are reported as spam but not all "
                                      f"mobile numbers of the target's plan: {outside} is not (gateway.mobile_prefixes "
                                      f"{list(plan.mobile_prefixes)} after country code {plan.country_code}); the gateway "
                                      "refuses reports of it")  # fmt: skip
        ranges = [("fleet.start/fleet.count", s.fleet.start, s.fleet.count, s.target.system_id)]
        if s.behaviours.spammer.weight > 0:
            ranges.append(("spammers.start/spammers.count", s.spammers.start, s.spammers.count, s.spammers.system_id))
        for key, start, count, system_id in ranges:
            account = self.config.account(system_id)
            if account is None:  # an account the target config does not describe: nothing to check against
                continue
            outside = first_outside(int(start), int(start) + count - 1, account.numbers)
            if outside is not None:
                raise FleetValueError(key, f"{start}..{int(start) + count - 1} ({count} numbers) are not all numbers of the bind "
                                      f"account {system_id!r}: {outside} is under none of its numbers {list(account.numbers)} "
                                      f"in {self.config.source}; the gateway would refuse its MO (ESME_RINVSRCADR)")  # fmt: skip

    def _check_binds(self) -> None:
        """The fleet's binds on each account the target config describes are within its max_binds: beyond, the gateway
        refuses the rest (ESME_RBINDFAIL), and the run would fail naming the account, not the count asked."""
        s = self.scenario
        wanted = [("fleet.binds", s.target.system_id, s.fleet.binds * (2 if s.fleet.mode == "tx+rx" else 1))]
        if s.behaviours.spammer.weight > 0:
            wanted.append(("spammers.binds", s.spammers.system_id, s.spammers.binds))
        wanted += [(f"fleet.sp_receivers[{i}]", a.system_id, 1) for i, a in enumerate(s.fleet.sp_receivers)]
        binds: Counter[str] = Counter()
        for key, system_id, n in wanted:
            binds[system_id] += n
            account = self.config.account(system_id)
            if account is not None and binds[system_id] > account.max_binds:
                pairs = " (tx+rx pairs: 2 binds each)" if key == "fleet.binds" and s.fleet.mode == "tx+rx" else ""
                raise FleetValueError(key, f"{binds[system_id]} binds as {system_id!r}{pairs}, more than the bind account's "
                                      f"max_binds {account.max_binds} in {self.config.source}: the gateway would refuse "
                                      "the rest (ESME_RBINDFAIL)")  # fmt: skip

    def _check_sp_receivers(self) -> None:
        """Each SP receiver is an SP the target config's catalogue notifies for a service: the notices checked are
        those of the receivers' services, so a receiver of none (a handset account, say) had nothing checked, and the
        run passed saying nothing of it."""
        sps = sorted(set(self.rules.notified_sps.values()))
        for i, receiver in enumerate(self.scenario.fleet.sp_receivers):
            if receiver.system_id in sps:
                continue
            account = self.config.account(receiver.system_id)
            if account is None:
                what = f"no account in {self.config.source}"
            elif account.role != "sp":
                what = f"a {account.role} account in {self.config.source}, not an SP's"
            else:
                what = f"the SP of no service in the catalogue of {self.config.source}"
            raise FleetValueError(f"fleet.sp_receivers[{i}]", f"{receiver.system_id!r} is {what}: no ORDER/CANCEL notice "
                                  f"comes to it, so none would be checked; expected an SP the catalogue notifies "
                                  f"({', '.join(sps) or 'none: sp_receivers = []'})")  # fmt: skip

    # ------------------------------------------------------------- running
    async def run(self) -> dict[str, Any]:
        """Connect, run the load, drain, check, unbind; returns summary()."""
        await self.connect()
        try:
            await self.load()
            await self.drain()
            await self.settle()
        finally:
            await self.close()
        return self.summary()

    def interrupt(self) -> None:
        """Ctrl-C: while connecting, give up the binds at once (connect() raises CancelledError); during the load,
        start no more dialogues (those in flight end as after its duration); during the drain, cut it short (what is
        still in flight is cancelled, as at its deadline). The results stand, marked interrupted."""
        if self._binding is not None:
            self._binding.cancel()
        if self._stopping:
            self._drain_cut = True
        self.interrupted = True
        self.stop("interrupted")

    def stop(self, reason: str = "stopped") -> None:
        """Start no more dialogues (what is in flight ends normally)."""
        self._stop_starting(reason)
        if self._stopped is not None and not self._stopped.done():  # the load's workers stop waiting
            self._stopped.set_result(None)

    def _stop_starting(self, reason: str) -> None:
        """Start no more dialogues; the workers still wait for their own (a closed loop's count reached)."""
        if not self._stopping:
            self._stopping = True
            self.stop_reason = self.stop_reason or reason
            if self._freed is not None:
                self._freed.set()

    # ------------------------------------------------------------ connecting
    def _ssl(self) -> ssl.SSLContext | None:
        t = self.scenario.target
        if not t.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=t.ca or None)
        except (OSError, ssl.SSLError) as exc:
            raise FleetError("target.ca", f"cannot use {t.ca}: {exc}") from None
        if not t.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif not t.check_hostname:
            context.check_hostname = False
        return context

    async def _open(self, on_message: Callable[[ShortMessage], None] | None, window: int) -> Esme:
        """A connection to the target; when there is none, the target is to blame, whichever bind it was for."""
        t = self.scenario.target
        try:
            esme = await Esme.connect(
                t.host, t.port, ssl=self._ssl(), timeout=CONNECT_TIMEOUT, on_message=on_message, window=window,
                response_timeout=self._response_timeout, parts=self._parts,
            )  # fmt: skip
        except ssl.SSLCertVerificationError as exc:
            raise FleetError("target.ca", f"TLS to {t.host}:{t.port} failed: {exc}", "target.ca names the CA that signed "
                                          "the server's certificate; target.verify = false accepts any") from None
        except (ssl.SSLError, HandshakeFailed) as exc:  # no certificate to blame: the handshake itself failed
            raise FleetError("target.tls/target.port", f"TLS to {t.host}:{t.port} failed: {exc}: the server did not "
                                                       "answer TLS (a plain SMPP port?)") from None
        except (OSError, TimeoutError) as exc:
            reason = f"no connection within {CONNECT_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise FleetError("target.host/target.port", f"cannot connect to {t.host}:{t.port}{' (TLS)' if t.tls else ''}: {reason}") from None
        self._opened.append(esme)
        return esme

    async def _bind(self, esme: Esme, mode: str, system_id: str, password: str, key: str, address: str = "") -> None:
        timeout = self._response_timeout
        try:
            await esme.bind(mode, system_id, password, address_range=address, system_type=self.scenario.target.system_type,
                            timeout=timeout)  # fmt: skip
        except BindError as exc:
            esme.close()
            raise FleetError(key, str(exc)) from None  # (the account refused: a wrong system_id or password)
        except asyncio.CancelledError:  # interrupted while the bind waited for its answer
            esme.close()
            raise
        except (OSError, TimeoutError, EsmeError) as exc:  # TimeoutError (3.11+) and ResponseTimeout say nothing themselves
            # No answer at all: the address is to blame (a port that is no SMPP server's), not the account.
            esme.close()
            timed_out = isinstance(exc, (TimeoutError, ResponseTimeout))
            reason = f" within {timeout:g} s" if timed_out else f": {exc}" if str(exc) else ": the connection closed"
            t, cause = self.scenario.target, f"bind {mode} as {system_id!r} not answered{reason}"
            raise FleetError("target.host/target.port", f"{cause}: the other end, {t.host}:{t.port}, did not answer as "
                                                        "an SMPP server", cause=cause) from None

    async def _bound(self, on_message: Callable[[ShortMessage], None] | None, mode: str, system_id: str, password: str,
                     key: str, address: str = "") -> Esme:  # fmt: skip
        """A connection opened and bound (a rebind's: with the settings of the bind it replaces)."""
        esme = await self._open(on_message, self.scenario.fleet.window)
        await self._bind(esme, mode, system_id, password, key, address)
        return esme

    async def connect(self) -> None:
        """Bind the subscribers, the spammers and the SP receivers, all at once. Raises FleetError when the target
        refuses or cannot be reached, CancelledError when interrupted (interrupt()); either way what was open is
        closed."""
        s = self.scenario
        t, f = s.target, s.fleet
        self._freed = asyncio.Event()

        async def subscriber_block(i: int, lo: int, hi: int) -> tuple[Esme, list[Phone]]:
            """A block's binds. Its phones are known by their numbers before its binds are answered: an SMSC may
            send a text right after the answer (a welcome), before the fleet's other binds are up."""
            pattern = address_range(lo, hi)
            account = (t.system_id, t.password, "target.system_id", pattern)
            if f.mode == "trx":
                esme = sender = await self._open(self._on_message, f.window)
                phones = self._numbered(lo, hi, sender)
                await self._bind(esme, "trx", *account)
                self.binds.append(esme)
                self._watched.append(_Bind(esme, f"trx #{i} as {t.system_id!r}", phones, True,
                                           partial(self._bound, self._on_message, "trx", *account)))  # fmt: skip
            else:
                sender = await self._open(None, f.window)
                phones = self._numbered(lo, hi, sender)
                await self._bind(sender, "tx", *account)
                self.binds.append(sender)
                self._watched.append(_Bind(sender, f"tx #{i} as {t.system_id!r}", phones, False,
                                           partial(self._bound, None, "tx", *account)))  # fmt: skip
                receiver = await self._open(self._on_message, f.window)
                await self._bind(receiver, "rx", *account)
                self.binds.append(receiver)
                self._watched.append(_Bind(receiver, f"rx #{i} as {t.system_id!r}", phones, True,
                                           partial(self._bound, self._on_message, "rx", *account)))  # fmt: skip
            return sender, phones

        async def spammer_block(i: int, lo: int, hi: int) -> tuple[Esme, list[Spammer]]:
            sp = s.spammers
            account = (sp.system_id, sp.password, "spammers.system_id", address_range(lo, hi))
            esme = await self._open(self._on_spammer_message, f.window)
            await self._bind(esme, "trx", *account)
            self.spammer_binds.append(esme)
            spammers = [Spammer(str(n), esme, self.rules.spam_block_window, self.env.clock) for n in range(lo, hi + 1)]
            self._watched.append(_Bind(esme, f"trx #{i} as {sp.system_id!r} (spammers)", spammers, False,
                                       partial(self._bound, self._on_spammer_message, "trx", *account)))  # fmt: skip
            return esme, spammers

        async def sp_receiver(i: int) -> None:
            account = f.sp_receivers[i]
            on_notice = partial(self._on_sp_notice, account=account.system_id)
            bound = partial(self._bound, on_notice, "rx", account.system_id, account.password, f"fleet.sp_receivers[{i}]")
            esme = await bound()
            self.sp_binds.append((account.system_id, esme))
            self._watched.append(_Bind(esme, f"rx as {account.system_id!r} (fleet.sp_receivers[{i}])", [], True, bound))

        # All bind at once; a failure is reported in this order: the subscribers' binds, the spammers', the SP receivers'.
        jobs: list[Awaitable[Any]] = [subscriber_block(i, lo, hi) for i, (lo, hi) in enumerate(blocks(f.start, f.count, f.binds), 1)]
        if s.behaviours.spammer.weight > 0:
            jobs += [spammer_block(i, lo, hi) for i, (lo, hi) in enumerate(blocks(s.spammers.start, s.spammers.count, s.spammers.binds), 1)]
        jobs += [sp_receiver(i) for i in range(len(f.sp_receivers))]
        self._binding = asyncio.gather(*jobs, return_exceptions=True)
        try:
            results = await self._binding
        except asyncio.CancelledError:
            await self.close()
            raise
        finally:
            self._binding = None
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            if isinstance(failure, FleetError):
                failure = self._fewer_binds_taken(failure, results.index(failure))
            await self.close()
            raise failure
        for result in results:
            if not isinstance(result, tuple):
                continue
            for member in result[1]:
                if isinstance(member, Phone):  # (by_number has it already: _numbered)
                    self.phones.append(member)
                    self.idle.add(member)
                else:
                    self.spammers.append(member)
                    self.spammer_by_number[member.msisdn] = member
                    self.idle_spammers.add(member)
        self._watch_binds()
        # The collector as a gateway has it (gateway/gctune.py), until close(): with CPython's defaults the
        # fleet's thousands of live phones and dialogues made full collections of 25-65 ms every few seconds,
        # and a reply that arrives during one is timed as the target's latency (bench/perf-log.md, session 11).
        tune_for_serving()
        self._collector_tuned = True

    def _fewer_binds_taken(self, failure: FleetError, job: int) -> FleetError:
        """connect()'s `failure`, of its `job`-th bind (a block's binds: the subscribers' first, then the spammers'):
        when other binds of its account were accepted, the account and the address are right, and the target takes
        fewer binds of it than asked (an SMSC's bind limit), refusing the rest, closing or ignoring them: a FleetError
        naming that bind, how many were accepted, and the count to lower. Else `failure` as it is."""
        s = self.scenario
        if job < s.fleet.binds:
            block, asked, account, key = job + 1, s.fleet.binds, s.target.system_id, "fleet.binds"
            binds, accepted = asked * (1 if s.fleet.mode == "trx" else 2), len(self.binds)
        elif s.behaviours.spammer.weight > 0 and job < s.fleet.binds + s.spammers.binds:
            block, asked, account, key = job + 1 - s.fleet.binds, s.spammers.binds, s.spammers.system_id, "spammers.binds"
            binds, accepted = asked, len(self.spammer_binds)
        else:
            return failure
        if not accepted:
            return failure
        which = "bind" if key == "spammers.binds" or s.fleet.mode == "trx" else "tx+rx pair"
        return FleetError(key, f"{which} #{block} of {asked} failed ({failure.cause}) while {accepted} of the {binds} "
                               f"binds as {account!r} were accepted: the target takes fewer binds of the account than "
                               "asked", f"lower {key} to what the target allows, or raise its bind limit for the account")  # fmt: skip

    def _numbered(self, lo: int, hi: int, sender: Esme) -> list[Phone]:
        """The phones of numbers lo..hi, sending on `sender`, each known by its number from now on (what arrives
        for it reaches it); they join the fleet's idle ones once every bind is up, in the blocks' order."""
        phones = [Phone(str(n), sender, self) for n in range(lo, hi + 1)]
        by_number = self.by_number
        for phone in phones:
            by_number[phone.msisdn] = phone
        return phones

    def _watch_binds(self) -> None:
        """From now on a bind the target drops is told at once (_bind_lost), not left to the dialogues that fail on it."""
        self._bound_at = time.monotonic()
        self._blocks_left = {id(bind.members) for bind in self._watched if bind.members and isinstance(bind.members[0], Phone)}
        for bind in self._watched:
            self._watch(bind)

    def _watch(self, bind: _Bind) -> None:
        """With --rebind from the target's unbind (Esme.ended), not the close after it (once what was sent before it is
        answered): a dialogue started on the bind meanwhile could send nothing, so its block is away at once."""
        esme = bind.esme
        end = esme.ended if self.scenario.fleet.rebind else esme.closed
        end.add_done_callback(lambda _end: self._bind_lost(bind, esme))

    def _bind_lost(self, bind: _Bind, esme: Esme) -> None:
        """The target dropped a bind of the fleet while the run went on (its unbind, a reset, an enquire_link
        unanswered; not the fleet's own unbind at the end), listed in lost_binds. With --rebind it is bound again
        (_rebind), its members away meanwhile: not a fault unless it is not back by the end (_check_rebinds).
        Else a fault naming the bind, when and why, and what it served retires (nothing more can be sent, or arrive,
        on it); where texts arrived on it, the dialogues waiting for one fail saying the bind was lost, not that the
        target delivered nothing. With no subscriber's bind left, the run ends early (BINDS_LOST)."""
        if self._closing:
            return
        at = time.monotonic() - self._bound_at
        reason = esme.ended_reason()
        lost = {"bind": bind.name, "at_s": round(at, 3), "reason": reason, "rebound_at_s": None}
        self.lost_binds.append(lost)
        members, receives = bind.members, bind.receives
        if self.scenario.fleet.rebind:
            lost["last_rebind_error"] = None  # why the last try to bind it again failed (a refusal: the fault names it)
            if receives and members and isinstance(members[0], Phone):
                for phone in members:
                    phone.bind_lost()
            self._send_away(members)
            task = asyncio.get_running_loop().create_task(self._rebind(bind, lost))
            self._rebinds.add(task)
            task.add_done_callback(self._rebinds.discard)
            return
        self._bind_fault(bind, lost)
        error = BindLost(f"the bind {bind.name} was lost {at:.1f} s into the run ({reason})")
        for member in members:
            self._cut_off(member, error if receives else None)
        if not members or not isinstance(members[0], Phone):
            return
        if receives:
            self.post.cut_off({phone.msisdn for phone in members}, error)
        self._blocks_left.discard(id(members))
        if not self._blocks_left:
            self.stop(BINDS_LOST)

    def _cut_off(self, member: Phone | Spammer, error: BindLost | None) -> None:
        """A subscriber or spammer whose bind was lost retires at once (counted as retired_bind_lost): it starts nothing
        more, and is no one's peer or victim; a busy one's dialogue ends as it will. `error`: its texts arrived on
        that bind, so what it waits for fails with it."""
        if isinstance(member, Phone):
            if error is not None:
                member.cut_off(error)
            if member.state == RETIRED:
                return
            self.idle.remove(member)
            member.reactions.clear()
            self.stats["retired"] += 1
        elif member.state == IDLE:
            self.idle_spammers.remove(member)
        else:  # a busy spammer's round fails on the lost bind, which retires it
            return
        member.state = RETIRED
        self.stats["retired_bind_lost"] += 1

    def _send_away(self, members: list[Any]) -> None:
        """--rebind: a bind of this block is lost, its members not retired are away until every bind of the block is
        back (_back): an idle one leaves its pool (AWAY), a busy one's dialogue goes on (what it waits for may come on
        the new bind within its timeout; what it sent unanswered fails it, as ever) and it parks when it ends."""
        self._down[id(members)] += 1
        away = self._away
        for member in members:
            if member.state == RETIRED or member in away:
                continue
            away.add(member)
            if member.state == IDLE:
                (self.idle if isinstance(member, Phone) else self.idle_spammers).remove(member)
                member.state = AWAY

    async def _rebind(self, bind: _Bind, lost: dict[str, Any]) -> None:
        """Open and bind `bind` again as it was, trying at once, then after REBIND_BACKOFF's first delay, doubling up to
        its most, until it binds or the run ends (close() cancels this); then it serves as before and is watched again."""
        delay, most = REBIND_BACKOFF
        while True:
            try:
                esme = await bind.again()
                break
            except FleetError as exc:  # (the target down, restarting or refusing binds meanwhile)
                self.stats["rebind_tries_failed"] += 1
                lost["last_rebind_error"] = exc.problem
                log.debug("rebinding %s: %s; again in %g s", bind.name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, most)
        lost["rebound_at_s"] = round(time.monotonic() - self._bound_at, 3)
        self._replace(bind, esme)
        self._watch(bind)
        self._back(bind.members)

    def _replace(self, bind: _Bind, esme: Esme) -> None:
        """The new connection in the old one's place: in the fleet's lists (close() unbinds them, the end checks read
        the SP receivers') and, when the block's members send on it, as theirs (each holds its sender; a rebind is
        rare, so the block's list is walked once rather than every MO going through a holder)."""
        old, bind.esme = bind.esme, esme
        for binds in (self.binds, self.spammer_binds):
            if old in binds:
                binds[binds.index(old)] = esme
        self.sp_binds = [(sp, esme if e is old else e) for sp, e in self.sp_binds]
        for member in bind.members:
            if member.esme is old:
                member.rebound(esme)

    def _back(self, members: list[Any]) -> None:
        """A bind of this block is bound again: once none is down, its members not retired are no longer away; those
        parked are idle again."""
        key = id(members)
        self._down[key] -= 1
        if self._down[key]:
            return
        del self._down[key]
        for member in members:
            self._away.discard(member)
            if member.state != AWAY:
                continue
            if isinstance(member, Phone):
                self._idle_again(member)
            else:
                member.state = IDLE
                self.idle_spammers.add(member)
        if self._freed is not None:
            self._freed.set()

    def _bind_fault(self, bind: _Bind, lost: dict[str, Any], after: str = "") -> None:
        members = bind.members
        numbers = f"{members[0].msisdn}..{members[-1].msisdn}" if members else ""
        self.check_failed("bind", numbers, "bind lost", f"the target dropped the bind {bind.name} {lost['at_s']:.1f} s into "
                                                        f"the run: {lost['reason']}{after}")  # fmt: skip

    async def _stop_rebinds(self) -> None:
        for task in self._rebinds:
            task.cancel()
        await asyncio.gather(*self._rebinds, return_exceptions=True)

    async def _check_rebinds(self) -> None:
        """The run is over: no more rebinds; with --rebind, a bind not bound again by now is the fault it is without,
        naming why its last try failed (the target down, or refusing the bind: a password changed by the restart)."""
        await self._stop_rebinds()
        if not self.scenario.fleet.rebind:
            return
        for bind in self._watched:
            if bind.esme.ended.done():
                lost = next(b for b in reversed(self.lost_binds) if b["bind"] == bind.name)
                error = lost["last_rebind_error"]
                self._bind_fault(bind, lost, "; not bound again by the end of the run" + (f" (its last try: {error})" if error else ""))

    async def close(self) -> None:
        self._closing = True
        if self.headroom is not None:
            self.headroom.stop()
        await self._stop_rebinds()
        esmes = [*self.binds, *self.spammer_binds, *(esme for _sp, esme in self.sp_binds)]
        await asyncio.gather(*(e.unbind() for e in esmes), return_exceptions=True)
        if self._collector_tuned:
            self._collector_tuned = False
            restore_defaults()

    # --------------------------------------------------------------- the load
    async def load(self, load: Load | None = None, *, recorder: Recorder | None = None) -> None:
        """Run a load (default: the scenario's): closed or open loop, for its duration or count. Call it again
        for another phase (e.g. closed loop, then open loop at half the rate), with a fresh `recorder` to
        measure that phase alone; drain() after the last."""
        load = self._load = load if load is not None else self.scenario.load
        self.check_load(load)
        if recorder is not None:
            self.recorder = recorder
        if recorder is not None or self.headroom is None:  # a fresh recorder measures a phase alone: this too
            if self.headroom is not None:
                self.headroom.stop()
            self.headroom = Headroom(lambda: self._in_flight)
        self.headroom.start()
        self._stopping, self.stop_reason, self._started = False, "", 0
        self._last_start = time.monotonic()
        self.recorder.started = time.monotonic()
        # The rate is judged after the open loop's ramp-up (simulator/metrics.py)
        self.recorder.steady_from = self.recorder.started + (load.ramp_up if load.mode == "open" else 0.0)
        self._until = self.recorder.started + load.duration if load.duration > 0 else float("inf")
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        # (An open loop ends by its schedule, once it has started every dialogue due before the end: _open_loop.)
        timed = load.duration > 0 and load.mode == "closed"
        timer = loop.call_at(_loop_time(self._until), self.stop, "duration reached") if timed else None
        try:
            if load.mode == "closed":
                await asyncio.gather(*(self._worker() for _ in range(load.concurrency)))
            else:
                await self._open_loop()
        finally:
            if timer is not None:
                timer.cancel()
            self.stop("load done")
            self.recorder.load_finished()
            self.headroom.load_finished()

    def check_load(self, load: Load) -> None:
        """Raises FleetError when the fleet cannot run `load` as asked (call it before connect() to refuse at once;
        load() calls it too). A closed loop's dialogues each hold a subscriber (a spammer's round a spammer): more
        workers than that would wait, and the run would hold fewer dialogues in flight than it says."""
        if load.mode != "closed":
            return
        s = self.scenario
        spammers = s.spammers.count if s.behaviours.spammer.weight > 0 else 0
        in_flight = min(load.concurrency, load.count) if load.count else load.concurrency  # --count 1: one at most
        if in_flight > s.fleet.count + spammers:
            also = f" and {spammers} spammers" if spammers else ""
            raise FleetValueError("load.concurrency", f"{load.concurrency} dialogues in flight (--concurrency) need as many "
                             f"subscribers, each in one dialogue at a time; the fleet has {s.fleet.count} (--subscribers, "
                             f"fleet.count){also}")  # fmt: skip

    def _done_starting(self) -> bool:
        if self._stopping:
            return True
        load = self._load
        if load.count and self._started >= load.count:
            # A closed loop's load lasts until its last dialogue ends, so that the steady window (--min-rate) holds
            # them all: stopped at once, --count 10 at --concurrency 20 was a load of 2 ms, "6483 dialogues/s".
            # An open loop's window is its schedule: what is still in flight ends in the drain.
            if load.mode == "closed":
                self._stop_starting("count reached")
            else:
                self.stop("count reached")
            return True
        if load.mode == "closed" and time.monotonic() >= self._until:
            self.stop("duration reached")
            return True
        return False

    async def _worker(self) -> None:
        freed, stopped = self._freed, self._stopped
        assert freed is not None and stopped is not None
        while not self._done_starting():
            dialogue = self._next()
            if dialogue is None:
                if self._unusable():
                    return
                freed.clear()
                try:
                    await asyncio.wait_for(freed.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass
                continue
            self._started += 1
            self._last_start = time.monotonic()
            self.recorder.dialogue_started()
            # Waited for only while the load lasts: the drain takes over what is in flight then (and a second
            # Ctrl-C cancels it there), and the load's time ends when it stops starting dialogues.
            await asyncio.wait((self._spawn(dialogue), stopped), return_when=asyncio.FIRST_COMPLETED)

    async def _open_loop(self) -> None:
        """Start the dialogues as they fall due, until the last one due before the end has started. A wake-up past the
        end still starts those due before it (the last is due 1 / rate before the end): stopped at the end instead,
        `--rate 1000 --duration 2` started 1999 about half the time, the missing one counted nowhere."""
        load = self._load
        t0 = self.recorder.started  # the schedule's origin is the load's, so that its end is the load's (_until)
        rate, ramp = load.rate, load.ramp_up
        headroom = self.headroom
        assert headroom is not None
        due_count = 0
        while not self._done_starting():
            due, over = _schedule(time.monotonic() - t0, load)
            while due_count < due and not self._done_starting():
                headroom.started_late(time.monotonic() - t0 - _due_at(due_count, rate, ramp))
                due_count += 1
                if self._in_flight >= load.max_in_flight:
                    self.stats["not_started_in_flight_limit"] += 1
                    continue
                dialogue = self._next()
                if dialogue is None:
                    self.stats["not_started_no_idle_subscriber"] += 1
                    if self._unusable():
                        return
                    continue
                self._started += 1
                self._last_start = time.monotonic()
                self.recorder.dialogue_started()
                self._spawn(dialogue)
            if over:
                self.stop("duration reached")
                return
            # sleep until the next dialogue is due (at least a millisecond, at most 50 ms)
            elapsed = time.monotonic() - t0
            await asyncio.sleep(min(0.05, max(0.001, _due_at(due_count, rate, ramp) - elapsed)))

    def _spawn(self, dialogue: Callable[[], Awaitable[DialogueResult]]) -> asyncio.Task:
        """Run a dialogue as a task the drain waits for (or cancels)."""
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(dialogue())
        self.tasks.add(task)
        task.add_done_callback(self._dialogue_done)
        return task

    def _dialogue_done(self, task: asyncio.Task) -> None:
        self._in_flight -= 1
        self._task_done(task)

    def _task_done(self, task: asyncio.Task) -> None:
        """A dialogue's or reaction's task ended. An exception that escaped it came from the fleet's own bookkeeping
        after the dialogue (its behaviour is _guarded): a fault, so the run fails all the same."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.check_failed("internal", "", INTERNAL_ERROR, self._internal_error(task.exception()))

    def _unusable(self) -> bool:
        """Every subscriber retired, or no dialogue could start for a long while: the run cannot go on."""
        if self.stats["retired"] >= len(self.phones):
            self.stop(ALL_RETIRED)
            return True
        if self._names == ["spammer"] and all(spammer.state == RETIRED for spammer in self.spammers):
            self.stop(SPAMMERS_RETIRED)  # (it waited to be called stalled)
            return True
        load = self._load
        if time.monotonic() - self._last_start > max(30.0, 4 * load.timeout + self.scenario.reactions.survey.late_max_wait):
            self.stop(STALLED)
            return True
        return False

    # ------------------------------------------------------------ choosing
    def _next(self) -> Callable[[], Awaitable[DialogueResult]] | None:
        """A dialogue ready to run (its subscriber taken out of the idle pool), or None."""
        names, cumulative, rng = self._names, self._cumulative, self.rng
        for _ in range(4):
            name = names[bisect(cumulative, rng.random() * cumulative[-1])] if len(names) > 1 else names[0]
            dialogue = self._pickers[name]()
            if dialogue is not None:
                return dialogue
        return None

    def _taking(self, phone: Phone | None, kind: str,
                make: Callable[[Phone], Awaitable[DialogueResult]]) -> Callable[[], Awaitable[DialogueResult]] | None:  # fmt: skip
        if phone is None:
            return None
        phone.state = BUSY

        async def dialogue() -> DialogueResult:
            return await self._conclude(phone, await self._guarded(kind, phone, lambda: make(phone)))

        return dialogue

    async def _guarded(self, kind: str, handset: Handset, behaviour: Callable[[], Awaitable[DialogueResult]]) -> DialogueResult:
        """The behaviour's result; when the simulator's own code raised in it (a bug of the simulator, not the
        target's doing), a failed dialogue of its kind at the step INTERNAL_ERROR, naming the exception, with the
        transcript so far: recorded and judged as any failure, and its subscriber retired (what it holds is unknown)."""
        before = handset.transcript
        try:
            return await behaviour()
        except Exception as exc:  # noqa: BLE001 - whatever the simulator raised (not CancelledError: the drain's)
            # A dialogue begins a transcript of its own: one that has not begun yet left the last one's, not shown.
            transcript = handset.transcript if handset.transcript is not before else []
            now = time.monotonic()
            return DialogueResult(kind, handset.msisdn, False, "failed", started_at=now, ended_at=now, step=INTERNAL_ERROR,
                                  error=self._internal_error(exc), transcript=transcript)  # fmt: skip

    def _internal_error(self, exc: BaseException) -> str:
        """What a failure says of an exception of the simulator's own code; its traceback is logged the first time
        that place raises (one line of the code may fail thousands of dialogues)."""
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{'/'.join(frame.filename.split('/')[-2:])}:{frame.lineno} in {frame.name}"
        if (frame.filename, frame.lineno) not in self._errors_logged:
            self._errors_logged.add((frame.filename, frame.lineno))
            log.error("the simulator's own code raised at %s (further ones there are counted, not logged)", where,
                      exc_info=exc)  # fmt: skip
        name = type(exc).__name__
        return (f"{name}: {exc}" if str(exc) else name) + f" at {where}: the simulator's own error, not the target's"

    def _pick_query(self) -> Any:
        rng = self.rng
        phone = None
        if rng.random() < 0.75:
            phone = self.idle.take(rng, lambda p: bool(p.subscriptions))
        if phone is None:
            phone = self.idle.take(rng)
        return self._taking(phone, "query", lambda p: b.query(p, self.env))

    def _pick_order(self) -> Any:
        services, now = self.env.order_services, self.env.clock()
        phone = self.idle.take(self.rng, lambda p: p.can_order(services, now))
        o = self.scenario.behaviours.order
        variant = _weighted(self.rng, (("confirm", o.confirm), ("decline", o.decline), ("ignore", o.ignore)))
        return self._taking(phone, "order", lambda p: b.order(p, self.env, variant))

    def _pick_spam(self) -> Any:
        limit, midnight = self.rules.spam_reports_per_day, self.rules.day_start(self.env.clock())
        phone = self.idle.take(self.rng, lambda p: p.may_report(midnight, limit))
        s = self.scenario.behaviours.spam
        variant = _weighted(self.rng, (("with_number", s.with_number), ("two_step", s.two_step)))
        first, count = self._reported_numbers
        reported = str(first + self.rng.randrange(count))
        text = self.rng.choice(b.SPAM_TEXTS)
        return self._taking(phone, "spam", lambda p: b.spam_report(p, self.env, variant, reported, text))

    def _pick_chatter(self) -> Any:
        phones, rng = self.phones, self.rng
        phone = self.idle.take(rng)
        if phone is None:
            return None
        for _ in range(8):
            peer = phones[int(rng.random() * len(phones))]
            if peer is not phone and peer.state != RETIRED and peer not in self._away:
                return self._taking(phone, "chatter", lambda p, peer=peer: b.chatter(p, self.env, peer))
        self.idle.add(phone)
        return None

    def _pick_help(self) -> Any:
        return self._taking(self.idle.take(self.rng), "help", lambda p: b.help_text(p, self.env))

    def _pick_spammer(self) -> Any:
        threshold = self.rules.spam_block_threshold
        idle = self.idle_spammers.items
        if not idle:
            return None
        # A spammer that must be blocked by now and was not yet seen refused comes first (that is the check);
        # then one still sending; else any.
        spammer = next((s for s in idle if s.must_be_blocked(threshold) and not s.refused_seen), None)
        if spammer is None:
            spammer = self.idle_spammers.take(self.rng, lambda s: not s.refused_seen)
        else:
            self.idle_spammers.remove(spammer)
        if spammer is None:
            spammer = self.idle_spammers.take(self.rng)
        if spammer is None:
            return None
        victims = self._victims()
        if not victims:
            self.idle_spammers.add(spammer)
            return None
        spammer.state = BUSY

        async def dialogue() -> DialogueResult:
            result = await self._guarded("spammer", spammer, lambda: b.spammer_round(spammer, self.env, victims))
            self.recorder.record(result)
            if result.ok and spammer in self._away:  # its bind lost, not back yet (--rebind): _back makes it idle
                spammer.state = AWAY
            elif result.ok:
                spammer.state = IDLE
                self.idle_spammers.add(spammer)
                if self._freed is not None:
                    self._freed.set()
            else:
                spammer.state = RETIRED
            return result

        return dialogue

    def _victims(self) -> list[Phone]:
        """Distinct subscribers for a spam round (retired ones left out: what they hold is unknown)."""
        phones = self.phones
        count = min(self.scenario.behaviours.spammer.victims, len(phones))
        away = self._away
        victims = [p for p in self.rng.sample(phones, count) if p.state != RETIRED and p not in away]
        if len(victims) < count and len(victims) < len(phones) // 2:  # many retired (or away): pick among the others
            usable = [p for p in phones if p.state != RETIRED and p not in away]
            victims = self.rng.sample(usable, min(count, len(usable)))
        return victims

    async def _conclude(self, phone: Phone, result: DialogueResult, *, reaction: bool = False) -> DialogueResult:
        """A phone's dialogue ended: record it; run the phone's next reaction, or make it idle (retired on failure)."""
        self.recorder.record(result, reaction=reaction)
        if phone.state == RETIRED:  # retired meanwhile: its bind was lost (_cut_off)
            return result
        if not result.ok:
            phone.state = RETIRED
            self.stats["retired"] += 1
            phone.reactions.clear()
            return result
        if phone in self._away:  # its bind lost, not back yet (--rebind): it waits for it (_back)
            phone.state = AWAY
            phone.reactions.clear()
            return result
        self._idle_again(phone)
        return result

    def _idle_again(self, phone: Phone) -> None:
        """The phone is free: its next queued reaction runs, else it is idle."""
        if phone.reactions and not self._stopping:
            self._react(phone)
            return
        phone.reactions.clear()
        phone.state = IDLE
        self.idle.add(phone)
        freed = self._freed
        if freed is not None:
            freed.set()

    # ------------------------------------------------------------ reactions
    def _react(self, phone: Phone) -> None:
        """Run the phone's next queued reaction (the phone is taken out of the idle pool)."""
        self.idle.remove(phone)
        phone.state = BUSY
        kind, make = phone.reactions.popleft()

        async def reaction() -> None:
            self.recorder.dialogue_started(reaction=True)
            await self._conclude(phone, await self._guarded(kind, phone, make), reaction=True)

        task = asyncio.get_running_loop().create_task(reaction())
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _queue(self, phone: Phone, kind: str, make: Callable[[], Awaitable[DialogueResult]]) -> None:
        """A reaction of `kind` (the kind of dialogue it is) queued on the phone; run at once when it is idle."""
        phone.reactions.append((kind, make))
        if phone.state == IDLE:
            self._react(phone)

    # -------------------------------------------------------------- arrivals
    def _on_message(self, message: ShortMessage) -> None:
        self._canonical(message)
        if self._unfit(message):
            return
        phone = self.by_number.get(message.destination)
        if phone is None:
            self.recorder.arrived_unasked("unrouted")
            self._sample(f"to {message.destination} (no such subscriber here) from {message.source}: {message.text}")
        else:
            phone.deliver(message)

    def _canonical(self, message: ShortMessage) -> None:
        """The message's numbers in international form, as the fleet holds them: an SMSC may give them national
        (addr_ton 2: 13800000002 for 8613800000002), with + or 00. A number of the international form's length
        is taken as it is (the common case, one len() each); others are normalised (short codes stay as they are)."""
        numbers = self.numbers
        length = numbers.msisdn_length
        if len(message.source) != length:
            message.source = numbers.normalise(message.source)
        if len(message.destination) != length:
            message.destination = numbers.normalise(message.destination)

    def _on_spammer_message(self, message: ShortMessage) -> None:
        if self._unfit(message):
            return
        self.recorder.arrived_unasked("to_spammer")
        self._sample(f"to spammer {message.destination} from {message.source}: {message.text}")

    def _on_sp_notice(self, message: ShortMessage, account: str) -> None:
        """A text to the SP receiver bound as `account`: an ORDER/CANCEL notice must be about a service that SP owns
        (the target config's catalogue) and match an order or unsubscription of that subscriber in this run."""
        if self._unfit(message):
            return
        m = SP_NOTICE.match(message.text)
        if m is None:
            self.recorder.arrived_unasked("sp_other")
            self._sample(f"to SP {message.destination} from {message.source}: {message.text}")
            return
        if self._sp_notice_copy(message, account):
            return
        event, service, msisdn = m.groups()
        if msisdn is not None and msisdn not in self.by_number:
            # About a number outside the fleet: stored for the SP before it bound (an earlier run's), or another
            # client's. Not this run's to check.
            self.stats["sp_notices_for_others"] += 1
            return
        owner = self.rules.notified_sps.get(service)
        if owner is not None and owner != account:  # counted below too: the notice itself was owed
            self.notices_misrouted[(service, account, owner)] += 1
        self.notices_received[(event, service)] += 1
        self._owe((event, service, msisdn or ""), -1)

    def _sp_notice_copy(self, message: ShortMessage, account: str) -> bool:
        """Whether the notice is a copy of one that came already (its notice id again: the target's retry, which an SP
        dedupes), owed nothing. Judged as a subscriber's copy is (Fleet._copy): one that comes after a bind was lost and
        bound again since the first (--rebind) is counted as redelivered_after_rebind, any other kept to be judged at
        the end (settle), when the fleet knows whether it answered the target late."""
        found = NOTICE_ID.search(message.text)
        if found is None:
            return False
        seen, key, lost = self._notice_ids, hash(found[1]), len(self.lost_binds)
        if key not in seen:
            seen[key] = lost
            if len(seen) > SP_NOTICES_KEPT:
                del seen[next(iter(seen))]
            return False
        if self.scenario.fleet.rebind and seen[key] < lost:
            self.stats["redelivered_after_rebind"] += 1
            self._sample(f"to SP {account} again, a bind lost and bound again since: {message.text}")
        else:
            self._delivery_fault("twice", account, message.source, message.text, message.received_at)
        return True

    def _owe(self, key: tuple[str, str, str], n: int) -> None:
        owed = self._notices_owed
        owed[key] += n
        if not owed[key]:
            del owed[key]

    def _unfit(self, message: ShortMessage) -> bool:
        """What arrived is no text a handset takes, which fails the run (kind `delivery`) and goes no further (no dialogue
        takes it for its reply, nor the SP notices for theirs): a report on a message (a delivery receipt, an
        acknowledgement), when the fleet asks for none (registered_delivery 0 in all it sends, SMPP 3.4 5.2.17); or a
        text with UDHI set that begins with no User Data Header that adds up (3GPP TS 23.040 9.2.3.24)."""
        if message.is_report:
            step, noun, why = "receipt never requested", "report", "not a text but a delivery receipt or acknowledgement"
            after = "which the fleet never asks for (registered_delivery 0, SMPP 3.4 5.2.17)"
        elif message.udh_invalid:
            step, noun, why = "UDHI without a valid UDH", "text", "UDHI set, but no User Data Header that adds up begins it"
            after = "which a handset misreads (it takes the first octets for a header)"
        else:
            return False
        self.check_failed("delivery", message.destination, step,
                          f"a {noun} from {message.source} (esm_class 0x{message.esm_class:02x}: {why}), {after}: "
                          f"{message.text!r}", [(message.received_at, "<", message.source, message.text)])  # fmt: skip
        return True

    def _sample(self, text: str) -> None:
        if len(self.unasked_samples) < 20:
            self.unasked_samples.append(text[:300])

    def notice_kind(self, message: ShortMessage) -> str | None:
        """A text that is a notice whoever receives it, whatever they are doing: report handled, reminder, refund."""
        source, text, plan = message.source, message.text, self.plan
        if source == plan.spam_report:
            if plan.texts.match("spam.handled", text) is not None:
                return "spam_handled"
        elif source == plan.operator:
            texts = plan.texts
            if text.startswith("(") and texts.pattern("billing.page").match(text):
                return "reminder"
            if texts.templates.get("billing.reminder_head", "\0") in text:
                return "reminder"
            if text.startswith(texts.templates["billing.refund_double"][:4]) and (
                texts.match("billing.refund_double", text)
                or texts.match("billing.refund_single", text)
                or texts.match("billing.refund_overcharged", text)
            ):
                return "refund"
        return None

    def unasked(self, phone: Phone, message: ShortMessage, *, after_failure: bool = False) -> None:
        """A text for `phone` that no dialogue of it asked for: record it, react as the scenario says.
        after_failure: it came during a dialogue of the phone that failed (the rest of that dialogue)."""
        recorder, plan, source = self.recorder, self.plan, message.source
        fellow = source in self.by_number
        spam = not fellow and self._from_outside(source)
        if fellow:
            # A chat a dialogue of its sender waits for; else one that came after its dialogue gave up (or a copy):
            # unasked, never spam (the subscriber would report its fellow subscriber to the target). One its sender
            # never sent this subscriber is another's, delivered here.
            if self.post.arrived(message):
                return
            if not self.post.ever_sent(source, phone.msisdn):
                self.check_failed("delivery", phone.msisdn, "another subscriber's text",
                                  f"a text from {source} to {phone.msisdn}, which the fleet never sent it: {message.text!r}",
                                  [(message.received_at, "<", source, message.text)])  # fmt: skip
                return
        elif spam and (self.post.arrived(message) or phone.came_late(message)):  # a spammer's round waited for it, or gave up on it
            recorder.arrived_unasked("spam")
            self._react_spam(phone, message)
            return
        if self._copy(phone, message):
            return
        kind = self.notice_kind(message)
        if kind is not None:
            recorder.arrived_unasked(kind)
            if kind == "spam_handled":
                self._told(phone, message)
            return
        if source == plan.rating:
            fields = plan.texts.match("rating.survey", message.text)
            if fields is not None:
                recorder.arrived_unasked("survey")
                self._react_survey(phone, message, fields)
                return
        elif spam:
            recorder.arrived_unasked("spam")
            self._react_spam(phone, message)
            return
        failed_already = after_failure or phone.state == RETIRED  # the rest of a failed dialogue: counted once
        if source in self.rules.short_codes and not failed_already:
            key = plan.texts.key_of(message.text)
            if key is None:
                # From a service of the target, yet none of the texts its config can send (a survey or "report
                # handled" worded otherwise): the target is wrong, not merely early or late.
                self.check_failed("unasked", phone.msisdn, f"unrecognised text from {source}",
                                  f"none of the target's reply texts: {message.text!r}", [(time.monotonic(), "<", source, message.text)])  # fmt: skip
                return
            if not key.startswith(UNPROMPTED) and not self.stats["cancelled_at_drain"]:
                # An answer to an MO (a listing, a confirmation request, help, an ack) that no dialogue of the subscriber
                # waits for: another subscriber's, delivered here too (or the target's retry of one the fleet answered
                # late: judged at the end). What a dialogue cancelled at the drain waited for may come now: not judged.
                self._delivery_fault("answer", phone.msisdn, source, message.text, message.received_at)
                return
        recorder.arrived_unasked("other")
        self._sample(f"to {phone.msisdn} ({phone.state}) from {source}: {message.text}")

    def _told(self, phone: Phone, message: ShortMessage) -> None:
        """A "report handled" notice: the reporter is told the number it names is blocked (_check_handled)."""
        fields = self.plan.texts.match("spam.handled", message.text) or {}
        self._told_handled.setdefault(fields.get("number", ""), set()).add(phone.msisdn)

    def _from_outside(self, source: str) -> bool:
        """A text from a number outside the fleet, not a service's: a spammer (one of the fleet's, or anyone's)."""
        return source in self.spammer_by_number or (source.isdigit() and len(source) > 8 and source not in self.rules.short_codes)

    def _copy(self, phone: Phone, message: ShortMessage) -> bool:
        """A text no dialogue waits for that is one the phone received since its last MO (Phone.recent): a copy.
        Kept to be judged at the end (settle); the one it copies stays as it was (a reply, a chat, a survey). One
        whose bind was lost since the first came (--rebind) is the target's redelivery of a text whose answer it had
        not committed (a kill -9: README), counted as redelivered_after_rebind, not a fault."""
        arrival = hash((message.source, message.text))
        if not phone.arrived_again(arrival):
            return False
        recent = phone.recent
        at = recent.index(arrival)
        phone.recent = recent[:at] + recent[at + 1:]  # the pair is told once, even when both come here
        if BIND_LOST in recent[at:]:
            self.stats["redelivered_after_rebind"] += 1
            self._sample(f"to {phone.msisdn} from {message.source} again, its bind lost and bound again since: {message.text}")
            return True
        self._delivery_fault("twice", phone.msisdn, message.source, message.text, message.received_at)
        return True

    def _arrived_in_part(self, source: str, destination: str, seqnums: list[int], unsent: bool) -> None:
        """A long text given up with parts missing (SharedParts): a part lost, or a copy of a part of a text
        that was whole already (it begins a set nothing completes). One the fleet sent with a part refused or
        unanswered (`unsent`) is only counted: its refusal failed its dialogue already, and the target was right."""
        if unsent:
            self.stats["in_part_after_refusal"] += 1
            return
        self._delivery_fault("in part", destination, source, f"<part(s) {', '.join(map(str, seqnums))} only>", time.monotonic())

    def _delivery_fault(self, kind: str, msisdn: str, source: str, text: str, at: float) -> None:
        """A delivery fault of a kind of DELIVERY_FAULTS: counted, kept to be judged at the end (settle)."""
        self.stats[DELIVERY_FAULTS[kind][0]] += 1
        if len(self._delivery_faults) < DELIVERY_FAULTS_KEPT:
            self._delivery_faults.append((kind, msisdn, source, text, at))

    def check_failed(self, kind: str, msisdn: str, step: str, error: str,
                     transcript: list[tuple[float, str, str, str]] | None = None) -> None:
        """A check outside any dialogue failed (an unrecognised text, a receipt, a copy, the SP notices): a fault, which
        fails the run as a failed dialogue does, but no dialogue (a receipt per MO is not twice the dialogues offered)."""
        now = time.monotonic()
        result = DialogueResult(kind, msisdn, False, "failed", started_at=now, ended_at=now, step=step, error=error,
                                transcript=transcript or [])  # fmt: skip
        self.recorder.fault(result)

    def _react_survey(self, phone: Phone, message: ShortMessage, fields: dict[str, str]) -> None:
        if phone.state == RETIRED or self._stopping or phone in self._away:
            return
        r = self.scenario.reactions.survey
        variant = _weighted(self.rng, (("valid", r.valid), ("invalid", r.invalid), ("late", r.late), ("ignore", r.ignore)))
        if variant == "late" and b._survey_validity(fields, self.plan) + b.LATE_MARGIN > r.late_max_wait:
            self.stats["survey_late_skipped"] += 1  # the survey is valid too long to wait it out
            variant = "ignore"
        if variant == "ignore":
            self.stats["survey_ignored"] += 1
            return
        arrived = self.env.clock()  # the survey's validity runs on the target's clock
        self._queue(phone, "rating", lambda: b.answer_survey(phone, self.env, message, fields, variant, arrived))

    def _react_spam(self, phone: Phone, message: ShortMessage) -> None:
        sender = message.source
        if phone.state == RETIRED or self._stopping or sender in phone.reported or phone in self._away:
            return
        r = self.scenario.reactions.spam
        variant = _weighted(self.rng, (("with_number", r.report), ("two_step", r.two_step), ("ignore", r.ignore)))
        if variant == "ignore":
            self.stats["spam_ignored"] += 1
            return
        phone.reported.add(sender)
        spammer = self.spammer_by_number.get(sender)
        if spammer is not None:
            spammer.report_queued(phone.msisdn)
        self._queue(phone, "spam", lambda: b.spam_report(phone, self.env, variant, sender, message.text, spammer=spammer))

    def _mo_accepted(self) -> None:
        self.recorder.mo_accepted()  # the recorder of the phase running now (load() may swap it)

    def _event(self, event: str, detail: str, msisdn: str = "") -> None:
        if event == "refused":
            self.recorder.refused(detail, expected=True)
        elif detail in self._sp_services:
            self.notices_expected[(event, detail)] += 1
            self._owe((event, detail, msisdn), 1)

    # ------------------------------------------------------------ the end
    async def drain(self) -> None:
        """Let dialogues and reactions still running end (at most load.drain seconds; the rest are cancelled)."""
        self.stop("load done")
        deadline = time.monotonic() + self.scenario.load.drain
        while self.tasks and time.monotonic() < deadline and not self._drain_cut:
            await asyncio.wait(list(self.tasks), timeout=min(DRAIN_POLL, max(0.0, deadline - time.monotonic())))
        if self.tasks:
            self.stats["cancelled_at_drain"] += len(self.tasks)
            never_sent, unanswered = self._senders_waiting()
            self.stats["cancelled_at_drain_mo_not_sent"] += len(never_sent)
            self.stats["cancelled_at_drain_mo_unanswered"] += len(unanswered)
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.headroom is not None:
            self.headroom.stop()
        self.recorder.finish()

    def _senders_waiting(self) -> tuple[set[str], set[str]]:
        """The numbers with an MO never sent (it waits in a bind's queue for room in the window), and the others with
        one sent and not answered yet."""
        queued = {pdu.source_addr for esme in self._opened for pdu in esme.queued()}  # type: ignore[attr-defined]
        unanswered = {pdu.source_addr for esme in self._opened for pdu in esme.unanswered()  # type: ignore[attr-defined]
                      if pdu.command_id == CommandId.SUBMIT_SM}  # fmt: skip
        return queued, unanswered - queued

    def _window_waits(self) -> Counter[str]:
        """How many submit_sm waited for room in a full window, and how many of them were never sent in time."""
        return Counter(submit_sm_waited_for_window=sum(esme.stats.queued for esme in self._opened),
                       submit_sm_not_sent_in_time=sum(esme.stats.not_sent_in_time for esme in self._opened))  # fmt: skip

    async def settle(self, timeout: float = 3.0) -> None:
        """The end checks: a last round of every spammer enough victims reported and no round saw refused yet
        (its texts must be refused now); the SP notices must match the orders and unsubscriptions the fleet made
        (when no such dialogue failed: a failed one may or may not have gone through)."""
        try:
            await self._check_rebinds()
            await self._check_blocks_and_notices(timeout)
            await self._check_handled(timeout)
            await self._check_deliveries()
        finally:
            self.recorder.finish()  # the run ends after its end checks: their results lie within it

    async def _check_blocks_and_notices(self, timeout: float) -> None:
        await self._verify_blocks()
        if not self.sp_binds:
            return
        receivers = ",".join(a.system_id for a in self.scenario.fleet.sp_receivers)
        failed = {k for (k, outcome) in self.recorder.outcomes if outcome == "failed"}
        if failed & {"order", "query"}:  # about which SP's service is not known: none is checked
            why = "an order or query dialogue failed: its notice may or may not come"
            self.sp_notices_unchecked.update((a.system_id, why) for a in self.scenario.fleet.sp_receivers)
            self._check_misrouted(receivers)  # wrong whatever went through
            return
        # A receiver lost (_bind_lost): its SP's notices may have been on their way; the other SPs' are checked.
        lost = {sp for sp, esme in self.sp_binds if esme.is_closed}
        self.sp_notices_unchecked.update(dict.fromkeys(lost, "its receiver's bind was lost"))
        unchecked = {service for service, sp in self.rules.notified_sps.items() if sp in lost}
        until = time.monotonic() + timeout
        while time.monotonic() < until and self._notices_short(unchecked):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # a surplus notice would land now
        self._check_misrouted(receivers)
        owed = {k: v for k, v in self._notices_owed.items() if v and k[1] not in unchecked}  # (a service no SP has: checked)
        if owed:
            missing: Counter[tuple[str, str]] = Counter()
            surplus: Counter[tuple[str, str]] = Counter()
            example: dict[tuple[str, str, bool], str] = {}
            for (event, service, msisdn), n in owed.items():
                (missing if n > 0 else surplus)[(event, service)] += abs(n)
                example.setdefault((event, service, n > 0), msisdn or "no msisdn")
            diff = [f"{e} {s}: {n} owed by the fleet's dialogues not received (e.g. about {example[(e, s, True)]})"
                    for (e, s), n in sorted(missing.items())]  # fmt: skip
            diff += [f"{e} {s}: {n} received that no dialogue of the run owed (e.g. about {example[(e, s, False)]})"
                     for (e, s), n in sorted(surplus.items())]  # fmt: skip
            self.check_failed("sp_notice", receivers, "end",
                              "SP notices do not match the fleet's orders and unsubscriptions: " + "; ".join(diff[:10]))  # fmt: skip

    def _check_misrouted(self, receivers: str) -> None:
        """Notices about a service that came to another SP's bind than the one the target config names for it."""
        if self.notices_misrouted:
            wrong = [f"{n} about {service} to {account!r}, whose SP is {owner!r}"
                     for (service, account, owner), n in sorted(self.notices_misrouted.items())]  # fmt: skip
            self.check_failed("sp_notice", receivers, "wrong account",
                              f"SP notices went to another SP's bind than the target config's catalogue names: {'; '.join(wrong[:10])}")  # fmt: skip

    async def _check_deliveries(self) -> None:
        """Texts delivered twice, long texts that arrived in part, and answers to no MO of their subscriber fail the
        run (a gateway delivers each text once, whole, to its subscriber), unless the fleet itself answered the
        target's deliver_sm late: then the target's retries are its right (SMPP), and they are counted as such. A long text still incomplete now gets the step timeout to
        complete (its last parts may be on their way), then is given up: it arrived in part. An interrupted run
        judges none of these (what is in flight was cut short)."""
        parts, step_timeout = self._parts, self.scenario.load.timeout
        if self.interrupted:
            self.stats["incomplete_unjudged"] = len(parts.reassembler)
            return
        until = time.monotonic() + step_timeout
        while len(parts.reassembler) and time.monotonic() < until:
            await asyncio.sleep(0.05)
        parts.expire(math.inf)
        faults = self._delivery_faults
        count = sum(self.stats[stat] for stat, _step in DELIVERY_FAULTS.values())
        if not count:
            return
        lag = self.headroom.loop_lag.get_max_value() / 1e6 if self.headroom is not None else 0.0
        retry_after = self.config.gateway.response_timeout
        if lag >= retry_after:
            self.stats["redelivered_after_late_answer"] = count
            # First, whatever the samples already hold (a stall brings many texts unasked, and samples stop at 20).
            self.unasked_samples.insert(0, f"{count} texts delivered twice, in part or to no MO: the fleet answered deliver_sm "
                                           f"late (its event loop lagged up to {lag:.1f} s, the target retries after "
                                           f"response_timeout {retry_after:g} s), so they are the target's retries, "
                                           "not its fault")  # fmt: skip
            return
        for kind, msisdn, source, text, at in faults:
            if kind == "twice":
                error = f"{text!r} from {source} arrived again, with no MO of the subscriber since: a copy"
            elif kind == "in part":
                error = f"a long text from {source} arrived in part: {text[1:-1]}; its other parts never came within the step timeout"
            else:
                error = (f"{text!r} from {source} is {self.plan.texts.key_of(text)}, only ever an answer to the subscriber's "
                         "own MO, and no dialogue of the subscriber waited for it: another subscriber's reply?")  # fmt: skip
            self.check_failed("delivery", msisdn, DELIVERY_FAULTS[kind][1], error, [(at, "<", source, text)])
        for kind, (stat, step) in DELIVERY_FAULTS.items():  # beyond the ones kept with their details
            for _ in range(self.stats[stat] - sum(1 for f in faults if f[0] == kind)):
                self.check_failed("delivery", "", step, f"as the first {DELIVERY_FAULTS_KEPT} (kept with their details)")

    async def _verify_blocks(self) -> None:
        threshold = self.rules.spam_block_threshold
        due = [s for s in self.spammers if s.state == IDLE and s.must_be_blocked(threshold) and not s.refused_seen]
        for spammer in due:
            victims = self._victims()
            if not victims:
                return
            self.recorder.dialogue_started()
            self.recorder.record(await self._guarded("spammer", spammer, partial(b.spammer_round, spammer, self.env, victims)))
        self.stats["spammer_final_checks"] += len(due)

    async def _check_handled(self, timeout: float) -> None:
        """Every reporter of a spammer the run saw refused 0x400 is told its report was handled (SPEC 3.3): each victim
        whose report was acknowledged gets spam.handled naming the number, `timeout` allowed for the last ones to come.
        Not judged in an interrupted run, nor for a victim whose bind is lost or away (--rebind)."""
        if self.interrupted:
            return
        until = time.monotonic() + timeout
        while (untold := self._untold()) and time.monotonic() < until:
            await asyncio.sleep(0.05)
        for spammer, victims in untold.items():
            self.check_failed("spammer", spammer.msisdn, "report handled",
                              f"blocked network-wide (0x400), yet {len(victims)} of the {len(spammer.acked)} victims whose report of "
                              f"it was acknowledged were never told it was handled (spam.handled): {sorted(victims)[:5]}")  # fmt: skip

    def _untold(self) -> dict[Spammer, set[str]]:
        """By spammer seen refused 0x400: the victims whose report was acknowledged and who were not told it was handled."""
        untold = {}
        for spammer in self.spammers:
            if not spammer.refused_seen:
                continue
            told = self._told_handled.get(self.plan.national(spammer.msisdn), set())
            victims = {v for v in spammer.acked - told if self.by_number[v].lost is None and self.by_number[v] not in self._away}
            if victims:
                untold[spammer] = victims
        return untold

    def _notices_short(self, unchecked: set[str]) -> bool:
        """Whether a notice about a service not among `unchecked` is still owed."""
        return any(n > 0 for (_event, service, _msisdn), n in self._notices_owed.items() if service not in unchecked)

    def summary(self) -> dict[str, Any]:
        """The recorder's summary with a "fleet" entry about the run itself."""
        summary = self.recorder.summary()
        if self.headroom is not None:
            summary["simulator"] = self.headroom.summary()
        threshold = self.rules.spam_block_threshold
        resend = self.env.resend
        summary["fleet"] = {
            "subscribers": len(self.phones),
            "binds": len(self.binds),
            "window": self.scenario.fleet.window,
            "mode": self.scenario.fleet.mode,
            "load": self._load.mode,
            # what was asked, beside what the run had (simulator.in_flight_mean, throughput.started_per_s)
            **({"concurrency": self._load.concurrency} if self._load.mode == "closed" else {"rate": self._load.rate}),
            "stopped": self.stop_reason,
            "interrupted": self.interrupted,
            "retired_subscribers": sum(1 for p in self.phones if p.state == RETIRED),
            "lost_binds": self.lost_binds,
            "stats": dict(sorted((self.stats + self._window_waits()
                                  + Counter(mo_resent_after_throttled=resend.resent if resend else 0,
                                            mo_sent_after_rebind=resend.unsent if resend else 0)).items())),
            "spammers": {
                s.msisdn: {"rounds": s.rounds, "victims_reported": len(s.acked), "blocked_expected": s.must_be_blocked(threshold),
                           "refused_seen": s.refused_seen, "retired": s.state == RETIRED}
                for s in self.spammers if s.rounds or s.acked or s.state == RETIRED
            },  # fmt: skip
            "sp_notices": {f"{e} {s}": n for (e, s), n in sorted(self.notices_received.items())},
            "sp_notices_unchecked": dict(sorted(self.sp_notices_unchecked.items())),
            "unasked_samples": self.unasked_samples,
        }
        return summary

    def _reported_range(self) -> tuple[int, int]:
        s = self.scenario.behaviours.spam
        return int(s.reported_start), s.reported_count


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in choices)
    x = rng.random() * total
    for name, weight in choices:
        x -= weight
        if x < 0:
            return name
    return next(name for name, w in reversed(choices) if w > 0)


def _due_by(t: float, rate: float, ramp: float) -> int:
    """How many of the open loop's dialogues are due `t` seconds after its start: the first at once, then
    rate * t^2 / (2 ramp) more by t during the linear ramp-up, rate * (t - ramp / 2) after it. So a load of
    `duration` seconds starts rate * duration dialogues (ramp-up 0), the last 1 / rate before its end."""
    if t < ramp:
        return int(rate * t * t / (2 * ramp)) + 1
    return int(rate * (t - ramp / 2)) + 1


def _schedule(t: float, load: Load) -> tuple[int, bool]:
    """The open loop's schedule `t` seconds into `load`: how many dialogues are due by then, and whether it is over
    (its duration reached). Only those due before the end are ever due, and all of them by then, however late the
    loop wakes: rate x duration at ramp-up 0 (README); a dialogue due within a nanosecond of the end, as float
    rounding puts one, is due at it, not before."""
    due = _due_by(t, load.rate, load.ramp_up)
    if load.duration <= 0:
        return due, False
    return min(due, _due_by(load.duration - 1e-9, load.rate, load.ramp_up)), t >= load.duration


def _due_at(k: int, rate: float, ramp: float) -> float:
    """Seconds after the open loop's start at which its k-th dialogue (from 0) is due (the inverse of _due_by)."""
    if k < rate * ramp / 2:
        return (2 * ramp * k / rate) ** 0.5
    return k / rate + ramp / 2


def _loop_time(monotonic_at: float) -> float:
    """A time.monotonic() instant on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_at - time.monotonic())
