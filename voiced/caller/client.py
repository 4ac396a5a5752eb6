"""A simulated Twilio caller: Twilio's side of a Media Stream, and a person on the phone.

Messages (one JSON text frame each), the mirror image of voiced.carrier.twilio:
  caller -> daemon  connected, start, media every 20 ms, mark (echo), stop
  daemon -> caller  media{payload}, mark{name}, clear

Three layers, the first two pure and driven by an ``IReactorTime``:
  voiced.caller.twilio_side  TwilioStream (the messages Twilio sends) and Playback
                             (Twilio's outbound buffer).
  voiced.caller.session      CallSession, the caller, and the CallerLine it speaks.
  this module                _CallerProtocol / place_call, the thin Autobahn edge: it
                             dials ws:// or wss://, signs the upgrade as Twilio would,
                             and hands every WebSocket event to a CallSession.
"""

from __future__ import annotations

import uuid
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import optionsForClientTLS

from voiced.carrier import media_token
from voiced.carrier.twilio.signature import twilio_signature
from voiced.caller.report import CallReport
from voiced.caller.session import CallConfig, CallerLine, CallSession
from voiced.caller.twilio_side import TwilioStream


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


class _CallerProtocol(WebSocketClientProtocol):
    """Thin edge: hands every WebSocket event to the factory's CallSession."""

    def onOpen(self) -> None:
        self.factory.session.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.session.received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.session.closed(wasClean, code, reason)

    def send_text(self, text: str) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(text.encode("utf-8"), isBinary=False)

    def hang_up(self) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(code=1000)


def place_call(
    reactor: IReactorTime,
    url: str,
    lines: list[CallerLine],
    *,
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
    """Place one simulated Twilio call to ``url`` (ws:// or wss://) and speak ``lines``.

    Fires with a CallReport in every case, including a refused connection or a
    rejected upgrade (then ``connected`` is False and ``errors`` says why); it
    never errbacks. ``auth_token`` signs the upgrade with X-Twilio-Signature over
    ``signed_url`` (default ``url``: set it to the daemon's public wss:// URL).
    ``tls`` replaces the default wss:// verification (the system's CAs and the host
    name): see ``voiced.caller.main.tls_options`` for --cacert and --insecure.
    """
    is_secure, host, port, _resource, _path, _params = parse_url(url)
    parameters = {"From": "+15550100", "To": "+15550199", **(custom_parameters or {})}
    call_sid = call_sid or new_sid("CA")
    if auth_token and media_token.PARAMETER not in parameters:
        # What voiced's TwiML would have handed Twilio for this call (Twilio passes it back in start).
        parameters[media_token.PARAMETER] = media_token.issue(auth_token, call_sid, reactor.seconds(), 300)
    stream = TwilioStream(account_sid or new_sid("AC"), call_sid, new_sid("MZ"), parameters)
    config = CallConfig(pause_ms / 1000, reply_timeout_s, hangup_grace_s, max_duration_s, reply_gap_ms / 1000)
    session = CallSession(reactor, lines, stream, url, config)
    headers = {"X-Twilio-Signature": twilio_signature(auth_token, signed_url or url)} if auth_token else None
    factory = WebSocketClientFactory(url, headers=headers, useragent="voiced-call (simulated Twilio Media Streams)")
    factory.protocol = _CallerProtocol
    factory.session = session
    factory.setProtocolOptions(openHandshakeTimeout=connect_timeout_s, closeHandshakeTimeout=2.0)
    endpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout_s)
    if is_secure:
        endpoint = wrapClientTLS(tls if tls is not None else optionsForClientTLS(host), endpoint)
    endpoint.connect(factory).addErrback(session.connection_failed)
    return session.done
