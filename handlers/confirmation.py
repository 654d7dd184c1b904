"""Two-step confirmation of monthly subscriptions ("二次确认", SPEC 3.2)."""

from __future__ import annotations

from .base import Inbound, Outcome, ServiceContext


async def order_by_keyword(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome:
    raise NotImplementedError("issue 3: order keyword")


async def request_order(ctx: ServiceContext, msisdn: str, service_id: str, channel: str, now: float) -> Outcome:
    raise NotImplementedError("issue 3: order request")


async def latest_prompt(inbound: Inbound, ctx: ServiceContext) -> float | None:
    return None


async def answer(inbound: Inbound, ctx: ServiceContext, language: str) -> Outcome | None:
    return None
