"""Exotel's side of a Voicebot (AgentStream) stream, as a simulated caller needs it.

  caller -> daemon  connected, start, media every ~100 ms, dtmf, mark (echo), stop
  daemon -> caller  media{payload}, mark{name}, clear

Messages are numbered as Exotel numbers them: ``connected`` carries no number, every
later message counts ``sequence_number`` from "1" and media ``chunk`` counts from "1"
(strings, snake_case names). The caller's speech goes as 16-bit little-endian PCM at
8 kHz (the applet's default) in 100 ms chunks; ``with_audio`` makes a wire for another
rate or mu-law. Exotel echoes a ``mark`` once the audio before it has played; audio a
``clear`` dropped never plays, so its marks are never echoed. Every media message the
daemon sends is checked against Exotel's chunk rules (a multiple of 320 bytes, 3.2 KB
to 100 KB). With a secret, the upgrade carries it as basic auth, as Exotel sends the
credentials of the applet's ``wss://user:password@host/...`` URL.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import ClassVar

from voiced.audio import AudioFormat
from voiced.carrier.codec import Codec
from voiced.carrier.exotel.auth import basic_authorization
from voiced.carrier.exotel.chunks import MIN_BYTES, STEP_BYTES
from voiced.caller.carriers.base import (
    Audio,
    CallSetup,
    DaemonEvent,
    Outbound,
    Problem,
    Transport,
    new_id,
)
from voiced.caller.carriers.json_messages import bad, read_media_mark_clear

_COMPACT = (",", ":")
_b64 = binascii.b2a_base64
CHUNK_MS = 100  # Exotel streams the caller's audio "every ~100 ms"
MAX_CHUNK_BYTES = 100 * 1024
#: How the start's media_format names each encoding (Exotel's documented example says "audio/x-raw").
_ENCODING_NAMES = {"pcm_s16le": "audio/x-raw", "mulaw": "audio/x-mulaw", "alaw": "audio/x-alaw"}


@dataclass
class ExotelStream:
    """One call's Exotel Voicebot stream: the messages Exotel sends, and a reader for the daemon's."""

    name: ClassVar[str] = "exotel"
    title: ClassVar[str] = "Exotel Voicebot (AgentStream)"
    transport: ClassVar[Transport] = "websocket"
    path: ClassVar[str] = "/media/exotel"
    answers_markers: ClassVar[bool] = True
    clear_answers_markers: ClassVar[bool] = False
    secret_env: ClassVar[str] = "VOICED_EXOTEL_SECRET"
    audio: ClassVar[AudioFormat] = AudioFormat("pcm_s16le", 8000)

    account_sid: str
    call_sid: str
    stream_sid: str
    from_number: str
    to_number: str
    custom_parameters: dict[str, str]
    secret: str | None = field(default=None, repr=False)
    sequence: int = 0
    chunk: int = 0

    def __post_init__(self) -> None:
        self._encoder = Codec(self.audio)
        self._decoder = Codec(self.audio)
        self._frames_per_chunk = CHUNK_MS // 20
        self._pending: list[bytes] = []
        self._chunk_start_ms = 0
        self._sid = json.dumps(self.stream_sid)

    @classmethod
    def with_audio(cls, fmt: AudioFormat) -> type[ExotelStream]:
        """A wire class that streams ``fmt`` (a 16 kHz applet, a mu-law one) instead of 8 kHz PCM."""
        return type(f"ExotelStream_{fmt.encoding}_{fmt.sample_rate}", (cls,), {"audio": fmt})

    @classmethod
    def new_call(cls, setup: CallSetup) -> ExotelStream:
        # Exotel's CallSids are 32 hex digits; its stream ids are not documented beyond "a string".
        return cls(setup.account_id or new_id(""), setup.call_id or new_id(""), new_id(""), setup.from_number,
                   setup.to_number, dict(setup.parameters), secret=setup.secret)

    @property
    def call_id(self) -> str:
        return self.call_sid

    @property
    def stream_id(self) -> str:
        return self.stream_sid

    # -- the messages Exotel sends ---------------------------------------------------
    def _numbered(self, event: str, **body: object) -> str:
        self.sequence += 1
        return json.dumps({"event": event, "sequence_number": str(self.sequence), "stream_sid": self.stream_sid,
                           **body}, separators=_COMPACT)

    def connected(self) -> str:
        return json.dumps({"event": "connected"}, separators=_COMPACT)

    def start(self) -> str:
        fmt = self.audio
        media_format = {"encoding": _ENCODING_NAMES[fmt.encoding], "sample_rate": str(fmt.sample_rate),
                        "bit_rate": str(8 * fmt.bytes_per_sample)}
        return self._numbered("start", start={
            "stream_sid": self.stream_sid, "call_sid": self.call_sid, "account_sid": self.account_sid,
            "from": self.from_number, "to": self.to_number, "custom_parameters": self.custom_parameters,
            "media_format": media_format,
        })

    def media(self, audio: bytes, timestamp_ms: int) -> str:
        """One chunk of the caller's audio, already in the stream's format."""
        self.sequence = sequence = self.sequence + 1
        self.chunk = chunk = self.chunk + 1
        payload = _b64(audio, newline=False).decode("ascii")
        return (f'{{"event":"media","sequence_number":"{sequence}","stream_sid":{self._sid},"media":'
                f'{{"chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":"{payload}"}}}}')

    def dtmf(self, digit: str) -> str:
        return self._numbered("dtmf", dtmf={"digit": digit, "duration": "100"})

    def mark(self, name: str) -> str:
        return self._numbered("mark", mark={"name": name})

    def stop(self) -> str:
        return self._numbered("stop", stop={"call_sid": self.call_sid, "account_sid": self.account_sid,
                                            "reason": "callended"})

    # -- the carrier port -------------------------------------------------------------
    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {"Authorization": basic_authorization(self.secret)} if self.secret else {}

    def opening(self) -> list[Outbound]:
        return [self.connected(), self.start()]

    def speech(self, ulaw: bytes, timestamp_ms: int) -> Outbound | None:
        pending = self._pending
        if not pending:
            self._chunk_start_ms = timestamp_ms
        pending.append(ulaw)
        if len(pending) < self._frames_per_chunk:
            return None
        self._pending = []
        return self.media(self._encoder.encode(b"".join(pending)), self._chunk_start_ms)

    def digit(self, digit: str) -> list[Outbound]:
        return [self.dtmf(digit)]

    def marker_played(self, name: str) -> list[Outbound]:
        return [self.mark(name)]

    def hang_up(self) -> list[Outbound]:
        return [self.stop()]

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        return read_media_mark_clear(data, is_binary, "Exotel", ("stream_sid", "streamSid"), self.stream_sid,
                                     self._audio)

    def _audio(self, audio: bytes) -> list[DaemonEvent]:
        events: list[DaemonEvent] = []
        n = len(audio)
        if n % STEP_BYTES or not MIN_BYTES <= n <= MAX_CHUNK_BYTES:
            events.append(Problem(f"daemon sent a media chunk of {n} bytes: Exotel takes multiples of "
                                  f"{STEP_BYTES} bytes from {MIN_BYTES} to {MAX_CHUNK_BYTES}"))
        if n % self.audio.bytes_per_sample:
            return events + bad(f"media of {n} bytes is not whole samples of {self.audio}")
        return events + [Audio(self._decoder.decode(audio))]
