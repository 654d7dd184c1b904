"""Free trial months, reminders, monthly billing and disputes (SPEC 3.2)."""

from __future__ import annotations

from .base import Outcome, ServiceContext


async def run_due_jobs(ctx: ServiceContext, now: float) -> Outcome:
    return Outcome()


async def run_billing(ctx: ServiceContext, now: float) -> Outcome:
    raise NotImplementedError("issue 3: billing")


async def send_reminders(ctx: ServiceContext, now: float) -> Outcome:
    raise NotImplementedError("issue 3: reminders")


async def dispute(ctx: ServiceContext, charge_id: str, now: float) -> Outcome:
    raise NotImplementedError("issue 3: disputes")
