"""The replies on the line: which replies are out (by mark prefix), which one the call
waits on, when the audio sent so far will have played, and what the caller heard of
each reply as it plays out or is cut.

It is every reply's ``ReplyHost`` (``voiced.call.reply``): it times the turn from what
the replies report (``reply.turn.times``), tells the chronicle what was heard, keeps
the history's bot lines, and watches for an end mark the carrier never echoes. Its
owner (the call) hears only that the current reply's audio is going out, that a reply
is over, and that a filler played (``PlaybackOwner``); what follows is the owner's.
Every method runs on the reactor thread.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from voiced.agent.base import Said
from voiced.audio import SAMPLE_RATE
from voiced.call.chronicle import Chronicle
from voiced.call.model import CallTransport, Turn
from voiced.call.reply import Reply, ReplyKind
from voiced.tts.speaker import Speaker
from voiced.turns.levels import OutgoingLevel

log = Logger(namespace="voiced.call")

# Twilio echoes a mark as soon as the audio before it has played; a carrier that never
# does must not leave a call stuck in SPEAKING (or a goodbye that never hangs up).
END_MARK_GRACE_S = 3.0


class PlaybackOwner(Protocol):
    def reply_playing(self, reply: Reply) -> None:
        """Audio of the current reply went out."""

    def reply_finished(self, reply: Reply) -> None:
        """``reply`` played out (its end mark came, or never will); what it was heard as is recorded."""

    def filler_played(self, reply: Reply) -> None:
        """The agent was slow and ``reply`` began with a filler."""


class Playback:
    def __init__(self, call_id: str, clock: IReactorTime, transport: CallTransport, speaker: Speaker,
                 chronicle: Chronicle, outgoing: OutgoingLevel, history: deque[Said], owner: PlaybackOwner) -> None:
        # ReplyHost: what every reply reads of its call.
        self.call_id = call_id
        self.clock = clock
        self.transport = transport
        self.speaker = speaker
        self._chronicle = chronicle
        self._outgoing = outgoing  # the echo guard's reference (voiced.call.barge_in)
        self._history = history
        self._owner = owner
        self.replies: dict[str, Reply] = {}
        self.current: Reply | None = None  # the reply the call is waiting on or playing
        self._count = 0
        self._until = 0.0  # clock time the audio sent so far will have played
        self._closed = False

    def new_reply(self, kind: ReplyKind, turn: Turn | None, current: bool = True,
                  gate: Deferred[None] | None = None, make: type[Reply] = Reply) -> Reply:
        """A reply put on the line; ``current``: the one the call waits on (a prompt is not);
        ``make``: a kind of reply other than spoken text (a model's own audio: ``StreamedReply``)."""
        self._count += 1
        reply = make(self, kind, self._count, turn, gate)
        self.replies[reply.mark_prefix] = reply
        if current:
            self.current = reply
        return reply

    def on_mark(self, name: str) -> None:
        """The carrier echoed mark ``name``: the audio before it has played."""
        prefix, _, suffix = name.partition(".")
        reply = self.replies.get(prefix)
        if reply is None or self._closed:
            log.debug("Ignoring mark {name!r} call={call}", name=name, call=self.call_id)
            return
        reply.on_mark(suffix, self.clock.seconds())
        if suffix == reply.first_sentence_mark and reply.turn is not None:
            reply.turn.times.playback_start = self.clock.seconds()
            self._chronicle.measured(reply.turn)
        elif suffix == "end":
            self._finished(reply)

    def interrupt(self, reply: Reply) -> None:
        """Stop ``reply`` now; the history keeps what the caller heard of it."""
        if reply.audio_started:
            self.transport.send_clear()
            self._until = self.clock.seconds()  # the carrier dropped what it had queued
            self._outgoing.cleared(self._until)
        reply.cancel()
        self.replies.pop(reply.mark_prefix, None)  # its marks, echoed after the clear, mean nothing
        heard = reply.heard(cut_at=self.clock.seconds())
        if heard is not None:
            self._history.append(heard)
        self._chronicle.reply_ended(reply, heard, cut=reply.audio_started)
        if reply.turn is not None:
            self._chronicle.measured(reply.turn)

    def interrupt_all(self) -> None:
        for reply in list(self.replies.values()):
            self.interrupt(reply)

    def drop(self, reply: Reply) -> None:
        """Forget ``reply`` before any of its audio went out (the caller went on talking)."""
        reply.cancel()
        self.replies.pop(reply.mark_prefix, None)

    def prompts(self) -> list[Reply]:
        return [reply for reply in self.replies.values() if reply.kind is ReplyKind.PROMPT]

    def prompt_playing(self) -> bool:
        return any(reply.kind is ReplyKind.PROMPT for reply in self.replies.values())

    def close(self) -> None:
        """The call is over: every reply still out ends where it got to."""
        self._closed = True
        for reply in self.replies.values():
            self._chronicle.reply_ended(reply, reply.heard(), cut=reply.audio_started)
            if reply.turn is not None:
                self._chronicle.measured(reply.turn)
            reply.cancel()
        self.replies.clear()

    # ---- ReplyHost (voiced.call.reply) ---------------------------------------------------------
    def reply_text_known(self, reply: Reply) -> None:
        if reply.turn is not None:
            reply.turn.times.reply_text = self.clock.seconds()

    def first_audio_ready(self, reply: Reply) -> None:
        if reply.turn is not None:
            reply.turn.times.tts_ready = self.clock.seconds()

    def audio_queued(self, reply: Reply, audio: bytes, first_sentence: bool) -> None:
        # The carrier plays what it is sent in order, in real time: model when it will be done.
        plays_at = max(self._until, self.clock.seconds())
        self._outgoing.queued(audio, plays_at, now=self.clock.seconds())
        self._until = plays_at + len(audio) / SAMPLE_RATE
        if first_sentence and reply.turn is not None:
            reply.turn.times.first_audio_sent = self.clock.seconds()
            self._chronicle.reply_plays_at(reply.turn, plays_at)
        if reply is self.current:
            self._owner.reply_playing(reply)

    def reply_sent(self, reply: Reply) -> None:
        """All of a reply's audio is out (the BOT line): viewers see its text while it
        plays; the ``bot`` event follows once it has played or was cut."""
        if reply.turn is not None and (record := self._chronicle.record.turn(reply.turn.number)) is not None:
            record.tts_engines += [engine for engine in reply.tts_engines if engine not in record.tts_engines]
        self._chronicle.reply_sent(reply)

    def filler_played(self, reply: Reply) -> None:
        self._owner.filler_played(reply)

    def expect_end_mark(self, reply: Reply) -> IDelayedCall:
        delay = max(0.0, self._until - self.clock.seconds()) + END_MARK_GRACE_S
        return self.clock.callLater(delay, self._end_mark_overdue, reply)

    # ---- internals -------------------------------------------------------------------------------
    def _end_mark_overdue(self, reply: Reply) -> None:
        reply.end_overdue = None
        if self._closed or reply.cancelled or reply.mark_prefix not in self.replies:
            return
        log.warn("MARK_TIMEOUT call={call} reply={reply}: the carrier never echoed its end mark; "
                 "taking it as played", call=self.call_id, reply=reply.mark_prefix)
        self._finished(reply, assume_played=True)

    def _finished(self, reply: Reply, assume_played: bool = False) -> None:
        reply.stop_waiting_for_end()
        self.replies.pop(reply.mark_prefix, None)
        if reply.kind is not ReplyKind.PROMPT:  # an interim prompt is not conversation
            heard = reply.heard(assume_played=assume_played)
            if heard is not None:
                self._history.append(heard)
            self._chronicle.reply_ended(reply, heard, cut=False)
            if reply.turn is not None:
                self._chronicle.measured(reply.turn)  # a turn answered by an apology is measured too
        self._owner.reply_finished(reply)
