"""One call's audio between its carrier's format and the core's 8 kHz mu-law.

The call core (VAD, STT streams, TTS and its phrase cache, the reply's timing) works
in 8 kHz mu-law, the format of the phone network itself. A carrier streaming mu-law
at 8 kHz (Twilio, Telnyx PCMU, Plivo, Exotel's default) costs nothing here: the
codec is skipped. Other formats are converted per frame, with state carried from
frame to frame so no frame edge clicks: A-law and 16-bit PCM through audioop's C
code, 16 and 24 kHz down to 8 kHz through a low-pass FIR (a telephone line carries
nothing above 3.4 kHz; without the filter the 4-12 kHz of a wideband leg would fold
into the speech band STT listens to) and up again by linear interpolation.

A wideband call whose STT takes 16 kHz (``voiced.stt.base.PCM_16K``) also gets the
caller's audio at 16 kHz from ``decode_wideband``: the PCM the 8 kHz copy is made
from, as it came at 16 kHz, decimated from 24 kHz, so STT hears the whole band the
carrier carried. The 8 kHz paths (``decode``) do not change.
"""

from __future__ import annotations

import sys

import numpy as np

from voiced.audio import audioop
from voiced.audio import MULAW_8K, AudioFormat

_LITTLE = sys.byteorder == "little"
#: Taps of the decimation filter: ~2 ms of history, a cut-off at 3.6 kHz.
FIR_TAPS = 31
CUTOFF_HZ = 3600
#: The wideband decimation's cut-off (24 to 16 kHz): below 16 kHz audio's 8 kHz Nyquist.
WIDE_CUTOFF_HZ = 7200


def _lowpass(rate: int, cutoff: int = CUTOFF_HZ) -> np.ndarray:
    """A windowed-sinc low-pass at ``cutoff`` for audio at ``rate``, unity gain at DC."""
    n = np.arange(FIR_TAPS) - (FIR_TAPS - 1) / 2
    taps = np.sinc(2 * cutoff / rate * n) * np.hamming(FIR_TAPS)
    return (taps / taps.sum()).astype(np.float32)


class Downsampler:
    """16-bit PCM at ``rate`` to 8 kHz, streaming: the filter's history crosses frames."""

    def __init__(self, rate: int) -> None:
        self.step = rate // 8000
        self._taps = _lowpass(rate)
        self._history = np.zeros(FIR_TAPS - 1, dtype=np.float32)
        self._phase = 0  # samples to skip at the next frame's start to stay on the 8 kHz grid

    def __call__(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        padded = np.concatenate((self._history, samples))
        self._history = padded[-(FIR_TAPS - 1):]
        filtered = np.convolve(padded, self._taps, mode="valid")
        out = filtered[self._phase::self.step]
        self._phase = (self._phase - len(filtered)) % self.step
        return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()


class Decimator24To16:
    """24 kHz 16-bit PCM to 16 kHz, streaming: low-passed, then two samples out for every
    three in (the second half-way between two inputs). Payloads are whole 20 ms frames,
    480 samples, a multiple of three: every frame starts on the 16 kHz grid."""

    def __init__(self) -> None:
        self._taps = _lowpass(24000, WIDE_CUTOFF_HZ)
        self._history = np.zeros(FIR_TAPS - 1, dtype=np.float32)

    def __call__(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="=i2").astype(np.float32)
        padded = np.concatenate((self._history, samples))
        self._history = padded[-(FIR_TAPS - 1):]
        filtered = np.convolve(padded, self._taps, mode="valid")
        usable = len(filtered) - len(filtered) % 3
        out = np.empty(usable // 3 * 2, dtype=np.float32)
        out[0::2] = filtered[0:usable:3]
        out[1::2] = (filtered[1:usable:3] + filtered[2:usable:3]) / 2
        return np.clip(np.rint(out), -32768, 32767).astype("=i2").tobytes()  # native, as the PCM it came from


class Upsampler:
    """8 kHz 16-bit PCM to ``rate`` by linear interpolation, streaming: exactly ``rate // 8000``
    samples out per sample in (a carrier that wants whole frames gets whole frames), the
    last sample carried to the next frame."""

    def __init__(self, rate: int) -> None:
        self.step = rate // 8000
        self._fractions = (np.arange(1, self.step + 1, dtype=np.float32) / self.step)[None, :]
        self._last = 0.0

    def __call__(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        if not len(samples):
            return b""
        previous = np.concatenate(([self._last], samples[:-1]))
        self._last = float(samples[-1])
        out = previous[:, None] + (samples - previous)[:, None] * self._fractions
        return np.rint(out).astype("<i2").tobytes()


class Codec:
    """Converts one call's audio; every method runs on the reactor thread, per frame."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self.passthrough = fmt == MULAW_8K
        self.frame_bytes = fmt.bytes_per_ms() * 20  # one 20 ms frame
        self._swap = fmt.encoding == "pcm_s16be" if _LITTLE else fmt.encoding == "pcm_s16le"
        wide = fmt.sample_rate != 8000
        self._down = Downsampler(fmt.sample_rate) if wide else None
        self._up = Upsampler(fmt.sample_rate) if wide else None
        self._to_16k = Decimator24To16() if fmt.sample_rate == 24000 else None

    def decode(self, payload: bytes) -> bytes:
        """The carrier's audio as 8 kHz mu-law."""
        if self.passthrough:
            return payload
        encoding = self.format.encoding
        if encoding == "alaw":
            pcm = audioop.alaw2lin(payload, 2)
        elif encoding == "mulaw":
            pcm = audioop.ulaw2lin(payload, 2)
        else:
            pcm = audioop.byteswap(payload, 2) if self._swap else payload
        if self._down is not None:
            pcm = self._down(pcm)
        return audioop.lin2ulaw(pcm, 2)

    def decode_wideband(self, payload: bytes) -> tuple[bytes, bytes]:
        """The carrier's audio as 8 kHz mu-law (for the turn machine, as ``decode``) and as
        16 kHz little-endian PCM (for STT): a 16 or 24 kHz carrier's only."""
        if self._down is None or self.format.sample_rate < 16000:
            raise ValueError(f"{self.format} audio carries no 16 kHz band")
        encoding = self.format.encoding
        if encoding == "alaw":
            pcm = audioop.alaw2lin(payload, 2)
        elif encoding == "mulaw":
            pcm = audioop.ulaw2lin(payload, 2)
        else:
            pcm = audioop.byteswap(payload, 2) if self._swap else payload
        wide = pcm if self._to_16k is None else self._to_16k(pcm)
        return audioop.lin2ulaw(self._down(pcm), 2), wide if _LITTLE else audioop.byteswap(wide, 2)

    def encode(self, ulaw: bytes) -> bytes:
        """8 kHz mu-law as the carrier's audio."""
        if self.passthrough:
            return ulaw
        pcm = audioop.ulaw2lin(ulaw, 2)
        if self._up is not None:
            pcm = self._up(pcm)
        encoding = self.format.encoding
        if encoding == "alaw":
            return audioop.lin2alaw(pcm, 2)
        if encoding == "mulaw":
            return audioop.lin2ulaw(pcm, 2)
        return audioop.byteswap(pcm, 2) if self._swap else pcm
