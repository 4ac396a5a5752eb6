"""The carrier's outbound buffer on the call's timeline: ``Playback`` plays the daemon's
audio in real time, exact to the sample, answers each playback marker when the audio
queued before it has played, and drops what has not played on clear. Carrier-neutral:
how a marker is answered is the ``on_marker`` callback (Twilio echoes a ``mark``); a
carrier without markers passes None and simply plays audio. Pure: time comes from an
``IReactorTime``, so tests drive it on a ``Clock``.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from voiced.audio import SAMPLE_RATE, ULAW_SILENCE

EPSILON_S = 1e-6  # float slack when a timer fires exactly at its due time


class Playback:
    """Audio queued while idle starts playing at once; audio queued while playing
    starts where the queue ends. ``timeline`` holds what was heard from time 0,
    plus whatever is queued and not played yet (cut again by clear or hang-up).
    """

    def __init__(
        self,
        clock: IReactorTime,
        t0: float,
        on_marker: Callable[[str], None] | None,
        clear_answers_markers: bool = True,
    ) -> None:
        self._clock = clock
        self._t0 = t0
        self._on_marker = on_marker
        self._clear_answers_markers = clear_answers_markers
        self.timeline = bytearray()  # len(timeline) == the sample where queued audio ends
        self._marks: deque[tuple[int, str]] = deque()  # (due sample, name), due times never decrease
        self._timer: IDelayedCall | None = None

    def now_sample(self) -> int:
        return round((self._clock.seconds() - self._t0) * SAMPLE_RATE)

    @property
    def end_sample(self) -> int:
        return len(self.timeline)

    def seconds(self, sample: int) -> float:
        return sample / SAMPLE_RATE

    def playing(self) -> bool:
        return self.end_sample > self.now_sample()

    def enqueue(self, ulaw: bytes) -> int:
        """Queue bot audio; returns the sample where it starts playing."""
        start = max(self.end_sample, self.now_sample())
        self.timeline += ULAW_SILENCE * (start - self.end_sample)
        self.timeline += ulaw
        return start

    def mark(self, name: str) -> None:
        """A marker after the audio queued so far; answered when that has played."""
        if self._on_marker is None:
            return
        self._marks.append((self.end_sample, name))
        self._flush()

    def clear(self) -> int:
        """Drop what has not played yet and answer (or forget) every pending marker at once;
        returns the samples dropped."""
        dropped = self.cut()
        if not self._clear_answers_markers:
            self._marks.clear()
        self._flush()
        return dropped

    def cut(self) -> int:
        now = self.now_sample()
        dropped = max(0, self.end_sample - now)
        del self.timeline[now:]
        self._marks = deque((min(due, now), name) for due, name in self._marks)
        return dropped

    def close(self) -> int:
        """The call ended: unplayed audio is never heard and pending markers are never answered."""
        dropped = self.cut()
        self._marks.clear()
        self._cancel_timer()
        return dropped

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _flush(self) -> None:
        self._cancel_timer()
        now = self.now_sample()
        while self._marks and self._marks[0][0] <= now:
            self._on_marker(self._marks.popleft()[1])  # type: ignore[misc]  # marks exist only with a callback
        if self._marks:
            due_s = self._t0 + self._marks[0][0] / SAMPLE_RATE
            self._timer = self._clock.callLater(max(0.0, due_s - self._clock.seconds() + EPSILON_S), self._flush)
