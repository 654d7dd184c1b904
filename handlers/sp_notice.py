"""Order-relation sync: the SP hears of every order and unsubscription (SPEC 3.1, 3.2).

Delivered as a deliver_sm to the SP account's binds, from the subscriber's
number to the service code, stored until the SP binds: for up to
`services.sp_notice_validity` (30 days), not the 48 h of ordinary MT. An SP
that misses an ORDER or a CANCEL bills a subscriber wrongly, and one down
over a weekend must still hear of them; the bound keeps an SP account that
never binds again from piling notices up for ever. A subscriber's notices
on one service code go out one at a time, in order (gateway/notice_order.py).
The text is one line
of key=value pairs, in this order:

    event=ORDER service=sina-news keyword=TT msisdn=8613800000001 channel=sms time=20261123154000 notice=<id>

event is ORDER, CANCEL or REFUND; time is the operator's local time,
YYYYMMDDhhmmss. A REFUND (a disputed charge refunded, SPEC 3.2) adds
`charge=<id> period=YYYY-MM refund=<yuan>` before the notice id. The notice id,
made with the notice and stored in its text, names it: a retry (an SP that
acknowledged late) or a copy after a restart carries the same, so an SP dedupes
by it, while two notices of the same second with the same fields differ in it.
"""

from __future__ import annotations

import datetime as dt

from gateway.config import CatalogueEntry

from .base import Reply, ServiceContext, operator_zone


def sp_notice(
    ctx: ServiceContext, entry: CatalogueEntry, msisdn: str, event: str, channel: str, now: float, **details: str
) -> Reply:
    when = dt.datetime.fromtimestamp(now, operator_zone(ctx.settings.utc_offset_hours)).strftime("%Y%m%d%H%M%S")
    text = f"event={event} service={entry.id} keyword={entry.keyword} msisdn={msisdn} channel={channel} time={when}"
    text += "".join(f" {key}={value}" for key, value in details.items())
    text += f" notice={ctx.new_id()}"
    return Reply(to=entry.service_code, text=text, source=msisdn, to_account=entry.sp,
                 validity=ctx.settings.sp_notice_validity)


def parse_sp_notice(text: str) -> dict[str, str]:
    """The fields of a notice (for SPs' own code and our tests)."""
    return dict(part.split("=", 1) for part in text.split() if "=" in part)
