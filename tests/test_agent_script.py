from twisted.trial.unittest import SynchronousTestCase

from tests.testing.agents import SentenceSink
from voiced.agent.base import CallInfo, Dtmf, EndCall, Idle, TransferCall, TurnRequest
from voiced.agent.dialog import split_sentences
from voiced.agent.script import ScriptAgent
from voiced.lifecycle import construction_counts

CALL = CallInfo(call_id="CA1", stream_id="MZ1")
HOURS = "We are open Monday to Friday from 8 AM to 6 PM, and Saturday from 9 AM to 1 PM."


def ask(text="", event=None):
    return TurnRequest(1, text, event, ())


class DialogAsserts:
    def reply(self, text, conversation=None):
        conversation = conversation or self.agent.start_conversation(CALL)
        sink = SentenceSink()
        self.assertIsNone(self.successResultOf(conversation.respond(ask(text), sink)))
        return sink

    def assertIntent(self, utterances, first_sentence, hang_up=False):
        for text in utterances:
            sink = self.reply(text)
            self.assertEqual((sink.sentences[:1], sink.hang_up), ([first_sentence], hang_up), text)


class FrontDeskTests(DialogAsserts, SynchronousTestCase):
    def setUp(self):
        self.agent = ScriptAgent()

    def test_greeting(self):
        self.assertEqual(
            self.agent.start_conversation(CALL).greeting(),
            ["Hello, thanks for calling the Riverside Clinic front desk.", "How can I help you?"],
        )

    def test_opening_hours(self):
        self.assertIntent(
            [
                "What time do you open?",
                "What are your opening hours?",
                "when are you open",
                "hours",
                "Are you open on Saturday?",
                "What time do you close today?",
                # Whisper tiny through an 8 kHz phone line:
                "What time do you opened?",
                "what are your opening ours",
                "What time did you open.",
                "Opening hours, please?",
            ],
            HOURS,
        )

    def test_address(self):
        self.assertIntent(
            ["What is your address?", "Where are you located?", "how do I get there", "what's your a dress"],
            "We are at 42 River Road in Riverside, next to the pharmacy.",
        )

    def test_person(self):
        self.assertIntent(
            [
                "I'd like to talk to a person",
                "Can I speak to a human?",
                "operator",
                "Receptionist, please.",
                "Can I talk to someone?",
                "I want to talk to some one about my bill",
            ],
            "Sure, I will connect you to a receptionist.",
        )

    def test_goodbye_hangs_up(self):
        self.assertIntent(
            ["bye", "Goodbye.", "good bye", "by now", "Bye-bye!", "that's all", "thank you bye", "Thank you, bye."],
            "Thank you for calling the Riverside Clinic.",
            hang_up=True,
        )

    def test_a_word_heard_on_one_call_is_not_worked_out_again_on_the_next(self):
        # difflib is a turn's cost: the same answer, from what the first call computed.
        matcher = self.agent._matcher
        first = self.reply("what are your opening ours").sentences
        misses = matcher._similar_words.cache_info().misses
        second = self.reply("what are your opening ours", self.agent.start_conversation(CALL)).sentences
        self.assertEqual((second, matcher._similar_words.cache_info().misses), (first, misses))

    def test_near_misses_do_not_hang_up(self):
        for text in ["I'd like to come by tomorrow", "Can I buy parking?", "goodness", "hourly rates"]:
            self.assertFalse(self.reply(text).hang_up, text)

    def test_fallback_says_back_what_it_heard(self):
        sink = self.reply("  Do you sell   pizza? ")
        self.assertEqual(
            sink.sentences,
            [
                "I heard you say: Do you sell pizza.",
                "I can tell you our opening hours or our address, or connect you to a person.",
            ],
        )
        self.assertFalse(sink.hang_up)

    def test_fallback_does_not_format_caller_braces(self):
        sink = self.reply("my name is {text} {0}")
        self.assertEqual(sink.sentences[0], "I heard you say: my name is {text} {0}.")

    def test_blank_text_reprompts(self):
        for text in ["", "   ", "...", "?"]:
            sink = self.reply(text)
            self.assertEqual(sink.sentences, ["Sorry, I didn't catch that.", "Could you say it again?"], repr(text))
            self.assertFalse(sink.hang_up)

    def test_fixed_phrases(self):
        phrases = self.agent.fixed_phrases()
        self.assertEqual(phrases[:2], self.agent.start_conversation(CALL).greeting())
        for expected in [
            HOURS,
            "Sorry, I didn't catch that.",
            "Thank you for calling the Riverside Clinic.",
            "I can tell you our opening hours or our address, or connect you to a person.",
        ]:
            self.assertIn(expected, phrases)
        self.assertFalse([p for p in phrases if "{" in p or "I heard you say" in p])
        self.assertEqual(len(phrases), len(set(phrases)))

    def test_every_reply_sentence_is_a_fixed_phrase(self):
        fixed = set(self.agent.fixed_phrases())
        for text in ["hours", "address", "operator", "bye", "", "pizza"]:
            spoken = self.reply(text).sentences
            cacheable = [s for s in spoken if not s.startswith("I heard you say")]
            self.assertTrue(set(cacheable) <= fixed, text)

    def test_idle_and_keys(self):
        conversation = self.agent.start_conversation(CALL)
        idle, sink = conversation.respond(ask(event=Idle(1)), SentenceSink()), None
        self.successResultOf(idle)
        sink = SentenceSink()
        conversation.respond(ask(event=Idle(2)), sink)
        self.assertEqual(sink.sentences[0], "Are you still there?")
        sink = SentenceSink()
        conversation.respond(ask(event=Dtmf("0")), sink)
        self.assertEqual(sink.sentences[0], "Sure, I will connect you to a receptionist.")
        sink = SentenceSink()
        conversation.respond(ask(event=Dtmf("7")), sink)  # a key the script does not know
        self.assertEqual(sink.sentences[0], "Sorry, I didn't catch that.")

    def test_failing_sink_fails_the_deferred(self):
        class BrokenSink(SentenceSink):
            def sentence(self, text):
                raise RuntimeError("socket gone")

        d = self.agent.start_conversation(CALL).respond(ask("hours"), BrokenSink())
        self.failureResultOf(d, RuntimeError)


class HebrewFrontDeskTests(DialogAsserts, SynchronousTestCase):
    """VOICED_LANGUAGE=he-IL with no script: the shipped Hebrew front desk."""

    def setUp(self):
        self.agent = ScriptAgent("", "he-IL")

    def test_the_language_picks_the_hebrew_dialog(self):
        self.assertEqual(self.agent.start_conversation(CALL).greeting(),
                         ["שלום, הגעתם לדלפק הקבלה של מרפאת ריברסייד.", "במה אפשר לעזור?"])
        self.assertEqual(ScriptAgent("", "iw-IL").dialog, self.agent.dialog)

    def test_callers_are_understood_with_their_prefixes_and_politeness(self):
        hours = self.agent.dialog.intents[0].reply[0]
        self.assertIntent(["מתי אתם פתוחים?", "אתם פתוחים ביום שישי?", "מה שעות הפתיחה שלכם", "עד מתי אתם פתוחים היום?"],
                          hours)
        self.assertIntent(["מה הכתובת?", "איפה אתם נמצאים", "איך מגיעים אליכם?"], self.agent.dialog.intents[1].reply[0])
        self.assertIntent(["אני רוצה לדבר עם נציג", "אפשר בן אדם?"], "בשמחה, אעביר אתכם לנציג.")
        self.assertIntent(["תודה, להתראות", "יום טוב", "ביי"], "תודה שהתקשרתם למרפאת ריברסייד.", hang_up=True)

    def test_ordinary_words_never_hang_up(self):
        for text in ("היום", "טוב", "יום שני", "בלה בלה", "אני רוצה לקבוע תור"):
            sink = self.reply(text)
            self.assertFalse(sink.hang_up, text)
            self.assertTrue(sink.sentences[0].startswith("שמעתי: "), (text, sink.sentences))


class ScriptFileTests(SynchronousTestCase):
    BASE = "[greeting]\nsay = Hi.\n[reprompt]\nsay = Pardon?\n[fallback]\nsay = Heard {text}. Try again.\n"

    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def agent(self, text, language="en-US"):
        return ScriptAgent(self.write(text), language)

    def answer(self, agent, text):
        sink = SentenceSink()
        agent.start_conversation(CALL).respond(ask(text), sink)
        return sink.sentences, sink.hang_up

    def test_construction_is_counted_once_per_agent(self):
        before = construction_counts().get("agent_script", 0)
        agent = self.agent(self.BASE)
        for _ in range(3):
            self.answer(agent, "anything")
        self.assertEqual(construction_counts()["agent_script"], before + 1)

    def test_comments_continuations_and_repeated_match(self):
        agent = self.agent(
            "# a comment\n; another\n"
            + self.BASE
            + "[intent refill]\nmatch = refill,\n   prescription renewal\nmatch = repeat medication\n"
            + "say = Sure. Which medication\n  do you need?\nhangup = No\n"
        )
        refill = (["Sure.", "Which medication do you need?"], False)
        self.assertEqual(self.answer(agent, "I need a repeat medications"), refill)
        self.assertEqual(self.answer(agent, "prescription renewals"), refill)

    def test_byte_order_mark_is_ignored(self):
        self.assertEqual(self.agent("\ufeff" + self.BASE).start_conversation(CALL).greeting(), ["Hi."])

    def test_equal_scores_go_to_the_intent_written_first(self):
        agent = self.agent(self.BASE + "[intent a]\nmatch = hours\nsay = A.\n[intent b]\nmatch = hours\nsay = B.\n")
        self.assertEqual(self.answer(agent, "hours")[0], ["A."])

    def test_longer_phrase_wins_over_shorter_at_equal_score(self):
        agent = self.agent(
            self.BASE + "[intent a]\nmatch = hours\nsay = A.\n[intent b]\nmatch = talk someone\nsay = B.\n"
        )
        self.assertEqual(self.answer(agent, "I waited for hours, let me talk to someone")[0], ["B."])

    def test_other_language(self):
        agent = self.agent(
            "[greeting]\nsay = שלום.\n[reprompt]\nsay = סליחה?\n[fallback]\nsay = שמעתי: {text}.\n"
            "[intent hours]\nmatch = שעות פתיחה\nsay = אנחנו פתוחים משמונה עד שש.\n",
            language="he-IL",
        )
        self.assertEqual(self.answer(agent, "מה שעות הפתיחה?")[0], ["אנחנו פתוחים משמונה עד שש."])
        self.assertEqual(self.answer(agent, "מה נשמע")[0], ["שמעתי: מה נשמע."])

    def test_sentence_split(self):
        self.assertEqual(
            split_sentences("Hi there. Open 8 a.m. to 6 p.m. daily! Ok?"),
            ["Hi there.", "Open 8 a.m. to 6 p.m. daily!", "Ok?"],
        )

    def assertBadFile(self, text, line, fragment):
        path = self.write(text)
        e = self.assertRaises(ValueError, ScriptAgent, path)
        self.assertIn(f"{path}:{line}:", str(e))
        self.assertIn(fragment, str(e))

    def test_errors_name_file_and_line(self):
        b = self.BASE  # six lines
        self.assertBadFile("say = hi\n", 1, "outside a [section]")
        self.assertBadFile("  indented\n", 1, "continues no value")
        self.assertBadFile(b + "[goodbye]\nsay = x\n", 7, "unknown section")
        self.assertBadFile(b + "[intent]\nsay = x\n", 7, "needs a name")
        self.assertBadFile(b + "[greeting]\nsay = x\n", 7, "repeats line 1")
        self.assertBadFile(b + "[intent x]\nmatch = a\nreply = x\n", 9, "unknown key 'reply'")
        self.assertBadFile(b + "[intent x]\nmatch = a\nsay = x\nsay = y\n", 10, "set twice")
        self.assertBadFile(b + "[intent x]\nmatch a\n", 8, "expected 'key = value'")
        self.assertBadFile(b + "[intent x]\nsay = x\n", 7, "at least one 'match'")
        self.assertBadFile(b + "[intent x]\nmatch = a\n", 7, "needs a non-empty 'say'")
        self.assertBadFile(b + "[intent x]\nmatch = hours, 24/7\nsay = x\n", 8, "has no words")
        self.assertBadFile(b + "[intent x]\nmatch = a\nsay = x\nhangup = maybe\n", 10, "yes or no")
        self.assertBadFile("[greeting]\nsay = Hi.\n[fallback]\nsay = {text}\n", 4, "[reprompt]")
        self.assertBadFile("[greeting]\nsay = Hi.\n[reprompt]\nsay = ?\n[fallback]\nsay = {0}\n", 6, "{text}")
        self.assertBadFile("[greeting]\nsay = Hi.\n[reprompt]\nsay = ?\n[fallback]\nsay = {text\n", 6, "braces")

    def test_unreadable_file(self):
        e = self.assertRaises(ValueError, ScriptAgent, "/nonexistent/x.dialog")
        self.assertIn("/nonexistent/x.dialog", str(e))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xff\xfe[greeting]")
        self.assertIn(path, str(self.assertRaises(ValueError, ScriptAgent, path)))

    def test_transfer_and_key_sections(self):
        agent = self.agent(self.BASE + "[intent person]\nmatch = person\nsay = Connecting.\ntransfer = +15551230000\n"
                           "[dtmf 9]\nsay = Bye.\nhangup = yes\n[idle]\nsay = Hello?\n")
        sink = SentenceSink()
        agent.start_conversation(CALL).respond(ask("a person please"), sink)
        self.assertEqual(sink.actions, [TransferCall("+15551230000")])
        sink = SentenceSink()
        agent.start_conversation(CALL).respond(ask(event=Dtmf("9")), sink)
        self.assertEqual((sink.sentences, sink.actions), (["Bye."], [EndCall()]))
        self.assertIn("Hello?", agent.fixed_phrases())

    def test_bad_transfer_target_and_key_are_refused_with_the_line(self):
        with self.assertRaisesRegex(ValueError, r":10: transfer target"):
            self.agent(self.BASE + "[intent p]\nmatch = person\nsay = Ok.\ntransfer = 555-1234\n")
        with self.assertRaisesRegex(ValueError, r"\[dtmf\] needs one key"):
            self.agent(self.BASE + "[dtmf 12]\nsay = Ok.\n")
