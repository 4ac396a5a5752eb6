"""An outbound call on a Clock with answering-machine detection: the shipped front desk answering, a
tone TTS, and the caller's side played as voice, silence and monologues (OutboundCall)."""

from __future__ import annotations

from twisted.internet.task import Clock

from tests.testing.turn import FakeSTT
from tests.turn_harness import Line, NearTestCase, ToneTTS, logged, tone, voice, voiced_by_energy

from voiced.agent.base import CallInfo
from voiced.agent.script import ScriptAgent
from voiced.audio import FRAME_MS
from voiced.call.turn import Call, TurnSettings
from voiced.metrics import Metrics
from voiced.tts.speaker import PhraseCache, Speaker
from voiced.turns.detection import TurnDetection
from voiced.turns.eou import EndOfUtterance


AGENT = ScriptAgent()  # the shipped front desk: its [greeting] and its [voicemail]


GREETING = list(AGENT.dialog.greeting)


VOICEMAIL = list(AGENT.dialog.voicemail)


class OutboundCall(NearTestCase):
    def make_call(self, amd="voiced", direction="outbound", carrier="twilio", vad=voiced_by_energy, observer=None,
                  **settings) -> Call:
        """``settings``: TurnSettings fields other than the defaults here."""
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = Line(self.clock)
        self.tts = ToneTTS()
        self.metrics = Metrics()
        self.eou = EndOfUtterance(self.clock, vad, eou_silence_ms=240, min_speech_ms=60)
        info = CallInfo("CA1", "MZ1", language="en-US", carrier=carrier, direction=direction, dial_id="d-1")
        self.amd_lines = logged(self, "AMD call=")
        self.call = Call(info, self.clock, self.transport, FakeSTT(False), Speaker(self.tts, None, PhraseCache()),
                         AGENT.start_conversation(info), self.eou, self.metrics,
                         TurnSettings(**{"barge_in_ms": 160, "final_timeout_ms": 1500, "fallback_timeout_ms": 4000,
                                         **settings}),
                         observer=observer, turns=TurnDetection(), amd=amd)
        self.call.start()
        return self.call

    def hear(self, frame: bytes | None, seconds: float) -> None:
        for _ in range(round(seconds * 1000 / FRAME_MS)):
            self.clock.advance(FRAME_MS / 1000)
            self.call.on_media(frame if frame is not None else tone(-90.0, FRAME_MS))

    def silence(self, seconds: float) -> None:
        self.hear(None, seconds)

    def monologue(self, seconds: float) -> None:
        """A voicemail greeting: sentences of 1.4 s with 0.3 s breaths between them."""
        spoken = 0.0
        while spoken < seconds:
            self.hear(voice(), min(1.4, seconds - spoken))
            spoken += 1.4
            if spoken < seconds:
                self.silence(0.3)
                spoken += 0.3

    def play_out(self) -> None:
        while self.clock.seconds() < self.transport.played_until():
            self.silence(FRAME_MS / 1000)
        for name in self.transport.new_marks():
            self.call.on_mark(name)

    def answered(self, who: str, source: str) -> float:
        return self.metrics.answered_by_total.labels(who, source)._value.get()
