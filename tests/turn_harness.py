"""What the turn-taking tests share: real audio at known levels, a line that plays the
bot's audio in real time (so its echo can be heard), an agent and a TTS that answer at
once, a semantic end-of-turn model the test fires by hand, and a real ``Call`` built on
all of them on a Clock.

Levels are real: frames are tones of a given dBFS encoded to mu-law, the bot speaks at
-16 dBFS, its echo comes back 20 dB down, the caller speaks at -20 dBFS. The VAD here is
an energy detector, which (like webrtcvad) calls the echo speech too: telling the two
apart is the barge-in policy's job, not the detector's.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.turn import FakeSTT
from voiced.agent.base import CallInfo, EndCall
from voiced.audio import FRAME_MS, SAMPLE_RATE, audioop, pcm16_to_ulaw, silence_ulaw, ulaw_to_pcm16
from voiced.call.turn import Call, State, TurnSettings
from voiced.metrics import Metrics
from voiced.tts.speaker import PhraseCache, Speaker
from voiced.turns.barge_in import BargeInPolicy, BargeInSettings
from voiced.turns.detection import TurnDetection
from voiced.turns.eou import EndOfUtterance
from voiced.turns.levels import dbfs
from voiced.turns.policy import EndOfTurnSettings, TurnEndPolicy

BOT_DB = -16.0
CALLER_DB = -20.0
ECHO_LOSS_DB = 20.0  # a speakerphone's echo, well under what the bot sends
ECHO_DELAY_S = 0.1  # the round trip before the bot's audio comes back in the caller's stream
SILENCE = silence_ulaw(FRAME_MS)
#: The test's VAD: anything above about -50 dBFS is voiced (echo included, as webrtcvad would say).
VOICED_RMS = 100
PCM_FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2


# ---- audio ---------------------------------------------------------------------------------
def tone(level_db: float, ms: int, freq: int = 400) -> bytes:
    """A sine of ``level_db`` dBFS rms as mu-law (a multiple of 50 Hz repeats every frame)."""
    amplitude = 32768 * 10 ** (level_db / 20) * math.sqrt(2)
    n = SAMPLE_RATE * ms // 1000
    pcm = struct.pack(f"<{n}h", *(round(amplitude * math.sin(2 * math.pi * freq * i / SAMPLE_RATE))
                                  for i in range(n)))
    return pcm16_to_ulaw(pcm)


def level_of(ulaw: bytes) -> float:
    return dbfs(audioop.rms(ulaw_to_pcm16(ulaw), 2))


def attenuated(ulaw: bytes, db: float) -> bytes:
    return pcm16_to_ulaw(audioop.mul(ulaw_to_pcm16(ulaw), 2, 10 ** (-db / 20)))


def mixed(a: bytes, b: bytes) -> bytes:
    return pcm16_to_ulaw(audioop.add(ulaw_to_pcm16(a), ulaw_to_pcm16(b), 2))


def voice(level_db: float = CALLER_DB) -> bytes:
    """One 20 ms frame of the caller's voice (another pitch than the bot's)."""
    return tone(level_db, FRAME_MS, freq=250)


def voiced_by_energy(pcm: bytes) -> bool:
    return audioop.rms(pcm, 2) > VOICED_RMS


def pcm_frames(pcm16: bytes) -> list[bytes]:
    return [pcm16[i:i + PCM_FRAME_BYTES] for i in range(0, len(pcm16), PCM_FRAME_BYTES)]


# ---- the fakes a call talks to --------------------------------------------------------------
class ToneTTS:
    """Speaks each word as 200 ms of a tone at ``level_db``, a pitch per text (so two
    sentences' audio differ); records every text it was asked. With ``pending`` a list,
    each synthesis waits on a Deferred the test fires."""

    name = "tone"

    def __init__(self, level_db: float = BOT_DB):
        self.level_db = level_db
        self.spoken: list[str] = []
        self.pending: list[tuple[Deferred, bytes]] | None = None

    def synthesize(self, text):
        self.spoken.append(text)
        audio = tone(self.level_db, 200 * len(text.split()), freq=300 + 50 * (sum(map(ord, text)) % 8))
        if self.pending is None:
            return succeed(audio)
        d = Deferred()
        self.pending.append((d, audio))
        return d

    def release(self) -> None:
        pending, self.pending = self.pending or [], None
        for d, audio in pending:
            d.callback(audio)


class Line:
    """The carrier: it plays what it is sent in order, in real time, from when it is sent
    (``clear`` drops what has not played), so a test can hear what the caller's phone
    plays at any moment, and so its echo."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.sent: list[tuple] = []
        self._queue: list[tuple[int, bytes]] = []  # (first sample's time in samples, audio)
        self._end = 0
        self._echoed = 0

    def _now(self) -> int:
        return round(self.clock.seconds() * SAMPLE_RATE)

    def send_audio(self, ulaw):
        self.sent.append(("media", ulaw))
        start = max(self._end, self._now())
        self._queue.append((start, ulaw))
        self._end = start + len(ulaw)

    def send_mark(self, name):
        self.sent.append(("mark", name))

    def send_clear(self):
        self.sent.append(("clear",))
        now = self._now()
        self._queue = [(start, audio[: now - start]) for start, audio in self._queue if start < now]
        self._end = min(self._end, now)

    def hang_up(self):
        self.sent.append(("hangup",))

    def marks(self) -> list[str]:
        return [m[1] for m in self.sent if m[0] == "mark"]

    def audio(self) -> list[bytes]:
        return [m[1] for m in self.sent if m[0] == "media"]

    def played_until(self) -> float:
        return self._end / SAMPLE_RATE

    def playing(self, at: float, ms: int = FRAME_MS) -> bytes:
        """What the phone played from ``at`` for ``ms`` (silence where nothing played)."""
        first = round(at * SAMPLE_RATE)
        out = bytearray(silence_ulaw(ms))
        for start, audio in self._queue:
            lo, hi = max(first, start), min(first + len(out), start + len(audio))
            if lo < hi:
                out[lo - first:hi - first] = audio[lo - start:hi - start]
        return bytes(out)

    def new_marks(self) -> list[str]:
        marks = self.marks()
        fresh, self._echoed = marks[self._echoed:], len(marks)
        return fresh


class Answers:
    """An agent that answers every turn with ``sentences`` (and hangs up after "bye")."""

    def __init__(self, sentences=("First answer.", "Second answer.")):
        self.sentences = list(sentences)
        self.asked: list[str] = []
        self.requests: list = []

    def greeting(self):
        return ["Hello there."]

    def respond(self, request, sink):
        self.asked.append(request.text)
        self.requests.append(request)
        for sentence in self.sentences:
            sink.sentence(sentence)
        if "bye" in request.text:
            sink.action(EndCall())
        return succeed(None)


@dataclass
class Prediction:
    pcm16: bytes
    sample_rate: int
    result: Deferred = field(repr=False)
    cancelled: bool = False


class HandFiredModel:
    """A ``TurnModel`` whose every prediction is a Deferred the test fires (or that is cancelled)."""

    name = "by-hand"

    def __init__(self):
        self.asked: list[Prediction] = []

    def predict(self, pcm16: bytes, sample_rate: int) -> Deferred:
        def cancelled(d):
            prediction.cancelled = True

        prediction = Prediction(pcm16, sample_rate, Deferred(cancelled))
        self.asked.append(prediction)
        return prediction.result

    @property
    def last(self) -> Prediction:
        return self.asked[-1]


class NearTestCase(SynchronousTestCase):
    def assertNear(self, value: float, expected: float, delta: float) -> None:
        if not abs(value - expected) <= delta:
            self.fail(f"{value} is not within {delta} of {expected}")


def logged(test: SynchronousTestCase, word: str) -> list[dict]:
    """The log events whose format starts with ``word``, from now to the test's end."""
    seen: list[dict] = []

    def observer(event):
        if event.get("log_format", "").startswith(word):
            seen.append(event)

    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return seen


class CallOnALine(NearTestCase):
    """Builds a real ``Call`` (as tests/test_turn.py does) on a ``Line``; the caller's
    stream is their voice, the bot's echo, or both."""

    language = "en-US"
    #: The caller's phone is on speaker: the bot's audio comes back in their stream.
    speakerphone = False
    #: "outbound": a call voiced placed (its greeting waits for the callee's first words).
    direction = "inbound"

    def make_call(self, streaming=False, bot_db=BOT_DB, sentences=("First answer.", "Second answer."),
                  min_speech_ms=60, end: EndOfTurnSettings | None = None, model=None,
                  barge_in: BargeInSettings | None = None, adaptive=False, **settings) -> Call:
        """``settings``: TurnSettings fields other than the defaults here."""
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = Line(self.clock)
        self.stt = FakeSTT(streaming)
        self.tts = ToneTTS(bot_db)
        self.conversation = Answers(sentences)
        self.metrics = Metrics()
        self.eou = EndOfUtterance(self.clock, voiced_by_energy, eou_silence_ms=240, min_speech_ms=min_speech_ms)
        turns = TurnDetection(end=TurnEndPolicy(end or EndOfTurnSettings()),
                              barge_in=BargeInPolicy(barge_in or BargeInSettings()), model=model, adaptive=adaptive)
        settings = {"barge_in_ms": 160, "final_timeout_ms": 1500, "fallback_timeout_ms": 4000,
                    "false_interruption_ms": 1500, **settings}
        self.call = Call(
            CallInfo("CA1", "MZ1", language=self.language, direction=self.direction), self.clock, self.transport, self.stt,
            Speaker(self.tts, None, PhraseCache()), self.conversation, self.eou, self.metrics,
            TurnSettings(**settings), turns=turns,
        )
        self.call.start()
        return self.call

    # ---- the caller's stream ------------------------------------------------------------------
    def hear(self, frame: bytes | None = None, count: int = 1) -> None:
        """``count`` frames of 20 ms: ``frame`` (None: silence), on a speakerphone with the
        bot's echo mixed in."""
        for _ in range(count):
            self.clock.advance(FRAME_MS / 1000)
            sound = frame if frame is not None else SILENCE
            if self.speakerphone:
                heard = self.transport.playing(self.clock.seconds() - FRAME_MS / 1000 - ECHO_DELAY_S)
                sound = mixed(sound, attenuated(heard, ECHO_LOSS_DB))
            self.call.on_media(sound)

    def silence(self, count: int = 1) -> None:
        self.hear(None, count)

    def echo_marks(self) -> None:
        for name in self.transport.new_marks():
            self.call.on_mark(name)

    def play_out(self) -> None:
        """Everything sent plays to its end (the caller silent); the carrier echoes the marks."""
        while self.clock.seconds() < self.transport.played_until():
            self.silence()
        self.echo_marks()

    def caller_turn(self, text="tell me everything", level_db=CALLER_DB, frames=20) -> None:
        """The caller says ``text`` at ``level_db`` and is answered."""
        self.hear(voice(level_db), frames)
        self.silence(12)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.call.on_transcript(text, True)
        self.assertIn(self.call.state, (State.SPEAKING, State.THINKING))

    def until_cleared(self, frame: bytes, limit: int = 50) -> float:
        """Feed ``frame`` until the carrier is told to clear; how long that took (s)."""
        onset, clears = self.clock.seconds(), self.transport.sent.count(("clear",))
        for _ in range(limit):
            self.hear(frame)
            if self.transport.sent.count(("clear",)) > clears:
                return self.clock.seconds() - onset
        self.fail(f"no clear after {limit} frames; barge_ins={self.call.record.barge_ins}")

    def decisions(self, decision: str, reason: str) -> float:
        return self.metrics.barge_in_decisions_total.labels(decision, reason)._value.get()

    def barge_ins(self) -> list[tuple[str, str]]:
        return [(b["decision"], b["reason"]) for b in self.call.record.barge_ins]
