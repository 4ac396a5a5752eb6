"""False interruptions (voiced.call.interruption) through a real ``Call``: a reply the
caller stopped with no words, or only "yeah"s, plays again from the sentence they did
not hear whole: the same audio, nothing synthesized again, new marks, its actions kept."""

from __future__ import annotations

import hashlib

from tests.turn_harness import CallOnALine, logged, voice
from voiced.agent.base import Said
from voiced.call.turn import State
from voiced.phrases import english
from voiced.turns.policy import EndOfTurnSettings

ASK_AGAIN = english()["ask_again"]


class InterruptedCall(CallOnALine):
    def interrupted(self, streaming=False, heard=("start", "s0"), text="tell me everything", **kwargs) -> None:
        """The caller asked, the bot answered "First answer. Second answer.", the carrier
        echoed ``heard`` of its marks, and the caller barged in and stopped."""
        self.make_call(streaming=streaming, **kwargs)
        self.play_out()  # the greeting
        self.first_turn = text
        self.caller_turn(text)
        while self.call.state is State.THINKING:  # a reply held until the caller is surely done
            self.silence()
        self.silence(25)  # 0.5 s into the reply: the first sentence (0.4 s) has played
        for suffix in heard:
            self.call.on_mark(f"r2.{suffix}")
        self.synthesized = list(self.tts.spoken)
        self.cleared_at = len(self.transport.sent)
        self.until_cleared(voice())
        self.barged_in_at = self.clock.seconds()
        self.assertEqual(self.call.state, State.LISTENING)
        self.hear(voice(), 10)  # a cough, a "hm": 0.36 s in all
        self.silence(12)  # the caller stops: end of utterance
        self.assertEqual(self.call.state, State.AWAITING_FINAL)

    def sentence_audio(self, prefix: str) -> dict[str, str]:
        """Each sentence's audio as the carrier got it (the media sent before its mark), by
        its digest (a failure prints no kilobytes of mu-law)."""
        audio, pending = {}, b""
        for item in self.transport.sent:
            if item[0] == "media":
                pending += item[1]
            elif item[0] == "mark":
                owner, _, suffix = item[1].partition(".")
                if owner == prefix and suffix[:1] == "s" and suffix[1:].isdigit():
                    audio[suffix] = f"{len(pending)} bytes {hashlib.sha1(pending).hexdigest()[:12]}"
                pending = b""
        return audio

    def after_the_clear(self) -> list[tuple]:
        sent = self.transport.sent[self.cleared_at:]
        return sent[sent.index(("clear",)) + 1:]

    def assertResumed(self, reason: str, prefix: str = "r3", sentences=("s1",)) -> None:
        marks = [item[1] for item in self.after_the_clear() if item[0] == "mark"]
        self.assertEqual(marks, [f"{prefix}.start"] + [f"{prefix}.s{i}" for i in range(len(sentences))]
                         + [f"{prefix}.end"])
        stopped, resumed = self.sentence_audio("r2"), self.sentence_audio(prefix)
        self.assertEqual(list(resumed.values()), [stopped[s] for s in sentences])  # the very same audio
        self.assertEqual(self.tts.spoken, self.synthesized)  # nothing synthesized again
        self.assertEqual(self.barge_ins(), [("interrupt", "speech"), ("resume", reason)])
        self.assertEqual(self.decisions("resume", reason), 1)
        self.assertEqual(self.conversation.asked, [self.first_turn])  # the agent was not asked
        self.assertEqual(self.metrics.unheard_turns_total._value.get(), 0)


class FalseInterruptionTests(InterruptedCall):
    # ---- no words ------------------------------------------------------------------------------
    def test_an_empty_final_resumes_the_reply_from_the_sentence_not_heard_whole(self):
        resumed = logged(self, "BARGE_IN_RESUMED")
        self.interrupted()
        self.call.on_transcript("", True)
        self.assertResumed("no_words")
        self.assertEqual([(e["reply"], e["reason"]) for e in resumed], [("r2", "no_words")])
        self.assertEqual(self.call.state, State.SPEAKING)
        self.play_out()
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(list(self.call.history)[-2:], [Said("bot", "First answer.", interrupted=True),
                                                        Said("bot", "Second answer.")])
        self.assertNotIn(ASK_AGAIN, self.tts.spoken)

    def test_a_reply_stopped_in_its_first_sentence_resumes_from_its_start(self):
        self.interrupted(heard=("start",))
        self.call.on_transcript("", True)
        self.assertResumed("no_words", sentences=("s0", "s1"))

    def test_a_reply_stopped_before_any_echo_resumes_from_its_start(self):
        self.interrupted(heard=())
        self.call.on_transcript("", True)
        self.assertResumed("no_words", sentences=("s0", "s1"))

    def test_a_reply_heard_whole_is_not_resumed(self):
        self.interrupted(heard=("start", "s0", "s1"))  # only its end mark was still to come
        self.call.on_transcript("", True)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.assertIn(ASK_AGAIN, self.tts.spoken)  # an utterance nobody could transcribe

    def test_a_barge_in_that_no_transcript_ever_follows_resumes_the_reply(self):
        # A streaming engine that hears nothing in the sound says nothing at all.
        self.interrupted(streaming=True)
        self.clock.advance(1.4)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.clock.advance(0.6)  # the final's wait (1.5 s from the end of the utterance) ran out
        self.assertResumed("no_words")
        self.assertGreaterEqual(self.clock.seconds() - self.barged_in_at, 1.5)

    def test_a_transcript_still_coming_long_after_the_window_is_the_callers_turn(self):
        # An utterance engine under load: its final is promised. The window waits for it
        # up to twice false_interruption_ms; later, the stopped reply is history.
        self.interrupted()
        self.clock.advance(10)
        self.call.on_transcript("", True)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.assertIn(ASK_AGAIN, self.tts.spoken)

    def test_no_window_never_resumes(self):
        self.interrupted(false_interruption_ms=0)
        self.call.on_transcript("", True)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.assertEqual(self.decisions("resume", "no_words"), 0)
        self.assertIn(ASK_AGAIN, self.tts.spoken)
        self.assertEqual(self.sentence_audio("r3"), {})

    # ---- backchannel words ---------------------------------------------------------------------
    def test_a_yeah_resumes_the_reply_and_the_agent_is_not_asked(self):
        self.interrupted()
        self.call.on_transcript("yeah", True)
        self.assertResumed("backchannel")

    def test_a_yeah_leaves_the_call_speaking_the_resumed_reply(self):
        # Not listening: the caller can barge in over it, and its end is a reply's end.
        self.interrupted()
        self.call.on_transcript("yeah", True)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.play_out()
        self.assertEqual(self.call.state, State.LISTENING)

    def test_the_resumed_reply_after_a_yeah_still_hangs_up(self):
        self.interrupted(text="that's all, bye")
        self.call.on_transcript("yeah", True)
        self.assertResumed("backchannel")
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))

    def test_the_caller_can_barge_in_over_the_reply_resumed_after_a_yeah(self):
        self.interrupted()
        self.call.on_transcript("yeah", True)
        self.cleared_at = len(self.transport.sent)
        self.until_cleared(voice())
        self.assertEqual(self.call.state, State.LISTENING)

    def test_hebrew_backchannel_words_resume_a_hebrew_call(self):
        self.language = "he-IL"
        self.interrupted()
        self.call.on_transcript("\u200fכן כן\u200f", True)
        self.assertResumed("backchannel")

    # ---- real words ----------------------------------------------------------------------------
    def test_a_real_sentence_is_answered_and_nothing_resumes(self):
        self.interrupted()
        self.call.on_transcript("actually I want to change my booking", True)
        self.assertEqual(self.conversation.asked, ["tell me everything", "actually I want to change my booking"])
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
        self.assertEqual(sorted(self.sentence_audio("r3")), ["s0", "s1"])
        self.assertEqual(len(self.tts.spoken), len(self.synthesized) + 2)  # a new answer, synthesized
        self.clock.advance(5)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])  # and the window never fires later

    def test_yeah_then_a_request_is_a_request(self):
        self.interrupted()
        self.call.on_transcript("yeah I need help", True)
        self.assertEqual(self.conversation.asked[-1], "yeah I need help")
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])

    # ---- what the resumed reply carries ----------------------------------------------------------
    def test_the_resumed_reply_keeps_the_stopped_replys_actions(self):
        self.interrupted(text="that's all, bye")  # the agent answers and hangs up
        self.call.on_transcript("", True)
        self.assertResumed("no_words")
        self.assertNotIn(("hangup",), self.transport.sent)
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.assertEqual(self.call.state, State.HANGING_UP)

    def test_a_second_barge_in_over_the_resumed_reply_interrupts_it(self):
        self.interrupted()
        self.call.on_transcript("", True)
        self.cleared_at = len(self.transport.sent)
        self.until_cleared(voice())
        self.silence(12)
        self.call.on_transcript("wait, what about Tuesday", True)
        self.assertEqual(self.conversation.asked[-1], "wait, what about Tuesday")

    # ---- with the reply's audio held until the caller is surely done -------------------------------
    def test_a_resumed_reply_is_not_held(self):
        # It is the reply the caller already waited for, not an answer to their "yeah".
        self.interrupted(end=EndOfTurnSettings(hold_ms=1000))
        self.call.on_transcript("yeah", True)
        self.assertResumed("backchannel")
        self.assertEqual(self.call.state, State.SPEAKING)

    def test_a_real_sentence_after_a_barge_in_is_held_like_any_turn(self):
        self.interrupted(end=EndOfTurnSettings(hold_ms=1000))
        speech_end = self.call.turn.times.speech_end
        sent = len(self.transport.audio())
        self.call.on_transcript("actually I want to change my booking", True)
        self.assertEqual(self.conversation.asked[-1], "actually I want to change my booking")
        self.assertEqual(self.call.state, State.THINKING)
        self.clock.advance(speech_end + 0.999 - self.clock.seconds())
        self.assertEqual(len(self.transport.audio()), sent)
        self.clock.advance(0.001)
        self.assertGreater(len(self.transport.audio()), sent)
        self.assertEqual(self.call.state, State.SPEAKING)
        self.assertEqual(self.barge_ins(), [("interrupt", "speech")])
