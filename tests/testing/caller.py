"""voiced-call's side: tones, a FakeLink standing in for the WebSocket on a Clock, and ScriptedBot, a
stand-in daemon speaking Twilio's media stream."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from tests.testing.network import MemoryNetwork

from voiced.audio import SAMPLE_RATE, pcm16_to_ulaw, ulaw_to_pcm16
from voiced.carrier.twilio.wire import clear_message, mark_message, media_message, parse_message


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout


def tone(ms: int, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    return pcm16_to_ulaw((amplitude * np.sin(2 * math.pi * freq * t)).astype(np.int16).tobytes())


def rms(ulaw: bytes) -> float:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
    return float(np.sqrt((pcm**2).mean())) if len(pcm) else 0.0


class FakeLink:
    """Stands in for the WebSocket in Clock tests: records what the caller sent (Twilio's JSON
    text frames only), stamped with the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, dict]] = []
        self.hung_up = False

    def send(self, message: str | bytes) -> None:
        assert isinstance(message, str), "Twilio sends text frames only"
        self.sent.append((self.clock.seconds(), json.loads(message)))

    def hang_up(self) -> None:
        self.hung_up = True

    def events(self, event: str) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.sent if m["event"] == event]


def run_until(clock: Clock, t: float, origin: float = 50.0) -> None:
    """Advance ``clock`` to ``origin + t``, firing every timer at its own due time."""
    target = origin + t
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= target]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()) + 1e-9)
    clock.advance(max(0.0, target - clock.seconds()))


class ScriptedBot(WebSocketServerProtocol):
    """A stand-in daemon: greets, answers each caller utterance (energy-based end of
    speech: ``end_silence_frames`` silent frames), sends clear when talked over, hangs up when told to."""

    def onConnect(self, request):  # noqa: N802 - Autobahn's name
        if self.factory.deny:
            raise ConnectionDeny(403, "not a Twilio signature")
        self.request = request

    def onOpen(self) -> None:  # noqa: N802
        self.clock = self.factory.clock
        self.t0 = self.clock.seconds()
        self.inbox: list[tuple[float, dict]] = []
        self.sent_marks: dict[str, float] = {}
        self.echoes: dict[str, float] = {}
        self.clears: list[float] = []
        self.stream_sid = ""
        self.replies = list(self.factory.replies)
        self.answered = self.said = 0
        self.playing = ""  # the reply whose end mark has not come back yet
        self.voiced = self.silent = 0
        self.in_speech = False
        self.timers: list = []
        self.closed = Deferred()
        self.factory.bots.append(self)

    def now(self) -> float:
        return self.clock.seconds() - self.t0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        msg = json.loads(payload)
        self.inbox.append((self.now(), msg))
        if msg["event"] == "start":
            self.stream_sid = msg["start"]["streamSid"]
            self.send(mark_message(self.stream_sid, "idle"))
            self.sent_marks["idle"] = self.now()
            if self.factory.greeting:
                self.say(self.factory.greeting)
        elif msg["event"] == "media":
            self.hear(parse_message(payload).payload)
        elif msg["event"] == "mark":
            name = msg["mark"]["name"]
            self.echoes[name] = self.now()
            if name == f"{self.playing}.end":
                self.playing = ""
                if self.factory.hang_up_after is not None and self.answered >= self.factory.hang_up_after:
                    self.sendClose(1000)

    def hear(self, frame: bytes) -> None:
        if rms(frame) > 500:
            self.voiced, self.silent = self.voiced + 1, 0
            if self.voiced == 3:
                self.in_speech = True
                if self.playing:  # talked over: stop at once
                    self.send(clear_message(self.stream_sid))
                    self.clears.append(self.now())
        else:
            self.voiced, self.silent = 0, self.silent + 1
            if self.in_speech and self.silent == self.factory.end_silence_frames:
                self.in_speech = False
                if self.replies:
                    self.timers.append(self.clock.callLater(self.factory.reply_delay_s, self.say, self.replies.pop(0)))

    def say(self, audio: bytes) -> None:
        name = f"r{self.said}"
        self.said += 1
        self.answered += name != "r0" or not self.factory.greeting
        half = len(audio) // 2
        for kind, item in (
            ("mark", f"{name}.start"),
            ("media", audio[:half]),
            ("mark", f"{name}.s0"),
            ("media", audio[half:]),
            ("mark", f"{name}.end"),
        ):
            if kind == "mark":
                self.sent_marks[item] = self.now()
                self.send(mark_message(self.stream_sid, item))
            else:
                self.send(media_message(self.stream_sid, item))
        self.playing = name

    def send(self, text: str) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(text.encode(), False)

    def onClose(self, wasClean, code, reason) -> None:  # noqa: N802
        for timer in getattr(self, "timers", []):
            if timer.active():
                timer.cancel()
        if hasattr(self, "closed"):
            self.closed.callback(code)

    def events(self, event: str) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.inbox if m["event"] == event]


def serve_scripted_bot(
    test: TestCase,
    greeting: bytes,
    replies: tuple[bytes, ...],
    hang_up_after: int | None = None,
    deny: bool = False,
    on: Any = reactor,
) -> tuple[WebSocketServerFactory, str]:
    """A ScriptedBot listening on loopback until ``test`` ends: its factory and URL. ``on`` is
    the reactor it listens and keeps time on (a MemoryNetwork's, for a call on a Clock)."""
    factory = WebSocketServerFactory()
    factory.clock = on
    factory.protocol = ScriptedBot
    factory.setProtocolOptions(closeHandshakeTimeout=1)
    factory.greeting, factory.replies, factory.hang_up_after, factory.deny = greeting, replies, hang_up_after, deny
    factory.reply_delay_s = 0.1
    factory.end_silence_frames = 6
    factory.bots = []
    port = on.listenTCP(MemoryNetwork.PORT if isinstance(on, MemoryReactorClock) else 0, factory,
                        interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return factory, f"ws://127.0.0.1:{port.getHost().port}/media"
