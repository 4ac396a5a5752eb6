"""One WebSocket to OpenAI Realtime (``RealtimeLink``) and the process's way of opening them
(``RealtimeConnector``, built once by the agent: one Autobahn client factory with the
``Authorization: Bearer`` header, one TLS context for wss://; every call's session borrows it).

The link is Deepgram's (``voiced.stt.deepgram_link``) with Realtime's events: the same
thin edge (the handshake's HTTP status and the close code reach the handler as a
``LinkEnd``), the same silenced Autobahn logger, which below warn would log the handshake's
headers and with them the key.
"""

from __future__ import annotations

from typing import Protocol

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.util import parse_url
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import optionsForClientTLS

from voiced.agent.realtime_wire import Event, WireError, parse
from voiced.lifecycle import note_construction
from voiced.stt.deepgram_link import DeepgramLink, LinkEnd

__all__ = ["LinkEnd", "RealtimeConnector", "RealtimeHandler", "RealtimeLink"]

CLOSE_GRACE_S = 2.0


class RealtimeHandler(Protocol):
    def link_opened(self, link: "RealtimeLink") -> None: ...
    def link_message(self, link: "RealtimeLink", message: Event) -> None: ...
    def link_garbled(self, link: "RealtimeLink", error: str) -> None: ...
    def link_closed(self, link: "RealtimeLink", end: LinkEnd) -> None: ...


class RealtimeLink(DeepgramLink):
    """One call's session socket; every method runs on the reactor thread."""

    parse_frame = staticmethod(parse)
    wire_error = WireError

    def send_event(self, frame: bytes) -> None:
        self.send_text(frame)

    def finish(self, clock: IReactorTime) -> None:
        """The call is over: a normal close (the model keeps nothing worth waiting for)."""
        self.handler = None
        if self.opened and self.state == self.STATE_OPEN:
            self.sendClose(1000)
            self._grace = clock.callLater(CLOSE_GRACE_S, self.abort)
        else:
            self.abort()


class RealtimeConnector:
    """Opens session links to one Realtime URL with one key."""

    def __init__(self, reactor, url: str, model: str, api_key: str, connect_timeout_s: float = 10.0,
                 ga: bool = False) -> None:
        self._reactor = reactor
        self._timeout_s = connect_timeout_s
        separator = "&" if "?" in url else "?"
        full_url = f"{url}{separator}model={model}" if model and "model=" not in url else url
        is_secure, host, port, _resource, _path, _params = parse_url(full_url)
        headers = {"Authorization": f"Bearer {api_key}"}
        if not ga:  # the beta interface is asked for by name; GA refuses the header
            headers["OpenAI-Beta"] = "realtime=v1"
        self._factory = WebSocketClientFactory(full_url, headers=headers, useragent="voiced")
        self._factory.protocol = RealtimeLink
        # Audio deltas run to tens of KB; a reply's whole message must fit.
        self._factory.setProtocolOptions(openHandshakeTimeout=connect_timeout_s, closeHandshakeTimeout=CLOSE_GRACE_S,
                                         maxMessagePayloadSize=16 * 1024 * 1024, autoPingInterval=0)
        self._address = (host, port)
        self._tls = optionsForClientTLS(host) if is_secure else None
        note_construction("realtime_connector")

    def connect(self, handler: RealtimeHandler) -> RealtimeLink:
        link: RealtimeLink = self._factory.buildProtocol(None)
        link.handler = handler
        host, port = self._address
        link.dial(self._reactor, host, port, self._tls, self._timeout_s)
        return link
