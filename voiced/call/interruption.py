"""False interruptions: a reply the caller seemed to interrupt, resumed when they had
nothing to say.

A barge-in stops the bot at once (the carrier's clear): waiting for words would make
every real interruption late. If what followed turns out to be no words (a cough, a
door, a "mm-hm" the engine heard as nothing) or only backchannel words ("yeah",
"right"), the stopped reply plays again from the sentence the caller did not hear
whole, instead of the bot falling silent or answering "yeah". How long that chance
lasts is ``timeout_s`` after the barge-in (while the caller still speaks, or their
transcript is still coming, it waits for that).
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from voiced.call.reply import Reply
from voiced.turns.words import only_backchannel

#: While the caller still talks or their transcript is coming, look again this often.
RECHECK_S = 0.2


class InterruptionHost(Protocol):
    def resume_reply(self, reply: Reply, reason: str) -> None: ...
    def caller_words_pending(self) -> bool:
        """The caller is speaking, or a transcript of what they said is still coming."""
    def caller_said(self) -> str: ...


class FalseInterruptions:
    def __init__(self, clock: IReactorTime, timeout_s: float, language: str, host: InterruptionHost) -> None:
        self._clock = clock
        self._timeout_s = timeout_s
        self._language = language
        self._host = host
        self._reply: Reply | None = None
        self._deadline = 0.0
        self._timer: IDelayedCall | None = None

    def interrupted(self, reply: Reply | None) -> None:
        """A barge-in stopped ``reply``: watch what follows."""
        self.cancel()
        if not self._timeout_s or reply is None or not reply.unheard():
            return
        self._reply = reply
        self._deadline = self._clock.seconds() + self._timeout_s
        self._timer = self._clock.callLater(self._timeout_s, self._check)

    def turn_ended(self, text: str) -> bool:
        """The caller's turn after the barge-in is over with ``text``: True when that was
        no turn at all and the reply resumed (the caller gets no answer to it)."""
        if self._reply is None:
            return False
        text = text.strip()
        if text and not only_backchannel(text, self._language):
            self.cancel()  # a real turn: the caller meant to interrupt
            return False
        self._resume("backchannel" if text else "no_words")
        return True

    def cancel(self) -> None:
        self._reply = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._reply is None:
            return
        if self._host.caller_said().strip():
            return  # words came: the turn's end decides (turn_ended)
        if self._host.caller_words_pending():
            if self._clock.seconds() < self._deadline + self._timeout_s:
                self._timer = self._clock.callLater(RECHECK_S, self._check)
            else:
                self.cancel()  # a long utterance nobody transcribed yet: the caller's turn
            return
        self._resume("no_words")

    def _resume(self, reason: str) -> None:
        reply = self._reply
        self.cancel()
        if reply is not None:
            self._host.resume_reply(reply, reason)
