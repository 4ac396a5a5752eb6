"""A call in model mode (``voiced.call.speech_to_speech``) on a Clock: a real ``Call``, its
Hearing, Playback and marks, with the model's session recorded (what the call asks of the
model) and the model's events fed by the test through the call's ``ModelPort``."""

from __future__ import annotations

from twisted.internet.task import Clock

from tests.turn_harness import (
    BOT_DB, SILENCE, Line, NearTestCase, ToneTTS, logged, tone, voice, voiced_by_energy,
)
from voiced.agent.base import CallInfo, EndCall, Said
from voiced.audio import FRAME_MS, SAMPLE_RATE
from voiced.call.chronicle import Chronicle
from voiced.call.playback import Playback
from voiced.call.record import CallRecord
from voiced.call.reply import ReplyKind
from voiced.call.streamed_reply import StreamedReply
from voiced.call.turn import Call, State, TurnSettings
from voiced.metrics import Metrics
from voiced.tts.speaker import PhraseCache, Speaker
from voiced.turns.eou import EndOfUtterance
from voiced.turns.levels import OutgoingLevel


class RecordingSession:
    """The model's side of the seam, as the call drives it: it records, the test answers."""

    speaks_for_itself = True

    def __init__(self, server_turns: bool = False) -> None:
        self.server_turns = server_turns
        self.port = None
        self.appended = 0
        self.turns_answered = 0
        self.told: list[str] = []
        self.cancels = 0
        self.truncates: list[tuple[str, int]] = []
        self.closed = False

    def greeting(self):
        return []

    def respond(self, request, sink):
        raise AssertionError("a call in model mode never asks for text")

    def open(self, port):
        self.port = port

    def append(self, ulaw):
        self.appended += len(ulaw)

    def answer_turn(self):
        self.turns_answered += 1

    def tell(self, text):
        self.told.append(text)

    def cancel(self):
        self.cancels += 1

    def truncate(self, item_id, end_ms):
        self.truncates.append((item_id, end_ms))

    def close(self):
        self.closed = True


class TimedLine(Line):
    """The carrier, echoing each mark once the audio before it has played (as Twilio does)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.pending: list[tuple[float, str]] = []
        self.starts: list[float] = []  # when each reply's audio began to play

    def send_mark(self, name):
        super().send_mark(name)
        at = max(self._end, self._now()) / SAMPLE_RATE
        self.pending.append((at, name))
        if name.endswith(".start"):
            self.starts.append(at)

    def send_clear(self):
        super().send_clear()
        self.pending.clear()

    def due(self) -> list[str]:
        now = self.clock.seconds()
        names = [name for at, name in self.pending if at <= now + 1e-9]
        self.pending = [(at, name) for at, name in self.pending if at > now + 1e-9]
        return names


class ModelModeTests(NearTestCase):
    def make_call(self, server_turns: bool = False) -> Call:
        self.clock = Clock()
        self.clock.advance(1000)
        self.line = TimedLine(self.clock)
        self.session = RecordingSession(server_turns)
        self.tts = ToneTTS(BOT_DB)
        self.metrics = Metrics()
        eou = EndOfUtterance(self.clock, voiced_by_energy, eou_silence_ms=240, min_speech_ms=60)

        class NoSTT:
            name, streaming, formats = "none", True, frozenset()

            def open_stream(self, *a, **k):
                raise AssertionError("model mode opens no STT stream")

        self.call = Call(CallInfo("CA1", "MZ1", language="en-US"), self.clock, self.line, NoSTT(),
                         Speaker(self.tts, None, PhraseCache()), self.session, eou, self.metrics,
                         TurnSettings(barge_in_ms=160, false_interruption_ms=1500))
        self.call.start()
        return self.call

    def frames(self, frame: bytes | None = None, count: int = 1) -> None:
        for _ in range(count):
            self.clock.advance(FRAME_MS / 1000)
            for name in self.line.due():
                self.call.on_mark(name)
            self.call.on_media(frame if frame is not None else SILENCE)

    def model_says(self, response: str, words: str, ms: int, item: str = "item_b1", done: bool = True) -> None:
        port = self.session.port
        port.model_speaking(response)
        port.model_transcript(response, words, done=False)
        audio = tone(BOT_DB, ms)
        for i in range(0, len(audio), 800):  # 100 ms deltas, all at once: faster than real time
            port.model_audio(response, item, audio[i:i + 800])
        if done:
            port.model_transcript(response, words, done=True)
            port.model_done(response, "completed", more_coming=False)

    def greet(self) -> None:
        self.model_says("resp_g", "Hello there.", 400, item="item_g")
        self.frames(count=30)
        self.assertEqual(self.call.state, State.LISTENING)

    def test_the_greeting_is_the_models_audio_played_as_it_streams(self):
        self.make_call()
        self.assertIsNotNone(self.session.port, "the session opens with the call")
        self.assertEqual(self.tts.spoken, [], "no TTS: the model greets in its own voice")
        port = self.session.port
        port.model_speaking("resp_g")
        port.model_audio("resp_g", "item_g", tone(BOT_DB, 100))
        # The first chunk is on the line while the model is still streaming.
        self.assertEqual(len(self.line.audio()), 1)
        self.assertEqual(self.line.marks(), ["g1.start", "g1.s0"])
        port.model_audio("resp_g", "item_g", tone(BOT_DB, 100))
        port.model_transcript("resp_g", "Hello there.", done=True)
        port.model_done("resp_g", "completed", more_coming=False)
        self.assertEqual(self.line.marks()[-1], "g1.end")
        self.frames(count=15)
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(list(self.call.history), [Said("bot", "Hello there.")])
        self.frames(voice(), 5)
        self.assertEqual(self.session.appended, 20 * 160, "every frame of the caller's audio goes to the model")

    def test_voiceds_end_of_turn_commits_and_the_turn_is_measured(self):
        self.make_call()
        self.greet()
        turns = logged(self, "{line}")
        self.frames(voice(), 20)
        self.frames(count=12)
        self.assertEqual(self.session.turns_answered, 1, "the end of turn commits the audio and asks")
        self.assertEqual(self.call.state, State.THINKING)
        port = self.session.port
        port.caller_committed("item_c1")
        self.frames(count=10)  # the model thinks for 200 ms
        self.model_says("resp_1", "We open at nine.", 1000)
        port.caller_transcript("item_c1", "When do you open?")
        self.frames(count=60)
        record = self.call.record.turns[0]
        self.assertEqual((record.caller_text, record.reply_text, record.heard_text),
                         ("When do you open?", "We open at nine.", "We open at nine."))
        [turn] = [e["line"] for e in turns if "turn=1" in e["line"]]
        # Speech end (240 ms of silence into the 12 frames, then the VAD's verdict) to first audio.
        self.assertRegex(turn, r"TOTAL_LATENCY_MS=(2\d\d|4\d\d) ")
        self.assertEqual(self.call.state, State.LISTENING)

    def test_a_barge_in_clears_at_once_and_truncates_at_what_was_heard(self):
        self.make_call()
        self.greet()
        self.frames(voice(), 20)
        self.frames(count=12)
        self.session.port.caller_committed("item_c1")
        self.model_says("resp_1", "one two three four five six seven eight nine ten", 3000, done=False)
        self.frames(count=35)  # 700 ms of the reply play
        clears = self.line.sent.count(("clear",))
        onset = self.clock.seconds()
        while self.line.sent.count(("clear",)) == clears:
            self.frames(voice())
        cleared_at = self.clock.seconds()
        self.assertLessEqual(cleared_at - onset, 0.16 + FRAME_MS / 1000 + 1e-9, "clear within a frame of the decision")
        heard_ms = (cleared_at - self.line.starts[-1]) * 1000
        [(item, end_ms)] = self.session.truncates
        self.assertEqual(item, "item_b1")
        self.assertNear(end_ms, heard_ms, FRAME_MS)
        self.assertEqual(self.session.cancels, 1, "the response still streaming is cancelled")
        bot = self.call.history[-1]
        self.assertTrue(bot.interrupted)
        self.assertTrue("one two three".startswith(bot.text) or bot.text.startswith("one two"), bot.text)
        self.assertNotIn("ten", bot.text)
        self.assertEqual(self.call.state, State.LISTENING)
        # Late deltas of the cancelled response play nowhere.
        sent = len(self.line.audio())
        self.session.port.model_audio("resp_1", "item_b1", tone(BOT_DB, 100))
        self.assertEqual(len(self.line.audio()), sent)

    def test_server_turns_the_models_speech_started_is_the_barge_in(self):
        self.make_call(server_turns=True)
        self.greet()
        port = self.session.port
        self.frames(voice(), 20)
        self.frames(count=30)
        self.assertEqual(self.session.turns_answered, 0, "the model's VAD ends the turn, not voiced's")
        self.assertEqual(self.call.state, State.LISTENING)
        port.caller_committed("item_c1")
        self.assertEqual(self.call.state, State.THINKING)
        self.model_says("resp_1", "A long answer to that.", 2000, done=False)
        self.frames(count=25)
        self.frames(voice(), 15)  # voiced's own VAD hears the caller, but the model leads
        self.assertNotIn(("clear",), self.line.sent)
        port.caller_speech_started()
        self.assertIn(("clear",), self.line.sent)
        self.assertEqual(len(self.session.truncates), 1)

    def test_a_refused_key_ends_the_call_with_the_apology(self):
        self.make_call()
        failures = logged(self, "REALTIME_FAILED")
        self.session.port.model_failed("OpenAI Realtime: HTTP 401 at the handshake", fatal=True)
        self.assertEqual(len(self.tts.spoken), 1, "voiced's own voice apologizes")
        self.assertIn("CA1", failures[0]["call"])
        self.frames(count=150)
        self.assertIn(("hangup",), self.line.sent)

    def test_an_end_call_tool_hangs_up_after_the_goodbye(self):
        self.make_call()
        self.greet()
        self.frames(voice(), 20)
        self.frames(count=12)
        port = self.session.port
        self.model_says("resp_1", "Goodbye!", 300, done=False)
        port.model_action(EndCall())
        port.model_done("resp_1", "completed", more_coming=False)
        self.assertNotIn(("hangup",), self.line.sent)
        self.frames(count=30)
        self.assertIn(("hangup",), self.line.sent)

    def test_a_key_press_is_told_to_the_model(self):
        self.make_call()
        self.greet()
        self.call.on_dtmf("5")
        self.assertEqual(len(self.session.told), 1)
        self.assertIn("5", self.session.told[0])
        self.assertEqual(self.call.state, State.THINKING)

    def test_a_greeting_lost_before_it_played_waits_for_the_new_session(self):
        self.make_call()
        self.session.port.model_failed("OpenAI Realtime: closed with 1011", fatal=False)
        self.assertEqual(self.tts.spoken, [], "no apology: the new session greets")
        self.greet()

    def test_the_call_closes_its_session(self):
        self.make_call()
        self.call.close("caller hung up")
        self.assertTrue(self.session.closed)


class HeardAudioTests(NearTestCase):
    """What the caller heard of a streamed reply, in bytes: the truncate position."""

    def reply(self):
        clock = Clock()
        clock.advance(100)
        line = TimedLine(clock)

        class Owner:
            def reply_playing(self, reply): pass
            def reply_finished(self, reply): pass
            def filler_played(self, reply): pass

        info = CallInfo("CA2", "MZ2")
        chronicle = Chronicle(CallRecord.begin(info, 100, "carrier"), None, Metrics(), clock)
        playback = Playback("CA2", clock, line, None, chronicle, OutgoingLevel(), [], Owner())
        return clock, line, playback, playback.new_reply(ReplyKind.ANSWER, None, make=StreamedReply)

    def echo(self, clock, line, playback, seconds):
        for _ in range(round(seconds / 0.02)):
            clock.advance(0.02)
            for name in line.due():
                playback.on_mark(name)

    def test_heard_is_what_played_before_the_cut(self):
        clock, line, playback, reply = self.reply()
        for _ in range(5):
            reply.audio(b"\x00" * 800, "item_1")  # 500 ms, sent at once
        self.echo(clock, line, playback, 0.26)
        # 0.26 s in: two chunks echoed (200 ms), 60 ms of the third.
        self.assertEqual(reply.heard_in_item(clock.seconds()), ("item_1", 2080))

    def test_a_line_that_ran_dry_counts_from_the_chunks_arrival(self):
        clock, line, playback, reply = self.reply()
        reply.audio(b"\x00" * 800, "item_1")
        self.echo(clock, line, playback, 0.3)  # it played whole; the model was slow with the next
        reply.audio(b"\x00" * 800, "item_1")
        self.echo(clock, line, playback, 0.04)
        self.assertEqual(reply.played_bytes(clock.seconds()), 800 + 320)

    def test_a_second_item_counts_from_its_own_start(self):
        clock, line, playback, reply = self.reply()
        reply.audio(b"\x00" * 800, "item_1")
        reply.audio(b"\x00" * 800, "item_2")  # a tool's answer: a new item in the same reply
        self.echo(clock, line, playback, 0.14)
        self.assertEqual(reply.heard_in_item(clock.seconds()), ("item_2", 320))

    def test_nothing_heard_before_the_start_mark_echoes(self):
        clock, line, playback, reply = self.reply()
        reply.audio(b"\x00" * 800, "item_1")
        self.assertEqual(reply.heard_in_item(clock.seconds()), ("item_1", 0))
