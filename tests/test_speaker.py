from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.tts.speaker import PhraseCache, Speaker


class Engine:
    def __init__(self, name, audio=None, error=None):
        self.name, self.audio, self.error, self.calls = name, audio, error, []

    def synthesize(self, text):
        self.calls.append(text)
        return fail(self.error) if self.error else succeed(self.audio)


class SpeakerTests(SynchronousTestCase):
    def test_cache_first_then_primary(self):
        primary = Engine("google", b"\x01")
        speaker = Speaker(primary, Engine("local", b"\x02"), PhraseCache())
        speaker.cache.put("Hello  there.", b"\x09")
        self.assertEqual(self.successResultOf(speaker.synthesize("hello there.")), b"\x09")
        self.assertEqual(self.successResultOf(speaker.synthesize("Other.")), b"\x01")
        self.assertEqual(primary.calls, ["Other."])

    def test_bidi_marks_are_not_sent_to_the_voice(self):
        """A Hebrew reply keeps its right-to-left marks on screen; the engine gets the words."""
        primary = Engine("google", b"\x01")
        speaker = Speaker(primary, None, PhraseCache())
        speaker.cache.put("רק רגע.", b"\x09")
        self.assertEqual(self.successResultOf(speaker.synthesize("רק רגע.\u200f")), b"\x09")
        speaker.synthesize("\u2067שלום.\u2069 \u200eOK.")
        self.assertEqual(primary.calls, ["שלום. OK."])

    def test_failing_primary_is_replaced_by_the_fallback(self):
        fallbacks = []
        speaker = Speaker(Engine("google", error=RuntimeError("503")), Engine("local", b"\x02"), PhraseCache(),
                          on_fallback=lambda: fallbacks.append(1))
        self.assertEqual(self.successResultOf(speaker.synthesize("Hi.")), b"\x02")
        self.assertEqual(fallbacks, [1])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_warm_fills_the_cache_and_reports_time(self):
        primary = Engine("local", b"\x03")
        speaker = Speaker(primary, None, PhraseCache())
        from twisted.internet.defer import Deferred

        elapsed = self.successResultOf(Deferred.fromCoroutine(speaker.warm(["A.", "B.", "A.", " "], Clock())))
        self.assertEqual(elapsed, 0)
        self.assertEqual(primary.calls, ["A.", "B."])
        self.assertEqual(len(speaker.cache), 2)


class WarmUpFallbackTests(SynchronousTestCase):
    """Issue 11, item 6: warm-up is concurrent (bounded), and phrases that fell back to the
    fallback voice go back to the primary engine once it answers again."""

    def test_warm_synthesizes_at_most_four_phrases_at_once(self):
        from twisted.internet.defer import Deferred

        pending = []

        class Slow:
            name = "google"

            def synthesize(self, text):
                d = Deferred()
                pending.append(d)
                return d

        speaker = Speaker(Slow(), Engine("local", b"\x02"), PhraseCache())
        warming = Deferred.fromCoroutine(speaker.warm([f"Phrase {i}." for i in range(10)], Clock(), concurrency=4))
        self.assertEqual(len(pending), 4)
        while pending:
            pending.pop(0).callback(b"\x01")
        self.successResultOf(warming)
        self.assertEqual(len(speaker.cache), 10)
        self.assertEqual(speaker.on_fallback, {})

    def test_fallback_phrases_are_counted_warned_and_recovered(self):
        from twisted.internet.defer import Deferred

        primary = Engine("google", error=RuntimeError("503 unavailable"))
        events = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        speaker = Speaker(primary, Engine("local", b"\x02"), PhraseCache())
        clock = Clock()
        self.successResultOf(Deferred.fromCoroutine(speaker.warm(["A.", "B."], clock)))
        self.assertEqual(list(speaker.on_fallback), ["A.", "B."])
        warned = [e for e in events if "TTS_WARMUP_FALLBACK" in e.get("log_format", "")]
        self.assertEqual(len(warned), 1)
        self.assertEqual(warned[0]["phrases_on_fallback"], 2)

        speaker.recover(clock, 30)
        clock.advance(30)  # still failing: kept on the fallback voice
        self.assertEqual(speaker.cache.get("A."), b"\x02")
        primary.error, primary.audio = None, b"\x01"
        clock.advance(30)
        self.assertEqual((speaker.cache.get("A."), speaker.cache.get("B.")), (b"\x01", b"\x01"))
        self.assertEqual(speaker.on_fallback, {})
        self.assertEqual(clock.getDelayedCalls(), [], "recovery stops once every phrase is back")
