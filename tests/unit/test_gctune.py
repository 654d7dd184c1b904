"""gctune: what the gateway asks of the collector and the C library's allocator."""

from __future__ import annotations

import gc
import platform

from gateway import gctune


def test_collect_and_give_back_collects_every_generation_then_trims_the_heap(monkeypatch) -> None:
    """The only other test (freed once malformed HTTP requests are answered) measures RSS, which an idle machine keeps
    low anyway: a young collection only (cycles that reached the oldest generation stayed) or no malloc_trim (what
    the collection freed stayed with the allocator) passed it."""
    if platform.libc_ver()[0] == "glibc":
        assert gctune._malloc_trim is not None  # found: the trim is what gives the memory back
    events: list[tuple[str, int]] = []

    def collected(phase: str, info: dict) -> None:
        if phase == "stop":
            events.append(("collected", info["generation"]))

    monkeypatch.setattr(gctune, "_malloc_trim", lambda pad: events.append(("trimmed", pad)) or 1)
    gc.callbacks.append(collected)
    try:
        gctune.collect_and_give_back()
    finally:
        gc.callbacks.remove(collected)
    assert events[-2:] == [("collected", 2), ("trimmed", 0)]
