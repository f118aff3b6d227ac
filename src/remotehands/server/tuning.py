"""What the server process sets up for itself at start: open files, the garbage collector.

Each agent link is a socket, and a server holding ten thousand needs as many file handles; the
soft limit of many systems is 1,024, while the hard limit (what a process may raise itself to)
is far higher. :func:`raise_open_files_limit` raises the soft limit to the hard one and says so
when even that is short.

Python's cyclic garbage collector scans every tracked object of a generation whenever enough
new ones have piled up; with ten thousand links the long-lived objects of the server (modules,
the app, the links) are scanned again and again during a burst of work (a bulk action over
every device spent about a third of its time there). :func:`tune_gc`, called once the server
has started, moves everything alive then out of the collector's sight (``gc.freeze``) and
makes the young generation larger, so that a burst of short-lived objects is collected less
often (:data:`GC_THRESHOLDS`).
"""

from __future__ import annotations

import gc
import logging
import resource
from dataclasses import dataclass

__all__ = [
    "GC_THRESHOLDS",
    "WANTED_OPEN_FILES",
    "OpenFiles",
    "raise_open_files_limit",
    "tune_gc",
]

logger = logging.getLogger(__name__)

WANTED_OPEN_FILES = 20_000
"""Open files a server should be allowed: ten thousand agent links and as many spare (web
clients, the database, proxies' connections, a reconnection storm's overlap)."""

GC_THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds after start (Python's default: 700, 10, 10): a young collection
after 50,000 new objects instead of 700, and the older generations more rarely still."""


@dataclass(frozen=True, slots=True)
class OpenFiles:
    """The open-files limits (``RLIMIT_NOFILE``) before and after :func:`raise_open_files_limit`."""

    before: int
    after: int
    hard: int

    @property
    def short(self) -> bool:
        """Whether the limit stays under :data:`WANTED_OPEN_FILES`."""
        return self.after < WANTED_OPEN_FILES

    def advice(self) -> str:
        """What to tell the operator when :attr:`short`."""
        return (
            f"the open-files limit is {self.after} (hard limit {self.hard}): this server can "
            f"hold about {max(0, self.after - 100)} agent links; to hold more, raise the hard "
            f"limit to {WANTED_OPEN_FILES} or more (LimitNOFILE= in a systemd unit, "
            "`ulimit -Hn` in a shell, nofile in /etc/security/limits.conf)"
        )


def raise_open_files_limit() -> OpenFiles:
    """Raise the soft open-files limit to the hard one where the system allows; returns the
    limits before and after (the caller tells the operator when they are :attr:`short`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    after = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        # an unlimited hard limit still ends at the kernel's nr_open: try a few sizes down
        targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 16]
        for target in targets:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                continue
            after = target
            break
    if after != soft:
        logger.info("open-files limit raised from %d to %d", soft, after)
    shown_hard = hard if hard != resource.RLIM_INFINITY else after
    return OpenFiles(before=soft, after=after, hard=shown_hard)


def tune_gc() -> None:
    """Freeze what is alive now out of the collector's sight and set :data:`GC_THRESHOLDS`;
    call once, after start-up (imports, the app, the database are all in place)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
