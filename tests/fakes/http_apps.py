"""Real HTTP servers on loopback for tests: record what the client sent, answer from a queue.

    app = RecordingApp()
    server = start_server(self, app)            # listening on 127.0.0.1:<free port>
    http = make_http_client(self)               # treq over a persistent pool
    app.answer(Canned.json({"say": "Hi."}), Canned(status=503), Canned(hang=True))
    ...
    received = await app.request(0)             # the first request, once it has arrived
    received.json(), received.form(), received.basic_auth(), await received.lost

Each request takes the next ``Canned`` answer (a 500 when the queue is empty). Cleanup
closes the client pool's connections, then the server's, so the reactor is clean.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tests.fakes.arrivals import Arrivals


@dataclass
class Canned:
    """One answer. ``delay_s`` waits before answering; ``hang`` never answers;
    ``partial`` sends the status, headers and these bytes of a chunked body, then hangs."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hang: bool = False
    partial: bytes | None = None

    @classmethod
    def json(cls, document: Any, status: int = 200, **kwargs: Any) -> "Canned":
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return cls(status=status, body=json.dumps(document).encode(), headers=headers, **kwargs)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    lost: Deferred[None] = field(default_factory=Deferred)  # the client went away before the answer

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)

    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, encoded = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        return user, password


class RecordingApp(Resource):
    isLeaf = True

    def __init__(self, clock: Any = reactor) -> None:
        super().__init__()
        self.clock = clock
        self.received: Arrivals[Received] = Arrivals()
        self.answers: deque[Canned] = deque()
        self.default = Canned(status=500, body=b"no canned answer left")
        self._delayed: list[IDelayedCall] = []

    def answer(self, *canned: Canned) -> None:
        self.answers.extend(canned)

    def request(self, index: int) -> Deferred[Received]:
        """The request number ``index`` (from 0), now or once it arrives."""
        return self.received.nth(index)

    def render(self, request: Request) -> bytes | int:
        headers = {name.decode().lower(): b", ".join(values).decode()
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        received = Received(request.method.decode(), request.uri.decode(), headers, request.content.read())
        request.notifyFinish().addErrback(lambda _: received.lost.callback(None))
        self.received.append(received)
        canned = self.answers.popleft() if self.answers else self.default
        self.received.notify()
        if canned.hang:
            return NOT_DONE_YET
        if canned.partial is not None:
            self._start(request, canned)
            request.write(canned.partial)
            return NOT_DONE_YET
        if canned.delay_s:
            call = self.clock.callLater(canned.delay_s, self._finish, request, canned)
            self._delayed.append(call)
            received.lost.addCallback(lambda _: call.cancel() if call.active() else None)
            return NOT_DONE_YET
        self._start(request, canned)
        return canned.body

    @staticmethod
    def _start(request: Request, canned: Canned) -> None:
        request.setResponseCode(canned.status)
        for name, value in canned.headers.items():
            request.setHeader(name, value)

    def _finish(self, request: Request, canned: Canned) -> None:
        self._start(request, canned)
        request.write(canned.body)
        request.finish()

    def stop(self) -> None:
        for call in self._delayed:
            if call.active():
                call.cancel()


class _TrackingFactory(WrappingFactory):
    """Knows the server's open connections, to close them all at the end of a test."""

    def __init__(self, wrapped: Site) -> None:
        super().__init__(wrapped)
        self._all_closed: list[Deferred[None]] = []

    def unregisterProtocol(self, protocol: Any) -> None:
        super().unregisterProtocol(protocol)
        if not self.protocols:
            waiters, self._all_closed = self._all_closed, []
            for waiter in waiters:
                waiter.callback(None)

    def close_all(self) -> Deferred[None]:
        if not self.protocols:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._all_closed.append(closed)
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
        return closed


class LoopbackServer:
    def __init__(self, app: RecordingApp) -> None:
        self.app = app
        site = Site(app)
        site.noisy = False
        self.factory = _TrackingFactory(site)
        self.factory.noisy = False
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self._stopped: Deferred[Any] | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}{path}"

    def stop(self) -> Deferred[Any]:
        """Stop listening and close every connection (a second call just waits for the first)."""
        if self._stopped is None:
            self.app.stop()
            self._stopped = gatherResults([self.port.stopListening(), self.factory.close_all()])
        stopped: Deferred[Any] = Deferred()
        self._stopped.addBoth(lambda result: (stopped.callback(None), result)[1])
        return stopped


def start_server(test: TestCase, app: RecordingApp) -> LoopbackServer:
    """A server for ``app``, stopped (connections and all) when ``test`` ends."""
    server = LoopbackServer(app)
    test.addCleanup(server.stop)
    return server


def make_http_client(test: TestCase) -> HTTPClient:
    """treq over a persistent pool, like the service's; its cached connections are
    closed when ``test`` ends (before a server started earlier is stopped)."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    # One reactor turn first: a reply that failed mid-read (a body over its limit) can
    # hand its connection back to the pool once the parser finishes the current read.
    test.addCleanup(lambda: deferLater(reactor, 0, pool.closeCachedConnections))
    return HTTPClient(Agent(reactor, pool=pool))
