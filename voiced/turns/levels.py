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


class _Chunk:
    """Audio sent in one piece: its frames play one after another from ``start``."""

    __slots__ = ("start", "audio", "first", "count", "levels", "measured")

    def __init__(self, start: float, audio: bytes, count: int) -> None:
        self.start = start
        self.audio = audio
        self.first = 0  # frames before it are forgotten
        self.count = count  # frames from it on never played (cleared)
        self.levels = [0] * count  # each frame's rms, once measured
        self.measured = 0  # the frames from ``first`` up to this one are

    def at(self, frame: int) -> float:
        return self.start + frame * _FRAME_S

    def first_at_or_after(self, t: float, strictly: bool = False) -> int:
        """The first kept frame that plays at ``t`` or later (``strictly``: after ``t``);
        ``count`` when none does. Found by arithmetic, then made exact against ``at``."""
        first, count = self.first, self.count
        frame = min(count, max(first, int((t - self.start) / _FRAME_S)))
        while frame > first and (self.at(frame - 1) > t if strictly else self.at(frame - 1) >= t):
            frame -= 1
        while frame < count and (self.at(frame) <= t if strictly else self.at(frame) < t):
            frame += 1
        return frame

    def loudest(self, end: int) -> int:
        """The loudest of the kept frames before ``end`` (which it measures, those not yet)."""
        levels, audio = self.levels, self.audio
        for frame in range(max(self.first, self.measured), end):
            i = frame * FRAME_BYTES
            levels[frame] = audioop.rms(audioop.ulaw2lin(audio[i:i + FRAME_BYTES], 2), 2)
        self.measured = max(self.measured, end)
        return max(levels[self.first:end], default=0)


class OutgoingLevel:
    """The level of the bot's audio as it plays: each chunk sent is placed on the playout
    timeline (the carrier plays what it is sent in order, in real time) frame by frame.
    An echo of it reaches the caller's stream a round trip later, so the reference is the
    loudest frame of the last ``window_s``.

    A frame's level is measured only when it is asked for: the bot's audio is queued a
    sentence at a time, on the way to the caller hearing it, and most of it plays with
    nobody talking over it."""

    def __init__(self, window_s: float = 0.6) -> None:
        self._window_s = window_s
        self._chunks: deque[_Chunk] = deque()  # in time order

    def __len__(self) -> int:
        """Frames kept."""
        return sum(chunk.count - chunk.first for chunk in self._chunks)

    def queued(self, ulaw: bytes, plays_at: float, now: float | None = None) -> None:
        if now is not None:
            self._forget(now)  # a call whose bot talks for minutes unheard must not grow this
        count = len(ulaw) // FRAME_BYTES
        if count:
            self._chunks.append(_Chunk(plays_at, ulaw, count))

    def cleared(self, now: float) -> None:
        """The carrier dropped what it had not played."""
        chunks = self._chunks
        while chunks:
            last = chunks[-1]
            last.count = last.first_at_or_after(now, strictly=True)
            if last.count > last.first:
                return
            chunks.pop()

    def recent(self, now: float) -> float:
        """The loudest bot frame played within the window before ``now`` (0: none)."""
        self._forget(now)
        loudest = 0.0
        for chunk in self._chunks:
            played = chunk.first_at_or_after(now, strictly=True)
            loudest = max(loudest, chunk.loudest(played))
            if played < chunk.count:
                break
        return loudest

    def _forget(self, now: float) -> None:
        chunks = self._chunks
        oldest = now - self._window_s
        while chunks:
            chunk = chunks[0]
            if chunk.at(chunk.count - 1) < oldest:
                chunks.popleft()
                continue
            chunk.first = chunk.first_at_or_after(oldest)
            return


class CallerLevel:
    """How loud this caller speaks: a slow average of their utterances' levels (dBFS)."""

    def __init__(self) -> None:
        self.db: float | None = None

    def utterance(self, rms: float) -> None:
        if rms <= 0:
            return
        level = dbfs(rms)
        self.db = level if self.db is None else self.db + (level - self.db) * 0.3
