"""SP notices go out in the order they were made, one at a time per line (order-relation sync, SPEC 3.2).

An SP applies ORDER and CANCEL notices as they come, and their time= (one
second) cannot put two of the same second back in order. Delivery lets a
retry fall behind the MTs after it (README, delivery order); for notices
that cost a subscriber: an ORDER the SP answered ESME_RTHROTTLED, then the
CANCEL sent meanwhile accepted, then the ORDER on its retry, and the SP
believed them subscribed. So a notice in hand (queued on a bind, in flight,
waiting for its retry) holds the later ones of its line - the same SP
account, service code and subscriber - until it ends: acknowledged, or ended
for good (refused permanently, expired). One at a time also keeps a CANCEL
from going out in the window of an ORDER the SP then refuses for now.

Other MTs are not concerned (Delivery asks only about MTs with `extra`,
which a plain MT between handsets has not).
"""

from __future__ import annotations

from collections import deque

from .messages import notice_account
from .store.records import Message

Line = tuple[str, str, str]  # SP account, service code, subscriber


class NoticeOrder:
    def __init__(self) -> None:
        # line -> (id of its notice in hand, its later notices waiting for their turn, oldest first)
        self._lines: dict[Line, tuple[str, deque[Message]]] = {}

    def wait_turn(self, message: Message) -> bool:
        """True: `message` is a notice with an earlier one of its line in hand, and waits here for `ended`.
        False: it goes out now (no notice, or its line's turn: the line is held until it ends)."""
        line = _line_of(message)
        if line is None:
            return False
        held = self._lines.get(line)
        if held is None:
            self._lines[line] = (message.id, deque())
            return False
        in_hand, waiting = held
        if in_hand == message.id:  # its retry, or back from a bind that went away
            return False
        waiting.append(message)
        return True

    def ended(self, message: Message) -> Message | None:
        """`message` was acknowledged or ended for good: the next notice of its line, whose turn it is now."""
        line = _line_of(message)
        if line is None:
            return None
        held = self._lines.get(line)
        if held is None or held[0] != message.id:
            return None
        waiting = held[1]
        if not waiting:
            del self._lines[line]
            return None
        following = waiting.popleft()
        self._lines[line] = (following.id, waiting)
        return following


def _line_of(message: Message) -> Line | None:
    """The line of an SP notice (gateway/messages.notice_account); None for any other MT."""
    to_account = notice_account(message)
    return None if to_account is None else (to_account, message.dest_addr, message.source_addr)
