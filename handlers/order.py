"""An SP's service code: an order keyword starts the two-step confirmation (SPEC 3.2)."""

from __future__ import annotations

from . import confirmation
from .base import Inbound, Outcome, ServiceContext


class OrderHandler:
    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        language = await ctx.language_of(inbound.subscriber)
        return await confirmation.order_by_keyword(inbound, ctx, language)
