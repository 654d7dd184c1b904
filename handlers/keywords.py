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
_TRAILING = re.compile(r"[\s.!~,]+$")


def fold(text: str) -> str:
    """The text as keywords are matched: NFKC (full-width -> half-width), trimmed of spaces and of
    trailing `.!~,` (`。！～，、` once folded), upper-cased."""
    return _TRAILING.sub("", unicodedata.normalize("NFKC", text).translate(_EXTRA).strip()).upper()


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
    if not parts or not all(ascii_digits(p) for p in parts):
        return None
    seen: list[int] = []
    for p in parts:
        n = int(p)
        if n not in seen:
            seen.append(n)
    return seen
