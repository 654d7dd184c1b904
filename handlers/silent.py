"""A short code that never answers: for tests and QA configs that need a server dropping replies.

    [[short_codes]]
    code = "10086999"
    handler = "silent"

The MO is accepted and stored like any other; no reply, no effect.
"""

from __future__ import annotations

from .base import Inbound, Outcome, ServiceContext


class SilentHandler:
    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        return Outcome()
