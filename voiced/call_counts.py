"""The daemon's calls in progress across ``--workers`` processes, for ``--max-calls``.

One 32-bit slot per worker in a small shared file (mmap): each worker writes only its
own slot, so there is no lock, and admission reads the sum, so a worker full while another
has room no longer refuses. What counts is a started call (its ``start`` message came), as
in a single process: upgrades admitted in the same moment, before any of them has
started, can pass the limit together, by as many as arrive in that moment.
"""

from __future__ import annotations

import mmap
import os

_SLOT_BYTES = 4


class CallCounts:
    def __init__(self, path: str, workers: int) -> None:
        size = _SLOT_BYTES * workers
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # new bytes read as zero: no calls yet
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)  # the mapping keeps the file
        self._slots = memoryview(self._map).cast("i")

    def publish(self, worker: int, active: int) -> None:
        self._slots[worker] = active

    def others(self, worker: int) -> int:
        """The calls every other worker has in progress."""
        return sum(self._slots) - self._slots[worker]

    def close(self) -> None:
        self._slots.release()
        self._map.close()
