"""Who answered an outbound call, from the shape of the first thing said.

A person answers with a word or two ("Hello?", "Dana speaking") and then waits to be
answered; a voicemail greeting is a monologue ("Hi, you've reached Dana, I can't come
to the phone right now, please leave ...") with no pause long enough to answer into.
So, from the speech start and end events of the call's end-of-utterance detector:

  HUMAN    the first speech ran at most ``human_max_speech_ms`` and was followed by a
           pause of ``pause_ms`` (Asterisk app_amd's after_greeting_silence: 800 ms);
  MACHINE  the speech, with no such pause, ran past ``machine_speech_ms``;
  UNKNOWN  nothing was said for ``initial_silence_ms``, a longer answer was followed by
           ``undecided_silence_ms`` of silence, or ``max_analysis_ms`` passed: the caller
           of this module greets, as it would a person.

The thresholds, and where they come from (/work/shared/outbound.md; Asterisk's
configs/samples/amd.conf.sample; Twilio's answering-machine-detection docs):
  - pause 800 ms: Asterisk after_greeting_silence = 800 (silence after a greeting that
    makes it a HUMAN); Twilio's MachineDetectionSpeechEndThreshold is 1200 ms by default.
  - human_max_speech 2000 ms and machine_speech 3500 ms: Asterisk calls a greeting over
    1500 ms a MACHINE, Twilio speech over MachineDetectionSpeechThreshold (2400 ms). Both
    err toward "machine"; here a person taken for a machine hears a voicemail message and
    a hang-up, a machine taken for a person hears a greeting it records, so the call errs
    toward "human" and leaves the band between to the silence that follows.
  - initial_silence 2500 ms: Asterisk's initial_silence = 2500 (there: MACHINE; Twilio's
    5000 ms MachineDetectionSilenceTimeout gives ``unknown``); a call sets it to its
    ``--outbound-hello-timeout-ms`` (``voiced.call.machine.machine_settings``), so a callee
    who says nothing is greeted when they would be without detection.
  - max_analysis 7000 ms: Asterisk's total_analysis_time = 5000 (then NOTSURE), plus the
    longer speech threshold here.

Pure: times come from the events and an ``IReactorTime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Shape(Enum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ShapeVerdict:
    shape: Shape
    reason: str  # short_answer | long_greeting | silence | pause_after_long_answer | too_long
    speech_ms: int  # the first speech's length, pauses under pause_ms included (a machine's: to the verdict)


@dataclass(frozen=True)
class AnswerShapeSettings:
    human_max_speech_ms: int = 2000
    pause_ms: int = 800
    machine_speech_ms: int = 3500
    initial_silence_ms: int = 2500
    undecided_silence_ms: int = 1500
    max_analysis_ms: int = 7000

    def __post_init__(self) -> None:
        if not 0 < self.human_max_speech_ms <= self.machine_speech_ms:
            raise ValueError("answer shape: need 0 < human_max_speech_ms <= machine_speech_ms")
        if not 0 < self.pause_ms <= self.undecided_silence_ms:
            raise ValueError("answer shape: need 0 < pause_ms <= undecided_silence_ms")
        if min(self.initial_silence_ms, self.max_analysis_ms) <= 0:
            raise ValueError("answer shape: initial_silence_ms and max_analysis_ms must be positive")


class AnswerShape:
    """One call's first utterance, judged once: ``on_verdict`` is called exactly once
    (unless ``cancel`` comes first)."""

    def __init__(self, clock: IReactorTime, on_verdict: Callable[[ShapeVerdict], None],
                 settings: AnswerShapeSettings | None = None) -> None:
        self._clock = clock
        self._on_verdict = on_verdict
        self.settings = s = settings or AnswerShapeSettings()
        self.verdict: ShapeVerdict | None = None
        self._first_start: float | None = None
        self._last_end: float | None = None
        self._speaking = False
        self._paused_long = False  # a pause of pause_ms came after a speech too long for a person's hello
        self._timers: dict[str, IDelayedCall] = {}
        self._after("silence", s.initial_silence_ms / 1000, self._initial_silence)
        self._after("too_long", s.max_analysis_ms / 1000, self._too_long)

    @property
    def deciding(self) -> bool:
        return self.verdict is None

    def speech_started(self, at: float) -> None:
        if self.verdict is not None:
            return
        self._speaking = True
        self._cancel("silence")
        self._cancel("pause")
        if self._first_start is None:
            self._first_start = at
            self._after("machine", max(0.0, at + self.settings.machine_speech_ms / 1000 - self._clock.seconds()),
                        self._long_greeting)
        elif self._clock.seconds() - self._first_start >= self.settings.machine_speech_ms / 1000:
            # Talking again after a pause, past a greeting's length: a monologue after all.
            self._decide(Shape.MACHINE, "long_greeting")

    def speech_ended(self, at: float) -> None:
        if self.verdict is None and self._first_start is not None:
            self._speaking = False
            self._last_end = at
            wait = self.settings.undecided_silence_ms if self._paused_long else self.settings.pause_ms
            self._after("pause", max(0.0, at + wait / 1000 - self._clock.seconds()), self._paused)

    def cancel(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    # ---- timers -----------------------------------------------------------------------------
    def _after(self, name: str, seconds: float, then: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self._clock.callLater(seconds, then)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _speech_ms(self) -> int:
        if self._first_start is None:
            return 0
        end = self._clock.seconds() if self._speaking or self._last_end is None else self._last_end
        return round((end - self._first_start) * 1000)

    def _initial_silence(self) -> None:
        self._decide(Shape.UNKNOWN, "silence")

    def _too_long(self) -> None:
        self._decide(Shape.UNKNOWN, "too_long")

    def _long_greeting(self) -> None:
        if self._speaking or not self._paused_long:
            self._decide(Shape.MACHINE, "long_greeting")
        # else: in a pause long enough to be answered; the silence decides (_paused)

    def _paused(self) -> None:
        if self._paused_long:
            self._decide(Shape.UNKNOWN, "pause_after_long_answer")
        elif self._speech_ms() <= self.settings.human_max_speech_ms:
            self._decide(Shape.HUMAN, "short_answer")
        else:
            # Longer than a hello, shorter than a greeting: more speech makes it a monologue,
            # more silence a person waiting.
            self._paused_long = True
            assert self._last_end is not None
            wait = self._last_end + self.settings.undecided_silence_ms / 1000 - self._clock.seconds()
            self._after("pause", max(0.0, wait), self._paused)

    def _decide(self, shape: Shape, reason: str) -> None:
        if self.verdict is not None:
            return
        # A monologue's length runs to now, through the short gaps that did not break it.
        monologue = shape is Shape.MACHINE and self._first_start is not None
        speech_ms = round((self._clock.seconds() - self._first_start) * 1000) if monologue else self._speech_ms()
        self.verdict = ShapeVerdict(shape, reason, speech_ms)
        self.cancel()
        self._on_verdict(self.verdict)
