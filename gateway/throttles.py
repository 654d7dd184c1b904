"""A receiver's flow control of the deliver_sm sent to it: ESME_RTHROTTLED and ESME_RMSGQFUL, per subscriber.

A carrier's SMSC bound as a receiver commonly takes so many deliver_sm a second and answers the rest ESME_RTHROTTLED
(or ESME_RMSGQFUL: its queue, or the subscriber's, is full). Taken as a failed attempt, each refused MT waited out its
own growing retry_backoff (2, 10, 30, 120, 600 s) while the bind went on sending the MTs behind it: a carrier taking
100 a second got 400 of 1,000 MTs in 160 s, 3,000 deliver_sm refused.

Such a refusal is no attempt (its count, back-off and stored row untouched: a restart sends it as it was). The MT
waits out of its bind (Delivery.throttled): not in the bind's queue nor its load, which the backlog read's room and a
stalled bind's limit count (held there, a receiver refusing one subscriber for good froze its account's whole
backlog). Its subscriber's other MTs wait with it, taken off the bind's queue and held as they come, so that none
overtakes it (only those already sent beside it may be taken first). After FIRST_PAUSE the oldest of them goes out
alone; refused again, they wait twice as long as the last time, at most LONGEST_PAUSE: a subscriber refused for good
costs one deliver_sm per LONGEST_PAUSE, and its MTs end as their validity does (stat:EXPIRED). Once one to that
subscriber is accepted, all of them go; so they do if the one tried again leaves hand unanswered (its validity ended,
or no bind serves the subscriber now: parked, they are read back in order when one binds). The bind's other
subscribers' MTs go on meanwhile, its window halved at an ESME_RTHROTTLED and one wider at each acceptance, never
below 1 (SmppConnection._narrow_window): a whole window sent at each pause was refused again, and with the bind's queue
longer, the account's other binds (least loaded first) take more of its MTs. It halves once a round trip at most, and
not for ESME_RMSGQFUL (often one subscriber's queue) nor for an MT tried again: a few subscribers refused for good kept
it low, and the others' MTs waited behind them.

A throttle holds few MTs in memory: at most Delivery.HELD_PER_THROTTLE of its subscriber's, the one tried again among
them (`holds`: refused again, it is held with them), none once Delivery.HELD_FOR_THROTTLES are held for all throttles;
beyond that only MTs refused, each held whatever the count (parked, it would go out after newer ones held): those sent
beside the first (at most a window per bind), and a tried one while HELD_FOR_THROTTLES are held. (Not counting the one
tried again, a throttle holding HELD_PER_THROTTLE - 1 took one more in while it was out: HELD_PER_THROTTLE + 1 once it
was refused again.) One offered past that, or once its throttle has parked one, is
parked (Delivery._hold_throttled): left in the store, out of hand, which costs the backlog read no room, so it reads on
for the account's other subscribers. (All held, a receiver refusing everything with 200,000 MTs waiting grew the
gateway from 55 to 284 MB in seconds: the read handed each MT to a throttled subscriber to its throttle.) When the
throttle lifts, its held MTs go, then the parked ones (receipts and SP notices too: `parked` names the parts of the
store) are read back in order (Delivery._read_back), one subscriber's at a time per account, each page when its binds
have room; meanwhile the subscriber's new MTs are parked too, behind them, until a read finds none parked since the one
before. (Read back all at once, each a page before it waited for room: 200 subscribers lifting at once, 200,000 MTs
waiting, peaked the gateway at 351 MB.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .smpp.constants import CommandStatus as S

if TYPE_CHECKING:
    from .router import Receiver

# deliver_sm_resp statuses that are the receiver's flow control, not a failure of the MT.
FLOW_CONTROL = frozenset({S.ESME_RTHROTTLED, S.ESME_RMSGQFUL})

FIRST_PAUSE = 0.1  # seconds
LONGEST_PAUSE = 1.0


class Holding:
    """The handle in RetryTimers of an MT a throttle holds (Delivery._hold): it has no timer of its own, it goes when
    its throttle lets it, so a cancel_sm, a block, its expiry or a stop cancels nothing. (Not a never scheduled
    asyncio.TimerHandle: uvloop, which `gateway serve` runs on, raises NotImplementedError when one is cancelled.)"""

    __slots__ = ()

    def cancel(self) -> None:
        """Nothing is scheduled."""


HOLDING = Holding()


@dataclass(eq=False, slots=True)
class Throttle:
    """One subscriber's MTs held after a refusal: their ids, the pause, the one sent out to try again; whether MTs to
    the subscriber were parked meanwhile, and their read back once it lifted."""

    account: str  # of the bind that refused (whose room its parked MTs are read back into: Delivery._read_back)
    # The bind that refused last: the MTs it lets go avoid it if another bind serves the subscriber (that one took the
    # MT tried again, `Delivery._try_again`; some of them sent back here by load were refused again, overtaken)
    refused_on: Receiver | None = None
    held: set[str] = field(default_factory=set)  # ids, each once (one replaced while held is held again): the oldest goes first
    pause: float = 0.0  # the last pause's length (seconds)
    trying: str | None = None  # the id of the MT let through: sent to try again (until it is answered or ends), or read back
    timer: asyncio.TimerHandle | None = None  # the end of the pause (or, while one is tried, a look whether it ended)
    # The parts of the store where MTs to the subscriber were left since it began (parked): the `to_account` of each
    # (None: addressed to the number), and how many were (a read back reads again if any was parked during it)
    parked: set[str | None] = field(default_factory=set)
    parkings: int = 0
    reading: bool = False  # lifted: its parked MTs are being read back (the subscriber's new ones are parked behind them)
    lifts: int = 0  # how many times it lifted (a read back under way when it was refused and lifted again reads anew)
    read_back: asyncio.Task | None = None  # that read, until it ends (one at a time: refused again, it may lift again)

    @property
    def holds(self) -> int:
        """How many of the subscriber's MTs it holds: `held`, and the one tried again (refused again, held with them)."""
        return len(self.held) + (self.trying is not None)

    def refused(self, message_id: str) -> float | None:
        """A deliver_sm of `message_id` was refused: the pause that begins now, or None if one is already under way
        (another MT of the subscriber sent beside the one that began it)."""
        if self.pause and message_id != self.trying:
            return None
        self.trying = None
        self.reading = False  # (refused while its parked MTs were read back: what is left of them waits for the next lift)
        self.pause = min(self.pause * 2, LONGEST_PAUSE) if self.pause else FIRST_PAUSE
        return self.pause

    def lifted(self) -> None:
        """An MT to the subscriber was accepted (Delivery._throttle_lifted): its held MTs go, and the parked ones are
        read back (`reading`); a refusal meanwhile begins a pause again, from the first."""
        self.cancel()
        self.held = set()
        self.pause = 0.0
        self.trying = None
        self.reading = True
        self.lifts += 1

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
