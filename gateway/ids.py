"""Message ids: unique across restarts of one node, short enough for any SMPP peer."""

from __future__ import annotations

import itertools
import time


class MessageIds:
    """`<start time in ms, hex><counter, 8 hex digits>`: 19 characters, sortable within a node.

    A restart takes a new start time, so ids never repeat even though the
    counter starts again.
    """

    def __init__(self, node_prefix: str = "") -> None:
        self._prefix = f"{node_prefix}{int(time.time() * 1000):011x}"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"
