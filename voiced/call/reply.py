"""One bot reply: the agent's text spoken sentence by sentence, and what the caller heard of it.

A ``Reply`` is the ``ReplySink`` an agent writes into. Text is split into sentences
as it streams; each sentence is synthesized as soon as it is complete (in parallel)
and sent in order, followed by its mark ``<id>.s<k>``: a sentence's audio goes to the line
as the TTS streams it, once the sentences before it are out (kept until then). Before the first audio goes
the mark ``<id>.start``, after the last ``<id>.end``.

What was heard comes from the carrier: Twilio echoes a mark once the audio queued
before it has played. A sentence whose mark came back was heard whole. At a barge-in
the sentence that was playing when voiced sent ``clear`` was heard in part: it began
playing at the previous echo, so the time since then over the sentence's audio length
says how far it got, and its text is cut at the word reached (text is taken to be
spoken at an even pace over the sentence's audio, which is close enough to tell
"heard the first half" from "heard the last word"). Sentences never played are not
heard. A filler ("One moment.") or an apology is audio the caller hears but not part
of the conversation, so it takes its place in the timing and none in the history.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from voiced.agent.base import Action, Said
from voiced.agent.sentences import SentenceSplitter
from voiced.audio import SAMPLE_RATE
from voiced.logging import Logger  # twisted's, cheaper: every reply's BOT line

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from voiced.call.model import CallTransport, Turn
    from voiced.tts.speaker import Speaker

log = Logger(namespace="voiced.call")

# Twilio plays any length; ~400 ms messages keep the frame count low without
# making a clear() any less immediate (clear drops whatever is buffered).
AUDIO_CHUNK_BYTES = 3200
_WORD = re.compile(r"\S+")


def words_reached(text: str, fraction: float) -> str:
    """The words of ``text`` fully spoken once ``fraction`` of its audio has played."""
    if fraction <= 0:
        return ""
    if fraction >= 1:
        return text
    reached = fraction * len(text)
    end = 0
    for word in _WORD.finditer(text):
        if word.end() > reached:
            break
        end = word.end()
    return text[:end]


class ReplyKind(enum.Enum):
    """What a reply is to the call; its value starts the reply's mark names."""

    GREETING = "g"
    ANSWER = "r"  # an answer to a turn, a goodbye, an apology, a resumed reply
    PROMPT = "p"  # an interim phrase said while the call goes on listening: not conversation


class ReplyHost(Protocol):
    """What a reply needs of the line it plays on (``voiced.call.playback.Playback``)."""

    call_id: str
    clock: "IReactorTime"
    transport: "CallTransport"
    speaker: "Speaker"

    def reply_text_known(self, reply: "Reply") -> None: ...
    def first_audio_ready(self, reply: "Reply") -> None: ...
    def audio_queued(self, reply: "Reply", audio: bytes, first_sentence: bool) -> None: ...
    def reply_sent(self, reply: "Reply") -> None: ...
    def filler_played(self, reply: "Reply") -> None: ...
    def expect_end_mark(self, reply: "Reply") -> IDelayedCall: ...


@dataclass
class Segment:
    index: int
    text: str
    in_history: bool  # False for a filler or an apology
    audio_bytes: int = 0
    sent: bool = False
    echoed_at: float | None = None
    #: Its audio as sent, kept while the reply lives: a falsely interrupted reply plays it again.
    #: Chunks, joined only for that: a streamed sentence comes in many.
    chunks: list[bytes] = field(default_factory=list)

    @property
    def audio(self) -> bytes:
        return b"".join(self.chunks)


class _SentenceAudio:
    """One sentence's audio as the TTS streams it: kept until the sentence's turn on the line
    (the sentences before it still playing), then handed on chunk by chunk as it comes."""

    def __init__(self) -> None:
        self._kept: list[bytes] = []
        self._send: Callable[[bytes], None] | None = None
        self.finished: Deferred[None] = Deferred()

    def arrived(self, chunk: bytes) -> None:
        if self.finished.called:
            return
        if self._send is None:
            self._kept.append(chunk)
        else:
            self._send(chunk)

    def play(self, send: Callable[[bytes], None]) -> None:
        kept, self._kept = self._kept, []
        if kept:
            send(b"".join(kept))
        self._send = send

    def ended(self) -> None:
        if not self.finished.called:
            self.finished.callback(None)


class Reply:
    """One reply being synthesized and sent; every method runs on the reactor thread."""

    def __init__(self, call: ReplyHost, kind: ReplyKind, number: int, turn: "Turn | None",
                 gate: Deferred[None] | None = None) -> None:
        self.call = call
        self.kind = kind
        self.mark_prefix = f"{kind.value}{number}"
        self.turn = turn
        self.segments: list[Segment] = []
        self.actions: list[Action] = []
        self.cancelled = False
        self.complete = False
        self.audio_started = False
        self.playback_started_at: float | None = None
        self.agent_request: Deferred[None] | None = None
        self.end_overdue: IDelayedCall | None = None  # fires if the carrier never echoes the end mark
        self.first_sentence_mark: str | None = None  # the mark echoed when the first sentence starts playing
        self._splitter = SentenceSplitter()
        self._filler: IDelayedCall | None = None
        self._has_text = False
        self._last_mark = "start"
        self._in_flight: list[Deferred[str]] = []
        self.tts_engines: list[str] = []  # which engines spoke its sentences ("cache": a cached phrase)
        # Audio goes out in order, once the gate opens (the caller is surely done).
        self._send_chain: Deferred[None] = gate if gate is not None else succeed(None)

    # ---- ReplySink -------------------------------------------------------------------------
    def text(self, delta: str) -> None:
        for sentence in self._splitter.push(delta):
            self.say(sentence)

    def sentence(self, text: str) -> None:
        for pending in self._splitter.flush():
            self.say(pending)
        self.say(text)

    def action(self, action: Action) -> None:
        if not self.cancelled:
            self.actions.append(action)

    # ---- what the call does with a reply -------------------------------------------------------
    def say(self, text: str, in_history: bool = True) -> None:
        """Speak ``text`` after everything said so far."""
        if self.cancelled or self.complete or not text.strip():
            return
        segment = Segment(len(self.segments), text.strip(), in_history)
        self.segments.append(segment)
        if in_history and not self._has_text:
            self._has_text = True
            self._cancel_filler()
            self.call.reply_text_known(self)
        audio = _SentenceAudio()
        speaking = self.call.speaker.speak(segment.text, self.call.call_id, audio.arrived)
        self._in_flight.append(speaking)
        speaking.addCallbacks(self._spoken, self._synthesis_failed, errbackArgs=(segment.text,))
        speaking.addBoth(lambda _: audio.ended())
        self._send_chain.addCallback(lambda _: self._play(segment, audio))

    def replay(self, segments: list[Segment], actions: list[Action]) -> None:
        """Play again the audio of another reply's ``segments`` (a reply the caller only
        seemed to interrupt), then its ``actions``; nothing is synthesized again."""
        for old in segments:
            segment = Segment(len(self.segments), old.text, old.in_history)
            self.segments.append(segment)
            self._send_chain.addCallback(lambda _, audio=old.audio, segment=segment: self._send_segment(audio, segment))
        self.actions.extend(actions)

    def unheard(self) -> list[Segment]:
        """The sentences sent from the first one the caller did not hear whole (its start:
        a sentence resumes from its beginning)."""
        for i, segment in enumerate(self.segments):
            if segment.sent and segment.echoed_at is None:
                return [s for s in self.segments[i:] if s.sent]
        return []

    def arm_filler(self, delay_s: float, phrase: str) -> None:
        """Speak ``phrase`` if the agent has said nothing within ``delay_s`` (nor finished)."""
        if phrase and not self._has_text and not self.complete and not self.cancelled:
            self._filler = self.call.clock.callLater(delay_s, self._play_filler, phrase)

    def finish(self) -> None:
        """The agent is done: speak what is pending, then the end mark."""
        if self.cancelled or self.complete:
            return
        for pending in self._splitter.flush():
            self.say(pending)
        self._cancel_filler()
        self.complete = True
        self._send_chain.addCallback(self._send_end)
        self._send_chain.addErrback(
            lambda failure: log.failure("Sending reply {reply} failed call={call}", failure,
                                        reply=self.mark_prefix, call=self.call.call_id)
        )

    def fail(self, apology: str) -> None:
        """The agent failed: what was said plays out, a sentence it left unfinished is
        dropped, and the apology ends the reply. Actions of a failed reply are not taken."""
        self._splitter = SentenceSplitter()
        self.actions.clear()
        self.say(apology, in_history=False)
        self.finish()

    def on_mark(self, suffix: str, now: float) -> None:
        if self.cancelled:
            return  # echoes after a clear mean "discarded", not "heard"
        if suffix == "start":
            self.playback_started_at = now
        elif suffix.startswith("s") and suffix[1:].isdigit():
            index = int(suffix[1:])
            if index < len(self.segments):
                self.segments[index].echoed_at = now

    def heard(self, cut_at: float | None = None, assume_played: bool = False) -> Said | None:
        """What the caller heard, as a history entry (None: nothing). ``cut_at`` is the
        clock time of the clear that interrupted the reply; ``assume_played`` takes every
        sentence sent as heard (the carrier never echoed marks)."""
        parts: list[str] = []
        previous_echo = self.playback_started_at
        for segment in self.segments:
            if not segment.sent:
                break
            if segment.echoed_at is not None or (assume_played and cut_at is None):
                if segment.in_history:
                    parts.append(segment.text)
                previous_echo = segment.echoed_at
                continue
            if cut_at is not None and previous_echo is not None and segment.in_history and segment.audio_bytes:
                played_s = cut_at - previous_echo
                part = words_reached(segment.text, played_s * SAMPLE_RATE / segment.audio_bytes)
                if part:
                    parts.append(part)
            break
        if not parts:
            return None
        return Said("bot", " ".join(parts), interrupted=cut_at is not None)

    def cancel(self) -> None:
        self.cancelled = True
        self._cancel_filler()
        self.stop_waiting_for_end()
        if self.agent_request is not None:
            self.agent_request.cancel()
        for d in self._in_flight:
            d.cancel()

    def stop_waiting_for_end(self) -> None:
        if self.end_overdue is not None and self.end_overdue.active():
            self.end_overdue.cancel()
        self.end_overdue = None

    @property
    def spoken_text(self) -> str:
        return " ".join(s.text for s in self.segments if s.in_history)

    # ---- internals ------------------------------------------------------------------------------
    def _play_filler(self, phrase: str) -> None:
        self._filler = None
        if not self._has_text and not self.cancelled and not self.complete:
            self.call.filler_played(self)
            self.say(phrase, in_history=False)

    def _cancel_filler(self) -> None:
        if self._filler is not None and self._filler.active():
            self._filler.cancel()
        self._filler = None

    def _spoken(self, engine: str) -> None:
        if engine not in self.tts_engines:
            self.tts_engines.append(engine)

    def _synthesis_failed(self, failure: Failure, text: str) -> None:
        if not failure.check(CancelledError):
            log.failure("TTS failed call={call} text={text!r}", failure, call=self.call.call_id, text=text)

    def _play(self, segment: Segment, audio: "_SentenceAudio") -> Deferred[None] | None:
        """The sentence's turn on the line: what came of its audio goes now, the rest as it
        arrives; the Deferred fires once its mark is sent."""
        audio.play(lambda chunk: self._send_audio(chunk, segment))
        if audio.finished.called:  # all of it was there (a cached phrase, a whole synthesis): no hop
            self._end_segment(segment)
            return None
        return audio.finished.addCallback(lambda _: self._end_segment(segment))

    def _send_segment(self, audio: bytes, segment: Segment) -> None:
        self._send_audio(audio, segment)
        self._end_segment(segment)

    def _send_audio(self, audio: bytes, segment: Segment) -> None:
        if self.cancelled or not audio:
            return
        call, transport = self.call, self.call.transport
        if not self.audio_started:
            self.audio_started = True
            transport.send_mark(f"{self.mark_prefix}.start")
        first_sentence = segment.in_history and self.first_sentence_mark is None
        if first_sentence:
            self.first_sentence_mark = self._last_mark
            call.first_audio_ready(self)
        for i in range(0, len(audio), AUDIO_CHUNK_BYTES):
            transport.send_audio(audio[i : i + AUDIO_CHUNK_BYTES])
        segment.audio_bytes += len(audio)
        segment.chunks.append(audio)
        segment.sent = True
        call.audio_queued(self, audio, first_sentence)

    def _end_segment(self, segment: Segment) -> None:
        if self.cancelled or not segment.sent:
            return  # no audio, no mark: a sentence nobody could hear is never "heard"
        self._last_mark = f"s{segment.index}"
        self.call.transport.send_mark(f"{self.mark_prefix}.{self._last_mark}")

    def _send_end(self, _: object) -> None:
        if self.cancelled:
            return
        # Every word the caller hears, filler, apology and prompts included (the history
        # and the record keep only the agent's).
        log.info("BOT call={call} reply={reply} actions={actions} text={text!r}", call=self.call.call_id,
                 reply=self.mark_prefix, actions=",".join(type(a).__name__ for a in self.actions) or "-",
                 text=" ".join(s.text for s in self.segments if s.sent))
        self.call.transport.send_mark(f"{self.mark_prefix}.end")
        self.end_overdue = self.call.expect_end_mark(self)
        self.call.reply_sent(self)
