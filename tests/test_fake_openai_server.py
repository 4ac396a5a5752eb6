"""The fake OpenAI server speaks the real format: checked with the official client,
against the server run as a separate process (the way end-to-end tests use it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from typing import Any

import openai
from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = {
    "default": {"say": ["Hello there.", "Second sentence."], "sentence_gap_ms": 20},
    "replies": [None, {"say": ["Checking."], "tool_calls": [
        {"name": "book", "arguments": {"day": "monday", "time": "9:00"}},
        {"name": "end_call", "arguments": {}}], "argument_pieces": 5}],
}


def start_fake(test: SynchronousTestCase, script: dict[str, Any]) -> str:
    """The fake server in its own process; its base URL."""
    fd, path = tempfile.mkstemp(suffix=".json")
    test.addCleanup(os.unlink, path)
    with os.fdopen(fd, "w") as f:
        json.dump(script, f)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--script", path],
        cwd=REPO, stdout=subprocess.PIPE, text=True)

    def stop() -> None:
        process.terminate()
        process.wait(10)
        process.stdout.close()  # type: ignore[union-attr]

    test.addCleanup(stop)
    line = process.stdout.readline()  # type: ignore[union-attr]
    test.assertTrue(line.startswith("listening on "), line)
    return f"http://127.0.0.1:{int(line.split()[-1])}"


class OfficialClientTests(SynchronousTestCase):
    def test_reply_and_tool_calls_parse_with_the_openai_package(self) -> None:
        base = start_fake(self, SCRIPT)
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=10)
        messages = [{"role": "user", "content": "Hi"}]

        stream = client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, "Hello there. Second sentence.")
        self.assertEqual([c.choices[0].finish_reason for c in chunks if c.choices][-1], "stop")
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, 4)  # type: ignore[union-attr]

        # The client's own accumulator assembles streamed tool calls.
        with client.chat.completions.stream(model="m", messages=messages) as events:
            completion = events.get_final_completion()
        message = completion.choices[0].message
        self.assertEqual(message.content, "Checking.")
        self.assertEqual(completion.choices[0].finish_reason, "tool_calls")
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
        self.assertEqual(calls, [("book", {"day": "monday", "time": "9:00"}), ("end_call", {})])

        with urllib.request.urlopen(base + "/_requests") as response:
            recorded = json.load(response)
        self.assertEqual([r["n"] for r in recorded], [1, 2])
        self.assertEqual(recorded[0]["body"]["messages"], messages)
        self.assertEqual(recorded[0]["authorization"], "Bearer x")
        self.assertTrue(all(r["completed"] for r in recorded))

    def test_script_replaced_over_http(self) -> None:
        base = start_fake(self, {})
        new_script = json.dumps({"default": {"status": 429, "error": "Slow down."}}).encode()
        urllib.request.urlopen(urllib.request.Request(base + "/_script", data=new_script, method="POST")).close()
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=10)
        with self.assertRaises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True)
        self.assertIn("Slow down.", str(caught.exception))
