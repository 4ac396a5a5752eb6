"""Who picks up a call the loopback Twilio (``tests.fakes.twilio_rest``) places: a
recording streamed as the callee's audio on the call's media stream, as Twilio streams
what the callee's line carries, and Twilio's asynchronous AMD verdict on it.

The stream is voiced's simulated caller (``voiced.caller.session.CallSession`` speaking
Twilio's wire) with the recording as its one line, begun the moment the stream opens and
followed by silence. When the recording is over it hangs up, unless the bot is speaking:
then ``hang_up_after_s`` after the bot's audio has played out (a call that ends sooner
was ended by the daemon). The fake's own side
of the socket keeps the times that matter, on its own clock: when each frame of the
recording was sent (``StreamTimes.sent_at``), and when each media frame of the bot's
arrived (``StreamTimes.bot_media_at``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint

from voiced.caller.carriers.base import CallSetup, Outbound
from voiced.caller.carriers.twilio import TwilioStream
from voiced.caller.report import CallReport
from voiced.caller.session import CallConfig, CallerLine, CallSession


@dataclass(frozen=True)
class Callee:
    """``audio``: 8 kHz mu-law, what the line carries from the answer on. ``answered_by``:
    what Twilio's AMD says (human, machine_end_beep, ...; "" none), posted once
    ``verdict_frame`` frames of the audio have been sent, when the call asked for AsyncAmd."""

    audio: bytes
    answered_by: str = ""
    verdict_frame: int = 0
    hang_up_after_s: float = 5.0


@dataclass
class StreamTimes:
    sent_at: list[float] = field(default_factory=list)  # reactor seconds, frame n of the callee's audio
    bot_media_at: list[float] = field(default_factory=list)  # reactor seconds, each bot media message
    link: "CalleeLink | None" = None


class CalleeLink(WebSocketClientProtocol):
    """Twilio's end of the media stream: the session's messages out, the daemon's in."""

    def onOpen(self) -> None:
        self.factory.times.link = self
        self.factory.session.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and json.loads(payload).get("event") == "media":
            self.factory.times.bot_media_at.append(reactor.seconds())
        self.factory.session.received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.session.closed(wasClean, code, reason)

    def send(self, message: Outbound) -> None:
        if self.state != self.STATE_OPEN:
            return
        text = message if isinstance(message, str) else message.decode()
        # The session has begun the recording (its one turn) before the recording's first frame.
        if text.startswith('{"event":"media"') and self.factory.session.report.turns:
            self.factory.times.sent_at.append(reactor.seconds())
            self.factory.on_frame(len(self.factory.times.sent_at))
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def hang_up(self) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(code=1000)


def stream_callee(url: str, signed_url: str, callee: Callee, call_sid: str, account_sid: str, auth_token: str,
                  parameters: dict[str, str], times: StreamTimes,
                  on_frame: Callable[[int], None]) -> Deferred[CallReport]:
    """Open the media stream to ``url`` (upgrade signed over ``signed_url``, as Twilio signs
    the TwiML's wss:// URL) and stream ``callee``; fires with the CallReport once it closes.
    ``on_frame(n)`` after the recording's n-th frame went out."""
    parameters = dict(parameters)
    setup = CallSetup(call_id=call_sid, from_number=parameters.pop("From", "+15550111"),
                      to_number=parameters.pop("To", "+15550100"), parameters=parameters, account_id=account_sid,
                      secret=auth_token, now=reactor.seconds())
    wire = TwilioStream.new_call(setup)
    # The recording at once (no reply awaited first); then silence until the bot has played out.
    config = CallConfig(reply_timeout_s=0.0, hangup_grace_s=callee.hang_up_after_s, pause_s=0.4)
    session = CallSession(reactor, [CallerLine(callee.audio, "callee")], wire, url, config)
    factory = WebSocketClientFactory(url, headers=wire.upgrade_headers(signed_url), useragent="TwilioProxy/1.1")
    factory.protocol = CalleeLink
    factory.session, factory.times, factory.on_frame = session, times, on_frame
    factory.setProtocolOptions(openHandshakeTimeout=10.0, closeHandshakeTimeout=2.0)
    _secure, host, port, _resource, _path, _params = parse_url(url)
    HostnameEndpoint(reactor, host, port, timeout=10.0).connect(factory).addErrback(session.connection_failed)
    return session.done
