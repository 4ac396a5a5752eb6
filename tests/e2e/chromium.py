"""Headless Chromium for end-to-end tests, driven over the DevTools protocol.

Debian's ``chromium`` package (``apt-get install -y chromium``); nothing is downloaded
at run time. The DevTools WebSocket is spoken with Autobahn's own client, on the
test's reactor: ``Page.navigate``, ``Runtime.evaluate`` and ``Page.captureScreenshot``
are all a test needs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

INSTALL_HINT = "Chromium is not installed: `apt-get install -y chromium` (Debian; .ci/run installs it)"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class DevToolsError(Exception):
    pass


class _DevToolsProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        waiting = self.factory.pending.pop(message.get("id"), None)
        if waiting is None:
            self.factory.events.append(message)  # an event: kept for the test to read
        elif "error" in message:
            waiting.errback(DevToolsError(json.dumps(message["error"])))
        else:
            waiting.callback(message.get("result", {}))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        for waiting in self.factory.pending.values():
            waiting.errback(DevToolsError(f"DevTools socket closed: {reason}"))
        self.factory.pending.clear()


class Chromium:
    """One headless browser with a fake microphone playing ``microphone_wav``."""

    def __init__(self, reactor: Any, microphone_wav: str, artifacts_dir: str) -> None:
        binary = find_chromium()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.reactor = reactor
        self.artifacts_dir = artifacts_dir
        self.profile = tempfile.mkdtemp(prefix="voiced-chromium-")
        self.log_path = os.path.join(artifacts_dir, "chromium.log")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone_wav}",
            "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required",
            "--window-size=1200,900", "about:blank",
        ], stdout=self._log, stderr=subprocess.STDOUT)
        self.factory: WebSocketClientFactory | None = None
        self._next_id = 0

    def _devtools_port(self, timeout_s: float = 30.0) -> int:
        # --remote-debugging-port=0 picks a free port and writes it here: no race for a port.
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.process.returncode}); see {self.log_path}")
            if os.path.exists(path):
                with open(path) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            time.sleep(0.1)
        raise RuntimeError(f"chromium did not open its DevTools port; see {self.log_path}")

    @inlineCallbacks
    def connect(self) -> Any:
        port = self._devtools_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        factory = WebSocketClientFactory(page["webSocketDebuggerUrl"])
        factory.protocol = _DevToolsProtocol
        factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)  # screenshots are large
        factory.opened, factory.pending, factory.events = Deferred(), {}, []
        self.factory = factory
        connectWS(factory)
        self.protocol = yield factory.opened
        yield self.send("Page.enable")
        yield self.send("Runtime.enable")

    def send(self, method: str, **params: Any) -> Deferred:
        assert self.factory is not None
        self._next_id += 1
        waiting: Deferred = Deferred()
        self.factory.pending[self._next_id] = waiting
        self.protocol.sendMessage(json.dumps({"id": self._next_id, "method": method, "params": params}).encode())
        return waiting

    @inlineCallbacks
    def evaluate(self, expression: str) -> Any:
        result = yield self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(json.dumps(result["exceptionDetails"])[:2000])
        return result.get("result", {}).get("value")

    @inlineCallbacks
    def wait_for(self, expression: str, timeout_s: float, interval_s: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; returns its value, or None after ``timeout_s``."""
        deadline = self.reactor.seconds() + timeout_s
        # Mid-navigation the document may be half there: an exception means "not yet".
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        while True:
            try:
                value = yield self.evaluate(guarded)
            except DevToolsError:
                value = None  # the page's context was replaced under the evaluation
            if value:
                return value
            if self.reactor.seconds() >= deadline:
                return None
            yield deferLater(self.reactor, interval_s, lambda: None)

    @inlineCallbacks
    def navigate(self, url: str) -> Any:
        yield self.send("Page.navigate", url=url)
        yield self.wait_for("document.readyState === 'complete'", 15)

    @inlineCallbacks
    def screenshot(self, name: str) -> Any:
        result = yield self.send("Page.captureScreenshot", format="png")
        path = os.path.join(self.artifacts_dir, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(result["data"]))
        return path

    def console_messages(self) -> list[str]:
        """What the page logged and threw (Runtime events), for a failure message."""
        out = []
        for event in (self.factory.events if self.factory else []):
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif event.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        return out

    def stop(self) -> None:
        if self.factory is not None and getattr(self, "protocol", None) is not None:
            self.protocol.dropConnection(abort=True)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
