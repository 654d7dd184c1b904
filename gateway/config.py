"""Configuration: TOML files read into typed records, checked at start.

A missing or wrong key fails with the file, the key and what was expected,
so an operator can fix it without reading code.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from handlers.keywords import fold

from .numbers import MOBILE_PREFIXES, NumberPlan, ascii_digits


def _built_in_directory() -> Path:
    """The shipped config/: beside the source tree, or the copy an installed package carries (gateway/defaults)."""
    here = Path(__file__).resolve().parent
    beside_source = here.parent / "config"
    return beside_source if (beside_source / "default.toml").exists() else here / "defaults"


BUILT_IN = _built_in_directory()


def _default_config() -> Path:
    """The built-in config.toml; for an installed package, ./config/default.toml first if there is one (the
    Docker image's /app/config, which operators have been replacing)."""
    if BUILT_IN.name == "defaults" and (Path("config") / "default.toml").exists():
        return Path("config") / "default.toml"
    return BUILT_IN / "default.toml"


DEFAULT_CONFIG = _default_config()
ROLES = ("handset", "smsc", "sp")
# SMPP 3.4 5.2: source_addr and destination_addr are C-Octet Strings of 21 octets with their NUL.
ADDRESS_DIGITS = 20


class ConfigError(ValueError):
    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path, self.key, self.problem = str(path), key, problem


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    system_id: str = "smsgw"
    smpp_host: str = "0.0.0.0"
    smpp_port: int = 2775
    http_host: str = "0.0.0.0"
    http_port: int = 8775
    # An HTTP connection without a whole request's line and headers this long after it opened, or after its last
    # answer, is closed: one sending its headers slowly, or nothing, held them and a file descriptor for ever.
    http_idle_timeout: float = 15.0
    database: str = "var/smsgw.db"
    country_code: str = "86"
    national_number_length: int = 11
    # National prefixes of mobile numbers (the numbers a spam report may name); None: numbers.MOBILE_PREFIXES's for the
    # country code (China's 13-19), or any national number for a country code it does not know.
    mobile_prefixes: tuple[str, ...] | None = None
    # What a number written nationally may start with before its national number (the UK's 0); "": none (China).
    trunk_prefix: str = ""
    default_validity: float = 172800.0
    window: int = 100
    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    idle_timeout: float = 300.0
    # A connection with no bound session this long after it opened is closed (SMPP 3.4 7.2 session_init_timer): one
    # that never binds cannot hold a file descriptor for ever by sending enquire_link.
    bind_timeout: float = 30.0
    retry_backoff: tuple[float, ...] = (2.0, 10.0, 30.0, 120.0, 600.0)
    mo_retry_backoff: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)  # an MO whose handling failed: tried again after each
    max_queued_per_subscriber: int = 1000
    dedup_window: float = 3600.0
    reassembly_timeout: float = 120.0
    max_incomplete_per_subscriber: int = 8  # long MOs of one subscriber waiting for parts; beyond: their oldest goes
    drain_timeout: float = 5.0
    job_check_interval: float = 30.0  # how often the scheduled jobs run: billing and reminders due, lapsed confirmations and surveys closed
    # Seconds a message is kept after it reached a final state (gateway/retention.py); 0 keeps every one for ever.
    message_retention: float = 604800.0


@dataclass(frozen=True, slots=True)
class TlsSettings:
    enabled: bool = False
    port: int = 2776
    certfile: str = ""
    keyfile: str = ""


@dataclass(frozen=True, slots=True)
class AccountConfig:
    system_id: str
    password: str
    role: str
    numbers: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    max_binds: int = 10
    throughput: float = 0.0  # segments per second; 0 = unlimited


@dataclass(frozen=True, slots=True)
class ShortCodeConfig:
    code: str
    handler: str
    options: dict[str, Any] = field(default_factory=dict)


DEFAULT_HELP_WORDS = ("0", "HELP", "帮助", "?", "？")
# Rating words (a digit 1-5 is always a rating too): 1 = very satisfied ... 5 = very dissatisfied.
DEFAULT_RATING_WORDS: dict[str, int] = {
    "非常满意": 1, "很满意": 1, "满意": 2, "一般": 3, "不满意": 4, "非常不满意": 5, "很不满意": 5,
    "VERY SATISFIED": 1, "SATISFIED": 2, "NEUTRAL": 3, "DISSATISFIED": 4, "UNSATISFIED": 4,
    "NOT SATISFIED": 4, "VERY DISSATISFIED": 5, "VERY UNSATISFIED": 5,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    language: str = "zh"
    utc_offset_hours: float = 8.0
    operator: str = "10086"
    spam_report: str = "10086999"
    rating: str = "10086700"
    listing_window: float = 7200.0
    confirmation_validity: float = 86400.0
    confirm_words: tuple[str, ...] = ("是", "Y", "YES", "1")
    decline_words: tuple[str, ...] = ("否", "N", "NO")
    # Keywords, matched trimmed, case-insensitively, full-width folded (handlers/keywords.py).
    query_keyword: str = "0000"  # to operator: list subscriptions
    unsubscribe_all_keyword: str = "00000"  # to operator: unsubscribe all (after a yes/no question)
    help_words: tuple[str, ...] = DEFAULT_HELP_WORDS  # to operator and spam_report
    english_words: tuple[str, ...] = ("EN", "ENGLISH")  # to operator: replies in English from now on
    chinese_words: tuple[str, ...] = ("中文", "ZH", "CN")  # ... in Chinese
    rating_words: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_RATING_WORDS))  # to rating: word -> 1..5
    trial_last_order_day: int = 20
    reminder_first_day: int = 21
    reminder_last_day: int = 25
    billing_day: int = 1
    spam_follow_up_window: float = 1800.0
    spam_block_threshold: int = 5
    spam_block_window: float = 86400.0
    spam_reports_per_day: int = 20
    survey_validity: float = 86400.0
    survey_sample_rate: float = 0.0
    # How long an order-relation notice waits for its SP to bind (handlers/sp_notice.py): long enough for an
    # SP down over a weekend or a holiday week, bounded so an SP that never binds again does not pile them up.
    sp_notice_validity: float = 30 * 86400.0


# The types of business the operator's reminders tell apart (the seed's 短信业务 and WAP业务); the texts name each
# as billing.kind.<kind>.
SERVICE_KINDS = ("sms", "mms", "wap")


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A service subscribers can order: keyword to the SP's service code."""

    id: str
    sp: str
    sp_name: str
    name: str
    service_code: str
    keyword: str
    fee: float  # yuan per month
    phone: str
    sp_name_en: str = ""
    name_en: str = ""
    sp_company: str = ""  # the SP's company name in unsubscribe confirmations ("新浪公司"); default sp_name
    kind: str = "sms"  # the type of business (SERVICE_KINDS) the reminders name: 短信业务, 彩信业务, WAP业务

    def sp_name_in(self, language: str) -> str:
        return self.sp_name_en if language == "en" and self.sp_name_en else self.sp_name

    def company_in(self, language: str) -> str:
        return self.sp_company if language != "en" and self.sp_company else self.sp_name_in(language)

    def name_in(self, language: str) -> str:
        return self.name_en if language == "en" and self.name_en else self.name


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySettings
    tls: TlsSettings
    accounts: tuple[AccountConfig, ...]
    short_codes: tuple[ShortCodeConfig, ...]
    services: ServiceSettings = ServiceSettings()
    catalogue: tuple[CatalogueEntry, ...] = ()
    source: str = ""
    # The tables it was read from (simulator.testing.gateway_config builds on them); not kept up by `replace`.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def account(self, system_id: str) -> AccountConfig | None:
        return next((a for a in self.accounts if a.system_id == system_id), None)

    def number_plan(self) -> NumberPlan:
        """How numbers are written here, and which are no subscriber's: every number a service claims, with anything
        after it (an extension)."""
        codes = tuple(sorted({number for number, _key, _may_replace in _claims(self.services, self.accounts, self.short_codes)}))
        return _number_plan(self.gateway, codes)


LANGUAGES = ("zh", "en")  # the languages replies are written in: a messages.<language>.toml each


def messages_files(config: Config) -> dict[str, Path]:
    """Each language's messages.<language>.toml: the one beside the config file if it is there, else the built-in one.

    Language by language: a site that customises only its English texts puts messages.en.toml alone beside the config
    (that file was ignored when the default language's was not there too). The built-in ones are BUILT_IN's, not those
    beside DEFAULT_CONFIG: an installed package's default config may be ./config/default.toml (the Docker image's
    /app/config), and one alone there, or any --config run from that directory, failed to start."""
    beside = Path(config.source).parent
    return {
        language: beside / name if (beside / name).exists() else BUILT_IN / name
        for language, name in ((language, f"messages.{language}.toml") for language in LANGUAGES)
    }


def beside_config(source: Path | str, name: str) -> str:
    """A file the config names, relative to the config file's directory as its reply texts are: a config that works
    from its own directory then works from any other (the working directory is wherever the service manager starts
    the gateway). An absolute name, or none (""), stays as it is."""
    if not name or Path(name).is_absolute():
        return name
    return str(Path(source).parent / name)


def load_config(path: Path | str | None = None, *, tls_files: bool = True) -> Config:
    """The config in `path` (default: the built-in one), checked; tls_files=False leaves the [tls] certificate and
    key unlooked for: a config read to know what a gateway does (the simulator's target) is read where they are not,
    and its private key belongs on the gateway's host alone."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    return parse_config(read_toml(path), path, tls_files=tls_files)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a table; what keeps it from being one is a ConfigError naming the file."""
    try:
        with open(path, "rb") as f:
            # utf-8-sig: a byte order mark before it (Notepad's, many Chinese editors') is still UTF-8; tomllib took it
            # for an "Invalid statement (at line 1, column 1)"
            return tomllib.loads(f.read().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, "-", "is a directory; expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(path, "-", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # tomllib reads UTF-8 only; GBK is many Chinese editors' default
        raise ConfigError(path, "-", f"not UTF-8 text (byte {exc.start} is not); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"not valid TOML: {exc}") from None


def parse_config(raw: dict[str, Any], path: Path | str = "<config>", *, tls_files: bool = True) -> Config:
    known = {"gateway", "tls", "accounts", "short_codes", "services", "catalogue"}
    for key in raw:
        if key not in known:
            raise ConfigError(path, key, f"unknown section; expected one of {sorted(known)}")
    _check_finite(raw, "", path)
    gateway = _section(GatewaySettings, raw.get("gateway", {}), "gateway", path)
    _check_c_octet_string(gateway.system_id, 15, "gateway.system_id", path)  # (the bind_resp's: SMPP 3.4 4.1.2)
    _check_ranges(gateway, "gateway", _GATEWAY_RANGES, path)
    if not gateway.database:
        raise ConfigError(path, "gateway.database", "expected the SQLite file's name (not empty)")
    if not ascii_digits(gateway.country_code):
        raise ConfigError(path, "gateway.country_code", f"expected digits; got {gateway.country_code!r}")
    if len(gateway.country_code) + gateway.national_number_length > ADDRESS_DIGITS:
        raise ConfigError(path, "gateway.national_number_length", f"expected at most {ADDRESS_DIGITS - len(gateway.country_code)} "
                          f"digits: after country code {gateway.country_code}, a number fits no SMPP address beyond "
                          f"{ADDRESS_DIGITS} digits (SMPP 3.4 5.2); got {gateway.national_number_length}")  # fmt: skip
    _check_mobile_prefixes(gateway, path)
    if gateway.trunk_prefix and not ascii_digits(gateway.trunk_prefix):
        raise ConfigError(path, "gateway.trunk_prefix", f"expected digits (\"\": none); got {gateway.trunk_prefix!r}")
    _check_idle_timeout(gateway, path)
    if not gateway.retry_backoff or min(gateway.retry_backoff) <= 0:
        raise ConfigError(path, "gateway.retry_backoff", "expected at least one delay, each above 0 seconds")
    if any(delay <= 0 for delay in gateway.mo_retry_backoff):
        raise ConfigError(path, "gateway.mo_retry_backoff", "expected delays above 0 seconds (none: give up at the first failure)")
    tls = _section(TlsSettings, raw.get("tls", {}), "tls", path)
    for key in ("certfile", "keyfile") if tls.enabled else ():
        if not getattr(tls, key):  # (the one left out named, not certfile whichever it was)
            raise ConfigError(path, f"tls.{key}", "TLS is enabled: certfile and keyfile are required")
    given, tls = tls, replace(tls, certfile=beside_config(path, tls.certfile), keyfile=beside_config(path, tls.keyfile))
    if tls.enabled:
        _check_ranges(tls, "tls", {"port": _PORT}, path)
        for key in ("certfile", "keyfile") if tls_files else ():
            file = Path(getattr(tls, key))
            if not file.is_file():
                relative = "" if Path(getattr(given, key)).is_absolute() else " (a relative name is read from the config file's directory)"
                problem = "a directory, not a file" if file.is_dir() else "no such file"
                raise ConfigError(path, f"tls.{key}", f"{problem}: {getattr(tls, key)!r}{relative}")
    accounts = tuple(_account(a, f"accounts[{i}]", path) for i, a in enumerate(_list(raw, "accounts", path)))
    if not accounts:
        raise ConfigError(path, "accounts", "at least one [[accounts]] table is required")
    seen: set[str] = set()
    for i, account in enumerate(accounts):
        if account.system_id in seen:
            raise ConfigError(path, f"accounts[{i}].system_id", f"duplicate system_id {account.system_id!r}")
        seen.add(account.system_id)
    short_codes = tuple(_short_code(s, f"short_codes[{i}]", path) for i, s in enumerate(_list(raw, "short_codes", path)))
    services = _section(ServiceSettings, raw.get("services", {}), "services", path)
    _check_ranges(services, "services", _SERVICE_RANGES, path)
    if services.reminder_first_day > services.reminder_last_day:
        raise ConfigError(path, "services.reminder_first_day",
                          f"expected a day not after reminder_last_day ({services.reminder_last_day}); "
                          f"got {services.reminder_first_day}")  # fmt: skip
    if services.trial_last_order_day > services.reminder_last_day:  # (SPEC 3.2: reminded before any charge)
        raise ConfigError(path, "services.trial_last_order_day",
                          f"expected a day not after reminder_last_day ({services.reminder_last_day}): an order "
                          "after the reminder days, free that month only, would be charged on the billing day "
                          f"without a reminder; got {services.trial_last_order_day}")  # fmt: skip
    for key in ("operator", "spam_report", "rating"):
        if not ascii_digits(getattr(services, key)):
            raise ConfigError(path, f"services.{key}", f"expected a short code (digits); got {getattr(services, key)!r}")
    _check_keywords(services, path)
    if services.language not in ("zh", "en"):
        raise ConfigError(path, "services.language", f"expected zh or en; got {services.language!r}")
    if not 0.0 <= services.survey_sample_rate <= 1.0:
        raise ConfigError(path, "services.survey_sample_rate", "expected a share between 0 and 1")
    by_id = {a.system_id: a for a in accounts}
    catalogue = tuple(_catalogue_entry(c, f"catalogue[{i}]", path, by_id) for i, c in enumerate(_list(raw, "catalogue", path)))
    seen_services: set[str] = set()
    seen_keywords: set[tuple[str, str]] = set()
    for i, entry in enumerate(catalogue):
        if entry.id in seen_services:
            raise ConfigError(path, f"catalogue[{i}].id", f"duplicate service id {entry.id!r}")
        if (entry.service_code, fold(entry.keyword)) in seen_keywords:
            raise ConfigError(path, f"catalogue[{i}].keyword", f"{entry.keyword!r} is already used on {entry.service_code}")
        seen_services.add(entry.id)
        seen_keywords.add((entry.service_code, fold(entry.keyword)))
    _check_codes_fit_an_address(services, accounts, short_codes, path, gateway)
    _check_numbers_claimed_once(services, accounts, short_codes, path)
    _check_prefixes_match_subscribers(NumberPlan(gateway.country_code, gateway.national_number_length), accounts, path)
    _check_codes_leave_subscribers(gateway.country_code, services, accounts, short_codes, path)
    return Config(gateway, tls, accounts, short_codes, services, catalogue, str(path), raw)


def _number_plan(gateway: GatewaySettings, codes: tuple[str, ...]) -> NumberPlan:
    """The number plan of `gateway` with these codes; mobile prefixes left out: those known for its country code."""
    mobile = gateway.mobile_prefixes if gateway.mobile_prefixes is not None else MOBILE_PREFIXES.get(gateway.country_code, ())
    return NumberPlan(gateway.country_code, gateway.national_number_length, codes, mobile, gateway.trunk_prefix)


def _check_codes_fit_an_address(
    services: ServiceSettings, accounts: tuple[AccountConfig, ...], short_codes: tuple[ShortCodeConfig, ...],
    path: Path | str, gateway: GatewaySettings,
) -> None:  # fmt: skip
    """A code longer than an SMPP address could be neither texted nor sent from: no submission carries it; one that
    reads as a subscriber's number could not be told from that subscriber's: in international form (12345678901
    under country code 1) texts to it went to the subscriber and a spam report of it was taken; in national form
    (13800138001 in China) texts to the subscriber went to the code, which then had it for its own."""
    claims = list(_claims(services, accounts, short_codes))
    for number, key, _may_replace in claims:
        if len(number) > ADDRESS_DIGITS:
            raise ConfigError(path, key, f"{number} is {len(number)} digits; an SMPP address has at most {ADDRESS_DIGITS} "
                                         "(SMPP 3.4 5.2)")  # fmt: skip
        # Read as the plan reads it without this code (8610086123456 is 10086's with an extension, no subscriber's).
        # Written nationally, a number no mobile prefix starts is the code's (normalise: 10657120000); written
        # internationally (normalise keeps it), any subscriber's (8601012345678, a Beijing landline) would be taken.
        others = tuple(code for code, _key, _may in claims if code != number)
        plan = _number_plan(gateway, others)
        subscriber = plan.normalise(number)
        national = subscriber != number.removeprefix("00")
        if plan.is_msisdn(subscriber) and (subscriber.startswith(plan.mobile_intl) or not national):
            why = ("written with the country code" if not national else "a mobile prefix of the number plan starts it"
                   if plan.mobile_prefixes
                   else "[gateway] mobile_prefixes unset: any national number may be a mobile's")  # fmt: skip
            raise ConfigError(path, key, f"{number} is also how subscriber {subscriber}'s number is written ({why}): "
                                         "expected a code no subscriber's number reads as")  # fmt: skip


def _check_numbers_claimed_once(
    services: ServiceSettings, accounts: tuple[AccountConfig, ...], short_codes: tuple[ShortCodeConfig, ...],
    path: Path | str,
) -> None:  # fmt: skip
    """Each number is one service's: an MO to it goes to one handler, an SP's MO and MT are its alone.

    A [[short_codes]] entry may take over one of the [services] codes (a site's own handler for it, or a
    silent one in a test); every other second claim is a mistake that would quietly misroute traffic."""
    claims: dict[str, str] = {}
    for number, key, may_replace_service in _claims(services, accounts, short_codes):
        earlier = claims.get(number)
        if earlier is not None and not (may_replace_service and earlier.startswith("services.")):
            raise ConfigError(path, key, f"{number} is already {earlier}; a number can belong to one service only")
        claims[number] = key


def _check_idle_timeout(gateway: GatewaySettings, path: Path | str) -> None:
    """A bind is asked with an enquire_link after enquire_link_interval of silence and given response_timeout to
    answer: an idle_timeout within that unbound peers that answer every PDU, before they were asked anything.
    (enquire_link_interval = 0 asks nothing: a client keeps its bind with enquire_links of its own.)"""
    idle, asked, answer = gateway.idle_timeout, gateway.enquire_link_interval, gateway.response_timeout
    if idle and asked and idle <= asked + answer:
        raise ConfigError(path, "gateway.idle_timeout", f"expected 0 (never) or more than enquire_link_interval + "
                          f"response_timeout ({asked:g} + {answer:g} s): a bind that answers the gateway's "
                          f"enquire_link is alive, only quiet (enquire_link_interval = 0: none is sent); got {idle:g}")  # fmt: skip


def _check_mobile_prefixes(gateway: GatewaySettings, path: Path | str) -> None:
    """Each a national prefix shorter than a national number: a wrong one refuses every spam report of a real number."""
    prefixes, length = gateway.mobile_prefixes, gateway.national_number_length
    if prefixes is None:
        return
    expected = f"national prefixes of mobile numbers, 1 to {length - 1} digits each (after the country code, as 13 in China)"
    if not prefixes:
        raise ConfigError(path, "gateway.mobile_prefixes", f"expected at least one of the {expected}; got []")
    for prefix in prefixes:
        if not (ascii_digits(prefix) and len(prefix) < length):
            raise ConfigError(path, "gateway.mobile_prefixes", f"expected {expected}; got {prefix!r}")


def _check_prefixes_match_subscribers(plan: NumberPlan, accounts: tuple[AccountConfig, ...], path: Path | str) -> None:
    """An account's numbers are prefixes of subscribers' numbers as the gateway keeps them, in international form: a
    national-form prefix (137), a short code or one longer than a whole number matches none, and the account's binds
    would silently receive nothing and have every submission refused."""
    for i, account in enumerate(accounts):
        for prefix in account.numbers:
            if prefix.startswith(plan.country_code) and len(prefix) <= plan.msisdn_length:
                continue
            international = plan.country_code + prefix
            hint = f" ({prefix} -> {international}?)" if len(international) <= plan.msisdn_length else ""
            raise ConfigError(path, f"accounts[{i}].numbers", f"{prefix!r} can match no subscriber ({account.system_id}): "
                              f"expected the start of a number in international form, country code {plan.country_code} "
                              f"then {plan.national_length} digits, at most {plan.msisdn_length} digits in all{hint}")  # fmt: skip


def _check_codes_leave_subscribers(
    country_code: str, services: ServiceSettings, accounts: tuple[AccountConfig, ...],
    short_codes: tuple[ShortCodeConfig, ...], path: Path | str,
) -> None:  # fmt: skip
    """A number that starts with a code is that code with an extension, no subscriber's (Config.number_plan): a code
    that covers an account's whole number range (short code 138 under prefix 86138) would make every one of its
    subscribers unreachable and refuse all their MO. (A code inside a range, 10086 in 861, is usual.)"""
    for code, key, _may_replace in _claims(services, accounts, short_codes):
        for i, account in enumerate(accounts):
            prefix = next((p for p in account.numbers if p.startswith(country_code + code)), None)
            if prefix is not None:
                raise ConfigError(path, key, f"{code} would take every number of accounts[{i}].numbers {prefix!r} "
                                             f"({account.system_id}) for its own ({country_code}{code} with an extension)")  # fmt: skip


def _claims(
    services: ServiceSettings, accounts: tuple[AccountConfig, ...], short_codes: tuple[ShortCodeConfig, ...],
) -> Iterator[tuple[str, str, bool]]:  # fmt: skip
    """Each number a service claims: (number, its config key, whether it may take over a [services] code)."""
    for key in ("operator", "spam_report", "rating"):
        yield getattr(services, key), f"services.{key}", False
    for i, account in enumerate(accounts):
        for code in account.service_codes:
            yield code, f"accounts[{i}].service_codes ({account.system_id})", False
    for i, entry in enumerate(short_codes):
        yield entry.code, f"short_codes[{i}].code", True


def _list(raw: dict[str, Any], key: str, path: Path | str) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(path, key, f"expected a list of [[{key}]] tables")
    return value


# key -> (test, what is expected): the values a setting may take beyond its type.
_Range = tuple[Callable[[Any], bool], str]
PORTS, PORTS_EXPECTED = range(65536), "a port from 0 to 65535 (0: any free port)"  # also the CLI's --*-port
_PORT: _Range = (lambda v: v in PORTS, PORTS_EXPECTED)
_POSITIVE: _Range = (lambda v: v > 0, "a number above 0")
_NOT_NEGATIVE: _Range = (lambda v: v >= 0, "0 or more")
_AT_LEAST_ONE: _Range = (lambda v: v >= 1, "at least 1")
# SPEC 3.3: one reporter alone can never get a number blocked network-wide; at 1 the first report did.
_TWO_REPORTERS: _Range = (lambda v: v >= 2, ("at least 2 distinct reporters (one reporter alone must never block a "
                                             "number network-wide: SPEC 3.3)"))
_DAY: _Range = (lambda v: 1 <= v <= 28, "a day of the month from 1 to 28 (every month has it)")
_GATEWAY_RANGES: dict[str, _Range] = {
    "smpp_port": _PORT, "http_port": _PORT, "http_idle_timeout": _POSITIVE, "national_number_length": _AT_LEAST_ONE,
    "default_validity": _POSITIVE, "window": _AT_LEAST_ONE, "response_timeout": _POSITIVE,
    "enquire_link_interval": (_NOT_NEGATIVE[0], "0 (never) or more seconds"),
    "idle_timeout": (_NOT_NEGATIVE[0], "0 (never) or more seconds"),
    "bind_timeout": (_NOT_NEGATIVE[0], "0 (never) or more seconds"),
    "max_queued_per_subscriber": _AT_LEAST_ONE, "dedup_window": _NOT_NEGATIVE,
    "reassembly_timeout": _POSITIVE, "max_incomplete_per_subscriber": _AT_LEAST_ONE, "drain_timeout": _NOT_NEGATIVE, "job_check_interval": _POSITIVE,
    "message_retention": (_NOT_NEGATIVE[0], "0 (keep every message for ever) or more seconds"),
}  # fmt: skip
_SERVICE_RANGES: dict[str, _Range] = {
    "listing_window": _POSITIVE, "confirmation_validity": _POSITIVE, "trial_last_order_day": _DAY,
    "reminder_first_day": _DAY, "reminder_last_day": _DAY, "billing_day": _DAY, "spam_follow_up_window": _POSITIVE,
    "spam_block_threshold": _TWO_REPORTERS, "spam_block_window": _POSITIVE, "spam_reports_per_day": _AT_LEAST_ONE,
    "survey_validity": _POSITIVE, "sp_notice_validity": _POSITIVE, "utc_offset_hours": (lambda v: -14 <= v <= 14, "an offset from -14 to 14 hours"),
}  # fmt: skip


def _check_finite(table: Any, where: str, path: Path | str) -> None:
    """Every number in the file is finite: nan compares false with every bound, inf passes the lower ones."""
    items = table.items() if isinstance(table, dict) else ((f"[{i}]", v) for i, v in enumerate(table))
    for name, value in items:
        key = f"{where}{name}" if name.startswith("[") or not where else f"{where}.{name}"
        if isinstance(value, (dict, list)):
            _check_finite(value, key, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path, key, f"expected a finite number; got {value}")


def _check_keywords(services: ServiceSettings, path: Path | str) -> None:
    for key in ("query_keyword", "unsubscribe_all_keyword"):
        if not getattr(services, key).strip():
            raise ConfigError(path, f"services.{key}", "expected a keyword (not empty)")
    for key in ("confirm_words", "decline_words", "help_words", "english_words", "chinese_words"):
        words = getattr(services, key)
        if not words or not all(w.strip() for w in words):
            raise ConfigError(path, f"services.{key}", "expected at least one word, none of them empty")
    # A word the operator code reads as two things would only ever be read as the one checked first.
    meaning: dict[str, str] = {}
    for key in ("query_keyword", "unsubscribe_all_keyword", "help_words", "english_words", "chinese_words",
                "confirm_words", "decline_words"):  # fmt: skip
        words = getattr(services, key)
        for word in (words,) if isinstance(words, str) else words:
            other = meaning.setdefault(fold(word), key)
            if other != key:
                raise ConfigError(path, f"services.{key}", f"expected a word other than {other}'s; {word!r} is both")
    for word, score in services.rating_words.items():
        if not word.strip() or not 1 <= score <= 5:
            raise ConfigError(path, f"services.rating_words.{word}", f"expected a word and a rating 1 to 5; got {score!r}")


def _check_c_octet_string(value: str, most: int, key: str, path: Path | str, *, secret: bool = False) -> None:
    """A value SMPP carries as a C-Octet String (a bind's system_id and password, a bind_resp's system_id) is 1 to
    `most` octets (its NUL excluded) as the codec writes it: Latin-1, an octet a character (gateway/smpp/codec.py).
    Counted in characters, a gateway system_id 网关网关 started, then every bind_resp failed to encode and its
    connection was dropped. A secret's value is not shown."""
    try:
        octets = len(value.encode("latin-1"))
    except UnicodeEncodeError:
        octets = None
    least = 0 if secret else 1  # (a password may be empty)
    if octets is not None and least <= octets <= most and "\0" not in value:
        return
    shown = "it" if secret else repr(value)
    why = (f"{shown} has characters Latin-1 has not" if octets is None
           else f"{shown} has a NUL, which ends a C-Octet String" if "\0" in value else f"{shown} is {octets} octets")  # fmt: skip
    span = f"{least} to {most}" if least else f"at most {most}"
    raise ConfigError(path, key, f"expected {span} octets of Latin-1 text, as SMPP carries it (SMPP 3.4 C-Octet String); {why}")


def _check_ranges(settings: Any, where: str, ranges: dict[str, _Range], path: Path | str) -> None:
    for key, (ok, expected) in ranges.items():
        value = getattr(settings, key)
        if not ok(value):
            raise ConfigError(path, f"{where}.{key}", f"expected {expected}; {got(value, key)}")


def _account(table: dict[str, Any], where: str, path: Path | str) -> AccountConfig:
    _check_known_keys(AccountConfig, table, where, path)  # first: a misspelt key is what makes a required one missing
    for required in ("system_id", "password", "role", "max_binds", "throughput"):
        if required not in table:
            raise ConfigError(path, f"{where}.{required}", "missing (required)")
    account = _section(AccountConfig, table, where, path)
    if account.role not in ROLES:
        raise ConfigError(path, f"{where}.role", f"expected one of {', '.join(ROLES)}; got {account.role!r}")
    _check_c_octet_string(account.system_id, 15, f"{where}.system_id", path)  # a bind's (SMPP 3.4 4.1.1)
    _check_c_octet_string(account.password, 8, f"{where}.password", path, secret=True)
    # The gateway does not ignore the other role's key: an sp account's numbers made subscribers' texts to those
    # numbers go to the SP, and a handset's service codes became service numbers refusing MO it could not send from.
    if account.role == "sp" and account.numbers:
        raise ConfigError(path, f"{where}.numbers", "not a key of sp accounts (expected service_codes only): an SP sends "
                          "from its service codes and receives the MO sent to them; numbers would have subscribers' "
                          "texts to those numbers delivered to the SP")  # fmt: skip
    if account.role != "sp" and account.service_codes:
        raise ConfigError(path, f"{where}.service_codes", f"not a key of {account.role} accounts (expected numbers "
                          f"only): {account.role} accounts send from and receive for their numbers; service_codes "
                          "would make those codes service numbers, refusing subscribers' texts to them, that the "
                          "account cannot send from (an SP's codes go on an sp account)")  # fmt: skip
    if account.role == "sp" and not account.service_codes:
        raise ConfigError(path, f"{where}.service_codes", "an sp account needs at least one service code")
    if account.role != "sp" and not account.numbers:
        raise ConfigError(path, f"{where}.numbers", f"a {account.role} account needs MSISDN prefixes")
    for key, values in (("numbers", account.numbers), ("service_codes", account.service_codes)):
        for value in values:
            if not ascii_digits(value):
                raise ConfigError(path, f"{where}.{key}", f"expected digits only; got {value!r}")
    if account.max_binds < 1:
        raise ConfigError(path, f"{where}.max_binds", "expected at least 1")
    if account.throughput < 0:
        raise ConfigError(path, f"{where}.throughput", "expected segments per second, or 0 for no limit")
    return account


def _short_code(table: dict[str, Any], where: str, path: Path | str) -> ShortCodeConfig:
    # (imported here: the handlers import this module for the settings they read)
    from handlers.registry import HANDLERS, SHORT_CODE_HANDLERS, options_of

    # An unknown handler name is the gateway's to name (app.py); meanwhile an option any handler takes may be its.
    handler = table.get("handler") if isinstance(table, dict) else None
    known = [handler] if isinstance(handler, str) and handler in HANDLERS else list(HANDLERS)
    types = {option: kind for name in known for option, kind in options_of(name).items()}
    _check_key_names(sorted({"code", "handler", *types}), table, where, path)
    for required in ("code", "handler"):
        if required not in table:
            raise ConfigError(path, f"{where}.{required}", "missing (required)")
    options = {k: _coerce(v, types[k], f"{where}.{k}", path) for k, v in table.items() if k not in ("code", "handler")}
    code, handler = table["code"], table["handler"]
    if not isinstance(code, str) or not ascii_digits(code):
        raise ConfigError(path, f"{where}.code", f"expected a string of digits; got {code!r}")
    if not isinstance(handler, str):
        raise ConfigError(path, f"{where}.handler", "expected a handler name (string)")
    if handler == "order":
        # It orders the catalogue entries of the code it answers, and a catalogue service code cannot be listed here
        # (one number, one service): on any [[short_codes]] code it answered every text with an empty service list.
        raise ConfigError(path, f"{where}.handler", f"order serves the catalogue's service codes ([[catalogue]] "
                          f"service_code), which have it without a [[short_codes]] entry; {code} has no service to "
                          f"order (expected one of {', '.join(SHORT_CODE_HANDLERS)})")  # fmt: skip
    return ShortCodeConfig(code, handler, options)


def _catalogue_entry(table: dict[str, Any], where: str, path: Path | str, accounts: dict[str, AccountConfig]) -> CatalogueEntry:
    _check_known_keys(CatalogueEntry, table, where, path)
    for required in ("id", "sp", "sp_name", "name", "service_code", "keyword", "fee", "phone"):
        if required not in table:
            raise ConfigError(path, f"{where}.{required}", "missing (required)")
    entry = _section(CatalogueEntry, table, where, path)
    account = accounts.get(entry.sp)
    if account is None or account.role != "sp":
        raise ConfigError(path, f"{where}.sp", f"{entry.sp!r} is not an sp account in [[accounts]]")
    if entry.service_code not in account.service_codes:
        raise ConfigError(path, f"{where}.service_code", f"{entry.service_code} is not one of {entry.sp}'s service_codes")
    if not entry.keyword.strip():
        raise ConfigError(path, f"{where}.keyword", "expected the keyword subscribers order with (not empty)")
    _check_notice_value(entry.id, f"{where}.id", "service", path)
    _check_notice_value(entry.keyword, f"{where}.keyword", "keyword", path)
    for key in ("sp_name", "name", "sp_name_en", "name_en", "sp_company"):
        _check_shown_name(getattr(entry, key), f"{where}.{key}", required=key in ("sp_name", "name"), path=path)
    _check_phone(entry.phone, f"{where}.phone", path)
    if entry.fee < 0:
        raise ConfigError(path, f"{where}.fee", "expected a fee of 0 or more (yuan per month)")
    if abs(entry.fee * 100 - round(entry.fee * 100)) > FEE_TOLERANCE:  # 0.004 was shown as 0元 and billed 0 fen
        raise ConfigError(path, f"{where}.fee", f"expected yuan to the fen, at most 2 decimals (as 30 or 0.5); got {entry.fee}")
    if entry.kind not in SERVICE_KINDS:
        raise ConfigError(path, f"{where}.kind", f"expected one of {list(SERVICE_KINDS)}, got {entry.kind!r}")
    return entry


FEE_TOLERANCE = 1e-6  # fen: a fee to the fen read as a float (0.29 * 100 is 28.999999999999996)


# A name the subscriber's texts show (the 0000 listing, the order notice, the reminder): 6,000 characters each made
# a listing of three services need more than SMPP's 255 parts, so 0000 failed for good; invisible or control
# characters (a zero-width space, a right-to-left override, a newline) reached the handset as they were.
SHOWN_NAME_CHARS = 40


def _check_shown_name(value: str, key: str, *, required: bool, path: Path | str) -> None:
    if (value or required) and not (value.strip() == value and 0 < len(value) <= SHOWN_NAME_CHARS and value.isprintable()):
        raise ConfigError(path, key, f"expected a name of 1 to {SHOWN_NAME_CHARS} printable characters, without "
                                     f"spaces around it (subscribers' texts show it); got {value!r}")  # fmt: skip


# The customer-service number the order confirmation and notices show ("客服电话9510567"): "" showed none, and a
# newline or a right-to-left override reached the handset as it was.
PHONE_CHARS = 20
_PHONE = re.compile(r"\+?[0-9]+(?:[ -][0-9]+)*")


def _check_phone(value: str, key: str, path: Path | str) -> None:
    if not (len(value) <= PHONE_CHARS and _PHONE.fullmatch(value)):
        raise ConfigError(path, key, f"expected a telephone number of up to {PHONE_CHARS} characters: digits, perhaps "
                                     f"a + first and single spaces or hyphens between them (subscribers' texts show "
                                     f"it: 9510567, 400-670-0700); got {value!r}")  # fmt: skip


def _check_notice_value(value: str, key: str, field: str, path: Path | str) -> None:
    """SP notices are space-separated key=value pairs (handlers/sp_notice.py), which SPs split on whitespace and the
    first '=': `keyword=TQ BJ` was read back as keyword TQ, so a value with either in it cannot go in one."""
    if not value or any(c.isspace() or c == "=" for c in value):
        raise ConfigError(path, key, f"expected one word without spaces or '=' (SP notices carry it as "
                                     f"{field}=<word>); got {value!r}")  # fmt: skip


_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURALS = {float: "numbers", str: "strings"}  # what a list holds
# Keys whose value a refusal names by its kind only: the refusal's line goes to the log (journald, docker logs).
_SECRETS = frozenset({"password"})
_KINDS = {**_TYPES, bool: "a boolean", list: "a list", dict: "a table"}


def got(value: Any, key: str) -> str:
    """What a refusal says the file has at `key`: the value, or for a secret what kind of value it is."""
    if key.rsplit(".", 1)[-1] in _SECRETS:
        return f"got {_KINDS.get(type(value), type(value).__name__)}"
    return f"got {value!r}"


def _check_known_keys(cls: type, table: Any, where: str, path: Path | str) -> None:
    _check_key_names(sorted(f.name for f in fields(cls)), table, where, path)


def _check_key_names(names: list[str], table: Any, where: str, path: Path | str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(path, where, "expected a table")
    for key in table:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            meant = f"did you mean {near[0]}? " if near else ""
            raise ConfigError(path, f"{where}.{key}", f"unknown key; {meant}expected one of {names}")


def _section(cls: type, table: Any, where: str, path: Path | str) -> Any:
    _check_known_keys(cls, table, where, path)
    types = {f.name: f.type for f in fields(cls)}
    return cls(**{key: _coerce(value, types[key], f"{where}.{key}", path) for key, value in table.items()})


def _coerce(value: Any, annotation: str, key: str, path: Path | str) -> Any:
    base = {"int": int, "float": float, "str": str, "bool": bool}.get(annotation)
    if base is not None:
        ok = isinstance(value, base) and not (base is not bool and isinstance(value, bool))
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ConfigError(path, key, f"expected {_TYPES[base]}; {got(value, key)}")
        return value
    if annotation == "dict[str, int]":
        if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            raise ConfigError(path, key, f"expected a table of words = integers; {got(value, key)}")
        return dict(value)
    if annotation.startswith("tuple["):
        item = float if "float" in annotation else str
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list of {_PLURALS[item]}; {got(value, key)}")
        out = []
        for v in value:
            if item is float and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
            elif item is str and isinstance(v, str):
                out.append(v)
            else:
                raise ConfigError(path, key, f"expected a list of {_PLURALS[item]}; {got(v, key)} in it")
        return tuple(out)
    return value
