"""The limit on open files: every connection (SMPP or HTTP) holds a file descriptor, and at the limit new connections
are refused without a word (uvloop does not log an accept that fails), every account's binds and /ready with them."""

from __future__ import annotations

import errno
import os
import resource

RESERVE = 64  # descriptors kept for the store, the writer process's pipes, the HTTP port and the logs


def raise_limit() -> None:
    """The soft limit raised to the hard one (the usual soft limit, 1024, is some nine hundred connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # (a container may refuse)
            pass


def connections_allowed() -> int:
    """How many connections the limit in force leaves room for."""
    return max(resource.getrlimit(resource.RLIMIT_NOFILE)[0] - RESERVE, 1)


def near_limit() -> bool:
    """Whether this process holds about as many descriptors as the limit allows (within RESERVE): a failure to open
    one more (a pipe, a process) is that, whatever error the event loop reports (uvloop: "Unknown error -1")."""
    try:
        held = len(os.listdir("/proc/self/fd"))
    except OSError as exc:  # no descriptor left to read them with; or no /proc (not Linux): not known
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    return held >= connections_allowed()
