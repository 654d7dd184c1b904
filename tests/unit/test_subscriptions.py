from pathlib import Path

from gateway.config import CatalogueEntry, ServiceSettings
from gateway.store.records import Subscription
from gateway.templates import Templates
from handlers.base import ServiceContext
from handlers.subscriptions import monthly_fee, service_names

NEWS = CatalogueEntry("sina-news", "sina", "新浪", "新闻早晚报", "1066888801", "XW", 30.0, "4006900000",
                      sp_name_en="Sina", name_en="Headline News", sp_company="新浪公司")  # fmt: skip


# What service_names reads of a context: the reply texts (config/messages.*.toml).
CTX = ServiceContext(store=None, clock=None, templates=Templates.load(Path(__file__).resolve().parents[2] / "config", "zh"),
                     settings=ServiceSettings(), catalogue=None, ids=None)  # type: ignore[arg-type]  # fmt: skip


def subscription(fee: int | None) -> Subscription:
    return Subscription("s1", "8613800000001", NEWS.id, "active", 0.0, "sms", "mo1", 0.0, fee=fee)


def test_service_names_state_the_catalogue_fee_unless_a_record_states_one() -> None:
    """One rule for the fee every text names: the catalogue's, else the one the order's confirmation stated or the
    subscription pays a month (fen), in yuan as shown ("30", "0.5")."""
    assert service_names(CTX, NEWS, "zh") == {
        "sp_name": "新浪", "sp_company": "新浪公司", "service": "新闻早晚报", "fee": "30", "price": "信息费30元/月",
        "phone": "4006900000", "keyword": "XW", "service_code": "1066888801",
    }  # fmt: skip
    assert service_names(CTX, NEWS, "zh", 3500)["fee"] == "35"  # an order confirmed at the fee of before a restart
    assert service_names(CTX, NEWS, "zh", 50)["fee"] == "0.5"
    assert service_names(CTX, NEWS, "zh", monthly_fee(subscription(5000), NEWS))["fee"] == "30"  # never more than the catalogue's
    assert service_names(CTX, NEWS, "zh", monthly_fee(subscription(None), NEWS))["fee"] == "30"
    assert service_names(CTX, NEWS, "zh", 0)["price"] == "免费"  # a free service (a fee of 0)
    assert (service_names(CTX, NEWS, "en", 0)["price"], service_names(CTX, NEWS, "en", 50)["price"]) == ("free", "0.5 yuan/month")
    english = service_names(CTX, NEWS, "en")
    assert (english["sp_name"], english["sp_company"], english["service"]) == ("Sina", "Sina", "Headline News")
