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
