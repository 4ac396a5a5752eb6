"""Test doubles and helpers shared by several test modules (as txacme's ``testing.py``): a test
module imports what it shares from here, never from another ``test_*`` module.

Sections, in order: carrier sockets in process; the call core's engines and transport; thread
pools on a Clock; connections in memory on a Clock (MemoryNetwork: whole calls and HTTP
exchanges without wall-clock time); carrier messages for property tests; voiced-call's caller
and a scripted bot; the openai agent; Google STT against the loopback emulator; the Google
emulator. The loopback fakes that speak a real protocol over sockets live in ``tests/fakes/``; the turn-taking
harness in ``tests/turn_harness.py``.

Heavy client libraries (google-cloud-*, grpc, espeak) are imported where they are used, so a
module that needs only a Twilio socket does not load them.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from hypothesis import HealthCheck, settings, strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import Canned, RecordingApp, make_http_client, start_server
from tests.fakes.openai_server import FakeOpenAIServer
from voiced.agent.base import AgentError, CallInfo, Said, TurnRequest
from voiced.agent.llm import LLMSettings, OpenAIAgent
from voiced.agent.tools import ToolRunner
from voiced.audio import MULAW_8K, SAMPLE_RATE, AudioFormat, pcm16_to_ulaw, silence_ulaw, ulaw_to_pcm16
from voiced.carrier.twilio.protocol import TwilioAdmission, TwilioMediaStreamFactory
from voiced.carrier.twilio.wire import clear_message, mark_message, media_message, parse_message
from voiced.config import Settings
from voiced.metrics import Metrics
from voiced.stt.base import stt_input


# -- carrier sockets (Twilio's wire, in process) -----------------------------------------------------


HANDSHAKE = (
    b"GET /media HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes, opcode: int = 0x1, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    n = len(payload)
    header = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked frames the server wrote."""
    frames = []
    while data:
        opcode, n, pos = data[0] & 0x0F, data[1] & 0x7F, 2
        if n == 126:
            n, pos = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, pos = int.from_bytes(data[2:10], "big"), 10
        frames.append((opcode, data[pos : pos + n]))
        data = data[pos + n :]
    return frames


class RecordingCall:
    def __init__(self, stt_audio=MULAW_8K):
        self.events = []
        self.reasons = []  # what close was told
        self.stt_audio = stt_audio  # what the service chose for its STT (MULAW_8K: no 16 kHz copy)

    def start(self):
        self.events.append("start")

    def on_media(self, ulaw, stt_audio=None):
        self.events.append(("media", len(ulaw)) if stt_audio is None else ("media", len(ulaw), len(stt_audio)))
        self.stt_fed = stt_audio

    def on_mark(self, name):
        self.events.append(("mark", name))

    def on_dtmf(self, digit):
        self.events.append(("dtmf", digit))

    def close(self, reason=""):
        self.events.append("close")
        self.reasons.append(reason)


class RecordingService:
    """The call core a carrier sees (``voiced.carrier.base.CallCore``), recording its calls."""

    def __init__(self, settings=None, clock=None, stt_formats=frozenset({MULAW_8K})):
        self.settings = settings or Settings()
        self.clock = clock or Clock()
        self.stt_formats = stt_formats  # its STT engine's (by default one that takes 8 kHz mu-law only)
        self.metrics = Metrics()
        self.calls = []
        self.ended = []

    def admit(self):
        pass

    def new_call(self, start, transport, playout="carrier"):
        call = RecordingCall(stt_input(start.audio, self.stt_formats))  # chosen as VoicedService does
        self.calls.append((start, transport, call))
        return call

    def call_ended(self, call):
        self.ended.append(call)


def twilio_factory(service, clock, console=None):
    """Twilio's media socket factory over ``service``, admitting as ``service.settings`` say."""
    service.clock = clock
    settings = service.settings
    return TwilioMediaStreamFactory(service, TwilioAdmission(settings.twilio_auth_token, settings.public_host, console))


def start_message(seq=1, **media_format):
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **media_format}
    return json.dumps({"event": "start", "sequenceNumber": str(seq), "streamSid": "MZ1",
                       "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
                                 "customParameters": {"From": "+1"}, "mediaFormat": fmt}}).encode()

# -- the call core's engines and transport -----------------------------------------------------------


VOICED, SILENT = b"\x01" * 160, b"\xff" * 160


VOICED_PCM = ulaw_to_pcm16(VOICED)


class RecordingTransport:
    def __init__(self):
        self.sent = []

    def send_audio(self, ulaw):
        self.sent.append(("media", len(ulaw)))

    def send_mark(self, name):
        self.sent.append(("mark", name))

    def send_clear(self):
        self.sent.append(("clear",))

    def hang_up(self):
        self.sent.append(("hangup",))

    def marks(self):
        return [m[1] for m in self.sent if m[0] == "mark"]


class RecordingStream:
    def __init__(self, streaming):
        self.streaming = streaming
        self.fed = 0
        self.fed_audio = []
        self.speech_starts = 0
        self.flushes = 0
        self.pause_hints = []
        self.closed = False

    def feed(self, audio):
        self.fed += 1
        self.fed_audio.append(audio)

    def speech_started(self):
        self.speech_starts += 1

    def flush(self):
        self.flushes += 1

    def caller_pausing(self, paused):
        self.pause_hints.append(paused)

    def close(self):
        self.closed = True


class FakeSTT:
    name = "fake"

    def __init__(self, streaming):
        self.streaming = streaming
        self.stream = RecordingStream(streaming)

    def open_stream(self, call_id, listener, audio=MULAW_8K):
        self.stream.audio = audio
        return self.stream


class FakeTTS:
    name = "fake-tts"

    def __init__(self):
        self.pending = None  # when set, synthesis waits on Deferreds the test fires
        self.spoken = []

    def synthesize(self, text):
        self.spoken.append(text)
        if self.pending is not None:
            d = Deferred()
            self.pending.append(d)
            return d
        return succeed(b"\x00" * 1600 * len(text.split()))


class RecordingMetrics(Metrics):
    def __init__(self):
        super().__init__()
        self.turns = []

    def record_turn(self, call_id, turn, times):
        self.turns.append((turn, times.intervals_ms()))
        return super().record_turn(call_id, turn, times)


class ScriptedConversation:
    """Answers each request with what the test queued (a callable taking the sink)."""

    def __init__(self):
        self.requests = []
        self.answers = []

    def greeting(self):
        return ["Hello there."]

    def respond(self, request, sink):
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else (lambda sink: sink.sentence("Okay."))
        return answer(sink) or succeed(None)

# -- thread pools on a Clock -------------------------------------------------------------------------


class ThreadedClock(Clock):
    """A Clock that is also a reactor a thread pool reports back to: ``callFromThread``
    runs its call in the next iteration, as a real reactor's waker does."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.callLater(0, f, *args, **kw)


class ManualThreadPool:
    """``callInThreadWithCallback`` as ThreadPool speaks it, but each job runs (on the test's
    thread) only when the test says so: a batch in flight is a job not yet run."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None], f: Callable[..., Any],
                                 *args: Any, **kw: Any) -> None:
        self.jobs.append((on_result, f, args, kw))

    def run_next(self) -> None:
        on_result, f, args, kw = self.jobs.pop(0)
        try:
            result = f(*args, **kw)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


    def fail_all(self, error: BaseException) -> None:
        """The jobs waiting die in their thread with ``error`` (as ThreadPool reports a raise)."""
        while self.jobs:
            on_result = self.jobs.pop(0)[0]
            try:
                raise error
            except BaseException:
                on_result(False, Failure())


def settle(clock: Clock, pool: ManualThreadPool) -> None:
    """Run reactor iterations and pool jobs until nothing is left to do."""
    while clock.getDelayedCalls() or pool.jobs:
        clock.advance(0)
        while pool.jobs:
            pool.run_next()
        clock.advance(0)

# -- connections in memory, on a Clock ---------------------------------------------------------------


class MemoryNetwork:
    """A reactor whose TCP connections are made in memory and whose time is a Clock, and the
    loop that runs it: bytes move whenever they can, and time moves on only when nothing else
    can, straight to the next timer. A call on it takes no wall-clock time and comes out the
    same on any machine, however loaded. Autobahn keeps its timers (handshake and close
    timeouts) on it too while the test runs."""

    PORT = 8000  # what a server listens on in memory: no socket is opened

    def __init__(self, test: TestCase, start: float = 50.0) -> None:
        import txaio

        self.reactor = MemoryReactorClock()
        self.reactor.advance(start)
        self._completer = ConnectionCompleter(self.reactor)
        self._pumps: list[Any] = []
        test.patch(txaio.config, "loop", self.reactor)

    def settle(self) -> None:
        """Complete pending connections and move bytes until nothing moves at this instant."""
        moved = True
        while moved:
            moved = False
            while (pump := self._completer.succeedOnce()) is not None:
                self._pumps.append(pump)
                moved = True
            for pump in self._pumps:
                moved = pump.flush() or moved

    def run(self, d: Deferred[Any], limit_s: float = 600.0) -> Any:
        """Run until ``d`` fires; its result (or its failure, raised)."""
        deadline = self.reactor.seconds() + limit_s
        while True:
            self.settle()
            if d.called:
                break
            due = [call.getTime() for call in self.reactor.getDelayedCalls()]
            if not due:
                raise AssertionError("nothing left to happen, and the Deferred has not fired")
            if min(due) > deadline:
                raise AssertionError(f"still running after {limit_s} s on the clock")
            self.reactor.advance(max(0.0, min(due) - self.reactor.seconds()))
        results: list[Any] = []
        d.addBoth(results.append)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]


# -- carrier messages for property tests -------------------------------------------------------------


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


exotel_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)


@st.composite
def exotel_like(draw):
    """Messages shaped like Exotel's, with any field missing, retyped or garbled."""
    message = {"event": draw(st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "x"]))}
    for key in draw(st.sets(st.sampled_from(["sequence_number", "stream_sid", "streamSid", "start", "media",
                                              "mark", "dtmf", "stop"]))):
        message[key] = draw(exotel_json_values)
    if message["event"] == "start" and draw(st.booleans()):
        message["start"] = {"call_sid": draw(exotel_json_values), "media_format": {
            k: draw(exotel_json_values) for k in draw(st.sets(st.sampled_from(["encoding", "sample_rate", "bit_rate"])))},
            "custom_parameters": draw(exotel_json_values)}
    if message["event"] == "media" and draw(st.booleans()):
        message["media"] = {"payload": base64.b64encode(draw(st.binary(max_size=400))).decode(),
                            "chunk": draw(exotel_json_values)}
    return json.dumps(message)


telnyx_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)


@st.composite
def telnyx_like(draw):
    """Messages shaped like Telnyx's, with any field missing, retyped or garbled."""
    message = {"event": draw(st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "error",
                                              "other"]))}
    for key in draw(st.sets(st.sampled_from(["sequence_number", "stream_id", "start", "media", "mark", "dtmf",
                                              "stop", "payload"]))):
        message[key] = draw(telnyx_json_values)
    if message["event"] == "media" and draw(st.booleans()):
        message["media"] = {"payload": base64.b64encode(draw(st.binary(max_size=400))).decode(),
                            "chunk": draw(st.integers(-5, 50) | st.text(max_size=3) | telnyx_json_values)}
    if message["event"] == "start" and draw(st.booleans()):
        message["start"] = {"call_control_id": draw(telnyx_json_values), "media_format": draw(telnyx_json_values),
                            "custom_parameters": draw(telnyx_json_values)}
    return json.dumps(message)

# -- voiced-call's caller and a scripted bot ---------------------------------------------------------


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tone(ms: int, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    return pcm16_to_ulaw((amplitude * np.sin(2 * math.pi * freq * t)).astype(np.int16).tobytes())


def rms(ulaw: bytes) -> float:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
    return float(np.sqrt((pcm**2).mean())) if len(pcm) else 0.0


class FakeLink:
    """Stands in for the WebSocket in Clock tests: records what the caller sent (Twilio's JSON
    text frames only), stamped with the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, dict]] = []
        self.hung_up = False

    def send(self, message: str | bytes) -> None:
        assert isinstance(message, str), "Twilio sends text frames only"
        self.sent.append((self.clock.seconds(), json.loads(message)))

    def hang_up(self) -> None:
        self.hung_up = True

    def events(self, event: str) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.sent if m["event"] == event]


def run_until(clock: Clock, t: float, origin: float = 50.0) -> None:
    """Advance ``clock`` to ``origin + t``, firing every timer at its own due time."""
    target = origin + t
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= target]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()) + 1e-9)
    clock.advance(max(0.0, target - clock.seconds()))


class ScriptedBot(WebSocketServerProtocol):
    """A stand-in daemon: greets, answers each caller utterance (energy-based end of
    speech: ``end_silence_frames`` silent frames), sends clear when talked over, hangs up when told to."""

    def onConnect(self, request):  # noqa: N802 - Autobahn's name
        if self.factory.deny:
            raise ConnectionDeny(403, "not a Twilio signature")
        self.request = request

    def onOpen(self) -> None:  # noqa: N802
        self.clock = self.factory.clock
        self.t0 = self.clock.seconds()
        self.inbox: list[tuple[float, dict]] = []
        self.sent_marks: dict[str, float] = {}
        self.echoes: dict[str, float] = {}
        self.clears: list[float] = []
        self.stream_sid = ""
        self.replies = list(self.factory.replies)
        self.answered = self.said = 0
        self.playing = ""  # the reply whose end mark has not come back yet
        self.voiced = self.silent = 0
        self.in_speech = False
        self.timers: list = []
        self.closed = Deferred()
        self.factory.bots.append(self)

    def now(self) -> float:
        return self.clock.seconds() - self.t0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        msg = json.loads(payload)
        self.inbox.append((self.now(), msg))
        if msg["event"] == "start":
            self.stream_sid = msg["start"]["streamSid"]
            self.send(mark_message(self.stream_sid, "idle"))
            self.sent_marks["idle"] = self.now()
            if self.factory.greeting:
                self.say(self.factory.greeting)
        elif msg["event"] == "media":
            self.hear(parse_message(payload).payload)
        elif msg["event"] == "mark":
            name = msg["mark"]["name"]
            self.echoes[name] = self.now()
            if name == f"{self.playing}.end":
                self.playing = ""
                if self.factory.hang_up_after is not None and self.answered >= self.factory.hang_up_after:
                    self.sendClose(1000)

    def hear(self, frame: bytes) -> None:
        if rms(frame) > 500:
            self.voiced, self.silent = self.voiced + 1, 0
            if self.voiced == 3:
                self.in_speech = True
                if self.playing:  # talked over: stop at once
                    self.send(clear_message(self.stream_sid))
                    self.clears.append(self.now())
        else:
            self.voiced, self.silent = 0, self.silent + 1
            if self.in_speech and self.silent == self.factory.end_silence_frames:
                self.in_speech = False
                if self.replies:
                    self.timers.append(self.clock.callLater(self.factory.reply_delay_s, self.say, self.replies.pop(0)))

    def say(self, audio: bytes) -> None:
        name = f"r{self.said}"
        self.said += 1
        self.answered += name != "r0" or not self.factory.greeting
        half = len(audio) // 2
        for kind, item in (
            ("mark", f"{name}.start"),
            ("media", audio[:half]),
            ("mark", f"{name}.s0"),
            ("media", audio[half:]),
            ("mark", f"{name}.end"),
        ):
            if kind == "mark":
                self.sent_marks[item] = self.now()
                self.send(mark_message(self.stream_sid, item))
            else:
                self.send(media_message(self.stream_sid, item))
        self.playing = name

    def send(self, text: str) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(text.encode(), False)

    def onClose(self, wasClean, code, reason) -> None:  # noqa: N802
        for timer in getattr(self, "timers", []):
            if timer.active():
                timer.cancel()
        if hasattr(self, "closed"):
            self.closed.callback(code)

    def events(self, event: str) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.inbox if m["event"] == event]


def serve_scripted_bot(
    test: TestCase,
    greeting: bytes,
    replies: tuple[bytes, ...],
    hang_up_after: int | None = None,
    deny: bool = False,
    on: Any = reactor,
) -> tuple[WebSocketServerFactory, str]:
    """A ScriptedBot listening on loopback until ``test`` ends: its factory and URL. ``on`` is
    the reactor it listens and keeps time on (a MemoryNetwork's, for a call on a Clock)."""
    factory = WebSocketServerFactory()
    factory.clock = on
    factory.protocol = ScriptedBot
    factory.setProtocolOptions(closeHandshakeTimeout=1)
    factory.greeting, factory.replies, factory.hang_up_after, factory.deny = greeting, replies, hang_up_after, deny
    factory.reply_delay_s = 0.1
    factory.end_silence_frames = 6
    factory.bots = []
    port = on.listenTCP(MemoryNetwork.PORT if isinstance(on, MemoryReactorClock) else 0, factory,
                        interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return factory, f"ws://127.0.0.1:{port.getHost().port}/media"


# -- the openai agent --------------------------------------------------------------------------------


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

# -- Google STT against the loopback emulator --------------------------------------------------------


_PERIOD = 64  # samples: a 125 Hz voice


def buzz(n: int, ms: int) -> bytes:
    """A voice-like tone whose harmonics' phases are seeded by ``n`` (distinct per utterance)."""
    rng = np.random.default_rng(n)
    t = np.arange(_PERIOD)
    wave = sum((1.0 / h) * np.sin(2 * np.pi * h * t / _PERIOD + rng.uniform(0, 2 * np.pi)) for h in range(1, 20))
    wave = wave / np.abs(wave).max() * 8000
    samples = SAMPLE_RATE * ms // 1000
    return pcm16_to_ulaw(np.tile(wave, samples // _PERIOD + 1)[:samples].astype(np.int16).tobytes())


class NumberedRecognizer:
    """The emulator's Recognizer: "utterance N" for each numbered buzz found in the audio."""

    def __init__(self, count: int = 400) -> None:
        # One period, taken whole: it occurs in any stretch of two periods of that utterance.
        self._signatures = {n: buzz(n, 100)[_PERIOD * 3 : _PERIOD * 4] for n in range(1, count + 1)}

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        return " ".join(f"utterance {n}" for n, sig in self._signatures.items() if sig in ulaw)


class Recorder:
    """A TranscriptListener that keeps everything in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.retries: list[str] = []

    def on_transcript(self, text: str, is_final: bool) -> None:
        self.events.append(("final" if is_final else "partial", text))

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        self.events.append(("failure", reason))

    def on_fallback_transcript(self, text: str) -> None:
        self.events.append(("final", text))

    def on_stt_retry(self, error: str) -> None:
        self.retries.append(error)

    def of(self, kind: str) -> list[object]:
        return [value for k, value in self.events if k == kind]


class FallbackTranscriber:
    """A Transcriber double: says how much audio it got, or never answers when told to hang."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.calls: list[bytes] = []
        self.formats: list[AudioFormat] = []
        self.cancelled = 0

    def transcribe(self, audio: bytes, fmt: AudioFormat = MULAW_8K) -> Deferred[str]:
        self.calls.append(audio)
        self.formats.append(fmt)
        if self.hang:
            return Deferred(lambda d: setattr(self, "cancelled", self.cancelled + 1))
        return succeed(f"fallback heard {len(audio)} bytes")


class LogLines:
    """Formatted voiced.google.* log lines, with hooks run as each line arrives."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.hooks: list = []

    def __call__(self, event: dict) -> None:
        if str(event.get("log_namespace", "")).startswith("voiced.google") and event.get("log_format"):
            line = formatEvent(event)
            self.lines.append(line)
            for hook in list(self.hooks):
                hook(line)

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]


async def until(predicate, timeout: float = 10.0, what="condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await deferLater(reactor, 0.005)


class GoogleEmulatorCase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.recognizer = NumberedRecognizer()
        self.logs = LogLines()
        globalLogPublisher.addObserver(self.logs)
        self.addCleanup(globalLogPublisher.removeObserver, self.logs)
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="test-stt")  # the speech loop's thread
        self.pool.start()
        self.addCleanup(self.pool.stop)  # last: the clients have stopped the loop by then

    def start_engine(
        self,
        faults: Any = None,
        fallback=None,
        backoff: Any = None,
        rollover_s: float = 240.0,
        **settings,
    ) -> Any:
        from voiced.emulator.server import Emulator
        from voiced.google.clients import GoogleClients
        from voiced.google.stt import GoogleSTTEngine
        from voiced.retry import Backoff

        self.emulator = Emulator(faults=faults, recognizer=self.recognizer)
        port = self.emulator.start()
        self.addCleanup(self.emulator.stop)
        self.settings = Settings(google_endpoint=f"127.0.0.1:{port}", google_insecure=True, **settings)
        self.clients = GoogleClients(self.settings, reactor)
        self.clients.start(self.pool)
        self.addCleanup(self.clients.stop)
        return GoogleSTTEngine(
            self.clients,
            self.settings,
            reactor,
            fallback,
            rollover_s=rollover_s,
            backoff=backoff or Backoff.from_ms(200, 1600, 4),
        )

    def open(self, engine: Any, call_id: str = "CA1"):
        listener = Recorder()
        stream = engine.open_stream(call_id, listener)
        self.addCleanup(stream.close)
        return stream, listener


# -- the Google emulator -----------------------------------------------------------------------------


PHRASE = "what time do you open"


CHUNK = 800  # 100 ms of 8 kHz mu-law


TIMEOUT = 15.0


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def utterance() -> bytes:
    """Espeak saying PHRASE with silence around it, 8 kHz mu-law (~2.2 s)."""
    from voiced.tts.local import EspeakSynthesizer

    return silence_ulaw(300) + EspeakSynthesizer("en-US").synthesize_blocking(PHRASE) + silence_ulaw(600)


def streaming_config(
    language: str = "en-US", model: str = "phone_call", encoding: str = "MULAW", rate: int = 8000, **kw: bool
) -> Any:
    from google.cloud import speech

    config = speech.RecognitionConfig(encoding=encoding, sample_rate_hertz=rate, language_code=language, model=model)
    return speech.StreamingRecognitionConfig(config=config, **kw)


def audio_requests(audio: bytes, chunk: int = CHUNK) -> Iterator[Any]:
    from google.cloud import speech

    for i in range(0, len(audio), chunk):
        yield speech.StreamingRecognizeRequest(audio_content=audio[i : i + chunk])


def finals(responses: list[Any]) -> list[str]:
    return [r.results[0].alternatives[0].transcript for r in responses if r.results and r.results[0].is_final]


def interims(responses: list[Any]) -> list[str]:
    return [r.results[0].alternatives[0].transcript for r in responses if r.results and not r.results[0].is_final]


class StatsWatch:
    """Waits for the emulator's counters to reach a state, woken by each change (the server
    updates them from its own threads), instead of polling on a timer."""

    def __init__(self, test: Any, stats: Any) -> None:
        self._stats = stats
        self._changed = threading.Condition()
        add = stats.add

        def add_and_notify(**deltas: int) -> None:
            add(**deltas)
            with self._changed:
                self._changed.notify_all()

        test.patch(stats, "add", add_and_notify)

    def until(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> None:
        """Return once ``predicate(stats)`` holds; fail with the counters if it never does."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._stats), timeout):
                raise AssertionError(f"the emulator's counters never got there: {self._stats.snapshot()}")
