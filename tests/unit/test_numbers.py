"""NumberPlan: every way a subscriber number is written comes to one canonical form, and what is no subscriber's
is told apart (gateway/numbers.py)."""

from __future__ import annotations

import pytest

from gateway.numbers import MOBILE_PREFIXES, NumberPlan, without_separators

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


def test_the_separators_a_written_number_may_hold() -> None:
    """Spaces, hyphens and brackets anywhere, whitespace at the ends; nothing else (a dot, a slash, letters stay, and
    the spam report refuses the number: handlers/spam_report.py)."""
    assert without_separators(" +86 (138) 0013-8000\t") == "+8613800138000"
    assert without_separators("138.0013/8000") == "138.0013/8000"
    assert without_separators("1380013800O") == "1380013800O"


@pytest.mark.parametrize(("plan", "national"), [(INDIA, "9123456789"), (RUSSIA, "7012345678"), (CHINA, "13800138000")])
def test_a_national_number_is_a_subscribers_mobile_however_it_begins(plan, national) -> None:
    number = plan.normalise(national)
    assert plan.is_msisdn(number) and plan.is_mobile(number)


def test_a_code_with_its_extension_written_with_the_country_code_stays_that_codes() -> None:
    """86 10086 1234 has a national number's 11 digits: made 8686100861234 it passed as a subscriber (is_msisdn), an MT
    to it accepted and kept to its validity, not refused ESME_RINVDSTADR. Any other 11 digits are a national number,
    whatever they begin with (no mobile's if no mobile prefix fits: is_mobile; routing asks only the length)."""
    for written in ("86100861234", "86106691612"):
        assert CHINA.normalise(written) == written and not CHINA.is_msisdn(written) and CHINA.is_code_number(written)
    for written in ("86138001380", "01012345678"):
        number = CHINA.normalise(written)
        assert number == "86" + written and CHINA.is_msisdn(number) and not CHINA.is_mobile(number)
    assert not CHINA.is_msisdn(CHINA.normalise("10669161234"))  # a code with an extension: no subscriber's
    assert INDIA.normalise("9150123456") == "919150123456"  # (150 is a code there, but 9150... is no 91 150...)
    # 91 150 12345 or a national mobile number 9115012345? A mobile prefix (9) starts it: a subscriber's.
    assert INDIA.normalise("9115012345") == "919115012345" and INDIA.is_mobile("919115012345")
    assert NumberPlan("91", 10, ("150",)).normalise("9115012345") == "919115012345"  # (no prefixes: any may be)


@pytest.mark.parametrize(
    ("plan", "number", "codes"),
    [(INDIA, "911501234567", True),  # 91 150 1234567: 150 with an extension, though 91 begins with 9, a mobile prefix
     (INDIA, "919150123456", False),  # 91 9150123456: a mobile's
     (NumberPlan("7", 10, ("900",), ("9",)), "79001234567", False)],  # 7 9001234567: a mobile's, not 900's
)  # fmt: skip
def test_a_number_in_international_form_is_a_codes_only_where_no_mobile_prefix_follows_the_country_code(
    plan, number, codes
) -> None:
    """The mobile prefix is looked for after the country code: before it, 91 (India, prefixes 6-9) read as starting
    with 9, so every 91 150... passed for a mobile's (an MT to the code 150 with an extension taken for a subscriber,
    not refused), and under 7 with a code 900 and prefix 9 the mobile 79001234567 was 900's, no subscriber's."""
    assert (plan.extends_code(number), plan.is_msisdn(number), plan.is_mobile(number)) == (codes, not codes, not codes)


@pytest.mark.parametrize(
    ("plan", "example"),
    [(CHINA, "13912345678"), (NumberPlan(), "13912345678"), (NumberPlan("44", 10, mobile_prefixes=("7",)), "7912345678"),
     (INDIA, "6912345678"), (RUSSIA, "9123456789"), (NumberPlan("33", 9), "912345678"),
     (NumberPlan("49", 12), "912345678991"), (NumberPlan("1", 13, (), ("15",)), "1591234567899")],
)  # fmt: skip
def test_the_example_number_the_texts_show_is_a_mobile_number_of_the_plan(plan, example) -> None:
    """{example_number}: the first mobile prefix (China's where the plan names none under 86), then 9123456789...,
    again as far as the national length goes (12 digits under 49: 9123456789 and 91)."""
    assert plan.example() == example and len(example) == plan.national_length
    assert plan.is_mobile(plan.normalise(example))


UK = NumberPlan("44", 10, ("150", "0800"), ("7",), trunk_prefix="0")


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("07700900001", "447700900001"), ("07700 900001", "447700900001"), ("7700900001", "447700900001"),
     ("+447700900001", "447700900001"), ("00447700900001", "447700900001"), ("447700900001", "447700900001"),
     ("077009000012", "077009000012"), ("150", "150"),
     ("44770090000", "44770090000")],  # the trunk form's 11 digits, no trunk 0: an international number a digit short
)  # fmt: skip
def test_a_national_number_written_with_the_trunk_prefix_is_that_national_number(written, canonical) -> None:
    assert UK.normalise(written) == canonical
    assert CHINA.normalise("0" + "13800138000") == "013800138000"  # no trunk prefix in China: as written


def test_a_code_written_with_the_trunk_prefix_is_a_code_in_any_form() -> None:
    """0800 and 1234 after it has a national number's 11 digits with the trunk 0: 448001234 is no subscriber's."""
    assert UK.is_code_number(UK.normalise("08001234567")) and not UK.is_msisdn(UK.normalise("08001234567"))
    assert UK.is_mobile(UK.normalise("07912345678"))
    # 150 is not written with the trunk 0: 0 50 12345678 is a subscriber's number (44 50...), nobody's code
    assert UK.normalise("05012345678") == "445012345678" and UK.is_msisdn("445012345678")


def test_a_trunk_prefix_of_two_digits_is_taken_off_whole() -> None:
    """Hungary writes its national numbers after 06: 06 30 123 4567 is 36 30 123 4567, not 36 6301234567."""
    hungary = NumberPlan("36", 9, (), ("20", "30", "70"), trunk_prefix="06")
    assert hungary.normalise("06 30 123 4567") == "36301234567" and hungary.is_mobile("36301234567")


def test_a_subscriber_whose_number_starts_with_a_codes_digits_is_no_code() -> None:
    """Under country code 1 with a code 1234, 12345678901 (area code 234) sends and receives, but a spam report of
    it was refused as "a service provider number", and the operators' lookups refused it as no subscriber's."""
    plan = NumberPlan("1", 10, ("21212", "1234"))
    assert plan.is_msisdn("12345678901") and not plan.is_code_number("12345678901")
    assert plan.is_msisdn("12121234567") and not plan.is_code_number("12121234567")
    assert plan.is_code_number("1234") and plan.is_code_number("123456") and plan.is_code_number("21212")
    china = NumberPlan("86", 11, ("10086", "1066916"), ("13", "15"))
    assert china.is_code_number("8610086123456") and china.is_code_number("10086") and china.is_code_number("8610669161234")
    assert not china.is_code_number("8613800138000")


def test_a_code_as_long_as_a_national_number_is_that_code_however_written() -> None:
    """SP code 10657120000 (11 digits, as China's 106 codes may be) was read as the national number 8610657120000:
    MO to it refused ESME_RINVDSTADR, and the SP sending from it ESME_RINVSRCADR ("'10657120000' is not one of
    ['10657120000']")."""
    plan = NumberPlan("86", 11, ("10086", "10657120000"))
    assert plan.normalise("10657120000") == "10657120000" and plan.is_code_number("10657120000")
    assert not plan.is_msisdn(plan.normalise("10657120000"))
    assert plan.normalise("13800138000") == "8613800138000"
