"""The Telnyx media streaming WebSocket: Telnyx's wire (``wire``) on the shared carrier socket.

One protocol instance per call. Telnyx does not sign the upgrade; with the public key
set, the ``start`` message must carry the per-call media token voiced put in the
TeXML (or a Call Control app in ``custom_parameters``), else the socket is closed
with 1008 before any call exists. Telnyx echoes each ``mark`` once the audio before
it has played and drops its queue on ``clear`` (echoing the queued marks), like
Twilio. Media may arrive out of order: chunks are put back in order (``ChunkOrder``),
and re-cut into whole 20 ms frames when a call's RTP packets are longer or shorter.
The bot's hang-up is a REST hang-up when the API key is set (Telnyx then stops the
stream and closes the socket, with ``HANGUP_GRACE_S`` before voiced closes it
itself), else closing the socket, which ends the TeXML ``<Connect>`` and its call.
"""

from __future__ import annotations

from dataclasses import dataclass

from autobahn.websocket.types import ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from voiced.carrier import media_token
from voiced.audio import UnsupportedAudio
from voiced.carrier.base import CallStart
from voiced.carrier.inbound import foreign_stream, parse_failed
from voiced.carrier.link import CLOSE_BAD_MEDIA_FORMAT, CLOSE_BINARY_FRAME, CLOSE_NORMAL
import voiced.carrier.telnyx.wire as wire
from voiced.carrier.websocket import CarrierWebSocket, CarrierWebSocketFactory

log = Logger(namespace="voiced.carrier")

#: The stream URL's query of a call voiced dialled: the dial id and its media token.
DIAL_PARAMETER = "voiced_dial"
MAX_QUERY_FIELD = 200
# A lossy or hostile peer must not turn into a log line per frame.
MAX_ORDER_WARNINGS = 10
#: After a REST hang-up, how long Telnyx has to end the stream before voiced closes it.
HANGUP_GRACE_S = 2.0


@dataclass(frozen=True)
class TelnyxAdmission:
    """``media_secret``: keys the per-call media token ("" in open mode: no token asked);
    ``rest_hangup``: the API key is set, so the bot's hang-up goes through Call Control."""

    media_secret: str = ""
    rest_hangup: bool = False


class TelnyxMediaStream(CarrierWebSocket):
    carrier = "telnyx"
    echoes_marks = True

    def __init__(self) -> None:
        super().__init__()
        self.stream_id = ""
        self._order = wire.ChunkOrder()
        self._order_warnings = 0
        self._hangup_timer: IDelayedCall | None = None
        self._dial_id = ""  # the dial voiced placed this call for, from the stream URL
        self._dial_token: str | None = None

    def admit(self, request: ConnectionRequest) -> None:
        """Nothing to check at the upgrade: Telnyx signs none. The media token in ``start`` is the
        check; a call voiced dialled through Call Control (voiced.outbound.telnyx_dial) brings its
        dial id and the token made for it in the stream URL's query instead."""
        query = {name: values[0][:MAX_QUERY_FIELD] for name, values in request.params.items() if values}
        self._dial_id = query.get(DIAL_PARAMETER, "")
        self._dial_token = query.get(media_token.PARAMETER)

    # ---- inbound -------------------------------------------------------------------------
    def received(self, payload: bytes | str, is_binary: bool) -> None:
        link = self.link
        if is_binary:
            link.fail(CLOSE_BINARY_FRAME, "binary frames are not part of the Telnyx protocol")
            return
        try:
            message = wire.parse_message(payload)
        except Exception as e:  # a parser gap must cost one message, never the socket
            parse_failed(link, e, wire.ProtocolError)
            return
        if type(message) is wire.Media:
            if message.stream_id != self.stream_id and self._foreign_stream(message):
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
        elif isinstance(message, wire.Error):
            log.warn("TELNYX_ERROR call={call} code={code} title={title} detail={detail}", call=link.call_id,
                     code=message.code or "-", title=message.title, detail=message.detail)
        elif isinstance(message, wire.Connected):
            log.debug("Connected version={v}", v=message.version)
        else:
            log.debug("Ignoring unknown event {event!r} call={call}", event=message.event, call=link.call_id)

    def _foreign_stream(self, message: wire.InboundMessage) -> bool:
        """A message naming another stream than this socket's start did: dropped."""
        if self.link.call is None or isinstance(message, wire.Start):
            return False
        return foreign_stream(self.link, type(message).__name__.lower(), "stream_id",
                              getattr(message, "stream_id", ""), self.stream_id)

    def _on_media(self, media: wire.Media) -> None:
        if media.track != "inbound" and media.track != "inbound_track":
            return  # both_tracks also streams the bot's own audio back: never the caller's
        link = self.link
        if link.call is None or not media.payload:
            link.audio(media.payload)  # the link counts media before start, and empty payloads
            return
        if media.chunk is None:
            link.audio_chunk(media.payload)
            return
        order = self._order
        late, lost = order.late, order.lost
        for payload in order.push(media.chunk, media.payload):
            link.audio_chunk(payload)
        if order.late != late or order.lost != lost:
            self._order_problem(media.chunk, order.late - late, order.lost - lost)

    def _order_problem(self, chunk: int, late: int, lost: int) -> None:
        self._order_warnings += 1
        if self._order_warnings <= MAX_ORDER_WARNINGS:
            what = f"chunk {chunk} arrived late or twice: dropped" if late else f"{lost} chunk(s) never arrived"
            log.warn("SEQUENCE call={call} {what}", call=self.call_id, what=what)
        elif self._order_warnings == MAX_ORDER_WARNINGS + 1:
            log.warn("SEQUENCE call={call}: further late and lost chunks are counted, not logged",
                     call=self.call_id)

    def _on_start(self, start: wire.Start) -> None:
        link = self.link
        if link.call is not None:
            link.protocol_error("duplicate start ignored")
            return
        link.call_id, self.stream_id = start.call_control_id, start.stream_id
        parameters = self._check_media_token(start)
        if parameters is None:
            return
        try:
            audio = start.audio_format()
        except UnsupportedAudio as e:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, str(e))
            return
        link.started(CallStart("telnyx", start.call_control_id, start.stream_id,
                               start.from_number or parameters.get("From", ""),
                               start.to_number or parameters.get("To", ""), parameters, audio))

    def _check_media_token(self, start: wire.Start) -> dict[str, str] | None:
        """The start's parameters without the token (no record keeps it), or None when the
        socket is refused."""
        secret = self.factory.config.media_secret
        params = dict(start.custom_parameters)
        presented = params.pop(media_token.PARAMETER, None)
        subject = start.call_control_id
        params.pop(DIAL_PARAMETER, None)  # only the stream URL (under its token) names a dial
        if self._dial_id:
            params[DIAL_PARAMETER] = subject = self._dial_id
            presented = self._dial_token
        if not secret:
            return params
        problem = media_token.problem(secret, subject, presented, self.factory.clock.seconds())
        if problem is None:
            return params
        log.warn("MEDIA_REJECTED call={call}: {problem}; closing 1008 before any speech stream opens",
                 call=self.call_id, problem=problem)
        self.link.refuse(problem, logged=True)
        return None

    # ---- CarrierWire -----------------------------------------------------------------------
    def write_audio(self, payload: bytes) -> None:
        self.send_text(wire.media_message(payload))

    def write_mark(self, name: str) -> None:
        self.send_text(wire.mark_message(name))

    def write_clear(self) -> None:
        self.send_text(wire.CLEAR_MESSAGE)

    def end_call(self) -> None:
        if not self.factory.config.rest_hangup:
            self.close(CLOSE_NORMAL, "call completed")
            return
        # The core's CallControl is hanging the call up through Call Control; Telnyx then
        # stops the stream. Should it not, the socket is closed all the same.
        if self._hangup_timer is None:
            self._hangup_timer = self.factory.clock.callLater(HANGUP_GRACE_S, self._hangup_overdue)

    def _hangup_overdue(self) -> None:
        self._hangup_timer = None
        if self.state == self.STATE_OPEN:
            log.info("HANGUP call={call}: Telnyx has not ended the stream {grace:g} s after the REST hang-up; "
                     "closing it", call=self.call_id, grace=HANGUP_GRACE_S)
            self.close(CLOSE_NORMAL, "call completed")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._hangup_timer is not None and self._hangup_timer.active():
            self._hangup_timer.cancel()
        self._hangup_timer = None
        super().onClose(wasClean, code, reason)


class TelnyxMediaStreamFactory(CarrierWebSocketFactory):
    protocol = TelnyxMediaStream
