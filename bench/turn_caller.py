"""The turn-taking bench's simulated caller: one real-time Twilio Media Streams call per case.

``place(url, case, booking)`` dials the daemon over a real WebSocket and plays one
``turn_cases.Case``: it waits for the greeting to play, then speaks the case's stimulus (or the
trigger sentence, then the stimulus over the bot's reply), sending a 20 ms frame of line hiss,
plus speech, plus (echo cases) what its phone is playing at -20 dB, on an absolute schedule. It
timestamps every frame it sends and every media/clear it receives, models the carrier's
playback buffer (``voiced.caller.playback``: marks are echoed when their audio has played, clear
drops what has not), and fires with an ``Outcome``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred

import turn_cases as tc
from voiced.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, audioop, ulaw_to_pcm16
from voiced.caller.carriers.base import Audio, CallSetup, Clear, Marker
from voiced.caller.carriers.twilio import TwilioStream
from voiced.caller.playback import Playback

FRAME_S = FRAME_MS / 1000
ECHO_GAIN = 10 ** (-20 / 20)
LEAD_IN_S = 0.6  # hiss after the greeting has played, before the caller speaks
REPLY_TIMEOUT_S = 8.0  # no reply audio this long after the real end: unanswered
OBSERVE_S = 3.0  # over the bot: how long after a stimulus a clear still counts
ECHO_LISTEN_S = 8.0
AFTER_CLEAR_S = 2.5  # a false barge-in: what the bot does within this (resume, answer anew, silence)
CALL_LIMIT_S = 90.0


# ---- one call ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one caller observed; times are this process's reactor seconds."""

    case: tc.Case
    call_sid: str = ""
    trigger_at: float | None = None  # over the bot: send time of the trigger sentence's first frame
    stimulus_at: float | None = None  # send time of the stimulus' first frame (echo: the reply's start)
    speech_start_at: float | None = None  # ... of the frame carrying its first speech
    speech_end_at: float | None = None  # ... and its last: the caller's real end of turn
    first_reply_at: float | None = None  # turn cases: the first reply audio after the stimulus started
    clears: list[float] = field(default_factory=list)  # every clear of the call
    after_clear: str = ""  # over the bot, after the first clear: resumed / anew / other / silent
    errors: list[str] = field(default_factory=list)  # each once
    worst_lag_ms: float = 0.0  # the latest any caller frame went out after its due time
    log: dict[str, int] = field(default_factory=dict)  # the daemon's log lines about this call, by kind

    def error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    @property
    def cut_off(self) -> bool:
        return None not in (self.first_reply_at, self.speech_end_at) and self.first_reply_at < self.speech_end_at

    @property
    def delay_ms(self) -> float | None:
        if self.first_reply_at is None or self.cut_off:
            return None
        return (self.first_reply_at - self.speech_end_at) * 1000

    @property
    def stopped_bot(self) -> bool:
        """A clear for the stimulus (echo: any clear at all)."""
        if self.case.echo:
            return bool(self.clears)
        return any(t >= self.stimulus_at for t in self.clears) if self.stimulus_at is not None else False

    @property
    def clear_ms(self) -> float | None:
        later = [t for t in self.clears if self.speech_start_at is not None and t >= self.stimulus_at]
        return (later[0] - self.speech_start_at) * 1000 if later else None


class Booking:
    """Stretches of time in which at most one turn case may keep Whisper busy (see the docstring)."""

    def __init__(self, isolate: bool) -> None:
        self.isolate = isolate
        self._booked: list[tuple[float, float]] = []

    def book(self, earliest: float, lead_s: float, length_s: float) -> float:
        """The first start >= ``earliest`` whose [start + lead_s, + length_s] overlaps no booking."""
        start = earliest
        if self.isolate:
            for a, b in sorted(self._booked):
                if start + lead_s < b and a < start + lead_s + length_s:
                    start = b - lead_s
            self._booked.append((start + lead_s, start + lead_s + length_s))
        return start


class BenchCall:
    """One caller playing one case, frame by frame on an absolute 20 ms schedule."""

    def __init__(self, case: tc.Case, booking: Booking, done: Deferred) -> None:
        self.case, self.booking, self.done = case, booking, done
        self.wire = TwilioStream.new_call(CallSetup(now=reactor.seconds()))
        self.out = Outcome(case, call_sid=self.wire.call_sid)
        self.rng = np.random.default_rng(1000 + case.seed)
        self.link: Any = None
        self.playback: Playback | None = None
        self.t0 = 0.0
        self.n = 0  # frames sent so far
        self.sent: list[float] = []  # each frame's send time
        self.clip: np.ndarray | None = None
        self.clip_frame = 0
        self.stimulus_frame: int | None = None
        self.step = "greeting"
        self.wait_until = 0.0
        self.last_rx = 0.0
        self.heard_bot = False
        self.reply_began: float | None = None  # over the bot: when the long reply began playing
        self.reply_audio = bytearray()  # the long reply as received, up to the first clear
        self.after_clear = bytearray()

    # -- the connection ------------------------------------------------------------------------
    def opened(self, link: Any) -> None:
        self.link, self.t0 = link, reactor.seconds()
        self.playback = Playback(reactor, self.t0, lambda name: self.send(self.wire.mark(name)))
        for message in self.wire.opening():
            self.send(message)
        self.tick()

    def send(self, message: str) -> None:
        if self.link is not None and self.link.state == self.link.STATE_OPEN:
            self.link.sendMessage(message.encode(), isBinary=False)

    def received(self, payload: bytes) -> None:
        if self.step == "done":
            return
        now = reactor.seconds()
        for event in self.wire.read(payload, False):
            if isinstance(event, Audio) and event.ulaw:
                start = self.playback.enqueue(event.ulaw)
                self.heard_bot, self.last_rx = True, now
                self.bot_audio(event.ulaw, self.t0 + start / SAMPLE_RATE, now)
            elif isinstance(event, Marker):
                self.playback.mark(event.name)
            elif isinstance(event, Clear):
                self.playback.clear()
                self.out.clears.append(now)

    def closed(self, reason: str | None) -> None:
        if self.step != "done":
            self.out.error(f"the daemon closed the call in step {self.step}: {reason}")
            self.finish()

    def bot_audio(self, ulaw: bytes, plays_at: float, now: float) -> None:
        if self.step == "reply" and self.reply_began is None:
            self.reply_began = plays_at
        if self.reply_began is not None and not self.out.clears:
            self.reply_audio += ulaw
        started = self.out.stimulus_at is not None
        if started and not self.case.over_the_bot and self.out.first_reply_at is None:
            self.out.first_reply_at = now
        if started and self.out.clears and now - self.out.clears[0] <= AFTER_CLEAR_S:
            self.after_clear += ulaw
        if self.step in ("lead-in", "turn") and not started:
            self.out.error("bot audio before the caller spoke")

    # -- the caller's frames ---------------------------------------------------------------------
    def tick(self) -> None:
        if self.step == "done":
            return
        now = reactor.seconds()
        pcm = self.rng.normal(0.0, 32768 * 10 ** (tc.LINE_NOISE_DBFS / 20), FRAME_BYTES)
        if self.clip is not None:
            i = (self.n - self.clip_frame) * FRAME_BYTES
            if i >= len(self.clip):
                self.clip = None
            elif i >= 0:
                part = self.clip[i: i + FRAME_BYTES]
                pcm[: len(part)] += part
        if self.case.echo:  # what the caller's phone played over the last 20 ms, back into its microphone
            played = bytes(self.playback.timeline[max(0, self.n - 1) * FRAME_BYTES: self.n * FRAME_BYTES])
            if len(played) == FRAME_BYTES:
                pcm += np.frombuffer(ulaw_to_pcm16(played), dtype=np.int16) * ECHO_GAIN
        frame = audioop.lin2ulaw(np.clip(pcm, -32768, 32767).astype(np.int16).tobytes(), 2)
        self.send(self.wire.media(frame, self.n * FRAME_MS))
        self.sent.append(now)
        self.out.worst_lag_ms = max(self.out.worst_lag_ms, (now - self.t0 - self.n * FRAME_S) * 1000)
        if self.stimulus_frame == self.n:
            self.out.stimulus_at = now
            if self.case.over_the_bot and not self.playback.playing():
                self.out.error("the bot was not speaking when the stimulus began")
        self.n += 1
        self.advance(now)
        if self.step != "done":
            reactor.callLater(max(0.0, self.t0 + self.n * FRAME_S - reactor.seconds()), self.tick)

    def play(self, stimulus: tc.Stimulus, at: float) -> int:
        """Start ``stimulus`` with the first frame due at or after ``at``; returns that frame."""
        self.clip = stimulus.pcm.astype(np.float64)
        self.clip_frame = self.n + max(0, round((at - reactor.seconds()) / FRAME_S))
        return self.clip_frame

    def advance(self, now: float) -> None:
        """The case's script, one step at a time, checked after every frame."""
        case = self.case
        if now - self.t0 > CALL_LIMIT_S:
            self.out.error(f"the call ran over {CALL_LIMIT_S:g} s in step {self.step}")
            self.hang_up()
        elif self.step == "greeting":
            if self.heard_bot and not self.playback.playing() and now - self.last_rx > 0.3:
                self.step, self.wait_until = "lead-in", now + LEAD_IN_S
        elif self.step == "lead-in" and now >= self.wait_until:
            if case.over_the_bot:
                self.play(case.trigger, now)
                self.out.trigger_at = now
                self.step, self.wait_until = "reply", now + case.trigger.seconds + REPLY_TIMEOUT_S
            else:
                s = case.stimulus
                lead = max(0.0, (s.first_end if s.first_end is not None else s.speech_end) - 0.3)
                self.stimulus_frame = self.play(s, self.booking.book(now, lead, s.speech_end - lead + 1.5))
                self.step = "turn"
        elif self.step == "reply":
            if self.reply_began is not None and self.clip is None:
                if case.echo:
                    self.stimulus_frame = self.n
                    self.step, self.wait_until = "observe", now + ECHO_LISTEN_S
                else:
                    self.stimulus_frame = self.play(case.stimulus, self.reply_began + case.over_reply_s)
                    self.step = "over"
            elif self.reply_began is None and now > self.wait_until:
                self.out.error("no reply to the trigger sentence")
                self.hang_up()
        elif self.step in ("turn", "over"):
            self.speech_times()
            if self.clip is not None or self.out.speech_end_at is None:
                return
            if self.step == "over":
                self.step, self.wait_until = "observe", now + OBSERVE_S
            elif self.out.first_reply_at is not None:
                self.step, self.wait_until = "observe", max(now, self.out.first_reply_at + 0.3)
            elif now - self.out.speech_end_at > REPLY_TIMEOUT_S:
                self.hang_up()
        elif self.step == "observe" and now >= self.wait_until:
            if not self.out.clears or now - self.out.clears[-1] >= AFTER_CLEAR_S or case.echo:
                self.hang_up()

    def speech_times(self) -> None:
        s, first = self.case.stimulus, self.stimulus_frame
        for attr, at in (("speech_start_at", s.speech_start), ("speech_end_at", s.speech_end)):
            frame = first + int(at * SAMPLE_RATE) // FRAME_BYTES
            if getattr(self.out, attr) is None and frame < len(self.sent):
                setattr(self.out, attr, self.sent[frame])

    def hang_up(self) -> None:
        if self.case.over_the_bot and self.out.stopped_bot:
            self.out.after_clear = what_followed(bytes(self.after_clear[:400]), bytes(self.reply_audio))
        if self.out.stimulus_at is not None and not self.case.echo and \
                any(t < self.out.stimulus_at for t in self.out.clears):
            self.out.error("a clear before the stimulus")
        self.send(self.wire.stop())
        if self.link is not None and self.link.state == self.link.STATE_OPEN:
            self.link.sendClose(code=1000)
        self.finish()

    def finish(self) -> None:
        self.step = "done"
        if self.playback is not None:
            self.playback.close()
        if not self.done.called:
            self.done.callback(self.out)


def what_followed(heard: bytes, reply: bytes) -> str:
    """What the bot said after a false barge-in, by the bytes: the interrupted reply again from
    its start ("anew": it answered the sound as a turn), from further on ("resumed"), something
    else ("other": a "didn't catch that"), or nothing. The phrase cache makes replies byte-identical."""
    if not heard:
        return "silent"
    at = reply.find(heard)
    return "other" if at < 0 else "anew" if at == 0 else "resumed"


class _Link(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.call.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.call.received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.call.closed(reason)


def place(url: str, case: tc.Case, booking: Booking) -> Deferred:
    done: Deferred = Deferred()
    call = BenchCall(case, booking, done)
    factory = WebSocketClientFactory(url)
    factory.protocol, factory.call = _Link, call
    factory.clientConnectionFailed = lambda _connector, reason: call.closed(reason.getErrorMessage())
    host, port = url.split("//")[1].split("/")[0].split(":")
    reactor.connectTCP(host, int(port), factory)
    return done
