"""voiced's reactor: Twisted's epoll reactor without the per-read log context.

Every read and write of every socket goes through ``twisted.python.log.callWithLogger``
in the stock epoll reactor: it asks the protocol for its ``logPrefix`` and copies the
legacy log context so that a ``log.msg`` made during the read is tagged with it. That
costs ~1.7 us per read, and a call reads fifty media messages a second: about a sixth
of what voiced itself spends on a frame (~10 us, ``bench/frame_cost.py``). voiced logs with
``twisted.logger``, whose events never read that context, so this reactor hands
each ready descriptor straight to ``_doReadOrWrite``. An exception from a read or write
is still logged and closes that one connection, as in the stock reactor.
Every voiced process runs it: ``--workers N`` in each worker, and ``twistd voiced`` or
``twistd -ny voiced.tac`` in one process unless ``-r`` names another reactor.
"""

from __future__ import annotations

import errno
import select
import sys

from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger

log = Logger()


class LeanEpollReactor(EPollReactor):
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


def install() -> LeanEpollReactor:
    """Install it as the process's reactor (before anything imports ``twisted.internet.reactor``)."""
    from twisted.internet.main import installReactor

    reactor = LeanEpollReactor()
    installReactor(reactor)
    return reactor


def install_unless_chosen() -> None:
    """Install it if nothing has installed a reactor yet: twistd installs ``-r``'s reactor while
    parsing its own options, and its default only once the application is built, so voiced's
    options (or its tac file) come in between. Only where epoll exists (Linux)."""
    if "twisted.internet.reactor" not in sys.modules and hasattr(select, "epoll"):
        install()
