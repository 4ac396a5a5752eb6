"""What the caller said: the call's STT listener. It opens the call's STT stream as its
``TranscriptListener`` (``voiced.stt.base``), takes in the partials and finals of the
utterance (``voiced.call.utterance``), says when the transcript is complete enough to
answer and how long a final is worth waiting for, and handles STT giving up (the
fallback's transcript, the interim phrase, an utterance abandoned and then answered
late). The turn itself is the call's: this asks it to decide, finish or restart a turn
(``TranscriptHost``), and hands an utterance nothing could be made of to the answering
side (``UnheardAnswers``). Every method runs on the reactor thread.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.audio import AudioFormat
from voiced.call.chronicle import Chronicle
from voiced.call.model import State, Turn, TurnSettings
from voiced.call.utterance import Utterance
from voiced.stt.base import STTEngine
from voiced.turns.end_of_turn import EndOfTurn
from voiced.turns.eou import EndOfUtterance
from voiced.turns.policy import Decision, Verdict

log = Logger(namespace="voiced.call")

UTTERANCE_ENGINE_SAFETY_MS = 30000


class TranscriptHost(Protocol):
    """The turn machine (``voiced.call.turn.Call``) as the transcript sees it."""

    @property
    def state(self) -> "State": ...

    @property
    def turn(self) -> Turn:
        """The turn being listened to."""

    def decide_end(self) -> None:
        """The transcript changed while the utterance is over: is the turn?"""

    def finish_turn(self) -> None: ...

    def answer_late(self, turn: Turn) -> None:
        """Answer ``turn``, an utterance given up on whose final came after all."""

    def start_turn(self) -> None: ...

    def wait(self, ms: int, then: Callable[[], None]) -> None:
        """``then`` in ``ms``, unless the turn moves on first (the turn's one timer)."""


class UnheardAnswers(Protocol):
    """The answering side (``voiced.call.answering``), for what the call says itself."""

    def answer_unheard(self, turn: Turn, reason: str) -> None: ...
    def say_prompt(self, kind: str, phrase: str, turn: Turn) -> None: ...


class Transcribing:
    def __init__(self, call_id: str, clock: IReactorTime, stt: STTEngine, audio: AudioFormat,
                 settings: TurnSettings, chronicle: Chronicle, eou: EndOfUtterance, end_of_turn: EndOfTurn,
                 utterance: Utterance, host: TranscriptHost, answers: UnheardAnswers) -> None:
        self.call_id = call_id
        self._clock = clock
        self.settings = settings  # the call's, replaced with them
        self._chronicle = chronicle
        self._eou = eou
        self._end_of_turn = end_of_turn
        self._utterance = utterance  # the call starts, takes and clears it with its turns
        self._host = host
        self._answers = answers
        self._abandoned: Turn | None = None  # the last utterance that got no transcript in time
        #: The call's STT stream, reporting here; the call feeds it and tells it of the caller's speech.
        self.stream = stt.open_stream(call_id, self, audio=audio)

    def caller_moved_on(self) -> None:
        """The caller began a new utterance: a late final no longer answers the abandoned one."""
        self._abandoned = None

    # ---- inputs from STT (TranscriptListener) ----------------------------------------
    def on_transcript(self, text: str, is_final: bool) -> None:
        if self._host.state is State.ENDED:
            return
        now = self._clock.seconds()
        utterance = self._utterance
        if not is_final:
            utterance.partial = text
            times = self._host.turn.times
            if times.first_partial is None and times.speech_start is not None and text.strip():
                times.first_partial = now
            return
        if utterance.drop_next_final or self._host.state not in (State.LISTENING, State.AWAITING_FINAL):
            # A backchannel's final, or a late final of a turn already answered from its
            # partial: neither belongs to the next turn.
            utterance.drop_next_final = False
            utterance.partial = ""
            log.debug("Dropping final call={call} state={state} text={text!r}", call=self.call_id,
                      state=self._host.state.value, text=text)
            return
        utterance.final(text, now)
        if (
            self._abandoned is not None
            and self._host.state is State.LISTENING
            and self._host.turn.times.speech_start is None
            and utterance.finals
        ):
            # The final of an utterance given up on (the STT stream was recovering):
            # the caller is still waiting for the answer, so give it.
            log.info("LATE_FINAL call={call}: answering the utterance after all", call=self.call_id)
            turn, self._abandoned = self._abandoned, None
            self._host.answer_late(turn)
        elif self._host.state is State.AWAITING_FINAL:
            self._host.decide_end()
        elif (
            self._host.state is State.LISTENING
            and self.stream.streaming
            and self._eou.in_speech
            and self._eou.silence_ms >= self._eou.eou_silence_ms // 2  # a real pause, not a gap between words
            and utterance.finals
            and self._end_of_turn.decide(True, 0, caller_speaking=True).verdict
            is Verdict.FINISH
        ):
            # The engine's endpointing says the utterance is over while the caller is
            # silent: answer now instead of waiting out the VAD silence.
            self._host.turn.times.speech_end = self._eou.last_voiced_at
            self._eou.end_speech_now()
            self.stream.flush()  # the utterance is over for the engine too (its markers, its watchdog)
            self._host.finish_turn()

    def on_fallback_transcript(self, text: str) -> None:
        # It answers the utterance STT gave up on, while that one still waits; once the
        # turn was answered (from its partial) it is stale, and the caller's next words are
        # someone else's turn.
        turn = self._host.turn
        owner = turn if turn.stt_failed and turn.number is None else self._abandoned
        if owner is None or not owner.stt_failed or self._host.state not in (State.LISTENING, State.AWAITING_FINAL):
            log.info("Dropping a late fallback transcript call={call} text={text!r}", call=self.call_id, text=text)
            return
        self.on_transcript(text, True)

    def on_stt_retry(self, error: str) -> None:
        self._chronicle.stt_retry()

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        if self._host.state is State.ENDED:
            return
        log.warn("STT_FAILED call={call} reason={reason}", call=self.call_id, reason=reason)
        self._chronicle.stt_failure(reason)
        self._utterance.final_owed_paid()
        turn = self._host.turn
        if turn.times.speech_start is None and self._abandoned is not None:
            # The final timeout gave the utterance up before STT did (retries outlast it): the
            # caller still waits on that one, and a fallback final still answers it (LATE_FINAL).
            turn = self._abandoned
        if (
            turn.stt_failed
            or turn.times.speech_start is None  # nobody spoke: nothing was lost, say nothing
            or self._host.state not in (State.LISTENING, State.AWAITING_FINAL)
        ):
            return
        turn.stt_failed = True
        turn.answer_coming = answer_coming
        if turn.prompted:
            return  # already asked to say it again (UNHEARD); a fallback final still answers it (LATE_FINAL)
        if self._eou.in_speech:
            return  # the caller is talking (the fallback has their words): a phrase now would talk over them
        # "Let's try that again" while the fallback's answer is on its way would have the
        # caller repeat over it.
        if answer_coming:
            self._answers.say_prompt("interim_wait", self.settings.interim_wait_phrase, turn)
        else:
            self._answers.say_prompt("interim", self.settings.interim_phrase, turn)
        if self._host.state is State.AWAITING_FINAL:
            if answer_coming:
                # The fallback transcription may still rescue the turn, within its bound.
                self._host.wait(self.settings.fallback_timeout_ms, self.final_timed_out)
            else:
                # Nothing will transcribe it: the turn is over now, and the caller's next
                # words (the repeat the phrase asked for) are a turn of their own.
                self.final_timed_out()

    # ---- waiting for the final ----------------------------------------------------------
    def final_wait_ms(self) -> int:
        """How long a final for the ended utterance is worth waiting for."""
        turn = self._host.turn
        if turn.stt_failed:
            # Only a fallback transcribing the utterance is worth waiting for.
            return self.settings.fallback_timeout_ms if turn.answer_coming else 0
        if not self.stream.streaming:
            # An utterance engine promises one final per flush; under load its queue
            # can be seconds long, and giving up would drop a turn that is coming.
            return UTTERANCE_ENGINE_SAFETY_MS
        return self.settings.final_timeout_ms

    def complete(self) -> bool:
        """The transcript covers the caller's last word."""
        return self._utterance.complete(self.stream.streaming, self._host.turn.times.speech_end)

    def final_timed_out(self) -> None:
        """No final came within its wait: answer what was heard, or say nothing was."""
        if self._host.state is not State.AWAITING_FINAL:
            return
        self._end_of_turn.log(Decision(Verdict.FINISH, "final_timeout"))
        if self._utterance.heard_anything():
            log.info("STT final timed out call={call}; answering the partial transcript", call=self.call_id)
            self._host.finish_turn()
        else:
            log.info("No transcript for the utterance call={call}", call=self.call_id)
            abandoned = self._host.turn
            self._host.start_turn()
            self._abandoned = abandoned  # a late final still answers it (LATE_FINAL)
            self._answers.answer_unheard(abandoned, "stt gave up" if abandoned.stt_failed else "no transcript in time")
