"""gateway/open_files: whether this process is at its limit on open files, as the writer process's restart tells the
operator (`hint`: raise `ulimit -n`)."""

from __future__ import annotations

import os
import resource

from gateway.open_files import RESERVE, near_limit


def test_near_limit_within_reserve_of_the_limit_and_not_far_below_it() -> None:
    """With fewer than RESERVE descriptors left, /proc/self/fd can still be read (the end-to-end test runs out of them
    all, where reading it fails with EMFILE): that is near the limit too, and a limit far above what is held is not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = len(os.listdir("/proc/self/fd"))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (held + RESERVE // 2, hard))  # a few left: listdir still opens one
        assert near_limit()
        resource.setrlimit(resource.RLIMIT_NOFILE, (held + 4 * RESERVE, hard))
        assert not near_limit()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
