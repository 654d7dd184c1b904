"""10086999 spam reporting ("垃圾信息举报", SPEC 3.3)."""

from __future__ import annotations

from .base import Inbound, Outcome, ServiceContext


class SpamReportHandler:
    serial_scope = "global"  # thresholds count distinct reporters across subscribers

    async def handle(self, inbound: Inbound, ctx: ServiceContext) -> Outcome:
        raise NotImplementedError("issue 3: spam reports")


async def lift_block(ctx: ServiceContext, reported: str, now: float) -> Outcome:
    raise NotImplementedError("issue 3: lift a block")
