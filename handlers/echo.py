"""A short code that answers with what it received: the MO -> handler -> MT path, end to end."""

from __future__ import annotations

from .base import HandlerContext, Inbound, Reply


class EchoHandler:
    async def handle(self, inbound: Inbound, ctx: HandlerContext) -> list[Reply]:
        prefix = ctx.options.get("prefix", "")
        return [Reply(to=inbound.subscriber, text=f"{prefix}{inbound.text}", source=inbound.short_code)]
