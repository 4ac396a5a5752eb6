"""The first utterance's shape on a Clock: a hello and a pause is a person, a monologue
a machine, silence unknown."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.turns.answer_shape import AnswerShape, AnswerShapeSettings, Shape, ShapeVerdict

FRAME_S = 0.02


class Callee:
    """Speaks in segments on a Clock, as the end-of-utterance detector reports them:
    a start at the first voiced frame, an end at the last one."""

    def __init__(self, shape_settings: AnswerShapeSettings | None = None):
        self.clock = Clock()
        self.clock.advance(100)
        self.verdicts: list[ShapeVerdict] = []
        self.shape = AnswerShape(self.clock, self.verdicts.append, shape_settings)

    def wait(self, seconds: float) -> None:
        steps = round(seconds / FRAME_S)
        for _ in range(steps):
            self.clock.advance(FRAME_S)

    def say(self, seconds: float) -> None:
        self.shape.speech_started(self.clock.seconds())
        self.wait(seconds)
        # The detector tells the end once its silence (240 ms) passed.
        end = self.clock.seconds()
        self.wait(0.24)
        self.shape.speech_ended(end)

    @property
    def verdict(self) -> ShapeVerdict | None:
        return self.verdicts[0] if self.verdicts else None


class AnswerShapeTests(SynchronousTestCase):
    def test_hello_then_a_pause_is_a_person(self):
        callee = Callee()
        callee.wait(0.6)
        callee.say(0.5)  # "Hello?"
        self.assertIsNone(callee.verdict)
        callee.wait(0.5)  # 0.74 s since the last word: not yet
        self.assertIsNone(callee.verdict)
        callee.wait(0.1)
        self.assertEqual(callee.verdict.shape, Shape.HUMAN)
        self.assertEqual(callee.verdict.reason, "short_answer")
        self.assertLessEqual(abs(callee.verdict.speech_ms - 500), 20)

    def test_two_words_with_a_short_gap_are_one_answer(self):
        callee = Callee()
        callee.say(0.4)  # "Hello,"
        callee.wait(0.2)
        callee.say(0.6)  # "Dana speaking."
        callee.wait(1.0)
        self.assertEqual(callee.verdict.shape, Shape.HUMAN)
        self.assertLessEqual(abs(callee.verdict.speech_ms - 1440), 40)

    def test_a_monologue_is_a_machine_before_it_ends(self):
        callee = Callee()
        callee.wait(0.3)
        for _ in range(4):  # sentences with breaths between them, none long enough to answer into
            callee.say(1.2)
            callee.wait(0.2)
        self.assertEqual(callee.verdict.shape, Shape.MACHINE)
        self.assertEqual(callee.verdict.reason, "long_greeting")
        self.assertLessEqual(abs(callee.verdict.speech_ms - 3500), 40)

    def test_one_long_unbroken_greeting_is_a_machine_at_the_threshold(self):
        callee = Callee()
        callee.shape.speech_started(callee.clock.seconds())
        callee.wait(3.48)
        self.assertIsNone(callee.verdict)
        callee.wait(0.04)
        self.assertEqual(callee.verdict.shape, Shape.MACHINE)

    def test_silence_is_unknown(self):
        callee = Callee()
        callee.wait(2.48)
        self.assertIsNone(callee.verdict)
        callee.wait(0.04)
        self.assertEqual(callee.verdict, ShapeVerdict(Shape.UNKNOWN, "silence", 0))

    def test_a_longer_answer_then_silence_is_unknown(self):
        callee = Callee()
        callee.say(2.6)  # "Good morning, Riverside Clinic, Dana speaking."
        callee.wait(1.0)
        self.assertIsNone(callee.verdict)  # a pause after it, but too long for a hello
        callee.wait(0.5)
        self.assertEqual(callee.verdict.shape, Shape.UNKNOWN)
        self.assertEqual(callee.verdict.reason, "pause_after_long_answer")

    def test_a_longer_answer_that_goes_on_after_its_pause_is_a_machine(self):
        callee = Callee()
        callee.say(2.6)
        callee.wait(0.8)  # 1.04 s of silence: answerable, but the greeting goes on
        callee.say(1.0)
        self.assertEqual(callee.verdict.shape, Shape.MACHINE)

    def test_never_deciding_is_unknown(self):
        callee = Callee(AnswerShapeSettings(max_analysis_ms=3000))
        callee.say(2.5)
        callee.wait(0.3)
        self.assertEqual(callee.verdict.reason, "too_long")

    def test_cancelled_it_says_nothing(self):
        callee = Callee()
        callee.shape.cancel()
        callee.wait(10)
        self.assertEqual(callee.verdicts, [])

    def test_settings_that_contradict_each_other_are_refused(self):
        with self.assertRaises(ValueError):
            AnswerShapeSettings(human_max_speech_ms=4000, machine_speech_ms=3000)
        with self.assertRaises(ValueError):
            AnswerShapeSettings(pause_ms=2000, undecided_silence_ms=1000)

    @settings(max_examples=60, deadline=None)
    @given(segments=st.lists(st.tuples(st.floats(0.1, 1.5), st.floats(0.0, 3.0)), min_size=0, max_size=8),
           lead=st.floats(0, 3))
    def test_one_verdict_always_and_in_bounded_time(self, segments, lead):
        callee = Callee()
        callee.wait(lead)
        for speech, pause in segments:
            if callee.verdict is not None:
                break
            callee.say(speech)
            callee.wait(pause)
        callee.wait(8)
        self.assertEqual(len(callee.verdicts), 1)
        verdict = callee.verdicts[0]
        if verdict.shape is Shape.HUMAN:
            self.assertLessEqual(verdict.speech_ms, 2000)
        if verdict.shape is Shape.MACHINE:
            self.assertGreaterEqual(verdict.speech_ms, 3500 - 20)
