"""The one place the end of a caller's turn is decided.

The call asks ``TurnEndPolicy.decide`` whenever something it knows changes (the VAD's
silence, a transcript, the semantic model's verdict, a timer it was told to set) and
does what the answer says: FINISH the turn, WAIT that long and ask again (unless the
caller speaks first), or KEEP_LISTENING. Pure: no clock, no I/O; the evidence carries
the times.

The order of the rules is the design:
1. the model's verdict is worth a short wait;
2. a turn that reads unfinished (the model's low probability, a final ending in "and"
   or half a phone number) is held up to ``hold_ms`` for the caller to go on; with
   adaptive timing, a caller known to pause long is waited for that long unless the
   model says the turn is complete;
3. otherwise the turn is over once the transcript is complete (the final covers the
   caller's last word) ...
4. ... or the wait for it ran out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from voiced.turns.words import unfinished


class Verdict(enum.Enum):
    FINISH = "finish"
    WAIT = "wait"
    KEEP_LISTENING = "keep_listening"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: A short fixed word for metrics: silence, final, model_complete, model_incomplete,
    #: model_pending, text_unfinished, adaptive, awaiting_final, final_timeout,
    #: hold_timeout.
    reason: str
    detail: str = ""  # for the log line: the probability, the word
    wait_ms: int = 0


@dataclass(frozen=True)
class EndOfTurnSettings:
    #: Longest hold, after the silence that ended the utterance, of a turn that reads unfinished.
    hold_ms: int = 1000
    #: P(complete) under which the model's verdict is "unfinished".
    model_threshold: float = 0.5
    #: Longest wait for the model's verdict; then the turn is decided without it.
    model_wait_ms: int = 300


@dataclass(frozen=True)
class TurnEvidence:
    #: Since the utterance's silence was long enough to end it (the VAD's speech end event).
    waited_ms: int
    #: The transcript covers the caller's last word (streaming: a final after speech end;
    #: an utterance engine: its final for the flush).
    transcript_complete: bool
    #: How long, from the same moment, the transcript may be waited for.
    final_wait_ms: int
    text: str = ""
    language: str = "en-US"
    model_probability: float | None = None  # None: not asked, or no answer yet
    model_pending: bool = False
    #: The caller is still voicing (an STT endpoint came mid-utterance).
    caller_speaking: bool = False
    #: This caller's own pauses (adaptive timing): a turn is not finished on silence alone
    #: before this (0: no such wait).
    adaptive_wait_ms: int = 0


class TurnEndPolicy:
    def __init__(self, settings: EndOfTurnSettings = EndOfTurnSettings()) -> None:
        self.settings = settings

    def decide(self, e: TurnEvidence) -> Decision:
        s = self.settings
        if e.model_pending and e.waited_ms < s.model_wait_ms:
            return Decision(Verdict.WAIT, "model_pending", wait_ms=s.model_wait_ms - e.waited_ms)
        held = self._unfinished(e)
        model_says_complete = e.model_probability is not None and held is None
        if held is None and not model_says_complete and not e.caller_speaking \
                and e.waited_ms < e.adaptive_wait_ms:
            return Decision(Verdict.WAIT, "adaptive", wait_ms=e.adaptive_wait_ms - e.waited_ms)
        if held is not None:
            reason, detail = held
            if e.caller_speaking:
                return Decision(Verdict.KEEP_LISTENING, reason, detail)
            if e.waited_ms < s.hold_ms:
                return Decision(Verdict.WAIT, reason, detail, wait_ms=s.hold_ms - e.waited_ms)
            if e.transcript_complete:
                return Decision(Verdict.FINISH, "hold_timeout", detail)
        if e.transcript_complete:
            if e.model_probability is not None:
                return Decision(Verdict.FINISH, "model_complete", f"p={e.model_probability:.2f}")
            return Decision(Verdict.FINISH, "final" if e.caller_speaking else "silence")
        if e.caller_speaking:
            return Decision(Verdict.KEEP_LISTENING, "awaiting_final")
        if e.waited_ms < e.final_wait_ms:
            return Decision(Verdict.WAIT, "awaiting_final", wait_ms=e.final_wait_ms - e.waited_ms)
        return Decision(Verdict.FINISH, "final_timeout")

    def _unfinished(self, e: TurnEvidence) -> tuple[str, str] | None:
        p = e.model_probability
        if p is not None and p < self.settings.model_threshold:
            return "model_incomplete", f"p={p:.2f}"
        why = unfinished(e.text, e.language)
        if why:
            return "text_unfinished", why
        return None
