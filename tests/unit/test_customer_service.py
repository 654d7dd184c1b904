"""10086 hosts two dialogues that both accept `1`: a 0000 listing (serial 1) and a two-step
confirmation (1 = yes). The prompt the subscriber got last decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.records import PendingOrder, Subscription
from handlers.customer_service import CustomerService
from handlers.order import OrderHandler
from tests.services_support import ServiceBench, service_bench

A = "8613800000001"
OPERATOR = "10086"
SINA = "1066916"


@pytest.fixture
async def bench(tmp_path: Path):
    bench = await service_bench(tmp_path)
    yield bench
    await bench.close()


async def text(bench: ServiceBench, handler, words: str, code: str) -> list[str]:
    bench.clock.advance(1)  # each step a second later, so "which prompt came last" is well defined
    return [r.text for r in (await bench.send(handler, A, words, code)).replies if not r.to_account]


async def subscribed_to_weather(bench: ServiceBench) -> None:
    await text(bench, OrderHandler(), "TQ", SINA)
    await text(bench, CustomerService(), "Y", OPERATOR)


async def state(bench: ServiceBench) -> tuple[list[str], list[str]]:
    active = sorted(s.service_id for s in await bench.store.find(Subscription, msisdn=A, status="active"))
    pending = sorted(o.service_id for o in await bench.store.find(PendingOrder, msisdn=A, status="pending"))
    return active, pending


async def test_1_after_a_listing_that_came_last_unsubscribes(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, OrderHandler(), "TT", SINA)  # confirmation waiting...
    listing = await text(bench, CustomerService(), "0000", OPERATOR)  # ...then the listing, newer
    assert "天气预报" in listing[0]
    [done] = await text(bench, CustomerService(), "1", OPERATOR)
    assert done.startswith("您已成功退订新浪公司提供的天气预报业务")
    assert await state(bench) == ([], ["sina-news"])


async def test_1_after_a_confirmation_that_came_last_confirms(bench: ServiceBench) -> None:
    await subscribed_to_weather(bench)
    await text(bench, CustomerService(), "0000", OPERATOR)  # listing...
    await text(bench, OrderHandler(), "TT", SINA)  # ...then a confirmation, newer
    [done] = await text(bench, CustomerService(), "1", OPERATOR)
    assert done.startswith("您已定制试用新浪的头条新闻业务")
    assert await state(bench) == (["sina-news", "sina-weather"], [])


async def test_commands_still_work_while_a_confirmation_waits(bench: ServiceBench) -> None:
    await text(bench, OrderHandler(), "TT", SINA)
    [help_text] = await text(bench, CustomerService(), "帮助", OPERATOR)
    assert "0000" in help_text and "10086999" in help_text and "10086700" in help_text
    [none] = await text(bench, CustomerService(), "0000", OPERATOR)
    assert "没有" in none
    assert await state(bench) == ([], ["sina-news"])  # neither command answered the confirmation
