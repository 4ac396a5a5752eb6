"""The answering half of a call: asking the agent, what the call says itself (prompts,
an unheard utterance's answer, apologies, goodbyes), what follows a reply that played
(the actions an agent asks for, the turn queued behind it), a falsely interrupted
reply resumed, idle reprompts and the call's time limit.

The turn machine (``voiced.call.turn.Call``) decides when the caller's turn is over and
hands it here; this side talks back only through ``AnswerHost`` (the call's state, and
starting, waiting on or asking a turn) and puts its replies on the line through the
call's ``Playback``. Every method runs on the reactor thread.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet.defer import CancelledError, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from voiced.agent.base import (AgentError, Conversation, EndCall, Event, Idle, Said, TransferCall, TurnRequest,
                               Voicemail)
from voiced.call.chronicle import Chronicle
from voiced.call.control import CallControl
from voiced.call.interruption import FalseInterruptions
from voiced.call.model import CallTransport, State, Turn, TurnSettings
from voiced.call.playback import Playback
from voiced.call.release import ReplyGate
from voiced.call.reply import Reply, ReplyKind
from voiced.logging import Logger  # twisted's, cheaper: every turn's CALLER line

log = Logger(namespace="voiced.call")

#: An utterance shorter than this with no transcript is taken for a noise, not words.
UNHEARD_MIN_SPEECH_S = 0.2
#: What a call's record says when the call itself ended it with one of its goodbyes.
GOODBYE_ENDINGS = {"idle_goodbye": "idle timeout", "time_limit": "max call duration", "drain_goodbye": "drain"}
# Keys pressed while the caller speaks or the agent thinks wait for their turn; a few are plenty.
MAX_QUEUED_EVENTS = 8


class AnswerHost(Protocol):
    """The turn machine as the answering side sees it."""

    #: The call's state: asking makes it THINKING, a hang-up or a transfer HANGING_UP.
    state: State

    def caller_is_quiet(self) -> bool:
        """Listening, and the caller has not begun a turn."""

    def ask_event(self, event: Event) -> None:
        """Make ``event`` the turn and have it answered."""

    def start_turn(self) -> None:
        """Listen for the caller's next turn."""

    def cancel_wait(self) -> None:
        """Drop whatever the turn was waiting for (a final, the end of the turn)."""


class Answering:
    def __init__(self, call_id: str, clock: IReactorTime, settings: TurnSettings, conversation: Conversation,
                 transport: CallTransport, control: CallControl | None, chronicle: Chronicle, playback: Playback,
                 gate: ReplyGate, false_interruptions: FalseInterruptions, history: deque[Said],
                 host: AnswerHost) -> None:
        self.call_id = call_id
        self._clock = clock
        self.settings = settings  # the call's, replaced with them
        self._conversation = conversation
        self._transport = transport
        self._control = control
        self._chronicle = chronicle
        self._playback = playback
        self._gate = gate
        self._false_interruptions = false_interruptions
        self._history = history
        self._host = host
        self.turns_answered = 0
        #: Keys pressed while the caller spoke or the agent thought, answered after the reply in progress.
        self.events: deque[Event] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._idle_timer: IDelayedCall | None = None
        self._idle_count = 0
        self._time_limit: IDelayedCall | None = None
        #: A goodbye the caller cannot talk over (idle, time limit) is on its way.
        self.final_goodbye = False
        #: Who ended the call and why, in words, once the call itself decided it (the bot's goodbye,
        #: a transfer): the record says this rather than how the carrier's stream closed.
        self.ending = ""
        #: The reply in progress is a message an answering machine records: the call hangs up after it.
        self.voicemail = False

    def greet(self) -> None:
        """The call opens (``voiced.call.opening``): the greeting plays, and the call's time limit runs."""
        announcement = self.settings.announcement_phrase
        sentences = self._conversation.greeting()
        # No sentences: a speech-to-speech model greets in its own voice (voiced.call.speech_to_speech).
        if sentences or announcement:
            greeting = self._playback.new_reply(ReplyKind.GREETING, turn=None)
            if announcement:  # the recording's notice comes first; it is not conversation
                self._chronicle.phrase("announcement", announcement)
                greeting.say(announcement, in_history=False)
            for sentence in sentences:
                greeting.say(sentence)
            greeting.finish()
        self.arm_time_limit()

    def arm_time_limit(self) -> None:
        """The call's time limit runs from its start (an outbound call's opening may wait)."""
        if self.settings.max_call_s and self._time_limit is None:
            self._time_limit = self._clock.callLater(self.settings.max_call_s, self._time_limit_reached)

    def leave_voicemail(self) -> None:
        """An answering machine records (``voiced.call.machine``): the agent's voicemail
        message, which nothing interrupts, then the hang-up, whatever the reply asks."""
        if self._host.state in (State.ENDED, State.HANGING_UP):
            return
        self.voicemail = self.final_goodbye = True
        self.ending = "voicemail left"
        self.cancel_idle()
        self._host.ask_event(Voicemail())

    def hang_up(self, ending: str) -> None:
        """End the call now, without a word (a fax answered)."""
        if self._host.state in (State.ENDED, State.HANGING_UP):
            return
        self.ending = ending
        self._hang_up()

    def ask(self, turn: Turn) -> None:
        """Ask the agent to answer ``turn`` (the caller's words, or an event)."""
        if turn.text:
            self._idle_count = 0  # the caller spoke: idle reprompts count from zero again
        self._false_interruptions.cancel()  # whatever was stopped, the caller has a turn to answer
        again = turn.number is not None  # a late final answers an utterance recorded as unheard
        if not again:
            self.turns_answered += 1
            turn.number = self.turns_answered
        request = TurnRequest(turn.number, turn.text, turn.event, tuple(self._history))
        if turn.text:
            log.info("CALLER call={call} turn={turn} text={text!r}", call=self.call_id, turn=turn.number,
                     text=turn.text)
            self._history.append(Said("caller", turn.text))
        else:
            log.info("EVENT call={call} turn={turn} event={event}", call=self.call_id, turn=turn.number,
                     event=turn.event)
        self._chronicle.asked(turn, again)
        self._host.state = State.THINKING
        # The agent is asked at once; a spoken turn's reply may be held until the caller is surely done.
        reply = self._playback.new_reply(ReplyKind.ANSWER, turn, gate=self._gate.hold(turn) if turn.text else None)
        turn.times.agent_asked = self._clock.seconds()
        request_done = maybeDeferred(self._conversation.respond, request, reply)
        reply.agent_request = request_done
        request_done.addCallbacks(lambda _: reply.finish(), self._agent_failed, errbackArgs=(reply,))
        # Armed once the agent was asked: one that answered at once (a script) needs no timer.
        reply.arm_filler(self.settings.filler_ms / 1000, self.settings.filler_phrase)

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
                self.arm_idle()
            return
        self.turns_answered += 1
        turn.number = self.turns_answered
        self._idle_count = 0  # the caller spoke: "I haven't heard from you" would be false
        phrase = "" if turn.prompted else (
            self.settings.interim_phrase if turn.stt_failed else self.settings.ask_again_phrase)
        said = phrase or self.settings.interim_phrase  # the prompt that already told them
        self._chronicle.unheard(turn, reason, said)
        if phrase:
            self.say_prompt("interim" if turn.stt_failed else "ask_again", phrase, turn)
        elif not self._playback.prompt_playing():
            self.arm_idle()  # else the phrase still playing arms it when it ends

    def say_prompt(self, kind: str, phrase: str, turn: Turn) -> None:
        """A phrase the call says while it goes on listening (the caller may talk over it)."""
        if kind != "interim_wait":  # "one moment" promises an answer; it asks nothing again
            turn.prompted = True
        self._chronicle.phrase(kind, phrase)
        prompt = self._playback.new_reply(ReplyKind.PROMPT, turn=None, current=False)
        prompt.say(phrase, in_history=False)
        prompt.finish()

    # ---- after a reply ----------------------------------------------------------------------
    def reply_finished(self, reply: Reply) -> None:
        """``reply`` played out (``voiced.call.playback``): its actions, else the next turn."""
        if reply.kind is ReplyKind.PROMPT:
            # An interim prompt: the turn it interrupted goes on; if the caller has not
            # spoken since, the silence after it is idle like after any reply.
            if self._host.caller_is_quiet() and not self._playback.prompt_playing():
                self.arm_idle()
            return
        if reply is not self._playback.current or \
                self._host.state not in (State.GREETING, State.SPEAKING, State.THINKING):
            return
        if self.voicemail:
            self._hang_up()
            return
        for action in reply.actions:
            if isinstance(action, EndCall):
                self._hang_up()
                return
            if isinstance(action, TransferCall):
                self._transfer(action.to)
                return
        if self.events:
            self._host.ask_event(self.events.popleft())
        else:
            self._host.start_turn()
            self.arm_idle()

    def resume(self, reply: Reply, reason: str) -> None:
        """The caller only seemed to interrupt ``reply`` (``voiced.call.interruption``): it
        plays again from the sentence they did not hear whole."""
        if self._host.state in (State.ENDED, State.HANGING_UP) or self.final_goodbye:
            return
        log.info("BARGE_IN_RESUMED call={call} reply={reply} reason={reason}: the caller said nothing to answer",
                 call=self.call_id, reply=reply.mark_prefix, reason=reason)
        self._chronicle.barge_in("resume", reason)
        self._host.start_turn()  # the turn that stopped it is over (no words, or only "yeah"s)
        self.cancel_idle()
        self._host.state = State.THINKING
        resumed = self._playback.new_reply(ReplyKind.ANSWER, turn=None)
        resumed.replay(reply.unheard(), reply.actions)
        resumed.finish()

    def withdraw(self, turn: Turn) -> None:
        """``turn`` was asked too soon (the caller went on): it is asked again, whole, once it
        is over, under the same number and without a second history line."""
        if self._history and self._history[-1] == Said("caller", turn.text):
            self._history.pop()
        self._chronicle.withdrawn(turn)
        self.turns_answered -= 1
        turn.number = None

    # ---- call actions ---------------------------------------------------------------------
    def _hang_up(self) -> None:
        self._host.state = State.HANGING_UP
        self.ending = self.ending or "bot hung up after goodbye"
        log.info("HANGUP call={call}: goodbye played", call=self.call_id)
        self._transport.hang_up()
        if self._control is not None:
            self._control.complete(self.call_id)

    def _transfer(self, to: str) -> None:
        if self._control is None:
            log.error("TRANSFER_FAILED call={call} to={to}: this call's carrier has no transfer configured "
                      "(Twilio: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN; see README's Carriers)", call=self.call_id,
                      to=to)
            self._say_apology()
            return
        log.info("TRANSFER call={call} to={to}", call=self.call_id, to=to)
        self.ending = f"transferred to {to}"
        self._host.state = State.HANGING_UP  # Twilio ends this stream once the call has moved
        # A bad target from an agent is refused by the control before any request: that is a False too.
        maybeDeferred(self._control.transfer, self.call_id, to).addErrback(self._transfer_refused).addCallback(
            self._transferred, to)

    def _transfer_refused(self, failure: Failure) -> bool:
        log.error("TRANSFER_FAILED call={call}: {error}", call=self.call_id, error=failure.getErrorMessage())
        return False

    def _transferred(self, ok: bool, to: str) -> None:
        if not ok and self._host.state is State.HANGING_UP:
            self.ending = ""
            self._say_apology()

    def _say_apology(self) -> None:
        self._chronicle.phrase("apology", self.settings.apology_phrase)
        self._host.state = State.THINKING
        reply = self._playback.new_reply(ReplyKind.ANSWER, turn=None)
        reply.say(self.settings.apology_phrase, in_history=False)
        reply.finish()

    def _say_goodbye(self, kind: str, phrase: str) -> None:
        """End the call politely; the caller cannot talk over this one."""
        self.ending = GOODBYE_ENDINGS.get(kind, "")
        self._chronicle.phrase(kind, phrase)
        self.final_goodbye = True
        self._host.cancel_wait()
        self.cancel_idle()
        self._host.state = State.THINKING
        reply = self._playback.new_reply(ReplyKind.ANSWER, turn=None)
        reply.say(phrase)
        reply.action(EndCall())
        reply.finish()

    # ---- idle and limits --------------------------------------------------------------------
    def arm_idle(self) -> None:
        self.cancel_idle()
        if self.settings.idle_reprompt_ms:
            self._idle_timer = self._clock.callLater(self.settings.idle_reprompt_ms / 1000, self._idle)

    def cancel_idle(self) -> None:
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None

    def _idle(self) -> None:
        self._idle_timer = None
        if not self._host.caller_is_quiet():
            return
        self._idle_count += 1
        log.info("IDLE call={call} count={count}", call=self.call_id, count=self._idle_count)
        if self._idle_count > self.settings.idle_max_reprompts:
            self._say_goodbye("idle_goodbye", self.settings.idle_goodbye_phrase)
        else:
            self._host.ask_event(Idle(self._idle_count))

    def _time_limit_reached(self) -> None:
        self._time_limit = None
        if self._host.state in (State.ENDED, State.HANGING_UP) or self.final_goodbye:
            return
        log.info("TIME_LIMIT call={call}: {s} s reached", call=self.call_id, s=self.settings.max_call_s)
        self._cut_to_goodbye("time_limit", self.settings.time_limit_phrase)

    def drain_goodbye(self) -> None:
        """The daemon is stopping and this call outlived the drain: a goodbye, then the close (1000)."""
        if self._host.state in (State.ENDED, State.HANGING_UP) or self.final_goodbye:
            return
        log.info("DRAIN_GOODBYE call={call}", call=self.call_id)
        self._cut_to_goodbye("drain_goodbye", self.settings.drain_goodbye_phrase)

    def _cut_to_goodbye(self, kind: str, phrase: str) -> None:
        self._playback.interrupt_all()
        self._gate.drop()  # the reply it held is gone: the caller's voice now resumes nothing
        self._say_goodbye(kind, phrase)

    def close(self) -> None:
        self.cancel_idle()
        if self._time_limit is not None and self._time_limit.active():
            self._time_limit.cancel()
