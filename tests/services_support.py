"""Running service handlers without a network: a real SQLite store, a frozen simulated clock.

`ServiceBench.send()` does what the gateway does with an MO's outcome: it
commits the effects (and the reply messages) in one transaction, so the next
call sees the new state.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.clock import SimulatedClock
from gateway.config import DEFAULT_CONFIG, Config, load_config, parse_config
from gateway.ids import MessageIds
from gateway.store.sqlite import SqliteStore
from gateway.templates import Templates
from handlers.base import Catalogue, Inbound, Outcome, ServiceContext

CHINA = dt.timezone(dt.timedelta(hours=8))


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a local (UTC+8) time, for setting the simulated clock."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=CHINA).timestamp()


def catalogue_without(*service_ids: str) -> list[dict]:
    """The built-in [[catalogue]] less these services (a config override: services withdrawn since they were ordered)."""
    with open(DEFAULT_CONFIG, "rb") as f:
        return [entry for entry in tomllib.load(f)["catalogue"] if entry["id"] not in service_ids]


def account_changed(system_id: str, renamed: str | None = None) -> Config:
    """The built-in config with the account `system_id` renamed `renamed` (an SP's services naming the new name), or
    without it and its services (None): an account changed since the MTs to or from it were made."""
    with open(DEFAULT_CONFIG, "rb") as f:
        raw = tomllib.load(f)
    raw["accounts"] = [a for a in raw["accounts"] if a["system_id"] != system_id or renamed is not None]
    raw["catalogue"] = [e for e in raw["catalogue"] if e["sp"] != system_id or renamed is not None]
    for entry in (*raw["accounts"], *raw["catalogue"]):
        for key in ("system_id", "sp"):
            if entry.get(key) == system_id:
                entry[key] = renamed
    return parse_config(raw, DEFAULT_CONFIG)


@dataclass
class ServiceBench:
    store: SqliteStore
    clock: SimulatedClock
    ctx: ServiceContext
    sent: list[Outcome] = field(default_factory=list)

    async def send(self, handler, msisdn: str, text: str, short_code: str, options: dict | None = None) -> Outcome:
        """Text `text` from `msisdn` to `short_code`, as the gateway would hand it to `handler`."""
        ctx = replace(self.ctx, options=options or {})
        inbound = Inbound(msisdn, short_code, text, self.clock.now(), message_ids=(self.ctx.new_id(),))
        outcome = await handler.handle(inbound, ctx)
        await self.commit(outcome)
        return outcome

    async def commit(self, outcome: Outcome) -> Outcome:
        await self.store.apply(outcome.effects)
        self.sent.append(outcome)
        return outcome

    async def close(self) -> None:
        await self.store.close()


async def service_bench(tmp_path: Path, config: Config | None = None, start: float | None = None) -> ServiceBench:
    config = config or load_config()
    clock = SimulatedClock(start if start is not None else at(2026, 11, 10), freeze=True)
    store = SqliteStore(str(tmp_path / "services.db"), clock=clock.now)
    await store.open()
    ctx = ServiceContext(
        store=store,
        clock=clock,
        templates=Templates.load(Path(__file__).resolve().parents[1] / "config", config.services.language,
                                 settings=config.services, plan=config.number_plan()),
        settings=config.services,
        catalogue=Catalogue(config.catalogue),
        ids=MessageIds(),
        plan=config.number_plan(),
    )
    return ServiceBench(store, clock, ctx)
