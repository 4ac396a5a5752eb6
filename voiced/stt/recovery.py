"""What Google's and Deepgram's per-call streams share (``RecoveringSTTStream``): how the
call's audio is batched to a stream, and what happens when streams fail.

Each stream (``voiced.google.stt_stream``, ``voiced.stt.deepgram_stream``) keeps its own
transport and what its service's results and failures mean. Audio goes in batches while
the caller speaks, frame by frame once a pause may end the turn. A failure a retry may
cure is retried after a backoff (the new stream replays what no final settled,
``voiced.stt.ledger``); retries exhausted hand that audio to the fallback transcriber
aside, tell the call, and start afresh with a new budget after one more longest wait; a
refusal no retry cures degrades the call to whole utterances transcribed by the fallback
(or none) for the rest of the call. A final owed after the caller's turn that never comes
(a hung server) is a failure too. Every method runs on the reactor thread.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.audio import AudioFormat
from voiced.stt.audio_log import AudioLog
from voiced.stt.base import TranscriptListener
from voiced.stt.ledger import StreamLedger
from voiced.stt.local import LocalSTTStream

#: A final owed for this long of audio is late (the service is slow, or this process is):
#: from then on the audio goes in small batches instead of frame by frame. The messages of
#: frame-by-frame sending are what an overloaded service or speech loop can least afford,
#: and a later final would otherwise hold every late call in that mode, a feedback loop.
OWED_URGENT_MS = 1000
#: The batch for a final that is late: it delays that final by at most this, less a frame.
LATE_FINAL_REQUEST_MS = 100


class RecoveringSTTStream:
    """The shared half of a streaming engine's call stream. A subclass opens, feeds and ends
    its sessions (``_open_session``, ``_send_pending``, ``_retire_session``; ``_ready`` and
    ``_rolled_over`` where its sessions have such states), finalizes a turn (``flush``),
    handles a watchdog that fired (``_no_response``), and says which of its failures to
    retry (``_retry_or_give_up``) and which degrade the call (``_degrade_call``)."""

    #: The service's name in the reasons the call is told ("Google", "Deepgram").
    service = ""

    def __init__(self, engine: Any, clock: IReactorTime, call_id: str, listener: TranscriptListener,
                 audio: AudioFormat, ledger: StreamLedger, log: Logger, *, request_ms: int,
                 idle_request_ms: int) -> None:
        """``engine`` gives ``backoff``, ``fallback`` and ``settings``; ``log`` is the engine's
        namespace, so a stream's lines read as its engine's. Audio goes in requests of
        ``request_ms`` while the caller speaks, ``idle_request_ms`` between utterances."""
        self._engine = engine
        self._clock = clock
        self._call_id = call_id
        self._listener = listener
        self.format = audio  # what the call feeds, and the recognition config says
        self._ledger = ledger  # the call's audio, what results settled of it and still owe
        self._log = log
        self._session: Any = None
        self._attempt = 0  # failures since the last real progress (see the sessions' healthy())
        self._waiting: Deferred[None] | None = None  # the backoff before the next stream
        self._degraded = False
        self._local: LocalSTTStream | None = None  # whole-utterance fallback once degraded
        self._closed = False
        self._caller_paused = False
        self._watchdog: Any = None  # an IDelayedCall: a final is owed and must come
        self._request_bytes = audio.bytes_per_ms() * request_ms
        self._idle_request_bytes = audio.bytes_per_ms() * idle_request_ms
        self._owed_urgent_bytes = audio.bytes_per_ms() * OWED_URGENT_MS
        self._late_final_request_bytes = audio.bytes_per_ms() * LATE_FINAL_REQUEST_MS
        self.streams_opened = 0

    @property
    def streaming(self) -> bool:
        return not self._degraded  # degraded: whole utterances, one final per flush

    def _open_session(self) -> None:
        raise NotImplementedError

    def _retire_session(self) -> None:
        """The call is over: end the current session, if any, without caring how it ends."""
        raise NotImplementedError

    def _send_pending(self, session: Any) -> None:
        """Send the session all the call's audio it has not had yet."""
        raise NotImplementedError

    def _ready(self, session: Any) -> bool:
        """Whether the session takes audio now (a WebSocket not open yet does not)."""
        return True

    def _rolled_over(self, session: Any) -> bool:
        """Whether the session was just replaced by a fresh one (its age: the service's limit)."""
        return False

    # -- the STTStream contract's shared half -------------------------------------------------

    def feed(self, audio: bytes) -> None:
        if self._closed:
            return
        if self._degraded:
            if self._local is not None:
                self._local.feed(audio)
            return
        ledger = self._ledger
        audio_log = ledger.audio
        audio_log.append(audio)
        session = self._session
        if session is not None:
            # Batched while the caller speaks; frame by frame while a pause may be the end of
            # the turn, or a final is owed: the service counts the silence it has received.
            # A final owed for long is late: small batches then (OWED_URGENT_MS).
            end = audio_log.end
            if self._caller_paused:
                send = True
            elif ledger.owed_from is not None:
                send = (end - ledger.owed_since <= self._owed_urgent_bytes
                        or end - session.sent_upto >= self._late_final_request_bytes)
            else:
                batch = self._request_bytes if ledger.speech_at is not None else self._idle_request_bytes
                send = end - session.sent_upto >= batch
            if send and self._ready(session) and not self._rolled_over(session):
                self._send_pending(session)
        elif self._waiting is None:
            self._open_session()
        ledger.forget_old_audio()

    def caller_pausing(self, paused: bool) -> None:
        """VAD hint: the caller went quiet mid-utterance (or spoke again)."""
        self._caller_paused = paused
        session = self._session
        if paused and session is not None and self._ready(session) and not self._closed and not self._degraded:
            self._send_pending(session)

    def speech_started(self, ms_ago: int = 0) -> None:
        if self._closed:
            return
        if self._local is not None:
            self._local.speech_started(ms_ago)
        else:
            self._ledger.speech_started(ms_ago)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timers()
        if self._waiting is not None:
            self._waiting.cancel()
        self._retire_session()
        if self._local is not None:
            self._local.close()
        self._ledger.audio = AudioLog()

    # -- timers --------------------------------------------------------------------------------

    def _arm_watchdog(self, session: Any, seconds: float) -> None:
        # A hung server (no error, no answer) must not leave the call deaf.
        self._cancel_watchdog()
        self._watchdog = self._clock.callLater(seconds, self._no_response, session)

    def _no_response(self, session: Any) -> None:
        raise NotImplementedError

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _cancel_timers(self) -> None:
        self._cancel_watchdog()

    # -- failure ------------------------------------------------------------------------------

    def _retry_or_give_up(self, error: str, message: str) -> None:
        backoff = self._engine.backoff
        self._attempt += 1
        if self._attempt > backoff.attempts:
            self._give_up(error, message)
            return
        delay = backoff.delay(self._attempt)
        self._log.info("STT_RETRY call={call_id} error={error} attempt={attempt} delay_ms={delay_ms}",
                       call_id=self._call_id, error=error, attempt=self._attempt,
                       delay_ms=int(round(delay * 1000)))
        self._listener.on_stt_retry(error)
        self._waiting = deferLater(self._clock, delay)
        self._waiting.addCallbacks(self._retry_now, lambda f: None)

    def _retry_now(self, _: None) -> None:
        self._waiting = None
        if not self._closed and not self._degraded and self._session is None:
            self._open_session()

    def _give_up(self, error: str, message: str) -> None:
        """Retries exhausted: tell the call, try the fallback aside, and start afresh with a
        new budget on the audio that follows one more longest wait."""
        self._attempt = 0
        audio = self._ledger.hand_over()
        attempts = self._engine.backoff.attempts  # 0 in a fallback chain: the next engine is the retry
        reason = f"{self.service} STT failed{f' after {attempts} retries' if attempts else ''}: {error}: {message}"
        self._log.warn("STT_GAVE_UP call={call_id} {reason}", call_id=self._call_id, reason=reason)
        # A cool-down before the next audio may open a stream: no tight reopen cycle.
        self._waiting = deferLater(self._clock, self._engine.backoff.max_s)
        self._waiting.addCallbacks(self._cooled_down, lambda f: None)
        fallback = self._engine.fallback
        self._listener.on_stt_failure(reason, answer_coming=fallback is not None and bool(audio))
        if fallback is None or not audio or self._closed:
            return
        d = fallback.transcribe(audio, self.format)
        d.addTimeout(self._engine.settings.stt_fallback_timeout_ms / 1000, self._clock)
        d.addCallbacks(self._fallback_text, self._fallback_failed)

    def _cooled_down(self, _: None) -> None:
        self._waiting = None

    def _fallback_text(self, text: str) -> None:
        text = text.strip()
        if text and not self._closed:
            self._listener.on_fallback_transcript(text)

    def _fallback_failed(self, failure: Failure) -> None:
        if not self._closed:
            self._log.warn("STT fallback gave nothing for call {call_id}: {error}", call_id=self._call_id,
                           error=failure.getErrorMessage() or failure.type.__name__)

    def _degrade_call(self, reason: str) -> None:
        """A refusal no retry cures (``reason`` says which, and what to check): report it once,
        then transcribe whole utterances for the rest of the call."""
        fallback = self._engine.fallback
        self._log.error("STT_DEGRADED call={call_id} {reason}; {mode} for the rest of the call",
                        call_id=self._call_id, reason=reason,
                        mode="whole-utterance fallback" if fallback else "no transcription (no fallback)")
        self._degraded = True
        ledger = self._ledger
        owed = ledger.owed_from is not None and ledger.speech_at is None
        if fallback is not None:
            self._local = LocalSTTStream(self._call_id, self._listener, fallback, self.format)
            audio, utterance = ledger.fallback_start()
            if utterance:
                self._local.speech_started()
            self._local.feed(audio)
        ledger.audio = AudioLog()
        ledger.owed_from = None
        self._listener.on_stt_failure(reason, answer_coming=fallback is not None)
        if owed and not self._closed:
            self.flush()  # the one final the turn waits for (empty without a fallback)

    def flush(self) -> None:
        raise NotImplementedError
