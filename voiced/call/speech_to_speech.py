"""A call whose agent hears and speaks itself: a speech-to-speech model (OpenAI Realtime).

The seam. A conversation that says ``speaks_for_itself`` is a ``ModelSession``; the call
(``voiced.call.turn.Call``) then runs in model mode, and this module is its answering side:

- the caller's audio still goes through ``Hearing`` (VAD, barge-in's level, the echo guard),
  but its "STT stream" is the model's ear (``ModelEar``): every 8 kHz mu-law frame goes to
  the session (``input_audio_buffer.append``), nothing is transcribed here;
- the end of the caller's turn is voiced's own (``--realtime-turn-detection voiced``: the
  session commits the audio and asks for a response) or the model's (``server``: its VAD
  commits, and its ``speech_started`` is a barge-in here);
- the model's audio goes out through ``Playback`` as a ``StreamedReply``: the same marks,
  playout clock, heard-history, end-mark watchdog and barge-in ``clear`` as any reply; a
  barge-in then cancels the response and truncates the model's item at the audio the caller
  HEARD (``conversation.item.truncate``), so the model's memory is what the caller knows;
- the model's transcripts of both sides become the CALLER and BOT lines, the record and the
  console's events (the call's ``Chronicle``); the turn's times are measured as for any reply;
- what voiced says itself (apologies, the idle and time-limit goodbyes) is voiced's TTS.

Every method runs on the reactor thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AbstractSet, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from voiced.agent.base import Action, Dtmf, EndCall, Idle, Said
from voiced.audio import MULAW_8K, AudioFormat
from voiced.call.model import State, Turn
from voiced.call.reply import Reply, ReplyKind
from voiced.call.streamed_reply import StreamedReply

if TYPE_CHECKING:
    from voiced.call.answering import Answering
    from voiced.call.chronicle import Chronicle
    from voiced.call.playback import Playback

log = Logger(namespace="voiced.call")

#: g711_ulaw: 8 bytes a millisecond (``conversation.item.truncate``'s audio_end_ms).
_ULAW_BYTES_PER_MS = 8


class ModelSession(Protocol):
    """The agent's side: one call's connection to the model (``voiced.agent.realtime_session``)."""

    speaks_for_itself: bool
    #: The model's VAD ends the caller's turns (else voiced's end of turn commits them).
    server_turns: bool

    def open(self, port: "ModelTurns") -> None:
        """Connect; the model's events come to ``port`` (the session states what it needs of it)."""
    def append(self, ulaw: bytes) -> None: ...
    def answer_turn(self) -> None: ...
    def tell(self, text: str) -> None: ...
    def cancel(self) -> None:
        """Stop the response in progress, if there is one (the session knows)."""
    def truncate(self, item_id: str, end_ms: int) -> None: ...
    def close(self) -> None: ...


def model_session(conversation: object) -> ModelSession | None:
    """``conversation`` as a speech-to-speech session, or None for a text agent's."""
    return conversation if getattr(conversation, "speaks_for_itself", False) else None  # type: ignore[return-value]


class ModelEar:
    """The STT stream of a call in model mode: the caller's audio goes to the model, whole."""

    name = "model"
    streaming = True
    formats: AbstractSet[AudioFormat] = frozenset({MULAW_8K})

    def __init__(self, session: ModelSession) -> None:
        self._session = session

    def open_stream(self, call_id: str, listener: object, audio: AudioFormat = MULAW_8K) -> "ModelEar":
        return self

    def feed(self, audio: bytes) -> None:
        self._session.append(audio)

    def speech_started(self, ms_ago: int = 0) -> None:
        pass

    def flush(self) -> None:
        pass  # the turn's end is ModelTurns.speech_ended's

    def close(self) -> None:
        pass  # the session is closed with the call (ModelTurns.close)


class ModelTurnsHost(Protocol):
    """The turn machine as model mode sees it."""

    state: State

    @property
    def turn(self) -> Turn: ...

    def start_turn(self) -> None: ...

    def barge_in(self) -> None:
        """The caller interrupts the reply playing: clear, and their turn begins (as at voiced's own barge-in)."""


class ModelTurns:
    def __init__(self, call_id: str, clock: IReactorTime, session: ModelSession, host: ModelTurnsHost,
                 playback: "Playback", chronicle: "Chronicle", answering: "Answering") -> None:
        self.call_id = call_id
        self._clock = clock
        self.session = session
        self._host = host
        self._playback = playback
        self._chronicle = chronicle
        self._answering = answering
        self._reply: StreamedReply | None = None  # the reply the model is filling
        self._responses: set[str] = set()  # its responses (a tool's answer is a second one)
        self._transcript_base = ""  # the words of the reply's earlier responses (before a tool ran)
        self._awaiting_item: Turn | None = None  # voiced committed this turn; its item id is coming
        self._turns_by_item: dict[str, Turn] = {}
        self._greeting: StreamedReply | None = None

    @property
    def voiced_turns(self) -> bool:
        return not self.session.server_turns

    # ---- the call's side -----------------------------------------------------------------------
    def start(self) -> None:
        """The call starts: the model greets (the session asks it to at open)."""
        self._reply = self._greeting = self._new_reply(ReplyKind.GREETING, None)
        self.session.open(self)

    def speech_ended(self, at: float) -> None:
        """voiced's VAD: the caller's speech ended. With voiced's turn detection, the turn is over."""
        turn = self._host.turn
        if self._host.state is not State.LISTENING or turn.times.speech_start is None:
            return
        turn.times.speech_end = at
        if self.voiced_turns:
            self._ask(turn)
            self._awaiting_item = turn
            self.session.answer_turn()

    def ask_event(self, turn: Turn) -> None:
        """A key press or an idle silence: the model is told, in words, and answers."""
        event = turn.event
        if isinstance(event, Dtmf):
            text = f"(The caller pressed the key {event.digit} on their phone's keypad.)"
        elif isinstance(event, Idle):
            text = f"(The caller has said nothing for a while; this is time number {event.count}.)"
        else:
            text = f"({event})"
        self._ask(turn)
        self.session.tell(text)

    def reply_cut(self, reply: Reply | None, cut_at: float) -> None:
        """voiced's barge-in stopped ``reply`` (its clear is sent): the model forgets what the
        caller did not hear."""
        if reply is None or reply is not self._reply or not isinstance(reply, StreamedReply):
            return
        self._reply = None
        self.session.cancel()
        position = reply.heard_in_item(cut_at)
        if position is not None:
            item_id, heard_bytes = position
            end_ms = max(0, heard_bytes) // _ULAW_BYTES_PER_MS
            self.session.truncate(item_id, end_ms)
            log.info("REALTIME_TRUNCATE call={call} reply={reply} item={item} audio_end_ms={ms} sent_ms={sent}",
                     call=self.call_id, reply=reply.mark_prefix, item=item_id, ms=end_ms,
                     sent=reply.bytes_sent // _ULAW_BYTES_PER_MS)

    def caller_went_on(self) -> None:
        """The caller spoke again before any of the reply played: no reply; the words just said
        are in the model's conversation and the next turn answers them together."""
        reply = self._reply
        if reply is not None and not reply.audio_started:
            self._reply = None
            self.session.cancel()
            self._playback.drop(reply)
            log.info("RESUME call={call}: caller kept talking, the model's reply dropped", call=self.call_id)
            self._host.start_turn()

    def close(self) -> None:
        self.session.close()

    # ---- the port the session talks to (voiced.agent.realtime_session.ModelPort) --------------------
    def model_speaking(self, response_id: str) -> None:
        reply = self._reply
        if reply is not None and not reply.complete and not reply.cancelled:
            # The reply the call waits on, or a tool's second response adding to it.
            self._transcript_base = f"{reply.transcript} " if reply.transcript else ""
            self._responses.add(response_id)
            return
        if self.voiced_turns or self._host.state in (State.HANGING_UP, State.ENDED):
            # Asked for nothing (a response voiced cancelled before it began): not played.
            self.session.cancel()
            return
        # The model's VAD ended a turn voiced's did not see end: that is the turn.
        if self._host.state is State.LISTENING:
            self._ask(self._host.turn)
        else:
            self._responses = set()
            self._reply = self._new_reply(ReplyKind.ANSWER, None)
        self._responses.add(response_id)
        self._transcript_base = ""

    def model_audio(self, response_id: str, item_id: str, audio: bytes) -> None:
        reply = self._reply
        if reply is not None and response_id in self._responses:
            reply.audio(audio, item_id)  # a cancelled response's last deltas go nowhere

    def model_transcript(self, response_id: str, text: str, done: bool) -> None:
        reply = self._reply
        if reply is None or response_id not in self._responses:
            return
        if done:
            reply.transcript_done(self._transcript_base + text)
        else:
            reply.transcribed(text)

    def model_action(self, action: Action) -> None:
        if self._reply is not None:
            self._reply.action(action)

    def model_done(self, response_id: str, status: str, more_coming: bool) -> None:
        reply = self._reply
        if reply is None or response_id not in self._responses or more_coming:
            return
        if status == "failed":
            self._apologize(f"the model's response {response_id} failed")
            return
        reply.finish()  # its end mark, once played, hands the turn back to the caller

    def caller_committed(self, item_id: str) -> None:
        if self.voiced_turns:
            turn, self._awaiting_item = self._awaiting_item, None
        else:
            turn = self._host.turn
            if self._host.state is State.LISTENING:
                if turn.times.speech_end is None:
                    turn.times.speech_end = self._clock.seconds()
                self._ask(turn)
        if turn is not None:
            self._turns_by_item[item_id] = turn

    def caller_transcript(self, item_id: str, text: str) -> None:
        turn = self._turns_by_item.pop(item_id, None)
        text = text.strip()
        if turn is None or turn.number is None or not text:
            return
        turn.text = text
        turn.times.final = turn.times.final or self._clock.seconds()
        log.info("CALLER call={call} turn={turn} text={text!r}", call=self.call_id, turn=turn.number, text=text)
        self._chronicle.caller_transcript(turn, text)

    def caller_speech_started(self) -> None:
        """The model's VAD heard the caller (server turn detection): a barge-in if a reply plays."""
        if self.voiced_turns:
            return
        reply = self._reply
        if self._host.state in (State.GREETING, State.SPEAKING) and reply is not None and reply.audio_started:
            self._host.barge_in()
        elif self._host.state is State.THINKING:
            self.caller_went_on()

    def model_failed(self, reason: str, fatal: bool) -> None:
        if self._host.state in (State.HANGING_UP, State.ENDED):
            return
        if fatal:
            log.error("REALTIME_FAILED call={call}: {reason}; the call ends", call=self.call_id, reason=reason)
            self._apologize(reason, then_hang_up=True)
        elif self._reply is self._greeting and self._reply is not None and not self._reply.audio_started:
            log.info("REALTIME_GREETING_RETRY call={call}: {reason}", call=self.call_id, reason=reason)
        elif self._reply is not None and not self._reply.complete:
            self._apologize(reason)  # the reply the caller waits for is lost; the session comes back

    def heard_history(self) -> list[Said]:
        """The call so far as the caller knows it: their words, and the replies as heard."""
        greeting = self._greeting.heard() if self._greeting is not None else None  # as far as its marks echoed
        lines = [greeting] if greeting is not None else []
        for record in self._chronicle.record.turns:
            if record.caller_text:
                lines.append(Said("caller", record.caller_text))
            if record.heard_text:
                lines.append(Said("bot", record.heard_text, record.interrupted))
        return lines

    # ---- internals --------------------------------------------------------------------------------
    def _new_reply(self, kind: ReplyKind, turn: Turn | None) -> StreamedReply:
        reply = self._playback.new_reply(kind, turn, make=StreamedReply)
        assert isinstance(reply, StreamedReply)
        return reply

    def _ask(self, turn: Turn) -> None:
        """``turn`` is over and goes to the model: numbered, recorded, its reply on its way."""
        self._answering.cancel_idle()
        self._answering.turns_answered += 1
        turn.number = self._answering.turns_answered
        turn.times.agent_asked = self._clock.seconds()
        self._chronicle.asked_by_voice(turn)
        self._host.state = State.THINKING
        self._responses = set()
        self._reply = self._new_reply(ReplyKind.ANSWER, turn)

    def _apologize(self, reason: str, then_hang_up: bool = False) -> None:
        """voiced's own voice: the model's reply is lost (and with ``then_hang_up``, the call)."""
        lost = self._reply
        self._reply = None
        if lost is not None:
            if lost.audio_started:
                self._playback.interrupt(lost)
            else:
                self._playback.drop(lost)
        log.warn("REALTIME_APOLOGY call={call}: {reason}", call=self.call_id, reason=reason)
        phrase = self._answering.settings.apology_phrase
        self._chronicle.phrase("apology", phrase)
        self._host.state = State.THINKING
        apology = self._playback.new_reply(ReplyKind.ANSWER, turn=lost.turn if lost is not None else None)
        apology.say(phrase, in_history=False)
        if then_hang_up:
            apology.action(EndCall())
        apology.finish()
