"""10086700 satisfaction ratings ("满意100", SPEC 3.4)."""

from __future__ import annotations

from .base import Inbound, Outcome, ServiceContext


class RatingHandler:
    serial_scope = "subscriber"

    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        raise NotImplementedError("issue 3: ratings")


async def request_survey(ctx: ServiceContext, msisdn: str, channel: str, agent: str | None, now: float) -> Outcome:
    raise NotImplementedError("issue 3: surveys")
