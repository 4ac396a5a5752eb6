"""Audio formats for carrier wires: the caller's 8 kHz mu-law frames into a carrier's
format (mu-law, A-law, 16-bit little-endian PCM at 8 kHz or a multiple of it), and the
daemon's audio back to 8 kHz mu-law for the report.

Both directions stream frame by frame with exact lengths (160 mu-law bytes become 320
bytes of PCM at 8 kHz and 640 at 16 kHz), so a carrier's framing rules hold. Resampling
is audioop's ``ratecv`` (linear interpolation, its state carried from frame to frame):
crude next to soxr, enough for a simulated caller whose audio is only heard by a
recognizer, and about 2 µs a frame.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop-lts on 3.13+, as voiced.audio
    import audioop

from voiced.audio import SAMPLE_RATE

Encoding = Literal["ulaw", "alaw", "pcm16"]
_ENCODINGS = ("ulaw", "alaw", "pcm16")


@dataclass(frozen=True)
class AudioFormat:
    encoding: Encoding
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.encoding not in _ENCODINGS:
            raise ValueError(f"unknown audio encoding {self.encoding!r} (known: {', '.join(_ENCODINGS)})")
        if self.sample_rate <= 0 or self.sample_rate % SAMPLE_RATE:
            raise ValueError(f"sample rate {self.sample_rate} is not a multiple of {SAMPLE_RATE} Hz")
        if self.encoding != "pcm16" and self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"{self.encoding} is 8 kHz only, not {self.sample_rate} Hz")

    @property
    def sample_bytes(self) -> int:
        return 2 if self.encoding == "pcm16" else 1

    @property
    def frame_bytes(self) -> int:
        """Bytes in 20 ms of this audio."""
        return self.sample_rate // 50 * self.sample_bytes


ULAW_8K = AudioFormat("ulaw")
ALAW_8K = AudioFormat("alaw")
PCM16_8K = AudioFormat("pcm16")
PCM16_16K = AudioFormat("pcm16", 16000)


class ToCarrier:
    """8 kHz mu-law -> ``fmt``, one frame (or any whole number of samples) at a time."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._rate = fmt.sample_rate
        # Primed with one silent sample: from then on every input sample yields exactly
        # rate/8000 output samples (unprimed, the first frame comes out short by one).
        self._state = audioop.ratecv(b"\0\0", 2, 1, SAMPLE_RATE, self._rate, None)[1]

    def __call__(self, ulaw: bytes) -> bytes:
        encoding = self.format.encoding
        if encoding == "ulaw":
            return ulaw
        pcm = audioop.ulaw2lin(ulaw, 2)
        if encoding == "alaw":
            return audioop.lin2alaw(pcm, 2)
        if self._rate == SAMPLE_RATE:
            return pcm
        pcm, self._state = audioop.ratecv(pcm, 2, 1, SAMPLE_RATE, self._rate, self._state)
        return pcm


class FromCarrier:
    """``fmt`` -> 8 kHz mu-law. Bytes that do not make a whole output sample yet wait for
    the next call, so a TCP stream's arbitrary chunks convert as well as whole frames."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._rate = fmt.sample_rate
        self._unit = fmt.sample_bytes * (fmt.sample_rate // SAMPLE_RATE)  # input bytes per output sample
        self._pending = b""
        self._state = None

    def __call__(self, data: bytes) -> bytes:
        encoding = self.format.encoding
        if encoding == "ulaw":
            return data
        if encoding == "alaw":
            return audioop.lin2ulaw(audioop.alaw2lin(data, 2), 2)
        data = self._pending + data
        whole = len(data) - len(data) % self._unit
        data, self._pending = data[:whole], data[whole:]
        if self._rate != SAMPLE_RATE and data:
            data, self._state = audioop.ratecv(data, 2, 1, self._rate, SAMPLE_RATE, self._state)
        return audioop.lin2ulaw(data, 2)

    @property
    def pending(self) -> int:
        """Bytes held back: not yet a whole output sample."""
        return len(self._pending)
