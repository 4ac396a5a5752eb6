"""One call's Deepgram recognition (``DeepgramSTTStream``): its WebSockets' lifecycle.

It takes the call's audio and VAD hints (the STTStream contract), opens a WebSocket at
the first audio and feeds it (in ~100 ms messages while the caller speaks, frame by frame
while a pause may end the turn), sends ``Finalize`` at the end of the caller's turn and
``KeepAlive`` whenever nothing was sent for a few seconds (a carrier that stops sending
while the bot talks: Deepgram closes a stream after 10 s of nothing), and ``CloseStream``
at the end of the call. A failed stream is replaced after a backoff and the new one
replays what no final settled (``voiced.stt.deepgram_ledger``); retries exhausted hand
that audio to the fallback; a refusal no retry cures degrades the call to whole
utterances (the rules it shares with Google's: ``voiced.stt.recovery``). Why:
``voiced.stt.deepgram``. Every method runs on the reactor thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from voiced.audio import MULAW_8K, AudioFormat
from voiced.stt.base import TranscriptListener
from voiced.stt.deepgram_ledger import Ledger
from voiced.stt.deepgram_link import DeepgramLink, LinkEnd
from voiced.stt.deepgram_wire import (
    FINALIZE, KEEPALIVE, REFUSAL_HINTS, Message, Metadata, Results, ServerError, is_fatal,
)
from voiced.stt.recovery import RecoveringSTTStream

if TYPE_CHECKING:
    from voiced.stt.deepgram import DeepgramSTTEngine

log = Logger(namespace="voiced.stt.deepgram")

#: While the caller speaks ~100 ms per message (Deepgram suggests 20-100 ms); a pause hint
#: and the end of the turn send what is batched at once, and frame by frame from then on.
REQUEST_MS = 100
#: Between utterances ~250 ms: no final can be owed for audio the VAD heard no speech in.
IDLE_REQUEST_MS = 250
#: Replays go in bigger messages.
REPLAY_REQUEST_MS = 500
#: Nothing sent for this long: a KeepAlive (Deepgram asks for one every 3-5 s; 10 s closes).
KEEPALIVE_S = 4.0
#: After the caller's turn ends with words open, a healthy stream finalizes within this.
RESPONSE_WATCHDOG_S = 3.0
#: A stream that went on answering this long proved the service works: its failure starts
#: a fresh retry budget (only real progress does: one that answers once and dies is a failure).
HEALTHY_STREAM_S = 5.0


class _Session:
    """One WebSocket and what went over it; offsets are absolute (see the Ledger)."""

    def __init__(self, link: DeepgramLink, base: int, opened_at: float) -> None:
        self.link = link
        self.base = base  # absolute offset of this stream's first audio byte
        self.sent_upto = base
        self.open = False
        self.opened_at = opened_at
        self.last_sent_at = opened_at
        self.first_answer_at: float | None = None
        self.answered_upto = -1  # sent_upto when its latest message came
        self.finals = 0

    def healthy(self, now: float) -> bool:
        """Real progress: a final, or answers for HEALTHY_STREAM_S."""
        return bool(self.finals) or (self.first_answer_at is not None and now - self.first_answer_at >= HEALTHY_STREAM_S)


class DeepgramSTTStream(RecoveringSTTStream):
    """One call's recognition over Deepgram."""

    service = "Deepgram"
    _session: _Session | None
    _ledger: Ledger

    def __init__(self, engine: DeepgramSTTEngine, call_id: str, listener: TranscriptListener,
                 audio: AudioFormat = MULAW_8K) -> None:
        super().__init__(engine, engine.clock, call_id, listener, audio, Ledger(audio), log,
                         request_ms=REQUEST_MS, idle_request_ms=IDLE_REQUEST_MS)
        self._replay_request_bytes = audio.bytes_per_ms() * REPLAY_REQUEST_MS
        self._keepalive = None  # an IDelayedCall
        self.keepalives_sent = 0

    # -- the STTStream contract ------------------------------------------------------------

    def flush(self) -> None:
        if self._closed:
            return
        ledger = self._ledger
        speech_at = ledger.utterance_over()
        if self._local is not None:
            self._local.flush()
            return
        if self._degraded:
            self._listener.on_transcript("", True)  # no fallback: still one final per flush
            return
        session = self._session
        # Words not finalized, or speech this stream has said nothing about since it began
        # (a hung server says nothing at all): a final is owed.
        unanswered = speech_at is not None and (session is None or session.answered_upto < speech_at)
        owed = ledger.owe_final(None if not (unanswered or ledger.words_open) else speech_at)
        if session is not None and session.open:
            self._send_pending(session)
            self._send(session, FINALIZE)
            if owed:
                self._arm_watchdog(session, RESPONSE_WATCHDOG_S)
        # Not open yet: the stream finalizes as soon as it is (see link_opened).

    def _retire_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.link.finish(self._clock)

    # -- streams -----------------------------------------------------------------------------

    def _open_session(self) -> None:
        engine = self._engine
        base = self._ledger.replay_start()
        self.streams_opened += 1
        link = engine.connector.connect(self.format, self)
        self._session = _Session(link, base, self._clock.seconds())

    def _ready(self, session: _Session) -> bool:
        return session.open

    def _send_pending(self, session: _Session) -> None:
        audio = self._ledger.audio
        pending = audio.since(session.sent_upto)
        session.sent_upto = audio.end
        if pending:
            session.link.send_audio(pending)
            session.last_sent_at = self._clock.seconds()

    def _send(self, session: _Session, frame: bytes) -> None:
        session.link.send_text(frame)
        session.last_sent_at = self._clock.seconds()

    def link_opened(self, link: DeepgramLink) -> None:
        session = self._session
        if self._closed or session is None or link is not session.link:
            return
        session.open = True
        # The replay: everything not settled, in bigger messages.
        audio = self._ledger.audio.since(session.sent_upto)
        session.sent_upto = self._ledger.audio.end
        for i in range(0, len(audio), self._replay_request_bytes):
            link.send_audio(audio[i:i + self._replay_request_bytes])
        session.last_sent_at = self._clock.seconds()
        if self._ledger.owed_from is not None:
            # The turn ended while this stream was not up: its final is still owed.
            self._send(session, FINALIZE)
            self._arm_watchdog(session, RESPONSE_WATCHDOG_S)
        self._schedule_keepalive(session)

    def link_message(self, link: DeepgramLink, message: Message) -> None:
        session = self._session
        if self._closed or session is None or link is not session.link:
            return
        now = self._clock.seconds()
        if session.first_answer_at is None:
            session.first_answer_at = now
        session.answered_upto = session.sent_upto
        if isinstance(message, Results):
            self._on_results(session, message)
        elif isinstance(message, ServerError):
            log.warn("STT_SERVER_ERROR call={call_id} {description}: {message} ({variant})", call_id=self._call_id,
                     description=message.description, message=message.message, variant=message.variant)
        elif isinstance(message, Metadata):
            log.debug("Deepgram stream metadata call={call_id} request_id={request_id} duration={duration}",
                      call_id=self._call_id, request_id=message.request_id, duration=message.duration)

    def _on_results(self, session: _Session, result: Results) -> None:
        ledger = self._ledger
        if not result.is_final:
            text = ledger.interim(result.transcript)
            if ledger.owed_from is not None and self._watchdog is not None:
                self._arm_watchdog(session, RESPONSE_WATCHDOG_S)  # working on it: the final is still to come
            if text:
                self._listener.on_transcript(text, False)
            return
        # A final is progress; an interim is not (a stream that dies after each one
        # would otherwise retry for ever, replaying the whole utterance each time).
        session.finals += 1
        self._attempt = 0
        wanted = ledger.words_open or ledger.owed_from is not None
        ledger.final(session.base, result.end, session.sent_upto)
        self._cancel_watchdog()
        text = result.transcript.strip()
        if text or wanted:
            self._listener.on_transcript(text, True)

    def link_garbled(self, link: DeepgramLink, error: str) -> None:
        if not self._closed and self._session is not None and link is self._session.link:
            log.warn("STT_GARBLED call={call_id} a message from Deepgram was not understood: {error}",
                     call_id=self._call_id, error=error)

    def link_closed(self, link: DeepgramLink, end: LinkEnd) -> None:
        session = self._session
        if self._closed or session is None or link is not session.link:
            return  # retired on purpose: how it ended does not matter
        self._session = None
        self._cancel_timers()
        healthy = session.healthy(self._clock.seconds())
        if healthy:
            self._attempt = 0  # it worked for a while: this failure is a new one
        if is_fatal(end.status, end.code):
            self._degrade(end)
        elif healthy and end.code == 1000:
            # The service ended a working stream: the next audio opens one, replaying what it had not finalized.
            log.info("STT_REOPEN call={call_id} reason={reason}", call_id=self._call_id, reason=end.describe())
        else:
            self._retry_or_give_up(_error_name(end), end.describe())

    # -- timers --------------------------------------------------------------------------------

    def _schedule_keepalive(self, session: _Session) -> None:
        due = session.last_sent_at + KEEPALIVE_S - self._clock.seconds()
        self._keepalive = self._clock.callLater(max(0.0, due), self._keepalive_due, session)

    def _keepalive_due(self, session: _Session) -> None:
        self._keepalive = None
        if self._closed or session is not self._session:
            return
        if self._clock.seconds() - session.last_sent_at >= KEEPALIVE_S - 1e-6:
            self._send(session, KEEPALIVE)
            self.keepalives_sent += 1
        self._schedule_keepalive(session)

    def _no_response(self, session: _Session) -> None:
        self._watchdog = None
        if self._closed or session is not self._session:
            return
        self._session = None
        self._cancel_timers()
        session.link.abort()
        self._retry_or_give_up("ResponseTimeout",
                               f"no final within {RESPONSE_WATCHDOG_S:.0f} s of the caller's turn")

    def _cancel_timers(self) -> None:
        super()._cancel_timers()
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None

    # -- failure ------------------------------------------------------------------------------

    def _degrade(self, end: LinkEnd) -> None:
        """A refusal no retry cures: say it once, then whole utterances for the rest of the call."""
        settings = self._engine.settings
        hint = REFUSAL_HINTS.get(end.status or 0, "Deepgram could not decode the audio" if end.code == 1008 else "")
        reason = (f"Deepgram STT refused the stream (host={self._engine.host} model={settings.deepgram_model} "
                  f"language={self._engine.language}): {end.describe()}" + (f" -- {hint}" if hint else ""))
        self._degrade_call(reason)


def _error_name(end: LinkEnd) -> str:
    """A short name for STT_RETRY lines and the call's record."""
    if end.status is not None:
        return f"HTTP{end.status}"
    if end.code is not None and end.code != 1006:
        return f"Close{end.code}"
    return "ConnectionLost" if end.opened else "ConnectFailed"
