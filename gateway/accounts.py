"""Who may bind, from which numbers, and how fast."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import AccountConfig
from .smpp.constants import CommandStatus


@dataclass(slots=True)
class TokenBucket:
    """Throughput limit in segments per second, with one second of burst.

    A message costing more segments than one second's allowance passes when
    the bucket is full and leaves it in debt, so the average rate holds and a
    long message is never refused forever.
    """

    rate: float
    tokens: float = 0.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.rate
        self.stamp = time.monotonic()

    def take(self, count: int) -> bool:
        rate = self.rate
        if rate <= 0:
            return True
        now = time.monotonic()
        tokens = self.tokens + (now - self.stamp) * rate
        if tokens > rate:
            tokens = rate  # at most one second's allowance
        self.stamp = now
        # A full bucket lets any message through (see the class docstring).
        if tokens >= count or tokens >= rate:
            tokens -= count
            self.tokens = tokens
            return True
        self.tokens = tokens
        return False


class Account:
    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.system_id = config.system_id
        self.role = config.role
        self.is_sp = config.role == "sp"  # a service provider's: sends from its service codes, not numbers
        self.numbers = config.numbers
        self.service_codes = config.service_codes
        self.bucket = TokenBucket(config.throughput)
        self.binds = 0

    @property
    def throughput_exceeded(self) -> str:
        """Why a submission (or a replace_sm) over the account's throughput is refused ESME_RTHROTTLED, for its line."""
        return f"account throughput {self.config.throughput:g} segments/s exceeded"

    def may_send_from(self, address: str) -> bool:
        if self.is_sp:
            return address in self.service_codes
        return address.startswith(self.numbers)


class Accounts:
    def __init__(self, configs: tuple[AccountConfig, ...]) -> None:
        self._by_id = {c.system_id: Account(c) for c in configs}

    def __iter__(self):
        return iter(self._by_id.values())

    def get(self, system_id: str) -> Account | None:
        return self._by_id.get(system_id)

    def overlapping_numbers(self) -> list[tuple[str, str, str, str]]:
        """(account, prefix, other account, its prefix) for each two accounts whose `numbers` take in some of the same
        subscribers: each may then send from, and be sent the MTs of, the other's."""
        found = []
        accounts = [a for a in self._by_id.values() if a.numbers]
        for i, one in enumerate(accounts):
            for other in accounts[i + 1 :]:
                found += [(one.config.system_id, p, other.config.system_id, q) for p in one.numbers for q in other.numbers
                          if p.startswith(q) or q.startswith(p)]  # fmt: skip
        return found

    def authenticate(self, system_id: str, password: str) -> tuple[Account | None, int, str]:
        """The account, ESME_ROK and ""; or None, the bind_resp status that says why not and the reason its log line
        gives (never the password sent)."""
        account = self._by_id.get(system_id)
        if account is None:
            return None, CommandStatus.ESME_RINVSYSID, "no such system_id"
        if password != account.config.password:
            return None, CommandStatus.ESME_RINVPASWD, "wrong password"
        if account.binds >= account.config.max_binds:
            return None, CommandStatus.ESME_RBINDFAIL, f"max_binds {account.config.max_binds} reached"
        return account, CommandStatus.ESME_ROK, ""
