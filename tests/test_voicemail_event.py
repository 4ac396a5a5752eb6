"""The ``voicemail`` event in the agent contract: the script's ``[voicemail]``, the model's
note, the webhook's JSON."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.testing.agents import SentenceSink
from voiced.agent.base import CallInfo, EndCall, Said, TurnRequest, Voicemail
from voiced.agent.dialog import Dialog, parse_dialog
from voiced.agent.llm import LLMSettings
from voiced.agent.llm_messages import VOICEMAIL_NOTE, build_messages
from voiced.agent.script import ScriptAgent

MINIMAL = """
[greeting]
say = Hi.
[reprompt]
say = Sorry?
[fallback]
say = I heard {text}.
"""


def voicemail_turn(history=()):
    return TurnRequest(1, "", Voicemail(), tuple(history))


class ScriptVoicemailTests(SynchronousTestCase):
    def respond(self, agent: ScriptAgent) -> SentenceSink:
        sink = SentenceSink()
        agent.start_conversation(CallInfo("CA1", "MZ1")).respond(voicemail_turn(), sink)
        return sink

    def test_the_front_desk_leaves_its_message_and_hangs_up(self):
        agent = ScriptAgent()
        sink = self.respond(agent)
        self.assertEqual(sink.sentences, list(agent.dialog.voicemail))
        self.assertIn("Riverside Clinic", sink.sentences[0])
        self.assertEqual(sink.actions, [EndCall()])
        for sentence in agent.dialog.voicemail:
            self.assertIn(sentence, agent.fixed_phrases())  # in the phrase cache from the start

    def test_a_dialog_without_the_section_has_a_plain_message(self):
        dialog = parse_dialog(MINIMAL, "minimal.dialog")
        self.assertEqual(dialog.voicemail, Dialog.voicemail)

    def test_a_dialogs_own_message(self):
        dialog = parse_dialog(MINIMAL + "[voicemail]\nsay = Call Dana back. Thanks!\n", "own.dialog")
        self.assertEqual(dialog.voicemail, ("Call Dana back.", "Thanks!"))

    def test_the_section_takes_no_name_and_needs_a_message(self):
        with self.assertRaises(ValueError) as caught:
            parse_dialog(MINIMAL + "[voicemail dana]\nsay = x\n", "bad.dialog")
        self.assertIn("[voicemail] takes no name", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            parse_dialog(MINIMAL + "[voicemail]\nsay =\n", "bad.dialog")
        self.assertIn("non-empty 'say'", str(caught.exception))

    def test_the_hebrew_front_desk_has_one_too(self):
        self.assertNotEqual(ScriptAgent(language="he-IL").dialog.voicemail, Dialog.voicemail)


class ModelAndWebhookTests(SynchronousTestCase):
    def test_the_model_is_told_it_reached_voicemail(self):
        history = [Said("caller", "Hi, you've reached Dana, leave a message.")]
        messages = build_messages(LLMSettings(), CallInfo("CA1", "MZ1", direction="outbound"),
                                  voicemail_turn(history))
        self.assertEqual(messages[-1]["role"], "user")
        self.assertTrue(messages[-1]["content"].endswith(VOICEMAIL_NOTE))
        self.assertIn("voicemail", VOICEMAIL_NOTE)
        self.assertIn("short", VOICEMAIL_NOTE)

    def test_the_webhooks_event(self):
        self.assertEqual(Voicemail().as_json(), {"voicemail": True})
