"""A wrong or missing config key fails at start with the file, the key and what was expected (issue #2)."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import port
from gateway.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from gateway.store.migrations import SCHEMA_VERSION, migrate
from tests.gateway_process import config_file, free_port, tls_config_file

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = tomllib.loads(DEFAULT_CONFIG.read_text())


def changed(edit) -> dict[str, Any]:
    raw = copy.deepcopy(DEFAULT)
    edit(raw)
    return raw


def account(raw: dict[str, Any], system_id: str) -> dict[str, Any]:
    return next(a for a in raw["accounts"] if a["system_id"] == system_id)


CASES = [  # (what is wrong, the edit, the key named, a phrase of what was expected)
    ("missing max_binds", lambda r: account(r, "handset").pop("max_binds"), "accounts[0].max_binds", "missing"),
    ("missing throughput", lambda r: account(r, "sina").pop("throughput"), "accounts[3].throughput", "missing"),
    ("negative throughput", lambda r: account(r, "handset").update(throughput=-1), "accounts[0].throughput", "0 for no limit"),
    # A misspelt key was reported as the required key it should have been, "missing".
    ("a misspelt account key", lambda r: account(r, "handset").update(max_bind=account(r, "handset").pop("max_binds")),
     "accounts[0].max_bind", "unknown key; did you mean max_binds? expected one of "),
    ("a misspelt catalogue key", lambda r: r["catalogue"][0].update(keywrd=r["catalogue"][0].pop("keyword")),
     "catalogue[0].keywrd", "did you mean keyword?"),
    ("a word for a list of words", lambda r: r["services"].update(confirm_words="Y"), "services.confirm_words",
     "expected a list of strings; got 'Y'"),
    ("unknown account key", lambda r: account(r, "handset").update(colour="red"), "accounts[0].colour", "unknown key"),
    ("wrong type", lambda r: r["gateway"].update(window="100"), "gateway.window", "expected an integer"),
    ("no window", lambda r: r["gateway"].update(window=0), "gateway.window", "at least 1"),
    ("no room for long MOs", lambda r: r["gateway"].update(max_incomplete_per_subscriber=0),
     "gateway.max_incomplete_per_subscriber", "at least 1"),
    ("negative timeout", lambda r: r["gateway"].update(response_timeout=-1), "gateway.response_timeout", "above 0"),
    ("port out of range", lambda r: r["gateway"].update(smpp_port=70000), "gateway.smpp_port", "0 to 65535"),
    ("no retry delays", lambda r: r["gateway"].update(retry_backoff=[]), "gateway.retry_backoff", "at least one delay"),
    ("letters in country code", lambda r: r["gateway"].update(country_code="+86"), "gateway.country_code", "digits"),
    ("no mobile prefix", lambda r: r["gateway"].update(mobile_prefixes=[]), "gateway.mobile_prefixes",
     "expected at least one of the national prefixes of mobile numbers, 1 to 10 digits each"),
    ("a mobile prefix with a +", lambda r: r["gateway"].update(mobile_prefixes=["13", "+8614"]),
     "gateway.mobile_prefixes", "got '+8614'"),
    ("a whole number for a mobile prefix", lambda r: r["gateway"].update(mobile_prefixes=["13800138000"]),
     "gateway.mobile_prefixes", "1 to 10 digits each"),
    ("a number for the list of mobile prefixes", lambda r: r["gateway"].update(mobile_prefixes=13),
     "gateway.mobile_prefixes", "expected a list of strings; got 13"),
    ("a trunk prefix with a +", lambda r: r["gateway"].update(trunk_prefix="+0"), "gateway.trunk_prefix",
     "expected digits (\"\": none); got '+0'"),
    ("a number for the trunk prefix", lambda r: r["gateway"].update(trunk_prefix=0), "gateway.trunk_prefix",
     "expected a string"),
    ("a negative retention", lambda r: r["gateway"].update(message_retention=-1), "gateway.message_retention",
     "expected 0 (keep every message for ever) or more seconds; got -1.0"),
    ("a retention as text", lambda r: r["gateway"].update(message_retention="7d"), "gateway.message_retention",
     "expected a number; got '7d'"),
    # Unbound as idle before the gateway asked: a peer that answers every PDU, only quiet, lost its bind.
    ("idle before the gateway asks", lambda r: r["gateway"].update(idle_timeout=5), "gateway.idle_timeout",
     ("expected 0 (never) or more than enquire_link_interval + response_timeout (30 + 10 s): a bind that answers the "
      "gateway's enquire_link is alive, only quiet (enquire_link_interval = 0: none is sent); got 5")),
    ("idle before the answer is due", lambda r: r["gateway"].update(idle_timeout=40), "gateway.idle_timeout",
     "(30 + 10 s)"),
    # Texts to it went to the subscriber 12345678901, and a spam report of it was taken (country code 1).
    ("a code that reads as a subscriber's number", lambda r: (r["gateway"].update(country_code="1", national_number_length=10),
     r["short_codes"].append({"code": "12345678901", "handler": "echo"})), "short_codes[1].code",
     ("12345678901 is also how subscriber 12345678901's number is written (written with the country code): expected "
      "a code no subscriber's number reads as")),
    # A Beijing landline written internationally: texts to it went to the code (it loaded once mobiles alone counted).
    ("a code that is a landline's international number", lambda r: r["short_codes"].append({"code": "8601012345678",
     "handler": "echo"}), "short_codes[1].code", "8601012345678 is also how subscriber 8601012345678's number is written"),
    ("the same written with 00", lambda r: r["short_codes"].append({"code": "008601012345678", "handler": "echo"}),
     "short_codes[1].code", "008601012345678 is also how subscriber 8601012345678's number is written"),
    # Russia: country code 7 and trunk prefix 8 have one digit each, and 74951234567 (a Moscow landline written
    # internationally) was taken for a national number written with its trunk prefix, and loaded.
    ("a code that is a landline's international number, trunk as long as country code", lambda r: (
     r["gateway"].update(country_code="7", national_number_length=10, trunk_prefix="8", mobile_prefixes=["9"]),
     r["short_codes"].append({"code": "74951234567", "handler": "echo"})), "short_codes[1].code",
     "74951234567 is also how subscriber 74951234567's number is written (written with the country code)"),
    ("a national code where no mobile prefix is known", lambda r: (r["gateway"].update(country_code="44",
     national_number_length=10), r["short_codes"].append({"code": "8001234567", "handler": "echo"})),
     "short_codes[1].code", ("8001234567 is also how subscriber 448001234567's number is written ([gateway] "
     "mobile_prefixes unset: any national number may be a mobile's)")),
    # Texts to the subscriber 8613800138001 written nationally went to the code, which had them for its own.
    ("a code that is a subscriber's national number", lambda r: r["short_codes"].append({"code": "13800138001",
     "handler": "echo"}), "short_codes[1].code", "13800138001 is also how subscriber 8613800138001's number is written"),
    ("day 31", lambda r: r["services"].update(billing_day=31), "services.billing_day", "1 to 28"),
    ("reminders end first", lambda r: r["services"].update(reminder_first_day=25, reminder_last_day=21),
     "services.reminder_first_day", "expected a day not after reminder_last_day (21); got 25"),
    # An order on the 26th-28th, free that month only, was charged on the 1st with no reminder before it.
    ("trial orders after the reminder days", lambda r: r["services"].update(trial_last_order_day=28),
     "services.trial_last_order_day", ("expected a day not after reminder_last_day (25): an order after the reminder "
     "days, free that month only, would be charged on the billing day without a reminder; got 28")),
    ("threshold 0", lambda r: r["services"].update(spam_block_threshold=0), "services.spam_block_threshold", "at least 2"),
    ("SP notices never kept", lambda r: r["services"].update(sp_notice_validity=0), "services.sp_notice_validity",
     "above 0"),
    # A share of the dialogues surveyed: above 1 it was taken as "every one", saying nothing of the typo.
    ("survey sample rate above 1", lambda r: r["services"].update(survey_sample_rate=1.5), "services.survey_sample_rate",
     "between 0 and 1"),
    ("negative survey sample rate", lambda r: r["services"].update(survey_sample_rate=-0.1),
     "services.survey_sample_rate", "between 0 and 1"),
    # Counted in characters, they passed, and no bind could carry them: the account could never be bound to.
    ("an account system_id beyond Latin-1", lambda r: account(r, "handset2").update(system_id="系统系统系统"),
     "accounts[1].system_id", ("expected 1 to 15 octets of Latin-1 text, as SMPP carries it (SMPP 3.4 C-Octet String); "
     "'系统系统系统' has characters Latin-1 has not")),
    ("a password beyond Latin-1", lambda r: account(r, "handset2").update(password="密码密码"), "accounts[1].password",
     ("expected at most 8 octets of Latin-1 text, as SMPP carries it (SMPP 3.4 C-Octet String); it has characters "
     "Latin-1 has not")),
    ("a password of 9 octets", lambda r: account(r, "handset2").update(password="handset22"), "accounts[1].password",
     "it is 9 octets"),
    ("a NUL in a password", lambda r: account(r, "handset2").update(password="hand\0set"), "accounts[1].password",
     "it has a NUL, which ends a C-Octet String"),
    ("bad role", lambda r: account(r, "carrier").update(role="bank"), "accounts[2].role", "handset, smsc, sp"),
    ("empty keyword", lambda r: r["services"].update(query_keyword=" "), "services.query_keyword", "not empty"),
    ("one keyword for two commands", lambda r: r["services"].update(unsubscribe_all_keyword="0000"),
     "services.unsubscribe_all_keyword", "other than query_keyword's"),
    ("no help words", lambda r: r["services"].update(help_words=[]), "services.help_words", "at least one word"),
    ("rating 6", lambda r: r["services"]["rating_words"].update(SUPER=6), "services.rating_words.SUPER", "1 to 5"),
    ("rating words as a list", lambda r: r["services"].update(rating_words=["GOOD"]), "services.rating_words",
     "table of words = integers"),
    ("tls without files", lambda r: r.setdefault("tls", {}).update(enabled=True, certfile="/nonexistent/cert.pem",
                                                                   keyfile="/nonexistent/key.pem"),
     "tls.certfile", "no such file"),
    # It named tls.certfile whichever file was left out.
    ("tls without a keyfile", lambda r: r["tls"].update(enabled=True, certfile="/etc/smsgw/cert.pem", keyfile=""),
     "tls.keyfile", "TLS is enabled: certfile and keyfile are required"),
    ("tls without a certfile", lambda r: r["tls"].update(enabled=True, keyfile="/etc/smsgw/key.pem"),
     "tls.certfile", "TLS is enabled: certfile and keyfile are required"),
    ("tls port out of range", lambda r: r["tls"].update(enabled=True, port=70000, certfile="/nonexistent/cert.pem",
                                                        keyfile="/nonexistent/key.pem"), "tls.port", "0 to 65535"),
    # nan compares false with every bound and inf passes the lower ones: neither may pass for a number.
    ("nan retry delay", lambda r: r["gateway"].update(retry_backoff=[2.0, float("nan")]), "gateway.retry_backoff[1]",
     "expected a finite number; got nan"),
    ("nan MO retry delay", lambda r: r["gateway"].update(mo_retry_backoff=[float("nan")]), "gateway.mo_retry_backoff[0]",
     "finite"),
    ("inf timeout", lambda r: r["gateway"].update(response_timeout=float("inf")), "gateway.response_timeout",
     "expected a finite number; got inf"),
    ("nan throughput", lambda r: account(r, "sina").update(throughput=float("nan")), "accounts[3].throughput", "finite"),
    ("nan fee", lambda r: r["catalogue"][1].update(fee=float("nan")), "catalogue[1].fee", "finite"),
    ("-inf in a handler option", lambda r: r["short_codes"][0].update(delay=float("-inf")), "short_codes[0].delay",
     "finite"),
    # A misspelt short code key was taken for a handler option, and the key it should have been reported missing.
    ("a misspelt short code key", lambda r: r["short_codes"][0].update(handlr=r["short_codes"][0].pop("handler")),
     "short_codes[0].handlr", "unknown key; did you mean handler?"),
    ("a misspelt code", lambda r: r["short_codes"][0].update(cde=r["short_codes"][0].pop("code")),
     "short_codes[0].cde", "unknown key; did you mean code?"),
    ("a misspelt handler option", lambda r: r["short_codes"][0].update(prefx="> "), "short_codes[0].prefx",
     "unknown key; did you mean prefix? expected one of ['code', 'handler', 'prefix']"),
    # Taken as it was: replies began with "['Re: ']" or "True".
    ("a list for echo's prefix", lambda r: r["short_codes"][0].update(prefix=["Re: "]), "short_codes[0].prefix",
     "expected a string; got ['Re: ']"),
    ("true for echo's prefix", lambda r: r["short_codes"][0].update(prefix=True), "short_codes[0].prefix",
     "expected a string; got True"),
    ("an option the handler does not take",
     lambda r: r["short_codes"].append({"code": "10086999", "handler": "silent", "prefix": "> "}),
     "short_codes[1].prefix", "unknown key; expected one of ['code', 'handler']"),
    # Two services on one number: the later one silently took the other's traffic.
    ("spam_report is the operator", lambda r: r["services"].update(spam_report="10086"), "services.spam_report",
     "10086 is already services.operator"),
    ("short code is an SP's service code", lambda r: r["short_codes"][0].update(code="1066916"), "short_codes[0].code",
     "1066916 is already accounts[3].service_codes (sina)"),
    ("SP service code is the operator", lambda r: account(r, "tencent")["service_codes"].append("10086"),
     "accounts[4].service_codes (tencent)", "10086 is already services.operator"),
    ("SP service code is a short code", lambda r: account(r, "tencent")["service_codes"].append("10086000"),
     "short_codes[0].code", "10086000 is already accounts[4].service_codes (tencent)"),
    ("two SPs, one service code", lambda r: account(r, "tencent")["service_codes"].append("1066916"),
     "accounts[4].service_codes (tencent)", "1066916 is already accounts[3].service_codes (sina)"),
    ("a short code listed twice", lambda r: r["short_codes"].append({"code": "10086000", "handler": "silent"}),
     "short_codes[1].code", "10086000 is already short_codes[0].code"),
    # Every number starting with a code is that code's: a code over a whole number range took all its subscribers.
    ("short code over a number range", lambda r: r["short_codes"][0].update(code="138"), "short_codes[0].code",
     "138 would take every number of accounts[0].numbers '86138' (handset)"),
    ("service code over a number range", lambda r: account(r, "sina")["service_codes"].append("13"),
     "accounts[3].service_codes (sina)", "13 would take every number of accounts[0].numbers '86138' (handset)"),
    # A prefix that can never begin a subscriber's number: the account's binds silently got nothing.
    ("a national-form prefix", lambda r: account(r, "handset2").update(numbers=["137"]), "accounts[1].numbers",
     "'137' can match no subscriber (handset2): expected the start of a number in international form"),
    ("a national-form prefix, the suggestion", lambda r: account(r, "handset2").update(numbers=["137"]),
     "accounts[1].numbers", "(137 -> 86137?)"),
    ("a short code for a prefix", lambda r: account(r, "carrier")["numbers"].append("10086"), "accounts[2].numbers",
     "'10086' can match no subscriber (carrier)"),
    ("a prefix longer than a number", lambda r: account(r, "handset").update(numbers=["86138001380001"]),
     "accounts[0].numbers", "at most 13 digits in all"),
    # str.isdigit takes full-width and superscript digits, which no number written in SMPP is: the number was dead.
    ("a full-width digit in a prefix", lambda r: account(r, "handset2").update(numbers=["86１37"]), "accounts[1].numbers",
     "expected digits only; got '86１37'"),
    ("a superscript in a service code", lambda r: account(r, "sina").update(service_codes=["1066916²"]),
     "accounts[3].service_codes", "expected digits only; got '1066916²'"),
    ("a full-width short code", lambda r: r["short_codes"][0].update(code="１００８６０００"), "short_codes[0].code",
     "expected a string of digits; got '１００８６０００'"),
    ("a full-width operator", lambda r: r["services"].update(operator="１００８６"), "services.operator",
     "expected a short code (digits); got '１００８６'"),
    ("a full-width spam report code", lambda r: r["services"].update(spam_report="10086９99"), "services.spam_report",
     "digits"),
    ("a full-width rating code", lambda r: r["services"].update(rating="10086７00"), "services.rating", "digits"),
    ("a full-width country code", lambda r: r["gateway"].update(country_code="８６"), "gateway.country_code", "digits"),
    # No SMPP address carries more than 20 digits: these started, and could never be texted or sent from.
    ("a short code of 22 digits", lambda r: r["short_codes"][0].update(code="1008600012345678901234"),
     "short_codes[0].code", "1008600012345678901234 is 22 digits; an SMPP address has at most 20 (SMPP 3.4 5.2)"),
    ("a service code of 21 digits", lambda r: account(r, "tencent")["service_codes"].append("106688812345678901234"),
     "accounts[4].service_codes (tencent)", "is 21 digits; an SMPP address has at most 20"),
    ("an operator code of 21 digits", lambda r: r["services"].update(operator="100861234567890123456"),
     "services.operator", "is 21 digits"),
    ("numbers of 42 digits", lambda r: r["gateway"].update(national_number_length=40),
     "gateway.national_number_length", ("expected at most 18 digits: after country code 86, a number fits no SMPP "
                                        "address beyond 20 digits (SMPP 3.4 5.2); got 40")),
    ("empty operator", lambda r: r["services"].update(operator=""), "services.operator", "expected a short code (digits)"),
    ("letters for the rating code", lambda r: r["services"].update(rating="CS"), "services.rating", "digits"),
    ("empty gateway system_id", lambda r: r["gateway"].update(system_id=""), "gateway.system_id",
     "expected 1 to 15 octets of Latin-1 text, as SMPP carries it (SMPP 3.4 C-Octet String); '' is 0 octets"),
    ("a gateway system_id of 16 octets", lambda r: r["gateway"].update(system_id="smsgw-beijing-01"), "gateway.system_id",
     "'smsgw-beijing-01' is 16 octets"),
    ("empty catalogue keyword", lambda r: r["catalogue"][0].update(keyword=" "), "catalogue[0].keyword", "not empty"),
    # SP notices are space-separated key=value pairs: `keyword=TQ BJ` was read back as keyword TQ.
    ("a keyword of two words", lambda r: r["catalogue"][1].update(keyword="TQ BJ"), "catalogue[1].keyword",
     "expected one word without spaces or '=' (SP notices carry it as keyword=<word>); got 'TQ BJ'"),
    ("a keyword with a full-width space", lambda r: r["catalogue"][1].update(keyword="TQ\u3000BJ"),
     "catalogue[1].keyword", "without spaces"),
    ("a keyword with =", lambda r: r["catalogue"][1].update(keyword="TQ=BJ"), "catalogue[1].keyword", "or '='"),
    # 6,000 characters a name: three such services made a 0000 listing of more than 255 parts, refused for good.
    ("a service name of 41 characters", lambda r: r["catalogue"][0].update(name="新" * 41), "catalogue[0].name",
     "expected a name of 1 to 40 printable characters, without spaces around it (subscribers' texts show it)"),
    ("an empty SP name", lambda r: r["catalogue"][1].update(sp_name=""), "catalogue[1].sp_name", "1 to 40 printable"),
    ("a zero-width space in a name", lambda r: r["catalogue"][1].update(name_en="Weather\u200b"),
     "catalogue[1].name_en", "got 'Weather\\u200b'"),
    # Spaces around a name doubled the texts' own ("You have unsubscribed from  Weather provided by ...").
    ("a space before a name", lambda r: r["catalogue"][1].update(name_en=" Weather"), "catalogue[1].name_en",
     "without spaces around it"),
    ("a full-width space after a name", lambda r: r["catalogue"][1].update(name_en="Weather\u3000"),
     "catalogue[1].name_en", "without spaces around it"),
    ("a right-to-left override in a company", lambda r: r["catalogue"][2].update(sp_company="\u202eevil"),
     "catalogue[2].sp_company", "printable"),
    ("a newline in an English SP name", lambda r: r["catalogue"][0].update(sp_name_en="Sina\nNews"),
     "catalogue[0].sp_name_en", "printable"),
    # The customer-service number the order confirmation shows: "" confirmed an order with no number to call, and
    # a newline or a right-to-left override reached the handset.
    ("an empty phone", lambda r: r["catalogue"][0].update(phone=""), "catalogue[0].phone",
     ("expected a telephone number of up to 20 characters: digits, perhaps a + first and single spaces or hyphens "
      "between them (subscribers' texts show it: 9510567, 400-670-0700); got ''")),
    ("a right-to-left override and a newline for a phone", lambda r: r["catalogue"][1].update(phone="\u202e\n"),
     "catalogue[1].phone", "got '\\u202e\\n'"),
    ("a zero-width space in a phone", lambda r: r["catalogue"][1].update(phone="9510567\u200b"), "catalogue[1].phone",
     "telephone number"),
    ("words for a phone", lambda r: r["catalogue"][2].update(phone="客服热线"), "catalogue[2].phone", "digits"),
    ("a full-width phone", lambda r: r["catalogue"][2].update(phone="９５１０５６７"), "catalogue[2].phone", "digits"),
    ("a space after a phone", lambda r: r["catalogue"][2].update(phone="9510567 "), "catalogue[2].phone", "between them"),
    ("a phone of 21 characters", lambda r: r["catalogue"][2].update(phone="+86 10 1234 5678 9012"), "catalogue[2].phone",
     "up to 20 characters"),
    ("a service id with a space", lambda r: r["catalogue"][0].update(id="sina news"), "catalogue[0].id",
     "(SP notices carry it as service=<word>); got 'sina news'"),
    ("a service id with =", lambda r: r["catalogue"][0].update(id="sina=news"), "catalogue[0].id", "without spaces or '='"),
    ("an empty service id", lambda r: r["catalogue"][0].update(id=""), "catalogue[0].id", "got ''"),
    ("a type of business reminders cannot name", lambda r: r["catalogue"][2].update(kind="WAP"), "catalogue[2].kind",
     "expected one of ['sms', 'mms', 'wap'], got 'WAP'"),
    ("a keyword twice on a code, once full-width", lambda r: r["catalogue"][1].update(keyword="ｔｔ"),
     "catalogue[1].keyword", "'ｔｔ' is already used on 1066916"),
    ("a word that confirms and declines", lambda r: r["services"]["decline_words"].append("y"), "services.decline_words",
     "other than confirm_words's; 'y' is both"),
    ("query keyword is a help word", lambda r: r["services"].update(query_keyword="０"), "services.help_words",
     "other than query_keyword's; '0' is both"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "key", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_value_names_the_file_the_key_and_what_was_expected(edit, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(changed(edit), "/etc/smsgw/site.toml")
    error = raised.value
    assert (error.path, error.key) == ("/etc/smsgw/site.toml", key)
    assert expected in error.problem
    assert str(error).startswith(f"/etc/smsgw/site.toml: {key}: ")


def tables_replaced(name: str, instead: str) -> Callable[[str], str]:
    """An edit of the built-in config's text: its [name] or [[name]] tables gone, the line `instead` at the top."""
    tables = re.compile(rf"^\[\[?{name}\]\]?\n.*?(?=^\[|\Z)", re.DOTALL | re.MULTILINE)
    return lambda text: f"{instead}\n{tables.sub('', text)}"


# (what is wrong, (text, its replacement) in the built-in config or an edit of its text, the key named, what was
# expected: {directory} is the config file's)
REFUSED_IN_A_FILE = [
    # SPEC 3.3: one reporter alone can never get a number blocked. At 1 the first report blocked it network-wide.
    ("one reporter blocks a number", ("spam_block_threshold = 5 ", "spam_block_threshold = 1 "),
     "services.spam_block_threshold", ("expected at least 2 distinct reporters (one reporter alone must never block "
                                       "a number network-wide: SPEC 3.3); got 1")),
    # A key of the other role was taken at its word: subscribers' texts to 135... numbers went to the SP sina.
    ("numbers on an sp account",
     ('role = "sp"\nservice_codes = ["1066916"]\n', 'role = "sp"\nservice_codes = ["1066916"]\nnumbers = ["86135"]\n'),
     "accounts[3].numbers",
     "not a key of sp accounts (expected service_codes only)"),
    # ... and a handset's "service code" refused every subscriber's text to it, while the handset could not send from it.
    ("service codes on a handset account", ('numbers = ["86137"]\n', 'numbers = ["86137"]\nservice_codes = ["1066999"]\n'),
     "accounts[1].service_codes", "not a key of handset accounts (expected numbers only)"),
    ("service codes on an smsc account", ('role = "smsc"\n', 'role = "smsc"\nservice_codes = ["1066999"]\n'),
     "accounts[2].service_codes", "not a key of smsc accounts (expected numbers only)"),
    # It started, then answered every text to 10011 with an empty "Services you can order:" list.
    ("the order handler on a short code",
     ('handler = "echo"', 'handler = "echo"\n\n[[short_codes]]\ncode = "10011"\nhandler = "order"'),
     "short_codes[1].handler", ("order serves the catalogue's service codes ([[catalogue]] service_code), which have "
                                "it without a [[short_codes]] entry; 10011 has no service to order (expected one of "
                                "customer_service, echo, rating, silent, spam_report)")),
    # A relative name is the config file's directory's (as its reply texts are), so the error says where it looked.
    ("a TLS certificate not beside the config",
     ('enabled = false\nport = 2776\ncertfile = ""\nkeyfile = ""',
      'enabled = true\nport = 2776\ncertfile = "cert.pem"\nkeyfile = "key.pem"'),
     "tls.certfile", "no such file: '{directory}/cert.pem' (a relative name is read from the config file's directory)"),
    # (It said "no such file" of a directory that is there.)
    ("a directory for the TLS key",
     ('enabled = false\nport = 2776\ncertfile = ""\nkeyfile = ""', f'enabled = true\nport = 2776\ncertfile = "{DEFAULT_CONFIG}"\nkeyfile = "."'),
     "tls.keyfile", "a directory, not a file: '{directory}' (a relative name is read from the config file's directory)"),
    # Refusals no test ran (coverage review): a site's mistake each, refused with its key rather than started with.
    ("a misspelt section", ("[tls]", "[gatway]\nwindow = 100\n\n[tls]"), "gatway",
     "unknown section; expected one of ['accounts', 'catalogue', 'gateway', 'services', 'short_codes', 'tls']"),
    ("a number for the [gateway] table", tables_replaced("gateway", "gateway = 3"), "gateway", "expected a table"),
    ("no accounts", tables_replaced("accounts", ""), "accounts", "at least one [[accounts]] table is required"),
    ("a number for the accounts", tables_replaced("accounts", "accounts = 5"), "accounts",
     "expected a list of [[accounts]] tables"),
    ("a list of codes for the short codes", tables_replaced("short_codes", 'short_codes = ["10086000"]'), "short_codes",
     "expected a list of [[short_codes]] tables"),
    ("an MO retry after no delay", ("mo_retry_backoff = [1, 5, 30, 120]", "mo_retry_backoff = [1, 0]"),
     "gateway.mo_retry_backoff", "expected delays above 0 seconds (none: give up at the first failure)"),
    ("a retry delay as text", ("retry_backoff = [2, 10, 30, 120, 600]", 'retry_backoff = ["2"]'),
     "gateway.retry_backoff", "expected a list of numbers; got '2' in it"),
    ("two accounts, one system_id", ('system_id = "handset2"', 'system_id = "handset"'), "accounts[1].system_id",
     "duplicate system_id 'handset'"),
    ("a handset account without numbers", ('numbers = ["86137"]', "numbers = []"), "accounts[1].numbers",
     "a handset account needs MSISDN prefixes"),
    ("a number prefix as a number", ('numbers = ["86137"]', "numbers = [86137]"), "accounts[1].numbers",
     "expected a list of strings; got 86137 in it"),
    ("an sp account without service codes", ('service_codes = ["1066916"]', "service_codes = []"),
     "accounts[3].service_codes", "an sp account needs at least one service code"),
    ("an account no bind may use", ("max_binds = 50", "max_binds = 0"), "accounts[1].max_binds", "expected at least 1"),
    ("a short code without its handler", ('handler = "echo"', 'handler = "echo"\n\n[[short_codes]]\ncode = "10086001"'),
     "short_codes[1].handler", "missing (required)"),
    ("a number for a handler", ('handler = "echo"', 'handler = "echo"\n\n[[short_codes]]\ncode = "10086001"\nhandler = 5'),
     "short_codes[1].handler", "expected a handler name (string)"),
    ("a short code as a number", ('handler = "echo"', 'handler = "echo"\n\n[[short_codes]]\ncode = 10086001\nhandler = "echo"'),
     "short_codes[1].code", "expected a string of digits; got 10086001"),
    ("a language the replies are not in", ('language = "zh"', 'language = "fr"'), "services.language",
     "expected zh or en; got 'fr'"),
    ("a rating of true", ('"非常满意" = 1,', '"非常满意" = true,'), "services.rating_words",
     "expected a table of words = integers; got {{'非常满意': True,"),
    ("two services, one id", ('id = "sina-weather"', 'id = "sina-news"'), "catalogue[1].id",
     "duplicate service id 'sina-news'"),
    ("a service without its fee", ("fee = 30 ", "# fee = 30 "), "catalogue[0].fee", "missing (required)"),
    ("a negative fee", ("fee = 30 ", "fee = -1 "), "catalogue[0].fee", "expected a fee of 0 or more (yuan per month)"),
    ("a fee below a fen", ("fee = 30 ", "fee = 0.004 "), "catalogue[0].fee",
     "expected yuan to the fen, at most 2 decimals (as 30 or 0.5); got 0.004"),
    ("a fee to a tenth of a fen", ("fee = 30 ", "fee = 30.125 "), "catalogue[0].fee", "got 30.125"),
    ("a service of a handset account", ('sp = "sina"', 'sp = "handset"'), "catalogue[0].sp",
     "'handset' is not an sp account in [[accounts]]"),
    ("a service on another SP's code", ('service_code = "1066916"', 'service_code = "1066888"'),
     "catalogue[0].service_code", "1066888 is not one of sina's service_codes"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "key", "expected"), [c[1:] for c in REFUSED_IN_A_FILE], ids=[c[0] for c in REFUSED_IN_A_FILE])
def test_a_config_file_the_gateway_would_misbehave_with_is_refused_naming_it_and_the_key(
    tmp_path: Path, change: tuple[str, str] | Callable[[str], str], key: str, expected: str
) -> None:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    edited = change(text) if callable(change) else text.replace(*change, 1)
    assert edited != text
    site = tmp_path / "site.toml"
    site.write_text(edited, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(site)
    assert str(raised.value).startswith(f"{site}: {key}: ")
    assert expected.format(directory=tmp_path) in raised.value.problem


@pytest.mark.parametrize("fee", [0, 0.29, 0.5, 30, 1234.56])
def test_a_fee_to_the_fen_is_taken_as_written(fee: float) -> None:
    """(0.29 is 28.999999999999996 fen as a float: to the fen all the same.)"""
    config = parse_config(changed(lambda r: r["catalogue"][0].update(fee=fee)), "/etc/smsgw/site.toml")
    assert config.catalogue[0].fee == fee


@pytest.mark.parametrize("password", ["密码密码", "handset22", "hand\0set"])
def test_a_password_refused_is_not_shown(password: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(changed(lambda r: account(r, "handset2").update(password=password)), "/etc/smsgw/site.toml")
    assert raised.value.key == "accounts[1].password"
    assert password not in str(raised.value) and repr(password) not in str(raised.value)


def test_codes_and_numbers_of_20_digits_fit() -> None:
    def longest(raw: dict[str, Any]) -> None:
        raw["gateway"].update(national_number_length=18)
        raw["short_codes"][0].update(code="10086000123456789012")
        for entry in raw["accounts"]:
            entry["numbers"] = [prefix + "0" * (20 - len(prefix)) for prefix in entry.get("numbers", ())]

    config = parse_config(changed(longest))
    assert (config.number_plan().msisdn_length, len(config.short_codes[0].code)) == (20, 20)


@pytest.mark.parametrize(
    ("edit", "loaded", "value"),
    [(lambda r: r["catalogue"][0].update(name="新" * 40), lambda c: c.catalogue[0].name, "新" * 40),
     (lambda r: r["services"].update(trial_last_order_day=25, reminder_last_day=25),
      lambda c: c.services.trial_last_order_day, 25),
     (lambda r: r["gateway"].update(smpp_port=65535), lambda c: c.gateway.smpp_port, 65535),
     (lambda r: r["catalogue"][0].update(phone="+86 10 1234-56789012"), lambda c: c.catalogue[0].phone,
      "+86 10 1234-56789012")],
    ids=["a service name of 40 characters", "trial orders up to the last reminder day", "port 65535",
         "a phone of 20 characters with a +, spaces and a hyphen"],
)  # fmt: skip
def test_a_value_at_the_limit_a_refusal_names_loads(edit, loaded, value) -> None:
    """The refusals above name their limits ("1 to 40 printable characters", "a day not after reminder_last_day",
    "a port from 0 to 65535"): a site's config at the limit must start, not be refused with that very text."""
    assert loaded(parse_config(changed(edit))) == value


@pytest.mark.parametrize(("enquire_link_interval", "idle_timeout"), [(30, 40.5), (0, 5), (5, 0)])
def test_an_idle_timeout_after_the_answer_to_an_enquire_link_or_with_none_sent(enquire_link_interval, idle_timeout) -> None:
    settings = {"enquire_link_interval": enquire_link_interval, "idle_timeout": idle_timeout}
    config = parse_config(changed(lambda r: r["gateway"].update(settings)))
    assert (config.gateway.enquire_link_interval, config.gateway.idle_timeout) == (enquire_link_interval, idle_timeout)


def test_the_default_config_is_valid() -> None:
    config = parse_config(copy.deepcopy(DEFAULT), DEFAULT_CONFIG)
    assert {a.system_id for a in config.accounts} >= {"handset", "handset2", "carrier", "sina", "tencent"}


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--smpp-port", "0", "--http-port", "0", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("line", "wrong", "error"),
    [("window = 100", "window = 0", "gateway.window: expected at least 1; got 0"),
     ("message_retention = 604800", "message_retention = -86400",
      "gateway.message_retention: expected 0 (keep every message for ever) or more seconds; got -86400.0"),
     ('password = "handset2"', 'password = "密码密码"',
      ("accounts[1].password: expected at most 8 octets of Latin-1 text, as SMPP carries it (SMPP 3.4 C-Octet "
       "String); it has characters Latin-1 has not")),
     ('operator = "10086"', 'operator = "１００８６"', "services.operator: expected a short code (digits); got '１００８６'"),
     ("national_number_length = 11", "national_number_length = 40",
      "gateway.national_number_length: expected at most 18 digits"),
     ("idle_timeout = 300", "idle_timeout = 5",
      "gateway.idle_timeout: expected 0 (never) or more than enquire_link_interval + response_timeout (30 + 10 s)"),
     # It failed later, as "cannot start: cannot open SQLite store at ''", naming neither the file nor the key.
     ('database = "var/smsgw.db"', 'database = ""', "gateway.database: expected the SQLite file's name (not empty)"),
     ('handler = "echo" ', 'handler = "echo"\nprefix = true ', "short_codes[0].prefix: expected a string; got True"),
     # It listed `order` among the names known, which is refused there (below).
     ('handler = "echo" ', 'handler = "ecko" ',
      "short_codes[0].handler: unknown handler 'ecko'; known: customer_service, echo, rating, silent, spam_report"),
     # 8 characters: it started, then dropped every bind's connection, its bind_resp failing to encode.
     ('system_id = "smsgw"', 'system_id = "网关网关网关网关"',
      ("gateway.system_id: expected 1 to 15 octets of Latin-1 text, as SMPP carries it (SMPP 3.4 C-Octet String); "
       "'网关网关网关网关' has characters Latin-1 has not"))],
)  # fmt: skip
def test_smsgw_serve_refuses_a_bad_config_file_naming_it_and_the_key(tmp_path: Path, line: str, wrong: str, error: str) -> None:
    bad = tmp_path / "site.toml"
    bad.write_text(DEFAULT_CONFIG.read_text().replace(line, wrong, 1))
    result = serve("--config", str(bad), "--db", str(tmp_path / "gw.db"))
    assert result.returncode == 2
    assert f"{bad}: {error}" in result.stderr
    assert "Traceback" not in result.stderr


def test_smsgw_serve_refuses_a_password_of_the_wrong_type_without_printing_it(tmp_path: Path) -> None:
    """`password = 73915824` (unquoted: an integer) was refused with "got 73915824": the password in the log."""
    bad = tmp_path / "site.toml"
    bad.write_text(DEFAULT_CONFIG.read_text().replace('password = "carrier"', "password = 73915824", 1))
    result = serve("--config", str(bad), "--db", str(tmp_path / "gw.db"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"smsgw: bad config: {bad}: accounts[2].password: expected a string; got an integer"


def test_smsgw_serve_refuses_a_file_that_is_not_a_database_without_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are my notes, not a database" * 100)
    refused_as_it_is(db, "file is not a database")


def test_smsgw_serve_refuses_a_directory_for_its_database_and_makes_nothing_beside_it(tmp_path: Path) -> None:
    """`--db` naming a directory was refused, and left a `<directory>.lock` beside it, as every database refused did."""
    db = tmp_path / "gw.db"
    db.mkdir()
    result = serve("--db", str(db))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"smsgw: cannot start: cannot open SQLite store at {str(db)!r}: [Errno 21] Is a "
                                     f"directory: {str(db)!r}")  # fmt: skip
    assert list(tmp_path.iterdir()) == [db]


def test_smsgw_serve_refuses_another_applications_database_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    """`--db crm.db` got our tables and WAL added to another application's file, and the gateway served from it."""
    db = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
    result = serve("--db", str(db))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"smsgw: cannot start: cannot open SQLite store at {str(db)!r}: another "
                                     "application's database (tables customers, no smsgw schema version); smsgw needs "
                                     "a file of its own")  # fmt: skip
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert (tables, conn.execute("PRAGMA journal_mode").fetchone()[0]) == (["customers"], "delete")


def refused_as_it_is(db: Path, reason: str) -> None:
    """`smsgw serve --db db` exits 1 with one line naming `reason`, no traceback, the file left as it was: journal
    mode, user_version, tables and rows, every byte; and nothing made beside it: no -wal, no -shm, no `<db>.lock` (one
    was left beside every database refused)."""
    before, beside = db.read_bytes(), sorted(db.parent.iterdir())
    result = serve("--db", str(db))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"smsgw: cannot start: cannot open SQLite store at {str(db)!r}: {reason}"
    assert db.read_bytes() == before
    assert sorted(db.parent.iterdir()) == beside


@pytest.mark.parametrize(
    ("statements", "why"),
    [
        # Android's SQLiteOpenHelper and many ORMs set user_version too.
        (["CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", "PRAGMA user_version = 1"],
         "tables customers, schema version 1 without smsgw's tables messages"),
        # A table named like ours, but our first step writes its tables and version 1 together.
        (["CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO messages (body) VALUES ('hi')"],
         "tables messages, no smsgw schema version"),
        # Only a view: it has no table, and was taken for an empty file (then WAL, our tables, served from).
        (["CREATE VIEW report_view AS SELECT 1 AS one"], "view report_view, no smsgw schema version"),
    ],
    ids=["foreign-tables-with-a-user-version-of-ours", "foreign-messages-table-without-version", "foreign-view-only"],
)  # fmt: skip
def test_smsgw_serve_refuses_another_applications_database_whatever_its_version_or_table_names(
    tmp_path: Path, statements: list[str], why: str
) -> None:
    """Such a file was switched to WAL (and, at user_version 1, given our tables and version 5) before the start failed."""
    db = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    refused_as_it_is(db, f"another application's database ({why}); smsgw needs a file of its own")


@pytest.mark.parametrize("lock_file_there", [False, True], ids=["alone", "with-the-lock-file-of-its-last-run"])
def test_smsgw_serve_refuses_the_database_of_a_newer_gateway_naming_both_versions(
    tmp_path: Path, lock_file_there: bool
) -> None:
    """After a downgrade the operator must be told which schema the file has and which this gateway knows (to pick
    the release to go back to or restore a backup), in one line without a traceback, the file left as it was. The
    lock file the newer gateway left stays: the refused start removes only one it made."""
    db = tmp_path / "gw.db"
    if lock_file_there:
        (tmp_path / "gw.db.lock").write_text("4242\n")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        migrate(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    refused_as_it_is(db, f"schema version {SCHEMA_VERSION + 1} is newer than this gateway's {SCHEMA_VERSION}")


def test_smsgw_serve_refuses_a_database_with_damaged_pages_without_a_traceback(tmp_path: Path) -> None:
    """Its header opens; the waiting MTs read at start do not."""
    db = tmp_path / "gw.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        migrate(conn)
        conn.executemany(
            "INSERT INTO messages (id, direction, status, account, source_addr, dest_addr, short_message, data_coding,"
            " esm_class, registered_delivery, service_type, source_addr_ton, source_addr_npi, dest_addr_ton,"
            " dest_addr_npi, tlvs, submitted_at, expires_at, attempts, next_attempt_at, error, extra, accepted_at)"
            " VALUES (?, 'mt', 'enroute', 'handset', '8613800000001', ?, x'41', 0, 0, 0, '', 0, 0, 0, 0, x'', 0, 9e9,"
            " 0, 0, 0, '{}', 0)",
            [(f"id{i}", f"86137{i:08d}") for i in range(3000)],
        )
        conn.commit()
    with db.open("r+b") as f:
        f.seek(4096 * 3)
        f.write(bytes(range(256)) * 64)  # four pages of nonsense after the schema's
    result = serve("--db", str(db))
    assert result.returncode == 1, result.stderr
    assert f"cannot start: cannot read SQLite store at {str(db)!r}: database disk image is malformed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_handler_takes_the_options_it_reads() -> None:
    config = parse_config(changed(lambda r: r["short_codes"][0].update(prefix="echo: ")))
    assert (config.short_codes[0].handler, config.short_codes[0].options) == ("echo", {"prefix": "echo: "})


def test_a_short_code_may_take_over_one_of_the_services_codes() -> None:
    """A site's own handler on 10086999 (tests/e2e/test_fleet_cli.py silences it so): the one second claim allowed."""
    config = parse_config(changed(lambda r: r["short_codes"].append({"code": "10086999", "handler": "silent"})))
    assert [s.code for s in config.short_codes] == ["10086000", "10086999"]


@pytest.mark.parametrize("flag", ["--smpp-port", "--http-port"])
@pytest.mark.parametrize("value", ["68467", "-1", "x"])
def test_smsgw_serve_refuses_a_port_flag_out_of_range(flag: str, value: str, tmp_path: Path) -> None:
    """68467 was taken as 68467 & 0xFFFF = 2931, and -1 ended in "Servname not supported"."""
    result = serve("--db", str(tmp_path / "gw.db"), flag, value)
    assert result.returncode == 2
    assert f"argument {flag}: expected a port from 0 to 65535 (0: any free port); got '{value}'" in result.stderr
    assert not (tmp_path / "gw.db").exists()


def test_a_port_flag_takes_every_port_the_config_takes() -> None:
    """`--smpp-port 65535` is a port, as `smpp_port = 65535` is (the flag's check is the config's)."""
    assert [port(value) for value in ("0", "2775", "65535")] == [0, 2775, 65535]


def test_smsgw_serve_help_gives_the_config_as_the_ports_default() -> None:
    """It claimed "default 2775" and "default 8775" whatever the config said."""
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert "default: the config's gateway.smpp_port, 2775 in the default config" in result.stdout
    assert "default: the config's gateway.http_port, 8775 in the default config" in result.stdout
    assert "default 2775" not in result.stdout


def test_smsgw_serve_names_a_host_that_does_not_resolve(tmp_path: Path) -> None:
    """It said "cannot start: [Errno -2] Name or service not known", naming no host."""
    result = serve("--db", str(tmp_path / "gw.db"), "--host", "no-such-host.invalid")  # (the last --host counts)
    assert result.returncode == 1
    assert result.stderr.startswith("smsgw: cannot start: cannot listen on 'no-such-host.invalid': ")
    assert not (tmp_path / "gw.db").exists()


def test_smsgw_serve_listens_on_every_interface_for_an_empty_host(tmp_path: Path, start_gateway, tls_files) -> None:
    """smpp_host = "" and http_host = "" (every interface, as asyncio and aiohttp take it) failed the start with
    "cannot listen on '': Name or service not known" once the hosts were looked up before opening. The TLS port takes
    IPv4 and IPv6 on one port number (its IPv6 socket IPv6 only, else it would take IPv4's too: the two collide)."""
    cert, key = tls_files
    tls_port = free_port()
    config = tls_config_file(tmp_path, cert, key)
    text = config.read_text(encoding="utf-8")
    assert 'smpp_host = "0.0.0.0"' in text and 'http_host = "0.0.0.0"' in text and "[tls]\nenabled = true\nport = 0\n" in text
    config.write_text(text.replace('smpp_host = "0.0.0.0"', 'smpp_host = ""').replace('http_host = "0.0.0.0"', 'http_host = ""')
                      .replace("[tls]\nenabled = true\nport = 0\n", f"[tls]\nenabled = true\nport = {tls_port}\n"))
    gateway = start_gateway(tmp_path / "gw.db", config=config, host=None)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}/health", timeout=10) as response:
            assert response.status == 200
        socket.create_connection(("127.0.0.1", gateway.smpp_port), timeout=10).close()
        for host in ("127.0.0.1", "::1") if socket.has_ipv6 else ("127.0.0.1",):
            with context.wrap_socket(socket.create_connection((host, tls_port), timeout=10)) as tls:
                assert tls.version()
    finally:
        assert gateway.terminate() == 0


def test_smsgw_serve_listens_on_every_interface_for_an_empty_host_flag(tmp_path: Path, start_gateway) -> None:
    """`--host ""` was ignored (`host or` the config's): the config's 127.0.0.1 was listened on, where a config's
    host "" is every interface. 127.0.0.2 is a loopback address no socket bound to 127.0.0.1 answers on."""
    config = config_file(tmp_path, smpp_host="127.0.0.1", http_host="127.0.0.1")
    gateway = start_gateway(tmp_path / "gw.db", config=config, host="")
    try:
        with urllib.request.urlopen(f"http://127.0.0.2:{gateway.http_port}/health", timeout=10) as response:
            assert response.status == 200
        socket.create_connection(("127.0.0.2", gateway.smpp_port), timeout=10).close()
    finally:
        assert gateway.terminate() == 0


def test_smsgw_serve_refuses_a_config_file_that_is_not_there(tmp_path: Path) -> None:
    """A mistyped --config: the site would otherwise learn of it from a traceback, or not at all."""
    result = serve("--config", str(tmp_path / "sitee.toml"), "--db", str(tmp_path / "gw.db"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"smsgw: bad config: {tmp_path / 'sitee.toml'}: -: file not found"
    assert not (tmp_path / "gw.db").exists()


def test_smsgw_serve_refuses_a_directory_for_a_config_file(tmp_path: Path) -> None:
    result = serve("--config", str(tmp_path), "--db", str(tmp_path / "gw.db"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"smsgw: bad config: {tmp_path}: -: is a directory; expected a TOML file"


def test_smsgw_serve_refuses_a_config_file_saved_as_gbk(tmp_path: Path) -> None:
    """tomllib reads UTF-8 only; the GBK many Chinese editors save in ended in a UnicodeDecodeError traceback."""
    config = tmp_path / "site.toml"
    config.write_bytes(DEFAULT_CONFIG.read_text(encoding="utf-8").encode("gbk"))
    result = serve("--config", str(config), "--db", str(tmp_path / "gw.db"))
    assert result.returncode == 2
    assert f"smsgw: bad config: {config}: -: not UTF-8 text (byte " in result.stderr
    assert "save it as UTF-8" in result.stderr and "Traceback" not in result.stderr


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """UTF-8 all the same (Notepad's, many Chinese editors'): it was "not valid TOML: Invalid statement (at line 1,
    column 1)"."""
    site = tmp_path / "site.toml"
    site.write_bytes(b"\xef\xbb\xbf" + DEFAULT_CONFIG.read_bytes())
    assert replace(load_config(site), source="") == replace(load_config(DEFAULT_CONFIG), source="")


def test_smsgw_serve_refuses_an_empty_db_flag(tmp_path: Path) -> None:
    """It was ignored: the config's database was used, var/smsgw.db under the working directory."""
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--db", "", "--smpp-port", "0", "--http-port", "0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "argument --db: expected a file name; got ''" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_smsgw_serve_refuses_reply_texts_saved_as_gbk(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_CONFIG, tmp_path / "site.toml")
    shutil.copy(DEFAULT_CONFIG.parent / "messages.en.toml", tmp_path)
    texts = (DEFAULT_CONFIG.parent / "messages.zh.toml").read_text(encoding="utf-8")
    (tmp_path / "messages.zh.toml").write_bytes(texts.encode("gbk"))
    result = serve("--config", str(tmp_path / "site.toml"), "--db", str(tmp_path / "gw.db"))
    assert result.returncode == 2
    assert f"smsgw: bad config: {tmp_path / 'messages.zh.toml'}: -: not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr
