"""Asterisk's side of an AudioSocket connection, as a simulated caller needs it.

  caller -> daemon  UUID (first), audio every 20 ms, DTMF, hang-up
  daemon -> caller  audio (played as it arrives), hang-up, error

Plain TCP (``tcp://HOST:PORT``), the frames of ``voiced.carrier.audiosocket.wire``.
Asterisk echoes nothing and has no clear: the daemon paces its audio and simply stops
sending on a barge-in. With the daemon's ``audiosocket_secret`` (``--auth-token`` or
``$VOICED_AUDIOSOCKET_SECRET``) the call's UUID is signed as the README's dialplan signs
it. ``AudioSocketCall`` speaks 8 kHz, as the AudioSocket() application does;
``AudioSocketCall16k`` 16 kHz, as ``Dial(AudioSocket/host:port/uuid/c(slin16))`` does.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from voiced.caller.carriers.base import Audio, CallSetup, DaemonEvent, HangUp, Outbound, Problem, Transport
from voiced.carrier.audiosocket import call_uuid, wire
from voiced.carrier.codec import Codec


class AudioSocketCall:
    """One call's AudioSocket connection: the frames Asterisk sends, and a reader for the daemon's."""

    name: ClassVar[str] = "audiosocket"
    title: ClassVar[str] = "Asterisk AudioSocket"
    transport: ClassVar[Transport] = "tcp"
    path: ClassVar[str] = ""
    answers_markers: ClassVar[bool] = False
    clear_answers_markers: ClassVar[bool] = False
    secret_env: ClassVar[str] = "VOICED_AUDIOSOCKET_SECRET"
    kind: ClassVar[int] = wire.AUDIO_8K

    def __init__(self, call: uuid.UUID) -> None:
        self.uuid = call
        fmt = wire.AUDIO_FORMATS[self.kind]
        self._encode = Codec(fmt).encode  # the caller's 8 kHz mu-law to the channel's slin
        self._decode = Codec(fmt).decode  # the daemon's audio back to 8 kHz mu-law for the report
        self._frames = wire.FrameSplitter()
        self._header = wire.frame(self.kind, bytes(fmt.bytes_per_ms() * 20))[:wire.HEADER_BYTES]
        self._broken = False

    @classmethod
    def new_call(cls, setup: CallSetup) -> AudioSocketCall:
        if setup.call_id:
            return cls(uuid.UUID(setup.call_id))
        if setup.secret:
            return cls(uuid.UUID(call_uuid.issue(setup.secret, setup.now)))
        return cls(uuid.uuid4())

    @property
    def call_id(self) -> str:
        return str(self.uuid)

    @property
    def stream_id(self) -> str:
        return str(self.uuid)

    # -- the frames Asterisk sends -----------------------------------------------------
    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {}

    def opening(self) -> list[Outbound]:
        return [wire.uuid_frame(self.uuid)]

    def speech(self, ulaw: bytes, timestamp_ms: int) -> Outbound | None:
        return self._header + self._encode(ulaw)

    def digit(self, digit: str) -> list[Outbound]:
        return [wire.dtmf_frame(digit)]

    def marker_played(self, name: str) -> list[Outbound]:
        return []

    def hang_up(self) -> list[Outbound]:
        return [wire.hang_up_frame()]

    # -- what the daemon sends -----------------------------------------------------------
    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        if self._broken:
            return []
        try:
            frames = self._frames.feed(data)
        except wire.ProtocolError as e:
            self._broken = True  # the stream's framing is lost: nothing after this can be read
            return [Problem(f"daemon sent a bad frame: {e}")]
        events: list[DaemonEvent] = []
        for kind, payload in frames:
            if kind == self.kind:
                if len(payload) % 2:
                    events.append(Problem(f"daemon sent audio of {len(payload)} bytes (not whole samples)"))
                else:
                    events.append(Audio(self._decode(payload)))
            elif kind == wire.HANG_UP:
                events.append(HangUp())
            elif kind == wire.ERROR:
                events.append(Problem(f"daemon sent an error frame (code {payload.hex() or 'none'})"))
                events.append(HangUp("error"))  # Asterisk hangs the channel up on any error frame
            elif kind in wire.AUDIO_RATES:
                events.append(Problem(f"daemon sent {wire.describe(kind)} on a call of {wire.describe(self.kind)}"))
            else:
                events.append(Problem(f"daemon sent a frame of kind {kind:#04x}, which Asterisk does not accept"))
        return events


class AudioSocketCall16k(AudioSocketCall):
    """The AudioSocket channel dialled with ``c(slin16)``: audio kind 0x12 both ways."""

    title: ClassVar[str] = "Asterisk AudioSocket (slin16)"
    kind: ClassVar[int] = 0x12
