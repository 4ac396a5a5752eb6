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

Marks: before a reply's first audio voiced sends ``<id>.start``; after each sentence
``<id>.s<k>``; after the last ``<id>.end``. Twilio echoes a mark when the audio queued
before it has played, so ``.start`` is when the caller begins hearing the reply and
``.s<k>`` echoes before a ``clear`` are exactly the sentences the caller heard.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.agent.base import CallInfo, Conversation
from voiced.audio import FRAME_MS, SAMPLE_RATE, silence_ulaw
from voiced.call.eou import EndOfUtterance, SpeechEnded, SpeechStarted
from voiced.config import INTERIM_PHRASES
from voiced.metrics import Metrics, TurnTimes
from voiced.stt.base import STTEngine
from voiced.tts.speaker import Speaker

log = Logger(namespace="voiced.call")

# Twilio plays any length; ~400 ms messages keep the frame count low without
# making a clear() any less immediate (clear drops whatever is buffered).
AUDIO_CHUNK_BYTES = 3200
UTTERANCE_ENGINE_SAFETY_MS = 30000
# Twilio echoes a mark as soon as the audio before it has played; a carrier that never
# does must not leave a call stuck in SPEAKING (or a goodbye that never hangs up).
END_MARK_GRACE_S = 3.0
# A gap in the caller's audio longer than this (network or sender stall) counts as silence.
MEDIA_GAP_S = 0.2
MEDIA_GAP_CHECK_S = 0.1
MAX_LOGGED_DTMF = 50


class State(enum.Enum):
    GREETING = "greeting"
    LISTENING = "listening"
    AWAITING_FINAL = "awaiting_final"
    THINKING = "thinking"
    SPEAKING = "speaking"
    HANGING_UP = "hanging_up"
    ENDED = "ended"


class CallTransport(Protocol):
    """The carrier side of a call (the WebSocket protocol implements it)."""

    def send_audio(self, ulaw: bytes) -> None: ...
    def send_mark(self, name: str) -> None: ...
    def send_clear(self) -> None: ...
    def hang_up(self) -> None: ...


@dataclass(frozen=True)
class TurnSettings:
    barge_in_ms: int = 160
    final_timeout_ms: int = 1500
    fallback_timeout_ms: int = 4000
    interim_phrase: str = INTERIM_PHRASES["en"]


@dataclass
class Turn:
    times: TurnTimes = field(default_factory=TurnTimes)
    number: int | None = None  # assigned when the turn is answered
    reported: bool = False
    stt_failed: bool = False
    text: str = ""


class Reply:
    """One reply being synthesized and sent, sentence by sentence (an agent's ReplySink).

    Sentences are synthesized as soon as they arrive, in parallel, but sent in
    order through a chain of Deferreds.
    """

    def __init__(self, call: "Call", mark_prefix: str, turn: Turn | None) -> None:
        self.call = call
        self.mark_prefix = mark_prefix
        self.turn = turn
        self.sentences: list[str] = []
        self.heard: list[str] = []
        self.hang_up = False
        self.cancelled = False
        self.audio_started = False
        self.agent_request: Deferred[None] | None = None
        self.end_overdue: IDelayedCall | None = None  # fires if the carrier never echoes the end mark
        self._in_flight: list[Deferred[bytes]] = []
        self._send_chain: Deferred[None] = succeed(None)

    # ReplySink
    def sentence(self, text: str) -> None:
        if self.cancelled or not text.strip():
            return
        index = len(self.sentences)
        self.sentences.append(text)
        if index == 0:
            self.call._reply_text_known(self)
        synthesis = self.call.speaker.synthesize(text, self.call.call_id)
        self._in_flight.append(synthesis)
        synthesis.addErrback(self._synthesis_failed, text)
        self._send_chain.addCallback(lambda _: synthesis).addCallback(self._send_sentence, index)

    def done(self, hang_up: bool = False) -> None:
        if self.cancelled:
            return
        self.hang_up = hang_up
        self._send_chain.addCallback(self._send_end)
        self._send_chain.addErrback(
            lambda failure: log.failure("Sending reply {reply} failed call={call}", failure,
                                        reply=self.mark_prefix, call=self.call.call_id)
        )

    def _synthesis_failed(self, failure: Failure, text: str) -> bytes:
        if not failure.check(CancelledError):
            log.failure("TTS failed call={call} text={text!r}", failure, call=self.call.call_id, text=text)
        return b""

    def _send_sentence(self, audio: bytes, index: int) -> None:
        if self.cancelled:
            return
        transport = self.call.transport
        if audio:
            first = not self.audio_started
            if first:
                self.audio_started = True
                self.call._first_audio_ready(self)
                transport.send_mark(f"{self.mark_prefix}.start")
            for i in range(0, len(audio), AUDIO_CHUNK_BYTES):
                transport.send_audio(audio[i : i + AUDIO_CHUNK_BYTES])
            self.call._audio_queued(len(audio))
            if first:
                self.call._first_audio_sent(self)
            transport.send_mark(f"{self.mark_prefix}.s{index}")  # no audio, no mark: "heard" cannot list it

    def _send_end(self, _: object) -> None:
        if self.cancelled:
            return
        log.info("BOT call={call} reply={reply} hangup={hangup} text={text!r}", call=self.call.call_id,
                 reply=self.mark_prefix, hangup=self.hang_up, text=" ".join(self.sentences))
        self.call.transport.send_mark(f"{self.mark_prefix}.end")
        self.end_overdue = self.call._expect_end_mark(self)

    def stop_waiting_for_end(self) -> None:
        if self.end_overdue is not None and self.end_overdue.active():
            self.end_overdue.cancel()
        self.end_overdue = None

    def on_mark(self, suffix: str) -> None:
        if self.cancelled:
            return  # echoes after a clear mean "discarded", not "heard"
        if suffix.startswith("s") and suffix[1:].isdigit():
            index = int(suffix[1:])
            if index < len(self.sentences):
                self.heard.append(self.sentences[index])

    def cancel(self) -> None:
        self.cancelled = True
        self.stop_waiting_for_end()
        if self.agent_request is not None:
            self.agent_request.cancel()
        for d in self._in_flight:
            d.cancel()


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
    ) -> None:
        self.info = info
        self.call_id = info.call_id
        self.clock = clock
        self.transport = transport
        self.speaker = speaker
        self.conversation = conversation
        self.metrics = metrics
        self.settings = settings
        self._eou = eou
        self._stt = stt.open_stream(info.call_id, self)
        self.state = State.GREETING
        self._turn = Turn()
        self._turns_answered = 0
        self._replies: dict[str, Reply] = {}
        self._reply: Reply | None = None  # the reply the call is waiting on or playing
        self._reply_count = 0
        self._timer: IDelayedCall | None = None
        # What the caller has said in the current turn.
        self._finals: list[str] = []
        self._partial = ""
        self._last_final_at: float | None = None
        self._awaiting_flushes = 0
        self._drop_next_final = False
        self._abandoned: Turn | None = None  # the last utterance that got no transcript in time
        self._playback_until = 0.0  # clock time the audio sent so far will have played
        self._last_media_at = clock.seconds()
        self._media_gap_timer: IDelayedCall | None = None
        self._dtmf_count = 0

    # ---- inputs from the carrier -------------------------------------------------
    def start(self) -> None:
        log.info("CALL_START call={call} from={frm} to={to}", call=self.call_id, frm=self.info.from_number,
                 to=self.info.to_number)
        greeting = self._new_reply("g", turn=None)
        for sentence in self.conversation.greeting():
            greeting.sentence(sentence)
        greeting.done()

    def on_media(self, ulaw: bytes) -> None:
        if self.state is State.ENDED:
            return
        self._last_media_at = self.clock.seconds()
        self._audio_in(ulaw)
        if self._eou.in_speech and self._media_gap_timer is None:
            self._media_gap_timer = self.clock.callLater(MEDIA_GAP_CHECK_S, self._check_media_gap)

    def _check_media_gap(self) -> None:
        """Twilio streams the caller's track without pause, silence included; a sender
        that stops mid-utterance would otherwise leave the turn open for ever. Audio that
        has not come for MEDIA_GAP_S is taken as the silence it stands for."""
        self._media_gap_timer = None
        if self.state is State.ENDED or not self._eou.in_speech:
            return
        missing_ms = int((self.clock.seconds() - self._last_media_at) * 1000) // FRAME_MS * FRAME_MS
        if missing_ms >= MEDIA_GAP_S * 1000:
            self._last_media_at = self.clock.seconds()
            self._audio_in(silence_ulaw(missing_ms))
        if self._eou.in_speech:
            self._media_gap_timer = self.clock.callLater(MEDIA_GAP_CHECK_S, self._check_media_gap)

    def _audio_in(self, ulaw: bytes) -> None:
        self._stt.feed(ulaw)
        for event in self._eou.push(ulaw):
            if isinstance(event, SpeechStarted):
                self._on_speech_started(event.at)
            elif isinstance(event, SpeechEnded):
                self._on_speech_ended(event.at)
        if self._eou.sustained(self.settings.barge_in_ms):
            if self.state in (State.GREETING, State.SPEAKING):
                self._barge_in()
            else:
                self._interrupt_prompts()  # the interim phrase plays while the machine listens
                if self.state is State.THINKING:
                    self._resume_listening()

    def on_mark(self, name: str) -> None:
        prefix, _, suffix = name.partition(".")
        reply = self._replies.get(prefix)
        if reply is None or self.state is State.ENDED:
            log.debug("Ignoring mark {name!r} call={call}", name=name, call=self.call_id)
            return
        reply.on_mark(suffix)
        if suffix == "start" and reply.turn is not None:
            reply.turn.times.playback_start = self.clock.seconds()
            self._report(reply.turn)
        elif suffix == "end":
            self._reply_finished(reply)

    def on_dtmf(self, digit: str) -> None:
        self._dtmf_count += 1
        if self._dtmf_count <= MAX_LOGGED_DTMF:  # a keypad, not a flood, is worth a line each
            log.info("DTMF call={call} digit={digit}", call=self.call_id, digit=digit[:4])

    def close(self, reason: str = "") -> None:
        if self.state is State.ENDED:
            return
        log.info("CALL_END call={call} turns={turns} reason={reason}", call=self.call_id,
                 turns=self._turns_answered, reason=reason or "-")
        self.state = State.ENDED
        self._cancel_timer()
        if self._media_gap_timer is not None and self._media_gap_timer.active():
            self._media_gap_timer.cancel()
        for reply in self._replies.values():
            if reply.turn is not None:
                self._report(reply.turn)
            reply.cancel()
        self._replies.clear()
        self._stt.close()

    # ---- inputs from STT (TranscriptListener) ----------------------------------------
    def on_transcript(self, text: str, is_final: bool) -> None:
        if self.state is State.ENDED:
            return
        now = self.clock.seconds()
        if not is_final:
            self._partial = text
            times = self._turn.times
            if times.first_partial is None and times.speech_start is not None and text.strip():
                times.first_partial = now
            return
        if self._drop_next_final or self.state not in (State.LISTENING, State.AWAITING_FINAL):
            # A backchannel's final, or a late final of a turn already answered from its
            # partial: neither belongs to the next turn.
            self._drop_next_final = False
            self._partial = ""
            log.debug("Dropping final call={call} state={state} text={text!r}", call=self.call_id,
                      state=self.state.value, text=text)
            return
        if text.strip():
            self._finals.append(text.strip())
        self._partial = ""
        self._last_final_at = now
        self._awaiting_flushes = max(0, self._awaiting_flushes - 1)
        if (
            self._abandoned is not None
            and self.state is State.LISTENING
            and self._turn.times.speech_start is None
            and self._finals
        ):
            # The final of an utterance given up on (the STT stream was recovering):
            # the caller is still waiting for the answer, so give it.
            log.info("LATE_FINAL call={call}: answering the utterance after all", call=self.call_id)
            self._turn, self._abandoned = self._abandoned, None
            self._finish_turn()
        elif self.state is State.AWAITING_FINAL and self._transcript_complete():
            self._finish_turn()
        elif (
            self.state is State.LISTENING
            and self._stt.streaming
            and self._eou.in_speech
            and self._eou.silence_ms >= self._eou.eou_silence_ms // 2  # a real pause, not a gap between words
            and self._finals
        ):
            # The engine's endpointing says the utterance is over while the caller is
            # silent: answer now instead of waiting out the VAD silence.
            self._turn.times.speech_end = self._eou.last_voiced_at
            self._eou.end_speech_now()
            self._stt.flush()  # the utterance is over for the engine too (its markers, its watchdog)
            self._finish_turn()

    def on_stt_failure(self, reason: str) -> None:
        if self.state is State.ENDED:
            return
        log.warn("STT_FAILED call={call} reason={reason}", call=self.call_id, reason=reason)
        self.metrics.stt_failures_total.inc()
        self._awaiting_flushes = max(0, self._awaiting_flushes - 1)
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
        if self._eou.in_speech:
            return  # the caller is talking (the fallback has their words): a phrase now would talk over them
        prompt = self._new_reply("p", turn=None, current=False)
        prompt.sentence(self.settings.interim_phrase)
        prompt.done()
        if self.state is State.AWAITING_FINAL:
            # The fallback transcription may still rescue the turn, within its bound.
            self._start_timer(self.settings.fallback_timeout_ms, self._final_timed_out)

    # ---- speech events ---------------------------------------------------------------
    def _on_speech_started(self, at: float) -> None:
        # A backchannel's final that has not come by now is not coming before new words.
        self._drop_next_final = False
        if self.state is State.LISTENING:
            if self._turn.times.speech_start is None:
                self._turn.times.speech_start = at
                self._abandoned = None  # the caller moved on
                # Text that arrived before the turn's first word belongs to no one (a late
                # final of an abandoned utterance).
                self._finals, self._partial = [], ""
            self._stt.speech_started()
        elif self.state is State.AWAITING_FINAL:
            # The caller only paused: the same utterance goes on.
            self._cancel_timer()
            self.state = State.LISTENING
            self._stt.speech_started()

    def _on_speech_ended(self, at: float) -> None:
        if self.state is State.LISTENING and self._turn.times.speech_start is not None:
            self._turn.times.speech_end = at
            self.state = State.AWAITING_FINAL
            if not self._stt.streaming:
                self._awaiting_flushes += 1
            self._stt.flush()
            if self.state is not State.AWAITING_FINAL:
                return  # the engine delivered its final synchronously, inside flush()
            if self._transcript_complete():
                self._finish_turn()
            else:
                self._start_timer(self._final_wait_ms(), self._final_timed_out)
        elif self.state in (State.GREETING, State.SPEAKING):
            # Speech too short to barge in ("uh-huh", a cough): not a turn.
            self._finals.clear()
            self._drop_next_final = bool(self._partial)
            self._partial = ""

    def _final_wait_ms(self) -> int:
        if self._turn.stt_failed:
            return self.settings.fallback_timeout_ms
        if not self._stt.streaming:
            # An utterance engine promises one final per flush; under load its queue
            # can be seconds long, and giving up would drop a turn that is coming.
            return UTTERANCE_ENGINE_SAFETY_MS
        return self.settings.final_timeout_ms

    def _transcript_complete(self) -> bool:
        if self._awaiting_flushes:
            return False
        if not self._stt.streaming:
            return True
        # A final that came before the caller's last word cannot cover that word.
        speech_end = self._turn.times.speech_end
        return (
            bool(self._finals)
            and not self._partial
            and self._last_final_at is not None
            and (speech_end is None or self._last_final_at >= speech_end)
        )

    def _final_timed_out(self) -> None:
        self._timer = None
        if self.state is not State.AWAITING_FINAL:
            return
        if self._finals or self._partial.strip():
            log.info("STT final timed out call={call}; answering the partial transcript", call=self.call_id)
            self._finish_turn()
        else:
            log.info("No transcript for the utterance call={call}", call=self.call_id)
            abandoned = self._turn
            self._start_turn()
            self._abandoned = abandoned

    # ---- turn lifecycle --------------------------------------------------------------
    def _start_turn(self) -> None:
        self._cancel_timer()
        self._abandoned = None
        self.state = State.LISTENING
        self._turn = Turn()
        self._finals, self._partial = [], ""
        self._awaiting_flushes = 0
        if self._eou.in_speech:
            # The caller is already talking (e.g. they barged in).
            self._turn.times.speech_start = self._eou.speech_started_at
            self._stt.speech_started()

    def _finish_turn(self) -> None:
        self._cancel_timer()
        partial = self._partial.strip()
        text = " ".join(self._finals + ([partial] if partial else []))
        self._finals, self._partial = [], ""
        turn = self._turn
        if turn.times.final is None:
            # Answering a partial (the final timed out): the transcript became final now.
            turn.times.final = self.clock.seconds() if partial or not self._last_final_at else self._last_final_at
        if not text:
            self._start_turn()
            return
        self._turns_answered += 1
        turn.number = self._turns_answered
        turn.text = text
        log.info("CALLER call={call} turn={turn} text={text!r}", call=self.call_id, turn=turn.number, text=text)
        self.state = State.THINKING
        reply = self._new_reply("r", turn)
        request = maybeDeferred(self.conversation.respond, text, reply)
        reply.agent_request = request
        request.addErrback(self._agent_failed, reply)

    def _agent_failed(self, failure: Failure, reply: Reply) -> None:
        if failure.check(CancelledError) or reply.cancelled:
            return
        log.failure("Agent failed call={call}", failure, call=self.call_id)
        if reply.audio_started:
            reply.done()  # what was said plays out; its end mark returns the call to listening
        else:
            reply.cancel()
            self._replies.pop(reply.mark_prefix, None)
            if reply is self._reply and self.state is State.THINKING:
                self._start_turn()

    def _resume_listening(self) -> None:
        """The caller went on talking before any reply audio was sent: drop the
        pending reply and keep listening to the same utterance."""
        reply = self._reply
        if reply is not None:
            reply.cancel()
            self._replies.pop(reply.mark_prefix, None)
        log.info("RESUME call={call}: caller kept talking, reply dropped", call=self.call_id)
        self._turns_answered -= 1
        self._turn.number = None
        self._turn.times = TurnTimes(speech_start=self._turn.times.speech_start)
        self._finals = [self._turn.text]
        self.state = State.LISTENING
        self._stt.speech_started()

    def _barge_in(self) -> None:
        reply = self._reply
        self.transport.send_clear()
        self._playback_until = self.clock.seconds()  # the carrier dropped what it had queued
        self.metrics.barge_ins_total.inc()
        log.info("BARGE_IN call={call} voiced_ms={ms}", call=self.call_id, ms=self._eou.voiced_ms)
        if reply is not None:
            reply.cancel()
            self._replies.pop(reply.mark_prefix, None)  # its marks, echoed after the clear, mean nothing
            self.conversation.heard(reply.heard, interrupted=True)
            if reply.turn is not None:
                self._report(reply.turn)
        self._start_turn()

    def _interrupt_prompts(self) -> None:
        """The caller talks over an interim phrase: stop it as any bot audio is stopped.
        The caller's speech is already the utterance being listened to; no turn restarts."""
        prompts = [reply for reply in self._replies.values() if reply.mark_prefix.startswith("p")]
        if not prompts:
            return
        if any(reply.audio_started for reply in prompts):
            self.transport.send_clear()
            self._playback_until = self.clock.seconds()
            self.metrics.barge_ins_total.inc()
            log.info("BARGE_IN call={call} voiced_ms={ms} reply=interim", call=self.call_id, ms=self._eou.voiced_ms)
        for reply in prompts:
            reply.cancel()
            self._replies.pop(reply.mark_prefix, None)

    def _audio_queued(self, size: int) -> None:
        # The carrier plays what it is sent in order, in real time: model when it will be done.
        self._playback_until = max(self._playback_until, self.clock.seconds()) + size / SAMPLE_RATE

    def _expect_end_mark(self, reply: Reply) -> IDelayedCall:
        delay = max(0.0, self._playback_until - self.clock.seconds()) + END_MARK_GRACE_S
        return self.clock.callLater(delay, self._end_mark_overdue, reply)

    def _end_mark_overdue(self, reply: Reply) -> None:
        reply.end_overdue = None
        if self.state is State.ENDED or reply.cancelled or reply.mark_prefix not in self._replies:
            return
        log.warn("MARK_TIMEOUT call={call} reply={reply}: the carrier never echoed its end mark; "
                 "taking it as played", call=self.call_id, reply=reply.mark_prefix)
        if reply.turn is not None:
            self._report(reply.turn)
        self._reply_finished(reply)

    def _reply_finished(self, reply: Reply) -> None:
        reply.stop_waiting_for_end()
        self._replies.pop(reply.mark_prefix, None)
        if reply.mark_prefix.startswith("p"):
            return  # an interim prompt: the turn it interrupted goes on
        self.conversation.heard(reply.heard, interrupted=False)
        if reply.hang_up:
            self.state = State.HANGING_UP
            log.info("HANGUP call={call}: goodbye played", call=self.call_id)
            self.transport.hang_up()
        elif reply is self._reply and self.state in (State.GREETING, State.SPEAKING, State.THINKING):
            self._start_turn()

    # ---- reply bookkeeping -------------------------------------------------------------
    def _new_reply(self, kind: str, turn: Turn | None, current: bool = True) -> Reply:
        self._reply_count += 1
        reply = Reply(self, f"{kind}{self._reply_count}", turn)
        self._replies[reply.mark_prefix] = reply
        if current:
            self._reply = reply
        return reply

    def _reply_text_known(self, reply: Reply) -> None:
        if reply.turn is not None:
            reply.turn.times.reply_text = self.clock.seconds()

    def _first_audio_ready(self, reply: Reply) -> None:
        if reply.turn is not None:
            reply.turn.times.tts_ready = self.clock.seconds()

    def _first_audio_sent(self, reply: Reply) -> None:
        if reply.turn is not None:
            reply.turn.times.first_audio_sent = self.clock.seconds()
        if reply is self._reply and self.state is State.THINKING:
            self.state = State.SPEAKING

    def _report(self, turn: Turn) -> None:
        if turn.reported or turn.number is None:
            return
        turn.reported = True
        self.metrics.record_turn(self.call_id, turn.number, turn.times)

    # ---- timers --------------------------------------------------------------------------
    def _start_timer(self, ms: int, fn) -> None:  # type: ignore[no-untyped-def]
        self._cancel_timer()
        self._timer = self.clock.callLater(ms / 1000, fn)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
