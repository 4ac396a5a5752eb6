"""The openai agent against LLMock, an OpenAI-compatible server not written for voiced
(skipped when ``llmock`` is not installed; see tests/fakes/third_party_llm.py)."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import CancelledError

from tests.fakes.http_apps import make_http_client
from tests.fakes.third_party_llm import LLMock, start_llmock

from tests.testing.agents import CALL, AgentTestCase, RecordingSink, turn

from voiced.agent.base import AgentError, EndCall, Said
from voiced.agent.llm import LLMSettings, OpenAIAgent

SENTENCES = ["This is the first sentence.", "Here comes the second one.", "And a third to finish."]


class LLMockTests(AgentTestCase):
    timeout = 30

    def llmock(self, chunk_delay_ms: int = 0) -> LLMock:
        return start_llmock(self, chunk_delay_ms)

    def openai_agent(self, server: LLMock, **settings: object) -> OpenAIAgent:
        settings.setdefault("first_token_timeout_s", 5.0)
        return OpenAIAgent(make_http_client(self), reactor,
                           LLMSettings(base_url=server.base_url, api_key="sk-x", **settings))  # type: ignore[arg-type]

    async def test_slow_reply_streams_into_the_sink(self) -> None:
        server = self.llmock(chunk_delay_ms=40)
        # The first request stalls after a few words for far longer than the test may take: its
        # first words can reach the sink only if they are streamed, never if the body is read whole.
        server.script({"type": "reply", "text": " ".join(SENTENCES), "times": None},
                      {"type": "stream_fault", "kind": "stall", "after_chunks": 5, "stall_seconds": 60})
        agent = self.openai_agent(server)
        sink = RecordingSink()
        stalled = agent.start_conversation(CALL).respond(turn(), sink)
        await sink.texts_reached(3)
        self.assertTrue(" ".join(SENTENCES).startswith(sink.said))
        self.assertLess(len(sink.said), len(" ".join(SENTENCES)))
        stalled.cancel()  # as a barge-in would
        with self.assertRaises(CancelledError):
            await stalled
        # The next reply is slow (40 ms a word) but whole.
        sink = await self.respond(agent)
        self.assertEqual(sink.said, " ".join(SENTENCES))
        stalled_request, whole_request = server.requests()
        self.assertEqual((stalled_request["completed"], whole_request["completed"]), (False, True))
        self.assertLess(stalled_request["chunks_sent"], whole_request["chunks_sent"])

    async def test_history_and_settings_reach_the_server(self) -> None:
        server = self.llmock()
        server.reply_always(["Sure."])
        history = (Said("caller", "Hi."), Said("bot", "Hello, how can I", interrupted=True))
        await self.respond(self.openai_agent(server, model="llama-3", temperature=0.2), turn("Hours?", history))
        body = server.requests()[-1]["body"]
        self.assertEqual((body["model"], body["temperature"], body["stream"]), ("llama-3", 0.2, True))
        self.assertEqual(body["messages"][1:], [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello, how can I \u2014"},
            {"role": "user", "content": "Hours?"},
        ])

    async def test_streamed_tool_call_becomes_an_action(self) -> None:
        server = self.llmock()
        server.script({"type": "reply", "text": "Goodbye!", "tool_calls": [{"name": "end_call", "arguments": {}}]})
        sink = await self.respond(self.openai_agent(server))
        self.assertEqual((sink.said, sink.actions), ("Goodbye!", [EndCall()]))

    async def test_http_error_and_dropped_stream_fail_the_reply(self) -> None:
        server = self.llmock()
        server.script({"type": "fail", "status": 500, "message": "boom"},
                      {"type": "reply", "text": "One two three four five six.", "times": None})
        self.assertIn("500", str(await self.fails(self.openai_agent(server))))
        server.script({"type": "stream_fault", "kind": "disconnect", "after_chunks": 3})
        sink = RecordingSink()
        error = await self.fails(self.openai_agent(server), sink)
        self.assertIsInstance(error, AgentError)
        self.assertTrue(sink.said.startswith("One"))
