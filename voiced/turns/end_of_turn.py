"""One call's end-of-turn decisions: the evidence, the policy's answer, the log line and
the count of each, and the semantic model's verdict on the utterance.

The turn machine (``voiced.call.turn``) tells it when an utterance's silence is long
enough to end it (``candidate``), asks it to ``decide`` whenever what it knows changes
and, once the agent is asked, when the reply may ``release`` its audio; and does what
the decisions say. The model, when there is one, hears the utterance's
audio (kept here, at most ``MODEL_AUDIO_S``) off the reactor; its verdict comes back
through ``on_verdict``, on the reactor, as one more reason to decide.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from voiced.audio import FRAME_MS, SAMPLE_RATE, ulaw_to_pcm16
from voiced.logging import Logger  # twisted's, cheaper: a turn's decisions are logged
from voiced.turns.policy import Decision, ReleaseEvidence, TurnEndPolicy, TurnEvidence, Verdict
from voiced.turns.semantic import TurnModel

log = Logger(namespace="voiced.call")

#: Smart Turn hears the last 8 s of a turn.
MODEL_AUDIO_S = 8
#: Adaptive timing remembers this many of the caller's pauses, and waits at most this long.
ADAPTIVE_PAUSES = 3
ADAPTIVE_CAP_MS = 2500
#: Audio from just before the VAD's speech start: a first syllable's onset.
PRE_ROLL_FRAMES = 10


class EndOfTurn:
    def __init__(self, call_id: str, clock: IReactorTime, policy: TurnEndPolicy, model: TurnModel | None,
                 language: str, count: Callable[[str, str], None], adaptive: bool = False,
                 lead_frames: int = 0) -> None:
        self.call_id = call_id
        self._clock = clock
        self._policy = policy
        self._model = model
        self._language = language
        self._count = count  # (decision, reason) -> the metric
        # Kept outside an utterance: the pre-roll, and the VAD's run before it says "speech".
        self._idle_frames = PRE_ROLL_FRAMES + lead_frames
        self._frames: deque[bytes] = deque(maxlen=MODEL_AUDIO_S * 1000 // FRAME_MS if model else 0)
        self._candidate_at: float | None = None
        self._speech_end: float | None = None
        self._prediction: Deferred[float] | None = None
        self._probability: float | None = None
        self._last_logged: tuple[Verdict, str] | None = None
        # Adaptive timing: how long this caller's last pauses were (ms after the candidate
        # silence) when they went on speaking.
        self._pauses: deque[int] | None = deque(maxlen=ADAPTIVE_PAUSES) if adaptive else None
        #: Called (on the reactor) when the model's verdict arrives: the turn machine decides again.
        self.on_verdict: Callable[[], None] = lambda: None

    @property
    def hears_audio(self) -> bool:
        """A model listens to the utterance: ``hear`` wants every frame."""
        return self._model is not None

    def hear(self, ulaw: bytes, in_utterance: bool) -> None:
        """The caller's audio; kept (for the model) while an utterance may be going on."""
        if self._frames.maxlen:
            if not in_utterance and len(self._frames) >= self._idle_frames:
                self._frames.popleft()
            self._frames.append(ulaw)

    def new_turn(self, speaking_frames: int = 0) -> None:
        """``speaking_frames``: the caller is already speaking (a barge-in); their words so far stay."""
        self._cancel_prediction()
        self._candidate_at = None
        self._probability = None
        self._last_logged = None
        while len(self._frames) > self._idle_frames + speaking_frames:
            self._frames.popleft()

    def candidate(self, speech_end: float) -> None:
        """The VAD's silence (since ``speech_end``, the last voiced frame) is long enough to
        end the utterance: from now on the turn may end."""
        self._candidate_at = self._clock.seconds()
        self._speech_end = speech_end
        self._probability = None
        if self._model is not None and self._frames:
            self._cancel_prediction()
            audio = ulaw_to_pcm16(b"".join(self._frames))
            prediction = self._prediction = self._model.predict(audio, SAMPLE_RATE)
            prediction.addCallbacks(self._verdict, self._model_failed, errbackArgs=(prediction,))

    def resumed(self) -> None:
        """The caller went on speaking: the candidate is withdrawn (the audio stays: same utterance)."""
        if self._pauses is not None and self._speech_end is not None:
            self._pauses.append(round((self._clock.seconds() - self._speech_end) * 1000))
        self._cancel_prediction()
        self._candidate_at = None
        self._probability = None
        self._last_logged = None  # the next pause is a decision of its own

    def decide(self, transcript_complete: bool, final_wait_ms: int, caller_speaking: bool = False) -> Decision:
        now = self._clock.seconds()
        waited_ms = 0 if self._candidate_at is None else round((now - self._candidate_at) * 1000)
        decision = self._policy.decide(TurnEvidence(
            waited_ms=waited_ms, transcript_complete=transcript_complete, final_wait_ms=final_wait_ms,
            model_pending=self._prediction is not None, caller_speaking=caller_speaking,
        ))
        self.log(decision, waited_ms)
        return decision

    def release(self, speech_end: float | None, text: str) -> Decision:
        """May the reply to the turn that ended at ``speech_end`` play yet (PLAY), or in how long (WAIT)?"""
        silence_ms = 0 if speech_end is None else round((self._clock.seconds() - speech_end) * 1000)
        decision = self._policy.release(ReleaseEvidence(
            silence_ms=silence_ms, text=text, language=self._language, model_probability=self._probability,
            adaptive_hold_ms=self._adaptive_hold_ms(),
        ))
        self.log(decision, silence_ms, "silence_ms")
        return decision

    def _adaptive_hold_ms(self) -> int:
        if not self._pauses:
            return 0
        # A little longer than the longest recent pause (silence) the caller came back from.
        return min(ADAPTIVE_CAP_MS, round(max(self._pauses) * 1.25))

    def log(self, decision: Decision, waited_ms: int = 0, measure: str = "after_ms") -> None:
        """FINISH and PLAY always; a wait or keep-listening when its reason is new (not every recheck)."""
        key = (decision.verdict, decision.reason)
        if decision.verdict not in (Verdict.FINISH, Verdict.PLAY) and key == self._last_logged:
            return
        self._last_logged = key
        self._count(decision.verdict.value, decision.reason)
        log.info("EOT call={call} decision={decision} reason={reason}{detail} {measure}={waited}{wait}",
                 call=self.call_id, decision=decision.verdict.value, reason=decision.reason, measure=measure,
                 detail=f" ({decision.detail})" if decision.detail else "", waited=waited_ms,
                 wait=f" wait_ms={decision.wait_ms}" if decision.verdict is Verdict.WAIT else "")

    def close(self) -> None:
        self._cancel_prediction()
        self._frames.clear()

    def _verdict(self, probability: float) -> None:
        self._prediction = None
        self._probability = probability
        self.on_verdict()

    def _model_failed(self, failure: Failure, prediction: Deferred[float]) -> None:
        if failure.check(CancelledError):
            return
        if prediction is self._prediction:
            self._prediction = None
        log.warn("TURN_MODEL_FAILED call={call}: {error}; deciding without it", call=self.call_id,
                 error=failure.getErrorMessage())
        self.on_verdict()

    def _cancel_prediction(self) -> None:
        prediction, self._prediction = self._prediction, None
        if prediction is not None:
            prediction.cancel()
