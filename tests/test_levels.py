"""voiced.turns.levels.OutgoingLevel measures a frame only when asked: it must say what
measuring every frame as it was queued would have said, however the bot's audio is
queued, cleared and asked about."""

from __future__ import annotations

import random
from collections import deque

from twisted.trial.unittest import SynchronousTestCase

from voiced.audio import FRAME_BYTES, FRAME_MS, audioop
from voiced.turns.levels import OutgoingLevel


class EveryFrameMeasured:
    """The reference: each frame measured and placed on the timeline as it is queued."""

    def __init__(self, window_s: float = 0.6) -> None:
        self._window_s = window_s
        self.frames: deque[tuple[float, float]] = deque()

    def queued(self, ulaw: bytes, plays_at: float, now: float | None = None) -> None:
        if now is not None:
            self._forget(now)
        for i in range(0, len(ulaw) - FRAME_BYTES + 1, FRAME_BYTES):
            rms = audioop.rms(audioop.ulaw2lin(ulaw[i:i + FRAME_BYTES], 2), 2)
            self.frames.append((plays_at + (i // FRAME_BYTES) * (FRAME_MS / 1000), rms))

    def cleared(self, now: float) -> None:
        while self.frames and self.frames[-1][0] > now:
            self.frames.pop()

    def recent(self, now: float) -> float:
        self._forget(now)
        loudest = 0.0
        for at, rms in self.frames:
            if at > now:
                break
            loudest = max(loudest, rms)
        return loudest

    def _forget(self, now: float) -> None:
        while self.frames and self.frames[0][0] < now - self._window_s:
            self.frames.popleft()


class LazyLevelTests(SynchronousTestCase):
    def test_says_what_measuring_every_frame_would(self) -> None:
        rng = random.Random(5)
        for trial in range(150):
            reference, level = EveryFrameMeasured(), OutgoingLevel()
            now = rng.uniform(0, 100)
            until = now
            for step in range(50):
                what = rng.random()
                if what < 0.3:
                    # A sentence, now and then with a partial frame at its end.
                    audio = rng.randbytes(rng.randint(0, 400) * 8 + rng.choice([0, 0, 37]))
                    # Mostly after what plays already; sometimes out of order.
                    plays_at = max(until, now) if rng.random() < 0.8 else now + rng.uniform(-1, 1)
                    at = now if rng.random() < 0.7 else None
                    reference.queued(audio, plays_at, at)
                    level.queued(audio, plays_at, at)
                    until = plays_at + len(audio) / 8000
                elif what < 0.4:
                    reference.cleared(now)
                    level.cleared(now)
                    until = now
                else:
                    asked = now + rng.choice([0, 0, 0.02, 0.6, -0.3, 1e-7])
                    self.assertEqual(level.recent(asked), reference.recent(asked), (trial, step))
                    self.assertEqual(len(level), len(reference.frames), (trial, step))
                now += rng.choice([0.02, 0.02, 0.1, 0.5, 1.7, 0])

    def test_a_frame_is_measured_once_however_often_asked(self) -> None:
        level = OutgoingLevel()
        level.queued(b"\x10" * FRAME_BYTES * 50, plays_at=1.0)
        measured = []
        real_rms = audioop.rms
        self.patch(audioop, "rms", lambda pcm, width: measured.append(1) or real_rms(pcm, width))
        for step in range(50):
            level.recent(1.0 + step * FRAME_MS / 1000)
        self.assertEqual(len(measured), 50)
