"""The per-call turn state machine: greeting -> listening -> thinking -> speaking -> listening ...

No sockets and no real clock: the carrier protocol feeds it frames, marks and
transcripts; it talks back through a ``CallTransport`` and reads time from an
injected ``IReactorTime``. Engines are borrowed from the service.

States:
  GREETING        the opening reply plays; the caller may barge in
  LISTENING       collecting the caller's utterance (VAD + transcripts)
  AWAITING_FINAL  end of utterance seen; waiting (bounded) for the final transcript
  THINKING        the agent and TTS work on the reply; no audio sent yet
  SPEAKING        reply audio sent; marks tell what the caller has heard
  HANGING_UP      the goodbye has played; the stream is being closed
  ENDED           the call is over; everything else is ignored

``Call`` holds the state and the turn, and decides when a turn starts and ends. Its
parts each have one job and talk back through a small protocol the call implements:
``voiced.call.hearing`` (the caller's audio in, VAD events), ``voiced.call.transcript``
(what STT says the caller said), ``voiced.call.answering`` (the agent, what the call
says itself, actions, idle, time limit), ``voiced.call.playback`` (the replies on the
line, what the caller heard), ``voiced.call.opening`` (who speaks first) and
``voiced.call.barge_in`` (what the caller's voice over the bot does).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from voiced.agent.base import CallInfo, Conversation, Dtmf, Event, Said
from voiced.audio import FRAME_MS, MULAW_8K, AudioFormat
from voiced.call.answering import MAX_QUEUED_EVENTS, Answering
from voiced.call.barge_in import BargeInJudge, BargeIns
from voiced.call.chronicle import Chronicle
from voiced.call.control import CallControl
from voiced.call.hearing import Hearing
from voiced.call.interruption import FalseInterruptions
from voiced.call.model import CallTransport, State, Turn, TurnSettings
from voiced.call.opening import Opening
from voiced.call.playback import END_MARK_GRACE_S, Playback
from voiced.call.record import CallObserver, CallRecord
from voiced.call.release import ReplyGate
from voiced.call.reply import Reply
from voiced.call.speech_to_speech import ModelEar, ModelTurns, model_session
from voiced.call.transcript import Transcribing
from voiced.call.utterance import Utterance
from voiced.metrics import Metrics, TurnTimes
from voiced.stt.base import STTEngine
from voiced.tts.speaker import Speaker
from voiced.turns.detection import TurnDetection
from voiced.turns.end_of_turn import EndOfTurn
from voiced.turns.eou import EndOfUtterance
from voiced.turns.policy import Decision, Verdict

__all__ = ["Call", "CallTransport", "State", "Turn", "TurnSettings", "END_MARK_GRACE_S", "MAX_QUEUED_EVENTS"]

log = Logger(namespace="voiced.call")

MAX_LOGGED_DTMF = 50
# The agent sees the call's history; a call that never ends must not grow it without bound.
HISTORY_LIMIT = 400


class Call:
    """One phone call's turn-taking. Every method runs on the reactor thread."""

    def __init__(
        self,
        info: CallInfo,
        clock: IReactorTime,
        transport: CallTransport,
        stt: STTEngine,
        speaker: Speaker,
        conversation: Conversation,
        eou: EndOfUtterance,
        metrics: Metrics,
        settings: TurnSettings,
        control: CallControl | None = None,
        observer: CallObserver | None = None,
        playout: str = "carrier",
        stt_audio: AudioFormat = MULAW_8K,
        turns: TurnDetection | None = None,
        amd: str = "off",
    ) -> None:
        self.info = info
        self.call_id = info.call_id
        self.clock = clock
        self.transport = transport
        self.speaker = speaker
        self.conversation = conversation
        self.metrics = metrics
        self._settings = settings
        self.control = control
        self.record = CallRecord.begin(info, clock.seconds(), playout)
        self._chronicle = Chronicle(self.record, observer, metrics, clock)
        self._eou = eou
        turns = turns or TurnDetection()
        self._end_of_turn = EndOfTurn(
            info.call_id, clock, turns.end, turns.model, info.language, metrics.turn_end_decisions.inc,
            adaptive=turns.adaptive, lead_frames=eou.min_speech_ms // FRAME_MS)
        self._end_of_turn.on_verdict = self._model_verdict
        self._gate = ReplyGate(clock, self._end_of_turn)
        self._barge_in = BargeInJudge(info.call_id, clock, turns.barge_in, info.language, self._chronicle)
        self._false_interruptions = FalseInterruptions(clock, settings.false_interruption_ms / 1000, info.language,
                                                       self)
        # Model mode: a speech-to-speech agent hears the caller's audio itself, in place of STT.
        session = model_session(conversation)
        if session is not None:
            stt, stt_audio = ModelEar(session), MULAW_8K
        # What the STT stream is fed: the 8 kHz mu-law the call hears, or a wideband
        # carrier's 16 kHz PCM (on_media's stt_audio), as the service chose for this call.
        self.stt_audio = stt_audio
        # What the caller has said in the current turn (Transcribing fills it in).
        self._utterance = Utterance()
        self.history: deque[Said] = deque(maxlen=HISTORY_LIMIT)
        self._playback = Playback(info.call_id, clock, transport, speaker, self._chronicle, self._barge_in.outgoing,
                                  self.history, self)
        self._answering = Answering(info.call_id, clock, settings, conversation, transport, control, self._chronicle,
                                    self._playback, self._gate, self._false_interruptions, self.history, self)
        self._transcribing = Transcribing(info.call_id, clock, stt, stt_audio, settings, self._chronicle, eou,
                                          self._end_of_turn, self._utterance, self, self._answering)
        self._stt = self._transcribing.stream
        self._hearing = Hearing(clock, eou, self._stt, stt_audio, self._end_of_turn, self)
        self._model = None if session is None else ModelTurns(info.call_id, clock, session, self, self._playback,
                                                               self._chronicle, self._answering)
        self.state = State.GREETING
        self._turn = Turn()
        self._timer: IDelayedCall | None = None
        self._dtmf_count = 0
        # Who speaks first: the bot, the callee, answering-machine detection's verdict (--amd), the model.
        self._opening = Opening(info, clock, amd, settings.outbound_hello_timeout_ms, self, self._answering,
                                self._chronicle, self._model)
        self._barge_ins = BargeIns(info.call_id, clock, self._barge_in, eou, self._utterance, self._playback,
                                   self._answering, self._opening, self._false_interruptions, self._model, metrics,
                                   self)

    @property
    def settings(self) -> TurnSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: TurnSettings) -> None:
        # Replaced mid-call, they are the settings of every part of the call from now on.
        self._settings = settings
        self._transcribing.settings = self._answering.settings = settings

    @property
    def observer(self) -> CallObserver | None:
        return self._chronicle.observer

    @observer.setter
    def observer(self, observer: CallObserver | None) -> None:
        self._chronicle.observer = observer

    # ---- inputs from the carrier -------------------------------------------------
    def start(self) -> None:
        log.info("CALL_START call={call} from={frm} to={to}", call=self.call_id, frm=self.info.from_number,
                 to=self.info.to_number)
        self._chronicle.tell("start", {})
        self._opening.start()

    def on_media(self, ulaw: bytes, stt_audio: bytes | None = None) -> None:
        """The caller's audio: 8 kHz mu-law, and for a call with wideband STT the same audio
        in ``self.stt_audio`` (the turn machine, VAD and barge-in stay at 8 kHz)."""
        self._opening.audio(ulaw)
        self._hearing.on_media(ulaw, stt_audio if self._model is None else None)

    def on_mark(self, name: str) -> None:
        self._playback.on_mark(name)

    def on_dtmf(self, digit: str) -> None:
        self._dtmf_count += 1
        if self._dtmf_count <= MAX_LOGGED_DTMF:  # a keypad, not a flood, is worth a line each
            log.info("DTMF call={call} digit={digit}", call=self.call_id, digit=digit[:4])
        if self.state in (State.ENDED, State.HANGING_UP) or self._answering.final_goodbye or self._opening.deciding:
            return
        event = Dtmf(digit[:4])
        if self.state in (State.GREETING, State.SPEAKING) or self.caller_is_quiet():
            # A key press answers now, over whatever the bot is saying.
            current = self._playback.current
            if current is not None and self.state is not State.LISTENING:
                self._playback.interrupt(current)
            self.ask_event(event)
        else:
            self._answering.events.append(event)  # after the utterance or reply in progress

    def drain_goodbye(self) -> None:
        """The daemon is stopping and this call outlived the drain: a goodbye, then the close (1000)."""
        self._answering.drain_goodbye()

    def caller_is_quiet(self) -> bool:
        """Listening, and the caller has not begun a turn."""
        return self.state is State.LISTENING and self._turn.times.speech_start is None and not self._eou.in_speech

    def close(self, reason: str = "") -> None:
        """The call is over; ``reason`` is how the stream ended, which the call's own
        ending (a goodbye, a transfer) replaces when it had one."""
        if self.state is State.ENDED:
            return
        reason = self._answering.ending or reason
        log.info("CALL_END call={call} turns={turns} reason={reason}", call=self.call_id,
                 turns=self._answering.turns_answered, reason=reason or "-")
        self.state = State.ENDED
        self.cancel_wait()
        self._opening.close()
        self._answering.close()
        self._hearing.close()
        self._playback.close()
        self._false_interruptions.cancel()
        self._gate.drop()
        self._stt.close()
        self._eou.close()
        self._end_of_turn.close()
        if self._model is not None:
            self._model.close()
        self._chronicle.ended(reason)

    # ---- inputs from STT: the transcript's side of the call (voiced.call.transcript) -----------
    def on_transcript(self, text: str, is_final: bool) -> None:
        self._transcribing.on_transcript(text, is_final)

    def on_fallback_transcript(self, text: str) -> None:
        self._transcribing.on_fallback_transcript(text)

    def on_stt_retry(self, error: str) -> None:
        self._transcribing.on_stt_retry(error)

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        self._transcribing.on_stt_failure(reason, answer_coming)

    @property
    def turn(self) -> Turn:
        """The turn being listened to (or answered)."""
        return self._turn

    def answer_late(self, turn: Turn) -> None:
        self._turn = turn
        self.finish_turn()

    # ---- speech events (voiced.call.hearing) ---------------------------------------------
    def speech_started(self, at: float) -> None:
        if self._opening.speech_started(at):
            return  # nobody is answered before the opening is chosen (an outbound callee's "Hello?", AMD)
        # A backchannel's final that has not come by now is not coming before new words.
        self._utterance.drop_next_final = False
        self._answering.cancel_idle()
        if self.state is State.LISTENING:
            if self._turn.times.speech_start is None:
                if self._barge_in.is_echo(self._eou):
                    self._eou.end_speech_now()  # the bot's own echo: a voice after it starts anew
                    return
                self._turn.times.speech_start = at
                self._transcribing.caller_moved_on()
                # Text that arrived before the turn's first word belongs to no one (a late
                # final of an abandoned utterance).
                self._utterance.clear()
            self._stt.speech_started()
        elif self.state is State.THINKING and self._gate.holding:
            # The caller went on before the held reply could play: same utterance, reply dropped.
            self.resume_listening()
        elif self.state is State.AWAITING_FINAL:
            # The caller only paused: the same utterance goes on.
            self.cancel_wait()
            self.state = State.LISTENING
            self._end_of_turn.resumed()
            self._stt.speech_started()

    def speech_ended(self, at: float) -> None:
        if self._model is not None:
            self._model.speech_ended(at)  # no transcript to wait for: the model has the audio
            return
        deciding = self._opening.deciding
        if self._opening.speech_ended(at):
            if deciding:
                self._utterance.over_the_bot()  # what the callee said while AMD listened is no turn
            return
        if self.state is State.LISTENING and self._turn.times.speech_start is not None:
            self._turn.times.speech_end = at
            self.state = State.AWAITING_FINAL
            if not self._stt.streaming:
                self._utterance.flushed()
            self._end_of_turn.candidate(at)
            self._stt.flush()
            if self.state is not State.AWAITING_FINAL:
                return  # the engine delivered its final synchronously, inside flush()
            self.decide_end()
        elif self.state in (State.GREETING, State.SPEAKING):
            self._utterance.over_the_bot()

    def caller_voicing(self) -> None:
        self._barge_ins.caller_voicing()  # (voiced.call.barge_in)

    # ---- turn lifecycle --------------------------------------------------------------
    def decide_end(self) -> None:
        """The one decision point of the turn's end (``voiced.turns.policy``): asked at the
        utterance's silence, at each final, at the model's verdict and when a wait runs out."""
        if self.state is not State.AWAITING_FINAL:
            return
        self.cancel_wait()
        decision = self._end_of_turn.decide(self._transcribing.complete(), self._transcribing.final_wait_ms())
        self._act_on(decision)

    def _model_verdict(self) -> None:
        if self.state is State.AWAITING_FINAL:
            self.decide_end()
        elif self._gate.holding:
            self._gate.recheck()

    def _act_on(self, decision: Decision) -> None:
        if decision.verdict is Verdict.WAIT:
            self.wait(decision.wait_ms, self.decide_end)
        elif decision.verdict is Verdict.FINISH:
            if decision.reason == "final_timeout":
                self._transcribing.final_timed_out()
            else:
                self.finish_turn()

    def start_turn(self) -> None:
        self.cancel_wait()
        self._transcribing.caller_moved_on()
        self.state = State.LISTENING
        self._end_of_turn.new_turn(self._eou.speech_ms // FRAME_MS if self._eou.in_speech else 0)
        self._turn = Turn()
        self._utterance.restart()
        if self._eou.in_speech and self._barge_in.is_echo(self._eou):
            self._eou.end_speech_now()  # the echo of the reply that just ended is no one's turn
        elif self._eou.in_speech:
            # The caller is already talking (e.g. they barged in): their words began a
            # barge-in's judgement ago, and the STT's capture must start there.
            self._turn.times.speech_start = self._eou.speech_started_at
            self._stt.speech_started(self._eou.speech_ms)

    def finish_turn(self) -> None:
        self.cancel_wait()
        text, on_partial = self._utterance.take()
        turn = self._turn
        if turn.times.final is None:
            # Answering a partial (the final timed out): the transcript became final now.
            last_final = self._utterance.last_final_at
            turn.times.final = self.clock.seconds() if on_partial or not last_final else last_final
        if not text:
            self.start_turn()
            self._answering.answer_unheard(turn, "empty transcript")
            return
        if self._false_interruptions.turn_ended(text):
            return  # only "yeah"s over the bot: it went on (resume_reply) instead of answering them
        turn.text = text
        # How loud this caller speaks (the background filter's reference): from their turns,
        # however they ended (the VAD's silence, or the STT engine's endpoint).
        self._barge_in.caller.utterance(self._eou.last_level)
        self._answering.ask(turn)

    def resume_listening(self) -> None:
        """The caller went on talking before any reply audio was sent: drop the
        pending reply and keep listening to the same utterance."""
        if self._model is not None:
            self._model.caller_went_on()
            return
        reply = self._playback.current
        if reply is not None:
            self._playback.drop(reply)
        self._gate.drop()
        log.info("RESUME call={call}: caller kept talking, reply dropped", call=self.call_id)
        self._end_of_turn.log(Decision(Verdict.KEEP_LISTENING, "resumed"))
        self._end_of_turn.resumed()
        self._answering.withdraw(self._turn)  # the utterance is not over: it is asked again, whole
        self._turn.times = TurnTimes(speech_start=self._turn.times.speech_start)
        self._utterance.finals = [self._turn.text]
        self.state = State.LISTENING
        self._stt.speech_started(self._eou.speech_ms if self._eou.in_speech else 0)

    def barge_in(self) -> None:
        """The model's VAD heard the caller over the reply (``voiced.call.speech_to_speech``)."""
        self._barge_ins.model_heard_caller()

    # ---- false interruptions (voiced.call.interruption) ------------------------------------
    def resume_reply(self, reply: Reply, reason: str) -> None:
        self._answering.resume(reply, reason)

    def caller_words_pending(self) -> bool:
        return self._eou.in_speech or self.state is State.AWAITING_FINAL

    def caller_said(self) -> str:
        return self._utterance.said()

    # ---- the answering side (voiced.call.answering) and the replies on the line (voiced.call.playback)
    def ask_event(self, event: Event) -> None:
        """A turn that is an event, not speech: the agent answers it like any other."""
        self._answering.cancel_idle()
        self.cancel_wait()
        self._turn = Turn(event=event)
        self._utterance.clear()
        if self._model is not None:
            self._model.ask_event(self._turn)
            return
        self._answering.ask(self._turn)

    def reply_playing(self, reply: Reply) -> None:
        if self.state is State.THINKING:
            self.state = State.SPEAKING

    def reply_finished(self, reply: Reply) -> None:
        self._answering.reply_finished(reply)

    def filler_played(self, reply: Reply) -> None:
        self._answering.filler_played(reply)

    # ---- the opening (voiced.call.opening) ---------------------------------------------------
    def carrier_amd(self, answered_by: str) -> bool:
        """The carrier's answering-machine verdict (Twilio's AnsweredBy); False when this call has no detection."""
        return self._opening.carrier_amd(answered_by)

    # ---- timers --------------------------------------------------------------------------
    def wait(self, ms: int, then: Callable[[], None]) -> None:
        """``then`` in ``ms``, unless the turn moves on first: a turn waits for one thing at a time."""
        self.cancel_wait()
        self._timer = self.clock.callLater(ms / 1000, then)

    def cancel_wait(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
