"""A local playout clock, for carriers that neither buffer far ahead nor echo playback markers.

Asterisk's AudioSocket plays what it receives as it arrives: the sender paces the
audio, and nothing tells it what the caller has heard. ``Playout`` paces a call's
bot audio frame by frame on the clock, keeping at most ``lead_ms`` written ahead of
real time (enough to ride out a late tick, little enough that a barge-in's clear
leaves almost nothing playing), and fires each marker when the audio queued before
it has been played out, as Twilio's mark echo would: heard-history, barge-in and
the reply's timing work the same on every carrier. Pure: time is an ``IReactorTime``.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

FRAME_MS = 20
LEAD_MS = 60
EPSILON_S = 1e-6  # float slack: 0.02 added three times is not quite 0.06


class Playout:
    def __init__(self, clock: IReactorTime, frame_bytes: int, write: Callable[[bytes], None],
                 played: Callable[[str], None], lead_ms: int = LEAD_MS) -> None:
        self.clock = clock
        self.frame_bytes = frame_bytes  # bytes of FRAME_MS of the call's audio
        self._write = write
        self._played = played
        self._lead_s = lead_ms / 1000
        self._frame_s = FRAME_MS / 1000
        # Audio not yet written, and markers: ("audio", bytes) | ("mark", name).
        self._queue: deque[tuple[str, bytes | str]] = deque()
        self._pending = b""  # the part of a frame left over from the last audio
        self._written_until = 0.0  # clock time the audio written so far finishes playing
        self._marks: deque[tuple[float, str]] = deque()  # written markers and when they play
        self._timer: IDelayedCall | None = None

    def audio(self, payload: bytes) -> None:
        self._queue.append(("audio", payload))
        self._kick()

    def mark(self, name: str) -> None:
        self._queue.append(("mark", name))
        self._kick()

    def clear(self) -> None:
        """Drop everything not yet written; markers not yet played never fire (as after
        Twilio's clear, the carrier's buffer is gone and so are its marks)."""
        self._queue.clear()
        self._pending = b""
        self._marks.clear()
        self._written_until = min(self._written_until, self.clock.seconds() + self._lead_s)

    def stop(self) -> None:
        self.clear()
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _kick(self) -> None:
        """New audio or a marker: write what is due now (not at the next tick)."""
        self._cancel()
        self._tick()

    @property
    def idle(self) -> bool:
        return not self._queue and not self._pending and not self._marks

    def _tick(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        self._written_until = max(self._written_until, now)
        while self._written_until < now + self._lead_s - EPSILON_S and (self._queue or self._pending):
            frame = self._next_frame()
            if frame:
                self._write(frame)
                self._written_until += self._frame_s * len(frame) / self.frame_bytes
        while self._marks and self._marks[0][0] <= now + EPSILON_S:
            self._played(self._marks.popleft()[1])
        if self._timer is None and not self.idle:
            due = self._frame_s if (self._queue or self._pending) else max(0.0, self._marks[0][0] - now)
            self._timer = self.clock.callLater(due, self._tick)

    def _next_frame(self) -> bytes:
        """The next whole frame of audio (a shorter one only before a marker or at the end),
        registering the markers passed on the way."""
        frame = self._pending
        while len(frame) < self.frame_bytes and self._queue:
            kind, item = self._queue[0]
            if kind == "mark":
                if frame:
                    break  # the marker plays after this (short) frame
                self._queue.popleft()
                self._marks.append((self._written_until, item))  # type: ignore[arg-type]
                continue
            self._queue.popleft()
            frame += item  # type: ignore[operator]
        self._pending = frame[self.frame_bytes:]
        frame = frame[:self.frame_bytes]
        if not self._pending and self._queue and self._queue[0][0] == "mark" and frame:
            # A marker right after this frame plays when the frame has.
            _, name = self._queue.popleft()
            self._marks.append((self._written_until + self._frame_s * len(frame) / self.frame_bytes, name))  # type: ignore[arg-type]
        return frame
