"""End to end: a real daemon with VOICED_AGENT=openai, an OpenAI-compatible streaming
server on loopback, calls over a real WebSocket.

The first test uses LLMock, a mock server from PyPI that was not written for voiced
(so it cannot share our reading of the format); the others use the scriptable fake in
tests/fakes/openai_server.py for what LLMock cannot do (pauses between sentences,
a reply cut by barge-in, tool calls with their results).
"""

from __future__ import annotations

import json
import os
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, line
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.third_party_llm import start_llmock
from voiced.caller.client import place_call
from voiced.signing import verify

LONG_REPLY = ["We are open every weekday morning.", "Our doors open at eight sharp.",
              "Saturdays we close at noon.", "Sundays the clinic stays closed."]


def openai_daemon(test: TestCase, base_url: str, **env: str) -> Daemon:
    daemon = Daemon(env={"VOICED_AGENT": "openai", "VOICED_OPENAI_BASE_URL": base_url,
                         "OPENAI_API_KEY": "sk-test-not-a-real-key", "VOICED_OPENAI_MODEL": "test-model", **env})
    test.addCleanup(daemon.stop)
    daemon.wait_ready()
    return daemon


class ThirdPartyServerTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_llmock_answers_and_the_first_sentence_plays_before_the_reply_is_complete(self):
        # 200 ms a word: the 22-word reply takes ~4.4 s to stream, sentences ~1 s apart.
        llm = start_llmock(self, chunk_delay_ms=200)
        llm.reply_always(LONG_REPLY)
        daemon = openai_daemon(self, llm.base_url)
        report = yield place_call(reactor, daemon.media_url, [line("What time do you open?")],
                                  pause_ms=6000, reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        stream_s = sum(len(s.split()) for s in LONG_REPLY) * 0.2
        first_audio_s = report.turns[0].first_reply_audio_ms / 1000
        turn = daemon.lines(" TURN ")[0]
        agent_ms = int(turn.split("AGENT_FIRST_SENTENCE_MS=")[1].split()[0])
        self.assertLess(agent_ms, 0.5 * stream_s * 1000, turn)  # the first sentence, not the whole reply
        # First audio left voiced while LLMock was still streaming: end of speech to first
        # audio is the EOU wait + the first sentence's ~1 s + synthesis, well inside the stream.
        self.assertLess(first_audio_s, 0.8 * stream_s, report.turns[0])
        bot = daemon.lines(" BOT ")[-1]
        self.assertIn(" ".join(LONG_REPLY), bot)  # every sentence was spoken
        body = llm.requests()[0]["body"]
        self.assertEqual(body["model"], "test-model")
        self.assertTrue(body["stream"])
        self.assertEqual(body["messages"][-1]["role"], "user")
        self.assertIn("open", body["messages"][-1]["content"].lower())
        self.assertNotIn("sk-test-not-a-real-key", "\n".join(daemon.lines("")))


class ScriptedServerTests(TestCase):
    timeout = 120

    def start_model(self, script: dict) -> FakeOpenAIServer:
        server = FakeOpenAIServer(script)
        server.listen(reactor)
        self.addCleanup(server.stop)
        return server

    @inlineCallbacks
    def test_after_a_barge_in_the_history_holds_what_was_heard(self):
        model = self.start_model({"replies": [{"say": LONG_REPLY, "sentence_gap_ms": 1000},
                                              {"say": ["Saturday we open at nine."]}]})
        daemon = openai_daemon(self, model.base_url)
        report = yield place_call(reactor, daemon.media_url, [
            line("Tell me your hours."),
            line("What about Saturday?", barge_in_ms=3000),
        ], pause_ms=2500, reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertEqual(len(report.clears), 1)
        clear_at = report.clears[0]
        heard_marks = {m.name.split(".")[1] for m in report.marks_echoed
                       if m.echoed_s <= clear_at and m.name.startswith("r2.s") and m.name[4:].isdigit()}
        yield model.until(lambda: len(model.requests) >= 2)
        history = model.requests[1]["body"]["messages"]
        cut = [m for m in history if m["role"] == "assistant"][-1]["content"]
        heard_whole = [LONG_REPLY[int(k[1:])] for k in sorted(heard_marks)]
        self.assertTrue(heard_whole, "the caller heard at least the first sentence before barging in")
        self.assertTrue(cut.startswith(" ".join(heard_whole)), (cut, heard_whole))
        self.assertTrue(cut.endswith("\u2014"), "an interrupted reply is marked as cut off")
        unplayed = LONG_REPLY[len(heard_whole) + 1:]
        for sentence in unplayed:
            self.assertNotIn(sentence, cut)
        self.assertEqual(history[-1]["role"], "user")  # the interrupting question (as Whisper tiny heard it)

    @inlineCallbacks
    def test_a_tool_call_reaches_the_tools_url_and_its_result_is_spoken(self):
        tools_app = RecordingApp()
        tools_app.answer(Canned.json({"booked": True, "time": "9:00"}))
        tools = start_server(self, tools_app)
        tools_file = os.path.join(tempfile.mkdtemp(), "tools.json")
        with open(tools_file, "w") as f:
            json.dump([{"type": "function", "function": {
                "name": "book_appointment", "description": "Book a visit",
                "parameters": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}}}],
                f)
        model = self.start_model({"replies": [
            {"tool_calls": [{"name": "book_appointment", "arguments": {"day": "monday"}}]},
            {"say": ["You are booked for Monday at nine."]},
        ]})
        daemon = openai_daemon(self, model.base_url, VOICED_TOOLS_FILE=tools_file,
                               VOICED_TOOLS_URL=tools.url("/tools"), VOICED_WEBHOOK_SECRET="k")
        report = yield place_call(reactor, daemon.media_url, [line("Book me in for Monday.")],
                                  pause_ms=3000, reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertEqual(len(tools_app.received), 1)
        request = tools_app.received[0]
        self.assertTrue(verify("k", request.body, request.headers.get("x-voiced-signature")))
        self.assertEqual(request.json()["tool"], "book_appointment")
        self.assertEqual(request.json()["arguments"], {"day": "monday"})
        self.assertEqual(request.json()["call"]["sid"], report.call_sid)
        tool_message = model.requests[1]["body"]["messages"][-1]
        self.assertEqual(tool_message["role"], "tool")
        self.assertEqual(json.loads(tool_message["content"]), {"booked": True, "time": "9:00"})
        self.assertIn("You are booked for Monday at nine.", daemon.lines(" BOT ")[-1])
