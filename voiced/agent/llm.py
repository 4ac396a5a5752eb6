"""``VOICED_AGENT=openai``: an OpenAI-compatible Chat Completions model, streamed.

Any server speaking ``POST {base_url}/chat/completions`` with ``stream: true`` works
(OpenAI, vLLM, Ollama's ``/v1``, llama.cpp's server, LiteLLM and other gateways).
Every text delta goes to the call's sink the moment its bytes arrive, so the first
sentence is spoken while the model is still generating the rest.

What the model is given is ``voiced.agent.llm_messages``.

Tools: ``end_call`` is always offered, ``transfer_call`` when the operator listed
transfer targets (the model picks among them, never a number of its own or a
caller's); both become call actions (each at most once per reply); other tools come from ``tools_file`` and run through
the ``ToolRunner``, whose JSON result goes back to the model, which is asked again
(at most ``max_tool_rounds`` times). After a built-in action the model is asked again
only when it has not said anything yet in this reply -- so that it says goodbye --
and if it still says nothing, a fixed phrase is spoken: a caller never hears a
hang-up or a transfer without a word first. Tool exchanges are not kept from one
turn to the next: the history is what the caller heard.

A failed reply -- HTTP error, malformed stream, no first delta within
``first_token_timeout_s``, not finished within ``reply_timeout_s``, a stream that
ends without ``[DONE]`` or a finish reason -- fails with ``AgentError``; text already
pushed stays pushed (the call speaks what it had, then its apology). Cancelling the
Deferred (barge-in, hang-up) closes the HTTP connection, which stops generation. The
API key is sent only in the Authorization header (none when it is empty, for local
servers) and is never logged nor put in an error message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import treq.client
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.agent.base import AgentError, CallInfo, EndCall, ReplySink, TransferCall, TurnRequest
from voiced.agent.llm_messages import DEFAULT_SYSTEM_PROMPT, build_messages
from voiced.agent.sse import SSEError, SSEParser
from voiced.agent.variables import fill
from voiced.agent.tools import (
    END_CALL, TRANSFER_CALL, ToolRunner, builtin_tools, load_tools, parse_arguments, tool_error,
)
from voiced.httpbody import cancellable, read_body_prefix, stream_body
from voiced.lifecycle import note_construction
from voiced.options import default
from voiced.phrases import english

log = Logger()

_EN = english()
# Enough of an error body to hold the server's message.
ERROR_BODY_BYTES = 4096


@dataclass(frozen=True)
class LLMSettings:
    """The openai agent's settings, built from ``Settings`` by ``voiced.agent.factory``; the
    defaults are the options' (``voiced.options``), never copies."""

    base_url: str = default("openai_base_url")
    model: str = default("openai_model")
    api_key: str = field(default="", repr=False)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float | None = default("llm_temperature")
    max_tokens: int | None = default("llm_max_tokens") or None  # the option's 0: the server's default
    first_token_timeout_s: float = default("llm_first_token_timeout_ms") / 1000
    reply_timeout_s: float = default("llm_reply_timeout_ms") / 1000
    greeting: Sequence[str] = (_EN["greeting"],)
    # Spoken when the model takes a call action without a word, even when asked again.
    goodbye_phrase: str = _EN["goodbye"]
    transfer_phrase: str = _EN["transfer"]
    tools_file: str = ""
    max_tool_rounds: int = 4
    transfer_targets: Sequence[str] = ()  # transfer_call is offered only with these to choose from

    def __post_init__(self) -> None:
        # A list is accepted; a tuple keeps the frozen settings hashable.
        object.__setattr__(self, "greeting", tuple(self.greeting))
        object.__setattr__(self, "transfer_targets", tuple(self.transfer_targets))


class OpenAIAgent:
    """One per process: holds the settings, the HTTP client and the tool definitions."""

    name = "openai"

    def __init__(
        self,
        http: treq.client.HTTPClient,
        clock: IReactorTime,
        settings: LLMSettings,
        tools: ToolRunner | None = None,
    ) -> None:
        own_tools = load_tools(settings.tools_file) if settings.tools_file else []
        if own_tools and tools is None:
            raise ValueError(f"{settings.tools_file}: declares tools, but no tools URL is set to run them")
        self.http = http
        self.clock = clock
        self.settings = settings
        self.tool_runner = tools
        self.tool_definitions = [*builtin_tools(settings.transfer_targets), *own_tools]
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": ["application/json"], "Accept": ["text/event-stream"]}
        if settings.api_key:
            headers["Authorization"] = [f"Bearer {settings.api_key}"]
        self.headers = headers
        note_construction("agent_openai")

    def start_conversation(self, call: CallInfo) -> "OpenAIConversation":
        return OpenAIConversation(self, call)

    def fixed_phrases(self) -> list[str]:
        return [*self.settings.greeting, self.settings.goodbye_phrase, self.settings.transfer_phrase]

    def redact(self, text: str) -> str:
        """``text`` without the API key (a server may echo it in an error message)."""
        key = self.settings.api_key
        return text.replace(key, "***") if key else text


class OpenAIConversation:
    def __init__(self, agent: OpenAIAgent, call: CallInfo) -> None:
        self._agent = agent
        self._call = call

    def greeting(self) -> list[str]:
        return [fill(sentence, self._call.variables) for sentence in self._agent.settings.greeting]

    def respond(self, request: TurnRequest, sink: ReplySink) -> Deferred[None]:
        timeout = self._agent.settings.reply_timeout_s

        def timed_out(result: Any, _: float) -> None:
            raise AgentError(f"the model did not finish its reply within {timeout:g} s")

        d = Deferred.fromCoroutine(self._respond(request, sink))
        d.addTimeout(timeout, self._agent.clock, onTimeoutCancel=timed_out)
        return d

    async def _respond(self, request: TurnRequest, sink: ReplySink) -> None:
        agent = self._agent
        messages = build_messages(agent.settings, self._call, request)
        spoke = False
        acted: set[str] = set()
        asked_for_words = False
        for round_number in range(agent.settings.max_tool_rounds + 1):
            completion = await _Completion(agent, messages, sink).run()
            spoke = spoke or bool(completion.text.strip())
            if not completion.tool_calls:
                break
            if round_number == agent.settings.max_tool_rounds:
                log.warn("call {call_id}: the model still calls tools after {n} rounds",
                         call_id=self._call.call_id, n=round_number)
                break
            messages.append(completion.assistant_message())
            needs_model = False
            for call in completion.tool_calls:
                result, needs_answer = await self._run_tool(call, sink, acted)
                needs_model = needs_model or needs_answer
                content = result if isinstance(result, str) else json.dumps(result)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            if not needs_model:
                # Only call actions: done, once something has been said. A model that
                # stays silent even when asked again gets the fixed phrase below.
                if spoke or asked_for_words:
                    break
                asked_for_words = True
        if not spoke:
            if acted:
                settings = self._agent.settings
                sink.sentence(settings.transfer_phrase if TRANSFER_CALL in acted else settings.goodbye_phrase)
            else:
                raise AgentError("the model's reply held no words")

    async def _run_tool(self, call: "_ToolCall", sink: ReplySink, acted: set[str]) -> tuple[Any, bool]:
        """The tool's result for the model, and whether the model must see it to answer."""
        arguments = parse_arguments(call.arguments)
        if isinstance(arguments, str):
            return tool_error(arguments), True
        if call.name == END_CALL:
            if END_CALL not in acted:
                acted.add(END_CALL)
                sink.action(EndCall())
            return {"ok": True}, False
        if call.name == TRANSFER_CALL:
            to = arguments.get("to")
            targets = self._agent.settings.transfer_targets
            if not isinstance(to, str) or to.strip() not in targets:
                return tool_error(f"'to' must be one of {', '.join(targets) or 'no target (transfers are off)'}"), True
            if TRANSFER_CALL not in acted:
                acted.add(TRANSFER_CALL)
                sink.action(TransferCall(to.strip()))
            return {"ok": True}, False
        runner = self._agent.tool_runner
        known = {t["function"]["name"] for t in self._agent.tool_definitions}
        if runner is None or call.name not in known:
            return tool_error(f"there is no tool named {call.name!r}"), True
        return await runner.run(self._call, call.name, arguments), True




@dataclass
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class _Completion:
    """One streamed request to the model: its text goes to the sink as it arrives;
    the tool calls are assembled from their deltas."""

    def __init__(self, agent: OpenAIAgent, messages: list[dict[str, Any]], sink: ReplySink) -> None:
        self._agent = agent
        self._messages = messages
        self._sink = sink
        self._parser = SSEParser()
        self._pieces: list[str] = []
        self._calls: dict[int, _ToolCall] = {}
        self._finish_reason: str | None = None
        self._done = False
        self._first_delta_timer: IDelayedCall | None = None
        self._in_flight: Deferred[Any] | None = None
        self._first_delta_late = False

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    @property
    def tool_calls(self) -> list[_ToolCall]:
        return [call for _, call in sorted(self._calls.items()) if call.name]

    def assistant_message(self) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": self.text or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ],
        }

    async def run(self) -> "_Completion":
        settings = self._agent.settings
        self._first_delta_timer = self._agent.clock.callLater(
            settings.first_token_timeout_s, self._first_delta_expired)
        try:
            response = await self._wait(self._agent.http.post(
                self._agent.url, data=self._body(), headers=self._agent.headers, unbuffered=True))
            if response.code != 200:
                raise AgentError(await self._http_error(response))
            await self._wait(stream_body(response, self._received))
        except Exception as e:
            if self._first_delta_late:  # the timer cancelled the request
                raise AgentError(
                    f"no reply from the model within {settings.first_token_timeout_s:g} s") from None
            if isinstance(e, (AgentError, CancelledError)):
                # CancelledError: barge-in, hang-up or the reply timeout, from outside.
                raise
            if isinstance(e, SSEError):
                raise AgentError(f"malformed event stream: {e}") from None
            raise AgentError(f"the model's stream broke: {self._agent.redact(_describe(e))}") from None
        finally:
            self._stop_first_delta_timer()
        if not self._done and self._finish_reason is None:
            raise AgentError("the model's stream ended before the reply was complete")
        return self

    def _body(self) -> bytes:
        settings = self._agent.settings
        body: dict[str, Any] = {
            "model": settings.model,
            "messages": self._messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": self._agent.tool_definitions,
        }
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            body["max_tokens"] = settings.max_tokens
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    async def _wait(self, d: Deferred[Any]) -> Any:
        # Remembered so the first-delta timer can cancel whatever is in flight; a
        # cancel from outside reaches the wrapper, and so raises CancelledError.
        self._in_flight = d
        try:
            return await cancellable(d)
        finally:
            self._in_flight = None

    def _first_delta_expired(self) -> None:
        self._first_delta_timer = None
        self._first_delta_late = True
        if self._in_flight is not None:
            self._in_flight.cancel()

    def _stop_first_delta_timer(self) -> None:
        if self._first_delta_timer is not None and self._first_delta_timer.active():
            self._first_delta_timer.cancel()
        self._first_delta_timer = None

    async def _http_error(self, response: Any) -> str:
        body = await self._wait(read_body_prefix(response, ERROR_BODY_BYTES))
        message = ""
        try:
            error = json.loads(body).get("error")
            message = error.get("message", "") if isinstance(error, dict) else str(error or "")
        except (ValueError, AttributeError):
            pass
        detail = f": {self._agent.redact(message)[:300]}" if message else ""
        return f"the model answered HTTP {response.code}{detail}"

    def _received(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if self._done:
                return  # anything after [DONE] is ignored
            if event.data == "[DONE]":
                self._done = True
            else:
                self._chunk(event.data)

    def _chunk(self, data: str) -> None:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise AgentError("the model's stream held an event that is not JSON") from None
        if not isinstance(chunk, dict):
            raise AgentError("the model's stream held an event that is not a JSON object")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise AgentError(f"the model reported an error mid-stream: {self._agent.redact(str(message))[:300]}")
        for choice in chunk.get("choices") or []:  # [] in the usage chunk and on some servers
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._stop_first_delta_timer()
                self._pieces.append(content)
                self._sink.text(content)
            for position, piece in enumerate(delta.get("tool_calls") or []):
                self._stop_first_delta_timer()
                self._tool_delta(position, piece)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]

    def _tool_delta(self, position: int, piece: Any) -> None:
        if not isinstance(piece, dict):
            raise AgentError("the model's stream held a malformed tool call")
        index = piece.get("index", position)
        call = self._calls.setdefault(index, _ToolCall(id=f"call_{index}"))
        if piece.get("id"):
            call.id = piece["id"]
        function = piece.get("function") or {}
        if function.get("name"):
            call.name = function["name"]  # sent once; some servers repeat it
        if isinstance(function.get("arguments"), str):
            call.arguments += function["arguments"]


def _describe(error: Exception) -> str:
    # twisted.web's ResponseFailed wraps the real reasons in a list of Failures.
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(r.getErrorMessage() if isinstance(r, Failure) else str(r) for r in reasons)
    return str(error) or type(error).__name__
