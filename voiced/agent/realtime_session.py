"""One call's OpenAI Realtime session: the ``ModelSession`` a call in model mode talks to
(``voiced.call.speech_to_speech``), over a link the agent's connector opens.

At open it configures the session (``session.update``: instructions, voice, g711_ulaw both
ways, the caller's transcription, the turn detection, the tools) and asks for the greeting.
Frames of the caller's audio are appended as they come (kept, up to a few seconds, while the
socket connects). Server events go to the call's ``ModelPort``; tool calls are collected
until their response is done (they are also sent for a cancelled response, which runs none),
then ``end_call`` / ``transfer_call`` become call actions and the rest go to the tools URL,
their output back as ``function_call_output`` items and a new ``response.create``.

When the session is lost (a server ``error``, a handshake 5xx, a reset, a 1011) it is opened
again after a backoff, and the call so far (its turns as heard) is re-sent as items; the
caller hears the apology if a reply was lost. A refused key (401/403) or a session that
cannot come back ends the call politely. Never the daemon: everything stays in this call.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from voiced.agent import realtime_wire as wire
from voiced.agent.base import Action, AgentError, CallInfo, EndCall, ReplySink, Said, TransferCall, TurnRequest
from voiced.agent.llm_messages import call_context
from voiced.agent.realtime_link import LinkEnd, RealtimeLink
from voiced.agent.tools import END_CALL, TRANSFER_CALL, parse_arguments, tool_error
from voiced.agent.variables import fill

if TYPE_CHECKING:
    from voiced.agent.realtime import RealtimeAgent

log = Logger(namespace="voiced.agent")

#: Audio kept while the socket (re)connects: enough for an utterance, not a backlog.
PENDING_AUDIO_FRAMES = 250  # 5 s of 20 ms frames
#: A lost session is opened again after this, then twice as long, up to RECONNECTS times
#: in a row (a session that opens counts from zero again).
RECONNECT_BACKOFF_S = 0.5
RECONNECTS = 2
#: Statuses no new session mends: the key, the account, the permissions.
FATAL_STATUSES = frozenset({401, 403})


class ModelPort(Protocol):
    """The call as its session sees it: a call in model mode (``voiced.call.speech_to_speech.ModelTurns``)."""

    def model_speaking(self, response_id: str) -> None: ...
    def model_audio(self, response_id: str, item_id: str, audio: bytes) -> None: ...
    def model_transcript(self, response_id: str, text: str, done: bool) -> None: ...
    def model_action(self, action: Action) -> None: ...
    def model_done(self, response_id: str, status: str, more_coming: bool) -> None: ...
    def caller_committed(self, item_id: str) -> None: ...
    def caller_transcript(self, item_id: str, text: str) -> None: ...
    def caller_speech_started(self) -> None: ...

    def model_failed(self, reason: str, fatal: bool) -> None:
        """The session is lost: ``fatal``, for the rest of the call; else it is coming back."""

    def heard_history(self) -> list[Said]:
        """The call so far as the caller knows it (re-sent to a new session)."""


class RealtimeSession:
    """``Conversation`` for the agent contract, ``ModelSession`` for the call's model mode."""

    speaks_for_itself = True

    def __init__(self, agent: "RealtimeAgent", call: CallInfo) -> None:
        self._agent = agent
        self._call = call
        self.call_id = call.call_id
        self.server_turns = agent.settings.server_turns
        self._port: ModelPort | None = None
        self._link: RealtimeLink | None = None
        self._open = False
        self._closed = False
        self._pending: deque[bytes] = deque(maxlen=PENDING_AUDIO_FRAMES)  # audio before the socket opened
        self._queued: list[bytes] = []  # client events before the socket opened
        self._response: str | None = None
        self._calls: list[wire.FunctionCall] = []
        self._tools_running: list[Deferred[Any]] = []
        self._failures = 0
        self._reconnect: IDelayedCall | None = None
        self._resumed = False
        self._greeted = False  # a response has completed: a session lost before that greets again

    # ---- Conversation (the text path; a call in model mode never asks) ----------------------------
    def greeting(self) -> list[str]:
        return []  # the model greets in its own voice

    def respond(self, request: TurnRequest, sink: ReplySink) -> Deferred[None]:
        raise AgentError("the realtime agent answers the caller's audio, not text")  # never asked in model mode

    # ---- ModelSession ---------------------------------------------------------------------------------
    def open(self, port: ModelPort) -> None:
        self._port = port
        self._connect()
        self._send(self._greeting())

    def instructions(self) -> str:
        """The session's instructions: the prompt is a template an outbound call's variables fill, and
        the call's context follows it, as the text LLM's system message (voiced.agent.llm_messages)."""
        call = self._call
        parts = [fill(self._agent.settings.instructions, call.variables).strip(), call_context(call)]
        return "\n\n".join(part for part in parts if part)

    def _greeting(self) -> bytes:
        greeting = fill(self._agent.settings.greeting, self._call.variables)
        return wire.response_create(f"Greet the caller, in these words: {greeting}" if greeting else
                                    "Greet the caller briefly and ask how you can help.")

    def append(self, ulaw: bytes) -> None:
        if self._closed:
            return
        if self._open:
            self._link.send_event(wire.append_audio(ulaw))  # type: ignore[union-attr]
        else:
            self._pending.append(ulaw)

    def answer_turn(self) -> None:
        """The caller's turn is over (voiced's turn detection): their audio is committed, the model answers."""
        self._send(wire.commit_audio())
        self._send(wire.response_create())

    def tell(self, text: str) -> None:
        self._send(wire.user_text(text))
        self._send(wire.response_create())

    def cancel(self) -> None:
        if self._response is not None:
            self._send(wire.response_cancel())

    def truncate(self, item_id: str, end_ms: int) -> None:
        self._send(wire.truncate(item_id, end_ms))

    def close(self) -> None:
        self._closed = True
        self._port = None
        if self._reconnect is not None and self._reconnect.active():
            self._reconnect.cancel()
        for running in self._tools_running:
            running.cancel()
        if self._link is not None:
            self._link.finish(self._agent.clock)
            self._link = None

    # ---- RealtimeHandler: the link -----------------------------------------------------------------
    def link_opened(self, link: RealtimeLink) -> None:
        if link is not self._link:
            return
        self._open = True
        settings = self._agent.settings
        link.send_event(wire.session_update(self.instructions(), settings.voice, self.server_turns,
                                            self._agent.realtime_tools, ga=settings.ga))
        if self._resumed and self._port is not None:
            for said in self._port.heard_history():
                link.send_event(wire.history_item(said, ga=settings.ga))
            if not self._greeted:
                self._queued.insert(0, self._greeting())
        while self._pending:
            link.send_event(wire.append_audio(self._pending.popleft()))
        queued, self._queued = self._queued, []
        for event in queued:
            link.send_event(event)

    def link_garbled(self, link: RealtimeLink, error: str) -> None:
        log.warn("REALTIME_GARBLED call={call}: {error}", call=self.call_id, error=error)

    def link_closed(self, link: RealtimeLink, end: LinkEnd) -> None:
        if link is not self._link or self._closed:
            return
        self._lost(end.describe(), fatal=end.status in FATAL_STATUSES, opened=end.opened)

    def link_message(self, link: RealtimeLink, event: wire.Event) -> None:
        port = self._port
        if link is not self._link or port is None:
            return
        if isinstance(event, wire.AudioDelta):
            port.model_audio(event.response_id, event.item_id, event.audio)
        elif isinstance(event, wire.TranscriptDelta):
            port.model_transcript(event.response_id, event.delta, done=False)
        elif isinstance(event, wire.TranscriptDone):
            port.model_transcript(event.response_id, event.transcript, done=True)
        elif isinstance(event, wire.ResponseCreated):
            self._response, self._calls = event.response_id, []
            port.model_speaking(event.response_id)
        elif isinstance(event, wire.ResponseDone):
            self._response_done(event, port)
        elif isinstance(event, wire.FunctionCall):
            if event.response_id == self._response:
                self._calls.append(event)
        elif isinstance(event, wire.Committed):
            port.caller_committed(event.item_id)
        elif isinstance(event, wire.CallerTranscript):
            port.caller_transcript(event.item_id, event.transcript)
        elif isinstance(event, wire.SpeechStarted):
            port.caller_speech_started()
        elif isinstance(event, wire.SessionReady):
            self._failures = 0  # it works: a later loss gets its own reconnects
        elif isinstance(event, wire.ServerError):
            if event.the_clients_fault:
                # A refused client event (a cancel with nothing to cancel): the session goes on.
                log.info("REALTIME_REFUSED call={call} code={code}: {message}", call=self.call_id,
                         code=event.code or "-", message=event.message)
            else:
                self._lost(f"server error {event.code or event.kind}: {event.message}", fatal=False, opened=True)

    # ---- internals ------------------------------------------------------------------------------------
    def _send(self, event: bytes) -> None:
        if self._closed:
            return
        if self._open and self._link is not None:
            self._link.send_event(event)
        else:
            self._queued.append(event)

    def _connect(self) -> None:
        self._open = False
        self._link = self._agent.connector.connect(self)

    def _response_done(self, event: wire.ResponseDone, port: ModelPort) -> None:
        self._greeted = self._greeted or event.status == "completed"
        if event.response_id != self._response:
            port.model_done(event.response_id, event.status, more_coming=False)
            return
        self._response = None
        calls, self._calls = self._calls, []
        if event.status != "completed" or not calls:
            port.model_done(event.response_id, event.status, more_coming=False)
            return
        waiting = []
        for call in calls:
            outcome = self._builtin(call, port)
            if outcome is not None:
                self._send(wire.function_output(call.call_id, outcome))
            else:
                waiting.append(self._run_tool(call))
        if not waiting:
            # Only call actions: the goodbye (or the transfer's words) was this response's audio.
            port.model_done(event.response_id, event.status, more_coming=False)
            return
        port.model_done(event.response_id, event.status, more_coming=True)
        self._tools_running = waiting
        done = Deferred.fromCoroutine(self._gather(waiting))
        done.addCallback(lambda _: self._send(wire.response_create()))
        done.addErrback(lambda failure: None)  # cancelled with the call

    async def _gather(self, waiting: list[Deferred[Any]]) -> None:
        for running in waiting:
            await running
        self._tools_running = []

    def _builtin(self, call: wire.FunctionCall, port: ModelPort) -> Any:
        """A built-in tool's output (it becomes a call action), or None for the application's own."""
        if call.name == END_CALL:
            port.model_action(EndCall())
            return {"ok": True, "note": "the call ends once your reply has played"}
        if call.name == TRANSFER_CALL:
            arguments = parse_arguments(call.arguments)
            targets = self._agent.settings.transfer_targets
            to = arguments.get("to") if isinstance(arguments, dict) else None
            if to not in targets:
                return tool_error(f"'to' must be one of {', '.join(targets) or 'no target (transfers are off)'}")
            port.model_action(TransferCall(to))
            return {"ok": True}
        if call.name not in self._agent.tool_names or self._agent.tool_runner is None:
            return tool_error(f"there is no tool named {call.name!r}")
        arguments = parse_arguments(call.arguments)
        if isinstance(arguments, str):
            return tool_error(arguments)
        return None

    def _run_tool(self, call: wire.FunctionCall) -> Deferred[Any]:
        arguments = parse_arguments(call.arguments)
        assert isinstance(arguments, dict) and self._agent.tool_runner is not None
        log.info("TOOL call={call} tool={tool}", call=self.call_id, tool=call.name)
        running = self._agent.tool_runner.run(self._call, call.name, arguments)
        running.addCallback(lambda output: self._send(wire.function_output(call.call_id, output)))
        return running

    def _lost(self, reason: str, fatal: bool, opened: bool) -> None:
        """The session is gone: open it again (with the call so far), or end the call politely."""
        port = self._port
        if self._link is not None:
            self._link.abort()
        self._link, self._open, self._response = None, False, None
        self._failures += 1
        if fatal or self._failures > RECONNECTS:
            what = "the key was refused" if fatal else f"the session could not be restored after {RECONNECTS} tries"
            log.error("REALTIME_LOST call={call} reason={reason}: {what}", call=self.call_id, reason=reason, what=what)
            self._closed = True
            if port is not None:
                port.model_failed(f"OpenAI Realtime: {reason}", fatal=True)
            return
        delay = RECONNECT_BACKOFF_S * 2 ** (self._failures - 1)
        log.warn("REALTIME_RECONNECT call={call} reason={reason} in_s={delay}", call=self.call_id, reason=reason,
                 delay=delay)
        self._resumed = True
        self._queued = []  # asked of the lost session (its items are gone); the caller's audio is kept
        if port is not None:
            port.model_failed(f"OpenAI Realtime: {reason}", fatal=False)
        self._reconnect = self._agent.clock.callLater(delay, self._connect)
