"""One-at-a-time sections per key (a subscriber, or a whole service), taken in arrival order.

Every MO takes its keys, so this is on the hot path: a free key is taken
without a future, a task switch or a context-manager generator (an
asyncio.Lock per key under AsyncExitStack cost ~40 us per MO). A key is held
while it is in `_waiting`; its deque holds the turns queued behind the
holder. Releasing hands the key straight to the next turn (strict FIFO: a
newcomer never overtakes a waiter), which runs from the event loop. Several
keys are always taken in sorted order, so two holders cannot wait on each
other.

A holder may hand its keys on before its commit is done (`hand_on`, see
gateway/mo.py): until that commit settles, whoever decides anything under
them next names it in its own commit (`in_flight`, the Store's `after`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial


def in_order(keys: Iterable[str]) -> tuple[str, ...]:
    """Keys as `take` wants them: distinct, sorted (the order that rules out two holders waiting on each other)."""
    return tuple(sorted(set(keys)))


class SerialLocks:
    def __init__(self) -> None:
        self._waiting: dict[str, deque[Callable[[], None]] | None] = {}
        self._in_flight: dict[str, Awaitable] = {}  # key -> the commit in flight of the holder that handed it on

    def take(self, keys: tuple[str, ...], then: Callable[[], None]) -> bool:
        """Take `keys` (sorted, distinct). True: all were free and are now held (`then` is not called).
        False: queued; `then()` runs from the event loop once every key is held."""
        waiting = self._waiting
        for i, key in enumerate(keys):
            if key in waiting:
                queue = waiting[key]
                if queue is None:
                    queue = waiting[key] = deque()
                queue.append(partial(self._resume, keys, i + 1, then))
                return False
            waiting[key] = None
        return True

    def take_free(self, keys: tuple[str, ...]) -> bool:
        """Take `keys` (sorted, distinct) only if every one is free now: True, held; False, nothing taken or queued."""
        waiting = self._waiting
        for key in keys:
            if key in waiting:
                return False
        for key in keys:
            waiting[key] = None
        return True

    def waiters(self, keys: Iterable[str]) -> int:
        """How many turns are queued for these keys (behind their holders)."""
        waiting = self._waiting
        return sum(len(queue) for key in keys if (queue := waiting.get(key)))

    def _resume(self, keys: tuple[str, ...], start: int, then: Callable[[], None]) -> None:
        """keys[start - 1] was handed over: take the rest, then go on."""
        if start == len(keys) or self.take(keys[start:], then):
            then()

    def release(self, keys: Iterable[str]) -> None:
        waiting = self._waiting
        for key in keys:
            queue = waiting[key]
            if queue:
                loop = asyncio.get_running_loop()
                loop.call_soon(queue.popleft())  # the key stays held: it is the next turn's now
            else:
                del waiting[key]

    def hand_on(self, keys: tuple[str, ...], commit: Awaitable) -> None:
        """Release keys whose holder's commit is issued but not done: until `settled`, later holders name it."""
        for key in keys:
            self._in_flight[key] = commit
        self.release(keys)

    def settled(self, keys: tuple[str, ...], commit: Awaitable) -> None:
        for key in keys:
            if self._in_flight.get(key) is commit:
                del self._in_flight[key]

    def in_flight(self, keys: Iterable[str]) -> list[Awaitable]:
        """The commits still in flight of holders that handed these keys on: a write decided under the keys
        names them (the Store's `after`)."""
        in_flight = self._in_flight
        return list({in_flight[key] for key in keys if key in in_flight}) if in_flight else []

    async def wait_for_others(self, own: tuple[str, ...]) -> None:
        """Wait until everyone who holds or waits for a key (other than `own`, held by the caller) has had their
        turn, and every commit handed on so far is done: what was decided under those keys before this call is
        committed (or has failed) by its return. Nothing is held meanwhile: each turn is given up at once."""
        others = [key for key in self._waiting if key not in own]
        await asyncio.gather(*(self._pass(key) for key in others))
        handed_on = list(self._in_flight.values())
        if handed_on:
            await asyncio.gather(*handed_on, return_exceptions=True)  # a failed commit decided nothing

    async def _pass(self, key: str) -> None:
        async with self.hold(key):
            pass  # the turn is the point: every holder queued before it is done

    def hold(self, key: str) -> _Held:
        return _Held(self, (key,))

    def hold_all(self, keys: Iterable[str]) -> _Held:
        """Hold several keys (`async with`); always taken in sorted order."""
        return _Held(self, in_order(keys))

    def __len__(self) -> int:
        return len(self._waiting)


class _Held:
    """`async with locks.hold_all(keys)`: no await at all when the keys are free."""

    __slots__ = ("_locks", "_keys", "_granted")

    def __init__(self, locks: SerialLocks, keys: tuple[str, ...]) -> None:
        self._locks = locks
        self._keys = keys
        self._granted: asyncio.Future[None] | None = None

    async def __aenter__(self) -> None:
        if not self._locks.take(self._keys, self._turn):
            self._granted = asyncio.get_running_loop().create_future()
            await self._granted

    def _turn(self) -> None:
        assert self._granted is not None
        if self._granted.cancelled():  # the holder gave up waiting: pass the keys on
            self._locks.release(self._keys)
        else:
            self._granted.set_result(None)

    async def __aexit__(self, *exc_info: object) -> None:
        self._locks.release(self._keys)
