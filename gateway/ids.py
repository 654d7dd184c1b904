"""Message ids: unique across restarts of one node; and the short ones an ESME of SMPP 3.3 is given."""

from __future__ import annotations

import itertools
import re
import time

# SMPP 3.3's message_id is 9 octets with its NUL, and a gateway of SMPP 3.4 or later "must not generate message IDs
# greater than 8 octets when communicating with an ESME that supports SMPP V3.3 or earlier" (SMPP 5.0 2.11.2).
SHORT_ID_LENGTH = 8
_LAST_SHORT_ID = 16**SHORT_ID_LENGTH - 1
START_DIGITS = 11  # a MessageIds id: its run's start time in ms, in hex (until the year 2527) ...
ID_DIGITS = START_DIGITS + 8  # ... then its counter: 19 hex digits (a submit_multi destination's adds "/<n>")
_LAST_START = 16**START_DIGITS - 1


class MessageIds:
    """`<start time in ms, hex><counter, 8 hex digits>`: 19 characters, sortable within a node.

    A restart takes a new start time, so ids never repeat even though the
    counter starts again. Too long for an ESME of SMPP 3.3: it is given a
    `ShortIds` alias of each message instead.
    """

    def __init__(self, node_prefix: str = "") -> None:
        self._node = node_prefix
        self._begin(int(time.time() * 1000))

    def _begin(self, start_ms: int) -> None:
        self._prefix = f"{self._node}{start_ms:0{START_DIGITS}x}"
        self._counter = itertools.count(1)

    def continue_after(self, last: str | None) -> None:
        """At start, with the largest id the store holds (`Store.last_id_made`): after the clock was stepped back
        (NTP, a VM resumed, an admin correcting the date), this start's ids sorted before the last run's, which
        the guards' lifted blocks compare against, and a start in the same millisecond as an earlier one made its
        very ids again (every submission refused, the id taken). The start time is then taken after that run's."""
        digits = last[len(self._node) : len(self._node) + START_DIGITS] if last and last.startswith(self._node) else ""
        try:
            last_start = int(digits, 16)
        except ValueError:  # none, or not one of ours
            return
        if int(self._prefix[len(self._node) :], 16) <= last_start < _LAST_START:
            self._begin(last_start + 1)  # (never past START_DIGITS: a longer id would sort before the last)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class ShortIds:
    """The ids an ESME bound with SMPP 3.3 is given (its submissions' alias, `Message.short_id`): 8 hex digits,
    counting on from the last the store gave (`continue_after`, at start), so a restart gives none out again;
    after ffffffff, 00000001. Never as long as a `MessageIds` id (which a message keeps as its key)."""

    def __init__(self) -> None:
        self._last = 0

    def continue_after(self, last: str | None) -> None:
        self._last = int(last, 16) if last else 0

    def next(self) -> str:
        self._last = self._last % _LAST_SHORT_ID + 1
        return f"{self._last:08x}"

    def last(self) -> str | None:
        """The alias given last (or at start, the store's: `continue_after`); None: none yet."""
        return f"{self._last:08x}" if self._last else None


def short_ids_after(short_id: str) -> list[tuple[str, str]]:
    """The aliases `ShortIds` gives in the half of their round after this one, as ranges (above, up to) of their
    text, the later first: after ffffffff comes 00000001."""
    last = int(short_id, 16)
    end = (last - 1 + 2**31) % _LAST_SHORT_ID + 1
    if end > last:
        return [(short_id, f"{end:08x}")]
    return [("00000000", f"{end:08x}"), (short_id, f"{_LAST_SHORT_ID:08x}")]


def later_short_id(one: str | None, other: str | None) -> str | None:
    """Of two aliases `ShortIds` gave (None: none), the one given later: the other if it is in the half of their
    round after the one (`short_ids_after`), else the one."""
    if one is None or other is None:
        return other if one is None else one
    return other if any(above < other <= up_to for above, up_to in short_ids_after(one)) else one


_MADE_HERE = re.compile(f"[0-9a-f]{{{ID_DIGITS}}}").fullmatch


def made_by_message_ids(record_id: str) -> bool:
    """Is this id one `MessageIds` made (a record's, as handlers make them: `ServiceContext.new_id`), so that it sorts
    among the message ids in the order they were made? Not one written by other means (an import, a test's "sub-1")."""
    return _MADE_HERE(record_id) is not None


def is_short_id(message_id: str) -> bool:
    """Does this message_id name a message by its SMPP 3.3 alias (`ShortIds`), not by its own id?"""
    return len(message_id) <= SHORT_ID_LENGTH
