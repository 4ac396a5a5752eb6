"""A listening port that, when it cannot listen, says so in one line naming the option.

``strports.service`` makes a failed listen fail start-up, but with a traceback; and
daemonized, twistd relays only the first 100 bytes of the error to the terminal
(the rest of a CannotListenError was cut mid-word). Here the whole line goes to the
log first, and the exception twistd relays is short enough to arrive whole.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from voiced.preflight import listen_problem

log = Logger(namespace="voiced.listener")

# twistd writes "1 <ExceptionClass>: <message>" to its status pipe, cut at 100 bytes.
_STATUS_PIPE_ROOM = 100 - len("1 RuntimeError: ")


class Listener(StreamServerEndpointService):
    def __init__(self, option: str, description: str, factory: Any, reactor: Any) -> None:
        super().__init__(serverFromString(reactor, description), factory)
        self._raiseSynchronously = True  # a failed listen fails start-up, as strports.service does
        self.option = option
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            line = f"{self.option} {self.description}: {listen_problem(e.socketError, e.port, e.interface)}"
            log.critical("{line}", line=line)
            short = line if len(line) <= _STATUS_PIPE_ROOM else f"{self.option}: cannot listen (see the log)"
            # A builtin class name: twistd prints it, and a long module path would eat the room.
            raise RuntimeError(short) from None


class AdoptedListener(Service):
    """A listening socket inherited from the ``--workers`` supervisor (``voiced.workers``)."""

    def __init__(self, fd: int, family: int, factory: Any, reactor: Any) -> None:
        self.fd, self.family, self.factory, self.reactor = fd, family, factory, reactor
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.port = self.reactor.adoptStreamPort(self.fd, self.family, self.factory)
        os.close(self.fd)  # adoptStreamPort took a duplicate

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None
