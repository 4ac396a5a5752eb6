"""Sound levels a call compares: what the bot is playing now (the echo reference) and
how loud this caller usually speaks. Pure: times are handed in."""

from __future__ import annotations

import math
from collections import deque

from voiced.audio import FRAME_BYTES, FRAME_MS, audioop

_FRAME_S = FRAME_MS / 1000


def dbfs(rms: float) -> float:
    """An rms of PCM16 samples in dB below full scale (-inf for silence)."""
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


class OutgoingLevel:
    """The level of the bot's audio as it plays: each chunk sent is placed on the playout
    timeline (the carrier plays what it is sent in order, in real time) frame by frame.
    An echo of it reaches the caller's stream a round trip later, so the reference is the
    loudest frame of the last ``window_s``."""

    def __init__(self, window_s: float = 0.6) -> None:
        self._window_s = window_s
        self._frames: deque[tuple[float, float]] = deque()  # (play time, rms), in time order

    def queued(self, ulaw: bytes, plays_at: float, now: float | None = None) -> None:
        if now is not None:
            self._forget(now)  # a call whose bot talks for minutes unheard must not grow this
        for i in range(0, len(ulaw) - FRAME_BYTES + 1, FRAME_BYTES):
            rms = audioop.rms(audioop.ulaw2lin(ulaw[i:i + FRAME_BYTES], 2), 2)
            self._frames.append((plays_at + (i // FRAME_BYTES) * _FRAME_S, rms))

    def cleared(self, now: float) -> None:
        """The carrier dropped what it had not played."""
        while self._frames and self._frames[-1][0] > now:
            self._frames.pop()

    def recent(self, now: float) -> float:
        """The loudest bot frame played within the window before ``now`` (0: none)."""
        self._forget(now)
        loudest = 0.0
        for at, rms in self._frames:
            if at > now:
                break
            loudest = max(loudest, rms)
        return loudest

    def _forget(self, now: float) -> None:
        frames = self._frames
        while frames and frames[0][0] < now - self._window_s:
            frames.popleft()


class CallerLevel:
    """How loud this caller speaks: a slow average of their utterances' levels (dBFS)."""

    def __init__(self) -> None:
        self.db: float | None = None

    def utterance(self, rms: float) -> None:
        if rms <= 0:
            return
        level = dbfs(rms)
        self.db = level if self.db is None else self.db + (level - self.db) * 0.3
