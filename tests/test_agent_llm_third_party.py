"""The openai agent against LLMock, an OpenAI-compatible server not written for voiced
(skipped when ``llmock`` is not installed; see tests/fakes/third_party_llm.py)."""

from __future__ import annotations

import time

from twisted.internet import reactor

from tests.fakes.http_apps import make_http_client
from tests.fakes.third_party_llm import LLMock, start_llmock

from tests.testing import CALL, AgentTestCase, RecordingSink, turn

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
        server.reply_always(SENTENCES)
        sink = RecordingSink()
        started = time.monotonic()
        d = self.openai_agent(server).start_conversation(CALL).respond(turn(), sink)
        first = await sink.first_text
        await d
        total = time.monotonic() - started
        self.assertEqual(sink.said, " ".join(SENTENCES))
        self.assertGreater(total, 0.5)  # 15 words, 40 ms apart
        self.assertLess(first - started, total / 3)

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
