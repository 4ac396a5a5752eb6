"""The bot's audio and playback markers on their way to chan_websocket, in order.

chan_websocket plays what it receives in real time from a queue of about 1000 frames
(~20 s); at ~900 it sends MEDIA_XOFF and past 1000 it drops media. A long reply
sent as fast as TTS makes it would overrun that queue, so ``MediaSender`` keeps at
most ``lead_s`` of audio ahead of real time (FLUSH_MEDIA empties Asterisk's queue on
a barge-in, so a long lead costs nothing), holds everything while Asterisk says
XOFF, and keeps the markers in their place behind the audio held before them.

Without START_MEDIA_BUFFERING, chan_websocket cuts each binary message into whole
frames and drops a trailing partial one; every message here is whole frames, the
last padded with silence (a TTS sentence rarely ends on a 20 ms boundary).
Pure: time is an ``IReactorTime``.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

FRAME_S = 0.020
#: Audio kept queued in Asterisk at most: half its queue, well below its XOFF level.
LEAD_S = 10.0


class MediaSender:
    def __init__(self, clock: IReactorTime, frame_bytes: int, silence: bytes,
                 send_audio: Callable[[bytes], None], send_mark: Callable[[str], None],
                 lead_s: float = LEAD_S) -> None:
        self.clock = clock
        self.frame_bytes = frame_bytes
        self._silence = silence  # one byte (or sample) of silence in the call's format
        self._send_audio = send_audio
        self._send_mark = send_mark
        self._lead_s = lead_s
        self._byte_s = FRAME_S / frame_bytes
        self._held: deque[tuple[bool, bytes | str]] = deque()  # (is audio, payload or marker name)
        self._until = 0.0  # clock time by which the audio sent so far has played
        self.paused = False  # Asterisk said MEDIA_XOFF
        self._timer: IDelayedCall | None = None

    def audio(self, payload: bytes) -> None:
        rest = len(payload) % self.frame_bytes
        if rest:
            payload += self._silence * ((self.frame_bytes - rest) // len(self._silence))
        if self._held or self.paused or self._until - self.clock.seconds() > self._lead_s:
            self._held.append((True, payload))
            self._schedule()
            return
        self._send(payload)

    def mark(self, name: str) -> None:
        if self._held:
            self._held.append((False, name))
        else:
            self._send_mark(name)

    def clear(self) -> None:
        """Asterisk's queue is being flushed: nothing held is sent, and nothing is ahead."""
        self._held.clear()
        self._cancel()
        self._until = self.clock.seconds()

    def pause(self) -> None:
        self.paused = True
        self._cancel()

    def resume(self) -> None:
        self.paused = False
        self._release()

    def stop(self) -> None:
        self._held.clear()
        self._cancel()

    @property
    def held_bytes(self) -> int:
        return sum(len(item) for is_audio, item in self._held if is_audio)

    # ---- internals ----------------------------------------------------------------------
    def _send(self, payload: bytes) -> None:
        now = self.clock.seconds()
        self._until = max(self._until, now) + len(payload) * self._byte_s
        self._send_audio(payload)

    def _release(self) -> None:
        self._timer = None
        held = self._held
        while held and not self.paused:
            is_audio, item = held[0]
            if is_audio and self._until - self.clock.seconds() > self._lead_s:
                break
            held.popleft()
            if is_audio:
                self._send(item)  # type: ignore[arg-type]
            else:
                self._send_mark(item)  # type: ignore[arg-type]
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self._held and not self.paused:
            # Never sooner than a frame from now: no busy loop of zero-delay calls.
            delay = max(FRAME_S, self._until - self._lead_s - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._release)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
