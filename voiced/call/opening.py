"""How a call opens: who speaks first.

  inbound              the bot: the greeting plays at once;
  outbound             the callee: the greeting waits for their "Hello?" (``voiced.call.first_words``);
  outbound, ``--amd``  nobody, until answering-machine detection says who answered
                       (``voiced.call.machine``): the greeting, the voicemail message or a hang-up;
  model mode           a speech-to-speech model greets in its own voice (a limit: no detection).

Until the opening is chosen the callee's speech is no turn and no barge-in: the call hands
its audio and speech events here first. Every method runs on the reactor thread.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from voiced.agent.base import CallInfo
from voiced.call.answering import Answering
from voiced.call.chronicle import Chronicle
from voiced.call.first_words import FirstWords
from voiced.call.machine import AnsweringMachine, answering_machine, machine_settings
from voiced.call.model import State
from voiced.call.speech_to_speech import ModelTurns


class OpeningHost(Protocol):
    """The call, as its opening sees it."""

    state: State


class Opening:
    """The call's opening; the answering-machine handling's ``MachineHost``."""

    def __init__(self, info: CallInfo, clock: IReactorTime, amd: str, hello_timeout_ms: int, host: OpeningHost,
                 answering: Answering, chronicle: Chronicle, model: ModelTurns | None) -> None:
        self.call_id = info.call_id
        self._info = info
        self._clock = clock
        self._host = host
        self._answering = answering
        self._chronicle = chronicle
        self._model = model
        #: An outbound call's held greeting (None: not held, or already played).
        self.first_words: FirstWords | None = None
        self.machine: AnsweringMachine | None = None if model is not None else answering_machine(
            info, clock, amd, self, machine_settings(hello_timeout_ms))

    def start(self) -> None:
        if self._model is not None:
            self._answering.greet()
            self._model.start()  # the model greets in its own voice
        elif self.machine is not None:
            self._answering.arm_time_limit()
            self.machine.start()
        else:
            # Read now: the call's settings may have been replaced since it was built.
            timeout_ms = self._answering.settings.outbound_hello_timeout_ms
            if self._info.direction == "outbound" and timeout_ms > 0:
                self.first_words = FirstWords(self.call_id, self._clock, timeout_ms / 1000, self._answering.greet)
            else:
                self._answering.greet()

    @property
    def deciding(self) -> bool:
        """Answering-machine detection listens: the call answers nothing, not even a key."""
        return self.machine is not None and self.machine.listening and self._host.state is not State.ENDED

    def holding_greeting(self) -> bool:
        """The callee's first words are awaited: their speech is not a turn (nor a barge-in)."""
        return self.first_words is not None and self.first_words.holding

    # ---- the callee, before the call has opened ------------------------------------------------
    def audio(self, ulaw: bytes) -> None:
        if self.machine is not None and self.machine.listening:
            self.machine.audio(ulaw)

    def speech_started(self, at: float) -> bool:
        """True when the speech belongs to the opening (no turn starts)."""
        if self.deciding:
            self.machine.speech_started(at)  # type: ignore[union-attr]
            return True
        if self.holding_greeting():
            self.first_words.speech_started(at)  # type: ignore[union-attr]
            return True
        return False

    def speech_ended(self, at: float) -> bool:
        """True when the speech belonged to the opening (the greeting may play now)."""
        if self.deciding:
            self.machine.speech_ended(at)  # type: ignore[union-attr]
            return True
        if self.holding_greeting():
            self.first_words.speech_ended(at)  # type: ignore[union-attr]
            return True
        return False

    def carrier_amd(self, answered_by: str) -> bool:
        """The carrier's answering-machine verdict; False when this call has no detection."""
        if self.machine is None or self._host.state is State.ENDED:
            return False
        self.machine.carrier_verdict(answered_by)
        return True

    def close(self) -> None:
        if self.machine is not None:
            self.machine.close()
        if self.first_words is not None:
            self.first_words.close()

    # ---- MachineHost: what the answering machine decided ---------------------------------------
    def answered(self, answered_by: str, source: str, reason: str) -> None:
        self._chronicle.record.answered_by = answered_by
        self._chronicle.metrics.answered_by_total.labels(answered_by, source).inc()
        self._chronicle.tell("answered", {"answered_by": answered_by, "source": source})  # the dial's row too

    def open_with_greeting(self) -> None:
        if not self._answering.final_goodbye:  # (the time limit or a drain said goodbye first)
            self._answering.greet()

    def leave_voicemail(self) -> None:
        if not self._answering.final_goodbye:
            self._answering.leave_voicemail()

    def hang_up_on_fax(self) -> None:
        self._answering.hang_up("fax answered")
