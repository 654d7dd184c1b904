"""is_copy, hold and short_id_of answer synchronously."""

from __future__ import annotations

import inspect

from gateway.store.base import Store

from .stores import mo, mt


def answered_now(answer: object) -> object:
    assert not inspect.isawaitable(answer), f"{answer!r}: awaitable"
    return answer


async def test_is_copy_hold_and_short_id_of_answer_synchronously(store: Store) -> None:
    """base.py: "`is_copy`, `hold` and `short_id_of` answer synchronously on the event loop": with what is stored or
    on its way (is_copy, hold), or stored (short_id_of)."""
    assert answered_now(store.is_copy("k1")) is False
    on_its_way = store.accept(mo("a", dedup_key="k1"))
    assert answered_now(store.is_copy("k1")) is True
    assert answered_now(store.hold(mo("b", dedup_key="k1"))) is None  # a copy may be on its way: accept it instead
    held = answered_now(store.hold(mo("c", dedup_key="k2")))
    assert held is not None
    assert answered_now(store.is_copy("k2")) is True  # held: copies wait for its commit
    stored = store.accept_held(held, mo("c", dedup_key="k2"))
    await store.accept(mt("m1", short_id="0000000a"))
    assert (await on_its_way, await stored) == (("a", False), ("c", False))
    assert answered_now(store.is_copy("k1")) is True
    assert answered_now(store.hold(mo("d", dedup_key="k2"))) is None  # a copy of a stored one
    assert answered_now(store.short_id_of("m1")) == "0000000a"
    assert answered_now(store.short_id_of("a")) is None
    assert answered_now(store.short_id_of("unknown")) is None
