"""The voicemail beep detector: synthetic tones through the phone's mu-law, tones in
noise, and what must never be a beep: real speech, DTMF, ringback, line noise."""

from __future__ import annotations

import glob
import os

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.audio import SAMPLE_RATE, frames, pcm16_to_ulaw, read_wav_as_ulaw, ulaw_to_pcm16
from voiced.turns.beep import FRAME_SAMPLES, Beep, BeepDetector, ToneBank, goertzel_power

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = 2 * FRAME_SAMPLES
REAL_SPEECH = sorted(glob.glob(os.path.join(ROOT, "bench", "data", "turn_clips", "*.wav"))
                     + glob.glob(os.path.join(ROOT, "tests", "data", "turn_*.wav"))
                     + glob.glob("/work/shared/audio/*.wav"))


def phone(pcm: np.ndarray) -> bytes:
    """``pcm`` (float samples at full scale 32768) as the callee's line delivers it: mu-law and back."""
    return ulaw_to_pcm16(pcm16_to_ulaw(np.clip(pcm, -32768, 32767).astype("<i2").tobytes()))


def tones(freqs: list[float], ms: int, dbfs: float = -12.0, noise_dbfs: float | None = None, seed: int = 0,
          phase: float = 0.3) -> bytes:
    n = SAMPLE_RATE * ms // 1000
    t = np.arange(n) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f * t + phase) for f in freqs)
    x = x / np.sqrt(np.mean(x * x)) * 32768 * 10 ** (dbfs / 20)
    if noise_dbfs is not None:
        x = x + np.random.default_rng(seed).normal(0, 32768 * 10 ** (noise_dbfs / 20), n)
    return phone(x)


def quiet(ms: int, noise_dbfs: float = -60.0, seed: int = 1) -> bytes:
    n = SAMPLE_RATE * ms // 1000
    return phone(np.random.default_rng(seed).normal(0, 32768 * 10 ** (noise_dbfs / 20), n))


def beeps_in(pcm: bytes, detector: BeepDetector | None = None) -> list[Beep]:
    detector = detector or BeepDetector()
    pcm = pcm + quiet(100)  # the line goes on after the sound: a beep is told when it ends
    found = []
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        beep = detector.push(pcm[i:i + FRAME])
        if beep is not None:
            found.append(beep)
    return found


class GoertzelTests(SynchronousTestCase):
    def test_the_bank_is_the_goertzel_recursion(self):
        samples = np.random.default_rng(3).normal(0, 3000, FRAME_SAMPLES)
        bank = ToneBank()
        powers = bank.powers(samples)
        for k, power in zip(bank.ks, powers):
            self.assertAlmostEqual(power / goertzel_power(samples, int(k)), 1.0, places=6)

    def test_an_on_bin_tone_holds_half_the_frames_energy_in_its_bin(self):
        # outbound.md: P / (N * sum x^2) is 0.5 for a pure on-bin tone.
        x = 1000 * np.sin(2 * np.pi * 1000 * np.arange(FRAME_SAMPLES) / SAMPLE_RATE)
        self.assertAlmostEqual(goertzel_power(x, 20) / (FRAME_SAMPLES * float(x @ x)), 0.5, places=6)

    def test_a_frame_of_the_wrong_size_is_a_clear_error(self):
        with self.assertRaises(ValueError) as caught:
            BeepDetector().push(b"\0" * 100)
        self.assertIn("320 bytes", str(caught.exception))


class BeepTests(SynchronousTestCase):
    def test_common_beeps_through_mu_law(self):
        for hz in (1000, 440, 850, 1400, 1025, 1975):
            with self.subTest(hz=hz):
                found = beeps_in(quiet(300) + tones([hz], 500) + quiet(200))
                self.assertEqual(len(found), 1, found)
                self.assertLess(abs(found[0].hz - hz), 15)
                self.assertGreaterEqual(found[0].duration_ms, 460)

    def test_reported_at_its_trailing_edge(self):
        detector = BeepDetector()
        audio = quiet(200) + tones([1000], 400)
        for i in range(0, len(audio), FRAME):
            self.assertIsNone(detector.push(audio[i:i + FRAME]))
        self.assertTrue(detector.in_tone)
        tail = quiet(100)
        results = [detector.push(tail[i:i + FRAME]) for i in range(0, len(tail), FRAME)]
        beep = next(b for b in results if b is not None)
        self.assertEqual(beep.ended_at_frame, 30)  # 200 + 400 ms: the tone's last frame

    def test_a_beep_in_line_noise(self):
        # 15 dB under the tone: a poor line, still a beep.
        self.assertEqual(len(beeps_in(tones([1000], 600, -12, noise_dbfs=-27))), 1)
        self.assertEqual(len(beeps_in(tones([1025], 600, -12, noise_dbfs=-30))), 1)

    def test_too_short_or_too_long_is_no_beep(self):
        self.assertEqual(beeps_in(tones([1000], 100)), [])  # a click of tone
        self.assertEqual(beeps_in(tones([1000], 4000)), [])  # a held tone

    def test_outside_the_band_is_no_beep(self):
        self.assertEqual(beeps_in(tones([250], 500)), [])
        self.assertEqual(beeps_in(tones([2400], 500)), [])

    def test_a_quiet_tone_under_the_floor_is_no_beep(self):
        self.assertEqual(beeps_in(tones([1000], 500, dbfs=-50)), [])

    @settings(max_examples=40, deadline=None)
    @given(hz=st.floats(420, 1980), ms=st.integers(200, 2000), dbfs=st.floats(-30, -6), phase=st.floats(0, 6.28))
    def test_any_steady_tone_in_the_band_is_one_beep(self, hz, ms, dbfs, phase):
        found = beeps_in(quiet(200) + tones([hz], ms, dbfs, phase=phase) + quiet(200))
        self.assertEqual(len(found), 1, found)
        self.assertLess(abs(found[0].hz - hz), 25)


class NotABeepTests(SynchronousTestCase):
    def test_dtmf_digits(self):
        for low, high in ((697, 1209), (770, 1336), (852, 1477), (941, 1633), (941, 1336)):
            with self.subTest(digit=(low, high)):
                self.assertEqual(beeps_in(tones([low, high], 500)), [])

    def test_ringback(self):
        # North America 440 + 480 Hz, the UK 400 + 450 Hz: closer than a bin, they beat.
        for pair in ((440, 480), (400, 450)):
            with self.subTest(pair=pair):
                self.assertEqual(beeps_in(tones(list(pair), 2000)), [])
                self.assertEqual(beeps_in(tones(list(pair), 2000, noise_dbfs=-35)), [])

    def test_dial_tone(self):
        self.assertEqual(beeps_in(tones([350, 440], 2000)), [])

    def test_line_noise(self):
        for level in (-60, -40, -20):
            with self.subTest(level=level):
                self.assertEqual(beeps_in(quiet(3000, level, seed=-level)), [])

    def test_real_speech(self):
        self.assertGreaterEqual(len(REAL_SPEECH), 20, "the speech clips are missing")
        for path in REAL_SPEECH:
            with self.subTest(path=os.path.basename(path)):
                pcm = b"".join(ulaw_to_pcm16(f) for f in frames(read_wav_as_ulaw(path)))
                self.assertEqual(beeps_in(pcm), [])

    def test_real_speech_runs_nowhere_near_a_beeps_length(self):
        # The margin: no stretch of speech passes as tone for even half a beep's minimum.
        longest = 0
        for path in REAL_SPEECH:
            detector = BeepDetector()
            for frame in frames(read_wav_as_ulaw(path)):
                detector.push(ulaw_to_pcm16(frame))
                longest = max(longest, len(detector._run))
        self.assertLessEqual(longest * 20, detector.settings.min_ms // 2)
