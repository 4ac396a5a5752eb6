"""One call's Google streaming recognition (``GoogleSTTStream``): the streams' lifecycle.

It takes the call's audio and VAD hints (the STTStream contract), opens a stream and
feeds it in batches, replaces it at a rollover or after a retryable failure (the new
one replays what is not settled), watches for a final owed after the caller's turn,
gives up to the fallback transcriber when retries run out, and degrades the call to
whole utterances when the service refuses it. What the results have settled and still
owe is the ``Ledger``'s (``voiced.google.stt_ledger``), the RPC is the ``Session``'s
(``voiced.google.stt_session``); why it is built this way is in ``voiced.google.stt``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from google.cloud import speech_v1
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.audio import MULAW_8K, AudioFormat
from voiced.google.clients import is_transient
from voiced.google.stt_ledger import Ledger
from voiced.google.stt_session import HEALTHY_STREAM_S, AudioLog as _AudioLog, Session as _Session
from voiced.stt.base import TranscriptListener
from voiced.stt.local import LocalSTTStream

if TYPE_CHECKING:
    from voiced.google.stt import GoogleSTTEngine

# The engine's namespace: a stream's lines read as voiced.google.stt's, as before the split.
log = Logger(namespace="voiced.google.stt")

#: While the caller speaks ~400 ms per request (Google suggests 100 ms; every request costs
#: ~0.1 ms of CPU in grpc.aio, a third of a call's CPU at 200 ms): the pause hint and the
#: turn's end flush what is batched, and from then on audio goes frame by frame, so no final
#: waits for a batch. What a bigger batch delays is a partial, which nothing waits on.
REQUEST_MS = 400
#: Between utterances (no speech heard since the last flush) ~500 ms: no final can be owed
#: for audio the VAD heard no speech in (if it missed some, the final waits this much more).
IDLE_REQUEST_MS = 500
#: How long a rollover may wait for an utterance to end (Google's limit is ~65 s past 240 s).
ROLLOVER_GRACE_S = 45.0
#: After the caller's turn ends, a healthy stream answers within this; silence means a hung server.
RESPONSE_WATCHDOG_S = 3.0

_HINTS = {
    "InvalidArgument": "check --stt-model and --language (not every model supports every language)",
    "PermissionDenied": "check the service account's roles and that the Speech API is enabled",
    "Unauthenticated": "check the Google credentials",
    "NotFound": "check --stt-model and --google-endpoint",
}


class GoogleSTTStream:
    """One call's recognition; every method runs on the reactor thread."""

    @property
    def streaming(self) -> bool:
        return not self._degraded  # degraded: whole utterances, one final per flush

    def __init__(
        self, engine: GoogleSTTEngine, call_id: str, listener: TranscriptListener, audio: AudioFormat = MULAW_8K
    ) -> None:
        self._engine = engine
        self._reactor = engine.reactor
        self._call_id = call_id
        self._listener = listener
        self.format = audio  # what the call feeds, and the recognition config says
        self._request_bytes = audio.bytes_per_ms() * REQUEST_MS
        self._idle_request_bytes = audio.bytes_per_ms() * IDLE_REQUEST_MS
        self._ledger = Ledger(audio)  # the call's audio, what results settled of it and still owe
        self._session: _Session | None = None
        self._attempt = 0  # failures since the last real progress (see _Session.healthy)
        self._waiting: Deferred[None] | None = None  # the backoff before the next stream
        self._degraded = False
        self._local: LocalSTTStream | None = None  # whole-utterance fallback once degraded
        self._closed = False
        self._caller_paused = False
        self.streams_opened = 0
        self._watchdog = None  # an IDelayedCall: a final is owed and must come

    # -- the STTStream contract ------------------------------------------------------------

    def feed(self, audio: bytes) -> None:
        if self._closed:
            return
        if self._degraded:
            if self._local is not None:
                self._local.feed(audio)
            return
        ledger = self._ledger
        ledger.audio.append(audio)
        session = self._session
        if session is not None:
            # Batched while the caller speaks; frame by frame while a pause may be the end of
            # the turn, or a final is owed: the service counts the silence it has received.
            urgent = self._caller_paused or ledger.owed_from is not None
            batch = self._request_bytes if ledger.speech_at is not None else self._idle_request_bytes
            if (urgent or ledger.audio.end - session.sent_upto >= batch) and not self._rolled_over(session):
                self._send_pending(session)
        elif self._waiting is None:
            self._open_session()
        ledger.forget_old_audio()

    def caller_pausing(self, paused: bool) -> None:
        """VAD hint: the caller went quiet mid-utterance (or spoke again)."""
        self._caller_paused = paused
        if paused and self._session is not None and not self._closed and not self._degraded:
            self._send_pending(self._session)

    def speech_started(self) -> None:
        if self._closed:
            return
        if self._local is not None:
            self._local.speech_started()
        else:
            self._ledger.speech_started()

    def flush(self) -> None:
        if self._closed:
            return
        speech_at = self._ledger.utterance_over()
        if self._local is not None:
            self._local.flush()
        elif self._degraded:
            # No fallback transcriber: a whole-utterance engine still owes one final per flush.
            self._listener.on_transcript("", True)
        else:
            owed = self._ledger.owe_final(speech_at)
            if self._session is not None:
                # The turn ended: nothing stays in a batch, owed or not (an end of utterance
                # shorter than the pause hint leaves the hint no frame to fire on).
                self._send_pending(self._session)
                if owed:
                    # A hung server (no error, no response; keepalive would notice only after
                    # ~40 s) must not leave the call deaf.
                    self._cancel_watchdog()
                    self._watchdog = self._reactor.callLater(RESPONSE_WATCHDOG_S, self._no_response,
                                                             self._session)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_watchdog()
        if self._waiting is not None:
            self._waiting.cancel()
        if self._session is not None:
            self._session.retire()
        if self._local is not None:
            self._local.close()
        self._ledger.audio = _AudioLog()

    # -- streams -----------------------------------------------------------------------------

    def _open_session(self) -> None:
        engine = self._engine
        clients = engine.clients
        session = _Session(clients.speech_loop, self._ledger.replay_start(), self._reactor.seconds(), self.format)
        self._session = session
        self.streams_opened += 1
        self._send_pending(session)  # the replay: everything not settled yet
        session.replayed_upto = session.sent_upto
        # A failure to start (clients stopped, the loop gone) ends it like a refused stream.
        d = clients.speech_loop.submit(
            session.run, clients.acquire_speech, engine.config_for(self.format), float(engine.settings.google_timeout_s),
            self._from_loop,
        )
        d.addBoth(self._session_ended, session)

    def _send_pending(self, session: _Session) -> None:
        audio = self._ledger.audio
        session.send(audio.since(session.sent_upto))
        session.sent_upto = audio.end

    def _from_loop(self, session: _Session, response: speech_v1.StreamingRecognizeResponse) -> None:
        if not session.retired:
            self._reactor.callFromThread(self._on_response, session, response)

    def _on_response(self, session: _Session, response: speech_v1.StreamingRecognizeResponse) -> None:
        if self._closed or session is not self._session:
            return
        session.answered(self._reactor.seconds())
        ledger = self._ledger
        self._cancel_watchdog()
        if ledger.answered(session, response):
            # A final is progress; a partial is not (a stream that dies after each one
            # would otherwise retry for ever, replaying the whole utterance each time).
            session.finals += 1
            self._attempt = 0
        results = [r for r in response.results if r.alternatives]
        finals = [r for r in results if r.is_final]
        for result in finals:
            # Settled one at a time: a listener acting on this final sees the books as of it.
            self._listener.on_transcript(ledger.finalized(session, result), True)
            if self._closed or session is not self._session:
                return  # the listener hung up
        if not finals and results:
            partial = ledger.partial(results)
            if partial:
                self._listener.on_transcript(partial, False)
        self._rolled_over(session)

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _no_response(self, session: _Session) -> None:
        self._watchdog = None
        if self._closed or session is not self._session:
            return
        session.retire()
        self._session = None
        self._retry_or_give_up("ResponseTimeout", f"no response within {RESPONSE_WATCHDOG_S:.0f} s of the caller's turn")

    def _rolled_over(self, session: _Session) -> bool:
        """Replace an old stream well before Google's 305 s limit, but never mid-utterance:
        right after a final, or in silence. The new stream replays the audio since the
        last final; the old one is retired, so its late results cannot repeat a final."""
        now = self._reactor.seconds()
        age = session.age(now)
        if age < self._engine.rollover_s or session.fresh_age(now) < HEALTHY_STREAM_S:
            # A stream whose replay alone is past the rollover age stays a while: its
            # successor would replay as much, and roll over at once, and again.
            return False
        # Not mid-utterance unless the hard limit is near.
        if self._ledger.mid_utterance and age < self._engine.rollover_s + ROLLOVER_GRACE_S:
            return False
        log.info("STT_ROLLOVER call={call_id} age_s={age:.0f}", call_id=self._call_id, age=age)
        session.retire()
        self._session = None
        self._open_session()
        return True

    def _session_ended(self, result: None | Failure, session: _Session) -> None:
        session.retire()
        if self._closed or session is not self._session:
            return  # retired on purpose: how it ended does not matter
        self._session = None
        now = self._reactor.seconds()
        healthy = session.healthy(now)
        if healthy:
            self._attempt = 0  # it worked for a while: this failure is a new one
        if not isinstance(result, Failure):
            if not healthy:
                self._retry_or_give_up("StreamEndedWithoutResult", "the stream ended without a final result")
            return  # the service ended a working stream: the next audio reopens one
        error = result.value
        if isinstance(error, gexc.OutOfRange) and (healthy or session.age(now) >= HEALTHY_STREAM_S):
            # Google's stream limits (max duration, audio timeout) on a stream that ran, even
            # one that only heard silence: not a failure. The next audio reopens a stream,
            # which replays what this one had not finalized. (Refused at once, e.g. "audio
            # streamed too fast", it goes through the backoff instead, or it would reopen 50
            # times a second.)
            self._attempt = 0
            log.info("STT_REOPEN call={call_id} reason={reason}", call_id=self._call_id, reason=error.message)
            # The limit itself, not Google's audio timeout ("Long duration elapsed without audio").
            if "stream duration" in (error.message or "").lower():
                self._engine.stream_limit_seen(session.age(now))
        elif is_transient(error) or session.responded or isinstance(error, (gexc.OutOfRange, gexc.Cancelled)):
            # After responses the configuration was accepted: whatever ended the stream
            # (a proxy's RST_STREAM shows as CANCELLED) is worth a new one.
            self._retry_or_give_up(type(error).__name__, str(error))
        else:
            self._degrade(type(error).__name__, str(error))

    # -- failure ------------------------------------------------------------------------------

    def _retry_or_give_up(self, error: str, message: str) -> None:
        backoff = self._engine.backoff
        self._attempt += 1
        if self._attempt > backoff.attempts:
            self._give_up(error, message)
            return
        delay = backoff.delay(self._attempt)
        log.info(
            "STT_RETRY call={call_id} error={error} attempt={attempt} delay_ms={delay_ms}",
            call_id=self._call_id,
            error=error,
            attempt=self._attempt,
            delay_ms=int(round(delay * 1000)),
        )
        self._listener.on_stt_retry(error)
        self._waiting = deferLater(self._reactor, delay)
        self._waiting.addCallbacks(self._retry_now, lambda f: None)

    def _retry_now(self, _: None) -> None:
        self._waiting = None
        if not self._closed and not self._degraded:
            self._open_session()

    def _give_up(self, error: str, message: str) -> None:
        """Retries exhausted: tell the call, try the fallback aside, and start afresh with a
        new budget on the audio that follows one more longest wait."""
        self._attempt = 0
        audio = self._ledger.hand_over()
        reason = f"Google STT failed after {self._engine.backoff.attempts} retries: {error}: {message}"
        log.warn("STT_GAVE_UP call={call_id} {reason}", call_id=self._call_id, reason=reason)
        # A cool-down before the next audio may open a stream: no tight reopen cycle.
        self._waiting = deferLater(self._reactor, self._engine.backoff.max_s)
        self._waiting.addCallbacks(self._cooled_down, lambda f: None)
        fallback = self._engine.fallback
        self._listener.on_stt_failure(reason, answer_coming=fallback is not None and bool(audio))
        if fallback is None or not audio or self._closed:
            return
        timeout_s = self._engine.settings.stt_fallback_timeout_ms / 1000
        d = fallback.transcribe(audio, self.format)
        d.addTimeout(timeout_s, self._reactor)
        d.addCallbacks(self._fallback_text, self._fallback_failed)

    def _cooled_down(self, _: None) -> None:
        self._waiting = None

    def _fallback_text(self, text: str) -> None:
        text = text.strip()
        if text and not self._closed:
            self._listener.on_fallback_transcript(text)

    def _fallback_failed(self, failure: Failure) -> None:
        if not self._closed:
            log.warn(
                "STT fallback gave nothing for call {call_id}: {error}",
                call_id=self._call_id,
                error=failure.getErrorMessage() or failure.type.__name__,
            )

    def _degrade(self, error: str, message: str) -> None:
        """A non-retryable error: report it once, then transcribe whole utterances for the rest of the call."""
        settings = self._engine.settings
        hint = _HINTS.get(error, "")
        reason = (
            f"Google STT refused the stream (model={settings.google_stt_model}, language={settings.language}): "
            f"{error}: {message}" + (f" -- {hint}" if hint else "")
        )
        fallback = self._engine.fallback
        log.error(
            "STT_DEGRADED call={call_id} {reason}; {mode} for the rest of the call",
            call_id=self._call_id,
            reason=reason,
            mode="whole-utterance fallback" if fallback else "no transcription (no fallback)",
        )
        self._degraded = True
        ledger = self._ledger
        owed = ledger.owed_from is not None and ledger.speech_at is None
        if fallback is not None:
            self._local = LocalSTTStream(self._call_id, self._listener, fallback, self.format)
            audio, utterance = ledger.fallback_start()
            if utterance:
                self._local.speech_started()
            self._local.feed(audio)
        ledger.audio = _AudioLog()
        ledger.owed_from = None
        self._listener.on_stt_failure(reason, answer_coming=fallback is not None)
        if owed and not self._closed:
            self.flush()  # the one final the turn waits for (empty without a fallback)
