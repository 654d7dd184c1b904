"""Why the gateway refuses a request: the SMPP command_status it answers with, and the reason it logs."""

from __future__ import annotations

from .smpp.constants import CommandStatus
from .smpp.times import SmppTimeError, parse_smpp_time


class Rejection(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def time_field(value: str, now: float, status: int) -> float | None:
    """An SMPP time field (validity_period, schedule_delivery_time) as epoch seconds; None if empty.
    A malformed one is refused with `status`."""
    try:
        return parse_smpp_time(value, now) if value else None
    except SmppTimeError as exc:
        raise Rejection(status, str(exc)) from None


def validity_end(validity_period: str, now: float) -> float | None:
    """When a message with this validity_period expires; None if not given (the default applies). An absolute
    time already past is refused (ESME_RINVEXPIRY: the sender meant it to expire before it was accepted); a
    relative period of zero counts as not given."""
    end = time_field(validity_period, now, CommandStatus.ESME_RINVEXPIRY)
    if end is None or end > now:
        return end
    if validity_period.endswith("R"):
        return None
    raise Rejection(CommandStatus.ESME_RINVEXPIRY, f"validity_period {validity_period!r} has already passed")
