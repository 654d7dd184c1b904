"""Times are float epoch seconds, kept exact."""

from __future__ import annotations

from gateway.store.base import Store
from gateway.store.effects import Put
from gateway.store.records import Survey

from .stores import mt

# 53 bits of mantissa in use: a timestamp type (microseconds) or a float4 would change them.
AT = 1_764_000_000.123_456_7
LATER = AT + 0.1 + 0.2  # (not AT + 0.3)


async def test_times_are_kept_exact(store: Store) -> None:
    """base.py: "Times are float epoch seconds from the gateway's clock [...]: kept exact (float8, not a timestamp
    type), as cursors compare (expires_at, seq) for equality"."""
    survey = Survey("v1", "8613800000001", "hotline", "", AT, LATER, "sent", rated_at=AT / 3)
    await store.apply([Put(survey)])
    assert await store.find(Survey, created_at=AT) == [survey]
    assert await store.find(Survey, expires_at__lte=LATER, rated_at=AT / 3) == [survey]
    message = mt("m1", submitted_at=AT, expires_at=LATER, next_attempt_at=AT / 7, done_at=None)
    await store.accept(message)
    assert await store.get("m1") == message
    await store.accept(mt("m2", expires_at=LATER))
    await store.accept(mt("m3", expires_at=LATER))
    first = await store.expired_mts(LATER, (0.0, 0), 1)  # (expired by LATER itself: <= now)
    assert [(cursor[0], m.id) for cursor, m in first] == [(LATER, "m1")]
    rest = await store.expired_mts(LATER, first[-1][0], 10)  # a cursor ends at its own row, exactly
    assert [(cursor[0], m.id) for cursor, m in rest] == [(LATER, "m2"), (LATER, "m3")]
