"""The reactor a worker runs: Twisted's epoll reactor without the per-read log context.

Every read and write of every socket goes through ``twisted.python.log.callWithLogger``
in the stock epoll reactor: it asks the protocol for its ``logPrefix`` and copies the
legacy log context so that a ``log.msg`` made during the read is tagged with it. That
costs ~1.7 us per read, and a call reads fifty media messages a second: about a sixth
of what voiced itself spends on a frame (~10 us, ``bench/frame_cost.py``). voiced logs with
``twisted.logger``, whose events never read that context, so the worker's reactor hands
each ready descriptor straight to ``_doReadOrWrite``. An exception from a read or write
is still logged and closes that one connection, as in the stock reactor.
``--workers N`` runs it in each worker; ``twistd -r voiced voiced`` in one process.
"""

from __future__ import annotations

import errno

from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger

log = Logger()


class WorkerReactor(EPollReactor):
    def doPoll(self, timeout: float | None) -> None:
        try:
            ready = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        read_or_write = self._doReadOrWrite
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue  # an earlier event of this poll closed it
            try:
                read_or_write(selectable, fd, event)
            except Exception:  # a protocol's connectionLost raised: the other sockets go on
                log.failure("REACTOR_ERROR fd={fd}", fd=fd)

    doIteration = doPoll


def install() -> WorkerReactor:
    """Install it as the process's reactor (before anything imports ``twisted.internet.reactor``)."""
    from twisted.internet.main import installReactor

    reactor = WorkerReactor()
    installReactor(reactor)
    return reactor
