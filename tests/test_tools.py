"""Tool definitions and the HTTP tool runner, against a real loopback server."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from voiced.agent.base import CallInfo
from voiced.agent.tools import ToolRunner, builtin_tools, load_tools, parse_arguments
from voiced.demo import free_port
from voiced.signing import SIGNATURE_HEADER, sign

CALL = CallInfo("CA1", "MZ1", "+15550001111", "+15550002222", {"k": "v"})
SECRET = "s3cret"


def tool(name: str, **function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **function}}


class LoadToolsTests(SynchronousTestCase):
    def write(self, content: Any) -> str:
        fd, path = tempfile.mkstemp(suffix=".json")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def assertRejected(self, content: Any, words: str) -> None:
        path = self.write(content)
        error = self.assertRaises(ValueError, load_tools, path)
        self.assertIn(path, str(error))
        self.assertIn(words, str(error))

    def test_valid_file(self) -> None:
        tools = [tool("book_appointment", description="Book.", parameters={
            "type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}),
            tool("lookup-order")]
        self.assertEqual(load_tools(self.write(tools)), tools)

    def test_rejections(self) -> None:
        self.assertRejected("[", "not valid JSON")
        self.assertRejected({"tools": []}, "JSON list")
        self.assertRejected([{"function": {"name": "x"}}], '"type": "function"')
        self.assertRejected([{"type": "function"}], "'function'")
        self.assertRejected([tool("has space")], "'name'")
        self.assertRejected([tool("x" * 65)], "'name'")
        self.assertRejected([tool("x", description=3)], "description")
        self.assertRejected([tool("x", parameters={"type": "string"})], "parameters")
        self.assertRejected([tool("x"), tool("x")], "declared twice")
        self.assertRejected([tool("end_call")], "built-in")

    def test_missing_file(self) -> None:
        error = self.assertRaises(ValueError, load_tools, "/nonexistent/tools.json")
        self.assertIn("/nonexistent/tools.json", str(error))

    def test_builtins(self) -> None:
        self.assertEqual([t["function"]["name"] for t in builtin_tools(())], ["end_call"])
        tools = builtin_tools(("+15551230000", "sip:desk@example.com"))
        self.assertEqual([t["function"]["name"] for t in tools], ["end_call", "transfer_call"])
        to = tools[1]["function"]["parameters"]["properties"]["to"]
        self.assertEqual(to["enum"], ["+15551230000", "sip:desk@example.com"])


class ParseArgumentsTests(SynchronousTestCase):
    def test_cases(self) -> None:
        self.assertEqual(parse_arguments('{"day": "mon"}'), {"day": "mon"})
        self.assertEqual(parse_arguments(""), {})
        self.assertEqual(parse_arguments("  "), {})
        self.assertIsInstance(parse_arguments('{"day": '), str)
        self.assertIsInstance(parse_arguments("[1]"), str)


class ToolRunnerTests(TestCase):
    timeout = 10

    def runner(self, *answers: Canned, timeout_s: float = 2.0) -> tuple[RecordingApp, ToolRunner]:
        app = RecordingApp()
        app.answer(*answers)
        url = start_server(self, app).url("/tools")
        return app, ToolRunner(make_http_client(self), reactor, url, SECRET, timeout_s)

    async def test_signed_json_request_and_answer(self) -> None:
        app, runner = self.runner(Canned.json({"booked": True}))
        answer = await runner.run(CALL, "book", {"day": "mon"})
        self.assertEqual(answer, {"booked": True})
        received = app.received[0]
        self.assertEqual((received.method, received.path), ("POST", "/tools"))
        self.assertEqual(received.headers["content-type"], "application/json")
        self.assertEqual(received.headers[SIGNATURE_HEADER.lower()], sign(SECRET, received.body))
        self.assertEqual(received.json(), {"call": {"sid": "CA1", "from": "+15550001111", "to": "+15550002222",
                                                    "parameters": {"k": "v"}, "language": "", "carrier": "twilio",
                                                    "direction": "inbound", "variables": {}, "dial_id": ""},
                                           "tool": "book", "arguments": {"day": "mon"}})

    async def test_string_and_other_answers(self) -> None:
        _, runner = self.runner(Canned.json("fine"), Canned.json([1, 2]))
        self.assertEqual(await runner.run(CALL, "t", {}), "fine")
        self.assertEqual(await runner.run(CALL, "t", {}), {"result": [1, 2]})

    async def test_http_error(self) -> None:
        _, runner = self.runner(Canned(status=503, body=b"down"))
        self.assertEqual(await runner.run(CALL, "t", {}), {"error": "tool failed: HTTP 503"})

    async def test_answer_not_json(self) -> None:
        _, runner = self.runner(Canned(body=b"<html>"))
        self.assertEqual(await runner.run(CALL, "t", {}), {"error": "tool failed: the answer is not JSON"})

    async def test_timeout_closes_the_connection(self) -> None:
        app, runner = self.runner(Canned(hang=True), timeout_s=0.1)
        self.assertEqual(await runner.run(CALL, "t", {}), {"error": "tool failed: no answer within 0.1 s"})
        await app.received[0].lost

    async def test_unreachable(self) -> None:
        runner = ToolRunner(make_http_client(self), reactor, f"http://127.0.0.1:{free_port()}/", SECRET)
        self.assertEqual(await runner.run(CALL, "t", {}), {"error": "tool failed: could not reach the tool server"})

    async def test_cancel_is_not_a_tool_error(self) -> None:
        app, runner = self.runner(Canned(hang=True))
        d = runner.run(CALL, "t", {})
        await app.request(0)
        d.cancel()
        with self.assertRaises(CancelledError):
            await d
        await app.received[0].lost
