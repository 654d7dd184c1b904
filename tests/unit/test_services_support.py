from pathlib import Path

from gateway.store.records import Subscriber
from handlers.customer_service import CustomerService
from tests.services_support import service_bench


async def test_language_switch_is_committed_and_help_follows_it(tmp_path: Path) -> None:
    bench = await service_bench(tmp_path)
    try:
        outcome = await bench.send(CustomerService(), "8613800000001", "ＥＮ", "10086")
        assert outcome.replies[0].text == "Your messages will now be in English."
        assert await bench.store.find(Subscriber) == [Subscriber("8613800000001", "en")]
        help_reply = await bench.send(CustomerService(), "8613800000001", "帮助", "10086")
        assert help_reply.replies[0].text.startswith("China Mobile 10086")
        assert help_reply.completed
    finally:
        await bench.close()
