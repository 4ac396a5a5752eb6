"""Whether a sound is noise rather than a voice, from its spectrum: voiced speech is
harmonic (its power sits in a few bands, spectral flatness ~0.02-0.05 over a phone's band,
at most ~0.4 for a stretch of fricatives), line noise and crackle are flat (~0.55).
webrtcvad calls a loud noise burst speech; this is what tells the barge-in policy so.
Pure numpy, run only when caller sound over the bot is long enough to interrupt it."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from voiced.audio import SAMPLE_RATE

#: Median flatness over a sound's voiced frames above which it is noise.
NOISE_FLATNESS = 0.45
_FRAME_SAMPLES = SAMPLE_RATE // 50
_WINDOW = np.hanning(_FRAME_SAMPLES)
_HZ = np.fft.rfftfreq(_FRAME_SAMPLES, 1 / SAMPLE_RATE)
_PHONE_BAND = (_HZ >= 300) & (_HZ <= 3400)
# numpy imports numpy.ma on the first median (~15 ms): here, at start, not on the reactor
# during some call's first barge-in.
np.median(_HZ)


def flatness(pcm16: bytes) -> float | None:
    """Spectral flatness (geometric over arithmetic mean of the power) of one 20 ms frame
    of 8 kHz PCM16 within 300-3400 Hz: near 0 for a tone or a vowel, near 0.56 for white
    noise. None when the band holds under a tenth of the frame's power (a hum, a low
    tone): what is left there is leakage, and says nothing."""
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    power = np.abs(np.fft.rfft(samples * _WINDOW)) ** 2 + 1e-9
    band = power[_PHONE_BAND]
    if band.sum() < 0.1 * power.sum():
        return None
    return float(np.exp(np.mean(np.log(band))) / np.mean(band))


class NoiseCheck:
    """Whether a sound's voiced 20 ms frames are noise, not a voice: asked again at every
    frame while the sound goes on over the bot, so each frame's flatness is computed once
    (an FFT each: the whole window anew would be ~0.5 ms a frame). One per call."""

    def __init__(self) -> None:
        # frame -> flatness for the frames of the last question (a bytes object keeps its hash).
        self._known: dict[bytes, float | None] = {}

    def __call__(self, frames: Iterable[bytes]) -> bool:
        known, now = self._known, {}
        values = []
        for frame in frames:
            value = known[frame] if frame in known else (
                flatness(frame) if len(frame) == 2 * _FRAME_SAMPLES else None)
            now[frame] = value
            if value is not None:
                values.append(value)
        self._known = now
        return bool(values) and float(np.median(values)) > NOISE_FLATNESS
