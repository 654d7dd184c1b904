"""SMPP 3.4 section 7.1.1 times as the README reads them: relative years and months of 365 and 30 days."""

from datetime import UTC, datetime, timedelta

import pytest

from gateway.smpp.times import SmppTimeError, parse_smpp_time

NOW = datetime(2027, 1, 15, 12, tzinfo=UTC).timestamp()  # January: a month of 31 days


@pytest.mark.parametrize(
    "value, ahead",
    [
        ("000001000000000R", timedelta(days=1)),
        ("000100000000000R", timedelta(days=30)),  # not the 31 days to 15 February
        ("010000000000000R", timedelta(days=365)),
        ("010203040506000R", timedelta(days=365 + 60 + 3, hours=4, minutes=5, seconds=6)),
    ],
)
def test_a_relative_time_counts_a_year_as_365_days_and_a_month_as_30(value, ahead) -> None:
    assert parse_smpp_time(value, NOW) == NOW + ahead.total_seconds()


def test_an_absolute_time_is_read_in_its_own_offset_of_quarter_hours() -> None:
    """32+ is UTC+8 (Beijing); 04- is UTC-1."""
    noon = datetime(2027, 1, 15, 12, tzinfo=UTC).timestamp()
    assert parse_smpp_time("270115200000032+", NOW) == noon
    assert parse_smpp_time("270115110000004-", NOW) == noon


@pytest.mark.parametrize("value", ["270115200000049+", "270229000000000+", "2701152000000+", "000100000000000X"])
def test_a_malformed_time_is_refused(value) -> None:
    with pytest.raises(SmppTimeError):
        parse_smpp_time(value, NOW)
