"""The end-of-turn policy (voiced.turns.policy) and the words it reads (voiced.turns.words):
each rule of its two questions (``decide``: is the turn over, so the agent is asked?
``release``: may the reply's audio play?), their order, and properties over any evidence."""

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.turns.policy import (
    Decision, EndOfTurnSettings, ReleaseEvidence, TurnEndPolicy, TurnEvidence, Verdict,
)
from voiced.turns.words import only_backchannel, unfinished, words

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SETTINGS = EndOfTurnSettings(hold_ms=1000, model_threshold=0.5, model_wait_ms=300)
RLM, LRM, LRI, PDI = "\u200f", "\u200e", "\u2066", "\u2069"


def evidence(**fields) -> TurnEvidence:
    fields.setdefault("waited_ms", 0)
    fields.setdefault("transcript_complete", True)
    fields.setdefault("final_wait_ms", 1500)
    return TurnEvidence(**fields)


class DecideRuleTests(SynchronousTestCase):
    """``decide``: when the turn is over and the agent is asked."""

    def setUp(self):
        self.policy = TurnEndPolicy(SETTINGS)

    def decide(self, **fields) -> Decision:
        return self.policy.decide(evidence(**fields))

    # ---- 1. the model's verdict is worth a short wait ----------------------------------
    def test_a_pending_model_waits_for_what_is_left_of_model_wait_ms(self):
        self.assertEqual(self.decide(model_pending=True), Decision(Verdict.WAIT, "model_pending", wait_ms=300))
        self.assertEqual(self.decide(model_pending=True, waited_ms=120),
                         Decision(Verdict.WAIT, "model_pending", wait_ms=180))

    def test_a_pending_model_comes_first_even_over_a_missing_final(self):
        self.assertEqual(self.decide(model_pending=True, transcript_complete=False, final_wait_ms=100),
                         Decision(Verdict.WAIT, "model_pending", wait_ms=300))

    def test_a_model_that_has_not_answered_in_model_wait_ms_is_not_waited_for(self):
        self.assertEqual(self.decide(model_pending=True, waited_ms=300), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.decide(model_pending=True, waited_ms=300, transcript_complete=False),
                         Decision(Verdict.WAIT, "awaiting_final", wait_ms=1200))

    def test_a_caller_still_speaking_is_not_kept_waiting_for_the_model(self):
        # An endpoint mid-utterance: the engine's final is the turn's end.
        self.assertEqual(self.decide(model_pending=True, caller_speaking=True), Decision(Verdict.FINISH, "final"))

    # ---- 2. the turn is over once the transcript is complete ---------------------------
    def test_a_complete_transcript_after_the_silence_finishes_as_silence(self):
        self.assertEqual(self.decide(), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.decide(waited_ms=99999), Decision(Verdict.FINISH, "silence"))

    def test_an_endpoint_while_the_caller_is_still_in_speech_finishes_as_final(self):
        self.assertEqual(self.decide(caller_speaking=True), Decision(Verdict.FINISH, "final"))

    def test_the_hold_does_not_delay_the_ask(self):
        # However long the reply's audio may be held, the agent is asked at once.
        policy = TurnEndPolicy(EndOfTurnSettings(hold_ms=5000, model_threshold=0.99, model_wait_ms=300))
        self.assertEqual(policy.decide(evidence()), Decision(Verdict.FINISH, "silence"))

    # ---- 3. ... or once the wait for it ran out ------------------------------------------
    def test_a_missing_final_is_waited_for_up_to_final_wait_ms(self):
        self.assertEqual(self.decide(transcript_complete=False),
                         Decision(Verdict.WAIT, "awaiting_final", wait_ms=1500))
        self.assertEqual(self.decide(transcript_complete=False, waited_ms=1499),
                         Decision(Verdict.WAIT, "awaiting_final", wait_ms=1))
        self.assertEqual(self.decide(transcript_complete=False, waited_ms=1500),
                         Decision(Verdict.FINISH, "final_timeout"))

    def test_no_final_wait_at_all_finishes_at_once(self):
        # STT gave up and nothing will transcribe the utterance.
        self.assertEqual(self.decide(transcript_complete=False, final_wait_ms=0),
                         Decision(Verdict.FINISH, "final_timeout"))

    def test_the_caller_still_speaking_without_a_complete_transcript_keeps_listening(self):
        self.assertEqual(self.decide(transcript_complete=False, caller_speaking=True, waited_ms=99999),
                         Decision(Verdict.KEEP_LISTENING, "awaiting_final"))
        self.assertEqual(self.decide(transcript_complete=False, caller_speaking=True, model_pending=True),
                         Decision(Verdict.KEEP_LISTENING, "awaiting_final"))


def release(**fields) -> ReleaseEvidence:
    fields.setdefault("silence_ms", 0)
    return ReleaseEvidence(**fields)


class ReleaseRuleTests(SynchronousTestCase):
    """``release``: when the reply's audio may play."""

    def setUp(self):
        self.policy = TurnEndPolicy(SETTINGS)

    def release(self, **fields) -> Decision:
        return self.policy.release(release(**fields))

    # ---- the model says the turn is complete: at once ------------------------------------
    def test_a_complete_model_verdict_plays_at_once(self):
        self.assertEqual(self.release(text="what time do you open", model_probability=0.93),
                         Decision(Verdict.PLAY, "model_complete", "p=0.93"))

    def test_the_threshold_itself_counts_as_complete(self):
        self.assertEqual(self.release(model_probability=0.5), Decision(Verdict.PLAY, "model_complete", "p=0.50"))
        self.assertEqual(self.release(model_probability=0.49).reason, "model_incomplete")

    def test_a_complete_model_verdict_outweighs_a_caller_known_to_pause_long(self):
        self.assertEqual(self.release(model_probability=0.8, adaptive_hold_ms=2500).verdict, Verdict.PLAY)

    # ---- otherwise the caller's silence must reach hold_ms ---------------------------------
    def test_an_incomplete_model_verdict_waits_for_the_rest_of_hold_ms(self):
        self.assertEqual(self.release(model_probability=0.2, silence_ms=390),
                         Decision(Verdict.WAIT, "model_incomplete", "p=0.20", wait_ms=610))
        self.assertEqual(self.release(model_probability=0.2, silence_ms=1000),
                         Decision(Verdict.PLAY, "model_incomplete", "p=0.20"))

    def test_no_verdict_waits_for_hold_ms(self):
        # No model, or it did not answer in time.
        self.assertEqual(self.release(silence_ms=250), Decision(Verdict.WAIT, "hold", wait_ms=750))
        self.assertEqual(self.release(silence_ms=1001), Decision(Verdict.PLAY, "hold"))

    def test_text_that_ends_on_a_continuation_word_waits(self):
        self.assertEqual(self.release(text="I'd like to book the", silence_ms=400),
                         Decision(Verdict.WAIT, "text_unfinished", "ends with 'the'", wait_ms=600))
        self.assertEqual(self.release(text="I'd like to book the", silence_ms=1000),
                         Decision(Verdict.PLAY, "text_unfinished", "ends with 'the'"))

    def test_half_a_phone_number_waits(self):
        decision = self.release(text="my number is 054 12")
        self.assertEqual((decision.verdict, decision.reason, decision.detail),
                         (Verdict.WAIT, "text_unfinished", "ends in 5 digits"))

    def test_a_complete_model_verdict_does_not_overrule_unfinished_text(self):
        # Either sign of an unfinished turn holds the reply.
        self.assertEqual(self.release(model_probability=0.99, text="my card number is 4580 12"),
                         Decision(Verdict.WAIT, "text_unfinished", "ends in 6 digits", wait_ms=1000))

    def test_unfinished_text_is_the_reason_even_when_the_model_is_low_too(self):
        self.assertEqual(self.release(model_probability=0.3, text="and").reason, "text_unfinished")

    def test_the_language_chooses_the_continuation_words(self):
        text = "אני רוצה לקבוע תור עם"
        self.assertEqual(self.release(text=text, language="he-IL", model_probability=0.9).reason, "text_unfinished")
        self.assertEqual(self.release(text=text, language="en-US", model_probability=0.9).reason, "model_complete")
        self.assertEqual(self.release(text="I want the", language="he-IL").reason, "hold")

    # ---- adaptive timing -------------------------------------------------------------------------
    def test_a_caller_known_to_pause_long_is_waited_for_that_long(self):
        self.assertEqual(self.release(adaptive_hold_ms=1800, silence_ms=500),
                         Decision(Verdict.WAIT, "adaptive", wait_ms=1300))
        self.assertEqual(self.release(adaptive_hold_ms=1800, model_probability=0.2, silence_ms=1800),
                         Decision(Verdict.PLAY, "adaptive"))

    def test_a_pause_shorter_than_hold_ms_changes_nothing(self):
        self.assertEqual(self.release(adaptive_hold_ms=600, silence_ms=500),
                         Decision(Verdict.WAIT, "hold", wait_ms=500))
        self.assertEqual(self.release(adaptive_hold_ms=1000, model_probability=0.1).reason, "model_incomplete")

    def test_unfinished_text_waits_for_the_longer_of_hold_ms_and_the_callers_pauses(self):
        self.assertEqual(self.release(text="and", adaptive_hold_ms=2000, silence_ms=1500),
                         Decision(Verdict.WAIT, "text_unfinished", "ends with 'and'", wait_ms=500))
        self.assertEqual(self.release(text="and", adaptive_hold_ms=400, silence_ms=500).wait_ms, 500)

    # ---- no hold -----------------------------------------------------------------------------------
    def test_zero_hold_plays_every_reply_at_once(self):
        policy = TurnEndPolicy(EndOfTurnSettings(hold_ms=0))
        self.assertEqual(policy.release(release(text="and")), Decision(Verdict.PLAY, "text_unfinished",
                                                                       "ends with 'and'"))
        self.assertEqual(policy.release(release(model_probability=0.1)),
                         Decision(Verdict.PLAY, "model_incomplete", "p=0.10"))
        self.assertEqual(policy.release(release()), Decision(Verdict.PLAY, "hold"))

    def test_the_dataclass_default_is_no_hold(self):
        # The daemon's own default comes from VOICED_TURN_HOLD_MS.
        self.assertEqual(EndOfTurnSettings().hold_ms, 0)
        self.assertEqual(TurnEndPolicy().release(release(text="I want the")).verdict, Verdict.PLAY)


class UnfinishedTextTests(SynchronousTestCase):
    def test_english_continuation_words(self):
        for text, why in [("I'd like to book the", "ends with 'the'"), ("my name is John and", "ends with 'and'"),
                          ("I was wondering if", "ends with 'if'"), ("so um", "ends with 'um'"),
                          ("Can I speak TO", "ends with 'to'"), ("I want  and  ", "ends with 'and'")]:
            self.assertEqual(unfinished(text, "en-US"), why, text)

    def test_english_trailing_off(self):
        for text in ["I was going to...", "I was going to\u2026", "well,", "my number is 054-", "so ...  "]:
            self.assertEqual(unfinished(text, "en-GB"), "trails off", text)

    def test_half_a_phone_number_dictated_in_groups(self):
        self.assertEqual(unfinished("my number is 054 123", "en-US"), "ends in 6 digits")
        self.assertEqual(unfinished("call me on 555-01", "en-US"), "ends in 5 digits")
        self.assertEqual(unfinished("it's 2 12 55", "en-US"), "ends in 5 digits")

    def test_what_must_not_count_as_unfinished(self):
        for text in [
            "I'd like to book the.",  # an engine that punctuates says the sentence ended
            "Is that the one I want to?",
            "Send it to me!",
            "room 101",  # a number, but not one being dictated
            "my number is 054 123 4567",  # all ten digits
            "call 555-0123",  # seven
            "I'll be there at 5",
            "what time do you open",
            "thank you",
            "",
            "   ",
            "...?",  # punctuation and no words: nothing to read
        ]:
            self.assertEqual(unfinished(text, "en-US"), "", text)

    def test_an_unknown_language_has_no_continuation_words_but_still_trails_off_and_dictates(self):
        self.assertEqual(unfinished("je voudrais le", "fr-FR"), "")
        self.assertEqual(unfinished("je voudrais...", "fr-FR"), "trails off")
        self.assertEqual(unfinished("06 12 34", "fr-FR"), "ends in 6 digits")
        self.assertEqual(unfinished("I want the", ""), "")

    def test_hebrew_continuation_words(self):
        for text, last in [("אני רוצה לקבוע תור עם", "עם"), ("המספר שלי הוא", "הוא"), ("רציתי לשאול אם", "אם"),
                           ("זה בשביל", ""), ("אני צריך את", "את")]:
            self.assertEqual(unfinished(text, "he-IL"), f"ends with {last!r}" if last else "", text)
        self.assertEqual(unfinished("אני רוצה לקבוע תור עם", "iw-IL"), "ends with 'עם'")  # the retired code

    def test_hebrew_with_bidi_marks_around_its_words(self):
        self.assertEqual(unfinished(f"{RLM}אני רוצה לקבוע תור עם{RLM}", "he-IL"), "ends with 'עם'")
        self.assertEqual(unfinished(f"{RLM}תודה רבה{RLM}", "he-IL"), "")
        self.assertEqual(unfinished(f"{RLM}המספר שלי הוא 054 123", "he-IL"), "ends in 6 digits")
        self.assertEqual(unfinished(f"{RLM}חדר {LRM}101{LRM}.", "he-IL"), "")

    def test_hebrew_sentence_that_ended_is_not_held(self):
        self.assertEqual(unfinished("זה אני.", "he-IL"), "")  # "it's me." ends in a pronoun, and a full stop

    # Right-to-left text and the numbers in it are written with marks after the last character.
    def test_a_full_stop_before_a_trailing_mark_still_ends_the_sentence(self):
        self.assertEqual(unfinished(f"זה אני.{RLM}", "he-IL"), "")
        self.assertEqual(unfinished(f"That's who I am.{LRM}", "en-US"), "")

    def test_trailing_off_before_a_trailing_mark_is_still_trailing_off(self):
        self.assertEqual(unfinished(f"אני רוצה...{RLM}", "he-IL"), "trails off")

    def test_half_a_number_in_an_isolate_is_still_half_a_number(self):
        self.assertEqual(unfinished(f"המספר שלי הוא {LRI}054 123{PDI}", "he-IL"), "ends in 6 digits")
        self.assertEqual(unfinished(f"המספר שלי הוא 054 123{RLM}", "he-IL"), "ends in 6 digits")


class BackchannelTests(SynchronousTestCase):
    def test_english_backchannels(self):
        for text in ["yeah", "Yeah.", "mm-hm", "uh-huh", "okay okay", "Right, sure.", "got it", "I see", "mhm"]:
            self.assertTrue(only_backchannel(text, "en-US"), text)

    def test_what_is_not_only_backchannel(self):
        for text in ["yeah I need help", "no", "wait", "yeah but", "okay so what about Tuesday", "stop",
                     "", "   ", "..."]:
            self.assertFalse(only_backchannel(text, "en-US"), text)

    def test_hebrew_backchannels_with_and_without_bidi_marks(self):
        for text in ["כן", "כן כן", "אהה", "נכון.", "בסדר", f"{RLM}כן{RLM}", f"{RLM}אוקיי, יופי{RLM}", "סבבה"]:
            self.assertTrue(only_backchannel(text, "he-IL"), text)
        for text in ["כן אני צריך עזרה", "לא", "רגע", f"{RLM}כן אבל{RLM}", f"{RLM}{RLM}"]:
            self.assertFalse(only_backchannel(text, "he-IL"), text)

    def test_the_language_chooses_the_words(self):
        self.assertFalse(only_backchannel("כן", "en-US"))
        self.assertFalse(only_backchannel("yeah", "he-IL"))
        self.assertFalse(only_backchannel("yeah", ""))
        self.assertTrue(only_backchannel("כן", "iw-IL"))

    def test_words_drop_bidi_marks_and_keep_hyphens_and_apostrophes(self):
        self.assertEqual(words(f"{RLM}Mm-hm, I'M{LRM} here_now"), ["mm-hm", "i'm", "here", "now"])


# ---- properties over any evidence -------------------------------------------------------
ms = st.integers(min_value=0, max_value=20000)
probabilities = st.none() | st.floats(0, 1)
policy_settings = st.builds(EndOfTurnSettings, hold_ms=ms, model_threshold=st.floats(0, 1), model_wait_ms=ms)
texts = st.sampled_from(["", "what time do you open", "I want the", "and", "my number is 054 12", "room 101",
                         "well...", "Thanks.", "אני רוצה את", f"{RLM}כן{RLM}"]) | st.text(max_size=30)
languages = st.sampled_from(["en-US", "he-IL", "fr-FR", ""])
any_evidence = st.builds(TurnEvidence, waited_ms=ms, transcript_complete=st.booleans(), final_wait_ms=ms,
                         model_pending=st.booleans(), caller_speaking=st.booleans())
any_release = st.builds(ReleaseEvidence, silence_ms=ms, text=texts, language=languages,
                        model_probability=probabilities, adaptive_hold_ms=ms)
DECIDE_REASONS = {Verdict.FINISH: {"silence", "final", "final_timeout"},
                  Verdict.WAIT: {"model_pending", "awaiting_final"},
                  Verdict.KEEP_LISTENING: {"awaiting_final"}}
RELEASE_REASONS = {"model_complete", "model_incomplete", "hold", "text_unfinished", "adaptive"}


def longest_hold(s: EndOfTurnSettings, e: ReleaseEvidence) -> int:
    return max(s.hold_ms, e.adaptive_hold_ms)


class DecideProperties(SynchronousTestCase):
    @FAST
    @given(policy_settings, any_evidence)
    def test_a_wait_is_always_positive_and_ends_on_one_of_the_bounds(self, s, e):
        decision = TurnEndPolicy(s).decide(e)
        self.assertIn(decision.reason, DECIDE_REASONS[decision.verdict])
        if decision.verdict is Verdict.WAIT:
            self.assertGreater(decision.wait_ms, 0)
            self.assertIn(e.waited_ms + decision.wait_ms, {s.model_wait_ms, e.final_wait_ms})
        else:
            self.assertEqual(decision.wait_ms, 0)

    @FAST
    @given(policy_settings, any_evidence)
    def test_only_a_caller_still_speaking_keeps_the_turn_listening(self, s, e):
        if TurnEndPolicy(s).decide(e).verdict is Verdict.KEEP_LISTENING:
            self.assertTrue(e.caller_speaking)
            self.assertFalse(e.transcript_complete)

    @FAST
    @given(policy_settings, any_evidence)
    def test_a_complete_transcript_finishes_once_the_model_is_not_waited_for(self, s, e):
        waited = s.model_wait_ms + e.waited_ms
        decision = TurnEndPolicy(s).decide(TurnEvidence(waited, True, e.final_wait_ms, e.model_pending,
                                                        e.caller_speaking))
        self.assertEqual(decision, Decision(Verdict.FINISH, "final" if e.caller_speaking else "silence"))

    @FAST
    @given(policy_settings, any_evidence)
    def test_the_hold_never_changes_when_the_agent_is_asked(self, s, e):
        other = EndOfTurnSettings(hold_ms=s.hold_ms + 1000, model_threshold=s.model_threshold,
                                  model_wait_ms=s.model_wait_ms)
        self.assertEqual(TurnEndPolicy(s).decide(e), TurnEndPolicy(other).decide(e))

    @FAST
    @given(policy_settings, any_evidence)
    def test_following_the_waits_ends_the_turn_by_the_latest_bound_in_at_most_two_waits(self, s, e):
        # The call asks again when each wait runs out and nothing else changed (the model
        # never answers): the turn must end, and no later than the bounds allow.
        policy, waited, waits = TurnEndPolicy(s), e.waited_ms, 0
        while True:
            decision = policy.decide(TurnEvidence(waited, e.transcript_complete, e.final_wait_ms, e.model_pending))
            if decision.verdict is not Verdict.WAIT:
                break
            waited += decision.wait_ms
            waits += 1
            self.assertLessEqual(waits, 2)
        self.assertIs(decision.verdict, Verdict.FINISH)
        self.assertLessEqual(waited, max(e.waited_ms, s.model_wait_ms, e.final_wait_ms))
        self.assertEqual(decision.reason, "silence" if e.transcript_complete else "final_timeout")


class ReleaseProperties(SynchronousTestCase):
    @FAST
    @given(policy_settings, any_release)
    def test_a_wait_is_positive_and_ends_when_the_silence_reaches_a_hold(self, s, e):
        decision = TurnEndPolicy(s).release(e)
        self.assertIn(decision.verdict, (Verdict.PLAY, Verdict.WAIT))
        self.assertIn(decision.reason, RELEASE_REASONS)
        if decision.verdict is Verdict.WAIT:
            self.assertGreater(decision.wait_ms, 0)
            self.assertIn(e.silence_ms + decision.wait_ms, {s.hold_ms, e.adaptive_hold_ms})
            self.assertLessEqual(e.silence_ms + decision.wait_ms, longest_hold(s, e))
        else:
            self.assertEqual(decision.wait_ms, 0)

    @FAST
    @given(policy_settings, any_release)
    def test_unfinished_text_never_plays_before_the_longest_hold(self, s, e):
        if unfinished(e.text, e.language):
            decision = TurnEndPolicy(s).release(e)
            self.assertEqual(decision.reason, "text_unfinished")
            self.assertIs(decision.verdict, Verdict.PLAY if e.silence_ms >= longest_hold(s, e) else Verdict.WAIT)

    @FAST
    @given(policy_settings, any_release)
    def test_before_the_hold_only_a_complete_verdict_plays(self, s, e):
        decision = TurnEndPolicy(s).release(e)
        if decision.verdict is Verdict.PLAY and e.silence_ms < s.hold_ms:
            self.assertEqual(decision.reason, "model_complete")
            self.assertGreaterEqual(e.model_probability, s.model_threshold)
            self.assertEqual(unfinished(e.text, e.language), "")

    @FAST
    @given(policy_settings, any_release)
    def test_the_longest_hold_of_silence_always_plays(self, s, e):
        longer = ReleaseEvidence(longest_hold(s, e) + e.silence_ms, e.text, e.language, e.model_probability,
                                 e.adaptive_hold_ms)
        self.assertIs(TurnEndPolicy(s).release(longer).verdict, Verdict.PLAY)

    @FAST
    @given(policy_settings, any_release, ms)
    def test_more_silence_never_takes_a_play_back(self, s, e, more):
        policy = TurnEndPolicy(s)
        later = ReleaseEvidence(e.silence_ms + more, e.text, e.language, e.model_probability, e.adaptive_hold_ms)
        if policy.release(e).verdict is Verdict.PLAY:
            self.assertIs(policy.release(later).verdict, Verdict.PLAY)

    @FAST
    @given(policy_settings, any_release)
    def test_following_the_wait_plays_after_one_wait(self, s, e):
        policy = TurnEndPolicy(s)
        decision = policy.release(e)
        if decision.verdict is Verdict.WAIT:
            after = ReleaseEvidence(e.silence_ms + decision.wait_ms, e.text, e.language, e.model_probability,
                                    e.adaptive_hold_ms)
            self.assertEqual(policy.release(after), Decision(Verdict.PLAY, decision.reason, decision.detail))
