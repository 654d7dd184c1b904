"""The fleet's numbers: consecutive blocks of MSISDNs, one per bind, and the address_range patterns that make the
target route each block's MT to its bind."""

from __future__ import annotations

__all__ = ["MAX_ADDRESS_RANGE", "address_range", "blocks", "exact_range", "first_outside"]

MAX_ADDRESS_RANGE = 40  # SMPP 3.4: address_range is a C-octet string of at most 41 octets


def blocks(start: str, count: int, parts: int) -> list[tuple[int, int]]:
    """`count` numbers from `start` in `parts` consecutive blocks, as (first, last) inclusive."""
    first = int(start)
    size, extra = divmod(count, parts)
    out = []
    for k in range(parts):
        n = size + (1 if k < extra else 0)
        out.append((first, first + n - 1))
        first += n
    return out


def address_range(lo: int, hi: int) -> str:
    """A bind's address_range for the numbers lo..hi (same length), at most 40 characters: the exact pattern
    when it fits, else their common prefix and any digits (a superset; the gateway only prefers the bind)."""
    exact = exact_range(lo, hi)
    if len(exact) <= MAX_ADDRESS_RANGE:
        return exact
    a, z = str(lo), str(hi)
    common = next((i for i, (x, y) in enumerate(zip(a, z, strict=True)) if x != y), len(a))
    return f"{a[:common]}\\d{{{len(a) - common}}}"


def exact_range(lo: int, hi: int) -> str:
    """A regular expression matching exactly the numbers lo..hi (same length)."""
    a, z = str(lo), str(hi)
    common = next((i for i, (x, y) in enumerate(zip(a, z, strict=True)) if x != y), len(a))
    if common == len(a):
        return a
    parts = [_pattern(run, len(a))[common:] for run in _aligned(lo, hi)]
    return a[:common] + (parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")")


def _aligned(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """lo..hi as runs (first, last, k): numbers sharing all but their last k+1 digits, the (k+1)-th from the end
    running over a digit range and the last k digits over everything."""
    out = []
    start = lo
    while start <= hi:
        k = 0
        while start % 10 ** (k + 1) == 0 and start + 10 ** (k + 1) - 1 <= hi:
            k += 1
        step = 10**k
        end = start + step - 1
        while (end + 1) // step % 10 != 0 and end + step <= hi:
            end += step
        out.append((start, end, k))
        start = end + 1
    return out


def _pattern(run: tuple[int, int, int], width: int) -> str:
    start, end, k = run
    s, e = str(start).zfill(width), str(end).zfill(width)
    head = s[: width - k - 1]
    d1, d2 = s[width - k - 1], e[width - k - 1]
    digit = d1 if d1 == d2 else f"[{d1}-{d2}]"
    tail = "" if k == 0 else ("\\d" if k == 1 else f"\\d{{{k}}}")
    return head + digit + tail


def first_outside(lo: int, hi: int, prefixes: tuple[str, ...]) -> int | None:
    """The first of the numbers lo..hi (same length) that starts with none of `prefixes`, or None. Steps a prefix's
    whole block at a time, so a range of millions costs a few steps."""
    n = lo
    while n <= hi:
        digits = str(n)
        prefix = max((p for p in prefixes if digits.startswith(p)), key=len, default=None)
        if prefix is None:
            return n
        n = int(prefix + "9" * (len(digits) - len(prefix))) + 1
    return None
