"""SMPP 3.4 time formats (section 7.1.1) and the receipt date format (appendix B)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_TIME = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d)(\d{2})([+\-R])$")


class SmppTimeError(ValueError):
    pass


def parse_smpp_time(value: str, now: float) -> float | None:
    """Epoch seconds for an absolute (`YYMMDDhhmmsstnn+`) or relative (`YYMMDDhhmmss000R`) time.

    Empty means "not given" (None). Anything else malformed raises SmppTimeError.
    """
    if not value:
        return None
    match = _TIME.match(value)
    if match is None:
        raise SmppTimeError(f"{value!r} is not an SMPP time (YYMMDDhhmmsstnnp)")
    yy, mo, dd, hh, mi, ss, tenths, nn, p = match.groups()
    if p == "R":
        # Relative: years and months counted as 365 and 30 days, as SMSCs commonly do.
        days = int(yy) * 365 + int(mo) * 30 + int(dd)
        return now + timedelta(days=days, hours=int(hh), minutes=int(mi), seconds=int(ss)).total_seconds()
    if int(nn) > 48:  # section 7.1.1.1: quarter hours from UTC, 00-48
        raise SmppTimeError(f"{value!r}: offset {nn} quarter hours is beyond 48 (12 hours)")
    offset = timedelta(minutes=15 * int(nn)) * (1 if p == "+" else -1)
    try:
        local = datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), int(tenths) * 100_000)
    except ValueError as exc:
        raise SmppTimeError(f"{value!r}: {exc}") from None
    return local.replace(tzinfo=timezone(offset)).timestamp()


def format_smpp_time(epoch: float) -> str:
    """Absolute SMPP time in UTC, e.g. for query_sm_resp final_date."""
    t = datetime.fromtimestamp(epoch, timezone.utc)
    return t.strftime("%y%m%d%H%M%S") + f"{t.microsecond // 100_000}00+"


def format_receipt_date(epoch: float) -> str:
    """`YYMMDDhhmm` (UTC) as in a delivery receipt's submit date / done date."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%y%m%d%H%M")
