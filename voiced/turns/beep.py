"""A voicemail beep in the callee's audio: one steady tone, found with Goertzel filters.

A beep is a single-frequency burst (1000 Hz is the commonest; 440, 850 and 1400 Hz are
seen too) of a few hundred milliseconds; the message is spoken after it ends (Genesys
triggers on its trailing edge). FreeSWITCH's mod_avmd searches 440-2000 Hz; this bank
spans 400-2000 Hz, every 50 Hz: at 8 kHz a 20 ms frame is N = 160 samples, so a bin is
exactly 50 Hz wide and each of these frequencies is a whole bin (k = f / 50). 2100 Hz,
a fax's or modem's answer tone, is left out on purpose.

Per frame, a tone is there when:
  - the frame is loud enough to be anything but line noise (``min_dbfs``);
  - the strongest bin and its two neighbours hold ``min_share`` of the frame's energy
    (a tone between two bins leaks into both: the neighbours catch it; a vowel spreads
    over many harmonics, a DTMF digit holds half its energy in each of two far bins);
  - its envelope is flat within the frame (``max_ripple``): two tones closer than a bin
    (ringback's 440 + 480 Hz, the UK's 400 + 450) beat at their difference, 40 or 50 Hz,
    and the beating empties a quarter of the frame; a voice's pitch pulses ripple too.
Then a beep is a run of such frames at one frequency (within ``max_drift_hz``) and one
level (within ``max_level_step_db`` frame to frame) lasting ``min_ms`` to ``max_ms``,
reported once it ends. Sources: /work/shared/outbound.md (Goertzel, mod_avmd, Genesys).

The bank is the Goertzel recursion's result for every bin at once, as a matrix product
(numpy), which costs microseconds a frame; ``goertzel_power`` is the recursion itself,
which the tests hold the bank to. Pure: frames in, beeps out, time counted in frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voiced.audio import FRAME_MS, SAMPLE_RATE

FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
BIN_HZ = SAMPLE_RATE / FRAME_SAMPLES  # 50 Hz
LOW_HZ, HIGH_HZ = 400, 2000


def goertzel_power(samples: np.ndarray | list[float], k: float) -> float:
    """|X[k]|^2 of ``samples`` by the Goertzel recursion: s[n] = x[n] + c s[n-1] - s[n-2],
    c = 2 cos(2 pi k / N); P = s1^2 + s2^2 - c s1 s2."""
    n = len(samples)
    coefficient = 2 * math.cos(2 * math.pi * k / n)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = float(x) + coefficient * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coefficient * s1 * s2


@dataclass(frozen=True)
class BeepSettings:
    min_dbfs: float = -40.0
    min_share: float = 0.8
    max_ripple: float = 1.6  # the loudest 5 ms quarter's rms over the quietest's
    min_ms: int = 150
    max_ms: int = 3000  # longer is a held tone, not a beep
    max_drift_hz: float = 20.0
    max_level_step_db: float = 2.0
    #: Quiet frames that end a beep: a frame straddling its edge is not tone, and a beep
    #: ends only when the line has left it for good.
    end_frames: int = 2


@dataclass(frozen=True)
class Tone:
    """One frame's tone: its frequency (refined between bins), level and share of the frame."""

    hz: float
    dbfs: float
    share: float


@dataclass(frozen=True)
class Beep:
    hz: float
    duration_ms: int
    #: Frames pushed (since the detector began) when its last tone frame ended: the
    #: caller turns this into time.
    ended_at_frame: int


class ToneBank:
    """The Goertzel bins of 400-2000 Hz for 20 ms frames at 8 kHz."""

    def __init__(self, low_hz: int = LOW_HZ, high_hz: int = HIGH_HZ) -> None:
        n = np.arange(FRAME_SAMPLES)
        # The bank's bins and one neighbour on each side: rows of cos and sin.
        self._ks = np.arange(round(low_hz / BIN_HZ) - 1, round(high_hz / BIN_HZ) + 2)
        phase = 2 * np.pi * np.outer(self._ks, n) / FRAME_SAMPLES
        self._cos, self._sin = np.cos(phase), np.sin(phase)

    def powers(self, samples: np.ndarray) -> np.ndarray:
        """|X[k]|^2 for k from one below the lowest bin to one above the highest."""
        re, im = self._cos @ samples, self._sin @ samples
        return re * re + im * im

    @property
    def ks(self) -> np.ndarray:
        return self._ks

    def tone(self, pcm16: bytes, settings: BeepSettings) -> Tone | None:
        """The frame's single steady tone, or None."""
        if len(pcm16) != 2 * FRAME_SAMPLES:
            raise ValueError(f"a beep detector's frame is {2 * FRAME_SAMPLES} bytes of PCM16, not {len(pcm16)}")
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
        energy = float(samples @ samples)
        level = 10 * math.log10(energy / FRAME_SAMPLES / 32768.0 ** 2 + 1e-12)
        if level < settings.min_dbfs:
            return None
        powers = self.powers(samples)
        peak = int(np.argmax(powers[1:-1])) + 1  # the bank's own bins, each with both neighbours
        around = powers[peak - 1:peak + 2]
        # A real signal's energy is half in the positive bins (Parseval: sum |X|^2 = N sum x^2).
        share = 2 * float(around.sum()) / (FRAME_SAMPLES * energy)
        if share < settings.min_share:
            return None
        quarters = samples.reshape(4, -1)
        rms = np.sqrt((quarters * quarters).mean(axis=1))
        if rms.min() <= 0 or rms.max() / rms.min() > settings.max_ripple:
            return None
        # Where between the bins: the neighbours' magnitudes, parabolic interpolation.
        a, b, c = np.sqrt(around)
        offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        return Tone(float((self._ks[peak] + offset) * BIN_HZ), level, share)


class BeepDetector:
    """Feeds on 20 ms PCM16 frames; ``push`` returns a ``Beep`` once one has ended."""

    def __init__(self, settings: BeepSettings | None = None, bank: ToneBank | None = None) -> None:
        self.settings = settings or BeepSettings()
        self._bank = bank or ToneBank()
        self._frames = 0
        self._run: list[Tone] = []
        self._quiet = 0  # frames without the run's tone since its last one

    @property
    def in_tone(self) -> bool:
        """A tone long enough to be a beep is sounding (or has just stopped)."""
        return len(self._run) * FRAME_MS >= self.settings.min_ms

    def push(self, pcm16: bytes) -> Beep | None:
        self._frames += 1
        tone = self._bank.tone(pcm16, self.settings)
        if tone is not None and self._continues(tone):
            self._run.append(tone)
            self._quiet = 0
            return None
        if not self._run:
            if tone is not None:
                self._run = [tone]
            return None
        self._quiet += 1
        if tone is None and self._quiet < self.settings.end_frames:
            return None
        beep = self._ended()
        self._run, self._quiet = ([tone] if tone is not None else []), 0
        return beep

    def _continues(self, tone: Tone) -> bool:
        if not self._run:
            return False
        first, last = self._run[0], self._run[-1]
        s = self.settings
        return abs(tone.hz - first.hz) <= s.max_drift_hz and abs(tone.dbfs - last.dbfs) <= s.max_level_step_db

    def _ended(self) -> Beep | None:
        duration_ms = len(self._run) * FRAME_MS
        if not self.settings.min_ms <= duration_ms <= self.settings.max_ms:
            return None
        hz = float(np.median([t.hz for t in self._run]))
        return Beep(round(hz, 1), duration_ms, self._frames - self._quiet)
