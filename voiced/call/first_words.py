"""Who speaks first: on a call voiced placed, the callee does.

A person answering a phone says "Hello?" before anything else; a bot that greets the
moment the line opens talks over it (and its first words are lost in the callee's).
So an outbound call's greeting is held until the callee's first utterance ends, or
until ``timeout_s`` passes with no speech at all (some people pick up and wait). Once
the callee has begun speaking, the timeout no longer applies: the greeting waits for
the end of that utterance, however long (telling a person's "Hello?" from a machine's
long greeting is answering-machine detection's job, not this one's). The held greeting
then plays as the call's greeting would have; the "Hello?" itself is not a turn to
answer. Inbound calls never get one of these: the caller called, the bot speaks first.

Pure: a clock, the speech events the call feeds it, one callback.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger(namespace="voiced.call")


class FirstWords:
    def __init__(self, call_id: str, clock: IReactorTime, timeout_s: float, greet: Callable[[], None]) -> None:
        self.call_id = call_id
        self._clock = clock
        self._greet = greet
        self._opened_at = clock.seconds()
        #: The greeting is still held: the call hands its speech events here, not to a turn.
        self.holding = True
        self.callee_spoke = False
        self._timer: IDelayedCall | None = clock.callLater(timeout_s, self._timed_out)

    def speech_started(self, at: float) -> None:
        if not self.holding:
            return
        self.callee_spoke = True
        self._cancel_timer()  # they are answering: wait for the end of it

    def speech_ended(self, at: float) -> None:
        if self.holding and self.callee_spoke:
            self._release("hello")

    def close(self) -> None:
        self.holding = False
        self._cancel_timer()

    def _timed_out(self) -> None:
        self._timer = None
        if self.holding and not self.callee_spoke:
            self._release("timeout")

    def _release(self, reason: str) -> None:
        self.holding = False
        self._cancel_timer()
        log.info("FIRST_WORDS call={call} greeting_after={reason} waited_ms={ms}", call=self.call_id, reason=reason,
                 ms=round((self._clock.seconds() - self._opened_at) * 1000))
        self._greet()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
