"""A scriptable OpenAI-compatible chat-completions server (twisted.web, loopback).

It streams the way the OpenAI API does (``data: {chat.completion.chunk}`` events, a
blank line after each, ``data: [DONE]`` at the end, a ``choices: []`` usage chunk
when ``stream_options.include_usage`` is asked), and can misbehave on demand. Each
``POST /v1/chat/completions`` is answered by one *reply* of the script and recorded.

Script (JSON; every key optional)::

    {"default": REPLY,                     # for requests the list does not cover
     "replies": [REPLY | null, ...]}       # request k (from 1) gets replies[k-1]

    REPLY = {
      "say": ["First sentence.", "Second."],   # or one string; streamed a word per chunk
      "first_token_ms": 0,       # after the role chunk, before the first word or tool delta
      "word_gap_ms": 0,          # between words of a sentence
      "sentence_gap_ms": 0,      # before each sentence after the first
      "tool_calls": [{"name": "book", "arguments": {"day": "mon"}, "id": "call_1"}],
                                 # after the text; "arguments" an object or a raw string
                                 # (to send invalid JSON); streamed in pieces
      "argument_pieces": 3,      # how many chunks each tool's arguments are split over
      "status": 200,             # an error status answers {"error": {"message", "type", "code"}}
      "error": "message",        # that message
      "cut_after_words": null,   # close the TCP connection after this many words (mid-body)
      "truncate": false,         # end the body cleanly with no finish_reason and no [DONE]
      "done": true,              # send data: [DONE]
      "hang": false,             # never answer at all (not even headers)
      "keepalive": false,        # a ": keep-alive" comment before every event
      "split_writes": false,     # every event in 3 separate writes (cut mid-line, mid-UTF-8)
      "split_gap_ms": 2,         # pause between those writes
      "empty_choices": false,    # a chunk with "choices": [] right after the role chunk
      "inject": ["data: {oops\\n\\n"]  # raw text written as is after the role chunk
    }

Default: every request is answered "Hello from the fake model.".

Control endpoints: ``GET /_requests`` returns the recorded requests as JSON
(``[{"n", "path", "authorization", "body", "completed", "disconnected"}]``;
``disconnected`` means the client closed the connection before the reply ended);
``POST /_script`` replaces the script and starts counting requests (and recording)
afresh.

In a trial test: ``server = FakeOpenAIServer(script); port = server.listen(reactor)``,
``self.addCleanup(server.stop)``. As a process, for end-to-end tests::

    python -m tests.fakes.openai_server --port 0 [--script FILE]

prints ``listening on PORT`` on stdout once it accepts connections, and runs until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.web import http, server
from twisted.web.resource import Resource

DEFAULT_SCRIPT: dict[str, Any] = {"default": {"say": ["Hello from the fake model."]}}


@dataclass
class Reply:
    say: list[str] = field(default_factory=list)
    first_token_ms: float = 0
    word_gap_ms: float = 0
    sentence_gap_ms: float = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    argument_pieces: int = 3
    status: int = 200
    error: str = "The fake server was told to fail."
    cut_after_words: int | None = None
    truncate: bool = False
    done: bool = True
    hang: bool = False
    keepalive: bool = False
    split_writes: bool = False
    split_gap_ms: float = 2
    empty_choices: bool = False
    inject: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Reply":
        data = dict(data)
        if isinstance(data.get("say"), str):
            data["say"] = [data["say"]]
        return cls(**data)


_CUT = object()  # a timeline step: drop the connection
_END = object()  # a timeline step: finish the response


def _event(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n".encode("utf-8")


def _split(data: bytes) -> list[bytes]:
    # Cut right after "da", in the middle (often inside a multi-byte character when
    # the text has any) and between the two newlines that end the event.
    cuts = sorted({2, len(data) // 2, len(data) - 1})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def timeline(reply: Reply, model: str, include_usage: bool) -> list[tuple[float, Any]]:
    """(delay in seconds, bytes to write | _CUT | _END) steps for a streamed reply."""
    created = int(time.time())
    steps: list[tuple[float, Any]] = []

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, delay: float = 0.0) -> None:
        body: dict[str, Any] = {
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": None,
            "choices": [] if delta is None else
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        emit(delay, _event(body))

    def emit(delay: float, data: bytes) -> None:
        if reply.keepalive:
            steps.append((delay, b": keep-alive\n\n"))
            delay = 0.0
        if reply.split_writes:
            for i, piece in enumerate(_split(data)):
                steps.append((delay if i == 0 else reply.split_gap_ms / 1000, piece))
        else:
            steps.append((delay, data))

    chunk({"role": "assistant", "content": ""})
    if reply.empty_choices:
        chunk(None)
    for raw in reply.inject:
        steps.append((0.0, raw.encode("utf-8")))
    first = True
    words_sent = 0
    for sentence in reply.say:
        for position, word in enumerate(sentence.split()):
            if reply.cut_after_words is not None and words_sent >= reply.cut_after_words:
                steps.append((0.0, _CUT))
                return steps
            if first:
                gap = reply.first_token_ms
            else:
                gap = reply.sentence_gap_ms if position == 0 else reply.word_gap_ms
            chunk({"content": word if first else " " + word}, delay=gap / 1000)
            first = False
            words_sent += 1
    for index, call in enumerate(reply.tool_calls):
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        start = {"index": index, "id": call.get("id", f"call_fake{index}"), "type": "function",
                 "function": {"name": call["name"], "arguments": ""}}
        chunk({"tool_calls": [start]}, delay=(reply.first_token_ms if first else reply.word_gap_ms) / 1000)
        first = False
        size = max(1, -(-len(arguments) // max(1, reply.argument_pieces)))
        for offset in range(0, len(arguments), size):
            piece = {"index": index, "function": {"arguments": arguments[offset:offset + size]}}
            chunk({"tool_calls": [piece]}, delay=reply.word_gap_ms / 1000)
    if reply.cut_after_words is not None:
        steps.append((0.0, _CUT))
        return steps
    if not reply.truncate:
        chunk({}, finish="tool_calls" if reply.tool_calls else "stop")
        if include_usage:
            usage = {"prompt_tokens": 10, "completion_tokens": words_sent, "total_tokens": 10 + words_sent}
            emit(0.0, _event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                              "model": model, "choices": [], "usage": usage}))
        if reply.done:
            emit(0.0, _event("[DONE]"))
    steps.append((0.0, _END))
    return steps


class _Stream:
    """One request being answered along its timeline."""

    def __init__(self, owner: "FakeOpenAIServer", request: server.Request, record: dict[str, Any],
                 steps: list[tuple[float, Any]]) -> None:
        self._owner = owner
        self._request = request
        self._record = record
        self._steps = list(reversed(steps))
        self._timer: IDelayedCall | None = None
        self._over = False
        request.notifyFinish().addBoth(self._finished)

    def start(self) -> None:
        self._next()

    def _next(self) -> None:
        self._timer = None
        while self._steps and not self._over:
            delay, step = self._steps[-1]
            if delay > 0:
                self._steps[-1] = (0.0, step)
                self._timer = self._owner.reactor.callLater(delay, self._next)
                return
            self._steps.pop()
            if step is _CUT:
                # Not abortConnection: what was written must reach the client first.
                self._request.channel.transport.loseConnection()
                return
            if step is _END:
                self._request.finish()
                return
            self._request.write(step)

    def _finished(self, result: Any) -> None:
        self._over = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if result is None:
            self._record["completed"] = True
        else:
            self._record["disconnected"] = True
        self._owner._streams.discard(self)
        self._owner._changed()

    def abort(self) -> None:
        if not self._over:
            self._request.channel.transport.abortConnection()


class _Root(Resource):
    isLeaf = True

    def __init__(self, owner: "FakeOpenAIServer") -> None:
        super().__init__()
        self._owner = owner

    def render_GET(self, request: server.Request) -> bytes:
        if request.path == b"/_requests":
            return _json(request, self._owner.requests)
        return _error(request, 404, "not found")

    def render_POST(self, request: server.Request) -> Any:
        try:
            body = json.loads(request.content.read())
        except ValueError:
            return _error(request, 400, "the body is not JSON")
        if request.path == b"/_script":
            self._owner.set_script(body)
            return _json(request, {"ok": True})
        if request.path.rstrip(b"/").endswith(b"/chat/completions"):
            return self._owner._complete(request, body)
        return _error(request, 404, "not found")


def _json(request: server.Request, value: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(value).encode("utf-8")


def _error(request: server.Request, status: int, message: str) -> bytes:
    kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return _json(request, {"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


class _TrackedChannel(http.HTTPChannel):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.setTcpNoDelay(True)  # each write its own segment, like a real server
        self.site.owner._channels.add(self)

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.site.owner._channels.discard(self)
        self.site.owner._changed()


class FakeOpenAIServer:
    def __init__(self, script: dict[str, Any] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reactor: Any = None
        self.port = 0
        self._streams: set[_Stream] = set()
        self._channels: set[_TrackedChannel] = set()
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []
        self._listening: Any = None
        self.set_script(script if script is not None else DEFAULT_SCRIPT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set_script(self, script: dict[str, Any]) -> None:
        default = script.get("default") or DEFAULT_SCRIPT["default"]
        self._default = Reply.from_json(default)
        self._replies = [None if r is None else Reply.from_json(r) for r in script.get("replies", [])]
        self.requests = []

    def listen(self, reactor: Any, port: int = 0, interface: str = "127.0.0.1") -> int:
        self.reactor = reactor
        site = server.Site(_Root(self))
        site.protocol = _TrackedChannel
        site.owner = self  # type: ignore[attr-defined]
        site.noisy = False
        self._listening = reactor.listenTCP(port, site, interface=interface)
        self.port = self._listening.getHost().port
        return self.port

    def until(self, predicate: Callable[[], bool]) -> Deferred[None]:
        """Fires once ``predicate()`` holds (checked whenever a request or connection changes)."""
        if predicate():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append((predicate, d))
        return d

    def _changed(self) -> None:
        waiting, self._waiters = self._waiters, []
        for predicate, d in waiting:
            if predicate():
                d.callback(None)
            else:
                self._waiters.append((predicate, d))

    def stop(self) -> Deferred[Any]:
        """Stop listening, drop every open connection, fire once all are closed."""
        for stream in list(self._streams):
            stream.abort()
        closed = [self.until(lambda: not self._channels)]
        for channel in list(self._channels):
            channel.transport.abortConnection()
        if self._listening is not None:
            closed.append(self._listening.stopListening())
            self._listening = None
        return DeferredList(closed, fireOnOneErrback=True)

    def _complete(self, request: server.Request, body: dict[str, Any]) -> Any:
        number = len(self.requests) + 1
        auth = request.getHeader(b"authorization")
        auth = auth.decode("latin-1") if auth is not None else None
        record = {"n": number, "path": request.path.decode(), "authorization": auth,
                  "body": body, "completed": False, "disconnected": False}
        self.requests.append(record)
        reply = self._replies[number - 1] if number <= len(self._replies) else None
        reply = reply or self._default
        self._changed()
        if reply.status != 200:
            record["completed"] = True
            return _error(request, reply.status, reply.error)
        if not body.get("stream"):
            record["completed"] = True
            return _json(request, _whole_completion(reply, body.get("model", "")))
        if not reply.hang:
            request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            request.setHeader(b"cache-control", b"no-cache")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream = _Stream(self, request, record, [] if reply.hang else
                         timeline(reply, body.get("model", ""), include_usage))
        self._streams.add(stream)
        stream.start()
        return server.NOT_DONE_YET


def _whole_completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": " ".join(reply.say) or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.get("id", f"call_fake{i}"), "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c.get("arguments"), str)
                          else json.dumps(c.get("arguments", {}))}}
            for i, c in enumerate(reply.tool_calls)]
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--script", help="a JSON script file (see the module docstring)")
    options = parser.parse_args(argv)
    script = None
    if options.script:
        with open(options.script, encoding="utf-8") as f:
            script = json.load(f)
    from twisted.internet import reactor

    fake = FakeOpenAIServer(script)
    port = fake.listen(reactor, options.port, options.host)
    print(f"listening on {port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
