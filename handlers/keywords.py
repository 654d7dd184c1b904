"""How subscribers' texts are compared with keywords.

Trimmed, case-insensitive, with full-width digits, letters and punctuation
(`００００`, `Ｙ`, `，`, `＊`) folded to half-width, as phones with Chinese
input methods send them, and without the full stop, exclamation mark, tilde
or comma such input methods end a text with on their own (`是。` is `是`).
A question mark stays: `是？` asks, it does not confirm a charge.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from gateway.numbers import ascii_digits

# Ideographic punctuation NFKC leaves alone but subscribers use as separators.
_EXTRA = str.maketrans({"、": ",", "。": ".", "　": " "})
_SERIAL_SEPARATORS = re.compile(r"[,;\s]+")
_TRAILING = ".!~,"
# Nothing a subscriber reads: control characters other than whitespace, zero-width and direction marks, U+FFFD (what
# undecodable octets became). A text of nothing else is empty, as one of spaces is.
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                        "\u2066-\u206f\ufeff\ufff9-\ufffb\ufffd]+")
SERIAL_DIGITS = 6  # a part with more digits is no serial (a phone number, a digit run): the text is no list of serials


def fold(text: str) -> str:
    """The text as keywords are matched: NFKC (full-width -> half-width), without what is invisible, trimmed of
    spaces and of trailing `.!~,` (`。！～，、` once folded), upper-cased."""
    text = unicodedata.normalize("NFKC", text).translate(_EXTRA)
    return _without_trailing(_INVISIBLE.sub("", text).strip()).upper()


def _without_trailing(text: str) -> str:
    """`text` less its trailing spaces and `.!~,`, looked at from its end only: a regular expression anchored at the
    end tried every run of them in the text, and 39,000 dots between two letters held the event loop 6 s."""
    end = len(text)
    while end and (text[end - 1] in _TRAILING or text[end - 1].isspace()):
        end -= 1
    return text[:end]


def fold_each(text: str) -> str:
    """fold()'s NFKC, ideographic punctuation and upper-casing, character by character, so that the text keeps its
    length: a place found in it is the same place in the text as written (to cut out the subscriber's own words).
    A character that does not fold to exactly one (`㎏`, `ß`) stays as it is, except an ellipsis (`…`, `‥`, the
    way Chinese input methods end a text), which becomes one full stop. Neither trimmed nor stripped."""
    return "".join(map(_fold_char, text))


@lru_cache(maxsize=1024)
def _fold_char(char: str) -> str:
    folded = unicodedata.normalize("NFKC", char).translate(_EXTRA).upper()
    if len(folded) == 1:
        return folded
    return "." if folded.strip(".") == "" else char


@lru_cache(maxsize=64)
def folded(words: tuple[str, ...]) -> frozenset[str]:
    """Configured words as texts are compared with them (once per set of words)."""
    return frozenset(fold(w) for w in words)


def matches(text: str, keywords: list[str] | tuple[str, ...]) -> bool:
    return fold(text) in folded(tuple(keywords))


def serial_numbers(text: str) -> list[int] | None:
    """`2`, `1,3`, `1，3`, `1 3` -> [2] / [1, 3]; None when the text is not a list of numbers."""
    folded = fold(text)
    if not folded:
        return None
    parts = [p for p in _SERIAL_SEPARATORS.split(folded) if p]
    if not parts or not all(ascii_digits(p) and len(p) <= SERIAL_DIGITS for p in parts):
        return None
    return list(dict.fromkeys(map(int, parts)))  # each once, in the order given
