"""Idle members of the fleet (subscribers, spammers), picked at random in O(1)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


class Pool:
    """Idle members, picked at random in O(1)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.where: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Any) -> None:
        if id(item) not in self.where:
            self.where[id(item)] = len(self.items)
            self.items.append(item)

    def remove(self, item: Any) -> bool:
        i = self.where.pop(id(item), None)
        if i is None:
            return False
        last = self.items.pop()
        if last is not item:
            self.items[i] = last
            self.where[id(last)] = i
        return True

    def take(self, rng: random.Random, accept: Callable[[Any], bool] | None = None, tries: int = 16) -> Any:
        items = self.items
        n = len(items)
        if not n:
            return None
        for _ in range(tries if accept is not None else 1):
            item = items[int(rng.random() * n)]
            if accept is None or accept(item):
                self.remove(item)
                return item
        return None
