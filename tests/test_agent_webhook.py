"""The webhook agent against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from voiced.agent.base import AgentError, CallInfo, Dtmf, EndCall, Idle, Said, TransferCall, TurnRequest
from voiced.agent.webhook import MAX_ANSWER_BYTES, WebhookAgent, parse_answer
from voiced.signing import SIGNATURE_HEADER, verify

SECRET = "whsec-test"
CALL = CallInfo("CA0123456789abcdef0123456789abcdef", "MZ42", "+15550001111", "+15550002222",
                {"tenant": "acme", "lang": "en"})
HISTORY = (
    Said("bot", "Hello, thanks for calling."),
    Said("caller", "what time do you open"),
    Said("bot", "We are open from 8 AM", interrupted=True),
)


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def text(self, delta: str) -> None:
        self.calls.append(("text", delta))

    def sentence(self, text: str) -> None:
        self.calls.append(("sentence", text))

    def action(self, action: object) -> None:
        self.calls.append(("action", action))


class WebhookAgentTests(TestCase):
    def setUp(self) -> None:
        self.app = RecordingApp()
        self.server = start_server(self, self.app)
        self.http = make_http_client(self)
        self.sink = RecordingSink()

    def agent(self, secret: str = SECRET, clock: object = reactor, timeout_s: float = 5.0,
              url: str | None = None) -> WebhookAgent:
        return WebhookAgent(self.http, clock, url or self.server.url("/voice"), secret, timeout_s,
                            ["Hello, thanks for calling."])

    def respond(self, request: TurnRequest, agent: WebhookAgent | None = None):
        conversation = (agent or self.agent()).start_conversation(CALL)
        return conversation.respond(request, self.sink)

    async def test_request_has_exactly_the_documented_shape_and_a_valid_signature(self) -> None:
        self.app.answer(Canned.json({"say": "We open at 8."}))
        await self.respond(TurnRequest(3, "and on sundays?", None, HISTORY))

        [received] = self.app.received
        self.assertEqual((received.method, received.path), ("POST", "/voice"))
        self.assertEqual(received.headers["content-type"], "application/json")
        self.assertEqual(received.json(), {
            "call": {"sid": "CA0123456789abcdef0123456789abcdef", "from": "+15550001111",
                     "to": "+15550002222", "parameters": {"tenant": "acme", "lang": "en"}, "language": "",
                     "carrier": "twilio", "direction": "inbound", "variables": {}, "dial_id": ""},
            "turn": 3,
            "text": "and on sundays?",
            "event": None,
            "history": [
                {"role": "bot", "text": "Hello, thanks for calling.", "interrupted": False},
                {"role": "caller", "text": "what time do you open", "interrupted": False},
                {"role": "bot", "text": "We are open from 8 AM", "interrupted": True},
            ],
        })
        # Checked the way the receiving application would: over the raw bytes received.
        header = received.headers[SIGNATURE_HEADER.lower()]
        expected = "sha256=" + hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
        self.assertTrue(hmac.compare_digest(header, expected))
        self.assertTrue(verify(SECRET, received.body, header))
        self.assertFalse(verify("another secret", received.body, header))
        self.assertEqual(self.sink.calls, [("text", "We open at 8.")])

    async def test_events_are_sent_as_documented(self) -> None:
        self.app.answer(Canned.json({"say": "Connecting you."}), Canned.json({"say": "Still there?"}))
        await self.respond(TurnRequest(2, "", Dtmf("5"), ()))
        await self.respond(TurnRequest(4, "", Idle(2), ()))
        dtmf, idle = (received.json() for received in self.app.received)
        self.assertEqual((dtmf["event"], dtmf["text"], dtmf["history"]), ({"dtmf": "5"}, "", []))
        self.assertEqual((idle["event"], idle["turn"]), ({"idle": 2}, 4))

    async def test_non_ascii_text_is_utf8_and_the_signature_covers_those_bytes(self) -> None:
        self.app.answer(Canned.json({"say": "Très bien."}))
        await self.respond(TurnRequest(1, "café à 8 h ?", None, ()))
        [received] = self.app.received
        self.assertIn("café à 8 h ?".encode(), received.body)
        self.assertTrue(verify(SECRET, received.body, received.headers[SIGNATURE_HEADER.lower()]))
        self.assertEqual(self.sink.calls, [("text", "Très bien.")])

    async def test_no_secret_no_signature_header(self) -> None:
        self.app.answer(Canned.json({"say": "Hi."}))
        await self.respond(TurnRequest(1, "hi", None, ()), self.agent(secret=""))
        self.assertNotIn(SIGNATURE_HEADER.lower(), self.app.received[0].headers)

    async def test_a_list_is_spoken_sentence_by_sentence_then_actions(self) -> None:
        self.app.answer(Canned.json({
            "say": ["Let me put you through.", "Please hold."],
            "actions": [{"type": "transfer_call", "to": "+15550003333"}],
        }))
        await self.respond(TurnRequest(1, "a person please", None, ()))
        self.assertEqual(self.sink.calls, [
            ("sentence", "Let me put you through."),
            ("sentence", "Please hold."),
            ("action", TransferCall("+15550003333")),
        ])

    async def test_actions_alone(self) -> None:
        self.app.answer(Canned.json({"actions": [{"type": "end_call"}]}))
        await self.respond(TurnRequest(5, "bye", None, ()))
        self.assertEqual(self.sink.calls, [("action", EndCall())])

    async def test_http_500_is_an_agent_error_and_nothing_is_spoken(self) -> None:
        self.app.answer(Canned.json({"say": "this must not be spoken"}, status=500))
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ())), AgentError)
        self.assertEqual(str(error), "webhook answered HTTP 500")
        self.assertEqual(self.sink.calls, [])

    async def test_a_redirect_is_not_followed(self) -> None:
        self.app.answer(Canned(status=302, headers={"Location": "/elsewhere"}))
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ())), AgentError)
        self.assertEqual(str(error), "webhook answered HTTP 302")
        self.assertEqual(len(self.app.received), 1)

    async def test_non_json_answer(self) -> None:
        self.app.answer(Canned(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}))
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ())), AgentError)
        self.assertIn("not JSON", str(error))
        self.assertEqual(self.sink.calls, [])

    async def test_a_bad_action_fails_the_whole_reply(self) -> None:
        self.app.answer(Canned.json({"say": "Goodbye.", "actions": [{"type": "end_call"}, {"type": "dance"}]}))
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ())), AgentError)
        self.assertIn("unknown action type 'dance'", str(error))
        self.assertEqual(self.sink.calls, [])  # checked whole before anything is spoken

    async def test_an_answer_over_64_kb(self) -> None:
        self.app.answer(Canned.json({"say": "x" * MAX_ANSWER_BYTES}))
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ())), AgentError)
        self.assertEqual(str(error), "webhook answer is larger than 65536 bytes")

    async def test_an_answer_over_64_kb_without_a_length(self) -> None:
        self.app.answer(Canned(partial=b'{"say": "' + b"x" * (MAX_ANSWER_BYTES + 10)))
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ())), AgentError)
        self.assertIn("larger than", str(error))
        await self.app.received[0].lost  # the connection was closed, not read on

    async def test_a_slow_server_times_out_and_the_connection_is_closed(self) -> None:
        clock = Clock()
        self.app.answer(Canned(hang=True))
        reply = self.respond(TurnRequest(1, "hi", None, ()), self.agent(clock=clock, timeout_s=2.5))
        received = await self.app.request(0)
        clock.advance(2.4)
        self.assertNoResult(reply)
        clock.advance(0.1)
        error = await self.assertFailure(reply, AgentError)
        self.assertEqual(str(error), "webhook did not answer within 2.5 s")
        await received.lost

    async def test_a_body_that_stalls_times_out_too(self) -> None:
        clock = Clock()
        self.app.answer(Canned(partial=b'{"say": "Hel'))
        reply = self.respond(TurnRequest(1, "hi", None, ()), self.agent(clock=clock, timeout_s=1))
        received = await self.app.request(0)
        await deferLater(reactor, 0.05)  # let the headers and the first bytes arrive
        clock.advance(1)
        await self.assertFailure(reply, AgentError)
        await received.lost
        self.assertEqual(self.sink.calls, [])

    async def test_cancelling_aborts_the_request(self) -> None:
        self.app.answer(Canned(hang=True))
        reply = self.respond(TurnRequest(1, "hi", None, ()))
        received = await self.app.request(0)
        reply.cancel()
        await self.assertFailure(reply, CancelledError)  # a barge-in is not an agent failure
        await received.lost

    async def test_cancelling_while_the_body_arrives_aborts_too(self) -> None:
        self.app.answer(Canned(partial=b'{"say": "Hel'))
        reply = self.respond(TurnRequest(1, "hi", None, ()))
        received = await self.app.request(0)
        await deferLater(reactor, 0.05)
        reply.cancel()
        await self.assertFailure(reply, CancelledError)
        await received.lost

    async def test_the_server_closing_without_an_answer(self) -> None:
        self.app.answer(Canned(hang=True))
        reply = self.respond(TurnRequest(1, "hi", None, ()))
        await self.app.request(0)
        await self.server.stop()
        error = await self.assertFailure(reply, AgentError)
        self.assertTrue(str(error).startswith("webhook request failed: ResponseNeverReceived (ConnectionLost"),
                        str(error))

    async def test_connection_refused(self) -> None:
        port = self.server.port.getHost().port
        await self.server.stop()
        agent = self.agent(url=f"http://127.0.0.1:{port}/voice")
        error = await self.assertFailure(self.respond(TurnRequest(1, "hi", None, ()), agent), AgentError)
        self.assertIn("webhook request failed: ConnectionRefusedError", str(error))

    async def test_the_connection_is_reused_across_turns(self) -> None:
        self.app.answer(Canned.json({"say": "One."}), Canned.json({"say": "Two."}, status=503),
                        Canned.json({"say": "Three."}))
        conversation = self.agent().start_conversation(CALL)
        await conversation.respond(TurnRequest(1, "a", None, ()), self.sink)
        await self.assertFailure(conversation.respond(TurnRequest(2, "b", None, ()), self.sink), AgentError)
        await conversation.respond(TurnRequest(3, "c", None, ()), self.sink)
        self.assertEqual(len(self.server.factory.protocols), 1)

    def test_greeting_and_fixed_phrases(self) -> None:
        agent = self.agent()
        self.assertEqual(agent.name, "webhook")
        self.assertEqual(agent.fixed_phrases(), ["Hello, thanks for calling."])
        self.assertEqual(agent.start_conversation(CALL).greeting(), ["Hello, thanks for calling."])
        self.assertNotIn(SECRET, repr(agent))

    def test_rejects_a_bad_url_or_timeout(self) -> None:
        self.assertRaises(ValueError, self.agent, url="ftp://example.com/")
        self.assertRaises(ValueError, self.agent, timeout_s=0)


class ParseAnswerTests(SynchronousTestCase):
    def assertRejected(self, answer: object, message: str) -> None:
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        error = self.assertRaises(AgentError, parse_answer, body)
        self.assertIn(message, str(error))

    def test_valid_answers(self) -> None:
        self.assertEqual(parse_answer(b"{}"), ("", []))
        self.assertEqual(parse_answer(b'{"say": "", "actions": []}'), ("", []))
        self.assertEqual(parse_answer(b'{"say": null}'), ("", []))
        self.assertEqual(parse_answer(b'{"say": ["A.", "B."], "extra": 1}'), (["A.", "B."], []))
        self.assertEqual(parse_answer(b'{"actions": [{"type": "transfer_call", "to": "sip:desk@pbx.example.com"}]}'),
                         ("", [TransferCall("sip:desk@pbx.example.com")]))

    def test_malformed_answers(self) -> None:
        self.assertRejected(b"", "not JSON")
        self.assertRejected(b"\xff\xfe{", "not JSON")
        self.assertRejected(["Hi."], "must be a JSON object, got list")
        self.assertRejected({"say": 42}, '"say" must be a string or a list of strings')
        self.assertRejected({"say": ["ok", None]}, '"say" must be a string or a list of strings')
        self.assertRejected({"actions": {"type": "end_call"}}, '"actions" must be a list')
        self.assertRejected({"actions": ["end_call"]}, "an action must be an object, got str")
        self.assertRejected({"actions": [{"kind": "end_call"}]}, "unknown action type None")
        self.assertRejected({"actions": [{"type": "transfer_call"}]}, 'transfer_call needs "to"')
        self.assertRejected({"actions": [{"type": "transfer_call", "to": 15550003333}]}, 'transfer_call needs "to"')
        self.assertRejected({"actions": [{"type": "transfer_call", "to": "reception"}]}, "E.164")
        self.assertRejected({"actions": [{"type": "transfer_call", "to": "+1555</Dial><Hangup/>"}]}, "E.164")
