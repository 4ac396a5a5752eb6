"""voiced.turns.spectrum: a frame's spectral flatness, and the per-call check that a sound is noise."""

from __future__ import annotations

from collections import deque

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from voiced.turns.spectrum import NOISE_FLATNESS, NoiseCheck, flatness

FRAME = 160  # 20 ms at 8 kHz


def tone(hz: float, start: int = 0) -> bytes:
    t = np.arange(start, start + FRAME) / 8000
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def noise(rng: np.random.Generator) -> bytes:
    return rng.integers(-8000, 8000, FRAME).astype("<i2").tobytes()


def direct(frames: list[bytes]) -> bool:
    """What the check says, computed from scratch."""
    values = [v for f in frames if len(f) == 2 * FRAME and (v := flatness(f)) is not None]
    return bool(values) and float(np.median(values)) > NOISE_FLATNESS


class SpectrumTests(SynchronousTestCase):
    def test_a_tone_is_harmonic_and_white_noise_is_flat(self) -> None:
        self.assertLess(flatness(tone(440)), 0.05)
        self.assertGreater(flatness(noise(np.random.default_rng(1))), NOISE_FLATNESS)

    def test_the_check_over_a_sliding_window_says_what_the_whole_window_says(self) -> None:
        # Asked every frame as the window slides (the caller's sound over the bot), with
        # each frame's flatness remembered: the answer is the from-scratch one every time.
        rng = np.random.default_rng(7)
        check = NoiseCheck()
        window: deque[bytes] = deque(maxlen=24)
        answers = []
        for i in range(120):
            kind = (i // 30) % 2  # voice, then noise, then voice again...
            window.append(noise(rng) if kind else tone(200 + i, i * FRAME))
            if i % 17 == 0:
                window.append(b"\0" * 10)  # a short frame counts for nothing
            frames = list(window)
            answers.append(check(frames))
            self.assertEqual(answers[-1], direct(frames), i)
        self.assertIn(True, answers)
        self.assertIn(False, answers)

    def test_one_check_tells_a_voice_and_then_a_noise(self) -> None:
        check = NoiseCheck()
        voice = [tone(300, i * FRAME) for i in range(5)]
        self.assertFalse(check(voice))
        rng = np.random.default_rng(3)
        self.assertTrue(check([noise(rng) for _ in range(5)]))
