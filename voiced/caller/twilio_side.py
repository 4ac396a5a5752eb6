"""Twilio's side of a Media Stream, as a simulated caller needs it: ``TwilioStream``
serializes the messages Twilio sends (connected, start, media, mark, stop, numbered
as Twilio numbers them), and ``Playback`` is Twilio's outbound buffer on the call's
timeline, which plays the daemon's audio in real time, echoes each mark when the
audio queued before it has played, and drops everything on clear. Both are pure:
time comes from an ``IReactorTime``, so tests drive them on a ``Clock``.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from dataclasses import dataclass
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from voiced.audio import SAMPLE_RATE, ULAW_SILENCE

EPSILON_S = 1e-6  # float slack when a timer fires exactly at its due time


@dataclass
class TwilioStream:
    """Serializes what Twilio sends, numbering messages as Twilio does: ``connected``
    carries no number, every later message counts from "1", media ``chunk`` from "1"."""

    account_sid: str
    call_sid: str
    stream_sid: str
    custom_parameters: dict[str, str]
    sequence: int = 0
    chunk: int = 0

    def _numbered(self, event: str, **body: object) -> str:
        self.sequence += 1
        msg = {"event": event, "sequenceNumber": str(self.sequence), "streamSid": self.stream_sid, **body}
        return json.dumps(msg, separators=(",", ":"))

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}, separators=(",", ":"))

    def start(self) -> str:
        return self._numbered(
            "start",
            start={
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": self.custom_parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
            },
        )

    def media(self, ulaw: bytes, timestamp_ms: int) -> str:
        self.chunk += 1
        payload = base64.b64encode(ulaw).decode("ascii")
        media = {"track": "inbound", "chunk": str(self.chunk), "timestamp": str(timestamp_ms), "payload": payload}
        return self._numbered("media", media=media)

    def mark(self, name: str) -> str:
        return self._numbered("mark", mark={"name": name})

    def stop(self) -> str:
        return self._numbered("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})


class Playback:
    """Twilio's playback buffer on the call's timeline, exact to the sample.

    Audio queued while idle starts playing at once; audio queued while playing
    starts where the queue ends. ``timeline`` holds what was heard from time 0,
    plus whatever is queued and not played yet (cut again by clear or hang-up).
    """

    def __init__(self, clock: IReactorTime, t0: float, echo: Callable[[str], None]) -> None:
        self._clock = clock
        self._t0 = t0
        self._echo = echo
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
        self._marks.append((self.end_sample, name))
        self._flush()

    def clear(self) -> int:
        """Drop what has not played yet and echo every pending mark; returns the samples dropped."""
        dropped = self.cut()
        self._flush()
        return dropped

    def cut(self) -> int:
        now = self.now_sample()
        dropped = max(0, self.end_sample - now)
        del self.timeline[now:]
        self._marks = deque((min(due, now), name) for due, name in self._marks)
        return dropped

    def close(self) -> int:
        """The call ended: unplayed audio is never heard and pending marks are never echoed."""
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
            self._echo(self._marks.popleft()[1])
        if self._marks:
            due_s = self._t0 + self._marks[0][0] / SAMPLE_RATE
            self._timer = self._clock.callLater(max(0.0, due_s - self._clock.seconds() + EPSILON_S), self._flush)
