"""The answering half of a call: asking the agent, what follows a reply that played
(``voiced.call.playback`` reports it), the actions an agent asks for, idle reprompts
and the call's time limit.

``Call`` (``voiced.call.turn``) inherits this; the split follows the call's jobs:
``turn.py`` listens (audio, when a turn ends), ``transcript.py`` takes in what STT
heard, and this module answers (what to say, what the caller heard of it, what to
do after it played).
Every method runs on the reactor thread and uses the call's state directly.
"""

from __future__ import annotations


from twisted.internet.defer import CancelledError, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.agent.base import AgentError, EndCall, Event, Idle, Said, TransferCall, TurnRequest
from voiced.call.model import State, Turn
from voiced.call.reply import Reply, ReplyKind

log = Logger(namespace="voiced.call")

#: An utterance shorter than this with no transcript is taken for a noise, not words.
UNHEARD_MIN_SPEECH_S = 0.2

#: What a call's record says when the call itself ended it with one of its goodbyes.
GOODBYE_ENDINGS = {"idle_goodbye": "idle timeout", "time_limit": "max call duration", "drain_goodbye": "drain"}


class Answering:
    """Mixed into ``Call``; see the module docstring."""

    def _ask_event(self, event: Event) -> None:
        """A turn that is an event, not speech: the agent answers it like any other."""
        self._cancel_idle()
        self._cancel_timer()
        self._turn = Turn(event=event)
        self._utterance.clear()
        self._ask(self._turn)

    def _ask(self, turn: Turn) -> None:
        self._false_interruptions.cancel()  # whatever was stopped, the caller has a turn to answer
        again = turn.number is not None  # a late final answers an utterance recorded as unheard
        if not again:
            self._turns_answered += 1
            turn.number = self._turns_answered
        request = TurnRequest(turn.number, turn.text, turn.event, tuple(self.history))
        if turn.text:
            log.info("CALLER call={call} turn={turn} text={text!r}", call=self.call_id, turn=turn.number,
                     text=turn.text)
            self.history.append(Said("caller", turn.text))
        else:
            log.info("EVENT call={call} turn={turn} event={event}", call=self.call_id, turn=turn.number,
                     event=turn.event)
        self._chronicle.asked(turn, again)
        self.state = State.THINKING
        # The agent is asked at once; a spoken turn's reply may be held until the caller is surely done.
        reply = self._playback.new_reply(ReplyKind.ANSWER, turn, gate=self._gate.hold(turn) if turn.text else None)
        turn.times.agent_asked = self.clock.seconds()
        reply.arm_filler(self.settings.filler_ms / 1000, self.settings.filler_phrase)
        request_done = maybeDeferred(self.conversation.respond, request, reply)
        reply.agent_request = request_done
        request_done.addCallbacks(lambda _: reply.finish(), self._agent_failed, errbackArgs=(reply,))

    def _agent_failed(self, failure: Failure, reply: Reply) -> None:
        if failure.check(CancelledError) or reply.cancelled:
            return
        if failure.check(AgentError):
            log.warn("AGENT_FAILED call={call} reply={reply} error={error}", call=self.call_id,
                     reply=reply.mark_prefix, error=failure.getErrorMessage())
        else:
            log.failure("AGENT_FAILED call={call} reply={reply}", failure, call=self.call_id, reply=reply.mark_prefix)
        self._chronicle.agent_failed(reply.turn, failure.getErrorMessage() or failure.type.__name__)
        self._chronicle.phrase("apology", self.settings.apology_phrase)
        reply.fail(self.settings.apology_phrase)  # its end mark returns the call to listening

    def filler_played(self, reply: Reply) -> None:
        log.info("FILLER call={call} reply={reply}: no reply within {ms} ms", call=self.call_id,
                 reply=reply.mark_prefix, ms=self.settings.filler_ms)
        self._chronicle.phrase("filler", self.settings.filler_phrase)
        self._chronicle.filler(reply.turn)

    def _interrupt_prompts(self) -> None:
        """The caller talks over an interim phrase: stop it as any bot audio is stopped.
        The caller's speech is already the utterance being listened to; no turn restarts."""
        prompts = self._playback.prompts()
        if any(reply.audio_started for reply in prompts):
            self.metrics.barge_ins_total.inc()
            log.info("BARGE_IN call={call} voiced_ms={ms} reply=interim", call=self.call_id, ms=self._eou.voiced_ms)
        for reply in prompts:
            self._playback.interrupt(reply)

    def answer_unheard(self, turn: Turn, reason: str) -> None:
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
            self.say_prompt("interim" if turn.stt_failed else "ask_again", phrase, turn)
        elif not self._playback.prompt_playing():
            self._arm_idle()  # else the phrase still playing arms it when it ends

    def say_prompt(self, kind: str, phrase: str, turn: Turn) -> None:
        """A phrase the call says while it goes on listening (the caller may talk over it)."""
        if kind != "interim_wait":  # "one moment" promises an answer; it asks nothing again
            turn.prompted = True
        self._chronicle.phrase(kind, phrase)
        prompt = self._playback.new_reply(ReplyKind.PROMPT, turn=None, current=False)
        prompt.say(phrase, in_history=False)
        prompt.finish()

    # ---- what the playback reports (voiced.call.playback) --------------------------------------
    def reply_playing(self, reply: Reply) -> None:
        if self.state is State.THINKING:
            self.state = State.SPEAKING

    def reply_finished(self, reply: Reply) -> None:
        if reply.kind is ReplyKind.PROMPT:
            # An interim prompt: the turn it interrupted goes on; if the caller has not
            # spoken since, the silence after it is idle like after any reply.
            if self._caller_is_quiet() and not self._playback.prompt_playing():
                self._arm_idle()
            return
        if reply is not self._playback.current or self.state not in (State.GREETING, State.SPEAKING, State.THINKING):
            return
        for action in reply.actions:
            if isinstance(action, EndCall):
                self._hang_up()
                return
            if isinstance(action, TransferCall):
                self._transfer(action.to)
                return
        if self._events:
            self._ask_event(self._events.popleft())
        else:
            self.start_turn()
            self._arm_idle()

    # ---- call actions ---------------------------------------------------------------------
    def _hang_up(self) -> None:
        self.state = State.HANGING_UP
        self._ending = self._ending or "bot hung up after goodbye"
        log.info("HANGUP call={call}: goodbye played", call=self.call_id)
        self.transport.hang_up()
        if self.control is not None:
            self.control.complete(self.call_id)

    def _transfer(self, to: str) -> None:
        if self.control is None:
            log.error("TRANSFER_FAILED call={call} to={to}: this call's carrier has no transfer configured "
                      "(Twilio: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN; see README's Carriers)", call=self.call_id,
                      to=to)
            self._say_apology()
            return
        log.info("TRANSFER call={call} to={to}", call=self.call_id, to=to)
        self._ending = f"transferred to {to}"
        self.state = State.HANGING_UP  # Twilio ends this stream once the call has moved
        # A bad target from an agent is refused by the control before any request: that is a False too.
        maybeDeferred(self.control.transfer, self.call_id, to).addErrback(self._transfer_refused).addCallback(
            self._transferred, to)

    def _transfer_refused(self, failure: Failure) -> bool:
        log.error("TRANSFER_FAILED call={call}: {error}", call=self.call_id, error=failure.getErrorMessage())
        return False

    def _transferred(self, ok: bool, to: str) -> None:
        if not ok and self.state is State.HANGING_UP:
            self._ending = ""
            self._say_apology()

    def _say_apology(self) -> None:
        self._chronicle.phrase("apology", self.settings.apology_phrase)
        self.state = State.THINKING
        reply = self._playback.new_reply(ReplyKind.ANSWER, turn=None)
        reply.say(self.settings.apology_phrase, in_history=False)
        reply.finish()

    def _say_goodbye(self, kind: str, phrase: str) -> None:
        """End the call politely; the caller cannot talk over this one."""
        self._ending = GOODBYE_ENDINGS.get(kind, "")
        self._chronicle.phrase(kind, phrase)
        self._final_goodbye = True
        self._cancel_timer()
        self._cancel_idle()
        self.state = State.THINKING
        reply = self._playback.new_reply(ReplyKind.ANSWER, turn=None)
        reply.say(phrase)
        reply.action(EndCall())
        reply.finish()

    # ---- idle and limits --------------------------------------------------------------------
    def _arm_idle(self) -> None:
        self._cancel_idle()
        if self.settings.idle_reprompt_ms:
            self._idle_timer = self.clock.callLater(self.settings.idle_reprompt_ms / 1000, self._idle)

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    def _idle(self) -> None:
        self._idle_timer = None
        if not self._caller_is_quiet():
            return
        self._idle_count += 1
        log.info("IDLE call={call} count={count}", call=self.call_id, count=self._idle_count)
        if self._idle_count > self.settings.idle_max_reprompts:
            self._say_goodbye("idle_goodbye", self.settings.idle_goodbye_phrase)
        else:
            self._ask_event(Idle(self._idle_count))

    def _time_limit_reached(self) -> None:
        self._time_limit = None
        if self.state in (State.ENDED, State.HANGING_UP) or self._final_goodbye:
            return
        log.info("TIME_LIMIT call={call}: {s} s reached", call=self.call_id, s=self.settings.max_call_s)
        self._cut_to_goodbye("time_limit", self.settings.time_limit_phrase)

    def drain_goodbye(self) -> None:
        """The daemon is stopping and this call outlived the drain: a goodbye, then the close (1000)."""
        if self.state in (State.ENDED, State.HANGING_UP) or self._final_goodbye:
            return
        log.info("DRAIN_GOODBYE call={call}", call=self.call_id)
        self._cut_to_goodbye("drain_goodbye", self.settings.drain_goodbye_phrase)

    def _cut_to_goodbye(self, kind: str, phrase: str) -> None:
        self._playback.interrupt_all()
        self._say_goodbye(kind, phrase)
