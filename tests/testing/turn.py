"""The call core's engines and transport, recorded: frames of voice and silence, a fake STT and TTS,
the transport and metrics a Call writes to, and conversations that answer as told."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from voiced.agent.base import CallInfo, EndCall
from voiced.audio import MULAW_8K, ulaw_to_pcm16
from voiced.call.turn import Call, TurnSettings
from voiced.metrics import Metrics
from voiced.tts.speaker import PhraseCache, Speaker
from voiced.turns.eou import EndOfUtterance


VOICED, SILENT = b"\x01" * 160, b"\xff" * 160  # 20 ms frames of mu-law
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
        self.started_ms_ago: list[int] = []
        self.flushes = 0
        self.pause_hints = []
        self.closed = False

    def feed(self, audio):
        self.fed += 1
        self.fed_audio.append(audio)

    def speech_started(self, ms_ago=0):
        self.speech_starts += 1
        self.started_ms_ago.append(ms_ago)

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


class FakeConversation:
    def __init__(self):
        self.asked = []
        self.requests = []

    def greeting(self):
        return ["Hello there."]

    def respond(self, request, sink):
        self.asked.append(request.text)
        self.requests.append(request)
        sink.sentence("First answer.")
        sink.sentence("Second answer.")
        if "bye" in request.text:
            sink.action(EndCall())
        return succeed(None)


class CallWithAgent:
    """A real Call on a Clock with FakeSTT, FakeTTS and a ScriptedConversation, and the caller's
    side: frames of voice (``v``) and silence, utterances, and every mark echoed. Mixed into a
    TestCase; ``control`` is the carrier's call control, if the test wants one."""

    def make_call(self, control=None, **settings):
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = RecordingTransport()
        self.tts = FakeTTS()
        self.conversation = ScriptedConversation()
        self.metrics = RecordingMetrics()
        eou = EndOfUtterance(self.clock, lambda pcm: pcm == VOICED_PCM, eou_silence_ms=240, min_speech_ms=60)
        defaults = dict(barge_in_ms=160, interim_phrase="Oops.", filler_phrase="One moment.",
                        apology_phrase="Sorry about that.")
        defaults.update(settings)
        self.call = Call(
            CallInfo("CA1", "MZ1", "+15550001", "+15550002"), self.clock, self.transport, FakeSTT(False),
            Speaker(self.tts, None, PhraseCache()), self.conversation, eou, self.metrics, TurnSettings(**defaults),
            control,
        )
        self.call.start()
        self.echo_all_marks()
        self.transport.sent.clear()
        return self.call

    def frames(self, pattern):
        for ch in pattern:
            self.clock.advance(0.02)
            self.call.on_media(VOICED if ch == "v" else SILENT)

    def echo_all_marks(self):
        for name in self.transport.marks():
            self.call.on_mark(name)

    def say(self, text):
        self.frames("v" * 10 + "." * 12)
        self.call.on_transcript(text, True)
