"""The one place the end of a caller's turn is decided.

Two questions, both pure (no clock, no I/O; the evidence carries the times):

``decide``: is the turn over, so that the agent may be asked? The call asks whenever
what it knows changes (the VAD's silence, a transcript, the semantic model's verdict,
a timer it was told to set) and does what the answer says: FINISH, WAIT that long and
ask again (unless the caller speaks first), or KEEP_LISTENING.
1. the model's verdict is worth a short wait;
2. the turn is over once the transcript is complete (the final covers the caller's
   last word) ...
3. ... or once the wait for it ran out.

``release``: may the reply's audio play yet? The agent is asked as soon as the turn
seems over, so that a reply is ready early; its audio waits until the caller has been
silent ``hold_ms`` unless the turn is known complete (the model's probability at or
above ``model_threshold``). A caller who goes on speaking meanwhile gets the same
turn back and the prepared reply is dropped: a pause mid-sentence costs a wasted
request, never a cut-off. A turn that reads unfinished (a final ending in "and",
half a phone number) always waits; with adaptive timing a caller known to pause long
is waited for that long.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from voiced.options import default
from voiced.turns.words import unfinished


class Verdict(enum.Enum):
    FINISH = "finish"  # the turn is over: ask the agent
    WAIT = "wait"
    KEEP_LISTENING = "keep_listening"
    PLAY = "play"  # the reply's audio may play


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: A short fixed word for metrics: silence, final, model_pending, awaiting_final,
    #: final_timeout, resumed; for release: model_complete, model_incomplete, hold,
    #: text_unfinished, adaptive, held.
    reason: str
    detail: str = ""  # for the log line: the probability, the word
    wait_ms: int = 0


@dataclass(frozen=True)
class EndOfTurnSettings:
    #: Silence after the caller's last word before a reply plays, unless the turn is known
    #: complete (0: a reply plays as soon as it is ready; the daemon's default is
    #: VOICED_TURN_HOLD_MS).
    hold_ms: int = 0
    #: P(complete) from which the model's verdict lets the reply play at once.
    model_threshold: float = default("turn_model_threshold")
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
    model_pending: bool = False
    #: The caller is still voicing (an STT endpoint came mid-utterance).
    caller_speaking: bool = False


@dataclass(frozen=True)
class ReleaseEvidence:
    #: Since the caller's last voiced frame.
    silence_ms: int
    text: str = ""
    language: str = default("language")
    model_probability: float | None = None  # None: no model, or no verdict in time
    #: This caller's own pauses (adaptive timing; 0: none known).
    adaptive_hold_ms: int = 0


class TurnEndPolicy:
    def __init__(self, settings: EndOfTurnSettings = EndOfTurnSettings()) -> None:
        self.settings = settings

    def decide(self, e: TurnEvidence) -> Decision:
        if e.model_pending and e.waited_ms < self.settings.model_wait_ms and not e.caller_speaking:
            return Decision(Verdict.WAIT, "model_pending", wait_ms=self.settings.model_wait_ms - e.waited_ms)
        if e.transcript_complete:
            return Decision(Verdict.FINISH, "final" if e.caller_speaking else "silence")
        if e.caller_speaking:
            return Decision(Verdict.KEEP_LISTENING, "awaiting_final")
        if e.waited_ms < e.final_wait_ms:
            return Decision(Verdict.WAIT, "awaiting_final", wait_ms=e.final_wait_ms - e.waited_ms)
        return Decision(Verdict.FINISH, "final_timeout")

    def release(self, e: ReleaseEvidence) -> Decision:
        s = self.settings
        why = unfinished(e.text, e.language)
        p = e.model_probability
        if why:
            reason, detail, hold = "text_unfinished", why, max(s.hold_ms, e.adaptive_hold_ms)
        elif p is not None and p >= s.model_threshold:
            return Decision(Verdict.PLAY, "model_complete", f"p={p:.2f}")
        elif e.adaptive_hold_ms > s.hold_ms:
            reason, detail, hold = "adaptive", "", e.adaptive_hold_ms
        elif p is not None:
            reason, detail, hold = "model_incomplete", f"p={p:.2f}", s.hold_ms
        else:
            reason, detail, hold = "hold", "", s.hold_ms
        if e.silence_ms >= hold:
            return Decision(Verdict.PLAY, reason, detail)
        return Decision(Verdict.WAIT, reason, detail, wait_ms=hold - e.silence_ms)
