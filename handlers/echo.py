"""A short code that answers with what it received: the MO -> handler -> MT path, end to end."""

from __future__ import annotations

from typing import ClassVar

from .base import Inbound, Outcome, ServiceContext


class EchoHandler:
    OPTIONS: ClassVar[dict[str, str]] = {"prefix": "str"}  # [[short_codes]] prefix = "...": put before the text it sends back

    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        prefix = ctx.options.get("prefix", "")
        return Outcome().reply(inbound.subscriber, f"{prefix}{inbound.text}", inbound.short_code)
