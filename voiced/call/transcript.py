"""What the caller said: the STT side of listening. It takes in a call's partials and
finals, decides when the transcript of an utterance is complete enough to answer,
bounds the wait for a final after the end of utterance, and handles STT giving up
(the fallback's transcript, the interim phrase, an utterance abandoned and then
answered late). ``Call`` (``voiced.call.turn``) inherits it, as it does
``Answering``: these methods make the call the ``TranscriptListener``
(``voiced.stt.base``) its STT stream reports to, while ``turn.py`` keeps the audio
path (frames, VAD events, barge-in) and the start and end of turns, which this module
ends turns through. Every method runs on the reactor thread and uses the call's state
directly.
"""

from __future__ import annotations

from twisted.logger import Logger

from voiced.call.model import State, Turn
from voiced.call.reply import ReplyKind
from voiced.turns.policy import Decision, Verdict

log = Logger(namespace="voiced.call")

UTTERANCE_ENGINE_SAFETY_MS = 30000
#: An utterance shorter than this with no transcript is taken for a noise, not words.
UNHEARD_MIN_SPEECH_S = 0.2


class Transcribing:
    """Mixed into ``Call``; see the module docstring."""

    # ---- inputs from STT (TranscriptListener) ----------------------------------------
    def on_transcript(self, text: str, is_final: bool) -> None:
        if self.state is State.ENDED:
            return
        now = self.clock.seconds()
        utterance = self._utterance
        if not is_final:
            utterance.partial = text
            times = self._turn.times
            if times.first_partial is None and times.speech_start is not None and text.strip():
                times.first_partial = now
            return
        if utterance.drop_next_final or self.state not in (State.LISTENING, State.AWAITING_FINAL):
            # A backchannel's final, or a late final of a turn already answered from its
            # partial: neither belongs to the next turn.
            utterance.drop_next_final = False
            utterance.partial = ""
            log.debug("Dropping final call={call} state={state} text={text!r}", call=self.call_id,
                      state=self.state.value, text=text)
            return
        utterance.final(text, now)
        if (
            self._abandoned is not None
            and self.state is State.LISTENING
            and self._turn.times.speech_start is None
            and utterance.finals
        ):
            # The final of an utterance given up on (the STT stream was recovering):
            # the caller is still waiting for the answer, so give it.
            log.info("LATE_FINAL call={call}: answering the utterance after all", call=self.call_id)
            self._turn, self._abandoned = self._abandoned, None
            self._finish_turn()
        elif self.state is State.AWAITING_FINAL:
            self._decide_end()
        elif (
            self.state is State.LISTENING
            and self._stt.streaming
            and self._eou.in_speech
            and self._eou.silence_ms >= self._eou.eou_silence_ms // 2  # a real pause, not a gap between words
            and utterance.finals
            and self._end_of_turn.decide(True, 0, caller_speaking=True).verdict
            is Verdict.FINISH
        ):
            # The engine's endpointing says the utterance is over while the caller is
            # silent: answer now instead of waiting out the VAD silence.
            self._turn.times.speech_end = self._eou.last_voiced_at
            self._eou.end_speech_now()
            self._stt.flush()  # the utterance is over for the engine too (its markers, its watchdog)
            self._finish_turn()

    def on_fallback_transcript(self, text: str) -> None:
        # It answers the utterance STT gave up on, while that one still waits; once the
        # turn was answered (from its partial) it is stale, and the caller's next words are
        # someone else's turn.
        owner = self._turn if self._turn.stt_failed and self._turn.number is None else self._abandoned
        if owner is None or not owner.stt_failed or self.state not in (State.LISTENING, State.AWAITING_FINAL):
            log.info("Dropping a late fallback transcript call={call} text={text!r}", call=self.call_id, text=text)
            return
        self.on_transcript(text, True)

    def on_stt_retry(self, error: str) -> None:
        self._chronicle.stt_retry()

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        if self.state is State.ENDED:
            return
        log.warn("STT_FAILED call={call} reason={reason}", call=self.call_id, reason=reason)
        self._chronicle.stt_failure(reason)
        self._utterance.final_owed_paid()
        turn = self._turn
        if turn.times.speech_start is None and self._abandoned is not None:
            # The final timeout gave the utterance up before STT did (retries outlast it): the
            # caller still waits on that one, and a fallback final still answers it (LATE_FINAL).
            turn = self._abandoned
        if (
            turn.stt_failed
            or turn.times.speech_start is None  # nobody spoke: nothing was lost, say nothing
            or self.state not in (State.LISTENING, State.AWAITING_FINAL)
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
            self._say_prompt("interim_wait", self.settings.interim_wait_phrase, turn)
        else:
            self._say_prompt("interim", self.settings.interim_phrase, turn)
        if self.state is State.AWAITING_FINAL:
            if answer_coming:
                # The fallback transcription may still rescue the turn, within its bound.
                self._start_timer(self.settings.fallback_timeout_ms, self._final_timed_out)
            else:
                # Nothing will transcribe it: the turn is over now, and the caller's next
                # words (the repeat the phrase asked for) are a turn of their own.
                self._final_timed_out()

    # ---- waiting for the final ----------------------------------------------------------
    def _final_wait_ms(self) -> int:
        if self._turn.stt_failed:
            # Only a fallback transcribing the utterance is worth waiting for.
            return self.settings.fallback_timeout_ms if self._turn.answer_coming else 0
        if not self._stt.streaming:
            # An utterance engine promises one final per flush; under load its queue
            # can be seconds long, and giving up would drop a turn that is coming.
            return UTTERANCE_ENGINE_SAFETY_MS
        return self.settings.final_timeout_ms

    def _transcript_complete(self) -> bool:
        return self._utterance.complete(self._stt.streaming, self._turn.times.speech_end)

    def _final_timed_out(self) -> None:
        self._timer = None
        if self.state is not State.AWAITING_FINAL:
            return
        self._end_of_turn.log(Decision(Verdict.FINISH, "final_timeout"))
        if self._utterance.heard_anything():
            log.info("STT final timed out call={call}; answering the partial transcript", call=self.call_id)
            self._finish_turn()
        else:
            log.info("No transcript for the utterance call={call}", call=self.call_id)
            abandoned = self._turn
            self._start_turn()
            self._abandoned = abandoned  # a late final still answers it (LATE_FINAL)
            self._answer_unheard(abandoned, "stt gave up" if abandoned.stt_failed else "no transcript in time")

    def _answer_unheard(self, turn: Turn, reason: str) -> None:
        """Nothing could be transcribed of an utterance (an empty final, no final in time,
        STT gave up): the caller hears so and may try again, never silence. It counts as a
        turn, answered by the call itself; the agent is not asked about words nobody heard.
        A sound too short to be words (a click, a cough) is not worth a reply; nor is one
        that only seemed to interrupt the bot, which goes on instead."""
        if self._false_interruptions.turn_ended(""):
            return
        times = turn.times
        if (
            not turn.stt_failed
            and times.speech_start is not None
            and times.speech_end is not None
            and times.speech_end - times.speech_start < UNHEARD_MIN_SPEECH_S
        ):
            if not self._playback.prompt_playing():
                self._arm_idle()
            return
        self._turns_answered += 1
        turn.number = self._turns_answered
        self._idle_count = 0  # the caller spoke: "I haven't heard from you" would be false
        phrase = "" if turn.prompted else (
            self.settings.interim_phrase if turn.stt_failed else self.settings.ask_again_phrase)
        said = phrase or self.settings.interim_phrase  # the prompt that already told them
        self._chronicle.unheard(turn, reason, said)
        if phrase:
            self._say_prompt("interim" if turn.stt_failed else "ask_again", phrase, turn)
        elif not self._playback.prompt_playing():
            self._arm_idle()  # else the phrase still playing arms it when it ends

    def _say_prompt(self, kind: str, phrase: str, turn: Turn) -> None:
        """A phrase the call says while it goes on listening (the caller may talk over it)."""
        if kind != "interim_wait":  # "one moment" promises an answer; it asks nothing again
            turn.prompted = True
        self._chronicle.phrase(kind, phrase)
        prompt = self._playback.new_reply(ReplyKind.PROMPT, turn=None, current=False)
        prompt.say(phrase, in_history=False)
        prompt.finish()
