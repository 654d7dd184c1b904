from gateway.config import CatalogueEntry
from gateway.store.records import Subscription
from handlers.subscriptions import monthly_fee, service_names

NEWS = CatalogueEntry("sina-news", "sina", "新浪", "新闻早晚报", "1066888801", "XW", 30.0, "4006900000",
                      sp_name_en="Sina", name_en="Headline News", sp_company="新浪公司")  # fmt: skip


def subscription(fee: int | None) -> Subscription:
    return Subscription("s1", "8613800000001", NEWS.id, "active", 0.0, "sms", "mo1", 0.0, fee=fee)


def test_service_names_state_the_catalogue_fee_unless_a_record_states_one() -> None:
    """One rule for the fee every text names: the catalogue's, else the one the order's confirmation stated or the
    subscription pays a month (fen), in yuan as shown ("30", "0.5")."""
    assert service_names(NEWS, "zh") == {"sp_name": "新浪", "sp_company": "新浪公司", "service": "新闻早晚报", "fee": "30",
                                         "phone": "4006900000", "keyword": "XW", "service_code": "1066888801"}  # fmt: skip
    assert service_names(NEWS, "zh", 3500)["fee"] == "35"  # an order confirmed at the fee of before a restart
    assert service_names(NEWS, "zh", 50)["fee"] == "0.5"
    assert service_names(NEWS, "zh", monthly_fee(subscription(5000), NEWS))["fee"] == "30"  # never more than the catalogue's
    assert service_names(NEWS, "zh", monthly_fee(subscription(None), NEWS))["fee"] == "30"
    english = service_names(NEWS, "en")
    assert (english["sp_name"], english["sp_company"], english["service"]) == ("Sina", "Sina", "Headline News")
