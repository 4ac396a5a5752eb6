"""Deepgram STT against its loopback fake: the key, audio frames, and a Listener whose events can be awaited."""

from __future__ import annotations

import math

from twisted.internet.defer import Deferred

from voiced.audio import MULAW_8K, audioop


KEY = "dg-secret-key-0123456789"
FRAME = 160  # 20 ms of 8 kHz mu-law


def tone_frame(audio=MULAW_8K) -> bytes:
    samples = audio.sample_rate // 50
    pcm = b"".join(int(8000 * math.sin(2 * math.pi * 440 * n / audio.sample_rate)).to_bytes(2, "little", signed=True)
                   for n in range(samples))
    return audioop.lin2ulaw(pcm, 2) if audio == MULAW_8K else pcm


def silent_frame(audio=MULAW_8K) -> bytes:
    return b"\xff" * FRAME if audio == MULAW_8K else b"\0" * 640


class Listener:
    """What the call hears from its stream; each event can be awaited."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._waiters: list[tuple] = []

    def _add(self, event: tuple) -> None:
        self.events.append(event)
        for waiter in list(self._waiters):
            if waiter[0](event):
                self._waiters.remove(waiter)
                waiter[1].callback(event)

    def next(self, kind: str) -> Deferred:
        d: Deferred = Deferred()
        self._waiters.append((lambda e: e[0] == kind, d))
        return d

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]

    def on_transcript(self, text: str, is_final: bool) -> None:
        self._add(("final" if is_final else "partial", text))

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        self._add(("failure", reason, answer_coming))

    def on_fallback_transcript(self, text: str) -> None:
        self._add(("fallback", text))

    def on_stt_retry(self, error: str) -> None:
        self._add(("retry", error))
