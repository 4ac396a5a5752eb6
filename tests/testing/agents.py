"""The agents' side: the OpenAI agent against its loopback fake (AgentTestCase), and the reply
sinks an agent speaks into (RecordingSink for streamed text, SentenceSink for the script's whole sentences)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from tests.fakes.openai_server import FakeOpenAIServer

from voiced.agent.base import AgentError, CallInfo, EndCall, Said, TurnRequest
from voiced.agent.llm import LLMSettings, OpenAIAgent
from voiced.agent.tools import ToolRunner


CALL = CallInfo("CA123", "MZ456", "+15550001111", "+15550002222", {"customer": "42"})


class RecordingSink:
    """An agent's ReplySink that keeps what it was given; ``first_text`` fires with the
    ``clock``'s time of the first words, ``texts_reached(n)`` once ``n`` deltas are in."""

    def __init__(self, clock: Any = reactor) -> None:
        self.clock = clock
        self.texts: list[str] = []
        self.sentences: list[str] = []
        self.actions: list[Any] = []
        self.first_text: Deferred[float] = Deferred()
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def text(self, delta: str) -> None:
        self.texts.append(delta)
        if not self.first_text.called:
            self.first_text.callback(self.clock.seconds())
        reached = [w for w in self._waiting if len(self.texts) >= w[0]]
        self._waiting = [w for w in self._waiting if w not in reached]
        for _, d in reached:
            d.callback(None)

    def texts_reached(self, n: int) -> Deferred[None]:
        if len(self.texts) >= n:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((n, d))
        return d

    def sentence(self, text: str) -> None:
        self.sentences.append(text)

    def action(self, action: Any) -> None:
        self.actions.append(action)

    @property
    def said(self) -> str:
        return "".join(self.texts)


def turn(text: str = "Hello?", history: tuple[Said, ...] = (), event: Any = None, number: int = 1) -> TurnRequest:
    return TurnRequest(number, text, event, history)


class AgentTestCase(TestCase):
    timeout = 10

    def serve(self, script: dict[str, Any]) -> FakeOpenAIServer:
        server = FakeOpenAIServer(script)
        server.listen(reactor)
        self.addCleanup(server.stop)
        return server

    def agent(self, server: FakeOpenAIServer, tools: ToolRunner | None = None, **settings: Any) -> OpenAIAgent:
        settings.setdefault("first_token_timeout_s", 2.0)
        settings.setdefault("reply_timeout_s", 5.0)
        # The client is made after the server, so its pool closes first at cleanup.
        self.http = make_http_client(self)
        return OpenAIAgent(self.http, reactor, LLMSettings(base_url=server.base_url, **settings), tools)

    def tools_server(self, *answers: Canned) -> tuple[RecordingApp, str]:
        app = RecordingApp()
        app.answer(*answers)
        return app, start_server(self, app).url("/tools")

    def tools_file(self, *names: str) -> str:
        fd, path = tempfile.mkstemp(suffix=".json")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            json.dump([{"type": "function", "function": {
                "name": name, "description": "test tool",
                "parameters": {"type": "object", "properties": {"day": {"type": "string"}}}}}
                for name in names], f)
        return path

    async def respond(self, agent: OpenAIAgent, request: TurnRequest | None = None) -> RecordingSink:
        sink = RecordingSink()
        await agent.start_conversation(CALL).respond(request or turn(), sink)
        return sink

    async def fails(self, agent: OpenAIAgent, sink: RecordingSink | None = None) -> AgentError:
        sink = sink if sink is not None else RecordingSink()
        try:
            await agent.start_conversation(CALL).respond(turn(), sink)
        except AgentError as e:
            return e
        self.fail("the reply did not fail")


class SentenceSink:
    def __init__(self):
        self.sentences = []
        self.actions = []

    def text(self, delta):
        raise AssertionError("the script speaks whole sentences")

    def sentence(self, text):
        assert not self.actions, "sentence after an action"
        self.sentences.append(text)

    def action(self, action):
        self.actions.append(action)

    @property
    def hang_up(self):
        return EndCall() in self.actions
