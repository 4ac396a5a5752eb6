"""Asterisk chan_websocket on the shared carrier socket: ``/media/asterisk``.

One socket per call: Asterisk's ``Dial(WebSocket/<connection>/c(ulaw))`` connects,
sends MEDIA_START, then streams the caller's audio in binary frames in the dial
string's codec; voiced answers with binary audio that Asterisk re-times itself (it
plays its queue in real time), FLUSH_MEDIA on a barge-in and HANGUP when the bot
ends the call. The channel is answered by Asterisk itself when the socket opens
(don't put ``n`` in the dial string).

Playback echo: MARK_MEDIA -> MEDIA_MARK_PROCESSED arrived in Asterisk 20.18 / 22.8
/ 23.2 together with the JSON control format, so a socket speaking JSON gets the
carrier's echoes and one speaking plain text (any version, 20.16 / 21.11 / 22.6
on) gets voiced's local playout clock (``voiced.carrier.playout``); FLUSH_MEDIA,
DTMF_END and HANGUP exist in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

import voiced.carrier.asterisk.wire as wire
from voiced.carrier.asterisk.admission import QUERY_PARAMETER, secret_matches
from voiced.carrier.asterisk.sender import MediaSender
from voiced.carrier.base import CallStart
from voiced.carrier.inbound import parse_failed
from voiced.carrier.link import CLOSE_BAD_MEDIA_FORMAT, CLOSE_NORMAL
from voiced.carrier.websocket import CarrierWebSocket, CarrierWebSocketFactory

log = Logger(namespace="voiced.carrier")

CARRIER = "asterisk"
SECRET_ENV = "VOICED_ASTERISK_SECRET"
MAX_ERROR_LINES = 10  # Asterisk's ERROR events logged per call; more are counted
# What of MEDIA_START and the upgrade's query reaches the call as custom parameters.
VARIABLE_PREFIX = "VOICED_"
MAX_PARAMETERS = 32
MAX_NAME, MAX_VALUE = 64, 500
SILENCE = {"mulaw": b"\xff", "alaw": b"\xd5", "pcm_s16le": b"\x00\x00", "pcm_s16be": b"\x00\x00"}


@dataclass(frozen=True)
class AsteriskAdmission:
    """The shared secret Asterisk presents (empty: voiced listens on loopback only, no check)."""

    secret: str = ""


def call_parameters(query: dict[str, str], variables: dict[str, str]) -> dict[str, str]:
    """The call's custom parameters: the upgrade's query (a ``v(...)`` dial option's
    name=value pairs) and MEDIA_START's channel variables named VOICED_* (set with
    ``Set(__VOICED_X=...)`` before the Dial; Asterisk's own variables stay out), bounded."""
    parameters: dict[str, str] = {}
    for name, value in query.items():
        parameters[name[:MAX_NAME]] = value[:MAX_VALUE]
    for name, value in variables.items():
        name = name.lstrip("_")  # inherited with "__" keeps its underscores on the new channel
        if name.startswith(VARIABLE_PREFIX):
            parameters.setdefault(name[:MAX_NAME], value[:MAX_VALUE])
    return dict(list(parameters.items())[:MAX_PARAMETERS])


class AsteriskMediaSocket(CarrierWebSocket):
    carrier = CARRIER
    echoes_marks = True  # decided per call by MEDIA_START's control format (see the module's doc)

    def __init__(self) -> None:
        super().__init__()
        self.as_json = False
        self.connection_id = ""
        self.sender: MediaSender | None = None
        self._query: dict[str, str] = {}
        self._errors_logged = 0

    # ---- admission -----------------------------------------------------------------------
    def admit(self, request: ConnectionRequest) -> None:
        query = {name: values[0] for name, values in request.params.items() if values}
        presented = query.pop(QUERY_PARAMETER, None)
        self._query = query
        secret = self.factory.config.secret
        if secret and not secret_matches(secret, presented, request.headers.get("authorization")):
            log.warn("MEDIA_REJECTED carrier=asterisk: missing or wrong secret (Authorization or ?secret=) "
                     "from {peer}", peer=request.peer)
            raise ConnectionDeny(403, "invalid secret")

    # ---- inbound -------------------------------------------------------------------------
    def received(self, payload: bytes | str, is_binary: bool) -> None:
        link = self.link
        if is_binary:
            # Asterisk sends its internal frames as they come (30 ms ones from a 30 ms SIP leg).
            link.audio_chunk(payload)  # type: ignore[arg-type]
            return
        try:
            event = wire.parse_event(payload)
        except Exception as e:  # a parser gap must cost one message, never the socket
            parse_failed(link, e, wire.ProtocolError, "control message")
            return
        if isinstance(event, wire.MarkProcessed):
            if link.echoes_marks:
                link.played(event.correlation_id)
        elif isinstance(event, wire.DtmfEnd):
            link.dtmf(event.digit)
        elif isinstance(event, wire.MediaStart):
            self._on_start(event)
        elif isinstance(event, wire.FlowControl):
            self._flow(event.paused)
        elif isinstance(event, wire.AsteriskError):
            self._asterisk_error(event.text)
        else:
            log.debug("Asterisk {event} {text} call={call}", event=event.event, text=event.text, call=link.call_id)

    def _on_start(self, start: wire.MediaStart) -> None:
        link = self.link
        if link.call is not None:
            link.protocol_error("duplicate MEDIA_START ignored")
            return
        link.call_id = start.channel_id or start.connection_id
        fmt = wire.audio_format(start.format)
        if fmt is None:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, f"unsupported format {start.format[:32]!r}: dial with c(ulaw), "
                                              f"c(alaw), c(slin), c(slin16) or c(slin24)")
            return
        frame_bytes = fmt.bytes_per_ms() * 20
        if start.optimal_frame_size != frame_bytes:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, f"optimal_frame_size {start.optimal_frame_size} is not 20 ms of "
                                              f"{start.format} ({frame_bytes} bytes)")
            return
        self.as_json, self.connection_id = start.json, start.connection_id
        link.echoes_marks = start.json
        self.sender = MediaSender(self.factory.clock, frame_bytes, SILENCE[fmt.encoding], self.send_binary,
                                  self._send_mark)
        variables = {name.lstrip("_"): value for name, value in start.variables.items()}
        parameters = call_parameters(self._query, start.variables)
        from_number = self._query.get("from") or variables.get("VOICED_FROM", "")
        to_number = self._query.get("to") or variables.get("VOICED_TO", "")
        log.info("ASTERISK_START call={call} connection={connection} channel={channel} codec={codec} "
                 "control={control}", call=link.call_id, connection=start.connection_id[:64],
                 channel=start.channel[:80], codec=start.format, control="json" if start.json else "plain-text")
        link.started(CallStart(CARRIER, link.call_id, start.connection_id, from_number[:MAX_VALUE],
                               to_number[:MAX_VALUE], parameters, fmt))

    def _flow(self, paused: bool) -> None:
        sender = self.sender
        if sender is None:
            return
        log.info("ASTERISK_{state} call={call}: {what}", state="XOFF" if paused else "XON", call=self.call_id,
                 what="its queue is full, holding the bot's audio" if paused else "sending again")
        if paused:
            sender.pause()
        else:
            sender.resume()

    def _asterisk_error(self, text: str) -> None:
        self._errors_logged += 1
        if self._errors_logged <= MAX_ERROR_LINES:
            log.warn("ASTERISK_ERROR call={call}: {text}", call=self.call_id, text=text)

    # ---- CarrierWire -----------------------------------------------------------------------
    def _command(self, name: str, correlation_id: str | None = None) -> None:
        self.send_text(wire.command(name, self.as_json, correlation_id))

    def _send_mark(self, name: str) -> None:
        self._command(wire.MARK_MEDIA, name)

    def write_audio(self, payload: bytes) -> None:
        if self.sender is not None:
            self.sender.audio(payload)

    def write_mark(self, name: str) -> None:
        if self.sender is not None:
            self.sender.mark(name)

    def write_clear(self) -> None:
        if self.sender is not None:
            self.sender.clear()
        self._command(wire.FLUSH_MEDIA)

    def end_call(self) -> None:
        """HANGUP hangs up the channel (and Asterisk closes its side); the close follows it."""
        if self.sender is not None:
            self.sender.stop()
        self._command(wire.HANGUP)
        self.close(CLOSE_NORMAL, "call completed")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.sender is not None:
            self.sender.stop()
        super().onClose(wasClean, code, reason)


class AsteriskMediaFactory(CarrierWebSocketFactory):
    protocol = AsteriskMediaSocket

    def __init__(self, core: object, config: AsteriskAdmission) -> None:
        super().__init__(core, config, url="ws://localhost/media/asterisk")  # type: ignore[arg-type]
