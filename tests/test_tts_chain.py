"""The TTS fallback chain (voiced.tts.chain) and the Speaker's streaming, on a Clock: a sentence
moves to the next engine when its engine fails or its audio is late, the breaker keeps a failing
engine out, and espeak (the Speaker's fallback) is the last resort behind the chain."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from voiced.breaker import FAILURES_TO_OPEN, OPEN_S, CircuitBreaker
from voiced.tts.chain import TTSChain, TTSChainFailed
from voiced.tts.speaker import PhraseCache, Speaker

TIMEOUT_S = 2.0


class Request:
    def __init__(self, text: str, on_audio) -> None:
        self.text = text
        self.on_audio = on_audio
        self.cancelled = False
        self.d: Deferred[None] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[None]) -> None:
        self.cancelled = True

    def chunk(self, audio: bytes) -> None:
        self.on_audio(audio)

    def done(self) -> None:
        self.d.callback(None)

    def fail(self, error: Exception) -> None:
        self.d.errback(error)


class StreamingEngine:
    """An engine the test drives by hand: each sentence is a ``Request`` it answers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[Request] = []

    def synthesize(self, text: str) -> Deferred[bytes]:
        raise AssertionError("a streaming engine is asked to stream")

    def stream(self, text: str, on_audio, call_id: str = "-") -> Deferred[None]:
        request = Request(text, on_audio)
        self.requests.append(request)
        return request.d


class WholeEngine:
    """An engine without streaming (Google's, espeak's): the whole sentence at once."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.texts: list[str] = []

    def synthesize(self, text: str) -> Deferred[bytes]:
        self.texts.append(text)
        if self.fail:
            return Deferred.fromCoroutine(_raise(RuntimeError(f"{self.name} is down")))
        return succeed(f"<{self.name}:{text}>".encode())


async def _raise(error: Exception) -> bytes:
    raise error


class ChainTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.first = StreamingEngine("elevenlabs")
        self.second = WholeEngine("google")
        self.breaker = CircuitBreaker(self.clock, kind="TTS")
        self.chain = TTSChain([("elevenlabs", self.first), ("google", self.second)], self.breaker, self.clock,
                              TIMEOUT_S)
        self.heard: list[bytes] = []
        self.served: list[str] = []

    def speak(self, text: str = "Hello there.") -> Deferred[str]:
        d = self.chain.stream(text, self.heard.append, "CA1")
        d.addCallback(lambda label: (self.served.append(label), label)[1])
        return d

    def test_the_first_engine_streams_each_chunk_as_it_comes(self):
        d = self.speak()
        [request] = self.first.requests
        request.chunk(b"ab")
        self.assertEqual(self.heard, [b"ab"])  # before the sentence is whole
        self.clock.advance(TIMEOUT_S - 0.1)
        request.chunk(b"cd")
        self.clock.advance(TIMEOUT_S - 0.1)  # each chunk rearms the watch
        request.done()
        self.assertEqual(self.successResultOf(d), "elevenlabs")
        self.assertEqual((self.heard, self.second.texts), ([b"ab", b"cd"], []))

    def test_a_failed_request_moves_that_sentence_to_the_next_engine(self):
        d = self.speak()
        self.first.requests[0].fail(RuntimeError("HTTP 500"))
        self.assertEqual(self.successResultOf(d), "google")
        self.assertEqual(self.heard, [b"<google:Hello there.>"])
        # The next sentence tries the first engine again: one failure opens no circuit.
        self.speak("Next.")
        self.assertEqual(len(self.first.requests), 2)

    def test_no_first_audio_in_time_moves_the_sentence_on(self):
        d = self.speak()
        self.clock.advance(TIMEOUT_S - 0.01)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertTrue(self.first.requests[0].cancelled)  # the late request is closed
        self.assertEqual(self.successResultOf(d), "google")

    def test_a_stall_after_some_audio_has_the_next_engine_say_the_sentence_whole(self):
        d = self.speak()
        self.first.requests[0].chunk(b"Hel")
        self.clock.advance(TIMEOUT_S)
        self.assertEqual(self.successResultOf(d), "google")
        self.assertEqual(self.heard, [b"Hel", b"<google:Hello there.>"])

    def test_the_breaker_keeps_a_failing_engine_out_for_every_call_then_tries_it_again(self):
        for n in range(FAILURES_TO_OPEN):
            self.speak(f"Sentence {n}.")
            self.first.requests[-1].fail(RuntimeError("HTTP 503"))
        self.assertTrue(self.breaker.is_open("elevenlabs"))
        d = self.speak("Straight to Google.")
        self.assertEqual(self.successResultOf(d), "google")
        self.assertEqual(len(self.first.requests), FAILURES_TO_OPEN)
        self.clock.advance(OPEN_S)
        self.speak("Half open.")
        self.assertEqual(len(self.first.requests), FAILURES_TO_OPEN + 1)

    def test_every_engine_failing_fails_the_sentence(self):
        self.second.fail = True
        d = self.speak()
        self.first.requests[0].fail(RuntimeError("reset"))
        self.failureResultOf(d, TTSChainFailed)

    def test_a_barge_in_cancels_the_request_under_way(self):
        d = self.speak()
        self.first.requests[0].chunk(b"He")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.first.requests[0].cancelled)
        self.assertEqual(self.second.texts, [])  # a cancel is not a failure: nothing moves on
        self.assertFalse(self.breaker.is_open("elevenlabs"))
        self.clock.advance(TIMEOUT_S * 2)  # no timer left behind
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_synthesize_gives_the_whole_sentence(self):
        d = self.chain.synthesize("Hi.")
        self.clock.advance(TIMEOUT_S)
        self.assertEqual(self.successResultOf(d), b"<google:Hi.>")
        self.assertTrue(self.first.requests[0].cancelled)


class SpeakerStreamingTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.vendor = StreamingEngine("elevenlabs")
        self.local = WholeEngine("local")
        chain = TTSChain([("elevenlabs", self.vendor)], CircuitBreaker(self.clock, kind="TTS"), self.clock, TIMEOUT_S)
        self.served: list[str] = []
        self.fallbacks: list[None] = []
        self.speaker = Speaker(chain, self.local, PhraseCache(), lambda: self.fallbacks.append(None),
                               self.served.append)
        self.heard: list[bytes] = []

    def test_the_vendor_streams_through_the_speaker(self):
        d = self.speaker.speak("Hello.", "CA1", self.heard.append)
        self.vendor.requests[0].chunk(b"x")
        self.assertEqual(self.heard, [b"x"])
        self.vendor.requests[0].done()
        self.assertEqual(self.successResultOf(d), "elevenlabs")
        self.assertEqual(self.served, ["elevenlabs"])

    def test_espeak_is_the_last_resort_behind_the_chain(self):
        d = self.speaker.speak("Hello.", "CA1", self.heard.append)
        self.clock.advance(TIMEOUT_S)
        self.assertEqual(self.successResultOf(d), "local")
        self.assertEqual((self.heard, self.served, len(self.fallbacks)), ([b"<local:Hello.>"], ["local"], 1))

    def test_a_cached_phrase_is_given_whole_and_counts_as_no_engine(self):
        self.speaker.cache.put("One moment.", b"cached-audio")
        d = self.speaker.speak("One moment.", "CA1", self.heard.append)
        self.assertEqual((self.successResultOf(d), self.heard, self.served), ("cache", [b"cached-audio"], []))
        self.assertEqual(self.vendor.requests, [])

    def test_a_cancel_does_not_fall_back(self):
        d = self.speaker.speak("Hello.", "CA1", self.heard.append)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual((self.local.texts, self.fallbacks), ([], []))

    def test_an_engine_without_streaming_speaks_whole(self):
        speaker = Speaker(WholeEngine("google"), self.local, PhraseCache(), served=self.served.append)
        d = speaker.speak("Hi.", "CA1", self.heard.append)
        self.assertEqual((self.successResultOf(d), self.heard), ("google", [b"<google:Hi.>"]))
