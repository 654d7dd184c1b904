"""Billing months on the operator's calendar: a month's first day, its "YYYY-MM" period, its billing moment.

Shared by billing (which charges a month) and cancelling (which voids a charge for a month the subscription was
no longer active at the start of); kept apart from billing.py so that both can import it.
"""

from __future__ import annotations

import datetime as dt

from .base import ServiceContext


def month_start(day: dt.date, months_ahead: int = 0) -> dt.date:
    """The first day of day's month, or of a month `months_ahead` later."""
    index = day.year * 12 + day.month - 1 + months_ahead
    return dt.date(index // 12, index % 12 + 1, 1)


def period_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_of(period: str) -> dt.date:
    """The first day of a "YYYY-MM" period."""
    year, month = map(int, period.split("-"))
    return dt.date(year, month, 1)


def billing_moment(ctx: ServiceContext, month: dt.date) -> float:
    """When who pays for `month` is decided: midnight starting its billing day ("每月1日0时")."""
    return ctx.local_midnight(month.replace(day=ctx.settings.billing_day))
