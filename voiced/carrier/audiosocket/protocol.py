"""The AudioSocket connection: Asterisk's frames (``wire``) on plain TCP, driving a ``CallLink``.

One connection per call. Admission happens at the connection (``core.admit()``: not
ready, draining or full gets an error frame and the close) and at the UUID, the first
frame (with ``audiosocket_secret`` set, a UUID not signed with it gets the same, before
any call state). The call starts with the first audio frame, whose kind says the
channel's rate (AudioSocket() always sends 8 kHz; ``Dial(AudioSocket/...)`` the codec
of its ``c()`` option), or as 8 kHz after ``FORMAT_WAIT_S`` without audio, so the
greeting never waits on a silent line. voiced answers in the call's kind.

Asterisk plays what it receives as it arrives and echoes nothing: the link's local
playout clock paces the bot's audio and fires its markers (``echoes_marks = False``),
and a barge-in's clear is the playout dropping its queue; nothing is sent for it. The
bot hangs up with a hang-up frame; any other close sends an error frame first (codes
in ``wire``), which Asterisk also answers by hanging up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

import voiced.carrier.audiosocket.call_uuid as call_uuid
import voiced.carrier.audiosocket.wire as wire
from voiced.carrier.base import CallCore, CallStart, Refused
from voiced.carrier.codec import Downsampler
from voiced.carrier.gate import OFF
from voiced.carrier.limits import MAX_OUTBOUND_BYTES, outbound_backlog
from voiced.carrier.link import (
    CLOSE_BAD_MEDIA_FORMAT,
    CLOSE_INTERNAL_ERROR,
    CLOSE_MALFORMED,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CallLink,
)

log = Logger(namespace="voiced.carrier")

#: After the UUID, how long the first audio frame may take to say the channel's rate.
FORMAT_WAIT_S = 0.3
#: Asterisk sends its channel's audio every 20 ms: this long with no byte from it, it is gone.
IDLE_CHECK_S = 10.0

_ERROR_OF_CLOSE = {CLOSE_POLICY_VIOLATION: wire.ERROR_REFUSED, CLOSE_INTERNAL_ERROR: wire.ERROR_INTERNAL}


@dataclass(frozen=True)
class AudioSocketAdmission:
    """The secret call UUIDs are signed with ("" for none) and the carrier's mode
    (``voiced.carrier.gate``: signed, open on a loopback endpoint, or off)."""

    secret: str
    mode: str


class AudioSocketProtocol(Protocol):
    carrier = "audiosocket"
    echoes_marks = False
    factory: "AudioSocketFactory"

    def __init__(self) -> None:
        self.link: CallLink | None = None
        self.peer = "-"
        self.call_uuid: uuid.UUID | None = None
        self._open = False
        self._frames = wire.FrameSplitter()
        self._kind = wire.AUDIO_8K  # the call's audio kind, both ways, once started
        self._frame_bytes = 320  # 20 ms of the call's audio
        self._header = wire.frame(wire.AUDIO_8K, bytes(320))[:wire.HEADER_BYTES]  # of a whole outbound frame
        self._downsample: Downsampler | None = None  # wideband audio on a call that started as 8 kHz
        self._format_timer: IDelayedCall | None = None
        self._idle_timer: IDelayedCall | None = None
        self._reads = 0
        self._reads_checked = -1

    @property
    def call_id(self) -> str:
        return self.link.call_id if self.link is not None else "-"

    # ---- the connection ------------------------------------------------------------------
    def connectionMade(self) -> None:
        self._open = True
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)  # a 20 ms frame must not wait for the previous one's ACK (Asterisk does the same)
        factory = self.factory
        if factory.config.mode == OFF:
            log.warn("CARRIER_OFF audiosocket: refused a connection from {peer} (--audiosocket-listen is not "
                     "loopback and VOICED_AUDIOSOCKET_SECRET is not set)", peer=self.peer)
            self._abandon(wire.ERROR_REFUSED)
            return
        try:
            factory.core.admit()
        except Refused as e:
            log.info("AUDIOSOCKET_REFUSED peer={peer} status={status}: {reason}", peer=self.peer, status=e.status,
                     reason=e.reason)
            self._abandon(wire.ERROR_UNAVAILABLE)
            return
        except Exception:
            log.failure("Refusing an AudioSocket connection from {peer}", peer=self.peer)
            self._abandon(wire.ERROR_INTERNAL)
            return
        self.link = CallLink(factory.core, self, self.carrier, self.echoes_marks)
        self.link.opened()
        self._idle_timer = factory.clock.callLater(IDLE_CHECK_S, self._idle_check)

    def _abandon(self, code: int) -> None:
        """No call: an error frame, and the close."""
        self.transport.write(wire.error_frame(code))
        self._open = False
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._open = False
        for timer in (self._format_timer, self._idle_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._format_timer = self._idle_timer = None
        if self.link is not None:
            self.link.closed(f"connection lost ({reason.getErrorMessage() if reason is not None else '-'})")

    def _idle_check(self) -> None:
        self._idle_timer = None
        link = self.link
        if link is None or link.closing or not self._open:
            return
        if self._reads == self._reads_checked:
            link.fail(CLOSE_MALFORMED, f"nothing from Asterisk for over {IDLE_CHECK_S:.0f} s")
            return
        self._reads_checked = self._reads
        self._idle_timer = self.factory.clock.callLater(IDLE_CHECK_S, self._idle_check)

    # ---- inbound ---------------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        link = self.link
        if link is None or link.closing:
            return  # refused, or a close is on its way: nothing the peer says now matters
        self._reads += 1
        try:
            frames = self._frames.feed(data)
        except wire.FrameTooLong as e:
            link.fail(CLOSE_MALFORMED, str(e))
            return
        for kind, payload in frames:
            try:
                if kind == self._kind and link.call is not None:
                    self._audio(payload)  # the call's own audio: fifty a second
                else:
                    self._other(kind, payload)
            except Exception:
                log.failure("Error handling an AudioSocket {kind} frame call={call}", kind=wire.describe(kind),
                            call=link.call_id)
                link.fail(CLOSE_INTERNAL_ERROR, "internal error")
            if link.closing:
                return

    def _other(self, kind: int, payload: bytes) -> None:
        link = self.link
        assert link is not None
        if kind == wire.HANG_UP:
            link.stopped("Asterisk hung up (a hang-up frame)")
        elif self.call_uuid is None and kind != wire.UUID:
            link.fail(CLOSE_MALFORMED, f"the first frame is {wire.describe(kind)}, not the call's UUID")
        elif kind in wire.AUDIO_RATES:
            self._other_audio(kind, payload)
        elif kind == wire.DTMF:
            try:
                link.dtmf(wire.parse_dtmf(payload))
            except wire.ProtocolError as e:
                link.protocol_error(str(e))
        elif kind == wire.UUID:
            self._on_uuid(payload)
        elif kind == wire.ERROR:
            code = payload.hex() or "none"
            log.warn("AUDIOSOCKET_ERROR call={call} code={code}: Asterisk reports an error", call=link.call_id,
                     code=code[:8])
            link.stopped(f"Asterisk sent an error frame (code {code[:8]})")
        else:
            link.protocol_error(f"{wire.describe(kind)} frame of {len(payload)} bytes dropped")

    def _on_uuid(self, payload: bytes) -> None:
        link = self.link
        assert link is not None
        if self.call_uuid is not None:
            link.protocol_error("a second UUID frame ignored")
            return
        try:
            presented = wire.parse_uuid(payload)
        except wire.ProtocolError as e:
            link.fail(CLOSE_MALFORMED, str(e))
            return
        factory = self.factory
        secret = factory.config.secret
        if secret:
            now = factory.clock.seconds()
            problem = call_uuid.problem(secret, presented, now)
            if problem is None and not factory.replays.first_use(presented, now):
                problem = "call UUID already used"
            if problem is not None:
                log.warn("MEDIA_REJECTED carrier=audiosocket uuid={uuid} peer={peer}: {problem}; closing before "
                         "any call state", uuid=str(presented), peer=self.peer, problem=problem)
                link.refuse(problem, logged=True)
                return
        self.call_uuid = presented
        link.call_id = str(presented)
        self._format_timer = factory.clock.callLater(FORMAT_WAIT_S, self._no_audio_yet)

    def _no_audio_yet(self) -> None:
        self._format_timer = None
        try:
            self._start(wire.AUDIO_8K)
        except Exception:
            log.failure("Error starting an AudioSocket call call={call}", call=self.call_id)
            if self.link is not None:
                self.link.fail(CLOSE_INTERNAL_ERROR, "internal error")

    def _start(self, kind: int) -> None:
        link = self.link
        if link is None or link.call is not None or link.closing:
            return
        try:
            fmt = wire.audio_format(kind)
        except wire.ProtocolError as e:
            link.fail(CLOSE_BAD_MEDIA_FORMAT, str(e))
            return
        self._kind = kind
        link.started(CallStart(self.carrier, str(self.call_uuid), "", audio=fmt))
        self._frame_bytes = link.frame_bytes
        self._header = wire.frame(kind, bytes(self._frame_bytes))[:wire.HEADER_BYTES]

    def _other_audio(self, kind: int, payload: bytes) -> None:
        """Audio of another kind than the call's: the first audio frame, or a rate change."""
        link = self.link
        assert link is not None
        if link.call is None:  # the first audio: its kind is the call's
            if self._format_timer is not None and self._format_timer.active():
                self._format_timer.cancel()
            self._format_timer = None
            self._start(kind)
            if link.call is not None:
                self._audio(payload)
            return
        if self._kind == wire.AUDIO_8K and kind in wire.AUDIO_FORMATS:
            # A wideband channel silent for FORMAT_WAIT_S: the call went on at 8 kHz, so its
            # audio comes down to 8 kHz here (voiced answers at 8 kHz; Asterisk converts).
            rate = wire.AUDIO_RATES[kind]
            if self._downsample is None or self._downsample.step != rate // 8000:
                self._downsample = Downsampler(rate)
                log.info("AUDIOSOCKET_RATE call={call}: {rate} Hz audio on a call started at 8000 Hz; converted",
                         call=link.call_id, rate=rate)
            if len(payload) % 2:
                link.protocol_error(f"audio frame of {len(payload)} bytes (not whole samples) dropped")
                return
            self._audio(self._downsample(payload))
            return
        link.protocol_error(f"{wire.describe(kind)} frame on a call of {wire.describe(self._kind)} dropped")

    def _audio(self, payload: bytes) -> None:
        """The caller's audio to the link in whole 20 ms frames (Asterisk's frames follow its
        channel's packetization: 20 ms mostly, but 10, 30 or 60 ms happen)."""
        self.link.audio_chunk(payload)  # type: ignore[union-attr]

    # ---- CarrierWire -----------------------------------------------------------------------
    def write_audio(self, payload: bytes) -> None:
        if len(payload) == self._frame_bytes:
            self._write(self._header + payload)
        elif payload:
            self._write(wire.frame(self._kind, payload))

    def write_mark(self, name: str) -> None:
        """Never called: AudioSocket echoes nothing, and the link's playout clock fires the markers."""

    def write_clear(self) -> None:
        """Nothing to send: Asterisk buffers nothing, and the link's playout dropped its queue."""

    def end_call(self) -> None:
        self.close(CLOSE_NORMAL, "call completed")

    def close(self, code: int, reason: str) -> None:
        if not self._open:
            return
        if code == CLOSE_NORMAL:
            self._write(wire.hang_up_frame())
        else:
            self._write(wire.error_frame(_ERROR_OF_CLOSE.get(code, wire.ERROR_PROTOCOL)))
        self._open = False
        self.transport.loseConnection()

    def _write(self, data: bytes) -> None:
        if not self._open:
            return
        if outbound_backlog(self.transport) > MAX_OUTBOUND_BYTES:
            # The peer stopped reading: a hang-up frame would not be read either.
            log.warn("PEER_NOT_READING call={call}: over {limit} bytes unsent; dropping the connection",
                     call=self.call_id, limit=MAX_OUTBOUND_BYTES)
            if self.link is not None:
                self.link.closing = True
            self._open = False
            self.transport.abortConnection()
            return
        self.transport.write(data)


class AudioSocketFactory(Factory):
    """One per ``--audiosocket-listen`` endpoint; ``core`` is the service."""

    protocol = AudioSocketProtocol
    noisy = False  # no "Starting factory" lines

    def __init__(self, core: CallCore, config: AudioSocketAdmission) -> None:
        self.core = core
        self.clock: Any = core.clock
        self.config = config
        self.replays = call_uuid.ReplayGuard()
