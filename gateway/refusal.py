"""Why the gateway refuses a request: the SMPP command_status it answers with, and the reason it logs."""

from __future__ import annotations

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
