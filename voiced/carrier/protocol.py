"""The Twilio Media Streams WebSocket: a thin dispatcher between Autobahn and a Call.

One protocol instance per phone call. Text frames are parsed by
``voiced.carrier.twilio`` and handed to the call's turn machine; the turn machine
talks back through the ``CallTransport`` methods below. Any exception while
handling one call is logged with its call id and closes that call's socket only.
Once voiced has sent its close, inbound messages are dropped unread: the handshake
may take seconds, and nothing the peer sends then can matter (or be logged again).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from voiced.audio import FRAME_BYTES
from voiced.carrier import media_token, twilio
from voiced.carrier.limits import MAX_OUTBOUND_BYTES, MediaRate, outbound_backlog

if TYPE_CHECKING:
    from voiced.call.turn import Call
    from voiced.service import VoicedService

log = Logger(namespace="voiced.carrier")

# Close codes. Autobahn lets an application send only 1000 and 3000-4999, so
# protocol-level failures use the private range (README lists them).
CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008  # a start without a valid media token (sent as a raw close frame)
CLOSE_NO_START = 4000
CLOSE_BAD_MEDIA_FORMAT = 4001
CLOSE_BINARY_FRAME = 4002
CLOSE_MALFORMED = 4003
CLOSE_INTERNAL_ERROR = 4011

START_TIMEOUT_S = 10.0
MAX_PROTOCOL_ERRORS = 20
# A lossy or hostile peer must not turn into a log line per frame.
MAX_SEQUENCE_WARNINGS = 10
# The inbound fast path's frame size limit when Autobahn's own limits are off (0).
MAX_FAST_FRAME = 64 * 1024


class MediaStreamProtocol(WebSocketServerProtocol):
    factory: "MediaStreamFactory"

    def __init__(self) -> None:
        super().__init__()
        self.call: "Call | None" = None
        self.call_id = "-"
        self.stream_sid = ""
        self._sequence = twilio.SequenceTracker()
        self._sequence_warnings = 0
        self._errors = 0
        self._start_timer: IDelayedCall | None = None
        self._closing = False  # we sent (or decided to send) a close: the peer is no longer heard
        self._rate = MediaRate()
        self._last_chunk = 0  # the last media chunk handed to the call
        self._flood_logged = False
        self._admitted_by = "carrier"
        self._fast_limit = 0  # the fast path's frame size limit, set once open (0: Autobahn decodes)

    # ---- the inbound frame path ------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        """Whole masked text frames go straight to onMessage; anything else goes through Autobahn.

        Autobahn's per-read path costs ~30 µs for one 20 ms media frame (a debug line's
        arguments built and discarded, a cffi masker object per frame, a Deferred fired for
        its "message" observers, and its frame state machine), more than the rest of the
        daemon's work on that frame. Twilio sends one small unfragmented text frame per
        message, so that common case is decoded here: FIN + text opcode, masked, a 7- or
        16-bit length within the payload limits, valid UTF-8. Everything else (control
        frames, fragments, a frame split across reads, extensions, a closing socket, bad
        UTF-8) goes to Autobahn from its first byte, and Autobahn's checks and close codes
        apply exactly as before.
        """
        if self.state == self.STATE_OPEN and self.current_frame is None and not self.data \
                and self._perMessageCompress is None:
            data = self._whole_text_frames(data)
            if not data:
                return
        self._dataReceived(data)

    def _whole_text_frames(self, data: bytes) -> bytes:
        """Delivers the whole text frames at the front of ``data``; returns the rest."""
        pos, end = 0, len(data)
        limit = self._fast_limit
        while end - pos >= 6 and self.state == self.STATE_OPEN:
            second = data[pos + 1]
            if data[pos] != 0x81 or second < 0x80:  # FIN + text, no RSV; masked
                break
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(data[pos + 2: pos + 4], "big")
                mask_at = pos + 4
            elif n == 127:
                break
            else:
                mask_at = pos + 2
            start = mask_at + 4
            stop = start + n
            if n > limit or stop > end:
                break
            words = (n + 3) >> 2
            try:
                # Unmasked as one integer XOR. Little-endian lines byte i of the payload up with
                # byte i of the repeated mask however long either is; the mask's extra bytes
                # past the payload are cut off after (no slice of the mask first).
                text = (int.from_bytes(data[start:stop], "little")
                        ^ int.from_bytes(data[mask_at:start] * words, "little")) \
                    .to_bytes(words << 2, "little")[:n].decode("utf-8")
            except UnicodeDecodeError:
                break  # Autobahn fails the connection with its invalid-payload close
            pos = stop
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()  # as Autobahn does: any data frame shows the peer alive
            self.onMessage(text, False)
        return data[pos:] if pos else data

    # ---- Autobahn callbacks -------------------------------------------------------------
    def onConnect(self, request: ConnectionRequest) -> None:
        try:
            self._admitted_by = self.factory.service.admit_connection(request)
        except ConnectionDeny:
            raise
        except Exception:
            log.failure("Rejecting media stream upgrade from {peer}", peer=request.peer)
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR)

    def onOpen(self) -> None:
        # Autobahn copied the factory's limits onto the protocol before the handshake.
        self._fast_limit = min(self.maxFramePayloadSize or MAX_FAST_FRAME, self.maxMessagePayloadSize or MAX_FAST_FRAME)
        self._start_timer = self.factory.clock.callLater(START_TIMEOUT_S, self._no_start)

    def onMessage(self, payload: bytes | str, isBinary: bool) -> None:
        if self._closing:
            return
        if isBinary:
            self._fail(CLOSE_BINARY_FRAME, "binary frames are not part of the Twilio protocol")
            return
        try:
            message = twilio.parse_message(payload)
        except twilio.ProtocolError as e:
            self._protocol_error(str(e))
            return
        except Exception as e:  # a parser gap must cost one message, never the socket
            log.failure("Unexpected parse failure call={call}", call=self.call_id)
            self._protocol_error(f"unparseable message ({type(e).__name__})")
            return
        try:
            self._dispatch(message)
        except Exception:
            log.failure("Error handling {event} call={call}", event=type(message).__name__, call=self.call_id)
            self._fail(CLOSE_INTERNAL_ERROR, "internal error")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        if self._sequence.gaps or self._sequence.reordered:
            log.info("SEQUENCE call={call} totals: {gaps} gaps, {reordered} reordered", call=self.call_id,
                     gaps=self._sequence.gaps, reordered=self._sequence.reordered)
        if self.call is not None:
            call, self.call = self.call, None
            try:
                call.close(reason=f"websocket closed code={code}")
            finally:
                self.factory.service.call_ended(call)

    # ---- message dispatch --------------------------------------------------------------
    def _dispatch(self, message: twilio.InboundMessage) -> None:
        problems = self._sequence.observe(message)
        if problems:
            self._sequence_problems(problems)
        if type(message) is twilio.Media:
            if message.stream_sid != self.stream_sid and self._foreign_stream(message):
                return
            self._on_media(message)
            return
        if self._foreign_stream(message):
            return
        if isinstance(message, twilio.Mark):
            if self.call is not None:
                self.call.on_mark(message.name)
        elif isinstance(message, twilio.Start):
            self._on_start(message)
        elif isinstance(message, twilio.Dtmf):
            if self.call is not None:
                self.call.on_dtmf(message.digit)
        elif isinstance(message, twilio.Stop):
            log.info("STOP call={call}: the carrier ended the stream", call=self.call_id)
            self._close(CLOSE_NORMAL)
        elif isinstance(message, twilio.Connected):
            log.debug("Connected protocol={p} version={v}", p=message.protocol, v=message.version)
        else:
            log.debug("Ignoring unknown event {event!r} call={call}", event=message.event, call=self.call_id)

    def _sequence_problems(self, problems: list[str]) -> None:
        for problem in problems:
            self._sequence_warnings += 1
            if self._sequence_warnings <= MAX_SEQUENCE_WARNINGS:
                log.warn("SEQUENCE call={call} {problem}", call=self.call_id, problem=problem)
            elif self._sequence_warnings == MAX_SEQUENCE_WARNINGS + 1:
                log.warn("SEQUENCE call={call}: further gaps and reorderings are counted, not logged",
                         call=self.call_id)

    def _foreign_stream(self, message: twilio.InboundMessage) -> bool:
        """A message naming another stream than this socket's start did: dropped."""
        sid = getattr(message, "stream_sid", "")
        if self.call is None or not sid or not self.stream_sid or sid == self.stream_sid \
                or isinstance(message, twilio.Start):
            return False
        self._protocol_error(f"{type(message).__name__.lower()} for streamSid {sid[:40]!r} dropped "
                             f"(this stream is {self.stream_sid})")
        return True

    def _on_media(self, media: twilio.Media) -> None:
        call = self.call
        if call is None:
            self._protocol_error("media before start dropped")
            return
        if media.track not in ("inbound", "inbound_track"):
            return
        payload = media.payload
        size = len(payload)
        if not size or size % FRAME_BYTES:
            self._protocol_error(f"media payload of {size} bytes is not whole 20 ms frames: dropped")
            return
        chunk = media.chunk
        if chunk is not None:
            if chunk <= self._last_chunk:
                return  # a repeated or late chunk: SEQUENCE logged it; audio out of order is noise
            self._last_chunk = chunk
        if not self._rate.admit(size, self.factory.clock.seconds()):
            if not self._flood_logged:
                self._flood_logged = True
                log.warn("MEDIA_FLOOD call={call}: audio arriving faster than real time; frames dropped",
                         call=self.call_id)
            if self._rate.flooding:
                self._policy_close(f"media flood: {self._rate.dropped} frames over real time")
            return
        call.on_media(payload)

    def _on_start(self, start: twilio.Start) -> None:
        if self.call is not None:
            self._protocol_error("duplicate start ignored")  # counted: a flood closes the socket
            return
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self.call_id, self.stream_sid = start.call_sid, start.stream_sid
        start = self._check_media_token(start)
        if start is None:
            return
        if start.encoding != "audio/x-mulaw" or start.sample_rate != 8000 or start.channels != 1:
            self._fail(
                CLOSE_BAD_MEDIA_FORMAT,
                f"unsupported media format {start.encoding}/{start.sample_rate}/{start.channels}",
            )
            return
        self.call = self.factory.service.new_call(start, self)
        self.call.start()

    def _check_media_token(self, start: twilio.Start) -> "twilio.Start | None":
        """The start without its token (no record keeps it), or None when the socket is refused."""
        token = self.factory.service.settings.twilio_auth_token
        params = dict(start.custom_parameters)
        presented = params.pop(media_token.PARAMETER, None)
        if not token or self._admitted_by == "console":
            # The console's one-use media token, checked at the upgrade, already vouched for it.
            return replace(start, custom_parameters=params)
        problem = media_token.problem(token, start.call_sid, presented, self.factory.clock.seconds())
        if problem is None:
            return replace(start, custom_parameters=params)
        log.warn("MEDIA_REJECTED call={call}: {problem}; closing 1008 before any speech stream opens",
                 call=self.call_id, problem=problem)
        self._policy_close(problem, logged=True)
        return None

    def _policy_close(self, reason: str, logged: bool = False) -> None:
        if self._closing:
            return
        if not logged:
            log.warn("CLOSING call={call} code=1008: {reason}", call=self.call_id, reason=reason)
        self._closing = True
        if self.state == self.STATE_OPEN:
            # sendClose allows only 1000 and 3000-4999; 1008 is the standard "policy violation".
            self.sendCloseFrame(CLOSE_POLICY_VIOLATION, reason.encode("utf-8")[:120], isReply=False)

    # ---- CallTransport ---------------------------------------------------------------------
    def _send(self, text: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        if outbound_backlog(self.transport) > MAX_OUTBOUND_BYTES:
            # The peer stopped reading: a close frame would not be read either.
            log.warn("PEER_NOT_READING call={call}: over {limit} bytes unsent; dropping the socket",
                     call=self.call_id, limit=MAX_OUTBOUND_BYTES)
            self._closing = True
            self.dropConnection(abort=True)
            return
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def send_audio(self, ulaw: bytes) -> None:
        self._send(twilio.media_message(self.stream_sid, ulaw))

    def send_mark(self, name: str) -> None:
        self._send(twilio.mark_message(self.stream_sid, name))

    def send_clear(self) -> None:
        self._send(twilio.clear_message(self.stream_sid))

    def hang_up(self) -> None:
        self._close(CLOSE_NORMAL, "call completed")

    # ---- errors ------------------------------------------------------------------------------
    def _protocol_error(self, problem: str) -> None:
        self._errors += 1
        self.factory.service.metrics.protocol_errors_total.inc()
        log.warn("PROTOCOL_ERROR call={call} {problem}", call=self.call_id, problem=problem)
        if self._errors >= MAX_PROTOCOL_ERRORS:
            self._fail(CLOSE_MALFORMED, "too many malformed messages")

    def _no_start(self) -> None:
        self._start_timer = None
        if self.call is None:
            self._fail(CLOSE_NO_START, f"no start message within {START_TIMEOUT_S:.0f} s")

    def _fail(self, code: int, reason: str) -> None:
        if self._closing:
            return
        log.warn("CLOSING call={call} code={code}: {reason}", call=self.call_id, code=code, reason=reason)
        self._close(code, reason[:120])

    def _close(self, code: int, reason: str | None = None) -> None:
        self._closing = True
        if self.state == self.STATE_OPEN:
            self.sendClose(code, reason)


class MediaStreamFactory(WebSocketServerFactory):
    protocol = MediaStreamProtocol

    def __init__(self, service: "VoicedService", clock: Any, url: str = "ws://localhost/media") -> None:
        super().__init__(url, server="voiced")
        self.service = service
        self.clock = clock
        self.setProtocolOptions(
            webStatus=False,
            maxFramePayloadSize=64 * 1024,
            maxMessagePayloadSize=64 * 1024,
            autoPingInterval=10,
            autoPingTimeout=20,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
            failByDrop=False,
        )
