"""The openai agent against a real loopback server speaking the streaming format."""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.internet.task import Cooperator
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from treq.client import HTTPClient

from tests.fakes.http_apps import Canned, make_http_client
from tests.fakes.openai_server import FakeOpenAIServer
from tests.testing.agents import CALL, AgentTestCase, RecordingSink, turn
from tests.testing.network import MemoryNetwork
from voiced.agent.base import AgentError, Dtmf, EndCall, Idle, Said, TransferCall
from voiced.agent.llm import LLMSettings, OpenAIAgent
from voiced.agent.factory import build_agent
from voiced.agent.llm_messages import build_messages
from voiced.config import Settings
from voiced.phrases import english

GOODBYE_PHRASE = english()["goodbye"]
from voiced.agent.tools import ToolRunner
from voiced.signing import SIGNATURE_HEADER, verify


SECRET = "tool-secret"
KEY = "sk-test-very-secret-key-0123456789"


class StreamingTests(AgentTestCase):
    async def test_word_deltas_reach_the_sink_in_order(self) -> None:
        server = self.serve({"default": {"say": ["Hello there, friend.", "How are you?"]}})
        sink = await self.respond(self.agent(server))
        self.assertEqual(sink.texts, ["Hello", " there,", " friend.", " How", " are", " you?"])
        self.assertEqual(sink.actions, [])

    async def test_awkward_but_valid_streams(self) -> None:
        # Every event written in pieces (mid-line, mid-UTF-8), keep-alive comments,
        # a choices: [] chunk, no [DONE] after the finish reason.
        server = self.serve({"default": {"say": ["Caf\u00e9 cr\u00e8me \u2014 s\u00fcr."], "split_writes": True,
                                         "keepalive": True, "empty_choices": True, "done": False}})
        sink = await self.respond(self.agent(server))
        self.assertEqual(sink.said, "Caf\u00e9 cr\u00e8me \u2014 s\u00fcr.")

    async def test_request_body(self) -> None:
        server = self.serve({})
        await self.respond(self.agent(server, model="my-model", temperature=0.3, max_tokens=120))
        body = server.requests[0]["body"]
        self.assertEqual(body["model"], "my-model")
        self.assertIs(body["stream"], True)
        self.assertEqual(body["stream_options"], {"include_usage": True})
        self.assertEqual((body["temperature"], body["max_tokens"]), (0.3, 120))
        self.assertEqual([t["function"]["name"] for t in body["tools"]], ["end_call"])  # no transfer targets
        self.assertEqual(server.requests[0]["path"], "/v1/chat/completions")

    async def test_optional_settings_left_out(self) -> None:
        server = self.serve({})
        await self.respond(self.agent(server))
        self.assertNotIn("temperature", server.requests[0]["body"])
        self.assertNotIn("max_tokens", server.requests[0]["body"])

    async def test_bearer_header_with_a_key(self) -> None:
        server = self.serve({})
        await self.respond(self.agent(server, api_key=KEY))
        self.assertEqual(server.requests[0]["authorization"], f"Bearer {KEY}")

    async def test_no_authorization_header_without_a_key(self) -> None:
        server = self.serve({})
        await self.respond(self.agent(server))
        self.assertIsNone(server.requests[0]["authorization"])


class HistoryTests(AgentTestCase):
    async def test_history_reaches_the_model(self) -> None:
        server = self.serve({})
        history = (Said("caller", "Hi."), Said("bot", "Hello! How can I help?"),
                   Said("caller", "When do you open?"), Said("bot", "We open at eight", interrupted=True))
        await self.respond(self.agent(server), turn("Sorry, on Sunday?", history, number=3))
        messages = server.requests[0]["body"]["messages"]
        self.assertEqual(messages[0]["role"], "system")
        self.assertEqual(messages[1:], [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "When do you open?"},
            {"role": "assistant", "content": "We open at eight \u2014"},
            {"role": "user", "content": "Sorry, on Sunday?"},
        ])

    def test_system_message_holds_prompt_context_and_the_cut_off_convention(self) -> None:
        system = build_messages(LLMSettings(system_prompt="Be brief."), CALL, turn())[0]["content"]
        self.assertTrue(system.startswith("Be brief."))
        for part in ("+15550001111", "+15550002222", "customer=42", "interrupted"):
            self.assertIn(part, system)

    def test_a_hebrew_line_gets_a_prompt_and_phrases_in_hebrew(self) -> None:
        """Issue 18: the default prompt names the language to answer in; the greeting and the
        wordless hang-up's goodbye come from the Hebrew catalog."""
        settings = Settings.load({}, {"VOICED_LANGUAGE": "he-IL", "VOICED_AGENT": "openai"})
        phrases = settings.phrase_catalog()
        agent = build_agent(settings, phrases, None, reactor)
        system = build_messages(agent.settings, CALL, turn())[0]["content"]
        self.assertIn("The caller speaks Hebrew (he-IL): always answer in Hebrew.", system)
        self.assertEqual(agent.start_conversation(CALL).greeting(), [phrases["greeting"]])
        self.assertEqual((agent.settings.goodbye_phrase, agent.settings.transfer_phrase),
                         (phrases["goodbye"], phrases["transfer"]))
        own = Settings.load({}, {"VOICED_LANGUAGE": "he-IL", "VOICED_AGENT": "openai", "VOICED_SYSTEM_PROMPT": "X."})
        self.assertEqual(build_agent(own, phrases, None, reactor).settings.system_prompt, "X.")  # yours, as it is

    def test_unheard_reply_left_out_and_same_roles_merged(self) -> None:
        history = (Said("caller", "Hello?"), Said("bot", "", interrupted=True), Said("caller", "Anyone there?"))
        messages = build_messages(LLMSettings(), CALL, turn("Hello!?", history))
        self.assertEqual(messages[1:], [{"role": "user", "content": "Hello?\nAnyone there?\nHello!?"}])

    def test_events_become_bracketed_notes(self) -> None:
        def last(event: Any) -> str:
            return build_messages(LLMSettings(), CALL, turn("", (Said("bot", "Hi."),), event))[-1]["content"]

        self.assertEqual(last(Dtmf("5")), "[The caller pressed 5]")
        self.assertEqual(last(Idle(1)), "[The caller has been silent for a while]")
        self.assertEqual(last(Idle(2)), "[The caller has been silent for a while (2nd time)]")

    def test_greeting_and_fixed_phrases(self) -> None:
        agent = OpenAIAgent(None, reactor, LLMSettings(greeting=["Hi, this is Ada.", "How can I help?"]))  # type: ignore[arg-type]
        self.assertEqual(agent.start_conversation(CALL).greeting(), ["Hi, this is Ada.", "How can I help?"])
        self.assertEqual(agent.fixed_phrases()[:2], ["Hi, this is Ada.", "How can I help?"])
        self.assertIn(GOODBYE_PHRASE, agent.fixed_phrases())
        self.assertEqual(agent.name, "openai")


class ToolTests(AgentTestCase):
    async def test_tool_call_runs_and_its_result_is_spoken(self) -> None:
        server = self.serve({"replies": [
            {"say": ["Let me check."], "tool_calls": [{"name": "book", "arguments": {"day": "monday"}}],
             "argument_pieces": 4},
            {"say": ["You are booked for Monday at nine."]},
        ]})
        app, url = self.tools_server(Canned.json({"booked": True, "time": "9:00"}))
        runner = ToolRunner(self.http_for_tools(), reactor, url, SECRET, timeout_s=2)
        sink = await self.respond(self.agent(server, runner, tools_file=self.tools_file("book")))
        self.assertEqual(sink.said, "Let me check.You are booked for Monday at nine.")
        received = app.received[0]
        self.assertTrue(verify(SECRET, received.body, received.headers[SIGNATURE_HEADER.lower()]))
        self.assertEqual(received.json(), {"call": CALL.as_json(), "tool": "book", "arguments": {"day": "monday"}})
        second = server.requests[1]["body"]["messages"]
        self.assertEqual(second[-2]["role"], "assistant")
        self.assertEqual(second[-2]["content"], "Let me check.")
        self.assertEqual(second[-2]["tool_calls"], [{"id": "call_fake0", "type": "function", "function": {
            "name": "book", "arguments": '{"day": "monday"}'}}])
        self.assertEqual(second[-1]["role"], "tool")
        self.assertEqual(second[-1]["tool_call_id"], "call_fake0")
        self.assertEqual(json.loads(second[-1]["content"]), {"booked": True, "time": "9:00"})
        self.assertIn("book", [t["function"]["name"] for t in server.requests[0]["body"]["tools"]])

    def http_for_tools(self) -> Any:
        return make_http_client(self)

    async def test_several_tools_in_one_reply(self) -> None:
        server = self.serve({"replies": [
            {"tool_calls": [{"name": "book", "arguments": {"day": "mon"}, "id": "a"},
                            {"name": "book", "arguments": {"day": "tue"}, "id": "b"}]},
            {"say": ["Both booked."]},
        ]})
        app, url = self.tools_server(Canned.json({"n": 1}), Canned.json({"n": 2}))
        runner = ToolRunner(self.http_for_tools(), reactor, url, SECRET)
        sink = await self.respond(self.agent(server, runner, tools_file=self.tools_file("book")))
        self.assertEqual(sink.said, "Both booked.")
        self.assertEqual([r.json()["arguments"] for r in app.received], [{"day": "mon"}, {"day": "tue"}])
        tool_messages = [m for m in server.requests[1]["body"]["messages"] if m["role"] == "tool"]
        self.assertEqual([(m["tool_call_id"], json.loads(m["content"])) for m in tool_messages],
                         [("a", {"n": 1}), ("b", {"n": 2})])

    async def test_failed_tool_is_reported_to_the_model(self) -> None:
        server = self.serve({"replies": [{"tool_calls": [{"name": "book", "arguments": {}}]},
                                         {"say": ["Sorry, booking is down."]}]})
        _, url = self.tools_server(Canned(status=500))
        runner = ToolRunner(self.http_for_tools(), reactor, url, SECRET)
        sink = await self.respond(self.agent(server, runner, tools_file=self.tools_file("book")))
        self.assertEqual(sink.said, "Sorry, booking is down.")
        tool_message = server.requests[1]["body"]["messages"][-1]
        self.assertEqual(json.loads(tool_message["content"]), {"error": "tool failed: HTTP 500"})

    async def test_invalid_arguments_go_back_to_the_model(self) -> None:
        server = self.serve({"replies": [{"tool_calls": [{"name": "book", "arguments": '{"day": mon'}]},
                                         {"say": ["Which day?"]}]})
        app, url = self.tools_server()
        runner = ToolRunner(self.http_for_tools(), reactor, url, SECRET)
        sink = await self.respond(self.agent(server, runner, tools_file=self.tools_file("book")))
        self.assertEqual(sink.said, "Which day?")
        self.assertEqual(app.received, [])
        self.assertIn("not valid JSON", server.requests[1]["body"]["messages"][-1]["content"])

    async def test_unknown_tool_goes_back_to_the_model(self) -> None:
        server = self.serve({"replies": [{"tool_calls": [{"name": "launch", "arguments": {}}]},
                                         {"say": ["I can't do that."]}]})
        sink = await self.respond(self.agent(server))
        self.assertEqual(sink.said, "I can't do that.")
        self.assertIn("no tool named", server.requests[1]["body"]["messages"][-1]["content"])

    async def test_tool_rounds_are_bounded(self) -> None:
        server = self.serve({"default": {"tool_calls": [{"name": "book", "arguments": {}}]}})
        app, url = self.tools_server(*[Canned.json({}) for _ in range(10)])
        runner = ToolRunner(self.http_for_tools(), reactor, url, SECRET)
        agent = self.agent(server, runner, tools_file=self.tools_file("book"), max_tool_rounds=2)
        await self.fails(agent)
        self.assertEqual((len(server.requests), len(app.received)), (3, 2))


class ActionTests(AgentTestCase):
    async def test_end_call_after_a_goodbye(self) -> None:
        server = self.serve({"default": {"say": ["Goodbye!"], "tool_calls": [{"name": "end_call"}]}})
        sink = await self.respond(self.agent(server))
        self.assertEqual((sink.said, sink.actions), ("Goodbye!", [EndCall()]))
        self.assertEqual(len(server.requests), 1)

    async def test_silent_end_call_asks_the_model_for_words(self) -> None:
        server = self.serve({"replies": [{"tool_calls": [{"name": "end_call", "arguments": ""}]},
                                         {"say": ["Bye now."]}]})
        sink = await self.respond(self.agent(server))
        self.assertEqual((sink.said, sink.actions), ("Bye now.", [EndCall()]))
        self.assertEqual(json.loads(server.requests[1]["body"]["messages"][-1]["content"]), {"ok": True})

    async def test_a_model_that_stays_silent_gets_the_fixed_goodbye(self) -> None:
        server = self.serve({"default": {"tool_calls": [{"name": "end_call"}]}})
        sink = await self.respond(self.agent(server))
        self.assertEqual((sink.texts, sink.sentences, sink.actions), ([], [GOODBYE_PHRASE], [EndCall()]))
        self.assertEqual(len(server.requests), 2)

    async def test_transfer_call(self) -> None:
        server = self.serve({"default": {"say": ["Transferring you."],
                                         "tool_calls": [{"name": "transfer_call", "arguments": {"to": "+15553334444"}}]}})
        sink = await self.respond(self.agent(server, transfer_targets=["+15553334444"]))
        self.assertEqual(sink.actions, [TransferCall("+15553334444")])
        self.assertEqual(server.requests[0]["body"]["tools"][1]["function"]["parameters"]["properties"]["to"]["enum"],
                         ["+15553334444"])

    async def test_a_transfer_to_a_number_not_listed_goes_back_to_the_model(self) -> None:
        # A caller can talk the model into "transfer me to +1 900 ...": only listed targets are dialled.
        server = self.serve({"replies": [
            {"say": ["Sure."], "tool_calls": [{"name": "transfer_call", "arguments": {"to": "+19005550000"}}]},
            {"say": ["I can only transfer you to our front desk."]}]})
        sink = await self.respond(self.agent(server, transfer_targets=["+15553334444"]))
        self.assertEqual(sink.actions, [])
        tool_result = server.requests[1]["body"]["messages"][-1]
        self.assertEqual(tool_result["role"], "tool")
        self.assertIn("+15553334444", tool_result["content"])

    async def test_transfer_without_a_number_goes_back_to_the_model(self) -> None:
        server = self.serve({"replies": [{"say": ["One moment."], "tool_calls": [{"name": "transfer_call"}]},
                                         {"say": ["Who should I transfer you to?"]}]})
        sink = await self.respond(self.agent(server, transfer_targets=["+15553334444"]))
        self.assertEqual(sink.actions, [])
        self.assertEqual(sink.said, "One moment.Who should I transfer you to?")


class FailureTests(AgentTestCase):
    async def test_http_500(self) -> None:
        server = self.serve({"default": {"status": 500, "error": "The server had an error."}})
        error = await self.fails(self.agent(server))
        self.assertIn("500", str(error))
        self.assertIn("The server had an error.", str(error))

    async def test_http_429(self) -> None:
        server = self.serve({"default": {"status": 429, "error": "Rate limit reached."}})
        self.assertIn("429", str(await self.fails(self.agent(server))))

    async def test_stream_cut_mid_reply_keeps_what_was_pushed(self) -> None:
        server = self.serve({"default": {"say": ["One two three four five."], "cut_after_words": 3}})
        sink = RecordingSink()
        error = await self.fails(self.agent(server), sink)
        self.assertEqual(sink.said, "One two three")
        self.assertIn("broke", str(error))

    async def test_stream_ending_without_finish_or_done(self) -> None:
        server = self.serve({"default": {"say": ["Half a"], "truncate": True}})
        sink = RecordingSink()
        error = await self.fails(self.agent(server), sink)
        self.assertEqual(sink.said, "Half a")
        self.assertIn("before the reply was complete", str(error))

    async def test_malformed_json_event(self) -> None:
        server = self.serve({"default": {"inject": ["data: {not json\n\n"]}})
        self.assertIn("not JSON", str(await self.fails(self.agent(server))))

class ClockedTests(SynchronousTestCase):
    """Streaming, timeouts and cancels, with the fake server and the agent on one Clock and
    HTTP over a connection in memory: the times asserted are what the code makes of them."""

    def setUp(self) -> None:
        self.network = MemoryNetwork(self)
        self.clock = self.network.reactor

    def serve(self, script: dict[str, Any]) -> FakeOpenAIServer:
        server = FakeOpenAIServer(script)
        server.listen(self.clock, MemoryNetwork.PORT)
        return server

    def agent(self, server: FakeOpenAIServer, **settings: Any) -> OpenAIAgent:
        settings.setdefault("first_token_timeout_s", 2.0)
        settings.setdefault("reply_timeout_s", 5.0)
        # Request bodies are produced on the Clock too (treq's default cooperates on the reactor).
        on_the_clock = Cooperator(scheduler=lambda work: self.clock.callLater(0, work))
        http = HTTPClient(Agent(self.clock, pool=HTTPConnectionPool(self.clock, persistent=False)),
                          data_to_body_producer=lambda data: FileBodyProducer(io.BytesIO(data), on_the_clock))
        return OpenAIAgent(http, self.clock, LLMSettings(base_url=server.base_url, **settings))

    def respond(self, agent: OpenAIAgent, sink: RecordingSink) -> Deferred[None]:
        return agent.start_conversation(CALL).respond(turn(), sink)

    def failure_of(self, d: Deferred[Any]) -> AgentError:
        with self.assertRaises(AgentError) as caught:
            self.network.run(d)
        return caught.exception

    def test_first_text_arrives_before_the_server_has_finished(self) -> None:
        server = self.serve({"default": {"say": ["First sentence.", "Second one.", "Third."],
                                         "sentence_gap_ms": 150}})
        sink = RecordingSink(self.clock)
        started = self.clock.seconds()
        d = self.respond(self.agent(server), sink)
        # What stood when the first words arrived (the run goes on to the end of that instant).
        sink.first_text.addCallback(lambda at: (at, list(sink.texts), server.requests[0]["completed"]))
        first, texts, completed = self.network.run(sink.first_text)
        self.assertFalse(completed)
        self.assertEqual(texts, ["First"])
        self.network.run(d)
        self.assertLess(first - started, 0.15)
        self.assertAlmostEqual(self.clock.seconds() - started, 0.3, places=6)  # two 150 ms gaps
        self.assertEqual(sink.said, "First sentence. Second one. Third.")

    def test_first_token_timeout(self) -> None:
        server = self.serve({"default": {"say": ["Late."], "first_token_ms": 2000, "keepalive": True}})
        started = self.clock.seconds()
        error = self.failure_of(self.respond(self.agent(server, first_token_timeout_s=0.1), RecordingSink()))
        self.assertAlmostEqual(self.clock.seconds() - started, 0.1, places=6)  # not the server's 2 s
        self.assertIn("within 0.1 s", str(error))
        self.network.run(server.until(lambda: server.requests[0]["disconnected"]))

    def test_first_token_timeout_on_a_server_that_never_answers(self) -> None:
        server = self.serve({"default": {"hang": True}})
        error = self.failure_of(self.respond(self.agent(server, first_token_timeout_s=0.1), RecordingSink()))
        self.assertIn("within 0.1 s", str(error))
        self.network.run(server.until(lambda: server.requests[0]["disconnected"]))

    def test_reply_timeout(self) -> None:
        server = self.serve({"default": {"say": ["Slow words " * 20], "word_gap_ms": 30}})
        sink = RecordingSink(self.clock)
        error = self.failure_of(self.respond(self.agent(server, reply_timeout_s=0.2), sink))
        self.assertIn("within 0.2 s", str(error))
        self.assertTrue(sink.texts)
        self.network.run(server.until(lambda: server.requests[0]["disconnected"]))

    def test_cancel_mid_stream_closes_the_connection(self) -> None:
        server = self.serve({"default": {"say": ["One.", "Two.", "Three."], "sentence_gap_ms": 500}})
        sink = RecordingSink(self.clock)
        d = self.respond(self.agent(server), sink)
        self.network.run(sink.first_text)
        d.cancel()
        self.assertRaises(CancelledError, self.network.run, d)
        self.network.run(server.until(lambda: server.requests[0]["disconnected"]))
        self.assertEqual(sink.texts, ["One."])

    def test_cancel_before_any_answer(self) -> None:
        server = self.serve({"default": {"hang": True}})
        d = self.respond(self.agent(server), RecordingSink())
        self.network.run(server.until(lambda: len(server.requests) == 1))
        d.cancel()
        self.assertRaises(CancelledError, self.network.run, d)
        self.network.run(server.until(lambda: server.requests[0]["disconnected"]))


class CancelTests(AgentTestCase):
    async def test_cancel_during_a_tool_run(self) -> None:
        server = self.serve({"replies": [{"tool_calls": [{"name": "book", "arguments": {}}]}]})
        app, url = self.tools_server(Canned(hang=True))
        runner = ToolRunner(make_http_client(self), reactor, url, SECRET)
        agent = self.agent(server, runner, tools_file=self.tools_file("book"))
        d = agent.start_conversation(CALL).respond(turn(), RecordingSink())
        received = await app.request(0)
        d.cancel()
        with self.assertRaises(CancelledError):
            await d
        await received.lost
        self.assertEqual(len(server.requests), 1)


class SecretTests(AgentTestCase):
    async def test_the_api_key_never_reaches_logs_or_errors(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        server = self.serve({"replies": [
            {"status": 401, "error": f"Incorrect API key provided: {KEY}."},
            {"tool_calls": [{"name": "book", "arguments": {}}]},
            {"say": ["Done."]},
            {"say": ["Cut short here"], "cut_after_words": 2},
        ]})
        _, url = self.tools_server(Canned(status=500))
        runner = ToolRunner(make_http_client(self), reactor, url, SECRET)
        agent = self.agent(server, runner, api_key=KEY, tools_file=self.tools_file("book"))
        errors = [str(await self.fails(agent))]
        await self.respond(agent)
        errors.append(str(await self.fails(agent)))
        self.assertIn("***", errors[0])
        self.assertTrue(events)
        seen = " ".join(errors + [formatEvent(e) + repr(e) for e in events] + [repr(agent.settings)])
        self.assertNotIn(KEY, seen)


class ConstructionTests(TestCase):
    def test_bad_tools_file_names_the_file(self) -> None:
        fd, path = tempfile.mkstemp(suffix=".json")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write("[{")
        error = self.assertRaises(ValueError, OpenAIAgent, None, reactor, LLMSettings(tools_file=path), None)
        self.assertIn(path, str(error))

    def test_tools_without_a_runner(self) -> None:
        fd, path = tempfile.mkstemp(suffix=".json")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            json.dump([{"type": "function", "function": {"name": "book"}}], f)
        error = self.assertRaises(ValueError, OpenAIAgent, None, reactor, LLMSettings(tools_file=path), None)
        self.assertIn("tools URL", str(error))

    def test_settings_repr_hides_the_key(self) -> None:
        self.assertNotIn(KEY, repr(LLMSettings(api_key=KEY)))
