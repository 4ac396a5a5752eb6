"""The end-of-turn policy (voiced.turns.policy) and the words it reads (voiced.turns.words):
each rule, their order, and properties over any evidence."""

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.turns.policy import Decision, EndOfTurnSettings, TurnEndPolicy, TurnEvidence, Verdict
from voiced.turns.words import only_backchannel, unfinished, words

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SETTINGS = EndOfTurnSettings(hold_ms=1000, model_threshold=0.5, model_wait_ms=300)
RLM, LRM, LRI, PDI = "\u200f", "\u200e", "\u2066", "\u2069"


def evidence(**fields) -> TurnEvidence:
    fields.setdefault("waited_ms", 0)
    fields.setdefault("transcript_complete", True)
    fields.setdefault("final_wait_ms", 1500)
    return TurnEvidence(**fields)


class PolicyRuleTests(SynchronousTestCase):
    def setUp(self):
        self.policy = TurnEndPolicy(SETTINGS)

    def decide(self, **fields) -> Decision:
        return self.policy.decide(evidence(**fields))

    # ---- 1. the model's verdict is worth a short wait ----------------------------------
    def test_a_pending_model_waits_for_what_is_left_of_model_wait_ms(self):
        self.assertEqual(self.decide(model_pending=True), Decision(Verdict.WAIT, "model_pending", wait_ms=300))
        self.assertEqual(self.decide(model_pending=True, waited_ms=120),
                         Decision(Verdict.WAIT, "model_pending", wait_ms=180))

    def test_a_pending_model_comes_first_even_over_unfinished_text_and_a_missing_final(self):
        decision = self.decide(model_pending=True, text="I want to book the", transcript_complete=False)
        self.assertEqual((decision.verdict, decision.reason), (Verdict.WAIT, "model_pending"))

    def test_a_model_that_has_not_answered_in_model_wait_ms_is_not_waited_for(self):
        self.assertEqual(self.decide(model_pending=True, waited_ms=300), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.decide(model_pending=True, waited_ms=300, transcript_complete=False),
                         Decision(Verdict.WAIT, "awaiting_final", wait_ms=1200))

    # ---- 2. a turn that reads unfinished is held up to hold_ms ------------------------
    def test_an_incomplete_model_verdict_holds_the_turn_for_the_rest_of_hold_ms(self):
        self.assertEqual(self.decide(model_probability=0.2, waited_ms=150),
                         Decision(Verdict.WAIT, "model_incomplete", "p=0.20", wait_ms=850))

    def test_the_threshold_itself_counts_as_complete(self):
        self.assertEqual(self.decide(model_probability=0.5, waited_ms=150),
                         Decision(Verdict.FINISH, "model_complete", "p=0.50"))
        self.assertEqual(self.decide(model_probability=0.49).reason, "model_incomplete")

    def test_text_that_ends_on_a_continuation_word_holds_the_turn(self):
        self.assertEqual(self.decide(text="I'd like to book the", waited_ms=400),
                         Decision(Verdict.WAIT, "text_unfinished", "ends with 'the'", wait_ms=600))

    def test_half_a_phone_number_holds_the_turn(self):
        decision = self.decide(text="my number is 054 12")
        self.assertEqual((decision.verdict, decision.reason, decision.detail),
                         (Verdict.WAIT, "text_unfinished", "ends in 5 digits"))

    def test_a_held_turn_with_a_complete_transcript_finishes_as_hold_timeout(self):
        self.assertEqual(self.decide(text="and", waited_ms=1000),
                         Decision(Verdict.FINISH, "hold_timeout", "ends with 'and'"))
        self.assertEqual(self.decide(model_probability=0.1, waited_ms=5000),
                         Decision(Verdict.FINISH, "hold_timeout", "p=0.10"))

    def test_a_held_turn_whose_transcript_is_not_complete_waits_for_it_after_the_hold(self):
        # The hold is over but the final that covers the last word is not in: its own bound.
        self.assertEqual(self.decide(text="and", waited_ms=1000, transcript_complete=False),
                         Decision(Verdict.WAIT, "awaiting_final", wait_ms=500))
        self.assertEqual(self.decide(text="and", waited_ms=1500, transcript_complete=False),
                         Decision(Verdict.FINISH, "final_timeout"))

    def test_the_models_low_probability_is_the_reason_even_when_the_text_is_unfinished_too(self):
        self.assertEqual(self.decide(model_probability=0.3, text="and").reason, "model_incomplete")

    def test_a_complete_model_verdict_does_not_overrule_unfinished_text(self):
        # Either sign of an unfinished turn holds it.
        self.assertEqual(self.decide(model_probability=0.9, text="my card number is 4580 12").reason,
                         "text_unfinished")

    def test_a_held_turn_keeps_listening_while_the_caller_still_speaks(self):
        self.assertEqual(self.decide(text="I want the", caller_speaking=True),
                         Decision(Verdict.KEEP_LISTENING, "text_unfinished", "ends with 'the'"))
        # Even past the hold: a voice still going is no turn to end.
        self.assertEqual(self.decide(model_probability=0.1, caller_speaking=True, waited_ms=9000).verdict,
                         Verdict.KEEP_LISTENING)

    # ---- 3. the turn is over once the transcript is complete ---------------------------
    def test_a_complete_transcript_after_the_silence_finishes_as_silence(self):
        self.assertEqual(self.decide(text="what time do you open"), Decision(Verdict.FINISH, "silence"))
        self.assertEqual(self.decide(text=""), Decision(Verdict.FINISH, "silence"))

    def test_an_endpoint_while_the_caller_is_still_in_speech_finishes_as_final(self):
        self.assertEqual(self.decide(text="what time do you open", caller_speaking=True),
                         Decision(Verdict.FINISH, "final"))

    def test_a_complete_model_verdict_finishes_as_model_complete(self):
        self.assertEqual(self.decide(text="what time do you open", model_probability=0.93),
                         Decision(Verdict.FINISH, "model_complete", "p=0.93"))

    # ---- 4. ... or the wait for it ran out ----------------------------------------------
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

    def test_the_language_chooses_the_continuation_words(self):
        self.assertEqual(self.decide(text="אני רוצה לקבוע תור עם", language="he-IL").reason, "text_unfinished")
        self.assertEqual(self.decide(text="אני רוצה לקבוע תור עם", language="en-US").reason, "silence")
        self.assertEqual(self.decide(text="I want the", language="he-IL").reason, "silence")

    def test_zero_hold_finishes_a_held_turn_at_once(self):
        policy = TurnEndPolicy(EndOfTurnSettings(hold_ms=0))
        self.assertEqual(policy.decide(evidence(text="and")), Decision(Verdict.FINISH, "hold_timeout",
                                                                       "ends with 'and'"))


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


class BidiMarkedEndingsBugTests(SynchronousTestCase):
    """Bug: ``unfinished`` reads the last character before dropping bidi marks, so a
    Hebrew transcript with a mark after its punctuation or its digits (how right-to-left
    text and embedded numbers are written) is misread: a sentence that ended is held, a
    trailing-off one and half a number are not."""

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
policy_settings = st.builds(EndOfTurnSettings, hold_ms=ms, model_threshold=st.floats(0, 1),
                            model_wait_ms=ms)
texts = st.sampled_from(["", "what time do you open", "I want the", "and", "my number is 054 12", "room 101",
                         "well...", "Thanks.", "אני רוצה את", f"{RLM}כן{RLM}"]) | st.text(max_size=30)
any_evidence = st.builds(
    TurnEvidence, waited_ms=ms, transcript_complete=st.booleans(), final_wait_ms=ms, text=texts,
    language=st.sampled_from(["en-US", "he-IL", "fr-FR", ""]),
    model_probability=st.none() | st.floats(0, 1), model_pending=st.booleans(), caller_speaking=st.booleans())
REASONS = {Verdict.FINISH: {"silence", "final", "model_complete", "hold_timeout", "final_timeout"},
           Verdict.WAIT: {"model_pending", "model_incomplete", "text_unfinished", "awaiting_final"},
           Verdict.KEEP_LISTENING: {"model_incomplete", "text_unfinished", "awaiting_final"}}


class PolicyProperties(SynchronousTestCase):
    @FAST
    @given(policy_settings, any_evidence)
    def test_a_wait_is_always_positive_and_ends_on_one_of_the_bounds(self, s, e):
        decision = TurnEndPolicy(s).decide(e)
        self.assertIn(decision.reason, REASONS[decision.verdict])
        if decision.verdict is Verdict.WAIT:
            self.assertGreater(decision.wait_ms, 0)
            self.assertIn(e.waited_ms + decision.wait_ms, {s.model_wait_ms, s.hold_ms, e.final_wait_ms})
        else:
            self.assertEqual(decision.wait_ms, 0)

    @FAST
    @given(policy_settings, any_evidence)
    def test_only_a_caller_still_speaking_keeps_the_turn_listening(self, s, e):
        if TurnEndPolicy(s).decide(e).verdict is Verdict.KEEP_LISTENING:
            self.assertTrue(e.caller_speaking)

    @FAST
    @given(policy_settings, any_evidence)
    def test_a_complete_transcript_finishes_once_every_bound_has_passed(self, s, e):
        waited = max(s.hold_ms, s.model_wait_ms, e.final_wait_ms) + 1 + e.waited_ms
        decision = TurnEndPolicy(s).decide(TurnEvidence(
            waited, True, e.final_wait_ms, e.text, e.language, e.model_probability, e.model_pending, False))
        self.assertIs(decision.verdict, Verdict.FINISH)
        self.assertNotEqual(decision.reason, "final_timeout")

    @FAST
    @given(policy_settings, any_evidence)
    def test_following_the_waits_ends_the_turn_by_the_latest_bound_in_at_most_three_waits(self, s, e):
        # The call asks again when each wait runs out and nothing else changed (the model
        # never answers): the turn must end, and no later than the bounds allow.
        policy, waited, waits = TurnEndPolicy(s), e.waited_ms, 0
        while True:
            decision = policy.decide(TurnEvidence(waited, e.transcript_complete, e.final_wait_ms, e.text,
                                                  e.language, e.model_probability, e.model_pending, False))
            if decision.verdict is not Verdict.WAIT:
                break
            waited += decision.wait_ms
            waits += 1
            self.assertLessEqual(waits, 3)
        self.assertIs(decision.verdict, Verdict.FINISH)
        self.assertLessEqual(waited, max(e.waited_ms, s.hold_ms, s.model_wait_ms, e.final_wait_ms))
        if not e.transcript_complete:
            self.assertEqual(decision.reason, "final_timeout")
