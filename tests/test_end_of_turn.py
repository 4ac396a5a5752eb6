"""One call's end-of-turn decisions (voiced.turns.end_of_turn) with a semantic model whose
verdicts the test fires by hand: what the model hears, when the agent is asked
(``decide``), when the reply's audio may play (``release``), adaptive timing,
cancellation, failure, and the EOT log lines and counts; the reply gate that holds a
reply's audio (voiced.call.release). tests/test_held_reply.py has all of it in a real call."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tests.turn_harness import HandFiredModel, logged
from voiced.audio import FRAME_MS, SAMPLE_RATE, ulaw_to_pcm16
from voiced.call.model import Turn
from voiced.call.release import ReplyGate
from voiced.metrics import TurnTimes
from voiced.turns.end_of_turn import ADAPTIVE_CAP_MS, MODEL_AUDIO_S, PRE_ROLL_FRAMES, EndOfTurn
from voiced.turns.policy import Decision, EndOfTurnSettings, TurnEndPolicy, Verdict

SETTINGS = EndOfTurnSettings(hold_ms=1000, model_threshold=0.5, model_wait_ms=300)
EOU_SILENCE_S = 0.24  # the harness's VAD: how long after the last word the utterance ends


def frame(value: int) -> bytes:
    """A 20 ms mu-law frame told apart from others by its byte."""
    return bytes([value]) * (SAMPLE_RATE * FRAME_MS // 1000)


class EndOfTurnCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(500)
        self.model = HandFiredModel()
        self.counted: list[tuple[str, str]] = []
        self.lines = logged(self, "EOT")
        self.failures = logged(self, "TURN_MODEL_FAILED")
        self.verdicts = 0
        self.eot = self.end_of_turn(self.model)

    def end_of_turn(self, model, **kwargs) -> EndOfTurn:
        eot = EndOfTurn("CA1", self.clock, TurnEndPolicy(SETTINGS), model, "en-US",
                        lambda decision, reason: self.counted.append((decision, reason)), **kwargs)
        eot.on_verdict = self.verdict_arrived
        return eot

    def verdict_arrived(self):
        self.verdicts += 1

    def utterance(self, before: list[bytes], during: list[bytes]) -> None:
        for f in before:
            self.eot.hear(f, in_utterance=False)
        for f in during:
            self.eot.hear(f, in_utterance=True)

    def pause(self) -> None:
        """The VAD ends the utterance: the caller's last word was EOU_SILENCE_S ago."""
        self.speech_end = self.clock.seconds() - EOU_SILENCE_S
        self.eot.candidate(self.speech_end)

    def decide(self, complete=True, final_wait_ms=1500, caller_speaking=False) -> Decision:
        return self.eot.decide(complete, final_wait_ms, caller_speaking)

    def release(self, text="what time do you open") -> Decision:
        return self.eot.release(self.speech_end, text)

    def spoken(self, frames=20) -> None:
        self.utterance([], [frame(2)] * frames)
        self.pause()


class ModelAudioTests(EndOfTurnCase):
    def test_the_model_hears_the_utterance_with_its_pre_roll_as_pcm16_at_8_khz(self):
        before, during = [frame(0x10 + i) for i in range(30)], [frame(0x80 + i) for i in range(20)]
        self.utterance(before, during)
        self.assertEqual(self.model.asked, [])  # nothing is asked before the silence ends the utterance
        self.pause()
        self.assertEqual(len(self.model.asked), 1)
        self.assertEqual(self.model.last.sample_rate, 8000)
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(b"".join(before[-PRE_ROLL_FRAMES:] + during)))

    def test_the_vads_lead_in_is_kept_besides_the_pre_roll(self):
        # Speech starts only after min_speech_ms of voice: those frames came "before" it.
        self.eot = self.end_of_turn(self.model, lead_frames=3)
        before, during = [frame(0x10 + i) for i in range(30)], [frame(0x80 + i) for i in range(20)]
        self.utterance(before, during)
        self.pause()
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(b"".join(before[-PRE_ROLL_FRAMES - 3:] + during)))

    def test_the_model_hears_at_most_the_last_8_s(self):
        during = [frame(i % 200) for i in range(500)]
        self.utterance([frame(0xF0)] * 20, during)
        self.pause()
        limit = MODEL_AUDIO_S * 1000 // FRAME_MS
        self.assertEqual(limit, 400)
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(b"".join(during[-limit:])))

    def test_a_new_turn_keeps_only_the_pre_roll(self):
        self.utterance([frame(1)] * 5, [frame(2)] * 50)
        self.pause()
        self.eot.new_turn()
        self.assertTrue(self.model.last.cancelled)
        self.utterance([], [frame(3)] * 5)
        self.pause()
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(frame(2) * PRE_ROLL_FRAMES + frame(3) * 5))

    def test_a_new_turn_the_caller_is_already_speaking_keeps_their_words(self):
        # A barge-in: the turn starts barge_in_ms into the caller's speech.
        during = [frame(0x80 + i) for i in range(30)]
        self.utterance([frame(1)] * 20, during)
        self.eot.new_turn(speaking_frames=5)
        self.utterance([], [frame(3)] * 5)
        self.pause()
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(b"".join(during[-PRE_ROLL_FRAMES - 5:]) + frame(3) * 5))

    def test_without_a_model_nothing_is_kept_or_asked(self):
        self.eot = self.end_of_turn(None)
        self.utterance([frame(1)] * 20, [frame(2)] * 20)
        self.pause()
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.release(), Decision(Verdict.WAIT, "hold", wait_ms=760))

    def test_nothing_heard_asks_nothing(self):
        self.pause()
        self.assertEqual(self.model.asked, [])
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))


class DecideTests(EndOfTurnCase):
    """When the turn is over and the agent is asked: the verdict is worth a short wait, no more."""

    def test_a_pending_model_is_waited_for_model_wait_ms_from_the_pause(self):
        self.spoken()
        self.assertEqual(self.decide(), Decision(Verdict.WAIT, "model_pending", wait_ms=300))
        self.clock.advance(0.1)
        self.assertEqual(self.decide(), Decision(Verdict.WAIT, "model_pending", wait_ms=200))

    def test_any_verdict_ends_the_turn_a_low_one_too(self):
        # A low verdict holds the reply's audio (release), not the agent's request.
        for probability in (0.05, 0.95):
            self.spoken()
            self.clock.advance(0.1)
            self.model.last.result.callback(probability)
            self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.verdicts, 2)

    def test_a_model_slower_than_model_wait_ms_is_not_waited_for(self):
        self.spoken()
        self.clock.advance(0.3)
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))

    def test_an_endpoint_while_the_caller_speaks_does_not_wait_for_the_model(self):
        self.spoken()
        self.assertEqual(self.decide(caller_speaking=True), Decision(Verdict.FINISH, "final"))

    def test_a_missing_final_is_waited_for_then_given_up(self):
        self.spoken()
        self.model.last.result.callback(0.9)
        self.assertEqual(self.decide(complete=False), Decision(Verdict.WAIT, "awaiting_final", wait_ms=1500))
        self.clock.advance(1.5)
        self.assertEqual(self.decide(complete=False), Decision(Verdict.FINISH, "final_timeout"))

    def test_the_caller_resuming_cancels_the_prediction(self):
        self.spoken()
        first = self.model.last
        self.eot.resumed()
        self.assertTrue(first.cancelled)
        self.assertEqual((self.verdicts, self.failures), (0, []))  # a cancellation is no failure
        # The same utterance goes on: the next pause asks about all of it.
        self.utterance([], [frame(3)] * 10)
        self.pause()
        self.assertEqual(self.model.last.pcm16, ulaw_to_pcm16(frame(2) * 20 + frame(3) * 10))
        self.assertFalse(self.model.last.cancelled)

    def test_close_cancels_the_prediction(self):
        self.spoken()
        self.eot.close()
        self.assertTrue(self.model.last.cancelled)
        self.assertEqual(self.verdicts, 0)

    def test_a_failing_model_is_logged_and_the_turn_decided_without_it(self):
        self.spoken()
        self.assertEqual(self.decide().reason, "model_pending")
        self.model.last.result.errback(RuntimeError("onnxruntime: bad input"))
        self.assertEqual(self.verdicts, 1)
        self.assertEqual([e["error"] for e in self.failures], ["onnxruntime: bad input"])
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.release(), Decision(Verdict.WAIT, "hold", wait_ms=760))


class ReleaseTests(EndOfTurnCase):
    """When the reply's audio may play: silence is counted from the caller's last word."""

    def test_a_complete_verdict_plays_at_once(self):
        self.spoken()
        self.clock.advance(0.05)
        self.model.last.result.callback(0.87)
        self.assertEqual(self.release(), Decision(Verdict.PLAY, "model_complete", "p=0.87"))

    def test_an_incomplete_verdict_waits_until_hold_ms_after_the_last_word(self):
        self.spoken()
        self.clock.advance(0.1)
        self.model.last.result.callback(0.2)
        self.assertEqual(self.release(), Decision(Verdict.WAIT, "model_incomplete", "p=0.20", wait_ms=660))
        self.clock.advance(0.66)
        self.assertEqual(self.release(), Decision(Verdict.PLAY, "model_incomplete", "p=0.20"))

    def test_before_the_verdict_the_hold_applies_and_the_verdict_may_shorten_it(self):
        self.spoken()
        self.assertEqual(self.release(), Decision(Verdict.WAIT, "hold", wait_ms=760))
        self.clock.advance(0.4)
        self.model.last.result.callback(0.95)
        self.assertEqual(self.release(), Decision(Verdict.PLAY, "model_complete", "p=0.95"))

    def test_unfinished_text_waits_whatever_the_model_says(self):
        self.spoken()
        self.model.last.result.callback(0.99)
        self.assertEqual(self.release("I'd like to book the"),
                         Decision(Verdict.WAIT, "text_unfinished", "ends with 'the'", wait_ms=760))

    def test_no_speech_end_counts_no_silence(self):
        self.spoken()
        self.assertEqual(self.eot.release(None, "hello"), Decision(Verdict.WAIT, "hold", wait_ms=1000))

    def test_a_new_turn_forgets_the_verdict(self):
        self.spoken()
        self.model.last.result.callback(0.95)
        self.eot.new_turn()
        self.assertEqual(self.release().reason, "hold")

    def test_a_resumed_utterance_forgets_the_last_pauses_verdict(self):
        self.spoken()
        self.model.last.result.callback(0.9)
        self.eot.resumed()
        self.assertEqual(self.release().reason, "hold")
        self.utterance([], [frame(3)] * 10)
        self.pause()
        self.model.last.result.callback(0.1)
        self.assertEqual(self.release().reason, "model_incomplete")


class AdaptiveTimingTests(EndOfTurnCase):
    def paused_for(self, ms: int) -> None:
        """The caller paused ``ms`` after a word and went on."""
        self.spoken(5)
        self.clock.advance(ms / 1000 - EOU_SILENCE_S)
        self.eot.resumed()

    def test_a_caller_who_paused_long_mid_turn_is_waited_for_a_little_longer_than_that(self):
        self.eot = self.end_of_turn(None, adaptive=True)
        self.paused_for(1200)
        self.spoken()
        self.assertEqual(self.release(), Decision(Verdict.WAIT, "adaptive", wait_ms=1500 - 240))
        self.clock.advance(1.26)
        self.assertEqual(self.release(), Decision(Verdict.PLAY, "adaptive"))

    def test_the_longest_of_the_last_three_pauses_counts_and_no_more_than_the_cap(self):
        self.eot = self.end_of_turn(None, adaptive=True)
        self.paused_for(4000)
        self.spoken()
        self.assertEqual(self.release().wait_ms, ADAPTIVE_CAP_MS - 240)
        self.eot.new_turn()  # the caller's habit outlives the turn
        for _ in range(3):
            self.paused_for(400)
        self.spoken()
        self.assertEqual(self.release(), Decision(Verdict.WAIT, "hold", wait_ms=760))  # 500 ms < hold_ms

    def test_without_adaptive_timing_pauses_change_nothing(self):
        self.eot = self.end_of_turn(None)
        self.paused_for(2000)
        self.spoken()
        self.assertEqual(self.release().reason, "hold")

    def test_a_complete_verdict_still_plays_at_once(self):
        self.eot = self.end_of_turn(self.model, adaptive=True)
        self.paused_for(2000)
        self.spoken()
        self.model.last.result.callback(0.9)
        self.assertEqual(self.release().verdict, Verdict.PLAY)


class DecisionLogTests(EndOfTurnCase):
    def test_each_decision_is_logged_once_and_counted_not_each_recheck(self):
        self.spoken()
        for _ in range(3):
            self.assertEqual(self.decide().reason, "model_pending")
            self.clock.advance(0.05)
        self.model.last.result.callback(0.3)
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))
        for _ in range(3):
            self.assertEqual(self.release().verdict, Verdict.WAIT)
            self.clock.advance(0.2)
        self.clock.advance(0.01)
        self.assertEqual(self.release().verdict, Verdict.PLAY)
        self.assertEqual(self.counted, [("wait", "model_pending"), ("finish", "silence"),
                                        ("wait", "model_incomplete"), ("play", "model_incomplete")])
        self.assertEqual([formatEvent(e) for e in self.lines], [
            "EOT call=CA1 decision=wait reason=model_pending after_ms=0 wait_ms=300",
            "EOT call=CA1 decision=finish reason=silence after_ms=150",
            "EOT call=CA1 decision=wait reason=model_incomplete (p=0.30) silence_ms=390 wait_ms=610",
            "EOT call=CA1 decision=play reason=model_incomplete (p=0.30) silence_ms=1000",
        ])

    def test_a_finish_or_a_play_is_logged_even_when_the_same_reason_came_before(self):
        for _ in range(2):
            self.eot.log(Decision(Verdict.FINISH, "final_timeout"))
            self.eot.log(Decision(Verdict.PLAY, "hold"), 1000, "silence_ms")
        self.assertEqual(self.counted, [("finish", "final_timeout"), ("play", "hold")] * 2)

    def test_a_new_turn_logs_its_waits_afresh(self):
        self.spoken()
        self.decide()
        self.eot.new_turn()
        self.spoken()
        self.decide()
        self.assertEqual(self.counted, [("wait", "model_pending")] * 2)

    def test_each_pause_of_a_turn_is_a_decision_of_its_own(self):
        # The caller paused, went on, paused again: two waits, two counts.
        self.spoken()
        self.decide()
        self.eot.resumed()
        self.spoken()
        self.decide()
        self.assertEqual(self.counted, [("wait", "model_pending")] * 2)


class ReplyGateTests(EndOfTurnCase):
    """The reply's audio waits behind the gate until ``release`` says PLAY."""

    def setUp(self):
        super().setUp()
        self.gate = ReplyGate(self.clock, self.eot)
        self.eot.on_verdict = self.gate.recheck  # as the call wires it while a reply is held

    def held(self, text="what time do you open") -> tuple[Turn, list]:
        self.spoken()
        turn = Turn(times=TurnTimes(speech_end=self.speech_end), text=text)
        gate = self.gate.hold(turn)
        self.assertIsNotNone(gate)
        self.assertTrue(self.gate.holding)
        opened: list = []
        gate.addCallback(opened.append)
        return turn, opened

    def test_a_reply_that_may_play_is_not_held(self):
        self.spoken()
        self.model.last.result.callback(0.9)
        self.assertIsNone(self.gate.hold(Turn(times=TurnTimes(speech_end=self.speech_end), text="hi")))
        self.assertFalse(self.gate.holding)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_held_reply_is_released_exactly_at_hold_ms_of_silence(self):
        _, opened = self.held()
        self.clock.advance(self.speech_end + 0.999 - self.clock.seconds())
        self.assertEqual(opened, [])
        self.clock.advance(0.001)
        self.assertEqual(opened, [None])
        self.assertFalse(self.gate.holding)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_late_complete_verdict_releases_it_at_once(self):
        _, opened = self.held()
        self.clock.advance(0.3)
        self.model.last.result.callback(0.95)
        self.assertEqual(opened, [None])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.counted[-1], ("play", "model_complete"))

    def test_a_late_incomplete_verdict_keeps_it_held_to_the_same_moment(self):
        _, opened = self.held()
        self.clock.advance(0.3)
        self.model.last.result.callback(0.2)
        self.clock.advance(self.speech_end + 0.999 - self.clock.seconds())
        self.assertEqual(opened, [])
        self.clock.advance(0.001)
        self.assertEqual(opened, [None])
        self.assertEqual(self.counted[-2:], [("wait", "model_incomplete"), ("play", "model_incomplete")])

    def test_a_complete_verdict_does_not_release_unfinished_words(self):
        _, opened = self.held("my number is 054 12")
        self.model.last.result.callback(0.99)
        self.assertEqual(opened, [])
        self.clock.advance(1)
        self.assertEqual(opened, [None])

    def test_a_dropped_reply_is_never_released(self):
        _, opened = self.held()
        self.gate.drop()
        self.assertFalse(self.gate.holding)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.gate.recheck()  # a verdict after the drop
        self.clock.advance(5)
        self.assertEqual(opened, [])

    def test_holding_the_next_reply_drops_the_last(self):
        _, first = self.held()
        _, second = self.held()
        self.clock.advance(5)
        self.assertEqual((first, second), ([], [None]))
