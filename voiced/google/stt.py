"""Google streaming speech-to-text, one gRPC stream at a time per call, that survives failure.

A call's audio is kept from the end of the last final result (``result_end_time``)
on, addressed by absolute byte offsets since the call began (8 kHz mu-law: one byte
per sample). Whenever a stream has to be replaced -- a retryable error, Google's
stream limits, or a deliberate rollover before the 305 s limit, taken after a final
or in silence -- the next stream starts by replaying that audio, so no word is lost,
and results of the replaced stream are ignored from then on, so no final is
duplicated. A stream that fails for good (retries exhausted) hands that audio to the
fallback transcriber; a stream the service refuses outright (a bad model/language,
credentials) degrades the call to whole-utterance transcription by the fallback.

The RPC itself (``Session``) and the audio log live in ``voiced.google.stt_session``.

Threads: every stream is a ``grpc.aio`` call on the process's speech event loop
(``voiced.google.aio_loop``, one thread of the service's STT pool), so a call costs
no thread of its own. The RPC goes through the transport's stub, which returns the
call object at once: the client library's ``streaming_recognize`` waits for the
first response before there is anything to cancel, so a server that never answers
would keep a retired or closed stream open until the deadline. Everything else,
including every listener call, happens on the reactor thread.

Backoff: only real progress restores the retry budget -- a final, or a stream that
kept answering for ``HEALTHY_STREAM_S``. A stream that answers once and dies (a
proxy resetting every stream) is a failure like any other, so an utterance that
cannot be transcribed ends in the give-up path.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import speech_v1
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.audio import SAMPLE_RATE
from voiced.config import Settings
from voiced.google.clients import GoogleClients, is_transient
from voiced.google.stt_session import HEALTHY_STREAM_S, AudioLog as _AudioLog, Session as _Session
from voiced.retry import Backoff
from voiced.stt.base import Transcriber, TranscriptListener
from voiced.stt.local import PREROLL_MS, LocalSTTStream

log = Logger()

#: While the caller speaks ~400 ms per request (Google suggests 100 ms; every request costs
#: ~0.1 ms of CPU in grpc.aio, a third of a call's CPU at 200 ms): the pause hint and the
#: turn's end flush what is batched, and from then on audio goes frame by frame, so no final
#: waits for a batch. What a bigger batch delays is a partial, which nothing waits on.
REQUEST_BYTES = SAMPLE_RATE * 2 // 5
#: Between utterances (no speech heard since the last flush) ~500 ms: no final can be owed
#: for audio the VAD heard no speech in (if it missed some, the final waits this much more).
IDLE_REQUEST_BYTES = SAMPLE_RATE // 2
#: The most audio kept for a replay: longer than any utterance, short enough to resend in a blink.
REPLAY_MAX_BYTES = SAMPLE_RATE * 30
#: More than Google takes to answer speech with a partial: older audio without one was silence.
UNANSWERED_BYTES = SAMPLE_RATE * 5
_PREROLL_BYTES = SAMPLE_RATE * PREROLL_MS // 1000
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


def recognition_config(settings: Settings) -> speech_v1.StreamingRecognitionConfig:
    return speech_v1.StreamingRecognitionConfig(
        config=speech_v1.RecognitionConfig(
            # Twilio's mu-law goes as it comes: no transcoding.
            encoding=speech_v1.RecognitionConfig.AudioEncoding.MULAW,
            sample_rate_hertz=SAMPLE_RATE,
            language_code=settings.language,
            model=settings.stt_model,
            use_enhanced=True,
            enable_automatic_punctuation=True,
        ),
        interim_results=True,
    )


def _bytes_at(duration) -> int:
    """A result time (a timedelta since the stream began) as a byte offset into its audio."""
    return round(duration.total_seconds() * SAMPLE_RATE)


class GoogleSTTEngine:
    """STTEngine: process-wide; each call opens a GoogleSTTStream."""

    name = "google"
    streaming = True

    def __init__(
        self,
        clients: GoogleClients,
        settings: Settings,
        reactor,
        fallback: Transcriber | None,
        rollover_s: float = 240.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self.reactor = reactor
        self.fallback = fallback
        self.rollover_s = rollover_s
        self.backoff = backoff or Backoff.from_ms(
            settings.stt_retry_initial_ms, settings.stt_retry_max_ms, settings.stt_retry_attempts, jitter=0.1
        )
        self.config = recognition_config(settings)

    def stream_limit_seen(self, age_s: float) -> None:
        """A server ended a stream at its duration limit before our rollover age: roll over
        earlier from now on, at a final or in silence, instead of meeting the limit mid-word."""
        adapted = round(age_s * 0.8, 1)
        if age_s >= self.rollover_s or adapted < HEALTHY_STREAM_S:
            return
        log.warn("STT_ROLLOVER_ADAPTED the speech service ends streams after {age:.0f} s, before "
                 "VOICED_STT_ROLLOVER_S={rollover:.0f}: rolling over at {adapted} s", age=age_s,
                 rollover=self.rollover_s, adapted=adapted)
        self.rollover_s = adapted

    def open_stream(self, call_id: str, listener: TranscriptListener) -> "GoogleSTTStream":
        return GoogleSTTStream(self, call_id, listener)


class GoogleSTTStream:
    """One call's recognition; every method runs on the reactor thread."""

    @property
    def streaming(self) -> bool:
        return not self._degraded  # degraded: whole utterances, one final per flush

    def __init__(self, engine: GoogleSTTEngine, call_id: str, listener: TranscriptListener) -> None:
        self._engine = engine
        self._reactor = engine.reactor
        self._call_id = call_id
        self._listener = listener
        self._audio = _AudioLog()
        # Audio before this offset needs no replay: finalized, handed to the fallback, or silence.
        self._settled_at = 0
        self._speech_at: int | None = None  # where the current utterance began (VAD hint)
        self._session: _Session | None = None
        self._partial_open = False  # a partial came after the last final: an utterance is under way
        self._words_unfinalized = False  # like _partial_open, but across streams (a retry resets that)
        self._attempt = 0  # failures since the last real progress (see _Session.healthy)
        self._waiting: Deferred[None] | None = None  # the backoff before the next stream
        self._degraded = False
        self._local: LocalSTTStream | None = None  # whole-utterance fallback once degraded
        self._closed = False
        self._caller_paused = False
        self.streams_opened = 0
        self._heard_since_speech = False  # any response since the caller last began speaking
        # Where the utterance began that the call ended (flush) and whose final has not come yet.
        self._owed_from: int | None = None
        self._watchdog = None  # an IDelayedCall: a final is owed and must come

    # -- the STTStream contract ------------------------------------------------------------

    def feed(self, ulaw: bytes) -> None:
        if self._closed:
            return
        if self._degraded:
            if self._local is not None:
                self._local.feed(ulaw)
            return
        self._audio.append(ulaw)
        session = self._session
        if session is not None:
            # Batched while the caller speaks; frame by frame while a pause may be the end of
            # the turn, or a final is owed: the service counts the silence it has received.
            urgent = self._caller_paused or self._owed_from is not None
            batch = REQUEST_BYTES if self._speech_at is not None else IDLE_REQUEST_BYTES
            if (urgent or self._audio.end - session.sent_upto >= batch) and not self._rolled_over(session):
                self._send_pending(session)
        elif self._waiting is None:
            self._open_session()
        self._forget_old_audio()

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
        elif self._speech_at is None:
            self._speech_at = self._audio.end
            self._heard_since_speech = False

    def flush(self) -> None:
        if self._closed:
            return
        speech_at, self._speech_at = self._speech_at, None
        if self._local is not None:
            self._local.flush()
        elif self._degraded:
            # No fallback transcriber: a whole-utterance engine still owes one final per flush.
            self._listener.on_transcript("", True)
        else:
            # The caller spoke and stopped: a final is owed, unless one came since the last partial.
            if self._partial_open or not self._heard_since_speech:
                began = speech_at if speech_at is not None else self._settled_at
                self._owed_from = began if self._owed_from is None else min(self._owed_from, began)
            if self._owed_from is not None and self._session is not None:
                self._send_pending(self._session)  # nothing the final waits for stays in a batch
                # A hung server (no error, no response; keepalive would notice only after
                # ~40 s) must not leave the call deaf.
                self._cancel_watchdog()
                self._watchdog = self._reactor.callLater(RESPONSE_WATCHDOG_S, self._no_response, self._session)

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
        self._audio = _AudioLog()

    # -- streams -----------------------------------------------------------------------------

    def _open_session(self) -> None:
        engine = self._engine
        clients = engine.clients
        self._settle_unanswerable()
        session = _Session(clients.speech_loop, max(self._settled_at, self._audio.start), self._reactor.seconds())
        self._session = session
        self._partial_open = False
        self.streams_opened += 1
        self._send_pending(session)  # the replay: everything not settled yet
        session.replayed_upto = session.sent_upto
        # A failure to start (clients stopped, the loop gone) ends it like a refused stream.
        d = clients.speech_loop.submit(
            session.run, clients.acquire_speech, engine.config, float(engine.settings.google_timeout_s),
            self._from_loop,
        )
        d.addBoth(self._session_ended, session)

    def _send_pending(self, session: _Session) -> None:
        session.send(self._audio.since(session.sent_upto))
        session.sent_upto = self._audio.end

    def _from_loop(self, session: _Session, response: speech_v1.StreamingRecognizeResponse) -> None:
        if not session.retired:
            self._reactor.callFromThread(self._on_response, session, response)

    def _on_response(self, session: _Session, response: speech_v1.StreamingRecognizeResponse) -> None:
        if self._closed or session is not self._session:
            return
        session.answered(self._reactor.seconds())
        self._heard_since_speech = True
        self._cancel_watchdog()
        if any(r.is_final for r in response.results):
            # A final is progress; a partial is not (a stream that dies after each one
            # would otherwise retry for ever, replaying the whole utterance each time).
            session.finals += 1
            self._attempt = 0
            self._owed_from = None
            self._words_unfinalized = False
        for empty_final in (r for r in response.results if r.is_final and not r.alternatives):
            # Nothing recognized, but that audio is done with.
            self._settled_at = max(self._settled_at, self._final_offset(session, empty_final))
            self._partial_open = False
        results = [r for r in response.results if r.alternatives]
        finals = [r for r in results if r.is_final]
        for result in finals:
            self._settled_at = max(self._settled_at, self._final_offset(session, result))
            self._partial_open = False
            self._listener.on_transcript(result.alternatives[0].transcript.strip(), True)
            if self._closed or session is not self._session:
                return  # the listener hung up
        if not finals and results:
            # Later results are the less stable continuation of the first.
            partial = "".join(r.alternatives[0].transcript for r in results).strip()
            if partial:
                self._partial_open = self._words_unfinalized = True
                self._listener.on_transcript(partial, False)
        self._rolled_over(session)

    def _final_offset(self, session: _Session, result: speech_v1.StreamingRecognitionResult) -> int:
        """Where a final's audio ends, as an absolute offset."""
        end = _bytes_at(result.result_end_time)
        # A server that leaves result_end_time unset: what was sent counts as finalized,
        # so a replay can never repeat this final.
        return session.base + end if end > 0 else session.sent_upto

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
        # Not mid-utterance (a partial is open, or the VAD hears speech a finals-only
        # server has not answered yet) unless the hard limit is near.
        if (self._partial_open or self._speech_at is not None) and age < self._engine.rollover_s + ROLLOVER_GRACE_S:
            return False
        log.info("STT_ROLLOVER call={call_id} age_s={age:.0f}", call_id=self._call_id, age=age)
        session.retire()
        self._session = None
        self._open_session()
        return True

    def _utterances_at(self) -> int | None:
        """Where the earliest utterance that may still need words began (pre-roll included)."""
        starts = [at - _PREROLL_BYTES for at in (self._speech_at, self._owed_from) if at is not None]
        return min(starts) if starts else None

    def _settle_unanswerable(self) -> None:
        """Before a replay (a new stream, or the fallback): only the latest audio, or an
        utterance under way or owed a final, may hold words not answered yet; older
        audio was silence to the VAD. So no stream starts with a burst of up to 30 s,
        far faster than real time, and the fallback gets the utterance, not the call."""
        utterances_at = self._utterances_at()
        if utterances_at is None and self._words_unfinalized:
            return  # words under way, and no VAD hint where they began: keep them all
        unanswered = self._audio.end - UNANSWERED_BYTES
        if utterances_at is not None:
            unanswered = min(unanswered, utterances_at)
        self._settled_at = max(self._settled_at, unanswered)

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
        self._settle_unanswerable()
        self._owed_from = None  # the fallback answers for it
        self._words_unfinalized = False
        audio = self._audio.since(self._settled_at)
        self._settled_at = self._audio.end  # handed to the fallback: never replayed
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
        d = fallback.transcribe(audio)
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
            f"Google STT refused the stream (model={settings.stt_model}, language={settings.language}): "
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
        owed = self._owed_from is not None and self._speech_at is None
        if fallback is not None:
            self._local = LocalSTTStream(self._call_id, self._listener, fallback)
            if self._speech_at is not None:
                # Mid-utterance: the fallback gets the utterance so far, from just before it
                # began; the call's flush at its end transcribes it.
                self._local.speech_started()
                self._local.feed(self._audio.since(max(self._settled_at, self._speech_at - _PREROLL_BYTES)))
            elif owed:
                # The call already ended this turn and waits for its final: the fallback gets
                # every unsettled byte, as on giving up, flushed below.
                self._settle_unanswerable()
                self._local.speech_started()
                self._local.feed(self._audio.since(self._settled_at))
            else:
                self._local.feed(self._audio.since(self._settled_at))  # pre-roll for the next utterance
        self._audio = _AudioLog()
        self._owed_from = None
        self._listener.on_stt_failure(reason, answer_coming=fallback is not None)
        if owed and not self._closed:
            self.flush()  # the one final the turn waits for (empty without a fallback)

    def _forget_old_audio(self) -> None:
        needed = self._settled_at
        utterances_at = self._utterances_at()
        if utterances_at is not None:
            needed = min(needed, utterances_at)  # for a degraded mode's utterance
        self._audio.forget_before(max(needed, self._audio.end - REPLAY_MAX_BYTES))
