"""A simulated caller behind any registered carrier: the thin network edge of voiced-call.

Three layers, the first two pure and driven by an ``IReactorTime``:
  voiced.caller.carriers   one CarrierWire per carrier: the messages its side of the media
                           stream sends, and a reader for the daemon's (Twilio's first);
                           voiced.caller.playback is the carrier's outbound buffer.
  voiced.caller.session    CallSession, the caller, and the CallerLine it speaks.
  this module              place_call: dials the daemon the carrier's way (a ws:// or wss://
                           WebSocket, signed as the carrier signs it, or a plain TCP stream for
                           AudioSocket-style carriers) and hands every event to a CallSession.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

from voiced.caller.carriers import DEFAULT_CARRIER, carrier_wire
from voiced.caller.carriers.base import CallSetup, CarrierWire, Outbound, new_id
from voiced.caller.report import CallReport
from voiced.caller.session import CallConfig, CallerLine, CallSession

DEFAULT_FROM = "+15550100"
DEFAULT_TO = "+15550199"


def new_sid(prefix: str) -> str:
    return new_id(prefix)


def parse_tcp_url(url: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (host, port); ValueError says what is wrong with it."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not a tcp://HOST:PORT address")
    return parts.hostname, port


class _WebSocketLink(WebSocketClientProtocol):
    """Thin edge: hands every WebSocket event to the factory's CallSession."""

    def onOpen(self) -> None:
        self.factory.session.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.session.received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.session.closed(wasClean, code, reason)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        # When the daemon drops the TCP before answering our close (a daemon that dies, or one
        # that resets crossing closes as voiced once did), Autobahn's connectionLost leaves its
        # close-handshake timer armed: a no-op by then, but it holds the reactor (a test's,
        # trial's clean-reactor check) up to 2 s.
        timer = getattr(self, "closeHandshakeTimeoutCall", None)
        if timer is not None:
            timer.cancel()
            self.closeHandshakeTimeoutCall = None
        super().connectionLost(reason)

    def send(self, message: Outbound) -> None:
        if self.state == self.STATE_OPEN:
            if type(message) is str:
                self.sendMessage(message.encode("utf-8"), isBinary=False)
            else:
                self.sendMessage(message, isBinary=True)

    def hang_up(self) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(code=1000)


class _TcpLink(Protocol):
    """Thin edge for carriers on a plain TCP stream (Asterisk AudioSocket): bytes in, bytes
    out; the carrier's wire does all the framing."""

    def __init__(self, session: CallSession) -> None:
        self.session = session
        self.open = False

    def connectionMade(self) -> None:
        self.open = True
        self.session.opened(self)

    def dataReceived(self, data: bytes) -> None:
        self.session.received(data, True)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.open = False
        self.session.closed(reason.check(ConnectionDone) is not None, None, reason.getErrorMessage())

    def send(self, message: Outbound) -> None:
        if self.open:
            self.transport.write(message)  # a TCP wire writes bytes; a str is its bug, and write() says so

    def hang_up(self) -> None:
        if self.open:
            self.transport.loseConnection()


def place_call(
    reactor: IReactorTime,
    url: str,
    lines: list[CallerLine],
    *,
    carrier: str | type[CarrierWire] = DEFAULT_CARRIER,
    pause_ms: int = 400,
    reply_timeout_s: float = 8.0,
    hangup_grace_s: float = 3.0,
    call_sid: str | None = None,
    custom_parameters: dict[str, str] | None = None,
    max_duration_s: float = 120.0,
    account_sid: str | None = None,
    auth_token: str | None = None,
    signed_url: str | None = None,
    reply_gap_ms: int = 600,
    connect_timeout_s: float = 10.0,
    tls: Any = None,
) -> Deferred[CallReport]:
    """Place one simulated call as ``carrier`` (a registered name, or a CarrierWire class)
    to ``url`` (ws:// or wss://, or tcp://HOST:PORT for a TCP carrier) and speak ``lines``.

    Fires with a CallReport in every case, including a refused connection or a
    rejected upgrade (then ``connected`` is False and ``errors`` says why); it
    never errbacks. ``custom_parameters`` may carry ``From`` and ``To``.
    ``auth_token`` is the carrier's secret: Twilio signs the upgrade with
    X-Twilio-Signature over ``signed_url`` (default ``url``: set it to the daemon's
    public wss:// URL). ``tls`` replaces the default wss:// verification (the system's
    CAs and the host name): see ``voiced.caller.main.tls_options`` for --cacert and --insecure.
    """
    wire_class = carrier_wire(carrier) if isinstance(carrier, str) else carrier
    parameters = dict(custom_parameters or {})
    setup = CallSetup(
        call_id=call_sid,
        from_number=parameters.pop("From", DEFAULT_FROM),
        to_number=parameters.pop("To", DEFAULT_TO),
        parameters=parameters,
        account_id=account_sid,
        secret=auth_token,
        now=reactor.seconds(),
    )
    wire = wire_class.new_call(setup)
    config = CallConfig(pause_ms / 1000, reply_timeout_s, hangup_grace_s, max_duration_s, reply_gap_ms / 1000)
    session = CallSession(reactor, lines, wire, url, config)
    if wire_class.transport == "tcp":
        host, port = parse_tcp_url(url)
        endpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout_s)
        connectProtocol(endpoint, _TcpLink(session)).addErrback(session.connection_failed)
        return session.done
    is_secure, host, port, _resource, _path, _params = parse_url(url)
    headers = wire.upgrade_headers(signed_url or url) or None
    factory = WebSocketClientFactory(url, headers=headers, useragent=f"voiced-call (simulated {wire_class.title})")
    factory.protocol = _WebSocketLink
    factory.session = session
    factory.setProtocolOptions(openHandshakeTimeout=connect_timeout_s, closeHandshakeTimeout=2.0)
    ws_endpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout_s)
    if is_secure:
        ws_endpoint = wrapClientTLS(tls if tls is not None else optionsForClientTLS(host), ws_endpoint)
    ws_endpoint.connect(factory).addErrback(session.connection_failed)
    return session.done
