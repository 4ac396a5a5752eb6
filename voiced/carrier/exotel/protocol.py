"""The Exotel Voicebot WebSocket: Exotel's wire (``wire``) on the shared carrier socket.

One protocol instance per phone call. Exotel does not sign the upgrade; with
``exotel_secret`` set, the basic-auth credentials of the applet's URL are checked
before any call state exists (``auth``), else the socket takes calls only while voiced
listens on loopback (``voiced.carrier.gate``). Exotel echoes each ``mark`` once the
audio before it has played and drops its buffer on ``clear``. The caller's audio
arrives in chunks of about 100 ms, handed to the link as whole 20 ms frames; the bot's
leaves in chunks cut to Exotel's size rules (``chunks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

from voiced.audio import UnsupportedAudio
from voiced.carrier.base import CallStart
import voiced.carrier.exotel.wire as wire
from voiced.carrier.exotel.auth import credentials_problem
from voiced.carrier.exotel.chunks import Rechunker
from voiced.carrier.exotel.control import ExotelStreams
from voiced.carrier.inbound import parse_failed
from voiced.carrier.link import CLOSE_BAD_MEDIA_FORMAT, CLOSE_BINARY_FRAME
from voiced.carrier.websocket import CarrierWebSocket, CarrierWebSocketFactory

log = Logger(namespace="voiced.carrier")

#: The query parameter of the applet's URL that asks Exotel for 16 or 24 kHz.
SAMPLE_RATE_PARAMETER = "sample-rate"


@dataclass(frozen=True)
class ExotelAdmission:
    """What admits an Exotel stream: the applet's credentials ("" when voiced listens on
    loopback only and checks none), and this process's open streams (for the control)."""

    secret: str
    streams: ExotelStreams


def url_sample_rate(params: dict[str, list[str]]) -> int | None:
    """The applet URL's ``?sample-rate=``, when it is a number."""
    values = params.get(SAMPLE_RATE_PARAMETER) or []
    value = values[0] if values else ""
    return int(value) if value.isdigit() and len(value) < 7 else None


class ExotelMediaStream(CarrierWebSocket):
    carrier = "exotel"
    echoes_marks = True

    def __init__(self) -> None:
        super().__init__()
        self.stream_sid = ""
        self._url_rate: int | None = None
        self._chunks: Rechunker | None = None

    # ---- admission -----------------------------------------------------------------------
    def admit(self, request: ConnectionRequest) -> None:
        admission: ExotelAdmission = self.factory.config
        if admission.secret:
            problem = credentials_problem(admission.secret, request.headers.get("authorization"))
            if problem is not None:
                log.warn("MEDIA_REJECTED carrier=exotel path={path} from {peer}: {problem}", path=request.path,
                         peer=request.peer, problem=problem)
                raise ConnectionDeny(403, "invalid credentials")
        self._url_rate = url_sample_rate(request.params)

    # ---- inbound -------------------------------------------------------------------------
    def received(self, payload: bytes | str, is_binary: bool) -> None:
        link = self.link
        if is_binary:
            link.fail(CLOSE_BINARY_FRAME, "binary frames are not part of the Exotel protocol")
            return
        try:
            message = wire.parse_message(payload)
        except Exception as e:  # a parser gap must cost one message, never the socket
            parse_failed(link, e, wire.ProtocolError)
            return
        if type(message) is wire.Media:
            self._on_media(message.payload)
        elif isinstance(message, wire.Mark):
            link.played(message.name)
        elif isinstance(message, wire.Start):
            self._on_start(message)
        elif isinstance(message, wire.Dtmf):
            link.dtmf(message.digit)
        elif isinstance(message, wire.Stop):
            link.stopped(f"Exotel ended the stream ({message.reason or 'no reason given'})")
        elif isinstance(message, wire.Connected):
            log.debug("Exotel connected")
        else:
            log.debug("Ignoring unknown event {event!r} call={call}", event=message.event, call=link.call_id)

    def _on_media(self, payload: bytes) -> None:
        # Exotel promises chunks of *about* 100 ms: one that ends inside a 20 ms frame keeps
        # that part for the next one, so no audio is lost and every frame is whole.
        self.link.audio_chunk(payload)

    def _on_start(self, start: wire.Start) -> None:
        link = self.link
        if link.call is not None:
            link.protocol_error("duplicate start ignored")
            return
        link.call_id, self.stream_sid = start.call_sid, start.stream_sid
        try:
            fmt = wire.audio_format(start, self._url_rate)
        except UnsupportedAudio as e:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, str(e))
            return
        self._chunks = Rechunker(fmt)
        params = dict(start.custom_parameters)
        self.factory.config.streams.add(start.call_sid, self)
        link.started(CallStart("exotel", start.call_sid, start.stream_sid,
                               start.from_number or params.get("From", ""), start.to_number or params.get("To", ""),
                               params, fmt))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.link is not None and self.link.call_id != "-":
            self.factory.config.streams.remove(self.link.call_id, self)
        super().onClose(wasClean, code, reason)

    # ---- CarrierWire -----------------------------------------------------------------------
    def write_audio(self, payload: bytes) -> None:
        if self._chunks is None:
            return
        for chunk in self._chunks.audio(payload):
            self.send_text(wire.media_message(self.stream_sid, chunk))

    def write_mark(self, name: str) -> None:
        # The audio before the marker goes first, whole: Exotel echoes the mark once it has played.
        rest = self._chunks.flush() if self._chunks is not None else b""
        if rest:
            self.send_text(wire.media_message(self.stream_sid, rest))
        self.send_text(wire.mark_message(self.stream_sid, name))

    def write_clear(self) -> None:
        if self._chunks is not None:
            self._chunks.clear()  # never sent: nothing of it was heard
        self.send_text(wire.clear_message(self.stream_sid))

    # ---- the control's handle ----------------------------------------------------------------
    def end_stream(self) -> None:
        """End this call's stream as the bot's hang-up does (the flow's next applet takes the call)."""
        if not self.link.closing:
            self.link.hang_up()


class ExotelMediaStreamFactory(CarrierWebSocketFactory):
    protocol = ExotelMediaStream

    def __init__(self, core: Any, config: ExotelAdmission) -> None:
        super().__init__(core, config, url="ws://localhost/media/exotel")
