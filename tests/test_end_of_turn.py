"""One call's end-of-turn decisions (voiced.turns.end_of_turn) with a semantic model whose
verdicts the test fires by hand: what the model hears, how its verdict holds or ends the
turn, cancellation, failure, and the EOT log lines and counts; alone, then in a real call."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.test_barge_in import CallOnALine, logged, voice
from voiced.audio import FRAME_MS, SAMPLE_RATE, silence_ulaw, ulaw_to_pcm16
from voiced.call.turn import State
from voiced.turns.end_of_turn import MODEL_AUDIO_S, PRE_ROLL_FRAMES, EndOfTurn
from voiced.turns.policy import Decision, EndOfTurnSettings, TurnEndPolicy, Verdict

SETTINGS = EndOfTurnSettings(hold_ms=1000, model_threshold=0.5, model_wait_ms=300)
PCM_FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2


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


def frame(value: int) -> bytes:
    """A 20 ms mu-law frame told apart from others by its byte."""
    return bytes([value]) * (SAMPLE_RATE * FRAME_MS // 1000)


class EndOfTurnTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(500)
        self.model = HandFiredModel()
        self.counted: list[tuple[str, str]] = []
        self.lines = logged(self, "EOT")
        self.failures = logged(self, "TURN_MODEL_FAILED")
        self.eot = self.end_of_turn(self.model)
        self.verdicts = 0

    def end_of_turn(self, model) -> EndOfTurn:
        eot = EndOfTurn("CA1", self.clock, TurnEndPolicy(SETTINGS), model, "en-US",
                        lambda decision, reason: self.counted.append((decision, reason)))
        eot.on_verdict = self.verdict_arrived
        return eot

    def verdict_arrived(self):
        self.verdicts += 1

    def utterance(self, before: list[bytes], during: list[bytes]) -> None:
        for f in before:
            self.eot.hear(f, in_utterance=False)
        for f in during:
            self.eot.hear(f, in_utterance=True)

    def decide(self, complete=True, final_wait_ms=1500, text="") -> Decision:
        return self.eot.decide(complete, final_wait_ms, text)

    # ---- what the model hears -------------------------------------------------------------------
    def test_the_model_hears_the_utterance_with_its_pre_roll_as_pcm16_at_8_khz(self):
        before, during = [frame(0x10 + i) for i in range(30)], [frame(0x80 + i) for i in range(20)]
        self.utterance(before, during)
        self.assertEqual(self.model.asked, [])  # nothing is asked before the silence ends the utterance
        self.eot.candidate()
        self.assertEqual(len(self.model.asked), 1)
        self.assertEqual(self.model.last.sample_rate, 8000)
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(b"".join(before[-PRE_ROLL_FRAMES:] + during)))

    def test_the_model_hears_at_most_the_last_8_s(self):
        during = [frame(i % 200) for i in range(500)]
        self.utterance([frame(0xF0)] * 20, during)
        self.eot.candidate()
        limit = MODEL_AUDIO_S * 1000 // FRAME_MS
        self.assertEqual(limit, 400)
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(b"".join(during[-limit:])))

    def test_a_new_turn_keeps_only_the_pre_roll(self):
        self.utterance([frame(1)] * 5, [frame(2)] * 50)
        self.eot.candidate()
        self.eot.new_turn()
        self.assertTrue(self.model.last.cancelled)
        self.utterance([], [frame(3)] * 5)
        self.eot.candidate()
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(frame(2) * PRE_ROLL_FRAMES + frame(3) * 5))

    def test_without_a_model_nothing_is_kept_or_asked(self):
        self.eot = self.end_of_turn(None)
        self.utterance([frame(1)] * 20, [frame(2)] * 20)
        self.eot.candidate()
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))

    def test_nothing_heard_asks_nothing(self):
        self.eot.candidate()
        self.assertEqual(self.model.asked, [])
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))

    # ---- its verdict ---------------------------------------------------------------------------------
    def test_a_verdict_below_the_threshold_holds_the_turn_until_hold_ms(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.assertEqual(self.decide(), Decision(Verdict.WAIT, "model_pending", wait_ms=300))
        self.clock.advance(0.1)
        self.model.last.result.callback(0.2)
        self.assertEqual(self.verdicts, 1)
        self.assertEqual(self.decide(), Decision(Verdict.WAIT, "model_incomplete", "p=0.20", wait_ms=900))
        self.clock.advance(0.9)
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "hold_timeout", "p=0.20"))

    def test_a_verdict_above_the_threshold_finishes_at_once(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.clock.advance(0.05)
        self.model.last.result.callback(0.87)
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "model_complete", "p=0.87"))

    def test_a_model_slower_than_model_wait_ms_is_not_waited_for(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.clock.advance(0.3)
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))

    def test_the_caller_resuming_cancels_the_prediction(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        first = self.model.last
        self.eot.resumed()
        self.assertTrue(first.cancelled)
        self.assertEqual((self.verdicts, self.failures), (0, []))  # a cancellation is no failure
        # The same utterance goes on: the next pause asks about all of it.
        self.utterance([], [frame(3)] * 10)
        self.eot.candidate()
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(frame(2) * 20 + frame(3) * 10))
        self.assertFalse(self.model.last.cancelled)

    def test_a_resumed_utterance_forgets_the_last_pauses_verdict(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.model.last.result.callback(0.1)
        self.eot.resumed()
        self.utterance([], [frame(3)] * 10)
        self.eot.candidate()
        self.model.last.result.callback(0.9)
        self.assertEqual(self.decide().reason, "model_complete")

    def test_close_cancels_the_prediction(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.eot.close()
        self.assertTrue(self.model.last.cancelled)
        self.assertEqual(self.verdicts, 0)

    def test_a_failing_model_is_logged_and_the_turn_decided_without_it(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.assertEqual(self.decide().reason, "model_pending")
        self.model.last.result.errback(RuntimeError("onnxruntime: bad input"))
        self.assertEqual(self.verdicts, 1)
        self.assertEqual([e["error"] for e in self.failures], ["onnxruntime: bad input"])
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))

    # ---- logged and counted ----------------------------------------------------------------------------
    def test_each_decision_is_logged_once_and_counted_not_each_recheck(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        for _ in range(3):
            self.assertEqual(self.decide().reason, "model_pending")
            self.clock.advance(0.05)
        self.model.last.result.callback(0.3)
        for _ in range(3):
            self.assertEqual(self.decide().reason, "model_incomplete")
            self.clock.advance(0.2)
        self.clock.advance(0.5)
        self.assertEqual(self.decide().reason, "hold_timeout")
        expected = [("wait", "model_pending"), ("wait", "model_incomplete"), ("finish", "hold_timeout")]
        self.assertEqual(self.counted, expected)
        self.assertEqual([formatEvent(e) for e in self.lines], [
            "EOT call=CA1 decision=wait reason=model_pending after_ms=0 wait_ms=300",
            "EOT call=CA1 decision=wait reason=model_incomplete (p=0.30) after_ms=150 wait_ms=850",
            "EOT call=CA1 decision=finish reason=hold_timeout (p=0.30) after_ms=1250",
        ])

    def test_a_finish_is_logged_even_when_the_same_reason_finished_before(self):
        self.eot.log(Decision(Verdict.FINISH, "final_timeout"))
        self.eot.log(Decision(Verdict.FINISH, "final_timeout"))
        self.assertEqual(self.counted, [("finish", "final_timeout")] * 2)

    def test_a_new_turn_logs_its_waits_afresh(self):
        self.utterance([], [frame(2)] * 20)
        self.eot.candidate()
        self.decide()
        self.eot.new_turn()
        self.utterance([], [frame(3)] * 20)
        self.eot.candidate()
        self.decide()
        self.assertEqual(self.counted, [("wait", "model_pending")] * 2)


class EndOfTurnLogBugTests(SynchronousTestCase):
    """Bug: ``resumed`` does not forget the last logged decision, so the same wait at the
    next pause of the same turn (the caller paused, went on, paused again) is neither
    logged nor counted: voiced_turn_end_decisions undercounts the decisions of every turn
    with more than one pause."""

    def test_each_pause_is_a_decision_of_its_own(self):
        counted = []
        eot = EndOfTurn("CA1", Clock(), TurnEndPolicy(SETTINGS), HandFiredModel(), "en-US",
                        lambda decision, reason: counted.append((decision, reason)))
        eot.hear(frame(2), in_utterance=True)
        eot.candidate()
        eot.decide(True, 1500, "")
        eot.resumed()
        eot.hear(frame(3), in_utterance=True)
        eot.candidate()
        eot.decide(True, 1500, "")
        self.assertEqual(counted, [("wait", "model_pending")] * 2)


# ---- in a call ---------------------------------------------------------------------------------------
class EndOfTurnInACallTests(CallOnALine):
    def listening(self, model=True, **kwargs) -> None:
        self.model = HandFiredModel()
        self.eot_lines = logged(self, "EOT")
        self.make_call(turn_model=self.model if model else None, policy=TurnEndPolicy(SETTINGS), **kwargs)
        self.play_out()  # the greeting
        self.assertEqual(self.model.asked, [])  # nobody spoke
        self.assertEqual(self.call.state, State.LISTENING)

    def pause(self, voiced=20) -> None:
        """The caller speaks and pauses long enough to end the utterance (240 ms)."""
        self.hear(voice(), voiced)
        self.silence(12)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)

    def counts(self, decision: str, reason: str) -> float:
        return self.metrics.turn_end_decisions_total.labels(decision, reason)._value.get()

    def test_the_model_hears_the_callers_utterance(self):
        self.listening()
        self.pause()
        self.assertEqual(len(self.model.asked), 1)
        prediction = self.model.last
        self.assertEqual(prediction.sample_rate, 8000)
        chunks = [prediction.pcm16[i:i + PCM_FRAME_BYTES] for i in range(0, len(prediction.pcm16), PCM_FRAME_BYTES)]
        quiet, spoken = ulaw_to_pcm16(silence_ulaw(FRAME_MS)), ulaw_to_pcm16(voice())
        lead = next(i for i, c in enumerate(chunks) if c != quiet)
        self.assertTrue(1 <= lead <= PRE_ROLL_FRAMES, lead)  # some of the quiet before the first word
        self.assertEqual(chunks[lead:], [spoken] * 20 + [quiet] * 12)  # every word, and the pause

    def test_a_verdict_below_the_threshold_holds_the_turn_until_hold_ms(self):
        self.listening()
        self.pause()
        candidate_at = self.clock.seconds()
        self.clock.advance(0.1)
        self.call.on_transcript("I'd like to book a table", True)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)  # the model is worth 300 ms
        self.clock.advance(0.05)
        self.model.last.result.callback(0.2)
        self.clock.advance(candidate_at + 0.999 - self.clock.seconds())
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.assertEqual(self.conversation.asked, [])
        self.clock.advance(0.002)
        self.assertEqual(self.conversation.asked, ["I'd like to book a table"])
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual([formatEvent(e).split(" after_ms")[0] for e in self.eot_lines], [
            "EOT call=CA1 decision=wait reason=model_pending",
            "EOT call=CA1 decision=wait reason=model_incomplete (p=0.20)",
            "EOT call=CA1 decision=finish reason=hold_timeout (p=0.20)",
        ])  # the final's recheck (still model_pending) is no line of its own
        self.assertEqual((self.counts("wait", "model_pending"), self.counts("wait", "model_incomplete"),
                          self.counts("finish", "hold_timeout")), (1, 1, 1))

    def test_the_caller_going_on_during_the_hold_is_the_same_turn(self):
        self.listening()
        self.pause()
        self.call.on_transcript("I'd like to book", True)
        self.model.last.result.callback(0.1)
        self.clock.advance(0.3)
        self.pause(15)  # "... a table for two"
        self.assertEqual(len(self.model.asked), 2)
        self.call.on_transcript("a table for two", True)
        self.model.last.result.callback(0.95)
        self.assertEqual(self.conversation.asked, ["I'd like to book a table for two"])

    def test_a_verdict_above_the_threshold_finishes_at_once(self):
        self.listening()
        self.pause()
        self.call.on_transcript("what time do you open", True)
        self.clock.advance(0.08)
        self.model.last.result.callback(0.91)
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.assertEqual(self.counts("finish", "model_complete"), 1)

    def test_a_verdict_before_the_final_waits_for_the_final(self):
        self.listening()
        self.pause()
        self.model.last.result.callback(0.91)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)  # an utterance engine's final is coming
        self.clock.advance(0.5)
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.assertEqual(self.counts("finish", "model_complete"), 1)

    def test_a_model_slower_than_model_wait_ms_is_not_waited_for_and_its_late_verdict_changes_nothing(self):
        self.listening()
        self.pause()
        self.call.on_transcript("what time do you open", True)
        self.clock.advance(0.299)
        self.assertEqual(self.conversation.asked, [])
        self.clock.advance(0.002)
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.assertEqual(self.counts("finish", "silence"), 1)
        lines = len(self.eot_lines)
        self.model.last.result.callback(0.1)
        self.assertEqual(len(self.eot_lines), lines)
        self.assertEqual(self.call.state, State.SPEAKING)

    def test_the_caller_resuming_cancels_the_prediction(self):
        self.listening()
        self.pause()
        first = self.model.last
        self.hear(voice(), 10)  # the caller goes on
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertTrue(first.cancelled)
        self.silence(12)
        self.assertEqual(len(self.model.asked), 2)
        self.assertGreater(len(self.model.last.pcm16), len(first.pcm16))  # all of the utterance, again

    def test_a_failing_model_decides_without_it(self):
        failed = logged(self, "TURN_MODEL_FAILED")
        self.listening()
        self.pause()
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.conversation.asked, [])
        self.model.last.result.errback(RuntimeError("model crashed"))
        self.assertEqual(self.conversation.asked, ["what time do you open"])
        self.assertEqual([e["error"] for e in failed], ["model crashed"])
        self.assertEqual(self.counts("finish", "silence"), 1)

    def test_unfinished_words_hold_a_turn_the_model_has_no_say_in(self):
        self.listening(model=False)
        self.pause()
        self.call.on_transcript("my number is 054 123", True)
        self.clock.advance(0.999)
        self.assertEqual(self.call.state, State.AWAITING_FINAL)
        self.clock.advance(0.002)
        self.assertEqual(self.conversation.asked, ["my number is 054 123"])
        self.assertEqual(self.counts("finish", "hold_timeout"), 1)


class ModelAudioStartBugTests(CallOnALine):
    """Bug: ``EndOfTurn`` keeps PRE_ROLL_FRAMES (200 ms) of audio while the VAD has not yet
    started speech, and ``new_turn`` cuts back to that much. But speech starts only after
    ``min_speech_ms`` of voiced frames (the VAD's run), and a barge-in starts the turn
    ``barge_in_ms`` into the caller's speech: with either longer than the pre-roll, the
    model never hears the first syllables of the utterance it judges (and no pre-roll)."""

    def voice_frames_heard(self, prediction: Prediction) -> int:
        spoken = ulaw_to_pcm16(voice())
        pcm = prediction.pcm16
        return sum(pcm[i:i + PCM_FRAME_BYTES] == spoken for i in range(0, len(pcm), PCM_FRAME_BYTES))

    def test_the_model_hears_all_of_an_utterance_that_a_slower_vad_start_confirmed(self):
        self.model = HandFiredModel()
        self.make_call(turn_model=self.model, min_speech_ms=300)
        self.play_out()
        self.hear(voice(), 30)
        self.silence(12)
        self.assertEqual(self.voice_frames_heard(self.model.last), 30)

    def test_the_model_hears_a_barge_in_from_its_first_word(self):
        self.model = HandFiredModel()
        self.make_call(turn_model=self.model, barge_in_ms=400)
        self.play_out()
        self.hear(voice(), 20)
        self.silence(12)
        self.call.on_transcript("tell me everything", True)
        self.model.last.result.callback(0.9)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.silence(10)
        spoken = round(self.until_cleared(voice()) * 1000) // FRAME_MS  # about 420 ms over the bot
        self.hear(voice(), 10)
        self.silence(12)
        self.assertEqual(self.voice_frames_heard(self.model.last), spoken + 10)
