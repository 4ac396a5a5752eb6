"""The Twilio Media Streams WebSocket: Twilio's wire (``wire``) on the shared carrier socket.

One protocol instance per phone call. Twilio signs the upgrade (X-Twilio-Signature on
the public wss:// URL) and hands back, in the ``start`` message, the per-call media
token voiced put in the TwiML; the console's softphone speaks the same protocol and
is admitted by the console's one-use media token instead. Twilio echoes each
``mark`` once the audio before it has played, and drops its buffer on ``clear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

from voiced.carrier import media_token
from voiced.carrier.base import CallStart
from voiced.carrier.inbound import foreign_stream, parse_failed
from voiced.carrier.link import CLOSE_BAD_MEDIA_FORMAT, CLOSE_BINARY_FRAME
import voiced.carrier.twilio.wire as wire
from voiced.carrier.twilio.signature import request_signature, signature_matches
from voiced.carrier.websocket import CarrierWebSocket, CarrierWebSocketFactory

log = Logger(namespace="voiced.carrier")

# A lossy or hostile peer must not turn into a log line per frame.
MAX_SEQUENCE_WARNINGS = 10


@dataclass(frozen=True)
class TwilioAdmission:
    """What admits a Twilio stream: the auth token (empty: unsigned), the public host
    Twilio signed, and the console that admits its softphone (None: no console)."""

    auth_token: str
    public_host: str
    console: Any = None


class TwilioMediaStream(CarrierWebSocket):
    carrier = "twilio"
    echoes_marks = True

    def __init__(self) -> None:
        super().__init__()
        self.stream_sid = ""
        self._sequence = wire.SequenceTracker()
        self._sequence_warnings = 0
        self._last_chunk = 0  # the last media chunk handed to the call
        self._admitted_by = "carrier"

    # ---- admission -----------------------------------------------------------------------
    def admit(self, request: ConnectionRequest) -> None:
        admission: TwilioAdmission = self.factory.config
        console = admission.console
        if console is not None and console.offers_media_token(request):
            # The browser softphone: a short-lived token the console minted stands in for
            # Twilio's signature (403 unless valid, unexpired and unused).
            console.admit_media(request)
            self._admitted_by = "console"
            return
        if admission.auth_token:
            # Twilio signs the public wss:// URL it opened (path and query included).
            url = f"wss://{admission.public_host}{request.path}"
            if request.params:
                url += "?" + urlencode(request.params, doseq=True)
            if not signature_matches(admission.auth_token, url, None, request_signature(request.headers)):
                log.warn("MEDIA_REJECTED: bad or missing X-Twilio-Signature for {url} from {peer}", url=url,
                         peer=request.peer)
                raise ConnectionDeny(403, "invalid signature")

    # ---- inbound -------------------------------------------------------------------------
    def received(self, payload: bytes | str, is_binary: bool) -> None:
        link = self.link
        if is_binary:
            link.fail(CLOSE_BINARY_FRAME, "binary frames are not part of the Twilio protocol")
            return
        try:
            message = wire.parse_message(payload)
        except Exception as e:  # a parser gap must cost one message, never the socket
            parse_failed(link, e, wire.ProtocolError)
            return
        problems = self._sequence.observe(message)
        if problems:
            self._sequence_problems(problems)
        if type(message) is wire.Media:
            if message.stream_sid != self.stream_sid and self._foreign_stream(message):
                return
            self._on_media(message)
            return
        if self._foreign_stream(message):
            return
        if isinstance(message, wire.Mark):
            link.played(message.name)
        elif isinstance(message, wire.Start):
            self._on_start(message)
        elif isinstance(message, wire.Dtmf):
            link.dtmf(message.digit)
        elif isinstance(message, wire.Stop):
            link.stopped()
        elif isinstance(message, wire.Connected):
            log.debug("Connected protocol={p} version={v}", p=message.protocol, v=message.version)
        else:
            log.debug("Ignoring unknown event {event!r} call={call}", event=message.event, call=link.call_id)

    def _sequence_problems(self, problems: list[str]) -> None:
        for problem in problems:
            self._sequence_warnings += 1
            if self._sequence_warnings <= MAX_SEQUENCE_WARNINGS:
                log.warn("SEQUENCE call={call} {problem}", call=self.call_id, problem=problem)
            elif self._sequence_warnings == MAX_SEQUENCE_WARNINGS + 1:
                log.warn("SEQUENCE call={call}: further gaps and reorderings are counted, not logged",
                         call=self.call_id)

    def _foreign_stream(self, message: wire.InboundMessage) -> bool:
        """A message naming another stream than this socket's start did: dropped."""
        if self.link.call is None or isinstance(message, wire.Start):
            return False
        return foreign_stream(self.link, type(message).__name__.lower(), "streamSid",
                              getattr(message, "stream_sid", ""), self.stream_sid)

    def _on_media(self, media: wire.Media) -> None:
        if media.track not in ("inbound", "inbound_track"):
            return
        chunk = media.chunk
        if chunk is not None and self.link.call is not None:
            if chunk <= self._last_chunk:
                return  # a repeated or late chunk: SEQUENCE logged it; audio out of order is noise
            self._last_chunk = chunk
        self.link.audio(media.payload)

    def _on_start(self, start: wire.Start) -> None:
        link = self.link
        if link.call is not None:
            link.protocol_error("duplicate start ignored")
            return
        link.call_id, self.stream_sid = start.call_sid, start.stream_sid
        parameters = self._check_media_token(start)
        if parameters is None:
            return
        if start.encoding != "audio/x-mulaw" or start.sample_rate != 8000 or start.channels != 1:
            link.fail(CLOSE_BAD_MEDIA_FORMAT,
                      f"unsupported media format {start.encoding}/{start.sample_rate}/{start.channels}")
            return
        link.started(CallStart("twilio", start.call_sid, start.stream_sid, parameters.get("From", ""),
                               parameters.get("To", ""), parameters))

    def _check_media_token(self, start: wire.Start) -> dict[str, str] | None:
        """The start's parameters without the token (no record keeps it), or None when the
        socket is refused."""
        token = self.factory.config.auth_token
        params = dict(start.custom_parameters)
        presented = params.pop(media_token.PARAMETER, None)
        if not token or self._admitted_by == "console":
            # The console's one-use media token, checked at the upgrade, already vouched for it.
            return params
        now = self.factory.clock.seconds()
        problem = media_token.problem(token, start.call_sid, presented, now)
        dial_id = params.get("voiced_dial", "")
        if problem is not None and dial_id and media_token.problem(token, dial_id, presented, now) is None:
            problem = None  # a call voiced placed: its TwiML was written before Twilio named the call (voiced.outbound)
        if problem is None:
            return params
        log.warn("MEDIA_REJECTED call={call}: {problem}; closing 1008 before any speech stream opens",
                 call=self.call_id, problem=problem)
        self.link.refuse(problem, logged=True)
        return None

    # ---- CarrierWire -----------------------------------------------------------------------
    def write_audio(self, payload: bytes) -> None:
        self.send_text(wire.media_message(self.stream_sid, payload))

    def write_mark(self, name: str) -> None:
        self.send_text(wire.mark_message(self.stream_sid, name))

    def write_clear(self) -> None:
        self.send_text(wire.clear_message(self.stream_sid))


class TwilioMediaStreamFactory(CarrierWebSocketFactory):
    protocol = TwilioMediaStream
