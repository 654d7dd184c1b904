"""Committed means it survives the process's kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from .stores import StoreKind

REPO_ROOT = Path(__file__).resolve().parents[2]

# Accepts MOs forever, keeping up to 2000 in flight, and prints each id only
# once its future has resolved (i.e. the gateway would have acked it).
_WRITER_SCRIPT = r"""
import asyncio, sys
from pathlib import Path
from tests.store_contract.stores import mo, store_kind

def report(fut):
    if not fut.cancelled() and fut.exception() is None:
        sys.stdout.write(fut.result()[0] + "\n")
        sys.stdout.flush()

async def main(kind, where):
    store = store_kind(kind).make(Path(where))
    await store.open()
    pending = set()
    n = 0
    while True:
        for _ in range(100):
            n += 1
            fut = store.accept(mo(f"m{n}", short_message=b"x" * 100))
            fut.add_done_callback(report)
            fut.add_done_callback(pending.discard)
            pending.add(fut)
        await asyncio.sleep(0)
        while len(pending) > 2000:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_committed_means_it_survives_the_processs_kill_9(store_kind: StoreKind, open_store, tmp_path: Path) -> None:
    """base.py: "Committed means it survives the process's `kill -9`". Every write whose awaitable resolved is there after
    the process is killed mid-stream, writes still in flight. (The gateway's own: tests/e2e/test_durability.py.)"""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER_SCRIPT, store_kind.name, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    printed: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(printed) < 5000:
                line = await proc.stdout.readline()
                if not line:
                    pytest.fail(f"writer exited early: {(await proc.stderr.read()).decode()}")
                printed.append(line.decode().rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-stream: writes are still in flight
        await proc.wait()
    rest = await proc.stdout.read()
    # Only whole lines count: a torn last line was never fully "acknowledged".
    printed += [line.decode() for line in rest.split(b"\n")[:-1]]
    assert proc.returncode == -signal.SIGKILL

    store = await open_store()
    stored = {m.id for m in await store.unprocessed_mos()}
    missing = [i for i in printed if i not in stored]
    assert not missing, f"{len(missing)} acknowledged ids lost, e.g. {missing[:5]}"
    assert len(printed) >= 5000
