"""What a message leaves behind is freed by reference counting, not by the cyclic garbage collector.

Each delivered MT's final-status callback once named itself (to write the status again if the commit failed),
so the callback, the Message, its row and its receipt formed a reference cycle. Nothing leaked for good, but
every one of them waited for the collector: under load a young collection of ~35,000 such objects every
second, 10-20 ms with the event loop stopped (every MO and deliver_sm waiting), and a generation-1 collection
of ~300,000 of 140 ms now and then (bench/perf-log.md, session 18). The test runs each kind of traffic with the
collector off, then asks it what it would have had to free.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.smpp_handset import ESME_ROK, is_receipt, text, texts_from

A = "8613800000001"  # handset
B = "8613700000001"  # handset2
OPERATOR, SINA = "10086", "1066916"


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()  # what start-up and earlier tests left
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cyclic_garbage_of_ours() -> list[str]:
    """The objects of the gateway's own code (gateway/, handlers/) that only the cyclic collector would free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [_describe(o) for o in gc.garbage]
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    return sorted(d for d in found if d.startswith(("gateway.", "handlers.")))


def _describe(o: object) -> str:
    module = getattr(o, "__module__", None) if callable(o) and hasattr(o, "__qualname__") else type(o).__module__
    name = getattr(o, "__qualname__", None) if callable(o) and hasattr(o, "__qualname__") else type(o).__qualname__
    return f"{module}.{name}"


def test_delivered_messages_and_their_receipts_leave_no_cycles(gateway, handset, collector_off):
    a, b = handset(A), handset(B)
    for n in range(20):
        assert a.submit(B, f"message {n}", registered_delivery=1).status == ESME_ROK
        assert text(b.expect()) == f"message {n}"
        a.expect(predicate=is_receipt)
    assert cyclic_garbage_of_ours() == []


def test_short_code_dialogues_leave_no_cycles(gateway, handset, collector_off):
    """An order confirmed (its SP told), the 10086 listing, an unsubscription, help: each a round of the services."""
    a = handset(A)
    sina = handset(SINA, system_id="sina", bind="rx")
    for _ in range(3):
        assert "回复“Y" in ask(a, "TT", to=SINA)
        assert "您已定制" in ask(a, "Y")
        assert "1.新浪提供的头条新闻" in ask(a, "0000")
        assert "您已成功退订" in ask(a, "1")
        assert ask(a, "帮助")
        sina.expect_many(2)  # the order and the unsubscription
    assert cyclic_garbage_of_ours() == []


def ask(phone, message: str, to: str = OPERATOR) -> str:
    assert phone.submit(to, message).status == ESME_ROK
    return texts_from(phone, OPERATOR)[0]
