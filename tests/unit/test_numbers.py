"""NumberPlan: every way a subscriber number is written comes to one canonical form, and what is no subscriber's
is told apart (gateway/numbers.py)."""

from __future__ import annotations

import pytest

from gateway.numbers import MOBILE_PREFIXES, NumberPlan

CHINA = NumberPlan("86", 11, ("10086", "1066916"), MOBILE_PREFIXES["86"])
INDIA = NumberPlan("91", 10, ("150",), ("6", "7", "8", "9"))
RUSSIA = NumberPlan("7", 10)


@pytest.mark.parametrize(
    ("plan", "written", "canonical"),
    [
        (CHINA, "13800138000", "8613800138000"), (CHINA, "+86 138-0013-8000", "8613800138000"),
        (CHINA, "008613800138000", "8613800138000"), (CHINA, "8613800138000", "8613800138000"),
        (CHINA, "10086", "10086"), (CHINA, "10669161234", "8610669161234"),
        # A national number that begins with the country code's digits is still national: its length says so.
        (INDIA, "9123456789", "919123456789"), (INDIA, "9876543210", "919876543210"),
        (INDIA, "919123456789", "919123456789"), (INDIA, "+919123456789", "919123456789"),
        (RUSSIA, "7012345678", "77012345678"), (RUSSIA, "9161234567", "79161234567"),
        (RUSSIA, "77012345678", "77012345678"), (RUSSIA, "+7 701 234-56-78", "77012345678"),
    ],
)  # fmt: skip
def test_every_way_of_writing_a_number_comes_to_its_international_form(plan, written, canonical) -> None:
    assert plan.normalise(written) == canonical
    assert plan.normalise(canonical) == canonical  # once canonical, it stays so


@pytest.mark.parametrize(("plan", "national"), [(INDIA, "9123456789"), (RUSSIA, "7012345678"), (CHINA, "13800138000")])
def test_a_national_number_is_a_subscribers_mobile_however_it_begins(plan, national) -> None:
    number = plan.normalise(national)
    assert plan.is_msisdn(number) and plan.is_mobile(number)


def test_an_eleven_digit_number_beginning_86_stays_as_written_in_china() -> None:
    """86 and 9 digits is no national number: no Chinese mobile number starts with 86. It is an international number
    a digit short, or a code with its extension written with the country code (86 10086 1234): made 8686..., it
    passed as a subscriber (is_msisdn), an MT to it accepted and kept to its validity, not refused ESME_RINVDSTADR.
    A landline with its trunk 0 (010...) has the length and is national, no mobile's."""
    for written in ("86138001380", "86100861234", "86106691612"):
        assert CHINA.normalise(written) == written and not CHINA.is_msisdn(written)
    assert CHINA.is_code_number("86100861234") and CHINA.is_code_number("86106691612")
    landline = CHINA.normalise("01012345678")
    assert landline == "8601012345678" and CHINA.is_msisdn(landline) and not CHINA.is_mobile(landline)
    assert not CHINA.is_msisdn(CHINA.normalise("10669161234"))  # a code with an extension: no subscriber's
    assert NumberPlan().normalise("86138001380") == "86138001380"  # (a plan without prefixes: China's known ones)


@pytest.mark.parametrize(
    ("plan", "example"),
    [(CHINA, "13912345678"), (NumberPlan(), "13912345678"), (NumberPlan("44", 10, mobile_prefixes=("7",)), "7912345678"),
     (INDIA, "6912345678"), (RUSSIA, "9123456789"), (NumberPlan("33", 9), "912345678")],
)  # fmt: skip
def test_the_example_number_the_texts_show_is_a_mobile_number_of_the_plan(plan, example) -> None:
    """{example_number}: the first mobile prefix (China's where the plan names none under 86), then 9123456789..."""
    assert plan.example() == example
    assert plan.is_mobile(plan.normalise(example))


UK = NumberPlan("44", 10, ("150", "0800"), ("7",), trunk_prefix="0")


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("07700900001", "447700900001"), ("07700 900001", "447700900001"), ("7700900001", "447700900001"),
     ("+447700900001", "447700900001"), ("00447700900001", "447700900001"), ("447700900001", "447700900001"),
     ("077009000012", "077009000012"), ("150", "150")],
)  # fmt: skip
def test_a_national_number_written_with_the_trunk_prefix_is_that_national_number(written, canonical) -> None:
    assert UK.normalise(written) == canonical
    assert CHINA.normalise("0" + "13800138000") == "013800138000"  # no trunk prefix in China: as written


def test_a_code_written_with_the_trunk_prefix_is_a_code_in_any_form() -> None:
    """0800 and 1234 after it has a national number's 11 digits with the trunk 0: 448001234 is no subscriber's."""
    assert UK.is_code_number(UK.normalise("08001234567")) and not UK.is_msisdn(UK.normalise("08001234567"))
    assert UK.is_mobile(UK.normalise("07912345678"))
