"""What the loopback REST fakes of the dialling carriers share (``tests/fakes/*_rest.py``): the
callee's lines and whether a placed call connects, every request received, the calls placed
(``Arrivals``: a test waits for the n-th), and the statuses the next call requests fail with."""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.fakes.arrivals import Arrivals
from tests.fakes.http_apps import Received
from voiced.caller.session import CallerLine

C = TypeVar("C")


class CarrierRest(Resource, Generic[C]):
    isLeaf = True

    def __init__(self, lines: list[CallerLine] | None, connect: bool, reply_timeout_s: float) -> None:
        super().__init__()
        self.lines = lines or []
        self.connect = connect
        self.reply_timeout_s = reply_timeout_s
        self.received: list[Received] = []
        self.calls: Arrivals[C] = Arrivals()
        self._failures: deque[Any] = deque()

    def fail_with(self, *statuses: int) -> None:
        self._failures.extend(statuses)

    def call(self, index: int) -> Deferred[C]:
        return self.calls.nth(index)

    def stop(self) -> None:
        pass

    def receive(self, request: Request) -> Received:
        """The request, kept in ``received``; the answer will be JSON."""
        headers = {name.decode().lower(): b", ".join(values).decode()
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        body = request.content.read() if request.method == b"POST" else b""
        received = Received(request.method.decode(), request.uri.decode(), headers, body)
        self.received.append(received)
        request.setHeader(b"content-type", b"application/json")
        return received
