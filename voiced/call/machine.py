"""One outbound call's answering-machine handling: who answered decides how the call opens.

While it decides, the call says nothing and answers nothing (``listening``): the
callee's audio goes to the beep detector (``voiced.turns.beep``) and their speech events
to the first utterance's shape (``voiced.turns.answer_shape``). Then:

  human, unknown   the greeting plays, and the call goes on as any other;
  machine          the call waits for the greeting's end: the beep, or
                   ``greeting_end_silence_ms`` of silence after the monologue, or at most
                   ``max_wait_ms``; then the agent's voicemail message plays and the call
                   hangs up (``MachineHost.leave_voicemail``);
  a beep           at any moment: a machine, past its greeting: the message at once;
  fax              (the carrier's verdict) a hang-up.

``--amd voiced`` acts on voiced's own verdict. ``--amd carrier`` waits for the carrier's
(Twilio's asynchronous AMD, ``carrier_verdict``) up to ``carrier_wait_ms``, then falls
back to voiced's; a beep heard meanwhile is acted on at once (the message must follow it).
A carrier verdict that comes later still counts while the call waits for a machine's
greeting to end (``machine_end_beep``: the beep is past, the message goes at once).

The greeting-end silence, 1500 ms, is Twilio's MachineDetectionSpeechEndThreshold default
(1200 ms) with room for the VAD's own end-of-speech wait; the carrier wait, 6 s, is past
Twilio's 5 s MachineDetectionSilenceTimeout, so its ``unknown`` for a silent callee comes
first; the max wait, 20 s, is within Twilio's 30 s MachineDetectionTimeout
(/work/shared/outbound.md; twilio.com docs voice/answering-machine-detection).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Callable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from voiced.agent.base import CallInfo
from voiced.audio import FRAME_BYTES, ulaw_to_pcm16
from voiced.turns.answer_shape import AnswerShape, AnswerShapeSettings, Shape, ShapeVerdict
from voiced.turns.beep import Beep, BeepDetector, BeepSettings

log = Logger(namespace="voiced.call")

AMD_MODES = ("voiced", "carrier", "off")
#: Carriers whose own detection voiced can wait for (``POST /twilio/amd``).
CARRIER_AMD = frozenset({"twilio"})

#: Twilio's AnsweredBy: what it says answered, and what the call does about it.
CARRIER_VERDICTS = {
    "human": ("human", "greet"),
    "unknown": ("unknown", "greet"),
    "machine_start": ("machine", "wait"),  # MachineDetection=Enable: the greeting is still on
    "machine_end_beep": ("machine", "leave"),
    "machine_end_silence": ("machine", "leave"),
    "machine_end_other": ("machine", "leave"),
    "fax": ("machine", "hang_up"),
}


@dataclass(frozen=True)
class MachineSettings:
    greeting_end_silence_ms: int = 1500
    max_wait_ms: int = 20000
    carrier_wait_ms: int = 6000
    shape: AnswerShapeSettings = field(default_factory=AnswerShapeSettings)
    beep: BeepSettings = field(default_factory=BeepSettings)


def machine_settings(hello_timeout_ms: int) -> MachineSettings:
    """A call's: a callee who says nothing is greeted after ``--outbound-hello-timeout-ms``,
    as they would be without detection (0: at once, as an ``unknown``)."""
    return MachineSettings(shape=replace(AnswerShapeSettings(), initial_silence_ms=max(1, hello_timeout_ms)))


class MachineHost(Protocol):
    """The call, as its answering-machine handling sees it."""

    def answered(self, answered_by: str, source: str, reason: str) -> None:
        """Who answered (one of ``voiced.call.record.ANSWERED_BY``): the record and the metric."""

    def open_with_greeting(self) -> None:
        """A person (or nobody knows): the greeting, then the call as usual."""

    def leave_voicemail(self) -> None:
        """The machine records: the agent's voicemail message, then the hang-up."""

    def hang_up_on_fax(self) -> None:
        """Nothing to say to a fax machine."""


class Phase(Enum):
    DECIDING = "deciding"
    WAITING = "waiting"  # a machine: for its greeting to end
    DONE = "done"


class AnsweringMachine:
    def __init__(self, call_id: str, clock: IReactorTime, mode: str, host: MachineHost,
                 settings: MachineSettings | None = None) -> None:
        if mode not in ("voiced", "carrier"):
            raise ValueError(f"answering-machine detection mode must be voiced or carrier here, not {mode!r}")
        self.call_id = call_id
        self.mode = mode
        self._clock = clock
        self._host = host
        self.settings = s = settings or MachineSettings()
        self.phase = Phase.DECIDING
        self._beeps = BeepDetector(s.beep)
        self._pending = bytearray()  # mu-law not yet a whole frame
        self._shape: AnswerShape | None = None
        self._voiced: tuple[str, str] | None = None  # a verdict held for the carrier (answered_by, reason)
        self._speaking = False
        self._last_speech_end: float | None = None
        self._timers: dict[str, IDelayedCall] = {}

    @property
    def listening(self) -> bool:
        """Deciding, or waiting for a machine's greeting to end: the call answers nothing yet."""
        return self.phase is not Phase.DONE

    def start(self) -> None:
        """The call is answered (its media flows): detection starts."""
        self._shape = AnswerShape(self._clock, self._shape_verdict, self.settings.shape)
        if self.mode == "carrier":
            self._after("carrier", self.settings.carrier_wait_ms, self._carrier_late)

    # ---- the callee ---------------------------------------------------------------------------
    def audio(self, ulaw: bytes) -> None:
        """The callee's 8 kHz mu-law, as it comes."""
        if not self.listening:
            return
        self._pending += ulaw
        while len(self._pending) >= FRAME_BYTES:
            frame = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            beep = self._beeps.push(ulaw_to_pcm16(frame))
            if beep is not None:
                self._beep(beep)
                return

    def speech_started(self, at: float) -> None:
        self._speaking = True
        self._cancel("greeting_end")
        if self._shape is not None:
            self._shape.speech_started(at)

    def speech_ended(self, at: float) -> None:
        self._speaking = False
        self._last_speech_end = at
        if self._shape is not None:
            self._shape.speech_ended(at)
        if self.phase is Phase.WAITING:
            self._arm_greeting_end()

    def carrier_verdict(self, answered_by: str) -> None:
        """The carrier's AMD said who answered (Twilio's AnsweredBy)."""
        if answered_by not in CARRIER_VERDICTS:
            log.warn("AMD_CARRIER call={call} answered_by={value!r}: not a value Twilio sends; ignored",
                     call=self.call_id, value=answered_by[:40])
            return
        who, then = CARRIER_VERDICTS[answered_by]
        if self.phase is Phase.DONE:
            log.info("AMD_LATE call={call} answered_by={value}: the call had already opened; ignored",
                     call=self.call_id, value=answered_by)
            return
        if self.phase is Phase.WAITING and then == "greet" and self.mode != "carrier":
            log.info("AMD_OVERRULED call={call} answered_by={value}: voiced heard a machine; waiting for its beep",
                     call=self.call_id, value=answered_by)
            return
        self._act(who, "carrier", answered_by, then)

    def close(self) -> None:
        self.phase = Phase.DONE
        self._stop_detecting()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    # ---- voiced's own verdicts ----------------------------------------------------------------
    def _shape_verdict(self, verdict: ShapeVerdict) -> None:
        who = verdict.shape.value
        reason = f"{verdict.reason} speech_ms={verdict.speech_ms}"
        if self.mode == "carrier" and "carrier" in self._timers:
            self._voiced = (who, reason)  # the carrier's word first, until it is late
            return
        self._act(who, "voiced", reason, "wait" if verdict.shape is Shape.MACHINE else "greet")

    def _beep(self, beep: Beep) -> None:
        self._act("machine", "voiced", f"beep hz={beep.hz:g} ms={beep.duration_ms}", "leave")

    def _carrier_late(self) -> None:
        self._timers.pop("carrier", None)
        log.info("AMD_CARRIER_TIMEOUT call={call}: no verdict from the carrier in {ms} ms; voiced decides",
                 call=self.call_id, ms=self.settings.carrier_wait_ms)
        if self._voiced is not None:
            who, reason = self._voiced
            self._act(who, "voiced", reason, "wait" if who == "machine" else "greet")

    # ---- acting on a verdict ------------------------------------------------------------------
    def _act(self, who: str, source: str, reason: str, then: str) -> None:
        if self.phase is Phase.DONE:
            return
        self._cancel("carrier")
        if self.phase is Phase.DECIDING or who != "machine":  # (a machine waited for is said already)
            log.info("AMD call={call} answered_by={who} source={source} reason={reason}", call=self.call_id,
                     who=who, source=source, reason=reason)
            self._host.answered(who, source, reason)
        if then == "wait":
            self._stop_shape()
            if self.phase is Phase.DECIDING:
                self.phase = Phase.WAITING
                self._after("max_wait", self.settings.max_wait_ms, lambda: self._leave("max_wait"))
                if not self._speaking:
                    self._arm_greeting_end()
            return
        self.phase = Phase.DONE
        self._stop_detecting()
        if then == "greet":
            self._host.open_with_greeting()
        elif then == "hang_up":
            log.info("AMD_HANGUP call={call}: a fax answered", call=self.call_id)
            self._host.hang_up_on_fax()
        else:
            self._leave_now(reason if source == "voiced" else f"carrier {reason}")

    def _arm_greeting_end(self) -> None:
        end = self._last_speech_end if self._last_speech_end is not None else self._clock.seconds()
        wait_ms = max(0.0, (end + self.settings.greeting_end_silence_ms / 1000 - self._clock.seconds()) * 1000)
        self._after("greeting_end", wait_ms, lambda: self._leave("greeting_end"))

    def _leave(self, reason: str) -> None:
        if self.phase is not Phase.WAITING:
            return
        if reason == "greeting_end" and self._beeps.in_tone:
            self._after("greeting_end", 100, lambda: self._leave("greeting_end"))  # its end is the cue
            return
        self._act("machine", "voiced", reason, "leave")

    def _leave_now(self, reason: str) -> None:
        log.info("AMD_VOICEMAIL call={call} reason={reason}: leaving the message", call=self.call_id, reason=reason)
        self._host.leave_voicemail()

    # ---- timers and parts ----------------------------------------------------------------------
    def _after(self, name: str, ms: float, then: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self._clock.callLater(ms / 1000, then)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _stop_shape(self) -> None:
        if self._shape is not None:
            self._shape.cancel()
            self._shape = None

    def _stop_detecting(self) -> None:
        self._stop_shape()
        for name in ("carrier", "max_wait", "greeting_end"):
            self._cancel(name)
        self._pending.clear()


def answering_machine(info: CallInfo, clock: IReactorTime, amd: str, host: MachineHost,
                      settings: MachineSettings | None = None) -> AnsweringMachine | None:
    """The call's answering-machine handling: only for a call voiced placed, with ``--amd`` on.
    ``carrier`` on a carrier voiced cannot hear the verdict of is ``voiced``."""
    if info.direction != "outbound" or amd == "off":
        return None
    if amd == "carrier" and info.carrier not in CARRIER_AMD:
        log.info("AMD call={call}: --amd carrier, but {carrier} sends voiced no verdict; voiced's own detection",
                 call=info.call_id, carrier=info.carrier)
        amd = "voiced"
    return AnsweringMachine(info.call_id, clock, amd, host, settings)
