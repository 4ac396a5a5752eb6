"""The Plivo Audio Streams WebSocket: Plivo's wire (``wire``) on the shared carrier socket.

One protocol instance per phone call. Plivo does not sign the upgrade, so with an auth
token the stream URL's query must hold the media token voiced's answer put there, made
for the call and numbers beside it: checked at the upgrade (403 before any call state)
and again at ``start``, whose callId must be that call (1008). Plivo answers a
``checkpoint`` with ``playedStream`` once the audio before it has played, and drops its
buffer on ``clearAudio`` (answering ``clearedAudio``; the checkpoints it dropped are
never answered, which the call expects of a clear). Its media chunk size is not
documented, so audio is handed on in whole 20 ms frames, a remainder kept for the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

from voiced.carrier import media_token
from voiced.audio import UnsupportedAudio
from voiced.carrier.base import CallStart
from voiced.carrier.inbound import foreign_stream, parse_failed
from voiced.carrier.link import CLOSE_BAD_MEDIA_FORMAT, CLOSE_BINARY_FRAME
import voiced.carrier.plivo.wire as wire
from voiced.carrier.websocket import CarrierWebSocket, CarrierWebSocketFactory

log = Logger(namespace="voiced.carrier")

_MAX_QUERY_FIELD = 200  # ids, numbers and the token (~75 characters); longer is not ours


@dataclass(frozen=True)
class PlivoAdmission:
    """What admits a Plivo stream: the auth token (empty: unsigned, open on loopback only)
    and the contentType the answer asked for (the start's mediaFormat, when it has one, wins)."""

    auth_token: str
    content_type: str = wire.DEFAULT_CONTENT_TYPE


class PlivoMediaStream(CarrierWebSocket):
    carrier = "plivo"
    echoes_marks = True

    def __init__(self) -> None:
        super().__init__()
        self.stream_id = ""
        self._call_id = ""  # the call the stream URL names (and its token was made for)
        self._from = self._to = ""
        self._dial_id = ""  # the dial voiced placed this call for (token-bound), if any
        self._last_chunk = 0
        self._play_audio = wire.play_audio_encoder("", wire.DEFAULT_CONTENT_TYPE)

    # ---- admission -----------------------------------------------------------------------
    def admit(self, request: ConnectionRequest) -> None:
        query = {name: values[0][:_MAX_QUERY_FIELD] for name, values in request.params.items() if values}
        self._call_id = query.get(wire.CALL_PARAMETER, "")
        self._from, self._to = query.get(wire.FROM_PARAMETER, ""), query.get(wire.TO_PARAMETER, "")
        self._dial_id = query.get(wire.DIAL_PARAMETER, "")
        auth_token = self.factory.config.auth_token
        if not auth_token:
            return
        subject = wire.token_subject(self._call_id, self._from, self._to, self._dial_id)
        problem = media_token.problem(auth_token, subject, query.get(media_token.PARAMETER),
                                      self.factory.clock.seconds())
        if problem is not None:
            log.warn("MEDIA_REJECTED carrier=plivo call={call}: {problem} in the stream URL from {peer}",
                     call=self._call_id or "-", problem=problem, peer=request.peer)
            raise ConnectionDeny(403, "invalid media token")

    # ---- inbound -------------------------------------------------------------------------
    def received(self, payload: bytes | str, is_binary: bool) -> None:
        link = self.link
        if is_binary:
            link.fail(CLOSE_BINARY_FRAME, "binary frames are not part of Plivo's audio stream protocol")
            return
        try:
            message = wire.parse_message(payload)
        except Exception as e:  # a parser gap must cost one message, never the socket
            parse_failed(link, e, wire.ProtocolError)
            return
        if type(message) is wire.Media:
            self._on_media(message)
        elif isinstance(message, wire.Start):
            self._on_start(message)
        elif self._foreign_stream(message):
            return
        elif isinstance(message, wire.PlayedStream):
            link.played(message.name)
        elif isinstance(message, wire.Dtmf):
            link.dtmf(message.digit)
        elif isinstance(message, wire.ClearedAudio):
            log.debug("Plivo cleared its audio call={call}", call=link.call_id)
        elif isinstance(message, wire.Stop):
            link.stopped(f"Plivo stopped the stream ({message.reason or 'no reason given'})")
        else:
            log.debug("Ignoring unknown event {event!r} call={call}", event=message.event, call=link.call_id)

    def _foreign_stream(self, message: wire.InboundMessage) -> bool:
        """A message naming another stream than this socket's start did: dropped."""
        return foreign_stream(self.link, type(message).__name__, "streamId", getattr(message, "stream_id", ""),
                              self.stream_id)

    def _on_media(self, media: wire.Media) -> None:
        link = self.link
        if link.call is None:
            link.protocol_error("media before start dropped")
            return
        if media.stream_id != self.stream_id and self._foreign_stream(media):
            return
        if media.track != "inbound" and media.track:
            return  # only the caller's audio is speech to answer
        chunk = media.chunk
        if chunk is not None:
            if chunk <= self._last_chunk:
                return  # a repeated or late chunk: audio out of order is noise
            self._last_chunk = chunk
        link.audio_chunk(media.payload)

    def _on_start(self, start: wire.Start) -> None:
        link = self.link
        if link.call is not None:
            link.protocol_error("duplicate start ignored")
            return
        link.call_id, self.stream_id = start.call_id, start.stream_id
        if self.factory.config.auth_token and start.call_id != self._call_id:
            problem = f"start for call {start.call_id[:40]!r}, but the stream URL's token is for {self._call_id!r}"
            log.warn("MEDIA_REJECTED carrier=plivo call={call}: {problem}; closing 1008 before any speech stream "
                     "opens", call=start.call_id, problem=problem)
            link.refuse(problem, logged=True)
            return
        encoding, rate = start.encoding, start.sample_rate
        if not encoding:  # the answer's contentType is what Plivo streams
            encoding, rate = wire.split_content_type(self.factory.config.content_type)
        try:
            audio = wire.audio_format(encoding, rate or 8000)
        except UnsupportedAudio as e:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, str(e))
            return
        # playAudio must name the stream's own encoding and rate: Plivo does not convert.
        out_type = "audio/x-mulaw;rate=8000" if audio.encoding == "mulaw" else f"audio/x-l16;rate={audio.sample_rate}"
        self._play_audio = wire.play_audio_encoder(start.stream_id, out_type)
        parameters = {**start.extra_headers, "From": self._from, "To": self._to}  # the token-bound numbers win
        parameters.pop(wire.DIAL_PARAMETER, None)  # only the stream URL (under the token) names a dial
        if self._dial_id:
            parameters[wire.DIAL_PARAMETER] = self._dial_id
        link.started(CallStart("plivo", start.call_id, start.stream_id, self._from, self._to, parameters, audio))

    # ---- CarrierWire -----------------------------------------------------------------------
    def write_audio(self, payload: bytes) -> None:
        self.send_text(self._play_audio(payload))

    def write_mark(self, name: str) -> None:
        self.send_text(wire.checkpoint_message(self.stream_id, name))

    def write_clear(self) -> None:
        self.send_text(wire.clear_audio_message(self.stream_id))


class PlivoMediaStreamFactory(CarrierWebSocketFactory):
    protocol = PlivoMediaStream
