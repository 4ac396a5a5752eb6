"""A barge-in, for one call: whether the caller's sound over the bot interrupts it
(``BargeInJudge``: the barge-in policy, ``voiced.turns.barge_in``, with this call's levels,
the bot's outgoing audio as it plays and the caller's usual level; each decision logged and
recorded once per sound), and what it does then (``BargeIns``): the reply stops and a new
turn starts (a false interruption may resume the reply, ``voiced.call.interruption``), an
interim phrase stops, a reply not yet sent is dropped while the caller goes on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.call.chronicle import Chronicle
from voiced.call.model import State, TurnSettings
from voiced.call.utterance import Utterance
from voiced.metrics import Metrics
from voiced.turns.barge_in import Action, BargeInPolicy, SoundOverBot
from voiced.turns.eou import EndOfUtterance
from voiced.turns.levels import CallerLevel, OutgoingLevel, dbfs
from voiced.turns.spectrum import NoiseCheck

if TYPE_CHECKING:
    from voiced.call.answering import Answering
    from voiced.call.interruption import FalseInterruptions
    from voiced.call.opening import Opening
    from voiced.call.playback import Playback
    from voiced.call.speech_to_speech import ModelTurns

log = Logger(namespace="voiced.call")


class BargeInJudge:
    def __init__(self, call_id: str, clock: IReactorTime, policy: BargeInPolicy, language: str,
                 chronicle: Chronicle) -> None:
        self.call_id = call_id
        self._clock = clock
        self._policy = policy
        self._language = language
        self._chronicle = chronicle
        self.outgoing = OutgoingLevel()  # the echo guard's reference
        self.caller = CallerLevel()
        self._noise = NoiseCheck()
        self._ignored_run: float | None = None  # the speech start of the sound last ignored
        self._echo_run: float | None = None  # the speech start of the sound last taken for echo
        self.last_detail = ""  # what the latest decision saw (levels), for the BARGE_IN line

    def interrupts(self, eou: EndOfUtterance, words: str) -> bool:
        """The caller's sustained sound now (``words``: what a streaming engine heard of it)."""
        decision = self._policy.decide(SoundOverBot(
            True, dbfs(eou.recent_level()), dbfs(self.outgoing.recent(self._clock.seconds())), self.caller.db,
            words=words, language=self._language, noise=self._noise(eou.voiced_frames),
            # A sound that began as the bot's echo: its average is the echo's, not the voice now on it.
            sound_level_db=None if self._echo_run == eou.speech_started_at else dbfs(eou.speech_level())))
        if decision.reason == "echo":
            self._echo_run = eou.speech_started_at
        self.last_detail = decision.detail
        if decision.action is Action.INTERRUPT:
            self._chronicle.barge_in(decision.action.value, decision.reason)
            return True
        if self._ignored_run != eou.speech_started_at:  # once per sound, not per frame
            self._ignored_run = eou.speech_started_at
            self._chronicle.barge_in(decision.action.value, decision.reason)
            log.info("BARGE_IN_IGNORED call={call} reason={reason} ({detail}) voiced_ms={ms}", call=self.call_id,
                     reason=decision.reason, detail=decision.detail, ms=eou.voiced_ms)
        return False

    def is_echo(self, eou: EndOfUtterance) -> bool:
        """The sound the VAD hears now is the bot's own echo: well under what it just played."""
        margin = self._policy.settings.echo_margin_db
        bot = self.outgoing.recent(self._clock.seconds())
        return bool(margin) and bot > 0 and dbfs(eou.recent_level()) <= dbfs(bot) - margin


class BargeInHost(Protocol):
    """The call, as its barge-ins see it."""

    state: State

    @property
    def settings(self) -> TurnSettings: ...
    def start_turn(self) -> None: ...
    def resume_listening(self) -> None:
        """The caller went on before any reply audio was sent: the same utterance goes on."""


class BargeIns:
    """What the caller's voice over the bot does. Every method runs on the reactor thread."""

    def __init__(self, call_id: str, clock: IReactorTime, judge: BargeInJudge, eou: EndOfUtterance,
                 utterance: Utterance, playback: Playback, answering: Answering, opening: Opening,
                 false_interruptions: FalseInterruptions, model: ModelTurns | None, metrics: Metrics,
                 host: BargeInHost) -> None:
        self.call_id = call_id
        self._clock = clock
        self._judge = judge
        self._eou = eou
        self._utterance = utterance
        self._playback = playback
        self._answering = answering
        self._opening = opening
        self._false_interruptions = false_interruptions
        self._model = model
        self._metrics = metrics
        self._host = host

    def caller_voicing(self) -> None:
        # Per frame while the caller voices. Mostly the call listens with nothing playing: no
        # barge-in and nothing to resume, whatever the sound.
        state = self._host.state
        if state is not State.SPEAKING and state is not State.GREETING and state is not State.THINKING \
                and not self._playback.replies:
            return
        # sustained() is false until the sound is long enough.
        eou = self._eou
        if not eou.sustained(self._host.settings.barge_in_ms) or self._answering.final_goodbye or \
                self._opening.holding_greeting() or self._opening.deciding:
            return
        if self._model is not None and not self._model.voiced_turns:
            return  # the model's VAD leads: its speech_started is the barge-in (model_heard_caller)
        if state is State.GREETING or state is State.SPEAKING:
            if self._judge.interrupts(eou, self._utterance.partial):
                self._interrupted(self._judge.last_detail)
        else:
            # Look only if anything plays (the interim phrase plays while the machine listens).
            if self._playback.replies and self._judge.interrupts(eou, self._utterance.partial):
                self._interrupt_prompts()
            if self._host.state is State.THINKING:
                self._host.resume_listening()

    def model_heard_caller(self) -> None:
        """The model's VAD heard the caller over the reply (``voiced.call.speech_to_speech``)."""
        if self._host.state in (State.GREETING, State.SPEAKING):
            self._interrupted("the model heard the caller")

    def _interrupt_prompts(self) -> None:
        """The caller talks over an interim phrase: stop it as any bot audio is stopped.
        The caller's speech is already the utterance being listened to; no turn restarts."""
        prompts = self._playback.prompts()
        if any(reply.audio_started for reply in prompts):
            self._metrics.barge_ins_total.inc()
            log.info("BARGE_IN call={call} voiced_ms={ms} reply=interim", call=self.call_id, ms=self._eou.voiced_ms)
        for reply in prompts:
            self._playback.interrupt(reply)

    def _interrupted(self, detail: str) -> None:
        self._metrics.barge_ins_total.inc()
        log.info("BARGE_IN call={call} voiced_ms={ms} ({detail})", call=self.call_id, ms=self._eou.voiced_ms,
                 detail=detail)
        stopped = self._playback.current
        if stopped is not None:
            self._playback.interrupt(stopped)
        if self._model is not None:
            # What the caller did not hear is cut from the model's memory; nothing resumes it.
            self._model.reply_cut(stopped, self._clock.seconds())
            self._host.start_turn()
            return
        self._host.start_turn()
        self._false_interruptions.interrupted(stopped)
