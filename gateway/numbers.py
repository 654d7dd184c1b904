"""Subscriber numbers: one canonical form for every way a phone number is written."""

from __future__ import annotations

from dataclasses import dataclass, field

_STRIP = str.maketrans("", "", " -()")

# Where national numbers of a country code are mobile numbers, for the countries the gateway knows without
# [gateway] mobile_prefixes: China's mobile numbers are 13x to 19x (01x landlines, 12x... no number at all).
MOBILE_PREFIXES: dict[str, tuple[str, ...]] = {"86": ("13", "14", "15", "16", "17", "18", "19")}

_EXAMPLE_DIGITS = "9123456789"  # after a mobile prefix, the example number's (NumberPlan.example): 139 1234 5678


def ascii_digits(text: str) -> bool:
    """Only the digits 0-9: str.isdigit alone also takes `፩`, `²` or `①`, which no number plan (or int()) reads."""
    return text.isascii() and text.isdigit()


def without_separators(written: str) -> str:
    """A number as written, trimmed and without the separators people write in one (`+86 (138) 0013-8000` ->
    `+8613800138000`): what `NumberPlan.normalise` reads, and what a spam report's number must be digits after."""
    return written.strip().translate(_STRIP)


@dataclass(frozen=True, slots=True)
class NumberPlan:
    country_code: str = "86"
    national_length: int = 11
    # The operator's short codes and the SPs' service codes (Config.number_plan). A number that starts with one is
    # that code with an extension (1066916 + 1234), the operator's or the SP's whatever its length: no subscriber's.
    codes: tuple[str, ...] = ()
    # How mobile numbers start, after the country code (13..19 in China); none: any national number may be one.
    mobile_prefixes: tuple[str, ...] = ()
    # What a number written nationally may have before its national number (the UK's 0 of 07700 900001); China's
    # mobile numbers have none.
    trunk_prefix: str = ""
    # Derived once (is_msisdn and normalise run for every submission): a subscriber number's length, the length of a
    # national number written with the trunk prefix (-1: none) and the longer of the two national forms, each code
    # after the country code, and how a mobile number starts in international form.
    msisdn_length: int = field(init=False, repr=False, compare=False)
    _trunk_length: int = field(init=False, repr=False, compare=False)
    _longest_national: int = field(init=False, repr=False, compare=False)
    code_starts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    mobile_starts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # How a national mobile number starts (the plan's prefixes, else those known for its country code; "": any): a
    # national number that also reads as a code with an extension written with the country code is the mobile's.
    _national_mobile: tuple[str, ...] = field(init=False, repr=False, compare=False)
    mobile_intl: tuple[str, ...] = field(init=False, repr=False, compare=False)  # the same after the country code

    def __post_init__(self) -> None:
        object.__setattr__(self, "msisdn_length", len(self.country_code) + self.national_length)
        trunk = self.trunk_prefix
        object.__setattr__(self, "_trunk_length", len(trunk) + self.national_length if trunk else -1)
        object.__setattr__(self, "_longest_national", max(self.national_length, self._trunk_length))
        # A code written with the trunk prefix (0800 in the UK) is 44800... with an extension in international form.
        written_so = [code for code in self.codes if trunk and code.startswith(trunk) and len(code) > len(trunk)]
        codes = self.codes + tuple(code[len(trunk):] for code in written_so)
        object.__setattr__(self, "code_starts", tuple(self.country_code + code for code in codes))
        starts = tuple(self.country_code + prefix for prefix in self.mobile_prefixes) or (self.country_code,)
        object.__setattr__(self, "mobile_starts", starts)
        object.__setattr__(self, "_national_mobile", self.mobile_prefixes or MOBILE_PREFIXES.get(self.country_code, ("",)))
        object.__setattr__(self, "mobile_intl", tuple(self.country_code + prefix for prefix in self._national_mobile))

    def normalise(self, address: str) -> str:
        """`+8613800138000`, `008613800138000`, `8613800138000` and `13800138000` are one subscriber.

        Anything that is not a full national or international number (short
        codes such as 10086 or 1066916, and a code of the config as long as a
        national number, 10657120000) is returned as written, digits only.
        A number of the national length is national, also where it starts with
        the country code's digits (9123456789 under 91 is 919123456789): an
        international one has the country code's more; but one that is a code
        of the config with an extension, written with the country code
        (86100861234: 10086 and 1234), and cannot be a mobile number (no mobile
        prefix starts it), stays as written: that code's, no subscriber's
        (under 91 with prefixes 6-9 and a code 150, 9115012345 is a mobile's).
        So is one of the trunk prefix's more that starts with it (07700900001
        under 44 with trunk prefix 0 is 447700900001).
        """
        if address.isdigit():  # how nearly every address arrives: strip/translate would change nothing, and no "+"
            digits = address
            if len(digits) > self._longest_national and digits[0] != "0":
                return digits  # international: the common case, without the two startswith calls below
        else:
            digits = without_separators(address)
            if digits.startswith("+"):
                return digits[1:]
        if digits.startswith("00"):
            return digits[2:]
        length = len(digits)
        if length > self._longest_national:  # international (written with separators or a 0 first, as above)
            return digits
        if digits in self.codes:  # a code as long as a national number (SP code 10657120000) is that code
            return digits
        if length == self.national_length:
            if digits.startswith(self.code_starts) and not digits.startswith(self._national_mobile):
                return digits  # a code with an extension written with the country code (86 10086 1234): that code's
            return self.country_code + digits
        if length == self._trunk_length and digits.startswith(self.trunk_prefix):
            return self.country_code + digits[len(self.trunk_prefix):]
        return digits

    def example(self) -> str:
        """A mobile number as people write it at home, for reply texts to show ({example_number}): the first mobile
        prefix (the plan's, else the one known for its country code), then 9123456789... to the national length:
        13912345678 in China, 7912345678 under country code 44 with prefix 7, 9123456789 where any number may be one."""
        return (self._national_mobile[0] + _EXAMPLE_DIGITS * self.national_length)[: self.national_length]

    def is_msisdn(self, number: str) -> bool:
        """A canonical subscriber number (as opposed to a short code, with or without an extension: 10669161234 has a
        national number's length, and normalise makes it 8610669161234)."""
        return (
            len(number) == self.msisdn_length and number.startswith(self.country_code) and number.isascii()
            and number.isdigit() and not (number.startswith(self.code_starts) and self.extends_code(number))
        )  # fmt: skip

    def is_mobile(self, number: str) -> bool:
        """A canonical subscriber number in the plan's mobile range: what a spam report may name. A landline with its
        trunk 0 (010-12345678), a foreign mobile without its + (85291234567) or an international number a digit short
        (86138001380) has a national number's 11 digits, so is_msisdn takes it (routing asks no more), but no phone
        has that number here."""
        return self.is_msisdn(number) and number.startswith(self.mobile_starts)

    def extends_code(self, number: str) -> bool:
        """A number in international form that is a code of the config with an extension (8610669161234): what
        is_msisdn refuses as no subscriber's. Not where a mobile prefix starts it, as normalise reads a national
        one: under country code 1 with a short code 21212, 12121234567 is a New York mobile's (with no mobile prefix
        known, as for 1, every number of a subscriber's length may be a mobile's)."""
        return number.startswith(self.code_starts) and not number.startswith(self.mobile_intl)

    def is_code_number(self, digits: str) -> bool:
        """A short code or service code, perhaps with an extension, written with the country code or without; not a
        subscriber's number that starts with a code's digits (under country code 1, a code 1234 and 12345678901)."""
        return self.extends_code(digits) or (digits.startswith(self.codes) and not self.is_msisdn(digits))

