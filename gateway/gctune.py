"""Garbage-collector settings for a running gateway (and a connected handset fleet: simulator/fleet.py).

Why: CPython's cyclic collector runs a generation-0 pass every 700 net
container allocations and, as the heap grows, full passes over everything
alive. A busy gateway allocates a handful of containers per message (PDU,
Message, futures, store rows) and keeps many alive for a long time (messages
parked for delivery, the dedup window), so under load the collector took a
third of the gateway's CPU re-scanning objects that can never be garbage.
Almost all of our per-message objects are freed by reference counting the
moment they are done; the collector only has to find the rare cycle (an
exception with its traceback, a cancelled task).

So, once the gateway has started:

* `gc.freeze()` moves everything alive at that point (modules, config,
  templates, handlers, the catalogue) to a permanent generation the collector
  never scans again;
* the generation-0 threshold goes from 700 to `GEN0_THRESHOLD` net
  allocations: at full load that is still several young collections a
  second, so cyclic garbage is reclaimed promptly, but each one is amortised
  over ~70x more messages. Full collections keep CPython's own rule (only
  when the old generation grew by 25% since the last one), so their cost
  stays proportional to the growth of the heap.
* generation 1 is collected every `GEN1_THRESHOLD` young collections. It
  scans everything that survived the young collections since the last one,
  so its pause grows with that count: under the dialogue mix, ~150,000
  objects in 150-170 ms every ~160 s, most of them the record cache's
  partitions; 106 ms since their keys are strings only (untracked at their
  first young collection). At 2 the longest pause in the same run was
  23 ms, but b1 lost ~3% (the messages in flight were scanned 7x as often),
  so it stays at 20 (bench/perf-log.md, session 5).

Nothing here stops cycles from being collected; the collector only looks
less often. Measured on the benchmark (bench/run.py, b1): +30-50% msgs/s.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Callable

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 10

_lock = threading.Lock()
_users = 0  # gateways in this process running with the tuning (GatewayController may start several)
_saved_threshold: tuple[int, int, int] | None = None


def tune_for_serving(*, collect_first: bool = True) -> None:
    """Call once the gateway has started: freeze what start-up built, collect less often.

    `collect_first` reclaims start-up garbage so it is not frozen with the rest;
    a process that starts gateways repeatedly (a test run) may skip it, since
    `restore_defaults` unfreezes everything again.
    """
    global _users, _saved_threshold
    with _lock:
        if _users == 0:
            _saved_threshold = gc.get_threshold()
        _users += 1
        if collect_first:
            gc.collect()
        gc.freeze()
        gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


def restore_defaults() -> None:
    """Undo `tune_for_serving` once the last gateway that asked for it has stopped."""
    global _users, _saved_threshold
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            gc.unfreeze()  # frozen objects become collectable again (oldest generation)
            if _saved_threshold is not None:
                gc.set_threshold(*_saved_threshold)
            _saved_threshold = None


def collect_and_give_back() -> None:
    """Collect every generation now, then give the memory that freed back to the system. A collection frees objects
    to the C library's allocator, which keeps a heap's free space unless it lies at the heap's top: after 150 malformed
    HTTP requests of 960 KB, everything they held collected (444 objects tracked besides the frozen ones), the gateway
    stayed at 166-186 MB instead of 53 in 3 runs of 15 on a busy machine. A full collection scans what is alive since
    the start (`gc.freeze` took the rest): 2-3 ms with 10,000 MTs queued on a bind; the trim 0.2-5 ms."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim (it returns free pages from anywhere in the heap, not only its top); None elsewhere."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # (not glibc: musl, macOS)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()
