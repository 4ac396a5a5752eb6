"""Whether the caller's sound over the bot interrupts it, for one call: the barge-in
policy (``voiced.turns.barge_in``) with this call's levels (the bot's outgoing audio as
it plays, the caller's usual level); each decision logged and recorded once per sound."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.call.chronicle import Chronicle
from voiced.turns.barge_in import Action, BargeInPolicy, SoundOverBot
from voiced.turns.eou import EndOfUtterance
from voiced.turns.levels import CallerLevel, OutgoingLevel, dbfs
from voiced.turns.spectrum import noise_like

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
        self._ignored_run: float | None = None  # the speech start of the sound last ignored
        self._echo_run: float | None = None  # the speech start of the sound last taken for echo

    def interrupts(self, eou: EndOfUtterance, words: str) -> bool:
        """The caller's sustained sound now (``words``: what a streaming engine heard of it)."""
        decision = self._policy.decide(SoundOverBot(
            True, dbfs(eou.recent_level()), dbfs(self.outgoing.recent(self._clock.seconds())), self.caller.db,
            words=words, language=self._language, noise=noise_like(eou.voiced_frames),
            # A sound that began as the bot's echo: its average is the echo's, not the voice now on it.
            sound_level_db=None if self._echo_run == eou.speech_started_at else dbfs(eou.speech_level())))
        if decision.reason == "echo":
            self._echo_run = eou.speech_started_at
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
