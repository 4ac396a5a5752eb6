"""Whether caller sound over the bot interrupts it: the policy (voiced.turns.barge_in), the
levels it compares (voiced.turns.levels), and a real ``Call`` on a line that plays the
bot's audio in real time and hears its echo, on a Clock.

Levels are real: frames are tones of a given dBFS encoded to mu-law, the bot speaks at
-16 dBFS, its echo comes back 20 dB down, the caller speaks at -20 dBFS. The VAD here is
an energy detector, which (like webrtcvad) calls the echo speech too: telling the two
apart is the barge-in policy's job, not the detector's.
"""

from __future__ import annotations

import math
import struct

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.test_turn import FakeSTT
from voiced.agent.base import CallInfo, EndCall
from voiced.audio import FRAME_MS, SAMPLE_RATE, audioop, pcm16_to_ulaw, silence_ulaw, ulaw_to_pcm16
from voiced.call.turn import Call, State, TurnSettings
from voiced.metrics import Metrics
from voiced.tts.speaker import PhraseCache, Speaker
from voiced.turns.barge_in import Action, BargeInDecision, BargeInPolicy, BargeInSettings, SoundOverBot
from voiced.turns.eou import EndOfUtterance
from voiced.turns.levels import CallerLevel, OutgoingLevel, dbfs

BOT_DB = -16.0
CALLER_DB = -20.0
ECHO_LOSS_DB = 20.0  # a speakerphone's echo, well under what the bot sends
ECHO_DELAY_S = 0.1  # the round trip before the bot's audio comes back in the caller's stream
SILENCE = silence_ulaw(FRAME_MS)
#: The test's VAD: anything above about -50 dBFS is voiced (echo included, as webrtcvad would say).
VOICED_RMS = 100


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


# ---- the fakes a call talks to --------------------------------------------------------------
class ToneTTS:
    """Speaks each word as 200 ms of a tone at ``level_db``, a pitch per text (so two
    sentences' audio differ); records every text it was asked."""

    name = "tone"

    def __init__(self, level_db: float = BOT_DB):
        self.level_db = level_db
        self.spoken: list[str] = []

    def synthesize(self, text):
        self.spoken.append(text)
        return succeed(tone(self.level_db, 200 * len(text.split()), freq=300 + 50 * (sum(map(ord, text)) % 8)))


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

    def greeting(self):
        return ["Hello there."]

    def respond(self, request, sink):
        self.asked.append(request.text)
        for sentence in self.sentences:
            sink.sentence(sentence)
        if "bye" in request.text:
            sink.action(EndCall())
        return succeed(None)


class NearTestCase(SynchronousTestCase):
    def assertNear(self, value: float, expected: float, delta: float) -> None:
        if not abs(value - expected) <= delta:
            self.fail(f"{value} is not within {delta} of {expected}")


def logged(test: SynchronousTestCase, word: str) -> list[dict]:
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

    def make_call(self, streaming=False, bot_db=BOT_DB, sentences=("First answer.", "Second answer."),
                  false_interruption_ms=1500, barge_in_ms=160, min_speech_ms=60, barge_in=None, turn_model=None,
                  policy=None) -> Call:
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = Line(self.clock)
        self.stt = FakeSTT(streaming)
        self.tts = ToneTTS(bot_db)
        self.conversation = Answers(sentences)
        self.metrics = Metrics()
        self.eou = EndOfUtterance(self.clock, voiced_by_energy, eou_silence_ms=240, min_speech_ms=min_speech_ms)
        self.call = Call(
            CallInfo("CA1", "MZ1", language=self.language), self.clock, self.transport, self.stt,
            Speaker(self.tts, None, PhraseCache()), self.conversation, self.eou, self.metrics,
            TurnSettings(barge_in_ms=barge_in_ms, final_timeout_ms=1500, fallback_timeout_ms=4000,
                         false_interruption_ms=false_interruption_ms),
            policy=policy, turn_model=turn_model, barge_in=barge_in,
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


# ---- the policy ----------------------------------------------------------------------------
def sound(**fields) -> SoundOverBot:
    fields.setdefault("sustained", True)
    fields.setdefault("level_db", -20.0)
    fields.setdefault("bot_level_db", -16.0)
    fields.setdefault("caller_level_db", -20.0)
    return SoundOverBot(**fields)


class BargeInPolicyTests(SynchronousTestCase):
    def setUp(self):
        self.policy = BargeInPolicy(BargeInSettings(echo_margin_db=15, background_margin_db=10))

    def test_sound_not_yet_sustained_is_not_decided(self):
        self.assertEqual(self.policy.decide(sound(sustained=False)).action, Action.WAIT)
        self.assertEqual(self.policy.decide(sound(sustained=False, level_db=-60)).action, Action.WAIT)

    def test_the_callers_own_voice_over_the_bot_interrupts(self):
        self.assertEqual(self.policy.decide(sound()), BargeInDecision(Action.INTERRUPT, "speech", "-20 dBFS"))

    def test_sound_echo_margin_under_the_bot_is_its_echo(self):
        self.assertEqual(self.policy.decide(sound(level_db=-36, caller_level_db=None)),
                         BargeInDecision(Action.IGNORE, "echo", "-36 dBFS, bot -16 dBFS"))
        self.assertEqual(self.policy.decide(sound(level_db=-31, caller_level_db=None)).reason, "echo")  # the margin
        self.assertEqual(self.policy.decide(sound(level_db=-30.9, caller_level_db=None)).action, Action.INTERRUPT)

    def test_nothing_playing_has_no_echo(self):
        self.assertEqual(self.policy.decide(sound(level_db=-45, bot_level_db=-math.inf, caller_level_db=None)).action,
                         Action.INTERRUPT)

    def test_sound_background_margin_under_the_callers_level_is_someone_else(self):
        self.assertEqual(self.policy.decide(sound(level_db=-27, bot_level_db=-30, caller_level_db=-12)),
                         BargeInDecision(Action.IGNORE, "background", "-27 dBFS, caller -12 dBFS"))
        self.assertEqual(self.policy.decide(sound(level_db=-21.9, bot_level_db=-30, caller_level_db=-12)).action,
                         Action.INTERRUPT)

    def test_a_caller_not_heard_yet_has_no_background_to_compare(self):
        self.assertEqual(self.policy.decide(sound(level_db=-27, bot_level_db=-30, caller_level_db=None)).action,
                         Action.INTERRUPT)

    def test_echo_is_told_before_background(self):
        self.assertEqual(self.policy.decide(sound(level_db=-40, bot_level_db=-16, caller_level_db=-12)).reason,
                         "echo")

    def test_a_partial_of_only_backchannel_words_is_no_turn(self):
        self.assertEqual(self.policy.decide(sound(words="yeah")),
                         BargeInDecision(Action.IGNORE, "backchannel", "'yeah'"))
        self.assertEqual(self.policy.decide(sound(words="כן כן", language="he-IL")).reason, "backchannel")
        self.assertEqual(self.policy.decide(sound(words="yeah I need help")).action, Action.INTERRUPT)
        self.assertEqual(self.policy.decide(sound(words="wait")).action, Action.INTERRUPT)

    def test_levels_are_judged_before_words(self):
        self.assertEqual(self.policy.decide(sound(level_db=-40, words="stop")).reason, "echo")

    def test_zero_margins_turn_the_guards_off(self):
        policy = BargeInPolicy(BargeInSettings(echo_margin_db=0, background_margin_db=0))
        self.assertEqual(policy.decide(sound(level_db=-50, bot_level_db=-10, caller_level_db=-10)).action,
                         Action.INTERRUPT)


class LevelTests(NearTestCase):
    def test_dbfs(self):
        self.assertEqual(dbfs(32768), 0.0)
        self.assertAlmostEqual(dbfs(3277), -20.0, places=2)
        self.assertEqual(dbfs(0), -math.inf)

    def test_tones_have_the_level_asked(self):
        for db in (-10, -16, -20, -36):
            self.assertNear(level_of(tone(db, 200)), db, 0.2)

    def test_each_frame_is_placed_on_the_playout_timeline(self):
        level = OutgoingLevel(window_s=0.6)
        audio = tone(-40, 100) + tone(-10, 20) + tone(-40, 100)  # a loud frame 100 ms in
        level.queued(audio, plays_at=10.0)
        self.assertEqual(level.recent(9.99), 0.0)  # nothing has played yet
        self.assertNear(dbfs(level.recent(10.0)), -40, 0.2)
        self.assertNear(dbfs(level.recent(10.099)), -40, 0.2)
        self.assertNear(dbfs(level.recent(10.1)), -10, 0.2)

    def test_the_reference_is_the_loudest_frame_of_the_window_before_now(self):
        level = OutgoingLevel(window_s=0.6)
        level.queued(tone(-10, 200), plays_at=10.0)
        level.queued(tone(-30, 2000), plays_at=10.2)
        self.assertNear(dbfs(level.recent(10.7)), -10, 0.2)  # the loud frame at 10.18
        self.assertNear(dbfs(level.recent(10.79)), -30, 0.2)  # 0.6 s on, it is forgotten
        self.assertNear(dbfs(level.recent(12.7)), -30, 0.2)  # the last frame, at 12.18
        self.assertEqual(level.recent(12.79), 0.0)  # 0.6 s after the last frame: nothing playing

    def test_a_partial_frame_at_the_end_of_a_chunk_is_not_placed(self):
        level = OutgoingLevel()
        level.queued(tone(-30, 20) + tone(-5, 10), plays_at=0.0)
        self.assertNear(dbfs(level.recent(0.5)), -30, 0.2)

    def test_cleared_drops_what_had_not_played(self):
        level = OutgoingLevel(window_s=0.6)
        level.queued(tone(-30, 1000), plays_at=10.0)
        level.queued(tone(-10, 1000), plays_at=11.0)
        level.cleared(10.5)
        self.assertNear(dbfs(level.recent(10.5)), -30, 0.2)
        self.assertNear(dbfs(level.recent(11.0)), -30, 0.2)  # what played before the clear, within the window
        self.assertEqual(level.recent(11.2), 0.0)  # the louder audio never played
        level.queued(tone(-20, 100), plays_at=12.0)  # the next reply after the clear
        self.assertNear(dbfs(level.recent(12.05)), -20, 0.2)

    def test_caller_level_follows_their_utterances_slowly(self):
        caller = CallerLevel()
        self.assertIsNone(caller.db)
        caller.utterance(0.0)  # no level: nothing learnt
        self.assertIsNone(caller.db)
        caller.utterance(3277)
        self.assertAlmostEqual(caller.db, -20, places=2)
        caller.utterance(32768 * 10 ** (-30 / 20))
        self.assertAlmostEqual(caller.db, -23, places=2)  # 30 % of the way to the new utterance


class OutgoingLevelMemoryBugTests(CallOnALine):
    """Bug: ``OutgoingLevel`` forgets frames only in ``recent``, which the call asks only
    when the caller's sound over the bot is sustained. A call where the caller never
    talks over the bot keeps a tuple for every 20 ms the bot ever said: 50 a second of
    bot speech, for the life of the call (a 30-minute call: tens of thousands, per call)."""

    def test_the_bots_audio_long_played_is_forgotten_though_nobody_talked_over_it(self):
        self.make_call(sentences=["One two three four five six seven eight nine ten."])  # 2 s each
        self.play_out()
        for _ in range(20):
            self.caller_turn("tell me more")
            self.play_out()
        # 40 s of the bot played out: what is kept may not grow with the call (the last
        # reply, 100 frames, and the 0.6 s window before now are the most worth keeping).
        self.assertLessEqual(len(self.call._outgoing._frames), 100 + 0.6 * 1000 / FRAME_MS + 1)


# ---- through a call ---------------------------------------------------------------------------
LONG_REPLY = ("One two three four five.", "Six seven eight nine ten.", "Eleven twelve thirteen fourteen fifteen.")


class BargeInOverTheBotTests(CallOnALine):
    def bot_speaking(self, streaming=False, speakerphone=False, **kwargs) -> None:
        """The greeting played, the caller said something at their usual level (-20 dBFS),
        and the bot's 3 s answer (-16 dBFS) has just begun to play."""
        self.make_call(streaming=streaming, sentences=LONG_REPLY, **kwargs)
        self.play_out()
        self.caller_turn()
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertNear(self.call._caller_level.db, CALLER_DB, 0.3)
        self.speakerphone = speakerphone

    def test_the_bots_own_echo_does_not_interrupt_it(self):
        ignored = logged(self, "BARGE_IN_IGNORED")
        self.bot_speaking(speakerphone=True)
        self.assertNear(level_of(self.transport.audio()[-1]), BOT_DB, 0.2)
        self.silence(140)  # 2.8 s of the 3 s reply: the caller's stream is its echo at -36 dBFS
        self.assertTrue(self.eou.in_speech)  # the VAD takes it for speech
        self.assertNear(dbfs(self.eou.speech_level()), BOT_DB - ECHO_LOSS_DB, 0.5)
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual(self.barge_ins(), [("ignore", "echo")])  # once per sound, not per frame
        self.assertEqual(self.decisions("ignore", "echo"), 1)
        self.assertEqual(self.metrics.barge_ins_total._value.get(), 0)
        self.assertEqual([e["reason"] for e in ignored], ["echo"])
        self.assertEqual(self.conversation.asked, ["tell me everything"])
        at_s = self.call.record.barge_ins[0]["at_s"]
        # Decided once the echo had lasted barge_in_ms, not at the first frame of it.
        self.assertGreater(at_s, self.clock.seconds() - self.call.record.started_at - 140 * FRAME_MS / 1000)
        self.assertLessEqual(at_s, self.clock.seconds() - self.call.record.started_at)

    def test_the_caller_speaking_over_the_bot_interrupts_on_time(self):
        self.bot_speaking()
        self.silence(5)
        took = self.until_cleared(voice())
        self.assertLessEqual(took, (160 + FRAME_MS) / 1000 + 1e-9)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.assertEqual(self.decisions("interrupt", "speech"), 1)
        self.assertEqual(self.metrics.barge_ins_total._value.get(), 1)

    def test_the_caller_speaking_over_the_bots_echo_interrupts_on_time(self):
        self.bot_speaking(speakerphone=True)
        self.silence(5)  # the reply is playing; its echo is only coming back
        took = self.until_cleared(voice())
        self.assertLessEqual(took, (160 + FRAME_MS) / 1000 + 1e-9)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])

    def test_a_barge_in_stops_the_echo_reference_too(self):
        self.bot_speaking()
        self.silence(5)
        self.until_cleared(voice())
        # What played before the clear ages out of the window; nothing after it was kept.
        self.assertEqual(self.call._outgoing.recent(self.clock.seconds() + 0.61), 0.0)

    def test_quieter_speech_than_the_callers_is_background(self):
        # A loud caller (-12 dBFS) and a quiet bot (-20 dBFS): someone 15 dB under the
        # caller is far above the bot's echo, and still not the caller.
        ignored = logged(self, "BARGE_IN_IGNORED")
        self.make_call(bot_db=-20, sentences=LONG_REPLY)
        self.play_out()
        self.caller_turn(level_db=-12)
        self.speakerphone = True
        self.silence(5)
        self.hear(voice(-27), 60)
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual(self.barge_ins(), [("ignore", "background")])
        self.assertEqual(self.decisions("ignore", "background"), 1)
        self.assertEqual([e["reason"] for e in ignored], ["background"])
        # The caller themselves, at their level, still interrupts.
        self.silence(15)
        self.until_cleared(voice(-12))
        self.assertEqual(self.barge_ins(), [("ignore", "background"), ("interrupt", "speech")])

    def test_before_the_caller_has_spoken_there_is_no_background_to_tell(self):
        self.make_call(bot_db=-20, sentences=LONG_REPLY)
        self.assertEqual(self.call.state, State.GREETING)
        self.until_cleared(voice(-27))
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])

    def test_a_partial_of_only_yeah_does_not_interrupt_but_the_words_after_it_do(self):
        self.bot_speaking(streaming=True)
        self.silence(5)
        self.hear(voice(), 4)
        self.call.on_transcript("yeah", False)
        self.hear(voice(), 20)
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.barge_ins(), [("ignore", "backchannel")])
        self.assertEqual(self.decisions("ignore", "backchannel"), 1)
        self.call.on_transcript("yeah I need help", False)
        self.assertLessEqual(self.until_cleared(voice()), FRAME_MS / 1000 + 1e-9)
        self.assertEqual(self.barge_ins(), [("ignore", "backchannel"), ("interrupt", "speech")])

    def test_a_yeah_that_ends_leaves_the_bot_speaking_and_its_final_is_no_turn(self):
        self.bot_speaking(streaming=True)
        self.silence(5)
        self.hear(voice(), 4)
        self.call.on_transcript("yeah", False)
        self.hear(voice(), 10)
        self.silence(15)
        self.call.on_transcript("yeah", True)
        self.play_out()
        self.assertNotIn(("clear",), self.transport.sent)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.conversation.asked, ["tell me everything"])


class LongEchoBugTests(CallOnALine):
    """Bug: the level the policy compares is ``eou.speech_level()``, the rms of every voiced
    frame since the sound began. On a speakerphone the "sound" began with the bot's reply;
    once the caller starts talking over it, their voice is averaged with seconds of echo
    and stays "echo" long after barge_in_ms (after 5 s of echo the barge-in is 400 ms
    late). The level of the last few frames is what tells who is speaking now."""

    def test_the_caller_interrupts_on_time_after_seconds_of_echo(self):
        self.make_call(sentences=LONG_REPLY * 2)
        self.play_out()
        self.caller_turn()
        self.speakerphone = True
        self.silence(250)  # 5 s of the bot's echo, ignored
        self.assertEqual(self.barge_ins(), [("ignore", "echo")])
        took = self.until_cleared(voice())
        self.assertLessEqual(took, (160 + FRAME_MS) / 1000 + 1e-9)


class EchoTailBugTests(CallOnALine):
    """Bug: the VAD is still "in speech" when a reply the caller only echoed ends (the
    echo sounds on for a round trip, and the utterance needs eou_silence_ms more to end),
    so ``_start_turn`` takes that sound for the caller already talking: when it stops the
    call waits for a transcript of the bot's own echo, and learns the echo's level as the
    caller's. Sound the barge-in policy ignored is not the caller's turn."""

    def test_the_echo_of_a_replys_end_is_not_the_callers_turn(self):
        self.make_call(sentences=LONG_REPLY)
        self.play_out()
        self.caller_turn()
        flushes = self.stt.stream.flushes
        self.speakerphone = True
        self.play_out()  # 3 s of echo, ignored; the reply ends with its echo still coming back
        self.assertEqual(self.barge_ins(), [("ignore", "echo")])
        self.speakerphone = False
        self.silence(30)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.stt.stream.flushes, flushes)  # nothing sent to be transcribed
        self.assertNear(self.call._caller_level.db, CALLER_DB, 0.3)
