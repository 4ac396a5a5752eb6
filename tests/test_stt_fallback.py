"""STT fallback chains: the circuit breaker on a Clock, and a chain of two real Deepgram engines
against two loopback Deepgrams, the first failing mid-utterance."""

from __future__ import annotations

from collections import Counter

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.fakes.deepgram_server import DeepgramFake
from tests.testing.deepgram import FRAME, KEY, Listener, tone_frame
from voiced.config import Settings
from voiced.retry import Backoff
from voiced.stt.deepgram import DeepgramSTTEngine
from voiced.breaker import FAILURES_TO_OPEN, OPEN_S, WINDOW_S, CircuitBreaker
from voiced.stt.fallback import FallbackSTTEngine


class CircuitBreakerTests(TestCase):
    def test_opens_after_failures_within_the_window_and_half_opens_after_a_while(self):
        clock = Clock()
        breaker = CircuitBreaker(clock)
        for _ in range(FAILURES_TO_OPEN - 1):
            breaker.failed("deepgram")
        self.assertTrue(breaker.allows("deepgram"))
        breaker.failed("deepgram")
        self.assertFalse(breaker.allows("deepgram"))
        self.assertTrue(breaker.allows("google"))  # per engine
        clock.advance(OPEN_S - 1)
        self.assertFalse(breaker.allows("deepgram"))
        clock.advance(1)
        self.assertTrue(breaker.allows("deepgram"))  # half-open: it may try again...
        breaker.failed("deepgram")
        self.assertFalse(breaker.allows("deepgram"))  # ...and one more failure opens it again

    def test_old_failures_and_a_success_do_not_count(self):
        clock = Clock()
        breaker = CircuitBreaker(clock)
        for _ in range(FAILURES_TO_OPEN - 1):
            breaker.failed("deepgram")
        clock.advance(WINDOW_S)
        breaker.failed("deepgram")
        self.assertTrue(breaker.allows("deepgram"))
        breaker.failed("deepgram")
        breaker.succeeded("deepgram")
        breaker.failed("deepgram")
        self.assertTrue(breaker.allows("deepgram"))


class ChainTests(TestCase):
    timeout = 8

    def setUp(self) -> None:
        self.primary, self.backup = DeepgramFake(api_key=KEY), DeepgramFake(api_key=KEY)
        for fake in (self.primary, self.backup):
            fake.listen()
            self.addCleanup(fake.stop)
        self.served: Counter[str] = Counter()
        self.clock = Clock()  # the breaker's

    def chain(self) -> FallbackSTTEngine:
        def engine(fake: DeepgramFake, last: bool) -> DeepgramSTTEngine:
            s = Settings(deepgram_url=fake.url, deepgram_api_key=KEY, stt="deepgram")
            # As voiced.warmup builds a chain: no retries before the last engine.
            return DeepgramSTTEngine(s, reactor, fallback=None, backoff=Backoff(0, 0, 2 if last else 0))

        return FallbackSTTEngine([("deepgram", engine(self.primary, False)), ("backup", engine(self.backup, True))],
                                 CircuitBreaker(self.clock), lambda label: self.served.update([label]))

    def open(self, engine: FallbackSTTEngine, call_id: str = "CA1"):
        listener = Listener()
        stream = engine.open_stream(call_id, listener)
        self.addCleanup(stream.close)
        return stream, listener

    def speak(self, stream, frames: int) -> None:
        for _ in range(frames):
            stream.feed(tone_frame())

    @inlineCallbacks
    def test_both_healthy_the_first_engine_ends_the_turn(self):
        stream, listener = self.open(self.chain())
        stream.speech_started()
        final = listener.next("final")
        self.speak(stream, 20)
        stream.flush()
        self.assertEqual((yield final), ("final", "frames 20"))
        self.assertEqual((self.primary.handshakes, self.backup.handshakes), (1, 0))
        self.assertEqual(self.served, {"deepgram": 1})

    @inlineCallbacks
    def test_a_failure_mid_utterance_moves_the_call_to_the_next_engine_with_its_words(self):
        self.primary.fail_after(15 * FRAME, "reset")
        stream, listener = self.open(self.chain())
        stream.speech_started()
        moved = listener.next("retry")
        self.speak(stream, 20)
        self.assertEqual((yield moved), ("retry", "deepgram->backup"))
        yield self.backup.when(lambda: self.backup.streams and self.backup.streams[0].bytes_received >= 20 * FRAME)
        self.speak(stream, 10)
        final = listener.next("final")
        stream.flush()
        # The backup heard the whole utterance, from before the failure too: no word lost.
        self.assertEqual((yield final), ("final", "frames 30"))
        self.assertEqual(listener.of("failure"), [])
        self.assertEqual(self.served, {"backup": 1})
        self.assertEqual(stream.engine_label, "backup")

    @inlineCallbacks
    def test_a_turn_ended_before_the_failure_still_gets_its_final_from_the_next_engine(self):
        stream, listener = self.open(self.chain())
        self.primary.muted = True  # it hears, never answers: the Finalize goes unanswered
        stream.speech_started()
        self.speak(stream, 12)
        yield self.primary.when(lambda: self.primary.streams and
                                self.primary.streams[0].bytes_received >= 12 * FRAME)
        stream.flush()
        yield self.primary.when(lambda: self.primary.streams[0].finalizes == 1)
        final = listener.next("final")
        self.primary.streams[0].fake_close(1011, "NET-0000")  # and then it fails
        self.assertEqual((yield final), ("final", "frames 12"))
        self.assertEqual([e[1] for e in listener.of("retry")], ["deepgram->backup"])

    @inlineCallbacks
    def test_an_open_circuit_sends_new_calls_to_the_next_engine_at_once(self):
        engine = self.chain()
        for n in range(FAILURES_TO_OPEN):
            self.primary.refuse(503)
            stream, listener = self.open(engine, call_id=f"CA{n}")
            moved = listener.next("retry")
            stream.feed(tone_frame())
            yield moved
        self.assertEqual(self.primary.handshakes, FAILURES_TO_OPEN)
        stream, listener = self.open(engine, call_id="CA-next")
        stream.speech_started()
        final = listener.next("final")
        self.speak(stream, 10)
        stream.flush()
        self.assertEqual((yield final), ("final", "frames 10"))
        self.assertEqual(self.primary.handshakes, FAILURES_TO_OPEN)  # never tried while its circuit is open
        self.clock.advance(OPEN_S)
        stream, listener = self.open(engine, call_id="CA-later")
        stream.feed(tone_frame())
        yield self.primary.when(lambda: self.primary.handshakes == FAILURES_TO_OPEN + 1)  # half-open: tried again

    @inlineCallbacks
    def test_the_last_engine_failing_reaches_the_call(self):
        self.primary.refuse(401)
        self.backup.refuse(401)
        stream, listener = self.open(self.chain())
        failed = listener.next("failure")
        stream.speech_started()
        self.speak(stream, 5)
        _, reason, _ = yield failed
        self.assertIn("HTTP 401", reason)
        self.assertEqual([e[1] for e in listener.of("retry")], ["deepgram->backup"])
