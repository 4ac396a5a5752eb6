"""The reply prepared while the caller may still go on: its audio waits behind a gate
until the end-of-turn policy releases it (``voiced.turns.policy``: release). The call
drops the gate when the caller goes on speaking (the reply is dropped with it)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from voiced.call.model import Turn
from voiced.turns.end_of_turn import EndOfTurn
from voiced.turns.policy import Verdict


class ReplyGate:
    def __init__(self, clock: IReactorTime, end_of_turn: EndOfTurn) -> None:
        self._clock = clock
        self._end_of_turn = end_of_turn
        self._gate: Deferred[None] | None = None
        self._turn: Turn | None = None
        self._timer: IDelayedCall | None = None

    @property
    def holding(self) -> bool:
        return self._gate is not None

    def hold(self, turn: Turn) -> Deferred[None] | None:
        """What ``turn``'s reply sends its audio after (None: it may play as soon as it is ready)."""
        self.drop()
        decision = self._end_of_turn.release(turn.times.speech_end, turn.text)
        if decision.verdict is Verdict.PLAY:
            return None
        self._gate, self._turn = Deferred(), turn
        self._timer = self._clock.callLater(decision.wait_ms / 1000, self.recheck)
        return self._gate

    def recheck(self) -> None:
        """Ask again (the wait ran out, or the model's verdict came)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._gate is None or self._turn is None:
            return
        decision = self._end_of_turn.release(self._turn.times.speech_end, self._turn.text)
        if decision.verdict is Verdict.PLAY:
            gate = self._gate
            self.drop()
            gate.callback(None)
        else:
            self._timer = self._clock.callLater(decision.wait_ms / 1000, self.recheck)

    def drop(self) -> None:
        """Nothing is held any more (the reply was dropped)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._gate = self._turn = None
