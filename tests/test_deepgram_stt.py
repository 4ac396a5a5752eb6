"""The Deepgram engine against a loopback Deepgram (tests/fakes/deepgram_server.py): real
WebSockets on 127.0.0.1, the real Autobahn client, Deepgram's messages and failures."""

from __future__ import annotations


from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.fakes.deepgram_server import DeepgramFake
from tests.testing.deepgram import FRAME, KEY, Listener, silent_frame, tone_frame
from voiced.audio import MULAW_8K
from voiced.config import Settings
from voiced.lifecycle import construction_counts
from voiced.retry import Backoff
from voiced.stt.base import PCM_16K
from voiced.stt.deepgram import DeepgramSTTEngine
from voiced.stt.deepgram_stream import KEEPALIVE_S, RESPONSE_WATCHDOG_S


class DeepgramEngineTests(TestCase):
    timeout = 8

    def setUp(self) -> None:
        self.fake = DeepgramFake(api_key=KEY)
        self.fake.listen()
        self.addCleanup(self.fake.stop)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def engine(self, clock=None, attempts: int = 3, key: str = KEY, **settings) -> DeepgramSTTEngine:
        s = Settings(deepgram_url=self.fake.url, deepgram_api_key=key, stt="deepgram", **settings)
        # No waiting between retries: the tests wait on events, never on time.
        return DeepgramSTTEngine(s, reactor, fallback=None, clock=clock, backoff=Backoff(0, 0, attempts))

    def open(self, engine: DeepgramSTTEngine, audio=MULAW_8K, call_id: str = "CA1"):
        listener = Listener()
        stream = engine.open_stream(call_id, listener, audio)
        self.addCleanup(stream.close)
        return stream, listener

    def speak(self, stream, frames: int, audio=MULAW_8K) -> None:
        for _ in range(frames):
            stream.feed(tone_frame(audio))

    def log_text(self) -> str:
        from twisted.logger import formatEvent

        return "\n".join(formatEvent(e) for e in self.logged)

    @inlineCallbacks
    def test_one_websocket_with_the_documented_query_and_token(self):
        engine = self.engine()
        stream, listener = self.open(engine)
        stream.feed(silent_frame())
        yield self.fake.when(lambda: self.fake.streams)
        [server] = self.fake.streams
        self.assertEqual(server.query, {
            "encoding": "mulaw", "sample_rate": "8000", "channels": "1", "model": "nova-3", "language": "en-US",
            "interim_results": "true", "punctuate": "true", "endpointing": "300", "utterance_end_ms": "1000",
        })
        self.assertEqual(self.fake.headers_seen[0]["authorization"], f"Token {KEY}")
        self.assertGreaterEqual(construction_counts().get("stt_deepgram_engine", 0), 1)

    @inlineCallbacks
    def test_wideband_audio_goes_as_linear16(self):
        stream, listener = self.open(self.engine(language="he-IL"), audio=PCM_16K)
        stream.speech_started()
        self.speak(stream, 20, PCM_16K)
        final = listener.next("final")
        stream.flush()
        self.assertEqual((yield final), ("final", "frames 20"))
        [server] = self.fake.streams
        self.assertEqual((server.query["encoding"], server.query["sample_rate"], server.query["language"]),
                         ("linear16", "16000", "he"))

    @inlineCallbacks
    def test_partials_then_the_final_at_the_end_of_the_turn(self):
        stream, listener = self.open(self.engine())
        stream.speech_started()
        partial = listener.next("partial")
        self.speak(stream, 30)
        self.assertEqual((yield partial), ("partial", "frames 10"))
        final = listener.next("final")
        stream.flush()  # voiced's end of turn: Finalize, not 300 ms of Deepgram's endpointing
        self.assertEqual((yield final), ("final", "frames 30"))
        [server] = self.fake.streams
        self.assertEqual(server.finalizes, 1)
        self.assertTrue(server.finals[-1]["from_finalize"])
        self.assertEqual(listener.of("retry") + listener.of("failure"), [])

    @inlineCallbacks
    def test_endpointing_finals_come_on_their_own(self):
        stream, listener = self.open(self.engine())
        final = listener.next("final")
        self.speak(stream, 12)
        for _ in range(20):  # 400 ms of silence: past the 300 ms endpointing
            stream.feed(silent_frame())
        self.assertEqual((yield final), ("final", "frames 12"))
        self.assertTrue(self.fake.streams[0].finals[0]["speech_final"])

    @inlineCallbacks
    def test_a_reset_mid_utterance_is_retried_and_loses_no_audio(self):
        self.fake.fail_after(25 * FRAME, "reset")  # TCP dropped, no close frame
        stream, listener = self.open(self.engine())
        stream.speech_started()
        retried = listener.next("retry")
        self.speak(stream, 30)
        self.assertEqual((yield retried), ("retry", "ConnectionLost"))
        yield self.fake.when(lambda: len(self.fake.streams) == 2)
        self.speak(stream, 20)
        final = listener.next("final")
        stream.flush()
        yield final
        # Every speech frame fed was finalized once: the replay lost none and repeated none.
        self.assertEqual(self.fake.speech_frames_finalized, 50)
        self.assertEqual(listener.of("final"), [("final", "frames 50")])
        self.assertEqual(listener.of("failure"), [])
        self.assertEqual(stream.streams_opened, 2)

    @inlineCallbacks
    def test_a_1011_after_a_final_replays_only_what_was_not_finalized(self):
        stream, listener = self.open(self.engine())
        final = listener.next("final")
        self.speak(stream, 15)
        for _ in range(20):
            stream.feed(silent_frame())
        self.assertEqual((yield final), ("final", "frames 15"))
        self.fake.fail_after(0, 1011)  # the next stream: closed with NET-0000 at its first audio
        self.fake.streams[0].fake_close(1011, "NET-0000")
        retried = listener.next("retry")
        yield retried
        self.speak(stream, 10)
        yield self.fake.when(lambda: len(self.fake.streams) == 3)
        final = listener.next("final")
        stream.speech_started()
        self.speak(stream, 5)
        stream.flush()
        yield final
        # Autobahn's server resets the TCP connection once its close is answered: now and then the
        # client's kernel drops the close frame with it (a reset), which is retried all the same.
        self.assertEqual(len(listener.of("retry")), 2)
        self.assertLessEqual({e[1] for e in listener.of("retry")}, {"Close1011", "ConnectionLost"})
        self.assertEqual(self.fake.speech_frames_finalized, 30)
        self.assertEqual([e[1] for e in listener.of("final")], ["frames 15", "frames 15"])

    @inlineCallbacks
    def test_a_503_at_the_handshake_retries_that_stream_only(self):
        self.fake.refuse(503)
        engine = self.engine()
        stream, listener = self.open(engine)
        other, other_listener = self.open(engine, call_id="CA2")
        retried = listener.next("retry")
        stream.speech_started()
        self.speak(stream, 10)
        self.assertEqual((yield retried), ("retry", "HTTP503"))
        final = listener.next("final")
        stream.flush()
        self.assertEqual((yield final), ("final", "frames 10"))
        # The other call's stream never noticed.
        other_final = other_listener.next("final")
        other.speech_started()
        self.speak(other, 10)
        other.flush()
        yield other_final
        self.assertEqual(other_listener.of("retry"), [])

    @inlineCallbacks
    def test_401_gives_up_at_once_with_the_call_told(self):
        stream, listener = self.open(self.engine(key="wrong-key"), call_id="CA401")
        failed = listener.next("failure")
        stream.speech_started()
        self.speak(stream, 10)
        _, reason, answer_coming = yield failed
        self.assertIn("HTTP 401", reason)
        self.assertIn("--deepgram-api-key", reason)
        self.assertFalse(answer_coming)  # no fallback transcriber here
        self.assertEqual(listener.of("retry"), [])
        self.assertEqual(self.fake.handshakes, 1)  # no retry cures a key
        self.assertFalse(stream.streaming)
        # The call goes on: one (empty) final per turn, from now on without Deepgram.
        stream.flush()
        self.assertEqual(listener.of("final"), [("final", "")])
        text = self.log_text()
        self.assertRegex(text, r"STT_DEGRADED call=CA401 Deepgram STT refused the stream .*HTTP 401")
        self.assertNotIn("wrong-key", text)

    @inlineCallbacks
    def test_retries_run_out_the_listener_is_told_and_the_call_goes_on(self):
        self.fake.refuse(503, 503, 503)
        clock = Clock()
        stream, listener = self.open(self.engine(clock=clock, attempts=2))
        failed = listener.next("failure")
        stream.speech_started()
        for _ in range(2):
            retried = listener.next("retry")
            self.speak(stream, 5)
            yield retried
            clock.advance(0)  # the backoff (0 s here)
        _, reason, answer_coming = yield failed
        self.assertIn("Deepgram STT failed after 2 retries: HTTP503", reason)
        self.assertFalse(answer_coming)
        self.assertEqual(self.fake.handshakes, 3)
        clock.advance(0)  # the cool-down
        # The call goes on: the next audio opens a stream that works.
        stream.speech_started()
        final = listener.next("final")
        self.speak(stream, 10)
        yield self.fake.when(lambda: self.fake.streams and self.fake.streams[-1].bytes_received >= 10 * FRAME)
        stream.flush()
        self.assertEqual((yield final), ("final", "frames 10"))

    @inlineCallbacks
    def test_keepalive_while_no_audio_flows_and_closestream_at_the_end(self):
        clock = Clock()
        stream, listener = self.open(self.engine(clock=clock))
        stream.feed(silent_frame())
        yield self.fake.when(lambda: self.fake.streams and self.fake.streams[0].bytes_received == FRAME)
        [server] = self.fake.streams
        clock.advance(KEEPALIVE_S - 0.5)
        stream.feed(silent_frame() * 13)  # audio flows: no KeepAlive due
        clock.advance(1.0)
        clock.advance(KEEPALIVE_S)  # then nothing for 4 s (the bot talks, the carrier sends nothing)
        yield self.fake.when(lambda: server.keepalives == 1)
        clock.advance(KEEPALIVE_S)
        yield self.fake.when(lambda: server.keepalives == 2)
        self.assertEqual(stream.keepalives_sent, 2)
        stream.close()
        yield self.fake.when(lambda: server.closed_code is not None)
        self.assertTrue(server.close_stream)
        self.assertEqual(server.closed_code, 1000)

    @inlineCallbacks
    def test_a_server_that_never_answers_the_turn_is_replaced(self):
        clock = Clock()
        stream, listener = self.open(self.engine(clock=clock))
        self.fake.muted = True
        stream.speech_started()
        self.speak(stream, 10)
        yield self.fake.when(lambda: self.fake.streams and self.fake.streams[0].bytes_received == 10 * FRAME)
        stream.flush()
        yield self.fake.when(lambda: self.fake.streams[0].finalizes == 1)
        self.fake.muted = False
        retried = listener.next("retry")
        clock.advance(RESPONSE_WATCHDOG_S)
        self.assertEqual((yield retried), ("retry", "ResponseTimeout"))
        final = listener.next("final")
        clock.advance(0)  # the backoff (0 s here)
        # The new stream replays the utterance and finalizes it: the turn still gets its words.
        self.assertEqual((yield final), ("final", "frames 10"))
