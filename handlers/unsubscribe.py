"""10086 `0000`: list active subscriptions, unsubscribe by serial number (SPEC 3.1)."""

from __future__ import annotations

from .base import Inbound, Outcome, ServiceContext


async def query(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    raise NotImplementedError("issue 3: 0000 listing")


async def ask_all(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    raise NotImplementedError("issue 3: 00000")


async def unsubscribe_ids(ctx: ServiceContext, msisdn: str, subscription_ids: list[str], channel: str, now: float) -> Outcome:
    raise NotImplementedError("issue 3: unsubscribe over the API")


async def latest_prompt(inbound: Inbound, ctx: ServiceContext) -> float | None:
    return None


async def answer(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome | None:
    return None
