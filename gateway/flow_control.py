"""A receiver's flow control of the deliver_sm sent to its bind: ESME_RTHROTTLED and ESME_RMSGQFUL.

A carrier's SMSC bound as a receiver commonly takes so many deliver_sm a second and answers the rest
ESME_RTHROTTLED (or ESME_RMSGQFUL: its queue is full). That says nothing of the message, only of the bind: the MT
is no failed attempt (no retry, its attempt count and back-off as they were) and goes back to the head of its bind's
queue (SmppConnection._give_back), and the bind waits before it sends again. Taken as a failure, each refused MT
waited out its own growing back-off while the bind went on receiving new MTs a whole window at a time, the retries
coming back together: 1,000 MTs to a carrier taking 100 a second, 400 delivered after 160 s, 3,000 deliver_sm refused.

After a refusal the bind pauses, FIRST_PAUSE and twice as long at each refusal after a pause, at most LONGEST_PAUSE
(an accepted deliver_sm starts it at FIRST_PAUSE again), then sends one deliver_sm and one more for each accepted:
its window doubles each round of answers until it is whole again (not a whole window refused at each pause). Until
then the subscribers an MT was refused to wait, while another's MT can go: a receiver that refuses one subscriber's
MTs (its queue full) holds up the others for one pause each time, not for good.
"""

from __future__ import annotations

from .smpp.constants import CommandStatus as S

# deliver_sm_resp statuses that are the receiver's flow control, not a failure of the MT.
FLOW_CONTROL = frozenset({S.ESME_RTHROTTLED, S.ESME_RMSGQFUL})


class FlowControl:
    """One bind's state: how many deliver_sm it may have in flight, until when it waits, whose MTs wait."""

    FIRST_PAUSE = 0.1  # seconds
    LONGEST_PAUSE = 2.0

    def __init__(self, window: int) -> None:
        self.window = window
        self.limit = window  # deliver_sm in flight at most now (the session's window while none was refused)
        self.until = 0.0  # loop time (monotonic) at which the current pause ends
        self._pause = 0.0  # the last pause's length; 0: none since a deliver_sm was accepted
        self.refused: set[str] = set()  # subscribers an MT was refused to since the window was last whole
        self.held = False  # a deliver_sm was refused, and the window is not whole again yet

    def refused_to(self, subscriber: str, now: float) -> float | None:
        """A deliver_sm to `subscriber` was refused for flow control at `now`: the pause that begins (seconds), or None
        if one is already under way (the rest of a window sent before it)."""
        self.limit = 1
        self.held = True
        self.refused.add(subscriber)
        if now < self.until:
            return None
        self._pause = min(self._pause * 2, self.LONGEST_PAUSE) if self._pause else self.FIRST_PAUSE
        self.until = now + self._pause
        return self._pause

    def accepted(self) -> None:
        """A deliver_sm was accepted while `held`: the next pause is short again, and the window grows back by one; once
        it is whole, the subscribers refused go again."""
        self._pause = 0.0
        if self.limit < self.window:
            self.limit += 1
        if self.limit >= self.window:
            self.refused.clear()
            self.held = False

    def paused(self, now: float) -> bool:
        return now < self.until

    def room(self, in_flight: int) -> bool:
        return in_flight < self.limit
