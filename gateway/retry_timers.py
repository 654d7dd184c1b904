"""MTs waiting for their next delivery attempt, each with its timer: by id, and by sender.

A block or an unsubscription ends what its sender has waiting for a retry (Delivery.refuse_waiting). Found by
walking every timer, that cost ~63 ms of the event loop per spam report or unsubscription with 100,000 MTs waiting
for a retry (a carrier's binds failing every deliver_sm); by sender, it costs what that sender has waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import ItemsView, ValuesView

from .store.records import Message


class RetryTimers:
    def __init__(self) -> None:
        self._by_id: dict[str, tuple[asyncio.TimerHandle, Message]] = {}
        self._by_sender: dict[str, set[str]] = {}  # source_addr -> ids (a waiting MT's source does not change)

    def add(self, message: Message, timer: asyncio.TimerHandle) -> None:
        replaced = self.pop(message.id)
        if replaced is not None:  # (one timer per MT)
            replaced[0].cancel()
        self._by_id[message.id] = (timer, message)
        self._by_sender.setdefault(message.source_addr, set()).add(message.id)

    def get(self, message_id: str) -> tuple[asyncio.TimerHandle, Message] | None:
        return self._by_id.get(message_id)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def pop(self, message_id: str) -> tuple[asyncio.TimerHandle, Message] | None:
        """The MT's timer and the MT, no longer waiting here (None if it was not)."""
        waiting = self._by_id.pop(message_id, None)
        if waiting is not None:
            source = waiting[1].source_addr
            ids = self._by_sender[source]
            ids.discard(message_id)
            if not ids:
                del self._by_sender[source]
        return waiting

    def from_sender(self, source: str) -> list[tuple[asyncio.TimerHandle, Message]]:
        return [self._by_id[message_id] for message_id in self._by_sender.get(source, ())]

    def items(self) -> ItemsView[str, tuple[asyncio.TimerHandle, Message]]:
        return self._by_id.items()

    def values(self) -> ValuesView[tuple[asyncio.TimerHandle, Message]]:
        return self._by_id.values()

    def clear(self) -> None:
        self._by_id.clear()
        self._by_sender.clear()
