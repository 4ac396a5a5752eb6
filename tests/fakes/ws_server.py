"""The loopback WebSocket server the vendor fakes share (``LoopbackWebSocketFake``).

A fake (``tests.fakes.deepgram_server``, ``tests.fakes.realtime_server``) is its vendor's
protocol (an Autobahn ``WebSocketServerProtocol``, ``protocol``, at ``path``) and what it
saw; this is the rest: listening on a free 127.0.0.1 port, its URL, refusing the next
handshakes, stopping (dropping what is still connected), and waiting for what the server
sees without sleeping (``when``; the protocol calls ``changed`` after each thing it sees).
"""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, Sequence

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred


class JsonServerProtocol(WebSocketServerProtocol):
    """A server side that speaks JSON text messages, and says nothing once closing."""

    def send_json(self, message: dict) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(message).encode(), isBinary=False)


class LoopbackWebSocketFake:
    """The server; ``listen()`` starts it, the protocol reaches it as ``self.factory.fake``."""

    protocol: ClassVar[type[WebSocketServerProtocol]]
    path: ClassVar[str]

    def __init__(self) -> None:
        self.refusals: list[int] = []
        self.headers_seen: list[dict] = []
        self._waiters: list[tuple[Callable[[], bool], Deferred]] = []
        self._port: Any = None

    def connections(self) -> Sequence[WebSocketServerProtocol]:
        """Every connection the server took (``stop`` drops those still open)."""
        raise NotImplementedError

    def listen(self) -> str:
        factory = WebSocketServerFactory()
        factory.protocol = self.protocol
        factory.fake = self
        factory.setProtocolOptions(closeHandshakeTimeout=1)
        self._port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        return self.url

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port.getHost().port}{self.path}"

    def stop(self) -> Deferred:
        for connection in self.connections():
            if connection.transport is not None:
                connection.transport.abortConnection()
        return self._port.stopListening()

    def refuse(self, *statuses: int) -> None:
        """The next handshakes are refused with these HTTP statuses, in order."""
        self.refusals.extend(statuses)

    def when(self, predicate: Callable[[], bool]) -> Deferred:
        """Fires once ``predicate()`` holds (checked now and after everything the server sees)."""
        d: Deferred = Deferred()
        if predicate():
            d.callback(None)
        else:
            self._waiters.append((predicate, d))
        return d

    def changed(self) -> None:
        ready = [(p, d) for p, d in self._waiters if p()]
        self._waiters = [(p, d) for p, d in self._waiters if (p, d) not in ready]
        for _, d in ready:
            d.callback(None)
