"""One call's Realtime session (``voiced.agent.realtime_session``) against the loopback
Realtime fake (tests/fakes/realtime_server.py): a real WebSocket on 127.0.0.1, the events
the call's ``ModelPort`` receives recorded."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks  # noqa: F401
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from tests.fakes.realtime_server import RealtimeFake
from voiced.agent.base import CallInfo, EndCall, Said
from voiced.agent.realtime import RealtimeAgent, RealtimeSettings
from voiced.agent.tools import ToolRunner
from voiced.audio import silence_ulaw

KEY = "sk-realtime-test-0123456789abcdef"


class RecordingPort:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.audio: dict[str, int] = {}
        self.transcripts: list[str] = []
        self.actions: list = []
        self.failures: list[tuple[str, bool]] = []
        self.history = [Said("caller", "When do you open?"), Said("bot", "At nine", interrupted=True)]
        self.changed: list[Deferred] = []

    def note(self, *event) -> None:
        self.events.append(event)

    def model_speaking(self, response_id):
        self.note("speaking", response_id)

    def model_audio(self, response_id, item_id, audio):
        self.audio[response_id] = self.audio.get(response_id, 0) + len(audio)

    def model_transcript(self, response_id, text, done):
        if done:
            self.transcripts.append(text)

    def model_action(self, action):
        self.actions.append(action)

    def model_done(self, response_id, status, more_coming):
        self.note("done", response_id, status, more_coming)

    def caller_committed(self, item_id):
        self.note("committed", item_id)

    def caller_transcript(self, item_id, text):
        self.note("caller", text)

    def caller_speech_started(self):
        self.note("speech_started")

    def model_failed(self, reason, fatal):
        self.failures.append((reason, fatal))

    def heard_history(self):
        return list(self.history)

    def dones(self) -> list[tuple]:
        return [e for e in self.events if e[0] == "done"]


class SessionTests(TestCase):
    timeout = 20

    def setUp(self):
        self.logged: list[str] = []

        def observer(event):
            self.logged.append(repr(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def start(self, fake: RealtimeFake, key: str = KEY, tools: ToolRunner | None = None, tools_file: str = "",
              server_turns: bool = False, ga: bool = False, call: CallInfo | None = None,
              instructions: str = "You answer the phone.", greeting: str = "Hi, this is the front desk."):
        fake.listen()
        self.addCleanup(fake.stop)
        self.addCleanup(deferLater, reactor, 0.1, lambda: None)  # the link's close settles
        settings = RealtimeSettings(url=fake.url, model="gpt-realtime", api_key=key, voice="marin",
                                    instructions=instructions, greeting=greeting,
                                    server_turns=server_turns, tools_file=tools_file, ga=ga)
        self.agent = RealtimeAgent(reactor, settings, tools)
        self.session = self.agent.start_conversation(call or CallInfo("CA-s1", "MZ1"))
        self.addCleanup(self.session.close)
        self.port = RecordingPort()
        self.session.open(self.port)
        return self.session

    @inlineCallbacks
    def until(self, fake: RealtimeFake, predicate):
        """Both ends of the socket are in this process: look again after every turn of the reactor."""
        while not predicate():
            yield deferLater(reactor, 0.005, lambda: None)

    @inlineCallbacks
    def test_the_session_is_configured_and_greets(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hi, this is the front desk.")
        self.start(fake)
        yield self.until(fake, lambda: fake.sessions and fake.sessions[0].response is None and self.port.dones())
        [session] = fake.sessions
        self.assertEqual(session.model, "gpt-realtime")
        self.assertEqual(fake.headers_seen[0]["authorization"], f"Bearer {KEY}")
        self.assertEqual(session.session["voice"], "marin")
        self.assertEqual(session.beta_header, "realtime=v1")
        self.assertIsNone(session.session["turn_detection"])
        self.assertEqual(fake.received[:2], ["session.update", "response.create"])
        self.assertEqual(self.port.transcripts, ["Hi, this is the front desk."])
        self.assertGreater(sum(self.port.audio.values()), 0)
        self.assertFalse(any(KEY in line for line in self.logged), "the key is never logged")

    @inlineCallbacks
    def test_an_outbound_calls_variables_fill_the_instructions_and_the_greeting(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hi Dana.")
        call = CallInfo("CA-o1", "MZ1", to_number="+15550002", direction="outbound",
                        variables={"name": "Dana", "day": "Tuesday"})
        self.start(fake, call=call, instructions="Remind {name} of the {day} visit. Keep {unknown} and {{braces}}.",
                   greeting="Hi {name}, this is the clinic.")
        yield self.until(fake, lambda: fake.sessions and fake.sessions[0].asked and self.port.dones())
        [session] = fake.sessions
        instructions = session.session["instructions"]
        self.assertTrue(instructions.startswith("Remind Dana of the Tuesday visit. Keep {unknown} and {braces}."),
                        instructions)
        self.assertIn("You placed this call", instructions)
        self.assertIn("They called +15550002.", instructions)
        self.assertIn("Call variables: day=Tuesday, name=Dana.", instructions)
        self.assertEqual(session.asked[0]["instructions"],
                         "Greet the caller, in these words: Hi Dana, this is the clinic.")

    @inlineCallbacks
    def test_an_inbound_calls_instructions_are_the_prompt_as_written(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hi.")
        self.start(fake, instructions="Answer {name}'s questions.")
        yield self.until(fake, lambda: fake.sessions and fake.sessions[0].session)
        self.assertEqual(fake.sessions[0].session["instructions"], "Answer {name}'s questions.")

    @inlineCallbacks
    def test_the_ga_interface(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hi, this is the front desk.")
        self.start(fake, ga=True)
        yield self.until(fake, lambda: self.port.dones())
        [session] = fake.sessions
        self.assertTrue(session.ga)
        self.assertIsNone(session.beta_header)
        self.assertEqual(session.session["audio"]["output"], {"format": {"type": "audio/pcmu"}, "voice": "marin"})
        # GA's event names (response.output_audio.delta, ...) are read as the beta's.
        self.assertEqual(self.port.transcripts, ["Hi, this is the front desk."])
        self.assertGreater(sum(self.port.audio.values()), 0)

    @inlineCallbacks
    def test_a_turn_is_committed_transcribed_and_answered(self):
        fake = RealtimeFake(api_key=KEY, replies=["We open at nine."], heard=["When do you open?"])
        self.start(fake)
        yield self.until(fake, lambda: len(self.port.dones()) == 1)
        for _ in range(10):
            self.session.append(silence_ulaw(20))
        self.session.answer_turn()
        yield self.until(fake, lambda: len(self.port.dones()) == 2)
        self.assertEqual(fake.sessions[0].appended, 1600)
        self.assertIn(("caller", "When do you open?"), self.port.events)
        self.assertEqual(self.port.transcripts[-1], "We open at nine.")

    @inlineCallbacks
    def test_cancel_and_truncate_reach_the_model(self):
        fake = RealtimeFake(api_key=KEY)
        fake.hold = True
        self.start(fake)
        for delivered in (800, 1600):
            yield self.until(fake, lambda: fake.held)
            fake.release()
            yield self.until(fake, lambda: sum(self.port.audio.values()) == delivered)
        self.session.cancel()
        self.session.truncate(fake.sessions[0].response["item"], 150)
        yield self.until(fake, lambda: fake.truncates)
        self.assertEqual(fake.sessions[0].cancels, 1)
        [truncate] = fake.truncates
        self.assertEqual((truncate["audio_end_ms"], truncate["audio_sent_ms"]), (150, 200))
        self.assertEqual(self.port.dones()[-1][2], "cancelled")

    @inlineCallbacks
    def test_a_refused_key_is_fatal_and_named(self):
        fake = RealtimeFake(api_key="the-right-key")
        self.start(fake)
        yield self.until(fake, lambda: self.port.failures)
        [(reason, fatal)] = self.port.failures
        self.assertTrue(fatal)
        self.assertIn("HTTP 401", reason)
        self.assertTrue(any("REALTIME_LOST" in line and "CA-s1" in line for line in self.logged))
        self.assertFalse(any(KEY in line for line in self.logged))

    @inlineCallbacks
    def test_a_lost_session_comes_back_with_the_call_so_far(self):
        fake = RealtimeFake(api_key=KEY, replies=["Still here."])
        self.start(fake)
        yield self.until(fake, lambda: len(self.port.dones()) == 1)
        fake.fail_next(1011)
        self.session.append(silence_ulaw(20))
        self.session.answer_turn()
        yield self.until(fake, lambda: len(fake.sessions) == 2 and fake.sessions[1].items)
        self.assertEqual(self.port.failures[0][1], False)
        self.assertIn("1011", self.port.failures[0][0])
        items = fake.sessions[1].items
        self.assertEqual([(i["role"], i["content"][0]["text"]) for i in items],
                         [("user", "When do you open?"), ("assistant", "At nine")])
        self.assertEqual(fake.received.count("session.update"), 2)

    @inlineCallbacks
    def test_a_server_error_reconnects(self):
        fake = RealtimeFake(api_key=KEY)
        fake.fail_next("error")
        self.start(fake)
        yield self.until(fake, lambda: len(fake.sessions) == 2)
        self.assertIn("server_error", self.port.failures[0][0])

    @inlineCallbacks
    def test_tools_run_at_the_tools_url_and_the_model_answers_with_the_result(self):
        tools_app = RecordingApp()
        tools_app.answer(Canned.json({"open": "nine to five"}))
        server = start_server(self, tools_app)
        tools_file = os.path.join(tempfile.mkdtemp(), "tools.json")
        with open(tools_file, "w") as f:
            json.dump([{"type": "function", "function": {"name": "hours", "description": "Opening hours",
                                                         "parameters": {"type": "object", "properties": {}}}}], f)
        runner = ToolRunner(make_http_client(self), reactor, server.url("/tools"), "k")
        fake = RealtimeFake(api_key=KEY, replies=[{"tool": "hours"}, {"tool": "end_call"}])
        self.start(fake, tools=runner, tools_file=tools_file)
        yield self.until(fake, lambda: len(self.port.dones()) == 1)
        self.session.append(silence_ulaw(20))
        self.session.answer_turn()
        yield self.until(fake, lambda: len(self.port.dones()) == 3)
        self.assertEqual(tools_app.received[0].json()["tool"], "hours")
        self.assertEqual(self.port.dones()[1][3], True, "the reply goes on after the tool")
        self.assertEqual(self.port.transcripts[-1], 'Tool said {"open":"nine to five"}')
        self.assertIn("hours", [t["name"] for t in fake.sessions[0].session["tools"]])
        # end_call: a call action, no second response.
        self.session.append(silence_ulaw(20))
        self.session.answer_turn()
        yield self.until(fake, lambda: len(self.port.dones()) == 4)
        self.assertEqual(self.port.actions, [EndCall()])
        self.assertEqual(self.port.dones()[-1][3], False)

    @inlineCallbacks
    def test_a_greeting_lost_with_its_session_is_asked_again(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hi, this is the front desk.")
        fake.fail_next(1011)
        self.start(fake)
        yield self.until(fake, lambda: self.port.dones())
        self.assertEqual(len(fake.sessions), 2)
        self.assertEqual(self.port.transcripts, ["Hi, this is the front desk."])
        self.assertEqual([f[1] for f in self.port.failures], [False])
