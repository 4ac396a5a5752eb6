"""One call's link between a carrier's protocol and the call core, the same for every carrier.

A carrier's protocol parses its wire and calls ``started``, ``audio``, ``dtmf``,
``played``, ``stopped`` and ``protocol_error`` here; the ``Call`` talks back through
this object (it is the call's ``CallTransport``), which converts the bot's 8 kHz mu-law
into the call's format (``voiced.carrier.codec``) and either hands it to the carrier
with playback markers the carrier echoes, or paces it itself on a local playout clock
(``voiced.carrier.playout``) for a carrier without echoes. The call hears 8 kHz
mu-law; when the service gave a wideband call 16 kHz STT (the call's ``stt_audio``),
each frame also goes to the call at 16 kHz for its STT stream. Whatever goes wrong with
one call (a malformed message, an exception in the call) closes that call's stream
only, with one of the close codes below and a log line naming the call.

With recordings on, the link is also the call's recording tap: it sees the caller's
audio (as the call's 8 kHz mu-law) and the bot's audio as sent, and the clears, for
every carrier alike (``voiced.recording``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from voiced.audio import MULAW_8K
from voiced.carrier.base import CallCore, CallStart, CarrierWire
from voiced.carrier.codec import Codec
from voiced.carrier.limits import MediaRate
from voiced.carrier.playout import Playout

if TYPE_CHECKING:
    from voiced.call.turn import Call
    from voiced.recording.tap import CallRecording

log = Logger(namespace="voiced.carrier")

# Close codes. Autobahn lets an application send only 1000 and 3000-4999, so
# protocol-level failures use the private range (README lists them).
CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008  # refused by admission after the upgrade (a bad media token, a flood)
CLOSE_NO_START = 4000
CLOSE_BAD_MEDIA_FORMAT = 4001
CLOSE_BINARY_FRAME = 4002  # a frame of the kind this carrier never sends
CLOSE_MALFORMED = 4003
CLOSE_INTERNAL_ERROR = 4011

START_TIMEOUT_S = 10.0
MAX_PROTOCOL_ERRORS = 20


class CallLink:
    """Per call; every method runs on the reactor thread."""

    def __init__(self, core: CallCore, wire: CarrierWire, carrier: str, echoes_marks: bool) -> None:
        self.core = core
        self.clock = core.clock
        self.wire = wire
        self.carrier = carrier
        self.echoes_marks = echoes_marks
        self.call: "Call | None" = None
        self.call_id = "-"
        self.codec: Codec | None = None
        self.wideband_stt = False  # the call's STT takes the carrier's 16 kHz, not the 8 kHz copy
        self.frame_bytes = 160  # one 20 ms frame of the call's audio (mu-law 8 kHz until the start says)
        self.playout: Playout | None = None
        self.closing = False  # a close was sent or decided: the peer is no longer heard
        self._errors = 0
        self._start_timer: IDelayedCall | None = None
        self._rate = MediaRate()
        self._flood_logged = False
        self._end_reason = ""  # why voiced or the carrier ended the stream, in words (for the record)
        self._carry = b""  # audio_chunk's tail short of a whole 20 ms frame
        self.recording: "CallRecording | None" = None  # with --recordings

    # ---- from the carrier -------------------------------------------------------------
    def opened(self) -> None:
        self._start_timer = self.clock.callLater(START_TIMEOUT_S, self._no_start)

    def started(self, start: CallStart) -> None:
        if self.call is not None:
            self.protocol_error("duplicate start ignored")  # counted: a flood closes the stream
            return
        self._cancel_start_timer()
        self.call_id = start.call_id or "-"
        codec = Codec(start.audio)  # the carrier's parser refused (4001) a format voiced does not speak
        self.codec, self.frame_bytes = codec, codec.frame_bytes
        if not self.echoes_marks:
            self.playout = Playout(self.clock, codec.frame_bytes, self.wire.write_audio, self.played)
        self.call = call = self.core.new_call(start, self, "carrier" if self.echoes_marks else "local")
        self.wideband_stt = call.stt_audio != MULAW_8K
        # A core that records (the service with --recordings) has open_recording; test cores need not.
        open_recording = getattr(self.core, "open_recording", None)
        self.recording = open_recording(call) if open_recording is not None else None
        log.info("CARRIER call={call} carrier={carrier} audio={audio} playout={playout} stt_audio={stt}",
                 call=self.call_id, carrier=self.carrier, audio=str(start.audio),
                 playout="carrier" if self.echoes_marks else "local", stt=str(call.stt_audio))
        call.start()

    def audio(self, payload: bytes) -> None:
        """The caller's audio in the call's format: whole 20 ms frames."""
        call = self.call
        if call is None:
            self.protocol_error("media before start dropped")
            return
        size = len(payload)
        if not size or size % self.frame_bytes:
            self.protocol_error(f"media payload of {size} bytes is not whole 20 ms frames: dropped")
            return
        if not self._rate.admit(size // self.frame_bytes * 160, self.clock.seconds()):
            if not self._flood_logged:
                self._flood_logged = True
                log.warn("MEDIA_FLOOD call={call}: audio arriving faster than real time; frames dropped",
                         call=self.call_id)
            if self._rate.flooding:
                self.refuse(f"media flood: {self._rate.dropped} frames over real time")
            return
        codec = self.codec
        if codec is None or codec.passthrough:
            ulaw, wide = payload, None
        elif self.wideband_stt:
            ulaw, wide = codec.decode_wideband(payload)
        else:
            ulaw, wide = codec.decode(payload), None
        if self.recording is not None:
            self.recording.caller(ulaw)
        if wide is None:
            call.on_media(ulaw)
        else:
            call.on_media(ulaw, wide)

    def audio_chunk(self, payload: bytes) -> None:
        """The caller's audio from a carrier whose messages need not end on a 20 ms frame
        (Telnyx's and Asterisk's packets follow the SIP leg's ptime, Exotel's chunks are
        about 100 ms): whole frames go on now, the rest waits for the next message. A
        chunk that is not whole samples is dropped, so the samples never shift."""
        if self.call is None or not payload:
            self.audio(payload)  # reported there: media before start, an empty payload
            return
        if not self._carry and len(payload) % self.frame_bytes == 0:
            self.audio(payload)  # the common case: nothing carried, nothing to carry
            return
        if self.codec is not None and len(payload) % self.codec.format.bytes_per_sample:
            self.protocol_error(f"media payload of {len(payload)} bytes is not whole samples: dropped")
            return
        data = self._carry + payload
        whole = len(data) - len(data) % self.frame_bytes
        self._carry = data[whole:]
        if whole:
            self.audio(data[:whole])

    def dtmf(self, digit: str) -> None:
        if self.call is not None:
            self.call.on_dtmf(digit)

    def played(self, name: str) -> None:
        """The carrier (or the local playout clock) says the audio before marker ``name`` has played."""
        if self.call is not None:
            self.call.on_mark(name)

    def stopped(self, why: str = "carrier ended the stream") -> None:
        log.info("STOP call={call}: {why}", call=self.call_id, why=why)
        self._end_reason = self._end_reason or why
        self.closing = True
        self.wire.close(CLOSE_NORMAL, "")

    def protocol_error(self, problem: str) -> None:
        self._errors += 1
        self.core.metrics.protocol_errors_total.inc()
        log.warn("PROTOCOL_ERROR call={call} {problem}", call=self.call_id, problem=problem)
        if self._errors >= MAX_PROTOCOL_ERRORS:
            self.fail(CLOSE_MALFORMED, "too many malformed messages")

    def closed(self, reason: str) -> None:
        """The stream is gone (closed by either side, or dropped); ``reason`` says how, unless
        voiced or the carrier already said why it ended (a stop, a failure)."""
        reason = self._end_reason or reason
        self._cancel_start_timer()
        if self.playout is not None:
            self.playout.stop()
        if self.call is not None:
            call, self.call = self.call, None
            try:
                call.close(reason=reason)
            finally:
                if self.recording is not None:
                    self.recording.close()
                self.core.call_ended(call)

    # ---- closing ------------------------------------------------------------------------------
    def fail(self, code: int, reason: str) -> None:
        if self.closing:
            return
        log.warn("CLOSING call={call} code={code}: {reason}", call=self.call_id, code=code, reason=reason)
        self._end_reason = f"error: {reason} (close {code})"
        self.closing = True
        self.wire.close(code, reason[:120])

    def refuse(self, reason: str, logged: bool = False) -> None:
        """Policy violation (1008): a bad media token, a flood."""
        if self.closing:
            return
        if not logged:
            log.warn("CLOSING call={call} code=1008: {reason}", call=self.call_id, reason=reason)
        self._end_reason = f"refused: {reason} (close 1008)"
        self.closing = True
        self.wire.close(CLOSE_POLICY_VIOLATION, reason[:120])

    def _no_start(self) -> None:
        self._start_timer = None
        if self.call is None:
            self.fail(CLOSE_NO_START, f"no start message within {START_TIMEOUT_S:.0f} s")

    def _cancel_start_timer(self) -> None:
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self._start_timer = None

    # ---- CallTransport: what the call asks of the carrier -------------------------------------
    def send_audio(self, ulaw: bytes) -> None:
        if self.recording is not None:
            self.recording.bot(ulaw)
        payload = ulaw if self.codec is None or self.codec.passthrough else self.codec.encode(ulaw)
        if self.playout is not None:
            self.playout.audio(payload)
        else:
            self.wire.write_audio(payload)

    def send_mark(self, name: str) -> None:
        if self.playout is not None:
            self.playout.mark(name)
        else:
            self.wire.write_mark(name)

    def send_clear(self) -> None:
        if self.recording is not None:
            self.recording.clear()
        if self.playout is not None:
            self.playout.clear()
        self.wire.write_clear()

    def hang_up(self) -> None:
        if self.playout is not None:
            self.playout.stop()
        self.closing = True
        self.wire.end_call()
