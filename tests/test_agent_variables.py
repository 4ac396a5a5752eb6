"""An outbound call's variables reach the agent: the webhook contract (CallInfo.as_json),
the LLM's system prompt and greeting as templates, the script dialog's placeholders."""

from __future__ import annotations

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from voiced.agent.base import CallInfo, TurnRequest
from voiced.agent.llm import LLMSettings
from voiced.agent.llm_messages import build_messages
from voiced.agent.script import ScriptAgent
from voiced.agent.variables import fill

DANA = CallInfo("CA1", "MZ1", "+15550111", "+15550100", direction="outbound",
                variables={"name": "Dana", "appointment": "Tuesday 10:00"}, dial_id="d-0123456789abcdef")


class Sink:
    def __init__(self):
        self.sentences: list[str] = []
        self.actions: list = []

    def sentence(self, text):
        self.sentences.append(text)

    def action(self, action):
        self.actions.append(action)


class FillTests(SynchronousTestCase):
    def test_names_are_filled_and_unknown_ones_kept(self):
        self.assertEqual(fill("Hi {name}, about {appointment} with {doctor}.", DANA.variables),
                         "Hi Dana, about Tuesday 10:00 with {doctor}.")

    def test_text_that_is_no_template_is_left_alone(self):
        for text in ("a { brace", "{0} and {name}", "{name.upper}", "{name.__class__}", "{name!r}", "{name:>9}",
                     "{name} }"):
            self.assertEqual(fill(text, {"name": "Dana"}), text)
        self.assertEqual(fill("{{literal}} {name}", {"name": "Dana"}), "{literal} Dana")
        self.assertEqual(fill("{{literal}} {name}", {}), "{{literal}} {name}", "no variables: unchanged")


class ContractTests(SynchronousTestCase):
    def test_the_webhook_contract_carries_direction_and_variables(self):
        body = DANA.as_json()
        self.assertEqual((body["direction"], body["variables"], body["dial_id"]),
                         ("outbound", {"name": "Dana", "appointment": "Tuesday 10:00"}, "d-0123456789abcdef"))
        inbound = CallInfo("CA2", "MZ2").as_json()
        self.assertEqual((inbound["direction"], inbound["variables"], inbound["dial_id"]), ("inbound", {}, ""))


class LLMTests(SynchronousTestCase):
    def test_the_system_prompt_is_a_template_and_the_variables_are_context(self):
        settings = LLMSettings(base_url="http://x", system_prompt="You remind {name} of {appointment} with {doctor}.")
        system = build_messages(settings, DANA, TurnRequest(1, "hello?", None, ()))[0]["content"]
        self.assertTrue(system.startswith("You remind Dana of Tuesday 10:00 with {doctor}."), system)
        self.assertIn("You placed this call", system)
        self.assertIn("Call variables: appointment=Tuesday 10:00, name=Dana.", system)
        inbound = build_messages(settings, CallInfo("CA2", "MZ2"), TurnRequest(1, "hi", None, ()))[0]["content"]
        self.assertTrue(inbound.startswith("You remind {name} of {appointment}"))
        self.assertNotIn("You placed this call", inbound)


class ScriptTests(SynchronousTestCase):
    def agent(self) -> ScriptAgent:
        directory = tempfile.mkdtemp(prefix="voiced-dialog-")
        path = os.path.join(directory, "reminder.dialog")
        with open(path, "w", encoding="utf-8") as f:
            f.write("[greeting]\nsay = Hello {name}, this is the clinic about {appointment}.\n"
                    "[reprompt]\nsay = Sorry {name}, once more?\n"
                    "[fallback]\nsay = I heard {text}, {name}.\n"
                    "[intent when]\nmatch = when is it\nsay = It is {appointment}, {name}. {{braces}} stay.\n")
        return ScriptAgent(path)

    def test_dialog_lines_fill_the_call_variables(self):
        agent = self.agent()
        conversation = agent.start_conversation(DANA)
        self.assertEqual(conversation.greeting(), ["Hello Dana, this is the clinic about Tuesday 10:00."])
        for text, expected in (("when is it", ["It is Tuesday 10:00, Dana.", "{braces} stay."]),
                               ("", ["Sorry Dana, once more?"]),
                               ("{name} bananas", ["I heard {name} bananas, Dana."])):
            sink = Sink()
            self.successResultOf(conversation.respond(TurnRequest(1, text, None, ()), sink))
            self.assertEqual(sink.sentences, expected, text)

    def test_an_inbound_call_hears_the_lines_as_written(self):
        conversation = self.agent().start_conversation(CallInfo("CA2", "MZ2"))
        self.assertEqual(conversation.greeting(), ["Hello {name}, this is the clinic about {appointment}."])
