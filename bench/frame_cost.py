"""The daemon's own CPU share per 20 ms frame and per turn, in process, no sockets.

Per frame (one inbound Twilio media message = 20 ms of caller audio):
  parse        voiced.carrier.twilio.parse_message on a real media JSON frame
  vad          webrtcvad alone (mu-law -> PCM16 + its C call), as the EOU calls it
  eou          EndOfUtterance.push (VAD + noise floor + timing)
  on_media     Call.on_media: EOU with the real webrtcvad + the turn machine, a
               recording transport, a no-op STT stream
  +capture     the same with the local engine's utterance capture (LocalSTTStream.feed)
  full path    WebSocket frame bytes -> MediaStreamProtocol.dataReceived (whole text frames are
               unmasked and UTF-8-decoded there; anything else goes through Autobahn)
               -> parse + sequence check -> Call.on_media, on an in-memory transport
  audiosocket full path (--carrier audiosocket): AudioSocket frame bytes (20 ms of 8 kHz slin)
               -> AudioSocketProtocol.dataReceived -> the CallLink's slin -> mu-law -> Call.on_media
Outbound (the bot's reply, sent in 3200-byte = 400 ms messages):
  media_message, protocol.send_audio (+ Autobahn framing), mark_message; reported per
  message and per 20 ms of audio.
Per turn: a synthetic caller turn through the turn machine on a Clock with instant fake
engines (or the real script agent + phrase cache): the daemon's overhead from the
end-of-utterance decision to the first reply audio sent, in microseconds.

Numbers only, from one run: the machine is shared, so compare ratios and percentiles.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from time import perf_counter_ns
from typing import Any, Callable

import benchlib  # noqa: F401  (puts the repo on sys.path)
import txaio
from autobahn.util import hltype, hlval
from benchlib import DEFAULT_LINES, summarize, synthesize_lines, with_line_noise
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogBeginner
from twisted.python.failure import Failure

from voiced.agent.base import CallInfo
from voiced.audio import FRAME_BYTES, SAMPLE_RATE, audioop, frames, silence_ulaw
from voiced.turns.eou import EndOfUtterance, SpeechEnded
from voiced.turns.vad import WebRtcVoiceActivity
from voiced.call.reply import AUDIO_CHUNK_BYTES
from voiced.call.turn import Call, State, TurnSettings
from voiced.caller.carriers.twilio import TwilioStream
from voiced.carrier.twilio import wire as twilio
from voiced.carrier.twilio.protocol import TwilioAdmission, TwilioMediaStreamFactory
from voiced.config import Settings
from voiced.logging import make_observer
from voiced.metrics import Metrics
from voiced.audio import MULAW_8K, AudioFormat
from voiced.stt.base import STT_FORMATS, stt_input
from voiced.stt.local import LocalSTTStream
from voiced.tts.speaker import PhraseCache, Speaker

FRAMES_PER_CALL_SECOND = 1000 // 20
US = 1000.0  # ns per microsecond


# ---- fakes (bench-only) -------------------------------------------------------------------
class RecordingTransport:
    """CallTransport that keeps counts and the time of the first audio and first sentence mark."""

    def __init__(self) -> None:
        self.marks: list[str] = []
        self.audio_messages = 0
        self.clears = 0
        self.first_audio_ns: int | None = None
        self.first_sentence_ns: int | None = None

    def send_audio(self, ulaw: bytes) -> None:
        if self.first_audio_ns is None:
            self.first_audio_ns = perf_counter_ns()
        self.audio_messages += 1

    def send_mark(self, name: str) -> None:
        if self.first_sentence_ns is None and name.endswith(".s0") and self.first_audio_ns is not None:
            self.first_sentence_ns = perf_counter_ns()
        self.marks.append(name)

    def send_clear(self) -> None:
        self.clears += 1

    def hang_up(self) -> None:
        pass


class NullStream:
    streaming = False

    def feed(self, ulaw: bytes) -> None:
        pass

    def speech_started(self, ms_ago: int = 0) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullSTT:
    name = "null"
    streaming = False
    formats = STT_FORMATS  # as both real engines: a wideband carrier's call gets 16 kHz STT audio

    def open_stream(self, call_id: str, listener: Any, audio: AudioFormat = MULAW_8K) -> NullStream:
        return NullStream()


class PendingTranscriber:
    """A Transcriber whose results never come: LocalSTTStream's capture cost alone."""

    def transcribe(self, audio: bytes, fmt: AudioFormat = MULAW_8K) -> Deferred[str]:
        return Deferred()


class CaptureSTT:
    name = "local-capture"
    streaming = False

    def open_stream(self, call_id: str, listener: Any, audio: AudioFormat = MULAW_8K) -> LocalSTTStream:
        return LocalSTTStream(call_id, listener, PendingTranscriber(), audio)


class InstantStream(NullStream):
    """An utterance engine with a zero-time model: the final arrives on the next reactor turn,
    as a thread pool's result would (never synchronously inside flush)."""

    def __init__(self, listener: Any, clock: Clock, text: str, stamps: dict[str, int]) -> None:
        self._listener, self._clock, self._text, self._stamps = listener, clock, text, stamps

    def flush(self) -> None:
        self._clock.callLater(0, self._deliver)

    def _deliver(self) -> None:
        self._stamps["final"] = perf_counter_ns()
        self._listener.on_transcript(self._text, True)


class InstantSTT:
    name = "instant"
    streaming = False

    def __init__(self, clock: Clock, text: str, stamps: dict[str, int]) -> None:
        self._clock, self._text, self._stamps = clock, text, stamps

    def open_stream(self, call_id: str, listener: Any, audio: AudioFormat = MULAW_8K) -> InstantStream:
        return InstantStream(listener, self._clock, self._text, self._stamps)


class InstantTTS:
    name = "instant"

    def __init__(self, audio: bytes) -> None:
        self._audio = audio

    def synthesize(self, text: str) -> Deferred[bytes]:
        return succeed(self._audio)


class InstantConversation:
    def __init__(self, sentences: list[str]) -> None:
        self._sentences = sentences

    def greeting(self) -> list[str]:
        return ["Hello."]

    def respond(self, request: Any, sink: Any) -> Deferred[None]:
        for sentence in self._sentences:
            sink.sentence(sentence)
        return succeed(None)


class TimedEOU(EndOfUtterance):
    """EndOfUtterance that stamps the moment it decides the caller's turn is over."""

    ended_ns: int | None = None

    def push(self, ulaw: bytes) -> list:  # type: ignore[type-arg]
        events = super().push(ulaw)
        if any(isinstance(e, SpeechEnded) for e in events):
            self.ended_ns = perf_counter_ns()
        return events


# ---- building blocks ----------------------------------------------------------------------
SETTINGS = Settings()


def new_eou(clock: Clock, cls: type[EndOfUtterance] = EndOfUtterance) -> EndOfUtterance:
    vad = WebRtcVoiceActivity(SETTINGS.vad_aggressiveness)
    return cls(clock, vad, SETTINGS.eou_silence_ms, SETTINGS.min_speech_ms)


def new_call(clock: Clock, transport: Any, stt: Any, speaker: Speaker, conversation: Any,
             eou: EndOfUtterance | None = None, call_id: str = "CAbench", stt_audio: AudioFormat = MULAW_8K) -> Call:
    info = CallInfo(call_id=call_id, stream_id="MZbench")
    settings = TurnSettings(barge_in_ms=SETTINGS.barge_in_ms, final_timeout_ms=SETTINGS.stt_final_timeout_ms,
                            fallback_timeout_ms=SETTINGS.stt_fallback_timeout_ms)
    return Call(info, clock, transport, stt, speaker, conversation, eou or new_eou(clock), Metrics(), settings,
                stt_audio=stt_audio)


def listening_call(clock: Clock, transport: RecordingTransport, stt: Any, speaker: Speaker, conversation: Any,
                   eou: EndOfUtterance | None = None) -> Call:
    """A call past its greeting (greeting played, marks echoed): LISTENING."""
    call = new_call(clock, transport, stt, speaker, conversation, eou)
    call.start()
    echo_marks(call, transport)
    assert call.state is State.LISTENING, call.state
    return call


def echo_marks(call: Call, transport: RecordingTransport) -> None:
    marks, transport.marks = transport.marks, []
    for name in marks:
        call.on_mark(name)


def time_each(fn: Callable[[Any], Any], items: list[Any], before: Callable[[], Any] | None = None) -> list[float]:
    """Microseconds per call of fn(item); ``before`` runs untimed ahead of each call."""
    out = []
    for item in items:
        if before is not None:
            before()
        t0 = perf_counter_ns()
        fn(item)
        out.append((perf_counter_ns() - t0) / US)
    return out


def caller_audio(lines: list[bytes], call_seconds: float) -> list[bytes]:
    """A caller's side of a call: 1 s of line noise, a line, 1 s of noise, the next line...
    repeated to ``call_seconds``, cut into 20 ms frames."""
    gap = silence_ulaw(1000)
    one_round = b"".join(gap + line for line in lines) + gap
    audio = b""
    while len(audio) < call_seconds * SAMPLE_RATE:
        audio += one_round
    return frames(with_line_noise(audio[: int(call_seconds * SAMPLE_RATE)]))


# ---- the WebSocket path -------------------------------------------------------------------
class BenchService:
    """The call core a carrier needs (VoicedService's part of it), with calls built from bench parts."""

    def __init__(self, clock: Clock, make_call: Callable[[Any, Any], Call]) -> None:
        self.clock = clock
        self.metrics = Metrics()
        self.settings = SETTINGS
        self._make_call = make_call
        self.calls: list[Call] = []

    def admit(self) -> None:
        pass

    def new_call(self, start: Any, transport: Any, playout: str = "carrier") -> Call:
        call = self._make_call(start, transport)
        self.calls.append(call)
        return call

    def call_ended(self, call: Call) -> None:
        pass


HANDSHAKE = (
    b"GET /media HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(message: str | bytes, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """One masked frame, as a WebSocket client (a carrier) sends it: text for a str, binary for bytes."""
    binary = isinstance(message, bytes)
    payload = message if binary else message.encode()
    first = 0x82 if binary else 0x81
    n = len(payload)
    if n < 126:
        header = bytes([first, 0x80 | n])
    elif n < 65536:
        header = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return header + mask + masked


def open_protocol(clock: Clock, service: BenchService, factory: Any = None,
                  path: str = "/media") -> tuple[Any, StringTransport]:
    # Autobahn's own timers (handshake timeout, auto-ping) on a clock that never moves: a
    # ping unanswered by the bench would otherwise drop the connection mid-measurement.
    txaio.config.loop = Clock()
    factory = factory or TwilioMediaStreamFactory(service, TwilioAdmission("", ""))
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto.makeConnection(transport)
    proto.dataReceived(HANDSHAKE.replace(b" /media ", f" {path} ".encode()))
    if b"101 Switching Protocols" not in transport.value():
        raise RuntimeError(f"WebSocket handshake failed: {transport.value()[:200]!r}")
    transport.clear()
    return proto, transport


# ---- the measurements -----------------------------------------------------------------------
def per_frame(frames_in: list[bytes], passes: int) -> dict[str, list[float]]:
    stream = TwilioStream("ACbench", "CAbench", "MZbench", {"From": "+15550100", "To": "+15550199"})
    json_frames = [stream.media(f, i * 20).encode() for i, f in enumerate(frames_in)]
    speaker = Speaker(InstantTTS(silence_ulaw(1000)), None, PhraseCache())
    rows: dict[str, list[float]] = {k: [] for k in ("parse", "vad", "eou", "on_media", "on_media+capture",
                                                     "protocol.onMessage", "autobahn debug args",
                                                     "full path")}
    for _ in range(passes):
        rows["parse"] += time_each(twilio.parse_message, json_frames)

        classify = WebRtcVoiceActivity(SETTINGS.vad_aggressiveness).open(lambda p: None).push  # what the EOU calls
        rows["vad"] += time_each(lambda frame: classify(audioop.ulaw2lin(frame, 2)), frames_in)

        clock = Clock()
        eou = new_eou(clock)
        rows["eou"] += time_each(eou.push, frames_in, before=lambda: clock.advance(0.02))

        for name, stt in (("on_media", NullSTT()), ("on_media+capture", CaptureSTT())):
            clock = Clock()
            call = listening_call(clock, RecordingTransport(), stt, speaker, InstantConversation(["Hi."]))
            rows[name] += time_each(call.on_media, frames_in, before=lambda: clock.advance(0.02))

        clock = Clock()

        def make_call(start: Any, transport: Any) -> Call:
            return new_call(clock, transport, NullSTT(), speaker, InstantConversation(["Hi."]),
                            call_id=start.call_id)

        stream = TwilioStream("ACbench", "CAbench", "MZbench", {})
        proto, wire = open_protocol(clock, BenchService(clock, make_call))
        proto.dataReceived(client_frame(stream.connected()))
        proto.dataReceived(client_frame(stream.start()))
        ws_frames = [client_frame(stream.media(f, i * 20)) for i, f in enumerate(frames_in)]

        def before() -> None:
            clock.advance(0.02)
            wire.clear()

        rows["full path"] += time_each(proto.dataReceived, ws_frames, before=before)
        if proto.link.call is None or proto.link.closing:
            raise RuntimeError("the bench's media socket closed: the full path did not reach the call")
        proto.connectionLost(Failure(ConnectionDone()))

        # The same without Autobahn: what voiced's protocol does with a decoded message.
        stream = TwilioStream("ACbench", "CAbench2", "MZbench2", {})
        proto, wire = open_protocol(clock, BenchService(clock, make_call))
        proto.onMessage(stream.connected().encode(), False)
        proto.onMessage(stream.start().encode(), False)
        payloads = [stream.media(f, i * 20).encode() for i, f in enumerate(frames_in)]
        rows["protocol.onMessage"] += time_each(lambda m: proto.onMessage(m, False), payloads, before=before)
        if proto.link.call is None or proto.link.closing:
            raise RuntimeError("the bench's media socket closed: onMessage did not reach the call")
        # Autobahn 26 builds colored arguments for a debug line on every dataReceived and
        # discards them when debug is off: wasted work the full path pays.
        peer = proto.peer
        rows["autobahn debug args"] += time_each(
            lambda n: (hltype(proto.dataReceived), hlval(peer), hlval(n)), [len(w) for w in ws_frames])
        proto.connectionLost(Failure(ConnectionDone()))
    return rows


def carrier_path(name: str, frames_in: list[bytes], passes: int) -> dict[str, list[float]]:
    """``--carrier NAME``: the full path of another WebSocket carrier, its voiced-call wire's
    messages into its own socket (``voiced.carrier.<name>``), per 20 ms of audio: a carrier
    that sends 100 ms chunks pays each message's cost once per five frames."""
    import importlib

    from voiced.caller.carriers import carrier_wire
    from voiced.caller.carriers.base import CallSetup

    wire_class = carrier_wire(name)
    speaker = Speaker(InstantTTS(silence_ulaw(1000)), None, PhraseCache())
    rows: dict[str, list[float]] = {f"{name} full path": []}
    for _ in range(passes):
        clock = Clock()

        def make_call(start: Any, transport: Any) -> Call:
            # As the service does: a wideband carrier's STT gets its 16 kHz (the link's second copy).
            return new_call(clock, transport, NullSTT(), speaker, InstantConversation(["Hi."]), call_id=start.call_id,
                            stt_audio=stt_input(start.audio, NullSTT.formats))

        service = BenchService(clock, make_call)
        media = importlib.import_module(f"voiced.carrier.{name}").carrier(service, SETTINGS).media
        proto, wire = open_protocol(clock, service, media._factory, wire_class.path)
        caller = wire_class.new_call(CallSetup())
        for message in caller.opening():
            proto.dataReceived(client_frame(message))
        messages = [m for i, f in enumerate(frames_in) if (m := caller.speech(f, i * 20)) is not None]
        per_message = len(frames_in) // len(messages)

        def before() -> None:
            clock.advance(0.02 * per_message)
            wire.clear()

        times = time_each(proto.dataReceived, [client_frame(m) for m in messages], before=before)
        rows[f"{name} full path"] += [t / per_message for t in times]
        if proto.link.call is None or proto.link.closing:
            raise RuntimeError(f"the bench's {name} socket closed: the full path did not reach the call")
        proto.connectionLost(Failure(ConnectionDone()))
    return rows


def audiosocket_full_path(frames_in: list[bytes], passes: int) -> dict[str, list[float]]:
    """The AudioSocket carrier's inbound path, as "full path" measures Twilio's."""
    import uuid

    from voiced.carrier.audiosocket import wire as audiosocket
    from voiced.carrier.audiosocket.protocol import AudioSocketAdmission, AudioSocketFactory
    from voiced.carrier.codec import Codec

    speaker = Speaker(InstantTTS(silence_ulaw(1000)), None, PhraseCache())
    to_slin = Codec(audiosocket.SLIN_8K).encode
    tcp_frames = [audiosocket.frame(audiosocket.AUDIO_8K, to_slin(f)) for f in frames_in]
    rows: list[float] = []
    for _ in range(passes):
        clock = Clock()

        def make_call(start: Any, transport: Any) -> Call:
            return new_call(clock, transport, NullSTT(), speaker, InstantConversation(["Hi."]), call_id=start.call_id)

        factory = AudioSocketFactory(BenchService(clock, make_call), AudioSocketAdmission("", "open"))
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        wire = StringTransport()
        proto.makeConnection(wire)
        proto.dataReceived(audiosocket.uuid_frame(uuid.uuid4()) + tcp_frames[0])  # the first audio starts the call

        def before() -> None:
            clock.advance(0.02)  # the playout clock writes the greeting here, untimed
            wire.clear()

        rows += time_each(proto.dataReceived, tcp_frames[1:], before=before)
        if proto.link.call is None or proto.link.closing:
            raise RuntimeError("the bench's AudioSocket connection closed: the path did not reach the call")
        proto.connectionLost(Failure(ConnectionDone()))
    return {"audiosocket full path": rows}


def outbound(reply_audio: bytes, passes: int) -> dict[str, list[float]]:
    chunks = [reply_audio[i: i + AUDIO_CHUNK_BYTES] for i in range(0, len(reply_audio), AUDIO_CHUNK_BYTES)]
    chunks = [c for c in chunks if len(c) == AUDIO_CHUNK_BYTES]
    small = frames(reply_audio)
    clock = Clock()
    speaker = Speaker(InstantTTS(silence_ulaw(1000)), None, PhraseCache())

    def make_call(start: Any, transport: Any) -> Call:
        return new_call(clock, transport, NullSTT(), speaker, InstantConversation(["Hi."]), call_id=start.call_id)

    stream = TwilioStream("ACbench", "CAbench", "MZbench", {})
    proto, wire = open_protocol(clock, BenchService(clock, make_call))
    proto.dataReceived(client_frame(stream.connected()))
    proto.dataReceived(client_frame(stream.start()))
    sid = proto.stream_sid
    rows: dict[str, list[float]] = {k: [] for k in ("media_message 3200 B", "media_message 160 B",
                                                     "send_audio 3200 B", "mark_message", "send_mark")}
    names = [f"r{i}.s{i % 4}" for i in range(len(chunks))]
    for _ in range(passes):
        rows["media_message 3200 B"] += time_each(lambda c: twilio.media_message(sid, c), chunks)
        rows["media_message 160 B"] += time_each(lambda c: twilio.media_message(sid, c), small)
        rows["send_audio 3200 B"] += time_each(proto.link.send_audio, chunks, before=wire.clear)
        rows["mark_message"] += time_each(lambda n: twilio.mark_message(sid, n), names)
        rows["send_mark"] += time_each(proto.link.send_mark, names, before=wire.clear)
    proto.connectionLost(Failure(ConnectionDone()))
    return rows


def turns(line: bytes, text: str, count: int, agent: str, reply_audio: bytes) -> dict[str, list[float]]:
    """Synthetic caller turns; per turn: EOU decision -> final -> first audio -> first sentence sent."""
    clock = Clock()
    stamps: dict[str, int] = {}
    transport = RecordingTransport()
    stt = InstantSTT(clock, text, stamps)
    if agent == "script":
        from voiced.agent.script import ScriptAgent

        script = ScriptAgent()
        cache = PhraseCache()
        for phrase in script.fixed_phrases():  # the daemon's warm-up fills the same cache
            cache.put(phrase, reply_audio)
        speaker = Speaker(InstantTTS(reply_audio), None, cache)
        conversation = script.start_conversation(CallInfo("CAbench", "MZbench"))
    else:
        speaker = Speaker(InstantTTS(reply_audio), None, PhraseCache())
        conversation = InstantConversation(["We are open from 8 AM to 6 PM.", "Anything else?"])
    eou = new_eou(clock, TimedEOU)
    call = listening_call(clock, transport, stt, speaker, conversation, eou)
    speech = frames(with_line_noise(silence_ulaw(300) + line))
    quiet = frames(with_line_noise(silence_ulaw(2000), seed=11))
    out: dict[str, list[float]] = {k: [] for k in ("eou -> final", "final -> first audio", "eou -> first audio",
                                                    "eou -> first sentence sent")}
    for _ in range(count):
        eou.ended_ns = None
        stamps.clear()
        transport.first_audio_ns = transport.first_sentence_ns = None
        for frame in speech + quiet:
            clock.advance(0.02)
            call.on_media(frame)
            clock.advance(0)  # the reactor's next turn: the STT result arrives
            if transport.first_sentence_ns is not None:
                break
        if eou.ended_ns is None or transport.first_sentence_ns is None:
            raise RuntimeError(f"the synthetic turn did not complete (state {call.state})")
        ended, first, sentence = eou.ended_ns, transport.first_audio_ns, transport.first_sentence_ns
        out["eou -> final"].append((stamps["final"] - ended) / US)
        out["final -> first audio"].append((first - stamps["final"]) / US)
        out["eou -> first audio"].append((first - ended) / US)
        out["eou -> first sentence sent"].append((sentence - ended) / US)
        echo_marks(call, transport)  # the reply "played": back to LISTENING
        if call.state is not State.LISTENING:
            raise RuntimeError(f"call did not return to listening after the reply (state {call.state})")
    return out


# ---- output ---------------------------------------------------------------------------------
def table(title: str, rows: dict[str, list[float]]) -> dict[str, dict]:
    print(f"\n{title}")
    print(f"  {'':28} {'n':>7} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9} {'max µs':>9}")
    result = {}
    for name, values in rows.items():
        s = summarize(values, (0.5, 0.99))
        result[name] = s
        print(f"  {name:28} {s['n']:>7} {s['p50']:>9.2f} {s['p99']:>9.2f} {s['mean']:>9.2f} {s['max']:>9.1f}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--call-seconds", type=float, default=120.0,
                        help="seconds of caller audio per pass of the per-frame rows (120)")
    parser.add_argument("--passes", type=int, default=3, help="passes over that audio (3)")
    parser.add_argument("--turns", type=int, default=500, help="synthetic turns per turn variant (500)")
    parser.add_argument("--say", action="append", help="caller lines (default: the demo's two lines)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--carrier", help="also the full path of this carrier (voiced-call's name: telnyx, exotel, "
                                          "asterisk, audiosocket, ...)")
    args = parser.parse_args(argv)

    # The daemon logs through the queue observer; the bench pays the same formatting cost.
    devnull = open(os.devnull, "w")
    globalLogBeginner.beginLoggingTo([make_observer("text", "info", devnull)], discardBuffer=True,
                                     redirectStandardIO=False)
    texts = args.say or list(DEFAULT_LINES)
    lines = synthesize_lines(texts)
    reply_audio = synthesize_lines(["We are open Monday to Friday from 8 AM to 6 PM and Saturday from 8 AM "
                                    "to 1 PM."])[0]
    frames_in = caller_audio(lines, args.call_seconds)
    started = time.monotonic()
    print(f"frame_cost: {len(frames_in)} frames ({args.call_seconds:g} s of caller audio) x {args.passes} passes; "
          f"{args.turns} turns per variant; python {sys.version.split()[0]}; "
          f"autobahn NVX {__import__('autobahn.websocket', fromlist=['USES_NVX']).USES_NVX}; "
          f"gc {'on' if gc.isenabled() else 'off'}")

    inbound = table("Inbound, per 20 ms frame", per_frame(frames_in, args.passes))
    if args.carrier == "audiosocket":  # plain TCP, not a WebSocket
        inbound.update(table("Inbound over audiosocket, per 20 ms of audio", audiosocket_full_path(frames_in, args.passes)))
    elif args.carrier:
        inbound.update(table(f"Inbound over {args.carrier}, per 20 ms of audio",
                             carrier_path(args.carrier, frames_in, args.passes)))
    out_rows = outbound(reply_audio, args.passes * 20)
    outb = table(f"Outbound, per message (a {AUDIO_CHUNK_BYTES} B message is "
                 f"{AUDIO_CHUNK_BYTES * 1000 // SAMPLE_RATE} ms of audio)", out_rows)

    frames_per_chunk = AUDIO_CHUNK_BYTES // FRAME_BYTES
    print("\nPer 20 ms of audio and implied calls per core (budget: 50 frames/s per call)")
    budget: dict[str, Any] = {}
    full = inbound["full path"]
    send = outb["send_audio 3200 B"]
    mark = outb["send_mark"]
    for p in ("p50", "p99"):
        inbound_us = full[p]
        # While the bot talks: 2.5 media messages/s and about 1 mark/s on top of the inbound frames.
        speaking_us = inbound_us + (send[p] / frames_per_chunk) + mark[p] / FRAMES_PER_CALL_SECOND
        budget[p] = {
            "inbound_us_per_frame": round(inbound_us, 2),
            "inbound_plus_outbound_us_per_frame": round(speaking_us, 2),
            "calls_per_core_listening": int(1e6 / (FRAMES_PER_CALL_SECOND * inbound_us)),
            "calls_per_core_bot_speaking": int(1e6 / (FRAMES_PER_CALL_SECOND * speaking_us)),
        }
        b = budget[p]
        print(f"  {p}: inbound {b['inbound_us_per_frame']:.1f} µs/frame -> {b['calls_per_core_listening']} calls/core; "
              f"with the bot talking {b['inbound_plus_outbound_us_per_frame']:.1f} µs/frame -> "
              f"{b['calls_per_core_bot_speaking']} calls/core")
    on_media = inbound["on_media"]["p50"]
    on_message = inbound["protocol.onMessage"]["p50"]
    print(f"  p50 shares of the full path ({full['p50']:.1f} µs): framing {full['p50'] - on_message:.1f} µs "
          f"(the media protocol's own decoder; Autobahn's path, not taken for whole text frames, also built "
          f"debug-log arguments of {inbound['autobahn debug args']['p50']:.1f} µs per read), "
          f"voiced's protocol {on_message:.1f} µs = parse {inbound['parse']['p50']:.1f} + on_media {on_media:.1f} "
          f"(EOU {inbound['eou']['p50']:.1f}, of which webrtcvad {inbound['vad']['p50']:.1f}) + dispatch/sequence "
          f"{on_message - inbound['parse']['p50'] - on_media:.1f}")
    print("  (the daemon's share only: kernel, reactor select loop and STT/TTS engines are not in these numbers)")

    turn_results = {}
    for agent in ("instant", "script"):
        label = ("instant fake STT/agent/TTS" if agent == "instant"
                 else "instant fake STT, real script agent + phrase cache")
        turn_results[agent] = table(f"One turn through the turn machine on a Clock ({label}), µs",
                                    turns(lines[0], texts[0], args.turns, agent, reply_audio))
    print("\n  'first audio' = the first media message handed to the transport; 'first sentence sent' = "
          "when TOTAL_LATENCY_MS stops (after every message of the first sentence).")
    print(f"\nframe_cost: done in {time.monotonic() - started:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"inbound": inbound, "outbound": outb, "budget": budget, "turns": turn_results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
