"""LLMock (PyPI ``llmock``), an OpenAI-compatible mock server not written for voiced.

The issue's check of the openai agent wants a server voiced's authors did not write:
our own fake could share our misreading of the format. LLMock runs offline (FastAPI
and uvicorn, no model weights), streams ``chat.completion.chunk`` events with a
pause between chunks (``--stream-chunk-delay-ms``: its text chunks are words, so
200 ms and five-word sentences are sentences ~1 s apart), streams scripted tool
calls with their arguments in 12-character fragments, and records every request
body (``GET /_llmock/requests``). Replies, tool calls, HTTP errors and stream faults
(disconnect, truncate, stall, malformed) are scripted over HTTP
(``POST /_llmock/scenario``).

Two of its defaults matter here: ``--tool-mode auto`` (its default) calls an offered
tool whenever no tool result is in the conversation, and voiced always offers
``end_call``, so this helper passes ``--tool-mode off``; and unscripted requests get
generated filler text, so a test scripts a permanent reply (``times: None``).

The executable is found from ``VOICED_LLMOCK`` (a path), then next to the running
Python, then on ``PATH``; ``find_llmock()`` returns None when it is not installed, so
a test can skip. The calls here block (urllib): use them from an end-to-end test or
before the reactor work starts, not from reactor code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from voiced.demo import free_port


def find_llmock() -> str | None:
    candidates = [os.environ.get("VOICED_LLMOCK", ""), os.path.join(os.path.dirname(sys.executable), "llmock")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("llmock")


class LLMock:
    def __init__(self, chunk_delay_ms: int = 0, extra_args: list[str] | None = None,
                 executable: str | None = None) -> None:
        self.executable = executable or find_llmock()
        if self.executable is None:
            raise FileNotFoundError("llmock is not installed (pip install llmock)")
        self.port = free_port()
        self.chunk_delay_ms = chunk_delay_ms
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        command = [self.executable, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--tool-mode", "off", "--stream-chunk-delay-ms", str(self.chunk_delay_ms),
                   "--log-level", "warning", *self.extra_args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
                raise RuntimeError(f"llmock exited with status {self.process.returncode}: {error[-2000:]}")
            try:
                self._call("GET", "/_llmock/scenario")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llmock did not answer within {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def script(self, *behaviors: dict[str, Any]) -> None:
        """Queue behaviours, e.g. ``{"type": "reply", "text": "...", "times": None}``,
        ``{"type": "reply", "tool_calls": [{"name": "book", "arguments": {...}}]}``,
        ``{"type": "fail", "status": 500}``, ``{"type": "stream_fault", "kind":
        "disconnect", "after_chunks": 5}``, ``{"type": "slow_first_token", "seconds": 2}``.
        Each request takes the first matching behaviour of each kind (``times``
        requests each, default 1; ``None``: every request)."""
        self._call("POST", "/_llmock/scenario", {"behaviors": list(behaviors)})

    def reply_always(self, sentences: list[str]) -> None:
        self.script({"type": "reply", "text": " ".join(sentences), "times": None})

    def requests(self) -> list[dict[str, Any]]:
        """Every request served, oldest first; each has ``body``, ``status``, ``completed``."""
        return self._call("GET", "/_llmock/requests")["requests"]

    def _call(self, method: str, path: str, document: Any = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(self.root + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def start_llmock(test: Any, chunk_delay_ms: int = 0, extra_args: list[str] | None = None) -> LLMock:
    """A running LLMock, stopped when ``test`` ends; skips ``test`` when not installed."""
    from twisted.trial.unittest import SkipTest

    if find_llmock() is None:
        raise SkipTest("llmock is not installed (pip install llmock, or set VOICED_LLMOCK)")
    server = LLMock(chunk_delay_ms, extra_args)
    server.start()
    test.addCleanup(server.stop)
    return server
