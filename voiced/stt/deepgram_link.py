"""One WebSocket to Deepgram (``DeepgramLink``) and the process's way of opening them (``Connector``).

The connector is built once per process, with the engine: one Autobahn client factory per
audio format (its URL, its ``Authorization: Token`` header) and, for wss://, one TLS
context; each call's stream borrows it to open a link. A link is a thin edge: it hands
every message, parsed by ``voiced.stt.deepgram_wire``, and its end (how it ended: the
handshake's HTTP status, the close code) to its ``LinkHandler``, and sends what it is given.

The key: Autobahn logs a client's whole handshake request, headers included, at debug
level, so the links log through a logger that drops everything below warn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

from voiced.audio import AudioFormat
from voiced.lifecycle import note_construction
from voiced.stt.deepgram_wire import CLOSE_STREAM, Message, WireError, handshake_status, parse

#: After CloseStream, how long the server has to send its last results and close.
CLOSE_GRACE_S = 2.0


@dataclass(frozen=True)
class LinkEnd:
    """How a link ended: ``status`` is the HTTP status of a refused handshake, ``code`` the
    WebSocket close code (1006 for a connection dropped without one), None when never connected."""

    opened: bool
    status: int | None
    code: int | None
    reason: str

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status} at the handshake"
        if self.code is not None:
            return f"closed with {self.code}" + (f" ({self.reason})" if self.reason else "")
        return self.reason or "connection failed"


class LinkHandler(Protocol):
    def link_opened(self, link: "DeepgramLink") -> None: ...
    def link_message(self, link: "DeepgramLink", message: Message) -> None: ...
    def link_garbled(self, link: "DeepgramLink", error: str) -> None: ...
    def link_closed(self, link: "DeepgramLink", end: LinkEnd) -> None: ...


class DeepgramLink(WebSocketClientProtocol):
    """One stream's WebSocket; every method runs on the reactor thread."""

    # Below warn Autobahn's lines carry the handshake's headers, the key among them.
    log = txaio.make_logger(level="warn")

    handler: LinkHandler | None = None
    opened = False
    _ended = False
    _connecting: Deferred | None = None
    _grace = None  # an IDelayedCall: the server's time to close after CloseStream
    #: The service's wire: a text frame to a message, or WireError (a subclass speaks another).
    parse_frame = staticmethod(parse)
    wire_error = WireError

    def dial(self, reactor, host: str, port: int, tls, timeout_s: float) -> None:
        """Connect (through ``tls``, a client TLS context, unless None); the opening and the
        end reach the handler."""
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout_s)
        if tls is not None:
            endpoint = wrapClientTLS(tls, endpoint)
        connecting = connectProtocol(endpoint, self)
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._connect_failed)

    # -- what the stream does with it ---------------------------------------------------------

    def send_audio(self, audio: bytes) -> None:
        if self.opened and self.state == self.STATE_OPEN and audio:
            self.sendMessage(audio, isBinary=True)

    def send_text(self, frame: bytes) -> None:
        if self.opened and self.state == self.STATE_OPEN:
            self.sendMessage(frame, isBinary=False)

    def finish(self, clock: IReactorTime) -> None:
        """Hand the stream back: CloseStream (the server flushes and closes), or end it now if
        it never opened. Nothing more reaches the handler."""
        self.handler = None
        if self.opened and self.state == self.STATE_OPEN:
            self.sendMessage(CLOSE_STREAM, isBinary=False)
            self._grace = clock.callLater(CLOSE_GRACE_S, self.abort)
        else:
            self.abort()

    def abort(self) -> None:
        """End it now, whatever its state; nothing more reaches the handler."""
        self.handler = None
        if self._connecting is not None:
            self._connecting.cancel()  # still connecting: no protocol will come
        elif self.transport is not None and not self._ended:
            self.dropConnection(abort=True)

    # -- Autobahn's side ------------------------------------------------------------------------

    def _connected(self, _: object) -> None:
        self._connecting = None

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self._ended = True
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.link_closed(self, LinkEnd(False, None, None, failure.getErrorMessage() or failure.type.__name__))

    def onOpen(self) -> None:
        self.opened = True
        if self.handler is not None:
            self.handler.link_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        handler = self.handler
        if handler is None or isBinary:
            return  # both services answer in text frames only
        try:
            message = self.parse_frame(payload)
        except self.wire_error as e:
            handler.link_garbled(self, str(e))
            return
        handler.link_message(self, message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._ended = True
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        handler, self.handler = self.handler, None
        if handler is None:
            return
        status = None if self.opened else handshake_status(getattr(self, "http_status_line", None))
        # The server's own close code, even when the TCP side of the close went wrong (Autobahn says 1006).
        remote = getattr(self, "remoteCloseCode", None)
        if remote is not None:
            code, reason = remote, getattr(self, "remoteCloseReason", None) or reason
        handler.link_closed(self, LinkEnd(self.opened, status, code, reason or ""))


class Connector:
    """Opens links to one Deepgram endpoint: a factory per audio format, one TLS context."""

    def __init__(self, reactor, urls: Mapping[AudioFormat, str], api_key: str,
                 connect_timeout_s: float = 5.0) -> None:
        self._reactor = reactor
        self._timeout_s = connect_timeout_s
        self._factories: dict[AudioFormat, WebSocketClientFactory] = {}
        self._tls = None
        headers = {"Authorization": f"Token {api_key}"}
        for audio, url in urls.items():
            is_secure, host, port, _resource, _path, _params = parse_url(url)
            factory = WebSocketClientFactory(url, headers=headers, useragent="voiced")
            factory.protocol = DeepgramLink
            factory.setProtocolOptions(openHandshakeTimeout=connect_timeout_s, closeHandshakeTimeout=CLOSE_GRACE_S)
            self._factories[audio] = factory
            self._address = (is_secure, host, port)
        is_secure, host, _port = self._address
        if is_secure:
            self._tls = optionsForClientTLS(host)
            note_construction("deepgram_tls_context")

    def connect(self, audio: AudioFormat, handler: LinkHandler) -> DeepgramLink:
        """A new link in ``audio``; its opening and its end reach ``handler``."""
        link: DeepgramLink = self._factories[audio].buildProtocol(None)
        link.handler = handler
        _secure, host, port = self._address
        link.dial(self._reactor, host, port, self._tls, self._timeout_s)
        return link
